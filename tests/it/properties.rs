//! Properties over random sites, series and policies: the energy balance holds (the
//! simulator checks it every step and fails otherwise), surplus-only never imports for
//! mining, the online profit never beats the clairvoyant bound, a higher hashprice never
//! means less mining, and wear limits are never broken.

use std::collections::HashMap;
use std::time::Duration;

use gridminer::policy::Mode;
use gridminer::sim::{self, SimOptions};
use gridminer::site::{GridConnection, LoadSpec, PowerLevels, WearLimits};
use gridminer::units::Watts;
use proptest::prelude::*;

use super::support::{asic, cpu, policy, scenario_in_memory};

#[derive(Debug, Clone)]
struct Site {
    hours: usize,
    pv_hourly: Vec<f64>,
    load: f64,
    price_hourly: Vec<f64>,
    export_limit: f64,
    import_limit: f64,
    a_count: u32,
    a_range: bool,
    b_count: u32,
    b_ths: f64,
    hashprice: f64,
    margin: f64,
    hysteresis: f64,
    min_on_m: u64,
    min_off_m: u64,
    max_starts: Option<u32>,
    surplus_only: bool,
}

fn site() -> impl Strategy<Value = Site> {
    (6usize..30)
        .prop_flat_map(|hours| {
            (
                (
                    Just(hours),
                    prop::collection::vec(0.0f64..150_000.0, hours),
                    0.0f64..20_000.0,
                    prop::collection::vec(-60.0f64..160.0, hours),
                    0.0f64..80_000.0,
                    0.0f64..60_000.0,
                ),
                (1u32..12, any::<bool>(), 1u32..12, 50.0f64..120.0),
                (
                    10.0f64..150.0,
                    0.0f64..20.0,
                    0.0f64..10.0,
                    0u64..40,
                    0u64..40,
                    prop::option::of(1u32..6),
                    any::<bool>(),
                ),
            )
        })
        .prop_map(
            |(
                (hours, pv_hourly, load, price_hourly, export_limit, import_limit),
                (a_count, a_range, b_count, b_ths),
                (hashprice, margin, hysteresis, min_on_m, min_off_m, max_starts, surplus_only),
            )| Site {
                hours,
                pv_hourly,
                load,
                price_hourly,
                export_limit,
                import_limit,
                a_count,
                a_range,
                b_count,
                b_ths,
                hashprice,
                margin,
                hysteresis,
                min_on_m,
                min_off_m,
                max_starts,
                surplus_only,
            },
        )
}

const STEP: Duration = Duration::from_secs(300);

fn build(
    s: &Site,
    hashprice: f64,
    wear: bool,
) -> (
    gridminer::config::Scenario,
    gridminer::signal::replay::Replay,
) {
    let per_hour = 12;
    let n = s.hours * per_hour;
    // Hourly values, interpolated linearly within the hour for PV, held for prices.
    let pv: Vec<f64> = (0..n)
        .map(|i| {
            let h = i / per_hour;
            let f = (i % per_hour) as f64 / per_hour as f64;
            let next = s.pv_hourly.get(h + 1).copied().unwrap_or(s.pv_hourly[h]);
            s.pv_hourly[h] * (1.0 - f) + next * f
        })
        .collect();
    let price: Vec<f64> = (0..n).map(|i| s.price_hourly[i / per_hour]).collect();
    let limits = if wear {
        WearLimits {
            min_on: Duration::from_secs(60 * s.min_on_m),
            min_off: Duration::from_secs(60 * s.min_off_m),
            max_starts_per_day: s.max_starts,
        }
    } else {
        WearLimits::default()
    };
    let a_levels = if s.a_range {
        PowerLevels::Range { min: Watts(2000.0) }
    } else {
        PowerLevels::OnOff
    };
    let loads: Vec<LoadSpec> = vec![
        asic("a", s.a_count, 3500.0, 200.0, a_levels, limits),
        asic("b", s.b_count, 3250.0, s.b_ths, PowerLevels::OnOff, limits),
        cpu(400.0, 150.0),
    ];
    let mode = if s.surplus_only {
        Mode::SurplusOnly
    } else {
        Mode::Economic
    };
    scenario_in_memory(
        policy(mode, s.margin, s.hysteresis),
        loads,
        GridConnection {
            export_limit: Watts(s.export_limit),
            import_limit: Watts(s.import_limit),
        },
        STEP,
        pv,
        vec![s.load; n],
        price,
        hashprice,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn balance_import_and_optimum(s in site()) {
        let (sc, replay) = build(&s, s.hashprice, true);
        // `run` checks generation + import = load + mining + export + curtailment at
        // every step and fails otherwise.
        let k = sim::run(&sc, &replay, SimOptions::default()).expect("energy balance holds").kpis;
        if s.surplus_only {
            prop_assert!(k.mining_from_import_mwh.abs() < 1e-12, "imported {} MWh", k.mining_from_import_mwh);
        }
        let o = sim::optimum(&sc, &replay, k.profit_eur);
        prop_assert!(k.profit_eur <= o.upper_bound_eur + 1e-9 * (1.0 + o.upper_bound_eur.abs()),
            "online {} > bound {}", k.profit_eur, o.upper_bound_eur);
        prop_assert!(o.feasible_eur <= o.upper_bound_eur + 1e-9 * (1.0 + o.upper_bound_eur.abs()));
    }

    #[test]
    fn a_higher_hashprice_never_means_less_mining(s in site(), factor in 1.0f64..3.0) {
        let mut s = s;
        s.surplus_only = false;
        let (sc, replay) = build(&s, s.hashprice, false);
        let (sc2, replay2) = build(&s, s.hashprice * factor, false);
        let low = sim::run(&sc, &replay, SimOptions::default()).unwrap().kpis.mining_mwh;
        let high = sim::run(&sc2, &replay2, SimOptions::default()).unwrap().kpis.mining_mwh;
        prop_assert!(high >= low - 1e-9, "hashprice x{factor}: {high} MWh < {low} MWh");
    }

    #[test]
    fn wear_limits_are_never_broken(s in site()) {
        let mut s = s;
        // Import headroom for every load at once: no hard limit ever forces a stop.
        s.surplus_only = false;
        s.import_limit = s.load + 12.0 * 3500.0 + 12.0 * 3250.0 + 1000.0;
        let (sc, replay) = build(&s, s.hashprice, true);
        let run = sim::run(&sc, &replay, SimOptions { trace_switches: true, ..Default::default() }).unwrap();
        let min_on = Duration::from_secs(60 * s.min_on_m);
        let min_off = Duration::from_secs(60 * s.min_off_m);
        let mut last: HashMap<(usize, usize), gridminer::clock::Timestamp> = HashMap::new();
        let mut starts: HashMap<(usize, usize, i64), u32> = HashMap::new();
        for sw in run.switches.iter().filter(|sw| sw.load < 2) {
            let key = (sw.load, sw.unit);
            if let Some(prev) = last.get(&key) {
                let held = sw.at.since(*prev);
                if sw.on {
                    prop_assert!(held >= min_off, "{key:?} restarted after {held:?} off < {min_off:?}");
                } else {
                    prop_assert!(held >= min_on, "{key:?} stopped after {held:?} on < {min_on:?}");
                }
            }
            if sw.on {
                let n = starts.entry((sw.load, sw.unit, sw.at.day())).or_default();
                *n += 1;
                if let Some(max) = s.max_starts {
                    prop_assert!(*n <= max, "{key:?} started {n} times in a day > {max}");
                }
            }
            last.insert(key, sw.at);
        }
        prop_assert!(run.kpis.loads.iter().all(|l| l.forced_stops == 0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The controller decides through a memo carried between steps; it must only ever be
    /// a cache: at every step of a run with switching, wear limits and day changes, the
    /// memoised decision equals a fresh `decide` on the same state.
    #[test]
    fn the_memo_never_changes_a_decision(s in site()) {
        use gridminer::controller::Controller;
        use gridminer::state::{Observation, Quantity};
        use gridminer::units::{Hashprice, PricePerMwh};

        let (sc, replay) = build(&s, s.hashprice, true);
        let mut ctl = Controller::new(sim::policy_for(&sc));
        for i in 0..replay.len {
            let at = replay.time(i);
            let power = |quantity, v: f64| Observation::Power { quantity, value: Watts(v), at };
            if let Some(pv) = &replay.pv {
                ctl.observe(power(Quantity::PvPower, pv[i]));
            }
            ctl.observe(power(Quantity::SiteLoad, replay.site_load[i]));
            ctl.observe(Observation::Price { value: PricePerMwh(replay.price[i]), at });
            ctl.observe(Observation::Hashprice { value: Hashprice(replay.hashprice[i]), at });
            // Every fourth step decides twice at the same moment, as a live loop does when
            // a command arrives between ticks.
            for _ in 0..1 + (i % 4 == 0) as usize {
                let fresh = ctl.policy.decide(&ctl.state, at);
                let memoised = ctl.step(at);
                prop_assert_eq!(&memoised, &fresh, "step {} at {}", i, at);
            }
        }
    }
}
