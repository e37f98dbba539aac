//! Remembers every accepted `jti` until its token could no longer be accepted anyway
//! (`exp` plus the clock skew allowance), so a captured command cannot be sent again.
//! Bounded per operator: expired entries are evicted on every insert, and when an
//! operator's share is still full its new command is refused (`rate_limited`) rather than
//! risk forgetting a live `jti`. One operator's flood therefore never refuses another's
//! command, and a curtailment is never refused for capacity at all: it is remembered
//! beyond the share (an operator that floods curtailments only curtails itself), up to a
//! hard ceiling on the whole cache past which its own soonest-forgotten entry makes room
//! (a replayed curtailment can only lower mining). Keys are (issuer, jti): one operator's
//! ids never collide with another's.
//!
//! Pure and in memory; `replay_file` keeps a copy on disk so the record survives a
//! restart: `entries` is what to save after each accepted command, `restore` what a new
//! process loads back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::error::RefusalReason;
use crate::clock::Timestamp;

/// Default number of live `jti`s kept per operator: 4096 commands within one token
/// lifetime is far beyond what any operator sends.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Most entries the whole cache holds, whatever is admitted beyond the per-operator shares.
pub const HARD_CEILING: usize = 65_536;

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
    /// Live entries per issuer.
    per_issuer: HashMap<String, usize>,
    /// Each operator's share.
    capacity: usize,
}

/// Whether a command may be remembered beyond its operator's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Within the operator's share, else refused `rate_limited`.
    Share,
    /// Never refused for capacity (a curtailment).
    Always,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl ReplayCache {
    /// `capacity` live entries per operator.
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            seen: HashSet::new(),
            expiry: BinaryHeap::new(),
            per_issuer: HashMap::new(),
            capacity,
        }
    }

    /// Records `jti` as used until `forget_at`; refuses one already recorded, and one
    /// over its operator's share unless `budget` is [`Budget::Always`].
    pub fn insert(
        &mut self,
        issuer: &str,
        jti: &str,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), RefusalReason> {
        self.insert_with(issuer, jti, forget_at, now, Budget::Share)
    }

    pub fn insert_with(
        &mut self,
        issuer: &str,
        jti: &str,
        forget_at: Timestamp,
        now: Timestamp,
        budget: Budget,
    ) -> Result<(), RefusalReason> {
        self.evict(now);
        let key = (issuer.to_string(), jti.to_string());
        if self.seen.contains(&key) {
            return Err(RefusalReason::Replayed);
        }
        let used = self.per_issuer.get(issuer).copied().unwrap_or(0);
        if used >= self.capacity && budget == Budget::Share {
            return Err(RefusalReason::RateLimited);
        }
        if self.seen.len() >= HARD_CEILING.max(self.capacity) {
            // Only an `Always` insert gets here: make room from the same operator.
            if !self.forget_soonest_of(issuer) {
                return Err(RefusalReason::RateLimited);
            }
        }
        self.expiry
            .push(Reverse((forget_at, key.0.clone(), key.1.clone())));
        *self.per_issuer.entry(key.0.clone()).or_insert(0) += 1;
        self.seen.insert(key);
        Ok(())
    }

    /// Drops `issuer`'s entry that would be forgotten soonest; false if it has none.
    fn forget_soonest_of(&mut self, issuer: &str) -> bool {
        let mut all = std::mem::take(&mut self.expiry).into_vec();
        all.sort();
        let found = all.iter().position(|Reverse((_, i, _))| i == issuer);
        if let Some(at) = found {
            let Reverse((_, i, j)) = all.remove(at);
            self.forget(&i, &j);
        }
        self.expiry = all.into();
        found.is_some()
    }

    fn forget(&mut self, issuer: &str, jti: &str) {
        if self.seen.remove(&(issuer.to_string(), jti.to_string())) {
            if let Some(n) = self.per_issuer.get_mut(issuer) {
                *n -= 1;
                if *n == 0 {
                    self.per_issuer.remove(issuer);
                }
            }
        }
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
            self.forget(&issuer, &jti);
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

    /// Issue 9, hole 5: 4,096 heartbeats from one operator filled the shared cache and
    /// the TSO's next curtail was refused `rate_limited`.
    #[test]
    fn r9_one_operators_flood_never_refuses_another() {
        let mut c = ReplayCache::new(3);
        let t = Timestamp;
        for j in 0..3 {
            assert_eq!(c.insert("agg", &j.to_string(), t(100), t(0)), Ok(()));
        }
        assert_eq!(
            c.insert("agg", "3", t(100), t(0)),
            Err(RefusalReason::RateLimited),
            "the flooding operator hits its own share"
        );
        assert_eq!(c.insert("tso", "1", t(100), t(0)), Ok(()), "the TSO is not");
        // A curtailment is never refused for capacity, even over its own share...
        for j in 0..10 {
            let jti = format!("c{j}");
            assert_eq!(
                c.insert_with("agg", &jti, t(100), t(0), Budget::Always),
                Ok(())
            );
        }
        // ...and still remembered: a replay of it is refused.
        assert_eq!(
            c.insert_with("agg", "c3", t(100), t(0), Budget::Always),
            Err(RefusalReason::Replayed)
        );
        assert_eq!(c.len(), 14);
        // At 100 all are forgotten and the shares are free again.
        assert_eq!(c.insert("agg", "4", t(200), t(100)), Ok(()));
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
