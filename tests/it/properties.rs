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
    gridminer::scenario::Scenario,
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
            // Issue 11: a wear cost per start on some sites (0, 0.05 or 0.1 EUR, from a
            // field the strategy already varies), so the online profit, starts paid, is
            // checked against a bound that charges them too.
            start_cost_eur: (s.min_off_m % 3) as f64 * 0.05,
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

/// A planner's settings for the property tests: six hours ahead in quarter hours.
fn a_plan() -> gridminer::policy::PlanParams {
    gridminer::policy::PlanParams {
        horizon: Duration::from_secs(6 * 3600),
        step: Duration::from_secs(900),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Issue 14: a planning policy balances, never imports in surplus-only, and never
    /// beats the clairvoyant bound either.
    #[test]
    fn r14_a_plan_balances_and_stays_under_the_bound(s in site()) {
        let (mut sc, replay) = build(&s, s.hashprice, true);
        sc.policy.plan = Some(a_plan());
        let k = sim::run(&sc, &replay, SimOptions::default()).expect("energy balance holds").kpis;
        if s.surplus_only {
            prop_assert!(k.mining_from_import_mwh.abs() < 1e-12, "imported {} MWh", k.mining_from_import_mwh);
        }
        let o = sim::optimum(&sc, &replay, k.profit_eur).expect("the replay is a valid optimum input");
        prop_assert!(k.profit_eur <= o.upper_bound_eur + 1e-9 * (1.0 + o.upper_bound_eur.abs()),
            "plan {} > bound {}", k.profit_eur, o.upper_bound_eur);
    }

    #[test]
    fn balance_import_and_optimum(s in site()) {
        let (sc, replay) = build(&s, s.hashprice, true);
        // `run` checks generation + import = load + mining + export + curtailment at
        // every step and fails otherwise.
        let k = sim::run(&sc, &replay, SimOptions::default()).expect("energy balance holds").kpis;
        if s.surplus_only {
            prop_assert!(k.mining_from_import_mwh.abs() < 1e-12, "imported {} MWh", k.mining_from_import_mwh);
        }
        let o = sim::optimum(&sc, &replay, k.profit_eur).expect("the replay is a valid optimum input");
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

    /// Issue 14: a planning policy (`plans`) keeps every wear limit too.
    #[test]
    fn wear_limits_are_never_broken(s in site(), plans in any::<bool>()) {
        let mut s = s;
        // Import headroom for every load at once: no hard limit ever forces a stop.
        s.surplus_only = false;
        s.import_limit = s.load + 12.0 * 3500.0 + 12.0 * 3250.0 + 1000.0;
        let (mut sc, replay) = build(&s, s.hashprice, true);
        if plans {
            sc.policy.plan = Some(a_plan());
        }
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
    /// Issue 14: also where the memo carries a plan (`plans`).
    #[test]
    fn the_memo_never_changes_a_decision(s in site(), plans in any::<bool>()) {
        use gridminer::controller::Controller;
        use gridminer::signal::{Observation, Quantity};
        use gridminer::units::{Hashprice, PricePerMwh};

        let (mut sc, replay) = build(&s, s.hashprice, true);
        if plans {
            sc.policy.plan = Some(a_plan());
        }
        let mut ctl = Controller::new(sim::policy_for(&sc), sim::max_ages_for(&sc));
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
                let fresh = ctl.preview(at);
                let memoised = ctl.step(at, &[]);
                prop_assert_eq!(&memoised, &fresh, "step {} at {}", i, at);
            }
        }
    }
}

/// One thing that happens to a site between two decisions.
#[derive(Debug, Clone)]
enum Event {
    /// PV and site load readings (W), or none (the feeds go quiet and age).
    Feed(Option<(f64, f64)>),
    Frequency(f64),
    /// (operator 0..3, action 0..3 = curtail/setpoint/release, watts)
    Command(usize, u8, f64),
    Failsafe(Option<f64>),
    /// Time passes, seconds.
    Wait(u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        prop::option::of((0.0f64..120_000.0, 0.0f64..20_000.0)).prop_map(Event::Feed),
        (48.5f64..51.5).prop_map(Event::Frequency),
        (0usize..3, 0u8..3, 0.0f64..60_000.0).prop_map(|(o, a, w)| Event::Command(o, a, w)),
        prop::option::of(0.0f64..40_000.0).prop_map(Event::Failsafe),
        (1u64..400).prop_map(Event::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Issue 9: every limit is a cap and nothing lifts mining above the minimum of the
    /// caps in force: stale signals (`safe_limit`), frequency shed, the failsafe, every
    /// operator curtailment, the import limit. Checked against caps recomputed here from
    /// the inputs, at every step of random event sequences, with wear limits that would
    /// like to hold units on. A lower-priority operator never ends the TSO's curtailment.
    #[test]
    fn r9_nothing_lifts_mining_above_the_tightest_cap(
        events in prop::collection::vec(event(), 1..60),
        safe_limit in 0.0f64..30_000.0,
        import_limit in 0.0f64..40_000.0,
        min_on_s in 0u64..900,
        start_cost_eur in prop_oneof![Just(0.0), 0.0f64..5.0],
        plans in any::<bool>(),
    ) {
        use gridminer::clock::Timestamp;
        use gridminer::controller::Controller;
        use gridminer::policy::{FrequencyResponse, Policy};
        use gridminer::signal::OperatorAction;
        use gridminer::site::{ExportValue, Tariff};
        use gridminer::signal::{Issuer, Observation, Quantity};
        use gridminer::units::{Hashprice, Hertz, PricePerMwh};

        let mut params = policy(Mode::Economic, 0.0, 5.0);
        params.safe_limit = Watts(safe_limit);
        params.max_signal_age = Duration::from_secs(120);
        params.min_on = Duration::from_secs(min_on_s);
        // Issue 14: a plan chooses unit counts below every cap, never above one.
        params.plan = plans.then(a_plan);
        params.frequency = Some(FrequencyResponse {
            nominal: Hertz(50.0),
            shed_below: Hertz(49.8),
            absorb_above: Hertz(50.2),
            hold: Duration::ZERO,
        });
        // Issue 11: a start cost must never lift mining above a cap either.
        let wear = WearLimits { start_cost_eur, ..WearLimits::default() };
        let loads = vec![
            asic("a", 6, 3500.0, 200.0, PowerLevels::Range { min: Watts(2000.0) }, wear),
            asic("b", 6, 3250.0, 90.0, PowerLevels::OnOff, wear),
            cpu(400.0, 150.0),
        ];
        let grid = GridConnection { export_limit: Watts(5_000.0), import_limit: Watts(import_limit) };
        let tariff = Tariff { import_adder: PricePerMwh(0.0), export: ExportValue::DayAhead };
        let mut ctl = Controller::new(Policy::new(params, loads, grid, tariff, true, false), Default::default());
        let operators = [("tso", 100u32), ("agg", 10), ("agg2", 10)];
        let mut now = Timestamp(1_527_854_400_000);
        // What this test knows independently of the state.
        let mut last_feed: Option<(Timestamp, f64, f64)> = None;
        let mut freq: Option<(Timestamp, f64)> = None;
        let mut failsafe: Option<f64> = None;
        let mut tso_curtail: Option<f64> = None;
        for e in events {
            match e {
                Event::Feed(Some((pv, load))) => {
                    ctl.observe(Observation::Power { quantity: Quantity::PvPower, value: Watts(pv), at: now });
                    ctl.observe(Observation::Power { quantity: Quantity::SiteLoad, value: Watts(load), at: now });
                    ctl.observe(Observation::Price { value: PricePerMwh(-20.0), at: now });
                    ctl.observe(Observation::Hashprice { value: Hashprice(1e4), at: now });
                    last_feed = Some((now, pv, load));
                }
                Event::Feed(None) => {}
                Event::Frequency(f) => {
                    ctl.observe(Observation::Frequency { value: Hertz(f), at: now });
                    freq = Some((now, f));
                }
                Event::Command(o, a, w) => {
                    let (id, priority) = operators[o];
                    let action = match a {
                        0 => OperatorAction::CurtailTo(Watts(w)),
                        1 => OperatorAction::Setpoint(Watts(w)),
                        _ => OperatorAction::Release,
                    };
                    let issuer = Issuer { id: id.into(), priority };
                    let admitted = ctl.state().commands.admit(&issuer, &action, now).is_ok();
                    ctl.observe(Observation::Operator { issuer, action, until: None, at: now });
                    if id == "tso" {
                        tso_curtail = match action {
                            OperatorAction::CurtailTo(w) => Some(w.0),
                            _ => None,
                        };
                    } else if tso_curtail.is_some() {
                        prop_assert!(!(a == 2 && admitted && ctl.state().commands.all().iter().all(|c| c.issuer.id != "tso")),
                            "{id} released the TSO's curtailment");
                    }
                }
                Event::Failsafe(f) => {
                    ctl.observe(Observation::Failsafe { limit: f.map(Watts), at: now });
                    failsafe = f;
                }
                Event::Wait(s) => now = now + Duration::from_secs(s),
            }
            let d = ctl.step(now, &[]);
            let total = d.total().0;
            let mut cap = f64::INFINITY;
            let fresh = last_feed.filter(|(at, _, _)| now.since(*at) <= Duration::from_secs(120));
            match fresh {
                Some((_, pv, load)) => cap = cap.min(pv - load + import_limit).max(0.0),
                None => cap = cap.min(safe_limit),
            }
            if freq.is_some_and(|(at, f)| now.since(at) <= Duration::from_secs(120) && f < 49.8) {
                cap = 0.0;
            }
            if let Some(f) = failsafe {
                cap = cap.min(f);
            }
            if let Some(w) = tso_curtail {
                cap = cap.min(w);
                prop_assert!(ctl.state().commands.all().iter().any(|c| c.issuer.id == "tso"),
                    "the TSO's curtailment was lost");
            }
            for c in ctl.state().commands.all() {
                if let OperatorAction::CurtailTo(w) = c.action {
                    cap = cap.min(w.0);
                }
            }
            prop_assert!(total <= cap + 1e-6, "mining {total} W above the tightest cap {cap} W: {d:?}");
        }
    }
}

/// A problem injected into a generated site config, and where it must be reported.
#[derive(Debug, Clone, PartialEq)]
enum Injected {
    /// `tick = 1e300` (seconds): panicked in `Duration::from_secs_f64`.
    Tick,
    /// `max_signal_age = "1e20d"`.
    MaxSignalAge,
    /// `frequency.hold = "1e300s"`.
    Hold,
    /// `frequency.shed_below_hz = -5.0`.
    ShedHz,
    ImportLimitNan,
    ExportLimitNegative,
    PvCapacityInf,
    HashpriceInf,
    AdderNan,
    /// `safe_limit` above the import limit plus the PV.
    SafeLimitHuge,
    /// Load k's name is load 0's (k >= 1).
    DuplicateName(usize),
    /// Load k's `rated_power = "-3 W"`.
    NegativeRated(usize),
    /// Load k's `min_on = "1e300s"`.
    AbsurdMinOn(usize),
    /// Load k's `colour = "red"`.
    UnknownKey(usize),
    /// Load k's `min_power = "3 kilowatts"`.
    BadUnit(usize),
    /// Signal k's `max_age = "1e300s"`.
    SignalMaxAge(usize),
    /// Signal k's `unit = "horsepower"`.
    SignalUnit(usize),
    /// Operator k's `max_lifetime = "1e20d"`.
    OperatorLifetime(usize),
}

impl Injected {
    fn path(&self) -> String {
        match self {
            Injected::Tick => "tick".into(),
            Injected::MaxSignalAge => "policy.max_signal_age".into(),
            Injected::Hold => "policy.frequency.hold".into(),
            Injected::ShedHz => "policy.frequency.shed_below_hz".into(),
            Injected::ImportLimitNan => "site.import_limit".into(),
            Injected::ExportLimitNegative => "site.export_limit".into(),
            Injected::PvCapacityInf => "site.pv_capacity".into(),
            Injected::HashpriceInf => "hashprice".into(),
            Injected::AdderNan => "tariff.import_adder_eur_mwh".into(),
            Injected::SafeLimitHuge => "policy.safe_limit".into(),
            Injected::DuplicateName(k) => format!("loads[{k}].name"),
            Injected::NegativeRated(k) => format!("loads[{k}].rated_power"),
            Injected::AbsurdMinOn(k) => format!("loads[{k}].min_on"),
            Injected::UnknownKey(k) => format!("loads[{k}].colour"),
            Injected::BadUnit(k) => format!("loads[{k}].min_power"),
            Injected::SignalMaxAge(k) => format!("signals[{k}].max_age"),
            Injected::SignalUnit(k) => format!("signals[{k}].unit"),
            Injected::OperatorLifetime(k) => format!("operators[{k}].max_lifetime"),
        }
    }
}

/// A site config: its sizes, its valid values, and what was broken in it.
#[derive(Debug, Clone)]
struct SiteFile {
    loads: usize,
    signals: usize,
    operators: usize,
    import_kw: u32,
    pv_kw: u32,
    counts: Vec<u32>,
    injected: Vec<Injected>,
}

fn site_file() -> impl Strategy<Value = SiteFile> {
    (1usize..6, 1usize..5, 1usize..4, 1u32..1000, 0u32..1000)
        .prop_flat_map(|(loads, signals, operators, import_kw, pv_kw)| {
            let per_load = (0..loads).prop_flat_map(move |k| {
                let mut v = vec![
                    Just(Injected::NegativeRated(k)).boxed(),
                    Just(Injected::AbsurdMinOn(k)).boxed(),
                    Just(Injected::UnknownKey(k)).boxed(),
                    Just(Injected::BadUnit(k)).boxed(),
                ];
                if k > 0 {
                    v.push(Just(Injected::DuplicateName(k)).boxed());
                }
                prop::strategy::Union::new(v)
            });
            let any_injection = prop_oneof![
                Just(Injected::Tick),
                Just(Injected::MaxSignalAge),
                Just(Injected::Hold),
                Just(Injected::ShedHz),
                Just(Injected::ImportLimitNan),
                Just(Injected::ExportLimitNegative),
                Just(Injected::PvCapacityInf),
                Just(Injected::HashpriceInf),
                Just(Injected::AdderNan),
                Just(Injected::SafeLimitHuge),
                per_load,
                (0..signals).prop_map(Injected::SignalMaxAge),
                (0..signals).prop_map(Injected::SignalUnit),
                (0..operators).prop_map(Injected::OperatorLifetime),
            ];
            (
                Just((loads, signals, operators, import_kw, pv_kw)),
                prop::collection::vec(1u32..20, loads),
                // Half the files are valid.
                prop::option::of(prop::collection::vec(any_injection, 1..8)),
            )
        })
        .prop_map(
            |((loads, signals, operators, import_kw, pv_kw), counts, injected)| {
                let mut injected = injected.unwrap_or_default();
                injected.dedup();
                let mut unique = Vec::new();
                for i in injected {
                    if !unique.contains(&i) {
                        unique.push(i);
                    }
                }
                SiteFile {
                    loads,
                    signals,
                    operators,
                    import_kw,
                    pv_kw,
                    counts,
                    injected: unique,
                }
            },
        )
}

impl SiteFile {
    fn has(&self, i: &Injected) -> bool {
        self.injected.contains(i)
    }

    /// The value of a key: `broken` where `i` was injected, else `good`.
    fn pick(&self, i: Injected, good: String, broken: &str) -> String {
        if self.has(&i) {
            broken.to_string()
        } else {
            good
        }
    }

    fn text(&self) -> String {
        let q = |s: &str| format!("\"{s}\"");
        let mut t = String::new();
        t += "site_id = \"prop\"\n";
        t += &format!("tick = {}\n", self.pick(Injected::Tick, q("1s"), "1e300"));
        t += &format!(
            "hashprice = {}\n",
            self.pick(Injected::HashpriceInf, "50.0".into(), "inf")
        );
        t += "[policy]\nmode = \"economic\"\n";
        t += &format!(
            "max_signal_age = {}\n",
            self.pick(Injected::MaxSignalAge, q("5m"), "\"1e20d\"")
        );
        // At most the import limit plus the PV; above it when injected.
        let safe = if self.has(&Injected::SafeLimitHuge) {
            (self.import_kw + self.pv_kw) * 1000 + 1
        } else {
            self.import_kw * 1000
        };
        t += &format!("safe_limit = \"{safe} W\"\n");
        t += &format!(
            "frequency = {{ nominal_hz = 50.0, shed_below_hz = {}, absorb_above_hz = 50.2, hold = {} }}\n",
            self.pick(Injected::ShedHz, "49.8".into(), "-5.0"),
            self.pick(Injected::Hold, q("30s"), "\"1e300s\"")
        );
        t += "[site]\npv = true\n";
        t += &format!(
            "pv_capacity = {}\n",
            self.pick(
                Injected::PvCapacityInf,
                q(&format!("{} kW", self.pv_kw)),
                "inf"
            )
        );
        t += &format!(
            "import_limit = {}\n",
            self.pick(
                Injected::ImportLimitNan,
                q(&format!("{} kW", self.import_kw)),
                "nan"
            )
        );
        t += &format!(
            "export_limit = {}\n",
            self.pick(Injected::ExportLimitNegative, q("5 kW"), "\"-5 kW\"")
        );
        t += &format!(
            "[tariff]\nexport = \"day-ahead\"\nimport_adder_eur_mwh = {}\n",
            self.pick(Injected::AdderNan, "100.0".into(), "nan")
        );
        t += "[mqtt]\nbroker = \"embedded\"\nlisten = \"127.0.0.1:0\"\n";
        for k in 0..self.signals {
            t += &format!("[[signals]]\ntopic = \"prop/s{k}\"\nquantity = \"site_load\"\n");
            t += &format!(
                "unit = {}\n",
                self.pick(Injected::SignalUnit(k), q("kW"), "\"horsepower\"")
            );
            if self.has(&Injected::SignalMaxAge(k)) {
                t += "max_age = \"1e300s\"\n";
            }
        }
        for k in 0..self.loads {
            t += &format!("[[loads]]\nkind = \"mqtt\"\ntopic = \"prop/l{k}/setpoint\"\n");
            let name = if self.has(&Injected::DuplicateName(k)) {
                "l0".to_string()
            } else {
                format!("l{k}")
            };
            t += &format!("name = \"{name}\"\ncount = {}\n", self.counts[k]);
            t += &format!(
                "rated_power = {}\n",
                self.pick(Injected::NegativeRated(k), q("3 kW"), "\"-3 W\"")
            );
            t += "hashrate = \"100 TH/s\"\n";
            if self.has(&Injected::AbsurdMinOn(k)) {
                t += "min_on = \"1e300s\"\n";
            }
            if self.has(&Injected::UnknownKey(k)) {
                t += "colour = \"red\"\n";
            }
            if self.has(&Injected::BadUnit(k)) {
                t += "min_power = \"3 kilowatts\"\n";
            }
        }
        for k in 0..self.operators {
            t += &format!(
                "[[operators]]\nid = \"op{k}\"\nalg = \"HS256\"\nsecret = \"operator-{k}-secret-0123456789abcdef0123\"\npriority = {k}\n"
            );
            if self.has(&Injected::OperatorLifetime(k)) {
                t += "max_lifetime = \"1e20d\"\n";
            }
        }
        t
    }

    /// The paths that must be reported. A check between values runs only on values that
    /// parsed: a `frequency` table whose `hold` is unreadable is set aside whole (so its
    /// thresholds go unchecked), and `safe_limit` is not compared with a NaN or infinite
    /// limit or capacity (those are reported themselves).
    fn expected(&self) -> Vec<String> {
        self.injected
            .iter()
            .filter(|i| match i {
                Injected::ShedHz => !self.has(&Injected::Hold),
                Injected::SafeLimitHuge => {
                    !self.has(&Injected::ImportLimitNan) && !self.has(&Injected::PvCapacityInf)
                }
                _ => true,
            })
            .map(Injected::path)
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// r9 holes 6 and 7: `config check` (its library entry point, as `run --config`
    /// reads the file too) never panics on a generated site config, accepts the valid
    /// ones, and reports every injected problem at its own key path, and nothing else.
    #[test]
    fn r9_config_check_reports_every_injected_problem(f in site_file()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.toml");
        let text = f.text();
        std::fs::write(&path, &text).unwrap();
        let reported: Vec<String> = match gridminer::cli::check::check_file(&path) {
            Ok(kind) => {
                prop_assert_eq!(kind, "site");
                Vec::new()
            }
            Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
        };
        let expected = f.expected();
        for path in &expected {
            prop_assert!(
                reported.iter().any(|r| r.starts_with(&format!("{path}: "))),
                "{} not reported in\n{}\nfor\n{}", path, reported.join("\n"), text
            );
        }
        // Nothing else: every problem reported belongs to an injected one.
        let injected: Vec<String> = f.injected.iter().map(Injected::path).collect();
        for r in &reported {
            prop_assert!(
                injected.iter().any(|p| r.starts_with(&format!("{p}: "))),
                "{} reported, but not injected:\n{}", r, text
            );
        }
        prop_assert_eq!(reported.is_empty(), f.injected.is_empty(), "{}", text);
    }
}

/// Where a leaf value sits in a TOML document: table keys and array indices.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every leaf (a value that is not a table or an array of tables) of `v`, by its path.
fn leaves(v: &toml::Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                at.push(Step::Key(k.clone()));
                leaves(x, at, out);
                at.pop();
            }
        }
        toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                at.push(Step::Index(i));
                leaves(x, at, out);
                at.pop();
            }
        }
        _ => out.push(at.clone()),
    }
}

fn leaf_mut<'a>(v: &'a mut toml::Value, path: &[Step]) -> &'a mut toml::Value {
    path.iter().fold(v, |v, s| match (s, v) {
        (Step::Key(k), toml::Value::Table(t)) => t.get_mut(k).expect("a leaf path"),
        (Step::Index(i), toml::Value::Array(a)) => &mut a[*i],
        _ => unreachable!("paths come from `leaves`"),
    })
}

/// Values a hostile or careless file might hold anywhere.
fn junk() -> impl Strategy<Value = toml::Value> {
    use toml::Value::{Array, Boolean, Float, Integer, String as Str, Table};
    prop_oneof![
        prop::sample::select(vec![
            1e300,
            -1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            0.0,
            1.8e19,
            -0.0,
            5e-324,
        ])
        .prop_map(Float),
        prop::sample::select(vec![
            i64::MAX,
            i64::MIN,
            -1,
            0,
            4_000_000_000,
            18_446_744_073_709_552
        ])
        .prop_map(Integer),
        prop::sample::select(vec![
            "1e300s",
            "1e20d",
            "-1s",
            "nan",
            "inf W",
            "1e308 GW",
            "-5 kW",
            "",
            "x",
            "99999999999999999999d",
            "0ms",
            "1e-300s",
            "2100-01-01T00:00:00Z",
            "/",
            "#",
        ])
        .prop_map(|s| Str(s.to_string())),
        Just(Boolean(true)),
        Just(Array(Vec::new())),
        Just(Table(Default::default())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// r9 holes 6 and 7, beyond the injected problems: any leaf of a valid site or
    /// scenario file replaced by junk never panics `config check`, and a refused file's
    /// every problem names where it is.
    #[test]
    fn r9_config_check_never_panics_on_junk(
        scenario in any::<bool>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), junk()), 1..6),
    ) {
        let good = if scenario { super::validate::SCENARIO } else { super::validate::GOOD_SITE };
        let mut doc = toml::Value::Table(good.parse().unwrap());
        let mut all = Vec::new();
        leaves(&doc, &mut Vec::new(), &mut all);
        for (i, v) in &picks {
            *leaf_mut(&mut doc, &all[i.index(all.len())]) = v.clone();
        }
        let text = toml::to_string(&doc).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = gridminer::cli::check::check_file(&path) {
            for p in e.problems() {
                prop_assert!(!p.path.is_empty() && !p.message.is_empty(), "{p:?} in\n{text}");
            }
        }
    }
}
