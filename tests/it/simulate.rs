//! The simulation runner on the shipped scenarios and real data, end to end.

use std::path::Path;

use gridminer::config::Override;
use gridminer::decision::ALL_REASONS;
use gridminer::scenario::load_scenario;
use gridminer::signal::replay::Replay;
use gridminer::sim::{self, SimOptions};
use polars::prelude::*;

use super::support::{gridminer, root, text};

fn set(s: &str) -> Override {
    Override::parse(s).unwrap()
}

#[test]
fn shipped_files_all_check_out() {
    let mut args = vec!["config".to_string(), "check".to_string()];
    for dir in ["simulations", "policies", "deploy/examples"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            // deploy/examples also holds the placeholder files its configs name.
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                args.push(path.display().to_string());
            }
        }
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = gridminer(&a, &root());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).matches(": ok").count() >= 6, "{}", text(&o));
}

#[test]
fn a_year_of_the_hybrid_site_balances_and_is_deterministic() {
    let sc = load_scenario(&root().join("simulations/de-2018-hybrid.toml"), &[]).unwrap();
    let replay = Replay::load(&sc.history).unwrap();
    assert_eq!(replay.step.as_secs(), 60);
    assert!(replay.len > 525_000, "{}", replay.len);
    let k = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis;
    let again = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis;
    assert_eq!(k.profit_eur, again.profit_eur);

    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()));
    assert!(close(
        k.mining_mwh,
        k.mining_from_curtailment_mwh + k.mining_from_export_mwh + k.mining_from_import_mwh
    ));
    assert!(close(
        k.mining_mwh,
        k.loads.iter().map(|l| l.energy_mwh).sum()
    ));
    assert!(close(
        k.profit_eur,
        k.revenue_eur - k.energy_cost_eur - k.wear_cost_eur
    ));
    assert!(close(
        k.generation_mwh + k.import_mwh,
        k.site_load_mwh + k.mining_mwh + k.export_mwh + k.curtailed_mwh
    ));
    // Mining takes curtailed energy first: it can only reduce curtailment.
    assert!(k.curtailed_mwh <= k.curtailed_without_mining_mwh + 1e-9);
    assert!(close(
        k.curtailed_without_mining_mwh - k.curtailed_mwh,
        k.mining_from_curtailment_mwh
    ));
    assert!(
        k.curtailed_without_mining_mwh > 10.0,
        "the 6 MW export limit curtails: {}",
        k.curtailed_without_mining_mwh
    );
    assert!((0.0..=1.0).contains(&k.absorbed_share));
    assert!(k.absorbed_share > 0.9, "{}", k.absorbed_share);
    assert!(k.profit_eur > 0.0);
    assert_eq!(k.months.len(), 12);
    assert!(close(
        k.months.iter().map(|m| m.profit_eur).sum(),
        k.profit_eur
    ));
    // No start limit is ever exceeded: s19 allows 8 per day by hardware, 12 by policy.
    assert!(k.loads[1].max_starts_in_a_day <= 8);
    // Hours are hourly, generation quarter-hourly: every step has a value, but for the
    // grid's carbon intensity in the 14 days the mix has no oil figure (issue 15: those
    // hours have no intensity, not one made up without the oil).
    let missing = |q: &str| {
        k.data
            .steps_without_value
            .iter()
            .find(|(n, _)| n == q)
            .map(|(_, n)| *n)
    };
    assert!(
        k.data
            .steps_without_value
            .iter()
            .all(|(q, n)| *n == 0 || q == "grid_carbon_intensity"),
        "{:?}",
        k.data.steps_without_value
    );
    assert_eq!(missing("grid_carbon_intensity"), Some(14 * 24 * 60));
    assert!((k.carbon.hours_without_grid_intensity - 14.0 * 24.0).abs() < 1e-6);
}

#[test]
fn the_online_policy_never_beats_the_clairvoyant_bound_on_real_data() {
    let sc = load_scenario(
        &root().join("simulations/de-2018-wind.toml"),
        &[
            set("start=\"2018-01-01T00:00:00Z\""),
            set("end=\"2018-01-15T00:00:00Z\""),
        ],
    )
    .unwrap();
    let replay = Replay::load(&sc.history).unwrap();
    let k = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis;
    let o = sim::optimum(&sc, &replay, k.profit_eur).unwrap();
    assert!(
        k.profit_eur <= o.upper_bound_eur + 1e-6,
        "{} > {}",
        k.profit_eur,
        o.upper_bound_eur
    );
    assert!(o.feasible_eur <= o.upper_bound_eur + 1e-6);
    assert!(o.ratio > 0.5 && o.ratio <= 1.0, "{}", o.ratio);
}

/// Issue 11: a wear cost per start is charged in the profit, online and in the optimum
/// alike: the online profit is revenue minus energy minus every start at its load's
/// cost (per load and per month too), the optimum's best schedule pays for its starts,
/// and the online profit still never beats the bound. Catches a cost counted in one
/// profit and not the other (the comparison would flatter one side), starts booked at
/// the wrong load's price, and a bound that forgets to charge starts.
#[test]
fn r11_the_wear_cost_of_starts_comes_off_both_profits() {
    let mut sc = load_scenario(
        &root().join("simulations/de-2018-wind.toml"),
        &[
            set("start=\"2018-01-01T00:00:00Z\""),
            set("end=\"2018-01-08T00:00:00Z\""),
        ],
    )
    .unwrap();
    let replay = Replay::load(&sc.history).unwrap();
    let free = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis;
    assert_eq!(free.wear_cost_eur, 0.0);
    // An S21 and an S19 rated for some 20,000 starts over a few thousand EUR of life.
    let costs = [0.25, 0.15];
    for (l, c) in sc.loads.iter_mut().zip(costs) {
        l.wear.start_cost_eur = c;
    }
    // A start is expected to begin a few hours of running: without that the S21s
    // (no min_on) would judge a start over one minute and never start.
    sc.policy.start_payback = std::time::Duration::from_secs(4 * 3600);
    let k = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()));
    // The CPU pool's starts are free; the ASICs' are what is charged.
    let starts: u64 = k.loads[..2].iter().map(|l| l.starts).sum();
    assert!(
        starts > 0,
        "the week has ASIC starts to charge: {:?}",
        k.loads
    );
    assert!(k.wear_cost_eur > 0.0);
    for (l, c) in k.loads.iter().zip(costs) {
        assert!(
            close(l.wear_cost_eur, l.starts as f64 * c),
            "{}: {l:?}",
            l.name
        );
    }
    assert!(close(
        k.wear_cost_eur,
        k.loads.iter().map(|l| l.wear_cost_eur).sum()
    ));
    assert!(close(
        k.profit_eur,
        k.revenue_eur - k.energy_cost_eur - k.wear_cost_eur
    ));
    assert!(close(
        k.months.iter().map(|m| m.wear_cost_eur).sum(),
        k.wear_cost_eur
    ));
    assert!(close(
        k.months.iter().map(|m| m.profit_eur).sum(),
        k.profit_eur
    ));
    let o = sim::optimum(&sc, &replay, k.profit_eur).unwrap();
    assert!(o.feasible_wear_cost_eur > 0.0, "{o:?}");
    assert!(
        k.profit_eur <= o.upper_bound_eur + 1e-6,
        "{} > {o:?}",
        k.profit_eur
    );
    assert!(o.feasible_eur <= o.upper_bound_eur + 1e-6, "{o:?}");
    // The hurdle makes the policy start less, or no more, than it does when starts
    // are free.
    let free_starts: u64 = free.loads[..2].iter().map(|l| l.starts).sum();
    assert!(
        starts <= free_starts,
        "{starts} starts with a cost, {free_starts} without"
    );
}

#[test]
fn measured_pv_gaps_drive_loads_to_the_safe_state_and_are_reported() {
    let sc = load_scenario(
        &root().join("simulations/pvdaq-system50.toml"),
        &[set("end=\"2011-07-01T00:00:00Z\"")],
    )
    .unwrap();
    let replay = Replay::load(&sc.history).unwrap();
    let series = &replay.report.series[0];
    assert!(series.empty_cells > 100, "{series:?}");
    assert_eq!(series.resolution_s, 900);
    let run = sim::run(
        &sc,
        &replay,
        SimOptions {
            record: true,
            ..Default::default()
        },
    )
    .unwrap();
    let stale = run
        .kpis
        .reasons
        .iter()
        .find(|(r, _)| r == "stale:pv_power")
        .map(|(_, n)| *n)
        .unwrap_or(0);
    assert!(stale > 0, "{:?}", run.kpis.reasons);
    // Wherever the decision is the safe state, the loads are told 0 W.
    let ts = run.timeseries.unwrap();
    let target = ts.column("target_w").unwrap();
    let safe = ALL_REASONS
        .iter()
        .position(|r| r.as_str() == "stale:pv_power")
        .unwrap() as u8;
    let mut checked = 0;
    for (i, &r) in ts.reason.iter().enumerate() {
        if r == safe {
            assert_eq!(target[i], 0.0, "step {i}");
            checked += 1;
        }
    }
    assert_eq!(checked, stale);
    // Surplus-only never imports; what is left is float rounding of unit power sums.
    assert!(
        run.kpis.mining_from_import_mwh < 1e-12,
        "{}",
        run.kpis.mining_from_import_mwh
    );
}

#[test]
fn operator_commands_in_a_scenario_cap_mining_while_in_force() {
    let sc = load_scenario(
        &root().join("simulations/de-2018-hybrid.toml"),
        &[
            set("start=\"2018-06-01T00:00:00Z\""),
            set("end=\"2018-06-03T00:00:00Z\""),
            set("operator=[{at=\"2018-06-01T10:00:00Z\", act=\"curtail\", limit=\"100 kW\", until=\"2018-06-01T12:00:00Z\"}, {at=\"2018-06-02T10:00:00Z\", act=\"setpoint\", setpoint=\"500 kW\"}, {at=\"2018-06-02T11:00:00Z\", act=\"release\"}]"),
        ],
    )
    .unwrap();
    let replay = Replay::load(&sc.history).unwrap();
    let run = sim::run(
        &sc,
        &replay,
        SimOptions {
            record: true,
            ..Default::default()
        },
    )
    .unwrap();
    let ts = run.timeseries.unwrap();
    let (target, mining) = (
        ts.column("target_w").unwrap(),
        ts.column("mining_w").unwrap(),
    );
    let at = |s: &str| gridminer::clock::Timestamp::parse(s).unwrap().0;
    let reason = |name: &str| ALL_REASONS.iter().position(|r| r.as_str() == name).unwrap() as u8;
    for i in 0..ts.len() {
        let t = ts.time[i];
        if t >= at("2018-06-01T10:00:00Z") && t < at("2018-06-01T12:00:00Z") {
            assert!(
                target[i] <= 100_000.0 + 1e-3 && mining[i] <= 100_000.0 + 1e-3,
                "step {i}"
            );
            assert_eq!(ts.reason[i], reason("operator_curtail"), "step {i}");
        }
        if t >= at("2018-06-02T10:00:00Z") && t < at("2018-06-02T11:00:00Z") {
            assert_eq!(ts.reason[i], reason("operator_setpoint"), "step {i}");
            assert!(target[i] <= 500_000.0 + 1e-3);
        }
        if t >= at("2018-06-02T11:00:00Z") {
            assert!(ts.reason[i] != reason("operator_setpoint"));
        }
    }
}

#[test]
fn simulate_writes_every_output_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = gridminer(
        &[
            "simulate",
            "simulations/de-2018-hybrid.toml",
            "--out",
            out.to_str().unwrap(),
            "--json",
            "--set",
            "start=\"2018-05-01T00:00:00Z\"",
            "--set",
            "end=\"2018-05-15T00:00:00Z\"",
            // The year's bounds do not hold for two weeks.
            "--set",
            "bounds={}",
        ],
        &root(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let k: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("--json prints JSON on stdout");
    let f = |key: &str| k[key].as_f64().unwrap_or_else(|| panic!("{key} in {k}"));
    assert!(
        (f("profit_eur") - (f("revenue_eur") - f("energy_cost_eur") - f("wear_cost_eur"))).abs()
            < 1e-6
    );
    assert!(k["optimum"]["upper_bound_eur"].as_f64().unwrap() >= f("profit_eur") - 1e-6);
    for name in [
        "report.md",
        "summary.json",
        "timeseries.parquet",
        "week.svg",
        "monthly.svg",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    let df = ParquetReader::new(std::fs::File::open(out.join("timeseries.parquet")).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height() as u64, k["steps"].as_u64().unwrap());
    for c in [
        "time_ms",
        "reason",
        "pv_w",
        "wind_w",
        "price_eur_mwh",
        "target_w",
        "mining_w",
        "export_w",
        "curtailed_w",
        "s21_w",
        "s19_units_on",
        "cpu_target_w",
    ] {
        assert!(df.column(c).is_ok(), "column {c}");
    }
    let reasons = df.column("reason").unwrap().str().unwrap().clone();
    for r in reasons.iter() {
        assert!(ALL_REASONS.iter().any(|x| Some(x.as_str()) == r), "{r:?}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("## Months")
            && report.contains("clairvoyant optimum")
            && report.contains("week.svg")
    );
    for svg in ["week.svg", "monthly.svg"] {
        let s = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            s.starts_with("<svg") && s.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert!(s.contains("<path"), "{svg} draws lines");
    }
}

#[test]
fn simulate_fails_when_a_bound_breaks_but_keeps_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = gridminer(
        &[
            "simulate",
            "simulations/de-2018-hybrid.toml",
            "--no-optimum",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "end=\"2018-01-08T00:00:00Z\"",
        ],
        &root(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("broke its bounds") && text(&o).contains("min_profit_eur 600000"),
        "{}",
        text(&o)
    );
    assert!(
        out.join("report.md").exists(),
        "the report of a run that broke its bounds is kept for reading"
    );
}

#[test]
fn sweep_ranks_every_combination_and_writes_csv_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dir.path().join("short.toml");
    let text_of = std::fs::read_to_string(root().join("simulations/de-2018-hybrid.toml")).unwrap();
    let data = root().join("data");
    let policies = root().join("policies");
    let short = text_of
        .replace("../data", data.to_str().unwrap())
        .replace("../policies", policies.to_str().unwrap())
        .replace(
            "start = \"2018-01-01T00:00:00Z\"",
            "start = \"2018-03-01T00:00:00Z\"",
        )
        .replace(
            "end = \"2018-12-31T23:00:00Z\"",
            "end = \"2018-03-08T00:00:00Z\"",
        );
    std::fs::write(&sc, short).unwrap();
    let out = dir.path().join("sweep");
    let o = gridminer(
        &[
            "sweep",
            sc.to_str().unwrap(),
            "--vary",
            "policy.margin_eur_mwh=0,10,40",
            "--vary",
            "policy.min_on=5m,30m",
            "--out",
            out.to_str().unwrap(),
        ],
        Path::new(dir.path()),
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("best: policy.margin_eur_mwh="), "{t}");
    let df = CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(out.join("sweep.csv")))
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(df.height(), 6);
    // Ranked by site value (the default); with only the policy varied the site without
    // mining is the same in every row, so that is the mining profit's order too.
    let column = |c: &str| -> Vec<f64> {
        df.column(c)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    let (site, profit) = (column("site_value_eur"), column("profit_eur"));
    assert!(
        site.windows(2).all(|w| w[0] >= w[1]),
        "sorted by site value: {site:?}"
    );
    assert!(
        profit.windows(2).all(|w| w[0] >= w[1]),
        "and so by profit: {profit:?}"
    );
    let pq = ParquetReader::new(std::fs::File::open(out.join("sweep.parquet")).unwrap())
        .finish()
        .unwrap();
    assert_eq!(pq.height(), 6);
}

#[test]
fn every_shipped_scenario_keeps_its_bounds() {
    for name in [
        "de-2018-hybrid",
        "de-2018-solar",
        "de-2018-wind",
        "pvdaq-system50",
    ] {
        let sc = load_scenario(&root().join(format!("simulations/{name}.toml")), &[]).unwrap();
        let replay = Replay::load(&sc.history).unwrap();
        let k = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis;
        // The ratio to the optimum is checked by `simulate` itself (and in CI's
        // quick-start run); here the bounds on the run's own KPIs.
        sim::check_bounds(&sc, &k).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Four hourly steps, one 1 kW miner worth 200 EUR/MWh (100 TH/s at 48 EUR per PH/s per
/// day), a 1 kW export limit, 500 W of site load, an 80 EUR/MWh import adder, from
/// 2018-06-30 22:00 so two steps fall in June and two in July:
///
/// | step | PV W | price | import price | mining | without mining              | with mining                 |
/// |------|------|-------|--------------|--------|-----------------------------|-----------------------------|
/// | 1    | 2500 | 50    | 130          | 1 kW   | export 1 kWh (0.05), 1 kWh curtailed | export 1 kWh (0.05), mines the curtailed kWh |
/// | 2    | 1500 | 90    | 170          | 1 kW   | export 1 kWh (0.09)         | mines what it would export  |
/// | 3    | 0    | 150   | 230          | off    | import 0.5 kWh (0.115)      | import 0.5 kWh (0.115)      |
/// | 4    | 0    | 100   | 180          | 1 kW   | import 0.5 kWh (0.09)       | import 1.5 kWh (0.27)       |
///
/// Each mining hour earns 0.2 EUR; two starts at 0.01 EUR. Without mining the site makes
/// 0.14 - 0.205 = -0.065 EUR; with mining 0.05 - 0.385 + 0.6 - 0.02 = 0.245 EUR; mining
/// adds 0.31 EUR (0.30 in June, 0.01 in July), 103.33 EUR per MWh mined, and turned the
/// curtailed kWh into 0.2 EUR. Catches a no-mining run that prices or splits energy
/// differently from the run, a site total missing a term, a month booked in the wrong
/// month, and break-even prices at the wrong hashprice or import price.
fn r12_tiny_site() -> (gridminer::scenario::Scenario, Replay) {
    use gridminer::policy::Mode;
    use gridminer::site::{GridConnection, PowerLevels, WearLimits};
    use gridminer::units::Watts;
    use std::time::Duration;

    let mut miner = super::support::asic(
        "m",
        1,
        1000.0,
        100.0,
        PowerLevels::OnOff,
        WearLimits {
            start_cost_eur: 0.01,
            ..Default::default()
        },
    );
    miner.wake = Duration::ZERO;
    miner.ramp = Duration::ZERO;
    let (sc, mut replay) = super::support::scenario_in_memory(
        super::support::policy(Mode::Economic, 0.0, 0.0),
        vec![miner],
        GridConnection {
            export_limit: Watts(1000.0),
            import_limit: Watts(10_000.0),
        },
        Duration::from_secs(3600),
        vec![2500.0, 1500.0, 0.0, 0.0],
        vec![500.0; 4],
        vec![50.0, 90.0, 150.0, 100.0],
        48.0,
    );
    replay.start = gridminer::clock::Timestamp::parse("2018-06-30T22:00:00Z").unwrap();
    (sc, replay)
}

#[test]
fn r12_site_economics_of_a_tiny_site_check_out_by_hand() {
    let (sc, replay) = r12_tiny_site();
    let k = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis;
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let s = &k.site.run;
    let (w, wo) = (&s.with_mining, &s.without_mining);
    let got = |a: &gridminer::sim::site::SiteAccount| {
        [
            a.export_mwh,
            a.export_revenue_eur,
            a.import_mwh,
            a.import_cost_eur,
            a.curtailed_mwh,
            a.mining_mwh,
            a.mining_revenue_eur,
            a.mining_from_curtailment_mwh,
            a.mining_revenue_from_curtailment_eur,
            a.wear_cost_eur,
            a.site_total_eur,
        ]
    };
    let want_wo = [
        0.002, 0.14, 0.001, 0.205, 0.001, 0.0, 0.0, 0.0, 0.0, 0.0, -0.065,
    ];
    let want_w = [
        0.001, 0.05, 0.002, 0.385, 0.0, 0.003, 0.6, 0.001, 0.2, 0.02, 0.245,
    ];
    for (name, a, want) in [("without", wo, want_wo), ("with", w, want_w)] {
        let g = got(a);
        assert!(
            g.iter().zip(want).all(|(g, w)| close(*g, w)),
            "{name} mining: {g:?} != {want:?}"
        );
    }
    assert!(close(s.value_added_eur, 0.31), "{}", s.value_added_eur);
    assert!(close(s.value_added_eur_per_mwh.unwrap(), 0.31 / 0.003));
    // The value added is the mining profit, reached from the other side.
    assert!(close(k.profit_eur, 0.31), "{}", k.profit_eur);
    let months: Vec<(&str, f64, f64, f64)> = k
        .site
        .months
        .iter()
        .map(|m| {
            (
                m.month.as_str(),
                m.site.without_mining.site_total_eur,
                m.site.with_mining.site_total_eur,
                m.site.value_added_eur,
            )
        })
        .collect();
    assert_eq!(months.len(), 2, "{months:?}");
    for (got, want) in months.iter().zip([
        ("2018-06", 0.14, 0.44, 0.30),
        ("2018-07", -0.205, -0.195, 0.01),
    ]) {
        assert!(
            got.0 == want.0 && close(got.1, want.1) && close(got.2, want.2) && close(got.3, want.3),
            "{got:?} != {want:?}"
        );
    }
    let se = &k.sensitivity;
    assert!(close(se.hashprice_mean_eur_per_ph_day, 48.0));
    assert!(close(se.import_price_mean_eur_per_mwh, 177.5));
    assert_eq!(se.loads.len(), 1);
    assert!(close(se.loads[0].break_even_price_eur_per_mwh, 200.0));
    // 177.5 EUR/MWh over 200/48 EUR/MWh per unit of hashprice.
    assert!(close(
        se.loads[0]
            .grid_break_even_hashprice_eur_per_ph_day
            .unwrap(),
        42.6
    ));
    let summary = gridminer::sim::report::summary_table(&k);
    let md = gridminer::sim::site::markdown(&k);
    // -0.065 and 0.245 round either way in binary; their difference does not.
    assert!(
        md.starts_with("## Site economics")
            && md.contains("| site total | -0.0")
            && md.contains(" | 0.31 |\n"),
        "{md}"
    );
    for line in [
        "site economics, EUR",
        "value added by mining",
        "0.31 EUR, 103.3 EUR per MWh mined",
        "break-even m",
        "energy up to 200.00 EUR/MWh",
        "above a hashprice of 42.60",
        "2018-07",
    ] {
        assert!(summary.contains(line), "{line:?} in\n{summary}");
    }
}

/// The hashprice sensitivity re-runs the policy, not just the revenue: at -50 % (100
/// EUR/MWh) the miner stops at step 3 and stays off; at +25 % and +50 % (250, 300) it runs
/// through the 230 EUR/MWh hour. Every figure by hand from the table above. Catches
/// revenue scaled after the fact (the decisions would not change) and rows out of order.
#[test]
fn r12_hashprice_sensitivity_reruns_the_policy_of_the_tiny_site() {
    let (sc, replay) = r12_tiny_site();
    let k = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis;
    let rows = sim::site::hashprice_sensitivity(&sc, &replay, &k).unwrap();
    let got: Vec<[f64; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.hashprice_change_pct,
                r.hashprice_mean_eur_per_ph_day,
                r.mining_profit_eur,
                r.site_value_eur,
                r.mining_mwh,
            ]
        })
        .collect();
    let want = [
        [-50.0, 24.0, 0.10, 0.035, 0.002],
        [-25.0, 36.0, 0.20, 0.135, 0.002],
        [0.0, 48.0, 0.31, 0.245, 0.003],
        [25.0, 60.0, 0.49, 0.425, 0.004],
        [50.0, 72.0, 0.69, 0.625, 0.004],
    ];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(
            g.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-9),
            "{g:?} != {w:?}"
        );
    }
    for r in &rows {
        // Without mining the site makes -0.065 EUR whatever the hashprice.
        assert!((r.site_value_eur - r.value_added_eur + 0.065).abs() < 1e-9);
    }
}

/// Issue 12: a sweep over `site.export_limit` ranked by profit named the smallest grid
/// connection best, because it curtails more energy for mining to take for free. Ranked by
/// the site's value (the default) the largest connection is best: what it exports earns
/// more than mining it would; ranked by mining profit, the old order. Two summer days of
/// hourly PV on a small site. Catches a ranking by the wrong KPI, a table or "best:" line
/// that does not name it, and sweep files without the site columns.
#[test]
fn r12_a_sweep_over_the_export_limit_ranks_by_site_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("timestamp,pv_w,price_eur_mwh\n");
    for h in 0..48 {
        let hour = h % 24;
        // A clear-sky bell from 6 to 18 h, 6 kW at noon.
        let pv = if (6..=18).contains(&hour) {
            6000.0 * (std::f64::consts::PI * (hour - 6) as f64 / 12.0).sin()
        } else {
            0.0
        };
        let price = if (10..=15).contains(&hour) {
            40.0
        } else {
            80.0
        };
        csv += &format!(
            "2018-06-{:02}T{hour:02}:00:00Z,{pv:.1},{price}\n",
            1 + h / 24
        );
    }
    std::fs::write(dir.path().join("site.csv"), csv).unwrap();
    std::fs::write(
        dir.path().join("site.toml"),
        r#"
name = "r12-export-limit"
step = "15m"
hashprice = 50.0
[policy]
mode = "surplus-only"
margin_eur_mwh = 0.0
hysteresis_eur_mwh = 0.0
max_signal_age = "2h"
[[series]]
name = "site"
file = "site.csv"
[site]
pv = { series = "site", column = "pv_w", unit = "W" }
base_load = "500 W"
export_limit = "1 kW"
import_limit = "10 kW"
[tariff]
price = { series = "site", column = "price_eur_mwh" }
import_adder_eur_mwh = 100.0
export = "day-ahead"
[[loads]]
kind = "asic"
name = "m"
count = 2
rated_power = "1 kW"
hashrate = "100 TH/s"
"#,
    )
    .unwrap();
    let sweep = |rank: Option<&str>, out: &str| {
        let mut args = vec![
            "sweep",
            "site.toml",
            "--vary",
            "site.export_limit=1 kW,2 kW,4 kW",
            "--out",
            out,
        ];
        if let Some(r) = rank {
            args.extend(["--rank-by", r]);
        }
        let o = gridminer(&args, dir.path());
        assert!(o.status.success(), "{}", text(&o));
        let df = CsvReadOptions::default()
            .try_into_reader_with_file_path(Some(dir.path().join(out).join("sweep.csv")))
            .unwrap()
            .finish()
            .unwrap();
        (text(&o), df)
    };
    let col = |df: &DataFrame, c: &str| -> Vec<f64> {
        df.column(c)
            .unwrap_or_else(|e| panic!("{c}: {e}"))
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    let limits = |df: &DataFrame| -> Vec<String> {
        df.column("site.export_limit")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect()
    };

    let (t, df) = sweep(None, "by-site");
    assert!(t.contains("ranked by site_value"), "{t}");
    assert!(t.contains("[site value EUR]"), "{t}");
    assert!(
        t.contains("best: site.export_limit=4 kW (site value EUR: ")
            && t.contains(", ranked by site_value; "),
        "{t}"
    );
    assert_eq!(limits(&df), ["4 kW", "2 kW", "1 kW"]);
    let site = col(&df, "site_value_eur");
    assert!(site.windows(2).all(|w| w[0] > w[1]), "{site:?}");
    // Without mining the larger connection is worth more too; mining adds most where
    // the connection curtails most.
    let without = col(&df, "site_value_without_mining_eur");
    assert!(without.windows(2).all(|w| w[0] > w[1]), "{without:?}");
    let added = col(&df, "value_added_eur");
    let profit = col(&df, "profit_eur");
    for i in 0..3 {
        assert!((site[i] - without[i] - added[i]).abs() < 1e-9);
        assert!((added[i] - profit[i]).abs() < 1e-9 * (1.0 + profit[i].abs()));
    }
    assert!(added.windows(2).all(|w| w[0] < w[1]), "{added:?}");
    for c in [
        "rank",
        "export_revenue_eur",
        "import_cost_eur",
        "value_added_eur_per_mwh",
        "mining_from_curtailment_mwh",
    ] {
        assert!(df.column(c).is_ok(), "sweep.csv has {c}");
    }

    let (t, df) = sweep(Some("mining_profit"), "by-profit");
    assert!(t.contains("ranked by mining_profit"), "{t}");
    assert!(t.contains("best: site.export_limit=1 kW"), "{t}");
    assert_eq!(limits(&df), ["1 kW", "2 kW", "4 kW"]);

    let o = gridminer(
        &[
            "sweep",
            "site.toml",
            "--vary",
            "site.export_limit=1 kW",
            "--rank-by",
            "luck",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("site_value"), "{}", text(&o));
}

/// Issue 12's "done when": `simulate` on every shipped scenario prints the site's value
/// with and without mining and each group's break-even, and its JSON agrees with the
/// run's own energy account. Catches a no-mining run that drifts from the run's physics
/// (curtailment, export, import), months that do not add up, and a summary without them.
#[test]
fn r12_every_shipped_scenario_prints_site_value_with_and_without_mining() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "de-2018-hybrid",
        "de-2018-solar",
        "de-2018-wind",
        "pvdaq-system50",
    ] {
        let out = dir.path().join(name);
        let o = gridminer(
            &[
                "simulate",
                &format!("simulations/{name}.toml"),
                "--no-optimum",
                "--out",
                out.to_str().unwrap(),
            ],
            &root(),
        );
        let t = text(&o);
        assert!(o.status.success(), "{name}: {t}");
        for line in [
            "site economics, EUR",
            "without mining",
            "with mining",
            "site total",
            "value added by mining",
            "curtailment mined",
            "hashprice (run mean)",
            "break-even",
        ] {
            assert!(t.contains(line), "{name}: {line:?} in\n{t}");
        }
        let k: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        let f = |v: &serde_json::Value, key: &str| {
            v[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: {key} in {v}"))
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()));
        let (s, w, wo) = (
            &k["site"],
            &k["site"]["with_mining"],
            &k["site"]["without_mining"],
        );
        let pairs = [
            (
                "value added = profit",
                f(s, "value_added_eur"),
                f(&k, "profit_eur"),
            ),
            (
                "site totals",
                f(w, "site_total_eur") - f(wo, "site_total_eur"),
                f(s, "value_added_eur"),
            ),
            (
                "curtailed without mining",
                f(wo, "curtailed_mwh"),
                f(&k, "curtailed_without_mining_mwh"),
            ),
            ("curtailed", f(w, "curtailed_mwh"), f(&k, "curtailed_mwh")),
            ("export", f(w, "export_mwh"), f(&k, "export_mwh")),
            ("import", f(w, "import_mwh"), f(&k, "import_mwh")),
            ("mining", f(w, "mining_mwh"), f(&k, "mining_mwh")),
            (
                "from curtailment",
                f(w, "mining_from_curtailment_mwh"),
                f(&k, "mining_from_curtailment_mwh"),
            ),
            ("wear", f(w, "wear_cost_eur"), f(&k, "wear_cost_eur")),
            (
                "mining energy is all the site used more",
                f(w, "import_mwh") - f(wo, "import_mwh") + f(wo, "export_mwh") - f(w, "export_mwh")
                    + f(wo, "curtailed_mwh")
                    - f(w, "curtailed_mwh"),
                f(w, "mining_mwh"),
            ),
        ];
        for (what, a, b) in pairs {
            assert!(close(a, b), "{name}: {what}: {a} != {b}");
        }
        assert_eq!(f(wo, "mining_mwh"), 0.0);
        let months = s["months"].as_array().unwrap();
        assert_eq!(months.len(), k["months"].as_array().unwrap().len());
        let sum: f64 = months.iter().map(|m| f(m, "value_added_eur")).sum();
        assert!(close(sum, f(s, "value_added_eur")), "{name}: months");
        let loads = k["sensitivity"]["loads"].as_array().unwrap();
        assert_eq!(loads.len(), k["loads"].as_array().unwrap().len());
        assert!(f(&k["sensitivity"], "hashprice_mean_eur_per_ph_day") > 0.0);
    }
}
