//! Issue 15, the tamper-evident ledger: a simulated year and a live daemon write logs
//! that gridminer's verifier and an independent one (Python, hashlib and cryptography,
//! written from RFC 9162 and the C2SP specs: tests/ledger_verify.py) both accept; a
//! daemon killed with -9 at several moments and restarted still verifies and loses
//! nothing before its last checkpoint; any one byte flipped in a stored tile, bundle or
//! checkpoint is found.
//! <https://github.com/gridminer/gridminer/issues/15>

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;

use super::brokers::free_port;
use super::live::{subscriber, CPU_LOAD};
use super::peers::{need, python_importing, repo};
use super::support::{gridminer, json_stdout, text, SURPLUS_SITE};
use gridminer::ledger::log::Log;
use gridminer::ledger::note::{private_key, SiteKey};
use gridminer::ledger::verify;

/// The Python the independent verifier runs on: it needs `cryptography`, which
/// `.ci/setup-operator.sh` installs into `target/venv-operator`; skipped without one
/// unless peers are required.
fn python() -> Option<PathBuf> {
    let found = python_importing(
        "cryptography",
        [
            Some(repo().join("target/venv-operator/bin/python")),
            Some(PathBuf::from("python3")),
        ],
    );
    need(
        found.is_some(),
        "python3 with cryptography",
        "run .ci/setup-operator.sh",
    )?;
    found
}

/// Runs the independent verifier; panics with its reason if it refuses.
fn python_verifies(py: &Path, args: &[&str]) -> String {
    let o = Command::new(py)
        .arg(repo().join("tests/ledger_verify.py"))
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        o.status.success(),
        "the independent verifier refused {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn vkey_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "vkey"))
        .expect("the log has its <name>.vkey beside it")
}

fn lines(dir: &Path, kind: &str) -> Vec<Value> {
    let o = gridminer(
        &["ledger", "show", dir.to_str().unwrap(), "--kind", kind],
        &repo(),
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["entry"].clone())
        .collect()
}

/// r15: a simulated year of the German hybrid site writes a ledger both verifiers
/// accept, whose proofs the independent one checks; its certificates hold the energy
/// the run mined, hour by hour, and no certificate spans more than its hour.
#[test]
fn r15_a_simulated_year_writes_a_ledger_both_verifiers_accept() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ledger");
    let out = work.path().join("out");
    let o = gridminer(
        &[
            "simulate",
            "simulations/de-2018-hybrid.toml",
            "--no-optimum",
            "--json",
            "--out",
            out.to_str().unwrap(),
            "--ledger",
            dir.to_str().unwrap(),
        ],
        &repo(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let kpis = json_stdout(&o);
    let d = dir.to_str().unwrap();
    let vkey = vkey_file(&dir);
    let v = vkey.to_str().unwrap();
    assert!(
        !dir.join("ledger.key").exists(),
        "the key lives outside the log"
    );
    assert!(work.path().join("ledger.key").is_file());

    let o = gridminer(&["ledger", "verify", d, "--key", v, "--json"], &repo());
    assert!(o.status.success(), "{}", text(&o));
    let report = json_stdout(&o);
    let entries = report["entries"].as_u64().unwrap();
    assert!(report["checkpoints"].as_u64().unwrap() >= 365, "{report}");
    assert_eq!(report["kinds"]["start"], 1);
    assert_eq!(report["kinds"]["stop"], 1);
    assert!(
        report["kinds"]["account"].as_u64().unwrap() >= 35_000,
        "{report}"
    );

    // The certificates: every one within one UTC hour, and together the energy mined.
    let o = gridminer(&["certificates", d, "--json"], &repo());
    assert!(o.status.success(), "{}", text(&o));
    let certs = json_stdout(&o);
    let certs = certs.as_array().unwrap();
    assert!(certs.len() > 5000, "{}", certs.len());
    let mut wh = 0.0;
    let mut curtailed = 0.0;
    for c in certs {
        let start = chrono::DateTime::parse_from_rfc3339(c["start"].as_str().unwrap()).unwrap();
        let end = chrono::DateTime::parse_from_rfc3339(c["end"].as_str().unwrap()).unwrap();
        assert!(end > start && (end - start).num_seconds() <= 3600, "{c}");
        assert_eq!(
            start.timestamp() / 3600,
            (end.timestamp() - 1) / 3600,
            "within one hour: {c}"
        );
        let (w, cur) = (
            c["wh"].as_f64().unwrap(),
            c["otherwise_curtailed_wh"].as_f64().unwrap(),
        );
        assert!(cur <= w, "{c}");
        wh += w;
        curtailed += cur;
    }
    let mined = kpis["mining_mwh"].as_f64().unwrap() * 1e6;
    // Rounded down per certificate, and the run's last step is booked by no step after.
    let slack = certs.len() as f64 + 150e3;
    assert!(
        (mined - wh).abs() <= slack,
        "certificates {wh} Wh, run {mined} Wh"
    );
    assert!(curtailed > 0.0 && curtailed <= wh);
    // The grid's hourly intensity from the German mix rides on the certificates (except
    // the mix's gap days), and grid certificates carry the grid energy's carbon.
    let rated = certs
        .iter()
        .filter(|c| c["grid_intensity_g_per_kwh"].is_number())
        .count();
    assert!(
        rated * 10 > certs.len() * 9,
        "{rated} of {} rated",
        certs.len()
    );
    for c in certs
        .iter()
        .filter(|c| c["source"] == "grid" && c["grid_intensity_g_per_kwh"].is_number())
    {
        let (g, w) = (c["co2eq_g"].as_f64().unwrap(), c["wh"].as_f64().unwrap());
        let i = c["grid_intensity_g_per_kwh"].as_f64().unwrap();
        assert!(g >= 0.0 && g <= (w + 1.0) / 1e3 * 2000.0 && i > 0.0, "{c}");
    }

    let Some(py) = python() else {
        return;
    };
    let summary = python_verifies(&py, &["tree", "--key", v, d]);
    assert!(summary.contains(&entries.to_string()), "{summary}");
    // An inclusion proof of a certificate, and a consistency proof from an old checkpoint.
    let index = certs[certs.len() / 2]["ledger_index"].as_u64().unwrap();
    let o = gridminer(
        &["ledger", "prove", d, "--entry", &index.to_string()],
        &repo(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let proof = work.path().join("inclusion.json");
    std::fs::write(&proof, &o.stdout).unwrap();
    python_verifies(&py, &["inclusion", "--key", v, proof.to_str().unwrap()]);
    let old: u64 = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u64>().ok())
        .filter(|&s| s > 0 && s < entries)
        .nth(100)
        .expect("an older checkpoint");
    let o = gridminer(
        &["ledger", "consistency", d, "--from", &old.to_string()],
        &repo(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let proof = work.path().join("consistency.json");
    std::fs::write(&proof, &o.stdout).unwrap();
    python_verifies(
        &py,
        &[
            "consistency",
            "--key",
            v,
            "--dir",
            d,
            proof.to_str().unwrap(),
        ],
    );
}

/// The independent verifier's own self-test (its vectors, tampered inputs, random
/// flips): run here so CI runs it.
#[test]
fn r15_the_independent_verifier_passes_its_self_test() {
    let Some(py) = python() else {
        return;
    };
    let o = Command::new(py)
        .arg(repo().join("tests/ledger_verify_selftest.py"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A small log with checkpoints at awkward sizes (partial tiles at two levels, a
/// bundle edge) and the files verify reads.
fn small_log(dir: &Path) -> (String, Vec<PathBuf>) {
    let key = SiteKey::parse(&private_key("gridminer-flip", &[9u8; 32])).unwrap();
    let (mut log, _) = Log::open(dir, key).unwrap();
    for stop in [3u64, 256, 300, 520] {
        while log.size() < stop {
            let e = format!(r#"{{"i":{},"kind":"test","v":1}}"#, log.size());
            log.append(e.as_bytes()).unwrap();
        }
        log.checkpoint().unwrap();
    }
    let mut files: Vec<PathBuf> = verify::stored_files(dir)
        .iter()
        .map(|p| dir.join(p))
        .collect();
    files.push(dir.join("checkpoint"));
    for e in std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .flatten()
    {
        files.push(e.path());
    }
    files.sort();
    (log.vkey().to_string(), files)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// r15: one byte of any stored tile, entry bundle or checkpoint changed (any bit
    /// pattern) is always found by `verify`.
    #[test]
    fn r15_any_flipped_byte_is_detected(file in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let dir = tempfile::tempdir().unwrap();
        let (vkey, files) = small_log(dir.path());
        prop_assert!(verify::verify(dir.path(), &vkey).is_ok());
        let path = file.get(&files);
        let mut bytes = std::fs::read(path).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        std::fs::write(path, &bytes).unwrap();
        prop_assert!(verify::verify(dir.path(), &vkey).is_err(), "{} byte {i} ^ {mask:#x} passed", path.display());
    }
}

/// A live site with the ledger on, checkpointing every second, its PV, load and price
/// on the embedded broker at `port`, the one-worker pool as its load.
fn live_site(dir: &Path, id: &str, port: u16) -> PathBuf {
    let cfg = dir.join("site.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
site_id = "{id}"
tick = "100ms"
hashprice = 50.0
policy = {{ mode = "economic", max_signal_age = "1h" }}
{SURPLUS_SITE}
[mqtt]
broker = "embedded"
listen = "127.0.0.1:{port}"
[[signals]]
topic = "{id}/pv"
quantity = "pv_power"
unit = "kW"
[[signals]]
topic = "{id}/load"
quantity = "site_load"
[[signals]]
topic = "{id}/price"
quantity = "price"
{CPU_LOAD}
[ledger]
dir = "ledger"
checkpoint_every = "1s"
account_every = "1s"
"#
        ),
    )
    .unwrap();
    cfg
}

fn checkpointed(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("checkpoint"))
        .ok()
        .and_then(|s| s.lines().nth(1).and_then(|l| l.parse().ok()))
        .unwrap_or(0)
}

type Inbox = tokio::sync::mpsc::Receiver<(String, Vec<u8>)>;

/// Awaits a checkpoint the daemon publishes (retained first, then each new one) that
/// covers more than `size` entries; returns its size and the signed note.
async fn checkpoint_past(rx: &mut Inbox, size: u64) -> (u64, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, note) = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no checkpoint past {size} entries in 30 s"))
            .expect("the client is alive");
        let n = std::str::from_utf8(&note)
            .ok()
            .and_then(|s| s.lines().nth(1)?.parse().ok())
            .unwrap_or(0);
        if n > size {
            return (n, note);
        }
    }
}

/// Once the daemon's broker listens: a client that feeds the site's signals (retained)
/// and receives its ledger checkpoints.
async fn feed_when_up(port: u16, id: &str) -> (rumqttc::AsyncClient, Inbox) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the embedded broker never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, under the deadline
    }
    let (client, rx) = subscriber(port, &format!("gridminer/{id}/ledger/checkpoint")).await;
    for (t, v) in [("pv", "3"), ("load", "500"), ("price", "30")] {
        client
            .publish(format!("{id}/{t}"), rumqttc::QoS::AtLeastOnce, true, v)
            .await
            .unwrap();
    }
    (client, rx)
}

fn start(cfg: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_gridminer"))
        .args(["run", "--config"])
        .arg(cfg)
        .current_dir(cfg.parent().unwrap())
        .env("RUST_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gridminer run starts")
}

/// r15: `kill -9` at three moments, each restart resumes the log where its last
/// checkpoint left it (nothing before it lost, the staged entries since taken back),
/// and after a clean stop the ledger verifies in both verifiers, with a start per run
/// and the one clean stop, accounts with the pool's hashes, and the checkpoint the
/// daemon published retained on MQTT opening under the site's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_a_daemon_killed_with_9_and_restarted_still_verifies() {
    let work = tempfile::tempdir().unwrap();
    let id = "ledger-kill";
    let port = free_port();
    let cfg = live_site(work.path(), id, port);
    let dir = work.path().join("ledger");
    let mut size = 0;
    for round in 0..3 {
        let mut child = start(&cfg);
        let (_client, mut rx) = feed_when_up(port, id).await;
        // Two checkpoints past where it stood: it resumed and carries on.
        let (first, _) = checkpoint_past(&mut rx, size).await;
        let (before, _) = checkpoint_past(&mut rx, first).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let after = checkpointed(&dir);
        assert!(
            after >= before,
            "round {round}: the checkpoint went back ({before} -> {after})"
        );
        let vkey = vkey_file(&dir);
        let o = gridminer(
            &[
                "ledger",
                "verify",
                dir.to_str().unwrap(),
                "--key",
                vkey.to_str().unwrap(),
            ],
            &repo(),
        );
        assert!(
            o.status.success(),
            "round {round}, after kill -9: {}",
            text(&o)
        );
        size = after;
    }
    // A clean run to the end: the retained checkpoint, then SIGTERM.
    let mut child = start(&cfg);
    let (client, mut rx) = feed_when_up(port, id).await;
    let (past, published) = checkpoint_past(&mut rx, size).await;
    drop(client);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success(), "a clean stop");
    let d = dir.to_str().unwrap();
    let vkey = vkey_file(&dir);
    let v = vkey.to_str().unwrap();
    let o = gridminer(&["ledger", "verify", d, "--key", v, "--json"], &repo());
    assert!(o.status.success(), "{}", text(&o));
    let report = json_stdout(&o);
    assert!(report["entries"].as_u64().unwrap() > past);
    assert_eq!(report["kinds"]["start"], 4, "{report}");
    assert_eq!(report["kinds"]["stop"], 1, "{report}");
    let accounts = lines(&dir, "account");
    let hashes: f64 = accounts.iter().map(|a| a["hashes"].as_f64().unwrap()).sum();
    let mined: f64 = accounts
        .iter()
        .map(|a| {
            a["wh"]["curtailed"].as_f64().unwrap()
                + a["wh"]["own_generation"].as_f64().unwrap()
                + a["wh"]["grid"].as_f64().unwrap()
        })
        .sum();
    assert!(
        hashes > 0.0 && mined > 0.0,
        "the pool mined and the accounts say so: {hashes} hashes, {mined} Wh"
    );
    let Some(py) = python() else {
        return;
    };
    python_verifies(&py, &["tree", "--key", v, d]);
    let file = work.path().join("published-checkpoint");
    std::fs::write(&file, &published).unwrap();
    python_verifies(&py, &["checkpoint", "--key", v, file.to_str().unwrap()]);
}

/// r15: `[ledger]`'s problems all at once, with their key paths.
#[test]
fn r15_ledger_config_problems_come_with_key_paths() {
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("site.toml");
    let port = free_port();
    let good = std::fs::read_to_string(live_site(work.path(), "cfg", port)).unwrap();
    let bad = good.replace(
        "[ledger]\ndir = \"ledger\"\ncheckpoint_every = \"1s\"\naccount_every = \"1s\"",
        "[ledger]\ndir = \"ledger\"\nkey = \"ledger/site.key\"\nname = \"a+b\"\ncheckpoint_every = \"0s\"\naccount_every = \"7m\"\ncolour = \"blue\"",
    );
    assert_ne!(good, bad);
    std::fs::write(&cfg, bad).unwrap();
    let o = gridminer(&["config", "check", cfg.to_str().unwrap()], &repo());
    assert!(!o.status.success());
    let t = text(&o);
    for key in [
        "ledger.colour",
        "ledger.key",
        "ledger.name",
        "ledger.checkpoint_every",
        "ledger.account_every",
    ] {
        assert!(t.contains(key), "{key} missing from:\n{t}");
    }
}
