//! Every scenario case of every policy file in `policies/` decides as it says.

use super::support::root;
use gridminer::scenario::cases;

#[test]
fn every_policy_case_passes() {
    let mut files: Vec<_> = std::fs::read_dir(root().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "policy files: {files:?}");
    let mut ran = 0;
    let mut failures = Vec::new();
    for f in &files {
        let file = cases::load(f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!file.cases.is_empty(), "{} has no cases", f.display());
        for o in file.run() {
            ran += 1;
            if let Some(m) = o.failure {
                failures.push(format!("{}: {:?}: {m}", f.display(), o.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(ran >= 20, "only {ran} cases");
}
