use clap::Parser;
use gridminer::cli::hash::{self, HashCommand};

#[derive(Parser)]
#[command(name = "gridminer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// The embedded SHA-256d hasher: benchmark, scan a header, or mine for a pool.
    Hash {
        #[command(subcommand)]
        cmd: HashCommand,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Hash { cmd } => hash::run(cmd),
    }
}
