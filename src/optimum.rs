//! Clairvoyant optimum for the simulation report: with perfect foresight of a
//! whole replay, how much profit could the site's miners have made at most?
//!
//! Role: given the per-step energy tiers (curtailed, exported, imported power
//! and their costs), the hashprice and the classes of mining units with their
//! wear limits, [`solve`] returns
//! * an **upper bound** on the best achievable profit (no feasible schedule,
//!   in particular not the online policy's realised one, can beat it), from a
//!   Lagrangian relaxation of the power balance tightened by a deflected
//!   Polyak subgradient method, and
//! * a **feasible schedule** and its exact profit (a lower bound on the
//!   optimum), built by exact per-unit-group dynamic programmes in merit order.
//!
//! [`schedule_profit`] prices any schedule (class totals per step) exactly, so
//! the online accounting can be cross-checked against the same cost model.
//!
//! What it must not do: depend on the rest of the crate, do I/O, read clocks,
//! or approximate the bound. Every number reported as `upper_bound_eur` is the
//! exact value of the Lagrangian dual at some price vector, which is a valid
//! bound by weak duality even when the tier cost is non-convex. Approximations
//! (grouping of identical units, merit order) are allowed only on the
//! feasible side, where they can only make the schedule worse, never invalid.
//!
//! # Model
//! * Step `t` lasts `step_h` hours. Power is in W, prices in EUR/MWh, money in
//!   EUR; one W held for one step is `step_h / 1e6` MWh.
//! * Mining power `M_t` consumes the tiers in the order given (curtailed at
//!   0 EUR/MWh, then export at `export_cost`, then import at `import_cost`),
//!   because a site cannot import while it still exports. The step cost
//!   `C_t(M)` is the integral of that step-wise tier cost over `[0, M]`; it is
//!   non-convex when `export_cost > import_cost`, and that is handled exactly.
//! * A unit of class `c` earns `hashprice[t] * value_per_hashprice` EUR/MWh for
//!   each MWh it draws. An *on* unit draws any power in
//!   `[min_power_w, rated_w]`; an *off* unit draws nothing.
//! * Wear limits, per unit. A unit switched on at step `t` (off at `t-1`, on at
//!   `t`) stays on for steps `t ..= t + min_on_steps - 1` at least; a unit
//!   switched off at step `t` stays off for `t ..= t + min_off_steps - 1` at
//!   least (0 and 1 both mean "no limit"). A start counts against
//!   `max_starts_per_day` of the day `day[t]` of its first on step. Runs cut
//!   by the end of the horizon need not complete their minimum length, just as
//!   in a truncated replay. Every unit starts off at `t = 0` with its off timer
//!   satisfied and no start used.
//! * Each start (an on step after an off one, or being on at `t = 0`) costs the
//!   class's `start_cost_eur` per unit, taken off the profit. The one-unit
//!   programme charges it on the start transition, so it stays exact, and with
//!   it the bound (the dual still prices every feasible schedule, wear and all).
//! * Continuous classes (the CPU pool) draw any power in `[0, count * rated_w]`
//!   at every step, with no on/off state and no wear limits (`min_power_w` and
//!   the wear fields are ignored for them).
//!
//! Caveat worth knowing when reading the report: with `min_power_w == 0` an on
//! unit can idle at no cost, so keeping every unit on for the whole horizon is
//! as good as any switching pattern and the wear limits never bind. The
//! optimum then equals the per-step optimum. Wear limits only cost profit
//! when an on unit must draw something (`min_power_w > 0`).

use rayon::prelude::*;

/// W in one MW: prices are per MWh while powers are in W.
const W_PER_MW: f64 = 1.0e6;

/// At most this many dynamic programmes per switched class when building the
/// feasible schedule. Units of a group share one on/off schedule, which keeps a
/// class of hundreds of units cheap; a finer split can only help the feasible
/// value, never the bound.
const MAX_GROUPS_PER_CLASS: u32 = 16;

/// Relative tolerance under which two candidate values count as tied when
/// choosing a subgradient. Only the step direction uses it, never a bound.
const TIE_REL_TOL: f64 = 1e-9;

/// First Polyak step factor; the method converges for factors in (0, 2).
const POLYAK_FACTOR_START: f64 = 1.0;
/// The Polyak factor is halved, and the search restarts from the best prices,
/// after this many evaluations without a better bound: the target (the
/// feasible value) underestimates the dual optimum, so full steps overshoot
/// once the gap is mostly primal, and the starting prices are often already
/// close to dual-optimal.
const STALLED_EVALUATIONS_BEFORE_HALVING: u32 = 3;
/// Below this factor the steps no longer move the bound measurably.
const POLYAK_FACTOR_MIN: f64 = 1e-3;
/// Camerini-Fratta-Maffioli deflection weight: mixing in the previous
/// direction damps the zig-zag of bang-bang subgradients.
const DEFLECTION_WEIGHT: f64 = 1.5;

/// Relative slack allowed when a priced schedule exceeds the tiers' total, so
/// that rounding in the caller's accounting is not taken for infeasibility.
const CAPACITY_REL_SLACK: f64 = 1e-9;

/// Dynamic-programme value of an unreachable state.
const UNREACHABLE: f64 = f64::NEG_INFINITY;

/// Energy available to mining per step, in merit order of cost. All slices
/// have one entry per step.
#[derive(Clone, Copy, Debug)]
pub struct Tiers<'a> {
    /// Power that would otherwise be curtailed, W (>= 0); costs nothing.
    pub free_w: &'a [f64],
    /// Power that would otherwise be exported, W (>= 0).
    pub export_w: &'a [f64],
    /// Forgone export value, EUR/MWh; negative at negative prices.
    pub export_cost: &'a [f64],
    /// Remaining grid import capacity, W (>= 0); 0 in surplus-only mode.
    pub import_w: &'a [f64],
    /// Import price, EUR/MWh; may be negative.
    pub import_cost: &'a [f64],
}

/// A class of identical mining units.
#[derive(Clone, Debug)]
pub struct UnitClass {
    pub name: String,
    /// Number of identical units.
    pub count: u32,
    /// Power of one unit at full speed, W (> 0).
    pub rated_w: f64,
    /// Least power an on unit draws, W, in `[0, rated_w]`. 0 reproduces the
    /// plain model in which wear limits cannot bind (see the module doc).
    pub min_power_w: f64,
    /// Value earned per MWh consumed, per unit of hashprice:
    /// value EUR/MWh at step t = `hashprice[t] * value_per_hashprice`.
    pub value_per_hashprice: f64,
    /// A unit switched on at t stays on for t ..= t + min_on_steps - 1.
    pub min_on_steps: u32,
    /// A unit switched off at t stays off for t ..= t + min_off_steps - 1.
    pub min_off_steps: u32,
    /// Starts per unit per calendar day (`day[t]`); `None` for no limit.
    pub max_starts_per_day: Option<u32>,
    /// CPU-pool-like load: any power in `[0, count * rated_w]`, no on/off.
    pub continuous: bool,
    /// What one start of one unit costs (wear), EUR, finite and >= 0; ignored for
    /// continuous classes.
    pub start_cost_eur: f64,
}

/// Everything [`solve`] needs; plain data, no link to the rest of the crate.
#[derive(Clone, Copy, Debug)]
pub struct OptimumInput<'a> {
    /// Length of one step, hours (> 0).
    pub step_h: f64,
    /// Calendar day of each step (any non-decreasing key, e.g. UTC days since
    /// the epoch); starts are counted per distinct value.
    pub day: &'a [i64],
    /// Hashprice per step, in whatever unit `value_per_hashprice` expects.
    pub hashprice: &'a [f64],
    pub tiers: Tiers<'a>,
    pub classes: &'a [UnitClass],
    /// Cap on Lagrangian evaluations (the first, at the starting prices,
    /// always happens).
    pub max_iterations: u32,
    /// Stop once `(upper - feasible) / |upper|` is at most this.
    pub tolerance: f64,
}

/// Which of the two upper bounds is the tighter one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoundKind {
    /// The Lagrangian dual of the power balance: prices wear limits, but convexifies a
    /// non-convex tier cost (negative prices, a feed-in tariff above the import price).
    Lagrangian,
    /// The exact optimum without wear limits, step by step: exact for any tier cost,
    /// blind to wear limits.
    NoWear,
}

impl std::fmt::Display for BoundKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BoundKind::Lagrangian => "Lagrangian dual (wear limits priced)",
            BoundKind::NoWear => "exact optimum without wear limits",
        })
    }
}

/// Result of [`solve`]. Money in EUR over the whole horizon.
#[derive(Clone, Debug)]
pub struct OptimumResult {
    /// No feasible schedule earns more than this: the tighter of the two bounds.
    pub upper_bound_eur: f64,
    /// Which bound `upper_bound_eur` is.
    pub bound: BoundKind,
    /// The best Lagrangian value seen.
    pub lagrangian_eur: f64,
    /// The exact optimum without wear limits ([`no_wear_bound`]).
    pub no_wear_eur: f64,
    /// Exact profit of the feasible schedule found, its starts' cost taken off (a
    /// lower bound on the optimum).
    pub feasible_eur: f64,
    /// What the feasible schedule's starts cost, EUR (already in `feasible_eur`).
    pub feasible_wear_cost_eur: f64,
    /// Lagrangian evaluations made.
    pub iterations: u32,
    /// `(upper_bound_eur - feasible_eur) / |upper_bound_eur|`, 0 when both are 0.
    pub gap: f64,
    /// Total mining power of the feasible schedule per step, W.
    pub feasible_power_w: Vec<f64>,
}

/// Why an input cannot be solved or a schedule cannot be priced: the boundary error of
/// [`validate`], [`solve`] and [`schedule_profit`], which check rather than panic.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InputError {
    /// A per-step series does not have `day.len()` entries.
    #[error("{field} has {len} steps, expected {expected}")]
    LengthMismatch {
        field: &'static str,
        len: usize,
        expected: usize,
    },
    /// `step_h` is not a positive finite number.
    #[error("step_h must be positive and finite")]
    BadStep,
    /// `tolerance` is NaN or negative.
    #[error("tolerance must be a finite number >= 0")]
    BadTolerance,
    /// `day` decreases at this step.
    #[error("day decreases at step {step}")]
    DayDecreases { step: usize },
    /// A value is NaN or infinite, or a power is negative.
    #[error("{field} at step {step} is not finite (or is a negative power)")]
    BadValue { field: &'static str, step: usize },
    /// Finite values whose sum or product is not: the step's tiers (power or cost) or a
    /// class's value at some step overflow to infinity.
    #[error("{field} at step {step} overflows: the values are too large to add up")]
    Overflow { field: &'static str, step: usize },
    /// A class parameter is out of range.
    #[error("class {class:?}: {reason}")]
    BadClass { class: String, reason: &'static str },
    /// A schedule to price does not have one series per class, or a series has the
    /// wrong length.
    #[error("the schedule has {len} series of {steps_found} steps, expected {expected} classes of {steps} steps")]
    ScheduleShape {
        len: usize,
        expected: usize,
        steps_found: usize,
        steps: usize,
    },
    /// A schedule to price has a negative or non-finite power.
    #[error("the schedule's power for class {class:?} at step {step} is negative or not finite")]
    ScheduleValue { class: String, step: usize },
    /// A schedule to price draws more than the tiers hold: it is not feasible and has no
    /// price.
    #[error("step {step}: mining power {total_w} W exceeds the tiers' total {capacity_w} W")]
    ScheduleOverdraws {
        step: usize,
        total_w: f64,
        capacity_w: f64,
    },
}

/// Checks every invariant [`solve`] relies on; returns the first problem found.
pub fn validate(input: &OptimumInput) -> Result<(), InputError> {
    let steps = input.day.len();
    if !(input.step_h.is_finite() && input.step_h > 0.0) {
        return Err(InputError::BadStep);
    }
    if !(input.tolerance.is_finite() && input.tolerance >= 0.0) {
        return Err(InputError::BadTolerance);
    }
    let series: [(&'static str, &[f64], bool); 6] = [
        ("hashprice", input.hashprice, false),
        ("free_w", input.tiers.free_w, true),
        ("export_w", input.tiers.export_w, true),
        ("export_cost", input.tiers.export_cost, false),
        ("import_w", input.tiers.import_w, true),
        ("import_cost", input.tiers.import_cost, false),
    ];
    for (field, values, is_power) in series {
        if values.len() != steps {
            return Err(InputError::LengthMismatch {
                field,
                len: values.len(),
                expected: steps,
            });
        }
        if let Some(step) = values
            .iter()
            .position(|v| !v.is_finite() || (is_power && *v < 0.0))
        {
            return Err(InputError::BadValue { field, step });
        }
    }
    if let Some(step) = (1..steps).find(|&t| input.day[t] < input.day[t - 1]) {
        return Err(InputError::DayDecreases { step });
    }
    // Finite parts can still add up to infinity, and an infinite tier total would make
    // every comparison with it meaningless (the feasible schedule could no longer be
    // shown to fit).
    if let Some(step) = (0..steps).find(|&t| {
        let curve = StepCurve::new(&input.tiers, t);
        !(curve.edge_w.iter().chain(&curve.integral)).all(|v| v.is_finite())
    }) {
        return Err(InputError::Overflow {
            field: "tiers",
            step,
        });
    }
    for class in input.classes {
        let bad = |reason| {
            Err(InputError::BadClass {
                class: class.name.clone(),
                reason,
            })
        };
        if !(class.rated_w.is_finite() && class.rated_w > 0.0) {
            return bad("rated_w must be positive and finite");
        }
        if !(class.count as f64 * class.rated_w).is_finite() {
            return bad("count * rated_w must be finite");
        }
        if !class.value_per_hashprice.is_finite() {
            return bad("value_per_hashprice must be finite");
        }
        if !class.continuous && !(0.0..=class.rated_w).contains(&class.min_power_w) {
            return bad("min_power_w must lie in [0, rated_w]");
        }
        if !(class.start_cost_eur.is_finite() && class.start_cost_eur >= 0.0) {
            return bad("start_cost_eur must be finite and >= 0");
        }
        if let Some(step) = input
            .hashprice
            .iter()
            .position(|h| !(h * class.value_per_hashprice).is_finite())
        {
            return Err(InputError::Overflow {
                field: "hashprice * value_per_hashprice",
                step,
            });
        }
    }
    Ok(())
}

/// MWh drawn by holding one W for one step.
fn mwh_per_w_step(input: &OptimumInput) -> f64 {
    input.step_h / W_PER_MW
}

/// Exact profit (EUR) of a schedule given as total power per class per step
/// (`per_class_power_w[c][t]`, W, classes in `input.classes` order): value
/// earned minus the tier cost of the summed power. It does not check wear
/// limits or unit counts, only the tiers' total.
///
/// Errors if the input is invalid (see [`validate`]), if the shape does not match, if a
/// power is negative or not finite, or if the summed power exceeds the tiers' total at
/// some step by more than a rounding slack: such a schedule is not feasible and has no
/// price.
pub fn schedule_profit(
    input: &OptimumInput,
    per_class_power_w: &[Vec<f64>],
) -> Result<f64, InputError> {
    validate(input)?;
    let steps = input.day.len();
    let shape_error = |steps_found| InputError::ScheduleShape {
        len: per_class_power_w.len(),
        expected: input.classes.len(),
        steps_found,
        steps,
    };
    if per_class_power_w.len() != input.classes.len() {
        return Err(shape_error(
            per_class_power_w.first().map_or(steps, Vec::len),
        ));
    }
    if let Some(power) = per_class_power_w.iter().find(|p| p.len() != steps) {
        return Err(shape_error(power.len()));
    }
    for (class, power) in input.classes.iter().zip(per_class_power_w) {
        if let Some(step) = power.iter().position(|p| !(p.is_finite() && *p >= 0.0)) {
            return Err(InputError::ScheduleValue {
                class: class.name.clone(),
                step,
            });
        }
    }
    let energy = mwh_per_w_step(input);
    let mut profit = 0.0;
    for t in 0..steps {
        let curve = StepCurve::new(&input.tiers, t);
        let mut total_w = 0.0;
        let mut value = 0.0;
        for (class, power) in input.classes.iter().zip(per_class_power_w) {
            total_w += power[t];
            value += power[t] * input.hashprice[t] * class.value_per_hashprice;
        }
        let capacity_w = curve.total_w();
        // The powers are finite and >= 0 and the capacity finite (both checked above), so
        // this also catches a sum of powers that overflowed to infinity.
        if total_w > capacity_w + CAPACITY_REL_SLACK * capacity_w.max(1.0) {
            return Err(InputError::ScheduleOverdraws {
                step: t,
                total_w,
                capacity_w,
            });
        }
        profit += (value - curve.integral_to(total_w.min(capacity_w))) * energy;
    }
    Ok(profit)
}

/// Solves the clairvoyant problem: Lagrangian upper bound plus a feasible
/// schedule. Deterministic for a given input. Errors, rather than panicking, on an
/// input [`validate`] rejects.
pub fn solve(input: &OptimumInput) -> Result<OptimumResult, InputError> {
    let feasible = feasible(input)?;
    let curves: Vec<StepCurve> = (0..input.day.len())
        .map(|t| StepCurve::new(&input.tiers, t))
        .collect();
    let repeats = repeats(input);
    let (lagrangian_eur, iterations) =
        tighten_bound(input, &curves, &repeats, feasible.feasible_eur);
    let no_wear_eur = no_wear(input, &curves, &repeats);
    let (upper_bound_eur, bound) = tighter(lagrangian_eur, no_wear_eur);
    let gap = relative_gap(upper_bound_eur, feasible.feasible_eur);
    Ok(OptimumResult {
        upper_bound_eur,
        bound,
        lagrangian_eur,
        no_wear_eur,
        feasible_eur: feasible.feasible_eur,
        feasible_wear_cost_eur: feasible.feasible_wear_cost_eur,
        iterations,
        gap,
        feasible_power_w: feasible.feasible_power_w,
    })
}

/// The best schedule found that keeps every wear limit, and what it earns.
#[derive(Clone, Debug)]
pub struct Feasible {
    /// Exact profit, its starts' cost taken off, EUR.
    pub feasible_eur: f64,
    /// What its starts cost, EUR (already in `feasible_eur`).
    pub feasible_wear_cost_eur: f64,
    /// Total mining power per step, W.
    pub feasible_power_w: Vec<f64>,
}

/// The feasible half of [`solve`] alone: no bound.
pub fn feasible(input: &OptimumInput) -> Result<Feasible, InputError> {
    validate(input)?;
    let steps = input.day.len();
    let curves: Vec<StepCurve> = (0..steps)
        .map(|t| StepCurve::new(&input.tiers, t))
        .collect();

    let feasible = build_feasible(input, &curves);
    // Built within the tiers from a validated input (every tier total finite), so pricing
    // it cannot fail; an error here is a bug in `build_feasible`, not bad input.
    let feasible_wear_cost_eur: f64 = feasible
        .groups
        .iter()
        .map(|g| g.units as f64 * input.classes[g.class].start_cost_eur * starts(&g.on) as f64)
        .sum();
    let feasible_eur = schedule_profit(input, &feasible.class_power_w)
        .expect("the feasible schedule fits the tiers by construction")
        - feasible_wear_cost_eur;
    let feasible_power_w: Vec<f64> = (0..steps)
        .map(|t| feasible.class_power_w.iter().map(|p| p[t]).sum())
        .collect();

    Ok(Feasible {
        feasible_eur,
        feasible_wear_cost_eur,
        feasible_power_w,
    })
}

/// Whether each step's inputs (every tier and the hashprice) are exactly the step
/// before's. Data held from 15-minute or hourly intervals onto 1-minute steps repeats
/// itself 15 to 60 times, and a step that repeats the one before, met in the same state,
/// has the same answer: the solver reuses it rather than working it out again.
fn repeats(input: &OptimumInput) -> Vec<bool> {
    let series = [
        input.hashprice,
        input.tiers.free_w,
        input.tiers.export_w,
        input.tiers.export_cost,
        input.tiers.import_w,
        input.tiers.import_cost,
    ];
    (0..input.day.len())
        .map(|t| t > 0 && series.iter().all(|s| s[t].to_bits() == s[t - 1].to_bits()))
        .collect()
}

/// The tighter of a Lagrangian and a no-wear bound, and which it is.
pub fn tighter(lagrangian_eur: f64, no_wear_eur: f64) -> (f64, BoundKind) {
    if no_wear_eur < lagrangian_eur {
        (no_wear_eur, BoundKind::NoWear)
    } else {
        (lagrangian_eur, BoundKind::Lagrangian)
    }
}

/// Both bounds of one input, validated once, its step curves and repeats built once.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// The exact optimum without wear limits ([`no_wear_bound`]).
    pub no_wear_eur: f64,
    /// The best Lagrangian value and the evaluations made; `None` when the no-wear bound
    /// is already within `tolerance` of `target_eur`, where it could only confirm it.
    pub lagrangian: Option<(f64, u32)>,
}

/// The no-wear bound, then the Lagrangian bound unless the first already meets
/// `target_eur` (any achievable profit: the Lagrangian aims its steps at it, and the
/// closer to the optimum, the faster it tightens).
pub fn bounds(input: &OptimumInput, target_eur: f64) -> Result<Bounds, InputError> {
    validate(input)?;
    let curves: Vec<StepCurve> = (0..input.day.len())
        .map(|t| StepCurve::new(&input.tiers, t))
        .collect();
    let repeats = repeats(input);
    let no_wear_eur = no_wear(input, &curves, &repeats);
    let lagrangian = (relative_gap(no_wear_eur, target_eur) > input.tolerance)
        .then(|| tighten_bound(input, &curves, &repeats, target_eur));
    Ok(Bounds {
        no_wear_eur,
        lagrangian,
    })
}

/// The exact optimum without wear limits, EUR: every step on its own, each class drawing
/// anything from 0 to `count * rated_w` (its `min_power_w`, wear limits and start cost
/// dropped). Dropping constraints can only raise the optimum, so this is an upper bound
/// on every schedule, and an exact one for any tier cost: the value of a total power
/// (highest value filled first) is concave and piecewise linear, the tier cost piecewise
/// linear, so the best total lies on a kink of either, and every kink is tried. Where the
/// tier cost is non-convex the Lagrangian dual convexifies it and this is the tighter.
pub fn no_wear_bound(input: &OptimumInput) -> Result<f64, InputError> {
    validate(input)?;
    let curves: Vec<StepCurve> = (0..input.day.len())
        .map(|t| StepCurve::new(&input.tiers, t))
        .collect();
    Ok(no_wear(input, &curves, &repeats(input)))
}

/// [`no_wear_bound`] of a validated input, with its step curves and repeats.
fn no_wear(input: &OptimumInput, curves: &[StepCurve], repeats: &[bool]) -> f64 {
    let mut boxes: Vec<(f64, f64)> = input
        .classes
        .iter()
        .filter(|c| c.count > 0)
        .map(|c| (c.value_per_hashprice, c.count as f64 * c.rated_w))
        .collect();
    // Highest value per hashprice first; a negative hashprice reverses the order.
    boxes.sort_by(|a, b| b.0.total_cmp(&a.0));
    let capacity_w: f64 = boxes.iter().map(|b| b.1).sum();
    let mut previous = 0.0;
    let total: f64 = (0..input.day.len())
        .map(|t| {
            if repeats[t] {
                return previous;
            }
            let curve = &curves[t];
            let hp = input.hashprice[t];
            let ceiling = capacity_w.min(curve.total_w());
            let fill = |m: f64| {
                let mut left = m;
                let mut value = 0.0;
                let mut take = |&(vph, cap): &(f64, f64)| {
                    let p = left.min(cap);
                    left -= p;
                    value += hp * vph * p;
                };
                if hp >= 0.0 {
                    boxes.iter().for_each(&mut take);
                } else {
                    boxes.iter().rev().for_each(&mut take);
                }
                value - curve.integral_to(m)
            };
            let mut best = 0.0f64;
            let mut consider = |m: f64| {
                if m > 0.0 && m <= ceiling {
                    best = best.max(fill(m));
                }
            };
            consider(ceiling);
            curve.edge_w[1..3].iter().for_each(|&m| consider(m));
            let mut cumulative = 0.0;
            let mut kink = |&(_, cap): &(f64, f64)| {
                cumulative += cap;
                consider(cumulative);
            };
            if hp >= 0.0 {
                boxes.iter().for_each(&mut kink);
            } else {
                boxes.iter().rev().for_each(&mut kink);
            }
            previous = best;
            best
        })
        .sum();
    total * mwh_per_w_step(input)
}

/// Starts in one unit's on/off schedule: every off-to-on edge, and being on at the
/// first step (every unit starts off).
pub fn starts(on: &[bool]) -> u64 {
    let mut previous = false;
    let mut n = 0;
    for &o in on {
        n += u64::from(o && !previous);
        previous = o;
    }
    n
}

pub fn relative_gap(upper: f64, lower: f64) -> f64 {
    if upper == lower {
        0.0
    } else {
        (upper - lower) / upper.abs().max(f64::MIN_POSITIVE)
    }
}

// ---------------------------------------------------------------------------
// Tier cost curve of one step
// ---------------------------------------------------------------------------

/// The piecewise-linear cost of one step, before scaling to EUR. Integrals are
/// in W x EUR/MWh; multiply by [`mwh_per_w_step`] for EUR.
#[derive(Clone, Copy, Debug)]
struct StepCurve {
    /// Cumulative power at the tier edges, W: 0, free, free+export, total.
    edge_w: [f64; 4],
    /// Cost integral from 0 to each edge, W x EUR/MWh.
    integral: [f64; 4],
    /// Cost of each tier, EUR/MWh, in consumption order.
    cost: [f64; 3],
}

impl StepCurve {
    fn new(tiers: &Tiers, t: usize) -> Self {
        let width = [tiers.free_w[t], tiers.export_w[t], tiers.import_w[t]];
        let cost = [0.0, tiers.export_cost[t], tiers.import_cost[t]];
        let mut edge_w = [0.0; 4];
        let mut integral = [0.0; 4];
        for i in 0..3 {
            edge_w[i + 1] = edge_w[i] + width[i];
            integral[i + 1] = integral[i] + width[i] * cost[i];
        }
        StepCurve {
            edge_w,
            integral,
            cost,
        }
    }

    fn total_w(&self) -> f64 {
        self.edge_w[3]
    }

    /// Cost integral over [0, m], W x EUR/MWh, for m in [0, total].
    fn integral_to(&self, m: f64) -> f64 {
        for i in 0..3 {
            if m <= self.edge_w[i + 1] {
                return self.integral[i] + (m - self.edge_w[i]) * self.cost[i];
            }
        }
        self.integral[3]
    }

    /// `max over M in [0, total] of (price*M - integral(M))`, in W x EUR/MWh,
    /// with the range of maximising powers. The function is linear on each
    /// tier, so its maximum lies on an edge; taking every edge keeps this
    /// exact when the cost is non-convex, which the bound's validity needs.
    fn dual(&self, price: f64) -> (f64, f64, f64) {
        let scores: [f64; 4] = std::array::from_fn(|i| price * self.edge_w[i] - self.integral[i]);
        let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let scale = 1.0
            + price.abs() * self.edge_w[3]
            + self.integral.iter().map(|v| v.abs()).fold(0.0, f64::max);
        let mut low = f64::INFINITY;
        let mut high = f64::NEG_INFINITY;
        for (score, edge) in scores.iter().zip(self.edge_w) {
            if *score >= best - TIE_REL_TOL * scale {
                low = low.min(edge);
                high = high.max(edge);
            }
        }
        (best, low, high)
    }

    /// Best extra power for a load worth `value` EUR/MWh on top of `used_w`:
    /// maximises `value*p - (integral(used+p) - integral(used))` over
    /// p in [low, high], clipped to what the tiers have left. Returns
    /// `(gain in W x EUR/MWh, p)`, or `None` when even `low` does not fit.
    fn best_increment(
        &self,
        used_w: f64,
        value: f64,
        low_w: f64,
        high_w: f64,
    ) -> Option<(f64, f64)> {
        let room_w = (self.total_w() - used_w).max(0.0);
        if low_w > room_w + CAPACITY_REL_SLACK * self.total_w().max(1.0) {
            return None;
        }
        let low_w = low_w.min(room_w);
        let high_w = high_w.min(room_w).max(low_w);
        let base = self.integral_to(used_w);
        let gain = |p: f64| value * p - (self.integral_to(used_w + p) - base);
        let mut best = (gain(low_w), low_w);
        let mut consider = |p: f64| {
            let g = gain(p);
            if g > best.0 {
                best = (g, p);
            }
        };
        consider(high_w);
        // The gain is linear between tier edges, so interior edges are the
        // only other candidates.
        for edge in &self.edge_w[1..3] {
            let p = edge - used_w;
            if p > low_w && p < high_w {
                consider(p);
            }
        }
        Some(best)
    }
}

// ---------------------------------------------------------------------------
// Exact dynamic programme for one switched unit
// ---------------------------------------------------------------------------

/// Wear limits normalised for the dynamic programme.
#[derive(Clone, Copy, Debug)]
struct Wear {
    /// Steps a run must last at least (>= 1).
    min_on: usize,
    min_off: usize,
    /// Whether starts per day are counted at all. False when the class has no
    /// limit or when the limit cannot bind in the longest day.
    counts_starts: bool,
    /// Starts-used levels tracked: `max_starts + 1` when counting, else 1.
    levels: usize,
}

impl Wear {
    fn new(class: &UnitClass, day: &[i64]) -> Self {
        Wear::starting(class, day, 0, false)
    }

    /// The wear of a unit that has used `starts_used` starts on the first step's day
    /// already: the limit then binds sooner on that day. With `forced_stops` (see
    /// `UnitDp::forced_stops`) a run may be cut after one step.
    fn starting(class: &UnitClass, day: &[i64], starts_used: u32, forced_stops: bool) -> Self {
        // A minimum longer than the horizon means the same as one of the horizon's length
        // (a run cut by the end need not complete), and keeps the delay lines, which are
        // `min_on - 1` slots long, from asking for memory that a huge `min_on_steps`
        // (u32::MAX: 32 GiB) cannot have.
        // One more than the horizon, so that a unit's state held from before it for the
        // whole horizon still fits the delay line.
        let horizon = day.len().max(1) + 1;
        let min_on = (class.min_on_steps.max(1) as usize).min(horizon);
        let min_off = (class.min_off_steps.max(1) as usize).min(horizon);
        let longest_day = longest_run(day);
        // Consecutive starts are at least min_on + min_off steps apart (1 + min_off where
        // a forced stop may cut a run after its first step).
        let shortest_run = if forced_stops { 1 } else { min_on };
        let possible_starts = if longest_day == 0 {
            0
        } else {
            (longest_day - 1) / (shortest_run + min_off) + 1
        };
        match class.max_starts_per_day {
            Some(max) if (max as usize) < possible_starts.saturating_add(starts_used as usize) => {
                Wear {
                    min_on,
                    min_off,
                    counts_starts: true,
                    levels: max as usize + 1,
                }
            }
            _ => Wear {
                min_on,
                min_off,
                counts_starts: false,
                levels: 1,
            },
        }
    }
}

fn longest_run(day: &[i64]) -> usize {
    let mut longest = 0;
    let mut start = 0;
    for t in 0..=day.len() {
        if t == day.len() || day[t] != day[start] {
            longest = longest.max(t - start);
            start = t;
        }
    }
    longest
}

/// Where a unit stands when a horizon begins: on or off, how many more steps that
/// state must hold (what is left of its `min_on` or `min_off`), and the starts it has
/// used on the first step's day. The default, off and free with no start used, is
/// where every unit of the clairvoyant optimum starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UnitStart {
    pub on: bool,
    /// Steps from the first on which the unit must stay as it is; at most the class's
    /// minimum minus one (more is taken as that).
    pub hold_steps: u32,
    /// Starts already made on the first step's day (the one that turned it on among
    /// them, if it is on).
    pub starts_used: u32,
}

/// Where a unit is in its on/off cycle at the end of a step.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// On, switched on at the given step (before the horizon if negative), min_on not
    /// yet served.
    OnYoung(isize),
    /// On for at least min_on steps: free to switch off.
    OnFree,
    /// Off, switched off at the given step (before the horizon if negative), min_off not
    /// yet served.
    OffYoung(isize),
    /// Off for at least min_off steps (or never started): free to start.
    OffFree,
}

/// Reusable work space of the one-unit dynamic programme.
///
/// States are (phase, starts used today). Young phases form a delay line: a
/// run started at step s is young until s + min_on - 1 whatever happens, so it
/// sits in ring slot `s % (min_on - 1)` and no per-step shifting is needed.
/// On values are stored minus the cumulative on-reward, so staying on costs
/// nothing to update either. A step then costs O(levels), not O(states).
struct UnitDp {
    wear: Wear,
    /// Taken off the value at every start, EUR.
    start_cost: f64,
    /// Young-on values relative to the cumulative reward, `[slot][level]`.
    on_ring: Vec<f64>,
    /// Young-off values (absolute), `[slot][level]`.
    off_ring: Vec<f64>,
    on_free: Vec<f64>,
    off_free: Vec<f64>,
    start_candidate: Vec<f64>,
    stop_candidate: Vec<f64>,
    /// Per step and level: bit 0 set when OnFree was entered from the young
    /// line (or by a start when min_on == 1); bit 1 the same for OffFree.
    choice: Vec<u8>,
    /// At each day boundary, for each phase position, the starts level whose
    /// value survived the reset to level 0.
    day_argmax: Vec<u32>,
    /// On/off schedule of the last solution.
    on: Vec<bool>,
    /// The same programme without the start limit, tried first (see [`UnitDp::solve`]).
    unlimited: Option<Box<UnitDp>>,
    /// Where the unit stands before the first step.
    start: UnitStart,
    /// A forbidden step stops a running unit whatever its `min_on` (a higher rule's
    /// forced stop, as live) instead of ruling the run out: the planner's model.
    forced_stops: bool,
    /// With `forced_stops`, per step and level: the start of the young run a forced stop
    /// cut (`isize::MIN`: the stop, if any, came from the free state).
    forced_from: Vec<isize>,
}

const CHOSE_ON_FROM_YOUNG: u8 = 1;
const CHOSE_OFF_FROM_YOUNG: u8 = 2;

impl UnitDp {
    fn new(wear: Wear, start_cost: f64) -> Self {
        let levels = wear.levels;
        UnitDp {
            wear,
            start_cost,
            on_ring: vec![UNREACHABLE; (wear.min_on - 1) * levels],
            off_ring: vec![UNREACHABLE; (wear.min_off - 1) * levels],
            on_free: vec![UNREACHABLE; levels],
            off_free: vec![UNREACHABLE; levels],
            start_candidate: vec![UNREACHABLE; levels],
            stop_candidate: vec![UNREACHABLE; levels],
            choice: Vec::new(),
            day_argmax: Vec::new(),
            on: Vec::new(),
            unlimited: None,
            start: UnitStart::default(),
            forced_stops: false,
            forced_from: Vec::new(),
        }
    }

    /// The same programme in which a forbidden step forces a stop (see `forced_stops`).
    fn with_forced_stops(mut self) -> Self {
        self.forced_stops = true;
        self
    }

    /// The same programme for a unit that stands at `start` before the first step.
    fn starting(mut self, start: UnitStart) -> Self {
        self.start = start;
        self
    }

    /// Best total reward of one unit earning `reward_on[t]` EUR in each on step
    /// (0 when off) under the wear limits; `forbidden[t]` marks steps where the
    /// unit cannot be on. Leaves the optimal schedule in `self.on`.
    ///
    /// With a start limit it first solves without it, in a programme one level deep
    /// instead of `max + 1`: dropping a constraint can only raise the value, so when the
    /// schedule found keeps the limit anyway it is optimal under the limit too, exactly.
    /// Most days of most rewards never want the limit's starts, so the full programme
    /// runs only when the limit binds.
    fn solve(&mut self, day: &[i64], reward_on: &[f64], forbidden: Option<&[bool]>) -> f64 {
        if self.wear.counts_starts {
            let max_starts = (self.wear.levels - 1) as u32;
            let unlimited = self.unlimited.get_or_insert_with(|| {
                Box::new(UnitDp::new(
                    Wear {
                        counts_starts: false,
                        levels: 1,
                        ..self.wear
                    },
                    self.start_cost,
                ))
            });
            unlimited.start = self.start;
            unlimited.forced_stops = self.forced_stops;
            let value = unlimited.solve_exact(day, reward_on, forbidden);
            if keeps_start_limit(&unlimited.on, day, max_starts, self.start) {
                self.on.clone_from(&unlimited.on);
                return value;
            }
        }
        self.solve_exact(day, reward_on, forbidden)
    }

    /// The programme itself, over every state the wear limits need.
    fn solve_exact(&mut self, day: &[i64], reward_on: &[f64], forbidden: Option<&[bool]>) -> f64 {
        let steps = reward_on.len();
        let Wear {
            min_on,
            min_off,
            counts_starts,
            levels,
        } = self.wear;
        let (on_len, off_len) = (min_on - 1, min_off - 1);
        let positions = on_len + off_len + 2;
        let start_cost = self.start_cost;
        let start = self.start;
        let forced_stops = self.forced_stops;
        let UnitDp {
            on_ring,
            off_ring,
            on_free,
            off_free,
            start_candidate,
            stop_candidate,
            choice,
            day_argmax,
            forced_from,
            ..
        } = self;
        forced_from.clear();
        if forced_stops {
            forced_from.resize(steps * levels, isize::MIN);
        }
        on_ring.fill(UNREACHABLE);
        off_ring.fill(UNREACHABLE);
        on_free.fill(UNREACHABLE);
        off_free.fill(UNREACHABLE);
        // The state before the first step: the value 0 (on values relative to the
        // cumulative reward, which is 0 there too). A state that must still hold for h
        // steps sits in its young line as a run that began h - min steps before the
        // horizon, so it is served, and free, from step h on.
        let level = if counts_starts {
            (start.starts_used as usize).min(levels - 1)
        } else {
            0
        };
        let young_slot = |len: usize, min: usize| {
            let h = (start.hold_steps as usize).min(len);
            ((h as isize - min as isize).rem_euclid(len.max(1) as isize)) as usize
        };
        let mut ring_holds_start = false;
        match (start.on, start.hold_steps > 0) {
            (true, true) if on_len > 0 => {
                on_ring[young_slot(on_len, min_on) * levels + level] = 0.0;
                ring_holds_start = true;
            }
            (true, _) => on_free[level] = 0.0,
            (false, true) if off_len > 0 => {
                off_ring[young_slot(off_len, min_off) * levels + level] = 0.0;
            }
            (false, _) => off_free[level] = 0.0,
        }
        choice.clear();
        choice.resize(steps * levels, 0);
        day_argmax.clear();

        let cumulative_before = if levels == 1 && !counts_starts && !forced_stops {
            let (mut on, mut off) = (on_free[0], off_free[0]);
            let cumulative = single_level_pass(
                on_ring,
                off_ring,
                &mut on,
                &mut off,
                choice,
                reward_on,
                forbidden,
                start_cost,
                ring_holds_start,
            );
            (on_free[0], off_free[0]) = (on, off);
            cumulative
        } else {
            let mut cumulative_before = 0.0;
            for t in 0..steps {
                if counts_starts && t > 0 && day[t] != day[t - 1] {
                    // New day: every state forgets its starts; keep the best level.
                    for slot in on_ring.chunks_exact_mut(levels) {
                        day_argmax.push(reset_levels(slot));
                    }
                    day_argmax.push(reset_levels(on_free));
                    for slot in off_ring.chunks_exact_mut(levels) {
                        day_argmax.push(reset_levels(slot));
                    }
                    day_argmax.push(reset_levels(off_free));
                }
                let is_forbidden = forbidden.is_some_and(|f| f[t]);
                let reward = if is_forbidden { 0.0 } else { reward_on[t] };
                let cumulative = cumulative_before + reward;
                // A start at t enters the on line; its stored value is relative
                // to the cumulative reward including step t. Counted starts move
                // up one level, so level 0 cannot be entered by a start.
                if counts_starts {
                    start_candidate[0] = UNREACHABLE;
                    for k in 1..levels {
                        start_candidate[k] = off_free[k - 1] - cumulative_before - start_cost;
                    }
                } else {
                    start_candidate[0] = off_free[0] - cumulative_before - start_cost;
                }
                for k in 0..levels {
                    stop_candidate[k] = on_free[k] + cumulative_before;
                }
                if forced_stops && is_forbidden && on_len > 0 {
                    // Every running unit stops here, young or not: the best of them.
                    for j in 0..on_len {
                        for k in 0..levels {
                            let v = on_ring[j * levels + k] + cumulative_before;
                            if v > stop_candidate[k] {
                                stop_candidate[k] = v;
                                // The run in slot j began at the latest step before t
                                // congruent to j (before the horizon for the start's).
                                let before = t as isize - 1;
                                forced_from[t * levels + k] =
                                    before - (before - j as isize).rem_euclid(on_len as isize);
                            }
                        }
                    }
                }
                let step_choice = &mut choice[t * levels..(t + 1) * levels];
                update_line(
                    on_ring,
                    on_len,
                    t,
                    levels,
                    start_candidate,
                    on_free,
                    step_choice,
                    CHOSE_ON_FROM_YOUNG,
                );
                update_line(
                    off_ring,
                    off_len,
                    t,
                    levels,
                    stop_candidate,
                    off_free,
                    step_choice,
                    CHOSE_OFF_FROM_YOUNG,
                );
                if is_forbidden {
                    on_ring.fill(UNREACHABLE);
                    on_free.fill(UNREACHABLE);
                }
                cumulative_before = cumulative;
            }
            cumulative_before
        };
        if steps == 0 {
            self.on.clear();
            return 0.0;
        }

        // Best end state. Young slots hold the run started at the latest step
        // congruent to the slot.
        let last = steps - 1;
        let young_start =
            |slot: usize, len: usize| last as isize - ((last + len - slot) % len) as isize;
        let mut best = (off_free[0], Phase::OffFree, 0);
        let mut consider = |value: f64, phase: Phase, level: usize| {
            if value > best.0 {
                best = (value, phase, level);
            }
        };
        for k in 0..levels {
            consider(on_free[k] + cumulative_before, Phase::OnFree, k);
            consider(off_free[k], Phase::OffFree, k);
            for slot in 0..on_len {
                let value = on_ring[slot * levels + k];
                if value > UNREACHABLE {
                    consider(
                        value + cumulative_before,
                        Phase::OnYoung(young_start(slot, on_len)),
                        k,
                    );
                }
            }
            for slot in 0..off_len {
                let value = off_ring[slot * levels + k];
                if value > UNREACHABLE {
                    consider(value, Phase::OffYoung(young_start(slot, off_len)), k);
                }
            }
        }
        let (best_value, mut phase, mut level) = best;

        // Walk back through the recorded choices. A stop at t came from the free on
        // state, or (forced) from the young run recorded for it.
        let forced_from = std::mem::take(&mut self.forced_from);
        let stopped_from = |t: usize, level: usize| match forced_from.get(t * levels + level) {
            Some(&s) if s != isize::MIN => Phase::OnYoung(s),
            _ => Phase::OnFree,
        };
        self.on.clear();
        self.on.resize(steps, false);
        let mut boundary = day_argmax.len() / positions;
        for t in (1..steps).rev() {
            self.on[t] = matches!(phase, Phase::OnYoung(_) | Phase::OnFree);
            let start_level = if counts_starts {
                level.wrapping_sub(1)
            } else {
                level
            };
            let bits = choice[t * levels + level];
            (phase, level) = match phase {
                Phase::OnFree if bits & CHOSE_ON_FROM_YOUNG != 0 => {
                    if on_len > 0 {
                        (Phase::OnYoung(t as isize - on_len as isize), level)
                    } else {
                        (Phase::OffFree, start_level)
                    }
                }
                Phase::OnYoung(s) if s == t as isize => (Phase::OffFree, start_level),
                Phase::OffFree if bits & CHOSE_OFF_FROM_YOUNG != 0 => {
                    if off_len > 0 {
                        (Phase::OffYoung(t as isize - off_len as isize), level)
                    } else {
                        (stopped_from(t, level), level)
                    }
                }
                Phase::OffYoung(s) if s == t as isize => (stopped_from(t, level), level),
                unchanged => (unchanged, level),
            };
            if counts_starts && day[t] != day[t - 1] {
                boundary -= 1;
                debug_assert_eq!(level, 0, "after a day reset only level 0 is reachable");
                let position = match phase {
                    Phase::OnYoung(s) => s.rem_euclid(on_len as isize) as usize,
                    Phase::OnFree => on_len,
                    Phase::OffYoung(s) => on_len + 1 + s.rem_euclid(off_len as isize) as usize,
                    Phase::OffFree => on_len + 1 + off_len,
                };
                level = day_argmax[boundary * positions + position] as usize;
            }
        }
        self.on[0] = matches!(phase, Phase::OnYoung(_) | Phase::OnFree);
        self.forced_from = forced_from;
        best_value
    }
}

/// The forward pass of [`UnitDp::solve_exact`] with one starts level (no start limit
/// counted), the common case: the same recurrences, choices and ring layout, on scalars,
/// with the ring slots stepped rather than divided, and a forbidden step clearing only
/// the slots that may hold a run. Returns the cumulative reward.
#[allow(clippy::too_many_arguments)]
fn single_level_pass(
    on_ring: &mut [f64],
    off_ring: &mut [f64],
    on_free: &mut f64,
    off_free: &mut f64,
    choice: &mut [u8],
    reward_on: &[f64],
    forbidden: Option<&[bool]>,
    start_cost: f64,
    ring_holds_start: bool,
) -> f64 {
    let on_len = on_ring.len();
    let (mut on_slot, mut off_slot) = (0, 0);
    // Whether a ring slot other than the one just written may hold a run (the unit's
    // own run, from before the horizon, at first).
    let mut on_ring_dirty = ring_holds_start;
    let mut cumulative_before = 0.0;
    for t in 0..reward_on.len() {
        let is_forbidden = forbidden.is_some_and(|f| f[t]);
        let reward = if is_forbidden { 0.0 } else { reward_on[t] };
        let start = *off_free - cumulative_before - start_cost;
        let stop = *on_free + cumulative_before;
        let written = on_slot;
        let bits = advance_line(on_ring, &mut on_slot, start, on_free, CHOSE_ON_FROM_YOUNG)
            | advance_line(
                off_ring,
                &mut off_slot,
                stop,
                off_free,
                CHOSE_OFF_FROM_YOUNG,
            );
        choice[t] = bits;
        if is_forbidden {
            if on_ring_dirty {
                on_ring.fill(UNREACHABLE);
                on_ring_dirty = false;
            } else if on_len > 0 {
                on_ring[written] = UNREACHABLE;
            }
            *on_free = UNREACHABLE;
        } else {
            on_ring_dirty = true;
        }
        cumulative_before += reward;
    }
    cumulative_before
}

/// Seconds one unit's exact programme takes over `steps` steps with 15-step minimum runs
/// and no start limit (the shipped policies' wear at 1-minute steps): the optimum's unit
/// of work, the baseline `bench sim` prints its time against. Best of three.
pub fn bench_one_programme(steps: usize) -> f64 {
    let class = UnitClass {
        name: "bench".into(),
        count: 1,
        rated_w: 1.0,
        min_power_w: 0.0,
        value_per_hashprice: 1.0,
        min_on_steps: 15,
        min_off_steps: 10,
        max_starts_per_day: None,
        continuous: false,
        start_cost_eur: 0.0,
    };
    let day: Vec<i64> = (0..steps as i64).map(|t| t / 1440).collect();
    // A reward that changes sign every few dozen steps, as hourly prices against a
    // hash value do.
    let reward: Vec<f64> = (0..steps)
        .map(|t| ((t as f64) * 0.05).sin() + 0.2)
        .collect();
    let mut dp = UnitDp::new(Wear::new(&class, &day), 0.0);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        std::hint::black_box(dp.solve(&day, &reward, None));
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

/// One line of [`single_level_pass`]: the run entering now takes the ring slot of the one
/// that has served its minimum, which joins the free state if better (with no ring, the
/// entering run is free at once). Returns `bit` when the free state was taken.
#[inline(always)]
fn advance_line(ring: &mut [f64], slot: &mut usize, entering: f64, free: &mut f64, bit: u8) -> u8 {
    let served = if ring.is_empty() {
        entering
    } else {
        let served = std::mem::replace(&mut ring[*slot], entering);
        *slot = if *slot + 1 == ring.len() {
            0
        } else {
            *slot + 1
        };
        served
    };
    if served > *free {
        *free = served;
        bit
    } else {
        0
    }
}

/// Whether an on/off schedule of a unit standing at `start` before it starts at most
/// `max_starts` times in every `day`.
fn keeps_start_limit(on: &[bool], day: &[i64], max_starts: u32, start: UnitStart) -> bool {
    let mut starts = start.starts_used.min(max_starts);
    let mut previous = start.on;
    for (t, &o) in on.iter().enumerate() {
        if t > 0 && day[t] != day[t - 1] {
            starts = 0;
        }
        starts += u32::from(o && !previous);
        if starts > max_starts {
            return false;
        }
        previous = o;
    }
    true
}

/// Moves the young line one step: the run entering at `t` replaces the one
/// that has now served its minimum, which joins the free state if better.
#[allow(clippy::too_many_arguments)]
fn update_line(
    ring: &mut [f64],
    len: usize,
    t: usize,
    levels: usize,
    entering: &[f64],
    free: &mut [f64],
    step_choice: &mut [u8],
    bit: u8,
) {
    // Branch-free selects: which state wins is data-dependent and
    // unpredictable, and this is the innermost loop of the whole solver.
    if len == 0 {
        for k in 0..levels {
            let take = entering[k] > free[k];
            free[k] = if take { entering[k] } else { free[k] };
            step_choice[k] |= bit * u8::from(take);
        }
        return;
    }
    let slot = &mut ring[(t % len) * levels..][..levels];
    for k in 0..levels {
        let served = slot[k];
        slot[k] = entering[k];
        let take = served > free[k];
        free[k] = if take { served } else { free[k] };
        step_choice[k] |= bit * u8::from(take);
    }
}

/// Keeps the best value at level 0 and clears the others; returns the level kept.
/// Levels are at most the longest day's steps (see `Wear::new`), and a horizon of more
/// than 2^32 steps could not be held in memory, so the level fits a `u32` (a `u16` did
/// not, for a limit above 65535 starts on days of more steps than that).
fn reset_levels(values: &mut [f64]) -> u32 {
    let mut arg = 0;
    for k in 1..values.len() {
        if values[k] > values[arg] {
            arg = k;
        }
    }
    let best = values[arg];
    values.fill(UNREACHABLE);
    values[0] = best;
    arg as u32
}

// ---------------------------------------------------------------------------
// Feasible schedule: merit-order sequence of exact group programmes
// ---------------------------------------------------------------------------

/// A group of identical units that share one on/off schedule: the tests check
/// its wear limits, [`solve`] counts its starts.
#[derive(Clone, Debug)]
struct UnitGroup {
    class: usize,
    /// Its place in the groups it was built from.
    index: usize,
    units: u32,
    on: Vec<bool>,
    /// What the group draws per step, W (0 when off).
    power_w: Vec<f64>,
}

#[derive(Clone, Debug)]
struct FeasibleSchedule {
    /// `[class][step]`, W.
    class_power_w: Vec<Vec<f64>>,
    /// Switched groups, for checking wear limits.
    groups: Vec<UnitGroup>,
}

/// Passes of best responses after the merit-order pass (see [`build_feasible`]). On the
/// shipped scenarios the first pass finds all a second would (`bench sim` times it).
const IMPROVEMENT_PASSES: usize = 1;

/// Classes in order of value per MWh (the hashprice is common to all, so the
/// order is fixed); each group of units then solves its exact programme
/// against the tiers the groups before it left. Then, in passes, each group in
/// turn solves its programme again against what all the others draw: its best
/// response. The old schedule is among the ones it can choose (the others never
/// draw more than they left it), so no pass lowers the profit; a pass lets an
/// early group give up steps a later one uses better, which merit order alone
/// cannot. The result is feasible by construction; its quality depends on merit
/// order and grouping.
fn build_feasible(input: &OptimumInput, curves: &[StepCurve]) -> FeasibleSchedule {
    let groups: Vec<PlanGroup> = input
        .classes
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.continuous && c.count > 0)
        .flat_map(|(c, class)| {
            let group_count = class.count.min(MAX_GROUPS_PER_CLASS);
            (0..group_count).map(move |g| PlanGroup {
                class: c,
                units: class.count / group_count + u32::from(g < class.count % group_count),
                start: UnitStart::default(),
            })
        })
        .collect();
    schedule_groups(input, curves, &groups, false)
}

/// Units of one class that share an on/off schedule and where they stand before the
/// first step: what [`plan`] is given for each load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlanGroup {
    /// Index into `OptimumInput::classes` (a switched class).
    pub class: usize,
    pub units: u32,
    pub start: UnitStart,
}

/// A look-ahead plan over the input's horizon for units that stand where `groups` say:
/// the same merit-order sequence of exact programmes, and the same pass of best
/// responses, as the optimum's feasible schedule, from those starting states. Returns,
/// per group, whether its units are on at the first step. Continuous classes are filled
/// step by step as in the optimum and get no entry. A step where a group cannot draw its
/// least power stops it, `min_on` or not (live, the limit stops such a unit: a forced
/// stop), so a forecast dip never makes a plan infeasible.
pub fn plan(input: &OptimumInput, groups: &[PlanGroup]) -> Result<Vec<bool>, InputError> {
    validate(input)?;
    if let Some(g) = groups
        .iter()
        .find(|g| input.classes.get(g.class).is_none_or(|c| c.continuous))
    {
        return Err(InputError::BadClass {
            class: input
                .classes
                .get(g.class)
                .map_or_else(|| format!("#{}", g.class), |c| c.name.clone()),
            reason: "a plan group must name a switched class",
        });
    }
    if input.day.is_empty() {
        return Ok(vec![false; groups.len()]);
    }
    let curves: Vec<StepCurve> = (0..input.day.len())
        .map(|t| StepCurve::new(&input.tiers, t))
        .collect();
    let schedule = schedule_groups(input, &curves, groups, true);
    let mut on = vec![false; groups.len()];
    for g in &schedule.groups {
        on[g.index] = g.on[0];
    }
    Ok(on)
}

/// [`build_feasible`] for given groups (in their order within a class) and their
/// starting states; `groups` in the result follow the classes' merit order.
///
/// With `stops_forced`, a step where a group's least power does not fit stops it even
/// inside its `min_on`, as the limit stops a unit live (a forced stop), where the
/// optimum rules such a run out: a plan must not refuse a start for a dip that live
/// costs only a stop.
fn schedule_groups(
    input: &OptimumInput,
    curves: &[StepCurve],
    plan_groups: &[PlanGroup],
    stops_forced: bool,
) -> FeasibleSchedule {
    let steps = curves.len();
    let energy = mwh_per_w_step(input);
    let mut used_w = vec![0.0; steps];
    let mut class_power_w = vec![vec![0.0; steps]; input.classes.len()];
    let mut groups = Vec::new();
    let mut order: Vec<usize> = (0..input.classes.len()).collect();
    order.sort_by(|&a, &b| {
        input.classes[b]
            .value_per_hashprice
            .total_cmp(&input.classes[a].value_per_hashprice)
    });
    let mut reward = vec![0.0; steps];
    let mut power = vec![0.0; steps];
    let mut forbidden = vec![false; steps];
    let mut programmes = Vec::new();
    let repeats = repeats(input);
    // One group's best response to what every other load draws (`used_w`), which it
    // then joins; returns the gain it earns, EUR.
    let mut respond = |group: &mut UnitGroup,
                       dp: &mut UnitDp,
                       used_w: &mut [f64],
                       class_power_w: &mut [Vec<f64>]| {
        let class = &input.classes[group.class];
        let (low_w, high_w) = (
            group.units as f64 * class.min_power_w,
            group.units as f64 * class.rated_w,
        );
        for t in 0..steps {
            if repeats[t] && used_w[t].to_bits() == used_w[t - 1].to_bits() {
                // The step before again, with the same power left: the same answer.
                (reward[t], power[t], forbidden[t]) =
                    (reward[t - 1], power[t - 1], forbidden[t - 1]);
                continue;
            }
            let value = input.hashprice[t] * class.value_per_hashprice;
            match curves[t].best_increment(used_w[t], value, low_w, high_w) {
                Some((gain, p)) => {
                    reward[t] = gain * energy;
                    power[t] = p;
                    forbidden[t] = false;
                }
                None => {
                    reward[t] = 0.0;
                    power[t] = 0.0;
                    forbidden[t] = true;
                }
            }
        }
        let gain = dp.solve(input.day, &reward, Some(&forbidden));
        for t in 0..steps {
            let p = if dp.on[t] { power[t] } else { 0.0 };
            group.power_w[t] = p;
            used_w[t] += p;
            class_power_w[group.class][t] += p;
        }
        group.on.clone_from(&dp.on);
        gain
    };
    for c in order {
        let class = &input.classes[c];
        if class.count == 0 {
            continue;
        }
        if class.continuous {
            let cap_w = class.count as f64 * class.rated_w;
            for t in 0..steps {
                let value = input.hashprice[t] * class.value_per_hashprice;
                let (_, p) = curves[t]
                    .best_increment(used_w[t], value, 0.0, cap_w)
                    .expect("zero power always fits");
                used_w[t] += p;
                class_power_w[c][t] += p;
            }
            continue;
        }
        for (index, g) in plan_groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.class == c && g.units > 0)
        {
            let units = g.units;
            // The group shares one schedule, so one start of it starts `units` units.
            let mut dp = UnitDp::new(
                Wear::starting(class, input.day, g.start.starts_used, stops_forced),
                units as f64 * class.start_cost_eur,
            )
            .starting(g.start);
            if stops_forced {
                dp = dp.with_forced_stops();
            }
            let mut group = UnitGroup {
                class: c,
                index,
                units,
                on: Vec::new(),
                power_w: vec![0.0; steps],
            };
            respond(&mut group, &mut dp, &mut used_w, &mut class_power_w);
            groups.push(group);
            programmes.push(dp);
        }
    }
    // Best responses need another group to respond to.
    if groups.len() > 1 {
        for _ in 0..IMPROVEMENT_PASSES {
            for (group, dp) in groups.iter_mut().zip(&mut programmes) {
                for t in 0..steps {
                    // Rounding must not leave a power below zero, which no schedule has.
                    used_w[t] = (used_w[t] - group.power_w[t]).max(0.0);
                    let class_w = &mut class_power_w[group.class][t];
                    *class_w = (*class_w - group.power_w[t]).max(0.0);
                }
                respond(group, dp, &mut used_w, &mut class_power_w);
            }
        }
    }
    FeasibleSchedule {
        class_power_w,
        groups,
    }
}

// ---------------------------------------------------------------------------
// Upper bound: Lagrangian dual of the power balance
// ---------------------------------------------------------------------------
//
// Pricing the balance sum(p_u) = M_t at lambda_t EUR/MWh splits the problem:
//   L(lambda) = sum_t max_M (lambda_t M - C_t(M))
//             + sum_c count_c * (best one-unit schedule of class c earning
//                                (value - lambda_t) per MWh).
// Any lambda gives L(lambda) >= optimum, so the bound is the least L seen.

/// Starting prices: per step, the exact minimiser of the one-step dual with no
/// wear limits. Without wear limits (or with `min_power_w == 0`) and with a
/// convex tier cost this already closes the gap.
fn starting_prices(input: &OptimumInput, curves: &[StepCurve], repeats: &[bool]) -> Vec<f64> {
    let mut previous = 0.0;
    curves
        .iter()
        .enumerate()
        .map(|(t, curve)| {
            if repeats[t] {
                return previous;
            }
            let one_step_dual = |price: f64| {
                let demand: f64 = input
                    .classes
                    .iter()
                    .map(|c| {
                        let value = input.hashprice[t] * c.value_per_hashprice;
                        c.count as f64 * c.rated_w * (value - price).max(0.0)
                    })
                    .sum();
                curve.dual(price).0 + demand
            };
            // A piecewise-linear convex function is least at a kink: where two
            // tier-edge lines cross, or at a class value.
            let mut candidates: Vec<f64> = vec![0.0, curve.cost[1], curve.cost[2]];
            for i in 0..4 {
                for j in i + 1..4 {
                    let width = curve.edge_w[j] - curve.edge_w[i];
                    if width > 0.0 {
                        candidates.push((curve.integral[j] - curve.integral[i]) / width);
                    }
                }
            }
            candidates.extend(
                input
                    .classes
                    .iter()
                    .map(|c| input.hashprice[t] * c.value_per_hashprice),
            );
            let mut best = (f64::INFINITY, 0.0);
            for price in candidates {
                let value = one_step_dual(price);
                if value < best.0 {
                    best = (value, price);
                }
            }
            previous = best.1;
            best.1
        })
        .collect()
}

/// One switched class in the dual: its programme and its current reward series.
struct DualClass {
    class: usize,
    dp: UnitDp,
    reward: Vec<f64>,
    value_eur: f64,
}

/// Evaluates L(prices) exactly (EUR) and writes a subgradient (MWh per step:
/// supply minus demand) into `subgradient`.
fn evaluate_dual(
    input: &OptimumInput,
    curves: &[StepCurve],
    repeats: &[bool],
    prices: &[f64],
    duals: &mut [DualClass],
    subgradient: &mut [f64],
) -> f64 {
    let energy = mwh_per_w_step(input);
    duals.par_iter_mut().for_each(|d| {
        let class = &input.classes[d.class];
        for (t, reward) in d.reward.iter_mut().enumerate() {
            let margin = input.hashprice[t] * class.value_per_hashprice - prices[t];
            let power_w = if margin > 0.0 {
                class.rated_w
            } else {
                class.min_power_w
            };
            *reward = margin * power_w * energy;
        }
        d.value_eur = d.dp.solve(input.day, &d.reward, None);
    });
    let mut total = duals
        .iter()
        .map(|d| input.classes[d.class].count as f64 * d.value_eur)
        .sum::<f64>();
    let mut supply = (0.0, 0.0, 0.0);
    for (t, curve) in curves.iter().enumerate() {
        let price = prices[t];
        if !(repeats[t] && price.to_bits() == prices[t - 1].to_bits()) {
            supply = curve.dual(price);
        }
        let (supply_value, supply_low, supply_high) = supply;
        total += supply_value * energy;
        let (mut demand_low, mut demand_high) = (0.0, 0.0);
        let tie = TIE_REL_TOL * price.abs().max(1.0);
        for class in input.classes.iter().filter(|c| c.continuous) {
            let margin = input.hashprice[t] * class.value_per_hashprice - price;
            let cap_w = class.count as f64 * class.rated_w;
            total += cap_w * margin.max(0.0) * energy;
            if margin > tie {
                demand_low += cap_w;
            }
            if margin >= -tie {
                demand_high += cap_w;
            }
        }
        for d in duals.iter().filter(|d| d.dp.on[t]) {
            let class = &input.classes[d.class];
            let margin = input.hashprice[t] * class.value_per_hashprice - price;
            let units = class.count as f64;
            // At a tie the on unit may draw anything in its range at no change
            // in L, so the subgradient may use any of it.
            demand_low += units
                * if margin > tie {
                    class.rated_w
                } else {
                    class.min_power_w
                };
            demand_high += units
                * if margin >= -tie {
                    class.rated_w
                } else {
                    class.min_power_w
                };
        }
        // Closest pair of supply and demand within their tied ranges.
        let excess_w = if supply_high < demand_low {
            supply_high - demand_low
        } else if supply_low > demand_high {
            supply_low - demand_high
        } else {
            0.0
        };
        subgradient[t] = excess_w * energy;
    }
    total
}

/// Deflected Polyak subgradient descent on L, aiming at the feasible value.
/// Returns the least L seen and the number of evaluations.
fn tighten_bound(
    input: &OptimumInput,
    curves: &[StepCurve],
    repeats: &[bool],
    feasible_eur: f64,
) -> (f64, u32) {
    let steps = curves.len();
    let mut prices = starting_prices(input, curves, repeats);
    let mut duals: Vec<DualClass> = input
        .classes
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.continuous && c.count > 0)
        .map(|(class, c)| DualClass {
            class,
            dp: UnitDp::new(Wear::new(c, input.day), c.start_cost_eur),
            reward: vec![0.0; steps],
            value_eur: 0.0,
        })
        .collect();
    let mut subgradient = vec![0.0; steps];
    let mut direction = vec![0.0; steps];
    let mut current = evaluate_dual(
        input,
        curves,
        repeats,
        &prices,
        &mut duals,
        &mut subgradient,
    );
    let mut best = current;
    let mut best_prices = prices.clone();
    let mut best_subgradient = subgradient.clone();
    let mut evaluations = 1;
    let mut factor = POLYAK_FACTOR_START;
    let mut stalled = 0;
    while evaluations < input.max_iterations.max(1) && factor >= POLYAK_FACTOR_MIN {
        if relative_gap(best, feasible_eur) <= input.tolerance {
            break;
        }
        let along: f64 = subgradient.iter().zip(&direction).map(|(g, d)| g * d).sum();
        let direction_norm2: f64 = direction.iter().map(|d| d * d).sum();
        let deflection = if along < 0.0 && direction_norm2 > 0.0 {
            -DEFLECTION_WEIGHT * along / direction_norm2
        } else {
            0.0
        };
        for (d, g) in direction.iter_mut().zip(&subgradient) {
            *d = g + deflection * *d;
        }
        let norm2: f64 = direction.iter().map(|d| d * d).sum();
        let excess = current - feasible_eur;
        if norm2 == 0.0 || excess <= 0.0 {
            // A zero subgradient proves these prices optimal; a non-positive
            // excess means the bound met the feasible value.
            break;
        }
        let step = factor * excess / norm2;
        for (price, d) in prices.iter_mut().zip(&direction) {
            *price -= step * d;
        }
        current = evaluate_dual(
            input,
            curves,
            &repeats,
            &prices,
            &mut duals,
            &mut subgradient,
        );
        evaluations += 1;
        if current < best {
            best = current;
            best_prices.copy_from_slice(&prices);
            best_subgradient.copy_from_slice(&subgradient);
            stalled = 0;
        } else {
            stalled += 1;
            if stalled >= STALLED_EVALUATIONS_BEFORE_HALVING {
                // Drifting from a worse point wastes evaluations: shorten the
                // step and go back to the best prices with a fresh direction.
                factor *= 0.5;
                stalled = 0;
                prices.copy_from_slice(&best_prices);
                subgradient.copy_from_slice(&best_subgradient);
                direction.fill(0.0);
                current = best;
            }
        }
    }
    (best, evaluations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Small deterministic generator so instances are reproducible from a seed.
    struct SplitMix(u64);

    impl SplitMix {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, low: f64, high: f64) -> f64 {
            low + (high - low) * self.unit()
        }
        fn below(&mut self, n: u32) -> u32 {
            (self.next_u64() % n as u64) as u32
        }
        fn chance(&mut self, p: f64) -> bool {
            self.unit() < p
        }
    }

    /// Owned series behind an [`OptimumInput`].
    #[derive(Clone, Debug)]
    struct Instance {
        step_h: f64,
        day: Vec<i64>,
        hashprice: Vec<f64>,
        free_w: Vec<f64>,
        export_w: Vec<f64>,
        export_cost: Vec<f64>,
        import_w: Vec<f64>,
        import_cost: Vec<f64>,
        classes: Vec<UnitClass>,
        max_iterations: u32,
        tolerance: f64,
    }

    impl Instance {
        fn input(&self) -> OptimumInput<'_> {
            OptimumInput {
                step_h: self.step_h,
                day: &self.day,
                hashprice: &self.hashprice,
                tiers: Tiers {
                    free_w: &self.free_w,
                    export_w: &self.export_w,
                    export_cost: &self.export_cost,
                    import_w: &self.import_w,
                    import_cost: &self.import_cost,
                },
                classes: &self.classes,
                max_iterations: self.max_iterations,
                tolerance: self.tolerance,
            }
        }
    }

    fn class(name: &str, count: u32, rated_w: f64, value_per_hashprice: f64) -> UnitClass {
        UnitClass {
            name: name.to_string(),
            count,
            rated_w,
            min_power_w: 0.0,
            value_per_hashprice,
            min_on_steps: 1,
            min_off_steps: 1,
            max_starts_per_day: None,
            continuous: false,
            start_cost_eur: 0.0,
        }
    }

    /// Gives about half the switched classes of `instance` a start cost, from a
    /// generator of its own so that the instance is otherwise the one `seed` makes.
    /// Costs span the few steps' rewards of a tiny instance (a unit earns up to
    /// about 0.3 EUR a step), so they decide some starts and not others.
    fn with_random_start_costs(mut instance: Instance, seed: u64) -> Instance {
        let mut rng = SplitMix(seed ^ 0x5354_4152_5443_4f53);
        for c in instance.classes.iter_mut().filter(|c| !c.continuous) {
            if rng.chance(0.6) {
                c.start_cost_eur = rng.range(0.0, 0.4);
            }
        }
        instance
    }

    /// Independent check of the wear rules on one unit's on/off schedule,
    /// written from the documented semantics rather than from the programme.
    fn respects_wear(on: &[bool], day: &[i64], class: &UnitClass) -> bool {
        let min_on = class.min_on_steps.max(1) as usize;
        let min_off = class.min_off_steps.max(1) as usize;
        let steps = on.len();
        let mut starts: std::collections::HashMap<i64, u32> = Default::default();
        let mut start = 0;
        while start < steps {
            let mut end = start;
            while end < steps && on[end] == on[start] {
                end += 1;
            }
            let length = end - start;
            let cut_by_horizon = end == steps;
            if on[start] {
                if length < min_on && !cut_by_horizon {
                    return false;
                }
                *starts.entry(day[start]).or_default() += 1;
            } else if start > 0 && length < min_off && !cut_by_horizon {
                // The first off run is free: timers start satisfied.
                return false;
            }
            start = end;
        }
        class
            .max_starts_per_day
            .is_none_or(|max| starts.values().all(|&n| n <= max))
    }

    /// Exact best profit (EUR) of one step given how many units of each
    /// switched class are on (`on_count[c]`, ignored for continuous classes),
    /// or `None` if their least power does not fit the tiers. The value of a
    /// total power M (best split over the classes) is concave piecewise
    /// linear, the cost piecewise linear, so the best M is at a kink of
    /// either; every kink is tried.
    fn best_step_profit(input: &OptimumInput, t: usize, on_count: &[u32]) -> Option<f64> {
        let curve = StepCurve::new(&input.tiers, t);
        let mut boxes: Vec<(f64, f64, f64)> = input
            .classes
            .iter()
            .zip(on_count)
            .map(|(c, &n)| {
                let value = input.hashprice[t] * c.value_per_hashprice;
                if c.continuous {
                    (value, 0.0, c.count as f64 * c.rated_w)
                } else {
                    (value, n as f64 * c.min_power_w, n as f64 * c.rated_w)
                }
            })
            .collect();
        boxes.sort_by(|a, b| b.0.total_cmp(&a.0));
        let floor_w: f64 = boxes.iter().map(|b| b.1).sum();
        let ceiling_w: f64 = boxes.iter().map(|b| b.2).sum::<f64>().min(curve.total_w());
        if floor_w > curve.total_w() * (1.0 + 1e-12) + 1e-9 {
            return None;
        }
        let value_of = |total_w: f64| {
            let mut extra = total_w - floor_w;
            let mut value = 0.0;
            for &(v, low, high) in &boxes {
                let take = extra.min(high - low).max(0.0);
                extra -= take;
                value += v * (low + take);
            }
            value
        };
        let mut kinks = vec![floor_w, ceiling_w];
        let mut cumulative = floor_w;
        for &(_, low, high) in &boxes {
            cumulative += high - low;
            kinks.push(cumulative);
        }
        kinks.extend(curve.edge_w);
        let energy = mwh_per_w_step(input);
        let best = kinks
            .into_iter()
            .filter(|&m| m >= floor_w && m <= ceiling_w.max(floor_w))
            .map(|m| value_of(m) - curve.integral_to(m))
            .fold(f64::NEG_INFINITY, f64::max);

        // Sanity of this reference itself: a coarse grid of class powers
        // never beats it.
        let grid: Vec<[f64; 3]> = boxes
            .iter()
            .map(|&(_, l, h)| [l, 0.5 * (l + h), h])
            .collect();
        let combos = 3usize.pow(boxes.len() as u32);
        for mut code in 0..combos {
            let (mut total, mut value) = (0.0, 0.0);
            for (i, &(v, _, _)) in boxes.iter().enumerate() {
                let p = grid[i][code % 3];
                code /= 3;
                total += p;
                value += v * p;
            }
            if total <= curve.total_w() {
                assert!(value - curve.integral_to(total) <= best + 1e-9 * (1.0 + best.abs()));
            }
        }
        Some(best * energy)
    }

    /// Brute-force optimum: every combination of feasible unit schedules
    /// (units of a class unordered), each step priced exactly.
    fn brute_force_optimum(input: &OptimumInput) -> f64 {
        let steps = input.day.len();
        let switched: Vec<usize> = (0..input.classes.len())
            .filter(|&c| !input.classes[c].continuous)
            .collect();
        // Per switched class: the per-step on-counts of every multiset of
        // feasible single-unit schedules, with the starts they make.
        let mut options: Vec<Vec<(Vec<u32>, u64)>> = Vec::new();
        for &c in &switched {
            let class = &input.classes[c];
            let singles: Vec<Vec<bool>> = (0u32..1 << steps)
                .map(|mask| {
                    (0..steps)
                        .map(|t| mask >> t & 1 == 1)
                        .collect::<Vec<bool>>()
                })
                .filter(|on| respects_wear(on, input.day, class))
                .collect();
            let mut multisets: Vec<(Vec<u32>, u64)> = vec![(vec![0; steps], 0)];
            for _ in 0..class.count {
                let mut next = Vec::new();
                // Deduplicating the (counts, starts) pairs removes permutations.
                for (counts, made) in &multisets {
                    for single in &singles {
                        let mut counts = counts.clone();
                        for t in 0..steps {
                            counts[t] += single[t] as u32;
                        }
                        next.push((counts, made + starts(single)));
                    }
                }
                next.sort();
                next.dedup();
                multisets = next;
            }
            options.push(multisets);
        }
        let mut best = f64::NEG_INFINITY;
        let mut chosen = vec![0usize; switched.len()];
        let mut cache: std::collections::HashMap<(usize, Vec<u32>), Option<f64>> =
            Default::default();
        loop {
            // Every start is paid for, whatever the steps earn.
            let mut total: f64 = switched
                .iter()
                .enumerate()
                .map(|(i, &c)| -(options[i][chosen[i]].1 as f64) * input.classes[c].start_cost_eur)
                .sum();
            let mut feasible = true;
            for t in 0..steps {
                let mut on_count = vec![0u32; input.classes.len()];
                for (i, &c) in switched.iter().enumerate() {
                    on_count[c] = options[i][chosen[i]].0[t];
                }
                let key = (t, on_count.clone());
                let profit = *cache
                    .entry(key)
                    .or_insert_with(|| best_step_profit(input, t, &on_count));
                match profit {
                    Some(p) => total += p,
                    None => {
                        feasible = false;
                        break;
                    }
                }
            }
            if feasible {
                best = best.max(total);
            }
            // Next combination (odometer).
            let mut i = 0;
            loop {
                if i == switched.len() {
                    return best;
                }
                chosen[i] += 1;
                if chosen[i] < options[i].len() {
                    break;
                }
                chosen[i] = 0;
                i += 1;
            }
        }
    }

    fn random_tiny_instance(seed: u64, steps: usize) -> Instance {
        let mut rng = SplitMix(seed);
        let mut day = Vec::with_capacity(steps);
        let mut today = 19_000;
        for _ in 0..steps {
            if rng.chance(0.25) {
                today += 1;
            }
            day.push(today);
        }
        let width = |rng: &mut SplitMix| {
            if rng.chance(0.3) {
                0.0
            } else {
                rng.range(0.0, 3000.0)
            }
        };
        let free_w = (0..steps).map(|_| width(&mut rng)).collect();
        let export_w = (0..steps).map(|_| width(&mut rng)).collect();
        let import_w = (0..steps).map(|_| width(&mut rng)).collect();
        let export_cost = (0..steps).map(|_| rng.range(-60.0, 150.0)).collect();
        let import_cost = (0..steps).map(|_| rng.range(-30.0, 200.0)).collect();
        let hashprice = (0..steps)
            .map(|_| {
                if rng.chance(0.1) {
                    rng.range(-10.0, 0.0)
                } else {
                    rng.range(0.0, 120.0)
                }
            })
            .collect();
        let switched = 1 + rng.below(2) as usize;
        let max_count = if steps > 6 { 1 } else { 2 };
        let mut classes = Vec::new();
        for i in 0..switched {
            let rated_w = rng.range(500.0, 2500.0);
            let mut c = class(
                &format!("asic{i}"),
                1 + rng.below(max_count),
                rated_w,
                rng.range(0.5, 1.5),
            );
            if rng.chance(0.6) {
                c.min_power_w = rng.range(0.0, 1.0) * rated_w;
            }
            c.min_on_steps = rng.below(4);
            c.min_off_steps = rng.below(4);
            c.max_starts_per_day = if rng.chance(0.5) {
                Some(rng.below(3))
            } else {
                None
            };
            classes.push(c);
        }
        if rng.chance(0.5) {
            let mut cpu = class(
                "cpu",
                1 + rng.below(2),
                rng.range(100.0, 1500.0),
                rng.range(0.2, 1.2),
            );
            cpu.continuous = true;
            classes.push(cpu);
        }
        Instance {
            step_h: if rng.chance(0.5) { 1.0 } else { 0.25 },
            day,
            hashprice,
            free_w,
            export_w,
            export_cost,
            import_w,
            import_cost,
            classes,
            max_iterations: 300,
            tolerance: 1e-9,
        }
    }

    /// Every produced group obeys its class's wear limits, and the class
    /// power stays within what its on units can draw.
    fn assert_schedule_valid(instance: &Instance, schedule: &FeasibleSchedule) {
        let input = instance.input();
        for group in &schedule.groups {
            let c = &input.classes[group.class];
            assert!(
                respects_wear(&group.on, input.day, c),
                "group of {} breaks wear limits: {:?}",
                c.name,
                group.on
            );
        }
        for (ci, c) in input.classes.iter().enumerate() {
            for t in 0..input.day.len() {
                let p = schedule.class_power_w[ci][t];
                let slack = 1e-9 * (1.0 + p.abs());
                if c.continuous {
                    assert!(p >= -slack && p <= c.count as f64 * c.rated_w + slack);
                    continue;
                }
                let units_on: u32 = schedule
                    .groups
                    .iter()
                    .filter(|g| g.class == ci && g.on[t])
                    .map(|g| g.units)
                    .sum();
                assert!(
                    p >= units_on as f64 * c.min_power_w - slack,
                    "class {} under its min power at {t}",
                    c.name
                );
                assert!(
                    p <= units_on as f64 * c.rated_w + slack,
                    "class {} over rated at {t}",
                    c.name
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn bounds_bracket_brute_force(seed in any::<u64>(), steps in 1usize..=8) {
            let instance = random_tiny_instance(seed, steps);
            bounds_bracket(&instance, steps)?;
        }

        /// Issue 11: with a wear cost per start, the bound must still be a bound and
        /// the feasible value (its starts paid) still a schedule's true profit.
        #[test]
        fn r11_bounds_bracket_brute_force_with_start_costs(seed in any::<u64>(), steps in 1usize..=8) {
            let instance = with_random_start_costs(random_tiny_instance(seed, steps), seed);
            bounds_bracket(&instance, steps)?;
        }

        #[test]
        fn unit_programme_matches_enumeration(seed in any::<u64>(), steps in 1usize..=10) {
            let mut rng = SplitMix(seed);
            let instance = with_random_start_costs(random_tiny_instance(seed, steps), seed);
            let c = &instance.classes[0];
            let reward: Vec<f64> = (0..steps).map(|_| rng.range(-5.0, 10.0)).collect();
            let forbidden: Vec<bool> = (0..steps).map(|_| rng.chance(0.15)).collect();
            // Costs scaled to these rewards, so that they bind.
            let start_cost = c.start_cost_eur * 20.0;
            let mut dp = UnitDp::new(Wear::new(c, &instance.day), start_cost);
            let value = dp.solve(&instance.day, &reward, Some(&forbidden));
            let worth = |on: &[bool]| -> f64 {
                (0..steps).filter(|&t| on[t]).map(|t| reward[t]).sum::<f64>()
                    - starts(on) as f64 * start_cost
            };
            let mut best = f64::NEG_INFINITY;
            for mask in 0u32..1 << steps {
                let on: Vec<bool> = (0..steps).map(|t| mask >> t & 1 == 1).collect();
                if respects_wear(&on, &instance.day, c) && !(0..steps).any(|t| on[t] && forbidden[t]) {
                    best = best.max(worth(&on));
                }
            }
            prop_assert!((value - best).abs() <= 1e-9, "programme {} vs enumeration {}", value, best);
            prop_assert!(respects_wear(&dp.on, &instance.day, c));
            prop_assert!(!(0..steps).any(|t| dp.on[t] && forbidden[t]));
            prop_assert!((worth(&dp.on) - value).abs() <= 1e-9);
        }
    }

    /// Whether a schedule keeps the wear limits of a unit that stands at `start` before
    /// it: its held state first, a continued first run with no minimum of its own, and
    /// the starts it used counted on the first day.
    fn respects_wear_from(on: &[bool], day: &[i64], class: &UnitClass, start: UnitStart) -> bool {
        let min_on = class.min_on_steps.max(1) as usize;
        let min_off = class.min_off_steps.max(1) as usize;
        let steps = on.len();
        let hold = start.hold_steps as usize;
        if on.iter().take(hold).any(|&o| o != start.on) {
            return false;
        }
        let mut starts: std::collections::HashMap<i64, u32> = Default::default();
        if let Some(&first) = day.first() {
            starts.insert(first, start.starts_used);
        }
        let mut begin = 0;
        while begin < steps {
            let mut end = begin;
            while end < steps && on[end] == on[begin] {
                end += 1;
            }
            let length = end - begin;
            let cut_by_horizon = end == steps;
            let continued = begin == 0 && on[0] == start.on;
            if !continued {
                let min = if on[begin] { min_on } else { min_off };
                if length < min && !cut_by_horizon {
                    return false;
                }
                if on[begin] {
                    *starts.entry(day[begin]).or_default() += 1;
                }
            }
            begin = end;
        }
        class
            .max_starts_per_day
            .is_none_or(|max| starts.values().all(|&n| n <= max))
    }

    /// [`respects_wear_from`] where a forbidden step stops a running unit whatever its
    /// minimum (the planner's forced stop): a run that a forbidden step ends need not
    /// last `min_on`, nor a held on state its hold.
    fn respects_wear_forced(
        on: &[bool],
        day: &[i64],
        class: &UnitClass,
        start: UnitStart,
        forbidden: &[bool],
    ) -> bool {
        let min_on = class.min_on_steps.max(1) as usize;
        let min_off = class.min_off_steps.max(1) as usize;
        let steps = on.len();
        let hold = start.hold_steps as usize;
        // A resting unit's hold is never cut: nothing forces a start.
        if !start.on && on.iter().take(hold).any(|&o| o) {
            return false;
        }
        // A running unit's hold lasts until it ends or a forbidden step stops it.
        let held = (0..hold.min(steps)).take_while(|&t| !forbidden[t]).count();
        if start.on && on.iter().take(held).any(|&o| !o) {
            return false;
        }
        let mut starts: std::collections::HashMap<i64, u32> = Default::default();
        if let Some(&first) = day.first() {
            starts.insert(first, start.starts_used);
        }
        let mut begin = 0;
        while begin < steps {
            let mut end = begin;
            while end < steps && on[end] == on[begin] {
                end += 1;
            }
            let length = end - begin;
            let cut = end == steps || (on[begin] && forbidden[end]);
            let continued = begin == 0 && on[0] == start.on;
            let min = match (continued, on[begin]) {
                (true, _) => hold,
                (false, true) => min_on,
                (false, false) => min_off,
            };
            if length < min && !cut {
                return false;
            }
            if on[begin] && !continued {
                *starts.entry(day[begin]).or_default() += 1;
            }
            begin = end;
        }
        class
            .max_starts_per_day
            .is_none_or(|max| starts.values().all(|&n| n <= max))
    }

    /// One unit's programme from a random starting state (on or resting, part of its
    /// minimum left, starts used today) against every schedule enumerated from that
    /// state: the same best value, and a schedule that keeps the limits. With `forced`,
    /// the planner's model, in which a forbidden step stops a running unit.
    fn programme_from_a_start_matches_enumeration(
        seed: u64,
        steps: usize,
        forced: bool,
    ) -> Result<(), TestCaseError> {
        let mut rng = SplitMix(seed);
        let instance = with_random_start_costs(random_tiny_instance(seed, steps), seed);
        let c = &instance.classes[0];
        let on = rng.chance(0.5);
        let min = if on { c.min_on_steps } else { c.min_off_steps }.max(1);
        let start = UnitStart {
            on,
            hold_steps: rng.below(min),
            starts_used: c.max_starts_per_day.map_or(0, |m| rng.below(m + 1)),
        };
        let reward: Vec<f64> = (0..steps).map(|_| rng.range(-5.0, 10.0)).collect();
        // Without forced stops nothing may forbid a held run (it would have no schedule).
        let forbidden: Vec<bool> = (0..steps)
            .map(|t| rng.chance(0.2) && (forced || !(on && t < start.hold_steps as usize)))
            .collect();
        let start_cost = c.start_cost_eur * 20.0;
        let mut dp = UnitDp::new(
            Wear::starting(c, &instance.day, start.starts_used, forced),
            start_cost,
        )
        .starting(start);
        if forced {
            dp = dp.with_forced_stops();
        }
        let value = dp.solve(&instance.day, &reward, Some(&forbidden));
        let keeps = |sched: &[bool]| {
            let wear = if forced {
                respects_wear_forced(sched, &instance.day, c, start, &forbidden)
            } else {
                respects_wear_from(sched, &instance.day, c, start)
            };
            wear && !(0..steps).any(|t| sched[t] && forbidden[t])
        };
        let worth = |sched: &[bool]| -> f64 {
            let mut before = start.on;
            let mut w = 0.0;
            for t in 0..steps {
                if sched[t] {
                    w += reward[t];
                    if !before {
                        w -= start_cost;
                    }
                }
                before = sched[t];
            }
            w
        };
        let best = (0u32..1 << steps)
            .map(|mask| {
                (0..steps)
                    .map(|t| mask >> t & 1 == 1)
                    .collect::<Vec<bool>>()
            })
            .filter(|sched| keeps(sched))
            .map(|sched| worth(&sched))
            .fold(f64::NEG_INFINITY, f64::max);
        prop_assert!(
            (value - best).abs() <= 1e-9,
            "programme {} vs enumeration {} from {:?}",
            value,
            best,
            start
        );
        prop_assert!(keeps(&dp.on), "{:?} from {:?}", dp.on, start);
        prop_assert!((worth(&dp.on) - value).abs() <= 1e-9);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Issue 14: the programme of a unit that is already on (or resting) with part
        /// of its minimum left and starts used today is exact.
        #[test]
        fn r14_unit_programme_from_a_start_matches_enumeration(seed in any::<u64>(), steps in 1usize..=10) {
            programme_from_a_start_matches_enumeration(seed, steps, false)?;
        }

        /// Issue 14: the planner's programme, in which a forbidden step forces a stop,
        /// is exact too, from any starting state.
        #[test]
        fn r14_forced_stop_programme_matches_enumeration(seed in any::<u64>(), steps in 1usize..=10) {
            programme_from_a_start_matches_enumeration(seed, steps, true)?;
        }
    }

    fn bounds_bracket(instance: &Instance, steps: usize) -> Result<(), TestCaseError> {
        let input = instance.input();
        let result = solve(&input).unwrap();
        let optimum = brute_force_optimum(&input);
        let slack = 1e-9 * (1.0 + optimum.abs());
        prop_assert!(
            result.feasible_eur <= optimum + slack,
            "feasible {} above optimum {}",
            result.feasible_eur,
            optimum
        );
        prop_assert!(
            optimum <= result.upper_bound_eur + slack,
            "optimum {} above bound {}",
            optimum,
            result.upper_bound_eur
        );
        // Each of the two bounds is one on its own (r12: the no-wear optimum joined).
        prop_assert!(
            optimum <= result.no_wear_eur + slack,
            "{optimum} > {result:?}"
        );
        prop_assert!(
            optimum <= result.lagrangian_eur + slack,
            "{optimum} > {result:?}"
        );
        let curves: Vec<StepCurve> = (0..steps)
            .map(|t| StepCurve::new(&input.tiers, t))
            .collect();
        let schedule = build_feasible(&input, &curves);
        assert_schedule_valid(instance, &schedule);
        Ok(())
    }

    fn random_convex_instance(seed: u64, steps: usize, with_wear: bool) -> Instance {
        let mut instance = random_tiny_instance(seed, steps);
        let mut rng = SplitMix(seed ^ 0xC0FFEE);
        for t in 0..steps {
            instance.export_cost[t] = rng.range(0.0, 80.0);
            instance.import_cost[t] = instance.export_cost[t] + rng.range(0.0, 100.0);
            instance.hashprice[t] = rng.range(0.0, 120.0);
        }
        instance.classes = vec![
            class("s9", 3, 1400.0, 1.1),
            class("s19", 25, 3250.0, 0.9),
            {
                let mut cpu = class("cpu", 4, 300.0, 0.5);
                cpu.continuous = true;
                cpu
            },
        ];
        if with_wear {
            for c in &mut instance.classes {
                c.min_on_steps = 6;
                c.min_off_steps = 3;
                c.max_starts_per_day = Some(1);
            }
        }
        instance
    }

    #[test]
    fn strong_duality_without_binding_wear_and_convex_tiers() {
        // With min_power_w == 0 the wear limits cannot bind either (an on
        // unit idles for free), so both variants have no duality gap.
        for seed in 0..20 {
            for with_wear in [false, true] {
                let instance = random_convex_instance(seed, 48, with_wear);
                let result = solve(&instance.input()).unwrap();
                let scale = result.upper_bound_eur.abs().max(1.0);
                assert!(
                    (result.upper_bound_eur - result.feasible_eur).abs() <= 1e-6 * scale,
                    "seed {seed} wear {with_wear}: bound {} feasible {}",
                    result.upper_bound_eur,
                    result.feasible_eur
                );
                assert!(result.gap <= 1e-6);
            }
        }
    }

    /// One 1 MW unit, 1 h steps, so EUR = MWh x EUR/MWh directly.
    fn hand_instance(
        hashprice: Vec<f64>,
        free_w: Vec<f64>,
        export: (Vec<f64>, Vec<f64>),
        import: (Vec<f64>, Vec<f64>),
        unit: UnitClass,
    ) -> Instance {
        let steps = hashprice.len();
        Instance {
            step_h: 1.0,
            day: vec![0; steps],
            hashprice,
            free_w,
            export_w: export.0,
            export_cost: export.1,
            import_w: import.0,
            import_cost: import.1,
            classes: vec![unit],
            max_iterations: 500,
            tolerance: 1e-9,
        }
    }

    #[test]
    fn hand_computed_three_steps() {
        // Step 0: value 60; 0.5 MWh free (+30), 0.5 MWh export at 40 (+10) = 40.
        // Step 1: value 30; 0.2 free (+6), 0.5 export at 20 (+5), 0.3 import at 25 (+1.5) = 12.5.
        // Step 2: value 60; 0.4 export at -10 (+28), 0.6 import at 50 (+6) = 34.
        let instance = hand_instance(
            vec![60.0, 30.0, 60.0],
            vec![0.5e6, 0.2e6, 0.0],
            (vec![0.5e6, 0.5e6, 0.4e6], vec![40.0, 20.0, -10.0]),
            (vec![1.0e6, 1.0e6, 1.0e6], vec![100.0, 25.0, 50.0]),
            class("unit", 1, 1.0e6, 1.0),
        );
        let result = solve(&instance.input()).unwrap();
        assert!((result.feasible_eur - 86.5).abs() < 1e-9, "{result:?}");
        assert!((result.upper_bound_eur - 86.5).abs() < 1e-9, "{result:?}");
        assert_eq!(result.feasible_power_w, vec![1.0e6, 1.0e6, 1.0e6]);
        assert_eq!(result.iterations, 1);
    }

    #[test]
    fn hand_computed_non_convex_tiers() {
        // Export (80) dearer than import (20): 1 MWh costs 80 (loss 20 at
        // value 60) but 2 MWh cost 100 for a value of 120: best is 2 MWh, +20.
        let instance = hand_instance(
            vec![60.0],
            vec![0.0],
            (vec![1.0e6], vec![80.0]),
            (vec![1.0e6], vec![20.0]),
            class("unit", 1, 2.0e6, 1.0),
        );
        let result = solve(&instance.input()).unwrap();
        assert!((result.feasible_eur - 20.0).abs() < 1e-9, "{result:?}");
        assert!((result.upper_bound_eur - 20.0).abs() < 1e-9, "{result:?}");
    }

    /// r12 defect 4: with a non-convex tier cost and classes of different value, the
    /// Lagrangian dual convexifies the cost and was 22 % above the true optimum in one
    /// case, so a policy near the optimum was reported far below it. Here: 1 MWh export
    /// at 100, then 1 MWh import at 20; a 1 MW class worth 200 and a 1 MW class worth
    /// 0. The best is the valuable class alone: 200 - 100 = 100 EUR (both: 200 - 120 =
    /// 80). The convexified cost is 60 per MWh, so the dual says 200 - 60 = 140. The
    /// exact no-wear optimum finds 100, and the reported bound is the tighter one.
    #[test]
    fn r12_the_no_wear_optimum_is_exact_where_the_dual_is_loose() {
        let mut instance = hand_instance(
            vec![1.0],
            vec![0.0],
            (vec![1.0e6], vec![100.0]),
            (vec![1.0e6], vec![20.0]),
            class("valuable", 1, 1.0e6, 200.0),
        );
        instance.classes.push(class("worthless", 1, 1.0e6, 0.0));
        let result = solve(&instance.input()).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(result.no_wear_eur, 100.0), "{result:?}");
        assert!(close(result.lagrangian_eur, 140.0), "{result:?}");
        assert!(close(result.upper_bound_eur, 100.0), "{result:?}");
        assert_eq!(result.bound, BoundKind::NoWear);
        assert!(close(result.feasible_eur, 100.0), "{result:?}");
        assert!(close(brute_force_optimum(&instance.input()), 100.0));
        // A negative hashprice reverses the merit order: the "worthless" class is the
        // cheaper one to run, and it pays when the energy costs less than nothing.
        let mut negative = instance.clone();
        negative.hashprice = vec![-0.1];
        negative.export_cost = vec![-50.0];
        let result = solve(&negative.input()).unwrap();
        let exact = brute_force_optimum(&negative.input());
        assert!(close(exact, 50.0), "{exact}");
        assert!(close(result.no_wear_eur, exact), "{result:?}");
    }

    #[test]
    fn hand_computed_start_limit() {
        // A unit drawing at least 0.5 MW, one start a day. Steps 0 and 2 earn
        // 60 on free power; step 1 has only import at 100 for a value of 10,
        // so staying on through it costs 0.5 x 90 = 45.
        let mut unit = class("unit", 1, 1.0e6, 1.0);
        unit.min_power_w = 0.5e6;
        unit.max_starts_per_day = Some(1);
        let mut instance = hand_instance(
            vec![60.0, 10.0, 60.0],
            vec![1.0e6, 0.0, 1.0e6],
            (vec![0.0; 3], vec![0.0; 3]),
            (vec![0.0, 1.0e6, 0.0], vec![0.0, 100.0, 0.0]),
            unit,
        );
        // Same day: on through all three steps, 60 - 45 + 60 = 75 (better than
        // 60 from one step). The dual of this instance is also 75 (prices 15,
        // 100, 15 certify it), so the bound must come close.
        let result = solve(&instance.input()).unwrap();
        assert!((result.feasible_eur - 75.0).abs() < 1e-9, "{result:?}");
        assert!(result.upper_bound_eur >= 75.0 - 1e-9);
        assert!(result.upper_bound_eur <= 75.0 * 1.01, "{result:?}");
        // A new day at step 2 gives a second start: off through step 1, 120.
        instance.day = vec![0, 1, 1];
        let result = solve(&instance.input()).unwrap();
        assert!((result.feasible_eur - 120.0).abs() < 1e-9, "{result:?}");
        assert!((result.upper_bound_eur - 120.0).abs() < 1e-9, "{result:?}");
    }

    /// Issue 11: a start cost above what a short window earns keeps the unit off
    /// in it, and the cost of the starts made comes off the profit. A unit drawing
    /// at least 0.5 MW earns 60 in step 0 and 180 over steps 3..=5 on free power;
    /// steps 1 and 2 offer only import at 100 for hashes worth nothing, so staying
    /// on through them costs 2 x 50.
    #[test]
    fn r11_start_cost_makes_a_short_window_not_worth_starting() {
        let mut unit = class("unit", 1, 1.0e6, 1.0);
        unit.min_power_w = 0.5e6;
        let mut instance = hand_instance(
            vec![60.0, 0.0, 0.0, 60.0, 60.0, 60.0],
            vec![1.0e6, 0.0, 0.0, 1.0e6, 1.0e6, 1.0e6],
            (vec![0.0; 6], vec![0.0; 6]),
            (
                vec![0.0, 1.0e6, 1.0e6, 0.0, 0.0, 0.0],
                vec![0.0, 100.0, 100.0, 0.0, 0.0, 0.0],
            ),
            unit,
        );
        // Free starts: both windows, 60 + 180.
        let result = solve(&instance.input()).unwrap();
        assert!((result.feasible_eur - 240.0).abs() < 1e-9, "{result:?}");
        assert_eq!(result.feasible_wear_cost_eur, 0.0);
        // 70 a start: step 0 alone (60) no longer pays for its start; running
        // through (240 - 100 - 70 = 70) or starting twice (240 - 140 = 100) are
        // worse than the long window alone, 180 - 70 = 110.
        instance.classes[0].start_cost_eur = 70.0;
        let result = solve(&instance.input()).unwrap();
        assert!((result.feasible_eur - 110.0).abs() < 1e-9, "{result:?}");
        assert!(
            (result.feasible_wear_cost_eur - 70.0).abs() < 1e-9,
            "{result:?}"
        );
        assert_eq!(result.feasible_power_w[0], 0.0, "{result:?}");
        assert!(result.upper_bound_eur >= 110.0 - 1e-9, "{result:?}");
        assert!(
            result.upper_bound_eur < 240.0 - 1e-9,
            "the bound charges starts: {result:?}"
        );
    }

    /// A few days of 1-minute-like steps with solar-shaped surplus and prices.
    fn synthetic_instance(
        seed: u64,
        days: usize,
        steps_per_day: usize,
        min_power_share: f64,
    ) -> Instance {
        let mut rng = SplitMix(seed);
        let steps = days * steps_per_day;
        let mut instance = Instance {
            step_h: 24.0 / steps_per_day as f64,
            day: Vec::with_capacity(steps),
            hashprice: Vec::with_capacity(steps),
            free_w: Vec::with_capacity(steps),
            export_w: Vec::with_capacity(steps),
            export_cost: Vec::with_capacity(steps),
            import_w: Vec::with_capacity(steps),
            import_cost: Vec::with_capacity(steps),
            classes: Vec::new(),
            max_iterations: 60,
            tolerance: 1e-3,
        };
        let mut cloud = 1.0;
        let mut hashprice = 55.0;
        let mut price_noise = 0.0;
        for t in 0..steps {
            let d = t / steps_per_day;
            let hour = (t % steps_per_day) as f64 * 24.0 / steps_per_day as f64;
            let season = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * d as f64 / 365.0).cos();
            let sun = (std::f64::consts::PI * (hour - 6.0) / 12.0).sin().max(0.0);
            cloud = (cloud + rng.range(-0.05, 0.05)).clamp(0.2, 1.0);
            let pv_surplus_w = 150_000.0 * season * sun * cloud - 20_000.0;
            let export_limit_w = 100_000.0;
            let surplus_w = pv_surplus_w.max(0.0);
            instance.export_w.push(surplus_w.min(export_limit_w));
            instance.free_w.push((surplus_w - export_limit_w).max(0.0));
            price_noise = 0.98 * price_noise + rng.range(-3.0, 3.0);
            let spot = 90.0 - 110.0 * sun * season
                + 30.0 * (hour > 17.0 && hour < 21.0) as u8 as f64
                + price_noise;
            instance.export_cost.push(spot);
            instance.import_cost.push(spot + 60.0);
            instance.import_w.push(60_000.0);
            hashprice = (hashprice + rng.range(-0.05, 0.05)).clamp(35.0, 80.0);
            instance.hashprice.push(hashprice);
            instance.day.push(20_000 + d as i64);
        }
        let wear = |mut c: UnitClass| {
            c.min_power_w = min_power_share * c.rated_w;
            c.min_on_steps = 15;
            c.min_off_steps = 5;
            c.max_starts_per_day = Some(12);
            c
        };
        let mut cpu = class("cpu", 1, 2_000.0, 0.3);
        cpu.continuous = true;
        instance.classes = vec![
            wear(class("s21", 30, 3_500.0, 1.6)),
            wear(class("s19", 20, 3_250.0, 1.1)),
            cpu,
        ];
        instance
    }

    #[test]
    fn wear_limits_bind_and_are_respected() {
        let mut instance = synthetic_instance(7, 3, 240, 0.4);
        for c in &mut instance.classes {
            c.min_on_steps = 7;
            c.min_off_steps = 4;
            c.max_starts_per_day = c.max_starts_per_day.map(|_| 2);
        }
        instance.max_iterations = 200;
        let input = instance.input();
        let result = solve(&input).unwrap();
        let curves: Vec<StepCurve> = (0..input.day.len())
            .map(|t| StepCurve::new(&input.tiers, t))
            .collect();
        let schedule = build_feasible(&input, &curves);
        assert_schedule_valid(&instance, &schedule);
        let relaxed = {
            let mut free = instance.clone();
            for c in &mut free.classes {
                c.min_on_steps = 1;
                c.min_off_steps = 1;
                c.max_starts_per_day = None;
            }
            solve(&free.input()).unwrap()
        };
        assert!(result.feasible_eur <= result.upper_bound_eur);
        // The limits must actually cost something here, or this test checks nothing.
        assert!(
            relaxed.feasible_eur > result.feasible_eur,
            "{relaxed:?} vs {result:?}"
        );
        for t in 0..input.day.len() {
            assert!(result.feasible_power_w[t] <= curves[t].total_w() * (1.0 + 1e-12) + 1e-9);
        }
        assert!(
            (schedule_profit(&input, &schedule.class_power_w).unwrap() - result.feasible_eur).abs()
                < 1e-9
        );
    }

    #[test]
    fn empty_horizon_is_worth_nothing() {
        let instance = hand_instance(
            vec![],
            vec![],
            (vec![], vec![]),
            (vec![], vec![]),
            class("unit", 2, 1.0e6, 1.0),
        );
        let result = solve(&instance.input()).unwrap();
        assert_eq!(
            (result.upper_bound_eur, result.feasible_eur, result.gap),
            (0.0, 0.0, 0.0)
        );
        assert!(result.feasible_power_w.is_empty());
    }

    /// A two-step instance every r10 test below breaks in one way.
    fn good_instance() -> Instance {
        hand_instance(
            vec![60.0, 60.0],
            vec![1.0e6, 1.0e6],
            (vec![0.5e6; 2], vec![40.0; 2]),
            (vec![0.5e6; 2], vec![80.0; 2]),
            class("unit", 2, 1.0e6, 1.0),
        )
    }

    /// r10 (issue 10, soundness): every input `validate` rejects is an error from `solve`
    /// (the simulation report used to panic on it) and the reason names what is wrong.
    /// Catches a check that is dropped or a `solve` that panics again.
    #[test]
    fn r10_solve_rejects_bad_input_with_its_reason() {
        assert!(solve(&good_instance().input()).is_ok());
        type Breaks<T> = Box<dyn Fn(&mut T)>;
        let cases: Vec<(&str, Breaks<Instance>, InputError)> = vec![
            (
                "zero step",
                Box::new(|i| i.step_h = 0.0),
                InputError::BadStep,
            ),
            (
                "NaN step",
                Box::new(|i| i.step_h = f64::NAN),
                InputError::BadStep,
            ),
            (
                "NaN tolerance",
                Box::new(|i| i.tolerance = f64::NAN),
                InputError::BadTolerance,
            ),
            (
                "negative tolerance",
                Box::new(|i| i.tolerance = -1.0),
                InputError::BadTolerance,
            ),
            (
                "short series",
                Box::new(|i| i.import_cost.truncate(1)),
                InputError::LengthMismatch {
                    field: "import_cost",
                    len: 1,
                    expected: 2,
                },
            ),
            (
                "day going back",
                Box::new(|i| i.day = vec![5, 4]),
                InputError::DayDecreases { step: 1 },
            ),
            (
                "NaN price",
                Box::new(|i| i.export_cost[1] = f64::NAN),
                InputError::BadValue {
                    field: "export_cost",
                    step: 1,
                },
            ),
            (
                "infinite hashprice",
                Box::new(|i| i.hashprice[0] = f64::INFINITY),
                InputError::BadValue {
                    field: "hashprice",
                    step: 0,
                },
            ),
            (
                "negative power",
                Box::new(|i| i.import_w[0] = -1.0),
                InputError::BadValue {
                    field: "import_w",
                    step: 0,
                },
            ),
            (
                "tiers adding up to infinity",
                Box::new(|i| {
                    i.free_w[1] = f64::MAX;
                    i.export_w[1] = f64::MAX;
                }),
                InputError::Overflow {
                    field: "tiers",
                    step: 1,
                },
            ),
            (
                "tier cost overflowing",
                Box::new(|i| i.import_cost[0] = f64::MAX),
                InputError::Overflow {
                    field: "tiers",
                    step: 0,
                },
            ),
            (
                "value overflowing",
                Box::new(|i| i.classes[0].value_per_hashprice = f64::MAX),
                InputError::Overflow {
                    field: "hashprice * value_per_hashprice",
                    step: 0,
                },
            ),
        ];
        let class_cases: Vec<(&str, Breaks<UnitClass>, &str)> = vec![
            (
                "zero rating",
                Box::new(|c| c.rated_w = 0.0),
                "rated_w must be positive and finite",
            ),
            (
                "NaN rating",
                Box::new(|c| c.rated_w = f64::NAN),
                "rated_w must be positive and finite",
            ),
            (
                "fleet overflowing",
                Box::new(|c| {
                    c.rated_w = f64::MAX;
                    c.count = 4;
                }),
                "count * rated_w must be finite",
            ),
            (
                "NaN value",
                Box::new(|c| c.value_per_hashprice = f64::NAN),
                "value_per_hashprice must be finite",
            ),
            (
                "least power above rated",
                Box::new(|c| c.min_power_w = 2.0e6),
                "min_power_w must lie in [0, rated_w]",
            ),
            (
                "negative least power",
                Box::new(|c| c.min_power_w = -1.0),
                "min_power_w must lie in [0, rated_w]",
            ),
        ];
        let cases = cases
            .into_iter()
            .chain(class_cases.into_iter().map(|(what, f, reason)| {
                let f: Breaks<Instance> = Box::new(move |i| f(&mut i.classes[0]));
                let want = InputError::BadClass {
                    class: "unit".into(),
                    reason,
                };
                (what, f, want)
            }));
        for (what, break_it, want) in cases {
            let mut instance = good_instance();
            break_it(&mut instance);
            assert_eq!(
                solve(&instance.input()).map(|_| ()),
                Err(want.clone()),
                "{what}"
            );
            assert_eq!(validate(&instance.input()), Err(want.clone()), "{what}");
            let schedule = vec![vec![0.0; instance.hashprice.len()]];
            assert_eq!(
                schedule_profit(&instance.input(), &schedule),
                Err(want),
                "{what}"
            );
        }
    }

    /// r10: a schedule that cannot be priced is an error, not a panic: the wrong shape, a
    /// negative or NaN power, or more power than the tiers hold.
    #[test]
    fn r10_schedule_profit_rejects_what_it_cannot_price() {
        let instance = good_instance();
        let input = instance.input();
        assert!(schedule_profit(&input, &[vec![1.0e6, 2.0e6]]).is_ok());
        assert_eq!(
            schedule_profit(&input, &[vec![1.5e6, 2.5e6]]),
            Err(InputError::ScheduleOverdraws {
                step: 1,
                total_w: 2.5e6,
                capacity_w: 2.0e6
            })
        );
        assert_eq!(
            schedule_profit(&input, &[]),
            Err(InputError::ScheduleShape {
                len: 0,
                expected: 1,
                steps_found: 2,
                steps: 2
            })
        );
        assert_eq!(
            schedule_profit(&input, &[vec![0.0]]),
            Err(InputError::ScheduleShape {
                len: 1,
                expected: 1,
                steps_found: 1,
                steps: 2
            })
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                schedule_profit(&input, &[vec![0.0, bad]]),
                Err(InputError::ScheduleValue {
                    class: "unit".into(),
                    step: 1
                })
            );
        }
        let err = schedule_profit(&input, &[vec![1.5e6, 2.5e6]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "step 1: mining power 2500000 W exceeds the tiers' total 2000000 W"
        );
    }

    /// r10: wear minimums far beyond the horizon (u32::MAX steps, which used to size the
    /// programme's delay lines: 32 GiB) mean what a minimum of the horizon's length means,
    /// and solve to exactly that.
    #[test]
    fn r10_minimums_beyond_the_horizon_are_the_horizon() {
        let mut instance = synthetic_instance(3, 1, 48, 0.3);
        let steps = instance.day.len() as u32;
        let mut huge = instance.clone();
        for (c, h) in instance.classes.iter_mut().zip(&mut huge.classes) {
            c.min_on_steps = steps;
            c.min_off_steps = steps;
            h.min_on_steps = u32::MAX;
            h.min_off_steps = u32::MAX;
        }
        let (a, b) = (
            solve(&instance.input()).unwrap(),
            solve(&huge.input()).unwrap(),
        );
        assert_eq!(a.feasible_eur, b.feasible_eur);
        assert_eq!(a.upper_bound_eur, b.upper_bound_eur);
        assert_eq!(a.feasible_power_w, b.feasible_power_w);
        assert!(
            a.feasible_eur > 0.0,
            "the instance must earn something: {a:?}"
        );
    }

    #[test]
    fn invalid_input_is_reported() {
        let mut instance = hand_instance(
            vec![60.0, 60.0],
            vec![1.0, 1.0],
            (vec![0.0; 2], vec![0.0; 2]),
            (vec![0.0; 2], vec![0.0; 2]),
            class("unit", 1, 2.0e6, 1.0),
        );
        instance.day = vec![1, 0];
        assert_eq!(
            validate(&instance.input()),
            Err(InputError::DayDecreases { step: 1 })
        );
        instance.day = vec![0, 0];
        instance.free_w = vec![1.0, -1.0];
        assert_eq!(
            validate(&instance.input()),
            Err(InputError::BadValue {
                field: "free_w",
                step: 1
            })
        );
    }

    /// Prints the time for a synthetic year at 1-minute steps. Run with
    /// `cargo test --release -- --ignored --nocapture synthetic_year`.
    #[test]
    #[ignore = "timing report, not a check"]
    fn synthetic_year_timing() {
        for min_power_share in [0.0, 0.3] {
            let instance = synthetic_instance(2024, 365, 1440, min_power_share);
            let started = std::time::Instant::now();
            let result = solve(&instance.input()).unwrap();
            let elapsed = started.elapsed();
            println!(
                "year, min_power {:.0}% of rated: {:.2} s, bound {:.2} EUR, feasible {:.2} EUR, gap {:.4}%, {} evaluations",
                min_power_share * 100.0,
                elapsed.as_secs_f64(),
                result.upper_bound_eur,
                result.feasible_eur,
                result.gap * 100.0,
                result.iterations
            );
        }
    }
}
