//! The edge daemon end to end on the embedded broker: signals in over MQTT, the hashing
//! pool as the load, signed operator commands acknowledged, stale signals to the safe
//! state, and `offline` announced on the way out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridminer::runtime::{self, Snapshot};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::brokers::{free_port, Mosquitto};
use super::support::{external_broker, site_config, site_feeds};

const SECRET: &str = "aggregator-shared-secret-0123456789abcdef";

/// The embedded pool with one worker, 10 W at full speed; more keys of the load may
/// follow it.
pub(crate) const CPU_LOAD: &str = gridminer::bench::live::ONE_WORKER_POOL;

fn hs256(claims: &Value) -> String {
    gridminer::signal::operator::sign_hs256(SECRET.as_bytes(), claims)
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<Arc<Snapshot>>,
    what: &str,
    ok: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    wait_for_within(rx, what, Duration::from_secs(20), ok).await
}

/// The first snapshot (the current one included) for which `ok` holds; panics after
/// `limit`.
pub(crate) async fn wait_for_within(
    rx: &mut tokio::sync::watch::Receiver<Arc<Snapshot>>,
    what: &str,
    limit: Duration,
    ok: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = Instant::now() + limit;
    loop {
        let s = rx.borrow_and_update().clone();
        if ok(&s) {
            return s;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, rx.changed()).await.is_err() {
            panic!(
                "timed out waiting for {what}; last: {} {:?}",
                s.decision.reason.as_str(),
                s.decision.loads
            );
        }
    }
}

/// A test client on the broker at `port`, subscribed to `filter`; what it receives
/// arrives on the channel as (topic, payload).
pub(crate) async fn subscriber(
    port: u16,
    filter: &str,
) -> (AsyncClient, mpsc::Receiver<(String, Vec<u8>)>) {
    // Ids must differ: a broker drops the older of two connections sharing one.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut opts = MqttOptions::new(format!("test-client-{n}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::channel(1000);
    tokio::spawn(async move {
        while let Ok(ev) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let _ = tx.send((p.topic, p.payload.to_vec())).await;
            }
        }
    });
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    (client, rx)
}

pub(crate) async fn next_message(rx: &mut mpsc::Receiver<(String, Vec<u8>)>, topic: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (t, body) = tokio::time::timeout(left, rx.recv())
            .await
            .expect("message in time")
            .expect("client alive");
        if t == topic {
            return serde_json::from_slice(&body)
                .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_mines_surplus_obeys_signed_commands_and_fails_safe() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("site.toml");
    std::fs::write(
        &cfg,
        site_config(
            "t1",
            // In the temporary directory, beside the config.
            r#"operator_replay_cache = "replay.json""#,
            &format!(
                r#"
[mqtt]
broker = "embedded"
listen = "127.0.0.1:{port}"

[[signals]]
topic = "t1/pv"
quantity = "pv_power"
unit = "kW"
max_age = "2s"

[[signals]]
topic = "t1/load"
quantity = "site_load"
json_field = "w"
max_age = "2s"

[[signals]]
topic = "t1/price"
quantity = "price"
max_age = "1h"

{CPU_LOAD}
[metrics]
listen = "127.0.0.1:0"

[[operators]]
id = "aggregator"
alg = "HS256"
secret = "{SECRET}"
"#
            ),
        ),
    )
    .unwrap();
    let site = gridminer::runtime::config::load(&cfg).expect("config");
    let running = runtime::start(site).await.expect("daemon starts");
    let mut snaps = running.snapshots.clone();

    // A client of our own on the same broker.
    let (client, mut rx) = subscriber(port, "gridminer/t1/#").await;
    assert_eq!(
        next_message(&mut rx, "gridminer/t1/availability").await,
        Value::String("online".into())
    );

    // Surplus above the 1 kW export limit: the pool mines at full power (10 W).
    let feed = |client: AsyncClient| async move {
        client
            .publish("t1/pv", QoS::AtLeastOnce, false, "3")
            .await
            .unwrap();
        client
            .publish("t1/load", QoS::AtLeastOnce, false, r#"{"w": 500}"#)
            .await
            .unwrap();
        client
            .publish("t1/price", QoS::AtLeastOnce, false, "30")
            .await
            .unwrap();
    };
    feed(client.clone()).await;
    client
        .publish("t1/pv", QoS::AtLeastOnce, false, "not a number")
        .await
        .unwrap();
    let s = wait_for(&mut snaps, "mining on surplus", |s| {
        s.decision.loads[0].power.0 > 9.9
    })
    .await;
    assert_eq!(s.decision.reason.as_str(), "surplus");
    let state = loop {
        let v = next_message(&mut rx, "gridminer/t1/state").await;
        if v["decision"]["reason"] == "surplus" {
            break v;
        }
    };
    assert_eq!(state["signals"]["pv_power"]["value"], 3000.0);
    assert!(state["loads"][0]["target_w"].as_f64().unwrap() > 9.9);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.counters.signals.rejected_total() == 0 {
        assert!(
            Instant::now() < deadline,
            "the malformed payload is counted"
        );
        tokio::task::yield_now().await;
    }

    // A signed curtailment to 0 W: accepted, acknowledged, in force at once.
    feed(client.clone()).await;
    wait_for(&mut snaps, "fresh readings", |s| {
        s.decision.reason.as_str() == "surplus"
    })
    .await;
    let t = now_s();
    let token = hs256(
        &json!({"iss": "aggregator", "aud": "t1", "iat": t, "exp": t + 30, "jti": "c-1", "act": "curtail", "limit_w": 0}),
    );
    client
        .publish("gridminer/t1/cmd", QoS::AtLeastOnce, false, token.clone())
        .await
        .unwrap();
    let ack = next_message(&mut rx, "gridminer/t1/cmd/ack").await;
    assert_eq!(
        (ack["jti"].as_str(), ack["accepted"].as_bool()),
        (Some("c-1"), Some(true)),
        "{ack}"
    );
    assert_eq!(ack["effective_limit_w"], 0.0);
    let s = wait_for(&mut snaps, "the curtailment", |s| {
        s.decision.reason.as_str() == "operator_curtail"
    })
    .await;
    assert_eq!(s.decision.loads[0].power.0, 0.0);

    // The same token again is a replay; garbage is malformed. Both refused, counted.
    client
        .publish("gridminer/t1/cmd", QoS::AtLeastOnce, false, token)
        .await
        .unwrap();
    let ack = next_message(&mut rx, "gridminer/t1/cmd/ack").await;
    assert_eq!(
        (ack["accepted"].as_bool(), ack["reason"].as_str()),
        (Some(false), Some("replayed")),
        "{ack}"
    );
    client
        .publish("gridminer/t1/cmd", QoS::AtLeastOnce, false, "garbage")
        .await
        .unwrap();
    let ack = next_message(&mut rx, "gridminer/t1/cmd/ack").await;
    assert_eq!(ack["accepted"].as_bool(), Some(false), "{ack}");

    // Release, then let the readings age past their 2 s: the safe state.
    let token = hs256(
        &json!({"iss": "aggregator", "aud": "t1", "iat": t, "exp": t + 30, "jti": "r-1", "act": "release"}),
    );
    client
        .publish("gridminer/t1/cmd", QoS::AtLeastOnce, false, token)
        .await
        .unwrap();
    feed(client.clone()).await;
    wait_for(&mut snaps, "mining after release", |s| {
        s.decision.reason.as_str() == "surplus"
    })
    .await;
    let s = wait_for(&mut snaps, "the safe state", |s| {
        s.decision.reason.as_str().starts_with("stale:")
    })
    .await;
    assert_eq!(s.decision.total().0, 0.0);

    running
        .stop(Duration::from_secs(10))
        .await
        .expect("clean shutdown");
    let mut saw_offline = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !saw_offline && Instant::now() < deadline {
        if let Ok(Some((t, b))) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            saw_offline = t == "gridminer/t1/availability" && b == b"offline";
        }
    }
    assert!(saw_offline, "availability goes offline on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_broker_restarted_mid_run_is_reconnected_and_resubscribed() {
    let Some(bin) = Mosquitto::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Mosquitto::start(&bin, dir.path(), port);
    let cfg = dir.path().join("site.toml");
    std::fs::write(
        &cfg,
        site_config(
            "ext",
            "",
            &(external_broker(port, "") + &site_feeds("ext", 2)),
        ),
    )
    .unwrap();
    let site = gridminer::runtime::config::load(&cfg).expect("config");
    let running = runtime::start(site).await.expect("daemon starts");
    let snaps = running.snapshots.clone();

    // A fresh test client for each broker life.
    let publish = |pv: &'static str| async move {
        let mut opts = MqttOptions::new(format!("feeder-{pv}"), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let feeder = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        client
            .publish("ext/pv", QoS::AtLeastOnce, false, pv)
            .await
            .unwrap();
        client
            .publish("ext/load", QoS::AtLeastOnce, false, "0")
            .await
            .unwrap();
        client
            .publish("ext/price", QoS::AtLeastOnce, false, "30")
            .await
            .unwrap();
        (client, feeder)
    };
    // Feeds `pv` with a fresh client until the daemon shows `seen`, within `limit`: the
    // daemon may not (yet, or again) be subscribed when a value goes out.
    let feed_until =
        |pv: &'static str, what: &'static str, limit: Duration, seen: fn(&Snapshot) -> bool| {
            let mut snaps = snaps.clone();
            async move {
                let deadline = Instant::now() + limit;
                loop {
                    let (client, feeder) = publish(pv).await;
                    let got = tokio::time::timeout(
                        Duration::from_millis(500),
                        wait_for(&mut snaps, what, seen),
                    )
                    .await;
                    let _ = client.disconnect().await;
                    feeder.abort();
                    if got.is_ok() {
                        return;
                    }
                    assert!(Instant::now() < deadline, "timed out: {what}");
                }
            }
        };
    feed_until(
        "2000",
        "mining before the restart",
        Duration::from_secs(20),
        |s| s.decision.total().0 >= 999.0,
    )
    .await;

    broker.restart();
    // New readings after the restart reach the daemon only if it reconnected and
    // subscribed again (clean sessions: the new broker knows nothing of it).
    feed_until(
        "1500",
        "readings after the restart",
        Duration::from_secs(30),
        |s| s.state.pv.is_some_and(|r| r.value.0 == 1500.0),
    )
    .await;
    running
        .stop(Duration::from_secs(10))
        .await
        .expect("clean shutdown");
}

/// Waits until the site announces `online` (a restarted daemon: after its `offline`).
async fn until_online(rx: &mut mpsc::Receiver<(String, Vec<u8>)>, site: &str) {
    let topic = format!("gridminer/{site}/availability");
    while next_message(rx, &topic).await != Value::String("online".into()) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_accepted_before_a_restart_is_refused_as_a_replay_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("site.toml");
    let replay = dir.path().join("state/replay.json");
    std::fs::write(
        &cfg,
        site_config(
            "rs",
            r#"operator_replay_cache = "state/replay.json""#,
            &format!(
                r#"
[mqtt]
broker = "embedded"
listen = "127.0.0.1:{port}"
[[operators]]
id = "aggregator"
alg = "HS256"
secret = "{SECRET}"
{}"#,
                site_feeds("rs", 1)
            ),
        ),
    )
    .unwrap();
    let start = || async {
        let site = gridminer::runtime::config::load(&cfg).expect("config");
        runtime::start(site).await.expect("daemon starts")
    };
    let running = start().await;
    let (client, mut rx) = subscriber(port, "gridminer/rs/#").await;
    until_online(&mut rx, "rs").await;

    let t = now_s();
    let token = hs256(
        &json!({"iss": "aggregator", "aud": "rs", "iat": t, "exp": t + 60, "jti": "once", "act": "curtail", "limit_w": 0}),
    );
    let send = |token: String| {
        let client = client.clone();
        async move {
            client
                .publish("gridminer/rs/cmd", QoS::AtLeastOnce, false, token)
                .await
                .unwrap();
        }
    };
    send(token.clone()).await;
    let ack = next_message(&mut rx, "gridminer/rs/cmd/ack").await;
    assert_eq!(ack["accepted"], true, "{ack}");
    // The ack goes out after the save: the record is on disk by now.
    let saved = std::fs::read_to_string(&replay).expect("the replay cache was saved");
    assert!(saved.contains("\"once\""), "{saved}");
    running.stop(Duration::from_secs(10)).await.expect("stops");

    // Same config, new process state: the record comes back from the file.
    let running = start().await;
    until_online(&mut rx, "rs").await;
    send(token.clone()).await;
    let ack = next_message(&mut rx, "gridminer/rs/cmd/ack").await;
    assert_eq!(
        (
            ack["jti"].as_str(),
            ack["accepted"].as_bool(),
            ack["reason"].as_str()
        ),
        (Some("once"), Some(false), Some("replayed")),
        "{ack}"
    );
    assert_eq!(running.metrics.replay_cache_errors(), 0);
    running.stop(Duration::from_secs(10)).await.expect("stops");

    // A damaged record: commands signed before this start are refused, not trusted.
    std::fs::write(&replay, b"{\"version\":1,\"entr").unwrap();
    let running = start().await;
    until_online(&mut rx, "rs").await;
    assert_eq!(running.metrics.replay_cache_errors(), 1);
    send(token).await;
    let ack = next_message(&mut rx, "gridminer/rs/cmd/ack").await;
    assert_eq!(
        (ack["accepted"].as_bool(), ack["reason"].as_str()),
        (Some(false), Some("issued_before_restart")),
        "{ack}"
    );
    running.stop(Duration::from_secs(10)).await.expect("stops");
}

/// r10 (issue 10, soundness): a window `bench live` cannot wait (negative, NaN) is refused
/// with the option's name before the daemon starts; it used to run every phase and then
/// panic in `Duration::from_secs_f64`.
#[test]
fn r10_bench_live_refuses_a_window_that_is_not_a_duration() {
    let dir = tempfile::tempdir().unwrap();
    for (option, value) in [
        ("--idle-seconds", "-1"),
        ("--idle-seconds", "NaN"),
        ("--paced-seconds", "-0.5"),
    ] {
        let arg = format!("{option}={value}");
        let out = super::support::gridminer(&["bench", "live", &arg], dir.path());
        let shown = super::support::text(&out);
        assert!(!out.status.success(), "{option} {value}: {shown}");
        assert!(
            shown.contains(&format!("{option} {value} is not a duration")),
            "{shown}"
        );
        assert!(!shown.contains("panicked"), "{shown}");
    }
}

/// `gridminer bench live`, small: every phase runs to the end against the real embedded
/// broker, daemon and idle child process. The figures are the benchmark's business and
/// are not judged here; only that each was measured.
#[test]
fn bench_live_measures_every_phase() {
    let dir = tempfile::tempdir().unwrap();
    let out = super::support::gridminer(
        &[
            "bench",
            "live",
            "--messages",
            "2000",
            "--paced-seconds",
            "0.5",
            "--samples",
            "4",
            "--idle-seconds",
            "0.5",
            "--json",
        ],
        dir.path(),
    );
    let v = super::support::json_stdout(&out);
    assert!(v["ingest_messages"].as_u64().unwrap() > 0);
    assert!(v["paced_accepted"].as_u64().unwrap() > 0);
    for key in [
        "ingest_msgs_per_s",
        "baseline_msgs_per_s",
        "signal_to_load_p99_ms",
        "baseline_round_trip_p99_ms",
        "curtail_to_stop_p99_ms",
        "idle_rss_mb",
        "idle_cpu_percent",
        "dashboard_cpu_percent",
    ] {
        let x = v[key].as_f64().unwrap_or(f64::NAN);
        assert!(x.is_finite() && x >= 0.0, "{key} = {}", v[key]);
    }
    // r13: the dashboard's figures. The first load is at least uPlot (51 kB) and the
    // page; the extra CPU may be below 0 by noise, never NaN.
    assert!(
        v["dashboard_first_load_bytes"].as_u64().unwrap() > 51_000,
        "{v}"
    );
    assert!(v["dashboard_state_bytes"].as_u64().unwrap() > 100, "{v}");
    assert_eq!(v["dashboard_clients"], 50);
    assert!(v["dashboard_extra_cpu_percent"].as_f64().is_some(), "{v}");
    assert!(!v["cpu"].as_str().unwrap().is_empty());
}
