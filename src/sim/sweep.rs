//! Parameter sweeps: every combination of `--vary key=v1,v2,...` run in parallel (rayon)
//! over data loaded once, ranked by profit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use super::{run, SimError, SimOptions};
use crate::config::{parse_value, ConfigError, Override, Problem};
use crate::scenario::{load_scenario_table, validate_scenario, Scenario};
use crate::signal::replay::Replay;

/// One `--vary`: a key path and the values to try.
#[derive(Debug, Clone, PartialEq)]
pub struct Vary {
    pub key: String,
    pub values: Vec<String>,
}

impl Vary {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected key.path=v1,v2,..."))?;
        let values: Vec<String> = v
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect();
        if values.is_empty() {
            return Err(format!("{s:?}: no values"));
        }
        Ok(Vary {
            key: k.trim().to_string(),
            values,
        })
    }
}

/// Every combination, first `--vary` slowest.
pub fn combinations(varies: &[Vary]) -> Vec<Vec<(String, String)>> {
    let mut out = vec![Vec::new()];
    for v in varies {
        out = out
            .into_iter()
            .flat_map(|c| {
                v.values.iter().map(move |x| {
                    let mut c = c.clone();
                    c.push((v.key.clone(), x.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub settings: Vec<(String, String)>,
    pub profit_eur: f64,
    pub revenue_eur: f64,
    pub energy_cost_eur: f64,
    /// Starts at their `start_cost_eur` (already in `profit_eur`).
    pub wear_cost_eur: f64,
    pub mining_mwh: f64,
    pub mining_from_import_mwh: f64,
    pub absorbed_share: f64,
    pub max_starts_in_a_day: u32,
    pub starts: u64,
}

#[derive(Debug, Clone)]
pub struct SweepResult {
    pub scenario: String,
    pub keys: Vec<String>,
    /// Sorted by profit, best first.
    pub rows: Vec<SweepRow>,
}

/// The parts of a scenario that decide what data is loaded: variants that share them
/// share one `Replay`.
fn data_signature(sc: &Scenario) -> String {
    format!(
        "{:?}",
        (
            sc.history
                .series
                .iter()
                .map(|s| (&s.name, &s.path, &s.time_column))
                .collect::<Vec<_>>(),
            &sc.history
                .pv
                .as_ref()
                .map(|c| (&c.series, &c.column, c.scale)),
            &sc.history
                .wind
                .as_ref()
                .map(|c| (&c.series, &c.column, c.scale)),
            format!("{:?}", sc.history.base_load),
            format!("{:?}", sc.history.price),
            format!("{:?}", sc.history.hashprice),
            sc.history.step,
            sc.history.start,
            sc.history.end,
            sc.history.interpolate,
        )
    )
}

/// Validates every variant, loads the data once per distinct data signature, and runs
/// them all. `progress` is told after each finished variant.
pub fn sweep(
    path: &Path,
    varies: &[Vary],
    progress: &(dyn Fn() + Sync),
) -> Result<SweepResult, SimError> {
    let combos = combinations(varies);
    // Every variant must be valid before anything runs.
    let mut scenarios = Vec::with_capacity(combos.len());
    let mut problems: Vec<Problem> = Vec::new();
    for c in &combos {
        let overrides: Vec<Override> = c
            .iter()
            .map(|(k, v)| Override {
                path: k.split('.').map(str::to_string).collect(),
                value: parse_value(v),
            })
            .collect();
        let table = load_scenario_table(path, &overrides)?;
        match validate_scenario(path, table) {
            Ok(sc) => scenarios.push(sc),
            Err(ConfigError::Invalid { problems: p, .. }) => {
                let label = c
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                problems.extend(p.into_iter().map(|p| Problem {
                    path: p.path,
                    message: format!("{} (variant {label})", p.message),
                }));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !problems.is_empty() {
        problems.dedup_by(|a, b| a.path == b.path);
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        }
        .into());
    }
    let mut replays: HashMap<String, Arc<Replay>> = HashMap::new();
    for sc in &scenarios {
        let sig = data_signature(sc);
        if !replays.contains_key(&sig) {
            replays.insert(sig, Arc::new(Replay::load(&sc.history)?));
        }
    }
    let rows: Vec<Result<SweepRow, SimError>> = scenarios
        .par_iter()
        .zip(combos.par_iter())
        .map(|(sc, settings)| {
            let replay = &replays[&data_signature(sc)];
            let r = run(sc, replay, SimOptions::default())?;
            progress();
            let k = r.kpis;
            Ok(SweepRow {
                settings: settings.clone(),
                profit_eur: k.profit_eur,
                revenue_eur: k.revenue_eur,
                energy_cost_eur: k.energy_cost_eur,
                wear_cost_eur: k.wear_cost_eur,
                mining_mwh: k.mining_mwh,
                mining_from_import_mwh: k.mining_from_import_mwh,
                absorbed_share: k.absorbed_share,
                max_starts_in_a_day: k
                    .loads
                    .iter()
                    .map(|l| l.max_starts_in_a_day)
                    .max()
                    .unwrap_or(0),
                starts: k.loads.iter().map(|l| l.starts).sum(),
            })
        })
        .collect();
    let mut rows = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
    rows.sort_by(|a, b| b.profit_eur.total_cmp(&a.profit_eur));
    Ok(SweepResult {
        scenario: scenarios
            .first()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        keys: varies.iter().map(|v| v.key.clone()).collect(),
        rows,
    })
}

impl SweepResult {
    pub fn to_dataframe(&self) -> PolarsResult<DataFrame> {
        let mut cols: Vec<Column> = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let v: Vec<&str> = self.rows.iter().map(|r| r.settings[i].1.as_str()).collect();
            cols.push(Column::new(k.as_str().into(), v));
        }
        let f = |name: &str, g: &dyn Fn(&SweepRow) -> f64| {
            Column::new(name.into(), self.rows.iter().map(g).collect::<Vec<f64>>())
        };
        cols.push(f("profit_eur", &|r| r.profit_eur));
        cols.push(f("revenue_eur", &|r| r.revenue_eur));
        cols.push(f("energy_cost_eur", &|r| r.energy_cost_eur));
        cols.push(f("wear_cost_eur", &|r| r.wear_cost_eur));
        cols.push(f("mining_mwh", &|r| r.mining_mwh));
        cols.push(f("mining_from_import_mwh", &|r| r.mining_from_import_mwh));
        cols.push(f("absorbed_share", &|r| r.absorbed_share));
        cols.push(Column::new(
            "max_starts_in_a_day".into(),
            self.rows
                .iter()
                .map(|r| r.max_starts_in_a_day)
                .collect::<Vec<u32>>(),
        ));
        cols.push(Column::new(
            "starts".into(),
            self.rows.iter().map(|r| r.starts).collect::<Vec<u64>>(),
        ));
        DataFrame::new_infer_height(cols)
    }

    /// The ranking as text.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let head: Vec<String> = self
            .keys
            .iter()
            .cloned()
            .chain(
                [
                    "profit EUR",
                    "mining MWh",
                    "from import MWh",
                    "absorbed %",
                    "max starts/day",
                ]
                .map(String::from),
            )
            .collect();
        let body: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                r.settings
                    .iter()
                    .map(|(_, v)| v.clone())
                    .chain([
                        format!("{:.0}", r.profit_eur),
                        format!("{:.1}", r.mining_mwh),
                        format!("{:.1}", r.mining_from_import_mwh),
                        format!("{:.1}", 100.0 * r.absorbed_share),
                        r.max_starts_in_a_day.to_string(),
                    ])
                    .collect()
            })
            .collect();
        let widths: Vec<usize> = (0..head.len())
            .map(|i| {
                body.iter()
                    .map(|r| r[i].len())
                    .chain([head[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect::<Vec<_>>()
                .join("  ")
        };
        s.push_str(&line(&head));
        s.push('\n');
        for r in &body {
            s.push_str(&line(r));
            s.push('\n');
        }
        s
    }
}
