//! A `kind = "cpu"` load's own keys: the embedded pool's threads and per-core figures, and
//! the Stratum pool it mines for.

use std::time::Duration;

use serde::Deserialize;

use super::stratum::StratumConfig;
use crate::config::Problems;
use crate::site::config::RawCpuPool;
use crate::units::{de_watts, HashRate, Watts};

/// How long the daemon waits before logging in again after a pool refused it: long
/// enough not to hammer a pool that said no, short enough that a fixed account mines
/// again within minutes without a restart.
pub const POOL_REFUSED_RETRY: Duration = Duration::from_secs(300);

/// Most threads one embedded pool may run.
pub const MAX_THREADS: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCpuLoad {
    name: String,
    threads: usize,
    #[serde(deserialize_with = "de_watts")]
    watts_per_core: Watts,
    #[serde(deserialize_with = "crate::units::de_hashrate")]
    hashrate_per_core: HashRate,
    pool: Option<RawStratum>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStratum {
    url: String,
    user: String,
    #[serde(default = "x")]
    password: String,
}

fn x() -> String {
    "x".into()
}

/// A checked `kind = "cpu"` load: its site-model shape, and how the pool runs it.
#[derive(Debug)]
pub struct CpuLoad {
    /// The load as the policy sees it: all threads' power and hashrate together.
    pub spec: RawCpuPool,
    pub threads: usize,
    pub watts_per_core: Watts,
    pub hashrate_per_core: HashRate,
    pub pool: Option<StratumConfig>,
}

impl RawCpuLoad {
    /// Checks the load at key path `at`.
    pub fn check(self, p: &mut Problems, at: &str) -> CpuLoad {
        let RawCpuLoad {
            name,
            threads,
            watts_per_core,
            hashrate_per_core,
            pool,
        } = self;
        if threads == 0 || threads > MAX_THREADS {
            p.push(
                format!("{at}.threads"),
                format!("{threads}: must be 1..={MAX_THREADS}"),
            );
        }
        let threads = threads.clamp(1, MAX_THREADS);
        let pool = pool.and_then(|s| {
            StratumConfig::new(&s.url, &s.user, &s.password)
                .inspect_err(|e| p.push(format!("{at}.pool.url"), e.to_string()))
                .ok()
                .map(|c| StratumConfig {
                    retry_refused: Some(POOL_REFUSED_RETRY),
                    ..c
                })
        });
        CpuLoad {
            spec: RawCpuPool {
                name,
                rated_power: watts_per_core * threads as f64,
                hashrate: HashRate(hashrate_per_core.0 * threads as f64),
            },
            threads,
            watts_per_core,
            hashrate_per_core,
            pool,
        }
    }
}
