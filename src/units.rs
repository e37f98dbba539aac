//! Units are types: every quantity that crosses a module boundary carries its unit.
//!
//! Sign conventions are stated on each type's users; the types themselves are plain
//! magnitudes. Power is always in watts internally (never kW), energy in watt-hours,
//! prices in EUR per MWh, hashprice in EUR per PH/s per day.
//!
//! Config files write power as `"10 MW"`, `"250 kW"`, `"800 W"` (a unit is required:
//! a bare `6` could be 6 W or 6 MW; only `0` may stand alone), hash rates likewise
//! (`"95 TH/s"`), and durations as `"500ms"`, `"30s"`, `"15m"`, `"1h"`, `"1d"` (or a
//! number of seconds). Values from devices and signals arrive as numbers in a unit their
//! config declares; they never pass through these parsers.
//!
//! Display has two forms. `{}` writes the number in the base unit (`2000 W`), exactly,
//! as a config file can read it back and as error messages quote a value. `{:#}` is for
//! people reading a report: a power, energy or hash rate takes the prefix that fits
//! (`2 kW`, `7,483 MWh`, `200 TH/s`), thousands are grouped, and without a precision
//! three significant figures are kept (`{:#.1}` fixes one decimal).

use std::fmt;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

macro_rules! quantity {
    ($(#[$doc:meta])* $name:ident, $unit:literal) => {
        quantity!($(#[$doc])* $name, $unit, []);
    };
    ($(#[$doc:meta])* $name:ident, $unit:literal, [$(($scale:expr, $prefixed:literal)),*]) => {
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
        /// The number in this unit, for tables that hold several quantities as plain numbers.
        impl From<$name> for f64 { fn from(v: $name) -> f64 { v.0 } }
        impl std::iter::Sum for $name {
            fn sum<I: Iterator<Item = Self>>(it: I) -> Self { Self(it.map(|x| x.0).sum()) }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if f.alternate() {
                    return human(f, self.0, &[$(($scale, $prefixed)),*], $unit);
                }
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
    Watts, "W", [(1e9, "GW"), (1e6, "MW"), (1e3, "kW")]
);
quantity!(
    /// Energy in watt-hours. Reports read it in MWh at most: a site's year of a few
    /// thousand MWh compares row by row with the month tables, where GWh would not.
    WattHours, "Wh", [(1e6, "MWh"), (1e3, "kWh")]
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
    HashRate, "H/s",
    [(1e18, "EH/s"), (1e15, "PH/s"), (1e12, "TH/s"), (1e9, "GH/s"), (1e6, "MH/s"), (1e3, "kH/s")]
);
quantity!(
    /// Frequency in hertz.
    Hertz, "Hz"
);
quantity!(
    /// Carbon intensity of electricity: lifecycle grams of CO2-equivalent per kWh.
    CarbonIntensity, "gCO2eq/kWh"
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

/// The `{:#}` form: `v` in the largest of `scales` (factor, unit; largest first) it
/// reaches, else in `unit`, written by [`grouped`].
fn human(f: &mut fmt::Formatter<'_>, v: f64, scales: &[(f64, &str)], unit: &str) -> fmt::Result {
    let (x, unit) = scales
        .iter()
        .find(|(k, _)| v.abs() >= *k)
        .map_or((v, unit), |&(k, u)| (v / k, u));
    write!(f, "{} {unit}", grouped(x, f.precision()))
}

/// A number for people: thousands grouped with commas; `decimals` places, or without
/// them three significant figures with trailing zeros dropped (`1,133,916`, `57.1`,
/// `0.57`). For table cells whose column header gives the unit.
pub fn grouped(x: f64, decimals: Option<usize>) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let digits = decimals.unwrap_or(match x.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        _ => 2,
    });
    let mut num = format!("{:.*}", digits, x);
    if decimals.is_none() && num.contains('.') {
        num = num.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    // Rounded to zero, a negative value is zero: "-0 EUR" reads as a loss.
    if num.starts_with('-') && num[1..].chars().all(|c| c == '0' || c == '.') {
        num.remove(0);
    }
    let (sign, rest) = num.split_at(usize::from(num.starts_with('-')));
    let (int, frac) = rest.split_at(rest.find('.').unwrap_or(rest.len()));
    let mut out = String::with_capacity(num.len() + int.len() / 3);
    out.push_str(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(frac);
    out
}

impl WattHours {
    pub fn from_mwh(mwh: f64) -> Self {
        Self(mwh * 1e6)
    }
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

/// The longest duration a config may write: 100 years. Far beyond any sensible hold,
/// timeout or lifetime, and far below what `Duration` and millisecond `Timestamp`
/// arithmetic can hold (about 5.8e11 years), so no config value can overflow them.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A unit string that did not parse; the message says what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

/// Parses `"10 MW"`, `"250kW"`, `"800 W"`, `"1.5 GW"`; a bare number only if it is 0.
pub fn parse_watts(s: &str) -> Result<Watts, UnitError> {
    let (num, unit) = split_number(s)?;
    let k = match unit {
        "" => return bare(num, "MW", "W, kW, MW or GW").map(Watts),
        "W" => 1.0,
        "kW" => 1e3,
        "MW" => 1e6,
        "GW" => 1e9,
        other => {
            return Err(UnitError(format!(
                "unknown power unit {other:?} in {s:?} (expected W, kW, MW or GW)"
            )))
        }
    };
    finite_watts(num * k, s)
}

/// A number written without its unit where one is required: `--set site.export_limit=6`
/// was 6 W without a word, when 6 MW was meant. Refused with the example to follow
/// (`6: give a unit, e.g. "6 MW"`), except zero, which is zero in any unit.
fn bare(n: f64, example: &str, units: &str) -> Result<f64, UnitError> {
    if n == 0.0 {
        Ok(0.0)
    } else {
        Err(UnitError(format!(
            "{n}: give a unit, e.g. \"{n} {example}\" ({units})"
        )))
    }
}

/// A power after its unit's scale: `"1e308 GW"` is a finite number but not a power.
fn finite_watts(w: f64, written: &str) -> Result<Watts, UnitError> {
    if w.is_finite() {
        Ok(Watts(w))
    } else {
        Err(UnitError(format!("{written} is not a finite power")))
    }
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
    seconds(secs, s)
}

/// A number of seconds as a `Duration`, checked: `Duration::from_secs_f64` panics on a
/// value it cannot hold (about 1.8e19 s), and a config must never panic the daemon.
/// `written` is how the config wrote it, for the message.
pub fn seconds(secs: f64, written: &str) -> Result<Duration, UnitError> {
    if secs.is_nan() || secs < 0.0 {
        return Err(UnitError(format!(
            "{written} is not a duration (must be 0 or more)"
        )));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(UnitError(format!(
            "{written} is longer than the longest duration allowed, {} (100 years)",
            format_duration(MAX_DURATION)
        )));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| UnitError(format!("{written}: {e}")))
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

/// Serde adapter: power as `"10 MW"` (a bare number only if it is 0).
pub fn de_watts<'de, D: Deserializer<'de>>(d: D) -> Result<Watts, D::Error> {
    // Range checks belong to the key's meaning (a limit >= 0, a rated power > 0), and
    // made there they keep the rest of the table in view. A string must give a finite
    // power.
    match NumOrStr::deserialize(d)? {
        // `nan` and `inf` have no unit to give: they go on to those checks, which refuse
        // them beside every other problem of the table.
        NumOrStr::Num(n) if !n.is_finite() => Ok(Watts(n)),
        NumOrStr::Num(n) => bare(n, "MW", "W, kW, MW or GW")
            .map(Watts)
            .map_err(serde::de::Error::custom),
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
        NumOrStr::Num(n) => seconds(n, &format!("{n} s")).map_err(serde::de::Error::custom),
        NumOrStr::Str(s) => parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

/// Serde adapter: optional duration.
pub fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

/// The ranges a frequency, a price and a hashprice can have at all, wherever they come
/// from (a config, a signal): a value outside is a mistake or a broken source.
/// Lowest grid frequency a reading may show. Grids trip well above it (50 Hz grids shed
/// load at 49 Hz and disconnect by 47.5 Hz), so anything lower is a broken sensor.
pub const MIN_FREQUENCY: Hertz = Hertz(40.0);
/// Highest grid frequency a reading may show (60 Hz grids disconnect by 62-63 Hz).
pub const MAX_FREQUENCY: Hertz = Hertz(70.0);
/// Largest energy price, either sign. European day-ahead prices are capped at +4,000 and
/// -500 EUR/MWh; intraday and balancing prices stay within +-10,000.
pub const MAX_PRICE: PricePerMwh = PricePerMwh(100_000.0);
/// Largest hashprice. Today's is about 50 EUR per PH/s per day; at this one a miner's
/// hashes would be worth more than any allowed energy price.
pub const MAX_HASHPRICE: Hashprice = Hashprice(10_000.0);
/// Largest carbon intensity, of a grid or of one fuel. Lignite's lifecycle intensity
/// tops out near 1,200 gCO2eq/kWh; a larger value is a unit mistake (kg for g).
pub const MAX_CARBON_INTENSITY: CarbonIntensity = CarbonIntensity(2000.0);

/// Parses `"95 TH/s"`, `"200 MH/s"`, `"1.2 PH/s"`; a bare number only if it is 0 (as
/// for powers: `95` was 95 H/s, a load worth nothing, when 95 TH/s was meant).
pub fn parse_hashrate(s: &str) -> Result<HashRate, UnitError> {
    let (num, unit) = split_number(s)?;
    let k = match unit {
        "" => {
            return bare(num, "TH/s", "H/s, kH/s, ... TH/s, PH/s or EH/s").map(HashRate)
        }
        "H/s" => 1.0,
        "kH/s" => 1e3,
        "MH/s" => 1e6,
        "GH/s" => 1e9,
        "TH/s" => 1e12,
        "PH/s" => 1e15,
        "EH/s" => 1e18,
        other => {
            return Err(UnitError(format!(
                "unknown hash rate unit {other:?} in {s:?} (expected H/s, kH/s, MH/s, GH/s, TH/s, PH/s or EH/s)"
            )))
        }
    };
    let h = num * k;
    if !h.is_finite() {
        return Err(UnitError(format!("{s} is not a finite hash rate")));
    }
    Ok(HashRate(h))
}

/// Serde adapter: hash rate as `"95 TH/s"` (a bare number only if it is 0).
pub fn de_hashrate<'de, D: Deserializer<'de>>(d: D) -> Result<HashRate, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) if !n.is_finite() => Err(serde::de::Error::custom(format!(
            "{n} is not a finite hash rate"
        ))),
        NumOrStr::Num(n) => bare(n, "TH/s", "H/s, kH/s, ... TH/s, PH/s or EH/s")
            .map(HashRate)
            .map_err(serde::de::Error::custom),
        NumOrStr::Str(s) => parse_hashrate(&s).map_err(serde::de::Error::custom),
    }
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
            ("1e3 kW", 1e6),
            ("0", 0.0),
        ] {
            assert_eq!(parse_watts(s).unwrap(), Watts(w), "{s}");
        }
        assert!(parse_watts("10 mw")
            .unwrap_err()
            .0
            .contains("unknown power unit"));
        assert!(parse_watts("MW").unwrap_err().0.contains("does not start"));
        // Finite as written, infinite once scaled (r9 hole 8's config twin).
        assert!(parse_watts("1e308 GW")
            .unwrap_err()
            .0
            .contains("not a finite power"));
    }

    /// r10: a bare number for a power or a hash rate said nothing of its unit and was
    /// taken as W or H/s (`--set site.export_limit=6` was 6 W). Now it is refused with the
    /// example to follow, as a string or a TOML number alike; zero needs no unit.
    #[test]
    fn r10_a_bare_power_is_refused_with_the_unit_to_give() {
        assert_eq!(
            parse_watts("6").unwrap_err().0,
            "6: give a unit, e.g. \"6 MW\" (W, kW, MW or GW)"
        );
        assert!(parse_hashrate("95")
            .unwrap_err()
            .0
            .starts_with("95: give a unit, e.g. \"95 TH/s\""));
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)] // Read only through Debug.
        struct T {
            #[serde(deserialize_with = "de_watts")]
            w: Watts,
        }
        for (toml, err) in [
            ("w = 3000", Some("3000: give a unit, e.g. \"3000 MW\"")),
            ("w = 2.5", Some("2.5: give a unit")),
            // No unit to give: refused by the key's range check, beside the rest.
            ("w = nan", None),
            ("w = \"6\"", Some("6: give a unit")),
            ("w = 0", None),
            ("w = \"6 kW\"", None),
        ] {
            let got = toml::from_str::<T>(toml);
            match err {
                None => assert!(got.is_ok(), "{toml}: {got:?}"),
                Some(e) => {
                    let m = got.unwrap_err().to_string();
                    assert!(m.contains(e), "{toml}: {m}");
                }
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert!(parse_duration("5 fortnights").is_err());
        // r9 hole 6: these panicked in `Duration::from_secs_f64`.
        for absurd in ["1e300s", "1e20d", "1e16h", "18446744073709551616", "-1s"] {
            let e = parse_duration(absurd).unwrap_err().0;
            assert!(e.contains(absurd), "{absurd}: {e}");
        }
        assert!(parse_duration("36500d").is_ok());
        assert!(parse_duration("36501d").is_err());
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    /// r12: the report printed `2.000e14 H/s` and `Watts(2000.0)`; `{:#}` is the form
    /// people read, with the prefix that fits, grouped thousands and three figures.
    #[test]
    fn r12_the_human_form_scales_groups_and_rounds() {
        for (got, want) in [
            (format!("{:#}", HashRate(2e14)), "200 TH/s"),
            (format!("{:#}", HashRate::from_mhs(200.0)), "200 MH/s"),
            (format!("{:#}", Watts(2000.0)), "2 kW"),
            (format!("{:#}", Watts(3250.0)), "3.25 kW"),
            (format!("{:#}", Watts(6e6)), "6 MW"),
            (format!("{:#}", Watts(500.0)), "500 W"),
            (format!("{:#}", Watts(-1.5e6)), "-1.5 MW"),
            (format!("{:#}", Watts(0.0)), "0 W"),
            (
                format!("{:#.1}", WattHours::from_mwh(7482.64)),
                "7,482.6 MWh",
            ),
            (format!("{:#}", WattHours::from_mwh(23494.8)), "23,495 MWh"),
            (format!("{:#}", Eur(1_133_916.4)), "1,133,916 EUR"),
            (format!("{:#}", Eur(-245.0)), "-245 EUR"),
            (format!("{:#.0}", Eur(-0.2)), "0 EUR"),
            (format!("{:#}", PricePerMwh(57.14)), "57.1 EUR/MWh"),
            (format!("{:#}", Hashprice(50.0)), "50 EUR/(PH/s·day)"),
            (format!("{:#}", Watts(f64::NAN)), "NaN W"),
        ] {
            assert_eq!(got, want);
        }
        // The plain form is untouched: exact, in the base unit, as configs read it.
        assert_eq!(Watts(2000.0).to_string(), "2000 W");
        assert_eq!(format!("{:.1}", Watts(2000.0)), "2000.0 W");
    }

    #[test]
    fn hash_value_of_an_s19_class_miner() {
        // 95 TH/s at 3250 W, hashprice 50 EUR/(PH/s day): 0.198 EUR/h over 3.25 kW.
        let v = Hashprice(50.0).value_per_mwh(HashRate::from_ths(95.0), Watts(3250.0));
        assert!((v.0 - 60.897).abs() < 0.01, "{v}");
    }
}
