//! Live and simulation share the whole control step (issue 10, item 1).
//!
//! The same timestamped observations, with gaps, go once through the live loop's step
//! path (`runtime::LiveStep`, built from a site config exactly as `gridminer run` builds
//! it: each signal's `max_age` from `[[signals]]`, plausibility, the constant hashprice)
//! and once through `sim::run` (each series' `max_age` from the scenario). Both drive the
//! same simulated loads. Every step's decision must be the same, stale drops included:
//! before, the live loop aged readings itself and the simulator never did.

use std::time::Duration;

use proptest::prelude::*;

use gridminer::actuator::simulated::SimulatedLoad;
use gridminer::decision::Reason;
use gridminer::runtime::LiveStep;
use gridminer::signal::series::{ColumnRef, PowerSource, PriceSource, SeriesSpec};
use gridminer::signal::{Observation, Quantity};
use gridminer::sim::{self, SimOptions};
use gridminer::state::Reading;
use gridminer::units::{PricePerMwh, Watts};

use super::support::scenario_in_memory;

/// A site config with PV, a site-load meter and a price signal, each with its own
/// `max_age` where given, and two MQTT-driven miner groups: one range-capable, one on/off
/// with wear limits.
fn site_toml(mode: &str, signal_age_s: u64, ages: [Option<u64>; 3]) -> String {
    let age = |a: Option<u64>| a.map_or(String::new(), |s| format!("max_age = \"{s}s\""));
    format!(
        r#"
site_id = "parity"
tick = "1s"
hashprice = 55.0
[policy]
mode = "{mode}"
margin_eur_mwh = 5.0
hysteresis_eur_mwh = 2.0
max_signal_age = "{signal_age_s}s"
[site]
pv = true
export_limit = "8 kW"
import_limit = "12 kW"
pv_capacity = "40 kW"
[tariff]
import_adder_eur_mwh = 30.0
export = "day-ahead"
[mqtt]
broker = "embedded"
listen = "127.0.0.1:0"
[[signals]]
topic = "parity/pv"
quantity = "pv_power"
{pv_age}
[[signals]]
topic = "parity/load"
quantity = "site_load"
{load_age}
[[signals]]
topic = "parity/price"
quantity = "price"
{price_age}
[[loads]]
kind = "mqtt"
topic = "parity/range/setpoint"
name = "range"
count = 3
rated_power = "3 kW"
min_power = "1 kW"
hashrate = "100 TH/s"
[[loads]]
kind = "mqtt"
topic = "parity/onoff/setpoint"
name = "onoff"
count = 4
rated_power = "1.5 kW"
hashrate = "40 TH/s"
min_on = "10m"
min_off = "5m"
max_starts_per_day = 3
"#,
        pv_age = age(ages[0]),
        load_age = age(ages[1]),
        price_age = age(ages[2]),
    )
}

/// A series with runs of missing values (NaN), as measured data has.
fn with_gaps(base: Vec<f64>, gaps: Vec<(usize, usize)>) -> Vec<f64> {
    let mut v = base;
    let n = v.len();
    for (start, len) in gaps {
        for x in v.iter_mut().skip(start % n).take(len) {
            *x = f64::NAN;
        }
    }
    v
}

fn series(n: usize, lo: f64, hi: f64) -> impl Strategy<Value = Vec<f64>> {
    (
        prop::collection::vec(lo..hi, n),
        prop::collection::vec((0usize..n, 1usize..12), 0..5),
    )
        .prop_map(|(v, gaps)| with_gaps(v, gaps))
}

const STEPS: usize = 96;

/// Runs both paths over the series; returns the simulator's decisions and KPIs after
/// checking that the live step path decided the same at every step, and the live step
/// after one more step at the end (so its counters have booked the last interval too).
pub(crate) fn both_paths(
    pv: Vec<f64>,
    load: Vec<f64>,
    price: Vec<f64>,
    step_s: u64,
    signal_age_s: u64,
    ages: [Option<u64>; 3],
    surplus_only: bool,
) -> Result<(sim::SimRun, LiveStep), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    let mode = if surplus_only {
        "surplus-only"
    } else {
        "economic"
    };
    std::fs::write(&path, site_toml(mode, signal_age_s, ages)).unwrap();
    let config = gridminer::runtime::config::load(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let step = Duration::from_secs(step_s);
    let n = pv.len();

    // The simulator, on the same site, policy and loads, the series' max ages being the
    // signals'.
    let (mut sc, replay) = scenario_in_memory(
        config.policy.clone(),
        config.loads.clone(),
        config.grid,
        step,
        pv.clone(),
        load.clone(),
        price.clone(),
        55.0,
    );
    sc.tariff = config.tariff;
    let columns = [("pv", ages[0]), ("load", ages[1]), ("price", ages[2])];
    sc.history.series = columns
        .iter()
        .map(|(name, age)| SeriesSpec {
            name: (*name).into(),
            path: dir.path().join(name),
            time_column: "timestamp".into(),
            max_age: age.map(Duration::from_secs),
        })
        .collect();
    let col = |series: &str| ColumnRef {
        series: series.into(),
        column: series.into(),
        scale: 1.0,
    };
    sc.history.pv = Some(col("pv"));
    sc.history.base_load = PowerSource::Series(col("load"));
    sc.history.price = PriceSource::Series(col("price"));
    let run = sim::run(
        &sc,
        &replay,
        SimOptions {
            decisions: true,
            ..Default::default()
        },
    )
    .expect("the simulation runs");
    prop_assert_eq!(run.decisions.len(), n);

    // The live step path, fed what the signals would have carried, and the same
    // simulated loads.
    let mut live = LiveStep::from_config(&config);
    let mut loads: Vec<SimulatedLoad> = config.loads.iter().map(SimulatedLoad::new).collect();
    let mut drawn: Vec<Option<Reading<Watts>>> = vec![None; loads.len()];
    for (i, expected) in run.decisions.iter().enumerate() {
        let now = replay.time(i);
        let power = |quantity, v: f64| Observation::Power {
            quantity,
            value: Watts(v),
            at: now,
        };
        let mut feed = Vec::new();
        if !pv[i].is_nan() {
            feed.push(power(Quantity::PvPower, pv[i]));
        }
        if !load[i].is_nan() {
            feed.push(power(Quantity::SiteLoad, load[i]));
        }
        if !price[i].is_nan() {
            feed.push(Observation::Price {
                value: PricePerMwh(price[i]),
                at: now,
            });
        }
        for obs in feed {
            live.admit(obs, now)
                .expect("every generated value is plausible at this site");
        }
        let decision = live.step(now, &drawn);
        prop_assert_eq!(&decision, expected, "step {} at {}", i, now);
        for (k, sim) in loads.iter_mut().enumerate() {
            sim.apply(live.controller().state().loads[k].target);
            let o = sim.advance(step);
            drawn[k] = Some(Reading {
                value: o.power,
                at: now + step,
            });
        }
    }
    live.step(replay.time(n - 1) + step, &drawn);
    Ok((run, live))
}

/// A reading older than its signal's `max_age` is dropped in both paths, the decision
/// says so, and the simulator's report counts the steps.
#[test]
fn r10_a_gap_longer_than_max_age_is_stale_in_both_paths_and_counted() {
    // 60 s steps; PV goes quiet for 10 minutes from step 20. Its `max_age` is 3 min, the
    // policy's `max_signal_age` 30 min: only the per-signal age can make it stale.
    let mut pv = vec![20e3; 60];
    for x in &mut pv[20..30] {
        *x = f64::NAN;
    }
    let run = both_paths(
        pv,
        vec![2e3; 60],
        vec![40.0; 60],
        60,
        1800,
        [Some(180), None, None],
        false,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .0;
    let stale: Vec<usize> = run
        .decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.reason == Reason::Stale(Quantity::PvPower))
        .map(|(i, _)| i)
        .collect();
    // The last reading is at step 19; at step 23 it is 4 min old, past 3 min.
    assert_eq!(stale, (23..30).collect::<Vec<_>>());
    let counted = run
        .kpis
        .stale_steps
        .iter()
        .find(|(q, _)| q == "pv_power")
        .map(|(_, n)| *n);
    assert_eq!(counted, Some(7));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn r10_the_live_step_and_the_simulator_decide_the_same_at_every_step(
        pv in series(STEPS, 0.0, 35e3),
        load in series(STEPS, 500.0, 6e3),
        price in series(STEPS, -50.0, 250.0),
        step_s in prop::sample::select(vec![30u64, 60, 300]),
        signal_age_s in 60u64..1800,
        ages in [
            prop::option::of(20u64..900),
            prop::option::of(20u64..900),
            prop::option::of(20u64..900),
        ],
        surplus_only in any::<bool>(),
    ) {
        both_paths(pv, load, price, step_s, signal_age_s, ages, surplus_only)?;
    }
}
