//! Finding external peers (node, python3, mosquitto's tools): present, or skipped with a message, or, when
//! `GRIDMINER_REQUIRE_PEERS=1` (CI), a failure.

use std::path::PathBuf;
use std::process::Command;

/// Whether CI demands every peer.
pub fn required() -> bool {
    std::env::var("GRIDMINER_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// `Some(())` if `what` is usable; otherwise prints why the test is skipped and returns
/// `None`, or panics when peers are required.
pub fn need(ok: bool, what: &str, how: &str) -> Option<()> {
    if ok {
        return Some(());
    }
    let msg = format!("{what} is missing ({how})");
    if required() {
        panic!("GRIDMINER_REQUIRE_PEERS=1 and {msg}");
    }
    // Written to the real stderr: the test harness captures `eprintln!` of passing tests,
    // and a skip must be seen.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
    None
}

pub fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether `program` is an executable file in a directory of `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with pyasic, the independent client of the simulated ASIC fleet:
/// `$GRIDMINER_PYASIC_PYTHON`, else `target/pyasic-venv` (what `.ci/setup-pyasic.sh`
/// creates), else `python3` if it imports pyasic.
pub fn pyasic_python() -> Option<PathBuf> {
    python_importing(
        "pyasic",
        [
            std::env::var_os("GRIDMINER_PYASIC_PYTHON").map(PathBuf::from),
            Some(repo().join("target/pyasic-venv/bin/python")),
            Some(PathBuf::from("python3")),
        ],
    )
}

/// The first of `candidates` (in order; `None`s skipped) that imports `module`.
pub fn python_importing<const N: usize>(
    module: &str,
    candidates: [Option<PathBuf>; N],
) -> Option<PathBuf> {
    let works = |p: &PathBuf| {
        Command::new(p)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    candidates.into_iter().flatten().find(works)
}
