//! `TelemetryError`: what can go wrong at the telemetry boundary.
//!
//! A write the server refused (it answered) is kept apart from one that never reached
//! it: the first may be permanent, the second never is. `is_transient` decides whether a
//! batch is kept on disk for a retry or dropped and counted.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The write never got an answer: connection refused, reset, DNS, TLS, timeout.
    #[error("InfluxDB unreachable: {0}")]
    Unreachable(String),
    /// The server answered the write with an error status.
    #[error("InfluxDB refused the write: HTTP {status}: {text}")]
    Refused { status: u16, text: String },
    /// The on-disk buffer could not be read or written.
    #[error("telemetry buffer {}: {source}", path.display())]
    Buffer {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The metrics endpoint could not be served.
    #[error("metrics endpoint: {0}")]
    Metrics(#[source] std::io::Error),
    /// The dashboard could not be served.
    #[error("dashboard: {0}")]
    Web(#[source] std::io::Error),
    /// The InfluxDB client could not be built (TLS setup, say).
    #[error("InfluxDB client: {0}")]
    Client(String),
}

impl TelemetryError {
    /// Whether trying the same write again later may succeed. Unreachable servers,
    /// server-side errors, throttling and authentication failures (a token can be fixed
    /// without losing data) are transient; a malformed or oversized batch is not, and
    /// retrying it would block every batch behind it forever.
    pub fn is_transient(&self) -> bool {
        match self {
            TelemetryError::Unreachable(_) => true,
            TelemetryError::Refused { status, .. } => {
                matches!(status, 401 | 403 | 404 | 408 | 429) || *status >= 500
            }
            TelemetryError::Buffer { .. } => true,
            TelemetryError::Metrics(_) | TelemetryError::Web(_) | TelemetryError::Client(_) => {
                false
            }
        }
    }

    pub(crate) fn buffer(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TelemetryError::Buffer {
            path: path.into(),
            source,
        }
    }
}

impl From<influxdb2::RequestError> for TelemetryError {
    fn from(e: influxdb2::RequestError) -> Self {
        match e {
            influxdb2::RequestError::Http { status, text } => TelemetryError::Refused {
                status: status.as_u16(),
                text,
            },
            other => TelemetryError::Unreachable(other.to_string()),
        }
    }
}
