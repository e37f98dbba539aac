//! Issue 11, frequency response with evidence, through the daemon on the embedded broker
//! with the embedded pool (10 W) as the load: an under-frequency reading and a signed
//! curtailment each make an evidence record with the pool's command sent, acknowledged
//! and confirmed and the mining power sampled at its offsets; it shows in the state (the
//! snapshot and the retained MQTT document) and in Prometheus, and is in the events file
//! after the daemon stops, where `gridminer events --config` prints it.

use std::path::Path;
use std::time::{Duration, Instant};

use gridminer::runtime::{self, Running, Snapshot};
use gridminer::telemetry::evidence::file::EventsFile;
use gridminer::telemetry::evidence::{Closure, Record, TriggerKind, Verdict, OFFSETS};
use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::brokers::free_port;
use super::live::{next_message, subscriber, wait_for_within, CPU_LOAD};
use super::plausible::feeds;
use super::support::{gridminer, json_stdout, text, SURPLUS_SITE};

const SECRET: &str = "evidence-test-secret-0123456789abcdef";

/// Site `id` on an embedded broker at `port`: PV (kW), frequency, site load and price
/// topics, a frequency rule shedding below 49.8 Hz, the one-worker pool, an operator
/// signing with HS256, and `more` (e.g. `[events]`).
fn site(id: &str, port: u16, top: &str, more: &str) -> String {
    format!(
        r#"
site_id = "{id}"
tick = "100ms"
hashprice = 50.0
policy = {{ mode = "economic", max_signal_age = "1h", frequency = {{ nominal_hz = 50.0, shed_below_hz = 49.8, absorb_above_hz = 50.2, hold = "1h" }} }}
{top}
{SURPLUS_SITE}
[mqtt]
broker = "embedded"
listen = "127.0.0.1:{port}"
{feeds}
{CPU_LOAD}
[metrics]
listen = "127.0.0.1:0"

[[operators]]
id = "aggregator"
alg = "HS256"
secret = "{SECRET}"
{more}
"#,
        feeds = feeds(id, "price"),
    )
}

type Inbox = mpsc::Receiver<(String, Vec<u8>)>;

/// Starts the daemon on `cfg`, a client subscribed to its topics, and feeds surplus
/// until the pool mines and reports drawing power.
async fn mining(cfg: &Path, id: &str, port: u16) -> (Running, AsyncClient, Inbox) {
    let site = gridminer::runtime::config::load(cfg).expect("config");
    let running = runtime::start(site).await.expect("daemon starts");
    let (client, mut rx) = subscriber(port, &format!("gridminer/{id}/#")).await;
    let availability = format!("gridminer/{id}/availability");
    while next_message(&mut rx, &availability).await != "online" {}
    for (topic, payload) in [
        ("pv", "3"),
        ("load", "500"),
        ("price", "30"),
        ("hz", "50.0"),
    ] {
        client
            .publish(format!("{id}/{topic}"), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let mut snaps = running.snapshots.clone();
    wait_for_within(
        &mut snaps,
        "the pool drawing power",
        Duration::from_secs(20),
        |s| s.loads[0].reading().is_some_and(|r| r.value.0 > 5.0),
    )
    .await;
    (running, client, rx)
}

/// The first snapshot whose newest record satisfies `ok`.
async fn record(running: &Running, what: &str, ok: impl Fn(&Record) -> bool) -> Record {
    record_within(running, what, Duration::from_secs(20), ok).await
}

/// `record`, waiting at most `limit`.
async fn record_within(
    running: &Running,
    what: &str,
    limit: Duration,
    ok: impl Fn(&Record) -> bool,
) -> Record {
    let mut snaps = running.snapshots.clone();
    let s = wait_for_within(&mut snaps, what, limit, |s: &Snapshot| {
        s.events.first().is_some_and(&ok)
    })
    .await;
    s.events[0].clone()
}

fn metrics_have(running: &Running, name: &str) -> bool {
    running
        .metrics
        .render()
        .lines()
        .any(|l| l.starts_with(name))
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A signed curtailment of site `id` to `limit_w`, as `jti`.
async fn curtail(client: &AsyncClient, id: &str, jti: &str, limit_w: f64) {
    let t = now_s();
    let claims = json!({"iss": "aggregator", "aud": id, "iat": t, "exp": t + 60,
                        "jti": jti, "act": "curtail", "limit_w": limit_w});
    let token = gridminer::signal::operator::sign_hs256(SECRET.as_bytes(), &claims);
    client
        .publish(
            format!("gridminer/{id}/cmd"),
            QoS::AtLeastOnce,
            false,
            token,
        )
        .await
        .unwrap();
}

/// Each sample of `r` was taken at or after its offset from the trigger, in order.
fn samples_at_their_offsets(r: &Record) {
    for (s, o) in r.samples.iter().zip(OFFSETS) {
        assert_eq!(s.offset, o);
        let after = s.at.since(r.trigger.at);
        assert!(after >= o, "sample {o:?} taken {after:?} after the trigger");
        assert_eq!(s.loads.len(), 1);
        assert!(s.loads[0].age.is_some(), "every reading's age is given");
    }
}

/// The pool's command as the record shows it: sent, acknowledged, confirmed, in order,
/// after the trigger, no error.
fn pool_command_confirmed(r: &Record) {
    let load = &r.loads[0];
    assert_eq!(load.load, "cpu");
    assert!(load.readback && load.command_due);
    let u = &load.units[0];
    assert_eq!(u.command, "0 W", "{u:?}");
    let (acked, confirmed) = (u.acked.expect("acked"), u.confirmed.expect("confirmed"));
    assert!(
        r.trigger.at <= u.sent && u.sent <= acked && acked <= confirmed,
        "{u:?}"
    );
    assert_eq!(u.error, None);
    assert!(r.response.last_acked.is_some() && r.response.last_confirmed.is_some());
    assert_ne!(r.response.commands, Verdict::Pending);
}

/// r11: a frequency reading below `shed_below_hz` opens an evidence record: the trigger
/// with its frequency and the mining power before, the pool's command acked and
/// confirmed, samples at 250 ms, 1 s and 5 s taken on their own timers with the age of
/// each reading, the 1 s one showing the pool at 0 W measured after the trigger. It is in
/// the retained state and Prometheus; after the 60 s sample it is final (`complete`) and
/// in the events file, which `gridminer events` prints, as a table and as JSON, while the
/// daemon runs and after it stopped. (The test waits out the 60 s: the last timer and
/// the record's completion are what it proves.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_under_frequency_makes_an_evidence_record_in_state_file_and_cli() {
    let id = "ev11f";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("site.toml");
    let events = "[events]\nfile = \"events.jsonl\"\n";
    std::fs::write(&cfg, site(id, port, "", events)).unwrap();
    let (running, client, mut rx) = mining(&cfg, id, port).await;

    client
        .publish(format!("{id}/hz"), QoS::AtLeastOnce, false, "49.5")
        .await
        .unwrap();
    let r = record(&running, "the 5 s sample", |r| r.samples.len() >= 3).await;
    assert_eq!(r.site, id);
    assert_eq!(r.trigger.kind, TriggerKind::UnderFrequency);
    assert_eq!(r.trigger.frequency.map(|f| f.0), Some(49.5));
    assert!(r.mining_before.unwrap().0 > 5.0, "{:?}", r.mining_before);
    assert_eq!(r.cap.map(|w| w.0), Some(0.0));
    assert!(r.closed.is_none(), "open until 60 s");
    pool_command_confirmed(&r);
    samples_at_their_offsets(&r);
    let one_second = &r.samples[1];
    assert_eq!(one_second.mining.map(|w| w.0), Some(0.0), "{one_second:?}");
    assert!(one_second.all_after_trigger, "{one_second:?}");

    // The retained state document carries it, as does Prometheus.
    let state = loop {
        let v = next_message(&mut rx, &format!("gridminer/{id}/state")).await;
        if v["events"][0]["samples"]
            .as_array()
            .is_some_and(|s| s.len() >= 3)
        {
            break v;
        }
    };
    let shown = &state["events"][0];
    assert_eq!(shown["trigger"]["kind"], "under_frequency", "{shown}");
    assert_eq!(shown["final"], false);
    assert_eq!(shown["samples"][0]["offset_s"], 0.25);
    assert!(
        shown["loads"][0]["units"][0]["confirmed"].is_string(),
        "{shown}"
    );
    assert_eq!(running.metrics.responses(TriggerKind::UnderFrequency), 1);
    let metrics = running.metrics.render();
    assert!(
        metrics.contains(r#"gridminer_response_events_total{trigger="under_frequency"} 1"#),
        "{metrics}"
    );

    let done = record_within(&running, "the final record", Duration::from_secs(90), |r| {
        r.closed.is_some()
    })
    .await;
    assert_eq!(done.closed.map(|c| c.why), Some(Closure::Complete));
    assert_eq!(done.samples.len(), OFFSETS.len());
    assert_eq!(done.samples[..3], r.samples[..3]);
    samples_at_their_offsets(&done);
    assert!(done.samples.iter().skip(1).all(|s| s.all_after_trigger));
    assert!(metrics_have(
        &running,
        "gridminer_response_last_confirm_latency_seconds"
    ));

    // Written off the control loop: in the file within a moment, read beside the daemon.
    let file = EventsFile::new(dir.path().join("events.jsonl"), u64::MAX);
    let deadline = Instant::now() + Duration::from_secs(20);
    while file.read().unwrap().records.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the record reaches the events file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = gridminer(
        &["events", "--config", cfg.to_str().unwrap(), "--json"],
        dir.path(),
    );
    let records = json_stdout(&out);
    let last = records.as_array().unwrap().last().unwrap().clone();
    let written: Record = serde_json::from_value(last.clone()).unwrap();
    assert_eq!(written, done, "the file holds what the state showed");
    assert_eq!(last["response"]["window_s"], 0.25);

    running
        .stop(Duration::from_secs(10))
        .await
        .expect("clean stop");
    let out = gridminer(&["events", "--config", cfg.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    // The evidence as people see it, in the test's output: the measured latencies.
    eprintln!("{table}");
    for want in [
        "under_frequency",
        "49.500 Hz",
        "record complete at +60",
        "cpu",
        "250 ms",
        "60 s ",
    ] {
        assert!(table.contains(want), "{want:?} missing from:\n{table}");
    }
    let out = gridminer(
        &[
            "events",
            "--config",
            cfg.to_str().unwrap(),
            "--json",
            "--last",
            "0",
        ],
        dir.path(),
    );
    assert_eq!(json_stdout(&out), json!([]));
}

/// r11: a signed curtailment that comes into force makes a record naming its `jti` and
/// operator; a tighter one supersedes it (closed early, saying so) with a record of its
/// own. The events file is found where it is by default: beside the operator replay
/// cache, named for the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_a_signed_curtail_makes_a_record_with_its_jti() {
    let id = "ev11c";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("site.toml");
    let top = r#"operator_replay_cache = "state/replay.json""#;
    std::fs::write(&cfg, site(id, port, top, "")).unwrap();
    let (running, client, _rx) = mining(&cfg, id, port).await;

    curtail(&client, id, "ev-1", 5.0).await;
    let first = record(&running, "the first curtail's 250 ms sample", |r| {
        r.trigger.jti.as_deref() == Some("ev-1") && !r.samples.is_empty()
    })
    .await;
    assert_eq!(first.trigger.kind, TriggerKind::OperatorCurtail);
    assert_eq!(first.trigger.operator.as_deref(), Some("aggregator"));
    assert_eq!(first.cap.map(|w| w.0), Some(5.0));

    curtail(&client, id, "ev-2", 0.0).await;
    let second = record(&running, "the second curtail's 1 s sample", |r| {
        r.trigger.jti.as_deref() == Some("ev-2") && r.samples.len() >= 2
    })
    .await;
    assert_eq!(second.cap.map(|w| w.0), Some(0.0));
    pool_command_confirmed(&second);
    samples_at_their_offsets(&second);
    let snap = running.snapshots.borrow().clone();
    let superseded = &snap.events[1];
    assert_eq!(superseded.trigger.jti.as_deref(), Some("ev-1"));
    assert_eq!(superseded.closed.map(|c| c.why), Some(Closure::Superseded));
    assert_eq!(running.metrics.responses(TriggerKind::OperatorCurtail), 2);

    running
        .stop(Duration::from_secs(10))
        .await
        .expect("clean stop");
    assert!(dir.path().join(format!("state/events-{id}.jsonl")).exists());
    let out = gridminer(
        &["events", "--config", cfg.to_str().unwrap(), "--json"],
        dir.path(),
    );
    let records: Vec<Value> = serde_json::from_value(json_stdout(&out)).unwrap();
    let jtis: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["trigger"]["jti"].as_str().unwrap_or(""),
                r["closed"]["why"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(jtis, [("ev-1", "superseded"), ("ev-2", "shutdown")]);
    let out = gridminer(&["events", "--config", cfg.to_str().unwrap()], dir.path());
    let table = text(&out);
    eprintln!("{table}");
    assert!(table.contains("jti ev-2 from aggregator"), "{table}");
}
