//! Glue for `gridminer run`: read the site config, start the daemon on a Tokio runtime,
//! stop it in order on SIGINT or SIGTERM, or when a task it depends on dies (then the
//! exit is non-zero and the error names the task).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let site = crate::runtime::config::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
         idle daemon       {:.1} MB resident, {:.2} % of a core over {:.0} s (budget {} MB, {} %)",
        b.ingest_msgs_per_s, b.ingest_messages, b.ingest_lost, b.baseline_msgs_per_s, b.ingest_ratio_vs_baseline, budget.ingest_msgs_per_s,
        b.paced_rate, b.paced_lag_first_second_ms, b.paced_lag_last_second_ms, b.paced_accepted, b.paced_published,
        b.signal_to_load_p50_ms, b.signal_to_load_p99_ms, b.baseline_round_trip_p50_ms, b.baseline_round_trip_p99_ms, budget.signal_to_load_p99_ms,
        b.curtail_to_stop_p50_ms, b.curtail_to_stop_p99_ms, budget.curtail_to_stop_p99_ms,
        b.idle_rss_mb, b.idle_cpu_percent, b.idle_seconds, budget.idle_rss_mb, budget.idle_cpu_percent
    )?;
    Ok(ExitCode::SUCCESS)
}
