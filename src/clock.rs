//! Time: one `Timestamp` type for live and simulated runs, and the `Clock` that says "now".
//!
//! The policy never asks the system for the time: it is handed `now`, so the same code
//! decides identically whether a `SystemClock` or a `SimClock` is behind it.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const MS_PER_DAY: i64 = 86_400_000;

    /// Parses RFC 3339 (`2018-01-01T00:00:00Z`, offsets allowed).
    pub fn parse(s: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|e| format!("{s:?} is not an RFC 3339 timestamp ({e})"))
    }

    /// Seconds since the epoch; saturates at the ends of the range (about 292 million
    /// years either way) rather than wrapping to a time near now.
    pub fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    /// Seconds since the epoch, `None` where the milliseconds would not fit.
    pub fn checked_from_secs(s: i64) -> Option<Self> {
        s.checked_mul(1000).map(Timestamp)
    }

    /// Time elapsed since `earlier` (zero if `earlier` is in the future).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// `self + d`, `None` past the end of the range.
    pub fn checked_add(self, d: Duration) -> Option<Timestamp> {
        self.0.checked_add(millis(d)?).map(Timestamp)
    }

    /// `self - d`, `None` past the start of the range.
    pub fn checked_sub(self, d: Duration) -> Option<Timestamp> {
        self.0.checked_sub(millis(d)?).map(Timestamp)
    }

    /// The UTC calendar day, counted from the epoch. Start limits count per UTC day.
    pub fn day(self) -> i64 {
        self.0.div_euclid(Self::MS_PER_DAY)
    }

    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .unwrap_or_else(|| format!("{}ms", self.0))
    }
}

/// A duration in whole milliseconds, `None` beyond `i64` (`as i64` would wrap it negative).
fn millis(d: Duration) -> Option<i64> {
    i64::try_from(d.as_millis()).ok()
}

/// A duration in milliseconds, saturated at `i64::MAX`: for comparing with a difference
/// of timestamps, where "longer than any" is the right reading of a huge one.
pub fn saturating_millis(d: Duration) -> i64 {
    millis(d).unwrap_or(i64::MAX)
}

/// Saturates at the ends of the range: a time cannot wrap to one near now, whatever the
/// duration (config durations are bounded by `units::MAX_DURATION`; this is the backstop).
impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(saturating_millis(d)))
    }
}

/// Saturates, as `Add` does.
impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(saturating_millis(d)))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// What says "now" to the controller.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(Utc::now().timestamp_millis())
    }
}

/// Simulated time: moves only when told to.
#[derive(Debug, Default)]
pub struct SimClock(AtomicI64);

impl SimClock {
    pub fn new(start: Timestamp) -> Self {
        SimClock(AtomicI64::new(start.0))
    }
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::Relaxed)
    }
    pub fn advance(&self, d: Duration) {
        let d = saturating_millis(d);
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(d))
            });
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_days() {
        let t = Timestamp::parse("2018-01-01T00:00:00Z").unwrap();
        assert_eq!(t.0, 1_514_764_800_000);
        assert_eq!(t.day(), 17532);
        assert_eq!((t - Duration::from_millis(1)).day(), 17531);
        assert_eq!(Timestamp::parse("2018-01-01T01:00:00+01:00").unwrap(), t);
        assert!(Timestamp::parse("2018-13-01").is_err());
        assert_eq!(t.to_rfc3339(), "2018-01-01T00:00:00Z");
    }

    /// r9 hole 6/9: time arithmetic saturates instead of wrapping to a time near now.
    #[test]
    fn r9_time_arithmetic_cannot_wrap() {
        let t = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(t + Duration::MAX, Timestamp(i64::MAX));
        assert_eq!(
            Timestamp(i64::MIN + 5) - Duration::from_secs(1),
            Timestamp(i64::MIN)
        );
        assert_eq!(
            Timestamp(i64::MAX).since(Timestamp(i64::MIN)),
            Duration::from_millis(i64::MAX as u64)
        );
        assert_eq!(Timestamp(i64::MIN).since(t), Duration::ZERO);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(
            Timestamp(i64::MAX - 1).checked_add(Duration::from_millis(2)),
            None
        );
        assert_eq!(
            t.checked_sub(Duration::from_secs(1)),
            Some(Timestamp(t.0 - 1000))
        );
        // Year 584 million in epoch seconds: wrapped near now before.
        assert_eq!(Timestamp::checked_from_secs(18_446_744_073_709_552), None);
        assert_eq!(Timestamp::from_secs(i64::MAX), Timestamp(i64::MAX));
        let c = SimClock::new(Timestamp(i64::MAX - 5));
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now(), Timestamp(i64::MAX));
    }

    #[test]
    fn sim_clock_moves_only_when_told() {
        let c = SimClock::new(Timestamp(0));
        c.advance(Duration::from_secs(60));
        assert_eq!(c.now(), Timestamp(60_000));
    }
}
