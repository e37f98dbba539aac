//! One miner's dynamics: a pure function of the commands it accepted and the time.
//!
//! Time is a `Duration` since the fleet started (monotonic, never the wall clock), so a
//! unit test states "power_on at 10 s, read at 75 s" and gets one answer. Nothing here
//! does I/O or reads a clock; the server layer passes `t` in.
//!
//! What a real miner does, and so this model: `power_on` wakes it (the control board
//! boots btminer and initialises the hash boards, drawing only control-board power),
//! then it ramps to its power target; `power_off` keeps the boards hashing for a few
//! seconds, then only the standby draw is left; a new power limit is reached in steps
//! (the firmware retunes frequency a step at a time). Hash rate follows the power the
//! boards get, with efficiency improving as power falls; temperatures and fans follow
//! the power.

use std::collections::VecDeque;
use std::time::Duration;

use crate::units::{HashRate, Watts};

/// The firmware family a model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// MicroBT's btminer, Whatsminer API v2 (JSON over TCP 4028, privileged commands
    /// token-authenticated and AES-256-ECB encrypted).
    WhatsminerV2,
    /// LUXminer (LuxOS on Antminer hardware): cgminer-style API on 4028, session logon,
    /// `curtail` to sleep and wake, profiles as power targets.
    LuxOs,
}

/// A miner model's rated figures (vendor specifications; chip, board and fan counts as
/// pyasic's and asic-rs's model tables have them).
#[derive(Debug, PartialEq)]
pub struct Spec {
    /// The name `--model` takes (case-insensitive).
    pub name: &'static str,
    /// What the firmware reports as its model (`devdetails` Model, with the board
    /// revision after `_`, which clients turn into "M30S+VE40").
    pub firmware_model: &'static str,
    pub family: Family,
    /// Wall power at the stock power limit.
    pub rated_power: Watts,
    /// Hash rate at `rated_power`.
    pub rated_hashrate: HashRate,
    /// The lowest and highest power limit `adjust_power_limit` takes. The vendor's
    /// document: the limit "cannot be higher than the ordinary power of the machine".
    pub min_limit: Watts,
    pub max_limit: Watts,
    pub boards: u8,
    pub chips_per_board: u16,
    pub fans: u8,
    /// What the control board and fans draw while the boards are off but btminer runs
    /// (waking, and the floor under every other state but standby).
    pub control: Watts,
    /// The draw after `power_off` has stopped the boards.
    pub standby: Watts,
    /// Fan speed at rated power, in RPM.
    pub fan_rpm_max: f64,
    /// The power supply `get_psu` names.
    pub psu: &'static str,
}

/// Every model the emulator serves; `--model` picks from these.
pub const MODELS: &[Spec] = &[
    Spec {
        name: "M30S+",
        firmware_model: "M30S+_VE40",
        family: Family::WhatsminerV2,
        rated_power: Watts(3400.0),
        rated_hashrate: HashRate(100e12),
        min_limit: Watts(1800.0),
        max_limit: Watts(3400.0),
        boards: 3,
        chips_per_board: 156,
        fans: 2,
        control: Watts(45.0),
        standby: Watts(12.0),
        fan_rpm_max: 6000.0,
        psu: "P221B",
    },
    Spec {
        name: "M50S",
        firmware_model: "M50S_VH50",
        family: Family::WhatsminerV2,
        rated_power: Watts(3276.0),
        rated_hashrate: HashRate(126e12),
        min_limit: Watts(1800.0),
        max_limit: Watts(3276.0),
        boards: 3,
        chips_per_board: 135,
        fans: 2,
        control: Watts(45.0),
        standby: Watts(12.0),
        fan_rpm_max: 6200.0,
        psu: "P222B",
    },
    Spec {
        name: "M60",
        firmware_model: "M60_VK10",
        family: Family::WhatsminerV2,
        rated_power: Watts(3422.0),
        rated_hashrate: HashRate(172e12),
        min_limit: Watts(1900.0),
        max_limit: Watts(3422.0),
        boards: 3,
        chips_per_board: 164,
        fans: 2,
        control: Watts(50.0),
        standby: Watts(12.0),
        fan_rpm_max: 6400.0,
        psu: "P521B",
    },
    // LuxOS models: `--model S19XP-Lux`. The firmware reports the Antminer model.
    Spec {
        name: "S19XP-Lux",
        firmware_model: "Antminer S19 XP",
        family: Family::LuxOs,
        rated_power: Watts(3010.0),
        rated_hashrate: HashRate(140e12),
        min_limit: Watts(1800.0),
        max_limit: Watts(3010.0),
        boards: 3,
        chips_per_board: 110,
        fans: 4,
        control: Watts(40.0),
        standby: Watts(10.0),
        fan_rpm_max: 6000.0,
        psu: "APW12",
    },
    Spec {
        name: "S21-Lux",
        firmware_model: "Antminer S21",
        family: Family::LuxOs,
        rated_power: Watts(3500.0),
        rated_hashrate: HashRate(200e12),
        min_limit: Watts(2000.0),
        max_limit: Watts(3500.0),
        boards: 3,
        chips_per_board: 108,
        fans: 4,
        control: Watts(40.0),
        standby: Watts(10.0),
        fan_rpm_max: 6000.0,
        psu: "APW17",
    },
];

/// The model named `name` (case-insensitive; the firmware's name works too).
pub fn model(name: &str) -> Option<&'static Spec> {
    let plain = |s: &str| s.to_ascii_uppercase().replace(['_', ' '], "");
    let want = plain(name);
    MODELS
        .iter()
        .find(|m| plain(m.name) == want || plain(m.firmware_model) == want)
}

/// Every time and rate the dynamics use. The defaults are what a real fleet shows;
/// tests shrink them (`wake: 2 s`), and a scenario can set them from what a real fleet
/// showed (the driver learns the same quantities).
#[derive(Debug, Clone, PartialEq)]
pub struct Dynamics {
    /// `power_on` until the boards hash: btminer boots and initialises the boards.
    pub wake: Duration,
    /// From the first hash to the power target.
    pub ramp: Duration,
    /// `power_off` until the boards stop.
    pub stop: Duration,
    /// A power-limit change moves the power by this much per step ...
    pub step: Watts,
    /// ... every this long.
    pub step_every: Duration,
    /// A `slow-wake` miner takes this many times `wake`.
    pub slow_wake_factor: f64,
    /// Deterministic ripple on the reported power, as a share of it (0.005 = ±0.5 %).
    pub ripple: f64,
    /// Air temperature at the intake, in °C.
    pub ambient_c: f64,
    /// How long a privileged-command token stays valid.
    pub token_ttl: Duration,
    /// A `drops-connection` miner drops every this many-th connection unanswered.
    pub drop_every: u32,
}

impl Default for Dynamics {
    fn default() -> Self {
        Dynamics {
            wake: Duration::from_secs(60),
            ramp: Duration::from_secs(120),
            stop: Duration::from_secs(5),
            step: Watts(100.0),
            step_every: Duration::from_secs(5),
            slow_wake_factor: 5.0,
            ripple: 0.005,
            ambient_c: 25.0,
            // The vendor's API document: a token is valid for 30 minutes (pyasic caches
            // it that long).
            token_ttl: Duration::from_secs(30 * 60),
            drop_every: 2,
        }
    }
}

/// A misbehaviour injected into a share of the fleet, the ways real miners fail
/// (asic-rs #310, pyasic #40, hass-miner #71/#380/#424).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Answers every privileged command with success and does nothing.
    Liar,
    /// Wakes `slow_wake_factor` times slower.
    SlowWake,
    /// Drops every `drop_every`-th connection without an answer.
    DropsConnection,
    /// Rejects every token (as a miner whose password was changed).
    RefusesAuth,
    /// A power-limit change restarts btminer: the boards stop, wake and ramp again.
    RestartsOnLimitChange,
    /// A power-limit change is accepted and reported, but the power never moves.
    StuckStabilizing,
    /// Nothing listens at its address.
    Dead,
}

/// Every fault, with the name `--fault` takes: the one table of their names.
pub const FAULTS: &[(Fault, &str)] = &[
    (Fault::Liar, "liar"),
    (Fault::SlowWake, "slow-wake"),
    (Fault::DropsConnection, "drops-connection"),
    (Fault::RefusesAuth, "refuses-auth"),
    (Fault::RestartsOnLimitChange, "restarts-on-limit-change"),
    (Fault::StuckStabilizing, "stuck-stabilizing"),
    (Fault::Dead, "dead"),
];

impl Fault {
    pub fn name(self) -> &'static str {
        FAULTS
            .iter()
            .find(|(f, _)| *f == self)
            .map(|(_, n)| *n)
            .expect("FAULTS lists every fault")
    }
    pub fn parse(s: &str) -> Option<Fault> {
        FAULTS.iter().find(|(_, n)| *n == s).map(|(f, _)| *f)
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a miner is doing, as an observer with a power meter would say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Boards off, standby draw.
    Sleeping,
    /// `power_off` accepted, boards still hashing.
    Stopping,
    /// `power_on` accepted (or restarting): control-board power only, no hashes.
    Waking,
    /// Hashing, power rising to the target.
    Ramping,
    /// Hashing at the target.
    Mining,
    /// Hashing, stepping toward a new target.
    Adjusting,
    /// Hashing, told a new target that it never reaches (`stuck-stabilizing`).
    Stabilizing,
}

/// A power mode (`set_low_power`, `set_normal_power`, `set_high_power`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PowerMode {
    Low,
    Normal,
    High,
}

impl PowerMode {
    /// How the firmware spells it in `summary` ("Power Mode").
    pub fn label(self) -> &'static str {
        match self {
            PowerMode::Low => "Low",
            PowerMode::Normal => "Normal",
            PowerMode::High => "High",
        }
    }
}

/// A state-changing command, as the miner understood it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "command", content = "value")]
pub enum Command {
    PowerOff,
    PowerOn,
    PowerLimit(Watts),
    PowerMode(PowerMode),
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Acted on.
    Applied,
    /// Answered as success, and not acted on (`liar`).
    Ignored,
    /// Answered with an error; the reason is the firmware's message.
    Refused(String),
}

/// One privileged command the miner received, when (since the fleet started) and what
/// became of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Received {
    pub at: Duration,
    pub command: Command,
    pub outcome: Outcome,
}

/// What the boards are doing since when; everything else is derived from it and `t`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Activity {
    /// Standby since `since`.
    Off { since: Duration },
    /// `power_off` at `at`; the boards keep drawing `hashing` until `at + stop`.
    Stopping { at: Duration, hashing: Watts },
    /// Started (power_on or restart) at `at`: control power until `at + wake`, then a
    /// linear ramp to the target over `ramp`.
    Starting { at: Duration, wake: Duration },
    /// Retuning from `from` at `at`, `step` per `step_every`, to the target; `stuck`
    /// never moves.
    Tuning {
        at: Duration,
        from: Watts,
        stuck: bool,
    },
}

/// The readings a client can get, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Reading {
    pub phase: Phase,
    /// Wall power.
    pub power: Watts,
    pub hashrate: HashRate,
    /// Whether the firmware says it is off (status `mineroff`): set when `power_off`
    /// is accepted, before the boards have stopped.
    pub mineroff: bool,
    pub chip_temp_c: f64,
    pub board_temp_c: f64,
    pub fan_rpm: f64,
    /// Seconds since btminer last started hashing.
    pub elapsed: Duration,
    /// Whether the hash rate is settled (summary "Hash Stable").
    pub stable: bool,
}

/// One miner: its model, dynamics, fault and everything it accepted.
#[derive(Debug, Clone)]
pub struct Miner {
    pub spec: &'static Spec,
    pub dynamics: Dynamics,
    pub fault: Option<Fault>,
    limit: Watts,
    mode: PowerMode,
    activity: Activity,
    /// When btminer last (re)started, for "Elapsed".
    started: Duration,
    received: VecDeque<Received>,
}

/// Commands kept per miner, the oldest dropped first: a fleet served for days under a
/// controller stays bounded (about 50 bytes each).
pub const MAX_RECEIVED: usize = 4096;

/// Refused commands' messages. The vendor's document gives codes, not every text;
/// these say what was wrong in the firmware's terse style.
pub const LIMIT_OUT_OF_RANGE: &str = "power limit out of range";

impl Miner {
    /// A miner hashing at its rated power since `t = 0`.
    pub fn new(spec: &'static Spec, dynamics: Dynamics, fault: Option<Fault>) -> Miner {
        Miner {
            spec,
            dynamics,
            fault,
            limit: spec.max_limit,
            mode: PowerMode::Normal,
            activity: Activity::Tuning {
                at: Duration::ZERO,
                from: spec.max_limit,
                stuck: false,
            },
            started: Duration::ZERO,
            received: VecDeque::new(),
        }
    }

    /// The power limit set (what `summary` reports as "Power Limit").
    pub fn limit(&self) -> Watts {
        self.limit
    }

    pub fn mode(&self) -> PowerMode {
        self.mode
    }

    /// The commands received, oldest first (the last [`MAX_RECEIVED`]).
    pub fn received(&self) -> impl ExactSizeIterator<Item = &Received> {
        self.received.iter()
    }

    /// The power the boards are tuned to reach: the limit, capped by the power mode.
    fn target(&self) -> Watts {
        let s = self.spec;
        match self.mode {
            // Low power mode runs the boards at about 85 % of rated.
            PowerMode::Low => self.limit.min(s.rated_power * 0.85),
            PowerMode::Normal | PowerMode::High => self.limit,
        }
    }

    fn wake_time(&self) -> Duration {
        let d = &self.dynamics;
        if self.fault == Some(Fault::SlowWake) {
            d.wake.mul_f64(d.slow_wake_factor.max(1.0))
        } else {
            d.wake
        }
    }

    /// Wall power at `t` without ripple, and the phase.
    fn power_phase(&self, t: Duration) -> (Watts, Phase) {
        let s = self.spec;
        let d = &self.dynamics;
        let target = self.target();
        match self.activity {
            Activity::Off { .. } => (s.standby, Phase::Sleeping),
            Activity::Stopping { at, hashing } => {
                if t < at + d.stop {
                    (hashing, Phase::Stopping)
                } else {
                    (s.standby, Phase::Sleeping)
                }
            }
            Activity::Starting { at, wake } => {
                let hashing_from = at + wake;
                if t < hashing_from {
                    return (s.control, Phase::Waking);
                }
                let f = if d.ramp.is_zero() {
                    1.0
                } else {
                    ((t - hashing_from).as_secs_f64() / d.ramp.as_secs_f64()).min(1.0)
                };
                let p = s.control + (target - s.control) * f;
                (
                    p,
                    if f < 1.0 {
                        Phase::Ramping
                    } else {
                        Phase::Mining
                    },
                )
            }
            Activity::Tuning { at, from, stuck } => {
                if stuck {
                    return (from, Phase::Stabilizing);
                }
                let steps = if d.step_every.is_zero() {
                    f64::INFINITY
                } else {
                    (t.saturating_sub(at).as_secs_f64() / d.step_every.as_secs_f64()).floor()
                };
                let moved = d.step.0.abs() * steps;
                let gap = target - from;
                if gap.0.abs() <= moved {
                    (target, Phase::Mining)
                } else {
                    (from + Watts(moved.copysign(gap.0)), Phase::Adjusting)
                }
            }
        }
    }

    /// Whether the boards hash at `t`.
    fn hashing(phase: Phase) -> bool {
        !matches!(phase, Phase::Sleeping | Phase::Waking)
    }

    /// What every reading shows at `t`.
    pub fn reading(&self, t: Duration) -> Reading {
        let s = self.spec;
        let d = &self.dynamics;
        let (p, phase) = self.power_phase(t);
        let hashing = Self::hashing(phase);
        // A deterministic ripple (a few slow sines), as a real meter shows.
        let ripple = if hashing {
            let x = t.as_secs_f64();
            1.0 + d.ripple * (0.6 * (x * 0.9).sin() + 0.4 * (x * 2.3 + 1.0).sin())
        } else {
            1.0
        };
        let power = p * ripple;
        // Hash rate from the power the boards get: at rated power, the rated rate;
        // below it, more hashes per joule (lower voltage), so rate ~ power^0.8.
        let hashrate = if hashing {
            let board = (power - s.control).max(Watts::ZERO);
            let rated_board = s.rated_power - s.control;
            HashRate(s.rated_hashrate.0 * (board / rated_board).powf(0.8))
        } else {
            HashRate(0.0)
        };
        let load = (power / s.rated_power).clamp(0.0, 1.2);
        let (chip, board, fan) = match phase {
            Phase::Sleeping => (d.ambient_c + 3.0, d.ambient_c + 2.0, 0.0),
            Phase::Waking => (d.ambient_c + 8.0, d.ambient_c + 6.0, 0.35 * s.fan_rpm_max),
            _ => (
                d.ambient_c + 12.0 + 45.0 * load,
                d.ambient_c + 8.0 + 36.0 * load,
                s.fan_rpm_max * (0.35 + 0.65 * load),
            ),
        };
        Reading {
            phase,
            power,
            hashrate,
            mineroff: matches!(
                self.activity,
                Activity::Off { .. } | Activity::Stopping { .. }
            ),
            chip_temp_c: chip,
            board_temp_c: board,
            fan_rpm: fan,
            elapsed: if hashing {
                t.saturating_sub(self.started)
            } else {
                Duration::ZERO
            },
            stable: phase == Phase::Mining,
        }
    }

    fn record(&mut self, at: Duration, command: Command, outcome: Outcome) -> Outcome {
        if self.received.len() >= MAX_RECEIVED {
            self.received.pop_front();
        }
        self.received.push_back(Received {
            at,
            command,
            outcome: outcome.clone(),
        });
        outcome
    }

    /// Applies `command` at `t` and returns what became of it. A `liar` answers success
    /// and changes nothing; a limit outside the model's range is refused.
    pub fn apply(&mut self, t: Duration, command: Command) -> Outcome {
        if let Command::PowerLimit(w) = command {
            if !w.is_finite() || w < self.spec.min_limit || w > self.spec.max_limit {
                return self.record(t, command, Outcome::Refused(LIMIT_OUT_OF_RANGE.into()));
            }
        }
        if self.fault == Some(Fault::Liar) {
            return self.record(t, command, Outcome::Ignored);
        }
        let (now_power, phase) = self.power_phase(t);
        match command {
            Command::PowerOff => match self.activity {
                Activity::Off { .. } | Activity::Stopping { .. } => {}
                _ => {
                    self.activity = Activity::Stopping {
                        at: t,
                        hashing: now_power,
                    }
                }
            },
            Command::PowerOn => match self.activity {
                Activity::Off { .. } | Activity::Stopping { .. } => {
                    self.start(t);
                }
                _ => {}
            },
            Command::PowerLimit(w) => {
                self.limit = w;
                self.retune(t, now_power, phase);
            }
            Command::PowerMode(m) => {
                self.mode = m;
                self.retune(t, now_power, phase);
            }
        }
        self.record(t, command, Outcome::Applied)
    }

    fn start(&mut self, t: Duration) {
        self.activity = Activity::Starting {
            at: t,
            wake: self.wake_time(),
        };
        self.started = t + self.wake_time();
    }

    /// After the target changed at `t`: a waking miner ramps to the new target anyway;
    /// a hashing one steps to it (or restarts, or sticks, by its fault).
    fn retune(&mut self, t: Duration, now_power: Watts, phase: Phase) {
        match phase {
            Phase::Sleeping | Phase::Stopping | Phase::Waking => {}
            Phase::Ramping | Phase::Mining | Phase::Adjusting | Phase::Stabilizing => {
                if self.fault == Some(Fault::RestartsOnLimitChange) {
                    self.start(t);
                } else {
                    self.activity = Activity::Tuning {
                        at: t,
                        from: now_power,
                        stuck: self.fault == Some(Fault::StuckStabilizing),
                    };
                }
            }
        }
    }

    /// Puts the miner to sleep at `t` without a command (a fleet that starts asleep).
    pub fn sleep_now(&mut self, t: Duration) {
        self.activity = Activity::Off { since: t };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn quiet() -> Dynamics {
        Dynamics {
            wake: s(10.0),
            ramp: s(20.0),
            stop: s(3.0),
            step: Watts(100.0),
            step_every: s(2.0),
            ripple: 0.0,
            ..Dynamics::default()
        }
    }

    fn m30() -> &'static Spec {
        model("m30s+").expect("M30S+ is a model")
    }

    #[test]
    fn models_are_found_by_either_name_and_their_figures_are_consistent() {
        assert_eq!(model("M50S_VH50").map(|m| m.name), Some("M50S"));
        assert_eq!(model("m60").map(|m| m.name), Some("M60"));
        assert!(model("S19").is_none());
        for m in MODELS {
            assert!(
                m.min_limit < m.max_limit && m.max_limit <= m.rated_power,
                "{}",
                m.name
            );
            assert!(
                m.standby < m.control && m.control < m.min_limit,
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn fault_names_round_trip() {
        for (f, n) in FAULTS {
            assert_eq!(Fault::parse(n), Some(*f));
            assert_eq!(f.name(), *n);
        }
        assert_eq!(Fault::parse("lazy"), None);
    }

    #[test]
    fn starts_hashing_at_rated_power_and_rate() {
        let m = Miner::new(m30(), quiet(), None);
        let r = m.reading(s(1.0));
        assert_eq!(r.phase, Phase::Mining);
        assert_eq!(r.power, Watts(3400.0));
        assert!((r.hashrate.0 - 100e12).abs() < 1e6);
        assert!(!r.mineroff);
    }

    #[test]
    fn power_off_hashes_for_the_stop_time_then_draws_standby() {
        let mut m = Miner::new(m30(), quiet(), None);
        assert_eq!(m.apply(s(10.0), Command::PowerOff), Outcome::Applied);
        let during = m.reading(s(12.0));
        assert_eq!(during.phase, Phase::Stopping);
        assert_eq!(during.power, Watts(3400.0));
        // The firmware says "off" at once, while the boards still draw: a client that
        // trusts the flag alone is wrong for `stop`.
        assert!(during.mineroff);
        let after = m.reading(s(13.0));
        assert_eq!(after.phase, Phase::Sleeping);
        assert_eq!(after.power, m30().standby);
        assert_eq!(after.hashrate, HashRate(0.0));
        assert_eq!(after.fan_rpm, 0.0);
    }

    #[test]
    fn power_on_wakes_on_control_power_then_ramps_to_the_limit() {
        let mut m = Miner::new(m30(), quiet(), None);
        m.apply(s(0.0), Command::PowerOff);
        m.apply(s(100.0), Command::PowerOn);
        let waking = m.reading(s(105.0));
        assert_eq!(waking.phase, Phase::Waking);
        assert_eq!(waking.power, m30().control);
        assert_eq!(waking.hashrate, HashRate(0.0));
        assert!(!waking.mineroff);
        let half = m.reading(s(120.0));
        assert_eq!(half.phase, Phase::Ramping);
        let mid = (m30().control.0 + 3400.0) / 2.0;
        assert!((half.power.0 - mid).abs() < 1e-6, "{}", half.power);
        assert!(half.hashrate.0 > 0.0 && half.hashrate.0 < 100e12);
        let done = m.reading(s(130.0));
        assert_eq!(done.phase, Phase::Mining);
        assert_eq!(done.power, Watts(3400.0));
        assert_eq!(done.elapsed, s(20.0));
    }

    #[test]
    fn a_limit_is_reached_in_steps_and_hashrate_falls_slower_than_power() {
        let mut m = Miner::new(m30(), quiet(), None);
        assert_eq!(
            m.apply(s(10.0), Command::PowerLimit(Watts(3000.0))),
            Outcome::Applied
        );
        assert_eq!(m.limit(), Watts(3000.0));
        assert_eq!(m.reading(s(11.0)).power, Watts(3400.0));
        assert_eq!(m.reading(s(12.0)).power, Watts(3300.0));
        assert_eq!(m.reading(s(12.0)).phase, Phase::Adjusting);
        assert_eq!(m.reading(s(17.9)).power, Watts(3100.0));
        let settled = m.reading(s(18.0));
        assert_eq!(
            (settled.power, settled.phase),
            (Watts(3000.0), Phase::Mining)
        );
        let power_share = 2955.0 / 3355.0;
        let rate_share = settled.hashrate.0 / 100e12;
        assert!(rate_share > power_share && rate_share < 1.0, "{rate_share}");
        // Hotter at full power, faster fans.
        let full = Miner::new(m30(), quiet(), None).reading(s(1.0));
        assert!(full.chip_temp_c > settled.chip_temp_c && full.fan_rpm > settled.fan_rpm);
    }

    #[test]
    fn a_limit_out_of_range_is_refused_and_changes_nothing() {
        let mut m = Miner::new(m30(), quiet(), None);
        for w in [1000.0, 5000.0, f64::NAN] {
            let o = m.apply(s(1.0), Command::PowerLimit(Watts(w)));
            assert_eq!(o, Outcome::Refused(LIMIT_OUT_OF_RANGE.into()));
        }
        assert_eq!(m.limit(), Watts(3400.0));
        assert_eq!(m.received().len(), 3);
        for i in 0..MAX_RECEIVED {
            m.apply(s(i as f64), Command::PowerOn);
        }
        assert_eq!(m.received().len(), MAX_RECEIVED);
    }

    #[test]
    fn a_limit_while_asleep_is_kept_for_the_next_wake() {
        let mut m = Miner::new(m30(), quiet(), None);
        m.apply(s(0.0), Command::PowerOff);
        m.apply(s(10.0), Command::PowerLimit(Watts(2500.0)));
        assert_eq!(m.reading(s(11.0)).phase, Phase::Sleeping);
        m.apply(s(20.0), Command::PowerOn);
        assert_eq!(m.reading(s(50.0)).power, Watts(2500.0));
    }

    #[test]
    fn r11_liar_answers_success_and_keeps_hashing() {
        // Catches a driver that takes the library's `true` as proof (asic-rs #310).
        let mut m = Miner::new(m30(), quiet(), Some(Fault::Liar));
        assert_eq!(m.apply(s(1.0), Command::PowerOff), Outcome::Ignored);
        assert_eq!(
            m.apply(s(2.0), Command::PowerLimit(Watts(2000.0))),
            Outcome::Ignored
        );
        let r = m.reading(s(60.0));
        assert_eq!((r.phase, r.power), (Phase::Mining, Watts(3400.0)));
        assert!(!r.mineroff);
        assert_eq!(m.limit(), Watts(3400.0));
    }

    #[test]
    fn r11_slow_wake_takes_the_factor_times_longer() {
        let mut m = Miner::new(m30(), quiet(), Some(Fault::SlowWake));
        m.apply(s(0.0), Command::PowerOff);
        m.apply(s(10.0), Command::PowerOn);
        // Healthy: hashing from 20 s; slow (x5): from 60 s.
        assert_eq!(m.reading(s(59.0)).phase, Phase::Waking);
        assert_eq!(m.reading(s(61.0)).phase, Phase::Ramping);
    }

    #[test]
    fn r11_restarts_on_limit_change_stops_hashing_and_wakes_again() {
        let mut m = Miner::new(m30(), quiet(), Some(Fault::RestartsOnLimitChange));
        m.apply(s(10.0), Command::PowerLimit(Watts(3000.0)));
        let r = m.reading(s(11.0));
        assert_eq!((r.phase, r.hashrate), (Phase::Waking, HashRate(0.0)));
        assert_eq!(m.reading(s(40.0)).power, Watts(3000.0));
    }

    #[test]
    fn r11_stuck_stabilizing_reports_the_limit_but_never_moves() {
        let mut m = Miner::new(m30(), quiet(), Some(Fault::StuckStabilizing));
        m.apply(s(10.0), Command::PowerLimit(Watts(2400.0)));
        assert_eq!(m.limit(), Watts(2400.0));
        let r = m.reading(s(10_000.0));
        assert_eq!((r.phase, r.power), (Phase::Stabilizing, Watts(3400.0)));
        assert!(!r.stable);
    }

    #[test]
    fn low_power_mode_caps_the_target() {
        let mut m = Miner::new(m30(), quiet(), None);
        m.apply(s(0.0), Command::PowerMode(PowerMode::Low));
        assert_eq!(m.reading(s(100.0)).power, Watts(3400.0 * 0.85));
        m.apply(s(100.0), Command::PowerMode(PowerMode::Normal));
        assert_eq!(m.reading(s(200.0)).power, Watts(3400.0));
    }

    #[test]
    fn ripple_stays_within_its_share() {
        let m = Miner::new(m30(), Dynamics::default(), None);
        for i in 0..500 {
            let p = m.reading(s(i as f64 * 0.37)).power.0;
            assert!((p - 3400.0).abs() <= 3400.0 * 0.005 + 1e-9, "{p}");
        }
    }
}
