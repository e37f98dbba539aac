//! IN: authenticated grid-operator commands. A payload from `gridminer/{site}/cmd` goes
//! in; an accepted command (as the `Observation` to apply) or a refusal comes out, plus
//! the ack for `gridminer/{site}/cmd/ack`. Pure: no MQTT, no clock, no I/O besides
//! reading a `secret_file` at config time and [`ReplayFile`], which the live task calls
//! to keep the replay cache across restarts. The live task owns the broker.
//!
//! A command is a compact JWS (a JWT), so any JWT library can produce one:
//!
//! | claim | meaning |
//! |---|---|
//! | header `alg` | exactly the operator's configured algorithm: `EdDSA` (Ed25519) or `HS256` |
//! | `iss` | operator id (`[[operators]] id`) |
//! | `aud` | this site's id (a string, or an array that contains it) |
//! | `iat`, `exp` | NumericDate seconds; `exp - iat` at most the operator's `max_lifetime` (default 60 s) |
//! | `nbf` | optional |
//! | `jti` | unique per operator, at most 128 bytes; a second use is refused |
//! | `act` | `curtail` + `limit_w`, `setpoint` + `setpoint_w`, `release`, or `heartbeat` |
//! | `until` | optional NumericDate: when a curtail's or setpoint's effect ends |
//!
//! Time checks allow a clock skew (default 5 s) either way. Refusals carry a
//! [`RefusalReason`] and are counted in [`Counters`]; nothing a sender can put in a
//! payload makes this panic (payloads over [`MAX_TOKEN_BYTES`] are not even parsed).
//!
//! Use: build an [`OperatorCommands`] from [`config::OperatorConfig`]; for each payload
//! call [`OperatorCommands::receive`] with the commands in force (the authority check
//! needs them: see `signal::operator::CommandsInForce`) and apply the returned observations to
//! `SiteState` *before* the controller's `step` in the same iteration (so an accepted
//! curtail takes effect in the step it arrives), then publish [`Ack::new`] with the limit
//! the step decided. Call [`OperatorCommands::tick`] every step for the heartbeat
//! failsafe.
//!
//! Restarts: after every accepted command, once its observations are applied and before
//! the step that acts on it, save [`OperatorCommands::record`] (the accepted `jti`s, the
//! commands in force, the last heartbeat) with a [`ReplayFile`]; give a new process what
//! `ReplayFile::load` returns ([`OperatorCommands::restore`]) before its first decision.
//! When the file cannot be read, call [`OperatorCommands::record_lost`]: tokens signed
//! before the start are then refused (`issued_before_restart`) instead of risking a
//! replay, and mining is held at 0 W until an operator releases it.
//!
//! Layout: `jws` (split, decode, verify), `claims` (parse and check), `replay` (jti
//! cache), `replay_file` (that cache on disk), `heartbeat` (failsafe state machine),
//! `verifier` (the pipeline), `config`, `error` (reasons and counters).

mod claims;
pub mod config;
mod error;
mod heartbeat;
mod in_force;
mod jws;
mod replay;
mod replay_file;
mod verifier;

use std::sync::Arc;

use serde::Serialize;

pub use claims::{Order, MAX_JTI_LEN};
pub use config::{load_operator_config, take_operator_config, OperatorConfig, DEFAULT_STATE_DIR};
pub use error::{Counters, Refusal, RefusalReason};
pub use heartbeat::{HeartbeatConfig, HeartbeatMonitor};
pub use in_force::{ActiveCommand, CommandsInForce, Outranked};
pub use jws::{
    parse_ed25519_public_key, sign_eddsa, sign_hs256, Algorithm, HmacSecret, OperatorKey,
    MAX_TOKEN_BYTES,
};
pub use replay::{Budget, ReplayCache, ReplayEntry, DEFAULT_CAPACITY, HARD_CEILING};
pub use replay_file::{write_atomically, Record, ReplayFile, ReplayFileError};
pub use verifier::{
    AcceptedCommand, CommandVerifier, Operator, DEFAULT_MAX_LIFETIME, DEFAULT_SKEW,
};

use crate::clock::Timestamp;
use crate::signal::OperatorAction;
use crate::signal::{Issuer, Observation};
use crate::units::Watts;

/// The answer to every command, published on `gridminer/{site}/cmd/ack` as
/// `{"jti":…,"accepted":…,"reason":…,"effective_limit_w":…,"at":…}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ack {
    /// The command's `jti`; on a refusal as claimed (unverified), `null` if unreadable.
    pub jti: Option<String>,
    pub accepted: bool,
    /// `null` when accepted, else a [`RefusalReason::as_str`].
    pub reason: Option<&'static str>,
    /// The mining limit in force after this command, W, as the caller reports it; `null`
    /// when there is none.
    pub effective_limit_w: Option<Watts>,
    /// When the command was handled, RFC 3339 UTC.
    pub at: String,
}

impl Ack {
    pub fn new(
        outcome: &Result<AcceptedCommand, Refusal>,
        effective_limit: Option<Watts>,
        at: Timestamp,
    ) -> Self {
        let (jti, accepted, reason) = match outcome {
            Ok(c) => (Some(c.jti.clone()), true, None),
            Err(r) => (r.jti.clone(), false, Some(r.reason.as_str())),
        };
        Ack {
            jti,
            accepted,
            reason,
            effective_limit_w: effective_limit.filter(|w| w.is_finite()),
            at: at.to_rfc3339(),
        }
    }

    /// The JSON payload.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an Ack has only strings, bools and finite numbers")
    }
}

/// What one payload led to.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub outcome: Result<AcceptedCommand, Refusal>,
    /// What to apply to `SiteState` now, in order (the command, and the failsafe lifting
    /// when it was a watched operator's).
    pub observations: Vec<Observation>,
}

/// Who holds the cap set when the operator record was lost: any operator's release
/// ends it (priority 0 is outranked by none).
pub const RECORD_LOST_ISSUER: &str = "gridminer:record-lost";

/// The whole command channel for one site: verifier, heartbeat failsafe, counters.
#[derive(Debug)]
pub struct OperatorCommands {
    verifier: CommandVerifier,
    heartbeat: Option<HeartbeatMonitor>,
    counters: Arc<Counters>,
}

impl OperatorCommands {
    /// A channel with no history: with a heartbeat configured, the failsafe engages at
    /// the first `tick` until a watched operator is heard ([`OperatorCommands::restore`]
    /// brings a previous process's history back).
    pub fn new(site_id: impl Into<String>, config: OperatorConfig) -> Self {
        OperatorCommands {
            verifier: CommandVerifier::new(site_id, config.operators, config.clock_skew),
            heartbeat: config.heartbeat.map(|h| HeartbeatMonitor::resume(h, None)),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Refuses (`out_of_range`) commands naming more power than the site's loads can draw.
    pub fn with_max_power(mut self, max: Watts) -> Self {
        self.verifier = self.verifier.with_max_power(max);
        self
    }

    /// Verifies one payload received at `now` against the commands in force, counts the
    /// outcome, and says what to apply. Never panics.
    pub fn receive(
        &mut self,
        payload: &[u8],
        now: Timestamp,
        in_force: &CommandsInForce,
    ) -> Received {
        let outcome = self.verifier.verify(payload, now).and_then(|cmd| {
            if let Order::Act(action) = &cmd.order {
                in_force
                    .admit(&cmd.issuer, action, now)
                    .map_err(|_| Refusal {
                        jti: Some(cmd.jti.clone()),
                        reason: RefusalReason::Outranked,
                    })?;
            }
            Ok(cmd)
        });
        let mut observations = Vec::new();
        match &outcome {
            Ok(cmd) => {
                self.counters.count_accepted();
                observations.extend(cmd.observation(now));
                if let Some(h) = &mut self.heartbeat {
                    observations.extend(h.heard(cmd, now));
                }
            }
            Err(r) => self.counters.count_refused(r.reason),
        }
        Received {
            outcome,
            observations,
        }
    }

    /// What to save after an accepted command (or the failsafe engaging), before it acts.
    pub fn record(&self, in_force: &CommandsInForce) -> Record {
        Record {
            entries: self.verifier.replay_entries(),
            commands: in_force.all().to_vec(),
            last_heartbeat: self.heartbeat.as_ref().and_then(|h| h.last_heard()),
        }
    }

    /// Takes back a previous process's record at `now`: its `jti`s (returns how many are
    /// live), its last heartbeat, and the commands in force to put into `SiteState`.
    pub fn restore(&mut self, record: Record, now: Timestamp) -> (usize, CommandsInForce) {
        let live = self.verifier.restore_replay(record.entries, now);
        if let Some(h) = &mut self.heartbeat {
            *h = HeartbeatMonitor::resume(h.config().clone(), record.last_heartbeat);
        }
        (live, CommandsInForce::restore(record.commands, now))
    }

    /// The record could not be restored at `now` (the start). Tokens issued before the
    /// returned fence (`now` plus the clock skew) are refused as `issued_before_restart`,
    /// since any of them might be a replay; and since a curtailment may have been in force,
    /// the returned observation holds mining at 0 W until an operator releases it.
    pub fn record_lost(&mut self, now: Timestamp) -> (Timestamp, Observation) {
        let fence = now + self.verifier.skew();
        self.verifier.refuse_issued_before(fence);
        let hold = Observation::Operator {
            issuer: Issuer {
                id: RECORD_LOST_ISSUER.into(),
                priority: 0,
            },
            action: OperatorAction::CurtailTo(Watts::ZERO),
            until: None,
            at: now,
        };
        (fence, hold)
    }

    /// Call every controller step (and once at start, before the first decision): the
    /// failsafe cap when the heartbeats stop.
    pub fn tick(&mut self, now: Timestamp) -> Option<Observation> {
        let obs = self.heartbeat.as_mut()?.tick(now);
        if obs.is_some() {
            self.counters.count_failsafe();
        }
        obs
    }

    pub fn failsafe_engaged(&self) -> bool {
        self.heartbeat.as_ref().is_some_and(|h| h.engaged())
    }

    /// Shared counters, for telemetry.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }
}

#[cfg(test)]
mod tests;
