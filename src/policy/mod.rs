//! DECIDE: a pure function from what the site knows to how many watts each load mines.
//!
//! `Policy::decide(&SiteState, now) -> Decision`. No I/O, no clock of its own, no idea
//! whether it runs live or in a simulation: the same inputs give the same decision.
//! `decide_with` takes a [`Memo`] that carries work over between steps; it is only a
//! cache and never changes the decision.
//!
//! The rules form a stack, highest first:
//! 1. **safety**: a required signal older than `max_signal_age` (or never seen) drives
//!    mining to `safe_limit` (default 0 W);
//! 2. **grid operator**: a setpoint is followed; a curtailment caps mining;
//! 3. **frequency**: under-frequency sheds all mining, over-frequency mines all it can,
//!    each held until the frequency has been back in band for `hold`;
//! 4. **economics** (`allocate.rs`, over the energy `tiers.rs`): every unit, most efficient first, mines when the
//!    energy it would take is worth less than its hashes;
//! 5. **wear**: min on/off times and daily start limits, and a start's cost: a unit
//!    that is off starts only if what it would earn over the time a start commits it
//!    to (the longest of its `min_on`, the policy's `start_payback` and one decision
//!    step), at the current value of its
//!    hashes minus the energy's cost, exceeds its hardware's `start_cost_eur`. The cost
//!    is a hurdle on starts only: it never keeps a running unit on (stopping is priced
//!    by the hysteresis as before), and it only ever lowers what the economics want,
//!    so every cap above stays in force unchanged.
//!
//! Wear limits bind the economics, never a higher rule: a curtailment, shedding or the
//! import limit may stop a unit before its `min_on` (counted as a forced stop). Nothing
//! ever *starts* a unit against its `min_off` or daily start limit.

mod allocate;
pub mod config;
mod plan;
mod tiers;

use std::time::Duration;

use serde::Serialize;

pub use allocate::{Allocation, Memo};
pub use tiers::{Split, Tiers};

/// Plans the planner has solved in this process (what `bench sim` counts).
pub fn plans_solved() -> u64 {
    plan::PLANS_SOLVED.load(std::sync::atomic::Ordering::Relaxed)
}

use crate::clock::Timestamp;
use crate::decision::{Decision, FrequencyEvent, PolicyMemory, Reason};
use crate::signal::Quantity;
use crate::site::solar::Location;
use crate::site::{GridConnection, LoadSpec, Tariff, WearLimits};
use crate::state::SiteState;
use crate::units::{Hashprice, Hertz, PricePerMwh, Watts};

/// Whether mining may ever draw from the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Never import for mining: only surplus (curtailed or exportable) energy.
    SurplusOnly,
    /// Import too, when hashes are worth more than the import price plus margin.
    Economic,
}

/// The look-ahead planner's settings (`mode = "plan"`, `[policy] plan = {...}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlanParams {
    /// How far ahead it plans.
    pub horizon: Duration,
    /// The length of one planned slot; slots are aligned to whole multiples of it since
    /// the epoch (15 minutes: the quarter hours markets and meters use).
    pub step: Duration,
}

/// Frequency response settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrequencyResponse {
    pub nominal: Hertz,
    /// Below this, shed all mining.
    pub shed_below: Hertz,
    /// Above this, mine all that the import limit allows.
    pub absorb_above: Hertz,
    /// How long the frequency must be back in band before the event ends.
    pub hold: Duration,
}

/// A policy's parameters, as a policy file gives them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyParams {
    /// Which energy mining may use. With `plan` this is the plan's `base`.
    pub mode: Mode,
    /// Plan ahead (`mode = "plan"`): wear limits and starts are spent where the forecast
    /// says they pay. `None`: decide on the moment alone.
    pub plan: Option<PlanParams>,
    /// Hashes must beat the cost of paid energy by this much (EUR/MWh). Otherwise
    /// curtailed energy needs no margin: it is free.
    pub margin: PricePerMwh,
    /// A running unit keeps running until its margin falls this far below `margin`.
    pub hysteresis: PricePerMwh,
    /// The policy's own dwell times; a load's hardware limits apply if stricter.
    pub min_on: Duration,
    pub min_off: Duration,
    pub max_starts_per_day: Option<u32>,
    /// How much running a start must pay for its wear cost within, at the current
    /// margin: the run the site expects a start to begin. The hurdle uses the longest
    /// of this, the unit's `min_on` and one decision step. Zero (the default) is the
    /// strict reading, "within the run a start commits the unit to"; with a short or no
    /// `min_on` that refuses nearly every start a real cost would ever be charged for.
    pub start_payback: Duration,
    pub max_signal_age: Duration,
    /// Most mining may draw while inputs are stale.
    pub safe_limit: Watts,
    pub frequency: Option<FrequencyResponse>,
}

/// A policy bound to a site: parameters, loads in merit order, effective wear limits.
#[derive(Debug, Clone)]
pub struct Policy {
    pub params: PolicyParams,
    pub loads: Vec<LoadSpec>,
    pub grid: GridConnection,
    pub tariff: Tariff,
    /// Effective wear limits per load: the stricter of hardware and policy.
    pub wear: Vec<WearLimits>,
    /// Load indices, most hashes per watt first.
    pub merit: Vec<usize>,
    /// Each load's energy value at a hashprice of 1 EUR per PH/s per day, EUR/MWh: the
    /// value scales with the hashprice, so a step costs one multiplication per load.
    pub value_per_hashprice: Vec<f64>,
    pub has_pv: bool,
    pub has_wind: bool,
    /// The shortest time a start commits a unit to when its `min_on` is shorter: one
    /// decision step (the simulator's replay step; live, [`DEFAULT_DECISION_STEP`]).
    /// Only the start-cost hurdle reads it.
    pub decision_step: Duration,
    /// Where the site is, for the clear-sky shape of the planner's PV forecast.
    pub location: Option<Location>,
}

/// The decision step a policy assumes unless told otherwise: the live controller decides
/// every tick, but the data it decides on (prices, forecasts) moves every minute or
/// slower, so a start is judged over at least a minute of running.
pub const DEFAULT_DECISION_STEP: Duration = Duration::from_secs(60);

impl Policy {
    pub fn new(
        params: PolicyParams,
        loads: Vec<LoadSpec>,
        grid: GridConnection,
        tariff: Tariff,
        has_pv: bool,
        has_wind: bool,
    ) -> Self {
        let wear = loads
            .iter()
            .map(|l| {
                if !l.is_switched() {
                    return WearLimits::default();
                }
                WearLimits {
                    min_on: l.wear.min_on.max(params.min_on),
                    min_off: l.wear.min_off.max(params.min_off),
                    max_starts_per_day: match (l.wear.max_starts_per_day, params.max_starts_per_day)
                    {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    },
                    start_cost_eur: l.wear.start_cost_eur,
                }
            })
            .collect();
        let mut merit: Vec<usize> = (0..loads.len()).collect();
        // Efficiency (H per J) is fixed per load, so the order is too.
        merit.sort_by(|&a, &b| {
            let ea = loads[a].hashrate.0 / loads[a].rated_power.0;
            let eb = loads[b].hashrate.0 / loads[b].rated_power.0;
            eb.total_cmp(&ea)
        });
        let value_per_hashprice = loads
            .iter()
            .map(|l| l.value_per_mwh(Hashprice(1.0)).0)
            .collect();
        Policy {
            params,
            value_per_hashprice,
            loads,
            grid,
            tariff,
            wear,
            merit,
            has_pv,
            has_wind,
            decision_step: DEFAULT_DECISION_STEP,
            location: None,
        }
    }

    /// The same policy at a site at `location` (the planner draws PV on its clear sky).
    pub fn with_location(mut self, location: Option<Location>) -> Self {
        self.location = location;
        self
    }

    /// The same policy, judging starts over at least `step` of running (the simulator
    /// passes its replay step: a unit it starts runs one step at least).
    pub fn with_decision_step(mut self, step: Duration) -> Self {
        self.decision_step = step;
        self
    }

    /// The tiers this moment offers mining, from fresh readings.
    pub fn tiers(&self, generation: Watts, site_load: Watts, price: PricePerMwh) -> Tiers {
        Tiers::new(
            generation - site_load,
            &self.grid,
            &self.tariff,
            price,
            self.params.mode == Mode::Economic,
        )
    }

    /// Decides every load's target. Pure: depends only on its arguments.
    pub fn decide(&self, state: &SiteState, now: Timestamp) -> Decision {
        self.decide_with(state, now, &mut Memo::default())
    }

    /// [`Policy::decide`], reusing work from earlier steps through `memo` (a cache, see
    /// [`Memo`]): the same decision, cheaper when little changed. One memo per state.
    pub fn decide_with(&self, state: &SiteState, now: Timestamp, memo: &mut Memo) -> Decision {
        let mut memory = state.memory;
        // Every cap in force but the site's own energy limits (those need fresh inputs):
        // the effective limit is their minimum, and nothing below lifts mining above it.
        let event = self.frequency_event(state, now, &mut memory);
        let caps = Caps::in_force(state, event, now);
        let setpoint = state.commands.setpoint(now);
        let inputs = match self.fresh_inputs(state, now) {
            Ok(i) => i,
            Err(q) => {
                // Blind: `safe_limit` is the most mining may draw, one more cap.
                let limit = caps.limit.min(self.params.safe_limit);
                let goal = Goal::Fill(setpoint.map_or(limit, |s| s.min(limit)));
                let a = self.allocate(state, now, None, goal, limit, None, memo);
                return self.decision(now, a, Reason::Stale(q), Some(limit), memory);
            }
        };
        let (generation, site_load, price, hashprice) = inputs;
        let tiers = self.tiers(generation, site_load, price);
        // The hard limits (import limit, surplus-only) are a cap too.
        let limit = tiers.capacity().min(caps.limit);
        let cap_reason = caps.reason.filter(|_| caps.limit < tiers.capacity());
        let econ = Some((&tiers, hashprice));
        let goal = match (event, setpoint) {
            (Some(FrequencyEvent::Shed), _) => Goal::Fill(Watts::ZERO),
            (_, Some(s)) => Goal::Fill(s),
            (Some(FrequencyEvent::Absorb), None) => Goal::Fill(limit),
            (None, None) => Goal::Economic,
        };
        let mut a = self.allocate(state, now, econ, goal, limit, None, memo);
        // The plan replaces the economics' unit counts, and nothing above them.
        let mut planned_differs = false;
        if goal == Goal::Economic && self.params.plan.is_some() {
            self.remember_clearness(state, now, &mut memory);
            let read = self.plan_readings(state, now, site_load, price, hashprice);
            let mut plan_memo = memo.plan.take();
            let planned = self.planned(state, now, read, &a, &memory, &mut plan_memo);
            memo.plan = plan_memo;
            if let Some(p) = planned {
                let b = self.allocate(state, now, econ, goal, limit, Some(&p), memo);
                planned_differs = b.targets != a.targets;
                a = b;
            }
        }
        let reason = match (event, cap_reason) {
            (Some(FrequencyEvent::Shed), _) => Reason::UnderFrequency,
            (_, Some(r)) if a.limited => r,
            _ if setpoint.is_some() => Reason::OperatorSetpoint,
            (Some(FrequencyEvent::Absorb), _) => Reason::OverFrequency,
            _ if a.held_on > 0 || a.blocked_starts > 0 => Reason::WearLimit,
            _ if planned_differs => Reason::Planned,
            _ => {
                let s = tiers.split(a.total);
                if s.export.0 + s.import.0 > 1e-9 {
                    Reason::Economic
                } else if a.total.0 > 0.0 {
                    Reason::Surplus
                } else {
                    Reason::Idle
                }
            }
        };
        let shown_limit = cap_reason.map(|_| limit);
        self.decision(now, a, reason, shown_limit, memory)
    }

    fn decision(
        &self,
        now: Timestamp,
        a: Allocation,
        reason: Reason,
        limit: Option<Watts>,
        memory: PolicyMemory,
    ) -> Decision {
        Decision {
            at: now,
            loads: a.targets,
            reason,
            limit,
            held_on: a.held_on,
            blocked_starts: a.blocked_starts,
            memory,
        }
    }

    /// The fresh readings a plan starts from (generation split into PV and wind, which
    /// are forecast apart). Called only once the inputs are known to be fresh.
    fn plan_readings(
        &self,
        s: &SiteState,
        now: Timestamp,
        site_load: Watts,
        price: PricePerMwh,
        hashprice: Hashprice,
    ) -> plan::Now {
        let age = self.params.max_signal_age;
        let fresh = |r: Option<crate::state::Reading<Watts>>, on: bool| {
            r.and_then(|r| r.fresh(now, age))
                .filter(|_| on)
                .unwrap_or(Watts::ZERO)
        };
        plan::Now {
            pv: fresh(s.pv, self.has_pv),
            wind: fresh(s.wind, self.has_wind),
            site_load,
            price,
            hashprice,
        }
    }

    /// Generation, site load, price and hashprice, or the first required signal that is
    /// stale or missing.
    fn fresh_inputs(
        &self,
        s: &SiteState,
        now: Timestamp,
    ) -> Result<(Watts, Watts, PricePerMwh, Hashprice), Quantity> {
        let (generation, load) = self.fresh_power(s, now)?;
        let age = self.params.max_signal_age;
        let price = s
            .price
            .and_then(|r| r.fresh(now, age))
            .or_else(|| s.scheduled_price(now))
            .ok_or(Quantity::Price)?;
        let hashprice = s
            .hashprice
            .and_then(|r| r.fresh(now, age))
            .ok_or(Quantity::Hashprice)?;
        Ok((generation, load, price, hashprice))
    }

    /// The tiers that say where mining's power comes from now, by the same fresh readings
    /// the policy decides on; `None` when it is blind to generation or site load. For
    /// counting mining energy by source: the tier widths are right, the costs are not
    /// (priced at 0 EUR/MWh, as `Tiers::split` does not read them).
    pub fn source_tiers(&self, s: &SiteState, now: Timestamp) -> Option<Tiers> {
        let (generation, load) = self.fresh_power(s, now).ok()?;
        Some(self.tiers(generation, load, PricePerMwh(0.0)))
    }

    /// Generation and site load from fresh readings, or the first one stale or missing.
    fn fresh_power(&self, s: &SiteState, now: Timestamp) -> Result<(Watts, Watts), Quantity> {
        let age = self.params.max_signal_age;
        let get =
            |r: Option<crate::state::Reading<Watts>>, q| r.and_then(|r| r.fresh(now, age)).ok_or(q);
        let pv = if self.has_pv {
            get(s.pv, Quantity::PvPower)?
        } else {
            Watts::ZERO
        };
        let wind = if self.has_wind {
            get(s.wind, Quantity::WindPower)?
        } else {
            Watts::ZERO
        };
        let load = match s.site_load {
            Some(r) => r.fresh(now, age).ok_or(Quantity::SiteLoad)?,
            // No site-load meter: what the grid meter sees, plus generation, minus what
            // mining draws (as the loads report it, or as commanded when they do not).
            None if s.grid.is_some() => {
                let grid = get(s.grid, Quantity::GridPower)?;
                let mining = s
                    .mining
                    .and_then(|r| r.fresh(now, age))
                    .unwrap_or_else(|| s.mining_target());
                (pv + wind + grid - mining).max(Watts::ZERO)
            }
            None => return Err(Quantity::SiteLoad),
        };
        Ok((pv + wind, load))
    }

    /// Updates `memory` with the frequency event in force now, if any.
    fn frequency_event(
        &self,
        s: &SiteState,
        now: Timestamp,
        memory: &mut PolicyMemory,
    ) -> Option<FrequencyEvent> {
        let fr = self.params.frequency?;
        let f = s
            .frequency
            .and_then(|r| r.fresh(now, self.params.max_signal_age));
        let outside = f.and_then(|f| {
            if f < fr.shed_below {
                Some(FrequencyEvent::Shed)
            } else if f > fr.absorb_above {
                Some(FrequencyEvent::Absorb)
            } else {
                None
            }
        });
        memory.frequency = match (outside, memory.frequency) {
            (Some(e), _) => Some((e, now)),
            (None, Some((e, last))) if now.since(last) < fr.hold => Some((e, last)),
            _ => None,
        };
        memory.frequency.map(|(e, _)| e)
    }
}

/// What the allocator aims for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Goal {
    /// Mine what pays, by the energy tiers.
    Economic,
    /// Reach this total (a setpoint, a frequency response, a safe level), economics aside.
    Fill(Watts),
}

/// The caps on mining that do not depend on the site's energy, tightest first by
/// authority: frequency shed (0 W), the heartbeat failsafe, every operator curtailment.
/// `limit` is their minimum (infinite when none is in force) and `reason` the rule that
/// set it; of equal caps the first in that order names it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Caps {
    limit: Watts,
    reason: Option<Reason>,
}

impl Caps {
    fn in_force(state: &SiteState, event: Option<FrequencyEvent>, now: Timestamp) -> Caps {
        let shed =
            (event == Some(FrequencyEvent::Shed)).then_some((Watts::ZERO, Reason::UnderFrequency));
        let failsafe = state.failsafe.map(|w| (w, Reason::Failsafe));
        let curtail = state
            .commands
            .curtail_cap(now)
            .map(|(w, _)| (w, Reason::OperatorCurtail));
        let mut caps = Caps {
            limit: Watts(f64::INFINITY),
            reason: None,
        };
        for (w, r) in [shed, failsafe, curtail].into_iter().flatten() {
            // NaN never reaches here (values are checked where they enter), but if it did
            // it must not read as "no cap": it counts as 0 W.
            let w = if w.0.is_nan() { Watts::ZERO } else { w };
            if w < caps.limit {
                caps = Caps {
                    limit: w,
                    reason: Some(r),
                };
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests;
