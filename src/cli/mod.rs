//! The command line: clap definitions and the glue that runs each command. The only
//! place besides `main.rs` where `anyhow` appears.

pub mod check;
pub mod hash;
pub mod run;
#[cfg(feature = "sim")]
pub mod sim;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gridminer",
    version,
    about = "Turns cryptocurrency mining into a flexible, grid-friendly load"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the edge controller: signals in, decisions to the loads, status and telemetry out.
    Run {
        /// Site config (see deploy/examples/).
        #[arg(long)]
        config: PathBuf,
    },
    /// Replay history through a policy and report what mining would have earned.
    #[cfg(feature = "sim")]
    Simulate {
        /// Scenario file (simulations/*.toml).
        scenario: PathBuf,
        /// Output folder [default: out/<scenario name>].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Override a scenario key, e.g. --set policy.margin_eur_mwh=5 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Skip the clairvoyant optimum.
        #[arg(long)]
        no_optimum: bool,
    },
    /// Run every combination of --vary values in parallel and rank them by profit.
    #[cfg(feature = "sim")]
    Sweep {
        scenario: PathBuf,
        /// KEY=V1,V2,... (repeatable); e.g. --vary policy.min_on=5m,15m,30m
        #[arg(long, required = true, value_name = "KEY=V1,V2,...")]
        vary: Vec<String>,
        /// Output folder [default: out/<scenario name>-sweep].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Worker threads [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
        /// Print the ranking as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The embedded SHA-256d hasher: benchmark, scan a header, or mine for a pool.
    Hash {
        #[command(subcommand)]
        command: hash::HashCommand,
    },
    /// Benchmarks that print figures and ratios against a baseline.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check scenario, policy or site files; list every problem with its key path.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// A year of 1-minute steps through the full policy stack, loading, and a sweep.
    #[cfg(feature = "sim")]
    Sim {
        #[arg(long, default_value = "simulations/de-2018-hybrid.toml")]
        scenario: PathBuf,
        /// Sweep size (rounded to a cube).
        #[arg(long, default_value_t = 1000)]
        variants: usize,
        #[arg(long)]
        json: bool,
    },
    /// The edge daemon on loopback: MQTT ingest, signal-to-load and curtail-to-stop
    /// latency, idle memory and CPU.
    Live {
        /// Messages in the flat-out ingest phase.
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        /// Seconds of the paced ingest phase (at 50,000 msg/s).
        #[arg(long, default_value_t = 4.0)]
        paced_seconds: f64,
        /// Samples of each latency (100 ms apart).
        #[arg(long, default_value_t = 100)]
        samples: usize,
        /// Seconds of the idle window.
        #[arg(long, default_value_t = 10.0)]
        idle_seconds: f64,
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Run { config } => run::run(&config),
        #[cfg(feature = "sim")]
        Command::Simulate {
            scenario,
            out,
            json,
            set,
            no_optimum,
        } => sim::simulate(&scenario, out, json, &set, !no_optimum),
        #[cfg(feature = "sim")]
        Command::Sweep {
            scenario,
            vary,
            out,
            threads,
            json,
        } => sim::sweep(&scenario, &vary, out, threads, json),
        Command::Config {
            command: ConfigCommand::Check { files },
        } => check::check(&files),
        Command::Hash { command } => hash::run(command).map(|()| std::process::ExitCode::SUCCESS),
        #[cfg(feature = "sim")]
        Command::Bench {
            command:
                BenchCommand::Sim {
                    scenario,
                    variants,
                    json,
                },
        } => sim::bench(&scenario, variants, json),
        Command::Bench {
            command:
                BenchCommand::Live {
                    messages,
                    paced_seconds,
                    samples,
                    idle_seconds,
                    json,
                },
        } => run::bench(
            crate::bench::live::LiveOptions {
                messages,
                paced_seconds,
                samples,
                idle_seconds,
                ..Default::default()
            },
            json,
        ),
    }
}
