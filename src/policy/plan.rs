//! PLAN: the look-ahead rule (`mode = "plan"`). It decides how many units of each load
//! run now by solving the next hours, on a forecast of what the site will have, with the
//! exact per-group programmes the simulator's clairvoyant optimum uses (on/off state,
//! time left in it, starts used today, in merit order, then one pass of best
//! responses), from where every unit stands now, and applying only the first slot.
//!
//! The plan only replaces the economics' unit counts. Every rule above the economics
//! (stale signals, operator commands, frequency events, every cap) is decided before it
//! and stays in force unchanged, and the allocator still enforces each unit's `min_on`,
//! `min_off` and daily starts against the ledger: a plan can keep a start for later or
//! keep units on through a dip, never break a wear limit or lift mining above a cap.
//!
//! What the plan knows is what the state holds now, nothing later:
//! - the price: the reading now, then the day-ahead schedule (`price_schedule`) where it
//!   covers a slot, else the schedule's price a whole number of days earlier (the
//!   daily shape), else the price now;
//! - PV: a provider's `pv_forecast` where it covers a slot; else, with the site's
//!   location, the clear-sky shape (`site::solar`) times the PV's clearness, now's
//!   blended towards the day's smoothed clearness with a two-hour time constant
//!   ("smart persistence"); without a location, the reading now;
//! - wind: a provider's `wind_forecast`, else the reading now (persistence);
//! - site load and hashprice: the readings now.
//!
//! Slots are aligned to whole multiples of `plan.step` since the epoch, so a plan made
//! at one minute of a slot is the plan of every minute of it while nothing it reads
//! changes: [`PlanMemo`] keeps it (only a cache: the plan is a function of what it
//! reads, so reusing it never changes a decision).

use std::time::Duration;

use super::{Allocation, Policy};
use crate::clock::{saturating_millis, Timestamp};
use crate::decision::PolicyMemory;
use crate::optimum::{self, OptimumInput, PlanGroup, UnitClass, UnitStart};
use crate::state::{scheduled, SiteState};
use crate::units::{Hashprice, PricePerMwh, Watts};

/// Most groups one load is planned in: units sharing a state and a role share one
/// schedule, so a load of thousands costs what a load of dozens does.
const MAX_GROUPS_PER_LOAD: usize = 32;

/// Pieces each block of identical units is cut into, so the plan can run part of it.
const PIECES_PER_BLOCK: u32 = 4;

/// Clear-sky irradiance under which the PV's clearness now is not read (dawn, dusk,
/// night): small numbers divided by small numbers.
const CLEARNESS_MIN_GHI: f64 = 100.0;

/// Clear-sky irradiance under which a reading does not join the smoothed clearness.
const CLEARNESS_SUM_MIN_GHI: f64 = 20.0;

/// How fast the clearness now gives way to the day's smoothed clearness, ahead.
const CLEARNESS_DECAY: Duration = Duration::from_secs(2 * 3600);

/// How long the smoothed sums remember, in daylight: about a morning, or an afternoon.
/// A reading weighs as much as the time since the one before it (at most
/// `CLEARNESS_MAX_GAP`, so a night or a gap does not erase the memory); within the ratio
/// it also weighs its clear-sky irradiance, so low sun, where a tilted array and the
/// horizontal model part most, counts least.
const CLEARNESS_MEMORY: Duration = Duration::from_secs(6 * 3600);
const CLEARNESS_MAX_GAP: Duration = Duration::from_secs(15 * 60);

/// The clearness a plan uses is rounded to steps of about 2 %, so that its slow drift
/// does not make every minute a new plan.
const CLEARNESS_STEPS_PER_E: f64 = 50.0;

/// The furthest back a day-ahead price's daily shape is looked for.
const SCHEDULE_DAYS_BACK: i64 = 7;

/// Plans solved in this process, for `bench sim` (a counter, never read by a decision).
pub(crate) static PLANS_SOLVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What the planner read and what it planned: reused while what it reads is the same.
#[derive(Debug, Clone)]
pub(crate) struct PlanMemo {
    key: PlanKey,
    planned: Vec<u32>,
}

#[derive(Debug, Clone)]
struct PlanKey {
    slot: Timestamp,
    readings: [u64; 6],
    versions: Vec<u64>,
    paid_for: Vec<u32>,
    schedule: Vec<(Timestamp, PricePerMwh)>,
    pv_forecast: Vec<(Timestamp, Watts)>,
    wind_forecast: Vec<(Timestamp, Watts)>,
}

/// The fresh readings a plan starts from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub pv: Watts,
    pub wind: Watts,
    pub site_load: Watts,
    pub price: PricePerMwh,
    pub hashprice: Hashprice,
}

impl Policy {
    /// The PV reading's clearness folded into `memory` (a new daylight reading only).
    pub(crate) fn remember_clearness(
        &self,
        state: &SiteState,
        now: Timestamp,
        memory: &mut PolicyMemory,
    ) {
        let (Some(_), Some(loc), Some(r)) = (self.params.plan, self.location, state.pv) else {
            return;
        };
        if r.fresh(now, self.params.max_signal_age).is_none()
            || memory.pv_clearness.is_some_and(|(.., seen)| seen >= r.at)
        {
            return;
        }
        let ghi = loc.clear_sky_ghi(r.at);
        if ghi < CLEARNESS_SUM_MIN_GHI {
            return;
        }
        let pv = r.value.0.max(0.0);
        memory.pv_clearness = Some(match memory.pv_clearness {
            None => (pv, ghi, r.at),
            Some((p, g, seen)) => {
                let dt = r.at.since(seen).min(CLEARNESS_MAX_GAP);
                let a = 1.0 - (-dt.as_secs_f64() / CLEARNESS_MEMORY.as_secs_f64()).exp();
                (p + a * (pv - p), g + a * (ghi - g), r.at)
            }
        });
    }

    /// Units on per load in the plan's first slot, or `None` where no plan can be made
    /// (an input the programmes refuse: then the economics decide alone). `econ` is the
    /// economics' own allocation: its unit counts are where the groups are cut.
    pub(crate) fn planned(
        &self,
        state: &SiteState,
        now: Timestamp,
        read: Now,
        econ: &Allocation,
        memory: &PolicyMemory,
        memo: &mut Option<PlanMemo>,
    ) -> Option<Vec<u32>> {
        let params = self.params.plan?;
        let slot_ms = saturating_millis(params.step).max(1);
        let slot0 = Timestamp(now.0.div_euclid(slot_ms) * slot_ms);
        let clearness = day_clearness(memory).unwrap_or(f64::NAN);
        let readings = [
            read.pv.0.to_bits(),
            read.wind.0.to_bits(),
            read.site_load.0.to_bits(),
            read.price.0.to_bits(),
            read.hashprice.0.to_bits(),
            clearness.to_bits(),
        ];
        // Compared in place: most steps reuse the plan, and copying the schedules to
        // find that out would cost every step what only a new plan needs.
        if let Some(m) = memo.as_ref() {
            let k = &m.key;
            let same = k.slot == slot0
                && k.readings == readings
                && k.versions
                    .iter()
                    .copied()
                    .eq(state.loads.iter().map(|l| l.version))
                && k.paid_for
                    .iter()
                    .copied()
                    .eq(econ.targets.iter().map(|t| t.units_on))
                && k.schedule == state.price_schedule
                && k.pv_forecast == state.pv_forecast
                && k.wind_forecast == state.wind_forecast;
            if same {
                return Some(m.planned.clone());
            }
        }
        let key = PlanKey {
            slot: slot0,
            readings,
            versions: state.loads.iter().map(|l| l.version).collect(),
            paid_for: econ.targets.iter().map(|t| t.units_on).collect(),
            schedule: state.price_schedule.clone(),
            pv_forecast: state.pv_forecast.clone(),
            wind_forecast: state.wind_forecast.clone(),
        };
        PLANS_SOLVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let planned = self.solve_plan(state, now, slot0, read, memory, &key.paid_for)?;
        *memo = Some(PlanMemo {
            key,
            planned: planned.clone(),
        });
        Some(planned)
    }

    fn solve_plan(
        &self,
        state: &SiteState,
        now: Timestamp,
        slot0: Timestamp,
        read: Now,
        memory: &PolicyMemory,
        paid_for: &[u32],
    ) -> Option<Vec<u32>> {
        let params = self.params.plan?;
        let slot = params.step;
        let slots = (params.horizon.as_millis().div_ceil(slot.as_millis().max(1)) as usize).max(1);
        // The margin a running unit is held to (margin less hysteresis): the plan weighs
        // switching itself, through the wear limits and start costs, so the extra margin
        // a start must clear against chattering would only throw paying energy away.
        let margin = (self.params.margin.0 - self.params.hysteresis.0).max(0.0);
        let mut free = Vec::with_capacity(slots);
        let mut export = Vec::with_capacity(slots);
        let mut export_cost = Vec::with_capacity(slots);
        let mut import = Vec::with_capacity(slots);
        let mut import_cost = Vec::with_capacity(slots);
        let mut day = Vec::with_capacity(slots);
        for k in 0..slots {
            let start = slot0 + slot * k as u32;
            let (pv, wind, price) = if k == 0 {
                (read.pv, read.wind, read.price)
            } else {
                let mid = start + slot / 2;
                (
                    self.pv_ahead(state, now, mid, read.pv, memory),
                    if self.has_wind {
                        scheduled(&state.wind_forecast, mid).unwrap_or(read.wind)
                    } else {
                        Watts::ZERO
                    },
                    price_ahead(state, mid, read.price),
                )
            };
            let t = self.tiers(pv + wind, read.site_load, price);
            free.push(t.free.0);
            export.push(t.export.0);
            // Paid energy must be beaten by the hashes by the margin.
            export_cost.push(t.export_cost.0 + margin);
            import.push(t.import.0);
            import_cost.push(t.import_cost.0 + margin);
            // Starts count per UTC day of the ledger; the first slot is today's.
            day.push(if k == 0 { now.day() } else { start.day() });
        }
        let hashprice = vec![read.hashprice.0; slots];
        let classes = self.unit_classes(slot);
        let mut groups = Vec::new();
        let mut load_of = Vec::new();
        for (i, spec) in self.loads.iter().enumerate() {
            if !spec.is_switched() || spec.count == 0 {
                continue;
            }
            for g in self.groups_of(state, now, slot0, slot, i, paid_for[i]) {
                groups.push(g);
                load_of.push(i);
            }
        }
        let input = OptimumInput {
            step_h: slot.as_secs_f64() / 3600.0,
            day: &day,
            hashprice: &hashprice,
            tiers: optimum::Tiers {
                free_w: &free,
                export_w: &export,
                export_cost: &export_cost,
                import_w: &import,
                import_cost: &import_cost,
            },
            classes: &classes,
            max_iterations: 0,
            tolerance: 0.0,
        };
        let on = optimum::plan(&input, &groups).ok()?;
        let mut planned = vec![0u32; self.loads.len()];
        for ((g, load), on) in groups.iter().zip(load_of).zip(on) {
            if on {
                planned[load] += g.units;
            }
        }
        Some(planned)
    }

    /// The loads as the optimum's unit classes, their wear limits (the stricter of
    /// policy and hardware) in whole steps of `step`, rounded up as the ledger enforces
    /// them: a unit on at one step may stop at the first step at least `min_on` later
    /// (1.5 s at 1 s steps is 2 steps). The planner's and the simulator's optimum's.
    pub fn unit_classes(&self, step: Duration) -> Vec<UnitClass> {
        let steps = |d: Duration| {
            d.as_nanos()
                .div_ceil(step.as_nanos().max(1))
                .min(u128::from(u32::MAX)) as u32
        };
        self.loads
            .iter()
            .zip(&self.wear)
            .zip(&self.value_per_hashprice)
            .map(|((l, w), &vph)| UnitClass {
                name: l.name.clone(),
                count: l.count,
                rated_w: l.rated_power.0,
                min_power_w: l.min_unit_power().0,
                value_per_hashprice: vph,
                min_on_steps: steps(w.min_on),
                min_off_steps: steps(w.min_off),
                max_starts_per_day: w.max_starts_per_day,
                continuous: !l.is_switched(),
                start_cost_eur: w.start_cost_eur,
            })
            .collect()
    }

    /// The PV expected at `at`, as known at `now` from the reading `pv_now`.
    fn pv_ahead(
        &self,
        state: &SiteState,
        now: Timestamp,
        at: Timestamp,
        pv_now: Watts,
        memory: &PolicyMemory,
    ) -> Watts {
        if !self.has_pv {
            return Watts::ZERO;
        }
        if let Some(w) = scheduled(&state.pv_forecast, at) {
            return w;
        }
        let Some(loc) = self.location else {
            return pv_now;
        };
        let ghi_now = loc.clear_sky_ghi(now);
        let k_now = (ghi_now >= CLEARNESS_MIN_GHI).then(|| pv_now.0.max(0.0) / ghi_now);
        let k_day = day_clearness(memory);
        let w = (-(at.since(now).as_secs_f64()) / CLEARNESS_DECAY.as_secs_f64()).exp();
        let k = match (k_now, k_day) {
            (Some(a), Some(b)) => w * a + (1.0 - w) * b,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return pv_now,
        };
        Watts(k * loc.clear_sky_ghi(at))
    }

    /// Load `i`'s units in plan groups: blocks of units that stand alike (on or off, slots
    /// their state must still hold, starts used today) and play alike (among the
    /// `paid_for` units the economics run now, or not), each cut into a few pieces.
    fn groups_of(
        &self,
        state: &SiteState,
        now: Timestamp,
        slot0: Timestamp,
        slot: Duration,
        i: usize,
        paid_for: u32,
    ) -> Vec<PlanGroup> {
        let wear = &self.wear[i];
        let slot_ms = saturating_millis(slot).max(1);
        let today = now.day();
        let mut starts: Vec<UnitStart> = state.loads[i]
            .units
            .iter()
            .map(|u| {
                let min = if u.on { wear.min_on } else { wear.min_off };
                let until = u.since.0.saturating_add(saturating_millis(min));
                let hold_steps = if until > now.0 {
                    (until - slot0.0).div_euclid(slot_ms) as u32
                        + u32::from((until - slot0.0) % slot_ms != 0)
                } else {
                    0
                };
                UnitStart {
                    on: u.on,
                    hold_steps,
                    starts_used: u.starts_on(today),
                }
            })
            .collect();
        // The units the economics run now: the running ones that must stay first, then the
        // other running ones, then those free to start with the fewest starts used.
        starts.sort_by_key(|s| {
            (
                !s.on,
                if s.on {
                    u32::MAX - s.hold_steps
                } else {
                    s.hold_steps
                },
                s.starts_used,
            )
        });
        let mut blocks: Vec<(UnitStart, bool, u32)> = Vec::new();
        for (n, s) in starts.into_iter().enumerate() {
            let role = (n as u32) < paid_for;
            match blocks.last_mut() {
                Some((b, r, count)) if *b == s && *r == role => *count += 1,
                _ => blocks.push((s, role, 1)),
            }
        }
        // Too many distinct states: fold the smallest blocks' units into their
        // neighbours' (a plan group is advice to the allocator, which holds the ledger's
        // own limits; merging can only cost the plan some precision).
        while blocks.len() > MAX_GROUPS_PER_LOAD {
            let (j, _) = blocks
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.2)
                .expect("more blocks than the limit");
            let (_, _, count) = blocks.remove(j);
            let k = j.min(blocks.len() - 1);
            blocks[k].2 += count;
        }
        let pieces =
            (MAX_GROUPS_PER_LOAD / blocks.len().max(1)).clamp(1, PIECES_PER_BLOCK as usize) as u32;
        let mut groups = Vec::new();
        for (start, _, count) in blocks {
            let p = pieces.min(count);
            for g in 0..p {
                groups.push(PlanGroup {
                    class: i,
                    units: count / p + u32::from(g < count % p),
                    start,
                });
            }
        }
        groups
    }
}

/// The smoothed clearness, rounded (see `CLEARNESS_STEPS_PER_E`).
fn day_clearness(memory: &PolicyMemory) -> Option<f64> {
    let (p, g, _) = memory.pv_clearness?;
    let k = p / g;
    if !(k.is_finite() && k > 0.0) {
        return (k == 0.0).then_some(0.0);
    }
    Some(((k.ln() * CLEARNESS_STEPS_PER_E).round() / CLEARNESS_STEPS_PER_E).exp())
}

/// The price expected at `at`: the day-ahead schedule where it covers `at`, else its
/// price the same time a whole number of days earlier, else the price now.
fn price_ahead(state: &SiteState, at: Timestamp, now: PricePerMwh) -> PricePerMwh {
    (0..=SCHEDULE_DAYS_BACK)
        .find_map(|d| {
            scheduled(
                &state.price_schedule,
                Timestamp(at.0 - d * Timestamp::MS_PER_DAY),
            )
        })
        .unwrap_or(now)
}
