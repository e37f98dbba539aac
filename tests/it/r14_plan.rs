//! Issue 14: the look-ahead `plan` policy on shipped scenarios and real data. It sees
//! only what it could have known, earns at least what the moment alone earns on the
//! shipped sites, and closes most of the gap where wear limits bind.

use gridminer::config::Override;
use gridminer::scenario::load_scenario;
use gridminer::signal::replay::Replay;
use gridminer::sim::{self, compare, SimOptions};

use super::support::{gridminer, json_stdout, root, text};

fn scenario(file: &str, sets: &[&str]) -> (gridminer::scenario::Scenario, Replay) {
    let overrides: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
    let sc = load_scenario(&root().join(file), &overrides).unwrap();
    let replay = Replay::load(&sc.history).unwrap();
    (sc, replay)
}

/// Runs `sc` in plan mode and returns every step's decision.
fn decisions(
    sc: &gridminer::scenario::Scenario,
    replay: &Replay,
) -> Vec<gridminer::decision::Decision> {
    let opts = SimOptions {
        decisions: true,
        ..Default::default()
    };
    sim::run(sc, replay, opts).unwrap().decisions
}

/// No peeking: with the data after a moment `t` changed (PV from `t` on, and the prices
/// the day-ahead auction had not yet published at `t`), every decision before `t` is
/// the same, and some after it are not (so the change was one the plan would act on).
#[test]
fn r14_the_plan_decides_on_nothing_it_could_not_have_known() {
    for (file, sets, plan) in [
        (
            "simulations/pvdaq-system50-wear.toml",
            vec![
                "start=\"2012-06-03T00:00:00Z\"",
                "end=\"2012-06-06T00:00:00Z\"",
            ],
            None,
        ),
        (
            "simulations/de-2018-solar.toml",
            vec![
                "start=\"2018-05-02T00:00:00Z\"",
                "end=\"2018-05-05T00:00:00Z\"",
            ],
            Some("plan"),
        ),
    ] {
        let (sc, replay) = scenario(file, &sets);
        let sc = match plan {
            Some(mode) => compare::with_mode(&sc, mode).unwrap(),
            None => sc,
        };
        assert!(sc.policy.plan.is_some(), "{file} plans");
        let before = decisions(&sc, &replay);
        // Mid-morning of the second day: the plan looks well past it.
        let t = replay.len / 3 + 10 * 60;
        let at = replay.time(t);
        let published = sim::published_until(at);
        let mut changed = replay.clone();
        if let Some(pv) = changed.pv.as_mut() {
            for (j, v) in pv.iter_mut().enumerate().skip(t) {
                // A different future: clouds where there was sun and sun where there was
                // none, at every later step.
                *v = if j % 90 < 45 { 0.0 } else { *v * 1.7 + 500.0 };
            }
        }
        for (j, p) in changed.price.iter_mut().enumerate() {
            if replay.time(j) >= published {
                *p = -*p + 80.0;
            }
        }
        let after = decisions(&sc, &changed);
        assert_eq!(before.len(), after.len());
        for i in 0..t {
            assert_eq!(
                before[i],
                after[i],
                "{file}: step {i} ({}) changed with data from {at} on",
                replay.time(i)
            );
        }
        assert!(
            (t..before.len()).any(|i| before[i] != after[i]),
            "{file}: a different future changed nothing after {at}"
        );
    }
}

/// The day-ahead schedule the simulated planner reads grows at 11:00 UTC each day by the
/// next delivery day, ending at 22:00 UTC: the safe reading of EPEX's 12:00 CET auction.
#[test]
fn r14_the_day_ahead_schedule_is_published_at_the_auction() {
    use gridminer::clock::Timestamp;
    let t = |s: &str| Timestamp::parse(s).unwrap();
    assert_eq!(
        sim::published_until(t("2018-05-02T10:59:00Z")),
        t("2018-05-02T22:00:00Z")
    );
    assert_eq!(
        sim::published_until(t("2018-05-02T11:00:00Z")),
        t("2018-05-03T22:00:00Z")
    );
    assert_eq!(
        sim::published_until(t("2018-05-02T23:30:00Z")),
        t("2018-05-03T22:00:00Z")
    );
    let (_, replay) = scenario(
        "simulations/de-2018-solar.toml",
        &[
            "start=\"2018-05-02T00:00:00Z\"",
            "end=\"2018-05-05T00:00:00Z\"",
        ],
    );
    let now = t("2018-05-03T12:00:00Z");
    let sch = sim::day_ahead_schedule(&replay, now, sim::published_until(now));
    let last = sch.last().unwrap().0;
    assert_eq!(last, t("2018-05-04T21:45:00Z"));
    // Each entry is the replay's price at its start.
    for (start, p) in &sch {
        let i = ((start.0 - replay.start.0) / replay.step.as_millis() as i64) as usize;
        assert_eq!(p.0, replay.price[i], "{start}");
    }
}

/// On the shipped sites the plan earns at least what the moment alone earns, keeps
/// every start limit, and where wear limits bind (pvdaq-system50-wear) it closes most of
/// the gap to the clairvoyant optimum.
#[test]
fn r14_the_plan_earns_at_least_the_moment_and_closes_the_gap_where_wear_binds() {
    let (sc, replay) = scenario("simulations/pvdaq-system50-wear.toml", &[]);
    let rows =
        compare::compare(&sc, &replay, &["surplus-only".into(), "plan".into()], true).unwrap();
    let (moment, plan) = (&rows[0], &rows[1]);
    let (rm, rp) = (moment.ratio_to_bound.unwrap(), plan.ratio_to_bound.unwrap());
    assert!(plan.profit_eur >= moment.profit_eur, "{rows:?}");
    // The bound is loose here (no wear limits priced in it); the plan is within 1 % of
    // the best schedule the clairvoyant solver finds, the moment 7 % short of it.
    assert!(rp >= 0.9 && rp - rm >= 0.05, "ratios {rm} and {rp}");
    assert!(plan.max_starts_in_a_day <= 24, "{rows:?}");
    for (file, modes, end) in [
        (
            "simulations/de-2018-solar.toml",
            ["surplus-only", "plan"],
            "2018-04-01T00:00:00Z",
        ),
        (
            "simulations/de-2018-hybrid.toml",
            ["economic", "plan"],
            "2018-03-01T00:00:00Z",
        ),
        (
            "simulations/pvdaq-system50.toml",
            ["surplus-only", "plan"],
            "2011-08-01T00:00:00Z",
        ),
    ] {
        let (sc, replay) = scenario(file, &[&format!("end=\"{end}\"")]);
        let modes: Vec<String> = modes.iter().map(|m| m.to_string()).collect();
        let rows = compare::compare(&sc, &replay, &modes, false).unwrap();
        assert!(
            rows[1].profit_eur >= rows[0].profit_eur - 1e-9,
            "{file}: {rows:?}"
        );
    }
}

/// `simulate --compare` prints one row per mode, as a table or JSON, and refuses a mode
/// it does not know with the list of those it does.
#[test]
fn r14_simulate_compare_prints_each_policy() {
    let dir = root();
    let out = gridminer(
        &[
            "simulate",
            "simulations/pvdaq-system50-wear.toml",
            "--set",
            "end=\"2012-06-08T00:00:00Z\"",
            "--compare",
            "surplus-only,plan,plan@12h",
            "--json",
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let v = json_stdout(&out);
    let rows = v.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "surplus-only",
            "plan:surplus-only@1d",
            "plan:surplus-only@12h"
        ]
    );
    for r in rows {
        for key in ["profit_eur", "upper_bound_eur", "ratio_to_bound"] {
            assert!(r[key].as_f64().unwrap().is_finite(), "{key}: {r}");
        }
        assert!(r["starts"].as_u64().is_some() && r["forced_stops"].as_u64().is_some());
    }
    let out = gridminer(
        &[
            "simulate",
            "simulations/pvdaq-system50-wear.toml",
            "--compare",
            "greedy",
        ],
        &dir,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("\"greedy\" is not a mode"),
        "{}",
        text(&out)
    );
}

/// A planning policy's config problems are listed with their key paths: an unknown base,
/// a horizon out of range, a plan table without `mode = "plan"`, and PV with no location
/// to draw its forecast on.
#[test]
fn r14_plan_settings_are_checked_at_their_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        "[policy]\nmode = \"plan\"\nplan = { horizon = \"3d\", base = \"greedy\" }\nmax_signal_age = \"5m\"\n",
    )
    .unwrap();
    let src = std::fs::read_to_string(root().join("simulations/pvdaq-system50.toml")).unwrap();
    let sc = src
        .replace(
            "policy = \"../policies/surplus-only.toml\"",
            &format!("policy = {:?}", policy.display().to_string()),
        )
        .replace("latitude = 39.7406\n", "")
        .replace("longitude = -105.1775\n", "")
        .replace("../data/", &format!("{}/data/", root().display()));
    let file = dir.path().join("s.toml");
    std::fs::write(&file, sc).unwrap();
    let out = gridminer(&["config", "check", file.to_str().unwrap()], dir.path());
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    for needle in ["policy.plan.base", "\"greedy\"", "policy.plan.horizon"] {
        assert!(shown.contains(needle), "{needle}: {shown}");
    }
    std::fs::write(
        &policy,
        "[policy]\nmode = \"plan\"\nplan = { horizon = \"3d\" }\nmax_signal_age = \"5m\"\n",
    )
    .unwrap();
    let shown = text(&gridminer(
        &["config", "check", file.to_str().unwrap()],
        dir.path(),
    ));
    for needle in [
        "policy.plan.horizon",
        "site.latitude",
        "needs the site's latitude and longitude",
    ] {
        assert!(shown.contains(needle), "{needle}: {shown}");
    }
    std::fs::write(
        &policy,
        "[policy]\nmode = \"economic\"\nplan = { horizon = \"12h\" }\nmax_signal_age = \"5m\"\n",
    )
    .unwrap();
    let shown = text(&gridminer(
        &["config", "check", file.to_str().unwrap()],
        dir.path(),
    ));
    assert!(
        shown.contains("policy.plan") && shown.contains("only with mode = \"plan\""),
        "{shown}"
    );
}

/// The daemon in plan mode, live over MQTT: it mines the surplus it is fed, takes a
/// provider's PV forecast and a day-ahead schedule, shows a broken forecast under
/// `pv_power` as refused, and an under-frequency sheds every unit whatever the plan
/// wanted (the rules above the plan stay in force live too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_the_daemon_plans_live_and_the_rules_above_it_hold() {
    use super::brokers::free_port;
    use super::live::{next_message, subscriber};
    use rumqttc::QoS;
    use std::time::{Duration, Instant};

    let id = "p14";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("site.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
site_id = "{id}"
tick = "100ms"
hashprice = 50.0
policy = {{ mode = "plan", plan = {{ horizon = "6h", base = "surplus-only" }}, max_signal_age = "1h", frequency = {{ nominal_hz = 50.0, shed_below_hz = 49.8, absorb_above_hz = 50.2, hold = "0s" }} }}
operator_replay_cache = "record.json"
[site]
pv = true
pv_capacity = "10 kW"
latitude = 51.16
longitude = 10.45
export_limit = "1 kW"
import_limit = "10 kW"
[tariff]
import_adder_eur_mwh = 100.0
export = "day-ahead"
[mqtt]
broker = "embedded"
listen = "127.0.0.1:{port}"
{signals}
[[signals]]
topic = "{id}/hz"
quantity = "grid_frequency"
[[signals]]
topic = "{id}/pvf"
quantity = "pv_forecast"
[[signals]]
topic = "{id}/schedule"
quantity = "price_schedule"
[[loads]]
kind = "mqtt"
topic = "{id}/miners/setpoint"
name = "miners"
count = 4
rated_power = "500 W"
hashrate = "20 TH/s"
"#,
            signals = super::support::site_signals(id),
        ),
    )
    .unwrap();
    let site = gridminer::runtime::config::load(&cfg).expect("config");
    assert!(site.config.policy.plan.is_some() && site.config.location.is_some());
    let running = gridminer::runtime::start(site)
        .await
        .expect("daemon starts");
    let (client, mut rx) = subscriber(port, &format!("gridminer/{id}/#")).await;
    let availability = format!("gridminer/{id}/availability");
    while next_message(&mut rx, &availability).await != "online" {}

    use gridminer::clock::Clock;
    let now = gridminer::clock::SystemClock.now();
    let hour = |h: i64| {
        gridminer::clock::Timestamp(now.0 - now.0.rem_euclid(3_600_000) + h * 3_600_000)
            .to_rfc3339()
    };
    let forecast = format!(
        "[{}]",
        (0..8)
            .map(|h| format!("{{\"start\": \"{}\", \"value\": 3000}}", hour(h)))
            .collect::<Vec<_>>()
            .join(",")
    );
    let schedule = format!(
        "[{}]",
        (0..8)
            .map(|h| format!("{{\"start\": \"{}\", \"price\": 10}}", hour(h)))
            .collect::<Vec<_>>()
            .join(",")
    );
    for (topic, payload) in [
        ("pvf", forecast),
        ("schedule", schedule),
        ("pv", "3000".to_string()),
        ("load", "0".to_string()),
        ("price", "10".to_string()),
        ("hz", "50.0".to_string()),
    ] {
        client
            .publish(format!("{id}/{topic}"), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    // 2 kW of surplus at 10 EUR/MWh against miners worth 83 EUR/MWh, for hours ahead:
    // the plan runs every unit.
    let state_topic = format!("gridminer/{id}/state");
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        let s = next_message(&mut rx, &state_topic).await;
        if s["loads"][0]["units_on"] == 4 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the plan never ran all four units: {s}"
        );
    };
    let reason = state["decision"]["reason"].as_str().unwrap();
    assert!(
        ["economic", "surplus", "planned"].contains(&reason),
        "{state}"
    );
    assert!(
        state["signals"]["pv_power"]["last_rejected"].is_null(),
        "{state}"
    );

    // A broken forecast is refused and shown under the signal it forecasts.
    client
        .publish(format!("{id}/pvf"), QoS::AtLeastOnce, false, "[]")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = next_message(&mut rx, &state_topic).await;
        if s["signals"]["pv_power"]["last_rejected"]["reason"] == "bad_schedule" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken forecast was not shown: {s}"
        );
    }

    // Under-frequency sheds everything: the plan's counts never lift it.
    client
        .publish(format!("{id}/hz"), QoS::AtLeastOnce, false, "49.5")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = next_message(&mut rx, &state_topic).await;
        if s["decision"]["reason"] == "under_frequency" {
            assert_eq!(s["decision"]["target_w"], 0.0, "{s}");
            assert_eq!(s["loads"][0]["units_on"], 0, "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "no shed: {s}");
    }
    running.stop(Duration::from_secs(10)).await.unwrap();
}
