//! The one table of InfluxDB measurement, tag and field names, and the functions that
//! turn what the controller knows into line-protocol points.
//!
//! Every name written to InfluxDB is a const here, so dashboards and queries have one
//! place to look. Values are numbers only (floats in the unit the field name ends with,
//! integers with `i`): categorical facts are tags, because VictoriaMetrics, like other
//! servers of the write API, keeps numeric fields only. Timestamps are milliseconds since
//! the epoch (the controller's `Timestamp`), written with `precision=ms`.
//!
//! Nothing here does I/O.

use crate::actuator::asic::{MinerState, MinerStatus};
use std::fmt::Write as _;

use super::evidence::{Record, Sample, Trigger, Verdict};
use crate::actuator::hasher::HashingReport;
use crate::actuator::status::{Confirmation, LoadStatus};
use crate::clock::{saturating_millis, Timestamp};
use crate::decision::Decision;
use crate::signal::rejected::RejectReason;
use crate::signal::{OperatorAction, Quantity};
use crate::state::SiteState;

/// Measurement names.
pub mod measurement {
    /// One measured or told quantity (`quantity` tag), as `SiteState` holds it.
    pub const SIGNAL: &str = "signal";
    /// One policy decision.
    pub const DECISION: &str = "decision";
    /// One load: its target, and what its driver reports (commanded, read-back,
    /// confirmation, errors).
    pub const LOAD: &str = "load";
    /// A grid operator's command and what became of it.
    pub const OPERATOR_COMMAND: &str = "operator_command";
    /// A cpu load's hashing, and its Stratum pool's counters when it mines for one.
    pub const HASHING: &str = "hashing";
    /// Signal values refused (tags `quantity` where known, `reason`, `source`), written
    /// as they are logged: the first of a source and reason, then a count a minute.
    pub const SIGNAL_REJECTED: &str = "signal_rejected";
    /// A frequency-response evidence record, once closed, stamped with its trigger (tags
    /// `trigger`, `closed`, `commands`, `drop`, `operator`, `jti`).
    pub const RESPONSE_EVENT: &str = "response_event";
    /// One sample of the mining power after a trigger, stamped when it was taken (tags
    /// `trigger`, `offset`).
    pub const RESPONSE_SAMPLE: &str = "response_sample";
}

/// Tag keys.
pub mod tag {
    /// `Quantity::as_str` on `signal`.
    pub const QUANTITY: &str = "quantity";
    /// `Reason::as_str` on `decision`.
    pub const REASON: &str = "reason";
    /// The load's configured name on `load`.
    pub const LOAD: &str = "load";
    /// `curtail_to`, `curtail_by`, `setpoint` or `release` on `operator_command`.
    pub const ACTION: &str = "action";
    /// `accepted` or `rejected` on `operator_command`.
    pub const OUTCOME: &str = "outcome";
    /// `RejectReason::as_str` on `signal_rejected`.
    pub const REJECT_REASON: &str = "reason";
    /// The topic, or `modbus`, on `signal_rejected`.
    pub const SOURCE: &str = "source";
    /// `TriggerKind::as_str` on `response_event` and `response_sample`.
    pub const TRIGGER: &str = "trigger";
    /// `Closure::as_str` on `response_event`.
    pub const CLOSED: &str = "closed";
    /// `Verdict::as_str` of the commands against the FFR window, on `response_event`.
    pub const COMMANDS: &str = "commands";
    /// `Verdict::as_str` of the confirmed drop against the FFR window, on `response_event`.
    pub const DROP: &str = "drop";
    /// The binding curtailment's operator and `jti`, on `response_event`.
    pub const OPERATOR: &str = "operator";
    pub const JTI: &str = "jti";
    /// The sample's offset after the trigger (`250ms`, `1s`, ...), on `response_sample`.
    pub const OFFSET: &str = "offset";
}

/// Field keys. The suffix gives the unit: `_w` watts, `_ms` milliseconds; plain names are
/// counts or the quantity's own unit (see `Quantity`).
pub mod field {
    use crate::actuator::hasher::stratum::StratumCounts;

    /// `signal`: the reading, in its quantity's unit (W, Hz, EUR/MWh, EUR/(PH/s·day)).
    pub const VALUE: &str = "value";
    /// `signal`: how old the reading was when written, ms.
    pub const AGE_MS: &str = "age_ms";
    /// `decision`: mining power over all loads, W.
    pub const TOTAL_W: &str = "total_w";
    /// `decision`: the cap a higher rule put on mining, W (absent when none).
    pub const LIMIT_W: &str = "limit_w";
    /// `decision`: units kept running only because of `min_on`.
    pub const HELD_ON: &str = "held_on";
    /// `decision`: units economics wanted that could not start.
    pub const BLOCKED_STARTS: &str = "blocked_starts";
    /// `load`: power the load was told, W.
    pub const TARGET_W: &str = "target_w";
    /// `load`: power the load is counted as drawing, W: its read-back, or without one
    /// the last setpoint written (absent when unknown).
    pub const ACTUAL_W: &str = "actual_w";
    /// `load`: units told to run.
    pub const UNITS_ON: &str = "units_on";
    /// `load`: power last written to the load successfully, W (absent before the first).
    pub const COMMANDED_W: &str = "commanded_w";
    /// `load`: power the load last reported drawing, W (absent without read-back).
    pub const READBACK_W: &str = "readback_w";
    /// `load`: age of that report at the decision, ms.
    pub const READBACK_AGE_MS: &str = "readback_age_ms";
    /// `load`, with read-back: 1 while it matches what was written, else 0.
    pub const CONFIRMED: &str = "confirmed";
    /// `load`: time from the last confirmed write to the read-back matching it, ms.
    pub const CONFIRM_LATENCY_MS: &str = "confirm_latency_ms";
    /// `load`: failed writes and reads since start.
    pub const ERRORS: &str = "errors";
    /// `load`: when the last write or read failed, ms since the epoch (absent: never).
    pub const LAST_ERROR_MS: &str = "last_error_ms";
    /// `operator_command`: the power the command names, W (absent for `release`).
    pub const POWER_W: &str = "power_w";
    /// `operator_command`: when the command ends, ms since the epoch (absent: open-ended).
    pub const UNTIL_MS: &str = "until_ms";
    /// `operator_command`: 1 when accepted, 0 when rejected.
    pub const ACCEPTED: &str = "accepted";
    /// `signal_rejected`: values refused since the last point of its source and reason.
    pub const COUNT: &str = "count";
    /// `response_event`: the frequency reading at the trigger, Hz.
    pub const FREQUENCY_HZ: &str = "frequency_hz";
    /// `response_event`: the loads' power together just before the trigger, W.
    pub const MINING_BEFORE_W: &str = "mining_before_w";
    /// `response_event`: the cap the triggering decision applied, W.
    pub const CAP_W: &str = "cap_w";
    /// `response_event`: commands sent (one per load, one per miner of a fleet).
    pub const UNITS: &str = "units";
    /// `response_event`: commands that failed.
    pub const UNIT_ERRORS: &str = "unit_errors";
    /// `response_event`: trigger to the last acknowledgement, ms (absent until all).
    pub const LAST_ACKED_MS: &str = "last_acked_ms";
    /// `response_event`: trigger to the last confirming read-back, ms (absent until all).
    pub const LAST_CONFIRMED_MS: &str = "last_confirmed_ms";
    /// `response_event`: 1 when every command was acknowledged within the FFR window.
    pub const COMMANDS_MET: &str = "commands_met";
    /// `response_event`: 1 when every drop was confirmed within the FFR window.
    pub const DROP_MET: &str = "drop_met";
    /// `response_sample`: the sample's offset after the trigger, ms.
    pub const OFFSET_MS: &str = "offset_ms";
    /// `response_sample`: the loads' power together, W (absent when none is known).
    pub const MINING_W: &str = "mining_w";
    /// `response_sample`: the oldest reading the sample is made of, ms.
    pub const OLDEST_AGE_MS: &str = "oldest_age_ms";
    /// `response_sample`: 1 when every reading was measured after the trigger.
    pub const ALL_AFTER_TRIGGER: &str = "all_after_trigger";
    /// `response_event` and `response_sample`: the trigger, ms since the epoch (joins a
    /// sample to its event).
    pub const TRIGGER_MS: &str = "trigger_ms";
    /// `hashing`: measured hashrate, hashes per second.
    pub const HASHRATE_HS: &str = "hashrate_hs";
    /// `hashing`: nonces hashed since start.
    pub const HASHES: &str = "hashes";
    /// `hashing`: worker threads hashing at that moment.
    pub const HASHING_THREADS: &str = "hashing_threads";
    /// `hashing`: shares found (met the job's target) since start.
    pub const SHARES_FOUND: &str = "shares_found";
    /// `hashing`, with a pool: 1 while a session is up (subscribed, authorized).
    pub const POOL_CONNECTED: &str = "pool_connected";
    /// `hashing`, with a pool: the Stratum counters since start, as in the state's
    /// `pool` object, each field name beside the counter it holds.
    pub const POOL_COUNTS: [(&str, fn(&StratumCounts) -> u64); 9] = [
        ("pool_connections", |c| c.connections),
        ("pool_jobs", |c| c.jobs),
        ("pool_submitted", |c| c.submitted),
        ("pool_accepted", |c| c.accepted),
        ("pool_rejected", |c| c.rejected),
        ("pool_stale_dropped", |c| c.stale_dropped),
        ("pool_invalid_dropped", |c| c.invalid_dropped),
        ("pool_malformed", |c| c.malformed),
        ("pool_refusals", |c| c.refusals),
    ];
}

/// Tag values of `operator_command`'s `outcome`.
pub mod outcome {
    pub const ACCEPTED: &str = "accepted";
    pub const REJECTED: &str = "rejected";
}

/// A field value: float or integer. Strings are never written (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
}

/// One line-protocol point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: &'static str,
    pub tags: Vec<(&'static str, String)>,
    pub fields: Vec<(&'static str, FieldValue)>,
    /// Milliseconds since the epoch.
    pub at: Timestamp,
}

impl Point {
    pub fn new(measurement: &'static str, at: Timestamp) -> Self {
        Point {
            measurement,
            tags: Vec::new(),
            fields: Vec::new(),
            at,
        }
    }

    pub fn tag(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.tags.push((key, value.into()));
        self
    }

    /// Adds a float field; a non-finite value is left out (line protocol cannot carry it).
    pub fn float(mut self, key: &'static str, value: f64) -> Self {
        if value.is_finite() {
            self.fields.push((key, FieldValue::Float(value)));
        }
        self
    }

    pub fn int(mut self, key: &'static str, value: i64) -> Self {
        self.fields.push((key, FieldValue::Int(value)));
        self
    }

    /// Appends the point as one line (with its newline) to `out`, timestamp in ms. A point
    /// without fields is not valid line protocol and writes nothing; returns whether a
    /// line was written.
    pub fn write_line(&self, out: &mut String) -> bool {
        if self.fields.is_empty() {
            return false;
        }
        escape(out, self.measurement, &[',', ' ']);
        for (k, v) in &self.tags {
            if v.is_empty() {
                continue; // empty tag values are invalid line protocol
            }
            out.push(',');
            escape(out, k, &[',', '=', ' ']);
            out.push('=');
            escape(out, v, &[',', '=', ' ']);
        }
        for (i, (k, v)) in self.fields.iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            escape(out, k, &[',', '=', ' ']);
            out.push('=');
            // `{:?}` keeps a float a float ("1.0", not "1"), which the server needs to
            // keep a field's type stable.
            let _ = match v {
                FieldValue::Float(f) => write!(out, "{f:?}"),
                FieldValue::Int(n) => write!(out, "{n}i"),
            };
        }
        let _ = writeln!(out, " {}", self.at.0);
        true
    }

    /// The point as a line, without the newline (tests and logs).
    pub fn to_line(&self) -> String {
        let mut s = String::new();
        self.write_line(&mut s);
        s.truncate(s.trim_end().len());
        s
    }
}

fn escape(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        // A newline would end the line and has no escape: it becomes a space (escaped
        // where a space is special).
        let c = if c == '\n' || c == '\r' { ' ' } else { c };
        match c {
            '\\' => out.push_str("\\\\"),
            c if special.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// One `signal` point per quantity the state holds, stamped with when it was measured.
pub fn signal_points(state: &SiteState, now: Timestamp) -> Vec<Point> {
    let readings = Quantity::ALL.map(|q| (q, state.reading(q).map(|r| (r.value, r.at))));
    readings
        .into_iter()
        .filter_map(|(q, r)| {
            let (value, at) = r?;
            Some(
                Point::new(measurement::SIGNAL, at)
                    .tag(tag::QUANTITY, q.as_str())
                    .float(field::VALUE, value)
                    .int(field::AGE_MS, now.since(at).as_millis() as i64),
            )
        })
        .collect()
}

/// A `signal_rejected` point: `count` values of `signal` (if known) from `source` refused
/// for `reason`, the last at `at`.
pub fn rejected_point(
    signal: Option<Quantity>,
    source: &str,
    reason: RejectReason,
    count: u64,
    at: Timestamp,
) -> Point {
    Point::new(measurement::SIGNAL_REJECTED, at)
        .tag(tag::QUANTITY, signal.map_or("", Quantity::as_str))
        .tag(tag::REJECT_REASON, reason.as_str())
        .tag(tag::SOURCE, source)
        .int(field::COUNT, i64::try_from(count).unwrap_or(i64::MAX))
}

/// The `decision` point.
pub fn decision_point(d: &Decision) -> Point {
    let mut p = Point::new(measurement::DECISION, d.at)
        .tag(tag::REASON, d.reason.as_str())
        .float(field::TOTAL_W, d.total().0)
        .int(field::HELD_ON, d.held_on as i64)
        .int(field::BLOCKED_STARTS, d.blocked_starts as i64);
    if let Some(l) = d.limit {
        p = p.float(field::LIMIT_W, l.0);
    }
    p
}

/// One `load` point per load: target from the decision, the rest as the load's driver
/// reports it (`status`, in config order like `Decision::loads`; ages at the decision).
/// What is unknown is left out; a load missing from `status` has its target only.
pub fn load_points(names: &[String], d: &Decision, status: &[LoadStatus]) -> Vec<Point> {
    names
        .iter()
        .zip(&d.loads)
        .enumerate()
        .map(|(i, (name, target))| {
            let mut p = Point::new(measurement::LOAD, d.at)
                .tag(tag::LOAD, name.as_str())
                .float(field::TARGET_W, target.power.0)
                .int(field::UNITS_ON, target.units_on as i64);
            let Some(s) = status.get(i) else { return p };
            if let Some(r) = s.reading() {
                p = p.float(field::ACTUAL_W, r.value.0);
            }
            if let Some(c) = s.commanded {
                p = p.float(field::COMMANDED_W, c.target.power.0);
            }
            if let Some(r) = s.actual {
                p = p
                    .float(field::READBACK_W, r.value.0)
                    .int(field::READBACK_AGE_MS, saturating_millis(r.age(d.at)));
            }
            if s.readback {
                let confirmed = s.confirmation() == Confirmation::Confirmed;
                p = p.int(field::CONFIRMED, confirmed as i64);
            }
            if let Some(l) = s.latency {
                p = p.int(field::CONFIRM_LATENCY_MS, saturating_millis(l));
            }
            p = p.int(field::ERRORS, s.errors as i64);
            if let Some(e) = &s.last_error {
                p = p.int(field::LAST_ERROR_MS, e.at.0);
            }
            p
        })
        .collect()
}

/// One `miner` point per ASIC miner: tags `miner`, `group`, `state`; what it reported
/// (power, hashrate, limit), whether it is out of the capacity, its failures and the
/// confirmation latency of its last confirmed command.
pub fn fleet_points(miners: &[MinerStatus], at: Timestamp) -> Vec<Point> {
    miners
        .iter()
        .map(|m| {
            let mut p = Point::new("miner", at)
                .tag("miner", m.address.to_string())
                .tag("group", m.group.as_str())
                .tag("state", m.state.as_str());
            for (field, v) in [
                ("power_w", m.power_w),
                ("hashrate_ths", m.hashrate_ths),
                ("limit_w", m.limit_w),
                ("confirm_latency_s", m.confirm_latency_s),
                ("uncontrolled_w", Some(m.uncontrolled_w)),
            ] {
                if let Some(v) = v {
                    p = p.float(field, v);
                }
            }
            let excluded = matches!(m.state, MinerState::Unresponsive | MinerState::Unknown);
            p.int("excluded", excluded as i64)
                .int("failures", m.failures as i64)
                .int("starts_today", i64::from(m.starts_today))
        })
        .collect()
}

/// One `hashing` point per cpu load (`reports` in config order, `None` for other loads):
/// hashrate, hashes and shares found, and the Stratum counters of a load that mines for a
/// pool.
pub fn hashing_points(
    names: &[String],
    reports: &[Option<HashingReport>],
    at: Timestamp,
) -> Vec<Point> {
    names
        .iter()
        .zip(reports)
        .filter_map(|(name, r)| {
            let r = r.as_ref()?;
            let h = &r.hasher;
            let mut p = Point::new(measurement::HASHING, at)
                .tag(tag::LOAD, name.as_str())
                .float(field::HASHRATE_HS, h.hashrate.0)
                .int(field::HASHES, h.hashes as i64)
                .int(field::HASHING_THREADS, h.hashing_threads as i64)
                .int(field::SHARES_FOUND, h.shares as i64);
            if let Some(c) = &r.pool {
                p = p.int(field::POOL_CONNECTED, c.connected as i64);
                for (key, count) in field::POOL_COUNTS {
                    p = p.int(key, count(c) as i64);
                }
            }
            Some(p)
        })
        .collect()
}

/// The `action` tag value of an operator command.
pub fn action_name(action: &OperatorAction) -> &'static str {
    match action {
        OperatorAction::CurtailTo(_) => "curtail_to",
        OperatorAction::CurtailBy(_) => "curtail_by",
        OperatorAction::Setpoint(_) => "setpoint",
        OperatorAction::Release => "release",
    }
}

/// The `operator_command` point: the command as received, and whether it was accepted.
pub fn operator_command_point(
    action: &OperatorAction,
    until: Option<Timestamp>,
    accepted: bool,
    at: Timestamp,
) -> Point {
    let mut p = Point::new(measurement::OPERATOR_COMMAND, at)
        .tag(tag::ACTION, action_name(action))
        .tag(
            tag::OUTCOME,
            if accepted {
                outcome::ACCEPTED
            } else {
                outcome::REJECTED
            },
        );
    match action {
        OperatorAction::CurtailTo(w)
        | OperatorAction::CurtailBy(w)
        | OperatorAction::Setpoint(w) => p = p.float(field::POWER_W, w.0),
        OperatorAction::Release => {}
    }
    if let Some(u) = until {
        p = p.int(field::UNTIL_MS, u.0);
    }
    p.int(field::ACCEPTED, accepted as i64)
}

/// The `response_event` point of a closed evidence record, stamped with its trigger.
pub fn response_event_point(r: &Record) -> Point {
    let t = &r.trigger;
    let resp = &r.response;
    let units = r.loads.iter().flat_map(|l| &l.units);
    let mut p = Point::new(measurement::RESPONSE_EVENT, t.at)
        .tag(tag::TRIGGER, t.kind.as_str())
        .tag(tag::CLOSED, r.closed.map_or("open", |c| c.why.as_str()))
        .tag(tag::COMMANDS, resp.commands.as_str())
        .tag(tag::DROP, resp.drop.as_str())
        .tag(tag::OPERATOR, t.operator.clone().unwrap_or_default())
        .tag(tag::JTI, t.jti.clone().unwrap_or_default())
        .int(field::TRIGGER_MS, t.at.0)
        .int(field::UNITS, units.clone().count() as i64)
        .int(
            field::UNIT_ERRORS,
            units.filter(|u| u.error.is_some()).count() as i64,
        )
        .int(field::COMMANDS_MET, (resp.commands == Verdict::Met) as i64)
        .int(field::DROP_MET, (resp.drop == Verdict::Met) as i64);
    for (key, v) in [
        (field::FREQUENCY_HZ, t.frequency.map(|f| f.0)),
        (field::MINING_BEFORE_W, r.mining_before.map(|w| w.0)),
        (field::CAP_W, r.cap.map(|w| w.0)),
    ] {
        if let Some(v) = v {
            p = p.float(key, v);
        }
    }
    for (key, d) in [
        (field::LAST_ACKED_MS, resp.last_acked),
        (field::LAST_CONFIRMED_MS, resp.last_confirmed),
    ] {
        if let Some(d) = d {
            p = p.int(key, saturating_millis(d));
        }
    }
    p
}

/// The `response_sample` point of `s`, a sample of the record triggered as `trigger`.
pub fn response_sample_point(trigger: &Trigger, s: &Sample) -> Point {
    let offset = if s.offset < std::time::Duration::from_secs(1) {
        format!("{}ms", s.offset.as_millis())
    } else {
        format!("{}s", s.offset.as_secs())
    };
    let mut p = Point::new(measurement::RESPONSE_SAMPLE, s.at)
        .tag(tag::TRIGGER, trigger.kind.as_str())
        .tag(tag::OFFSET, offset)
        .int(field::TRIGGER_MS, trigger.at.0)
        .int(field::OFFSET_MS, saturating_millis(s.offset))
        .int(field::ALL_AFTER_TRIGGER, s.all_after_trigger as i64);
    if let Some(w) = s.mining {
        p = p.float(field::MINING_W, w.0);
    }
    if let Some(a) = s.oldest_age {
        p = p.int(field::OLDEST_AGE_MS, saturating_millis(a));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuator::hasher::stratum::StratumCounts;
    use crate::actuator::hasher::{HasherConfig, HasherPool, HasherStatus, Kernel};
    use crate::actuator::status::Operation;
    use crate::actuator::{ActuatorError, Commanded};
    use crate::decision::{LoadTarget, PolicyMemory, Reason};
    use crate::state::Reading;
    use crate::units::{HashRate, Hertz, Watts};

    fn decision() -> Decision {
        Decision {
            at: Timestamp(1_700_000_000_000),
            loads: vec![
                LoadTarget {
                    units_on: 3,
                    power: Watts(9750.0),
                },
                LoadTarget::OFF,
            ],
            reason: Reason::Stale(Quantity::Price),
            limit: Some(Watts(0.0)),
            held_on: 1,
            blocked_starts: 2,
            memory: PolicyMemory::default(),
        }
    }

    #[test]
    fn decision_line() {
        assert_eq!(
            decision_point(&decision()).to_line(),
            "decision,reason=stale:price total_w=9750.0,held_on=1i,blocked_starts=2i,limit_w=0.0 1700000000000"
        );
    }

    /// r10: each load's point carries what its driver reports: a load with read-back
    /// its reading, age, confirmation and latency; one without, the setpoint written as
    /// its power and no confirmation; failures as a count and a time.
    #[test]
    fn r10_load_lines_with_and_without_readback() {
        let names = vec!["s19 rack".to_string(), "cpu".to_string()];
        let d = decision();
        let t0 = Timestamp(d.at.0 - 3000);
        let mut rack = LoadStatus::new(Watts(13_000.0), true);
        rack.commanded(Commanded {
            target: d.loads[0],
            at: t0,
        });
        rack.observed(Reading {
            value: Watts(9700.5),
            at: Timestamp(d.at.0 - 500),
        });
        let mut cpu = LoadStatus::new(Watts(10.0), false);
        cpu.commanded(Commanded {
            target: LoadTarget {
                units_on: 1,
                power: Watts(8.0),
            },
            at: t0,
        });
        let error = ActuatorError::Transport("down".into());
        cpu.failed(Operation::Set, error, Timestamp(d.at.0 - 100));
        let p = load_points(&names, &d, &[rack, cpu]);
        assert_eq!(
            p[0].to_line(),
            "load,load=s19\\ rack target_w=9750.0,units_on=3i,actual_w=9700.5,commanded_w=9750.0,readback_w=9700.5,readback_age_ms=500i,confirmed=1i,confirm_latency_ms=2500i,errors=0i 1700000000000"
        );
        assert_eq!(
            p[1].to_line(),
            "load,load=cpu target_w=0.0,units_on=0i,actual_w=8.0,commanded_w=8.0,errors=1i,last_error_ms=1699999999900i 1700000000000"
        );
        // Without a status, the target only.
        let p = load_points(&names, &d, &[]);
        assert_eq!(
            p[1].to_line(),
            "load,load=cpu target_w=0.0,units_on=0i 1700000000000"
        );
    }

    #[test]
    fn hashing_lines_with_and_without_a_pool() {
        // An idle pool's status, with the figures a busy one would show.
        let (pool, _shares) = HasherPool::start(HasherConfig {
            threads: 1,
            watts_per_core: Watts(10.0),
            hashrate_per_core: HashRate(2.5e7),
            kernel: Kernel::portable(),
        });
        let idle = pool.status();
        pool.shutdown();
        let status = |hashes| HasherStatus {
            hashrate: HashRate(2.5e7),
            hashes,
            shares: 3,
            hashing_threads: 1,
            ..idle.clone()
        };
        let counts = StratumCounts {
            connected: true,
            connections: 2,
            jobs: 7,
            submitted: 3,
            accepted: 2,
            rejected: 1,
            stale_dropped: 0,
            invalid_dropped: 0,
            malformed: 4,
            refusals: 0,
        };
        let names = ["asics", "cpu", "cpu pool"].map(String::from);
        let reports = [
            None,
            Some(HashingReport {
                hasher: status(1000),
                pool: None,
            }),
            Some(HashingReport {
                hasher: status(2000),
                pool: Some(counts),
            }),
        ];
        let lines: Vec<String> = hashing_points(&names, &reports, Timestamp(5))
            .iter()
            .map(Point::to_line)
            .collect();
        assert_eq!(
            lines,
            [
                "hashing,load=cpu hashrate_hs=25000000.0,hashes=1000i,hashing_threads=1i,shares_found=3i 5",
                "hashing,load=cpu\\ pool hashrate_hs=25000000.0,hashes=2000i,hashing_threads=1i,shares_found=3i,pool_connected=1i,pool_connections=2i,pool_jobs=7i,pool_submitted=3i,pool_accepted=2i,pool_rejected=1i,pool_stale_dropped=0i,pool_invalid_dropped=0i,pool_malformed=4i,pool_refusals=0i 5",
            ]
        );
    }

    #[test]
    fn rejections_are_tagged_by_signal_reason_and_source() {
        let p = rejected_point(
            Some(Quantity::PvPower),
            "site/pv",
            RejectReason::NotANumber,
            57,
            Timestamp(1000),
        );
        assert_eq!(
            p.to_line(),
            "signal_rejected,quantity=pv_power,reason=not_a_number,source=site/pv count=57i 1000"
        );
        // Modbus readings have no topic that names their signal here: no quantity tag.
        let p = rejected_point(None, "modbus", RejectReason::OutOfRange, 1, Timestamp(1));
        assert_eq!(
            p.to_line(),
            "signal_rejected,reason=out_of_range,source=modbus count=1i 1"
        );
    }

    #[test]
    fn signals_carry_measurement_time_and_age() {
        let mut s = SiteState::new(&[]);
        s.pv = Some(Reading {
            value: Watts(1234.5),
            at: Timestamp(1000),
        });
        s.frequency = Some(Reading {
            value: Hertz(49.95),
            at: Timestamp(2000),
        });
        let lines: Vec<String> = signal_points(&s, Timestamp(2500))
            .iter()
            .map(Point::to_line)
            .collect();
        assert_eq!(
            lines,
            [
                "signal,quantity=pv_power value=1234.5,age_ms=1500i 1000",
                "signal,quantity=grid_frequency value=49.95,age_ms=500i 2000"
            ]
        );
    }

    #[test]
    fn operator_command_lines() {
        let p = operator_command_point(
            &OperatorAction::CurtailTo(Watts(5e5)),
            Some(Timestamp(9000)),
            true,
            Timestamp(1000),
        );
        assert_eq!(
            p.to_line(),
            "operator_command,action=curtail_to,outcome=accepted power_w=500000.0,until_ms=9000i,accepted=1i 1000"
        );
        let p = operator_command_point(&OperatorAction::Release, None, false, Timestamp(5));
        assert_eq!(
            p.to_line(),
            "operator_command,action=release,outcome=rejected accepted=0i 5"
        );
    }

    #[test]
    fn escaping_and_non_finite() {
        let p = Point::new("m e,x", Timestamp(1))
            .tag("k=y", "a,b c\nd")
            .tag("empty", "")
            .float("nan", f64::NAN)
            .float("f", 1.0);
        assert_eq!(p.to_line(), "m\\ e\\,x,k\\=y=a\\,b\\ c\\ d f=1.0 1");
        let mut s = String::new();
        assert!(!Point::new("m", Timestamp(1))
            .float("x", f64::INFINITY)
            .write_line(&mut s));
        assert!(s.is_empty());
    }
}
