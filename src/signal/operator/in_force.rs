//! The commands in force: at most one per grid operator, and the rules by which
//! operators of different priority may replace or end each other's (the authority model).
//! The command channel admits with it before it acks; the state keeps it.

use serde::Serialize;

use crate::clock::Timestamp;
use crate::signal::{Issuer, OperatorAction};
use crate::units::Watts;

/// One grid operator's command in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveCommand {
    pub issuer: Issuer,
    /// `CurtailTo` or `Setpoint`: `CurtailBy` is turned into `CurtailTo` against the
    /// mining power when it arrives, and a release removes commands.
    pub action: OperatorAction,
    pub until: Option<Timestamp>,
    pub received: Timestamp,
}

impl ActiveCommand {
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// A command that would replace or release one that outranks its sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outranked by operator {by:?}")]
pub struct Outranked {
    /// The operator whose command stands in the way.
    pub by: String,
}

/// Every grid operator's command in force, at most one per operator: the authority model.
///
/// 1. A curtailment is a **cap**: every curtailment in force caps mining, whoever sent it,
///    so a curtailment is always admitted and the tightest one holds. (The policy adds the
///    other caps: import limit, surplus-only, frequency shed, failsafe, stale signals.)
/// 2. A setpoint acts only within every cap. Of several setpoints, the one of the highest
///    priority acts (of equals, the latest).
/// 3. A new command replaces its sender's own command. A setpoint also replaces setpoints
///    of equal or lower priority, and is refused (outranked) while a higher-priority
///    operator's setpoint is in force.
/// 4. A release ends its sender's own command and every command of equal or lower
///    priority; one that would end nothing while a higher-priority command is in force
///    is refused (outranked). Nothing ever ends a higher-priority operator's command but
///    that operator's release or its `until`.
///
/// Kept sorted: highest priority first, then latest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct CommandsInForce(Vec<ActiveCommand>);

impl CommandsInForce {
    /// Whether `issuer` may give `action` now; the same check [`CommandsInForce::apply`]
    /// makes, for the command channel to refuse (and ack) before anything changes.
    pub fn admit(
        &self,
        issuer: &Issuer,
        action: &OperatorAction,
        now: Timestamp,
    ) -> Result<(), Outranked> {
        let outranking = |c: &&ActiveCommand| c.issuer.priority > issuer.priority;
        let live = || self.in_force(now);
        match action {
            OperatorAction::CurtailTo(_) | OperatorAction::CurtailBy(_) => Ok(()),
            OperatorAction::Setpoint(_) => match live()
                .filter(|c| matches!(c.action, OperatorAction::Setpoint(_)))
                .find(outranking)
            {
                Some(c) => Err(Outranked {
                    by: c.issuer.id.clone(),
                }),
                None => Ok(()),
            },
            OperatorAction::Release => {
                let ends_something = live().any(|c| c.issuer.priority <= issuer.priority);
                match live().find(outranking) {
                    Some(c) if !ends_something => Err(Outranked {
                        by: c.issuer.id.clone(),
                    }),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Admits and applies a command received at `at`; `mining` is what mining was told
    /// last (a `CurtailBy` is taken off it). Nothing changes when it is refused.
    pub fn apply(
        &mut self,
        issuer: Issuer,
        action: OperatorAction,
        until: Option<Timestamp>,
        at: Timestamp,
        mining: Watts,
    ) -> Result<(), Outranked> {
        self.admit(&issuer, &action, at)?;
        self.expire(at);
        let p = issuer.priority;
        match action {
            OperatorAction::Release => self.0.retain(|c| c.issuer.priority > p),
            OperatorAction::Setpoint(_) => self.0.retain(|c| {
                c.issuer.id != issuer.id
                    && !(c.issuer.priority <= p && matches!(c.action, OperatorAction::Setpoint(_)))
            }),
            _ => self.0.retain(|c| c.issuer.id != issuer.id),
        }
        let action = match action {
            OperatorAction::Release => return Ok(()),
            OperatorAction::CurtailBy(by) => {
                OperatorAction::CurtailTo((mining - by).max(Watts::ZERO))
            }
            a => a,
        };
        // Highest priority first; among equals the newest first.
        let at_index = self.0.partition_point(|c| c.issuer.priority > p);
        self.0.insert(
            at_index,
            ActiveCommand {
                issuer,
                action,
                until,
                received: at,
            },
        );
        Ok(())
    }

    /// The commands in force at `now`, highest priority first.
    pub fn in_force(&self, now: Timestamp) -> impl Iterator<Item = &ActiveCommand> {
        self.0.iter().filter(move |c| c.in_force(now))
    }

    /// The tightest curtailment in force, and whose it is.
    pub fn curtail_cap(&self, now: Timestamp) -> Option<(Watts, &ActiveCommand)> {
        self.in_force(now)
            .filter_map(|c| match c.action {
                OperatorAction::CurtailTo(w) | OperatorAction::CurtailBy(w) => Some((w, c)),
                _ => None,
            })
            .min_by(|a, b| a.0 .0.total_cmp(&b.0 .0))
    }

    /// The setpoint that acts: the highest priority's, the newest of equals.
    pub fn setpoint(&self, now: Timestamp) -> Option<Watts> {
        self.in_force(now).find_map(|c| match c.action {
            OperatorAction::Setpoint(w) => Some(w),
            _ => None,
        })
    }

    /// Drops commands whose `until` has passed.
    pub fn expire(&mut self, now: Timestamp) {
        self.0.retain(|c| c.in_force(now));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every command held, in force or not yet expired away.
    pub fn all(&self) -> &[ActiveCommand] {
        &self.0
    }

    /// Takes back commands saved by an earlier process (see `signal::operator`'s
    /// durable record), dropping those past at `now`.
    pub fn restore(commands: Vec<ActiveCommand>, now: Timestamp) -> Self {
        let mut c: Vec<ActiveCommand> = commands.into_iter().filter(|c| c.in_force(now)).collect();
        c.sort_by(|a, b| {
            b.issuer
                .priority
                .cmp(&a.issuer.priority)
                .then(b.received.cmp(&a.received))
        });
        CommandsInForce(c)
    }
}
