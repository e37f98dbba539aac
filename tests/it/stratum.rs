//! The Stratum V1 client against a real Stratum server: the npm `stratum` framework in
//! `tests/stratum/server.js`, started on a port the OS picks. Every share the server
//! accepted is then verified independently by `tests/stratum/check_shares.py` (Python
//! hashlib). Needs node (with `npm ci` done in tests/stratum) and python3; skips with a
//! message if they are missing, fails instead under `GRIDMINER_REQUIRE_PEERS=1`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gridminer::actuator::hasher::stratum::{
    StratumClient, StratumConfig, StratumCounts, StratumError,
};
use gridminer::actuator::hasher::{HasherConfig, HasherPool, Kernel, Share};
use gridminer::units::{HashRate, Watts};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::peers::{need, repo, runs};

/// Lines server.js's `--hostile` sends that must each count as malformed.
const HOSTILE_LINES: u64 = 7;

pub(crate) struct Pool {
    child: Child,
    pub(crate) port: u16,
    /// The submissions, one JSON line each.
    pub(crate) out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn peers_present() -> Option<()> {
    need(
        runs("node", "--version"),
        "node",
        "apt-get install nodejs npm",
    )?;
    need(
        repo().join("tests/stratum/node_modules/stratum").is_dir(),
        "the npm stratum package",
        "run (cd tests/stratum && npm ci)",
    )?;
    need(
        runs("python3", "--version"),
        "python3",
        "apt-get install python3",
    )
}

/// Starts server.js with `args`; returns once it has printed its port.
pub(crate) fn start_pool(args: &[&str]) -> Pool {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("submissions.jsonl");
    let mut child = Command::new("node")
        .arg(repo().join("tests/stratum/server.js"))
        .arg("--out")
        .arg(&out)
        .args(args)
        // The harness exits when its stdin closes, so it cannot outlive the test.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("server.js printed {line:?} instead of its port: {e}"));
    Pool {
        child,
        port: v["port"].as_u64().unwrap() as u16,
        out,
        _dir: dir,
    }
}

/// Mines with one thread until `done(counts)` holds (polled, under a generous deadline
/// so a broken client fails instead of hanging), then shuts down cleanly.
fn mine_until(
    pool: &Pool,
    version_rolling: bool,
    done: impl Fn(&StratumCounts) -> bool,
) -> StratumCounts {
    let (hasher, shares) = HasherPool::start(HasherConfig {
        threads: 1,
        watts_per_core: Watts(10.0),
        hashrate_per_core: HashRate::ZERO,
        kernel: Kernel::best(),
    });
    let hasher = Arc::new(hasher);
    hasher.set_power_target(Watts(10.0));
    let url = format!("stratum+tcp://127.0.0.1:{}", pool.port);
    let mut config = StratumConfig::new(&url, "worker1", "x").unwrap();
    config.version_rolling = version_rolling;
    config.backoff_min = Duration::from_millis(20);
    let client = StratumClient::new(config);
    let stats = client.stats();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let counts = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(client.run(hasher.clone(), shares, shutdown.clone()));
        let reached = tokio::time::timeout(Duration::from_secs(120), async {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                if done(&stats.snapshot()) {
                    return;
                }
            }
        })
        .await;
        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert!(reached.is_ok(), "not reached: {:?}", stats.snapshot());
        stats.snapshot()
    });
    Arc::try_unwrap(hasher).ok().unwrap().shutdown();
    counts
}

pub(crate) fn submissions(pool: &Pool) -> Vec<serde_json::Value> {
    std::fs::read_to_string(&pool.out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs the Python checker over everything the pool recorded; returns its summary.
pub(crate) fn python_verifies(pool: &Pool) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(repo().join("tests/stratum/check_shares.py"))
        .arg(&pool.out)
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "hashlib rejects shares: {summary}");
    assert_eq!(summary["accepted"], summary["verified"]);
    summary
}

/// Real shares on real jobs, stale jobs dropped on clean_jobs, and no version rolling
/// with a pool that answers mining.configure with "Method not found".
#[test]
fn mines_verified_shares_and_drops_stale_jobs() {
    let Some(()) = peers_present() else { return };
    let pool = start_pool(&["--difficulty", "0.0005", "--clean-after", "3"]);
    let counts = mine_until(&pool, true, |c| c.accepted >= 7 && c.jobs >= 3);
    let subs = submissions(&pool);
    let summary = python_verifies(&pool);
    let accepted_by_pool = subs.iter().filter(|s| s["accepted"] == true).count() as u64;
    assert!(accepted_by_pool >= 7);
    // Every share we counted as accepted, the pool recorded as accepted (the pool may
    // have accepted one more whose answer arrived after we stopped).
    assert!(counts.accepted <= accepted_by_pool);
    assert_eq!(summary["version_rolled"], 0);
    assert!(subs.iter().all(|s| s["version_bits"].is_null()));
    assert_eq!(counts.malformed, 0);
    // Once we submitted for a newer job we had seen its clean_jobs notify: from then on
    // no share of an older job may be sent.
    let mut newest = String::new();
    for s in &subs {
        let id = s["job_id"].as_str().unwrap().to_owned();
        let n = u64::from_str_radix(&id[1..], 16).unwrap();
        if newest.is_empty() || n > u64::from_str_radix(&newest[1..], 16).unwrap() {
            newest = id;
        } else {
            assert_eq!(id, newest, "share of stale job {id} sent after {newest}");
        }
    }
    // A share found just before a clean notify is rejected as stale (never sent as
    // fresh); whatever the pool rejected, we counted.
    let rejected_by_pool = subs.len() as u64 - accepted_by_pool;
    assert!(counts.rejected <= rejected_by_pool);
    assert!(subs
        .iter()
        .filter(|s| s["accepted"] == false)
        .all(|s| s["reason"] == "stale"));
}

/// BIP 310: the pool grants a mask, every share rolls version bits inside it, and the
/// submitted version bits rebuild the header the Python checker verifies.
#[test]
fn rolls_version_bits_when_the_pool_offers_them() {
    let Some(()) = peers_present() else { return };
    let pool = start_pool(&["--difficulty", "0.0005", "--version-rolling", "1fffe000"]);
    let counts = mine_until(&pool, true, |c| c.accepted >= 4);
    let summary = python_verifies(&pool);
    assert!(summary["accepted"].as_u64().unwrap() >= 4);
    assert_eq!(summary["version_rolled"], summary["accepted"]);
    assert_eq!(counts.rejected, 0);
}

/// Hostile lines are rejected and counted, never a panic; a dropped connection is
/// re-established, re-subscribed (new extranonce1) and mining goes on.
#[test]
fn survives_hostile_messages_and_reconnects() {
    let Some(()) = peers_present() else { return };
    let pool = start_pool(&["--difficulty", "0.0005", "--hostile", "--drop-after", "2"]);
    let counts = mine_until(&pool, false, |c| c.connections >= 2 && c.accepted >= 4);
    let subs = submissions(&pool);
    python_verifies(&pool);
    assert!(counts.malformed >= HOSTILE_LINES * 2, "{counts:?}");
    let conns: std::collections::BTreeSet<_> = subs
        .iter()
        .filter(|s| s["accepted"] == true)
        .map(|s| s["extranonce1"].as_str().unwrap().to_owned())
        .collect();
    assert!(conns.len() >= 2, "shares from one session only: {conns:?}");
}

/// A pool that refuses every login, and a one-thread hasher and client for it.
fn refused_login(
    retry_refused: Option<Duration>,
) -> (Pool, StratumClient, HasherPool, UnboundedReceiver<Share>) {
    let pool = start_pool(&["--refuse-auth"]);
    let (hasher, shares) = HasherPool::start(HasherConfig {
        threads: 1,
        watts_per_core: Watts(10.0),
        hashrate_per_core: HashRate::ZERO,
        kernel: Kernel::best(),
    });
    let url = format!("stratum+tcp://127.0.0.1:{}", pool.port);
    let mut config = StratumConfig::new(&url, "nobody", "x").unwrap();
    config.retry_refused = retry_refused;
    (pool, StratumClient::new(config), hasher, shares)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A refused login is the pool's answer, not a transport failure: no retry loop.
#[test]
fn refused_authorization_ends_the_client() {
    let Some(()) = peers_present() else { return };
    let (_pool, client, hasher, shares) = refused_login(None);
    let stats = client.stats();
    let err = current_thread()
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(60),
                client.run(Arc::new(hasher), shares, CancellationToken::new()),
            )
            .await
        })
        .expect("the client kept retrying a refusal")
        .unwrap_err();
    assert!(
        matches!(
            err,
            StratumError::Refused {
                what: "authorize",
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_transient());
    let c = stats.snapshot();
    assert_eq!((c.connections, c.refusals), (1, 1));
}

/// With `retry_refused` set (as the daemon sets it), a refusal is counted, logged and
/// tried again after that wait, until shutdown, which then ends the client cleanly.
#[test]
fn a_refused_login_is_tried_again_when_asked() {
    let Some(()) = peers_present() else { return };
    let (_pool, client, hasher, shares) = refused_login(Some(Duration::from_millis(20)));
    let stats = client.stats();
    let result = current_thread().block_on(async {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(client.run(Arc::new(hasher), shares, shutdown.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while stats.snapshot().refusals < 3 {
            assert!(!task.is_finished(), "the client gave up on a refusal");
            assert!(tokio::time::Instant::now() < deadline, "no third login");
            tokio::time::sleep(Duration::from_millis(10)).await; // poll interval, not a wait
        }
        shutdown.cancel();
        task.await.unwrap()
    });
    assert!(result.is_ok(), "{result:?}");
    let c = stats.snapshot();
    assert!(c.connections >= 3 && !c.connected && c.jobs == 0, "{c:?}");
}
