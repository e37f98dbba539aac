//! What a hashing load reports to the daemon each control step: the pool's own status
//! and, when it mines for a Stratum pool, the client's counters.
//!
//! Role: one value the status document, the metrics and tests all read. Must not do I/O
//! or wait on anything: it is built from atomics and short, uncontended locks, inside
//! the control loop.

use super::pool::{HasherPool, HasherStatus};
use super::stratum::{StratumCounts, StratumStats};

/// A hashing load at one instant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HashingReport {
    pub hasher: HasherStatus,
    /// `None` without a configured pool (the load hashes a local job that yields no
    /// shares).
    pub pool: Option<StratumCounts>,
}

impl HashingReport {
    /// Reads `pool` (its hashrate is measured since the previous report) and `stratum`.
    pub fn read(pool: &HasherPool, stratum: Option<&StratumStats>) -> HashingReport {
        HashingReport {
            hasher: pool.status(),
            pool: stratum.map(StratumStats::snapshot),
        }
    }
}
