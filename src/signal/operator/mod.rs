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
//! call [`OperatorCommands::receive`] and apply the returned observation to `SiteState`
//! *before* the controller's `step` in the same iteration (so an accepted curtail takes
//! effect in the step it arrives), then publish [`Ack::new`] with the limit the step
//! decided. Call [`OperatorCommands::tick`] every step for the heartbeat failsafe.
//!
//! Restarts: save [`OperatorCommands::replay_entries`] with a [`ReplayFile`] after every
//! accepted command, before it acts, and give a new process what `ReplayFile::load`
//! returns ([`OperatorCommands::restore_replay`]). When the file cannot be read, call
//! [`OperatorCommands::replay_record_lost`]: tokens signed before the start are then
//! refused (`issued_before_restart`) instead of risking a replay.
//!
//! Layout: `jws` (split, decode, verify), `claims` (parse and check), `replay` (jti
//! cache), `replay_file` (that cache on disk), `heartbeat` (failsafe state machine),
//! `verifier` (the pipeline), `config`, `error` (reasons and counters).

mod claims;
pub mod config;
mod error;
mod heartbeat;
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
pub use jws::{
    parse_ed25519_public_key, sign_hs256, Algorithm, HmacSecret, OperatorKey, MAX_TOKEN_BYTES,
};
pub use replay::{ReplayCache, ReplayEntry, DEFAULT_CAPACITY};
pub use replay_file::{ReplayFile, ReplayFileError};
pub use verifier::{
    AcceptedCommand, CommandVerifier, Operator, DEFAULT_MAX_LIFETIME, DEFAULT_SKEW,
};

use crate::clock::Timestamp;
use crate::state::Observation;
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
    /// What to apply to `SiteState` now, if anything.
    pub observation: Option<Observation>,
}

/// The whole command channel for one site: verifier, heartbeat failsafe, counters.
#[derive(Debug)]
pub struct OperatorCommands {
    verifier: CommandVerifier,
    heartbeat: Option<HeartbeatMonitor>,
    counters: Arc<Counters>,
}

impl OperatorCommands {
    /// `now` starts the heartbeat clock: the operator has one `timeout` to be heard.
    pub fn new(site_id: impl Into<String>, config: OperatorConfig, now: Timestamp) -> Self {
        OperatorCommands {
            verifier: CommandVerifier::new(site_id, config.operators, config.clock_skew),
            heartbeat: config.heartbeat.map(|h| HeartbeatMonitor::new(h, now)),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Verifies one payload received at `now`, counts the outcome, and says what to
    /// apply. Never panics.
    pub fn receive(&mut self, payload: &[u8], now: Timestamp) -> Received {
        let outcome = self.verifier.verify(payload, now);
        let observation = match &outcome {
            Ok(cmd) => {
                self.counters.count_accepted();
                match &mut self.heartbeat {
                    Some(h) => h.heard(cmd, now),
                    None => cmd.observation(now),
                }
            }
            Err(r) => {
                self.counters.count_refused(r.reason);
                None
            }
        };
        Received {
            outcome,
            observation,
        }
    }

    /// The accepted `jti`s still remembered: what to save after an accepted command.
    pub fn replay_entries(&self) -> Vec<ReplayEntry> {
        self.verifier.replay_entries()
    }

    /// Takes back the `jti`s a previous process accepted; returns how many are live.
    pub fn restore_replay(&mut self, entries: Vec<ReplayEntry>, now: Timestamp) -> usize {
        self.verifier.restore_replay(entries, now)
    }

    /// The record of accepted `jti`s could not be restored at `now` (the start): from
    /// here on, tokens issued before the returned instant (`now` plus the clock skew) are
    /// refused as `issued_before_restart`, since any of them might be a replay.
    pub fn replay_record_lost(&mut self, now: Timestamp) -> Timestamp {
        let fence = now + self.verifier.skew();
        self.verifier.refuse_issued_before(fence);
        fence
    }

    /// Call every controller step: the failsafe curtailment when the heartbeats stop.
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
