//! The command line: clap definitions and the glue that runs each command. The only
//! place besides `main.rs` where `anyhow` appears.

/// `println!` that returns an error instead of panicking when stdout cannot be written:
/// `gridminer ... | head` closes the pipe, and the command ends quietly ([`StdoutClosed`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::cli::stdout_result(writeln!(std::io::stdout().lock(), $($arg)*))
    }};
}

/// `print!` as [`outln!`] is `println!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::cli::stdout_result(write!(std::io::stdout().lock(), $($arg)*))
    }};
}

pub mod check;
pub mod demo;
pub mod events;
pub mod fleet;
pub mod fleet_ops;
pub mod hash;
pub mod ledger;
pub mod logs;
pub mod run;
#[cfg(feature = "sim")]
pub mod sim;

use std::path::PathBuf;

#[cfg(feature = "sim")]
use clap::builder::TypedValueParser as _;
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
    /// A whole simulated site in one process: SunSpec PV inverter and grid meter, an ASIC
    /// fleet and a CPU pool, a signing grid operator, the daemon and its dashboard.
    Demo {
        /// Demo seconds per real second (60: a minute of data per second).
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// The dashboard's address (port 0: a free one, printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Simulated miners (Whatsminer M30S+).
        #[arg(long, default_value_t = 20)]
        miners: usize,
        /// Stop by itself after this much demo time (e.g. 1d, 6h); without it, Ctrl-C.
        #[arg(long, value_parser = |s: &str| crate::units::parse_duration(s).map_err(|e| e.to_string()))]
        duration: Option<std::time::Duration>,
        /// The first miner's loopback address (each miner serves on port 4028 of its own).
        #[arg(long, default_value = "127.0.1.1")]
        first: std::net::Ipv4Addr,
        /// Print the site config the daemon gets, and exit.
        #[arg(long)]
        print_config: bool,
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
        /// Also run at -50, -25, +25 and +50 % hashprice and show the site value and mining
        /// profit of each.
        #[arg(long)]
        hashprice_sensitivity: bool,
        /// Run the scenario under each of these policy modes and compare them side by side
        /// (economic, surplus-only, plan, plan:economic, plan:surplus-only), e.g.
        /// --compare surplus-only,plan. Prints the table (or JSON) and writes no files.
        #[arg(long, value_name = "MODE,MODE,...")]
        compare: Option<String>,
        /// Also write the tamper-evident ledger the site would have written (accounts,
        /// hourly certificates, signed checkpoints) into this new directory.
        #[arg(long, value_name = "DIR", conflicts_with = "compare")]
        ledger: Option<PathBuf>,
        /// The ledger's signing key file (made if missing) [default: <DIR>.key].
        #[arg(long, value_name = "FILE", requires = "ledger")]
        ledger_key: Option<PathBuf>,
    },
    /// Run every combination of --vary values in parallel and rank them by a KPI (the
    /// site's value by default).
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
        /// The KPI to rank by: site_value (site total with mining), mining_profit,
        /// value_per_mwh (value added per MWh mined), absorbed_share, curtailment_mined,
        /// mining_mwh, grid_import (less is better), starts (fewer is better), co2 (mining's
        /// t CO2eq, less is better).
        #[arg(
            long,
            default_value = "site_value",
            value_parser = clap::builder::PossibleValuesParser::new(crate::sim::sweep::RankBy::NAMES)
                .map(|s| s.parse::<crate::sim::sweep::RankBy>().expect("every listed name parses")),
        )]
        rank_by: crate::sim::sweep::RankBy,
    },
    /// The frequency-response evidence records in the site's events file.
    Events {
        /// Site config (the one `run` uses: it names the events file).
        #[arg(long)]
        config: PathBuf,
        /// Print the records as JSON (an array, oldest first).
        #[arg(long)]
        json: bool,
        /// Only the newest N records.
        #[arg(long, value_name = "N")]
        last: Option<usize>,
    },
    /// The tamper-evident ledger: verify it, prove an entry or a checkpoint, show it.
    Ledger {
        #[command(subcommand)]
        command: ledger::LedgerCommand,
    },
    /// The hourly green-energy certificates in a ledger.
    Certificates {
        dir: PathBuf,
        /// Only certificates starting at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Only certificates starting before this time.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, conflicts_with = "json")]
        csv: bool,
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
    /// ASIC fleets: the simulated fleet (Whatsminer API v2, LuxOS) on loopback.
    Fleet {
        #[command(subcommand)]
        command: fleet::FleetCommand,
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
    /// The ledger: paced appends' CPU against a plain file, flat-out appends, and
    /// verifying a year of 1-minute entries against reading and hashing them.
    Ledger {
        /// Seconds of each paced phase (1,000 entries a second).
        #[arg(long, default_value_t = 10.0)]
        paced_seconds: f64,
        /// Entries of the verified log (a year of minutes by default).
        #[arg(long, default_value_t = 525_600)]
        entries: u64,
        #[arg(long)]
        json: bool,
    },
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
    /// The asic-rs fleet driver against the emulated fleet on loopback: curtail to the
    /// last command sent and to every pause confirmed, idle polling CPU, memory per
    /// miner, beside a bare round trip per miner.
    Fleet {
        #[arg(long, default_value_t = 200)]
        miners: usize,
        /// Curtails measured (each followed by a resume).
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// Seconds of the idle polling window (the driver's default 10 s poll).
        #[arg(long, default_value_t = 30.0)]
        idle_seconds: f64,
        /// The driver's bound on calls in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long)]
        json: bool,
    },
}

/// Whoever reads stdout stopped reading (`| head -c 10`): not a failure of the command,
/// so `main` exits 0 without a word, as `cat` or `rg` would. Only stdout's broken pipe
/// is this; a socket's is an error like any other.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// A write to stdout, its broken pipe as [`StdoutClosed`].
pub fn stdout_result(r: std::io::Result<()>) -> anyhow::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Run { config } => run::run(&config),
        Command::Demo {
            speed,
            listen,
            miners,
            duration,
            first,
            print_config,
        } => demo::demo(demo::DemoArgs {
            speed,
            listen,
            miners,
            duration,
            first,
            print_config,
        }),
        #[cfg(feature = "sim")]
        Command::Simulate {
            scenario,
            out,
            json,
            set,
            no_optimum,
            hashprice_sensitivity,
            compare,
            ledger,
            ledger_key,
        } => sim::simulate(
            &scenario,
            out,
            json,
            &set,
            sim::Extras {
                optimum: !no_optimum,
                hashprice_sensitivity,
                compare,
                ledger,
                ledger_key,
            },
        ),
        #[cfg(feature = "sim")]
        Command::Sweep {
            scenario,
            vary,
            out,
            threads,
            json,
            rank_by,
        } => sim::sweep(&scenario, &vary, out, threads, json, rank_by),
        Command::Config {
            command: ConfigCommand::Check { files },
        } => check::check(&files),
        Command::Fleet { command } => fleet::run(command),
        Command::Ledger { command } => ledger::run(command),
        Command::Certificates {
            dir,
            from,
            to,
            csv,
            json,
        } => ledger::certificates(
            &dir,
            from.as_deref(),
            to.as_deref(),
            if json {
                ledger::Form::Json
            } else if csv {
                ledger::Form::Csv
            } else {
                ledger::Form::Table
            },
        ),
        Command::Events { config, json, last } => events::events(&config, json, last),
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
                BenchCommand::Ledger {
                    paced_seconds,
                    entries,
                    json,
                },
        } => ledger::bench(paced_seconds, entries, json),
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
        Command::Bench {
            command:
                BenchCommand::Fleet {
                    miners,
                    runs,
                    idle_seconds,
                    concurrency,
                    json,
                },
        } => run::bench_fleet(
            crate::bench::fleet::FleetBenchOptions {
                miners,
                runs,
                idle_seconds,
                concurrency,
                ..Default::default()
            },
            json,
        ),
    }
}
