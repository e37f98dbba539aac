//! Every input under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through the
//! body its fuzz target runs (`fuzz/src/lib.rs`, included here): a cheap check, in the
//! normal test run and without cargo-fuzz, that nothing the fuzzer kept or once crashed
//! on panics again.

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use super::support::root;

/// Issue 9, fuzzing: every crash found became a regression input (and a fix, or a known
/// open hole another branch of the issue fixes; see `OPEN_HOLES` in fuzz/src/lib.rs).
#[test]
fn r9_fuzz_corpus_and_regressions_replay_without_a_panic() {
    let fuzz = root().join("fuzz");
    let mut open = Vec::new();
    for &(name, body) in targets::TARGETS {
        let mut inputs = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(name)) else {
                continue;
            };
            for entry in dir {
                let path = entry.unwrap().path();
                let data = match std::fs::read(&path) {
                    Ok(d) => d,
                    // A fuzz run in this checkout replaces corpus files as it goes.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => panic!("{}: {e}", path.display()),
                };
                if targets::run(body, &data) {
                    open.push(path);
                }
                inputs += 1;
            }
        }
        assert!(inputs > 0, "fuzz target {name} has no corpus");
    }
    if !open.is_empty() {
        eprintln!(
            "{} input(s) hit a known open hole (issue 9, holes 6 and 9; fixed on another branch): {open:?}",
            open.len()
        );
    }
}

/// The operator corpus holds commands that pass every check, HS256 and EdDSA: fuzzing
/// starts from them, so mutations reach the claims checks, not only the signature check.
#[test]
fn r9_fuzz_operator_corpus_holds_accepted_commands() {
    let dir = root().join("fuzz/corpus/operator");
    let accepted: Vec<u8> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .filter(|data| targets::operator_accepts(data))
        .map(|data| data[0] % 5)
        .collect();
    for (mode, how) in [(1, "HS256-signed claims"), (2, "EdDSA-signed claims")] {
        assert!(
            accepted.contains(&mode),
            "no accepted {how} in {}",
            dir.display()
        );
    }
}
