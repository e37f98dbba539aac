//! The replay cache on disk, so that a restart inside a token's lifetime does not let a
//! captured command be sent again. The only file I/O of the command channel besides
//! reading keys at config time: the live task loads the file once at start and saves it
//! after every accepted command, before the command acts.
//!
//! The file is JSON, `{"version": 1, "entries": [{"iss", "jti", "forget_at_ms"}, ...]}`,
//! replaced whole on every save: written to a temporary file beside it, flushed to disk,
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

const VERSION: u32 = 1;

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

    /// The entries still live at `now`; none when the file does not exist. A file with
    /// more live entries than `capacity` did not come from a cache of that size, and is
    /// `Corrupt`.
    pub fn load(
        &self,
        now: Timestamp,
        capacity: usize,
    ) -> Result<Vec<ReplayEntry>, ReplayFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
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
        if disk.version != VERSION {
            return Err(corrupt(format!(
                "version {} (this build reads {VERSION})",
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
        Ok(live)
    }

    /// Replaces the file with `entries`, atomically (see the module doc). Creates the
    /// directory if it is missing.
    pub fn save(&self, entries: &[ReplayEntry]) -> Result<(), ReplayFileError> {
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
        };
        let body = serde_json::to_vec(&disk).expect("strings and integers serialise");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(write_err)?;
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            // On disk before the rename: otherwise a power cut can leave the new name
            // pointing at an empty file.
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The rename itself, durable. Not every filesystem can sync a directory;
            // the record is already consistent without it.
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(write_err)
    }
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

    #[test]
    fn saved_entries_load_back_without_the_expired_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = ReplayFile::new(dir.path().join("state/replay.json"));
        assert_eq!(file.load(Timestamp(0), 10).unwrap(), [], "no file: empty");
        let saved = [entry("a", "1", 100), entry("b", "x\"y", 300)];
        file.save(&saved).unwrap();
        assert_eq!(file.load(Timestamp(50), 10).unwrap(), saved);
        assert_eq!(file.load(Timestamp(100), 10).unwrap(), [saved[1].clone()]);
        // Replaced whole, and no temporary file is left beside it.
        file.save(&saved[1..]).unwrap();
        assert_eq!(file.load(Timestamp(0), 10).unwrap(), [saved[1].clone()]);
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
        file.save(&[entry("a", "1", 100), entry("a", "2", 100)])
            .unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        for (what, text) in [
            ("cut short", good[..good.len() / 2].to_string()),
            ("empty", String::new()),
            (
                "another version",
                good.replace("\"version\":1", "\"version\":2"),
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
            file.save(&[entry("a", "1", 1)]),
            Err(ReplayFileError::Write { .. })
        ));
    }
}
