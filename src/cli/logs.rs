//! How the process logs: to stderr, through `tracing`, filtered by `RUST_LOG` (default
//! [`DEFAULT_FILTER`]), in colour only when stderr is a terminal, and without the embedded
//! broker's per-connection noise at ERROR.
//!
//! Colours: ANSI escapes in a log that goes to journald, a file or a pipe are garbage
//! there (`journalctl` shows `ESC[2m...`), so they are written only to a terminal, and
//! never with `NO_COLOR` set.
//!
//! The broker: rumqttd logs every client that goes away without a clean DISCONNECT, every
//! connect that fails (a port scan, a wrong password, a health check opening a TCP
//! socket) at ERROR. On an edge box an ERROR must mean the daemon needs a look, so those
//! events ([`BROKER_NOISE`]) count as DEBUG: they appear only where the filter enables
//! DEBUG for their target (`RUST_LOG=rumqttd=debug`). rumqttd's other errors (its
//! listener failing, say) stay errors.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The filter without `RUST_LOG`: info, and the embedded broker's own info lines (each
/// client's connection, subscription and disconnection) only from WARN up.
pub const DEFAULT_FILTER: &str = "info,rumqttd=warn";

/// rumqttd's per-connection events logged at ERROR or WARN: (target, start of the
/// message). Matched against rumqttd 0.20 (`server/broker.rs`, `router/routing.rs`).
pub const BROKER_NOISE: &[(&str, &str)] = &[
    // A TCP connection that never became an MQTT session (closed, garbage, bad login).
    (
        "rumqttd::server::broker",
        "Error while handling MQTT connect packet",
    ),
    ("rumqttd::server::broker", "Remote link error"),
    ("rumqttd::server::broker", "Tls accept error"),
    // A session's end: the client went away (reset, timeout) or the router dropped it.
    ("rumqttd::server::broker", "disconnected"),
    ("rumqttd::server::broker", "connection-stop"),
    ("rumqttd::server::broker", "router-drop"),
    ("rumqttd::router::routing", "no-connection id"),
    (
        "rumqttd::router::routing",
        "Connection is already disconnected",
    ),
];

/// Installs the process's subscriber. Call once, first thing in `main`.
pub fn init() {
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let directives = env.as_deref().unwrap_or(DEFAULT_FILTER);
    let (filter, bad) = match EnvFilter::try_new(directives) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some(e)),
    };
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    tracing_subscriber::registry()
        .with(filter)
        .with(BrokerNoise::new(directives))
        .with(fmt)
        .init();
    if let Some(error) = bad {
        tracing::warn!(%error, rust_log = directives, default = DEFAULT_FILTER, "RUST_LOG does not parse; logging with the default filter");
    }
}

/// Holds back [`BROKER_NOISE`] unless the filter enables DEBUG for its target.
pub struct BrokerNoise {
    /// The filter's directives as targets and levels, to ask whether DEBUG is enabled
    /// for a target; `None` where they use more than that (span or field filters), and
    /// then the noise is held back.
    debug: Option<Targets>,
}

impl BrokerNoise {
    /// For the filter `directives` (`RUST_LOG` syntax).
    pub fn new(directives: &str) -> Self {
        BrokerNoise {
            debug: Targets::from_str(directives).ok(),
        }
    }

    /// Whether an event of `target` at `level` with `message` is let through.
    pub fn lets_through(&self, target: &str, level: &Level, message: &str) -> bool {
        // More verbose levels compare greater: INFO and below are never noise.
        if *level > Level::WARN || !target.starts_with("rumqttd") {
            return true;
        }
        let noise = BROKER_NOISE
            .iter()
            .any(|(t, m)| target == *t && message.starts_with(m));
        !noise
            || self
                .debug
                .as_ref()
                .is_some_and(|t| t.would_enable(target, &Level::DEBUG))
    }
}

impl<S: Subscriber> Layer<S> for BrokerNoise {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::WARN || !meta.target().starts_with("rumqttd") {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.lets_through(meta.target(), meta.level(), &message.0)
    }
}

/// An event's `message` field, as written.
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            use std::fmt::Write as _;
            // `format_args!` messages print as written through Debug.
            let _ = write!(self.0, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_noise_is_debug_and_other_broker_errors_stay() {
        let broker = "rumqttd::server::broker";
        let default = BrokerNoise::new(DEFAULT_FILTER);
        let e = Level::ERROR;
        assert!(!default.lets_through(broker, &e, "Error while handling MQTT connect packet"));
        assert!(!default.lets_through(broker, &e, "disconnected"));
        assert!(!default.lets_through(
            "rumqttd::router::routing",
            &e,
            "no-connection id 3 is already gone"
        ));
        // The broker's listener failing is news.
        assert!(default.lets_through(broker, &e, "Server error - V4"));
        // Our own errors, whatever they say.
        assert!(default.lets_through("gridminer::runtime", &e, "disconnected"));
        // RUST_LOG still decides: asked for the broker's debug, its noise shows.
        for shown in [
            "debug",
            "rumqttd=debug",
            "warn,rumqttd::server::broker=trace",
        ] {
            let n = BrokerNoise::new(shown);
            assert!(n.lets_through(broker, &e, "disconnected"), "{shown}");
        }
        for hidden in ["warn", "info,gridminer=debug", "rumqttd=info"] {
            let n = BrokerNoise::new(hidden);
            assert!(!n.lets_through(broker, &e, "disconnected"), "{hidden}");
        }
    }
}
