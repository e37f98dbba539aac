//! `SiteState`: the latest value of every quantity, with when it was measured, plus the
//! wear ledger of every load and the grid operator's active command. Pure data, no I/O:
//! sources feed it `Observation`s, the controller records each `Decision` in it, and the
//! policy reads it. It never judges staleness; the policy decides what an old value means.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::policy::{Decision, LoadTarget, OperatorAction, PolicyMemory};
use crate::site::{LoadSpec, WearLimits};
use crate::units::{Hashprice, Hertz, PricePerMwh, Watts};

/// The quantities a site measures or is told. One table for signals, state, telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// PV output, W, >= 0.
    PvPower,
    /// Wind output, W, >= 0.
    WindPower,
    /// Site consumption other than mining, W, >= 0.
    SiteLoad,
    /// Power at the grid connection, W: import positive, export negative. With the
    /// generation and the mining power it gives the site load where no meter measures
    /// that directly.
    GridPower,
    /// What the mining loads report drawing, all together, W.
    MiningPower,
    /// Grid frequency, Hz.
    GridFrequency,
    /// Day-ahead price now, EUR/MWh.
    Price,
    /// Hashprice, EUR per PH/s per day.
    Hashprice,
}

impl Quantity {
    pub const ALL: [Quantity; 8] = [
        Quantity::PvPower,
        Quantity::WindPower,
        Quantity::SiteLoad,
        Quantity::GridPower,
        Quantity::MiningPower,
        Quantity::GridFrequency,
        Quantity::Price,
        Quantity::Hashprice,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Quantity::PvPower => "pv_power",
            Quantity::WindPower => "wind_power",
            Quantity::SiteLoad => "site_load",
            Quantity::GridPower => "grid_power",
            Quantity::MiningPower => "mining_power",
            Quantity::GridFrequency => "grid_frequency",
            Quantity::Price => "price",
            Quantity::Hashprice => "hashprice",
        }
    }
}

/// Something a source saw or was told.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Power {
        quantity: Quantity,
        value: Watts,
        at: Timestamp,
    },
    Frequency {
        value: Hertz,
        at: Timestamp,
    },
    Price {
        value: PricePerMwh,
        at: Timestamp,
    },
    Hashprice {
        value: Hashprice,
        at: Timestamp,
    },
    Operator {
        action: OperatorAction,
        until: Option<Timestamp>,
        at: Timestamp,
    },
    /// A day-ahead price schedule: `(start, price)` in time order; each price holds until
    /// the next start (the last for as long as the interval before it).
    PriceSchedule {
        entries: Vec<(Timestamp, PricePerMwh)>,
        at: Timestamp,
    },
}

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
        (self.age(now) <= max_age).then_some(self.value)
    }
}

/// The grid operator's command in force.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ActiveCommand {
    /// `CurtailBy` is turned into `CurtailTo` against the mining power when it arrives.
    pub action: OperatorAction,
    pub until: Option<Timestamp>,
    pub received: Timestamp,
}

impl ActiveCommand {
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| now < u)
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
    /// Bumped whenever a unit switches, so followers can tell nothing changed.
    pub version: u64,
    /// `counts` for a stretch of time in which they cannot change. Only a cache: a
    /// large group then costs nothing per step while no unit nears a wear threshold.
    #[serde(skip)]
    cache: CountsCache,
}

/// A seqlock over the cached counts, so a `SiteState` stays `Sync` (snapshots of it
/// cross threads) while `counts(&self)` can still remember its answer. A reader that
/// sees a write in progress, or loses a race to write, just recomputes.
#[derive(Debug, Default)]
struct CountsCache {
    seq: AtomicU64,
    version: AtomicU64,
    day: AtomicI64,
    from: AtomicI64,
    until: AtomicI64,
    /// (on, may stop, may start), 21 bits each.
    counts: AtomicU64,
}

impl Clone for CountsCache {
    /// A copy starts cold: cheaper than copying, and always right.
    fn clone(&self) -> Self {
        CountsCache::default()
    }
}

impl PartialEq for CountsCache {
    /// A cache never makes two ledgers different.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl CountsCache {
    fn get(&self, version: u64, day: i64, now: Timestamp) -> Option<(u32, u32, u32)> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 == 0 || s1 % 2 == 1 {
            return None;
        }
        let hit = self.version.load(Ordering::Relaxed) == version
            && self.day.load(Ordering::Relaxed) == day
            && self.from.load(Ordering::Relaxed) <= now.0
            && now.0 < self.until.load(Ordering::Relaxed);
        let c = self.counts.load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire);
        if !hit || self.seq.load(Ordering::Relaxed) != s1 {
            return None;
        }
        let m = (1u64 << 21) - 1;
        Some((
            (c & m) as u32,
            ((c >> 21) & m) as u32,
            ((c >> 42) & m) as u32,
        ))
    }

    fn set(
        &self,
        version: u64,
        day: i64,
        from: Timestamp,
        until: Timestamp,
        counts: (u32, u32, u32),
    ) {
        let s = self.seq.load(Ordering::Relaxed);
        if s % 2 == 1
            || self
                .seq
                .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.version.store(version, Ordering::Relaxed);
        self.day.store(day, Ordering::Relaxed);
        self.from.store(from.0, Ordering::Relaxed);
        self.until.store(until.0, Ordering::Relaxed);
        let (a, b, c) = counts;
        self.counts.store(
            a as u64 | (b as u64) << 21 | (c as u64) << 42,
            Ordering::Relaxed,
        );
        self.seq.store(s + 2, Ordering::Release);
    }
}

/// Which units the counts in a `LoadTarget` mean. Stopping takes the units that have run
/// longest, starting those that have rested longest: the same order the policy assumed
/// when it counted what may start or stop.
impl LoadLedger {
    pub fn new(spec: &LoadSpec) -> Self {
        LoadLedger {
            units: vec![UnitLedger::new(); spec.count as usize],
            target: LoadTarget::OFF,
            total_starts: 0,
            forced_stops: 0,
            max_starts_in_a_day: 0,
            version: 0,
            cache: CountsCache::default(),
        }
    }

    pub fn on_count(&self) -> u32 {
        self.units.iter().filter(|u| u.on).count() as u32
    }

    /// Marks the units as changed by hand (tests and fixtures that set units directly).
    pub fn touch(&mut self) {
        self.version += 1;
    }

    /// (on, may stop, may start) counts. `wear` must be the same on every call.
    pub fn counts(&self, now: Timestamp, wear: &WearLimits) -> (u32, u32, u32) {
        let day = now.day();
        if let Some(c) = self.cache.get(self.version, day, now) {
            return c;
        }
        let (mut on, mut stop, mut start) = (0, 0, 0);
        // The counts hold until the next unit crosses its min_on or min_off. Plain
        // milliseconds here: this loop is the simulator's hottest after the allocator.
        let (min_on, min_off) = (
            wear.min_on.as_millis() as i64,
            wear.min_off.as_millis() as i64,
        );
        let max_starts = wear.max_starts_per_day.unwrap_or(u32::MAX);
        let mut until = i64::MAX;
        for u in &self.units {
            let threshold = if u.on {
                on += 1;
                stop += (now.0 - u.since.0 >= min_on) as u32;
                u.since.0 + min_on
            } else {
                start += (now.0 - u.since.0 >= min_off && u.starts_on(day) < max_starts) as u32;
                u.since.0 + min_off
            };
            if threshold > now.0 {
                until = until.min(threshold);
            }
        }
        let until = Timestamp(until);
        let counts = (on, stop, start);
        self.cache.set(self.version, day, now, until, counts);
        counts
    }

    /// Switches units so that `target.units_on` are on. Units that may stop go first
    /// (longest-running first), then, only if a higher rule demands more, units still
    /// inside `min_on` (counted as forced stops). Only units that may start are started
    /// (longest-resting first); the policy never asks for more.
    pub fn apply(&mut self, target: LoadTarget, now: Timestamp, wear: &WearLimits) {
        let on = self.target.units_on;
        let day = now.day();
        if target.units_on < on {
            let n = (on - target.units_on) as usize;
            // (may not stop, since, index): voluntary stops sort first, oldest first.
            let mut picks: Vec<(bool, Timestamp, usize)> = self
                .units
                .iter()
                .enumerate()
                .filter(|(_, u)| u.on)
                .map(|(i, u)| (!u.may_stop(now, wear), u.since, i))
                .collect();
            let n = n.min(picks.len());
            if n < picks.len() {
                picks.select_nth_unstable(n);
            }
            for &(forced, _, i) in &picks[..n] {
                self.forced_stops += forced as u64;
                let u = &mut self.units[i];
                u.on = false;
                u.since = now;
            }
            self.version += 1;
        } else if target.units_on > on {
            let n = (target.units_on - on) as usize;
            let mut picks: Vec<(Timestamp, usize)> = self
                .units
                .iter()
                .enumerate()
                .filter(|(_, u)| u.may_start(now, wear))
                .map(|(i, u)| (u.since, i))
                .collect();
            let n = n.min(picks.len());
            if n < picks.len() {
                picks.select_nth_unstable(n);
            }
            for &(_, i) in &picks[..n] {
                let u = &mut self.units[i];
                if u.day != day {
                    u.day = day;
                    u.starts_today = 0;
                }
                u.starts_today += 1;
                u.on = true;
                u.since = now;
                self.max_starts_in_a_day = self.max_starts_in_a_day.max(u.starts_today);
                self.total_starts += 1;
            }
            self.version += 1;
        }
        let units_on = if target.units_on == on {
            on
        } else {
            self.on_count()
        };
        self.target = LoadTarget {
            units_on,
            power: target.power,
        };
    }
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
    pub command: Option<ActiveCommand>,
    /// The latest day-ahead schedule; a price reading, when fresh, takes precedence.
    pub price_schedule: Vec<(Timestamp, PricePerMwh)>,
    pub loads: Vec<LoadLedger>,
    /// What the policy asked to remember from its last decision.
    pub memory: PolicyMemory,
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
            command: None,
            price_schedule: Vec::new(),
            loads: loads.iter().map(LoadLedger::new).collect(),
            memory: PolicyMemory::default(),
        }
    }

    /// The scheduled price for `now`, if the schedule covers it.
    pub fn scheduled_price(&self, now: Timestamp) -> Option<PricePerMwh> {
        let sch = &self.price_schedule;
        let i = sch.partition_point(|(t, _)| *t <= now).checked_sub(1)?;
        let end = match sch.get(i + 1) {
            Some((next, _)) => *next,
            None if i > 0 => Timestamp(sch[i].0 .0 + (sch[i].0 .0 - sch[i - 1].0 .0)),
            None => Timestamp(sch[i].0 .0 + 3_600_000),
        };
        (now < end).then_some(sch[i].1)
    }

    /// Mining power last commanded, all loads together.
    pub fn mining_target(&self) -> Watts {
        self.loads.iter().map(|l| l.target.power).sum()
    }

    pub fn observe(&mut self, obs: Observation) {
        match obs {
            Observation::Power {
                quantity,
                value,
                at,
            } => {
                let slot = match quantity {
                    Quantity::PvPower => &mut self.pv,
                    Quantity::WindPower => &mut self.wind,
                    Quantity::SiteLoad => &mut self.site_load,
                    Quantity::GridPower => &mut self.grid,
                    Quantity::MiningPower => &mut self.mining,
                    // Power readings never carry these quantities; ignore rather than panic.
                    _ => return,
                };
                *slot = Some(Reading { value, at });
            }
            Observation::Frequency { value, at } => self.frequency = Some(Reading { value, at }),
            Observation::Price { value, at } => self.price = Some(Reading { value, at }),
            Observation::Hashprice { value, at } => self.hashprice = Some(Reading { value, at }),
            Observation::PriceSchedule { entries, .. } => self.price_schedule = entries,
            Observation::Operator { action, until, at } => {
                self.command = match action {
                    OperatorAction::Release => None,
                    OperatorAction::CurtailBy(by) => Some(ActiveCommand {
                        action: OperatorAction::CurtailTo(
                            (self.mining_target() - by).max(Watts::ZERO),
                        ),
                        until,
                        received: at,
                    }),
                    a => Some(ActiveCommand {
                        action: a,
                        until,
                        received: at,
                    }),
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
        if let Some(c) = self.command {
            if !c.in_force(decision.at) {
                self.command = None;
            }
        }
    }
}
