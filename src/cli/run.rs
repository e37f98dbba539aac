//! Glue for `gridminer run`: read the site config, start the daemon on a Tokio runtime,
//! stop it in order on SIGINT or SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::config::live::{load_live, LiveConfig};
use crate::config::{ConfigError, Problems};
use crate::signal::operator::{take_operator_config, OperatorConfig};

/// Reads a live config with its operator sections.
pub fn load(path: &Path) -> Result<(LiveConfig, OperatorConfig), ConfigError> {
    let mut operators = None;
    let config = load_live(path, &mut |t: &mut toml::Table, p: &mut Problems| {
        operators = take_operator_config(t, path, p);
    })?;
    Ok((
        config,
        operators.expect("no problems means the operator sections were taken"),
    ))
}

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let (config, operators) = load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let running = crate::runtime::start(config, operators).await?;
        tracing::info!(config = %path.display(), "gridminer running");
        wait_for_signal().await;
        tracing::info!("Shutting down");
        running.stop(Duration::from_secs(10)).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
