//! The operator record on disk: the replay cache, so that a restart inside a token's
//! lifetime does not let a captured command be sent again, and the commands in force and
//! the last heartbeat, so that a restart (or a crash loop) never lifts a curtailment or
//! restarts the failsafe's silence clock. The only file I/O of the command channel
//! besides reading keys at config time: the live task loads the file once at start,
//! before the first decision, and saves it after every accepted command, before the
//! command acts.
//!
//! The file is JSON, `{"version": 2, "entries": [{"iss", "jti", "forget_at_ms"}, ...],
//! "commands": [{"iss", "priority", "act", "watts", "until_ms", "received_ms"}, ...],
//! "last_heartbeat_ms": …}` (a version 1 file, entries alone, is still read), replaced
//! whole on every save: written to a temporary file beside it, flushed to disk,
//! then renamed over it, so a crash or power cut leaves the old record or the new one,
//! never half of one. A missing file is an empty record (the first start).
//!
//! What a load error means is the caller's decision; the daemon treats an unreadable or
//! corrupt file as a lost record and refuses tokens issued before it started
//! (`CommandVerifier::refuse_issued_before`).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::replay::ReplayEntry;
use crate::clock::Timestamp;
use crate::signal::operator::ActiveCommand;
use crate::signal::Issuer;
use crate::signal::OperatorAction;
use crate::units::Watts;

const VERSION: u32 = 2;

/// What the file holds, as the command channel gives and takes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// Accepted `jti`s still remembered.
    pub entries: Vec<ReplayEntry>,
    /// The commands in force when it was saved.
    pub commands: Vec<ActiveCommand>,
    /// When a watched operator was last heard; `None`: never (the failsafe engages at
    /// start).
    pub last_heartbeat: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayFileError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a replay cache this version can read: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    entries: Vec<DiskEntry>,
    #[serde(default)]
    commands: Vec<DiskCommand>,
    #[serde(default)]
    last_heartbeat_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskCommand {
    iss: String,
    priority: u32,
    /// `curtail` or `setpoint`.
    act: String,
    watts: f64,
    until_ms: Option<i64>,
    received_ms: i64,
}

impl DiskCommand {
    fn from_command(c: &ActiveCommand) -> Option<Self> {
        let (act, w) = match c.action {
            OperatorAction::CurtailTo(w) | OperatorAction::CurtailBy(w) => ("curtail", w),
            OperatorAction::Setpoint(w) => ("setpoint", w),
            OperatorAction::Release => return None,
        };
        Some(DiskCommand {
            iss: c.issuer.id.clone(),
            priority: c.issuer.priority,
            act: act.into(),
            watts: w.0,
            until_ms: c.until.map(|u| u.0),
            received_ms: c.received.0,
        })
    }

    fn into_command(self) -> Result<ActiveCommand, String> {
        if !(self.watts.is_finite() && self.watts >= 0.0) {
            return Err(format!("command of {:?}: {} W", self.iss, self.watts));
        }
        let action = match self.act.as_str() {
            "curtail" => OperatorAction::CurtailTo(Watts(self.watts)),
            "setpoint" => OperatorAction::Setpoint(Watts(self.watts)),
            other => return Err(format!("command of {:?}: act {other:?}", self.iss)),
        };
        Ok(ActiveCommand {
            issuer: Issuer {
                id: self.iss,
                priority: self.priority,
            },
            action,
            until: self.until_ms.map(Timestamp),
            received: Timestamp(self.received_ms),
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskEntry {
    iss: String,
    jti: String,
    /// `ReplayEntry::forget_at`, ms since the epoch.
    forget_at_ms: i64,
}

/// Where the replay cache is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayFile {
    path: PathBuf,
}

impl ReplayFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ReplayFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record as of `now`, entries already forgotten left out; empty when the file
    /// does not exist (a first start). A file with more live entries than `capacity` did
    /// not come from a cache of that size, and is `Corrupt`.
    pub fn load(&self, now: Timestamp, capacity: usize) -> Result<Record, ReplayFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Record::default()),
            Err(source) => {
                return Err(ReplayFileError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let corrupt = |detail: String| ReplayFileError::Corrupt {
            path: self.path.clone(),
            detail,
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if !(1..=VERSION).contains(&disk.version) {
            return Err(corrupt(format!(
                "version {} (this build reads 1 to {VERSION})",
                disk.version
            )));
        }
        let live: Vec<ReplayEntry> = disk
            .entries
            .into_iter()
            .map(|e| ReplayEntry {
                issuer: e.iss,
                jti: e.jti,
                forget_at: Timestamp(e.forget_at_ms),
            })
            .filter(|e| e.forget_at > now)
            .collect();
        if live.len() > capacity {
            return Err(corrupt(format!(
                "{} live entries, more than the cache's {capacity}",
                live.len()
            )));
        }
        let commands = disk
            .commands
            .into_iter()
            .map(DiskCommand::into_command)
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        Ok(Record {
            entries: live,
            commands,
            last_heartbeat: disk.last_heartbeat_ms.map(Timestamp),
        })
    }

    /// Replaces the file with `record`, atomically (see the module doc). Creates the
    /// directory if it is missing.
    pub fn save(&self, record: &Record) -> Result<(), ReplayFileError> {
        let entries = &record.entries;
        let write_err = |source| ReplayFileError::Write {
            path: self.path.clone(),
            source,
        };
        let disk = OnDisk {
            version: VERSION,
            entries: entries
                .iter()
                .map(|e| DiskEntry {
                    iss: e.issuer.clone(),
                    jti: e.jti.clone(),
                    forget_at_ms: e.forget_at.0,
                })
                .collect(),
            commands: record
                .commands
                .iter()
                .filter_map(DiskCommand::from_command)
                .collect(),
            last_heartbeat_ms: record.last_heartbeat.map(|t| t.0),
        };
        let body = serde_json::to_vec(&disk).expect("strings and integers serialise");
        write_atomically(&self.path, &body).map_err(write_err)
    }
}

/// Replaces the file at `path` with `body` so that a crash or power cut leaves the old
/// contents or the new, never half: written to `{path}.tmp` beside it, flushed to disk,
/// then renamed over it. Creates the directory if it is missing. The replay cache and
/// the events file (`telemetry::evidence::file`) are written so.
pub fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        // On disk before the rename: otherwise a power cut can leave the new name
        // pointing at an empty file.
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself, durable. Not every filesystem can sync a directory;
        // the file is already consistent without it.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(iss: &str, jti: &str, forget_at: i64) -> ReplayEntry {
        ReplayEntry {
            issuer: iss.into(),
            jti: jti.into(),
            forget_at: Timestamp(forget_at),
        }
    }

    fn record(entries: &[ReplayEntry]) -> Record {
        Record {
            entries: entries.to_vec(),
            ..Record::default()
        }
    }

    fn entries(file: &ReplayFile, now: i64, cap: usize) -> Vec<ReplayEntry> {
        file.load(Timestamp(now), cap).unwrap().entries
    }

    #[test]
    fn saved_entries_load_back_without_the_expired_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = ReplayFile::new(dir.path().join("state/replay.json"));
        assert_eq!(
            file.load(Timestamp(0), 10).unwrap(),
            Record::default(),
            "no file: empty"
        );
        let saved = [entry("a", "1", 100), entry("b", "x\"y", 300)];
        file.save(&record(&saved)).unwrap();
        assert_eq!(entries(&file, 50, 10), saved);
        assert_eq!(entries(&file, 100, 10), [saved[1].clone()]);
        // Replaced whole, and no temporary file is left beside it.
        file.save(&record(&saved[1..])).unwrap();
        assert_eq!(entries(&file, 0, 10), [saved[1].clone()]);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["replay.json"]);
    }

    #[test]
    fn a_damaged_file_is_corrupt_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.json");
        let file = ReplayFile::new(&path);
        file.save(&record(&[entry("a", "1", 100), entry("a", "2", 100)]))
            .unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        for (what, text) in [
            ("cut short", good[..good.len() / 2].to_string()),
            ("empty", String::new()),
            (
                "another version",
                good.replace("\"version\":2", "\"version\":3"),
            ),
            (
                "an unknown field",
                good.replace("\"version\"", "\"colour\":1,\"version\""),
            ),
            ("a wrong type", good.replace("100", "\"soon\"")),
        ] {
            std::fs::write(&path, &text).unwrap();
            let err = file.load(Timestamp(0), 10).unwrap_err();
            assert!(
                matches!(err, ReplayFileError::Corrupt { .. }),
                "{what}: {err}"
            );
        }
        std::fs::write(&path, good).unwrap();
        let err = file.load(Timestamp(0), 1).unwrap_err();
        assert!(err.to_string().contains("more than the cache's 1"), "{err}");
    }

    /// Issue 9, hole 2: the commands in force and the last heartbeat come back whole.
    #[test]
    fn r9_commands_in_force_and_the_last_heartbeat_survive() {
        let dir = tempfile::tempdir().unwrap();
        let file = ReplayFile::new(dir.path().join("record.json"));
        let cmd = |id: &str, priority, action, until| ActiveCommand {
            issuer: Issuer {
                id: id.into(),
                priority,
            },
            action,
            until,
            received: Timestamp(5),
        };
        let saved = Record {
            entries: vec![entry("tso", "1", 100)],
            commands: vec![
                cmd(
                    "tso",
                    10,
                    OperatorAction::CurtailTo(Watts(0.0)),
                    Some(Timestamp(600_000)),
                ),
                cmd("agg", 1, OperatorAction::Setpoint(Watts(1500.0)), None),
            ],
            last_heartbeat: Some(Timestamp(42)),
        };
        file.save(&saved).unwrap();
        assert_eq!(file.load(Timestamp(50), 10).unwrap(), saved);
        // A version 1 file (entries alone) still reads, with no history.
        std::fs::write(
            file.path(),
            r#"{"version":1,"entries":[{"iss":"a","jti":"1","forget_at_ms":100}]}"#,
        )
        .unwrap();
        assert_eq!(
            file.load(Timestamp(0), 10).unwrap(),
            record(&[entry("a", "1", 100)])
        );
        // A command that could not have been accepted makes the file corrupt.
        let bad = std::fs::read_to_string(dir.path().join("record.json")).unwrap();
        assert!(bad.contains("version"));
        file.save(&saved).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        std::fs::write(file.path(), text.replace("\"curtail\"", "\"boost\"")).unwrap();
        assert!(matches!(
            file.load(Timestamp(0), 10),
            Err(ReplayFileError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_unreadable_or_unwritable_place_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading and replacing it both fail.
        let file = ReplayFile::new(dir.path());
        assert!(matches!(
            file.load(Timestamp(0), 10),
            Err(ReplayFileError::Read { .. })
        ));
        assert!(matches!(
            file.save(&record(&[entry("a", "1", 1)])),
            Err(ReplayFileError::Write { .. })
        ));
    }
}
