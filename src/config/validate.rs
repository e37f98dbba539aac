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

/// A price in EUR/MWh: finite and within the range a price can have at all.
pub fn price(p: &mut Problems, at: &str, v: f64) {
    let max = MAX_PRICE;
    if !(v.is_finite() && v.abs() <= max.0) {
        p.push(
            at,
            format!("{v} must be a finite price within -{max}..={max}"),
        );
    }
}

/// A hashprice in EUR per PH/s per day: finite, >= 0 and within the range it can have.
pub fn hashprice_value(p: &mut Problems, at: &str, v: f64) {
    let max = MAX_HASHPRICE;
    if !(v.is_finite() && (0.0..=max.0).contains(&v)) {
        p.push(
            at,
            format!("{v} must be a finite number within 0..={}", max.0),
        );
    }
}

/// A power that must be finite and >= 0.
pub fn non_negative(p: &mut Problems, at: &str, w: Watts) {
    if !(w.0 >= 0.0 && w.is_finite()) {
        p.push(at, format!("{w} must be a finite power, 0 W or more"));
    }
}

pub fn finite(p: &mut Problems, at: &str, v: f64) {
    if !v.is_finite() {
        p.push(at, format!("{v} must be a finite number"));
    }
}
