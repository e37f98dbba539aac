//! `gridminer run` with a cpu load that mines for a Stratum pool: the daemon runs the
//! Stratum client as one of its tasks, the controller's target throttles the hashing
//! pool, every share the pool accepted is verified by Python's hashlib, and at 0 W
//! nothing more is hashed or submitted. A configured pool that never answers, or refuses
//! the login, leaves the load drawing 0 W, whatever its target, and the state says so.
//!
//! The pool is `tests/stratum/server.js` (see `stratum.rs`); the broker is the embedded
//! one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridminer::actuator::hasher::stratum::StratumCounts;
use gridminer::actuator::hasher::HashingReport;
use gridminer::runtime::{self, Running, Snapshot};
use gridminer::{actuator::hasher::config::POOL_REFUSED_RETRY, runtime::config::LoadDriver};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::watch;

use crate::brokers::free_port;
use crate::live::{next_message, subscriber, wait_for, wait_for_within, CPU_LOAD};
use crate::stratum::{peers_present, python_verifies, start_pool, submissions};
use crate::support::SURPLUS_SITE;

/// A site whose only load is a one-thread cpu pool (10 W at full speed) mining for
/// `pool_url`; signals never go stale during the test.
fn site_toml(broker_port: u16, pool_url: &str) -> String {
    format!(
        r#"
site_id = "sp"
tick = "100ms"
hashprice = 50.0
policy = {{ mode = "economic", margin_eur_mwh = 0.0, max_signal_age = "1h" }}
{SURPLUS_SITE}
[mqtt]
broker = "embedded"
listen = "127.0.0.1:{broker_port}"
ha_discovery = false
[[signals]]
topic = "sp/pv"
quantity = "pv_power"
unit = "kW"
[[signals]]
topic = "sp/load"
quantity = "site_load"
[[signals]]
topic = "sp/price"
quantity = "price"
{CPU_LOAD}pool = {{ url = "{pool_url}", user = "worker1", password = "x" }}
[metrics]
listen = "127.0.0.1:0"
"#
    )
}

async fn start_daemon(dir: &std::path::Path, broker_port: u16, pool_url: &str) -> Running {
    let cfg = dir.join("site.toml");
    std::fs::write(&cfg, site_toml(broker_port, pool_url)).unwrap();
    let site = gridminer::runtime::config::load(&cfg).expect("config");
    runtime::start(site).await.expect("daemon starts")
}

/// Publishes PV `pv_kw` (site load 500 W, price 30 EUR/MWh) until the daemon shows
/// `seen`: it may not be subscribed yet when a reading goes out.
async fn feed_until(
    client: &AsyncClient,
    snaps: &mut watch::Receiver<Arc<Snapshot>>,
    pv_kw: &str,
    what: &str,
    seen: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for (topic, value) in [("sp/pv", pv_kw), ("sp/load", "500"), ("sp/price", "30")] {
            client
                .publish(topic, QoS::AtLeastOnce, false, value)
                .await
                .unwrap();
        }
        let limit = Duration::from_secs(30);
        let got = tokio::time::timeout(
            Duration::from_millis(500),
            wait_for_within(snaps, what, limit, &seen),
        )
        .await;
        if let Ok(s) = got {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
    }
}

fn hashing(s: &Snapshot) -> &HashingReport {
    s.hashing[0]
        .as_ref()
        .expect("the cpu load reports its hashing")
}

fn pool(s: &Snapshot) -> StratumCounts {
    hashing(s).pool.expect("the cpu load mines for a pool")
}

/// What the cpu load is counted as drawing, W: its pool's power as last read.
fn actual(s: &Snapshot) -> f64 {
    s.loads[0]
        .reading()
        .expect("the pool's power is read")
        .value
        .0
}

/// The value of one sample line of the Prometheus text, e.g. `name{load="cpu"}`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_mines_verified_shares_for_its_pool_and_stops_submitting_at_zero_watts() {
    let Some(()) = peers_present() else { return };
    let harness = start_pool(&["--difficulty", "0.0005"]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("stratum+tcp://127.0.0.1:{}", harness.port);
    let running = start_daemon(dir.path(), port, &url).await;
    let mut snaps = running.snapshots.clone();
    let (client, mut msgs) = subscriber(port, "gridminer/sp/#").await;

    // Surplus: the policy gives the cpu load its full 10 W, and the pool's jobs are mined.
    feed_until(&client, &mut snaps, "3", "mining on surplus", |s| {
        s.decision.loads[0].power.0 > 9.9
    })
    .await;
    let s = wait_for_within(
        &mut snaps,
        "shares the pool accepted",
        Duration::from_secs(120),
        |s| pool(s).accepted >= 5,
    )
    .await;
    assert!(pool(&s).connected);
    assert_eq!(pool(&s).malformed, 0);
    assert!(actual(&s) > 9.9, "a load with a job draws its target");

    // The same counters in the retained state document and in the metrics.
    let state = loop {
        let v = next_message(&mut msgs, "gridminer/sp/state").await;
        if v["loads"][0]["hashing"]["pool"]["accepted"].as_u64() >= Some(5) {
            break v;
        }
    };
    let load = &state["loads"][0];
    assert_eq!(load["hashing"]["pool"]["connected"], true, "{load}");
    // The keys the README documents for the state's pool object.
    let keys: Vec<&str> = load["hashing"]["pool"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut documented = [
        "connected",
        "connections",
        "jobs",
        "submitted",
        "accepted",
        "rejected",
        "stale_dropped",
        "invalid_dropped",
        "malformed",
        "refusals",
    ];
    documented.sort();
    assert_eq!(keys, documented, "{load}");
    assert!(load["hashing"]["hashes"].as_u64().unwrap() > 0, "{load}");
    assert!(load["actual_w"].as_f64().unwrap() > 9.9, "{load}");
    let text = running.metrics.render();
    let accepted = r#"gridminer_stratum_shares_total{load="cpu",outcome="accepted"}"#;
    assert!(metric(&text, accepted) >= 5.0);
    assert_eq!(
        metric(&text, r#"gridminer_stratum_connected{load="cpu"}"#),
        1.0
    );
    assert!(metric(&text, r#"gridminer_hasher_hashes_total{load="cpu"}"#) > 0.0);

    // No surplus, and importing does not pay: the policy drives the load to 0 W. Once
    // the pool is paused and every share it found has been answered, nothing moves.
    feed_until(&client, &mut snaps, "0", "the load driven to 0 W", |s| {
        s.decision.loads[0].power.0 == 0.0
    })
    .await;
    let quiet = wait_for_within(
        &mut snaps,
        "the pool paused, every share found submitted and answered",
        Duration::from_secs(30),
        |s| {
            let (h, c) = (&hashing(s).hasher, pool(s));
            h.target.0 == 0.0
                && h.active_threads == 0
                && h.hashing_threads == 0
                && c.submitted + c.stale_dropped + c.invalid_dropped == h.shares
                && c.accepted + c.rejected == c.submitted
                // The pool's power is read back every 100 ms: it reaches 0 W one read
                // after the threads rest.
                && actual(s) == 0.0
        },
    )
    .await;
    let (hashes, found, sent) = (
        hashing(&quiet).hasher.hashes,
        hashing(&quiet).hasher.shares,
        pool(&quiet).submitted,
    );
    // The pool records a submission before it answers, so every one is in the file.
    assert_eq!(submissions(&harness).len() as u64, sent);
    assert_eq!(actual(&quiet), 0.0);
    // Ten further control steps at 0 W: not one nonce hashed, share found or sent.
    let mut prev = quiet.clone();
    for _ in 0..10 {
        let s = wait_for(&mut snaps, "the next step", |s| s.at > prev.at).await;
        assert_eq!(s.decision.loads[0].power.0, 0.0);
        assert_eq!(hashing(&s).hasher.hashes, hashes, "hashed at 0 W");
        assert_eq!(hashing(&s).hasher.shares, found);
        assert_eq!(pool(&s).submitted, sent, "submitted at 0 W");
        assert!(pool(&s).connected, "paused, not disconnected");
        prev = s;
    }

    running
        .stop(Duration::from_secs(10))
        .await
        .expect("clean shutdown, the Stratum client included");
    let subs = submissions(&harness);
    assert_eq!(subs.len() as u64, sent, "a share submitted after the pause");
    let summary = python_verifies(&harness);
    assert!(summary["accepted"].as_u64().unwrap() >= 5, "{summary}");
    // One job, never cleaned: nothing stale, so the pool accepted every submission.
    assert_eq!(summary["accepted"], summary["submissions"], "{summary}");
}

/// A pool that accepts the TCP connection (the kernel's backlog does) but never answers:
/// no job, so the load is told 10 W and truthfully draws 0 W; the daemon still shuts
/// down cleanly with the client mid-handshake. Needs no external peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_never_answers_leaves_the_load_at_zero_actual_power() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("stratum+tcp://{}", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let running = start_daemon(dir.path(), port, &url).await;
    let mut snaps = running.snapshots.clone();
    let (client, _msgs) = subscriber(port, "gridminer/sp/#").await;

    feed_until(&client, &mut snaps, "3", "mining on surplus", |s| {
        s.decision.loads[0].power.0 > 9.9
    })
    .await;
    // The pool has been told 10 W; the power read in the following step is what it
    // draws under that target.
    let told = wait_for(&mut snaps, "the pool told its target", |s| {
        hashing(s).hasher.target.0 > 9.9
    })
    .await;
    let s = wait_for(&mut snaps, "the next step", |s| s.at > told.at).await;
    assert!(s.decision.loads[0].power.0 > 9.9);
    assert_eq!(actual(&s), 0.0, "no job, no power");
    let (h, c) = (&hashing(&s).hasher, pool(&s));
    assert_eq!((h.hashes, h.hashing_threads, h.power.0), (0, 0, 0.0));
    assert!(!c.connected);
    assert_eq!((c.jobs, c.submitted), (0, 0));
    let mining = s.state.mining.expect("mining power observed every step");
    assert_eq!(mining.value.0, 0.0);
    let text = running.metrics.render();
    assert_eq!(
        metric(&text, r#"gridminer_stratum_connected{load="cpu"}"#),
        0.0
    );
    assert_eq!(
        metric(&text, r#"gridminer_load_actual_watts{load="cpu"}"#),
        0.0
    );

    running
        .stop(Duration::from_secs(10))
        .await
        .expect("clean shutdown while the pool is silent");
    drop(silent);
}

/// A pool that refuses the login: the daemon logs it, counts it, keeps the load at 0 W
/// actual and stays up to log in again later (`POOL_REFUSED_RETRY`) rather than mining
/// nothing until someone restarts it; shutdown does not wait out that retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_refuses_the_login_is_counted_and_the_daemon_stays_up() {
    let Some(()) = peers_present() else { return };
    let pool_server = start_pool(&["--refuse-auth"]);
    let url = format!("stratum+tcp://127.0.0.1:{}", pool_server.port);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let running = start_daemon(dir.path(), port, &url).await;
    let site = gridminer::runtime::config::load(&dir.path().join("site.toml")).unwrap();
    match &site.config.drivers[..] {
        [LoadDriver::Hasher {
            pool: Some(stratum),
            ..
        }] => assert_eq!(stratum.retry_refused, Some(POOL_REFUSED_RETRY)),
        other => panic!("{other:?}"),
    }
    let mut snaps = running.snapshots.clone();
    let (client, _msgs) = subscriber(port, "gridminer/sp/#").await;

    let s = feed_until(&client, &mut snaps, "3", "the refusal counted", |s| {
        s.decision.loads[0].power.0 > 9.9 && pool(s).refusals == 1
    })
    .await;
    let c = pool(&s);
    assert!(!c.connected);
    assert_eq!((c.connections, c.jobs, c.submitted), (1, 0, 0));
    let s = wait_for(&mut snaps, "the next step", |n| n.at > s.at).await;
    assert_eq!(actual(&s), 0.0, "no job, no power");
    let refusals = metric(
        &running.metrics.render(),
        r#"gridminer_stratum_refusals_total{load="cpu"}"#,
    );
    assert_eq!(refusals, 1.0);
    let stopped = running.stop(Duration::from_secs(10)).await;
    stopped.expect("clean shutdown while waiting to log in again");
}
