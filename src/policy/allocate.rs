//! The allocator: spreads a goal over the loads, most efficient first, unit by unit,
//! within a power limit and the wear limits. The embedded CPU pool, being continuous and
//! least efficient, ends up filling the gaps between ASIC steps.

use super::{Goal, Policy, Tiers};
use crate::clock::Timestamp;
use crate::decision::LoadTarget;
use crate::site::PowerLevels;
use crate::state::{Counts, SiteState};
use crate::units::{Hashprice, Watts};

/// Below this many watts, two powers are the same (float noise from the tier sums).
const EPS: f64 = 1e-6;

/// W in one MW: prices are per MWh, powers in W.
const W_PER_MW: f64 = 1e6;

/// The allocator's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// One per load, in config order.
    pub targets: Vec<LoadTarget>,
    pub total: Watts,
    /// The limit cut something the goal asked for.
    pub limited: bool,
    /// Units kept on only by `min_on`.
    pub held_on: u32,
    /// Units the goal wanted that `min_off` or the start limit kept off.
    pub blocked_starts: u32,
}

/// The allocator's memory between steps: each group's wear counts with how long they
/// hold, and the last inputs with their allocation. Only a cache: the allocation is a
/// function of (goal, limit, tiers, hashprice, counts), so equal inputs reuse the answer,
/// and `Policy::decide_with` decides exactly what `Policy::decide` does. Steps where
/// nothing changed (most of them: data moves every 15 minutes, decisions every minute)
/// then cost a few comparisons.
#[derive(Debug, Clone, Default)]
pub struct Memo {
    counts: Vec<Option<CountsMemo>>,
    scratch: Vec<Counts>,
    /// The last allocation without a plan, and the last with one (a planning policy
    /// makes both each step).
    last: [Option<LastAllocation>; 2],
    /// The planner's last plan and what it was made from (see `plan.rs`).
    pub(super) plan: Option<super::plan::PlanMemo>,
}

type LastAllocation = (AllocInputs, Vec<Counts>, Option<Vec<u32>>, Allocation);

#[derive(Debug, Clone, Copy)]
struct CountsMemo {
    version: u64,
    from: Timestamp,
    until: Timestamp,
    counts: Counts,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct AllocInputs {
    goal: Goal,
    limit: Watts,
    econ: Option<(Tiers, Hashprice)>,
}

impl Policy {
    /// Allocates `goal` within `limit`, through `memo`. `econ` carries the tiers and
    /// hashprice when the inputs are fresh; without them only `Goal::Fill` makes sense.
    pub(crate) fn allocate(
        &self,
        state: &SiteState,
        now: Timestamp,
        econ: Option<(&Tiers, Hashprice)>,
        goal: Goal,
        limit: Watts,
        planned: Option<&[u32]>,
        memo: &mut Memo,
    ) -> Allocation {
        memo.counts.resize(self.loads.len(), None);
        memo.scratch.clear();
        for (i, spec) in self.loads.iter().enumerate() {
            if !spec.is_switched() {
                memo.scratch.push(Counts::default());
                continue;
            }
            let ledger = &state.loads[i];
            let slot = &mut memo.counts[i];
            let counts = match slot {
                Some(m) if m.version == ledger.version && m.from <= now && now < m.until => {
                    m.counts
                }
                _ => {
                    let (counts, until) = ledger.counts_until(now, &self.wear[i]);
                    *slot = Some(CountsMemo {
                        version: ledger.version,
                        from: now,
                        until,
                        counts,
                    });
                    counts
                }
            };
            memo.scratch.push(counts);
        }
        let inputs = AllocInputs {
            goal,
            limit,
            econ: econ.map(|(t, h)| (*t, h)),
        };
        let last = &mut memo.last[usize::from(planned.is_some())];
        if let Some((i, c, p, a)) = last {
            if *i == inputs && *c == memo.scratch && p.as_deref() == planned {
                return a.clone();
            }
        }
        let a = self.allocate_for(&memo.scratch, econ, goal, limit, planned);
        match last {
            Some((i, c, p, last)) => {
                *i = inputs;
                c.clone_from(&memo.scratch);
                match (p.as_mut(), planned) {
                    (Some(p), Some(q)) => {
                        p.clear();
                        p.extend_from_slice(q)
                    }
                    (_, q) => *p = q.map(<[u32]>::to_vec),
                }
                last.clone_from(&a);
            }
            None => {
                *last = Some((
                    inputs,
                    memo.scratch.clone(),
                    planned.map(<[u32]>::to_vec),
                    a.clone(),
                ))
            }
        }
        a
    }

    /// The allocation itself, given each group's wear counts (zero for continuous loads).
    /// With `planned` (the planner's units on per load) the unit counts of switched loads
    /// are the plan's and their power the economics' (a unit the plan keeps on beyond what
    /// the moment pays for runs at its least power); the wear limits and `limit` bind it
    /// exactly as they bind the economics.
    pub(super) fn allocate_for(
        &self,
        counts: &[Counts],
        econ: Option<(&Tiers, Hashprice)>,
        goal: Goal,
        limit: Watts,
        planned: Option<&[u32]>,
    ) -> Allocation {
        let limit = match goal {
            Goal::Fill(s) => limit.min(s).0,
            Goal::Economic => limit.0,
        };
        let margin = self.params.margin.0;
        let hysteresis = self.params.hysteresis.0;
        let mut out = Allocation {
            targets: vec![LoadTarget::OFF; self.loads.len()],
            total: Watts::ZERO,
            limited: false,
            held_on: 0,
            blocked_starts: 0,
        };
        let mut cum = 0.0;
        for &i in &self.merit {
            let spec = &self.loads[i];
            let value = econ.map_or(0.0, |(_, h)| self.value_per_hashprice[i] * h.0);
            let rated = spec.rated_power.0;
            let start_cost = self.wear[i].start_cost_eur;
            // Hours a start must pay back within: its min_on, the run the policy expects
            // a start to begin, and one decision step at least (a unit started now runs
            // until the next decision whatever its min_on).
            let run_h = (self.wear[i].min_on)
                .max(self.params.start_payback)
                .max(self.decision_step)
                .as_secs_f64()
                / 3600.0;
            // How much of the band starting at `from` this load wants for one unit of
            // `full` watts, by the goal alone.
            let want = |from: f64, full: f64, running: bool| -> f64 {
                match (goal, econ) {
                    (Goal::Fill(s), _) => (s.0 - from).min(full).max(0.0),
                    (Goal::Economic, Some((t, _))) => {
                        // The plan weighed starts and stops over its horizon: no
                        // hysteresis and no start hurdle on top of it.
                        let running = running || planned.is_some();
                        let bonus = if running && planned.is_none() {
                            hysteresis
                        } else {
                            0.0
                        };
                        let (cost, paid) = t.band(from, from + full);
                        let w = if (value + bonus) * full >= cost + margin * paid {
                            full
                        } else {
                            (t.affordable_up_to(from, value + bonus, margin) - from)
                                .min(full)
                                .max(0.0)
                        };
                        // The start-cost hurdle, on starts only: what the unit earns at
                        // the power the economics give it (value minus the energy's
                        // cost, W x EUR/MWh, so x h / 1e6 is EUR) over the time a start
                        // commits it to must beat what the start wears. Only a lower
                        // want comes out of it, never a higher one.
                        if !running && start_cost > 0.0 && w > 0.0 {
                            let (cost, _) = t.band(from, from + w);
                            let earns = (value * w - cost) * run_h / W_PER_MW;
                            if !(earns > start_cost) {
                                return 0.0;
                            }
                        }
                        w
                    }
                    (Goal::Economic, None) => 0.0,
                }
            };

            if let PowerLevels::Continuous = spec.levels {
                let full = rated * spec.count as f64;
                let w = want(cum, full, false);
                let room = (limit - cum).max(0.0);
                if w > room + EPS {
                    out.limited = true;
                }
                let p = w.min(room);
                if p > EPS {
                    out.targets[i] = LoadTarget {
                        units_on: 1,
                        power: Watts(p),
                    };
                    cum += p;
                }
                continue;
            }

            let Counts {
                on,
                may_stop,
                may_start,
            } = counts[i];
            let forced = on - may_stop;
            let max_units = on + may_start;
            let min_p = spec.min_unit_power().0;
            // Units the goal wants, in order: whole units first, then perhaps one at
            // part power (power-limit range). Units inside one stretch of constant cost
            // (one tier, all running or all idle) pass or fail together, so they are
            // taken a stretch at a time: a group of 10,000 costs what a group of 10 does.
            let mut whole = 0u32;
            let mut part = 0.0;
            while whole < spec.count {
                let from = cum + whole as f64 * rated;
                let running = whole < on;
                let w = want(from, rated, running);
                if w + EPS < rated {
                    if matches!(spec.levels, PowerLevels::Range { .. }) && w + EPS >= min_p {
                        part = w.max(min_p);
                    }
                    break;
                }
                let edge = match (goal, econ) {
                    (Goal::Fill(s), _) => s.0,
                    (Goal::Economic, Some((t, _))) => t.next_edge(from),
                    (Goal::Economic, None) => from,
                };
                // Whole units up to the edge (a float-to-int cast floors a positive value
                // and saturates an infinite one).
                let mut stretch = (((edge - from + EPS) / rated) as u32).max(1);
                if running {
                    stretch = stretch.min(on - whole);
                }
                whole += stretch.min(spec.count - whole);
            }
            let paid_for = whole + (part > 0.0) as u32;
            let wanted = planned.map_or(paid_for, |p| p[i].min(spec.count));
            out.blocked_starts += wanted.saturating_sub(max_units);
            let mut n = wanted.min(max_units);
            let mut power = if n <= whole {
                n as f64 * rated
            } else {
                // Beyond what pays now (only a plan asks for that): the least power.
                whole as f64 * rated + part + n.saturating_sub(paid_for) as f64 * min_p
            };
            let by_goal = n;
            if n < forced {
                // min_on: keep them, at the least power they can run at.
                power += (forced - n) as f64 * min_p;
                n = forced;
            }
            let room = (limit - cum).max(0.0);
            if power > room + EPS {
                out.limited = true;
                // Fewer units until the lowest power they can run at fits, then trim.
                if min_p > 0.0 {
                    n = n.min(((room + EPS) / min_p).floor() as u32);
                }
                power = match spec.levels {
                    PowerLevels::OnOff => n as f64 * rated,
                    _ => room.min(n as f64 * rated),
                };
            }
            // Held units that a hard limit or a higher rule did not stop.
            out.held_on += n.saturating_sub(by_goal);
            if n > 0 {
                out.targets[i] = LoadTarget {
                    units_on: n,
                    power: Watts(power),
                };
                cum += power;
            }
        }
        out.total = Watts(cum);
        out
    }
}
