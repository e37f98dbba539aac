//! `gridminer hash ...`: benchmark the kernels, scan a header's nonce range, or mine for
//! a Stratum V1 pool.
//!
//! Role: CLI glue (argument parsing, printing, the Tokio runtime for `mine`). Must not
//! contain hashing or protocol logic; it calls `actuator::hasher`.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use crate::actuator::hasher::stratum::{StratumClient, StratumConfig};
use crate::actuator::hasher::{BlockHeader, HasherConfig, HasherPool, Kernel, Target};
use crate::bench::hash::{self as bench, BenchOptions};
use crate::units::{HashRate, Watts};

#[derive(Debug, clap::Subcommand)]
pub enum HashCommand {
    /// Measure MH/s of the fastest kernel and of the portable baseline, scaling across
    /// threads, pause latency and duty-cycle accuracy.
    Bench {
        /// Worker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Seconds per measured phase.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Pauses to time for the latency percentiles.
        #[arg(long, default_value_t = 200)]
        pauses: usize,
        #[arg(long)]
        json: bool,
    },
    /// Scan nonces FROM..=TO of an 80-byte header and print every nonce whose double
    /// SHA-256 meets the header's own target (nBits).
    Scan {
        /// The header, 160 hex digits as serialised on the wire.
        #[arg(long)]
        header: String,
        #[arg(long)]
        from: u32,
        /// Last nonce scanned (inclusive).
        #[arg(long)]
        to: u32,
        /// Kernel by name (default: the fastest this CPU runs).
        #[arg(long)]
        kernel: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Mine for a Stratum V1 pool, printing hashrate and shares.
    Mine {
        /// stratum+tcp://HOST:PORT
        #[arg(long)]
        pool: String,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "x")]
        password: String,
        /// Worker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Power target in W above idle (default: every thread at full speed).
        #[arg(long)]
        power_w: Option<f64>,
        /// Modelled power of one busy core, W.
        #[arg(long, default_value_t = 10.0)]
        watts_per_core: f64,
        /// Seconds between status lines.
        #[arg(long, default_value_t = 10.0)]
        report_every: f64,
        /// Do not ask the pool for version rolling.
        #[arg(long)]
        no_version_rolling: bool,
    },
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn run(cmd: HashCommand) -> anyhow::Result<()> {
    match cmd {
        HashCommand::Bench {
            threads,
            seconds,
            pauses,
            json,
        } => run_bench(
            threads.unwrap_or_else(default_threads),
            seconds,
            pauses,
            json,
        ),
        HashCommand::Scan {
            header,
            from,
            to,
            kernel,
            json,
        } => run_scan(&header, from, to, kernel.as_deref(), json),
        HashCommand::Mine {
            pool,
            user,
            password,
            threads,
            power_w,
            watts_per_core,
            report_every,
            no_version_rolling,
        } => {
            let mut config = StratumConfig::new(&pool, &user, &password)?;
            config.version_rolling = !no_version_rolling;
            run_mine(
                config,
                threads.unwrap_or_else(default_threads),
                power_w.map(Watts),
                Watts(watts_per_core),
                // Checked: `from_secs_f64` panics on a negative or huge value.
                crate::units::seconds(report_every, &format!("--report-every {report_every}"))?
                    .max(Duration::from_millis(1)),
            )
        }
    }
}

fn run_bench(threads: usize, seconds: f64, pauses: usize, json: bool) -> anyhow::Result<()> {
    if seconds.is_nan() || seconds <= 0.0 {
        bail!("--seconds must be positive");
    }
    let r = bench::run(&BenchOptions {
        threads,
        phase: crate::units::seconds(seconds, &format!("--seconds {seconds}"))?,
        pauses,
    });
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(());
    }
    outln!("kernel            {} ({} threads)", r.kernel, r.threads)?;
    outln!(
        "hashrate          {:.2} MH/s per core, {:.2} MH/s total ({:.2} MH/s on one thread alone, scaling {:.1} %)",
        r.mhs_per_core,
        r.mhs_total,
        r.mhs_single_thread,
        r.scaling * 100.0
    )?;
    outln!(
        "baseline          {} {:.2} MH/s per core: ratio {:.2}",
        r.baseline_kernel,
        r.baseline_mhs_per_core,
        r.ratio
    )?;
    outln!(
        "naive             Sha256::digest twice {:.2} MH/s per core: ratio {:.2}",
        r.naive_mhs_per_core,
        r.naive_ratio
    )?;
    outln!(
        "pause latency     p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        r.pause_p50_ms,
        r.pause_p99_ms,
        r.pause_max_ms
    )?;
    outln!(
        "duty cycle        target {:.3}, achieved {:.3} over {} seconds of 10 x 100 ms (error {:.2} %, worst second {:.2} %)",
        r.duty_target, r.duty_achieved, r.duty_seconds, r.duty_error_pct, r.duty_error_worst_second_pct
    )?;
    let seconds: Vec<String> = r
        .duty_each_second
        .iter()
        .map(|d| format!("{:+.1} % ({:.0} %)", d.error_pct, d.flat_out_spread_pct))
        .collect();
    outln!(
        "  each second     error (spread of the flat-out windows under it): {}",
        seconds.join(", ")
    )?;
    for (name, mhs) in &r.kernels_best_burst_mhs {
        outln!("one thread, best   {name} {mhs:.2} MH/s (per on-CPU second)")?;
    }
    match r.rapl_watts_per_core {
        Some(w) => outln!("RAPL              {w:.1} W per busy core")?,
        None => outln!("RAPL              not available on this machine")?,
    }
    Ok(())
}

fn run_scan(
    header: &str,
    from: u32,
    to: u32,
    kernel: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let header = BlockHeader::from_hex(header).context("--header")?;
    if to < from {
        bail!("--to ({to}) is below --from ({from})");
    }
    let target = Target::from_compact(header.bits()).context("the header's bits")?;
    let kernel = match kernel {
        Some(name) => Kernel::by_name(name).context("--kernel")?,
        None => Kernel::best(),
    };
    let job = header.prepare(target);
    let started = std::time::Instant::now();
    let total = to as u64 - from as u64 + 1;
    let mut found: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = nonce_parts(from, to, default_threads())
            .into_iter()
            .map(|(start, count)| {
                let job = &job;
                s.spawn(move || {
                    let mut hits = Vec::new();
                    kernel.scan(job, start, count, |n| {
                        if target.is_met_by(&header.with_nonce(n).block_hash()) {
                            hits.push(n);
                        }
                    });
                    hits
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("scan thread"))
            .collect()
    });
    found.sort_unstable();
    let secs = started.elapsed().as_secs_f64();
    let results: Vec<_> = found
        .iter()
        .map(|&n| (n, header.with_nonce(n).block_hash().display_hex()))
        .collect();
    if json {
        let v = serde_json::json!({
            "kernel": kernel.name(),
            "from": from,
            "to": to,
            "target": target.to_hex(),
            "seconds": secs,
            "found": results.iter().map(|(n, h)| serde_json::json!({"nonce": n, "hash": h})).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for (n, h) in &results {
            outln!("{n} {h}")?;
        }
        // A closed stderr is no reason to fail a scan whose results are out.
        let _ = writeln!(
            std::io::stderr(),
            "scanned {total} nonces with {} in {secs:.3} s; {} found",
            kernel.name(),
            results.len()
        );
    }
    Ok(())
}

/// `from..=to` split into one `(start, count)` per thread, each one kernel call. The
/// whole nonce space (2^32) does not fit one call's u32 count, so it takes two parts even
/// with one thread (one part used to truncate the count to 0 and scan nothing).
fn nonce_parts(from: u32, to: u32, threads: usize) -> Vec<(u32, u32)> {
    let total = to as u64 - from as u64 + 1;
    let parts = (threads as u64)
        .min(total)
        .max(total.div_ceil(u32::MAX as u64))
        .max(1);
    (0..parts)
        .map(|i| {
            let lo = from as u64 + total * i / parts;
            let hi = from as u64 + total * (i + 1) / parts;
            // lo < to + 1 <= 2^32, and parts >= total / u32::MAX keeps each part shorter.
            let start = u32::try_from(lo).expect("a part starts at or below `to`");
            let count = u32::try_from(hi - lo).expect("each part has fewer than 2^32 nonces");
            (start, count)
        })
        .collect()
}

fn run_mine(
    config: StratumConfig,
    threads: usize,
    power: Option<Watts>,
    watts_per_core: Watts,
    report_every: Duration,
) -> anyhow::Result<()> {
    let kernel = Kernel::best();
    tracing::info!(kernel = kernel.name(), threads, "Starting hasher");
    let (pool, shares) = HasherPool::start(HasherConfig {
        threads,
        watts_per_core,
        hashrate_per_core: HashRate::ZERO,
        kernel,
    });
    let pool = Arc::new(pool);
    pool.set_power_target(power.unwrap_or(watts_per_core * threads as f64));
    let client = StratumClient::new(config);
    let stats = client.stats();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result: anyhow::Result<()> = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let mut task = tokio::spawn(client.run(pool.clone(), shares, shutdown.clone()));
        let mut tick = tokio::time::interval(report_every);
        tick.tick().await;
        loop {
            tokio::select! {
                r = &mut task => return Ok(r??),
                _ = tokio::signal::ctrl_c() => {
                    shutdown.cancel();
                    return Ok(task.await??);
                }
                _ = tick.tick() => {
                    let st = pool.status();
                    let c = stats.snapshot();
                    outln!(
                        "{} {:.2} MH/s ({} threads, duty {:.2}, {:.1} W model) accepted {} rejected {} stale-dropped {} malformed {}",
                        if c.connected { "connected" } else { "not connected" },
                        st.hashrate.0 / 1e6, st.active_threads, st.duty.get(), st.power.0,
                        c.accepted, c.rejected, c.stale_dropped, c.malformed
                    )?;
                }
            }
        }
    });
    if let Ok(pool) = Arc::try_unwrap(pool) {
        pool.shutdown();
    }
    let c = stats.snapshot();
    // Printed whatever ended the run, the pool's refusal included; then that reason.
    let printed = outln!(
        "accepted {} rejected {} submitted {}",
        c.accepted,
        c.rejected,
        c.submitted
    );
    result.and(printed)
}

#[cfg(test)]
mod tests {
    use super::nonce_parts;

    /// r10 (issue 10): on one thread the whole nonce space is scanned (it was one part of
    /// 2^32 nonces, whose u32 count truncated to 0), and any split covers the range
    /// exactly once, in order.
    #[test]
    fn r10_nonce_parts_cover_the_range_on_any_thread_count() {
        for (from, to) in [
            (0, u32::MAX),
            (0, 0),
            (7, 7),
            (2083236000, 2083237000),
            (u32::MAX - 5, u32::MAX),
        ] {
            for threads in [0, 1, 2, 3, 64] {
                let parts = nonce_parts(from, to, threads);
                let mut next = from as u64;
                for &(start, count) in &parts {
                    assert_eq!(start as u64, next, "{from}..={to} on {threads}: {parts:?}");
                    assert!(count > 0, "{from}..={to} on {threads}: {parts:?}");
                    next += count as u64;
                }
                assert_eq!(next, to as u64 + 1, "{from}..={to} on {threads}: {parts:?}");
            }
        }
        assert_eq!(
            nonce_parts(0, u32::MAX, 1),
            vec![(0, 1 << 31), (1 << 31, 1 << 31)]
        );
    }
}
