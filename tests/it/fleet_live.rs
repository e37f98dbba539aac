//! Issue 11 end to end: the daemon (`runtime::start`, as `gridminer run` starts it) with
//! 20 emulated Whatsminers of two models, one of them a liar, and a surplus ramp over
//! MQTT. The fleet follows the surplus within its dynamics, never above the target; the
//! liar is detected, escalated and left out of the capacity; an under-frequency reading
//! sheds every honest miner, with each miner's pause sent, acknowledged and confirmed in
//! the evidence record; `gridminer fleet status` shows every miner.

use std::time::Duration;

use gridminer::emulator::{self, Dynamics, FleetOptions};
use gridminer::runtime::{self, Snapshot};
use gridminer::telemetry::evidence::TriggerKind;
use gridminer::units::Watts;
use rumqttc::QoS;

use super::brokers::free_port;
use super::live::{next_message, subscriber, wait_for_within};
use super::loopback::start_fleet;
use super::plausible::feeds;
use super::support::{gridminer, text};

const MINERS: usize = 20;

fn site_with(id: &str, port: u16, miners: &str, fleet_keys: &str) -> String {
    format!(
        r#"
site_id = "{id}"
tick = "200ms"
hashprice = 50.0
policy = {{ mode = "surplus-only", max_signal_age = "1h", frequency = {{ nominal_hz = 50.0, shed_below_hz = 49.8, absorb_above_hz = 50.2, hold = "1h" }} }}
[site]
pv = true
pv_capacity = "100 kW"
export_limit = "1 kW"
import_limit = "10 kW"
[tariff]
import_adder_eur_mwh = 100.0
export = "day-ahead"
[mqtt]
broker = "embedded"
listen = "127.0.0.1:{port}"
{feeds}
[[loads]]
kind = "asic-fleet"
name = "fleet"
miners = [{miners}]
poll = "500ms"
pause_within = "3s"
resume_within = "5s"
limit_within = "3s"
attempts = 2
{fleet_keys}
[loads.models."M30SPlusVE40"]
min_power = "1800 W"
[loads.models."M50SVH50"]
min_power = "1800 W"
"#,
        feeds = feeds(id, "price"),
    )
}

fn drawn(emu: &emulator::Fleet) -> Watts {
    emu.snapshots().iter().map(|s| s.power).sum()
}

/// The liar of `emu` (the tests give it exactly one).
fn liar_of(emu: &emulator::Fleet) -> std::net::Ipv4Addr {
    emu.snapshots()
        .into_iter()
        .find(|s| s.fault.is_some())
        .expect("one liar")
        .addr
}

/// A daemon for site `id` driving `emu`'s miners (with `fleet_keys` added to the fleet
/// load), on an embedded broker of its own port; with its config directory (kept alive
/// by the caller) and the config's path.
async fn daemon(
    emu: &emulator::Fleet,
    id: &str,
    fleet_keys: &str,
) -> (runtime::Running, u16, tempfile::TempDir, std::path::PathBuf) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("site.toml");
    let miners: Vec<String> = emu.addresses().iter().map(|a| format!("\"{a}\"")).collect();
    std::fs::write(&cfg, site_with(id, port, &miners.join(", "), fleet_keys)).unwrap();
    let site = gridminer::runtime::config::load(&cfg).expect("the config loads");
    let running = runtime::start(site).await.expect("daemon starts");
    (running, port, dir, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_the_daemon_drives_a_fleet_follows_surplus_excludes_a_liar_and_sheds_on_under_frequency(
) {
    let emu = start_fleet(FleetOptions {
        miners: MINERS,
        models: vec![
            emulator::model("M30S+").expect("a model"),
            emulator::model("M50S").expect("a model"),
        ],
        faults: vec!["liar:0.05".parse().expect("a share")],
        dynamics: Dynamics {
            wake: Duration::from_millis(800),
            ramp: Duration::from_millis(800),
            stop: Duration::from_millis(300),
            step: Watts(1000.0),
            step_every: Duration::from_millis(100),
            ..Dynamics::default()
        },
        ..FleetOptions::default()
    })
    .await;
    let liar = liar_of(&emu);
    let id = "fleet-live";
    let (running, port, dir, cfg) = daemon(&emu, id, "").await;
    // Availability only: the state document with 20 miners is larger than the test
    // client's default packet limit (10 kB).
    let (client, mut rx) = subscriber(port, &format!("gridminer/{id}/availability")).await;
    while next_message(&mut rx, &format!("gridminer/{id}/availability")).await != "online" {}
    let publish = |topic: &'static str, payload: String| {
        let client = client.clone();
        async move {
            client
                .publish(format!("{id}/{topic}"), QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    };
    publish("load", "500".into()).await;
    publish("price", "30".into()).await;
    publish("hz", "50.0".into()).await;
    publish("pv", "0".into()).await;

    let mut snaps = running.snapshots.clone();
    // No surplus: every honest miner asleep; the liar answers OK, keeps hashing, and is
    // found out.
    let s = wait_for_within(
        &mut snaps,
        "every honest miner asleep, the liar unresponsive",
        Duration::from_secs(40),
        |s: &Snapshot| {
            s.fleet.len() == MINERS
                && s.fleet.iter().all(|m| {
                    if m.address == std::net::IpAddr::V4(liar) {
                        m.state == gridminer::actuator::asic::MinerState::Unresponsive
                    } else {
                        m.state == gridminer::actuator::asic::MinerState::Sleeping
                    }
                })
        },
    )
    .await;
    // Two models, two groups, each the policy's load.
    let groups: std::collections::BTreeSet<&str> =
        s.fleet.iter().map(|m| m.group.as_str()).collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    let hashing: Vec<_> = emu.snapshots().into_iter().filter(|m| m.hashing).collect();
    assert_eq!(hashing.len(), 1, "only the liar hashes");
    assert_eq!(hashing[0].addr, liar);

    // A surplus ramp: 10 kW, then 30 kW. The fleet follows, and what it draws (the
    // liar included) never goes above the surplus the policy gave it by more than the
    // meters' tolerance.
    for pv_kw in [10.0, 30.0] {
        publish("pv", format!("{pv_kw}")).await;
        // Never imports: at most PV minus the site load.
        let target = Watts(pv_kw * 1000.0 - 500.0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        loop {
            let d = drawn(&emu);
            assert!(
                d <= target * 1.05 + Watts(200.0),
                "the fleet draws {d} with a surplus of {target}"
            );
            if d >= target * 0.7 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the fleet did not follow {target}: draws {d}"
            );
            // Polled with a deadline: the firmware's wake and ramp take real time.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // `fleet status` reads the daemon's retained state: every miner, the liar marked.
    let out = gridminer(
        &["fleet", "status", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains(&liar.to_string()) && printed.contains("unresponsive"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("{MINERS} miner(s), 1 unresponsive")),
        "{printed}"
    );

    // Under-frequency: every honest miner is paused, in parallel, each confirmed.
    publish("hz", "49.7".into()).await;
    let s = wait_for_within(
        &mut snaps,
        "an evidence record with every honest miner's pause confirmed",
        Duration::from_secs(30),
        |s: &Snapshot| {
            s.events.first().is_some_and(|r| {
                r.trigger.kind == TriggerKind::UnderFrequency
                    && r.loads
                        .iter()
                        .flat_map(|l| &l.units)
                        .filter(|u| u.command == "pause" && u.confirmed.is_some())
                        .count()
                        >= 1
            }) && emu
                .snapshots()
                .iter()
                .filter(|m| m.hashing)
                .all(|m| m.addr == liar)
        },
    )
    .await;
    let record = &s.events[0];
    for u in record.loads.iter().flat_map(|l| &l.units) {
        assert!(u.sent >= record.trigger.at, "{u:?}");
        if let (Some(a), Some(c)) = (u.acked, u.confirmed) {
            assert!(u.sent <= a && a <= c, "{u:?}");
        }
    }
    assert!(
        drawn(&emu) <= Watts(3400.0 * 1.05 + 20.0 * 30.0),
        "after the shed only the liar draws: {}",
        drawn(&emu)
    );
    emu.stop().await;
    running
        .stop(Duration::from_secs(30))
        .await
        .expect("clean shutdown");
}

/// r11: a liar that answers OK to every pause is escalated to a hard cut: the daemon
/// publishes `OFF` on its relay topic (the test plays the PDU and switches the emulated
/// outlet), the cut is confirmed by the miner falling silent, and it draws nothing
/// after. Catches: a miner that will not stop left drawing with no escalation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_a_liar_that_will_not_pause_is_cut_at_its_outlet() {
    let emu = start_fleet(FleetOptions {
        miners: 3,
        faults: vec!["liar:0.01".parse().expect("a share")],
        dynamics: Dynamics {
            stop: Duration::from_millis(300),
            ..Dynamics::default()
        },
        ..FleetOptions::default()
    })
    .await;
    let liar = liar_of(&emu);
    let id = "fleet-cut";
    let (running, port, _dir, _cfg) = daemon(&emu, id, "relay_topic = \"pdu/{miner}/set\"").await;
    // The PDU: switches the emulated outlet as the relay topic says.
    let (client, mut rx) = subscriber(port, "pdu/#").await;
    let topic = format!("pdu/{liar}/set");
    let mut cut = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !cut {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (t, body) = tokio::time::timeout(left, rx.recv())
            .await
            .expect("a hard cut within 40 s")
            .expect("the client is alive");
        assert_eq!(t, topic, "only the liar's outlet is switched");
        if body == b"OFF" {
            assert!(emu.outlet(liar, false));
            cut = true;
        }
    }
    let mut snaps = running.snapshots.clone();
    let s = wait_for_within(
        &mut snaps,
        "the hard cut confirmed",
        Duration::from_secs(20),
        |s: &Snapshot| {
            s.fleet.iter().any(|m| {
                m.address == std::net::IpAddr::V4(liar)
                    && m.last_command.as_ref().is_some_and(|c| {
                        c.command == gridminer::actuator::asic::Command::HardCut
                            && c.confirmed.is_some()
                    })
            })
        },
    )
    .await;
    let m = s
        .fleet
        .iter()
        .find(|m| m.address == std::net::IpAddr::V4(liar))
        .expect("the liar");
    assert_eq!(m.uncontrolled_w, 0.0, "{m:?}");
    assert_eq!(
        drawn(&emu).0.round(),
        (2.0f64 * 12.0).round(),
        "two asleep, one cut"
    );
    drop(client);
    emu.stop().await;
    running
        .stop(Duration::from_secs(30))
        .await
        .expect("clean shutdown");
}

/// r11: stopping the daemon (SIGTERM in `gridminer run`) pauses every miner before it
/// exits, each pause acknowledged: the fleet's tasks outlive the controller until every
/// group has applied the safe state. Catches: miners left mining by a daemon that exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_stopping_the_daemon_pauses_the_fleet() {
    let emu = start_fleet(FleetOptions {
        miners: 2,
        asleep: true,
        dynamics: Dynamics {
            wake: Duration::from_millis(500),
            ramp: Duration::from_millis(500),
            stop: Duration::from_millis(300),
            ..Dynamics::default()
        },
        ..FleetOptions::default()
    })
    .await;
    let id = "fleet-stop";
    let (running, port, _dir, _cfg) = daemon(&emu, id, "").await;
    let (client, mut rx) = subscriber(port, &format!("gridminer/{id}/availability")).await;
    while next_message(&mut rx, &format!("gridminer/{id}/availability")).await != "online" {}
    for (topic, payload) in [
        ("load", "500"),
        ("price", "30"),
        ("hz", "50.0"),
        ("pv", "8"),
    ] {
        client
            .publish(format!("{id}/{topic}"), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !emu.snapshots().iter().all(|m| m.hashing) {
        assert!(tokio::time::Instant::now() < deadline, "both miners mining");
        // Polled with a deadline: the firmware's wake takes real time.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running
        .stop(Duration::from_secs(30))
        .await
        .expect("clean shutdown");
    // Every pause was sent and acknowledged before `stop` returned; the boards stop
    // within the firmware's `stop` time after.
    for m in emu.snapshots() {
        assert!(
            m.reported_off,
            "{m:?} not told to stop by the exiting daemon"
        );
    }
    emu.stop().await;
}
