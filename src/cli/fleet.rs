//! Glue for `gridminer fleet ...`: the simulated ASIC fleet (`simulate`), and `scan` and
//! `status` (in `fleet_ops`).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::emulator::{self, FaultShare, Fleet, FleetOptions};
use crate::units::Watts;

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Serve simulated miners (Whatsminer API v2, LuxOS), each on its own loopback address on
    /// the firmware's port, until Ctrl-C.
    Simulate(SimulateArgs),
    /// Find miners with asic-rs: make, model, firmware, hashrate, power, what each can
    /// do, and a site config for them.
    Scan {
        /// Addresses: A, A-B (B a whole address or the last octet) or a CIDR block.
        #[arg(required = true)]
        ranges: Vec<String>,
        /// The miners' API password, in a file (the firmware default without).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Every miner of the site's fleets as the running daemon sees it: state, power,
    /// target, last command and whether it was confirmed, starts today, learned times.
    Status {
        /// Site config of the running daemon.
        #[arg(long)]
        config: PathBuf,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// How many miners.
    #[arg(long, default_value_t = 1)]
    pub miners: usize,
    /// Models, assigned round-robin (repeatable): M30S+, M50S, M60 (Whatsminer API v2),
    /// S19XP-Lux, S21-Lux (LuxOS).
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    /// The first miner's address; the others follow (127.0.0.0/8 only).
    #[arg(long, default_value = "127.0.1.1")]
    pub first: Ipv4Addr,
    /// The port every miner listens on.
    #[arg(long, default_value_t = emulator::DEFAULT_PORT)]
    pub port: u16,
    /// A fault and its share of the fleet (repeatable), e.g. liar:0.1, dead:5%.
    #[arg(long = "fault", value_name = "KIND:SHARE")]
    pub faults: Vec<FaultShare>,
    /// power_on until the boards hash, e.g. 60s.
    #[arg(long, value_parser = duration)]
    pub wake: Option<Duration>,
    /// From the first hash to the power target, e.g. 2m.
    #[arg(long, value_parser = duration)]
    pub ramp: Option<Duration>,
    /// power_off until the boards stop, e.g. 5s.
    #[arg(long, value_parser = duration)]
    pub stop: Option<Duration>,
    /// A new power limit moves the power this much per step, e.g. 100W.
    #[arg(long, value_parser = watts)]
    pub step: Option<Watts>,
    /// ... every this long, e.g. 5s.
    #[arg(long, value_parser = duration)]
    pub step_every: Option<Duration>,
    /// The privileged API's password.
    #[arg(long, default_value = "admin")]
    pub password: String,
    /// Start every miner asleep.
    #[arg(long)]
    pub asleep: bool,
}

fn watts(s: &str) -> Result<Watts, String> {
    crate::units::parse_watts(s).map_err(|e| e.to_string())
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::units::parse_duration(s).map_err(|e| e.to_string())
}

pub fn run(command: FleetCommand) -> anyhow::Result<ExitCode> {
    match command {
        FleetCommand::Simulate(args) => simulate(args),
        FleetCommand::Scan {
            ranges,
            password_file,
            json,
        } => block_on(super::fleet_ops::scan(
            &ranges,
            password_file.as_deref(),
            json,
        )),
        FleetCommand::Status { config, json } => block_on(super::fleet_ops::status(&config, json)),
    }
}

fn block_on(
    work: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(work)
}

fn options(args: SimulateArgs) -> anyhow::Result<FleetOptions> {
    let mut opts = FleetOptions {
        miners: args.miners,
        first: args.first,
        port: args.port,
        faults: args.faults,
        password: args.password,
        asleep: args.asleep,
        ..FleetOptions::default()
    };
    if !args.models.is_empty() {
        opts.models = args
            .models
            .iter()
            .map(|m| emulator::model(m))
            .collect::<Result<_, _>>()?;
    }
    let d = &mut opts.dynamics;
    if let Some(w) = args.wake {
        d.wake = w;
    }
    if let Some(r) = args.ramp {
        d.ramp = r;
    }
    if let Some(s) = args.stop {
        d.stop = s;
    }
    if let Some(w) = args.step {
        // A zero step would never reach a new limit: every miner stuck-stabilizing.
        anyhow::ensure!(
            w.0 > 0.0 && w.is_finite(),
            "--step must be above 0 W, not {w}"
        );
        d.step = w;
    }
    if let Some(e) = args.step_every {
        d.step_every = e;
    }
    Ok(opts)
}

fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let opts = options(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        // Installed before "serving" is printed: a Ctrl-C sent as soon as it is read must
        // stop the fleet, not kill the process (`ctrl_c()` installs its handler only when
        // first polled, which was after the print).
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("installing the SIGINT handler")?;
        let fleet = Fleet::start(opts).await?;
        for s in fleet.snapshots() {
            let fault = s.fault.map_or("healthy", |f| f.name());
            outln!(
                "{}:{}\t{}\t{}\t{:.0}",
                s.addr,
                fleet.port(),
                s.model,
                fault,
                s.limit
            )?;
        }
        outln!("serving {} miners; Ctrl-C stops", fleet.addresses().len())?;
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
        fleet.stop().await;
        tracing::info!("Simulated fleet stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
