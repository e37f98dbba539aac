//! One miner's verified actuation, without I/O: what to send to bring the miner to its
//! goal, when to read it back, when a command counts as done, when to try again and when
//! to escalate or give up; and what the read-backs teach about the miner (wake and ramp
//! times, the power it really draws at a limit).
//!
//! The rule it exists for: a command is done when a read-back shows its effect, never
//! when the firmware (or the library) says `true`. Firmware lies (asic-rs #310: `pause()`
//! returned true on an S21+ that kept hashing), so the acknowledgement is kept as a
//! timing and nothing more.
//!
//! The shell (`super::fleet`) calls [`Control::next_command`] and [`Control::next_read`],
//! does the I/O, and feeds back [`Control::sent`], [`Control::acked`] and
//! [`Control::observed`]. Time comes in as arguments, so the tests here run the rules on
//! a made-up clock.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::actuator::ActuatorError;
use crate::clock::Timestamp;
use crate::units::{HashRate, Watts};

/// What the fleet asks of one miner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Goal {
    pub mining: bool,
    /// The power limit to run at; `None` leaves the miner's own (an on/off miner).
    pub limit: Option<Watts>,
}

impl Goal {
    pub const OFF: Goal = Goal {
        mining: false,
        limit: None,
    };
}

/// A command to a miner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "watts", rename_all = "snake_case")]
pub enum Command {
    Pause,
    Resume,
    SetLimit(Watts),
    /// Power cut at the miner's outlet (a PDU relay), when the firmware would not stop.
    HardCut,
    /// Power back at the outlet after a hard cut; the miner boots, then is resumed.
    Restore,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::SetLimit(_) => "set_power_limit",
            Command::HardCut => "hard_cut",
            Command::Restore => "restore",
        }
    }
}

/// One read-back of a miner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Observed {
    pub at: Timestamp,
    /// What the firmware says; believed only together with hashrate and power.
    pub mining: bool,
    pub power: Option<Watts>,
    pub hashrate: Option<HashRate>,
    /// The power limit the firmware reports it is tuned to.
    pub limit: Option<Watts>,
}

impl Observed {
    /// Hashing, by every sign the miner gives: the firmware says so and the hashrate
    /// (where it reports one) is not zero.
    fn hashing(&self) -> bool {
        self.mining && self.hashrate.is_none_or(|h| h.0 > 0.0)
    }
}

/// How a miner is doing, as the state document names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MinerState {
    Mining,
    Sleeping,
    /// Told to resume, not hashing (or not at its power) yet.
    Waking,
    /// Did not do what it was told within the deadlines and retries: out of the capacity
    /// the fleet counts on until it shows it complies again.
    Unresponsive,
    /// No read-back for too long (or never).
    Unknown,
}

impl MinerState {
    pub const ALL: [MinerState; 5] = [
        MinerState::Mining,
        MinerState::Sleeping,
        MinerState::Waking,
        MinerState::Unresponsive,
        MinerState::Unknown,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            MinerState::Mining => "mining",
            MinerState::Sleeping => "sleeping",
            MinerState::Waking => "waking",
            MinerState::Unresponsive => "unresponsive",
            MinerState::Unknown => "unknown",
        }
    }
}

/// Deadlines and retries, per command kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timings {
    /// How often an idle miner is read.
    pub poll: Duration,
    /// How often a miner is read while a command awaits its effect.
    pub verify_every: Duration,
    /// From the acknowledgement to the read-back that shows the effect, per kind.
    pub pause_within: Duration,
    /// A floor: a miner that was seen to wake slower gets twice its learned wake plus
    /// ramp.
    pub resume_within: Duration,
    pub limit_within: Duration,
    /// Sends of the same command before escalating (1 = no retry).
    pub attempts: u32,
    /// The wait before a failed send is tried again, doubled per attempt.
    pub backoff: Duration,
    /// Without a read-back for this long a miner is `unknown`.
    pub unknown_after: Duration,
    /// An unresponsive miner is given another chance after this long.
    pub readmit_after: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            poll: Duration::from_secs(10),
            verify_every: Duration::from_secs(1),
            pause_within: Duration::from_secs(60),
            resume_within: Duration::from_secs(300),
            limit_within: Duration::from_secs(120),
            attempts: 3,
            backoff: Duration::from_secs(2),
            unknown_after: Duration::from_secs(35),
            readmit_after: Duration::from_secs(600),
        }
    }
}

/// One command's life: sent, acknowledged, confirmed by a read-back (or not).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRecord {
    pub command: Command,
    /// The first send.
    pub sent: Timestamp,
    /// The firmware's answer to the latest send; a timing, never proof.
    pub acked: Option<Timestamp>,
    /// The read-back that showed the effect.
    pub confirmed: Option<Timestamp>,
    pub attempts: u32,
    /// The last failed send, or why it was given up.
    pub error: Option<String>,
    /// Given up: the effect never showed within the deadlines and retries.
    pub failed: bool,
    /// Replaced by a newer goal before it was done.
    pub superseded: bool,
}

impl CommandRecord {
    /// Sent to confirmed.
    pub fn latency(&self) -> Option<Duration> {
        self.confirmed.map(|c| c.since(self.sent))
    }
}

/// What the read-backs taught about a miner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Learned {
    /// Resume acknowledged to hashing.
    pub wake: Option<Duration>,
    /// Hashing to within 5 % of its limit (or rated power).
    pub ramp: Option<Duration>,
    /// Power drawn over the limit set, when settled (1.0: draws exactly its limit).
    pub power_per_limit: Option<f64>,
}

/// Weight of a new sample in a learned figure.
const LEARN_WEIGHT: f64 = 0.5;

fn blend(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |o| o + LEARN_WEIGHT * (new - o))
}

fn blend_duration(old: Option<Duration>, new: Duration) -> Duration {
    Duration::from_secs_f64(blend(old.map(|d| d.as_secs_f64()), new.as_secs_f64()))
}

#[derive(Debug, Clone)]
struct Pending {
    record: CommandRecord,
    /// Sent, awaiting the firmware's answer.
    in_flight: bool,
    /// When to send again after a failed send.
    retry_at: Option<Timestamp>,
    /// When the effect must show by (set at the acknowledgement).
    deadline: Option<Timestamp>,
    /// For learning: when the miner was first seen hashing after a resume.
    hashing_since: Option<Timestamp>,
}

/// How many finished commands a miner keeps for its status.
const HISTORY: usize = 8;

/// One miner's actuation state.
#[derive(Debug, Clone)]
pub struct Control {
    timings: Timings,
    /// Power of the miner at full output, W.
    rated: Watts,
    /// At or below this a miner counts as not drawing (control boards, fans idling).
    standby: Watts,
    /// Whether a hard cut can be sent (a relay is configured).
    relay: bool,
    goal: Goal,
    last: Option<Observed>,
    pending: Option<Pending>,
    history: VecDeque<CommandRecord>,
    unresponsive_since: Option<Timestamp>,
    /// Cut at the outlet: nothing but power back (then a resume) changes it.
    cut: bool,
    learned: Learned,
    /// (UTC day, starts that day).
    starts: (i64, u32),
    /// Since when the goal has been what it is: the wear rules count from it.
    goal_since: Option<Timestamp>,
    /// For wake learning when a resume is confirmed before its ramp ends.
    ramping: Option<(Timestamp, Watts)>,
    /// When the firmware last acknowledged a resume: a read-back older than this says
    /// nothing about whether it is waking.
    resumed_at: Option<Timestamp>,
    /// When the last command was given up.
    gave_up_at: Option<Timestamp>,
    /// Sends and read-backs that failed since start.
    pub failures: u64,
}

impl Control {
    pub fn new(timings: Timings, rated: Watts, relay: bool) -> Self {
        Control {
            timings,
            rated,
            // 2 % of rated power, at least 50 W: a sleeping Whatsminer's control board
            // and PSU draw a few tens of watts.
            standby: (rated * 0.02).max(Watts(50.0)),
            relay,
            goal: Goal::OFF,
            last: None,
            pending: None,
            history: VecDeque::new(),
            unresponsive_since: None,
            cut: false,
            learned: Learned::default(),
            starts: (i64::MIN, 0),
            goal_since: None,
            ramping: None,
            resumed_at: None,
            gave_up_at: None,
            failures: 0,
        }
    }

    pub fn goal(&self) -> Goal {
        self.goal
    }
    pub fn last(&self) -> Option<&Observed> {
        self.last.as_ref()
    }
    pub fn learned(&self) -> Learned {
        self.learned
    }
    pub fn timings(&self) -> &Timings {
        &self.timings
    }
    /// The command in progress, if any.
    pub fn pending(&self) -> Option<&CommandRecord> {
        self.pending.as_ref().map(|p| &p.record)
    }
    /// The latest command: in progress, or the last finished one.
    pub fn last_command(&self) -> Option<&CommandRecord> {
        self.pending().or(self.history.back())
    }
    /// Finished commands, oldest first, and the one in progress last.
    pub fn commands(&self) -> impl Iterator<Item = &CommandRecord> {
        self.history.iter().chain(self.pending())
    }
    /// Resumes sent on UTC day `day`.
    pub fn starts_on(&self, day: i64) -> u32 {
        if self.starts.0 == day {
            self.starts.1
        } else {
            0
        }
    }
    /// Since when the miner has been asked for what it is asked now.
    pub fn goal_since(&self) -> Option<Timestamp> {
        self.goal_since
    }

    /// Whether the miner is out of the capacity the fleet counts on: it did not comply,
    /// or it has not been heard from.
    pub fn excluded(&self, now: Timestamp) -> bool {
        matches!(
            self.state(now),
            MinerState::Unresponsive | MinerState::Unknown
        )
    }

    pub fn state(&self, now: Timestamp) -> MinerState {
        if self.unresponsive_since.is_some() {
            return MinerState::Unresponsive;
        }
        let Some(last) = self
            .last
            .filter(|o| now.since(o.at) <= self.timings.unknown_after)
        else {
            return MinerState::Unknown;
        };
        let resuming = self
            .pending
            .as_ref()
            .is_some_and(|p| p.record.command == Command::Resume);
        match (last.hashing(), resuming) {
            (false, true) => MinerState::Waking,
            (false, false) => MinerState::Sleeping,
            (true, _) if self.ramping.is_some() => MinerState::Waking,
            (true, _) => MinerState::Mining,
        }
    }

    /// What the miner may be drawing that the fleet does not control: the last reading
    /// of a miner that is out of the capacity (its power, or its rating if it reported
    /// none and may be hashing), nothing for the others. The fleet takes it off what the
    /// others may draw, so the group never exceeds its target for a miner that would not
    /// stop.
    pub fn uncontrolled(&self, now: Timestamp) -> Watts {
        if !self.excluded(now) || self.cut {
            return Watts::ZERO;
        }
        match self.last {
            // Never heard from: it may be running at full power.
            None => self.rated,
            Some(o) => match o.power {
                Some(p) if p > self.standby => p,
                Some(_) => Watts::ZERO,
                None if o.hashing() => self.rated,
                None => Watts::ZERO,
            },
        }
    }

    /// What it draws by its last read-back (nothing known: `None`).
    pub fn power(&self) -> Option<Watts> {
        let o = self.last?;
        o.power
            .or(Some(if o.hashing() { self.rated } else { Watts::ZERO }))
    }

    /// Sets what the miner is asked for. A command for an older goal that is still in
    /// progress is superseded (kept in the history as such).
    pub fn set_goal(&mut self, goal: Goal, now: Timestamp) {
        if goal == self.goal {
            return;
        }
        if goal.mining != self.goal.mining {
            self.goal_since = Some(now);
        }
        self.goal = goal;
        if let Some(p) = &self.pending {
            // A pause in progress is never superseded by another pause-like goal; a
            // changed goal makes the rest of the pending command moot.
            if !p.in_flight && self.satisfies(p.record.command) {
                return;
            }
            if !p.in_flight {
                let mut done = self.pending.take().expect("checked above").record;
                done.superseded = true;
                self.finish(done);
            }
        }
    }

    /// Whether `command` still moves the miner toward the goal.
    fn satisfies(&self, command: Command) -> bool {
        match command {
            Command::Pause | Command::HardCut => !self.goal.mining,
            Command::Resume | Command::Restore => self.goal.mining,
            Command::SetLimit(w) => self.goal.mining && self.goal.limit == Some(w),
        }
    }

    /// The command to send now, if any: a retry that is due, or the next step toward
    /// the goal. `None` while a command is in flight or awaiting its effect.
    pub fn next_command(&self, now: Timestamp) -> Option<Command> {
        if let Some(p) = &self.pending {
            return (!p.in_flight && p.retry_at.is_some_and(|t| t <= now))
                .then_some(p.record.command);
        }
        if let Some(since) = self.unresponsive_since {
            // Readmitted on trial later; meanwhile only a stop is ever sent (a miner
            // out of the capacity must not draw).
            if now.since(since) < self.timings.readmit_after {
                // A stop that failed is tried again every two pause deadlines: a miner
                // out of the capacity that still draws must be stopped, and a link that
                // drops most connections lets one through now and then.
                let stop = !self.goal.mining && self.drawing() && !self.cut;
                let failed_stop = self
                    .history
                    .back()
                    .filter(|r| r.failed && matches!(r.command, Command::Pause | Command::HardCut));
                let due = failed_stop.is_none_or(|r| {
                    now.since(self.gave_up_at.unwrap_or(r.sent)) >= self.timings.pause_within * 2
                });
                return (stop && due).then_some(Command::Pause);
            }
        }
        self.step_toward_goal()
    }

    /// Whether the last read-back says the miner draws (or it was never read).
    fn drawing(&self) -> bool {
        self.last
            .is_none_or(|o| o.hashing() || o.power.is_some_and(|p| p > self.standby))
    }

    fn step_toward_goal(&self) -> Option<Command> {
        let Some(o) = self.last else {
            // Never read: stopping is always safe to send; anything else waits for the
            // first read-back.
            return (!self.goal.mining).then_some(Command::Pause);
        };
        if self.goal.mining {
            if self.cut {
                return self.relay.then_some(Command::Restore);
            }
            if !o.hashing() {
                return Some(Command::Resume);
            }
            match self.goal.limit {
                Some(l) if o.limit.is_none_or(|have| (have - l).abs() > Watts(1.0)) => {
                    Some(Command::SetLimit(l))
                }
                _ => None,
            }
        } else if !self.cut
            && (o.hashing()
                || o.power.is_some_and(|p| p > self.standby)
                || self.resumed_at.is_some_and(|r| r >= o.at))
        {
            // Drawing, or told to resume since it was last read (it may be waking).
            Some(Command::Pause)
        } else {
            None
        }
    }

    /// Books a send of `command` at `now`.
    pub fn sent(&mut self, command: Command, now: Timestamp) {
        if command == Command::Resume {
            let day = now.day();
            self.starts = (day, self.starts_on(day) + 1);
        }
        match &mut self.pending {
            Some(p) if p.record.command == command => {
                p.record.attempts += 1;
                p.in_flight = true;
                p.retry_at = None;
            }
            _ => {
                if let Some(mut old) = self.pending.take().map(|p| p.record) {
                    old.superseded = true;
                    self.finish(old);
                }
                self.pending = Some(Pending {
                    record: CommandRecord {
                        command,
                        sent: now,
                        acked: None,
                        confirmed: None,
                        attempts: 1,
                        error: None,
                        failed: false,
                        superseded: false,
                    },
                    in_flight: true,
                    retry_at: None,
                    deadline: None,
                    hashing_since: None,
                });
            }
        }
    }

    /// Books the firmware's answer to the send in flight.
    pub fn acked(&mut self, result: Result<(), ActuatorError>, now: Timestamp) {
        let within = self.within_for_pending();
        let attempts = self.timings.attempts;
        let backoff = self.timings.backoff;
        let Some(p) = &mut self.pending else {
            return;
        };
        p.in_flight = false;
        match result {
            Ok(()) => {
                p.record.acked = Some(now);
                p.record.error = None;
                p.deadline = Some(now + within);
                match p.record.command {
                    Command::HardCut => self.cut = true,
                    Command::Restore => self.cut = false,
                    Command::Resume => self.resumed_at = Some(now),
                    _ => {}
                }
            }
            Err(e) => {
                self.failures += 1;
                p.record.error = Some(e.to_string());
                if p.record.attempts >= attempts || !e.is_transient() {
                    self.give_up(now);
                } else {
                    let wait = backoff * 2u32.saturating_pow(p.record.attempts - 1);
                    p.retry_at = Some(now + wait);
                }
            }
        }
        self.drop_moot();
    }

    /// A command whose answer came after the goal changed (it was in flight then) no
    /// longer leads anywhere: booked as superseded, so the next step toward the new goal
    /// is sent (a resume answered after a stop was asked must not hold the stop back).
    fn drop_moot(&mut self) {
        let moot = self
            .pending
            .as_ref()
            .is_some_and(|p| !p.in_flight && !self.satisfies(p.record.command));
        if moot {
            let mut done = self.pending.take().expect("checked above").record;
            done.superseded = true;
            self.finish(done);
        }
    }

    /// Whether the miner has acknowledged what its goal asks: the command in progress
    /// serves the goal and was acknowledged, or there is nothing to send.
    pub fn goal_acknowledged(&self, now: Timestamp) -> bool {
        match &self.pending {
            Some(p) => self.satisfies(p.record.command) && p.record.acked.is_some(),
            None => self.next_command(now).is_none(),
        }
    }

    fn within_for_pending(&self) -> Duration {
        let t = &self.timings;
        match self.pending.as_ref().map(|p| p.record.command) {
            Some(Command::Resume) | Some(Command::Restore) => {
                let learned = self
                    .learned
                    .wake
                    .zip(self.learned.ramp)
                    .map(|(w, r)| (w + r) * 2)
                    .unwrap_or_default();
                t.resume_within.max(learned)
            }
            Some(Command::SetLimit(_)) => t.limit_within,
            Some(Command::Pause) | Some(Command::HardCut) | None => t.pause_within,
        }
    }

    /// Books a failed read at `now`. After a hard cut that is the effect: a miner
    /// without power answers nothing.
    pub fn read_failed(&mut self, now: Timestamp) {
        self.failures += 1;
        let cut = self.pending.as_ref().is_some_and(|p| {
            p.record.command == Command::HardCut && !p.in_flight && p.record.acked.is_some()
        });
        if cut {
            let mut done = self.pending.take().expect("checked above").record;
            done.confirmed = Some(now);
            self.finish(done);
        }
    }

    /// Books a read-back: confirms the pending command if it shows its effect, and
    /// learns from it.
    pub fn observed(&mut self, o: Observed) {
        // A reading older than the last one changes nothing (reads overlap).
        if self.last.is_some_and(|l| l.at > o.at) {
            return;
        }
        self.last = Some(o);
        self.learn(&o);
        let Some(p) = &mut self.pending else {
            return;
        };
        if p.in_flight || p.record.acked.is_none_or(|a| o.at < a) {
            return;
        }
        let shows = match p.record.command {
            Command::Pause | Command::HardCut => {
                !o.hashing() && o.power.is_none_or(|w| w <= self.standby)
            }
            Command::Resume => o.hashing() && o.power.is_none_or(|w| w > self.standby),
            // It answers again: the power is back.
            Command::Restore => true,
            Command::SetLimit(l) => {
                // The firmware took the limit, and the miner draws no more than it
                // (within 5 %: meters and PSUs differ).
                o.limit.is_some_and(|have| (have - l).abs() <= Watts(1.0))
                    && o.power.is_none_or(|w| w <= l * 1.05)
            }
        };
        if shows {
            let mut done = self.pending.take().expect("checked above").record;
            done.confirmed = Some(o.at);
            // An unresponsive miner stays out until `readmit_after`, even when a later
            // command takes: out of the capacity it is told to stop, and a stop that
            // works says nothing about the command it failed (flapping in and out would
            // spend its starts and the group's stability).
            self.finish(done);
        }
    }

    fn learn(&mut self, o: &Observed) {
        // Wake: resume acknowledged to hashing.
        if let Some(p) = &mut self.pending {
            if p.record.command == Command::Resume && o.hashing() && p.hashing_since.is_none() {
                if let Some(acked) = p.record.acked {
                    p.hashing_since = Some(o.at);
                    self.learned.wake = Some(blend_duration(self.learned.wake, o.at.since(acked)));
                    let full = self.goal.limit.unwrap_or(self.rated);
                    self.ramping = Some((o.at, full));
                }
            }
        }
        // Ramp: hashing to within 5 % of its power.
        if let Some((since, full)) = self.ramping {
            if !o.hashing() {
                self.ramping = None;
            } else if o.power.is_none_or(|w| w >= full * 0.95) {
                self.learned.ramp = Some(blend_duration(self.learned.ramp, o.at.since(since)));
                self.ramping = None;
            }
        }
        // Power at a limit: only when settled (nothing in progress).
        if self.pending.is_none() && self.ramping.is_none() && o.hashing() {
            if let (Some(w), Some(l)) = (o.power, o.limit) {
                if l.0 > 0.0 && w.0 > 0.0 {
                    self.learned.power_per_limit =
                        Some(blend(self.learned.power_per_limit, w.0 / l.0));
                }
            }
        }
    }

    /// Checks the deadlines: a command whose effect did not show is sent again, then
    /// escalated or given up. Call at every wake-up.
    pub fn tick(&mut self, now: Timestamp) {
        self.drop_moot();
        let attempts = self.timings.attempts;
        let backoff = self.timings.backoff;
        let Some(p) = &mut self.pending else {
            return;
        };
        if p.in_flight || p.deadline.is_none_or(|d| now < d) {
            return;
        }
        if p.record.attempts < attempts {
            p.deadline = None;
            p.retry_at = Some(now + backoff);
            p.record.error = Some("no effect within the deadline".into());
        } else {
            p.record.error = Some(format!(
                "no effect after {} sends; given up",
                p.record.attempts
            ));
            self.give_up(now);
        }
    }

    /// The pending command failed for good: escalate where there is a next step,
    /// otherwise mark the miner unresponsive.
    fn give_up(&mut self, now: Timestamp) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let mut rec = p.record;
        rec.failed = true;
        self.gave_up_at = Some(now);
        let command = rec.command;
        self.finish(rec);
        // Escalation: a limit that was not taken becomes a pause when it was meant to
        // lower the power; a pause that was not taken becomes a hard cut where a relay
        // is configured. Either way the miner leaves the capacity.
        self.unresponsive_since.get_or_insert(now);
        let next = match command {
            Command::SetLimit(_) => Some(Command::Pause),
            Command::Pause if self.relay => Some(Command::HardCut),
            _ => None,
        };
        if let Some(c) = next {
            self.pending = Some(Pending {
                record: CommandRecord {
                    command: c,
                    sent: now,
                    acked: None,
                    confirmed: None,
                    attempts: 0,
                    error: None,
                    failed: false,
                    superseded: false,
                },
                in_flight: false,
                retry_at: Some(now),
                deadline: None,
                hashing_since: None,
            });
        }
    }

    fn finish(&mut self, r: CommandRecord) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(r);
    }

    /// When the miner should be read next, given the last read at `last_read`.
    pub fn next_read(&self, last_read: Timestamp) -> Timestamp {
        let every = match &self.pending {
            Some(p) if !p.in_flight && p.record.acked.is_some() => self.timings.verify_every,
            _ if self.ramping.is_some() => self.timings.verify_every,
            _ => self.timings.poll,
        };
        last_read + every
    }

    /// The next moment anything is due besides reads: a retry or a deadline.
    pub fn next_due(&self) -> Option<Timestamp> {
        let p = self.pending.as_ref()?;
        match (p.retry_at, p.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A miner brought back by a person (or its readmission time passed): forget that it
    /// was unresponsive.
    pub fn readmit(&mut self, now: Timestamp) {
        if self
            .unresponsive_since
            .is_some_and(|s| now.since(s) >= self.timings.readmit_after)
        {
            self.unresponsive_since = None;
        }
    }

    /// Power back at the outlet after a hard cut (the relay closed again).
    pub fn power_restored(&mut self) {
        self.cut = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATED: Watts = Watts(3400.0);

    fn t(s: i64) -> Timestamp {
        Timestamp(s * 1000)
    }

    fn fast() -> Timings {
        Timings {
            poll: Duration::from_secs(10),
            verify_every: Duration::from_secs(1),
            pause_within: Duration::from_secs(5),
            resume_within: Duration::from_secs(20),
            limit_within: Duration::from_secs(10),
            attempts: 2,
            backoff: Duration::from_secs(1),
            unknown_after: Duration::from_secs(30),
            readmit_after: Duration::from_secs(600),
        }
    }

    fn mining(at: i64, w: f64, limit: f64) -> Observed {
        Observed {
            at: t(at),
            mining: true,
            power: Some(Watts(w)),
            hashrate: Some(HashRate::from_ths(100.0 * w / RATED.0)),
            limit: Some(Watts(limit)),
        }
    }

    fn sleeping(at: i64) -> Observed {
        Observed {
            at: t(at),
            mining: false,
            power: Some(Watts(20.0)),
            hashrate: Some(HashRate(0.0)),
            limit: Some(RATED),
        }
    }

    #[test]
    fn r11_an_acknowledged_pause_is_not_done_until_a_read_back_shows_it() {
        // Catches: a `true` from the firmware taken as proof (asic-rs #310).
        let mut c = Control::new(fast(), RATED, false);
        c.observed(mining(0, 3400.0, 3400.0));
        c.set_goal(Goal::OFF, t(1));
        assert_eq!(c.next_command(t(1)), Some(Command::Pause));
        c.sent(Command::Pause, t(1));
        c.acked(Ok(()), t(1));
        assert!(c.pending().is_some_and(|p| p.confirmed.is_none()));
        // Still hashing a second later: not confirmed.
        c.observed(mining(2, 3400.0, 3400.0));
        assert!(c.pending().is_some_and(|p| p.confirmed.is_none()));
        c.observed(sleeping(3));
        let done = c.last_command().expect("a command");
        assert_eq!(done.confirmed, Some(t(3)));
        assert_eq!(done.latency(), Some(Duration::from_secs(2)));
        assert_eq!(c.state(t(3)), MinerState::Sleeping);
    }

    #[test]
    fn r11_a_liar_is_retried_then_unresponsive_and_its_draw_uncontrolled() {
        // Catches: a miner that answers OK and keeps mining counted as stopped, and
        // its power not taken off what the rest of the fleet may draw.
        let mut c = Control::new(fast(), RATED, false);
        c.observed(mining(0, 3400.0, 3400.0));
        c.set_goal(Goal::OFF, t(0));
        let mut now = 0;
        let mut sends = Vec::new();
        while now < 60 {
            c.tick(t(now));
            if let Some(cmd) = c.next_command(t(now)) {
                assert_eq!(cmd, Command::Pause);
                c.sent(cmd, t(now));
                c.acked(Ok(()), t(now));
                sends.push(now);
            }
            c.observed(mining(now, 3400.0, 3400.0));
            now += 1;
        }
        // Sent as often as `attempts` (deadline 5 s, backoff 1 s), given up at 11 s; then
        // tried again no sooner than two pause deadlines later, never hammered.
        assert_eq!(&sends[..2], &[0, 6], "{sends:?}");
        assert!(sends[2] >= 21, "{sends:?}");
        assert!(sends.len() < 10, "{sends:?}");
        assert_eq!(c.state(t(now)), MinerState::Unresponsive);
        assert!(c.excluded(t(now)));
        assert_eq!(c.uncontrolled(t(now)), Watts(3400.0));
        let failed = c.last_command().expect("a command");
        assert!(failed.failed && failed.confirmed.is_none());
    }

    #[test]
    fn r11_a_pause_that_fails_escalates_to_a_hard_cut_where_a_relay_exists() {
        let mut c = Control::new(fast(), RATED, true);
        c.observed(mining(0, 3400.0, 3400.0));
        c.set_goal(Goal::OFF, t(0));
        let mut cut_at = None;
        for now in 0..60 {
            c.tick(t(now));
            if let Some(cmd) = c.next_command(t(now)) {
                c.sent(cmd, t(now));
                c.acked(Ok(()), t(now));
                if cmd == Command::HardCut {
                    cut_at = Some(now);
                }
            }
            // Hashing until the relay opens.
            if cut_at.is_some() {
                c.observed(Observed {
                    at: t(now),
                    mining: false,
                    power: None,
                    hashrate: None,
                    limit: None,
                });
            } else {
                c.observed(mining(now, 3400.0, 3400.0));
            }
        }
        assert!(cut_at.is_some(), "escalated to a hard cut");
        assert_eq!(c.last_command().map(|r| r.command), Some(Command::HardCut));
        assert!(c.last_command().is_some_and(|r| r.confirmed.is_some()));
        assert_eq!(c.uncontrolled(t(60)), Watts::ZERO);
    }

    #[test]
    fn r11_a_limit_not_taken_escalates_to_a_pause() {
        let mut c = Control::new(fast(), RATED, false);
        c.observed(mining(0, 3400.0, 3400.0));
        c.set_goal(
            Goal {
                mining: true,
                limit: Some(Watts(2000.0)),
            },
            t(0),
        );
        let mut sent = Vec::new();
        let mut paused = false;
        for now in 0..80 {
            c.tick(t(now));
            if let Some(cmd) = c.next_command(t(now)) {
                c.sent(cmd, t(now));
                c.acked(Ok(()), t(now));
                sent.push(cmd);
                paused |= cmd == Command::Pause;
            }
            c.observed(if paused {
                sleeping(now)
            } else {
                mining(now, 3400.0, 3400.0)
            });
        }
        assert_eq!(
            sent,
            vec![
                Command::SetLimit(Watts(2000.0)),
                Command::SetLimit(Watts(2000.0)),
                Command::Pause
            ]
        );
        assert_eq!(c.state(t(80)), MinerState::Unresponsive);
        assert_eq!(c.uncontrolled(t(80)), Watts::ZERO, "paused: draws nothing");
    }

    #[test]
    fn r11_wake_and_ramp_are_learned_from_read_backs() {
        let mut c = Control::new(fast(), RATED, false);
        c.observed(sleeping(0));
        c.set_goal(
            Goal {
                mining: true,
                limit: None,
            },
            t(0),
        );
        assert_eq!(c.next_command(t(0)), Some(Command::Resume));
        c.sent(Command::Resume, t(0));
        c.acked(Ok(()), t(0));
        c.observed(sleeping(4));
        assert_eq!(c.state(t(4)), MinerState::Waking);
        c.observed(mining(6, 500.0, 3400.0));
        assert_eq!(c.learned().wake, Some(Duration::from_secs(6)));
        assert_eq!(c.state(t(6)), MinerState::Waking, "ramping");
        c.observed(mining(9, 2000.0, 3400.0));
        c.observed(mining(11, 3300.0, 3400.0));
        assert_eq!(c.learned().ramp, Some(Duration::from_secs(5)));
        assert_eq!(c.state(t(11)), MinerState::Mining);
        assert_eq!(c.starts_on(t(0).day()), 1);
        c.observed(mining(21, 3400.0, 3400.0));
        assert!(c.learned().power_per_limit.is_some_and(|r| r > 0.97));
    }

    #[test]
    fn r11_a_failed_send_is_retried_with_backoff_and_never_confirmed() {
        let mut c = Control::new(fast(), RATED, false);
        c.observed(mining(0, 3400.0, 3400.0));
        c.set_goal(Goal::OFF, t(0));
        c.sent(Command::Pause, t(0));
        c.acked(Err(ActuatorError::Transport("reset".into())), t(0));
        assert_eq!(c.next_command(t(0)), None, "waits for the backoff");
        assert_eq!(c.next_command(t(1)), Some(Command::Pause));
        c.sent(Command::Pause, t(1));
        c.acked(Err(ActuatorError::Transport("reset".into())), t(1));
        // Out of attempts: unresponsive, the failure kept.
        assert_eq!(c.state(t(1)), MinerState::Unresponsive);
        let r = c.last_command().expect("a command");
        assert!(r.failed && r.acked.is_none() && r.error.is_some());
    }

    #[test]
    fn r11_a_miner_never_heard_from_is_unknown_and_counted_at_its_rating() {
        let c = Control::new(fast(), RATED, false);
        assert_eq!(c.state(t(0)), MinerState::Unknown);
        assert_eq!(c.uncontrolled(t(0)), RATED);
        let mut c = Control::new(fast(), RATED, false);
        c.observed(sleeping(0));
        assert_eq!(c.state(t(31)), MinerState::Unknown, "ages into unknown");
        assert_eq!(c.uncontrolled(t(31)), Watts::ZERO, "last seen asleep");
    }

    #[test]
    fn r11_a_resume_answered_after_a_stop_was_asked_does_not_hold_the_stop_back() {
        // Catches: a daemon stopping while a resume was in flight booked the stop as
        // acknowledged (the resume's answer) and exited with the miner mining.
        let mut c = Control::new(fast(), RATED, false);
        c.observed(sleeping(0));
        c.set_goal(
            Goal {
                mining: true,
                limit: None,
            },
            t(0),
        );
        c.sent(Command::Resume, t(0));
        c.set_goal(Goal::OFF, t(0)); // while the resume is in flight
        assert!(!c.goal_acknowledged(t(0)));
        c.acked(Ok(()), t(1));
        assert!(!c.goal_acknowledged(t(1)), "the resume's answer is not the stop's");
        c.observed(mining(2, 500.0, 3400.0));
        assert_eq!(c.next_command(t(2)), Some(Command::Pause));
        c.sent(Command::Pause, t(2));
        c.acked(Ok(()), t(2));
        assert!(c.goal_acknowledged(t(2)));
    }

    #[test]
    fn r11_a_newer_goal_supersedes_an_unfinished_command() {
        let mut c = Control::new(fast(), RATED, false);
        c.observed(sleeping(0));
        c.set_goal(
            Goal {
                mining: true,
                limit: None,
            },
            t(0),
        );
        c.sent(Command::Resume, t(0));
        c.acked(Ok(()), t(0));
        c.set_goal(Goal::OFF, t(1));
        assert!(c.pending().is_none());
        assert!(c.history.back().is_some_and(|r| r.superseded));
        // Read asleep, but told to resume since: it may be waking, so it is paused.
        assert_eq!(c.next_command(t(1)), Some(Command::Pause));
        c.sent(Command::Pause, t(1));
        c.acked(Ok(()), t(1));
        c.observed(sleeping(2));
        // Read asleep after the pause: nothing more to send.
        assert_eq!(c.next_command(t(2)), None);
    }
}
