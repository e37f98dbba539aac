//! `gridminer bench ledger`: what the ledger costs. Appending at a paced 1,000 entries
//! a second (CPU of the appending thread, checkpoints included, against the same paced
//! loop writing the same bytes to a plain file: the cheapest durable log), flat out, and
//! verifying a year of 1-minute entries (against reading and hashing every entry once,
//! the floor any verifier pays).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::Timestamp;
use crate::ledger::entry::{Account, BySource, Entry, GroupCounts};
use crate::ledger::log::Log;
use crate::ledger::note::{private_key, SiteKey};
use crate::ledger::{tiles, verify, LedgerError};

#[derive(Debug, Clone, Serialize)]
pub struct LedgerBench {
    pub cpu: String,
    pub entry_bytes: usize,
    /// Paced appends: entries per second asked, seconds run.
    pub paced_rate: f64,
    pub paced_seconds: f64,
    /// CPU of the appending thread while paced, % of one core (checkpoints every
    /// `checkpoint_every_s` included).
    pub append_cpu_percent: f64,
    /// The same paced loop writing the same bytes to a plain file.
    pub baseline_cpu_percent: f64,
    /// Entries per wake-up of the paced loops.
    pub batch: u64,
    pub checkpoint_every_s: f64,
    /// Appends per second flat out (no checkpoints).
    pub flat_out_per_s: f64,
    /// A year of 1-minute entries, checkpointed hourly.
    pub year_entries: u64,
    pub year_checkpoints: u64,
    pub verify_seconds: f64,
    /// Reading every bundle and SHA-256 hashing every entry once.
    pub baseline_read_hash_seconds: f64,
}

/// CPU time of the calling thread, from `/proc/thread-self/schedstat` (the scheduler's
/// run time in ns: exact, where the tick-sampled `stat` misses a thread that sleeps
/// between short bursts, as a paced appender does).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = s
        .split_whitespace()
        .next()
        .and_then(|x| x.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// A realistic account entry for minute `i` of 2018.
fn account(i: u64) -> Vec<u8> {
    let from = Timestamp(1_514_764_800_000 + i as i64 * 60_000);
    let x = (i % 97) as f64;
    let mut groups = std::collections::BTreeMap::new();
    groups.insert(
        "s19".to_string(),
        GroupCounts {
            starts: i % 3,
            stops: i % 2,
            on: 40,
        },
    );
    groups.insert(
        "m30".to_string(),
        GroupCounts {
            starts: 0,
            stops: 0,
            on: 12,
        },
    );
    Entry::Account(Account {
        from: from.to_rfc3339(),
        to: Timestamp(from.0 + 60_000).to_rfc3339(),
        wh: BySource {
            curtailed: 1234.567 + x,
            own_generation: 802.125,
            grid: 17.5 + x,
        },
        own_generation_eur: 0.040106,
        grid_eur: 0.001925,
        grid_intensity_g_per_kwh: Some(402.117),
        grid_co2eq_g: 7037.05,
        grid_unrated_wh: 0.0,
        hashes: 1.3e19 + x * 1e15,
        shares_accepted: 1200 + i % 7,
        groups,
    })
    .to_bytes()
}

fn key() -> SiteKey {
    SiteKey::parse(&private_key("gridminer-bench", &[42u8; 32])).expect("a fixed key parses")
}

/// Entries appended per wake-up while paced: 10 every 10 ms is 1,000 a second, as a
/// daemon books a step's entries together; a wake-up per entry would measure the
/// scheduler (about 5 % of a core here, with or without the ledger).
const BATCH: u64 = 10;

pub fn ledger(
    dir: &Path,
    paced_seconds: f64,
    year_entries: u64,
) -> Result<LedgerBench, LedgerError> {
    let entry = account(0);
    let rate = 1000.0;
    let checkpoint_every = Duration::from_secs(1);
    let n = (rate * paced_seconds) as u64;
    let tick = Duration::from_secs_f64(1.0 / rate);

    // Paced appends into the ledger, checkpointing every second.
    let live = dir.join("paced");
    let (mut log, _) = Log::open(&live, key())?;
    let (start, cpu0) = (Instant::now(), thread_cpu());
    let mut last_checkpoint = start;
    for i in 0..n {
        if i % BATCH == 0 {
            pace(start, tick * i as u32);
        }
        log.append(&account(i))?;
        if last_checkpoint.elapsed() >= checkpoint_every {
            log.checkpoint()?;
            last_checkpoint = Instant::now();
        }
    }
    log.checkpoint()?;
    let append_cpu = (thread_cpu() - cpu0).as_secs_f64() / start.elapsed().as_secs_f64() * 100.0;

    // Baseline: the same paced loop, the same bytes, one plain file, synced as often.
    let plain = dir.join("plain.log");
    let mut f = std::fs::File::create(&plain).map_err(|e| LedgerError::io(&plain, e))?;
    let (start, cpu0) = (Instant::now(), thread_cpu());
    let mut last_sync = start;
    for i in 0..n {
        if i % BATCH == 0 {
            pace(start, tick * i as u32);
        }
        f.write_all(&account(i))
            .map_err(|e| LedgerError::io(&plain, e))?;
        if last_sync.elapsed() >= checkpoint_every {
            f.sync_all().map_err(|e| LedgerError::io(&plain, e))?;
            last_sync = Instant::now();
        }
    }
    let baseline_cpu = (thread_cpu() - cpu0).as_secs_f64() / start.elapsed().as_secs_f64() * 100.0;

    // Flat out, no checkpoints.
    let flat = dir.join("flat");
    let (mut log, _) = Log::open(&flat, key())?;
    let m = 200_000u64;
    let t = Instant::now();
    for i in 0..m {
        log.append(&entry)?;
        let _ = i;
    }
    let flat_out = m as f64 / t.elapsed().as_secs_f64();
    drop(log);

    // A year of 1-minute entries, checkpointed hourly (built without syncing: the
    // fixture's disk time is not what is measured), then verified.
    let year = dir.join("year");
    let (mut log, _) = Log::open(&year, key())?;
    log.set_durable(false);
    let mut checkpoints = 0;
    for i in 0..year_entries {
        log.append(&account(i))?;
        if (i + 1) % 60 == 0 {
            log.checkpoint()?;
            checkpoints += 1;
        }
    }
    if log.checkpoint()?.is_some() {
        checkpoints += 1;
    }
    let vkey = log.vkey().to_string();
    drop(log);
    let t = Instant::now();
    let report = verify::verify(&year, &vkey)?;
    let verify_seconds = t.elapsed().as_secs_f64();
    if report.entries != year_entries {
        return Err(LedgerError::Usage(format!(
            "verified {} entries of {year_entries}",
            report.entries
        )));
    }

    let t = Instant::now();
    let mut hashed = 0u64;
    for b in 0..year_entries.div_ceil(tiles::WIDTH) {
        for e in verify::read_bundle(&year, b, year_entries)? {
            std::hint::black_box(tlog_tiles::record_hash(&e));
            hashed += 1;
        }
    }
    let baseline_read_hash = t.elapsed().as_secs_f64();
    if hashed != year_entries {
        return Err(LedgerError::Usage(format!(
            "read {hashed} entries of {year_entries}"
        )));
    }

    Ok(LedgerBench {
        cpu: super::fleet::cpu_model(),
        entry_bytes: entry.len(),
        paced_rate: rate,
        paced_seconds,
        append_cpu_percent: append_cpu,
        baseline_cpu_percent: baseline_cpu,
        batch: BATCH,
        checkpoint_every_s: checkpoint_every.as_secs_f64(),
        flat_out_per_s: flat_out,
        year_entries,
        year_checkpoints: checkpoints,
        verify_seconds,
        baseline_read_hash_seconds: baseline_read_hash,
    })
}

/// Sleeps until `at` after `start` (a paced loop's beat).
fn pace(start: Instant, at: Duration) {
    let now = start.elapsed();
    if at > now {
        std::thread::sleep(at - now);
    }
}

pub fn text(b: &LedgerBench) -> String {
    format!(
        "gridminer bench ledger on {cpu}\n\
         entry: {eb} bytes (a 1-minute energy account)\n\
         append, paced at {rate:.0}/s ({batch} per wake-up) for {ps:.0} s, checkpoint every {ce:.0} s: {ac:.2} % of a core (goal < 5 %)\n\
         baseline, same bytes to a plain file synced as often: {bc:.2} % of a core\n\
         append flat out (no checkpoints): {fo:.0} entries/s\n\
         verify a year of 1-minute entries ({ye} entries, {yc} checkpoints): {vs:.2} s (goal < 10 s)\n\
         baseline, read every bundle and hash every entry once: {bs:.2} s\n",
        cpu = b.cpu,
        eb = b.entry_bytes,
        rate = b.paced_rate,
        ps = b.paced_seconds,
        ce = b.checkpoint_every_s,
        ac = b.append_cpu_percent,
        batch = b.batch,
        bc = b.baseline_cpu_percent,
        fo = b.flat_out_per_s,
        ye = b.year_entries,
        yc = b.year_checkpoints,
        vs = b.verify_seconds,
        bs = b.baseline_read_hash_seconds,
    )
}
