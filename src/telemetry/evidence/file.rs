//! The events file: every closed evidence record as one JSON line, oldest first, so that
//! `gridminer events` shows them after the fact whether or not the daemon still runs.
//!
//! ```toml
//! [events]
//! file = "/var/lib/gridminer/events-site-a.jsonl"   # default: beside the operator replay cache
//! max_bytes = "4 MiB"                                # or a number of bytes
//! ```
//!
//! Each record is one `write(2)` of its whole line at the end of the file, then flushed
//! to disk (`fdatasync`) before the next: a frequency that flaps around `shed_below_hz`
//! can close a record a second, and each costs one small append, not a rewrite. Bounded:
//! when the next line would take the file past `max_bytes`, the file is compacted to
//! the newest records within three quarters of it (the newest always stays) and replaced
//! atomically (temporary file, fsync, rename: `signal::operator::write_atomically`), so
//! compaction costs one rewrite per quarter of the bound. A power cut in the middle of
//! an append can leave a torn last line: the reader reports it and skips it, and the
//! next append starts on a line of its own, so no whole record is ever lost to it. A
//! line that does not parse (torn, written by hand, or by a newer version) is kept as
//! it is and reported by the reader, never dropped silently. The runtime writes off the
//! control loop.

use std::io::{Read, Seek, SeekFrom, Write};
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

    /// Adds `record` as the newest line: appended, or, past the bound, with the file
    /// compacted (see the module doc).
    pub fn append(&self, record: &Record) -> Result<(), EventsFileError> {
        let mut line = serde_json::to_string(record).expect("a record serialises");
        line.push('\n');
        let write_err = |source| EventsFileError::Write {
            path: self.path.clone(),
            source,
        };
        let size = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(write_err(source)),
        };
        if size + line.len() as u64 > self.max_bytes {
            return self.compact(&line);
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(write_err)?;
        // After a torn last line (a power cut mid-append) the record starts a line of
        // its own: glued to the torn one, both would be lost.
        if size > 0 {
            let mut last = [0u8];
            f.seek(SeekFrom::End(-1)).map_err(write_err)?;
            f.read_exact(&mut last).map_err(write_err)?;
            if last[0] != b'\n' {
                line.insert(0, '\n');
            }
        }
        f.write_all(line.as_bytes()).map_err(write_err)?;
        f.sync_data().map_err(write_err)
    }

    /// Replaces the file with its newest lines within three quarters of the bound, and
    /// `line` (which always stays).
    fn compact(&self, line: &str) -> Result<(), EventsFileError> {
        let text = self.text()?;
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines.push(line.trim_end());
        let keep = self.max_bytes / 4 * 3;
        let mut size: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        let mut first = 0;
        while first + 1 < lines.len() && size > keep {
            size -= lines[first].len() as u64 + 1;
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
        // either order (one after the other: the runtime holds a lock): the trigger says
        // which came first.
        events.records.sort_by_key(|r| r.trigger.at);
        Ok(events)
    }
}
