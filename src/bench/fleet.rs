//! `gridminer bench fleet`: the asic-rs fleet driver against the emulated fleet on
//! loopback, each figure beside what the issue budgets and a baseline from the same run.
//!
//! One process, two Tokio runtimes: the emulator ([`emulator::Fleet`]) on its own
//! (`gm-bench-emu` threads), the driver (`runtime::fleet::build`, exactly as
//! `gridminer run` builds an `asic-fleet` load, and its tasks) on the other
//! (`gm-bench-drv`). The split lets the CPU figure count the driver's threads only, read
//! per thread from `/proc/self/task`.
//! - **baseline**: one bare round trip per miner (connect, `{"command":"summary"}`,
//!   read to EOF), every miner at once, a few rounds: the floor any command sits on.
//! - **curtail**: with every miner mining, each group told `LoadTarget::OFF`; from that
//!   trigger to the last miner's `power_off` *as the emulator received it* (its own
//!   receive times, the truth, on the same monotonic clock), and to the driver's
//!   read-back confirming every pause. Between runs every miner is resumed and confirmed
//!   mining again.
//! - **idle polling**: CPU of the driver's threads (the emulator's apart) over a window
//!   at the driver's default poll (10 s), as % of one core.
//! - **memory**: resident growth from the emulator up and warmed (after the baseline) to
//!   after the driver ran, per miner; the whole process's growth per miner beside it.
//!
//! The firmware is fast (`stop` 300 ms, wake and ramp 600 ms) so the figures are about
//! the controller, not the simulated boards. The driver's timings are its defaults (the
//! verify period, 1 s, is what confirmation waits on).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{percentile_ms, proc_memory_mb};
use crate::actuator::asic::config::{FleetConfig, FleetMinerConfig};
use crate::actuator::asic::{Command, Fleet, MinerState, MinerStatus, Timings};
use crate::actuator::{ActuatorError, SetPower};
use crate::clock::{Clock, SystemClock};
use crate::decision::LoadTarget;
use crate::emulator::{self, Dynamics, FleetOptions};
use crate::site::LoadSpec;
use crate::units::{seconds, Watts};

/// What `bench fleet` is asked to do.
#[derive(Debug, Clone)]
pub struct FleetBenchOptions {
    pub miners: usize,
    /// Curtails (each followed by a resume).
    pub runs: usize,
    /// Length of the idle polling window.
    pub idle_seconds: f64,
    /// The first emulated miner's address; the others follow. When taken, the bench
    /// moves on a /16 at a time.
    pub first: Ipv4Addr,
    /// The driver's bound on calls in flight (the config's `concurrency`).
    pub concurrency: usize,
}

impl Default for FleetBenchOptions {
    fn default() -> Self {
        FleetBenchOptions {
            miners: 200,
            runs: 30,
            idle_seconds: 30.0,
            first: Ipv4Addr::new(127, 200, 0, 1),
            concurrency: 64,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct FleetBench {
    pub miners: usize,
    pub runs: usize,
    pub concurrency: usize,
    /// Trigger to the last miner's pause as the emulator received it, p99 (and p50)
    /// over runs, ms.
    pub last_command_sent_p99_ms: f64,
    pub last_command_sent_p50_ms: f64,
    /// The same, by the driver's own send stamps (ms resolution): where they differ
    /// from the emulator's, the time is in asic-rs (connect, token, encryption).
    pub driver_last_sent_p99_ms: f64,
    /// Trigger to every group's `set` returning (every miner acknowledged), p99, ms.
    pub all_acknowledged_p99_ms: f64,
    /// Trigger to every pause confirmed by the driver's read-back, p99 over runs, ms.
    pub all_confirmed_ms: f64,
    pub all_confirmed_p50_ms: f64,
    /// The emulator's stop time plus one verify period, ms.
    pub all_confirmed_budget_ms: f64,
    /// Every pause of every run confirmed (the bench fails otherwise).
    pub confirmed_paused: usize,
    pub baseline_round_trip_p50_ms: f64,
    pub baseline_round_trip_p99_ms: f64,
    pub baseline_samples: usize,
    /// The driver's threads over the idle window at the default poll, % of one core.
    pub poll_cpu_percent: f64,
    /// The emulator's threads over the same window, answering those polls.
    pub emulator_cpu_percent: f64,
    pub poll_seconds: f64,
    pub idle_seconds: f64,
    /// Read-backs the driver made during the window (from its miners' `read_at`).
    pub idle_reads: usize,
    /// Resident growth from the warmed emulator to after the driver ran, per miner, kB.
    pub rss_per_miner_kb: f64,
    /// Resident growth of the whole process (emulator included), per miner, kB.
    pub rss_total_per_miner_kb: f64,
    pub rss_mb: f64,
    pub cpu: String,
    pub budget: FleetBudget,
}

#[derive(Debug, Serialize)]
pub struct FleetBudget {
    pub last_command_sent_p99_ms: f64,
    pub poll_cpu_percent: f64,
    pub rss_per_miner_kb: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetBenchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Emulator(#[from] emulator::EmulatorError),
    #[error(transparent)]
    Fleet(#[from] crate::runtime::fleet::FleetError),
    #[error("fleet group: {0}")]
    Actuator(#[from] ActuatorError),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("reading /proc: {0}")]
    Proc(String),
    #[error("{0}")]
    Option(String),
}

/// Emulated firmware fast enough that a run takes seconds.
fn dynamics() -> Dynamics {
    Dynamics {
        wake: Duration::from_millis(600),
        ramp: Duration::from_millis(600),
        stop: Duration::from_millis(300),
        ..Dynamics::default()
    }
}

const WAIT: Duration = Duration::from_secs(60);
/// How often the bench looks at the driver's statuses while it waits for a state. The
/// figures come from the driver's and the emulator's own stamps, not from this look; a
/// closer look (every 5 ms: 200 statuses built each time) took a tenth of the CPU in a
/// profile, competing with the driver it measures.
const LOOK_EVERY: Duration = Duration::from_millis(25);
const EMU_THREAD: &str = "gm-bench-emu";
const DRIVER_THREAD: &str = "gm-bench-drv";

/// The CPU model, as `/proc/cpuinfo` names it.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs every phase; takes about `runs` × 3 s plus `idle_seconds` plus start-up.
pub fn fleet(opts: &FleetBenchOptions) -> Result<FleetBench, FleetBenchError> {
    seconds(
        opts.idle_seconds,
        &format!("--idle-seconds {}", opts.idle_seconds),
    )
    .map_err(|e| FleetBenchError::Option(e.to_string()))?;
    if opts.miners == 0 || opts.runs == 0 {
        return Err(FleetBenchError::Option(
            "--miners and --runs must be at least 1".into(),
        ));
    }
    if !(1..=4096).contains(&opts.concurrency) {
        return Err(FleetBenchError::Option(format!(
            "--concurrency {} is outside 1..=4096",
            opts.concurrency
        )));
    }
    raise_nofile(opts.miners)?;
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(EMU_THREAD)
        .enable_all()
        .build()?;
    let driver_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(DRIVER_THREAD)
        .enable_all()
        .build()?;
    let rss_before = rss_kb()?;
    let emu = driver_rt.block_on(start_emulator(emu_rt.handle(), opts))?;
    let result = driver_rt.block_on(phases(opts, &emu, rss_before));
    let handle = emu_rt.handle().clone();
    driver_rt.block_on(async move {
        let _ = handle.spawn(emu.stop()).await;
    });
    driver_rt.shutdown_timeout(Duration::from_secs(5));
    emu_rt.shutdown_timeout(Duration::from_secs(5));
    result
}

/// The descriptors the bench needs (one per emulated listener and connection, one per
/// driver connection), with room to spare; raised up to the hard limit (the `rlimit`
/// crate, asic-rs's own choice for this).
fn raise_nofile(miners: usize) -> Result<(), FleetBenchError> {
    let want = (miners as u64) * 4 + 256;
    let got = rlimit::increase_nofile_limit(want)?;
    if got < want {
        tracing::warn!(
            limit = got,
            want,
            "Open-file limit below what the bench needs"
        );
    }
    Ok(())
}

/// The emulated fleet, served by `emu`'s runtime, on the first free block from
/// `opts.first`.
async fn start_emulator(
    emu: &tokio::runtime::Handle,
    opts: &FleetBenchOptions,
) -> Result<emulator::Fleet, FleetBenchError> {
    let mut first = opts.first;
    for _ in 0..16 {
        let o = FleetOptions {
            miners: opts.miners,
            first,
            dynamics: dynamics(),
            ..FleetOptions::default()
        };
        match emu.spawn(emulator::Fleet::start(o)).await {
            Ok(Ok(f)) => return Ok(f),
            Ok(Err(e)) if e.is_addr_in_use() => {
                first = Ipv4Addr::from(u32::from(first).wrapping_add(1 << 16));
                if !first.is_loopback() {
                    break;
                }
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(FleetBenchError::Option(format!("emulator task: {e}"))),
        }
    }
    Err(FleetBenchError::Option(format!(
        "no free loopback block for {} miners from {}",
        opts.miners, opts.first
    )))
}

async fn phases(
    opts: &FleetBenchOptions,
    emu: &emulator::Fleet,
    rss_before: f64,
) -> Result<FleetBench, FleetBenchError> {
    let mut round_trips = Vec::new();
    for _ in 0..5 {
        round_trips.extend(baseline(&emu.socket_addrs()).await?);
    }
    round_trips.sort();
    let rss_emulator = rss_kb()?;

    let timings = Timings::default();
    let config = FleetConfig {
        name: "bench".into(),
        miners: emu
            .addresses()
            .into_iter()
            .map(|a| FleetMinerConfig {
                address: IpAddr::V4(a),
                password: None,
                model: None,
                listed: true,
            })
            .collect(),
        timings,
        concurrency: opts.concurrency,
        // No PDU relay: a pause that does not take is this bench's failure to report.
        relay_topic: None,
        models: Default::default(),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (fleet, loads) = crate::runtime::fleet::build(&config, clock).await?;
    let found: u32 = loads.iter().map(|l| l.count).sum();
    if found as usize != opts.miners {
        return Err(FleetBenchError::Timeout(format!(
            "{found} of {} miners grouped",
            opts.miners
        )));
    }
    let stop = CancellationToken::new();
    for t in fleet.tasks(stop.clone()) {
        tokio::spawn(t);
    }
    let result = curtails_and_idle(opts, emu, &fleet, &loads, timings).await;
    stop.cancel();
    let mut b = result?;
    let rss_after = rss_kb()?;
    b.baseline_round_trip_p50_ms = percentile_ms(&round_trips, 0.5);
    b.baseline_round_trip_p99_ms = percentile_ms(&round_trips, 0.99);
    b.baseline_samples = round_trips.len();
    b.rss_per_miner_kb = (rss_after - rss_emulator) / opts.miners as f64;
    b.rss_total_per_miner_kb = (rss_after - rss_before) / opts.miners as f64;
    b.rss_mb = rss_after / 1024.0;
    Ok(b)
}

/// One bare round trip to every miner at once; each one's time.
async fn baseline(addrs: &[SocketAddrV4]) -> Result<Vec<Duration>, FleetBenchError> {
    let trips = addrs.iter().map(|&a| async move {
        let t = Instant::now();
        let mut s = tokio::net::TcpStream::connect(a).await?;
        s.write_all(br#"{"command":"summary"}"#).await?;
        let mut buf = Vec::with_capacity(4096);
        s.read_to_end(&mut buf).await?;
        if buf.is_empty() {
            return Err(std::io::Error::other(format!("{a}: empty answer")));
        }
        Ok::<_, std::io::Error>(t.elapsed())
    });
    let out = tokio::time::timeout(WAIT, futures::future::join_all(trips))
        .await
        .map_err(|_| FleetBenchError::Timeout("the baseline round trips".into()))?;
    Ok(out.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// Waits until every status passes `done`, looking every [`LOOK_EVERY`].
async fn until(
    fleet: &Fleet,
    what: &str,
    done: impl Fn(&MinerStatus) -> bool,
) -> Result<Vec<MinerStatus>, FleetBenchError> {
    let end = Instant::now() + WAIT;
    loop {
        let s = fleet.statuses(None);
        if s.iter().all(&done) {
            return Ok(s);
        }
        if Instant::now() > end {
            let bad: Vec<_> = s.iter().filter(|m| !done(m)).collect();
            return Err(FleetBenchError::Timeout(format!(
                "{what} ({} of {} miners not yet; the first: {:?})",
                bad.len(),
                s.len(),
                bad.first()
            )));
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Whether the miner's last command is `cmd`, confirmed. (Each phase starts from the
/// other command confirmed, so a match is this phase's.)
fn confirmed(s: &MinerStatus, cmd: Command) -> bool {
    s.last_command
        .as_ref()
        .is_some_and(|c| c.command == cmd && c.confirmed.is_some())
}

/// Tells every group to run all its miners; returns once every one hashes by the
/// emulator's truth and is read mining, its last command (if any) a confirmed resume.
async fn all_mining(
    emu: &emulator::Fleet,
    fleet: &Fleet,
    on: &[LoadTarget],
) -> Result<(), FleetBenchError> {
    set_all(fleet, on).await?;
    until(fleet, "every miner mining and confirmed", |s| {
        s.state == MinerState::Mining
            && s.target.mining
            && s.last_command
                .as_ref()
                .is_none_or(|c| c.command != Command::Pause && c.confirmed.is_some())
    })
    .await?;
    let end = Instant::now() + WAIT;
    while emu.snapshots().iter().any(|s| !s.hashing) {
        if Instant::now() > end {
            return Err(FleetBenchError::Timeout(
                "every emulated miner hashing".into(),
            ));
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    Ok(())
}

async fn set_all(fleet: &Fleet, targets: &[LoadTarget]) -> Result<(), FleetBenchError> {
    let sets = targets.iter().enumerate().map(|(g, &t)| async move {
        let mut group = fleet.group(g);
        group.set(t).await
    });
    for r in futures::future::join_all(sets).await {
        r?;
    }
    Ok(())
}

async fn curtails_and_idle(
    opts: &FleetBenchOptions,
    emu: &emulator::Fleet,
    fleet: &Fleet,
    loads: &[LoadSpec],
    timings: Timings,
) -> Result<FleetBench, FleetBenchError> {
    let off: Vec<LoadTarget> = loads.iter().map(|_| LoadTarget::OFF).collect();
    let on: Vec<LoadTarget> = loads
        .iter()
        .map(|l| LoadTarget {
            units_on: l.count,
            power: Watts(l.rated_power.0 * l.count as f64),
        })
        .collect();
    let index: HashMap<IpAddr, usize> = emu
        .addresses()
        .into_iter()
        .enumerate()
        .map(|(i, a)| (IpAddr::V4(a), i))
        .collect();
    let mut last_sent = Vec::with_capacity(opts.runs);
    let mut driver_sent = Vec::with_capacity(opts.runs);
    let mut acked = Vec::with_capacity(opts.runs);
    let mut all_confirmed = Vec::with_capacity(opts.runs);
    let mut confirmed_paused = 0;
    for _ in 0..opts.runs {
        // Every miner mining first: the emulator starts them hashing, but the driver's
        // goal is off until told otherwise (it pauses them at start).
        all_mining(emu, fleet, &on).await?;
        let emu_at = emu.elapsed();
        let wall = SystemClock.now();
        let t = Instant::now();
        set_all(fleet, &off).await?;
        acked.push(t.elapsed());
        let statuses = until(fleet, "every pause confirmed", |s| {
            confirmed(s, Command::Pause)
        })
        .await?;
        confirmed_paused += statuses.len();
        let rec = |s: &MinerStatus| s.last_command.clone().expect("checked by `confirmed`");
        let latest_confirm = statuses
            .iter()
            .filter_map(|s| rec(s).confirmed)
            .max()
            .unwrap_or(wall);
        all_confirmed.push(latest_confirm.since(wall));
        let latest_send = statuses.iter().map(|s| rec(s).sent).max().unwrap_or(wall);
        driver_sent.push(latest_send.since(wall));
        // The truth: each miner's first power_off received after the trigger.
        let snaps = emu.snapshots();
        let mut last = Duration::ZERO;
        for s in &statuses {
            let snap = index
                .get(&s.address)
                .and_then(|&i| snaps.get(i))
                .ok_or_else(|| FleetBenchError::Option(format!("{} not emulated", s.address)))?;
            let at = snap
                .received
                .iter()
                .find(|r| r.at >= emu_at && r.command == emulator::Command::PowerOff)
                .map(|r| r.at - emu_at)
                .ok_or_else(|| {
                    FleetBenchError::Timeout(format!(
                        "{}: confirmed paused, yet no power_off received",
                        s.address
                    ))
                })?;
            last = last.max(at);
        }
        last_sent.push(last);
    }
    // Back to mining, then the quiet window at the default poll.
    all_mining(emu, fleet, &on).await?;
    let window = Duration::from_secs_f64(opts.idle_seconds);
    let start_wall = SystemClock.now();
    let a = thread_ticks()?;
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let b = thread_ticks()?;
    let elapsed = t.elapsed().as_secs_f64();
    let share = |emu: bool| {
        let ticks: u64 = b
            .iter()
            .filter(|(name, _)| name.starts_with(EMU_THREAD) == emu)
            .map(|(name, &v)| v.saturating_sub(a.get(name).copied().unwrap_or(0)))
            .sum();
        ticks as f64 / CLOCK_TICKS_PER_S / elapsed * 100.0
    };
    let idle_reads = fleet
        .statuses(None)
        .iter()
        .filter(|s| s.read_at.is_some_and(|r| r > start_wall))
        .count();

    for v in [
        &mut last_sent,
        &mut driver_sent,
        &mut acked,
        &mut all_confirmed,
    ] {
        v.sort();
    }
    Ok(FleetBench {
        miners: opts.miners,
        runs: opts.runs,
        concurrency: opts.concurrency,
        last_command_sent_p99_ms: percentile_ms(&last_sent, 0.99),
        last_command_sent_p50_ms: percentile_ms(&last_sent, 0.5),
        driver_last_sent_p99_ms: percentile_ms(&driver_sent, 0.99),
        all_acknowledged_p99_ms: percentile_ms(&acked, 0.99),
        all_confirmed_ms: percentile_ms(&all_confirmed, 0.99),
        all_confirmed_p50_ms: percentile_ms(&all_confirmed, 0.5),
        all_confirmed_budget_ms: (dynamics().stop + timings.verify_every).as_secs_f64() * 1e3,
        confirmed_paused,
        baseline_round_trip_p50_ms: f64::NAN,
        baseline_round_trip_p99_ms: f64::NAN,
        baseline_samples: 0,
        poll_cpu_percent: share(false),
        emulator_cpu_percent: share(true),
        poll_seconds: timings.poll.as_secs_f64(),
        idle_seconds: elapsed,
        idle_reads,
        rss_per_miner_kb: f64::NAN,
        rss_total_per_miner_kb: f64::NAN,
        rss_mb: f64::NAN,
        cpu: cpu_model(),
        budget: FleetBudget {
            last_command_sent_p99_ms: 50.0,
            poll_cpu_percent: 2.0,
            rss_per_miner_kb: 50.0,
        },
    })
}

fn rss_kb() -> Result<f64, FleetBenchError> {
    proc_memory_mb("self", "VmRSS:")
        .map(|mb| mb * 1024.0)
        .ok_or_else(|| FleetBenchError::Proc("VmRSS of this process".into()))
}

/// Linux's USER_HZ, the unit of /proc's CPU times, is 100 on every mainstream
/// architecture.
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// Every thread of this process, `name/tid`, with its CPU time (user + system) in ticks.
fn thread_ticks() -> Result<HashMap<String, u64>, FleetBenchError> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            return Err(FleetBenchError::Proc(format!("{:?}", entry.path())));
        };
        let name = head.split_once('(').map_or("", |(_, n)| n);
        // After the name: state is field 3, utime 14 and stime 15.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            f.get(i - 3)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(
            format!("{name}/{}", entry.file_name().to_string_lossy()),
            field(14) + field(15),
        );
    }
    Ok(out)
}
