//! Glue for `gridminer run`: read the site config, start the daemon on a Tokio runtime,
//! stop it in order on SIGINT or SIGTERM, or when a task it depends on dies (then the
//! exit is non-zero and the error names the task).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

/// The runtime the daemon runs on, in `run`, `demo` and `bench live` alike: two workers.
pub(super) fn daemon_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let site = crate::runtime::config::load(path)?;
    let runtime = daemon_runtime()?;
    runtime.block_on(async {
        // Before the loads start: failing here later (it was an `expect`) would have
        // panicked past `stop`, leaving the loads where they were instead of safe.
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let running = crate::runtime::start(site).await?;
        tracing::info!(config = %path.display(), "gridminer running");
        // A failed task stops the daemon the same orderly way, and `stop` then returns
        // it as the error: a non-zero exit, so systemd restarts us.
        tokio::select! {
            _ = wait_for_signal(term) => tracing::info!("Shutting down"),
            failure = running.failed() => tracing::error!(%failure, "Shutting down after a failure"),
        }
        running.stop(Duration::from_secs(10)).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal(mut term: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `gridminer bench live`.
pub fn bench(opts: crate::bench::live::LiveOptions, json: bool) -> anyhow::Result<ExitCode> {
    crate::mqtt::install_crypto_provider();
    let runtime = daemon_runtime()?;
    let b = runtime.block_on(crate::bench::live::live(&opts))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&b)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let budget = &b.budget;
    outln!(
        "ingest            {:.0} msg/s accepted ({} messages, {} lost); bare subscriber {:.0} msg/s, ratio {:.2} (budget {:.0} msg/s)\n\
         paced ingest      {:.0} msg/s: lag {:.1} ms in the first second, {:.1} ms in the last; {} of {} accepted\n\
         signal to load    p50 {:.2} ms, p99 {:.2} ms; broker round trip alone p50 {:.2} ms, p99 {:.2} ms (budget p99 {} ms)\n\
         curtail to stop   p50 {:.2} ms, p99 {:.2} ms (budget p99 {} ms)\n\
         idle daemon       {:.1} MB resident, {:.2} % of a core over {:.0} s (budget {} MB, {} %)\n\
         dashboard         first load {:.1} kB (state {:.1} kB; budget {:.0} kB); {} open pages: {:.2} % of a core, {:+.2} % over none (budget {} %)\n\
         cpu               {}",
        b.ingest_msgs_per_s, b.ingest_messages, b.ingest_lost, b.baseline_msgs_per_s, b.ingest_ratio_vs_baseline, budget.ingest_msgs_per_s,
        b.paced_rate, b.paced_lag_first_second_ms, b.paced_lag_last_second_ms, b.paced_accepted, b.paced_published,
        b.signal_to_load_p50_ms, b.signal_to_load_p99_ms, b.baseline_round_trip_p50_ms, b.baseline_round_trip_p99_ms, budget.signal_to_load_p99_ms,
        b.curtail_to_stop_p50_ms, b.curtail_to_stop_p99_ms, budget.curtail_to_stop_p99_ms,
        b.idle_rss_mb, b.idle_cpu_percent, b.idle_seconds, budget.idle_rss_mb, budget.idle_cpu_percent,
        b.dashboard_first_load_bytes as f64 / 1e3, b.dashboard_state_bytes as f64 / 1e3, budget.dashboard_first_load_bytes as f64 / 1e3,
        b.dashboard_clients, b.dashboard_cpu_percent, b.dashboard_extra_cpu_percent, budget.dashboard_extra_cpu_percent,
        b.cpu
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `gridminer bench fleet`.
pub fn bench_fleet(
    opts: crate::bench::fleet::FleetBenchOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let b = crate::bench::fleet::fleet(&opts)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&b)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    let budget = &b.budget;
    outln!(
        "fleet             {} emulated miners, {} curtails, concurrency {}; CPU {}\n\
         last command sent p50 {:.1} ms, p99 {:.1} ms after the trigger (emulator's receive times; driver's own stamps p99 {:.0} ms; every set acknowledged p99 {:.1} ms): budget p99 {} ms, {}\n\
         all confirmed      p50 {:.0} ms, p99 {:.0} ms ({} pauses confirmed): budget stop + one read-back {:.0} ms, {}\n\
         bare round trip    p50 {:.2} ms, p99 {:.2} ms per miner, all at once ({} samples)\n\
         idle polling       {:.2} % of a core by the driver's threads, emulator's {:.2} %, over {:.0} s at a {:.0} s poll ({} miners read): budget {} %, {}\n\
         memory             {:.1} kB per miner (driver), {:.1} kB with the emulator; {:.1} MB resident: budget {} kB, {}",
        b.miners, b.runs, b.concurrency, b.cpu,
        b.last_command_sent_p50_ms, b.last_command_sent_p99_ms, b.driver_last_sent_p99_ms, b.all_acknowledged_p99_ms,
        budget.last_command_sent_p99_ms, met(b.last_command_sent_p99_ms <= budget.last_command_sent_p99_ms),
        b.all_confirmed_p50_ms, b.all_confirmed_ms, b.confirmed_paused, b.all_confirmed_budget_ms,
        met(b.all_confirmed_ms <= b.all_confirmed_budget_ms),
        b.baseline_round_trip_p50_ms, b.baseline_round_trip_p99_ms, b.baseline_samples,
        b.poll_cpu_percent, b.emulator_cpu_percent, b.idle_seconds, b.poll_seconds, b.idle_reads,
        budget.poll_cpu_percent, met(b.poll_cpu_percent <= budget.poll_cpu_percent),
        b.rss_per_miner_kb, b.rss_total_per_miner_kb, b.rss_mb,
        budget.rss_per_miner_kb, met(b.rss_per_miner_kb <= budget.rss_per_miner_kb)
    )?;
    Ok(ExitCode::SUCCESS)
}
