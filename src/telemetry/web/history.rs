//! The power flow over the last hour, as the dashboard charts it: a [`Sample`] taken
//! from each state document the page is sent, kept as 5-second means (an hour is 720
//! points, a few tens of kB for a page that opens later), and every change of the
//! decision's reason exactly (a mean of reasons means nothing).
//!
//! Must not: read anything but the state document (the page must show what MQTT shows).

use std::collections::VecDeque;

use serde_json::{json, Value};

use crate::clock::Timestamp;

/// How long the history reaches back.
pub const SPAN_MS: i64 = 3_600_000;
/// The width of one kept point.
pub const BUCKET_MS: i64 = 5_000;
/// Most reason changes kept (a flapping site must not grow the page without bound).
const MAX_REASONS: usize = 2_000;

/// The power-flow quantities, in the order of [`Sample::values`] and of the history's
/// columns; the page reads the names.
pub const COLUMNS: [&str; 8] = [
    "pv", "wind", "load", "grid", "target", "mining", "limit", "price",
];

/// One moment's power flow, W (grid import positive), and price, EUR/MWh; `None` where
/// the state has no value (no source, or stale: the page leaves a gap).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: Timestamp,
    pub values: [Option<f64>; 8],
    pub reason: String,
}

fn signal(state: &Value, name: &str) -> Option<f64> {
    state["signals"][name]["value"].as_f64()
}

impl Sample {
    /// The sample a state document (`status::state_json`) shows.
    pub fn of(state: &Value, at: Timestamp) -> Sample {
        let loads = state["loads"].as_array();
        // What the loads report drawing; unknown while none reports.
        let mining = loads.and_then(|ls| {
            let known: Vec<f64> = ls.iter().filter_map(|l| l["actual_w"].as_f64()).collect();
            (!known.is_empty()).then(|| known.iter().sum())
        });
        Sample {
            at,
            values: [
                signal(state, "pv_power"),
                signal(state, "wind_power"),
                signal(state, "site_load"),
                signal(state, "grid_power"),
                state["decision"]["target_w"].as_f64(),
                mining,
                state["decision"]["limit_w"].as_f64(),
                signal(state, "price"),
            ],
            reason: state["decision"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({ "t": self.at.0, "reason": self.reason });
        for (name, x) in COLUMNS.iter().zip(self.values) {
            v[*name] = round(x);
        }
        v
    }
}

/// Watts to the watt and prices to the cent are all a chart can show; shorter numbers
/// keep the first page load small.
fn round(x: Option<f64>) -> Value {
    match x {
        Some(x) if x.is_finite() => json!((x * 100.0).round() / 100.0),
        _ => Value::Null,
    }
}

/// A bucket being filled: the sum and count of each column's known values.
#[derive(Debug, Clone, Default)]
struct Bucket {
    start: i64,
    sums: [f64; 8],
    counts: [u32; 8],
}

impl Bucket {
    fn mean(&self) -> [Option<f64>; 8] {
        std::array::from_fn(|i| (self.counts[i] > 0).then(|| self.sums[i] / self.counts[i] as f64))
    }
}

/// The last hour: 5-second means and the reason changes.
#[derive(Debug, Default)]
pub struct History {
    points: VecDeque<(i64, [Option<f64>; 8])>,
    open: Option<Bucket>,
    reasons: VecDeque<(i64, String)>,
}

impl History {
    pub fn push(&mut self, s: Sample) {
        let t = s.at.0;
        let start = t - t.rem_euclid(BUCKET_MS);
        match &mut self.open {
            Some(b) if b.start == start => {}
            // A sample from before the open bucket (the clock stepped back): start over
            // from it rather than keep points out of order.
            Some(b) if start < b.start => {
                self.points.clear();
                self.open = Some(Bucket {
                    start,
                    ..Bucket::default()
                });
            }
            open => {
                if let Some(b) = open.take() {
                    self.points.push_back((b.start, b.mean()));
                }
                *open = Some(Bucket {
                    start,
                    ..Bucket::default()
                });
            }
        }
        let b = self.open.as_mut().expect("a bucket was just opened");
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                b.sums[i] += v;
                b.counts[i] += 1;
            }
        }
        if self.reasons.back().is_none_or(|(_, r)| *r != s.reason) {
            self.reasons.push_back((t, s.reason));
            if self.reasons.len() > MAX_REASONS {
                self.reasons.pop_front();
            }
        }
        let from = t - SPAN_MS;
        while self.points.front().is_some_and(|(p, _)| *p < from) {
            self.points.pop_front();
        }
        // The reason in force at the window's start stays: the timeline starts with it.
        while self.reasons.len() > 1 && self.reasons[1].0 <= from {
            self.reasons.pop_front();
        }
    }

    /// `{"t": [ms...], "pv": [...], ..., "reasons": [[ms, reason]...]}`: the kept means
    /// and the open bucket's so far, each at its bucket's start.
    pub fn to_json(&self) -> Value {
        let open = self.open.as_ref().map(|b| (b.start, b.mean()));
        let rows: Vec<&(i64, [Option<f64>; 8])> = self.points.iter().chain(open.as_ref()).collect();
        let mut v = json!({
            "t": rows.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            "bucket_ms": BUCKET_MS,
            "reasons": self.reasons.iter().map(|(t, r)| json!([t, r])).collect::<Vec<_>>(),
        });
        for (i, name) in COLUMNS.iter().enumerate() {
            v[*name] = rows.iter().map(|(_, vals)| round(vals[i])).collect();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pv: Option<f64>, reason: &str, loads: &[Option<f64>]) -> Value {
        json!({
            "signals": {"pv_power": {"value": pv}, "price": {"value": 42.5}},
            "decision": {"target_w": 1000.0, "limit_w": null, "reason": reason},
            "loads": loads.iter().map(|w| json!({"actual_w": w})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn a_sample_is_what_the_state_shows() {
        let s = Sample::of(
            &state(Some(3000.0), "surplus", &[Some(400.0), None, Some(100.0)]),
            Timestamp(7),
        );
        assert_eq!(s.values[0], Some(3000.0));
        assert_eq!(s.values[1], None, "no wind signal: a gap, not 0");
        assert_eq!(s.values[5], Some(500.0), "the loads that report");
        assert_eq!(s.values[7], Some(42.5));
        assert_eq!(s.reason, "surplus");
        let none = Sample::of(&state(None, "stale:pv_power", &[None]), Timestamp(7));
        assert_eq!((none.values[0], none.values[5]), (None, None));
    }

    #[test]
    fn an_hour_of_seconds_becomes_720_means_and_the_reason_changes() {
        let mut h = History::default();
        for s in 0..7200 {
            // Five samples a bucket: 1000, 1100, ... 1400, whose mean is 1200.
            let pv = 1000.0 + 100.0 * (s % 5) as f64;
            let reason = if s < 5000 {
                "surplus"
            } else {
                "operator_curtail"
            };
            h.push(Sample::of(
                &state(Some(pv), reason, &[]),
                Timestamp(s * 1000),
            ));
        }
        let v = h.to_json();
        let t = v["t"].as_array().unwrap();
        // The last hour's closed buckets plus the open one.
        assert!((720..=722).contains(&t.len()), "{}", t.len());
        let pv = v["pv"].as_array().unwrap();
        // Closed buckets hold their five samples' mean; the open one has one so far.
        assert!(
            pv[..pv.len() - 1].iter().all(|x| x == &json!(1200.0)),
            "means: {pv:?}"
        );
        assert_eq!(v["mining"][0], Value::Null, "no load reported");
        // Only the change inside the window, and the reason before it.
        assert_eq!(
            v["reasons"],
            json!([[0, "surplus"], [5_000_000, "operator_curtail"]])
        );
        // An hour later the first reason falls out.
        for s in 7200..9000 {
            h.push(Sample::of(
                &state(Some(1.0), "operator_curtail", &[]),
                Timestamp(s * 1000),
            ));
        }
        assert_eq!(
            h.to_json()["reasons"],
            json!([[5_000_000, "operator_curtail"]])
        );
    }

    #[test]
    fn a_clock_stepping_back_starts_over_in_order() {
        let mut h = History::default();
        for s in [100, 106, 112] {
            h.push(Sample::of(
                &state(Some(1.0), "surplus", &[]),
                Timestamp(s * 1000),
            ));
        }
        h.push(Sample::of(
            &state(Some(1.0), "surplus", &[]),
            Timestamp(50_000),
        ));
        let t: Vec<i64> = h.to_json()["t"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
    }
}
