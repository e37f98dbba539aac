//! Remembers every accepted `jti` until its token could no longer be accepted anyway
//! (`exp` plus the clock skew allowance), so a captured command cannot be sent again.
//! Bounded: expired entries are evicted on every insert, and when the cache is still
//! full the new command is refused (`rate_limited`) rather than risk forgetting a live
//! `jti`. Keys are (issuer, jti): one operator's ids never collide with another's.
//!
//! Pure and in memory; `replay_file` keeps a copy on disk so the record survives a
//! restart: `entries` is what to save after each accepted command, `restore` what a new
//! process loads back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use super::error::RefusalReason;
use crate::clock::Timestamp;

/// Default number of live `jti`s kept: 4096 commands within one token lifetime is far
/// beyond what any operator sends.
pub const DEFAULT_CAPACITY: usize = 4096;

/// One remembered command: its issuer and `jti`, and when it may be forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayEntry {
    pub issuer: String,
    pub jti: String,
    /// The token's `exp` plus the clock skew allowance: past this it is refused as
    /// expired anyway.
    pub forget_at: Timestamp,
}

#[derive(Debug)]
pub struct ReplayCache {
    seen: HashSet<(String, String)>,
    /// (forget at, issuer, jti), soonest first.
    expiry: BinaryHeap<Reverse<(Timestamp, String, String)>>,
    capacity: usize,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            seen: HashSet::new(),
            expiry: BinaryHeap::new(),
            capacity,
        }
    }

    /// Records `jti` as used until `forget_at`; refuses one already recorded.
    pub fn insert(
        &mut self,
        issuer: &str,
        jti: &str,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), RefusalReason> {
        self.evict(now);
        let key = (issuer.to_string(), jti.to_string());
        if self.seen.contains(&key) {
            return Err(RefusalReason::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(RefusalReason::RateLimited);
        }
        self.expiry
            .push(Reverse((forget_at, key.0.clone(), key.1.clone())));
        self.seen.insert(key);
        Ok(())
    }

    /// Every entry not yet forgotten, soonest to expire first.
    pub fn entries(&self) -> Vec<ReplayEntry> {
        let mut all: Vec<ReplayEntry> = self
            .expiry
            .iter()
            .map(|Reverse((forget_at, issuer, jti))| ReplayEntry {
                issuer: issuer.clone(),
                jti: jti.clone(),
                forget_at: *forget_at,
            })
            .collect();
        all.sort_by(|a, b| (a.forget_at, &a.issuer, &a.jti).cmp(&(b.forget_at, &b.issuer, &b.jti)));
        all
    }

    /// Takes back what `entries` gave (a previous process's record), dropping those
    /// already past at `now`; returns how many were kept. Duplicates count once; entries
    /// beyond the capacity are dropped (`ReplayFile::load` refuses such a file first).
    pub fn restore(&mut self, entries: Vec<ReplayEntry>, now: Timestamp) -> usize {
        entries
            .into_iter()
            .filter(|e| e.forget_at > now)
            .filter(|e| self.insert(&e.issuer, &e.jti, e.forget_at, now).is_ok())
            .count()
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn evict(&mut self, now: Timestamp) {
        while let Some(Reverse((at, _, _))) = self.expiry.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, issuer, jti))) = self.expiry.pop() else {
                break;
            };
            self.seen.remove(&(issuer, jti));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_refused_until_the_token_could_not_be_accepted_anyway() {
        let mut c = ReplayCache::new(10);
        let t = Timestamp;
        // (issuer, jti, forget_at, now, expected, live entries after)
        let steps = [
            ("a", "1", 100, 0, Ok(()), 1),
            ("a", "1", 100, 50, Err(RefusalReason::Replayed), 1),
            ("b", "1", 100, 50, Ok(()), 2),
            ("a", "2", 300, 60, Ok(()), 3),
            ("a", "1", 400, 99, Err(RefusalReason::Replayed), 3),
            // At 100 the first two are forgotten: their tokens are expired by then.
            ("a", "1", 400, 100, Ok(()), 2),
            ("a", "2", 400, 200, Err(RefusalReason::Replayed), 2),
        ];
        for (i, (iss, jti, forget, now, want, len)) in steps.into_iter().enumerate() {
            assert_eq!(c.insert(iss, jti, t(forget), t(now)), want, "step {i}");
            assert_eq!(c.len(), len, "step {i}");
        }
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let mut c = ReplayCache::new(2);
        let t = Timestamp;
        assert_eq!(c.insert("a", "1", t(100), t(0)), Ok(()));
        assert_eq!(c.insert("a", "2", t(100), t(0)), Ok(()));
        assert_eq!(
            c.insert("a", "3", t(100), t(0)),
            Err(RefusalReason::RateLimited)
        );
        assert_eq!(
            c.insert("a", "1", t(100), t(0)),
            Err(RefusalReason::Replayed)
        );
        assert_eq!(c.insert("a", "3", t(200), t(100)), Ok(()));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn entries_restored_in_a_new_cache_are_still_refused() {
        let t = Timestamp;
        let mut old = ReplayCache::new(10);
        old.insert("a", "1", t(300), t(0)).unwrap();
        old.insert("b", "1", t(100), t(0)).unwrap();
        old.insert("a", "2", t(200), t(0)).unwrap();
        let saved = old.entries();
        let order: Vec<_> = saved
            .iter()
            .map(|e| (e.issuer.as_str(), e.jti.as_str()))
            .collect();
        assert_eq!(order, [("b", "1"), ("a", "2"), ("a", "1")], "soonest first");

        let mut new = ReplayCache::new(10);
        // At 150 the entry forgotten at 100 is of no use any more: not taken back.
        assert_eq!(new.restore(saved, t(150)), 2);
        let replayed = Err(RefusalReason::Replayed);
        for (iss, jti, want) in [
            ("a", "1", replayed),
            ("a", "2", replayed),
            ("b", "1", Ok(())),
        ] {
            assert_eq!(new.insert(iss, jti, t(400), t(150)), want, "{iss} {jti}");
        }
    }

    #[test]
    fn memory_stays_bounded_under_a_stream_of_commands() {
        let mut c = ReplayCache::new(100);
        for i in 0..10_000i64 {
            // One command a second, each remembered for 65 s.
            let now = Timestamp(i * 1000);
            c.insert(
                "a",
                &i.to_string(),
                now + std::time::Duration::from_secs(65),
                now,
            )
            .unwrap();
            assert!(c.len() <= 66);
        }
        assert!(c.expiry.len() <= 66);
    }
}
