//! A simulated load group: follows its targets the way real hardware does, so realised
//! power lags decisions. A started unit draws nothing until it has woken (`wake`), then
//! ramps linearly to its target over `ramp` (from zero to rated); a lower target or a
//! stop takes effect at once (sleep and power-limit commands cut power within a step).
//! Hash rate follows power linearly. Each step's power is the exact average over the step.

use std::time::Duration;

use crate::policy::LoadTarget;
use crate::site::LoadSpec;
use crate::state::LoadLedger;
use crate::units::Watts;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Unit {
    on: bool,
    /// Seconds of wake still to go.
    waking: f64,
    /// Power drawn now, W.
    power: f64,
    /// Power asked for, W.
    target: f64,
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
    units: Vec<Unit>,
    /// W per second while ramping.
    ramp_rate: f64,
    /// The ledger version and per-unit power last applied: a step that changes neither
    /// needs no pass over the units.
    applied: Option<(u64, f64)>,
    /// Sum of unit powers while settled.
    power_sum: f64,
    /// Every running unit is awake and at its target: a step is just power × time.
    settled: bool,
}

impl SimulatedLoad {
    pub fn new(spec: &LoadSpec) -> Self {
        let ramp_rate = if spec.ramp.is_zero() {
            f64::INFINITY
        } else {
            spec.rated_power.0 / spec.ramp.as_secs_f64()
        };
        SimulatedLoad {
            spec: spec.clone(),
            units: vec![
                Unit {
                    on: false,
                    waking: 0.0,
                    power: 0.0,
                    target: 0.0
                };
                spec.count as usize
            ],
            ramp_rate,
            applied: None,
            settled: true,
            power_sum: 0.0,
        }
    }

    /// Takes the ledger's view of which units are on and the target's power, spread
    /// evenly over the running units.
    pub fn apply(&mut self, target: LoadTarget, ledger: &LoadLedger) {
        let per_unit = if target.units_on > 0 {
            (target.power.0 / target.units_on as f64).min(self.spec.rated_power.0)
        } else {
            0.0
        };
        if self.applied == Some((ledger.version, per_unit)) {
            return;
        }
        self.applied = Some((ledger.version, per_unit));
        self.settled = false;
        let wake = self.spec.wake.as_secs_f64();
        for (u, l) in self.units.iter_mut().zip(&ledger.units) {
            if l.on && !u.on {
                u.on = true;
                u.waking = wake;
                u.power = 0.0;
            } else if !l.on {
                u.on = false;
                u.waking = 0.0;
                u.power = 0.0;
            }
            u.target = if u.on { per_unit } else { 0.0 };
        }
    }

    /// Advances `dt`, returning the average power and the hashes made.
    pub fn advance(&mut self, dt: Duration) -> StepOutput {
        let dt = dt.as_secs_f64();
        if self.settled {
            let p = self.power_now().0;
            return StepOutput {
                power: Watts(p),
                hashes: self.spec.hashrate.0 * p * dt / self.spec.rated_power.0,
            };
        }
        let mut energy_ws = 0.0;
        let mut settled = true;
        for u in &mut self.units {
            if !u.on {
                continue;
            }
            let wait = u.waking.min(dt);
            u.waking -= wait;
            let r = dt - wait;
            if r <= 0.0 {
                settled = false;
                continue;
            }
            if u.target <= u.power {
                u.power = u.target;
                energy_ws += u.power * r;
            } else {
                let t_up = (u.target - u.power) / self.ramp_rate;
                if t_up >= r {
                    let p1 = u.power + self.ramp_rate * r;
                    energy_ws += (u.power + p1) / 2.0 * r;
                    u.power = p1;
                } else {
                    energy_ws += (u.power + u.target) / 2.0 * t_up + u.target * (r - t_up);
                    u.power = u.target;
                }
            }
            settled &= u.waking <= 0.0 && u.power == u.target;
        }
        if settled {
            self.settled = true;
            self.power_sum = self.units.iter().map(|u| u.power).sum();
        }
        StepOutput {
            power: Watts(energy_ws / dt),
            hashes: self.spec.hashrate.0 * energy_ws / self.spec.rated_power.0,
        }
    }

    /// Power drawn at this instant.
    pub fn power_now(&self) -> Watts {
        if self.settled {
            Watts(self.power_sum)
        } else {
            Watts(self.units.iter().map(|u| u.power).sum())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::site::{LoadKind, PowerLevels, WearLimits};
    use crate::units::HashRate;

    fn spec(wake: u64, ramp: u64) -> LoadSpec {
        LoadSpec {
            name: "s19".into(),
            kind: LoadKind::Asic,
            count: 2,
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
        let s = spec(30, 60);
        let mut load = SimulatedLoad::new(&s);
        let mut ledger = LoadLedger::new(&s);
        let t = LoadTarget {
            units_on: 1,
            power: Watts(3000.0),
        };
        ledger.apply(t, Timestamp(0), &s.wear);
        load.apply(t, &ledger);
        // First minute: 30 s asleep, then 30 s ramping 0 -> 1500 W: 22.5 kWs / 60 s.
        let o = load.advance(Duration::from_secs(60));
        assert!((o.power.0 - 375.0).abs() < 1e-9, "{:?}", o);
        assert!((o.hashes - 100e12 * 22_500.0 / 3000.0).abs() < 1.0);
        // Second minute: 30 s more ramp (1500 -> 3000), then flat.
        let o = load.advance(Duration::from_secs(60));
        assert!((o.power.0 - (2250.0 * 30.0 + 3000.0 * 30.0) / 60.0).abs() < 1e-9);
        assert_eq!(load.power_now(), Watts(3000.0));
        ledger.apply(LoadTarget::OFF, Timestamp(120_000), &s.wear);
        load.apply(LoadTarget::OFF, &ledger);
        assert_eq!(load.advance(Duration::from_secs(60)).power, Watts(0.0));
    }
}
