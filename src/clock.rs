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

    pub fn from_secs(s: i64) -> Self {
        Timestamp(s * 1000)
    }

    /// Time elapsed since `earlier` (zero if `earlier` is in the future).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis((self.0 - earlier.0).max(0) as u64)
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

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0 + d.as_millis() as i64)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0 - d.as_millis() as i64)
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
        self.0.fetch_add(d.as_millis() as i64, Ordering::Relaxed);
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

    #[test]
    fn sim_clock_moves_only_when_told() {
        let c = SimClock::new(Timestamp(0));
        c.advance(Duration::from_secs(60));
        assert_eq!(c.now(), Timestamp(60_000));
    }
}
