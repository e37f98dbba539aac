//! Issue 12: the clairvoyant optimum keeps the same wear limits as the ledger, reports
//! the tighter of its two bounds, and its best schedule is never below the online run.

use gridminer::config::Override;
use gridminer::scenario::load_scenario;
use gridminer::signal::replay::Replay;
use gridminer::sim::{self, SimOptions};

use super::support::root;

/// Surplus for one second in three, then import at 300 EUR/MWh: a unit worth about 60
/// EUR/MWh pays only if it can stop after the one free second.
fn spikes(dir: &std::path::Path) -> std::path::PathBuf {
    let mut csv = String::from("timestamp,pv_kw,price\n");
    for i in 0..240 {
        let pv = if i % 3 == 0 { 12.0 } else { 0.0 };
        csv += &format!("2018-06-01T10:{:02}:{:02}Z,{pv},200\n", i / 60, i % 60);
    }
    std::fs::write(dir.join("gen.csv"), csv).unwrap();
    let policy = root().join("policies/economic.toml");
    let scenario = format!(
        r#"
name = "spikes"
policy = "{}"
step = "1s"
hashprice = 50.0

[[series]]
name = "gen"
file = "gen.csv"

[site]
pv = {{ series = "gen", column = "pv_kw", unit = "kW" }}
base_load = "1 kW"
export_limit = "1 kW"
import_limit = "20 kW"

[tariff]
price = {{ series = "gen", column = "price" }}
import_adder_eur_mwh = 100.0
export = "day-ahead"

[[loads]]
kind = "asic"
name = "s19"
count = 2
rated_power = "3250 W"
hashrate = "95 TH/s"
"#,
        policy.display()
    );
    let path = dir.join("s.toml");
    std::fs::write(&path, scenario).unwrap();
    path
}

fn optimum_with_min_on(path: &std::path::Path, min_on: &str) -> (sim::Kpis, sim::kpi::OptimumKpis) {
    let set = |s: &str| Override::parse(s).unwrap();
    let sc = load_scenario(
        path,
        &[
            set(&format!("policy.min_on=\"{min_on}\"")),
            set("policy.min_off=\"0s\""),
            set("policy.max_starts_per_day=100000"),
        ],
    )
    .unwrap();
    let replay = Replay::load(&sc.history).unwrap();
    let k = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis;
    let o = sim::optimum(&sc, &replay, k.profit_eur).unwrap();
    (k, o)
}

/// r12 defect 2: `min_on = "1500ms"` at 1 s steps became one step in the optimum (the
/// seconds were truncated before rounding up) while the ledger enforces 1.5 s, that is
/// two steps; the "feasible" schedule ran every one-second spike alone and was far above
/// what any schedule keeping the limit can earn. Both sides now round up to whole steps:
/// 1.5 s is exactly 2 s, and 1 s (which does let a unit take the spikes alone) differs.
#[test]
fn r12_sub_second_wear_limits_round_up_to_whole_steps_as_the_ledger_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = spikes(dir.path());
    let (k15, o15) = optimum_with_min_on(&path, "1500ms");
    let (_, o20) = optimum_with_min_on(&path, "2s");
    let (_, o10) = optimum_with_min_on(&path, "1s");
    assert_eq!(o15.feasible_eur, o20.feasible_eur, "{o15:?}\n{o20:?}");
    assert_eq!(o15.upper_bound_eur, o20.upper_bound_eur);
    assert!(
        o10.feasible_eur > o20.feasible_eur + 1e-6,
        "one-second runs take the spikes: {o10:?} vs {o20:?}"
    );
    assert!(k15.profit_eur <= o15.upper_bound_eur + 1e-9, "{k15:?}");
    assert!(o15.feasible_eur <= o15.upper_bound_eur + 1e-9);
}

/// r12 defect 5: the best feasible schedule was once below the online policy's own run,
/// which is itself feasible, so the optimum's "best known" was not. It is now the better
/// of the two, says which, and the gap between it and the bound is reported as the
/// optimum's own uncertainty. Checked on the shipped measured PV site at the hashprice
/// of the defect (0: nothing but negative energy costs pays) and at the scenario's own,
/// and on the spikes fixture.
#[test]
fn r12_the_best_known_schedule_is_never_below_the_online_run() {
    let set = |s: &str| Override::parse(s).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fixture = spikes(dir.path());
    let pv = root().join("simulations/pvdaq-system50.toml");
    let window = [
        set("start=\"2011-06-01T00:00:00Z\""),
        set("end=\"2011-06-15T00:00:00Z\""),
    ];
    let mut cases = vec![(fixture, Vec::new())];
    for hp in ["0.0", "50.0"] {
        let mut o = window.to_vec();
        o.push(set(&format!("hashprice={hp}")));
        cases.push((pv.clone(), o));
    }
    for (path, overrides) in cases {
        let sc = load_scenario(&path, &overrides).unwrap();
        let replay = Replay::load(&sc.history).unwrap();
        let k = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis;
        let o = sim::optimum(&sc, &replay, k.profit_eur).unwrap();
        let slack = 1e-9 * (1.0 + o.upper_bound_eur.abs());
        assert!(
            o.feasible_eur >= k.profit_eur,
            "{}: {o:?} {}",
            sc.name,
            k.profit_eur
        );
        assert!(k.profit_eur <= o.upper_bound_eur + slack, "{o:?}");
        assert!(o.feasible_eur <= o.upper_bound_eur + slack, "{o:?}");
        assert_eq!(
            o.upper_bound_eur,
            o.no_wear_bound_eur
                .min(o.lagrangian_bound_eur.unwrap_or(f64::INFINITY))
        );
        let gap =
            (o.upper_bound_eur - o.feasible_eur) / o.upper_bound_eur.abs().max(f64::MIN_POSITIVE);
        assert!(
            (o.gap - gap).abs() <= 1e-12 || o.upper_bound_eur == o.feasible_eur,
            "{o:?}"
        );
        assert!(o.ratio <= 1.0 + 1e-9, "{o:?}");
    }
}
