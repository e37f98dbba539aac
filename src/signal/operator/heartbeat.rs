//! The heartbeat failsafe, a pure state machine: when the watched operators have sent no
//! accepted message for `timeout`, mining is capped at `failsafe_limit` until one arrives.
//!
//! Any accepted message from a watched operator counts as a heartbeat, not only
//! `act = "heartbeat"`. The failsafe is a cap of its own (`Observation::Failsafe`), kept
//! apart from the operators' commands: commands keep arriving and applying while it holds,
//! and none of them can lift it (the effective limit is the minimum of every cap), so an
//! aggregator's setpoint cannot undo what the TSO's silence set. No clock, no I/O: `now`
//! is handed in.
//!
//! Restarts: the time of the last heartbeat is part of the operator record that survives
//! restarts (see `record`), so a crash loop cannot restart the silence clock. A daemon with
//! no heartbeat history at all (first start, or a lost record) starts in the failsafe.

use std::time::Duration;

use super::verifier::AcceptedCommand;
use crate::clock::Timestamp;
use crate::signal::Observation;
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
    /// The last accepted message from a watched operator; `None`: never heard (no
    /// history), which is as good as silence.
    last_heard: Option<Timestamp>,
    engaged: bool,
}

impl HeartbeatMonitor {
    /// Resumes from the last heartbeat a previous process recorded (`None`: no history).
    /// Without a history the first `tick` engages the failsafe: after a restart the
    /// silence clock runs on from the last heartbeat, never from the start.
    pub fn resume(config: HeartbeatConfig, last_heard: Option<Timestamp>) -> Self {
        HeartbeatMonitor {
            config,
            last_heard,
            engaged: false,
        }
    }

    pub fn engaged(&self) -> bool {
        self.engaged
    }

    pub fn config(&self) -> &HeartbeatConfig {
        &self.config
    }

    /// When a watched operator was last heard, for the durable record.
    pub fn last_heard(&self) -> Option<Timestamp> {
        self.last_heard
    }

    /// An accepted command arrived at `now`. Returns `Observation::Failsafe { limit:
    /// None }` when it lifts the failsafe (a watched operator was heard), else nothing.
    pub fn heard(&mut self, cmd: &AcceptedCommand, now: Timestamp) -> Option<Observation> {
        if !self.config.watches(&cmd.issuer.id) {
            return None;
        }
        self.last_heard = Some(self.last_heard.map_or(now, |t| t.max(now)));
        if !self.engaged {
            return None;
        }
        self.engaged = false;
        Some(Observation::Failsafe {
            limit: None,
            at: now,
        })
    }

    /// Called every controller step. Returns the failsafe cap once, when the silence
    /// first reaches `timeout` (or at once, without any history).
    pub fn tick(&mut self, now: Timestamp) -> Option<Observation> {
        let silent = self
            .last_heard
            .is_none_or(|t| now.since(t) >= self.config.timeout);
        if self.engaged || !silent {
            return None;
        }
        self.engaged = true;
        Some(Observation::Failsafe {
            limit: Some(self.config.failsafe_limit),
            at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::operator::claims::Order;
    use crate::signal::Issuer;

    fn cmd(operator: &str) -> AcceptedCommand {
        AcceptedCommand {
            jti: "j".into(),
            issuer: Issuer {
                id: operator.into(),
                priority: 0,
            },
            order: Order::Heartbeat,
            until: None,
            issued_at: Timestamp(0),
            expires_at: Timestamp(0),
        }
    }

    fn cap(limit: Option<f64>, at: i64) -> Option<Observation> {
        Some(Observation::Failsafe {
            limit: limit.map(Watts),
            at: Timestamp::from_secs(at),
        })
    }

    enum Step {
        Tick(i64, Option<Observation>),
        Heard(i64, &'static str, Option<Observation>),
    }

    #[test]
    fn failsafe_engages_on_silence_and_lifts_on_resume() {
        use Step::*;
        let config = HeartbeatConfig {
            timeout: Duration::from_secs(90),
            failsafe_limit: Watts(500.0),
            operators: Some(vec!["tso".into()]),
        };
        let mut m = HeartbeatMonitor::resume(config, Some(Timestamp::from_secs(0)));
        let steps = [
            Tick(89, None),
            Heard(60, "tso", None),
            Tick(149, None),
            Tick(150, cap(Some(500.0), 150)),
            Tick(200, None),
            // An unwatched operator does not lift it.
            Heard(210, "agg", None),
            Tick(220, None),
            Heard(230, "tso", cap(None, 230)),
            Tick(319, None),
            Tick(320, cap(Some(500.0), 320)),
        ];
        for (i, s) in steps.into_iter().enumerate() {
            match s {
                Tick(t, want) => assert_eq!(m.tick(Timestamp::from_secs(t)), want, "step {i}"),
                Heard(t, op, want) => {
                    assert_eq!(m.heard(&cmd(op), Timestamp::from_secs(t)), want, "step {i}")
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
        let mut m = HeartbeatMonitor::resume(config, Some(Timestamp::from_secs(0)));
        assert!(m.tick(Timestamp::from_secs(10)).is_some());
        assert!(m.engaged());
        assert_eq!(
            m.heard(&cmd("anyone"), Timestamp::from_secs(11)),
            cap(None, 11)
        );
        assert!(!m.engaged());
    }

    /// Issue 9, hole 2: a restart under the failsafe gave a full `timeout` uncapped, and a
    /// crash loop faster than the timeout never engaged it. The silence clock now resumes
    /// from the recorded last heartbeat, and no history means the failsafe at once.
    #[test]
    fn r9_a_restart_never_restarts_the_silence_clock() {
        let config = HeartbeatConfig {
            timeout: Duration::from_secs(90),
            failsafe_limit: Watts(0.0),
            operators: None,
        };
        // Last heard at 0; restarted at 60, 80, 100: engaged at the first tick past 90.
        for (restart, want) in [(60, None), (80, None), (100, cap(Some(0.0), 100))] {
            let mut m = HeartbeatMonitor::resume(config.clone(), Some(Timestamp::from_secs(0)));
            assert_eq!(
                m.tick(Timestamp::from_secs(restart)),
                want,
                "restart at {restart}"
            );
        }
        let mut fresh = HeartbeatMonitor::resume(config, None);
        assert_eq!(fresh.tick(Timestamp::from_secs(5)), cap(Some(0.0), 5));
        assert_eq!(fresh.last_heard(), None);
        assert_eq!(
            fresh.heard(&cmd("tso"), Timestamp::from_secs(6)),
            cap(None, 6)
        );
        assert_eq!(fresh.last_heard(), Some(Timestamp::from_secs(6)));
    }
}
