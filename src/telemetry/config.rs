//! `[influx]` and `[metrics]`: raw TOML shapes in, typed telemetry settings out, every
//! problem gathered with its key path through `crate::config::Problems`.
//!
//! ```toml
//! [influx]
//! url = "http://127.0.0.1:8086"      # InfluxDB 1.8+, 2.x, 3.x, or anything serving /api/v2/write
//! org = "site"
//! bucket = "gridminer"
//! token_file = "influx.token"        # or token = "..."; relative to the config file
//! batch_size = 500                   # points per write
//! flush_interval = "1s"              # longest a point waits before it is written
//! buffer_dir = "/var/lib/gridminer/telemetry"
//! buffer_max_bytes = "64 MiB"        # or a number of bytes
//!
//! [metrics]
//! listen = "127.0.0.1:9464"
//!
//! [web]                              # the read-only dashboard
//! listen = "127.0.0.1:8080"          # the default: loopback unless you say otherwise
//!
//! [events]
//! file = "events.jsonl"              # default: events-{site}.jsonl beside the operator replay cache
//! max_bytes = "4 MiB"
//! ```
//!
//! All sections are optional: without `[influx]` nothing is written, without `[metrics]`
//! no endpoint is served, without `[web]` no dashboard; the events file is always kept
//! (see `evidence::file`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::evidence::file::{EventsConfig, RawEvents, MIN_MAX_BYTES};
use crate::config::{relative_to, Problems};
use crate::units::de_opt_duration;

/// `[influx]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInflux {
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub batch_size: Option<usize>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub flush_interval: Option<Duration>,
    pub buffer_dir: String,
    #[serde(default, deserialize_with = "de_opt_bytes")]
    pub buffer_max_bytes: Option<u64>,
    /// Points the controller may queue ahead of the writer before they are dropped.
    pub channel_capacity: Option<usize>,
    /// Longest wait between retries while the server is unreachable.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub retry_max: Option<Duration>,
    /// Longest one write request may take.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
}

/// `[metrics]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: String,
}

/// `[web]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// Default [`WEB_LISTEN`]: loopback, so a dashboard is never on the network unasked.
    pub listen: Option<String>,
}

/// Where the dashboard listens when `[web]` gives no `listen`.
pub const WEB_LISTEN: &str = "127.0.0.1:8080";

/// An API token; never printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Token(none)"
        } else {
            "Token(***)"
        })
    }
}

/// Where and how the InfluxDB writer writes.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluxConfig {
    /// Base URL, `http://` or `https://`.
    pub url: String,
    pub org: String,
    pub bucket: String,
    /// Sent as `Authorization: Token <token>`; empty sends no header (InfluxDB 1.8
    /// without auth).
    pub token: Token,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub buffer_dir: PathBuf,
    pub buffer_max_bytes: u64,
    pub channel_capacity: usize,
    pub retry_max: Duration,
    pub timeout: Duration,
}

impl InfluxConfig {
    /// Settings with the defaults for everything but where to write.
    pub fn new(url: &str, org: &str, bucket: &str, buffer_dir: &Path) -> Self {
        InfluxConfig {
            url: url.into(),
            org: org.into(),
            bucket: bucket.into(),
            token: Token::default(),
            batch_size: 500,
            flush_interval: Duration::from_secs(1),
            buffer_dir: buffer_dir.into(),
            buffer_max_bytes: 64 << 20,
            channel_capacity: 4096,
            retry_max: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

/// The dashboard (`telemetry::web`): read-only, on `listen`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TelemetryConfig {
    pub influx: Option<InfluxConfig>,
    pub metrics: Option<MetricsConfig>,
    /// `[web]`: the dashboard, if served.
    pub web: Option<WebConfig>,
    /// `[events]`: where the frequency-response evidence is kept.
    pub events: EventsConfig,
}

/// Takes `[influx]`, `[metrics]` and `[events]` out of `table` and checks them. `file` is
/// the config file, against which `token_file`, `buffer_dir` and the events file are
/// resolved.
pub fn validate(p: &mut Problems, table: &mut toml::Table, file: &Path) -> TelemetryConfig {
    let influx = table
        .remove("influx")
        .and_then(|v| p.take::<RawInflux>("influx", v))
        .and_then(|raw| validate_influx(p, raw, file));
    let metrics = table
        .remove("metrics")
        .and_then(|v| p.take::<RawMetrics>("metrics", v))
        .and_then(|raw| listen_addr(p, "metrics.listen", &raw.listen, "127.0.0.1:9464"))
        .map(|listen| MetricsConfig { listen });
    let web = table
        .remove("web")
        .and_then(|v| p.take::<RawWeb>("web", v))
        .and_then(|raw| {
            let listen = raw.listen.as_deref().unwrap_or(WEB_LISTEN);
            listen_addr(p, "web.listen", listen, WEB_LISTEN)
        })
        .map(|listen| WebConfig { listen });
    let events = table
        .remove("events")
        .and_then(|v| p.take::<RawEvents>("events", v))
        .map(|raw| validate_events(p, raw, file))
        .unwrap_or_default();
    TelemetryConfig {
        influx,
        metrics,
        web,
        events,
    }
}

/// `listen` as a socket address, or a problem at `key` with an `example`.
fn listen_addr(p: &mut Problems, key: &str, listen: &str, example: &str) -> Option<SocketAddr> {
    match listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(e) => {
            p.push(
                key,
                format!("{listen:?}: {e} (expected host:port, e.g. {example})"),
            );
            None
        }
    }
}

fn validate_events(p: &mut Problems, raw: RawEvents, file: &Path) -> EventsConfig {
    let mut c = EventsConfig::default();
    if let Some(f) = raw.file {
        if f.is_empty() {
            p.push("events.file", "empty");
        }
        c.file = Some(relative_to(file, &f));
    }
    if let Some(b) = raw.max_bytes {
        if b < MIN_MAX_BYTES {
            p.push(
                "events.max_bytes",
                format!("{b} bytes: at least {MIN_MAX_BYTES} (64 KiB), one fleet's record can be tens of kB"),
            );
        }
        c.max_bytes = b;
    }
    c
}

fn validate_influx(p: &mut Problems, raw: RawInflux, file: &Path) -> Option<InfluxConfig> {
    let before = p.0.len();
    let mut c = InfluxConfig::new(
        &raw.url,
        &raw.org,
        &raw.bucket,
        &relative_to(file, &raw.buffer_dir),
    );
    // The influxdb2 client panics on a URL it cannot parse: catch it here.
    let rest = raw
        .url
        .strip_prefix("http://")
        .or_else(|| raw.url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {}
        _ => p.push(
            "influx.url",
            format!("{:?}: expected http://host[:port] or https://...", raw.url),
        ),
    }
    if raw.org.is_empty() {
        p.push("influx.org", "empty");
    }
    if raw.bucket.is_empty() {
        p.push("influx.bucket", "empty");
    }
    match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => p.push("influx.token_file", "give token or token_file, not both"),
        (Some(t), None) => c.token = Token(t),
        (None, Some(f)) => match std::fs::read_to_string(relative_to(file, &f)) {
            Ok(t) => c.token = Token(t.trim().to_string()),
            Err(e) => p.push("influx.token_file", format!("cannot read {f:?}: {e}")),
        },
        (None, None) => {}
    }
    if let Some(n) = raw.batch_size {
        if n == 0 {
            p.push("influx.batch_size", "must be at least 1");
        }
        c.batch_size = n;
    }
    if let Some(d) = raw.flush_interval {
        if d.is_zero() {
            p.push("influx.flush_interval", "must be more than 0");
        }
        c.flush_interval = d;
    }
    if let Some(b) = raw.buffer_max_bytes {
        if b == 0 {
            p.push("influx.buffer_max_bytes", "must be more than 0");
        }
        c.buffer_max_bytes = b;
    }
    if let Some(n) = raw.channel_capacity {
        if n == 0 {
            p.push("influx.channel_capacity", "must be at least 1");
        }
        c.channel_capacity = n;
    }
    if let Some(d) = raw.retry_max {
        c.retry_max = d.max(c.flush_interval);
    }
    if let Some(d) = raw.timeout {
        if d.is_zero() {
            p.push("influx.timeout", "must be more than 0");
        }
        c.timeout = d;
    }
    (p.0.len() == before).then_some(c)
}

/// Parses `"64 MiB"`, `"500kB"`, `"1 GB"` or a bare number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} does not start with a number"))?;
    let k: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (expected B, kB, MB, GB, KiB, MiB or GiB)"
            ))
        }
    };
    Ok((num * k) as u64)
}

pub(super) fn de_opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(u64),
        Str(String),
    }
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => Ok(Some(n)),
        NumOrStr::Str(s) => parse_bytes(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (TelemetryConfig, Vec<String>) {
        let mut table: toml::Table = text.parse().unwrap();
        let mut p = Problems::default();
        let c = validate(&mut p, &mut table, Path::new("/etc/gridminer/site.toml"));
        (c, p.0.iter().map(|x| x.to_string()).collect())
    }

    /// r13: an empty `[web]` serves on loopback; a bad address is a problem at its key.
    #[test]
    fn r13_the_dashboard_is_on_loopback_unless_told() {
        let (c, problems) = check("[web]\n");
        assert!(problems.is_empty(), "{problems:?}");
        let listen = c.web.expect("a dashboard").listen;
        assert!(
            listen.ip().is_loopback() && listen.port() == 8080,
            "{listen}"
        );
        let (c, _) = check("");
        assert!(c.web.is_none(), "no [web], no dashboard");
        let (c, problems) = check("[web]\nlisten = \"localhost\"\n");
        assert!(c.web.is_none());
        assert!(
            problems.len() == 1 && problems[0].starts_with("web.listen: \"localhost\""),
            "{problems:?}"
        );
        let (_, problems) = check("[web]\nport = 80\n");
        assert!(problems[0].contains("web"), "{problems:?}");
    }

    #[test]
    fn a_full_config() {
        let (c, problems) = check(
            r#"
            [influx]
            url = "https://influx.example:8086"
            org = "site"
            bucket = "gm"
            token = "s3cret"
            batch_size = 100
            flush_interval = "2s"
            buffer_dir = "buf"
            buffer_max_bytes = "1 MiB"
            [metrics]
            listen = "127.0.0.1:9464"
            "#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let i = c.influx.unwrap();
        assert_eq!(i.buffer_dir, Path::new("/etc/gridminer/buf"));
        assert_eq!(i.buffer_max_bytes, 1 << 20);
        assert_eq!(i.flush_interval, Duration::from_secs(2));
        assert_eq!(i.token, Token("s3cret".into()));
        assert!(
            !format!("{i:?}").contains("s3cret"),
            "tokens are never printed"
        );
        assert_eq!(c.metrics.unwrap().listen.port(), 9464);
    }

    #[test]
    fn every_problem_with_its_key_path() {
        // Each broken in meaning; the serde-level problems (an unknown key, a bad unit)
        // stop the section there, so they are checked one at a time below.
        let broken = r#"
            [influx]
            url = "localhost:8086"
            org = ""
            bucket = "gm"
            token = "a"
            token_file = "b"
            batch_size = 0
            buffer_dir = "buf"
            "#;
        let (c, problems) = check(&format!("{broken}[metrics]\nlisten = \"everywhere\"\n"));
        assert!(c.influx.is_none() && c.metrics.is_none());
        for key in [
            "influx.url",
            "influx.org",
            "influx.token_file",
            "influx.batch_size",
            "metrics.listen",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} in {problems:?}"
            );
        }
        for (extra, want) in [
            ("colour = \"red\"", "influx.colour: unknown field `colour`"),
            (
                "buffer_max_bytes = \"12 parsecs\"",
                "influx.buffer_max_bytes: unknown size unit",
            ),
        ] {
            let (_, problems) = check(&format!("{broken}{extra}\n"));
            let joined = problems.join("\n");
            assert!(joined.contains(want), "{want} in {joined}");
        }
    }

    /// r11: `[events]` names the file (relative to the config) and its bound; without it
    /// the file goes beside the operator replay cache; a bound too small to hold a
    /// fleet's record and an unknown key are problems with their paths.
    #[test]
    fn r11_events_section() {
        let (c, problems) = check("[events]\nfile = \"ev.jsonl\"\nmax_bytes = \"1 MiB\"");
        assert!(problems.is_empty(), "{problems:?}");
        let path = c.events.path(Path::new("/x/replay.json"), "s1");
        assert_eq!(path, Path::new("/etc/gridminer/ev.jsonl"));
        assert_eq!(c.events.max_bytes, 1 << 20);
        let (c, _) = check("");
        let path = c.events.path(
            Path::new("/var/lib/gridminer/operator-replay-s1.json"),
            "s1",
        );
        assert_eq!(path, Path::new("/var/lib/gridminer/events-s1.jsonl"));
        let (_, problems) = check("[events]\nmax_bytes = 1000");
        assert!(
            problems[0].starts_with("events.max_bytes: 1000 bytes"),
            "{problems:?}"
        );
        let (_, problems) = check("[events]\nfiel = \"x\"");
        assert!(problems[0].contains("unknown field `fiel`"), "{problems:?}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64 MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("500kB").unwrap(), 500_000);
        assert_eq!(parse_bytes("42").unwrap(), 42);
        assert!(parse_bytes("-1").is_err());
    }
}
