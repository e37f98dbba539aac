//! `[ledger]` of a site config: where the log lives, its key, how often it accounts
//! and checkpoints.
//!
//! ```toml
//! [ledger]
//! dir = "/var/lib/gridminer/ledger"   # served as it is by any static web server
//! key = "/var/lib/gridminer/ledger.key" # default: <dir>.key, beside (never inside) the log
//! name = "gridminer-site-1"            # default: gridminer-<site_id>; the log's origin
//! checkpoint_every = "10m"
//! account_every = "15m"                # divides an hour
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{relative_to, Problems};
use crate::units::de_opt_duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    dir: String,
    key: Option<String>,
    name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    checkpoint_every: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    account_every: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LedgerConfig {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub name: String,
    pub checkpoint_every: Duration,
    pub account_every: Duration,
}

pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_secs(600);
pub const DEFAULT_ACCOUNT_EVERY: Duration = Duration::from_secs(900);

impl LedgerConfig {
    /// The defaults for a log in `dir` of site `site`.
    pub fn new(dir: &Path, site: &str) -> Self {
        LedgerConfig {
            dir: dir.to_path_buf(),
            key: default_key(dir),
            name: default_name(site),
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            account_every: DEFAULT_ACCOUNT_EVERY,
        }
    }
}

/// `<dir>.key`: beside the log, so serving the log never serves the key.
pub fn default_key(dir: &Path) -> PathBuf {
    let mut s = dir.as_os_str().to_os_string();
    s.push(".key");
    PathBuf::from(s)
}

/// `gridminer-<site>`, with anything a key name cannot hold made `-`.
pub fn default_name(site: &str) -> String {
    let clean: String = site
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("gridminer-{clean}")
}

/// Takes `[ledger]` out of `table` (absent: no ledger). Without a `name` the name is
/// left empty for the caller to default from the site id ([`default_name`]).
pub fn validate(p: &mut Problems, table: &mut toml::Table, file: &Path) -> Option<LedgerConfig> {
    let raw: RawLedger = table.remove("ledger").and_then(|v| p.take("ledger", v))?;
    if raw.dir.is_empty() {
        p.push("ledger.dir", "empty");
        return None;
    }
    let dir = relative_to(file, &raw.dir);
    let mut c = LedgerConfig::new(&dir, "");
    c.name = String::new();
    if let Some(k) = raw.key {
        c.key = relative_to(file, &k);
        if c.key.starts_with(&dir) {
            p.push("ledger.key", format!("{k:?} is inside ledger.dir, which is served as it is: keep the private key outside"));
        }
    }
    if let Some(n) = raw.name {
        if !super::note::valid_name(&n) {
            p.push(
                "ledger.name",
                format!("{n:?}: a key name has no spaces, '+' or '/'"),
            );
        }
        c.name = n;
    }
    if let Some(d) = raw.checkpoint_every {
        if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
            p.push(
                "ledger.checkpoint_every",
                format!("{d:?} is outside 1s..=1d"),
            );
        }
        c.checkpoint_every = d;
    }
    if let Some(d) = raw.account_every {
        let ms = d.as_millis();
        if ms < 1000 || ms > 3_600_000 || 3_600_000 % ms != 0 {
            p.push(
                "ledger.account_every",
                format!("{d:?}: must divide an hour (1s..=1h), e.g. 1m, 5m, 15m"),
            );
        }
        c.account_every = d;
    }
    Some(c)
}
