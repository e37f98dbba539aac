//! The on-disk buffer: batches that could not be written wait here, in order, as
//! append-only segment files of line protocol under one folder.
//!
//! Segments are named by a sequence number (`000000000042.lp`); the oldest is replayed
//! first and deleted only after the server accepted it, so a crash between write and
//! delete repeats a batch (harmless: same points, same timestamps) but never loses one.
//! Data left by a previous run is picked up at `open`. The total size is bounded by
//! `max_bytes`: to make room, whole oldest segments are dropped, their points counted and
//! logged at warn. Must not: talk to the network, or block for longer than a file write.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::TelemetryError;

const EXT: &str = "lp";

/// One segment file.
#[derive(Debug, Clone)]
struct Segment {
    seq: u64,
    bytes: u64,
    lines: u64,
}

/// What `append` had to drop to stay within the bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub points: u64,
    pub bytes: u64,
}

/// A bounded, ordered queue of line-protocol batches on disk.
#[derive(Debug)]
pub struct Buffer {
    dir: PathBuf,
    max_bytes: u64,
    /// A segment is closed once it reaches this size, so replay sends bounded requests and
    /// dropping one segment frees a bounded part of the buffer.
    segment_bytes: u64,
    /// Oldest first. The last one is open for appends unless `open_tail` is false.
    segments: Vec<Segment>,
    open_tail: bool,
    next_seq: u64,
}

impl Buffer {
    /// Opens (creating) the folder and indexes the segments a previous run left. A
    /// segment cut off mid-line by a crash is truncated to its last whole line.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, TelemetryError> {
        let err = |e| TelemetryError::buffer(dir, e);
        fs::create_dir_all(dir).map_err(err)?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir).map_err(err)? {
            let path = entry.map_err(err)?.path();
            let Some(seq) = seq_of(&path) else { continue };
            let mut text = fs::read(&path).map_err(|e| TelemetryError::buffer(&path, e))?;
            if let Some(cut) = text.iter().rposition(|&b| b == b'\n').map(|i| i + 1) {
                if cut < text.len() {
                    text.truncate(cut);
                    fs::write(&path, &text).map_err(|e| TelemetryError::buffer(&path, e))?;
                }
            } else {
                // Not even one whole line: nothing to deliver.
                fs::remove_file(&path).map_err(|e| TelemetryError::buffer(&path, e))?;
                continue;
            }
            segments.push(Segment {
                seq,
                bytes: text.len() as u64,
                lines: count_lines(&text),
            });
        }
        segments.sort_by_key(|s| s.seq);
        let next_seq = segments.last().map_or(0, |s| s.seq + 1);
        Ok(Buffer {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(1, 1 << 20),
            segments,
            // Never append to a file a previous run wrote: it may be mid-replay.
            open_tail: false,
            next_seq,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Points waiting on disk.
    pub fn points(&self) -> u64 {
        self.segments.iter().map(|s| s.lines).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Appends a batch (whole lines, each ending in `\n`). When the buffer would exceed
    /// `max_bytes`, the oldest data go first: whole oldest segments, and if the batch alone
    /// is too big, its own oldest lines. Returns what was dropped.
    pub fn append(&mut self, batch: &str) -> Result<Dropped, TelemetryError> {
        let mut dropped = Dropped::default();
        let mut batch = batch;
        while batch.len() as u64 > self.max_bytes {
            // Drop the batch's first (oldest) line.
            let cut = batch.find('\n').map_or(batch.len(), |i| i + 1);
            dropped.points += 1;
            dropped.bytes += cut as u64;
            batch = &batch[cut..];
        }
        if batch.is_empty() {
            return Ok(dropped);
        }
        while self.bytes() + batch.len() as u64 > self.max_bytes {
            let oldest = self.segments.remove(0);
            if self.segments.is_empty() {
                self.open_tail = false;
            }
            let path = self.path(oldest.seq);
            fs::remove_file(&path).map_err(|e| TelemetryError::buffer(&path, e))?;
            dropped.points += oldest.lines;
            dropped.bytes += oldest.bytes;
        }
        if !self.open_tail {
            self.segments.push(Segment {
                seq: self.next_seq,
                bytes: 0,
                lines: 0,
            });
            self.next_seq += 1;
            self.open_tail = true;
        }
        let tail = self.segments.last_mut().expect("a tail was just ensured");
        let path = self.dir.join(format!("{:012}.{EXT}", tail.seq));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
            f.write_all(batch.as_bytes())?;
            // The point of the buffer is to survive a crash or power cut.
            f.sync_data()
        };
        write().map_err(|e| TelemetryError::buffer(&path, e))?;
        tail.bytes += batch.len() as u64;
        tail.lines += count_lines(batch.as_bytes());
        if tail.bytes >= self.segment_bytes {
            self.open_tail = false;
        }
        Ok(dropped)
    }

    /// The oldest segment's text and point count, to replay. Closes it for appends, so
    /// what is sent is exactly what `pop_oldest` deletes.
    pub fn oldest(&mut self) -> Result<Option<(String, u64)>, TelemetryError> {
        let Some(s) = self.segments.first() else {
            return Ok(None);
        };
        let (seq, lines) = (s.seq, s.lines);
        if self.segments.len() == 1 {
            self.open_tail = false;
        }
        let path = self.path(seq);
        let text = fs::read_to_string(&path).map_err(|e| TelemetryError::buffer(&path, e))?;
        Ok(Some((text, lines)))
    }

    /// Deletes the oldest segment once the server has accepted it.
    pub fn pop_oldest(&mut self) -> Result<(), TelemetryError> {
        if self.segments.is_empty() {
            return Ok(());
        }
        let s = self.segments.remove(0);
        let path = self.path(s.seq);
        fs::remove_file(&path).map_err(|e| TelemetryError::buffer(&path, e))
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:012}.{EXT}"))
    }
}

fn seq_of(path: &Path) -> Option<u64> {
    if path.extension()? != EXT {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

fn count_lines(text: &[u8]) -> u64 {
    text.iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<u32>) -> String {
        range.map(|i| format!("m v={i}i {i}\n")).collect()
    }

    fn drain(b: &mut Buffer) -> String {
        let mut all = String::new();
        while let Some((text, _)) = b.oldest().unwrap() {
            all.push_str(&text);
            b.pop_oldest().unwrap();
        }
        all
    }

    #[test]
    fn keeps_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(dir.path(), 200).unwrap();
        for i in 0..4 {
            b.append(&lines(i * 2..i * 2 + 2)).unwrap();
        }
        assert_eq!(b.points(), 8);
        assert!(b.segments.len() > 1, "segments rotate at max_bytes / 8");
        drop(b);
        let mut b = Buffer::open(dir.path(), 200).unwrap();
        assert_eq!(b.points(), 8);
        b.append(&lines(8..9)).unwrap();
        assert_eq!(drain(&mut b), lines(0..9));
        assert!(b.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn over_the_bound_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        // Each line is 10 bytes ("m v=0i 0\n" is 9; two digits make 11): keep it simple.
        let mut b = Buffer::open(dir.path(), 100).unwrap();
        let mut dropped = 0;
        for i in 10..40 {
            dropped += b.append(&lines(i..i + 1)).unwrap().points;
        }
        assert!(b.bytes() <= 100);
        assert_eq!(dropped + b.points(), 30);
        let kept = drain(&mut b);
        assert!(kept.ends_with(&lines(39..40)), "newest survive: {kept}");
        assert!(!kept.contains("v=10i"), "oldest dropped: {kept}");
    }

    #[test]
    fn a_batch_bigger_than_the_bound_keeps_its_newest_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(dir.path(), 25).unwrap();
        let d = b.append(&lines(10..15)).unwrap();
        assert_eq!(d.points, 3);
        assert_eq!(drain(&mut b), lines(13..15));
    }

    #[test]
    fn a_torn_last_line_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("000000000007.lp"), "m v=1i 1\nm v=2").unwrap();
        fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let mut b = Buffer::open(dir.path(), 1000).unwrap();
        assert_eq!(b.points(), 1);
        b.append("m v=3i 3\n").unwrap();
        assert_eq!(drain(&mut b), "m v=1i 1\nm v=3i 3\n");
    }
}
