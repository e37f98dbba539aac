//! Why a command was refused: one enum, the strings the ack carries, and the counters.
//!
//! Refusals are answers, not failures of the controller: every one is counted and acked,
//! none is ever a panic. Config problems are not here: they go through
//! `crate::config::Problems` with their key paths.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a command was refused. `as_str` is what the ack's `reason` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// Larger than [`super::MAX_TOKEN_BYTES`]; not even looked at.
    TooLarge,
    /// Not a compact JWS with a JSON header and JSON claims of the right types.
    Malformed,
    /// `alg: none` or an empty signature.
    Unsigned,
    /// The header's `alg` is not the one configured for the issuing operator (alg
    /// confusion: an HS256 token for an EdDSA operator, or the reverse).
    WrongAlgorithm,
    /// The signature does not verify with the operator's key.
    BadSignature,
    /// `iss` names no configured operator.
    UnknownOperator,
    /// `aud` is not this site.
    WrongAudience,
    /// `exp` has passed (beyond the clock skew allowance).
    Expired,
    /// `iat` or `nbf` is in the future (beyond the clock skew allowance).
    NotYetValid,
    /// `exp - iat` exceeds the operator's `max_lifetime`.
    LifetimeTooLong,
    /// The operator already used this `jti`.
    Replayed,
    /// Signed before this process started while the record of accepted `jti`s was lost
    /// (its file unreadable or corrupt): it may be a replay, so it is refused. A command
    /// signed anew is accepted (see `CommandVerifier::refuse_issued_before`).
    IssuedBeforeRestart,
    /// Too many live `jti`s to remember: refused rather than risk accepting a replay.
    RateLimited,
    /// `act` is unknown or missing, or its value (`limit_w`, `setpoint_w`) is missing,
    /// negative or belongs to another action.
    BadAction,
    /// `until` is already past, or given for an action it means nothing to.
    BadUntil,
    /// `limit_w` or `setpoint_w` is beyond what the site's loads can draw at all: a limit
    /// that cannot bind is a mistake (or a trick), not a command.
    OutOfRange,
    /// It would replace or release a command of a higher-priority operator (see
    /// `signal::operator::CommandsInForce` for the authority model).
    Outranked,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 17] = [
        RefusalReason::TooLarge,
        RefusalReason::Malformed,
        RefusalReason::Unsigned,
        RefusalReason::WrongAlgorithm,
        RefusalReason::BadSignature,
        RefusalReason::UnknownOperator,
        RefusalReason::WrongAudience,
        RefusalReason::Expired,
        RefusalReason::NotYetValid,
        RefusalReason::LifetimeTooLong,
        RefusalReason::Replayed,
        RefusalReason::IssuedBeforeRestart,
        RefusalReason::RateLimited,
        RefusalReason::BadAction,
        RefusalReason::BadUntil,
        RefusalReason::OutOfRange,
        RefusalReason::Outranked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::TooLarge => "too_large",
            RefusalReason::Malformed => "malformed",
            RefusalReason::Unsigned => "unsigned",
            RefusalReason::WrongAlgorithm => "wrong_algorithm",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::UnknownOperator => "unknown_operator",
            RefusalReason::WrongAudience => "wrong_audience",
            RefusalReason::Expired => "expired",
            RefusalReason::NotYetValid => "not_yet_valid",
            RefusalReason::LifetimeTooLong => "lifetime_too_long",
            RefusalReason::Replayed => "replayed",
            RefusalReason::IssuedBeforeRestart => "issued_before_restart",
            RefusalReason::RateLimited => "rate_limited",
            RefusalReason::BadAction => "bad_action",
            RefusalReason::BadUntil => "bad_until",
            RefusalReason::OutOfRange => "out_of_range",
            RefusalReason::Outranked => "outranked",
        }
    }

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .expect("ALL lists every reason")
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused command: the reason, and the `jti` it claimed if one could be read.
///
/// The `jti` is echoed so the operator can match the ack to what it sent; on a refusal it
/// is what the token *claims*, not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operator command refused: {reason}")]
pub struct Refusal {
    pub jti: Option<String>,
    pub reason: RefusalReason,
}

/// Accepted and refused commands, per refusal reason, for export as metrics. Atomics so
/// the MQTT task can count while telemetry reads.
#[derive(Debug, Default)]
pub struct Counters {
    accepted: AtomicU64,
    refused: [AtomicU64; RefusalReason::ALL.len()],
    failsafe_engaged: AtomicU64,
}

impl Counters {
    pub fn count_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_refused(&self, reason: RefusalReason) {
        self.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
    pub fn count_failsafe(&self) {
        self.failsafe_engaged.fetch_add(1, Ordering::Relaxed);
    }
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused[reason.index()].load(Ordering::Relaxed)
    }
    /// How often the heartbeat failsafe took hold.
    pub fn failsafe_engagements(&self) -> u64 {
        self.failsafe_engaged.load(Ordering::Relaxed)
    }
    /// Every reason with its count, zeros included, in `RefusalReason::ALL` order.
    pub fn refusals(&self) -> Vec<(RefusalReason, u64)> {
        RefusalReason::ALL
            .iter()
            .map(|r| (*r, self.refused(*r)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_distinct_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in RefusalReason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
        }
    }

    #[test]
    fn counters_count_per_reason() {
        let c = Counters::default();
        c.count_refused(RefusalReason::Replayed);
        c.count_refused(RefusalReason::Replayed);
        c.count_refused(RefusalReason::Expired);
        c.count_accepted();
        assert_eq!(c.refused(RefusalReason::Replayed), 2);
        assert_eq!(c.refused(RefusalReason::Expired), 1);
        assert_eq!(c.refused(RefusalReason::Malformed), 0);
        assert_eq!(c.accepted(), 1);
        assert_eq!(c.refusals().len(), RefusalReason::ALL.len());
    }
}
