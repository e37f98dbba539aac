//! `SiteState`: the latest value of every quantity, with when it was measured, plus the
//! wear ledger of every load and the grid operator's active command. Pure data, no I/O:
//! sources feed it `Observation`s, the controller records each `Decision` in it, and the
//! policy reads it. It never judges staleness; the policy decides what an old value means.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::clock::{saturating_millis, Timestamp};
use crate::decision::{Decision, LoadTarget, PolicyMemory};
use crate::signal::operator::CommandsInForce;
use crate::signal::{Observation, Quantity};
use crate::site::{LoadSpec, WearLimits};
use crate::units::{CarbonIntensity, Eur, Hashprice, Hertz, PricePerMwh, WattHours, Watts};

/// A value and when it was measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reading<T> {
    pub value: T,
    pub at: Timestamp,
}

impl<T: Copy> Reading<T> {
    pub fn age(&self, now: Timestamp) -> Duration {
        now.since(self.at)
    }
    /// The value if it is no older than `max_age`.
    pub fn fresh(&self, now: Timestamp, max_age: Duration) -> Option<T> {
        // In plain milliseconds, as `age` counts them (a reading from the future is fresh).
        // Saturating: a reading stamped near either end of time must not wrap to fresh.
        (now.0.saturating_sub(self.at.0) <= saturating_millis(max_age)).then_some(self.value)
    }
}

/// One unit's switching history, what wear limits are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UnitLedger {
    pub on: bool,
    /// When it last switched (on or off). Units start "off since forever".
    pub since: Timestamp,
    /// UTC day that `starts_today` counts.
    pub day: i64,
    pub starts_today: u32,
}

impl UnitLedger {
    fn new() -> Self {
        UnitLedger {
            on: false,
            since: Timestamp(i64::MIN / 2),
            day: i64::MIN,
            starts_today: 0,
        }
    }
    pub fn starts_on(&self, day: i64) -> u32 {
        if self.day == day {
            self.starts_today
        } else {
            0
        }
    }
    /// May be switched off now without breaking `min_on`.
    pub fn may_stop(&self, now: Timestamp, wear: &WearLimits) -> bool {
        self.on && now.since(self.since) >= wear.min_on
    }
    /// May be switched on now without breaking `min_off` or the daily start limit.
    pub fn may_start(&self, now: Timestamp, wear: &WearLimits) -> bool {
        !self.on
            && now.since(self.since) >= wear.min_off
            && wear
                .max_starts_per_day
                .is_none_or(|m| self.starts_on(now.day()) < m)
    }
}

/// A load's units and what they were last told.
///
/// Besides each unit's history the ledger keeps the units in the order the wear limits
/// care about, so the policy's questions cost a binary search, not a walk over the
/// group: running units in start order (those past `min_on` are a prefix), resting
/// units in stop order (those past `min_off` are a prefix), and apart from them the
/// units that used up today's starts, which rejoin the resting ones the next UTC day.
/// Switch times are stamped monotonically (a clock stepping back never reorders them;
/// it can only make a unit wait longer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadLedger {
    pub units: Vec<UnitLedger>,
    pub target: LoadTarget,
    /// Starts over the whole run, for KPIs.
    pub total_starts: u64,
    /// Stops that cut a unit's `min_on` short because a higher rule demanded it.
    pub forced_stops: u64,
    /// Most starts any one unit made in one UTC day.
    pub max_starts_in_a_day: u32,
    /// Changes whenever a unit switches, so followers can tell nothing changed. Drawn
    /// from one process-wide sequence, so two ledgers that differ never share one.
    pub version: u64,
    #[serde(skip)]
    order: UnitOrder,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct UnitOrder {
    /// Running units, longest-running first.
    running: VecDeque<Switched>,
    /// Resting units that may start again today, longest-resting first.
    resting: VecDeque<Switched>,
    /// Resting units out of starts for their day, in stop order.
    spent: VecDeque<Switched>,
    /// The latest switch time stamped.
    last: Timestamp,
}

/// What the wear limits allow a load group at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Units running.
    pub on: u32,
    /// Running units past their `min_on`.
    pub may_stop: u32,
    /// Resting units past their `min_off` with starts left today.
    pub may_start: u32,
}

fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A unit and when it last switched (a copy of its `since`, kept here so that searching
/// a queue touches nothing else).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Switched {
    since: i64,
    unit: u32,
}

/// How many entries of `q` from the front pass `pred`, which holds for a prefix. Searches
/// from the back, galloping: usually few units (those switched lately) fail it, so this
/// costs a comparison or two, however large the group.
fn passing_prefix(q: &VecDeque<Switched>, pred: impl Fn(&Switched) -> bool) -> usize {
    let n = q.len();
    // q[hi..] are known to fail; q[..lo] are known to pass.
    let (mut lo, mut hi) = (0, n);
    let mut step = 1;
    while hi > 0 {
        let probe = hi.saturating_sub(step);
        if pred(&q[probe]) {
            lo = probe + 1;
            break;
        }
        hi = probe;
        step *= 2;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(&q[mid]) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Which units the counts in a `LoadTarget` mean. Stopping takes the units that have run
/// longest, starting those that have rested longest: the same order the policy assumed
/// when it counted what may start or stop.
impl LoadLedger {
    pub fn new(spec: &LoadSpec) -> Self {
        let units = vec![UnitLedger::new(); spec.count as usize];
        let order = UnitOrder {
            resting: (0..spec.count)
                .map(|unit| Switched {
                    since: units[unit as usize].since.0,
                    unit,
                })
                .collect(),
            last: units.first().map_or(Timestamp(i64::MIN / 2), |u| u.since),
            ..UnitOrder::default()
        };
        LoadLedger {
            units,
            target: LoadTarget::OFF,
            total_starts: 0,
            forced_stops: 0,
            max_starts_in_a_day: 0,
            version: next_version(),
            order,
        }
    }

    pub fn on_count(&self) -> u32 {
        self.order.running.len() as u32
    }

    /// Re-sorts the units after they were set by hand (tests and fixtures), as of `now`.
    pub fn rebuild(&mut self, now: Timestamp, wear: &WearLimits) {
        let max = wear.max_starts_per_day.unwrap_or(u32::MAX);
        let mut idx: Vec<u32> = (0..self.units.len() as u32).collect();
        idx.sort_by_key(|&i| self.units[i as usize].since);
        let mut order = UnitOrder::default();
        for unit in idx {
            let u = &self.units[unit as usize];
            order.last = order.last.max(u.since);
            let entry = Switched {
                since: u.since.0,
                unit,
            };
            if u.on {
                order.running.push_back(entry);
            } else if u.starts_on(now.day()) >= max {
                order.spent.push_back(entry);
            } else {
                order.resting.push_back(entry);
            }
        }
        self.order = order;
        self.target.units_on = self.on_count();
        self.version = next_version();
    }

    /// What the wear limits allow now (`wear` must be the same on every call), and until
    /// when that holds unless a unit switches (`version` changes):
    /// the next moment a unit crosses its `min_on` or `min_off`, or a new day returns
    /// spent starts.
    pub fn counts_until(&self, now: Timestamp, wear: &WearLimits) -> (Counts, Timestamp) {
        let o = &self.order;
        let (min_on, min_off) = (
            saturating_millis(wear.min_on),
            saturating_millis(wear.min_off),
        );
        let mut until = i64::MAX;
        let stop = passing_prefix(&o.running, |e| now.0.saturating_sub(e.since) >= min_on);
        if let Some(e) = o.running.get(stop) {
            until = until.min(e.since.saturating_add(min_on));
        }
        let resting = passing_prefix(&o.resting, |e| now.0.saturating_sub(e.since) >= min_off);
        if let Some(e) = o.resting.get(resting) {
            until = until.min(e.since.saturating_add(min_off));
        }
        let today = now.day();
        let spent = passing_prefix(&o.spent, |e| {
            self.units[e.unit as usize].day < today && now.0.saturating_sub(e.since) >= min_off
        });
        if let Some(e) = o.spent.get(spent) {
            // The first still blocked: by its day's starts (then so are those after it,
            // until the day ends), or else by `min_off`.
            until = until.min(if self.units[e.unit as usize].day >= today {
                (today + 1).saturating_mul(Timestamp::MS_PER_DAY)
            } else {
                e.since.saturating_add(min_off)
            });
        }
        let counts = Counts {
            on: o.running.len() as u32,
            may_stop: stop as u32,
            // A limit of zero starts a day lets none start, whatever queue it rests in.
            may_start: if wear.max_starts_per_day == Some(0) {
                0
            } else {
                (resting + spent) as u32
            },
        };
        (counts, Timestamp(until))
    }

    /// Switches units so that `target.units_on` are on. Units that may stop go first
    /// (longest-running first), then, only if a higher rule demands more, units still
    /// inside `min_on` (counted as forced stops). Only units that may start are started
    /// (longest-resting first); the policy never asks for more.
    #[inline]
    pub fn apply(&mut self, target: LoadTarget, now: Timestamp, wear: &WearLimits) {
        // Most steps switch nothing: book the power and leave.
        let o = &self.order;
        let unchanged = target.units_on as usize == o.running.len()
            && o.spent
                .front()
                .is_none_or(|e| self.units[e.unit as usize].day >= now.day());
        if unchanged {
            self.target = target;
        } else {
            self.switch(target, now, wear);
        }
    }

    fn switch(&mut self, target: LoadTarget, now: Timestamp, wear: &WearLimits) {
        let day = now.day();
        let max = wear.max_starts_per_day.unwrap_or(u32::MAX);
        let o = &mut self.order;
        // A new day gives the spent units their starts back.
        let back = passing_prefix(&o.spent, |e| self.units[e.unit as usize].day < day);
        if back > 0 {
            o.resting.extend(o.spent.drain(..back));
            o.resting.make_contiguous().sort_by_key(|e| e.since);
        }
        let stamp = now.max(o.last);
        let on = o.running.len() as u32;
        if target.units_on < on {
            for _ in 0..on - target.units_on {
                let unit = o.running.pop_front().expect("fewer than running").unit;
                let u = &mut self.units[unit as usize];
                self.forced_stops += (now.since(u.since) < wear.min_on) as u64;
                u.on = false;
                u.since = stamp;
                let entry = Switched {
                    since: stamp.0,
                    unit,
                };
                if u.starts_on(day) >= max {
                    o.spent.push_back(entry);
                } else {
                    o.resting.push_back(entry);
                }
            }
            o.last = stamp;
            self.version = next_version();
        } else if target.units_on > on {
            let mut n = target.units_on - on;
            while n > 0 {
                let Some(&Switched { unit, .. }) = o.resting.front() else {
                    break;
                };
                let u = &mut self.units[unit as usize];
                if now.since(u.since) < wear.min_off {
                    break;
                }
                o.resting.pop_front();
                if u.starts_on(day) >= max {
                    // Out of starts while resting: never started, with a limit of 0, or
                    // a policy reloaded with a lower limit. It waits for its next day.
                    o.spent.push_back(Switched {
                        since: u.since.0,
                        unit,
                    });
                    continue;
                }
                if u.day != day {
                    u.day = day;
                    u.starts_today = 0;
                }
                u.starts_today += 1;
                u.on = true;
                u.since = stamp;
                o.running.push_back(Switched {
                    since: stamp.0,
                    unit,
                });
                self.max_starts_in_a_day = self.max_starts_in_a_day.max(u.starts_today);
                self.total_starts += 1;
                n -= 1;
            }
            o.last = stamp;
            self.version = next_version();
        }
        self.target = LoadTarget {
            units_on: o.running.len() as u32,
            power: target.power,
        };
    }
}

/// The value a schedule (`(start, value)` in time order, each holding until the next
/// start, the last for as long as the interval before it, or an hour) gives `now`.
pub fn scheduled<T: Copy>(sch: &[(Timestamp, T)], now: Timestamp) -> Option<T> {
    let i = sch.partition_point(|(t, _)| *t <= now).checked_sub(1)?;
    let end = match sch.get(i + 1) {
        Some((next, _)) => *next,
        None if i > 0 => {
            let (last, before) = (sch[i].0 .0, sch[i - 1].0 .0);
            Timestamp(last.saturating_add(last.saturating_sub(before)))
        }
        None => Timestamp(sch[i].0 .0.saturating_add(3_600_000)),
    };
    (now < end).then_some(sch[i].1)
}

/// Everything the policy knows about the site at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteState {
    pub pv: Option<Reading<Watts>>,
    pub wind: Option<Reading<Watts>>,
    pub site_load: Option<Reading<Watts>>,
    pub grid: Option<Reading<Watts>>,
    pub mining: Option<Reading<Watts>>,
    pub frequency: Option<Reading<Hertz>>,
    pub price: Option<Reading<PricePerMwh>>,
    pub hashprice: Option<Reading<Hashprice>>,
    /// The grid's carbon intensity now (`grid_carbon_intensity`): for the accounts and
    /// certificates; the policy never reads it.
    pub carbon_intensity: Option<Reading<CarbonIntensity>>,
    /// Every grid operator's command in force (the authority model).
    pub commands: CommandsInForce,
    /// The heartbeat failsafe's cap while it holds.
    pub failsafe: Option<Watts>,
    /// The latest day-ahead schedule; a price reading, when fresh, takes precedence.
    pub price_schedule: Vec<(Timestamp, PricePerMwh)>,
    /// A provider's PV and wind forecasts (`pv_forecast`, `wind_forecast`), in the
    /// schedule's shape: each value holds until the next start.
    pub pv_forecast: Vec<(Timestamp, Watts)>,
    pub wind_forecast: Vec<(Timestamp, Watts)>,
    pub loads: Vec<LoadLedger>,
    /// What the policy asked to remember from its last decision.
    pub memory: PolicyMemory,
    /// The last refused value of each signal, for the state document; the policy never
    /// reads it.
    pub rejected: crate::signal::rejected::Rejections,
    /// Each signal's maximum age and whether the last step found it stale, as the
    /// controller decided (the state document shows it; the policy never reads it).
    pub freshness: Freshness,
    /// What mining drew, per source, since counting began (booked by the controller step).
    pub energy: MiningEnergy,
}

/// Each quantity's configured maximum age and the staleness the controller's step found,
/// indexed by `Quantity as usize`. Booked by the controller, never judged here: a
/// consumer (state document, Home Assistant) shows the step's verdict instead of
/// re-deriving a rule that could disagree with the policy's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Freshness {
    pub max_age: [Option<Duration>; Quantity::ALL.len()],
    /// Missing or older than the policy allows at the last step (all, before one).
    pub stale: [bool; Quantity::ALL.len()],
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            max_age: [None; Quantity::ALL.len()],
            stale: [true; Quantity::ALL.len()],
        }
    }
}

impl Freshness {
    pub fn max_age(&self, q: Quantity) -> Option<Duration> {
        self.max_age[q as usize]
    }
    pub fn is_stale(&self, q: Quantity) -> bool {
        self.stale[q as usize]
    }
}

/// Mining energy by where it came from, by the energy tiers (`policy::tiers`): surplus
/// that would have been curtailed, own generation that would have been exported, and grid
/// import. Booked by the controller step from the loads' reported power, the one step
/// both the live loop and the simulator run. Starts at zero in each process (Home
/// Assistant's `total_increasing` reads a drop as a new meter cycle, so a restart loses
/// nothing there).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct MiningEnergy {
    pub curtailed: WattHours,
    pub own_generation: WattHours,
    pub grid: WattHours,
    /// What the own generation mined would have earned exported (the tiers' export
    /// value, EUR; negative where exporting costs).
    pub own_generation_eur: Eur,
    /// What the grid energy mined cost at the tiers' import price, EUR.
    pub grid_eur: Eur,
    /// Grid energy mined at the grid's carbon intensity in force over each interval,
    /// gCO2eq (intervals with no intensity known book nothing here, and their energy in
    /// `grid_unrated`).
    pub grid_co2eq_g: f64,
    /// Grid energy mined while no carbon intensity was known.
    pub grid_unrated: WattHours,
    /// The first step counted.
    pub since: Option<Timestamp>,
}

/// Where mining's power came from over one interval, and what each source was worth then.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SourcedPower {
    pub curtailed: Watts,
    pub own_generation: Watts,
    pub grid: Watts,
    /// The value of exporting, EUR/MWh (what own generation mined forgoes).
    pub export_value: PricePerMwh,
    pub import_price: PricePerMwh,
    /// The grid's carbon intensity, when known.
    pub carbon: Option<CarbonIntensity>,
}

impl MiningEnergy {
    /// Adds what mining drew for `d` from each source (W, each non-negative).
    pub fn add(&mut self, d: Duration, p: SourcedPower) {
        let (own, grid) = (p.own_generation.over(d), p.grid.over(d));
        self.curtailed += p.curtailed.over(d);
        self.own_generation += own;
        self.grid += grid;
        self.own_generation_eur += Eur(own.0 / 1e6 * p.export_value.0);
        self.grid_eur += Eur(grid.0 / 1e6 * p.import_price.0);
        match p.carbon {
            Some(c) => self.grid_co2eq_g += grid.0 / 1e3 * c.0,
            None => self.grid_unrated += grid,
        }
    }

    pub fn total(&self) -> WattHours {
        self.curtailed + self.own_generation + self.grid
    }
}

impl SiteState {
    pub fn new(loads: &[LoadSpec]) -> Self {
        SiteState {
            pv: None,
            wind: None,
            site_load: None,
            grid: None,
            mining: None,
            frequency: None,
            price: None,
            hashprice: None,
            carbon_intensity: None,
            commands: CommandsInForce::default(),
            failsafe: None,
            price_schedule: Vec::new(),
            pv_forecast: Vec::new(),
            wind_forecast: Vec::new(),
            loads: loads.iter().map(LoadLedger::new).collect(),
            memory: PolicyMemory::default(),
            rejected: Default::default(),
            freshness: Freshness::default(),
            energy: MiningEnergy::default(),
        }
    }

    /// The scheduled price for `now`, if the schedule covers it.
    pub fn scheduled_price(&self, now: Timestamp) -> Option<PricePerMwh> {
        scheduled(&self.price_schedule, now)
    }

    /// Mining power last commanded, all loads together.
    pub fn mining_target(&self) -> Watts {
        self.loads.iter().map(|l| l.target.power).sum()
    }

    #[inline]
    pub fn observe(&mut self, obs: Observation) {
        match obs {
            Observation::Power {
                quantity,
                value,
                at,
            } => {
                // Power readings never carry other quantities; ignore rather than panic.
                if let Some(slot) = self.power_slot(quantity) {
                    *slot = Some(Reading { value, at });
                }
            }
            Observation::Frequency { value, at } => self.frequency = Some(Reading { value, at }),
            Observation::Price { value, at } => self.price = Some(Reading { value, at }),
            Observation::Hashprice { value, at } => self.hashprice = Some(Reading { value, at }),
            Observation::CarbonIntensity { value, at } => {
                self.carbon_intensity = Some(Reading { value, at })
            }
            Observation::PriceSchedule { entries, .. } => self.price_schedule = entries,
            Observation::Forecast {
                quantity, entries, ..
            } => match quantity {
                Quantity::PvPower => self.pv_forecast = entries,
                Quantity::WindPower => self.wind_forecast = entries,
                // Only generation is forecast (the source's config says which).
                _ => {}
            },
            Observation::Operator {
                issuer,
                action,
                until,
                at,
            } => {
                // The command channel admitted it against these same commands (the
                // simulator's events have one source): an outranked one changes nothing.
                let mining = self.mining_target();
                let _ = self.commands.apply(issuer, action, until, at, mining);
            }
            Observation::Failsafe { limit, .. } => self.failsafe = limit,
        }
    }

    /// The reading of a power quantity (`None` for the quantities that are not powers).
    pub fn power_slot(&mut self, quantity: Quantity) -> Option<&mut Option<Reading<Watts>>> {
        match quantity {
            Quantity::PvPower => Some(&mut self.pv),
            Quantity::WindPower => Some(&mut self.wind),
            Quantity::SiteLoad => Some(&mut self.site_load),
            Quantity::GridPower => Some(&mut self.grid),
            Quantity::MiningPower => Some(&mut self.mining),
            Quantity::GridFrequency
            | Quantity::Price
            | Quantity::Hashprice
            | Quantity::GridCarbonIntensity => None,
        }
    }

    /// The latest reading of `q` as a number in its unit (W, Hz, EUR/MWh, EUR per PH/s
    /// per day). With [`SiteState::clear`], the one mapping from a `Quantity` to its
    /// field: the status, the telemetry and the staleness rule all read through it.
    pub fn reading(&self, q: Quantity) -> Option<Reading<f64>> {
        fn plain<T: Copy + Into<f64>>(r: &Option<Reading<T>>) -> Option<Reading<f64>> {
            r.map(|r| Reading {
                value: r.value.into(),
                at: r.at,
            })
        }
        match q {
            Quantity::PvPower => plain(&self.pv),
            Quantity::WindPower => plain(&self.wind),
            Quantity::SiteLoad => plain(&self.site_load),
            Quantity::GridPower => plain(&self.grid),
            Quantity::MiningPower => plain(&self.mining),
            Quantity::GridFrequency => plain(&self.frequency),
            Quantity::Price => plain(&self.price),
            Quantity::Hashprice => plain(&self.hashprice),
            Quantity::GridCarbonIntensity => plain(&self.carbon_intensity),
        }
    }

    /// Drops the reading of `q`: the policy then sees it missing, hence stale.
    pub fn clear(&mut self, q: Quantity) {
        match q {
            Quantity::GridFrequency => self.frequency = None,
            Quantity::Price => self.price = None,
            Quantity::Hashprice => self.hashprice = None,
            Quantity::GridCarbonIntensity => self.carbon_intensity = None,
            power => {
                if let Some(slot) = self.power_slot(power) {
                    *slot = None;
                }
            }
        }
    }

    /// Drops the reading `obs` would have replaced, so the policy sees that signal stale:
    /// for a source found broken (`signal::plausible`), whose last value is no better
    /// than none. An operator command or the failsafe is never dropped this way.
    pub fn forget(&mut self, obs: &Observation) {
        match obs {
            Observation::PriceSchedule { .. } => self.price_schedule.clear(),
            Observation::Forecast { quantity, .. } => match quantity {
                Quantity::PvPower => self.pv_forecast.clear(),
                Quantity::WindPower => self.wind_forecast.clear(),
                _ => {}
            },
            Observation::Operator { .. } | Observation::Failsafe { .. } => {}
            other => {
                if let Some(q) = other.quantity() {
                    self.clear(q);
                }
            }
        }
    }

    /// Books a decision: switches units in the ledgers and keeps the policy's memory.
    pub fn record(&mut self, decision: &Decision, wear: &[WearLimits]) {
        for ((ledger, target), wear) in self.loads.iter_mut().zip(&decision.loads).zip(wear) {
            ledger.apply(*target, decision.at, wear);
        }
        self.memory = decision.memory;
        self.commands.expire(decision.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Issuer, OperatorAction};

    /// r9 holes 6 and 9: a reading stamped at an end of time, or a maximum age no clock
    /// can reach, must not wrap the age check to "fresh" or "stale" the wrong way.
    #[test]
    fn r9_freshness_cannot_wrap() {
        let now = Timestamp(1_780_000_000_000);
        let ancient = Reading {
            value: Watts(1.0),
            at: Timestamp(i64::MIN),
        };
        // `now - i64::MIN` wrapped negative: the oldest reading looked newest.
        assert_eq!(ancient.fresh(now, Duration::from_secs(3600)), None);
        let recent = Reading {
            value: Watts(1.0),
            at: now,
        };
        // A 1e19 ms age became negative as an i64: nothing was ever fresh.
        assert_eq!(recent.fresh(now, Duration::MAX), Some(Watts(1.0)));
    }

    fn ledger_of(count: u32) -> LoadLedger {
        LoadLedger::new(&LoadSpec {
            name: "a".into(),
            kind: crate::site::LoadKind::Asic,
            count,
            rated_power: Watts(1000.0),
            hashrate: crate::units::HashRate(1e12),
            levels: crate::site::PowerLevels::OnOff,
            ramp: Duration::ZERO,
            wake: Duration::ZERO,
            wear: WearLimits::default(),
        })
    }

    fn ask(l: &mut LoadLedger, units_on: u32, at: Timestamp, wear: &WearLimits) {
        l.apply(
            LoadTarget {
                units_on,
                power: Watts(1000.0 * f64::from(units_on)),
            },
            at,
            wear,
        );
    }

    /// r12 defect 1: a start limit of 0 let every unit start once a day, because a unit
    /// that was never stopped rested in the queue of units that may start, and starting
    /// from that queue did not check the limit. Nor did a limit lowered by a policy
    /// reload stop a unit that had already used the new limit's starts.
    #[test]
    fn r12_no_unit_starts_past_its_days_start_limit() {
        let day = Timestamp::MS_PER_DAY;
        let none = WearLimits {
            max_starts_per_day: Some(0),
            ..WearLimits::default()
        };
        let mut l = ledger_of(3);
        for d in 0..3 {
            let at = Timestamp(d * day + 1000);
            assert_eq!(l.counts_until(at, &none).0.may_start, 0);
            ask(&mut l, 3, at, &none);
            assert_eq!(l.on_count(), 0, "day {d}");
        }
        assert_eq!(l.total_starts, 0);

        // Two starts used under a limit of 2, then the limit drops to 1: no third start
        // that day, one the next.
        let two = WearLimits {
            max_starts_per_day: Some(2),
            ..WearLimits::default()
        };
        let one = WearLimits {
            max_starts_per_day: Some(1),
            ..WearLimits::default()
        };
        let mut l = ledger_of(1);
        for k in 0..2 {
            ask(&mut l, 1, Timestamp(10 * day + 4 * k), &two);
            ask(&mut l, 0, Timestamp(10 * day + 4 * k + 2), &two);
        }
        assert_eq!(l.total_starts, 2);
        ask(&mut l, 1, Timestamp(10 * day + 100), &one);
        assert_eq!(l.on_count(), 0, "a third start on a day limited to one");
        assert_eq!(
            l.counts_until(Timestamp(10 * day + 200), &one).0.may_start,
            0
        );
        ask(&mut l, 1, Timestamp(11 * day + 100), &one);
        assert_eq!(l.on_count(), 1, "the next day gives its start back");
        assert_eq!(l.units[0].starts_today, 1);
    }

    #[test]
    fn a_broken_source_is_forgotten_and_an_operator_command_is_not() {
        let mut s = SiteState::new(&[]);
        let at = Timestamp(0);
        let pv = Observation::Power {
            quantity: Quantity::PvPower,
            value: Watts(5.0),
            at,
        };
        s.observe(pv.clone());
        let cmd = Observation::Operator {
            issuer: Issuer::scenario(),
            action: OperatorAction::CurtailTo(Watts(0.0)),
            until: None,
            at,
        };
        s.observe(cmd.clone());
        s.forget(&pv);
        let failsafe = Observation::Failsafe {
            limit: Some(Watts(0.0)),
            at,
        };
        s.observe(failsafe.clone());
        s.forget(&cmd);
        s.forget(&failsafe);
        assert_eq!(s.pv, None);
        assert!(!s.commands.is_empty());
        assert_eq!(s.failsafe, Some(Watts(0.0)));
    }
}
