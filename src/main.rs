use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    gridminer::cli::logs::init();
    let cli = gridminer::cli::Cli::parse();
    match gridminer::cli::run(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): nothing to say, and nobody to say it to.
        Err(e) if e.is::<gridminer::cli::StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            // `eprintln!` would panic on a closed stderr; the exit code still tells.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
