//! Measurements behind `gridminer bench sim` (`sim`, with the `sim` feature),
//! `gridminer bench live` ([`live`]) and `gridminer bench fleet` ([`fleet`]): figures
//! and ratios against a baseline run in the same process. Timing lives here, never in
//! tests.

pub mod fleet;
pub mod hash;
pub mod ledger;
pub mod live;
#[cfg(feature = "sim")]
mod sim;

#[cfg(feature = "sim")]
pub use sim::{sim, Budget, SimBench};

/// Peak resident set size of this process in MB, where Linux tells it.
pub fn peak_rss_mb() -> Option<f64> {
    proc_memory_mb("self", "VmHWM:")
}

/// A memory field of `/proc/{pid}/status` (`pid` may be `self`), such as `VmHWM:` (peak
/// resident) or `VmRSS:` (resident now), in MB.
pub fn proc_memory_mb(pid: &str, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The `p` quantile (0..=1) of `sorted` durations, in ms; NaN when there are none.
pub fn percentile_ms(sorted: &[std::time::Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}
