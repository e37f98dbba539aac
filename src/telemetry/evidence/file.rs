//! The events file: every closed evidence record as one JSON line, oldest first, so that
//! `gridminer events` shows them after the fact whether or not the daemon still runs.
//!
//! ```toml
//! [events]
//! file = "/var/lib/gridminer/events-site-a.jsonl"   # default: beside the operator replay cache
//! max_bytes = "4 MiB"                                # or a number of bytes
//! ```
//!
//! Each record replaces the whole file, written atomically (temporary file, fsync,
//! rename: `signal::operator::write_atomically`), so a crash leaves the file with or
//! without the new record, never a torn line. Bounded: past `max_bytes` the oldest
//! records go (the newest always stays). Events are rare (a frequency excursion, a
//! curtailment), so rewriting a few MiB per event costs little; the runtime does it off
//! the control loop. A line that does not parse (written by hand, or by a newer version)
//! is kept as it is and reported by the reader, never dropped silently.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Record;
use crate::signal::operator::write_atomically;

/// Default bound of the events file.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 20;
/// Smallest bound accepted: a fleet's record with a timing per miner can be tens of kB.
pub const MIN_MAX_BYTES: u64 = 64 << 10;

/// `[events]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    pub file: Option<String>,
    #[serde(default, deserialize_with = "super::super::config::de_opt_bytes")]
    pub max_bytes: Option<u64>,
}

/// Where the evidence records go.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    /// As configured (resolved against the config file); `None`: beside the operator
    /// replay cache (see [`EventsConfig::path`]).
    pub file: Option<PathBuf>,
    pub max_bytes: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            file: None,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl EventsConfig {
    /// The events file of site `site`: as configured, else `events-{site}.jsonl` in the
    /// directory of the operator replay cache `replay_cache` (by default
    /// `DEFAULT_STATE_DIR`): the daemon's state lives together.
    pub fn path(&self, replay_cache: &Path, site: &str) -> PathBuf {
        self.file.clone().unwrap_or_else(|| {
            let dir = replay_cache.parent().unwrap_or(Path::new("."));
            dir.join(format!("events-{site}.jsonl"))
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventsFileError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the file holds: the records that parse, oldest first, and the lines that do not.
#[derive(Debug, Default)]
pub struct Events {
    pub records: Vec<Record>,
    /// (line number from 1, why it is not a record).
    pub bad_lines: Vec<(usize, String)>,
}

/// The events file of one site.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsFile {
    path: PathBuf,
    max_bytes: u64,
}

impl EventsFile {
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64) -> Self {
        EventsFile {
            path: path.into(),
            max_bytes,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's text; empty if it does not exist yet.
    fn text(&self) -> Result<String, EventsFileError> {
        match std::fs::read(&self.path) {
            // Lossy: a corrupted byte costs its line, not the file.
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(EventsFileError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Adds `record` as the newest line, dropping the oldest lines past the bound.
    pub fn append(&self, record: &Record) -> Result<(), EventsFileError> {
        let text = self.text()?;
        let line = serde_json::to_string(record).expect("a record serialises");
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines.push(&line);
        let size = |ls: &[&str]| ls.iter().map(|l| l.len() as u64 + 1).sum::<u64>();
        let mut first = 0;
        while first + 1 < lines.len() && size(&lines[first..]) > self.max_bytes {
            first += 1;
        }
        let mut body = lines[first..].join("\n");
        body.push('\n');
        write_atomically(&self.path, body.as_bytes()).map_err(|source| EventsFileError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Every record in the file, oldest first, and the lines that are not records.
    pub fn read(&self) -> Result<Events, EventsFileError> {
        let text = self.text()?;
        let mut events = Events::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(r) => events.records.push(r),
                Err(e) => events.bad_lines.push((i + 1, e.to_string())),
            }
        }
        // Two records closed within a moment are written by two blocking tasks, in
        // either order: the trigger says which came first.
        events.records.sort_by_key(|r| r.trigger.at);
        Ok(events)
    }
}
