//! `CommandVerifier`: one payload in, an accepted command or a refusal out. Ties the JWS
//! check, the claims checks and the replay cache together in the order that keeps
//! unauthenticated input from touching any state: nothing is remembered until the
//! signature and every claim have passed.

use std::collections::HashMap;
use std::time::Duration;

use super::claims::{self, Limits, Order};
use super::error::{Refusal, RefusalReason};
use super::jws::{self, OperatorKey};
use super::replay::{Budget, ReplayCache, ReplayEntry};
use crate::clock::Timestamp;
use crate::signal::OperatorAction;
use crate::signal::{Issuer, Observation};
use crate::units::Watts;

/// Default lifetime limit of a command token (`exp - iat`).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(60);
/// Default allowance for the operator's clock being off ours.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(5);

/// A grid operator allowed to command this site.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// Its `iss`.
    pub id: String,
    pub key: OperatorKey,
    /// Most `exp - iat` may be.
    pub max_lifetime: Duration,
    /// Higher outranks lower (see `signal::operator::CommandsInForce`).
    pub priority: u32,
}

/// A command whose signature and claims all passed.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedCommand {
    pub jti: String,
    /// The operator's id (`iss`) and priority.
    pub issuer: Issuer,
    pub order: Order,
    /// When the order's effect ends; `None`: until replaced or released.
    pub until: Option<Timestamp>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

impl AcceptedCommand {
    /// The observation this command puts into `SiteState`, received at `at`; `None` for
    /// a heartbeat. With a heartbeat failsafe configured, apply what
    /// `HeartbeatMonitor::heard` returns instead.
    pub fn observation(&self, at: Timestamp) -> Option<Observation> {
        match self.order {
            Order::Act(action) => Some(Observation::Operator {
                issuer: self.issuer.clone(),
                action,
                until: self.until,
                at,
            }),
            Order::Heartbeat => None,
        }
    }
}

#[derive(Debug)]
pub struct CommandVerifier {
    site_id: String,
    operators: HashMap<String, Operator>,
    skew: Duration,
    replay: ReplayCache,
    /// Tokens issued before this are refused: set when the replay record was lost.
    issued_not_before: Option<Timestamp>,
    /// Most power a command may name: what the site's loads can draw at all.
    max_power: Watts,
}

impl CommandVerifier {
    /// # Panics
    /// If two operators share an id: config validation refuses that, so it is a broken
    /// invariant here, and guessing which key to trust is not an option.
    pub fn new(site_id: impl Into<String>, operators: Vec<Operator>, skew: Duration) -> Self {
        let mut by_id = HashMap::new();
        for op in operators {
            let id = op.id.clone();
            assert!(
                by_id.insert(id.clone(), op).is_none(),
                "operator {id:?} configured twice"
            );
        }
        CommandVerifier {
            site_id: site_id.into(),
            operators: by_id,
            skew,
            replay: ReplayCache::default(),
            issued_not_before: None,
            max_power: Watts(f64::INFINITY),
        }
    }

    /// Refuses (`out_of_range`) commands naming more than `max` watts: the site's loads
    /// together cannot draw more, so such a limit means nothing.
    pub fn with_max_power(mut self, max: Watts) -> Self {
        self.max_power = max;
        self
    }

    /// Replaces the replay cache (tests, or a different capacity).
    pub fn with_replay_cache(mut self, cache: ReplayCache) -> Self {
        self.replay = cache;
        self
    }

    pub fn site_id(&self) -> &str {
        &self.site_id
    }

    /// The allowance for the operator's clock being off ours.
    pub fn skew(&self) -> Duration {
        self.skew
    }

    /// The accepted `jti`s still remembered, to save.
    pub fn replay_entries(&self) -> Vec<ReplayEntry> {
        self.replay.entries()
    }

    /// Takes back a previous process's accepted `jti`s; returns how many are still live.
    pub fn restore_replay(&mut self, entries: Vec<ReplayEntry>, now: Timestamp) -> usize {
        self.replay.restore(entries, now)
    }

    /// Refuses every token whose `iat` is before `fence` (`issued_before_restart`), for
    /// when the record of accepted `jti`s was lost. With `fence` = start + skew, no token
    /// accepted before the start can pass: we never accept an `iat` more than the skew
    /// ahead of our clock. Tokens signed after the fence pass as usual, so an operator is
    /// locked out for at most the skew plus its own clock's lag.
    pub fn refuse_issued_before(&mut self, fence: Timestamp) {
        self.issued_not_before = Some(fence);
    }

    /// Checks one payload received at `now`. Never panics, whatever the bytes.
    pub fn verify(&mut self, payload: &[u8], now: Timestamp) -> Result<AcceptedCommand, Refusal> {
        let token = jws::parse(payload).map_err(|reason| Refusal { jti: None, reason })?;
        let peek = claims::peek(&token.payload);
        let refuse = |reason| Refusal {
            jti: peek.jti.clone(),
            reason,
        };
        let operator = peek
            .issuer
            .as_ref()
            .and_then(|iss| self.operators.get(iss))
            .ok_or_else(|| {
                refuse(if peek.issuer.is_some() {
                    RefusalReason::UnknownOperator
                } else {
                    RefusalReason::Malformed
                })
            })?;
        token.verify(&operator.key).map_err(refuse)?;
        let limits = Limits {
            site_id: &self.site_id,
            max_lifetime: operator.max_lifetime,
            skew: self.skew,
        };
        let c = claims::check(&token.payload, &limits, now).map_err(refuse)?;
        if self
            .issued_not_before
            .is_some_and(|fence| c.issued_at < fence)
        {
            return Err(refuse(RefusalReason::IssuedBeforeRestart));
        }
        let named = match c.order {
            Order::Act(OperatorAction::CurtailTo(w) | OperatorAction::Setpoint(w)) => Some(w),
            _ => None,
        };
        // A little over the loads' rating is rounding in the operator's tools, not a trick.
        if named.is_some_and(|w| w.0 > self.max_power.0 * (1.0 + 1e-9) + 1e-6) {
            return Err(refuse(RefusalReason::OutOfRange));
        }
        // A curtailment is never refused for capacity (see `replay`).
        let budget = match c.order {
            Order::Act(OperatorAction::CurtailTo(_) | OperatorAction::CurtailBy(_)) => {
                Budget::Always
            }
            _ => Budget::Share,
        };
        // A token stays acceptable until exp + skew; its jti must be remembered as long.
        self.replay
            .insert_with(&c.issuer, &c.jti, c.expires_at + self.skew, now, budget)
            .map_err(refuse)?;
        Ok(AcceptedCommand {
            jti: c.jti,
            issuer: Issuer {
                id: c.issuer,
                priority: operator.priority,
            },
            order: c.order,
            until: c.until,
            issued_at: c.issued_at,
            expires_at: c.expires_at,
        })
    }
}
