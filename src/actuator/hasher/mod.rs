//! Embedded SHA-256d worker pool: real Bitcoin mining on the CPU, as a load that follows
//! a power target within milliseconds.
//!
//! Role: the finest-grained load gridminer controls. It takes a power target, reports the
//! power its model says it draws, and hashes real work from a Stratum V1 pool. It must not
//! run hashing on Tokio threads, and must not decide how much power to use (the policy
//! does; this module only follows).
//!
//! ```text
//!  stratum/ (Tokio task)           pool.rs (OS threads)                kernel/
//!  notify ──> StratumJob ──set_job──> workers ──scan(range)──> Avx512 | ShaNi | Portable
//!  submit <── check target <──Share── candidates re-hashed with sha2 (job.rs)
//!  controller ──set_power_target──> control word ──> threads + duty (throttle.rs)
//! ```
//!
//! Layout:
//! - [`job`]: 80-byte header, midstate, nBits and pool-difficulty targets, the reference
//!   double SHA-256.
//! - [`kernel`]: the hot loop. [`Kernel::best`] races the kernels the CPU reports at run
//!   time (AVX-512 16 lanes, SHA-NI, sha2's `compress256` with the same midstate scheme)
//!   for a few milliseconds and keeps the fastest.
//! - [`pool`]: [`HasherPool`], its worker threads and the atomic control word.
//! - [`throttle`]: the pure power model, shared with the simulator:
//!   [`plan_for_power`]`(target, threads, watts_per_core)` gives a [`ThrottlePlan`]
//!   (full threads plus one thread at a [`Duty`]); [`ThrottlePlan::power`] and
//!   [`ThrottlePlan::hashrate`] give the modelled watts and expected hashrate.
//! - [`rapl`]: measured package energy from `/sys/class/powercap`, where the machine has it,
//!   to calibrate watts per core.
//! - [`stratum`]: the Stratum V1 client that feeds jobs in and sends shares out.
//! - [`load`]: [`PoolLoad`], the pool behind the actuator seam (set its target, read
//!   its power).
//! - [`report`]: [`HashingReport`], what the daemon's status and metrics show of a
//!   hashing load (hashes, hashrate, the pool's share counters).
//!
//! Using it as a load:
//! ```no_run
//! use gridminer::actuator::hasher::{HasherConfig, HasherPool, Kernel};
//! use gridminer::units::{HashRate, Watts};
//! let (pool, _shares) = HasherPool::start(HasherConfig {
//!     threads: 2,
//!     watts_per_core: Watts(12.0),
//!     hashrate_per_core: HashRate::from_mhs(20.0),
//!     kernel: Kernel::best(),
//! });
//! pool.set_power_target(Watts(18.0)); // one thread full, one at 50 % duty
//! let status = pool.status();
//! pool.set_power_target(Watts::ZERO); // pauses within milliseconds, keeps its place
//! pool.shutdown();
//! ```

pub mod config;
pub mod job;
// The crate's only `unsafe` (denied everywhere else, see Cargo.toml `[lints]`): calling a
// SIMD kernel, sound because a `Kernel` exists only for features the CPU reported.
#[allow(unsafe_code)]
pub mod kernel;
pub mod load;
pub mod pool;
pub mod rapl;
pub mod report;
pub mod stratum;
pub mod throttle;

pub use job::{BlockHeader, FixedHeader, Hash256, HeaderSource, JobError, Target};
pub use kernel::Kernel;
pub use load::PoolLoad;
pub use pool::{HasherConfig, HasherPool, HasherStatus, JobSeq, PoolActivity, Share};
pub use report::HashingReport;
pub use throttle::{plan_for_power, Duty, ThrottlePlan};
