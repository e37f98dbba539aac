//! `[[operators]]`, `[operator_heartbeat]` and `operator_clock_skew`: raw TOML (serde,
//! `deny_unknown_fields`) to typed values, every problem gathered with its key path.
//!
//! ```toml
//! operator_clock_skew = "5s"            # optional, default 5 s
//! operator_replay_cache = "/var/lib/gridminer/operator-replay.json"
//!                                       # optional; default DEFAULT_STATE_DIR/operator-replay-{site}.json
//! [[operators]]
//! id = "tso-north"
//! alg = "EdDSA"
//! public_key = """-----BEGIN PUBLIC KEY-----
//! MCowBQYDK2VwAyEA...
//! -----END PUBLIC KEY-----"""           # or base64 SPKI DER, or raw 32 bytes base64(url)
//! max_lifetime = "60s"                  # optional, default 60 s
//! priority = 100                        # required with more than one operator: who outranks whom
//! [[operators]]
//! id = "aggregator"
//! alg = "HS256"
//! priority = 10
//! secret_file = "aggregator.secret"     # or secret = "..."; at least 32 bytes
//! [operator_heartbeat]                  # optional
//! timeout = "90s"
//! failsafe_limit = "0 W"
//! operators = ["tso-north"]             # optional: whose messages count (default all)
//! ```
//!
//! A `secret` is its UTF-8 bytes, as PyJWT and most libraries take a string secret. A
//! `secret_file` is read relative to the config file; one trailing newline is dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::heartbeat::HeartbeatConfig;
use super::jws::{parse_ed25519_public_key, Algorithm, HmacSecret, OperatorKey};
use super::verifier::{Operator, DEFAULT_MAX_LIFETIME, DEFAULT_SKEW};
use crate::config::{relative_to, ConfigError, Problems};
use crate::units::{de_duration, de_opt_duration, de_watts, Watts};

/// Longest `max_lifetime` allowed: an accepted token's `jti` is remembered (in memory and
/// in the replay cache file) for up to this long.
pub const MAX_LIFETIME_CEILING: Duration = Duration::from_secs(3600);

/// Where the daemon keeps state by default: the systemd unit's `StateDirectory`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/gridminer";

/// Everything the operator command channel needs from config.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorConfig {
    pub operators: Vec<Operator>,
    pub heartbeat: Option<HeartbeatConfig>,
    pub clock_skew: Duration,
    /// `operator_replay_cache`, resolved against the config file; `None`: the default
    /// (see `replay_cache_path`).
    pub replay_cache: Option<PathBuf>,
}

impl OperatorConfig {
    /// The replay cache file for site `site_id`: as configured, else
    /// `DEFAULT_STATE_DIR/operator-replay-{site_id}.json` (one file per site, so two
    /// daemons on one box never share one).
    pub fn replay_cache_path(&self, site_id: &str) -> PathBuf {
        self.replay_cache.clone().unwrap_or_else(|| {
            Path::new(DEFAULT_STATE_DIR).join(format!("operator-replay-{site_id}.json"))
        })
    }
}

/// One `[[operators]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperator {
    pub id: String,
    pub alg: String,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_file: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_lifetime: Option<Duration>,
    /// Higher outranks lower; required when more than one operator is configured.
    #[serde(default)]
    pub priority: Option<u32>,
}

/// `[operator_heartbeat]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    #[serde(deserialize_with = "de_watts")]
    pub failsafe_limit: Watts,
    #[serde(default)]
    pub operators: Option<Vec<String>>,
}

/// Takes `operators`, `operator_heartbeat`, `operator_clock_skew` and
/// `operator_replay_cache` out of `table` (the rest is left for the caller, whose
/// `deny_unknown_fields` still sees it) and checks them. `file` is the config file's
/// path, for `secret_file` and the replay cache. The replay cache file need not exist
/// (a first start creates it). Problems go to `problems`;
/// the result is `None` when there were any here.
pub fn take_operator_config(
    table: &mut toml::Table,
    file: &Path,
    problems: &mut Problems,
) -> Option<OperatorConfig> {
    let before = problems.0.len();
    let raw_ops: Vec<(usize, RawOperator)> = match table.remove("operators") {
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, problems.take(&format!("operators[{i}]"), v)?)))
            .collect(),
        Some(_) => {
            problems.push("operators", "expected an array of tables ([[operators]])");
            Vec::new()
        }
        None => Vec::new(),
    };
    let mut operators = Vec::new();
    let mut ids = HashSet::new();
    let several = raw_ops.len() > 1;
    for (i, raw) in raw_ops {
        let at = format!("operators[{i}]");
        if several && raw.priority.is_none() {
            problems.push(
                format!("{at}.priority"),
                "missing: with more than one operator each needs a priority (higher outranks \
                 lower: it decides whose command another may release or replace)",
            );
        }
        if raw.id.trim().is_empty() {
            problems.push(format!("{at}.id"), "must not be empty");
        } else if !ids.insert(raw.id.clone()) {
            problems.push(
                format!("{at}.id"),
                format!("{:?} is configured twice", raw.id),
            );
        }
        if let Some(op) = operator(raw, &at, file, problems) {
            operators.push(op);
        }
    }

    let clock_skew = match table.remove("operator_clock_skew") {
        Some(v) => de_duration(v).unwrap_or_else(|e| {
            problems.push("operator_clock_skew", e.message().to_string());
            DEFAULT_SKEW
        }),
        None => DEFAULT_SKEW,
    };
    if clock_skew > Duration::from_secs(300) {
        problems.push("operator_clock_skew", "at most 5m: fix the clocks instead");
    }

    let replay_cache = match table.remove("operator_replay_cache") {
        Some(toml::Value::String(f)) if !f.trim().is_empty() => Some(relative_to(file, &f)),
        Some(_) => {
            problems.push(
                "operator_replay_cache",
                "expected a file path (where accepted command ids are kept across restarts)",
            );
            None
        }
        None => None,
    };

    let heartbeat = table.remove("operator_heartbeat").and_then(|v| {
        let raw: RawHeartbeat = problems.take("operator_heartbeat", v)?;
        heartbeat(raw, &ids, problems)
    });

    (problems.0.len() == before).then_some(OperatorConfig {
        operators,
        heartbeat,
        clock_skew,
        replay_cache,
    })
}

/// Reads a file that holds only operator settings.
pub fn load_operator_config(path: &Path) -> Result<OperatorConfig, ConfigError> {
    let mut table = crate::config::read_table(path)?;
    let mut problems = Problems::default();
    let config = take_operator_config(&mut table, path, &mut problems);
    for key in table.keys() {
        problems.push(key.clone(), "unknown key");
    }
    problems.into_result(path, config)
}

fn operator(raw: RawOperator, at: &str, file: &Path, problems: &mut Problems) -> Option<Operator> {
    let max_lifetime = raw.max_lifetime.unwrap_or(DEFAULT_MAX_LIFETIME);
    let lifetime_ok = if max_lifetime.is_zero() || max_lifetime > MAX_LIFETIME_CEILING {
        problems.push(
            format!("{at}.max_lifetime"),
            "must be more than 0 and at most 1h",
        );
        false
    } else {
        true
    };
    let key = match Algorithm::parse(&raw.alg) {
        Some(Algorithm::EdDsa) => {
            for (k, v) in [("secret", &raw.secret), ("secret_file", &raw.secret_file)] {
                if v.is_some() {
                    problems.push(
                        format!("{at}.{k}"),
                        "EdDSA takes a public_key, not a secret",
                    );
                }
            }
            match &raw.public_key {
                None => {
                    problems.push(format!("{at}.public_key"), "missing (EdDSA needs one)");
                    None
                }
                Some(text) => match parse_ed25519_public_key(text) {
                    Ok(k) => Some(OperatorKey::Ed25519(k)),
                    Err(e) => {
                        problems.push(format!("{at}.public_key"), e);
                        None
                    }
                },
            }
        }
        Some(Algorithm::Hs256) => {
            if raw.public_key.is_some() {
                problems.push(
                    format!("{at}.public_key"),
                    "HS256 takes a secret, not a public_key",
                );
            }
            let bytes = match (&raw.secret, &raw.secret_file) {
                (Some(s), None) => Some(s.as_bytes().to_vec()),
                (None, Some(f)) => match std::fs::read(relative_to(file, f)) {
                    Ok(mut b) => {
                        if b.last() == Some(&b'\n') {
                            b.pop();
                            if b.last() == Some(&b'\r') {
                                b.pop();
                            }
                        }
                        Some(b)
                    }
                    Err(e) => {
                        problems.push(
                            format!("{at}.secret_file"),
                            format!("cannot read {f:?}: {e}"),
                        );
                        None
                    }
                },
                (Some(_), Some(_)) => {
                    problems.push(
                        format!("{at}.secret"),
                        "give secret or secret_file, not both",
                    );
                    None
                }
                (None, None) => {
                    problems.push(
                        format!("{at}.secret"),
                        "missing (HS256 needs secret or secret_file)",
                    );
                    None
                }
            };
            bytes.and_then(|b| match HmacSecret::new(b) {
                Ok(s) => Some(OperatorKey::Hs256(s)),
                Err(e) => {
                    problems.push(format!("{at}.secret"), e);
                    None
                }
            })
        }
        None => {
            problems.push(
                format!("{at}.alg"),
                format!("{:?} is not supported: use \"EdDSA\" or \"HS256\"", raw.alg),
            );
            None
        }
    };
    Some(Operator {
        id: raw.id,
        key: key?,
        max_lifetime,
        priority: raw.priority.unwrap_or(0),
    })
    .filter(|_| lifetime_ok)
}

fn heartbeat(
    raw: RawHeartbeat,
    ids: &HashSet<String>,
    problems: &mut Problems,
) -> Option<HeartbeatConfig> {
    let before = problems.0.len();
    if raw.timeout.is_zero() {
        problems.push("operator_heartbeat.timeout", "must be more than 0");
    }
    if !(raw.failsafe_limit.is_finite() && raw.failsafe_limit >= Watts::ZERO) {
        problems.push("operator_heartbeat.failsafe_limit", "must be 0 W or more");
    }
    if let Some(list) = &raw.operators {
        if list.is_empty() {
            problems.push(
                "operator_heartbeat.operators",
                "empty: leave it out to watch all operators",
            );
        }
        for (i, id) in list.iter().enumerate() {
            if !ids.contains(id) {
                problems.push(
                    format!("operator_heartbeat.operators[{i}]"),
                    format!("{id:?} is no configured operator"),
                );
            }
        }
    }
    if ids.is_empty() {
        problems.push(
            "operator_heartbeat",
            "no [[operators]] to hear heartbeats from",
        );
    }
    (problems.0.len() == before).then_some(HeartbeatConfig {
        timeout: raw.timeout,
        failsafe_limit: raw.failsafe_limit,
        operators: raw.operators,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ed25519_dalek::SigningKey;

    fn public_b64() -> String {
        let vk = SigningKey::from_bytes(&[3; 32]).verifying_key();
        base64::engine::general_purpose::STANDARD.encode(vk.as_bytes())
    }

    fn check(text: &str) -> Result<OperatorConfig, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("agg.secret"),
            format!("{}\n", "s".repeat(40)),
        )
        .unwrap();
        let path = dir.path().join("site.toml");
        std::fs::write(&path, text).unwrap();
        load_operator_config(&path)
            .map_err(|e| e.problems().iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn a_full_config() {
        let text = format!(
            r#"
            operator_clock_skew = "2s"
            operator_replay_cache = "state/replay.json"
            [[operators]]
            id = "tso-north"
            alg = "EdDSA"
            public_key = "{}"
            max_lifetime = "30s"
            priority = 100
            [[operators]]
            id = "aggregator"
            alg = "HS256"
            secret_file = "agg.secret"
            priority = 10
            [operator_heartbeat]
            timeout = "90s"
            failsafe_limit = "1 kW"
            operators = ["tso-north"]
            "#,
            public_b64()
        );
        let c = check(&text).unwrap();
        assert_eq!(c.clock_skew, Duration::from_secs(2));
        assert!(c.replay_cache_path("x").ends_with("state/replay.json"));
        assert!(
            c.replay_cache.as_ref().unwrap().is_absolute(),
            "relative to the file"
        );
        assert_eq!(c.operators.len(), 2);
        assert_eq!(c.operators[0].max_lifetime, Duration::from_secs(30));
        assert_eq!(c.operators[1].max_lifetime, DEFAULT_MAX_LIFETIME);
        assert_eq!(
            c.operators[1].key,
            OperatorKey::Hs256(HmacSecret::new(vec![b's'; 40]).unwrap())
        );
        let hb = c.heartbeat.unwrap();
        assert_eq!(
            (hb.timeout, hb.failsafe_limit),
            (Duration::from_secs(90), Watts(1000.0))
        );
        // None of it is required.
        let empty = check("").unwrap();
        assert_eq!(
            empty.replay_cache_path("site-a"),
            Path::new("/var/lib/gridminer/operator-replay-site-a.json")
        );
        assert_eq!(
            (empty.operators.len(), empty.heartbeat, empty.clock_skew),
            (0, None, DEFAULT_SKEW)
        );
    }

    /// One `[[operators]]` entry with id "a", its `alg`, and more lines.
    fn op(alg: &str, more: &str) -> String {
        format!("[[operators]]\nid = \"a\"\nalg = \"{alg}\"\n{more}\n")
    }

    #[test]
    fn every_problem_with_its_key_path() {
        let key = format!("public_key = \"{}\"", public_b64());
        let secret = format!("secret = \"{}\"", "s".repeat(40));
        let cases: Vec<(String, Vec<&str>)> = vec![
            (op("none", "secret = \"x\""), vec!["operators[0].alg"]),
            (op("eddsa", &key), vec!["operators[0].alg"]),
            (
                op("HS256", "secret = \"short\""),
                vec!["operators[0].secret"],
            ),
            (op("HS256", ""), vec!["operators[0].secret"]),
            (
                op("HS256", &format!("{secret}\nsecret_file = \"agg.secret\"")),
                vec!["operators[0].secret"],
            ),
            (
                op("HS256", &format!("{secret}\n{key}")),
                vec!["operators[0].public_key"],
            ),
            (
                op("HS256", "secret_file = \"missing.secret\""),
                vec!["operators[0].secret_file"],
            ),
            (
                op("EdDSA", &format!("{key}\n{secret}")),
                vec!["operators[0].secret"],
            ),
            (op("EdDSA", ""), vec!["operators[0].public_key"]),
            (
                op("EdDSA", "public_key = \"AAAA\""),
                vec!["operators[0].public_key"],
            ),
            (
                op("EdDSA", &format!("{key}\ncolour = \"red\"")),
                vec!["operators[0].colour"],
            ),
            (
                op(
                    "EdDSA",
                    &format!("{key}\nmax_lifetime = \"2h\"\npriority = 1"),
                ) + &op("HS256", &format!("{secret}\npriority = 1")),
                vec!["operators[0].max_lifetime", "operators[1].id"],
            ),
            (
                // Two operators: who outranks whom must be said.
                op("EdDSA", &key) + &op("HS256", &secret).replace("\"a\"", "\"b\""),
                vec!["operators[0].priority", "operators[1].priority"],
            ),
            (
                format!(
                    "operator_clock_skew = \"1 fortnight\"\n{}[operator_heartbeat]\n\
                     timeout = \"0s\"\nfailsafe_limit = \"-5 W\"\noperators = [\"b\"]",
                    op("EdDSA", &key)
                ),
                vec![
                    "operator_clock_skew",
                    "operator_heartbeat.timeout",
                    "operator_heartbeat.failsafe_limit",
                    "operator_heartbeat.operators[0]",
                ],
            ),
            (
                "[operator_heartbeat]\ntimeout = \"1m\"\nfailsafe_limit = 0\nextra = 1".into(),
                // The rest is still checked (r9): no operators to hear from.
                vec!["operator_heartbeat.extra", "operator_heartbeat"],
            ),
            (
                "[operator_heartbeat]\ntimeout = \"1m\"\nfailsafe_limit = 0".into(),
                vec!["operator_heartbeat"],
            ),
            ("operators = 5".into(), vec!["operators"]),
            (
                "operator_replay_cache = 5".into(),
                vec!["operator_replay_cache"],
            ),
            ("colour = 5".into(), vec!["colour"]),
        ];
        for (text, paths) in cases {
            let problems = check(&text).expect_err(&text);
            let got: Vec<&str> = problems
                .iter()
                .map(|p| p.split(':').next().unwrap())
                .collect();
            assert_eq!(got, paths, "{text}\n{problems:#?}");
        }
    }
}
