//! Issue 10, the actuator seam, end to end: every MQTT load writes through a driver that
//! knows whether its write arrived, and what the load really draws is confirmed where
//! the equipment reports it. Against real brokers: the embedded one and mosquitto.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridminer::actuator::status::{Confirmation, LoadStatus};
use gridminer::runtime::{self, Snapshot};
use gridminer::telemetry::status::state_json;
use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::brokers::{free_port, Mosquitto};
use super::live::{next_message, subscriber, wait_for_within};
use super::support::{external_broker, site_config_aged, site_signals};

/// A site `site` with signals on `{site}/pv`, `{site}/load`, `{site}/price` that go
/// stale after `max_age`, a constant hashprice, and `tables` (the `[mqtt]` section and
/// the loads).
fn config(site: &str, max_age: &str, tables: &str) -> String {
    let tables = format!("{}\n{tables}", site_signals(site));
    site_config_aged(site, max_age, "", &tables)
}

/// An MQTT load `name` of two 500 W miners, its setpoint on `{site}/{name}/setpoint`,
/// with `more` keys.
fn mqtt_load(site: &str, name: &str, more: &str) -> String {
    format!(
        r#"
[[loads]]
kind = "mqtt"
topic = "{site}/{name}/setpoint"
name = "{name}"
count = 2
rated_power = "500 W"
hashrate = "20 TH/s"
{more}
"#
    )
}

/// Feeds surplus (3 kW of PV over 500 W) through `client` until a snapshot shows `seen`;
/// the daemon may not be subscribed yet when the first values go out.
async fn feed_until(
    client: &AsyncClient,
    site: &str,
    snaps: &mut watch::Receiver<Arc<Snapshot>>,
    what: &str,
    seen: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (topic, value) in [("pv", "3000"), ("load", "500"), ("price", "30")] {
            let topic = format!("{site}/{topic}");
            client
                .publish(topic, QoS::AtLeastOnce, false, value)
                .await
                .unwrap();
        }
        let got = tokio::time::timeout(
            Duration::from_millis(500),
            wait_for_within(snaps, what, Duration::from_secs(30), &seen),
        )
        .await;
        if let Ok(s) = got {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
    }
}

fn commanded_w(s: &LoadStatus) -> Option<f64> {
    s.commanded.map(|c| c.target.power.0)
}

fn reading_w(s: &LoadStatus) -> Option<f64> {
    s.reading().map(|r| r.value.0)
}

/// The value of one sample line of the Prometheus text, if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// Catches a setpoint booked as drawn when it never reached the broker (before: the
/// publish was queued, the power booked, and the queue dropped at the reconnect), and
/// a target that, once a write failed, stayed unwritten until the policy changed its
/// mind. mosquitto is killed under a mining load: the safe 0 W the stale signals then
/// call for cannot be written, so the load stays counted at its 1000 W and the state
/// shows the error; once the broker is back, 0 W is written without a new decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_a_setpoint_that_cannot_be_written_is_not_booked_and_is_written_once_it_can() {
    let Some(bin) = Mosquitto::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Mosquitto::start(&bin, dir.path(), port);
    let site = "r10w";
    let cfg = dir.path().join("site.toml");
    let tables = external_broker(port, "") + &mqtt_load(site, "miners", "");
    std::fs::write(&cfg, config(site, "2s", &tables)).unwrap();
    let site_cfg = gridminer::runtime::config::load(&cfg).expect("config");
    let specs = site_cfg.config.loads.clone();
    let running = runtime::start(site_cfg).await.expect("daemon starts");
    let mut snaps = running.snapshots.clone();
    let (client, _rx) = subscriber(port, "gridminer/none").await;

    let mining = feed_until(&client, site, &mut snaps, "1000 W written", |s| {
        commanded_w(&s.loads[0]) == Some(1000.0)
    })
    .await;
    let miners = &mining.loads[0];
    assert_eq!(miners.confirmation(), Confirmation::Unconfirmed);
    assert_eq!(reading_w(miners), Some(1000.0), "the setpoint stands in");
    assert_eq!(miners.errors, 0);

    drop(broker);
    // The signals go stale: the policy calls for 0 W, which cannot be written.
    let failed = wait_for_within(
        &mut snaps,
        "a failed write of 0 W",
        Duration::from_secs(30),
        |s| s.decision.loads[0].power.0 == 0.0 && s.loads[0].last_error.is_some(),
    )
    .await;
    let miners = &failed.loads[0];
    assert_eq!(commanded_w(miners), Some(1000.0));
    assert_eq!(
        reading_w(miners),
        Some(1000.0),
        "the failed 0 W booked as drawn"
    );
    // The next step counts the load at what it last confirmed.
    let next = wait_for_within(&mut snaps, "the next step", Duration::from_secs(5), |s| {
        s.at > failed.at
    })
    .await;
    let mining_power = next.state.mining.expect("mining power observed every step");
    assert_eq!(mining_power.value.0, 1000.0);
    let state = state_json(
        &failed.state,
        &failed.decision,
        &specs,
        &failed.loads,
        &failed.hashing,
        &failed.fleet,
        &failed.events,
        &failed.acks,
        failed.at,
    );
    let load = &state["loads"][0];
    assert_eq!(load["target_w"], 0.0, "{load}");
    assert_eq!(load["actual_w"], 1000.0, "{load}");
    assert_eq!(load["commanded"]["power_w"], 1000.0, "{load}");
    assert_eq!(load["confirmation"], "unconfirmed", "{load}");
    let message = load["last_error"]["message"].as_str().unwrap();
    assert!(message.starts_with("set: "), "{load}");
    assert!(load["last_error"]["age_s"].as_f64().unwrap() >= 0.0);
    assert!(load["errors"].as_u64().unwrap() >= 1);
    let text = running.metrics.render();
    let errors = metric(&text, r#"gridminer_load_errors_total{load="miners"}"#);
    assert!(errors >= Some(1.0), "{text}");
    assert_eq!(
        metric(&text, r#"gridminer_load_commanded_watts{load="miners"}"#),
        Some(1000.0)
    );

    // The broker is back (empty: no retained setpoint): the daemon writes 0 W again by
    // itself, and the new broker holds it.
    let _broker = Mosquitto::start(&bin, dir.path(), port);
    let written = wait_for_within(
        &mut snaps,
        "0 W written after the broker came back",
        Duration::from_secs(60),
        |s| commanded_w(&s.loads[0]) == Some(0.0),
    )
    .await;
    assert_eq!(reading_w(&written.loads[0]), Some(0.0));
    let setpoint = format!("{site}/miners/setpoint");
    let (_c, mut sp) = subscriber(port, &setpoint).await;
    assert_eq!(next_message(&mut sp, &setpoint).await["power_w"], 0.0);
    running
        .stop(Duration::from_secs(10))
        .await
        .expect("clean shutdown");
}

/// Catches a load shown as drawing what it was told rather than what it reports, a
/// confirmation without a latency, and a load without read-back passed off as
/// confirmed. On the embedded broker: `miners` reports on a read-back topic, through a
/// test publisher that answers each setpoint with that power (the equipment); `open`
/// has no read-back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_readback_confirms_the_target_with_its_age_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let site = "r10rb";
    let readback = format!("{site}/miners/power");
    let tables = format!(
        "[mqtt]\nbroker = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n{}{}[metrics]\nlisten = \"127.0.0.1:0\"\n",
        mqtt_load(site, "miners", &format!("readback = \"{readback}\"")),
        mqtt_load(site, "open", ""),
    );
    let cfg = dir.path().join("site.toml");
    std::fs::write(&cfg, config(site, "1h", &tables)).unwrap();
    let site_cfg = gridminer::runtime::config::load(&cfg).expect("config");
    let running = runtime::start(site_cfg).await.expect("daemon starts");
    let mut snaps = running.snapshots.clone();
    let (client, mut states) = subscriber(port, &format!("gridminer/{site}/state")).await;

    // Told, not yet reported: pending, counted at nothing confirmed.
    let told = feed_until(&client, site, &mut snaps, "the miners told", |s| {
        s.decision.loads[0].power.0 > 0.0
            && commanded_w(&s.loads[0]) == Some(s.decision.loads[0].power.0)
    })
    .await;
    let target = told.decision.loads[0].power.0;
    assert_eq!(told.loads[0].confirmation(), Confirmation::Pending);
    assert_eq!(
        told.loads[0].reading(),
        None,
        "nothing reported, nothing counted"
    );
    assert_eq!(told.loads[0].latency, None);

    // The equipment: reads its setpoint, draws it, reports it.
    let setpoint = format!("{site}/miners/setpoint");
    let (equipment, mut setpoints) = subscriber(port, &setpoint).await;
    let v = next_message(&mut setpoints, &setpoint).await;
    assert_eq!(v["power_w"], target, "{v}");
    equipment
        .publish(
            &readback,
            QoS::AtLeastOnce,
            false,
            json!({"power_w": target - 5.0}).to_string(),
        )
        .await
        .unwrap();
    let confirmed = wait_for_within(&mut snaps, "the read-back", Duration::from_secs(20), |s| {
        s.loads[0].confirmation() == Confirmation::Confirmed
    })
    .await;
    let miners = &confirmed.loads[0];
    assert_eq!(reading_w(miners), Some(target - 5.0));
    assert!(miners.latency.is_some(), "{miners:?}");
    // The load without read-back: its setpoint stands in, unconfirmed.
    let open = &confirmed.loads[1];
    assert_eq!(open.confirmation(), Confirmation::Unconfirmed);
    assert_eq!(open.actual, None);
    assert_eq!(reading_w(open), commanded_w(open));

    // The same in the retained state document.
    let state = loop {
        let v = next_message(&mut states, &format!("gridminer/{site}/state")).await;
        if v["loads"][0]["confirmation"] == "confirmed" {
            break v;
        }
    };
    let (miners, open) = (&state["loads"][0], &state["loads"][1]);
    assert_eq!(miners["readback"]["power_w"], target - 5.0, "{miners}");
    assert!(
        miners["readback"]["age_s"].as_f64().unwrap() >= 0.0,
        "{miners}"
    );
    assert!(miners["readback"]["at"].is_string(), "{miners}");
    assert!(
        miners["confirm_latency_s"].as_f64().unwrap() >= 0.0,
        "{miners}"
    );
    assert_eq!(miners["actual_w"], target - 5.0, "{miners}");
    assert_eq!(miners["commanded"]["power_w"], target, "{miners}");
    assert_eq!(miners["last_error"], Value::Null, "{miners}");
    assert_eq!(open["confirmation"], "unconfirmed", "{open}");
    assert_eq!(open["readback"], Value::Null, "{open}");
    assert_eq!(open["confirm_latency_s"], Value::Null, "{open}");
    assert_eq!(open["actual_w"], open["commanded"]["power_w"], "{open}");
    let text = running.metrics.render();
    let series = |m: &str, load: &str| metric(&text, &format!("{m}{{load=\"{load}\"}}"));
    assert_eq!(series("gridminer_load_confirmed", "miners"), Some(1.0));
    assert_eq!(series("gridminer_load_confirmed", "open"), Some(0.0));
    assert_eq!(
        series("gridminer_load_readback_watts", "miners"),
        Some(target - 5.0)
    );
    assert!(series("gridminer_load_confirmation_latency_seconds", "miners").is_some());
    assert!(series("gridminer_load_readback_watts", "open").is_none());

    // A report that is no power is an error of the read; the last good reading stays.
    equipment
        .publish(&readback, QoS::AtLeastOnce, false, "3.2 kW")
        .await
        .unwrap();
    let bad = wait_for_within(&mut snaps, "the bad report", Duration::from_secs(20), |s| {
        s.loads[0].last_error.is_some()
    })
    .await;
    let message = bad.loads[0].last_error.as_ref().unwrap().message();
    assert!(message.starts_with("read: bad reading"), "{message}");
    assert_eq!(reading_w(&bad.loads[0]), Some(target - 5.0));
    running
        .stop(Duration::from_secs(10))
        .await
        .expect("clean shutdown");
}

/// Catches a refused setpoint booked as drawn. mosquitto's ACL lets the daemon read its
/// miners' setpoint topic but not write it: MQTT 3.1.1 acknowledges the publish all the
/// same and drops it, so only the missing echo shows the refusal. The load is told
/// 1000 W by the policy and counted at nothing; the state says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_a_setpoint_the_broker_refuses_is_an_error_not_power() {
    let Some(bin) = Mosquitto::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    let site = "r10acl";
    let acl = dir.path().join("acl");
    let writable = ["gridminer/#", "r10acl/pv", "r10acl/load", "r10acl/price"];
    let mut rules: String = writable
        .iter()
        .map(|t| format!("topic readwrite {t}\n"))
        .collect();
    rules += "topic read r10acl/miners/setpoint\n";
    std::fs::write(&acl, rules).unwrap();
    let settings = format!("allow_anonymous true\nacl_file {}\n", acl.display());
    let port = free_port();
    let _broker = Mosquitto::start_with(&bin, dir.path(), port, &settings);
    let cfg = dir.path().join("site.toml");
    let tables = external_broker(port, "") + &mqtt_load(site, "miners", "");
    std::fs::write(&cfg, config(site, "1h", &tables)).unwrap();
    let site_cfg = gridminer::runtime::config::load(&cfg).expect("config");
    let running = runtime::start(site_cfg).await.expect("daemon starts");
    let mut snaps = running.snapshots.clone();
    let state_topic = format!("gridminer/{site}/state");
    let (client, mut states) = subscriber(port, &state_topic).await;

    let refused = feed_until(&client, site, &mut snaps, "1000 W refused", |s| {
        s.decision.loads[0].power.0 == 1000.0
            && s.loads[0]
                .last_error
                .as_ref()
                .is_some_and(|e| e.message().contains("not confirmed") && s.loads[0].errors >= 2)
    })
    .await;
    let miners = &refused.loads[0];
    assert_eq!(miners.commanded, None, "{miners:?}");
    assert_eq!(miners.reading(), None, "a refused write booked as drawn");
    let next = wait_for_within(&mut snaps, "the next step", Duration::from_secs(5), |s| {
        s.at > refused.at
    })
    .await;
    let mining = next.state.mining.expect("mining power observed every step");
    assert_eq!(mining.value.0, 0.0);

    let state = loop {
        let v = next_message(&mut states, &state_topic).await;
        if v["loads"][0]["target_w"] == 1000.0 && v["loads"][0]["errors"].as_u64() >= Some(2) {
            break v;
        }
    };
    let load = &state["loads"][0];
    assert_eq!(load["actual_w"], Value::Null, "{load}");
    assert_eq!(load["commanded"], Value::Null, "{load}");
    let message = load["last_error"]["message"].as_str().unwrap();
    assert!(message.starts_with("set: not confirmed within"), "{load}");
    running
        .stop(Duration::from_secs(15))
        .await
        .expect("clean shutdown");
}
