//! A simulated load group: follows its targets the way real hardware does, so realised
//! power lags decisions. A started unit draws nothing until it has woken (`wake`), then
//! ramps linearly to its target over `ramp` (from zero to rated); a lower target or a
//! stop takes effect at once (sleep and power-limit commands cut power within a step).
//! Hash rate follows power linearly. Each step's power is the exact average over the step.
//!
//! Units started together stay identical (they get the same commands from then on), so
//! the group is kept as cohorts in start order rather than unit by unit, and stops take
//! the oldest cohorts first, as the wear ledger does: a group of 10,000 miners costs a
//! handful of cohorts per step.
//!
//! The simulator is synchronous and calls the core (`apply`, `advance`) directly; the
//! same load is also a driver behind the actuator seam ([`SetPower`] applies a target at
//! the load's own time, [`ReadPower`] reads the power drawn at that instant), so it can
//! stand where a real load does. The load's time moves only with `advance`.

use std::collections::VecDeque;
use std::time::Duration;

use super::{ActuatorError, Commanded, ReadPower, SetPower};
use crate::clock::Timestamp;
use crate::decision::LoadTarget;
use crate::site::LoadSpec;
use crate::state::Reading;
use crate::units::Watts;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Cohort {
    units: u32,
    /// Seconds of wake still to go.
    waking: f64,
    /// Power of each unit now, W.
    power: f64,
}

/// What a group did over one step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepOutput {
    /// Average power over the step.
    pub power: Watts,
    /// Hashes computed during the step.
    pub hashes: f64,
}

/// One load group under simulation.
#[derive(Debug, Clone)]
pub struct SimulatedLoad {
    spec: LoadSpec,
    /// Oldest first.
    cohorts: VecDeque<Cohort>,
    /// Units in all cohorts.
    running: u32,
    /// Power asked of each running unit, W.
    target: f64,
    /// W per second while ramping.
    ramp_rate: f64,
    /// The load's time: its start, plus every `advance` since.
    now: Timestamp,
}

impl SimulatedLoad {
    /// A load at rest at `Timestamp(0)`; see [`SimulatedLoad::starting_at`].
    pub fn new(spec: &LoadSpec) -> Self {
        let ramp_rate = if spec.ramp.is_zero() {
            f64::INFINITY
        } else {
            spec.rated_power.0 / spec.ramp.as_secs_f64()
        };
        SimulatedLoad {
            spec: spec.clone(),
            cohorts: VecDeque::new(),
            running: 0,
            target: 0.0,
            ramp_rate,
            now: Timestamp(0),
        }
    }

    /// The load with its time starting at `start` (what the seam stamps on writes and
    /// readings).
    pub fn starting_at(mut self, start: Timestamp) -> Self {
        self.now = start;
        self
    }

    /// The load's time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Follows `target` as the wear ledger booked it: `units_on` running, sharing
    /// `power` evenly. New units start asleep; stopped units are the oldest.
    #[inline]
    pub fn apply(&mut self, target: LoadTarget) {
        let running = self.running;
        if target.units_on < running {
            let mut n = running - target.units_on;
            while n > 0 {
                let front = self.cohorts.front_mut().expect("units to stop are running");
                let k = front.units.min(n);
                front.units -= k;
                n -= k;
                if front.units == 0 {
                    self.cohorts.pop_front();
                }
            }
        } else if target.units_on > running {
            self.cohorts.push_back(Cohort {
                units: target.units_on - running,
                waking: self.spec.wake.as_secs_f64(),
                power: 0.0,
            });
        }
        self.running = target.units_on;
        self.target = if target.units_on > 0 {
            (target.power.0 / target.units_on as f64).min(self.spec.rated_power.0)
        } else {
            0.0
        };
    }

    /// Advances `dt`, returning the average power and the hashes made.
    #[inline]
    pub fn advance(&mut self, dt: Duration) -> StepOutput {
        self.now = self.now + dt;
        if self.cohorts.is_empty() {
            return StepOutput::default();
        }
        let dt = dt.as_secs_f64();
        let mut energy_ws = 0.0;
        for c in &mut self.cohorts {
            let wait = c.waking.min(dt);
            c.waking -= wait;
            let r = dt - wait;
            if r <= 0.0 {
                continue;
            }
            let per_unit = if self.target <= c.power {
                c.power = self.target;
                c.power * r
            } else {
                let t_up = (self.target - c.power) / self.ramp_rate;
                if t_up >= r {
                    let p1 = c.power + self.ramp_rate * r;
                    let e = (c.power + p1) / 2.0 * r;
                    c.power = p1;
                    e
                } else {
                    let e = (c.power + self.target) / 2.0 * t_up + self.target * (r - t_up);
                    c.power = self.target;
                    e
                }
            };
            energy_ws += per_unit * c.units as f64;
        }
        // Cohorts that caught up with each other are one cohort from now on.
        let mut i = 1;
        while i < self.cohorts.len() {
            let (a, b) = (self.cohorts[i - 1], self.cohorts[i]);
            if a.waking <= 0.0 && b.waking <= 0.0 && a.power == b.power {
                self.cohorts[i - 1].units += b.units;
                self.cohorts.remove(i);
            } else {
                i += 1;
            }
        }
        StepOutput {
            power: Watts(energy_ws / dt),
            hashes: self.spec.hashrate.0 * energy_ws / self.spec.rated_power.0,
        }
    }

    /// Power drawn at this instant.
    pub fn power_now(&self) -> Watts {
        Watts(self.cohorts.iter().map(|c| c.power * c.units as f64).sum())
    }
}

impl SetPower for SimulatedLoad {
    /// Applies at once: a model has no way to fail.
    async fn set(&mut self, target: LoadTarget) -> Result<Commanded, ActuatorError> {
        self.apply(target);
        Ok(Commanded {
            target,
            at: self.now,
        })
    }
}

impl ReadPower for SimulatedLoad {
    /// The power drawn at the load's present instant; it does not move time (only
    /// `advance` does), so reading twice reads the same.
    async fn read(&mut self) -> Result<Reading<Watts>, ActuatorError> {
        Ok(Reading {
            value: self.power_now(),
            at: self.now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::{LoadKind, PowerLevels, WearLimits};
    use crate::units::HashRate;

    fn spec(wake: u64, ramp: u64) -> LoadSpec {
        LoadSpec {
            name: "s19".into(),
            kind: LoadKind::Asic,
            count: 3,
            rated_power: Watts(3000.0),
            hashrate: HashRate::from_ths(100.0),
            levels: PowerLevels::OnOff,
            ramp: Duration::from_secs(ramp),
            wake: Duration::from_secs(wake),
            wear: WearLimits::default(),
        }
    }

    #[test]
    fn wake_then_ramp_then_flat_then_instant_stop() {
        let mut load = SimulatedLoad::new(&spec(30, 60));
        load.apply(LoadTarget {
            units_on: 1,
            power: Watts(3000.0),
        });
        // First minute: 30 s asleep, then 30 s ramping 0 -> 1500 W: 22.5 kWs / 60 s.
        let o = load.advance(Duration::from_secs(60));
        assert!((o.power.0 - 375.0).abs() < 1e-9, "{o:?}");
        assert!((o.hashes - 100e12 * 22_500.0 / 3000.0).abs() < 1.0);
        // Second minute: 30 s more ramp (1500 -> 3000), then flat.
        let o = load.advance(Duration::from_secs(60));
        assert!((o.power.0 - (2250.0 * 30.0 + 3000.0 * 30.0) / 60.0).abs() < 1e-9);
        assert_eq!(load.power_now(), Watts(3000.0));
        load.apply(LoadTarget::OFF);
        assert_eq!(load.advance(Duration::from_secs(60)).power, Watts(0.0));
    }

    #[test]
    fn cohorts_start_apart_merge_when_level_and_stop_oldest_first() {
        let mut load = SimulatedLoad::new(&spec(0, 120));
        load.apply(LoadTarget {
            units_on: 1,
            power: Watts(3000.0),
        });
        load.advance(Duration::from_secs(60)); // first unit at 1500 W
        load.apply(LoadTarget {
            units_on: 2,
            power: Watts(6000.0),
        });
        let o = load.advance(Duration::from_secs(60));
        // Unit 1 ramps 1500 -> 3000 (avg 2250), unit 2 ramps 0 -> 1500 (avg 750).
        assert!((o.power.0 - 3000.0).abs() < 1e-9, "{o:?}");
        assert_eq!(load.cohorts.len(), 2);
        load.advance(Duration::from_secs(120));
        assert_eq!(
            load.cohorts.len(),
            1,
            "both at 3000 W now: {:?}",
            load.cohorts
        );
        // A lower target acts at once on every running unit.
        load.apply(LoadTarget {
            units_on: 2,
            power: Watts(4000.0),
        });
        assert_eq!(load.advance(Duration::from_secs(60)).power, Watts(4000.0));
        load.apply(LoadTarget {
            units_on: 1,
            power: Watts(2000.0),
        });
        assert_eq!(load.advance(Duration::from_secs(60)).power, Watts(2000.0));
    }

    /// r10: the seam adds nothing to the model. A load driven through `SetPower` and
    /// `ReadPower` draws exactly what the core the simulator calls does, step by step,
    /// and stamps its writes and readings with its own time.
    #[tokio::test]
    async fn r10_the_seam_is_the_core() {
        let t = |units_on, w| LoadTarget {
            units_on,
            power: Watts(w),
        };
        let targets = [
            t(1, 3000.0),
            t(3, 9000.0),
            t(3, 6000.0),
            LoadTarget::OFF,
            t(2, 5000.0),
        ];
        let mut core = SimulatedLoad::new(&spec(30, 90));
        let start = Timestamp(1_000);
        let mut seam = SimulatedLoad::new(&spec(30, 90)).starting_at(start);
        let step = Duration::from_secs(45);
        for (k, &target) in targets.iter().enumerate() {
            // Two steps per target.
            let at = start + step * (2 * k as u32);
            core.apply(target);
            let c = seam.set(target).await.unwrap();
            assert_eq!(c, Commanded { target, at });
            for _ in 0..2 {
                assert_eq!(core.advance(step), seam.advance(step), "target {k}");
            }
            let r = seam.read().await.unwrap();
            assert_eq!(r.value, core.power_now());
            assert_eq!(r.at, at + step * 2);
        }
    }
}
