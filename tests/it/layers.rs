//! The crate reads as the data flow: every module imports only modules below it.
//!
//! Issue 10 found import cycles (policy <-> state, config <-> policy, config <-> signal,
//! bench <-> cli) and `config` importing the actuators and the MQTT transport. This reads
//! every `crate::<module>` path in `src/` and checks each against the layer table below,
//! so a new upward import fails here with the file that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module may import its own layer's peers only where listed in
/// `PEERS`, and any module of a lower layer.
const LAYERS: &[&[&str]] = &[
    // Vendored files (uPlot) the pages embed; the exact per-group programmes (issue 14:
    // the clairvoyant optimum's and the planner's), which know nothing of the crate.
    &["units", "clock", "assets", "optimum"],
    // Emulated field devices (issue 11): below everything that drives them, so a driver
    // test cannot share the driver's idea of the protocol.
    &["emulator"],
    // What every component's config shares: key paths, problems, overrides.
    &["config"],
    &["site", "mqtt"],
    // IN: the signals' vocabulary (`Observation`, `Quantity`) and their sources.
    &["signal"],
    // The decision's vocabulary, shared by policy and state.
    &["decision"],
    &["state"],
    // DECIDE.
    &["policy"],
    // The ledger (issue 15) reads the state; the daemon and the simulator write it.
    &["controller", "actuator", "scenario", "ledger"],
    &["telemetry", "sim"],
    // The edge daemon, then the commands on top.
    &["runtime"],
    &["bench"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Every `crate::<name>` in `text` outside `//` comments.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `gridminer_crate::`
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn r10_every_module_imports_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    // module -> (imported module -> first file that imports it)
    let mut edges: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for f in &files {
        let Some(module) = module_of(&src, f) else {
            continue;
        };
        if layer_of(&module).is_none() {
            unknown.push(module.clone());
        }
        let text = std::fs::read_to_string(f).expect("a readable source file");
        for target in crate_paths(&text) {
            if target != module && layer_of(&target).is_some() {
                edges
                    .entry(module.clone())
                    .or_default()
                    .entry(target)
                    .or_insert_with(|| f.clone());
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(
        unknown.is_empty(),
        "modules missing from the layer table: {unknown:?}"
    );
    let mut upward = Vec::new();
    for (from, targets) in &edges {
        let lf = layer_of(from).expect("checked above");
        for (to, file) in targets {
            let lt = layer_of(to).expect("filtered above");
            if lt >= lf {
                upward.push(format!(
                    "{from} (layer {lf}) imports {to} (layer {lt}) in {}",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that go up or sideways (a cycle waiting to happen):\n  {}",
        upward.join("\n  ")
    );
    // What the issue names: the shared config knows no component.
    let config = edges.get("config").cloned().unwrap_or_default();
    for banned in ["actuator", "mqtt", "policy", "signal"] {
        assert!(!config.contains_key(banned), "config imports {banned}");
    }
}

#[test]
fn the_layer_check_sees_crate_paths_and_skips_comments() {
    let text = "use crate::state::SiteState;\n// crate::cli in a comment\nlet x = crate::units::Watts(1.0); my_crate::policy";
    let got: Vec<String> = crate_paths(text).into_iter().collect();
    assert_eq!(got, ["state", "units"]);
}
