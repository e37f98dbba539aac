//! Checks every component's config shares: a value's shape and range, each problem
//! gathered with its key path. The components check their own meaning with these.

use super::Problems;
use crate::clock::Timestamp;
use crate::units::{Watts, MAX_HASHPRICE, MAX_PRICE};

/// The value at `at` as a table.
pub fn table_of(p: &mut Problems, at: &str, v: toml::Value) -> Option<toml::Table> {
    match v {
        toml::Value::Table(t) => Some(t),
        other => {
            p.push(at, format!("expected a table, got {}", other.type_str()));
            None
        }
    }
}

/// A key's value as the file wrote it, for a message (`missing` if absent).
pub fn show(v: Option<&toml::Value>) -> String {
    v.map_or_else(|| "missing".into(), |v| v.to_string())
}

pub fn timestamp(p: &mut Problems, at: &str, s: &str) -> Option<Timestamp> {
    Timestamp::parse(s).map_err(|e| p.push(at, e)).ok()
}

/// A number for a message, as a person would write it: `1e200` rather than its 201
/// digits, `2.5` as `2.5`.
pub fn show_number(v: f64) -> String {
    let a = v.abs();
    if v.is_finite() && a != 0.0 && !(1e-4..1e9).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// A price in EUR/MWh: finite and within the range a price can have at all.
pub fn price(p: &mut Problems, at: &str, v: f64) {
    let max = show_number(MAX_PRICE.0);
    if !(v.is_finite() && v.abs() <= MAX_PRICE.0) {
        p.push(
            at,
            format!(
                "{} must be a finite price within -{max}..={max} EUR/MWh",
                show_number(v)
            ),
        );
    }
}

/// A hashprice in EUR per PH/s per day: finite, >= 0 and within the range it can have.
pub fn hashprice_value(p: &mut Problems, at: &str, v: f64) {
    let max = MAX_HASHPRICE;
    if !(v.is_finite() && (0.0..=max.0).contains(&v)) {
        p.push(
            at,
            format!(
                "{} must be a finite number within 0..={} EUR/(PH/s·day)",
                show_number(v),
                show_number(max.0)
            ),
        );
    }
}

/// Largest power a config or a series may give, either sign: 1 TW, more than any grid
/// carries. A larger one is a unit mistake or a typo, and would swamp every energy figure
/// of a run (a base load of 1e300 W leaves every KPI 0 and the ratio to the optimum NaN).
pub const MAX_POWER: Watts = Watts(1e12);

/// A power that must be finite, >= 0 and at most `MAX_POWER`.
pub fn non_negative(p: &mut Problems, at: &str, w: Watts) {
    if !(w.0 >= 0.0 && w.0 <= MAX_POWER.0) {
        p.push(
            at,
            format!(
                "{} W must be a finite power within 0..={} W",
                show_number(w.0),
                show_number(MAX_POWER.0)
            ),
        );
    }
}

pub fn finite(p: &mut Problems, at: &str, v: f64) {
    if !v.is_finite() {
        p.push(at, format!("{v} must be a finite number"));
    }
}
