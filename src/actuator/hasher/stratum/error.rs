//! The Stratum client's error type: transport failures kept apart from what the pool
//! answered, and a malformed message kept apart from both.

/// What went wrong talking to a pool.
#[derive(Debug, thiserror::Error)]
pub enum StratumError {
    /// The pool address itself is unusable; retrying will not help.
    #[error("bad pool URL {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    /// TCP connect failed (refused, unreachable, DNS).
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The connection broke while in use.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The pool closed the connection.
    #[error("pool closed the connection")]
    Closed,
    /// The pool did not answer in time.
    #[error("no answer from the pool to {0} in time")]
    Timeout(&'static str),
    /// A message that is not valid Stratum (or is hostile). Counted and logged; the
    /// session carries on unless the handshake itself depended on it.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The pool understood and said no (e.g. authorisation refused).
    #[error("pool refused {what}: {message}")]
    Refused { what: &'static str, message: String },
}

impl StratumError {
    /// Whether reconnecting (with backoff) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StratumError::Url { .. } | StratumError::Refused { .. } => false,
            StratumError::Connect { .. }
            | StratumError::Io(_)
            | StratumError::Closed
            | StratumError::Timeout(_)
            | StratumError::Malformed(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_final_and_transport_is_retried() {
        assert!(!StratumError::Refused {
            what: "authorize",
            message: "bad worker".into()
        }
        .is_transient());
        assert!(StratumError::Closed.is_transient());
        assert!(StratumError::Timeout("subscribe").is_transient());
    }
}
