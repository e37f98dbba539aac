//! The heartbeat failsafe, a pure state machine: when the watched operators have sent no
//! accepted message for `timeout`, mining is held at `failsafe_limit` until one arrives.
//!
//! Any accepted message from a watched operator counts as a heartbeat, not only
//! `act = "heartbeat"`. The monitor decides what reaches `SiteState`: while the failsafe
//! holds, commands from operators it does not watch are remembered but not applied (an
//! aggregator's setpoint must not lift a failsafe the TSO's silence set); when heartbeats
//! resume, the operator command that would be in force without the failsafe is restored
//! (or released). No clock, no I/O: `now` is handed in.

use std::time::Duration;

use super::claims::Order;
use super::verifier::AcceptedCommand;
use crate::clock::Timestamp;
use crate::policy::OperatorAction;
use crate::state::Observation;
use crate::units::Watts;

/// `[operator_heartbeat]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    /// Silence longer than this engages the failsafe.
    pub timeout: Duration,
    /// Most mining may draw while the failsafe holds, W, >= 0.
    pub failsafe_limit: Watts,
    /// Operators whose messages count; `None` means all of them.
    pub operators: Option<Vec<String>>,
}

impl HeartbeatConfig {
    fn watches(&self, operator: &str) -> bool {
        self.operators
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|i| i == operator))
    }
}

#[derive(Debug, Clone)]
pub struct HeartbeatMonitor {
    config: HeartbeatConfig,
    last_heard: Timestamp,
    engaged: bool,
    /// The operator command that would be in force without the failsafe.
    standing: Option<(OperatorAction, Option<Timestamp>)>,
}

impl HeartbeatMonitor {
    /// Starts as if a heartbeat arrived at `now`: the operator gets one `timeout` to be
    /// heard after a restart before the failsafe engages.
    pub fn new(config: HeartbeatConfig, now: Timestamp) -> Self {
        HeartbeatMonitor {
            config,
            last_heard: now,
            engaged: false,
            standing: None,
        }
    }

    pub fn engaged(&self) -> bool {
        self.engaged
    }

    /// An accepted command arrived at `now`. Returns the observation to apply to
    /// `SiteState` in this same step, if any: the command's own action normally; nothing
    /// for a plain heartbeat; while the failsafe holds, nothing for an unwatched
    /// operator, and for a watched one the restored command.
    pub fn heard(&mut self, cmd: &AcceptedCommand, now: Timestamp) -> Option<Observation> {
        if let Order::Act(action) = cmd.order {
            self.standing = match action {
                OperatorAction::Release => None,
                a => Some((a, cmd.until)),
            };
        }
        let watched = self.config.watches(&cmd.operator);
        if watched {
            self.last_heard = self.last_heard.max(now);
        }
        match (self.engaged, watched) {
            (true, false) => None,
            (true, true) => {
                self.engaged = false;
                Some(self.restore(now))
            }
            (false, _) => match cmd.order {
                Order::Act(action) => Some(Observation::Operator {
                    action,
                    until: cmd.until,
                    at: now,
                }),
                Order::Heartbeat => None,
            },
        }
    }

    /// Called every controller step. Returns the failsafe curtailment once, when the
    /// silence first exceeds `timeout`. The limit is the configured one, or the standing
    /// command's if that is stricter.
    pub fn tick(&mut self, now: Timestamp) -> Option<Observation> {
        if self.engaged || now.since(self.last_heard) < self.config.timeout {
            return None;
        }
        self.engaged = true;
        let standing = self
            .standing
            .filter(|(_, until)| until.is_none_or(|u| now < u))
            .and_then(|(a, _)| match a {
                OperatorAction::CurtailTo(w) | OperatorAction::Setpoint(w) => Some(w),
                _ => None,
            });
        let limit = match standing {
            Some(w) => w.min(self.config.failsafe_limit),
            None => self.config.failsafe_limit,
        };
        Some(Observation::Operator {
            action: OperatorAction::CurtailTo(limit),
            until: None,
            at: now,
        })
    }

    fn restore(&self, now: Timestamp) -> Observation {
        let (action, until) = match self.standing {
            Some((a, until)) if until.is_none_or(|u| now < u) => (a, until),
            _ => (OperatorAction::Release, None),
        };
        Observation::Operator {
            action,
            until,
            at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(operator: &str, order: Order, until: Option<i64>) -> AcceptedCommand {
        AcceptedCommand {
            jti: "j".into(),
            operator: operator.into(),
            order,
            until: until.map(Timestamp::from_secs),
            issued_at: Timestamp(0),
            expires_at: Timestamp(0),
        }
    }

    fn obs(action: OperatorAction, until: Option<i64>, at: i64) -> Option<Observation> {
        Some(Observation::Operator {
            action,
            until: until.map(Timestamp::from_secs),
            at: Timestamp::from_secs(at),
        })
    }

    enum Step {
        Tick(i64, Option<Observation>),
        Heard(i64, AcceptedCommand, Option<Observation>),
    }

    #[test]
    fn failsafe_engages_on_silence_and_lifts_on_resume() {
        use OperatorAction::*;
        use Step::*;
        let hb = Order::Heartbeat;
        let curtail = |w| Order::Act(CurtailTo(Watts(w)));
        let config = HeartbeatConfig {
            timeout: Duration::from_secs(90),
            failsafe_limit: Watts(500.0),
            operators: Some(vec!["tso".into()]),
        };
        let mut m = HeartbeatMonitor::new(config, Timestamp::from_secs(0));
        let steps = [
            Tick(89, None),
            Heard(60, cmd("tso", hb, None), None),
            Tick(149, None),
            // A standing curtailment above the failsafe limit.
            Heard(
                100,
                cmd("tso", curtail(800.0), Some(1000)),
                obs(CurtailTo(Watts(800.0)), Some(1000), 100),
            ),
            Tick(189, None),
            Tick(190, obs(CurtailTo(Watts(500.0)), None, 190)),
            Tick(200, None),
            // An unwatched operator neither lifts the failsafe nor overrides it...
            Heard(
                210,
                cmd("agg", Order::Act(Setpoint(Watts(900.0))), None),
                None,
            ),
            Tick(220, None),
            // ...but what it asked for is what holds once the TSO is heard again.
            Heard(
                230,
                cmd("tso", hb, None),
                obs(Setpoint(Watts(900.0)), None, 230),
            ),
            Tick(319, None),
            Tick(320, obs(CurtailTo(Watts(500.0)), None, 320)),
            Heard(
                330,
                cmd("tso", curtail(100.0), Some(1000)),
                obs(CurtailTo(Watts(100.0)), Some(1000), 330),
            ),
            // A stricter standing command is kept as the failsafe limit.
            Tick(420, obs(CurtailTo(Watts(100.0)), None, 420)),
            // ...but if it expired during the silence, resuming releases.
            Heard(1500, cmd("tso", hb, None), obs(Release, None, 1500)),
        ];
        for (i, s) in steps.into_iter().enumerate() {
            match s {
                Tick(t, want) => assert_eq!(m.tick(Timestamp::from_secs(t)), want, "step {i}"),
                Heard(t, c, want) => {
                    assert_eq!(m.heard(&c, Timestamp::from_secs(t)), want, "step {i}")
                }
            }
        }
    }

    #[test]
    fn without_an_operator_list_everyone_counts() {
        let config = HeartbeatConfig {
            timeout: Duration::from_secs(10),
            failsafe_limit: Watts(0.0),
            operators: None,
        };
        let mut m = HeartbeatMonitor::new(config, Timestamp::from_secs(0));
        assert!(m.tick(Timestamp::from_secs(10)).is_some());
        assert!(m.engaged());
        let got = m.heard(
            &cmd("anyone", Order::Heartbeat, None),
            Timestamp::from_secs(11),
        );
        assert_eq!(got, obs(OperatorAction::Release, None, 11));
        assert!(!m.engaged());
    }
}
