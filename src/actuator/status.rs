//! What is known of one load from its driver: the target it was last written
//! (commanded), what it reports drawing (the confirmed actual power, with when it was
//! measured), whether that matches, how long the match took after the write, and the
//! last error.
//!
//! Pure bookkeeping, no I/O: the daemon feeds it every result of [`SetPower::set`] and
//! [`ReadPower::read`] and shows it (state, metrics, InfluxDB). The rule it exists for:
//! a failed write changes nothing but the error; only a confirmed write or a reading
//! changes what the load is counted as drawing ([`LoadStatus::reading`]).
//!
//! [`SetPower::set`]: super::SetPower::set
//! [`ReadPower::read`]: super::ReadPower::read

use std::time::Duration;

use super::{ActuatorError, Commanded};
use crate::clock::Timestamp;
use crate::decision::LoadTarget;
use crate::state::Reading;
use crate::units::Watts;

/// How close a read-back must come to the commanded power to confirm it: within 5 % of
/// the target, but never tighter than 0.5 % of the load's rated power (count × rating:
/// a sleeping miner's control boards still draw a little) nor than 1 W (a meter's
/// resolution).
pub const TOLERANCE_OF_TARGET: f64 = 0.05;
pub const TOLERANCE_OF_RATED: f64 = 0.005;
pub const TOLERANCE_MIN: Watts = Watts(1.0);

/// The widest a read-back may differ from `target` on a load rated `rated` in all and
/// still confirm it (see [`TOLERANCE_OF_TARGET`]).
pub fn tolerance(target: Watts, rated: Watts) -> Watts {
    (target.abs() * TOLERANCE_OF_TARGET)
        .max(rated.abs() * TOLERANCE_OF_RATED)
        .max(TOLERANCE_MIN)
}

/// Whether a load's power is confirmed by what it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Its latest read-back, measured after the last write, matches what was written.
    Confirmed,
    /// It reports its power, but nothing since the last write matches it (yet).
    Pending,
    /// It does not report its power: the last setpoint written stands in for it.
    Unconfirmed,
}

impl Confirmation {
    pub const ALL: [Confirmation; 3] = [
        Confirmation::Confirmed,
        Confirmation::Pending,
        Confirmation::Unconfirmed,
    ];
    /// The name the state document and the docs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Confirmation::Confirmed => "confirmed",
            Confirmation::Pending => "pending",
            Confirmation::Unconfirmed => "unconfirmed",
        }
    }
}

/// Which call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Set,
    Read,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Set => "set",
            Operation::Read => "read",
        }
    }
}

/// A failed call and when it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    pub operation: Operation,
    pub error: ActuatorError,
    pub at: Timestamp,
}

impl LoadError {
    /// One line for people: `set: transport: no connection to the broker`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.operation.as_str(), self.error)
    }
}

/// What the daemon knows of one load from its driver.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadStatus {
    /// The last write begun, and when it was handed to the driver, whatever became of
    /// it: with `commanded` (its acknowledgement) it shows how long delivery took.
    pub sent: Option<(LoadTarget, Timestamp)>,
    /// The last write that succeeded; `None` before the first.
    pub commanded: Option<Commanded>,
    /// The last read-back: the power the load reports drawing and when it was measured;
    /// `None` for a load without read-back or before its first report.
    pub actual: Option<Reading<Watts>>,
    /// Whether the load reports its power at all.
    pub readback: bool,
    /// Time from the last confirmed write to the first read-back that matched it
    /// (within [`tolerance`]). Kept while a later write is pending.
    pub latency: Option<Duration>,
    /// The last failed write or read.
    pub last_error: Option<LoadError>,
    /// Failed writes and reads since start.
    pub errors: u64,
    /// Count × rating, W: sets the floor of the tolerance.
    rated: Watts,
    /// Whether `actual` matches `commanded`.
    matched: bool,
    /// Whether `commanded` has yet to be matched once (its latency is not known yet).
    awaiting: bool,
}

impl LoadStatus {
    /// A load rated `rated` in all (count × rating) with nothing written or read yet;
    /// `readback`: whether it reports its power.
    pub fn new(rated: Watts, readback: bool) -> Self {
        LoadStatus {
            sent: None,
            commanded: None,
            actual: None,
            readback,
            latency: None,
            last_error: None,
            errors: 0,
            rated,
            matched: false,
            awaiting: false,
        }
    }

    /// A write of `target` is handed to the driver at `at` (its outcome comes later, by
    /// [`LoadStatus::commanded`] or [`LoadStatus::failed`]).
    pub fn sending(&mut self, target: LoadTarget, at: Timestamp) {
        self.sent = Some((target, at));
    }

    /// When the last write that succeeded was confirmed by a read-back (the first that
    /// matched it); `None` while it is not, or for a load without read-back.
    pub fn confirmed_at(&self) -> Option<Timestamp> {
        let c = self.commanded?;
        (!self.awaiting).then(|| self.latency.map(|l| c.at + l))?
    }

    /// A write succeeded. What the load reported before it confirms nothing of it.
    pub fn commanded(&mut self, c: Commanded) {
        self.commanded = Some(c);
        self.matched = false;
        self.awaiting = true;
        // A reading taken at the very instant of the write (the same millisecond) counts:
        // a load that follows at once (the embedded pool) shows it so.
        if let Some(r) = self.actual {
            self.observed(r);
        }
    }

    /// The load reported drawing `r`.
    pub fn observed(&mut self, r: Reading<Watts>) {
        self.actual = Some(r);
        let Some(c) = self.commanded else { return };
        if r.at < c.at {
            return;
        }
        self.matched = (r.value - c.target.power).abs() <= tolerance(c.target.power, self.rated);
        if self.matched && self.awaiting {
            self.awaiting = false;
            self.latency = Some(r.at.since(c.at));
        }
    }

    /// `operation` failed at `at`. Nothing else changes: a failed write is not booked
    /// as drawn, and a failed read leaves the last good one.
    pub fn failed(&mut self, operation: Operation, error: ActuatorError, at: Timestamp) {
        self.errors += 1;
        self.last_error = Some(LoadError {
            operation,
            error,
            at,
        });
    }

    /// What the load is counted as drawing, for the controller: the last read-back, or,
    /// for a load without one, the last setpoint written, stamped at the write (the only
    /// estimate there is, shown [`Confirmation::Unconfirmed`]). `None` until known.
    pub fn reading(&self) -> Option<Reading<Watts>> {
        if self.readback {
            self.actual
        } else {
            self.commanded.map(|c| Reading {
                value: c.target.power,
                at: c.at,
            })
        }
    }

    pub fn confirmation(&self) -> Confirmation {
        match (self.readback, self.matched) {
            (false, _) => Confirmation::Unconfirmed,
            (true, true) => Confirmation::Confirmed,
            (true, false) => Confirmation::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 500 W miners.
    const RATED: Watts = Watts(1000.0);

    fn at(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    fn told(w: f64, ms: i64) -> Commanded {
        Commanded {
            target: LoadTarget {
                units_on: 2,
                power: Watts(w),
            },
            at: at(ms),
        }
    }

    fn read(w: f64, ms: i64) -> Reading<Watts> {
        Reading {
            value: Watts(w),
            at: at(ms),
        }
    }

    #[test]
    fn tolerance_has_floors() {
        assert_eq!(tolerance(Watts(1000.0), Watts(1000.0)), Watts(50.0));
        assert_eq!(tolerance(Watts(0.0), Watts(30_000.0)), Watts(150.0));
        assert_eq!(tolerance(Watts(0.0), Watts(10.0)), Watts(1.0));
    }

    /// r10: a failed write leaves what the load is counted as drawing where it was;
    /// without read-back the last good setpoint stands in, flagged unconfirmed.
    #[test]
    fn r10_a_failed_write_is_not_booked_as_drawn() {
        let mut s = LoadStatus::new(RATED, false);
        assert_eq!(s.reading(), None);
        s.commanded(told(1000.0, 10));
        assert_eq!(s.reading(), Some(read(1000.0, 10)));
        let e = ActuatorError::Transport("no connection".into());
        s.failed(Operation::Set, e, at(20));
        assert_eq!(s.reading(), Some(read(1000.0, 10)), "the 0 W write failed");
        assert_eq!(s.errors, 1);
        assert_eq!(
            s.last_error.as_ref().map(LoadError::message).as_deref(),
            Some("set: transport: no connection")
        );
        assert_eq!(s.confirmation(), Confirmation::Unconfirmed);
        assert_eq!(s.latency, None);
    }

    /// r10: a read-back confirms a write once it matches, and the latency is the time
    /// from the write to that reading; readings from before a write confirm nothing.
    #[test]
    fn r10_readback_confirms_with_latency() {
        let mut s = LoadStatus::new(RATED, true);
        s.observed(read(0.0, 0));
        s.commanded(told(1000.0, 100));
        assert_eq!(s.confirmation(), Confirmation::Pending);
        assert_eq!(
            s.reading(),
            Some(read(0.0, 0)),
            "the reading, not the setpoint"
        );
        s.observed(read(600.0, 1100));
        assert_eq!(s.confirmation(), Confirmation::Pending);
        assert_eq!(s.latency, None);
        s.observed(read(990.0, 2100));
        assert_eq!(s.confirmation(), Confirmation::Confirmed);
        assert_eq!(s.latency, Some(Duration::from_secs(2)));
        // Drifting away is no longer confirmed; the latency of the match stays.
        s.observed(read(700.0, 3100));
        assert_eq!(s.confirmation(), Confirmation::Pending);
        assert_eq!(s.latency, Some(Duration::from_secs(2)));
        // A write at once matched by what the load already draws (same instant).
        s.commanded(told(700.0, 3100));
        assert_eq!(s.confirmation(), Confirmation::Confirmed);
        assert_eq!(s.latency, Some(Duration::ZERO));
        // A failed read keeps the last good reading.
        let e = ActuatorError::BadReading("\"abc\"".into());
        s.failed(Operation::Read, e, at(4000));
        assert_eq!(s.reading(), Some(read(700.0, 3100)));
        assert_eq!(Confirmation::ALL.map(Confirmation::as_str).len(), 3);
    }

    /// r11: the evidence of a frequency response needs when a write was handed over
    /// (`sent`, whatever became of it) and when a read-back confirmed it: the write's
    /// time plus its latency, only once this write was matched.
    #[test]
    fn r11_sent_and_confirmed_at() {
        let mut s = LoadStatus::new(RATED, true);
        assert_eq!(s.confirmed_at(), None);
        s.sending(told(0.0, 100).target, at(90));
        assert_eq!(s.sent, Some((told(0.0, 100).target, at(90))));
        s.commanded(told(0.0, 100));
        assert_eq!(s.confirmed_at(), None, "not matched yet");
        s.observed(read(3.0, 350));
        assert_eq!(s.confirmed_at(), Some(at(350)));
        // A newer write is not confirmed by the old match.
        s.commanded(told(1000.0, 400));
        assert_eq!(s.confirmed_at(), None);
        let mut open_loop = LoadStatus::new(RATED, false);
        open_loop.commanded(told(0.0, 100));
        assert_eq!(
            open_loop.confirmed_at(),
            None,
            "nothing confirms without read-back"
        );
    }
}
