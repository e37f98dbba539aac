//! Glue for `gridminer run`: read the site config, start the daemon on a Tokio runtime,
//! stop it in order on SIGINT or SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::config::live::load_live;
use crate::config::{ConfigError, Problems};
use crate::signal::modbus::validate_devices;
use crate::signal::operator::take_operator_config;

/// Reads a live config with the sections its components own.
pub fn load(path: &Path) -> Result<crate::runtime::Site, ConfigError> {
    let mut operators = None;
    let mut modbus = Vec::new();
    let mut telemetry = None;
    let config = load_live(path, &mut |t: &mut toml::Table, p: &mut Problems| {
        operators = take_operator_config(t, path, p);
        modbus = validate_devices(t, p);
        telemetry = Some(crate::telemetry::config::validate(p, t, path));
    })?;
    Ok(crate::runtime::Site {
        config,
        operators: operators.expect("no problems means the operator sections were taken"),
        modbus,
        telemetry: telemetry.expect("taken above"),
    })
}

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let site = load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let running = crate::runtime::start(site).await?;
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
