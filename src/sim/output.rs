//! The per-step record of a run and writing it out (parquet), and the rule that a run's
//! output folder appears whole or not at all.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::SimError;
use crate::clock::Timestamp;
use crate::decision::{Decision, ALL_REASONS};
use crate::site::LoadSpec;

/// Inputs, decision and flows of every step. Powers in W, prices in EUR/MWh, hashprice
/// in EUR/(PH/s·day); kept as f32 (7 significant digits is plenty for a record, and
/// halves a year's memory).
#[derive(Debug, Clone)]
pub struct Timeseries {
    pub time: Vec<i64>,
    pub reason: Vec<u8>,
    /// Names, then one column each.
    pub names: Vec<String>,
    pub columns: Vec<Vec<f32>>,
    loads: usize,
}

/// Fixed columns, in order.
pub const INPUTS: [&str; 5] = [
    "pv_w",
    "wind_w",
    "site_load_w",
    "price_eur_mwh",
    "hashprice_eur_phs_day",
];
pub const FLOWS: [&str; 5] = [
    "mining_w",
    "export_w",
    "import_w",
    "curtailed_w",
    "curtailed_without_mining_w",
];
/// Carbon columns: the grid's intensity in force (NaN: none), mining's grid draw, and
/// mining's carbon over the step (rated energy only).
pub const CARBON: [&str; 3] = [
    "grid_carbon_intensity_g_kwh",
    "mining_grid_w",
    "mining_co2eq_g",
];

impl Timeseries {
    pub fn new(loads: &[LoadSpec], capacity: usize) -> Self {
        let mut names: Vec<String> = INPUTS.iter().map(|s| s.to_string()).collect();
        names.push("limit_w".into());
        names.push("target_w".into());
        names.extend(FLOWS.iter().map(|s| s.to_string()));
        names.extend(CARBON.iter().map(|s| s.to_string()));
        for l in loads {
            names.push(format!("{}_target_w", l.name));
            names.push(format!("{}_units_on", l.name));
            names.push(format!("{}_w", l.name));
        }
        Timeseries {
            time: Vec::with_capacity(capacity),
            reason: Vec::with_capacity(capacity),
            columns: names.iter().map(|_| Vec::with_capacity(capacity)).collect(),
            names,
            loads: loads.len(),
        }
    }

    /// Appends one step. `load_w` holds each load's power, one per load given to `new`
    /// (in that order); fewer is a broken invariant of the caller and panics, rather than
    /// writing a column of gaps for the loads left out.
    pub fn push(
        &mut self,
        at: Timestamp,
        inputs: [f64; 5],
        d: &Decision,
        load_w: &[f64],
        flows: [f64; 5],
        carbon: [f64; 3],
    ) {
        self.time.push(at.0);
        self.reason.push(super::reason_index(d.reason) as u8);
        let mut c = 0;
        let mut put = |v: f64| {
            self.columns[c].push(v as f32);
            c += 1;
        };
        inputs.into_iter().for_each(&mut put);
        put(d.limit.map_or(f64::NAN, |l| l.0));
        put(d.total().0);
        flows.into_iter().for_each(&mut put);
        carbon.into_iter().for_each(&mut put);
        for k in 0..self.loads {
            put(d.loads[k].power.0);
            put(d.loads[k].units_on as f64);
            put(load_w[k]);
        }
    }

    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    pub fn column(&self, name: &str) -> Option<&[f32]> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.columns[i].as_slice())
    }

    pub fn to_dataframe(&self) -> PolarsResult<DataFrame> {
        let mut cols: Vec<Column> = Vec::with_capacity(self.columns.len() + 2);
        cols.push(Column::new("time_ms".into(), &self.time));
        let reasons: Vec<&str> = self
            .reason
            .iter()
            .map(|&r| ALL_REASONS[r as usize].as_str())
            .collect();
        cols.push(Column::new("reason".into(), reasons));
        for (n, v) in self.names.iter().zip(&self.columns) {
            cols.push(Column::new(n.as_str().into(), v));
        }
        DataFrame::new_infer_height(cols)
    }
}

/// Writes a frame as parquet.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), SimError> {
    let err = |m: String| SimError::Output {
        path: path.display().to_string(),
        message: m,
    };
    let f = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    ParquetWriter::new(f)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// A folder filled under a temporary name and renamed into place when complete, so a
/// failed run never leaves half its files (an older complete run is replaced whole).
pub struct Staging {
    pub tmp: PathBuf,
    target: PathBuf,
}

impl Staging {
    pub fn new(target: &Path) -> Result<Self, SimError> {
        let parent = target.parent().unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .map_or("out".into(), |n| n.to_string_lossy().to_string());
        let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let err = |e: std::io::Error| SimError::Output {
            path: tmp.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(parent).map_err(err)?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(err)?;
        }
        std::fs::create_dir_all(&tmp).map_err(err)?;
        Ok(Staging {
            tmp,
            target: target.to_path_buf(),
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    pub fn commit(self) -> Result<PathBuf, SimError> {
        let err = |e: std::io::Error| SimError::Output {
            path: self.target.display().to_string(),
            message: e.to_string(),
        };
        if self.target.exists() {
            std::fs::remove_dir_all(&self.target).map_err(err)?;
        }
        std::fs::rename(&self.tmp, &self.target).map_err(err)?;
        let target = self.target.clone();
        std::mem::forget(self);
        Ok(target)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}
