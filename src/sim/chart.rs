//! The charts' data: a run's per-step record (`Timeseries`) turned into what the report
//! draws, and brought down to as many points as a chart can show. Shared by `svg` and
//! `html`, so the SVG week and the HTML year show the same figures; nothing here draws.
//!
//! Derived, not re-simulated: mining's split by source comes from the recorded flows
//! (curtailment avoided, then the export it displaced, then import), which is the
//! simulator's own `Tiers::split` order, so the sums match the KPIs' split. A bucket is
//! the mean of its steps: energy per bucket is kept, and a chart of hourly means of a
//! year of 1-minute steps shows the same MWh as the KPIs.

use super::output::{Timeseries, FLOWS, INPUTS};
use crate::scenario::Scenario;
use crate::units::{Hashprice, PricePerMwh, Watts};

/// Per step, W unless said: the record with mining split by the energy it took.
/// Generation and site load are held over gaps as the simulator's physics holds them
/// (0 before the first value); price stays NaN in gaps (a chart shows the hole).
#[derive(Debug, Clone, Default)]
pub struct Flows {
    /// Step start, ms since the epoch.
    pub time: Vec<i64>,
    pub generation: Vec<f64>,
    pub site_load: Vec<f64>,
    pub mining: Vec<f64>,
    /// Mining on energy that would otherwise have been curtailed.
    pub from_curtailment: Vec<f64>,
    /// Mining on energy that would otherwise have been exported.
    pub from_export: Vec<f64>,
    /// Mining on energy imported for it.
    pub from_import: Vec<f64>,
    pub export: Vec<f64>,
    /// Curtailed with mining.
    pub curtailed: Vec<f64>,
    pub curtailed_without_mining: Vec<f64>,
    /// Day-ahead, EUR/MWh.
    pub price: Vec<f64>,
    /// EUR/(PH/s·day), held over gaps as the simulator earns at the last one.
    pub hashprice: Vec<f64>,
}

/// What `mining` W took from each source, given the step's flows: curtailment avoided
/// first, then import (only a site short of power imports for mining), the rest
/// displaced export. (from curtailment, from export, from import).
pub fn split_by_source(
    mining: f64,
    import: f64,
    curtailed: f64,
    curtailed_without: f64,
) -> (f64, f64, f64) {
    // min/max rather than clamp: clamp panics on a NaN bound, and a record is outside input.
    let free = (curtailed_without - curtailed)
        .max(0.0)
        .min(mining.max(0.0));
    let rest = (mining - free).max(0.0);
    let from_import = import.max(0.0).min(rest);
    (free, rest - from_import, from_import)
}

impl Flows {
    pub fn new(ts: &Timeseries) -> Flows {
        let n = ts.len();
        let col = |name: &str| ts.column(name).unwrap_or(&[]);
        let at = |c: &[f32], i: usize| c.get(i).map_or(f64::NAN, |&v| f64::from(v));
        let [pv, wind, load, price, hashprice] = INPUTS.map(col);
        let [mining, export, import, curtailed, without] = FLOWS.map(col);
        let mut f = Flows {
            time: ts.time.clone(),
            ..Default::default()
        };
        let (mut held_pv, mut held_wind, mut held_load, mut held_hp) = (0.0, 0.0, 0.0, 0.0);
        let hold = |slot: &mut f64, v: f64| {
            if !v.is_nan() {
                *slot = v;
            }
            *slot
        };
        for i in 0..n {
            let g = hold(&mut held_pv, at(pv, i)) + hold(&mut held_wind, at(wind, i));
            f.generation.push(g);
            f.site_load.push(hold(&mut held_load, at(load, i)));
            f.price.push(at(price, i));
            f.hashprice.push(hold(&mut held_hp, at(hashprice, i)));
            let (m, c, w) = (at(mining, i), at(curtailed, i), at(without, i));
            let (a, b, d) = split_by_source(m, at(import, i), c, w);
            f.mining.push(m);
            f.from_curtailment.push(a);
            f.from_export.push(b);
            f.from_import.push(d);
            f.export.push(at(export, i));
            f.curtailed.push(c);
            f.curtailed_without_mining.push(w);
        }
        f
    }

    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }
}

/// Bucket widths a chart may use, ms: each a whole number of the next smaller, and all
/// up to a day aligned to UTC midnight.
const WIDTHS_MS: [i64; 9] = [
    1_000,
    60_000,
    300_000,
    900_000,
    3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    86_400_000,
    7 * 86_400_000,
];

/// Steps grouped into buckets of equal width (aligned to multiples of the width since
/// the epoch): each bucket's start and its steps' index range.
#[derive(Debug, Clone)]
pub struct Buckets {
    pub width_ms: i64,
    pub start_ms: Vec<i64>,
    ranges: Vec<(usize, usize)>,
}

impl Buckets {
    /// The narrowest width, no finer than the step, that puts the steps of `time` in at
    /// most `max_points` buckets.
    pub fn fitting(time: &[i64], step_ms: i64, max_points: usize) -> Buckets {
        let span = match (time.first(), time.last()) {
            (Some(a), Some(b)) => b - a + step_ms,
            _ => 0,
        };
        let max_points = max_points.max(1) as i64;
        let width = std::iter::once(step_ms.max(1))
            .chain(WIDTHS_MS.into_iter().filter(|w| *w > step_ms))
            .find(|w| (span + w - 1).div_euclid(*w) <= max_points)
            .unwrap_or(WIDTHS_MS[WIDTHS_MS.len() - 1]);
        Buckets::of_width(time, width)
    }

    pub fn of_width(time: &[i64], width_ms: i64) -> Buckets {
        let mut b = Buckets {
            width_ms,
            start_ms: Vec::new(),
            ranges: Vec::new(),
        };
        for (i, &t) in time.iter().enumerate() {
            let start = t.div_euclid(width_ms) * width_ms;
            if b.start_ms.last() == Some(&start) {
                b.ranges.last_mut().expect("pushed with its start").1 = i + 1;
            } else {
                b.start_ms.push(start);
                b.ranges.push((i, i + 1));
            }
        }
        b
    }

    pub fn len(&self) -> usize {
        self.start_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.start_ms.is_empty()
    }

    /// Each bucket's mean of `v`'s values that are not NaN (NaN where all are).
    pub fn mean(&self, v: &[f64]) -> Vec<f64> {
        self.ranges
            .iter()
            .map(|&(a, b)| {
                let (n, sum) = v[a..b.min(v.len())]
                    .iter()
                    .filter(|x| !x.is_nan())
                    .fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
                if n == 0 {
                    f64::NAN
                } else {
                    sum / n as f64
                }
            })
            .collect()
    }

    /// Each bucket's share of steps with `f(step index)` true.
    pub fn share(&self, f: impl Fn(usize) -> bool) -> Vec<f64> {
        self.ranges
            .iter()
            .map(|&(a, b)| (a..b).filter(|&i| f(i)).count() as f64 / (b - a) as f64)
            .collect()
    }
}

/// A duration curve: the values (NaN left out) from highest to lowest, sampled at
/// `points` evenly spaced shares of the time, as (share of time 0..=1, value).
pub fn duration_curve(v: &[f64], points: usize) -> Vec<(f64, f64)> {
    let mut sorted: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let points = points.clamp(2, n.max(2));
    (0..points)
        .map(|k| {
            let share = k as f64 / (points - 1) as f64;
            let i = ((share * (n - 1) as f64).round() as usize).min(n - 1);
            (share, sorted[i])
        })
        .collect()
}

/// Each load group's break-even energy price per EUR/(PH/s·day) of hashprice, EUR/MWh:
/// the break-even at any moment is this times the hashprice then (hash rate scales with
/// power, so it holds at every power level). (name, factor).
pub fn breakeven_per_hashprice(sc: &Scenario) -> Vec<(String, PricePerMwh)> {
    sc.loads
        .iter()
        .map(|l| (l.name.clone(), l.value_per_mwh(Hashprice(1.0))))
        .collect()
}

/// A power for a chart axis: MW from 1 MW up, else kW (the unit, and W per unit).
pub fn power_unit(max: Watts) -> (&'static str, f64) {
    if max.0.abs() >= 1e6 {
        ("MW", 1e6)
    } else {
        ("kW", 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_follows_the_simulators_order() {
        // 6 MW export limit, 8 MW surplus, 3 MW mining: 2 MW of it was curtailment, 1 MW
        // displaced export, none imported.
        assert_eq!(split_by_source(3e6, 0.0, 0.0, 2e6), (2e6, 1e6, 0.0));
        // Surplus 0.5 MW, mining 2 MW: 0.5 MW displaced export, 1.5 MW imported.
        assert_eq!(split_by_source(2e6, 1.5e6, 0.0, 0.0), (0.0, 0.5e6, 1.5e6));
        // A site importing anyway: everything mining draws is imported.
        assert_eq!(split_by_source(1e6, 1.4e6, 0.0, 0.0), (0.0, 0.0, 1e6));
        // Mining less than the curtailment: all of it from curtailment.
        assert_eq!(split_by_source(1e6, 0.0, 4e6, 5e6), (1e6, 0.0, 0.0));
    }

    #[test]
    fn buckets_fit_the_points_and_keep_the_mean() {
        // A year of minutes in at most 10,000 buckets: hours.
        let minute = 60_000;
        let time: Vec<i64> = (0..525_600).map(|i| i * minute).collect();
        let b = Buckets::fitting(&time, minute, 10_000);
        assert_eq!((b.width_ms, b.len()), (3_600_000, 8760));
        let v: Vec<f64> = (0..525_600).map(|i| (i % 60) as f64).collect();
        assert!(b.mean(&v).iter().all(|m| (*m - 29.5).abs() < 1e-12));
        // A short run keeps its own step.
        let b = Buckets::fitting(&time[..100], minute, 10_000);
        assert_eq!((b.width_ms, b.len()), (minute, 100));
        // Gaps are left out of a mean; an all-gap bucket is a gap.
        let b = Buckets::of_width(&[0, 1, 2, 3], 2);
        let m = b.mean(&[1.0, f64::NAN, f64::NAN, f64::NAN]);
        assert_eq!(m[0], 1.0);
        assert!(m[1].is_nan());
        assert_eq!(b.share(|i| i == 0), vec![0.5, 0.0]);
    }

    #[test]
    fn a_duration_curve_runs_from_highest_to_lowest() {
        let c = duration_curve(&[3.0, f64::NAN, 1.0, 2.0, 5.0, 4.0], 5);
        let v: Vec<f64> = c.iter().map(|p| p.1).collect();
        assert_eq!(v, vec![5.0, 4.0, 3.0, 2.0, 1.0]);
        assert_eq!((c[0].0, c[4].0), (0.0, 1.0));
        assert!(duration_curve(&[], 10).is_empty());
    }
}
