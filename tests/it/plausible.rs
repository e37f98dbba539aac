//! Issue 9, holes 8 and 9, through the daemon on the embedded broker: a value that could
//! not have been measured (after its unit's scale) and a price schedule dated far from
//! now are refused, counted, and leave their signal stale; they never make it mine.

use std::time::{Duration, Instant};

use gridminer::runtime::{self, Running};
use gridminer::signal::mqtt::RejectReason;
use gridminer::signal::Quantity;
use rumqttc::{AsyncClient, QoS};
use serde_json::json;

use super::brokers::free_port;
use super::live::{subscriber, wait_for, CPU_LOAD};
use super::support::site_config;

/// `[[signals]]` for `{id}/load` (site load, W) and `{id}/price` carrying `price`
/// (`price` or `price_schedule`).
fn load_and_price(id: &str, price: &str) -> String {
    format!(
        r#"
[[signals]]
topic = "{id}/load"
quantity = "site_load"

[[signals]]
topic = "{id}/price"
quantity = "{price}"
"#
    )
}

/// Starts the daemon for site `id` on the embedded broker with `tables` (signals and
/// the rest) and the one-worker pool (10 W) as the load; a test client connected.
async fn start_with(id: &str, tables: &str) -> (Running, AsyncClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("site.toml");
    let mqtt = format!("[mqtt]\nbroker = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n");
    let config = site_config(id, "", &format!("{mqtt}{tables}\n{CPU_LOAD}"));
    std::fs::write(&cfg, config).unwrap();
    let site = gridminer::runtime::config::load(&cfg).expect("config");
    let running = runtime::start(site).await.expect("daemon starts");
    let (client, mut rx) = subscriber(port, &format!("gridminer/{id}/#")).await;
    // Subscribed before it says `online`: what the test publishes next is not lost.
    let availability = format!("gridminer/{id}/availability");
    while super::live::next_message(&mut rx, &availability).await != "online" {}
    (running, client, dir)
}

/// `[[signals]]` for `{id}/pv` (kW), `{id}/hz`, `{id}/load` (W) and `{id}/price`
/// carrying `price`.
pub(crate) fn feeds(id: &str, price: &str) -> String {
    let pv_and_hz = format!(
        r#"
[[signals]]
topic = "{id}/pv"
quantity = "pv_power"
unit = "kW"

[[signals]]
topic = "{id}/hz"
quantity = "grid_frequency"
"#
    );
    pv_and_hz + &load_and_price(id, price)
}

/// Site `id` with PV in kW, site load, frequency, and a price topic carrying `price`.
async fn start(id: &str, price: &str) -> (Running, AsyncClient, tempfile::TempDir) {
    start_with(id, &feeds(id, price)).await
}

async fn publish(client: &AsyncClient, topic: &str, payload: impl Into<Vec<u8>>) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
}

/// Waits until `reason` has been counted more than `before` times.
async fn rejected_beyond(running: &Running, reason: RejectReason, before: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.counters.signals.rejected(reason) <= before {
        assert!(
            Instant::now() < deadline,
            "no {} rejection counted",
            reason.as_str()
        );
        // Poll interval under the deadline: a counter has no event to await.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for two more controller steps: every message sent before is handled by then.
/// Each step publishes a snapshot, so this awaits them rather than polling.
async fn two_steps(running: &Running) {
    let mut snaps = running.snapshots.clone();
    snaps.borrow_and_update();
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(20), snaps.changed())
            .await
            .expect("the controller steps")
            .expect("the controller runs");
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// r9 hole 8: `1e308` on a kW topic passed the finiteness check and became +inf W of PV,
/// so every load ran; negative PV and site load and -5 Hz or 1e308 Hz were taken as
/// measured. Now each is refused (`out_of_range`), and the signal is stale at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_hole8_implausible_values_are_refused_and_go_stale() {
    let (running, client, _dir) = start("p8", "price").await;
    let mut snaps = running.snapshots.clone();
    let feed = || async {
        publish(&client, "p8/pv", "3").await;
        publish(&client, "p8/load", "500").await;
        publish(&client, "p8/price", "30").await;
        publish(&client, "p8/hz", "50").await;
    };
    let out_of_range = RejectReason::OutOfRange;
    for (topic, bad, stale) in [
        ("p8/pv", "1e308", "stale:pv_power"),
        ("p8/pv", "-5", "stale:pv_power"),
        ("p8/load", "-5000", "stale:site_load"),
        ("p8/load", "1e12", "stale:site_load"),
        ("p8/price", "-1e6", "stale:price"),
    ] {
        feed().await;
        wait_for(&mut snaps, "mining on surplus", |s| {
            s.decision.reason.as_str() == "surplus" && s.decision.total().0 > 9.9
        })
        .await;
        let before = running.counters.signals.rejected(out_of_range);
        publish(&client, topic, bad).await;
        let s = wait_for(&mut snaps, stale, |s| s.decision.reason.as_str() == stale).await;
        assert_eq!(s.decision.total().0, 0.0, "{topic} {bad}: nothing runs");
        assert!(running.counters.signals.rejected(out_of_range) > before);
    }
    // Frequency: refused and forgotten, never taken for a shed or an absorb signal.
    for bad in ["-5", "1e308"] {
        feed().await;
        wait_for(&mut snaps, "a frequency reading", |s| {
            s.state.frequency.is_some_and(|f| f.value.0 == 50.0)
        })
        .await;
        let before = running.counters.signals.rejected(out_of_range);
        publish(&client, "p8/hz", bad).await;
        rejected_beyond(&running, out_of_range, before).await;
        wait_for(&mut snaps, "the frequency forgotten", |s| {
            s.state.frequency.is_none()
        })
        .await;
    }
    assert!(running.metrics.rejected("out_of_range") >= 7);
    running.stop(Duration::from_secs(10)).await.unwrap();
}

/// r9 hole 9: a schedule starting near year 584 million wrapped (release build) to now
/// and cleared `stale:price`, then the site imported to mine at -500 EUR/MWh; a
/// 1970-2100 schedule was accepted and could hide a dead price feed for good. Now both
/// are refused and counted, and the price stays stale; a schedule around now is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_hole9_schedules_far_from_now_are_refused() {
    let (running, client, _dir) = start("p9", "price_schedule").await;
    let mut snaps = running.snapshots.clone();
    // No surplus: only a (negative) price could make it mine, from the grid.
    publish(&client, "p9/pv", "0").await;
    publish(&client, "p9/load", "500").await;
    wait_for(&mut snaps, "no price", |s| {
        s.decision.reason.as_str() == "stale:price"
    })
    .await;

    // 2^64 ms past the epoch plus now: its milliseconds wrapped to just before now.
    let wraps = 18_446_744_073_709_551 + now_s();
    let before = running.counters.signals.rejected(RejectReason::BadSchedule);
    publish(
        &client,
        "p9/price",
        json!([{"start": wraps, "price": -500}]).to_string(),
    )
    .await;
    rejected_beyond(&running, RejectReason::BadSchedule, before).await;
    two_steps(&running).await;
    let s = running.snapshots.borrow().clone();
    assert_eq!(s.decision.reason.as_str(), "stale:price");
    assert_eq!(s.decision.total().0, 0.0);

    let forever = json!([
        {"start": "1970-01-01T00:00:00Z", "price": -500},
        {"start": "2100-01-01T00:00:00Z", "price": -500},
    ])
    .to_string();
    let before = running.counters.signals.rejected(RejectReason::OutOfRange);
    publish(&client, "p9/price", forever.clone()).await;
    rejected_beyond(&running, RejectReason::OutOfRange, before).await;
    two_steps(&running).await;
    let s = running.snapshots.borrow().clone();
    assert_eq!(s.decision.reason.as_str(), "stale:price");
    assert!(s.state.price_schedule.is_empty());

    // A day-ahead schedule around now is taken...
    let t = now_s();
    publish(
        &client,
        "p9/price",
        json!([{"start": t - 3600, "price": 30}, {"start": t + 3600, "price": 30}]).to_string(),
    )
    .await;
    wait_for(&mut snaps, "a price from the schedule", |s| {
        s.decision.reason.as_str() != "stale:price"
    })
    .await;
    // ...and a hostile one after it leaves the price stale, not the old schedule in force.
    publish(&client, "p9/price", forever).await;
    wait_for(&mut snaps, "the schedule dropped", |s| {
        s.decision.reason.as_str() == "stale:price"
    })
    .await;
    running.stop(Duration::from_secs(10)).await.unwrap();
}

/// r9 hole 8, Modbus: the same check judges SunSpec readings. An inverter whose scale
/// factor makes its W read 3e14 W was taken as that much PV; now it is refused and the
/// PV goes stale, with pymodbus serving the SunSpec map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_hole8_implausible_modbus_readings_are_refused_too() {
    let test = "r9_hole8_implausible_modbus_readings_are_refused_too";
    let Some(python) = super::modbus::peer_python(test) else {
        return;
    };
    let mut peer = super::modbus::Peer::start(&python, 0).await;
    // 3000 W of PV (30000 x 10^-1): surplus over a 500 W site load and the 1 kW export.
    peer.send(json!({"set": [103, "W", 30000]})).await;
    let modbus = format!(
        r#"
[[modbus]]
name = "inverter"
kind = "sunspec"
role = "pv"
host = "127.0.0.1"
port = {}
poll = "200ms"
timeout = "200ms"
"#,
        peer.port
    );
    let tables = load_and_price("m8", "price") + &modbus;
    let (running, client, _dir) = start_with("m8", &tables).await;
    let mut snaps = running.snapshots.clone();
    publish(&client, "m8/load", "500").await;
    publish(&client, "m8/price", "30").await;
    wait_for(&mut snaps, "mining on the inverter's surplus", |s| {
        s.decision.reason.as_str() == "surplus" && s.state.pv.is_some_and(|r| r.value.0 == 3000.0)
    })
    .await;

    let before = running.counters.signals.rejected(RejectReason::OutOfRange);
    peer.send(json!({"set": [103, "W_SF", 10]})).await;
    let s = wait_for(&mut snaps, "the PV stale", |s| {
        s.decision.reason.as_str() == "stale:pv_power"
    })
    .await;
    assert_eq!(s.decision.total().0, 0.0);
    assert!(running.counters.signals.rejected(RejectReason::OutOfRange) > before);
    // r10: and shown as the signal's last refusal, from `modbus`, the value with its unit.
    let last = s
        .state
        .rejected
        .last(Quantity::PvPower)
        .expect("pv_power's last_rejected");
    assert_eq!(
        (last.reason, last.source.as_str()),
        (RejectReason::OutOfRange, "modbus")
    );
    assert!(last.payload_prefix.ends_with(" W"), "{last:?}");
    running.stop(Duration::from_secs(10)).await.unwrap();
}
