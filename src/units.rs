//! Units are types: every quantity that crosses a module boundary carries its unit.
//!
//! Sign conventions are stated on each type's users; the types themselves are plain
//! magnitudes. Power is always in watts internally (never kW), energy in watt-hours,
//! prices in EUR per MWh, hashprice in EUR per PH/s per day.
//!
//! Config files may write power as `"10 MW"`, `"250 kW"`, `"800 W"` or a bare number of
//! watts, and durations as `"500ms"`, `"30s"`, `"15m"`, `"1h"`, `"1d"`.

use std::fmt;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

macro_rules! quantity {
    ($(#[$doc:meta])* $name:ident, $unit:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub f64);

        impl $name {
            pub const ZERO: Self = Self(0.0);
            pub fn max(self, other: Self) -> Self { Self(self.0.max(other.0)) }
            pub fn min(self, other: Self) -> Self { Self(self.0.min(other.0)) }
            pub fn clamp(self, lo: Self, hi: Self) -> Self { Self(self.0.clamp(lo.0, hi.0)) }
            pub fn abs(self) -> Self { Self(self.0.abs()) }
            pub fn is_finite(self) -> bool { self.0.is_finite() }
        }
        impl Add for $name { type Output = Self; fn add(self, o: Self) -> Self { Self(self.0 + o.0) } }
        impl Sub for $name { type Output = Self; fn sub(self, o: Self) -> Self { Self(self.0 - o.0) } }
        impl AddAssign for $name { fn add_assign(&mut self, o: Self) { self.0 += o.0 } }
        impl SubAssign for $name { fn sub_assign(&mut self, o: Self) { self.0 -= o.0 } }
        impl Neg for $name { type Output = Self; fn neg(self) -> Self { Self(-self.0) } }
        impl Mul<f64> for $name { type Output = Self; fn mul(self, k: f64) -> Self { Self(self.0 * k) } }
        impl Div<f64> for $name { type Output = Self; fn div(self, k: f64) -> Self { Self(self.0 / k) } }
        impl Div for $name { type Output = f64; fn div(self, o: Self) -> f64 { self.0 / o.0 } }
        impl std::iter::Sum for $name {
            fn sum<I: Iterator<Item = Self>>(it: I) -> Self { Self(it.map(|x| x.0).sum()) }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match f.precision() {
                    Some(p) => write!(f, "{:.*} {}", p, self.0, $unit),
                    None => write!(f, "{} {}", self.0, $unit),
                }
            }
        }
    };
}

quantity!(
    /// Electrical power in watts. Where a sign matters the user says which way is positive.
    Watts, "W"
);
quantity!(
    /// Energy in watt-hours.
    WattHours, "Wh"
);
quantity!(
    /// Energy price in EUR per MWh. May be negative (day-ahead prices are, at times).
    PricePerMwh, "EUR/MWh"
);
quantity!(
    /// Money in EUR.
    Eur, "EUR"
);
quantity!(
    /// Hashprice: the value of one PH/s of SHA-256d hashrate for one day, in EUR.
    Hashprice, "EUR/(PH/s·day)"
);
quantity!(
    /// Hash rate in hashes per second.
    HashRate, "H/s"
);
quantity!(
    /// Frequency in hertz.
    Hertz, "Hz"
);

impl Watts {
    /// Energy drawn at this power for `d`.
    pub fn over(self, d: Duration) -> WattHours {
        WattHours(self.0 * d.as_secs_f64() / 3600.0)
    }
    pub fn kw(kw: f64) -> Self {
        Self(kw * 1e3)
    }
    pub fn mw(mw: f64) -> Self {
        Self(mw * 1e6)
    }
}

impl WattHours {
    pub fn mwh(self) -> f64 {
        self.0 / 1e6
    }
    /// What this energy costs at `price`.
    pub fn at(self, price: PricePerMwh) -> Eur {
        Eur(self.0 / 1e6 * price.0)
    }
}

impl HashRate {
    pub fn from_ths(ths: f64) -> Self {
        Self(ths * 1e12)
    }
    pub fn from_mhs(mhs: f64) -> Self {
        Self(mhs * 1e6)
    }
    pub fn phs(self) -> f64 {
        self.0 / 1e15
    }
}

impl Hashprice {
    /// What `rate` hashing earns per hour at this hashprice.
    pub fn eur_per_hour(self, rate: HashRate) -> Eur {
        Eur(rate.phs() * self.0 / 24.0)
    }
    /// The value of the energy a load with this `rate` at `power` turns into hashes:
    /// the break-even energy price, in EUR/MWh. Zero for a load that draws no power.
    pub fn value_per_mwh(self, rate: HashRate, power: Watts) -> PricePerMwh {
        if power.0 <= 0.0 {
            return PricePerMwh(0.0);
        }
        PricePerMwh(self.eur_per_hour(rate).0 / (power.0 / 1e6))
    }
}

/// A unit string that did not parse; the message says what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

/// Parses `"10 MW"`, `"250kW"`, `"800 W"`, `"1.5 GW"` or a bare number of watts.
pub fn parse_watts(s: &str) -> Result<Watts, UnitError> {
    let (num, unit) = split_number(s)?;
    let k = match unit {
        "" | "W" => 1.0,
        "kW" => 1e3,
        "MW" => 1e6,
        "GW" => 1e9,
        other => {
            return Err(UnitError(format!(
                "unknown power unit {other:?} in {s:?} (expected W, kW, MW or GW)"
            )))
        }
    };
    Ok(Watts(num * k))
}

/// Parses `"500ms"`, `"30s"`, `"15m"`, `"1h"`, `"1d"` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let (num, unit) = split_number(s)?;
    let secs = match unit {
        "ms" => num / 1e3,
        "" | "s" => num,
        "m" | "min" => num * 60.0,
        "h" => num * 3600.0,
        "d" => num * 86400.0,
        other => {
            return Err(UnitError(format!(
                "unknown duration unit {other:?} in {s:?} (expected ms, s, m, h or d)"
            )))
        }
    };
    if secs < 0.0 {
        return Err(UnitError(format!("negative duration {s:?}")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration the way config files write it (`90s` -> `"1m30s"`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut s = (ms / 1000) as u64;
    let mut out = String::new();
    for (unit, len) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn split_number(s: &str) -> Result<(f64, &str), UnitError> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(t.len());
    // `e` belongs to the number only when digits follow it ("1e6"), never as a unit.
    let (num, unit) = t.split_at(end);
    let num: f64 = num
        .parse()
        .map_err(|_| UnitError(format!("{s:?} does not start with a number")))?;
    if !num.is_finite() {
        return Err(UnitError(format!("{s:?} is not finite")));
    }
    Ok((num, unit.trim()))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(f64),
    Str(String),
}

/// Serde adapter: power as `"10 MW"` or a number of watts.
pub fn de_watts<'de, D: Deserializer<'de>>(d: D) -> Result<Watts, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => Ok(Watts(n)),
        NumOrStr::Str(s) => parse_watts(&s).map_err(serde::de::Error::custom),
    }
}

/// Serde adapter: optional power.
pub fn de_opt_watts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Watts>, D::Error> {
    de_watts(d).map(Some)
}

/// Serde adapter: duration as `"15m"` or a number of seconds.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) if n >= 0.0 && n.is_finite() => Ok(Duration::from_secs_f64(n)),
        NumOrStr::Num(n) => Err(serde::de::Error::custom(format!("invalid duration {n}"))),
        NumOrStr::Str(s) => parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

/// Serde adapter: optional duration.
pub fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_units() {
        for (s, w) in [
            ("10 MW", 10e6),
            ("250kW", 250e3),
            ("800 W", 800.0),
            ("1.5 GW", 1.5e9),
            ("42", 42.0),
            ("1e3 kW", 1e6),
        ] {
            assert_eq!(parse_watts(s).unwrap(), Watts(w), "{s}");
        }
        assert!(parse_watts("10 mw").unwrap_err().0.contains("unknown power unit"));
        assert!(parse_watts("MW").unwrap_err().0.contains("does not start"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert!(parse_duration("5 fortnights").is_err());
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn hash_value_of_an_s19_class_miner() {
        // 95 TH/s at 3250 W, hashprice 50 EUR/(PH/s day): 0.198 EUR/h over 3.25 kW.
        let v = Hashprice(50.0).value_per_mwh(HashRate::from_ths(95.0), Watts(3250.0));
        assert!((v.0 - 60.897).abs() < 0.01, "{v}");
    }
}
