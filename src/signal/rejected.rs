//! Rejected signal values, kept visible: why a value was refused (`RejectReason`), the
//! last refusal per signal as the state shows it (`Rejections`), and the rate limit on
//! logging them (`RejectLog`).
//!
//! A refused payload used to leave no trace but a counter: the user saw `stale:pv_power`
//! minutes later and had to guess why. Now the state names the last refusal of each
//! signal with a bounded, escaped prefix of what was sent, and the log says it once, then
//! sums up once a minute, so a publisher stuck on `3.2 kW` cannot flood the log.
//!
//! Pure: the caller hands in `now` from the daemon's `Clock`, so the rate limit is tested
//! on simulated time. Nothing here touches a reading; dropping one is the runtime's call.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::clock::Timestamp;
use crate::signal::{Observation, Quantity};

/// Why a signal value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    UnknownTopic,
    NotUtf8,
    NotANumber,
    MissingField,
    NotFinite,
    BadSchedule,
    /// Parsed, but not a value the site could have measured (`signal::plausible`); also
    /// counts Modbus readings refused for the same reason.
    OutOfRange,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::UnknownTopic,
        RejectReason::NotUtf8,
        RejectReason::NotANumber,
        RejectReason::MissingField,
        RejectReason::NotFinite,
        RejectReason::BadSchedule,
        RejectReason::OutOfRange,
    ];
    /// The name in metrics labels, logs and the state (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownTopic => "unknown_topic",
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::NotANumber => "not_a_number",
            RejectReason::MissingField => "missing_field",
            RejectReason::NotFinite => "not_finite",
            RejectReason::BadSchedule => "bad_schedule",
            RejectReason::OutOfRange => "out_of_range",
        }
    }
}

/// The most of a payload kept and shown, in bytes of the payload as sent. A reading is a
/// few bytes; this is enough to recognise what a publisher sends without letting a
/// 256 KiB message into the state document or the log.
pub const PREFIX_BYTES: usize = 64;

/// The first `PREFIX_BYTES` of `payload`, safe to print anywhere: valid UTF-8 is kept as
/// it is except for control characters and backslashes, which are escaped as Rust writes
/// them (`\n`, `\u{1b}`, `\\`), and bytes that are not UTF-8 are written `\xNN`. A cut
/// payload ends in `…`. So a terminal escape or a forged log line in a payload reaches
/// neither the log nor a dashboard as such, and distinct payloads stay distinct.
pub fn payload_prefix(payload: &[u8]) -> String {
    let cut = payload.len() > PREFIX_BYTES;
    let head = &payload[..payload.len().min(PREFIX_BYTES)];
    let mut out = String::with_capacity(head.len() + 3);
    for chunk in head.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    if cut {
        out.push('…');
    }
    out
}

/// The signal an observation would have updated, as the state names it: a price schedule
/// feeds the price. `None` for what is not a signal (operator commands, the failsafe).
pub fn signal_of(obs: &Observation) -> Option<Quantity> {
    match obs {
        Observation::PriceSchedule { .. } => Some(Quantity::Price),
        Observation::Forecast { quantity, .. } => Some(*quantity),
        other => other.quantity(),
    }
}

/// A value that arrived parsed (from Modbus, which has no payload), written as the
/// payload of a refusal: the number with its unit.
pub fn shown_value(obs: &Observation) -> String {
    match obs {
        Observation::Power { value, .. } => value.to_string(),
        Observation::Frequency { value, .. } => value.to_string(),
        Observation::Price { value, .. } => value.to_string(),
        Observation::Hashprice { value, .. } => value.to_string(),
        Observation::CarbonIntensity { value, .. } => value.to_string(),
        Observation::PriceSchedule { entries, .. } => format!("{} entries", entries.len()),
        Observation::Forecast { entries, .. } => format!("{} entries", entries.len()),
        Observation::Operator { .. } | Observation::Failsafe { .. } => String::new(),
    }
}

/// One refused value, as the state shows it under its signal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastRejected {
    pub reason: RejectReason,
    /// When it arrived (the daemon's clock).
    pub at: Timestamp,
    /// The topic it came on, or `modbus`.
    pub source: String,
    /// `payload_prefix` of what was sent (for Modbus, the value with its unit).
    pub payload_prefix: String,
}

/// The last refused value of each signal. Kept beside the readings in `SiteState` so the
/// state document shows it with the signal's value and age; a later good value does not
/// clear it (its `at` tells whether it is still news). Small: the state is cloned into
/// every snapshot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rejections([Option<LastRejected>; Quantity::ALL.len()]);

impl Rejections {
    pub fn record(&mut self, signal: Quantity, rejected: LastRejected) {
        self.0[signal as usize] = Some(rejected);
    }

    pub fn last(&self, signal: Quantity) -> Option<&LastRejected> {
        self.0[signal as usize].as_ref()
    }
}

/// As a map from signal name to its last refusal, signals never refused left out.
impl Serialize for Rejections {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for q in Quantity::ALL {
            if let Some(r) = self.last(q) {
                m.serialize_entry(q.as_str(), r)?;
            }
        }
        m.end()
    }
}

/// How often a run of refusals from one source for one reason is summed up in the log.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Most (source, reason) pairs tracked. Sources are configured topics and `modbus`, so a
/// site has far fewer; past this, refusals of new pairs are only counted (metrics, state)
/// and logged at debug, so no stream of topic names can grow the map.
pub const MAX_TRACKED: usize = 1024;

/// What to log for one refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    /// The first of its source and reason (or the first after a quiet minute): a warning
    /// with the payload.
    First,
    /// Within the minute after the last line: counted, logged at debug only.
    Quiet,
    /// A minute or more since the last line: a warning with the count since, this one
    /// included.
    Summary { count: u64, over: Duration },
}

/// A summary due although no new refusal came to trigger it (see [`RejectLog::due`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub source: String,
    pub reason: RejectReason,
    pub count: u64,
    pub over: Duration,
    /// The payload prefix of the latest refusal counted.
    pub latest: String,
}

#[derive(Debug)]
struct Window {
    /// When the last warning for this pair was logged.
    since: Timestamp,
    /// Refusals since then, not yet logged.
    count: u64,
    latest: String,
}

/// The rate limit: per source (topic, or `modbus`) and reason, the first refusal is a
/// warning with its payload, then one warning a minute with the count since, for as long
/// as refusals keep coming. After a minute without any, the next is a first again, with
/// its payload.
#[derive(Debug, Default)]
pub struct RejectLog {
    windows: HashMap<(String, RejectReason), Window>,
}

impl RejectLog {
    /// Notes a refusal at `now` (`prefix`: its payload prefix); says what to log for it.
    pub fn note(
        &mut self,
        source: &str,
        reason: RejectReason,
        prefix: &str,
        now: Timestamp,
    ) -> LogLine {
        let key = (source.to_string(), reason);
        let Some(w) = self.windows.get_mut(&key) else {
            if self.windows.len() >= MAX_TRACKED {
                return LogLine::Quiet;
            }
            let w = Window {
                since: now,
                count: 0,
                latest: String::new(),
            };
            self.windows.insert(key, w);
            return LogLine::First;
        };
        let over = now.since(w.since);
        if over < SUMMARY_EVERY {
            w.count += 1;
            w.latest.clear();
            w.latest.push_str(prefix);
            return LogLine::Quiet;
        }
        w.since = now;
        match std::mem::take(&mut w.count) {
            // A minute went by with none: a new run, shown with its payload.
            0 => LogLine::First,
            n => LogLine::Summary { count: n + 1, over },
        }
    }

    /// Summaries due at `now`: pairs with refusals not yet logged whose last line is a
    /// minute old, so a run that stopped is still summed up. Pairs quiet for a minute are
    /// forgotten (their next refusal is a first again either way). Call it every step.
    pub fn due(&mut self, now: Timestamp) -> Vec<Due> {
        let mut out = Vec::new();
        self.windows.retain(|(source, reason), w| {
            let over = now.since(w.since);
            if over < SUMMARY_EVERY {
                return true;
            }
            if w.count == 0 {
                return false;
            }
            out.push(Due {
                source: source.clone(),
                reason: *reason,
                count: std::mem::take(&mut w.count),
                over,
                latest: std::mem::take(&mut w.latest),
            });
            w.since = now;
            true
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SimClock};

    #[test]
    fn prefixes_are_bounded_and_escaped() {
        assert_eq!(payload_prefix(b"3.2 kW"), "3.2 kW");
        assert_eq!(payload_prefix(b"abc"), "abc");
        // A terminal escape, a forged log line, a backslash, bytes that are not UTF-8.
        assert_eq!(
            payload_prefix(b"\x1b[31mred\nERROR x\\y\xff\xfe"),
            "\\u{1b}[31mred\\nERROR x\\\\y\\xff\\xfe"
        );
        assert_eq!(payload_prefix("Grüße".as_bytes()), "Grüße");
        let long = vec![b'7'; 10_000];
        let p = payload_prefix(&long);
        assert_eq!(p, format!("{}…", "7".repeat(PREFIX_BYTES)));
        // Cut inside a multi-byte character: the stray bytes are escaped, never split.
        let mut cut = vec![b'a'; PREFIX_BYTES - 1];
        cut.extend("ü".as_bytes());
        assert_eq!(
            payload_prefix(&cut),
            format!("{}\\xc3…", "a".repeat(PREFIX_BYTES - 1))
        );
    }

    /// r10: the first refusal per source and reason is a warning, then one line a minute
    /// with the count since; a run that stops is summed up by `due`; a quiet minute starts
    /// afresh. Driven by a simulated clock (catches a limiter on wall time, or one that
    /// logs every refusal, or none after the first).
    #[test]
    fn r10_rejections_are_logged_first_then_once_a_minute_with_the_count() {
        let clock = SimClock::new(Timestamp(1_000_000));
        let mut log = RejectLog::default();
        let nan = RejectReason::NotANumber;
        let judge = |source: &str, reason, log: &mut RejectLog| {
            log.note(source, reason, "3.2 kW", clock.now())
        };
        assert_eq!(judge("s/pv", nan, &mut log), LogLine::First);
        // Another source or reason has its own window.
        assert_eq!(judge("s/load", nan, &mut log), LogLine::First);
        assert_eq!(
            judge("s/pv", RejectReason::OutOfRange, &mut log),
            LogLine::First
        );
        // 59 more within the minute: all quiet.
        for _ in 0..59 {
            clock.advance(Duration::from_secs(1));
            assert_eq!(judge("s/pv", nan, &mut log), LogLine::Quiet);
        }
        assert!(
            log.due(clock.now()).is_empty(),
            "nothing due within the minute"
        );
        // The minute is up: the next refusal logs the count, itself included.
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            judge("s/pv", nan, &mut log),
            LogLine::Summary {
                count: 60,
                over: SUMMARY_EVERY
            }
        );
        // Three more, then the publisher stops: `due` sums them up a minute later.
        for _ in 0..3 {
            clock.advance(Duration::from_secs(1));
            assert_eq!(judge("s/pv", nan, &mut log), LogLine::Quiet);
        }
        clock.advance(Duration::from_secs(56));
        assert!(log.due(clock.now()).is_empty());
        clock.advance(Duration::from_secs(1));
        let due = log.due(clock.now());
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(
            (due[0].source.as_str(), due[0].reason, due[0].count),
            ("s/pv", nan, 3)
        );
        assert_eq!(due[0].latest, "3.2 kW");
        // Summed up once only; after a quiet minute the pair is forgotten, and its next
        // refusal is a first again, shown with its payload.
        clock.advance(Duration::from_secs(60));
        assert!(log.due(clock.now()).is_empty());
        assert_eq!(judge("s/pv", nan, &mut log), LogLine::First);
    }

    #[test]
    fn a_stream_of_new_topics_cannot_grow_the_log_state() {
        let mut log = RejectLog::default();
        let t = Timestamp(0);
        for i in 0..MAX_TRACKED + 10 {
            let _ = log.note(&format!("t/{i}"), RejectReason::UnknownTopic, "", t);
        }
        assert_eq!(log.windows.len(), MAX_TRACKED);
        assert_eq!(
            log.note("t/new", RejectReason::UnknownTopic, "", t),
            LogLine::Quiet
        );
    }

    #[test]
    fn the_last_rejection_per_signal_serialises_by_name() {
        let mut r = Rejections::default();
        r.record(
            Quantity::PvPower,
            LastRejected {
                reason: RejectReason::NotANumber,
                at: Timestamp(0),
                source: "s/pv".into(),
                payload_prefix: "abc".into(),
            },
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["pv_power"]["reason"], "not_a_number");
        assert_eq!(v["pv_power"]["payload_prefix"], "abc");
        assert_eq!(v.as_object().unwrap().len(), 1);
        assert_eq!(r.last(Quantity::Price), None);
    }
}
