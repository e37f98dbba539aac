//! Evidence of a frequency response: when the site must let go of load, what the daemon
//! did about it and what came of it, as one [`Record`] per event.
//!
//! An event begins when the decision's reason turns `under_frequency` (a frequency below
//! `shed_below_hz`) or `operator_curtail` (a signed curtailment came into force) from
//! something else, or when a curtailment in force tightens. Its record holds the trigger
//! (time, frequency or the command's `jti` and operator), the mining power just before and
//! the cap; per load (per miner for a fleet) the command sent, when it was sent,
//! acknowledged and confirmed by a read-back, or the error; the site's mining power at
//! each of [`OFFSETS`] after the trigger, with the age of every reading it is made of;
//! and the verdict against ERCOT FFR's full-response window of [`FFR_WINDOW`], for the
//! command latency and for the confirmed drop apart (firmware sleep takes seconds: a
//! command acknowledged at once is not power gone). It is final after the last offset,
//! or closed early when a newer event supersedes it or the daemon stops.
//!
//! Pure bookkeeping, no I/O and no timers: the runtime feeds [`Evidence`] every decision,
//! wakes it at each offset, and writes out what it returns (the state's `events`,
//! InfluxDB, Prometheus, the events file in [`file`]); [`show`] prints records for people.
//! Must not: decide anything, or claim more than the readings show: a reading measured
//! before the trigger is marked so, never counted as the response.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actuator::status::LoadStatus;
use crate::clock::Timestamp;
use crate::decision::{Decision, Reason};
use crate::state::SiteState;
use crate::units::{Hertz, Watts};

pub mod file;
pub mod show;

/// When the site's mining power is sampled after the trigger.
pub const OFFSETS: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// ERCOT Fast Frequency Response: full response within 15 cycles, 0.25 s.
pub const FFR_WINDOW: Duration = Duration::from_millis(250);

/// Records kept for the state document: the open one and the latest closed ones.
pub const KEEP: usize = 5;

/// Units of a load shown in the state document; the rest are counted (`units_more`),
/// and all are in the events file.
pub const STATE_UNITS: usize = 10;

/// What began an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// The frequency fell below `shed_below_hz`.
    UnderFrequency,
    /// A signed operator curtailment came into force or tightened.
    OperatorCurtail,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 2] = [TriggerKind::UnderFrequency, TriggerKind::OperatorCurtail];

    /// As the decision's reason names it.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::UnderFrequency => Reason::UnderFrequency.as_str(),
            TriggerKind::OperatorCurtail => Reason::OperatorCurtail.as_str(),
        }
    }
}

/// The moment the site had to let go of load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// The decision that first acted on it.
    #[serde(deserialize_with = "disk::ts")]
    pub at: Timestamp,
    pub kind: TriggerKind,
    /// The frequency reading the decision saw, Hz.
    #[serde(rename = "frequency_hz", default, deserialize_with = "disk::opt_hertz")]
    pub frequency: Option<Hertz>,
    /// The binding curtailment's `jti`; `None` for a frequency event, or for a command
    /// restored from the record of an earlier process (its `jti` is not kept there).
    #[serde(default)]
    pub jti: Option<String>,
    /// The operator whose curtailment binds.
    #[serde(default)]
    pub operator: Option<String>,
}

/// One command to one unit (a load, or one miner of a fleet) and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitTiming {
    /// The load's name, or the miner's address.
    pub unit: String,
    /// What it was told, for people: `0 W` or `1500 W on 3 units`.
    pub command: String,
    /// When the command was handed to the driver.
    #[serde(deserialize_with = "disk::ts")]
    pub sent: Timestamp,
    /// When the driver knew it was delivered (`Commanded::at`).
    #[serde(default, deserialize_with = "disk::opt_ts")]
    pub acked: Option<Timestamp>,
    /// When a read-back first matched it.
    #[serde(default, deserialize_with = "disk::opt_ts")]
    pub confirmed: Option<Timestamp>,
    /// Why it failed, if it did (and was not delivered since).
    #[serde(default)]
    pub error: Option<String>,
}

impl UnitTiming {
    /// The timing of the last command sent to a load as a whole, named `load`, if it was
    /// sent at or after `since`: acknowledged when the write that succeeded is that one,
    /// confirmed when a read-back matched it, its error when it failed.
    pub fn of_load(load: &str, s: &LoadStatus, since: Timestamp) -> Option<UnitTiming> {
        let (target, sent) = s.sent?;
        if sent < since {
            return None;
        }
        let acked = s
            .commanded
            .filter(|c| c.target == target && c.at >= sent)
            .map(|c| c.at);
        let error = s
            .last_error
            .as_ref()
            .filter(|e| acked.is_none() && e.at >= sent)
            .map(|e| e.message());
        Some(UnitTiming {
            unit: load.to_owned(),
            command: command_text(target.power, target.units_on),
            sent,
            acked,
            confirmed: acked.and(s.confirmed_at()),
            error,
        })
    }
}

/// `0 W`, or `1500 W on 3 units`.
pub fn command_text(power: Watts, units_on: u32) -> String {
    match units_on {
        _ if power.0 == 0.0 => format!("{} W", power.0),
        1 => format!("{} W on 1 unit", power.0),
        n => format!("{} W on {n} units", power.0),
    }
}

/// One load in an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadEvidence {
    pub load: String,
    /// What it was counted as drawing just before, W.
    #[serde(rename = "before_w", default, deserialize_with = "disk::opt_watts")]
    pub before: Option<Watts>,
    /// What the triggering decision told it, W.
    #[serde(rename = "target_w", deserialize_with = "disk::watts")]
    pub target: Watts,
    /// Whether it reports its power: without, nothing can confirm its drop.
    pub readback: bool,
    /// Whether the decision asked it for something it was not already doing, so that a
    /// command must follow.
    pub command_due: bool,
    /// The commands sent since the trigger: one for a load, one per miner of a fleet.
    pub units: Vec<UnitTiming>,
}

/// One load's power as a sample saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleReading {
    pub load: String,
    #[serde(rename = "power_w", default, deserialize_with = "disk::opt_watts")]
    pub power: Option<Watts>,
    /// When the reading was measured.
    #[serde(default, deserialize_with = "disk::opt_ts")]
    pub measured_at: Option<Timestamp>,
    /// Its age when the sample was taken.
    #[serde(rename = "age_s", default, with = "disk::opt_secs")]
    pub age: Option<Duration>,
    /// Measured at or after the trigger: only such a reading shows the response.
    pub after_trigger: bool,
    /// No read-back: the last setpoint written stands in for the power.
    pub estimated: bool,
}

/// The site's mining power at one offset after the trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The offset it was due at.
    #[serde(rename = "offset_s", with = "disk::secs")]
    pub offset: Duration,
    /// When it was taken.
    #[serde(deserialize_with = "disk::ts")]
    pub at: Timestamp,
    /// The loads' power together, W, over those whose power is known.
    #[serde(rename = "mining_w", default, deserialize_with = "disk::opt_watts")]
    pub mining: Option<Watts>,
    /// The oldest reading it is made of.
    #[serde(rename = "oldest_age_s", default, with = "disk::opt_secs")]
    pub oldest_age: Option<Duration>,
    /// Every load's reading measured after the trigger, none estimated.
    pub all_after_trigger: bool,
    pub loads: Vec<SampleReading>,
}

/// How an event measured up against a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every unit within it.
    Met,
    /// A unit late, failed, or still waiting when it passed.
    Missed,
    /// Some unit cannot show it (no read-back); the others were in time.
    Unknown,
    /// Not decided yet: within the window, not every unit done.
    Pending,
    /// Nothing had to be sent: every load already did what the decision asked.
    NoCommand,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::Unknown => "unknown",
            Verdict::Pending => "pending",
            Verdict::NoCommand => "no_command",
        }
    }
}

/// The event against ERCOT FFR's window: how long until the last unit acknowledged its
/// command, and until the last read-back confirmed the drop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(rename = "window_s", with = "disk::secs")]
    pub window: Duration,
    /// Trigger to the last unit's acknowledgement; `None` until every unit has one.
    #[serde(rename = "last_acked_s", default, with = "disk::opt_secs")]
    pub last_acked: Option<Duration>,
    pub commands: Verdict,
    /// Trigger to the last read-back confirming a unit's drop; `None` until every unit
    /// that reports its power has one.
    #[serde(rename = "last_confirmed_s", default, with = "disk::opt_secs")]
    pub last_confirmed: Option<Duration>,
    pub drop: Verdict,
}

/// Why a record was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closure {
    /// Every sample taken.
    Complete,
    /// A newer event began before the last sample; the missing ones were never taken.
    Superseded,
    /// The daemon stopped before the last sample.
    Shutdown,
}

impl Closure {
    pub fn as_str(self) -> &'static str {
        match self {
            Closure::Complete => "complete",
            Closure::Superseded => "superseded",
            Closure::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Closed {
    #[serde(deserialize_with = "disk::ts")]
    pub at: Timestamp,
    pub why: Closure,
}

/// The evidence of one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub site: String,
    pub trigger: Trigger,
    /// What the loads were counted as drawing together just before, W.
    #[serde(
        rename = "mining_before_w",
        default,
        deserialize_with = "disk::opt_watts"
    )]
    pub mining_before: Option<Watts>,
    /// The cap on mining the triggering decision applied, W.
    #[serde(rename = "cap_w", default, deserialize_with = "disk::opt_watts")]
    pub cap: Option<Watts>,
    pub loads: Vec<LoadEvidence>,
    /// In offset order; those never taken (closed early) are absent.
    pub samples: Vec<Sample>,
    pub response: Response,
    /// `None` while the record is open.
    #[serde(default)]
    pub closed: Option<Closed>,
}

impl Record {
    /// The record for the state document: as in the file, but at most [`STATE_UNITS`]
    /// units per load, the rest counted in `units_more`.
    pub fn state_json(&self) -> serde_json::Value {
        // Cannot fail: strings, bools and numbers (a non-finite one becomes null).
        let mut v = serde_json::to_value(self).expect("a record serialises");
        if let Some(loads) = v.get_mut("loads").and_then(|l| l.as_array_mut()) {
            for l in loads {
                if let Some(units) = l.get_mut("units").and_then(|u| u.as_array_mut()) {
                    let more = units.len().saturating_sub(STATE_UNITS);
                    units.truncate(STATE_UNITS);
                    l["units_more"] = more.into();
                }
            }
        }
        v["final"] = self.closed.is_some().into();
        v
    }

    /// The earliest time a sample at `offset` is due.
    pub fn due(&self, offset: Duration) -> Timestamp {
        self.trigger.at + offset
    }

    /// Takes in the timings the loads report now (in load order): a unit's first command
    /// since the trigger is the one that counts; later reports of the same command add
    /// its acknowledgement, confirmation or error, a different command (a later
    /// decision's) is left out.
    fn update_units(&mut self, loads: &[LoadView<'_>]) {
        for (ev, view) in self.loads.iter_mut().zip(loads) {
            for fresh in &view.timings {
                match ev.units.iter_mut().find(|u| u.unit == fresh.unit) {
                    None => ev.units.push(fresh.clone()),
                    Some(u) if u.command == fresh.command => {
                        u.acked = u.acked.or(fresh.acked);
                        u.confirmed = u.confirmed.or(fresh.confirmed);
                        // A retry that got through clears the failure of the first try.
                        u.error = if u.acked.is_some() {
                            None
                        } else {
                            fresh.error.clone().or(u.error.take())
                        };
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// The verdicts as of `now`.
    fn assess(&mut self, now: Timestamp) {
        let t = self.trigger.at;
        let deadline = t + FFR_WINDOW;
        // From the deadline on (the 250 ms sample) a unit still waiting has missed it; one
        // done at the deadline itself is in time.
        let open = now < deadline;
        let after = |at: Timestamp| at.since(t);
        // A load that had to be told something but shows no command yet stands as one
        // unit with nothing done.
        let waiting = self
            .loads
            .iter()
            .filter(|l| l.command_due && l.units.is_empty())
            .count();
        let units: Vec<(&UnitTiming, bool)> = self
            .loads
            .iter()
            .flat_map(|l| l.units.iter().map(move |u| (u, l.readback)))
            .collect();
        let (commands, drop) = if units.is_empty() && waiting == 0 {
            (Verdict::NoCommand, Verdict::NoCommand)
        } else {
            let late = |at: Option<Timestamp>, error: &Option<String>| match at {
                Some(at) => at > deadline,
                None => error.is_some() || !open,
            };
            let judge = |late: bool, done: bool| match (late, done) {
                (true, _) => Verdict::Missed,
                (false, true) => Verdict::Met,
                (false, false) if open => Verdict::Pending,
                (false, false) => Verdict::Missed,
            };
            let acks_late = units.iter().any(|(u, _)| late(u.acked, &u.error));
            let acks_done = waiting == 0 && units.iter().all(|(u, _)| u.acked.is_some());
            let commands = judge(acks_late || (waiting > 0 && !open), acks_done);
            let confirmable = units.iter().filter(|(_, readback)| *readback);
            let drops_late = confirmable
                .clone()
                .any(|(u, _)| late(u.confirmed, &u.error));
            let drops_done =
                waiting == 0 && confirmable.clone().all(|(u, _)| u.confirmed.is_some());
            let mut drop = judge(drops_late || (waiting > 0 && !open), drops_done);
            if drop == Verdict::Met && units.iter().any(|(_, readback)| !readback) {
                drop = Verdict::Unknown;
            }
            (commands, drop)
        };
        let last = |pick: fn(&UnitTiming) -> Option<Timestamp>, only_readback: bool| {
            let chosen: Vec<&UnitTiming> = units
                .iter()
                .filter(|(_, r)| *r || !only_readback)
                .map(|(u, _)| *u)
                .collect();
            if chosen.is_empty() || waiting > 0 {
                return None;
            }
            chosen
                .iter()
                .map(|u| pick(u).map(after))
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .max()
        };
        self.response = Response {
            window: FFR_WINDOW,
            last_acked: last(|u| u.acked, false),
            commands,
            last_confirmed: last(|u| u.confirmed, true),
            drop,
        };
    }
}

/// What the runtime tells [`Evidence`] of one load: its name, its status now, and the
/// timings of the commands sent to it since the open record's trigger (see
/// [`Evidence::since`]; none are needed while no record is open).
#[derive(Debug, Clone)]
pub struct LoadView<'a> {
    pub name: &'a str,
    pub status: &'a LoadStatus,
    pub timings: Vec<UnitTiming>,
}

/// What a decision did to the evidence.
#[derive(Debug, Default, PartialEq)]
pub struct Decided {
    /// A new record was opened: its samples are due.
    pub opened: Option<TriggerKind>,
    /// The record the new one superseded, closed: to be written out.
    pub superseded: Option<Record>,
}

/// The evidence book of one site: detects triggers in the decisions, keeps the open
/// record and the latest closed ones.
#[derive(Debug)]
pub struct Evidence {
    site: String,
    /// The previous decision's reason and cap.
    last: Option<(Reason, Option<Watts>)>,
    /// Each operator's latest accepted `jti`.
    jtis: Vec<(String, String)>,
    open: Option<Record>,
    /// Samples the open record has taken.
    taken: usize,
    /// Closed records, newest last, at most `KEEP`.
    recent: VecDeque<Record>,
}

impl Evidence {
    pub fn new(site: impl Into<String>) -> Self {
        Evidence {
            site: site.into(),
            last: None,
            jtis: Vec::new(),
            open: None,
            taken: 0,
            recent: VecDeque::new(),
        }
    }

    /// An operator's command was accepted: a curtailment of theirs that comes into force
    /// is named by this `jti`.
    pub fn accepted(&mut self, operator: &str, jti: &str) {
        match self.jtis.iter_mut().find(|(o, _)| o == operator) {
            Some((_, j)) => *j = jti.to_owned(),
            None => self.jtis.push((operator.to_owned(), jti.to_owned())),
        }
    }

    /// The open record's trigger time: the loads' timings are wanted since then.
    pub fn since(&self) -> Option<Timestamp> {
        self.open.as_ref().map(|r| r.trigger.at)
    }

    /// The offset of the open record's next sample, from its trigger.
    pub fn next_due(&self) -> Option<Duration> {
        self.open.as_ref().and(OFFSETS.get(self.taken).copied())
    }

    /// Books decision `d`, made on `state` with the loads as `loads` shows them just
    /// before it (their statuses as the step read them). A trigger opens a record and
    /// closes the open one early (returned, to be written out).
    pub fn decided(&mut self, d: &Decision, state: &SiteState, loads: &[LoadView<'_>]) -> Decided {
        let previous = self.last.replace((d.reason, d.limit));
        let kind = match (d.reason, previous) {
            (Reason::UnderFrequency, Some((Reason::UnderFrequency, _))) => None,
            (Reason::UnderFrequency, _) => Some(TriggerKind::UnderFrequency),
            (Reason::OperatorCurtail, Some((Reason::OperatorCurtail, was))) => {
                let tighter = match (d.limit, was) {
                    (Some(now), Some(was)) => now < was,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                tighter.then_some(TriggerKind::OperatorCurtail)
            }
            (Reason::OperatorCurtail, _) => Some(TriggerKind::OperatorCurtail),
            _ => None,
        };
        let Some(kind) = kind else {
            return Decided::default();
        };
        let superseded = self.close(d.at, Closure::Superseded, loads);
        let (frequency, operator) = match kind {
            TriggerKind::UnderFrequency => (state.frequency.map(|r| r.value), None),
            TriggerKind::OperatorCurtail => (
                None,
                state
                    .commands
                    .curtail_cap(d.at)
                    .map(|(_, c)| c.issuer.id.clone()),
            ),
        };
        let jti = operator.as_ref().and_then(|o| {
            self.jtis
                .iter()
                .find(|(op, _)| op == o)
                .map(|(_, j)| j.clone())
        });
        let known: Vec<Watts> = loads
            .iter()
            .filter_map(|l| l.status.reading().map(|r| r.value))
            .collect();
        let mut record = Record {
            site: self.site.clone(),
            trigger: Trigger {
                at: d.at,
                kind,
                frequency,
                jti,
                operator,
            },
            mining_before: (!known.is_empty()).then(|| known.into_iter().sum()),
            cap: d.limit,
            loads: loads
                .iter()
                .zip(&d.loads)
                .map(|(l, target)| LoadEvidence {
                    load: l.name.to_owned(),
                    before: l.status.reading().map(|r| r.value),
                    target: target.power,
                    readback: l.status.readback,
                    command_due: l.status.commanded.map(|c| c.target) != Some(*target),
                    units: Vec::new(),
                })
                .collect(),
            samples: Vec::new(),
            response: Response {
                window: FFR_WINDOW,
                last_acked: None,
                commands: Verdict::Pending,
                last_confirmed: None,
                drop: Verdict::Pending,
            },
            closed: None,
        };
        record.assess(d.at);
        self.open = Some(record);
        self.taken = 0;
        Decided {
            opened: Some(kind),
            superseded,
        }
    }

    /// Takes the open record's next sample at `now` from `loads` as they are now. Returns
    /// the record once it is final (its last sample taken).
    pub fn sample(&mut self, now: Timestamp, loads: &[LoadView<'_>]) -> Option<Record> {
        let offset = self.next_due()?;
        let record = self.open.as_mut()?;
        record.update_units(loads);
        let t = record.trigger.at;
        let readings: Vec<SampleReading> = loads
            .iter()
            .map(|l| {
                let r = l.status.reading();
                SampleReading {
                    load: l.name.to_owned(),
                    power: r.map(|r| r.value),
                    measured_at: r.map(|r| r.at),
                    age: r.map(|r| now.since(r.at)),
                    after_trigger: r.is_some_and(|r| r.at >= t),
                    estimated: !l.status.readback,
                }
            })
            .collect();
        let known: Vec<&SampleReading> = readings.iter().filter(|r| r.power.is_some()).collect();
        record.samples.push(Sample {
            offset,
            at: now,
            mining: (!known.is_empty()).then(|| known.iter().filter_map(|r| r.power).sum()),
            oldest_age: readings.iter().filter_map(|r| r.age).max(),
            all_after_trigger: readings.iter().all(|r| r.after_trigger && !r.estimated),
            loads: readings,
        });
        record.assess(now);
        self.taken += 1;
        if self.taken < OFFSETS.len() {
            return None;
        }
        self.close(now, Closure::Complete, loads)
    }

    /// Closes the open record at `now` for `why`, with the loads' latest timings;
    /// returns it (`None` if none was open).
    pub fn close(
        &mut self,
        now: Timestamp,
        why: Closure,
        loads: &[LoadView<'_>],
    ) -> Option<Record> {
        let mut record = self.open.take()?;
        record.update_units(loads);
        record.closed = Some(Closed { at: now, why });
        record.assess(now);
        if self.recent.len() == KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(record.clone());
        Some(record)
    }

    /// The open record and the latest closed ones, newest first, at most [`KEEP`].
    pub fn records(&self) -> Vec<Record> {
        let open = self.open.iter();
        open.chain(self.recent.iter().rev())
            .take(KEEP)
            .cloned()
            .collect()
    }
}

/// The shapes the events file holds: numbers in the unit the key names, times as RFC 3339.
mod disk {
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::clock::Timestamp;
    use crate::units::{Hertz, Watts};

    pub fn ts<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        Timestamp::parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }

    pub fn opt_ts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| Timestamp::parse(&s).map_err(D::Error::custom))
            .transpose()
    }

    fn finite<E: serde::de::Error>(v: f64) -> Result<f64, E> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(E::custom("not a finite number"))
        }
    }

    /// Watts from the plain number a `_w` key holds.
    pub fn watts<'de, D: Deserializer<'de>>(d: D) -> Result<Watts, D::Error> {
        finite(f64::deserialize(d)?).map(Watts)
    }

    pub fn opt_watts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Watts>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|v| finite(v).map(Watts))
            .transpose()
    }

    /// Hertz from the plain number a `_hz` key holds.
    pub fn opt_hertz<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Hertz>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|v| finite(v).map(Hertz))
            .transpose()
    }

    /// Whole milliseconds, as every duration here is (a difference of `Timestamp`s):
    /// rounding makes what is read back exactly what was written.
    fn duration<E: serde::de::Error>(s: f64) -> Result<Duration, E> {
        // Refuses negative, non-finite and out-of-range values with serde's own words.
        Duration::try_from_secs_f64(s).map_err(E::custom)?;
        Ok(Duration::from_millis((s * 1000.0).round() as u64))
    }

    /// A duration as seconds.
    pub mod secs {
        use super::*;
        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_f64(d.as_secs_f64())
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            duration(f64::deserialize(d)?)
        }
    }

    /// An optional duration as seconds, or null.
    pub mod opt_secs {
        use super::*;
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_f64(d.as_secs_f64()),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<f64>::deserialize(d)?.map(duration).transpose()
        }
    }
}

#[cfg(test)]
mod tests;
