//! Reading a ledger back: `verify` checks all of it, `prove` and `consistency` give the
//! RFC 9162 proofs a client checks against a checkpoint, `entries` reads them.
//!
//! `verify` trusts nothing but the verifier key: every checkpoint's signature, every
//! entry (framing, canonical JSON, version), the whole tree recomputed from the
//! entries and compared byte for byte with every stored hash tile, every checkpoint's
//! root against the tree at its size, and each checkpoint's consistency with the one
//! before it (by an RFC 9162 consistency proof, checked). One flipped byte anywhere in
//! a tile, a bundle or a checkpoint changes one of these.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use base64::Engine;
use serde::Serialize;
use tlog_tiles::{
    check_record, check_tree, prove_record, prove_tree, record_hash, stored_hashes_for_record_hash,
    tree_hash, Hash, HashReader, Tile, TileHashReader, TileReader, HASH_SIZE,
};

use super::log::HISTORY;
use super::note::{self, Signed};
use super::tiles::{self, HEIGHT, WIDTH};
use super::{canonical, LedgerError, ENTRY_VERSION};

/// What a verified ledger holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub origin: String,
    pub entries: u64,
    pub root: String,
    pub checkpoints: usize,
    pub hash_tiles: usize,
    pub bundles: usize,
    /// Entries by kind.
    pub kinds: BTreeMap<String, u64>,
    /// Files beyond the checkpoint (a writer between its tiles and its checkpoint).
    pub notes: Vec<String>,
}

/// Every file under `dir/tile`, as a path relative to `dir`.
pub fn stored_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<String>) {
        let Ok(read) = std::fs::read_dir(at) else {
            return;
        };
        for e in read.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                let rel = rel.to_string_lossy().to_string();
                if !rel.rsplit('/').next().unwrap_or_default().starts_with('.') {
                    out.push(rel);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &dir.join("tile"), &mut out);
    out.sort();
    out
}

/// A parsed tile path: (level, or `None` for an entry bundle; n; width).
fn parse_path(path: &str) -> Option<(Option<u8>, u64, u64)> {
    let rest = path.strip_prefix("tile/")?;
    let (kind, rest) = rest.split_once('/')?;
    let level = if kind == "entries" {
        None
    } else {
        Some(kind.parse::<u8>().ok()?)
    };
    let (index, w) = match rest.split_once(".p/") {
        Some((i, w)) => (i, w.parse::<u64>().ok().filter(|w| (1..WIDTH).contains(w))?),
        None => (rest, WIDTH),
    };
    let mut n = 0u64;
    let parts: Vec<&str> = index.split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() {
            p.strip_prefix('x')?
        } else {
            p
        };
        if digits.len() != 3 {
            return None;
        }
        n = n
            .checked_mul(1000)?
            .checked_add(digits.parse::<u64>().ok()?)?;
    }
    let canonical = match level {
        Some(l) => tiles::hash_tile(l, n, w),
        None => tiles::bundle(n, w),
    };
    (canonical == path).then_some((level, n, w))
}

/// The width the tree of `size` leaves gives the tile at (`level`, `n`), if it has one.
fn width_in(level: Option<u8>, n: u64, size: u64) -> Option<u64> {
    let count = size >> (HEIGHT as u64 * level.unwrap_or(0) as u64);
    let w = count.saturating_sub(n * WIDTH).min(WIDTH);
    (w > 0).then_some(w)
}

/// Whether `path` is a tile or bundle of the tree of `size` leaves, or a narrower
/// (older) partial of one: a prefix it holds.
pub fn is_prefix_of(path: &str, size: u64) -> bool {
    parse_path(path)
        .is_some_and(|(level, n, w)| width_in(level, n, size).is_some_and(|have| w <= have))
}

/// Every stored hash of a tree, in memory (two per leaf).
struct Memory(Vec<Hash>);

impl HashReader for Memory {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

fn b64(h: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h.0)
}

/// Every signed checkpoint of the ledger, by size, the latest (`checkpoint`) last.
fn checkpoints(
    dir: &Path,
    vkey: &str,
    problems: &mut Vec<String>,
) -> Option<(Signed, Vec<Signed>)> {
    let latest = match std::fs::read(dir.join("checkpoint")) {
        Ok(b) => match note::open(&b, vkey) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("checkpoint: {e}"));
                return None;
            }
        },
        Err(e) => {
            problems.push(format!("checkpoint: {e}"));
            return None;
        }
    };
    let mut history = Vec::new();
    let read = std::fs::read_dir(dir.join(HISTORY))
        .map(|r| r.flatten().collect::<Vec<_>>())
        .unwrap_or_default();
    for e in read {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let path = format!("{HISTORY}/{name}");
        match std::fs::read(e.path())
            .map_err(|e| e.to_string())
            .and_then(|b| note::open(&b, vkey))
        {
            Ok(c) if c.size.to_string() == name && c.origin == latest.origin => history.push(c),
            Ok(c) => problems.push(format!(
                "{path}: names size {name} but holds a checkpoint of {} for {:?}",
                c.size, c.origin
            )),
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    }
    history.sort_by_key(|c| c.size);
    match history.last() {
        Some(last) if last.size == latest.size && last.root == latest.root => {}
        _ => problems.push(format!(
            "checkpoint: of size {}, not the last of {HISTORY}/ (every checkpoint is kept there)",
            latest.size
        )),
    }
    Some((latest, history))
}

/// Checks the whole ledger in `dir` against `vkey`. Every problem found, or a report.
pub fn verify(dir: &Path, vkey: &str) -> Result<Report, LedgerError> {
    let mut problems = Vec::new();
    let Some((latest, history)) = checkpoints(dir, vkey, &mut problems) else {
        return Err(LedgerError::Invalid(problems));
    };
    let size = latest.size;
    let mut report = Report {
        origin: latest.origin.clone(),
        entries: size,
        root: b64(&latest.root),
        checkpoints: history.len(),
        ..Report::default()
    };
    // The entries, bundle by bundle, and the tree they make.
    let mut memory = Memory(Vec::with_capacity(2 * size as usize + 64));
    let mut leaves = 0u64;
    for n in 0..size.div_ceil(WIDTH) {
        let path = tiles::bundle(n, (size - n * WIDTH).min(WIDTH));
        let entries = match read_bundle(dir, n, size) {
            Ok(e) => e,
            Err(e) => {
                problems.push(e.to_string());
                break;
            }
        };
        report.bundles += 1;
        for entry in &entries {
            if let Err(e) = check_entry(entry, &mut report.kinds) {
                problems.push(format!("entry {leaves} ({path}): {e}"));
            }
            let hashes = stored_hashes_for_record_hash(leaves, record_hash(entry), &memory)
                .map_err(LedgerError::Tree)?;
            memory.0.extend(hashes);
            leaves += 1;
        }
    }
    if leaves != size {
        return Err(LedgerError::Invalid(problems));
    }
    let root = tree_hash(size, &memory).map_err(LedgerError::Tree)?;
    if root != latest.root {
        problems.push(format!(
            "checkpoint: root {} but the entries hash to {}",
            b64(&latest.root),
            b64(&root)
        ));
    }
    // Every checkpoint: its root at its size, and consistent with the one before.
    let mut before: Option<&Signed> = None;
    for c in &history {
        if c.size > size {
            problems.push(format!(
                "{HISTORY}/{}: beyond the latest checkpoint ({size})",
                c.size
            ));
            continue;
        }
        let at = tree_hash(c.size, &memory).map_err(LedgerError::Tree)?;
        if at != c.root {
            problems.push(format!(
                "{HISTORY}/{}: root {} but the first {} entries hash to {}",
                c.size,
                b64(&c.root),
                c.size,
                b64(&at)
            ));
        }
        if let Some(b) = before.filter(|b| b.size > 0) {
            let consistent = prove_tree(c.size, b.size, &memory)
                .and_then(|p| check_tree(&p, c.size, c.root, b.size, b.root));
            if consistent.is_err() {
                problems.push(format!(
                    "{HISTORY}/{}: not consistent with {HISTORY}/{}",
                    c.size, b.size
                ));
            }
        }
        before = Some(c);
    }
    // Every stored tile: the expected ones must be there and be the tree's; any other
    // must be an older partial the tree still holds, or lie beyond the checkpoint.
    let expected: HashSet<String> = tiles::paths(size).into_iter().collect();
    let files = stored_files(dir);
    let stored: HashSet<&String> = files.iter().collect();
    for path in &expected {
        if !stored.contains(path) {
            problems.push(format!("{path}: missing (the checkpoint covers it)"));
        }
    }
    for path in &files {
        let Some((level, n, w)) = parse_path(path) else {
            problems.push(format!("{path}: not a tile path of tlog-tiles"));
            continue;
        };
        let Some(have) = width_in(level, n, size).filter(|&have| w <= have) else {
            report.notes.push(format!(
                "{path}: beyond the checkpoint (a checkpoint being written, or left by a crash)"
            ));
            continue;
        };
        let bytes = std::fs::read(dir.join(path)).unwrap_or_default();
        let ok = match level {
            Some(l) => {
                report.hash_tiles += expected.contains(path) as usize;
                let tile = Tile::new(HEIGHT, l, n, w as u32, false);
                tile.read_data(&memory).is_ok_and(|want| want == bytes)
            }
            None if w < have => {
                // An older partial bundle: the first w entries of the full one.
                let full = std::fs::read(dir.join(tiles::bundle(n, have))).unwrap_or_default();
                tiles::entries(&bytes).is_ok_and(|e| e.len() as u64 == w)
                    && full.starts_with(&bytes)
            }
            None => true, // hashed above, leaf by leaf
        };
        if !ok {
            problems.push(format!("{path}: does not match the tree the entries make"));
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(LedgerError::Invalid(problems))
    }
}

/// An entry must be canonical JSON of a version this build reads, with a kind.
fn check_entry(entry: &[u8], kinds: &mut BTreeMap<String, u64>) -> Result<(), String> {
    let v = canonical::is_canonical(entry)?;
    let version = v
        .get("v")
        .and_then(|v| v.as_u64())
        .ok_or("no version (\"v\")")?;
    if version > ENTRY_VERSION {
        return Err(format!(
            "version {version}; this gridminer reads up to {ENTRY_VERSION}"
        ));
    }
    let kind = v.get("kind").and_then(|k| k.as_str()).ok_or("no kind")?;
    *kinds.entry(kind.to_string()).or_default() += 1;
    Ok(())
}

/// The latest checkpoint as stored, unverified: (its text, what it says).
fn latest(dir: &Path) -> Result<(String, tlog_tiles::Checkpoint), LedgerError> {
    let path = dir.join("checkpoint");
    let bytes = std::fs::read(&path).map_err(|e| LedgerError::io(&path, e))?;
    let bad = |detail: String| LedgerError::Corrupt {
        path: path.display().to_string(),
        detail,
    };
    let n = signed_note::Note::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
    let c = tlog_tiles::Checkpoint::from_bytes(n.text()).map_err(|e| bad(e.to_string()))?;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), c))
}

/// Reads hash tiles from the directory; `TileHashReader` authenticates them against
/// the checkpoint's root before any hash is used.
struct DirTiles<'a>(&'a Path);

impl TileReader for DirTiles<'_> {
    fn height(&self) -> u8 {
        HEIGHT
    }
    fn read_tiles(&self, wanted: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        wanted
            .iter()
            .map(|t| {
                let (l, n, w) = (t.level(), t.level_index(), t.width() as u64);
                let mut bytes = (w..=WIDTH)
                    .find_map(|w| std::fs::read(self.0.join(tiles::hash_tile(l, n, w))).ok())
                    .ok_or(tlog_tiles::Error::InvalidTile)?;
                if bytes.len() < w as usize * HASH_SIZE {
                    return Err(tlog_tiles::Error::InvalidTile);
                }
                bytes.truncate(w as usize * HASH_SIZE);
                Ok(bytes)
            })
            .collect()
    }
    fn save_tiles(&self, _: &[Tile], _: &[Vec<u8>]) {}
}

/// An inclusion proof of entry `index` against the latest checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Inclusion {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    /// The entry's bytes, base64.
    pub entry: String,
    pub proof: Vec<String>,
    pub root: String,
    pub checkpoint: String,
}

pub fn prove(dir: &Path, index: u64) -> Result<Inclusion, LedgerError> {
    let (text, c) = latest(dir)?;
    if index >= c.size() {
        return Err(LedgerError::Usage(format!(
            "entry {index} is not in the log of {} entries",
            c.size()
        )));
    }
    let tiles = DirTiles(dir);
    let reader = TileHashReader::new(c.size(), *c.hash(), &tiles);
    let proof = prove_record(c.size(), index, &reader).map_err(LedgerError::Tree)?;
    let entry = read_entry(dir, index, c.size())?;
    let leaf = record_hash(&entry);
    check_record(&proof, c.size(), *c.hash(), index, leaf).map_err(LedgerError::Tree)?;
    Ok(Inclusion {
        index,
        tree_size: c.size(),
        leaf_hash: b64(&leaf),
        entry: base64::engine::general_purpose::STANDARD.encode(&entry),
        proof: proof.iter().map(b64).collect(),
        root: b64(c.hash()),
        checkpoint: text,
    })
}

/// A consistency proof from the tree of `from` entries to the latest checkpoint's.
#[derive(Debug, Clone, Serialize)]
pub struct Consistency {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    pub proof: Vec<String>,
    pub checkpoint: String,
}

pub fn consistency(dir: &Path, from: u64) -> Result<Consistency, LedgerError> {
    let (text, c) = latest(dir)?;
    if from == 0 || from > c.size() {
        return Err(LedgerError::Usage(format!(
            "--from must be 1..={} (the log's size)",
            c.size()
        )));
    }
    let tiles = DirTiles(dir);
    let reader = TileHashReader::new(c.size(), *c.hash(), &tiles);
    let from_root = tree_hash(from, &reader).map_err(LedgerError::Tree)?;
    let proof = prove_tree(c.size(), from, &reader).map_err(LedgerError::Tree)?;
    check_tree(&proof, c.size(), *c.hash(), from, from_root).map_err(LedgerError::Tree)?;
    Ok(Consistency {
        from,
        to: c.size(),
        from_root: b64(&from_root),
        to_root: b64(c.hash()),
        proof: proof.iter().map(b64).collect(),
        checkpoint: text,
    })
}

/// Bundle `n` of the tree of `size` entries, split into its entries.
pub fn read_bundle(dir: &Path, n: u64, size: u64) -> Result<Vec<Vec<u8>>, LedgerError> {
    let w = (size - n * WIDTH).min(WIDTH);
    let path = dir.join(tiles::bundle(n, w));
    let bytes = std::fs::read(&path).map_err(|e| LedgerError::io(&path, e))?;
    let entries = tiles::entries(&bytes).map_err(|detail| LedgerError::Corrupt {
        path: path.display().to_string(),
        detail,
    })?;
    if entries.len() as u64 != w {
        return Err(LedgerError::Corrupt {
            path: path.display().to_string(),
            detail: format!("{} entries, the checkpoint implies {w}", entries.len()),
        });
    }
    Ok(entries.into_iter().map(<[u8]>::to_vec).collect())
}

fn read_entry(dir: &Path, index: u64, size: u64) -> Result<Vec<u8>, LedgerError> {
    let mut bundle = read_bundle(dir, index / WIDTH, size)?;
    Ok(bundle.swap_remove((index % WIDTH) as usize))
}

/// The entries from `from` on, up to the latest checkpoint: (index, entry bytes).
pub fn entries(
    dir: &Path,
    from: u64,
) -> Result<impl Iterator<Item = Result<(u64, Vec<u8>), LedgerError>> + '_, LedgerError> {
    let (_, c) = latest(dir)?;
    let size = c.size();
    let mut bundle: Option<(u64, Vec<Vec<u8>>)> = None;
    Ok((from..size).map(move |i| {
        let n = i / WIDTH;
        let held = match &mut bundle {
            Some((b, e)) if *b == n => e,
            _ => &mut bundle.insert((n, read_bundle(dir, n, size)?)).1,
        };
        Ok((i, std::mem::take(&mut held[(i % WIDTH) as usize])))
    }))
}
