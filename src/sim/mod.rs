//! The simulator: the live controller's `step`, fed by `Replay`, with simulated time and
//! simulated loads, and an energy account kept at every step.
//!
//! Nothing here decides: `Controller::step` does, exactly as live. This module turns
//! recorded history into observations, hands decisions to `SimulatedLoad`s, and books
//! where every watt went: generation + import = site load + mining + export + curtailment,
//! checked at every step.

pub mod chart;
pub mod compare;
pub mod html;
pub mod kpi;
pub use crate::optimum;
pub mod output;
pub mod report;
pub mod site;
pub mod svg;
pub mod sweep;

use std::time::Duration;

use crate::actuator::simulated::SimulatedLoad;
use crate::clock::Timestamp;
use crate::config::ConfigError;
use crate::controller::{Controller, MaxAges};
use crate::decision::{Decision, Reason, ALL_REASONS};
use crate::policy::{Policy, Tiers};
use crate::scenario::Scenario;
use crate::signal::replay::{Replay, SignalError};
use crate::signal::{Observation, Quantity};
use crate::state::Reading;
use crate::units::{CarbonIntensity, Hashprice, PricePerMwh, Watts};

use kpi::Accumulator;
pub use kpi::{Kpis, LoadKpis, MonthKpis};
pub use output::Timeseries;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error("energy balance broken at step {step} ({at}): {detail}")]
    EnergyBalance {
        step: usize,
        at: Timestamp,
        detail: String,
    },
    #[error("writing {path}: {message}")]
    Output { path: String, message: String },
    /// The clairvoyant optimum's input was rejected (a replay with values it cannot
    /// price, such as an overflowing tier); the run's own KPIs are unaffected.
    #[error("clairvoyant optimum: {0}")]
    Optimum(#[from] optimum::InputError),
    #[error("scenario {scenario:?} broke its bounds:\n  - {}", broken.join("\n  - "))]
    Bounds {
        scenario: String,
        broken: Vec<String>,
    },
}

/// What a run keeps besides the KPIs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimOptions {
    /// Keep every step's inputs, decision and load powers.
    pub record: bool,
    /// Keep every unit's switch times (for checking wear limits).
    pub trace_switches: bool,
    /// Keep every step's decision (for comparing with the live step path).
    pub decisions: bool,
}

/// A unit switching, as the simulator saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Switch {
    pub load: usize,
    pub unit: usize,
    pub at: Timestamp,
    pub on: bool,
}

#[derive(Debug, Clone)]
pub struct SimRun {
    pub kpis: Kpis,
    pub timeseries: Option<Timeseries>,
    pub switches: Vec<Switch>,
    /// Every step's decision, with `SimOptions::decisions`.
    pub decisions: Vec<Decision>,
}

/// Builds the policy a scenario describes.
pub fn policy_for(sc: &Scenario) -> Policy {
    Policy::new(
        sc.policy.clone(),
        sc.loads.clone(),
        sc.grid,
        sc.tariff,
        sc.history.pv.is_some(),
        sc.history.wind.is_some(),
    )
    .with_decision_step(sc.history.step)
    .with_location(sc.location)
}

/// The maximum age of each quantity the scenario's series feed.
pub fn max_ages_for(sc: &Scenario) -> MaxAges {
    let mut ages = MaxAges::default();
    for (q, age) in sc.history.max_ages() {
        ages.limit(q, age);
    }
    ages
}

/// Replays `replay` through the scenario's policy.
pub fn run(sc: &Scenario, replay: &Replay, opts: SimOptions) -> Result<SimRun, SimError> {
    run_into(sc, replay, opts, None)
}

/// [`run`], writing the ledger a site would have written (`simulate --ledger`): the same
/// accountant on the same controller state, after every step.
pub fn run_into(
    sc: &Scenario,
    replay: &Replay,
    opts: SimOptions,
    mut ledger: Option<&mut crate::ledger::recorder::Recorder>,
) -> Result<SimRun, SimError> {
    let policy = policy_for(sc);
    let mut ctl = Controller::new(policy, max_ages_for(sc));
    // What the loads drew over the step before, as they report it: the mining power the
    // controller sees, as live it reads the loads' meters.
    let mut drawn: Vec<Option<Reading<Watts>>> = vec![None; sc.loads.len()];
    let fed: Vec<Quantity> = sc.history.columns().into_iter().map(|(q, _)| q).collect();
    let mut stale_steps = vec![0usize; fed.len()];
    let mut decisions = Vec::new();
    let mut loads: Vec<SimulatedLoad> = sc
        .loads
        .iter()
        .map(|l| SimulatedLoad::new(l).starting_at(replay.start))
        .collect();
    let step = replay.step;
    let step_h = step.as_secs_f64() / 3600.0;
    let mut acc = Accumulator::new(sc, replay);
    let mut ts = opts.record.then(|| Timeseries::new(&sc.loads, replay.len));
    let mut switches = Vec::new();
    let mut prev_on: Vec<Vec<bool>> = sc
        .loads
        .iter()
        .map(|l| vec![false; l.count as usize])
        .collect();

    let mut operator = sc.operator.clone();
    operator.sort_by_key(|e| e.at);
    let mut next_op = 0;

    // What the physics uses where the data has a hole: the last value seen (0 before any).
    let mut phys = Physics::default();

    // A planning policy reads the day-ahead schedule as far as the auction had
    // published it (`published_until`), a new one each day after the auction.
    let plans = sc.policy.plan.is_some();
    let mut published = None;

    // Each load's power this step, one slot per load however many (a fixed array of 16
    // once dropped loads 17+ from the time series); every slot is written each step.
    let mut per_load = vec![0.0f64; sc.loads.len()];
    // The hashes of the step the controller books next: a step's energy is booked at the
    // step after it, from what the loads then report.
    let mut unbooked_hashes = 0.0;
    for i in 0..replay.len {
        let now = replay.time(i);
        let pv = replay.pv.as_ref().map_or(0.0, |v| v[i]);
        let wind = replay.wind.as_ref().map_or(0.0, |v| v[i]);
        let (load, price, hp) = (replay.site_load[i], replay.price[i], replay.hashprice[i]);
        let power = |q, v: f64| Observation::Power {
            quantity: q,
            value: Watts(v),
            at: now,
        };
        if replay.pv.is_some() && !pv.is_nan() {
            ctl.observe(power(Quantity::PvPower, pv));
        }
        if replay.wind.is_some() && !wind.is_nan() {
            ctl.observe(power(Quantity::WindPower, wind));
        }
        if !load.is_nan() {
            ctl.observe(power(Quantity::SiteLoad, load));
        }
        if !price.is_nan() {
            ctl.observe(Observation::Price {
                value: PricePerMwh(price),
                at: now,
            });
        }
        if !hp.is_nan() {
            ctl.observe(Observation::Hashprice {
                value: Hashprice(hp),
                at: now,
            });
        }
        // The grid's intensity, as live from its signal; in a gap of the mix the state
        // has none (not the last hour's), so the controller books that grid energy
        // unrated.
        let carbon = replay.carbon_intensity.as_ref().map_or(f64::NAN, |v| v[i]);
        let intensity = Observation::CarbonIntensity {
            value: CarbonIntensity(carbon),
            at: now,
        };
        if !carbon.is_nan() {
            ctl.observe(intensity);
        } else {
            ctl.forget(&intensity);
        }
        if plans {
            let until = published_until(now);
            if published != Some(until) {
                published = Some(until);
                ctl.observe(Observation::PriceSchedule {
                    entries: day_ahead_schedule(replay, now, until),
                    at: now,
                });
            }
        }
        while next_op < operator.len() && operator[next_op].at <= now {
            let e = &operator[next_op];
            ctl.observe(Observation::Operator {
                issuer: crate::signal::Issuer::scenario(),
                action: e.action,
                until: e.until,
                at: e.at,
            });
            next_op += 1;
        }

        let decision = ctl.step(now, &drawn);
        if let Some(l) = ledger.as_deref_mut() {
            let work = crate::ledger::account::Work {
                hashes: unbooked_hashes,
                shares_accepted: 0,
            };
            l.after_step(now, ctl.state(), work);
        }
        for (n, q) in stale_steps.iter_mut().zip(&fed) {
            if ctl.is_stale(*q, now) {
                *n += 1;
            }
        }

        let mut mining = 0.0;
        let mut hashes = 0.0;
        for (k, (sim, ledger)) in loads.iter_mut().zip(&ctl.state().loads).enumerate() {
            // The ledger's booking: the units actually switched, with the target power.
            sim.apply(ledger.target);
            let o = sim.advance(step);
            drawn[k] = Some(Reading {
                value: o.power,
                at: now + step,
            });
            mining += o.power.0;
            hashes += o.hashes;
            per_load[k] = o.power.0;
            acc.load(k, o.power.0 * step_h, o.hashes, hp_or(hp, phys.hashprice));
            acc.starts(k, ledger.total_starts);
        }
        unbooked_hashes = hashes;
        if opts.trace_switches {
            for (k, ledger) in ctl.state().loads.iter().enumerate() {
                for (u, unit) in ledger.units.iter().enumerate() {
                    if unit.on != prev_on[k][u] {
                        switches.push(Switch {
                            load: k,
                            unit: u,
                            at: now,
                            on: unit.on,
                        });
                        prev_on[k][u] = unit.on;
                    }
                }
            }
        }

        // Physics of the step.
        phys.update(
            pv,
            wind,
            load,
            price,
            hp,
            replay.pv.is_some(),
            replay.wind.is_some(),
        );
        let generation = phys.pv + phys.wind;
        let flows = |mining| site::Flows::of(Watts(generation), Watts(phys.load), mining, &sc.grid);
        let f = flows(Watts(mining));
        let (export, import, curtailed) = (f.export.0, f.import.0, f.curtailed.0);
        let balance = generation + import - (phys.load + mining + export + curtailed);
        let scale = 1.0 + generation.abs() + phys.load.abs() + mining.abs();
        if !(balance.abs() <= 1e-9 * scale) || !mining.is_finite() || mining < 0.0 {
            return Err(SimError::EnergyBalance {
                step: i,
                at: now,
                detail: format!(
                    "generation {generation} W + import {import} W != site load {} W + mining {mining} W + export {export} W + curtailment {curtailed} W (off by {balance} W)",
                    phys.load
                ),
            });
        }
        let tiers = Tiers::new(
            Watts(generation - phys.load),
            &sc.grid,
            &sc.tariff,
            PricePerMwh(phys.price),
            true,
        );
        let split = tiers.split(Watts(mining));
        let curtailed_without = flows(Watts::ZERO).curtailed.0;
        let co2 = acc.step(kpi::StepFlows {
            at: now,
            step_h,
            generation,
            site_load: phys.load,
            mining,
            export,
            import,
            curtailed,
            curtailed_without,
            split,
            export_value: tiers.export_cost.0,
            import_price: tiers.import_cost.0,
            hashes,
            hashprice: phys.hashprice,
            reason: decision.reason,
            import_over_limit: import > sc.grid.import_limit.0 + 1e-6,
            pv_share: if generation > 0.0 {
                phys.pv / generation
            } else {
                1.0
            },
            carbon_intensity: carbon,
        });
        if let Some(ts) = ts.as_mut() {
            ts.push(
                now,
                [pv, wind, load, price, hp],
                &decision,
                &per_load,
                [mining, export, import, curtailed, curtailed_without],
                [carbon, split.import.0, co2],
            );
        }
        if opts.decisions {
            decisions.push(decision);
        }
    }
    if let Some(l) = ledger {
        let end = replay.time(replay.len.saturating_sub(1));
        l.close(end, ctl.state());
    }
    let mut kpis = acc.finish(&ctl.state().loads, site::without_mining(sc, replay));
    let account = &ctl.state().energy;
    kpis.carbon.account_grid_co2eq_t = account.grid_co2eq_g / 1e6;
    kpis.carbon.account_grid_unrated_mwh = account.grid_unrated.0 / 1e6;
    kpis.stale_steps = fed
        .iter()
        .zip(stale_steps)
        .map(|(q, n)| (q.as_str().to_string(), n))
        .collect();
    Ok(SimRun {
        kpis,
        timeseries: ts,
        switches,
        decisions,
    })
}

/// The end of the day-ahead prices a real auction has published by `now`. EPEX's
/// day-ahead auction closes at 12:00 CET (11:00 UTC in winter, 10:00 in summer) and
/// publishes the next delivery day, which ends at midnight CET (23:00 UTC, or 22:00 in
/// summer). Taken the safe way round all year (published at 11:00 UTC, ending at 22:00
/// UTC), the simulated planner never sees a price before it was known.
pub fn published_until(now: Timestamp) -> Timestamp {
    const HOUR: i64 = 3_600_000;
    let day = now.day();
    let auction = day * Timestamp::MS_PER_DAY + 11 * HOUR;
    let last_day = if now.0 >= auction { day + 1 } else { day };
    Timestamp(last_day * Timestamp::MS_PER_DAY + 22 * HOUR)
}

/// The replay's prices as a published schedule: quarter hours (or the replay's steps,
/// if coarser) from a day before `now` up to `until`, a gap in the data left out.
pub fn day_ahead_schedule(
    replay: &Replay,
    now: Timestamp,
    until: Timestamp,
) -> Vec<(Timestamp, PricePerMwh)> {
    const QUARTER: i64 = 900_000;
    let step_ms = (replay.step.as_millis() as i64).max(1);
    let grid = QUARTER.max(step_ms);
    let from = now.0 - Timestamp::MS_PER_DAY;
    let mut t = from.div_euclid(grid) * grid;
    let mut out = Vec::new();
    while t < until.0 {
        let offset = t - replay.start.0;
        if offset >= 0 {
            let i = (offset / step_ms) as usize;
            match replay.price.get(i) {
                Some(p) if !p.is_nan() => out.push((Timestamp(t), PricePerMwh(*p))),
                Some(_) => {}
                None => break,
            }
        }
        t += grid;
    }
    out
}

fn hp_or(hp: f64, held: f64) -> f64 {
    if hp.is_nan() {
        held
    } else {
        hp
    }
}

/// The physical world where the data has holes: the last value seen.
#[derive(Debug, Default)]
struct Physics {
    pv: f64,
    wind: f64,
    load: f64,
    price: f64,
    hashprice: f64,
}

impl Physics {
    /// Takes step `i` of `replay`.
    fn read(&mut self, replay: &Replay, i: usize) {
        self.update(
            replay.pv.as_ref().map_or(0.0, |v| v[i]),
            replay.wind.as_ref().map_or(0.0, |v| v[i]),
            replay.site_load[i],
            replay.price[i],
            replay.hashprice[i],
            replay.pv.is_some(),
            replay.wind.is_some(),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        pv: f64,
        wind: f64,
        load: f64,
        price: f64,
        hp: f64,
        has_pv: bool,
        has_wind: bool,
    ) {
        let set = |slot: &mut f64, v: f64| {
            if !v.is_nan() {
                *slot = v;
            }
        };
        if has_pv {
            set(&mut self.pv, pv);
        }
        if has_wind {
            set(&mut self.wind, wind);
        }
        set(&mut self.load, load);
        set(&mut self.price, price);
        set(&mut self.hashprice, hp);
    }
}

/// Steps per reason code, in `ALL_REASONS` order.
pub fn reason_index(r: Reason) -> usize {
    ALL_REASONS
        .iter()
        .position(|x| *x == r)
        .expect("every reason is listed")
}

/// Checks the scenario's bounds; each broken one is named with its value.
pub fn check_bounds(sc: &Scenario, k: &Kpis) -> Result<(), SimError> {
    let b = &sc.bounds;
    let mut broken = Vec::new();
    if let Some(min) = b.min_profit_eur {
        if k.profit_eur < min {
            broken.push(format!(
                "profit {:.0} EUR < min_profit_eur {min}",
                k.profit_eur
            ));
        }
    }
    if let Some(min) = b.min_absorbed_share {
        if k.absorbed_share < min {
            broken.push(format!(
                "absorbed share {:.3} < min_absorbed_share {min}",
                k.absorbed_share
            ));
        }
    }
    if let Some(max) = b.max_grid_import_mwh {
        if k.mining_from_import_mwh > max {
            broken.push(format!(
                "mining from grid import {:.3} MWh > max_grid_import_mwh {max}",
                k.mining_from_import_mwh
            ));
        }
    }
    if let Some(max) = b.max_starts_per_device_day {
        for l in &k.loads {
            if l.max_starts_in_a_day as f64 > max {
                broken.push(format!(
                    "{}: {} starts in one day > max_starts_per_device_day {max}",
                    l.name, l.max_starts_in_a_day
                ));
            }
        }
    }
    if let (Some(min), Some(o)) = (b.min_ratio_to_optimum, &k.optimum) {
        if o.ratio < min {
            broken.push(format!(
                "ratio to optimum {:.3} < min_ratio_to_optimum {min}",
                o.ratio
            ));
        }
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(SimError::Bounds {
            scenario: sc.name.clone(),
            broken,
        })
    }
}

/// Duration of a replay.
pub fn span(replay: &Replay) -> Duration {
    replay.step * replay.len as u32
}

/// A recorded run with the clairvoyant optimum beside it, as `simulate` does it: the
/// optimum's feasible schedule is solved on one core while the replay runs on the other
/// (it needs nothing from the run), and the bounds, which aim at the online profit,
/// after it.
pub fn run_with_optimum(
    sc: &Scenario,
    replay: &Replay,
    opts: SimOptions,
    ledger: Option<&mut crate::ledger::recorder::Recorder>,
) -> Result<SimRun, SimError> {
    let t0 = std::time::Instant::now();
    let problem = OptimumProblem::new(sc, replay);
    let (run, feasible) = rayon::join(|| run_into(sc, replay, opts, ledger), || problem.feasible());
    let mut run = run?;
    let mut o = problem.finish(feasible?, run.kpis.profit_eur)?;
    o.solve_seconds = t0.elapsed().as_secs_f64();
    run.kpis.optimum = Some(o);
    Ok(run)
}

/// The clairvoyant optimum on the same data and limits as `sc`, compared with `online`.
pub fn optimum(
    sc: &Scenario,
    replay: &Replay,
    online_profit: f64,
) -> Result<kpi::OptimumKpis, SimError> {
    let t0 = std::time::Instant::now();
    let problem = OptimumProblem::new(sc, replay);
    let feasible = problem.feasible()?;
    let mut o = problem.finish(feasible, online_profit)?;
    o.solve_seconds = t0.elapsed().as_secs_f64();
    Ok(o)
}

/// The optimum's input, built once from a scenario and its replay: per-step tiers, the
/// hashprice, and the unit classes with their wear limits in whole steps.
struct OptimumProblem {
    step_h: f64,
    free: Vec<f64>,
    export: Vec<f64>,
    export_cost: Vec<f64>,
    import: Vec<f64>,
    import_cost: Vec<f64>,
    hashprice: Vec<f64>,
    day: Vec<i64>,
    classes: Vec<optimum::UnitClass>,
    /// The same classes with no least power: what the bounds use (see `finish`).
    relaxed: Vec<optimum::UnitClass>,
}

impl OptimumProblem {
    fn new(sc: &Scenario, replay: &Replay) -> Self {
        let n = replay.len;
        let mut phys = Physics::default();
        let mut p = OptimumProblem {
            step_h: replay.step.as_secs_f64() / 3600.0,
            free: Vec::with_capacity(n),
            export: Vec::with_capacity(n),
            export_cost: Vec::with_capacity(n),
            import: Vec::with_capacity(n),
            import_cost: Vec::with_capacity(n),
            hashprice: Vec::with_capacity(n),
            day: Vec::with_capacity(n),
            classes: Vec::new(),
            relaxed: Vec::new(),
        };
        let allow_import = sc.policy.mode == crate::policy::Mode::Economic;
        for i in 0..n {
            let pv = replay.pv.as_ref().map_or(0.0, |v| v[i]);
            let wind = replay.wind.as_ref().map_or(0.0, |v| v[i]);
            phys.update(
                pv,
                wind,
                replay.site_load[i],
                replay.price[i],
                replay.hashprice[i],
                replay.pv.is_some(),
                replay.wind.is_some(),
            );
            let t = Tiers::new(
                Watts(phys.pv + phys.wind - phys.load),
                &sc.grid,
                &sc.tariff,
                PricePerMwh(phys.price),
                allow_import,
            );
            p.free.push(t.free.0);
            p.export.push(t.export.0);
            p.export_cost.push(t.export_cost.0);
            p.import.push(t.import.0);
            p.import_cost.push(t.import_cost.0);
            p.hashprice.push(phys.hashprice);
            p.day.push(replay.time(i).day());
        }
        p.classes = policy_for(sc).unit_classes(replay.step);
        // Simulated units draw less than their lowest power while they wake and ramp, so
        // the bounds let an "on" unit draw anything down to zero: a little looser, but no
        // realised schedule can beat them.
        p.relaxed = p
            .classes
            .iter()
            .map(|c| optimum::UnitClass {
                min_power_w: 0.0,
                ..c.clone()
            })
            .collect();
        p
    }

    fn input<'a>(&'a self, classes: &'a [optimum::UnitClass]) -> optimum::OptimumInput<'a> {
        optimum::OptimumInput {
            step_h: self.step_h,
            day: &self.day,
            hashprice: &self.hashprice,
            tiers: optimum::Tiers {
                free_w: &self.free,
                export_w: &self.export,
                export_cost: &self.export_cost,
                import_w: &self.import,
                import_cost: &self.import_cost,
            },
            classes,
            max_iterations: 30,
            tolerance: 1e-3,
        }
    }

    /// The best schedule that keeps every wear limit, with units drawing at least their
    /// lowest power whenever on.
    fn feasible(&self) -> Result<optimum::Feasible, optimum::InputError> {
        optimum::feasible(&self.input(&self.classes))
    }

    /// The bounds, and the figures beside the online run. The Lagrangian aims its steps
    /// at the best profit known and is not needed when the exact no-wear optimum
    /// already meets it. `solve_seconds` is left for the caller.
    fn finish(
        &self,
        feasible: optimum::Feasible,
        online_profit: f64,
    ) -> Result<kpi::OptimumKpis, SimError> {
        let relaxed = self.input(&self.relaxed);
        // The online run is a feasible schedule too: the best known is the better of two.
        let (feasible_eur, feasible_source) = if online_profit > feasible.feasible_eur {
            (online_profit, kpi::FeasibleSource::Online)
        } else {
            (feasible.feasible_eur, kpi::FeasibleSource::Solver)
        };
        let bounds = optimum::bounds(&relaxed, feasible_eur)?;
        let (no_wear, lagrangian) = (bounds.no_wear_eur, bounds.lagrangian.map(|(l, _)| l));
        let iterations = bounds.lagrangian.map_or(0, |(_, n)| n);
        let (upper, bound) = optimum::tighter(lagrangian.unwrap_or(f64::INFINITY), no_wear);
        Ok(kpi::OptimumKpis {
            upper_bound_eur: upper,
            bound,
            lagrangian_bound_eur: lagrangian,
            no_wear_bound_eur: no_wear,
            feasible_eur,
            feasible_source,
            feasible_wear_cost_eur: feasible.feasible_wear_cost_eur,
            gap: optimum::relative_gap(upper, feasible_eur),
            // Doing nothing earns 0, so the bound is never below it; where it is 0 there
            // was nothing to earn, and a policy that lost nothing got all of it.
            ratio: if upper > 0.0 {
                online_profit / upper
            } else if online_profit >= upper {
                1.0
            } else {
                0.0
            },
            iterations,
            solve_seconds: 0.0,
        })
    }
}
