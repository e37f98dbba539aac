//! The worker pool: OS threads that scan nonces with the chosen kernel, follow a power
//! target through a shared control word, and hand found shares to whoever mines.
//!
//! Role: threads, throttling and bookkeeping. Must not run on Tokio worker threads (it
//! would starve the runtime), must not talk to the network, and must never block a
//! pause: workers check the control word between batches sized to a fraction of a
//! millisecond, so a pause lands well within 5 ms.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::job::{BlockHeader, Hash256, HeaderSource, ScanJob};
use super::kernel::Kernel;
use super::throttle::{plan_for_power, Duty, ThrottlePlan};
use crate::units::{HashRate, Watts};

/// Size the batches so one takes about this long: the control word is read between
/// batches, so this bounds the pause latency (plus scheduling).
const BATCH_TARGET: Duration = Duration::from_micros(250);
const BATCH_MIN: u32 = 256;
const BATCH_MAX: u32 = 1 << 20;
/// Longest a partial-duty thread banks unused hashing time: bounds its bursts.
const DUTY_CREDIT_CAP: Duration = Duration::from_millis(10);
/// A partial-duty thread hashes in bursts of up to this much full-speed work (then rests
/// in proportion): long enough that most batches run warm, short against a second.
const DUTY_BURST: Duration = Duration::from_millis(2);

/// How the pool is started.
#[derive(Debug, Clone)]
pub struct HasherConfig {
    /// Worker threads (at most one per core is sensible).
    pub threads: usize,
    /// Power one fully busy worker draws above idle, from configuration or RAPL.
    pub watts_per_core: Watts,
    /// Hashrate one fully busy worker reaches (from `hash bench`), for the model.
    pub hashrate_per_core: HashRate,
    /// The kernel to hash with, normally [`Kernel::best`].
    pub kernel: Kernel,
}

/// A nonce whose hash met the job's target, confirmed with the sha2 crate.
#[derive(Debug, Clone)]
pub struct Share {
    /// What [`HasherPool::set_job`] returned for the job it belongs to.
    pub job: JobSeq,
    /// Which of the job's headers (see [`HeaderSource::header`]).
    pub roll: u64,
    /// The header with the nonce in place.
    pub header: BlockHeader,
    pub hash: Hash256,
}

/// Identifies one `set_job` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobSeq(pub u64);

/// A snapshot of the pool for the controller and the CLI.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HasherStatus {
    pub kernel: &'static str,
    /// The power target last set (W, positive = consumption).
    pub target: Watts,
    /// Modelled power of the current plan (W above idle); zero while there is no job,
    /// as the workers then rest whatever the target.
    pub power: Watts,
    /// Measured over the time since the previous `status()` call.
    pub hashrate: HashRate,
    /// What the model expects from the current plan (zero while there is no job).
    pub expected_hashrate: HashRate,
    pub active_threads: usize,
    /// Duty of the partially active thread (idle if none).
    pub duty: Duty,
    /// Nonces hashed since start.
    pub hashes: u64,
    pub shares: u64,
    /// Threads hashing right now (0 once a pause has landed).
    pub hashing_threads: usize,
}

/// State shared by the handle and the workers.
struct Shared {
    kernel: Kernel,
    /// Bit 63: shutdown. Bits 32..48: full threads. Bits 0..32: partial duty * 2^32-1.
    control: AtomicU64,
    /// Bumped on every `set_job`/`clear_job`; workers compare it between batches.
    job_seq: AtomicU64,
    job: Mutex<Option<(JobSeq, Arc<dyn HeaderSource>)>>,
    /// Whether `job` holds work, readable without the lock.
    has_job: AtomicBool,
    /// Hands out rolls, so no two workers ever hash the same header.
    next_roll: AtomicU64,
    hashes: AtomicU64,
    /// A worker's flat-out rate, nonces per second (f64 bits; 0 until measured): what
    /// "full speed" means for a thread at partial duty (see `DutyBucket`).
    flat_out: AtomicU64,
    shares: AtomicU64,
    hashing: AtomicUsize,
    /// Idle and resting workers wait here; every control or job change notifies.
    wake_lock: Mutex<u64>,
    wake: Condvar,
    /// Notified when `hashing` drops to zero.
    paused: Condvar,
    shares_tx: UnboundedSender<Share>,
    dropped_shares: AtomicBool,
}

const SHUTDOWN: u64 = 1 << 63;

fn encode(plan: ThrottlePlan) -> u64 {
    let duty = (plan.partial.get() * u32::MAX as f64).round() as u64;
    ((plan.full_threads.min(0xffff) as u64) << 32) | duty
}

fn decode(word: u64) -> ThrottlePlan {
    ThrottlePlan {
        full_threads: ((word >> 32) & 0xffff) as usize,
        partial: Duty::new((word & 0xffff_ffff) as f64 / u32::MAX as f64),
    }
}

/// The running pool. Dropping it shuts it down (and joins the threads).
pub struct HasherPool {
    shared: Arc<Shared>,
    config: HasherConfig,
    threads: Vec<JoinHandle<()>>,
    target: Mutex<Watts>,
    sample: Mutex<(Instant, u64, HashRate)>,
}

impl HasherPool {
    /// Starts `config.threads` workers, idle (target 0 W, no job). Shares found arrive on
    /// the returned receiver; if it is dropped they are counted and discarded.
    pub fn start(config: HasherConfig) -> (HasherPool, UnboundedReceiver<Share>) {
        let (shares_tx, rx) = unbounded_channel();
        let shared = Arc::new(Shared {
            kernel: config.kernel,
            control: AtomicU64::new(encode(ThrottlePlan::STOPPED)),
            job_seq: AtomicU64::new(0),
            job: Mutex::new(None),
            has_job: AtomicBool::new(false),
            next_roll: AtomicU64::new(0),
            hashes: AtomicU64::new(0),
            flat_out: AtomicU64::new(0),
            shares: AtomicU64::new(0),
            hashing: AtomicUsize::new(0),
            wake_lock: Mutex::new(0),
            wake: Condvar::new(),
            paused: Condvar::new(),
            shares_tx,
            dropped_shares: AtomicBool::new(false),
        });
        let threads = (0..config.threads)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("hasher-{i}"))
                    .spawn(move || Worker::new(i, shared).run())
                    .expect("spawning a hasher thread")
            })
            .collect();
        let pool = HasherPool {
            shared,
            config,
            threads,
            target: Mutex::new(Watts::ZERO),
            sample: Mutex::new((Instant::now(), 0, HashRate::ZERO)),
        };
        (pool, rx)
    }

    pub fn kernel(&self) -> Kernel {
        self.shared.kernel
    }

    pub fn config(&self) -> &HasherConfig {
        &self.config
    }

    /// Follows a power target (W above idle). 0 W pauses every worker at its next batch
    /// boundary; each keeps its place (job, header, nonce) and resumes from it.
    pub fn set_power_target(&self, target: Watts) {
        let plan = plan_for_power(target, self.config.threads, self.config.watts_per_core);
        *self.target.lock().expect("target lock") = target;
        self.set_plan(plan);
    }

    /// Sets the thread plan directly (the bench sweeps plans without a power model).
    pub fn set_plan(&self, plan: ThrottlePlan) {
        self.shared.control.store(encode(plan), Ordering::Release);
        self.notify();
    }

    pub fn plan(&self) -> ThrottlePlan {
        decode(self.shared.control.load(Ordering::Acquire))
    }

    /// Hash this job from now on; workers switch at their next batch boundary.
    pub fn set_job(&self, source: Arc<dyn HeaderSource>) -> JobSeq {
        let seq = {
            let mut slot = self.shared.job.lock().expect("job lock");
            let seq = JobSeq(self.shared.job_seq.load(Ordering::Relaxed) + 1);
            *slot = Some((seq, source));
            self.shared.has_job.store(true, Ordering::Release);
            self.shared.job_seq.store(seq.0, Ordering::Release);
            seq
        };
        self.notify();
        seq
    }

    /// No valid work (e.g. disconnected from the pool): workers idle until `set_job`.
    pub fn clear_job(&self) {
        {
            let mut slot = self.shared.job.lock().expect("job lock");
            *slot = None;
            self.shared.has_job.store(false, Ordering::Release);
            let seq = self.shared.job_seq.load(Ordering::Relaxed) + 1;
            self.shared.job_seq.store(seq, Ordering::Release);
        }
        self.notify();
    }

    fn notify(&self) {
        let mut g = self.shared.wake_lock.lock().expect("wake lock");
        *g += 1;
        self.shared.wake.notify_all();
    }

    /// Whether the workers have a job to hash (set and not cleared since).
    pub fn has_job(&self) -> bool {
        self.shared.has_job.load(Ordering::Acquire)
    }

    /// Modelled power now (W above idle): the plan's, or zero while there is no job,
    /// since the workers then rest whatever the target. Lock-free, so a control loop
    /// may read it every step.
    pub fn power(&self) -> Watts {
        if self.has_job() {
            self.plan().power(self.config.watts_per_core)
        } else {
            Watts::ZERO
        }
    }

    /// Nonces hashed since start.
    pub fn hashes(&self) -> u64 {
        self.shared.hashes.load(Ordering::Relaxed)
    }

    /// Threads in the middle of a batch or about to start one.
    pub fn hashing_threads(&self) -> usize {
        self.shared.hashing.load(Ordering::Acquire)
    }

    /// Waits until no worker is hashing, up to `timeout`; returns how long it took, or
    /// `None` on timeout. Used to measure pause latency.
    pub fn wait_paused(&self, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        let g = self.shared.wake_lock.lock().expect("wake lock");
        let (_g, res) = self
            .shared
            .paused
            .wait_timeout_while(g, timeout, |_| {
                self.shared.hashing.load(Ordering::Acquire) > 0
            })
            .expect("wake lock");
        (!res.timed_out()).then(|| start.elapsed())
    }

    pub fn status(&self) -> HasherStatus {
        let plan = self.plan();
        let hashes = self.hashes();
        let hashrate = {
            let mut s = self.sample.lock().expect("sample lock");
            let dt = s.0.elapsed();
            if dt >= Duration::from_millis(50) {
                let rate = HashRate((hashes - s.1) as f64 / dt.as_secs_f64());
                *s = (Instant::now(), hashes, rate);
            }
            s.2
        };
        HasherStatus {
            kernel: self.shared.kernel.name(),
            target: *self.target.lock().expect("target lock"),
            power: self.power(),
            hashrate,
            expected_hashrate: if self.has_job() {
                plan.hashrate(self.config.hashrate_per_core)
            } else {
                HashRate::ZERO
            },
            active_threads: plan.active_threads(),
            duty: plan.partial,
            hashes,
            shares: self.shared.shares.load(Ordering::Relaxed),
            hashing_threads: self.hashing_threads(),
        }
    }

    /// Stops every worker and joins it.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.control.fetch_or(SHUTDOWN, Ordering::AcqRel);
        self.notify();
        for t in self.threads.drain(..) {
            // A worker that panicked has already printed why; the others still join.
            let _ = t.join();
        }
    }
}

impl Drop for HasherPool {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// A read-only view of a pool's workers, for watchers elsewhere (the daemon's owner, the
/// live benchmark) while the pool itself stays with the load that drives it.
#[derive(Clone)]
pub struct PoolActivity {
    shared: Arc<Shared>,
}

impl PoolActivity {
    /// Workers inside a batch right now.
    pub fn hashing_threads(&self) -> usize {
        self.shared.hashing.load(Ordering::Acquire)
    }

    /// Nonces hashed since the pool started.
    pub fn hashes(&self) -> u64 {
        self.shared.hashes.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for PoolActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolActivity")
            .field("hashing_threads", &self.hashing_threads())
            .finish()
    }
}

impl HasherPool {
    /// A view of the workers that outlives borrowing the pool.
    pub fn activity(&self) -> PoolActivity {
        PoolActivity {
            shared: self.shared.clone(),
        }
    }
}

/// Where one worker is in its work; kept across pauses so nothing is lost.
struct Place {
    seq: JobSeq,
    source: Arc<dyn HeaderSource>,
    roll: u64,
    header: BlockHeader,
    scan: ScanJob,
    /// Next nonce to hash, up to 2^32 (then a new roll).
    next: u64,
}

struct Worker {
    index: usize,
    shared: Arc<Shared>,
    place: Option<Place>,
    seen_job_seq: u64,
    batch: u32,
    hashing: bool,
    bucket: DutyBucket,
    /// Batches hashed flat out, for `Shared::flat_out`.
    flat_out: FlatOut,
}

/// Nonces over time across a worker's last `FlatOut::LEN` batches at full duty, the first
/// after a rest excluded: a thread's sustained full speed, preemption included as it is
/// for any thread hashing flat out.
#[derive(Debug, Clone)]
struct FlatOut {
    /// (nonces, seconds) per batch.
    batches: [(f64, f64); FlatOut::LEN],
    next: usize,
}

impl Default for FlatOut {
    fn default() -> Self {
        FlatOut {
            batches: [(0.0, 0.0); FlatOut::LEN],
            next: 0,
        }
    }
}

impl FlatOut {
    const LEN: usize = 256;

    fn push(&mut self, nonces: u32, took: Duration) -> Option<f64> {
        self.batches[self.next % Self::LEN] = (nonces as f64, took.as_secs_f64());
        self.next += 1;
        let (n, t) = self.batches[..self.next.min(Self::LEN)]
            .iter()
            .fold((0.0, 0.0), |(n, t), (bn, bt)| (n + bn, t + bt));
        (t > 0.0).then(|| n / t)
    }
}

/// The batch a thread at `duty` hashes, given the tuned full-duty `batch`: smaller below a
/// duty of 0.1, so that even a short burst holds several batches and the work banked
/// between bursts stays near 1 % of a second's (the bucket counts nonces, so the few
/// hundred nanoseconds each batch adds cost no accuracy).
fn batch_at(batch: u32, duty: Duty) -> u32 {
    ((batch as f64 * (duty.get() * 10.0).min(1.0)) as u32).max(BATCH_MIN)
}

/// Work bookkeeping for a thread at partial duty: a token bucket that earns `duty` times
/// the thread's full-speed rate in nonces per second of wall time, and is charged the
/// nonces each batch actually hashed.
///
/// Counting nonces rather than busy time is what makes the *hashrate* follow the duty: a
/// core that wakes from a rest runs its first batch slower (frequency and power-state
/// ramps; measured here up to a third slower after a few milliseconds asleep), and a
/// time-based bucket loses exactly that (a 37 % duty gave 31 %). Full speed is what a
/// worker of the pool measured hashing flat out (`Shared::flat_out`); before any has, the
/// upper quartile of the thread's own recent batch rates (see `RecentRates`), which
/// reads a few percent high. The thread's own warm batches are no substitute once a
/// flat-out figure exists: a core that keeps resting runs 2-12 % below its flat-out speed
/// even past the first batch (measured here), so pacing by them undershoots by as much.
/// Averaged over a second the achieved rate is the target up to one burst; work the
/// thread could not do (descheduled) is banked up to `DUTY_CREDIT_CAP` of full-speed
/// hashing, not owed forever.
#[derive(Debug, Clone)]
struct DutyBucket {
    /// Nonces owed (positive) or overdrawn (negative).
    credit: f64,
    last: Instant,
    /// In a burst: hashing until the credit is spent.
    bursting: bool,
    full_rate: RecentRates,
}

impl DutyBucket {
    fn new(now: Instant) -> DutyBucket {
        DutyBucket {
            credit: 0.0,
            last: now,
            bursting: false,
            full_rate: RecentRates::default(),
        }
    }

    /// Forget the credit (after a full stop, or while at full duty); the rate stays.
    fn reset(&mut self, now: Instant) {
        self.credit = 0.0;
        self.last = now;
        self.bursting = false;
    }

    /// Before a batch of `batch` nonces at `duty` (0 < duty < 1): `None` to hash now, or
    /// how long to rest.
    /// `flat_out` is the pool's measured sustained full speed per thread, when a thread
    /// has hashed flat out; without it the thread's own recent batches stand in.
    /// Hashing comes in bursts of `DUTY_BURST` at full speed, so that all but a burst's
    /// first batch run warm and keep the full-speed rate measured even at low duty.
    /// Until one batch has been timed there is no rate to pace by: hash, and learn it.
    fn before_batch(
        &mut self,
        now: Instant,
        duty: Duty,
        flat_out: Option<f64>,
        batch: u32,
    ) -> Option<Duration> {
        let rate = flat_out.or_else(|| self.full_rate.get())?;
        let cap = rate * DUTY_CREDIT_CAP.as_secs_f64();
        let earned = duty.get() * rate * now.duration_since(self.last).as_secs_f64();
        self.credit = (self.credit + earned).min(cap);
        self.last = now;
        // Shorter bursts at low duty: a burst banked but not yet spent is the error over a
        // second, so it stays near 1 % of the duty's work per second. Never under two
        // batches, so that a burst holds a warm one.
        let burst = (rate * DUTY_BURST.as_secs_f64() * (duty.get() * 5.0).min(1.0))
            .max(2.0 * batch as f64)
            .min(cap);
        self.bursting = if self.bursting {
            self.credit > 0.0
        } else {
            self.credit >= burst
        };
        (!self.bursting)
            .then(|| Duration::from_secs_f64((burst - self.credit) / (duty.get() * rate)))
    }

    /// After a batch that hashed `nonces` in `took` (its wall time is earned at the next
    /// look). Called at every duty, so the full-speed rate stays current.
    fn after_batch(&mut self, nonces: u32, took: Duration) {
        if !took.is_zero() {
            self.full_rate.push(nonces as f64 / took.as_secs_f64());
        }
        self.credit -= nonces as f64;
    }
}

/// A thread's full speed from its last `RecentRates::LEN` batch rates: their upper
/// quartile. Noise (preemption, a cold first batch after a rest) only makes a batch
/// slower, so a high quantile is the warm rate; the maximum would be the luckiest batch
/// and overshoot the sustained rate by a few percent. Follows slow changes (thermal
/// limits) within that many batches.
#[derive(Debug, Clone)]
struct RecentRates {
    rates: [f64; RecentRates::LEN],
    next: usize,
}

impl Default for RecentRates {
    fn default() -> Self {
        RecentRates {
            rates: [0.0; RecentRates::LEN],
            next: 0,
        }
    }
}

impl RecentRates {
    const LEN: usize = 64;

    fn push(&mut self, rate: f64) {
        self.rates[self.next % Self::LEN] = rate;
        self.next += 1;
    }

    fn get(&self) -> Option<f64> {
        let n = self.next.min(Self::LEN);
        if n == 0 {
            return None;
        }
        let mut r = self.rates;
        let r = &mut r[..n];
        let (_, q, _) = r.select_nth_unstable_by(n * 3 / 4, f64::total_cmp);
        (*q > 0.0).then_some(*q)
    }
}

impl Worker {
    fn new(index: usize, shared: Arc<Shared>) -> Worker {
        Worker {
            index,
            shared,
            place: None,
            seen_job_seq: 0,
            batch: 4096,
            hashing: false,
            bucket: DutyBucket::new(Instant::now()),
            flat_out: FlatOut::default(),
        }
    }

    fn run(mut self) {
        loop {
            let word = self.shared.control.load(Ordering::Acquire);
            if word & SHUTDOWN != 0 {
                self.set_hashing(false);
                return;
            }
            let duty = decode(word).duty_of(self.index);
            let seq = self.follow_job();
            if duty == Duty::IDLE || self.place.is_none() {
                self.rest(word, seq, None);
                continue;
            }
            let full = duty == Duty::FULL;
            let batch = batch_at(self.batch, duty);
            if !full {
                let flat_out = f64::from_bits(self.shared.flat_out.load(Ordering::Relaxed));
                let reference = (flat_out > 0.0).then_some(flat_out);
                let now = Instant::now();
                if let Some(wait) = self.bucket.before_batch(now, duty, reference, batch) {
                    self.rest(word, seq, Some(wait));
                    continue;
                }
            } else {
                self.bucket.reset(Instant::now());
            }
            let warm = self.hashing;
            self.set_hashing(true);
            let t0 = Instant::now();
            let nonces = self.hash_batch(batch);
            let took = t0.elapsed();
            self.bucket.after_batch(nonces, took);
            if full && warm {
                if let Some(rate) = self.flat_out.push(nonces, took) {
                    self.shared
                        .flat_out
                        .store(rate.to_bits(), Ordering::Relaxed);
                }
            }
            // A partial thread's smaller batches say nothing about the full-duty size.
            if batch == self.batch {
                self.tune_batch(took);
            }
        }
    }

    /// Picks up a new job (or its removal) if one was set since the last look; returns
    /// the job sequence number it acted on.
    fn follow_job(&mut self) -> u64 {
        let seq = self.shared.job_seq.load(Ordering::Acquire);
        if seq == self.seen_job_seq {
            return seq;
        }
        self.seen_job_seq = seq;
        let slot = self.shared.job.lock().expect("job lock").clone();
        self.place = slot.map(|(seq, source)| self.new_place(seq, source));
        seq
    }

    fn new_place(&self, seq: JobSeq, source: Arc<dyn HeaderSource>) -> Place {
        let roll = self.shared.next_roll.fetch_add(1, Ordering::Relaxed);
        let header = source.header(roll);
        let scan = header.prepare(source.target());
        let next = source.start_nonce(roll) as u64;
        Place {
            seq,
            source,
            roll,
            header,
            scan,
            next,
        }
    }

    /// Hashes the next `batch` nonces of the current place (fewer at the end of a roll);
    /// returns how many it scanned.
    fn hash_batch(&mut self, batch: u32) -> u32 {
        let place = self.place.as_mut().expect("hash_batch needs a place");
        let count = (batch as u64).min((1u64 << 32) - place.next) as u32;
        let start = place.next as u32;
        let (shared, header, seq, roll, target) = (
            &self.shared,
            place.header,
            place.seq,
            place.roll,
            place.scan.target,
        );
        self.shared.kernel.scan(&place.scan, start, count, |nonce| {
            // Rare: re-hash by the book and judge against the whole target.
            let header = header.with_nonce(nonce);
            let hash = header.block_hash();
            if target.is_met_by(&hash) {
                shared.shares.fetch_add(1, Ordering::Relaxed);
                let share = Share {
                    job: seq,
                    roll,
                    header,
                    hash,
                };
                if shared.shares_tx.send(share).is_err()
                    && !shared.dropped_shares.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!("Share receiver dropped; shares are discarded");
                }
            }
        });
        self.shared
            .hashes
            .fetch_add(count as u64, Ordering::Relaxed);
        place.next += count as u64;
        if place.next >= 1 << 32 {
            let (seq, source) = (place.seq, place.source.clone());
            self.place = Some(self.new_place(seq, source));
        }
        count
    }

    /// Adapts the batch so that one takes about `BATCH_TARGET`, whatever the kernel.
    fn tune_batch(&mut self, took: Duration) {
        if took > BATCH_TARGET * 2 && self.batch > BATCH_MIN {
            self.batch /= 2;
        } else if took < BATCH_TARGET / 2 && self.batch < BATCH_MAX {
            self.batch *= 2;
        }
    }

    fn set_hashing(&mut self, on: bool) {
        if on == self.hashing {
            return;
        }
        self.hashing = on;
        if on {
            self.shared.hashing.fetch_add(1, Ordering::AcqRel);
        } else if self.shared.hashing.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = self.shared.wake_lock.lock().expect("wake lock");
            self.shared.paused.notify_all();
        }
    }

    /// Stops hashing until the control word or job differs from what the decision to
    /// rest was based on (`word`, `seq`: re-reading them here could miss a change made in
    /// between and sleep through it), or `for_at_most` passes.
    fn rest(&mut self, word: u64, seq: u64, for_at_most: Option<Duration>) {
        self.set_hashing(false);
        let unchanged = |_: &mut u64| {
            self.shared.control.load(Ordering::Acquire) == word
                && self.shared.job_seq.load(Ordering::Acquire) == seq
        };
        let g = self.shared.wake_lock.lock().expect("wake lock");
        match for_at_most {
            None => drop(
                self.shared
                    .wake
                    .wait_while(g, unchanged)
                    .expect("wake lock"),
            ),
            Some(d) => drop(
                self.shared
                    .wake
                    .wait_timeout_while(g, d, unchanged)
                    .expect("wake lock"),
            ),
        }
        if for_at_most.is_none() {
            // Coming back from a full stop: do not bank the idle time as duty credit.
            self.bucket.reset(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_word_round_trips() {
        for plan in [
            ThrottlePlan::STOPPED,
            ThrottlePlan {
                full_threads: 3,
                partial: Duty::new(0.25),
            },
            ThrottlePlan {
                full_threads: 64,
                partial: Duty::FULL,
            },
        ] {
            let back = decode(encode(plan));
            assert_eq!(back.full_threads, plan.full_threads);
            assert!((back.partial.get() - plan.partial.get()).abs() < 1e-9);
        }
        assert_eq!(
            decode(encode(ThrottlePlan::STOPPED) | SHUTDOWN).full_threads,
            0
        );
    }

    /// The bucket on a synthetic clock: a thread that hashes 30 MH/s warm, but a third
    /// slower in its first batch after resting over a millisecond (as measured on this
    /// machine), with rests that overshoot by up to 80 us (timer slack). Over one
    /// simulated second the nonces hashed are the duty of the warm rate within 1.5 %
    /// (the issue asks 2 %) at every duty from 0.01 up, knowing the flat-out rate or not:
    /// batches shrink at low duty, so a burst always holds warm batches to learn from and
    /// the work banked between bursts stays small.
    #[test]
    fn duty_bucket_meets_its_duty_in_hashes() {
        let warm = 30e6;
        for (duty, flat_out) in [0.01, 0.05, 0.1, 0.2, 0.37, 0.5, 0.9, 0.99]
            .into_iter()
            .flat_map(|d| [(d, None), (d, Some(warm))])
        {
            let batch = batch_at(8192, Duty::new(duty));
            let t0 = Instant::now();
            let mut now = t0;
            let mut bucket = DutyBucket::new(now);
            let mut hashed = 0u64;
            let mut rested = Duration::ZERO;
            let mut i = 0u32;
            while now - t0 < Duration::from_secs(1) {
                match bucket.before_batch(now, Duty::new(duty), flat_out, batch) {
                    None => {
                        let rate = if rested > Duration::from_millis(1) {
                            warm * 2.0 / 3.0
                        } else {
                            warm
                        };
                        let took = Duration::from_secs_f64(batch as f64 / rate);
                        now += took;
                        hashed += batch as u64;
                        bucket.after_batch(batch, took);
                        rested = Duration::ZERO;
                    }
                    Some(wait) => {
                        i += 1;
                        let slept = wait + Duration::from_micros(u64::from(i * 37 % 80));
                        now += slept;
                        rested += slept;
                    }
                }
            }
            let achieved = hashed as f64 / (warm * (now - t0).as_secs_f64());
            assert!(
                (achieved - duty).abs() / duty < 0.015,
                "duty {duty}, flat-out rate {flat_out:?}: achieved {achieved}"
            );
        }
    }

    #[test]
    fn flat_out_is_nonces_over_time() {
        let mut f = FlatOut::default();
        assert_eq!(f.push(1000, Duration::from_millis(1)), Some(1e6));
        // A preempted batch counts with the time it lost.
        let r = f.push(1000, Duration::from_millis(3)).unwrap();
        assert!((r - 5e5).abs() < 1e-3);
    }

    #[test]
    fn recent_rates_give_the_upper_quartile_of_recent_rates() {
        let mut r = RecentRates::default();
        assert_eq!(r.get(), None);
        r.push(10.0);
        r.push(30.0);
        r.push(20.0);
        r.push(31.0);
        // The upper quartile of what was seen, not the luckiest batch.
        assert_eq!(r.get(), Some(31.0));
        for i in 0..RecentRates::LEN {
            r.push(if i % 8 == 0 {
                15.0
            } else {
                25.0 + (i % 3) as f64 * 0.1
            });
        }
        assert_eq!(r.get(), Some(25.2));
    }
}
