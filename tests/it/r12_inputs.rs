//! Issue 12, the simulator's input side: every load in the time series, and a control
//! step coarser than the data that keeps the data's energy.

use std::time::Duration;

use gridminer::policy::Mode;
use gridminer::scenario::load_scenario;
use gridminer::signal::replay::Replay;
use gridminer::sim::{run, SimOptions};
use gridminer::site::GridConnection;
use gridminer::units::Watts;

use super::support::{cpu, policy, root, scenario_in_memory};

/// Issue 12 defect 3: `timeseries.parquet` kept the power of the first 16 loads only (a
/// fixed array of 16), so a 20-load site's loads 17 to 20 had no power column to speak
/// of. Every load's column must hold its power, and the loads' columns must add up to
/// the mining power, at every step.
#[test]
fn r12_defect3_every_load_has_its_power_in_the_time_series() {
    let loads: Vec<_> = (0..20)
        .map(|k| {
            let mut l = cpu(100.0 + k as f64, 200.0);
            l.name = format!("cpu{k}");
            l
        })
        .collect();
    let n = 8;
    // 10 kW of PV behind a closed export limit: every load mines curtailed energy.
    let (sc, replay) = scenario_in_memory(
        policy(Mode::SurplusOnly, 0.0, 0.0),
        loads,
        GridConnection {
            export_limit: Watts(0.0),
            import_limit: Watts(10e3),
        },
        Duration::from_secs(60),
        vec![10e3; n],
        vec![0.0; n],
        vec![30.0; n],
        50.0,
    );
    let out = run(
        &sc,
        &replay,
        SimOptions {
            record: true,
            ..SimOptions::default()
        },
    )
    .unwrap();
    let ts = out.timeseries.unwrap();
    let mining = ts.column("mining_w").unwrap();
    let mut sum = vec![0.0f64; ts.len()];
    for k in 0..20 {
        let name = format!("cpu{k}_w");
        let col = ts
            .column(&name)
            .unwrap_or_else(|| panic!("no column {name}"));
        assert!(
            col.iter().all(|w| w.is_finite()),
            "{name} has steps without a power: {col:?}"
        );
        assert!(col.iter().any(|&w| w > 0.0), "{name} never mined: {col:?}");
        for (s, w) in sum.iter_mut().zip(col) {
            *s += *w as f64;
        }
    }
    for (i, (s, m)) in sum.iter().zip(mining).enumerate() {
        assert!(
            (s - *m as f64).abs() <= 1e-3 * (*m as f64).max(1.0),
            "step {i}: the loads' columns add up to {s} W, mining_w is {m} W"
        );
    }
    // And the parquet frame carries them all.
    let df = ts.to_dataframe().unwrap();
    assert!(df.column("cpu19_w").is_ok());
}

/// A scenario over `csv` (a 15-minute PV series in kW) at `step`.
fn pv_scenario(dir: &std::path::Path, step: &str, csv: &str) -> Replay {
    let policy = root().join("policies/economic.toml");
    std::fs::write(dir.join("pv.csv"), csv).unwrap();
    let text = format!(
        r#"
name = "coarse"
policy = "{}"
step = "{step}"
hashprice = 50.0
[[series]]
name = "pv"
file = "pv.csv"
[site]
pv = {{ series = "pv", column = "kw", unit = "kW" }}
base_load = "1 kW"
export_limit = "5 kW"
import_limit = "5 kW"
[tariff]
price = 30.0
import_adder_eur_mwh = 100.0
export = "day-ahead"
[[loads]]
kind = "cpu"
name = "c"
rated_power = "100 W"
hashrate = "30 MH/s"
"#,
        policy.display()
    );
    let path = dir.join(format!("s-{}.toml", step.replace(' ', "")));
    std::fs::write(&path, text).unwrap();
    Replay::load(&load_scenario(&path, &[]).unwrap().history).unwrap()
}

/// kWh of PV in a replay.
fn pv_kwh(r: &Replay) -> f64 {
    let h = r.step.as_secs_f64() / 3600.0;
    r.pv.as_ref().unwrap().iter().map(|w| w * h / 1e3).sum()
}

/// Issue 12 defect 6: a step coarser than the data took the one sample at its start, so
/// hourly steps over quarter-hour PV held each hour's first quarter for the whole hour
/// (11 % too much curtailable energy on a real year, silently). The energy of a window
/// must be the same at the data's step and at any coarser one, aligned or not.
#[test]
fn r12_defect6_a_coarser_step_keeps_the_data_energy() {
    let dir = tempfile::tempdir().unwrap();
    // Two hours of a rising morning: each hour's first quarter is its smallest.
    let mut csv = String::from("timestamp,kw\n");
    let kw = [1.0, 3.0, 6.0, 10.0, 12.0, 13.0, 15.0, 18.0];
    for (k, v) in kw.iter().enumerate() {
        csv += &format!("2018-06-01T{:02}:{:02}:00Z,{v}\n", 6 + k / 4, (k % 4) * 15);
    }
    let fine = pv_scenario(dir.path(), "15m", &csv);
    let expect: f64 = kw.iter().map(|v| v * 0.25).sum();
    assert!((pv_kwh(&fine) - expect).abs() < 1e-9, "{}", pv_kwh(&fine));
    for step in ["30m", "1h", "40m"] {
        let coarse = pv_scenario(dir.path(), step, &csv);
        // A 40-minute step fits the two hours three times: compare over what it covers.
        let covered_h = coarse.len as f64 * coarse.step.as_secs_f64() / 3600.0;
        let quarters = (covered_h * 4.0).round() as usize;
        let expect: f64 = kw[..quarters].iter().map(|v| v * 0.25).sum();
        assert!(
            (pv_kwh(&coarse) - expect).abs() < 1e-9,
            "{step}: {} kWh over {covered_h} h, the data holds {expect} kWh",
            pv_kwh(&coarse)
        );
    }
    let hourly = pv_scenario(dir.path(), "1h", &csv);
    assert_eq!(hourly.pv.as_ref().unwrap(), &[5000.0, 14500.0]);

    // A hole (an empty cell, a missing quarter) counts for nothing in an hour's mean; an
    // hour of holes only has no value, as a quarter-hour step in a gap has none.
    let holes = "timestamp,kw\n\
        2018-06-01T06:00:00Z,2\n\
        2018-06-01T06:15:00Z,\n\
        2018-06-01T06:30:00Z,4\n\
        2018-06-01T07:00:00Z,\n\
        2018-06-01T08:00:00Z,8\n\
        2018-06-01T08:15:00Z,8\n";
    let r = pv_scenario(dir.path(), "1h", holes);
    let pv = r.pv.as_ref().unwrap();
    assert_eq!(pv.len(), 2, "06:00 .. 08:30 holds two whole hours");
    assert_eq!(pv[0], 3000.0, "the mean of the quarters with a value");
    assert!(pv[1].is_nan(), "07:00 .. 08:00 has no value: {pv:?}");
}
