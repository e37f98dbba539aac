//! Issue 13, Home Assistant entities that behave: discovery announces exactly what the
//! site has, Home Assistant's own schema, unit tables and template engine accept every
//! payload (tests/ha/validate.py runs Home Assistant, installed by `.ci/setup-ha.sh`), a
//! stale signal renders HA's `unknown` instead of freezing at its last value, and the
//! mining energy per source that the Energy dashboard reads is counted the same live as
//! in a simulation.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use gridminer::clock::Timestamp;
use gridminer::decision::{Decision, Reason};
use gridminer::mqtt::Topics;
use gridminer::runtime;
use gridminer::signal::Quantity;
use gridminer::state::{Reading, SiteState};
use gridminer::telemetry::status::{ha_discovery, state_json, HaSite};
use gridminer::units::{PricePerMwh, Watts};

use super::brokers::free_port;
use super::live::{subscriber, CPU_LOAD};
use super::peers;
use super::support::{cpu, site_config_aged};

/// The Python with Home Assistant: `$GRIDMINER_HA_PYTHON`, else `target/venv-ha` (what
/// `.ci/setup-ha.sh` creates); skipped without one unless peers are required.
fn ha_python() -> Option<PathBuf> {
    let found = peers::python_importing(
        "homeassistant.components.mqtt.sensor",
        [
            std::env::var_os("GRIDMINER_HA_PYTHON").map(PathBuf::from),
            Some(peers::repo().join("target/venv-ha/bin/python")),
        ],
    );
    peers::need(found.is_some(), "Home Assistant", "run .ci/setup-ha.sh")?;
    found
}

/// Home Assistant's verdict on `discovery` and its reading of each of `states`
/// (tests/ha/validate.py); fails the test on any config Home Assistant would refuse.
fn home_assistant(python: &PathBuf, discovery: &[(String, String)], states: &[Value]) -> Value {
    let mut child = Command::new(python)
        .arg(peers::repo().join("tests/ha/validate.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("validate.py starts");
    let request = json!({ "discovery": discovery, "states": states });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "validate.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("validate.py answers JSON");
    assert_eq!(v["errors"], json!([]), "Home Assistant {}", v["ha_version"]);
    v
}

/// Each entity's state over the documents, as Home Assistant shows it.
fn states_of(ha: &Value, object: &str) -> Vec<String> {
    let e = &ha["entities"][object];
    assert_eq!(e["deleted"], false, "{object} is announced");
    e["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap().to_string())
        .collect()
}

fn announced(ha: &Value) -> BTreeSet<String> {
    ha["entities"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, e)| e["deleted"] == false)
        .map(|(k, _)| k.clone())
        .collect()
}

/// Every site has these: the mining power (its loads report it), the decision, the
/// energy meters, and the `cpu` load's two sensors (each test site has that load).
const EVERY_SITE: [&str; 9] = [
    "mining_power",
    "mining_target",
    "reason",
    "load_cpu_target",
    "load_cpu_actual",
    "load_cpu_hashrate",
    "energy_curtailed",
    "energy_own_generation",
    "energy_grid",
];

/// `EVERY_SITE` and `names`.
fn set(names: &[&str]) -> BTreeSet<String> {
    names
        .iter()
        .chain(&EVERY_SITE)
        .map(|s| s.to_string())
        .collect()
}

fn decision(at: Timestamp, loads: usize) -> Decision {
    Decision {
        at,
        loads: vec![Default::default(); loads],
        reason: Reason::Surplus,
        limit: None,
        held_on: 0,
        blocked_starts: 0,
        memory: Default::default(),
    }
}

/// Catches: entities for signals nobody feeds (wind and grid power were always
/// announced), a stale or null value frozen in HA (the template rendered it as the last
/// number, or as an empty string HA ignores), a unit or state class HA refuses for its
/// device class (the Energy dashboard lists only `energy` meters that are
/// `total_increasing` in Wh/kWh), a text sensor HA would try to read as a number, a
/// misspelled key HA would drop silently, and a load whose name is no valid object id.
#[test]
fn r13_ha_discovery_passes_home_assistants_schema_and_stale_is_unknown() {
    let Some(python) = ha_python() else { return };
    let loads = vec![cpu(10.0, 1.0), {
        let mut l = cpu(20.0, 2.0);
        l.name = "rack A.1 \"east\"".into();
        l
    }];
    let topics = Topics::new("ha1");
    let site = HaSite {
        signals: &[
            Quantity::PvPower,
            Quantity::GridPower,
            Quantity::GridFrequency,
            Quantity::Price,
            Quantity::Hashprice,
        ],
        loads: &loads,
        fleet: true,
    };
    let discovery = ha_discovery(&topics, &site);

    // One site in three moments: PV fresh; PV's last value stale (kept, as with no
    // `max_age`, but older than the policy allows); and a document from before the
    // energy counters existed.
    let at = Timestamp(1_780_000_000_000);
    let mut state = SiteState::new(&loads);
    state.pv = Some(Reading {
        value: Watts(1234.5),
        at,
    });
    state.price = Some(Reading {
        value: PricePerMwh(55.0),
        at,
    });
    for q in [Quantity::PvPower, Quantity::Price] {
        state.freshness.stale[q as usize] = false;
    }
    let d = decision(at, loads.len());
    let fresh = state_json(&state, &d, &loads, &[], &[], &[], &[], &[], at);
    // The price signal stale too: the policy goes by the day-ahead schedule then.
    for q in [Quantity::PvPower, Quantity::Price] {
        state.freshness.stale[q as usize] = true;
    }
    state.price_schedule = vec![(at, PricePerMwh(42.0))];
    let stale = state_json(&state, &d, &loads, &[], &[], &[], &[], &[], at);
    let mut older = fresh.clone();
    older.as_object_mut().unwrap().remove("energy");

    let ha = home_assistant(&python, &discovery, &[fresh, stale, older]);
    assert_eq!(
        announced(&ha),
        set(&[
            "pv_power",
            "grid_power",
            "grid_frequency",
            "price",
            "hashprice",
            "load_rack_A_1__east__target",
            "load_rack_A_1__east__actual",
            "load_rack_A_1__east__hashrate",
            "fleet_power",
            "fleet_hashrate",
            "fleet_unresponsive",
        ])
    );
    for gone in ["wind_power", "site_load"] {
        assert_eq!(ha["entities"][gone]["deleted"], true, "{gone} is deleted");
    }
    assert_eq!(states_of(&ha, "pv_power")[..2], ["1234.5", "unknown"]);
    assert_eq!(states_of(&ha, "price")[..2], ["55.0", "42.0"]);
    // Never measured: unknown, not an empty string HA would ignore.
    assert_eq!(states_of(&ha, "grid_power")[0], "unknown");
    assert_eq!(states_of(&ha, "load_cpu_actual")[0], "unknown");
    assert_eq!(states_of(&ha, "load_cpu_target")[0], "0.0");
    assert_eq!(states_of(&ha, "fleet_power")[0], "unknown");
    assert_eq!(states_of(&ha, "load_cpu_hashrate")[0], "unknown");
    assert_eq!(states_of(&ha, "fleet_unresponsive")[0], "0");
    assert_eq!(states_of(&ha, "reason")[0], "surplus");
    assert_eq!(ha["entities"]["reason"]["numeric"], false);
    assert_eq!(states_of(&ha, "energy_curtailed")[..2], ["0.0", "0.0"]);
    for meter in ["energy_curtailed", "energy_own_generation", "energy_grid"] {
        let e = &ha["entities"][meter];
        assert_eq!(e["config"]["device_class"], "energy");
        assert_eq!(e["config"]["state_class"], "total_increasing");
        assert_eq!(e["config"]["unit_of_measurement"], "Wh");
        let available: Vec<bool> = e["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["available"].as_bool().unwrap())
            .collect();
        // A document without the counters makes the meter unavailable, not zero.
        assert_eq!(available, [true, true, false], "{meter}");
    }
}

/// Catches, through the daemon and a real broker: discovery not retained or announcing
/// what the config does not have, and a signal that stops arriving staying at its last
/// value in HA. PV has no `max_age`, so its last reading stays in the state and only the
/// step's staleness verdict (`stale`, added by this issue) can make HA say unknown; the
/// energy counted meanwhile comes from the curtailed surplus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_ha_end_to_end_discovery_from_the_broker_and_stale_pv_renders_unknown() {
    let Some(python) = ha_python() else { return };
    let id = "ha-e2e";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("site.toml");
    let tables = format!(
        r#"[mqtt]
broker = "embedded"
listen = "127.0.0.1:{port}"
[[signals]]
topic = "{id}/pv"
quantity = "pv_power"
[[signals]]
topic = "{id}/load"
quantity = "site_load"
[[signals]]
topic = "{id}/price"
quantity = "price"
{CPU_LOAD}"#
    );
    std::fs::write(&cfg, site_config_aged(id, "2s", "", &tables)).unwrap();
    let site = runtime::config::load(&cfg).expect("config");
    let running = runtime::start(site).await.expect("daemon starts");

    // Discovery, retained: a client that connects later reads it back.
    let (client, mut rx) = subscriber(port, "homeassistant/#").await;
    let want = set(&["pv_power", "site_load", "price", "hashprice"]);
    let mut discovery = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while discovery.len() < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let (topic, body) = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("discovery read back: {:?}", discovery.keys()))
            .expect("client alive");
        if !body.is_empty() {
            discovery.insert(topic, String::from_utf8(body).unwrap());
        }
    }
    let discovery: Vec<(String, String)> = discovery.into_iter().collect();

    // The state document as it reaches a subscriber.
    let (_state_client, mut state_rx) = subscriber(port, &format!("gridminer/{id}/state")).await;
    let publish = |topic: String, v: f64| {
        let client = client.clone();
        async move {
            client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, v.to_string())
                .await
                .unwrap();
        }
    };
    // All three fed until the pool mines on the surplus (it takes a moment to start;
    // PV would go stale meanwhile if fed once).
    let doc = |body: &[u8]| serde_json::from_slice::<Value>(body).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let fresh = loop {
        assert!(Instant::now() < deadline, "never mined on the surplus");
        publish(format!("{id}/pv"), 3000.0).await;
        publish(format!("{id}/load"), 500.0).await;
        publish(format!("{id}/price"), 40.0).await;
        let (_, body) = tokio::time::timeout(Duration::from_secs(20), state_rx.recv())
            .await
            .expect("a state document")
            .unwrap();
        let d = doc(&body);
        if d["signals"]["pv_power"]["stale"] == false
            && d["energy"]["curtailed_wh"].as_f64() > Some(0.0)
            && d["loads"][0]["hashing"]["hashrate_hs"].as_f64() > Some(0.0)
        {
            break d;
        }
    };

    // PV stops; load and price keep coming. Polled under a deadline, not slept on.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stale = loop {
        assert!(Instant::now() < deadline, "PV never went stale");
        publish(format!("{id}/load"), 500.0).await;
        publish(format!("{id}/price"), 40.0).await;
        let (_, body) = tokio::time::timeout(Duration::from_secs(20), state_rx.recv())
            .await
            .expect("a state document")
            .unwrap();
        let d = doc(&body);
        if d["signals"]["pv_power"]["stale"] == true && d["signals"]["site_load"]["stale"] == false
        {
            break d;
        }
    };
    assert_eq!(
        stale["signals"]["pv_power"]["value"], 3000.0,
        "kept, but stale"
    );
    assert!(stale["signals"]["pv_power"]["max_age_s"].is_null());

    let ha = home_assistant(&python, &discovery, &[fresh.clone(), stale]);
    assert_eq!(announced(&ha), want);
    assert_eq!(states_of(&ha, "pv_power"), ["3000.0", "unknown"]);
    assert_eq!(states_of(&ha, "site_load"), ["500.0", "500.0"]);
    assert_eq!(states_of(&ha, "price"), ["40.0", "40.0"]);
    let curtailed: f64 = states_of(&ha, "energy_curtailed")[0].parse().unwrap();
    assert_eq!(Some(curtailed), fresh["energy"]["curtailed_wh"].as_f64());
    assert!(curtailed > 0.0);
    let hashrate: f64 = states_of(&ha, "load_cpu_hashrate")[0].parse().unwrap();
    assert_eq!(
        Some(hashrate),
        fresh["loads"][0]["hashing"]["hashrate_hs"].as_f64()
    );
    running
        .stop(Duration::from_secs(10))
        .await
        .expect("clean shutdown");
}

/// Catches the live counters and the simulator's per-source energy drifting apart: the
/// same complete stream through `sim::run` and the live step path (tests/it/parity.rs)
/// must book the same Wh from curtailed surplus, own generation and the grid. (With
/// gaps they may differ by design: the simulator's physics knows what a stale reading
/// hid, the live counters book a blind interval as grid.)
#[test]
fn r13_ha_mining_energy_by_source_is_the_same_live_and_simulated() {
    let n = 240;
    // PV over a day-like curve, a base load, a price that crosses the break-even.
    let pv: Vec<f64> = (0..n)
        .map(|i| (40e3 * (std::f64::consts::PI * i as f64 / n as f64).sin()).max(0.0))
        .collect();
    let load: Vec<f64> = (0..n).map(|i| 3e3 + 1e3 * ((i % 7) as f64)).collect();
    let price: Vec<f64> = (0..n)
        .map(|i| 20.0 + 60.0 * ((i % 24) as f64 / 24.0))
        .collect();
    let (run, live) =
        super::parity::both_paths(pv, load, price, 60, 1800, [None, None, None], false)
            .unwrap_or_else(|e| panic!("{e}"));
    let e = live.controller().state().energy;
    let k = &run.kpis;
    for (what, live_wh, sim_mwh) in [
        ("curtailed", e.curtailed.0, k.mining_from_curtailment_mwh),
        (
            "own generation",
            e.own_generation.0,
            k.mining_from_export_mwh,
        ),
        ("grid", e.grid.0, k.mining_from_import_mwh),
    ] {
        let sim_wh = sim_mwh * 1e6;
        assert!(
            (live_wh - sim_wh).abs() <= 1e-6 * (1.0 + sim_wh.abs()),
            "{what}: live {live_wh} Wh, simulated {sim_wh} Wh"
        );
    }
    // The stream exercises every source, so agreement is not 0 = 0.
    assert!(
        e.curtailed.0 > 0.0 && e.own_generation.0 > 0.0 && e.grid.0 > 0.0,
        "{e:?}"
    );
    assert!((e.total().0 - k.mining_mwh * 1e6).abs() <= 1e-6 * (1.0 + k.mining_mwh * 1e6));
}
