//! The writer: appends entries, hashes them into the tree as they come, and at each
//! checkpoint writes the tiles and bundles the tree gained and a signed checkpoint.
//!
//! Crash safety: an entry is first appended to `staging` (its index, its bytes and a
//! checksum) and only integrated into tiles at a checkpoint, in an order that never
//! leaves a checkpoint without the files it covers: tiles and bundles (each written to
//! a temporary file, synced, renamed), then `checkpoints/<size>`, then `checkpoint`,
//! then the superseded partial tiles go and `staging` is emptied. So `kill -9` at any
//! moment leaves the last checkpoint and everything it covers intact; on open the
//! entries staged since are taken back, and a torn tail (the write the kill cut) is
//! detected by its length or checksum, logged and cut.
//!
//! Only each tile level's current tile is kept in memory (at most 256 hashes a level):
//! every hash the next append or a root needs lies in one of them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tlog_tiles::{
    split_stored_hash_index, stored_hash_index, stored_hashes, tree_hash, Hash, HashReader, Tile,
    HASH_SIZE,
};

use super::note::{self, SiteKey};
use super::tiles::{self, HEIGHT, MAX_ENTRY, WIDTH};
use super::LedgerError;

/// The staging file, beside the served layout.
pub const STAGING: &str = "staging";
/// Where every checkpoint is kept, by tree size.
pub const HISTORY: &str = "checkpoints";

/// An append-only, checkpointed log in a directory.
pub struct Log {
    dir: PathBuf,
    origin: String,
    key: SiteKey,
    /// Entries appended (checkpointed or staged).
    size: u64,
    /// The size of the last checkpoint.
    checkpointed: u64,
    /// Each tile level's current tile: its hashes so far.
    current: Vec<Vec<u8>>,
    /// The current entry bundle, framed.
    bundle: Vec<u8>,
    /// Full tiles and bundles completed since the last checkpoint: (path, bytes).
    completed: Vec<(String, Vec<u8>)>,
    staging: File,
    /// Whether checkpoints sync what they write (off only to build bench fixtures).
    durable: bool,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("size", &self.size)
            .field("checkpointed", &self.checkpointed)
            .finish()
    }
}

/// What opening a log found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recovered {
    /// The last checkpoint's size.
    pub checkpointed: u64,
    /// Entries taken back from staging.
    pub restaged: u64,
    /// Bytes cut from a torn staging tail.
    pub torn_bytes: u64,
}

impl Log {
    /// Opens the log in `dir` (made if missing) under `key`, its origin the key's name,
    /// and writes the verifier key beside it as `<name>.vkey`.
    pub fn open(dir: &Path, key: SiteKey) -> Result<(Log, Recovered), LedgerError> {
        let io = |p: &Path, e| LedgerError::io(p, e);
        std::fs::create_dir_all(dir.join(HISTORY)).map_err(|e| io(dir, e))?;
        let vkey_path = dir.join(format!("{}.vkey", key.name));
        if std::fs::read_to_string(&vkey_path)
            .map(|s| s.trim() != key.vkey)
            .unwrap_or(true)
        {
            write_atomic(&vkey_path, format!("{}\n", key.vkey).as_bytes())?;
        }
        let staging_path = dir.join(STAGING);
        let staging = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&staging_path)
            .map_err(|e| io(&staging_path, e))?;
        let mut log = Log {
            dir: dir.to_path_buf(),
            origin: key.name.clone(),
            key,
            size: 0,
            checkpointed: 0,
            current: Vec::new(),
            bundle: Vec::new(),
            completed: Vec::new(),
            staging,
            durable: true,
        };
        let mut found = Recovered::default();
        match std::fs::read(dir.join("checkpoint")) {
            Ok(bytes) => {
                let c =
                    note::open(&bytes, &log.key.vkey).map_err(|detail| LedgerError::Corrupt {
                        path: dir.join("checkpoint").display().to_string(),
                        detail,
                    })?;
                if c.origin != log.origin {
                    return Err(LedgerError::Corrupt {
                        path: dir.join("checkpoint").display().to_string(),
                        detail: format!(
                            "the log's origin is {:?}, the key's name {:?}",
                            c.origin, log.origin
                        ),
                    });
                }
                log.resume(c.size, c.root)?;
            }
            // No checkpoint yet: whatever tiles a crash left before the first one go.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => log.remove_beyond(),
            Err(e) => return Err(io(&dir.join("checkpoint"), e)),
        }
        found.checkpointed = log.size;
        let (restaged, torn) = log.restage(&staging_path)?;
        found.restaged = restaged;
        found.torn_bytes = torn;
        if torn > 0 {
            tracing::warn!(dir = %dir.display(), torn_bytes = torn, restaged, "The ledger's staging file ended in a torn write (a crash mid-append); cut it there");
        }
        Ok((log, found))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checkpoints without syncing: for a benchmark's throwaway fixture only, where a
    /// year of checkpoints would otherwise measure the disk.
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    pub fn checkpointed(&self) -> u64 {
        self.checkpointed
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn vkey(&self) -> &str {
        &self.key.vkey
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `entry`, staged at once; returns its index.
    pub fn append(&mut self, entry: &[u8]) -> Result<u64, LedgerError> {
        if entry.len() > MAX_ENTRY {
            return Err(LedgerError::EntryTooLong(entry.len()));
        }
        let n = self.size;
        let mut record = Vec::with_capacity(entry.len() + 20);
        record.extend_from_slice(&(entry.len() as u32).to_be_bytes());
        record.extend_from_slice(&n.to_be_bytes());
        record.extend_from_slice(entry);
        record.extend_from_slice(&checksum(n, entry));
        self.staging
            .write_all(&record)
            .map_err(|e| LedgerError::io(&self.dir.join(STAGING), e))?;
        self.integrate(entry)?;
        Ok(n)
    }

    /// Hashes `entry` in as leaf `self.size`.
    fn integrate(&mut self, entry: &[u8]) -> Result<(), LedgerError> {
        let n = self.size;
        let hashes = stored_hashes(n, entry, &*self).map_err(LedgerError::Tree)?;
        let first = stored_hash_index(0, n);
        for (k, h) in hashes.into_iter().enumerate() {
            let (level, _) = split_stored_hash_index(first + k as u64);
            if level % HEIGHT != 0 {
                continue; // inside a tile: recomputed from the tile's own hashes
            }
            let l = (level / HEIGHT) as usize;
            if self.current.len() <= l {
                self.current.resize(l + 1, Vec::new());
            }
            self.current[l].extend_from_slice(&h.0);
            if self.current[l].len() == WIDTH as usize * HASH_SIZE {
                let count = (n + 1) >> (HEIGHT as u64 * l as u64);
                let path = tiles::hash_tile(l as u8, count / WIDTH - 1, WIDTH);
                self.completed
                    .push((path, std::mem::take(&mut self.current[l])));
            }
        }
        tiles::frame(entry, &mut self.bundle);
        self.size += 1;
        if self.size % WIDTH == 0 {
            let path = tiles::bundle(self.size / WIDTH - 1, WIDTH);
            self.completed
                .push((path, std::mem::take(&mut self.bundle)));
        }
        Ok(())
    }

    /// The root of the tree as it stands.
    pub fn root(&self) -> Result<Hash, LedgerError> {
        tree_hash(self.size, self).map_err(LedgerError::Tree)
    }

    /// Writes what the tree gained since the last checkpoint and a signed checkpoint of
    /// it; returns the checkpoint. Nothing to do (and `None`) if nothing was appended.
    pub fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, LedgerError> {
        if self.size == self.checkpointed && self.dir.join("checkpoint").exists() {
            return Ok(None);
        }
        let root = self.root()?;
        let mut written: Vec<String> = Vec::new();
        for (path, bytes) in &self.completed {
            write_file(&self.dir.join(path), bytes, self.durable)?;
            written.push(path.clone());
        }
        for (l, data) in self.current.iter().enumerate() {
            if !data.is_empty() {
                let count = self.size >> (HEIGHT as u64 * l as u64);
                let path = tiles::hash_tile(l as u8, count / WIDTH, count % WIDTH);
                write_file(&self.dir.join(&path), data, self.durable)?;
                written.push(path);
            }
        }
        if self.size % WIDTH != 0 {
            let path = tiles::bundle(self.size / WIDTH, self.size % WIDTH);
            write_file(&self.dir.join(&path), &self.bundle, self.durable)?;
            written.push(path);
        }
        let signed = self.key.sign(&self.origin, self.size, root)?;
        let history = self.dir.join(HISTORY).join(self.size.to_string());
        write_file(&history, &signed, self.durable)?;
        write_file(&self.dir.join("checkpoint"), &signed, self.durable)?;
        // Only now may the partial tiles this checkpoint supersedes go.
        for path in &written {
            remove_superseded(&self.dir, path);
        }
        self.staging
            .set_len(0)
            .and_then(|_| {
                if self.durable {
                    self.staging.sync_all()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| LedgerError::io(&self.dir.join(STAGING), e))?;
        self.completed.clear();
        self.checkpointed = self.size;
        Ok(Some(signed))
    }

    /// Loads the current tiles and bundle of a checkpointed tree of `size` leaves and
    /// checks them against its `root`.
    fn resume(&mut self, size: u64, root: Hash) -> Result<(), LedgerError> {
        let mut level = 0u8;
        let mut count = size;
        while count > 0 {
            let w = count % WIDTH;
            let data = if w > 0 {
                read_prefix(
                    &self.dir,
                    |w| tiles::hash_tile(level, count / WIDTH, w),
                    w,
                    w as usize * HASH_SIZE,
                )?
            } else {
                Vec::new()
            };
            self.current.push(data);
            count /= WIDTH;
            level += 1;
        }
        let w = size % WIDTH;
        if w > 0 {
            let bytes = read_prefix(&self.dir, |w| tiles::bundle(size / WIDTH, w), w, usize::MAX)?;
            let entries = tiles::entries(&bytes).map_err(|detail| LedgerError::Corrupt {
                path: tiles::bundle(size / WIDTH, w),
                detail,
            })?;
            for e in entries.iter().take(w as usize) {
                tiles::frame(e, &mut self.bundle);
            }
            if entries.len() < w as usize {
                return Err(LedgerError::Corrupt {
                    path: tiles::bundle(size / WIDTH, w),
                    detail: format!("{} entries, the checkpoint says {w}", entries.len()),
                });
            }
        }
        self.size = size;
        self.checkpointed = size;
        let found = self.root()?;
        let last_leaf_agrees = w == 0
            || tiles::entries(&self.bundle)
                .ok()
                .and_then(|e| e.last().map(|e| tlog_tiles::record_hash(e)))
                .is_some_and(|h| self.current[0].ends_with(&h.0));
        if found != root || !last_leaf_agrees {
            return Err(LedgerError::Corrupt {
                path: self.dir.join("checkpoint").display().to_string(),
                detail: "the stored tiles do not hash to the checkpoint's root; `gridminer ledger verify` says where".into(),
            });
        }
        self.remove_beyond();
        Ok(())
    }

    /// Removes tiles and bundles a crash left beyond the checkpoint (written for one it
    /// never made): the entries they hold are staged and come back in order.
    fn remove_beyond(&self) {
        let expected: std::collections::HashSet<String> =
            tiles::paths(self.size).into_iter().collect();
        for path in super::verify::stored_files(&self.dir) {
            if !expected.contains(&path) && !super::verify::is_prefix_of(&path, self.size) {
                tracing::info!(
                    path,
                    "Removing a tile a crash left beyond the ledger's checkpoint"
                );
                let _ = std::fs::remove_file(self.dir.join(&path));
            }
        }
    }

    /// Takes back the staged entries past the checkpoint; cuts a torn tail. Returns
    /// (entries taken back, bytes cut).
    fn restage(&mut self, path: &Path) -> Result<(u64, u64), LedgerError> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| LedgerError::io(path, e))?;
        let mut at = 0usize;
        let mut taken = 0u64;
        while let Some((n, entry, next)) = staged_record(&bytes, at) {
            if n >= self.size {
                if n != self.size {
                    break; // a gap: what follows cannot be placed
                }
                self.integrate(entry)?;
                taken += 1;
            }
            at = next;
        }
        let torn = (bytes.len() - at) as u64;
        if torn > 0 {
            self.staging
                .set_len(at as u64)
                .and_then(|_| self.staging.sync_all())
                .map_err(|e| LedgerError::io(path, e))?;
        }
        Ok((taken, torn))
    }
}

/// The staged record at `at`: (index, entry, next offset), if whole and intact.
fn staged_record(bytes: &[u8], at: usize) -> Option<(u64, &[u8], usize)> {
    let head = bytes.get(at..at + 12)?;
    let len = u32::from_be_bytes(head[..4].try_into().ok()?) as usize;
    let n = u64::from_be_bytes(head[4..12].try_into().ok()?);
    if len > MAX_ENTRY {
        return None;
    }
    let entry = bytes.get(at + 12..at + 12 + len)?;
    let sum = bytes.get(at + 12 + len..at + 20 + len)?;
    (sum == checksum(n, entry)).then_some((n, entry, at + 20 + len))
}

fn checksum(n: u64, entry: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(n.to_be_bytes());
    h.update(entry);
    h.finalize()[..8].try_into().expect("8 of 32 bytes")
}

/// The first `len` bytes of the tile `path(w)` names, or of any wider one (a full tile
/// or a later partial holds the narrower's bytes first).
fn read_prefix(
    dir: &Path,
    path: impl Fn(u64) -> String,
    w: u64,
    len: usize,
) -> Result<Vec<u8>, LedgerError> {
    for width in std::iter::once(w).chain((w + 1..=WIDTH).rev()) {
        if let Ok(mut bytes) = std::fs::read(dir.join(path(width))) {
            if len != usize::MAX {
                if bytes.len() < len {
                    continue;
                }
                bytes.truncate(len);
            }
            return Ok(bytes);
        }
    }
    Err(LedgerError::Corrupt {
        path: path(w),
        detail: "missing: the checkpoint covers it".into(),
    })
}

/// Removes the other partial versions of the tile at `path` (`.../N.p/W`, or `.../N`
/// full): narrower ones this one supersedes.
fn remove_superseded(dir: &Path, path: &str) {
    let base = path.split(".p/").next().unwrap_or(path);
    let width = |p: &str| {
        p.split(".p/")
            .nth(1)
            .and_then(|w| w.parse::<u64>().ok())
            .unwrap_or(WIDTH)
    };
    let w = width(path);
    let partials = dir.join(format!("{base}.p"));
    let Ok(read) = std::fs::read_dir(&partials) else {
        return;
    };
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.parse::<u64>().is_ok_and(|old| old < w) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if w == WIDTH {
        let _ = std::fs::remove_dir(&partials);
    }
}

/// Writes `bytes` to `path` so a crash leaves the old file or the new, never half:
/// a synced temporary file renamed over it, then the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
    write_file(path, bytes, true)
}

fn write_file(path: &Path, bytes: &[u8], sync: bool) -> Result<(), LedgerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |e| LedgerError::io(path, e);
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(bytes)
        .and_then(|_| if sync { f.sync_all() } else { Ok(()) })
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if sync {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

impl HashReader for Log {
    /// The hashes at `indexes`, each in its level's current tile (the only ones an
    /// append or a root reads; anything else is a bug, reported as an error).
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&x| {
                let want = Tile::from_index(HEIGHT, x);
                let l = want.level() as usize;
                let data = self
                    .current
                    .get(l)
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
                let count = self.size >> (HEIGHT as u64 * l as u64);
                if want.level_index() != count / WIDTH || data.is_empty() {
                    return Err(tlog_tiles::Error::IndexesNotInTree);
                }
                let have = Tile::new(
                    HEIGHT,
                    l as u8,
                    count / WIDTH,
                    (data.len() / HASH_SIZE) as u32,
                    false,
                );
                have.hash_at_index(data, x)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::verify;

    fn key() -> SiteKey {
        SiteKey::parse(&note::private_key("gridminer-test", &[3u8; 32])).unwrap()
    }

    fn entry(i: u64) -> Vec<u8> {
        format!(r#"{{"i":{i},"kind":"test","v":1}}"#).into_bytes()
    }

    /// r15: a log grown over checkpoints at awkward sizes (tile and bundle edges, a
    /// second tile level) verifies at each, its root is the RFC 6962 root of its
    /// entries (recomputed here from the definition), and it resumes after a reopen.
    #[test]
    fn r15_a_log_grows_checkpoints_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, found) = Log::open(dir.path(), key()).unwrap();
        assert_eq!(found, Recovered::default());
        let mut leaves = Vec::new();
        for stop in [1u64, 255, 256, 257, 600, 65_537] {
            while log.size() < stop {
                let i = log.size();
                leaves.push(tlog_tiles::record_hash(&entry(i)));
                assert_eq!(log.append(&entry(i)).unwrap(), i);
            }
            assert_eq!(log.root().unwrap(), mth(&leaves), "at {stop}");
            log.checkpoint().unwrap().expect("a checkpoint");
            let r = verify::verify(dir.path(), log.vkey()).unwrap();
            assert_eq!(r.entries, stop);
            if stop == 600 {
                // Reopen: the tiles load, the root holds, appends carry on.
                drop(log);
                log = Log::open(dir.path(), key()).unwrap().0;
                assert_eq!(log.size(), 600);
            }
        }
        let r = verify::verify(dir.path(), log.vkey()).unwrap();
        assert_eq!(r.checkpoints, 6);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
        // Superseded partials are gone: only the latest widths remain.
        let partials: Vec<String> = verify::stored_files(dir.path())
            .into_iter()
            .filter(|p| p.contains(".p/"))
            .collect();
        assert_eq!(
            partials,
            vec!["tile/0/256.p/1", "tile/2/000.p/1", "tile/entries/256.p/1"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            "{partials:?}"
        );
    }

    /// RFC 6962 §2.1's Merkle Tree Hash, straight from its definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => tlog_tiles::EMPTY_HASH,
            1 => leaves[0],
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                tlog_tiles::node_hash(mth(&leaves[..k]), mth(&leaves[k..]))
            }
        }
    }

    /// r15: entries staged after the last checkpoint come back on open; a torn last
    /// record (a crash mid-write) is cut, logged, and the log verifies and grows on.
    #[test]
    fn r15_staged_entries_survive_a_crash_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), key()).unwrap();
        for i in 0..300 {
            log.append(&entry(i)).unwrap();
        }
        log.checkpoint().unwrap();
        for i in 300..310 {
            log.append(&entry(i)).unwrap();
        }
        drop(log); // no checkpoint: as a kill would leave it
        let staging = dir.path().join(STAGING);
        let len = std::fs::metadata(&staging).unwrap().len();
        let f = OpenOptions::new().write(true).open(&staging).unwrap();
        f.set_len(len - 5).unwrap(); // the last record torn
        let (mut log, found) = Log::open(dir.path(), key()).unwrap();
        assert_eq!(found.checkpointed, 300);
        assert_eq!(found.restaged, 9);
        assert!(found.torn_bytes > 0);
        assert_eq!(log.size(), 309);
        log.append(&entry(309)).unwrap();
        log.checkpoint().unwrap();
        let r = verify::verify(dir.path(), log.vkey()).unwrap();
        assert_eq!(r.entries, 310);
    }
}
