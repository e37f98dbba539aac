//! Historical series from files (CSV or parquet, read with polars), aligned to the
//! control step: the simulator's source of observations.
//!
//! Documented choices, each counted in `DataReport`:
//! - Timestamps are UTC and mark the start of the interval a value describes. A series'
//!   resolution is its most common timestamp spacing.
//! - Timestamps must increase. One that goes back is an error naming the line; an equal
//!   one (a duplicated hour, as a DST change in local time leaves) is averaged with the
//!   first and counted.
//! - A missing interval (a jump in time, as a skipped DST hour leaves) and an empty cell
//!   are gaps. Steps in a gap get no observation: the signal ages in `SiteState` and the
//!   policy's staleness rule decides, exactly as it would live.
//! - `Interpolate::Hold` (default): each interval's value holds for every step inside
//!   it, so an hourly price holds for its four quarters and interval energy is kept
//!   exactly. `Interpolate::Linear`: straight lines between interval midpoints where both
//!   neighbours exist, hold otherwise.
//! - A step coarser than the data (1 h over quarter-hours) takes the time-weighted mean
//!   of the intervals it covers, whichever rule: the energy over the step is kept, where
//!   sampling one interval would stretch it over the whole step. Intervals without a
//!   value are left out of the mean; a step with none gets none.
//!
//! Reads files, nothing else: it never decides anything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use polars::prelude::*;

use super::series::Interpolate;
use super::series::{ColumnRef, HashpriceSource, History, PowerSource, PriceSource, SeriesSpec};
use crate::clock::Timestamp;
use crate::config::{show_number, MAX_POWER};
use crate::site::carbon::FUELS;
use crate::units::{MAX_HASHPRICE, MAX_PRICE};

/// The column of the hourly intensity table made from a mix.
const INTENSITY: &str = "intensity";

/// What went wrong reading history. Each message holds its cause, and none is a
/// `source()`: an error chain printed whole (`{:#}`) would repeat it (polars' own message
/// names the file again).
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot read {}: {error}", path.display())]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    Read { path: PathBuf, error: PolarsError },
    #[error("{}: no column {column:?} (columns: {available})", path.display())]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("{}: line {line}, column {column:?}: {text:?} is not a number", path.display())]
    BadNumber {
        path: PathBuf,
        line: usize,
        column: String,
        text: String,
    },
    #[error("{}: line {line}: {message}", path.display())]
    BadTimestamp {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: line {line}: timestamp {this} is before {previous} on the line above; timestamps must increase", path.display())]
    OutOfOrder {
        path: PathBuf,
        line: usize,
        previous: Timestamp,
        this: Timestamp,
    },
    #[error("{}: {message}", path.display())]
    Shape { path: PathBuf, message: String },
    /// A value outside the range its quantity can have (after the column's unit scale):
    /// it would make every figure of the run meaningless, or infinite.
    #[error("{}: line {line} ({at}), column {column:?}: {message}", path.display())]
    OutOfRange {
        path: PathBuf,
        line: usize,
        at: Timestamp,
        column: String,
        message: String,
    },
    #[error("scenario {what}: {message}")]
    Range { what: String, message: String },
}

/// A series as read: sorted timestamps and the requested columns (NaN for empty cells).
#[derive(Debug, Clone)]
pub struct SeriesTable {
    pub name: String,
    pub path: PathBuf,
    pub times: Vec<i64>,
    /// The file line of each row (of the first, for a duplicated timestamp).
    pub lines: Vec<usize>,
    pub columns: HashMap<String, Vec<f64>>,
    /// Most common spacing, in ms.
    pub resolution: i64,
    pub duplicates: usize,
    /// Intervals missing between the first and last timestamp.
    pub missing_intervals: usize,
    pub empty_cells: usize,
}

/// Counts of what the data needed, per series and per signal, for the report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DataReport {
    pub series: Vec<SeriesReport>,
    /// Steps with no observation, per signal.
    pub steps_without_value: Vec<(String, usize)>,
    pub interpolate: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SeriesReport {
    pub name: String,
    pub file: String,
    pub rows: usize,
    pub resolution_s: i64,
    pub duplicated_timestamps: usize,
    pub missing_intervals: usize,
    pub empty_cells: usize,
}

/// Reads `columns` of a series file. CSV is read as text and parsed here so that a bad
/// cell is reported with its line; parquet columns may be numbers or text.
pub fn read_series(spec: &SeriesSpec, columns: &[&str]) -> Result<SeriesTable, SignalError> {
    let path = &spec.path;
    let read_err = |error| SignalError::Read {
        path: path.clone(),
        error,
    };
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    // Opened here, so that a missing file says so plainly, once.
    let f = std::fs::File::open(path).map_err(|error| SignalError::Open {
        path: path.clone(),
        error,
    })?;
    let df = if is_parquet {
        let mut reader = ParquetReader::new(f);
        // Native date and time types are not built in (they would double polars' build):
        // say so, and what to write instead, rather than polars' own message.
        let schema = reader.schema().map_err(read_err)?;
        if let Some(field) = schema.get(spec.time_column.as_str()) {
            if matches!(
                field.dtype,
                ArrowDataType::Timestamp(..) | ArrowDataType::Date32 | ArrowDataType::Date64
            ) {
                return Err(SignalError::Shape {
                    path: path.clone(),
                    message: format!(
                        "column {:?} is a native parquet {:?}; write the time as RFC 3339 text or Int64 epoch milliseconds (pandas: df[c] = df[c].dt.strftime(\"%Y-%m-%dT%H:%M:%SZ\"))",
                        spec.time_column, field.dtype
                    ),
                });
            }
        }
        reader.finish().map_err(read_err)?
    } else {
        CsvReadOptions::default()
            .with_has_header(true)
            // Everything as text: numbers are parsed below, with line numbers on error.
            .with_infer_schema_length(Some(0))
            .into_reader_with_file_handle(f)
            .finish()
            .map_err(read_err)?
    };
    // Line numbers: the header is line 1 of a CSV; for parquet "line" is row + 2 too,
    // which reads as a 1-based row after a header.
    let line = |row: usize| row + 2;
    let col = |name: &str| {
        df.column(name).map_err(|_| SignalError::MissingColumn {
            path: path.clone(),
            column: name.to_string(),
            available: df
                .get_column_names()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    };

    let tcol = col(&spec.time_column)?;
    let mut raw_times = Vec::with_capacity(df.height());
    match tcol.dtype() {
        DataType::String => {
            for (row, v) in tcol.str().map_err(read_err)?.iter().enumerate() {
                let text = v.unwrap_or("");
                let t = Timestamp::parse(text).map_err(|message| SignalError::BadTimestamp {
                    path: path.clone(),
                    line: line(row),
                    message,
                })?;
                raw_times.push(t.0);
            }
        }
        // Epoch milliseconds.
        DataType::Int64 => {
            for (row, v) in tcol.i64().map_err(read_err)?.iter().enumerate() {
                let v = v.ok_or_else(|| SignalError::BadTimestamp {
                    path: path.clone(),
                    line: line(row),
                    message: "empty timestamp".into(),
                })?;
                raw_times.push(v);
            }
        }
        other => {
            return Err(SignalError::Shape {
                path: path.clone(),
                message: format!(
                    "column {:?} is {other}; expected RFC 3339 text or Int64 epoch milliseconds",
                    spec.time_column
                ),
            })
        }
    }

    let mut raw_cols = Vec::new();
    for &name in columns {
        let c = col(name)?;
        let values: Vec<f64> = match c.dtype() {
            DataType::String => c
                .str()
                .map_err(read_err)?
                .iter()
                .enumerate()
                .map(|(row, v)| match v.map(str::trim) {
                    None | Some("") => Ok(f64::NAN),
                    Some(t) => t
                        .parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| SignalError::BadNumber {
                            path: path.clone(),
                            line: line(row),
                            column: name.to_string(),
                            text: t.to_string(),
                        }),
                })
                .collect::<Result<_, _>>()?,
            dt if dt.is_primitive_numeric() => c
                .cast(&DataType::Float64)
                .map_err(read_err)?
                .f64()
                .map_err(read_err)?
                .iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect(),
            other => {
                return Err(SignalError::Shape {
                    path: path.clone(),
                    message: format!("column {name:?} is {other}; expected numbers"),
                })
            }
        };
        raw_cols.push((name.to_string(), values));
    }

    // Order, duplicates.
    let mut times = Vec::with_capacity(raw_times.len());
    let mut keep: Vec<usize> = Vec::with_capacity(raw_times.len());
    let mut duplicates = 0;
    let mut merged: Vec<Vec<f64>> = vec![Vec::with_capacity(raw_times.len()); raw_cols.len()];
    for (row, &t) in raw_times.iter().enumerate() {
        if let Some(&prev) = times.last() {
            if t < prev {
                return Err(SignalError::OutOfOrder {
                    path: path.clone(),
                    line: line(row),
                    previous: Timestamp(prev),
                    this: Timestamp(t),
                });
            }
            if t == prev {
                duplicates += 1;
                for (m, (_, vals)) in merged.iter_mut().zip(&raw_cols) {
                    let last = m.last_mut().expect("a value per kept row");
                    let v = vals[row];
                    *last = match (last.is_nan(), v.is_nan()) {
                        (true, _) => v,
                        (false, true) => *last,
                        (false, false) => (*last + v) / 2.0,
                    };
                }
                continue;
            }
        }
        times.push(t);
        keep.push(row);
        for (m, (_, vals)) in merged.iter_mut().zip(&raw_cols) {
            m.push(vals[row]);
        }
    }
    if times.len() < 2 {
        return Err(SignalError::Shape {
            path: path.clone(),
            message: "needs at least two rows".into(),
        });
    }
    let resolution = most_common_spacing(&times);
    let missing_intervals = times
        .windows(2)
        .map(|w| ((w[1] - w[0]) / resolution - 1).max(0) as usize)
        .sum();
    let empty_cells = merged
        .iter()
        .map(|c| c.iter().filter(|v| v.is_nan()).count())
        .sum();
    Ok(SeriesTable {
        name: spec.name.clone(),
        path: path.clone(),
        times,
        lines: keep.into_iter().map(line).collect(),
        columns: raw_cols.into_iter().map(|(n, _)| n).zip(merged).collect(),
        resolution,
        duplicates,
        missing_intervals,
        empty_cells,
    })
}

fn most_common_spacing(times: &[i64]) -> i64 {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for w in times.windows(2) {
        *counts.entry(w[1] - w[0]).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(d, n)| (n, -d))
        .map(|(d, _)| d)
        .unwrap_or(1)
}

impl SeriesTable {
    pub fn start(&self) -> Timestamp {
        Timestamp(self.times[0])
    }
    /// End of the last interval.
    pub fn end(&self) -> Timestamp {
        Timestamp(self.times[self.times.len() - 1] + self.resolution)
    }

    /// The value of `column` for every step of `[start, start + n·step)`, times `scale`.
    ///
    /// A step no longer than the data's resolution takes the value of the interval its
    /// start falls in (`Hold`) or the line between interval midpoints there (`Linear`). A
    /// coarser step takes the time-weighted mean of the intervals it covers, for either
    /// rule: sampling one of them instead (the first quarter-hour of each hour) would
    /// keep that quarter's power for the whole hour and miscount the energy. Intervals
    /// with no value (an empty cell, a missing interval) count for nothing in the mean; a
    /// step that covers none of value gets none (NaN), as a finer step in a gap does.
    pub fn resample(
        &self,
        column: &str,
        scale: f64,
        start: Timestamp,
        step: Duration,
        n: usize,
        how: Interpolate,
    ) -> Vec<f64> {
        let vals = &self.columns[column];
        let step = step.as_millis() as i64;
        if step > self.resolution {
            return self.averages(vals, scale, start.0, step, n);
        }
        let res = self.resolution;
        let mut out = Vec::with_capacity(n);
        let mut i = 0usize;
        for k in 0..n {
            let t = start.0 + k as i64 * step;
            while i + 1 < self.times.len() && self.times[i + 1] <= t {
                i += 1;
            }
            let t0 = self.times[i];
            let v = if t < t0 || t >= t0 + res {
                f64::NAN
            } else {
                match how {
                    Interpolate::Hold => vals[i],
                    Interpolate::Linear => {
                        let mid = t0 + res / 2;
                        let (a, b) = if t < mid {
                            (i.checked_sub(1), Some(i))
                        } else {
                            (Some(i), Some(i + 1))
                        };
                        match (a, b) {
                            (Some(a), Some(b))
                                if b < self.times.len()
                                    && self.times[b] - self.times[a] == res
                                    && !vals[a].is_nan()
                                    && !vals[b].is_nan() =>
                            {
                                let ma = (self.times[a] + res / 2) as f64;
                                let f = (t as f64 - ma) / res as f64;
                                vals[a] + (vals[b] - vals[a]) * f
                            }
                            _ => vals[i],
                        }
                    }
                }
            };
            out.push(v * scale);
        }
        out
    }

    /// `Ok` when every value of `column`, times `scale`, is of `quantity`'s range; else
    /// the first that is not, with its line and time.
    pub fn check_range(
        &self,
        column: &str,
        scale: f64,
        quantity: SeriesQuantity,
    ) -> Result<(), SignalError> {
        let (lo, hi, unit) = quantity.range();
        let vals = &self.columns[column];
        match vals
            .iter()
            .position(|v| !v.is_nan() && !(lo..=hi).contains(&(v * scale)))
        {
            None => Ok(()),
            Some(i) => Err(SignalError::OutOfRange {
                path: self.path.clone(),
                line: self.lines[i],
                at: Timestamp(self.times[i]),
                column: column.to_string(),
                message: format!(
                    "{} {unit} is outside {}..={} {unit}, the range {} can have",
                    show_number(vals[i] * scale),
                    show_number(lo),
                    show_number(hi),
                    quantity.what(),
                ),
            }),
        }
    }

    /// End of row `i`'s interval, ms: one resolution after it, or the next row if that
    /// comes sooner (an irregular row hands over early, as `Hold` does). Never decreases
    /// with `i`.
    fn interval_end(&self, i: usize) -> i64 {
        let end = self.times[i] + self.resolution;
        self.times.get(i + 1).map_or(end, |&next| end.min(next))
    }

    /// The time-weighted mean of the intervals of value within each step of
    /// `[start, start + n·step)` (all in ms), times `scale`.
    fn averages(&self, vals: &[f64], scale: f64, start: i64, step: i64, n: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(n);
        // First row whose interval may reach into the current step.
        let mut first = 0usize;
        for k in 0..n {
            let (a, b) = (start + k as i64 * step, start + (k as i64 + 1) * step);
            while first < self.times.len() && self.interval_end(first) <= a {
                first += 1;
            }
            let (mut sum, mut covered) = (0.0, 0i64);
            let mut i = first;
            while i < self.times.len() && self.times[i] < b {
                let overlap = self.interval_end(i).min(b) - self.times[i].max(a);
                if overlap > 0 && !vals[i].is_nan() {
                    sum += vals[i] * overlap as f64;
                    covered += overlap;
                }
                i += 1;
            }
            out.push(if covered > 0 {
                sum / covered as f64 * scale
            } else {
                f64::NAN
            });
        }
        out
    }
}

/// What a series column gives, for its range check: the same ranges as the scenario's
/// constants (`config::MAX_POWER`, `units::MAX_PRICE`, `units::MAX_HASHPRICE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesQuantity {
    /// W, either sign (a meter's night-time offset reads a little below zero).
    Power,
    /// EUR/MWh, either sign.
    Price,
    /// EUR per PH/s per day, never below 0, as a constant hashprice.
    Hashprice,
}

impl SeriesQuantity {
    fn range(self) -> (f64, f64, &'static str) {
        match self {
            // As a config's powers: a larger one is a unit mistake (a W column read as
            // MW) or a broken file, and would swamp every figure or overflow to infinity.
            SeriesQuantity::Power => (-MAX_POWER.0, MAX_POWER.0, "W"),
            SeriesQuantity::Price => (-MAX_PRICE.0, MAX_PRICE.0, "EUR/MWh"),
            SeriesQuantity::Hashprice => (0.0, MAX_HASHPRICE.0, "EUR/(PH/s·day)"),
        }
    }

    fn what(self) -> &'static str {
        match self {
            SeriesQuantity::Power => "a power",
            SeriesQuantity::Price => "an energy price",
            SeriesQuantity::Hashprice => "a hashprice",
        }
    }
}

/// Every input of a scenario at every control step, in model units. NaN = no value.
#[derive(Debug, Clone)]
pub struct Replay {
    pub start: Timestamp,
    pub step: Duration,
    pub len: usize,
    /// W; absent when the site has no PV.
    pub pv: Option<Vec<f64>>,
    pub wind: Option<Vec<f64>>,
    /// W.
    pub site_load: Vec<f64>,
    /// EUR/MWh.
    pub price: Vec<f64>,
    /// EUR per PH/s per day.
    pub hashprice: Vec<f64>,
    /// The grid's carbon intensity, gCO2eq/kWh, the hour's held over its steps; absent
    /// without a `[carbon] mix`.
    pub carbon_intensity: Option<Vec<f64>>,
    pub report: DataReport,
}

impl Replay {
    pub fn time(&self, i: usize) -> Timestamp {
        self.start + self.step * i as u32
    }

    /// Loads and aligns every series a scenario names.
    pub fn load(sc: &History) -> Result<Replay, SignalError> {
        // Which columns of which series.
        let mut wanted: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut refs: Vec<(&ColumnRef, SeriesQuantity)> = Vec::new();
        refs.extend(sc.pv.iter().map(|c| (c, SeriesQuantity::Power)));
        refs.extend(sc.wind.iter().map(|c| (c, SeriesQuantity::Power)));
        if let PowerSource::Series(c) = &sc.base_load {
            refs.push((c, SeriesQuantity::Power));
        }
        if let PriceSource::Series(c) = &sc.price {
            refs.push((c, SeriesQuantity::Price));
        }
        if let HashpriceSource::Series(c) = &sc.hashprice {
            refs.push((c, SeriesQuantity::Hashprice));
        }
        for (r, _) in &refs {
            let cols = wanted.entry(r.series.as_str()).or_default();
            if !cols.contains(&r.column.as_str()) {
                cols.push(r.column.as_str());
            }
        }
        let tables: Vec<SeriesTable> = sc
            .series
            .iter()
            .filter(|s| wanted.contains_key(s.name.as_str()))
            .map(|s| read_series(s, &wanted[s.name.as_str()]))
            .collect::<Result<_, _>>()?;
        // The mix: every production type, range-checked as powers (MW), read as a series
        // of its own so its coverage bounds the run and its gaps are counted alike.
        let mix = match &sc.carbon {
            Some(m) => {
                let cols = FUELS.map(|f| f.column);
                let t = read_series(&m.series, &cols)?;
                for c in cols {
                    t.check_range(c, 1e6, SeriesQuantity::Power)?;
                }
                Some((t, &m.factors))
            }
            None => None,
        };
        let table = |name: &str| {
            tables
                .iter()
                .find(|t| t.name == name)
                .expect("validated reference")
        };
        // Every value read, in or out of the window: a file that holds one impossible
        // value is broken, and the run says so before it computes anything from it.
        for (c, quantity) in &refs {
            table(&c.series).check_range(&c.column, c.scale, *quantity)?;
        }

        let hourly = mix.map(|(t, factors)| {
            let rows: Vec<(i64, i64, [f64; 17])> = (0..t.times.len())
                .map(|i| {
                    let row = FUELS.map(|f| f.column).map(|c| t.columns[c][i]);
                    (t.times[i], t.interval_end(i), row)
                })
                .collect();
            let (start, vals) = factors.hourly(&rows);
            let hours = SeriesTable {
                name: t.name.clone(),
                path: t.path.clone(),
                times: (0..vals.len() as i64)
                    .map(|h| start + h * 3_600_000)
                    .collect(),
                lines: Vec::new(),
                columns: HashMap::from([(INTENSITY.to_string(), vals)]),
                resolution: 3_600_000,
                duplicates: 0,
                missing_intervals: 0,
                empty_cells: 0,
            };
            (hours, series_report(&t))
        });
        // The run covers what every series covers, unless the scenario narrows it.
        let data_start = tables.iter().map(|t| t.start()).max().expect("a series");
        let data_end = tables.iter().map(|t| t.end()).min().expect("a series");
        let start = sc.start.unwrap_or(data_start);
        let end = sc.end.unwrap_or(data_end);
        for t in tables.iter().chain(hourly.as_ref().map(|(h, _)| h)) {
            if start < t.start() || end > t.end() {
                return Err(SignalError::Range {
                    what: format!("{} .. {}", start, end),
                    message: format!(
                        "series {:?} ({}) only covers {} .. {}",
                        t.name,
                        display(&t.path),
                        t.start(),
                        t.end()
                    ),
                });
            }
        }
        if end <= start {
            return Err(SignalError::Range {
                what: format!("{start} .. {end}"),
                message: "the series have no time in common".into(),
            });
        }
        let step_ms = sc.step.as_millis() as i64;
        let len = ((end.0 - start.0) / step_ms) as usize;
        if len == 0 {
            // A run of no steps has nothing to report: every KPI would be 0 or NaN, and a
            // success would hide that the window or the step was mistyped.
            return Err(SignalError::Range {
                what: format!("{start} .. {end}"),
                message: format!(
                    "shorter than one step ({}); nothing to simulate",
                    crate::units::format_duration(sc.step)
                ),
            });
        }
        let sample = |c: &ColumnRef| {
            table(&c.series).resample(&c.column, c.scale, start, sc.step, len, sc.interpolate)
        };

        let pv = sc.pv.as_ref().map(sample);
        let wind = sc.wind.as_ref().map(sample);
        let site_load = match &sc.base_load {
            PowerSource::Constant(w) => vec![w.0; len],
            PowerSource::Series(c) => sample(c),
        };
        let price = match &sc.price {
            PriceSource::Constant(p) => vec![p.0; len],
            PriceSource::Series(c) => sample(c),
        };
        let hashprice = match &sc.hashprice {
            HashpriceSource::Constant(h) => vec![h.0; len],
            HashpriceSource::Series(c) => sample(c),
        };
        // Held over the hour's steps, never interpolated: the hour's energy-weighted
        // intensity is what each of its kWh carried.
        let carbon_intensity = hourly
            .as_ref()
            .map(|(h, _)| h.resample(INTENSITY, 1.0, start, sc.step, len, Interpolate::Hold));
        let missing = |v: &[f64]| v.iter().filter(|x| x.is_nan()).count();
        let mut steps_without_value = Vec::new();
        if let Some(v) = &pv {
            steps_without_value.push(("pv_power".to_string(), missing(v)));
        }
        if let Some(v) = &wind {
            steps_without_value.push(("wind_power".to_string(), missing(v)));
        }
        steps_without_value.push(("site_load".to_string(), missing(&site_load)));
        steps_without_value.push(("price".to_string(), missing(&price)));
        steps_without_value.push(("hashprice".to_string(), missing(&hashprice)));
        if let Some(v) = &carbon_intensity {
            steps_without_value.push(("grid_carbon_intensity".to_string(), missing(v)));
        }
        let report = DataReport {
            series: tables
                .iter()
                .map(series_report)
                .chain(hourly.map(|(_, r)| r))
                .collect(),
            steps_without_value,
            interpolate: format!("{:?}", sc.interpolate).to_lowercase(),
        };
        Ok(Replay {
            start,
            step: sc.step,
            len,
            pv,
            wind,
            site_load,
            price,
            hashprice,
            carbon_intensity,
            report,
        })
    }
}

fn series_report(t: &SeriesTable) -> SeriesReport {
    SeriesReport {
        name: t.name.clone(),
        file: display(&t.path),
        rows: t.times.len() + t.duplicates,
        resolution_s: t.resolution / 1000,
        duplicated_timestamps: t.duplicates,
        missing_intervals: t.missing_intervals,
        empty_cells: t.empty_cells,
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
