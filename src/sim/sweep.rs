//! Parameter sweeps: every combination of `--vary key=v1,v2,...` run in parallel (rayon)
//! over data loaded once, ranked by a chosen KPI (the site's value by default: ranked by
//! mining profit, a smaller grid connection looks better only because it curtails more).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use super::site::{eur, mwh};
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

/// The width of each column of a text table: its widest cell, heading included.
pub(crate) fn column_widths(head: &[String], rows: &[Vec<String>]) -> Vec<usize> {
    (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect()
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

/// A KPI a sweep ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RankBy {
    /// The site total with mining (export revenue - import cost + mining revenue - wear).
    #[default]
    SiteValue,
    /// Mining revenue - the value of the energy it took - wear (= the value mining adds).
    MiningProfit,
    /// Value added per MWh mined.
    ValuePerMwh,
    /// Share of the otherwise-curtailed energy mined.
    AbsorbedShare,
    /// Otherwise-curtailed energy mined, MWh.
    CurtailmentMined,
    /// Mining energy, MWh.
    MiningEnergy,
    /// Mining's energy from grid import, MWh: less is better.
    GridImport,
    /// Starts over all units: fewer is better.
    Starts,
    /// Mining's carbon, t CO2eq: less is better.
    Co2,
}

/// Every ranking KPI: (value, name on the command line, label in the table, higher is
/// better). One table, so the parser, the help and the labels cannot disagree.
const RANKINGS: [(RankBy, &str, &str, bool); 9] = [
    (RankBy::SiteValue, "site_value", "site value EUR", true),
    (
        RankBy::MiningProfit,
        "mining_profit",
        "mining profit EUR",
        true,
    ),
    (
        RankBy::ValuePerMwh,
        "value_per_mwh",
        "value added EUR/MWh",
        true,
    ),
    (RankBy::AbsorbedShare, "absorbed_share", "absorbed %", true),
    (
        RankBy::CurtailmentMined,
        "curtailment_mined",
        "curtailment mined MWh",
        true,
    ),
    (RankBy::MiningEnergy, "mining_mwh", "mining MWh", true),
    (RankBy::GridImport, "grid_import", "from import MWh", false),
    (RankBy::Starts, "starts", "starts", false),
    (RankBy::Co2, "co2", "mining t CO2eq", false),
];

impl RankBy {
    /// The names `--rank-by` takes.
    pub const NAMES: [&'static str; RANKINGS.len()] = {
        let mut n = [""; RANKINGS.len()];
        let mut i = 0;
        while i < RANKINGS.len() {
            n[i] = RANKINGS[i].1;
            i += 1;
        }
        n
    };

    fn entry(self) -> &'static (RankBy, &'static str, &'static str, bool) {
        RANKINGS
            .iter()
            .find(|r| r.0 == self)
            .expect("every RankBy is in RANKINGS")
    }

    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// What the table calls it, with its unit.
    pub fn label(self) -> &'static str {
        self.entry().2
    }

    pub fn higher_is_better(self) -> bool {
        self.entry().3
    }

    /// The row's value of this KPI; `None` where it has none (value per MWh of a
    /// variant that mined nothing).
    pub fn of(self, r: &SweepRow) -> Option<f64> {
        Some(match self {
            RankBy::SiteValue => r.site_value_eur,
            RankBy::MiningProfit => r.profit_eur,
            RankBy::ValuePerMwh => return r.value_added_eur_per_mwh,
            RankBy::AbsorbedShare => r.absorbed_share,
            RankBy::CurtailmentMined => r.mining_from_curtailment_mwh,
            RankBy::MiningEnergy => r.mining_mwh,
            RankBy::GridImport => r.mining_from_import_mwh,
            RankBy::Starts => r.starts as f64,
            RankBy::Co2 => r.mining_co2eq_t,
        })
    }

    /// As the table prints it.
    fn show(self, r: &SweepRow) -> String {
        match (self, self.of(r)) {
            (_, None) => "-".into(),
            (RankBy::AbsorbedShare, Some(v)) => format!("{:.1}", 100.0 * v),
            (RankBy::Starts, Some(v)) => format!("{v:.0}"),
            (RankBy::SiteValue | RankBy::MiningProfit, Some(v)) => eur(v),
            (RankBy::ValuePerMwh | RankBy::Co2, Some(v)) => format!("{v:.1}"),
            (_, Some(v)) => mwh(v),
        }
    }
}

impl std::str::FromStr for RankBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RANKINGS
            .iter()
            .find(|r| r.1 == s)
            .map(|r| r.0)
            .ok_or_else(|| format!("{s:?}: expected one of {}", RankBy::NAMES.join(", ")))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub settings: Vec<(String, String)>,
    /// The site total with mining, EUR.
    pub site_value_eur: f64,
    /// The site total without mining, EUR (the same for every variant that keeps the
    /// site and its data).
    pub site_value_without_mining_eur: f64,
    /// `site_value_eur` - `site_value_without_mining_eur`.
    pub value_added_eur: f64,
    /// Per MWh mined; absent when nothing was mined.
    pub value_added_eur_per_mwh: Option<f64>,
    pub export_revenue_eur: f64,
    /// Everything imported, site load and mining, EUR.
    pub import_cost_eur: f64,
    pub mining_from_curtailment_mwh: f64,
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
    /// Mining's carbon (rated energy), t CO2eq.
    pub mining_co2eq_t: f64,
    /// Grid energy mined with no intensity known, MWh (not in `mining_co2eq_t`).
    pub grid_unrated_mwh: f64,
}

#[derive(Debug, Clone)]
pub struct SweepResult {
    pub scenario: String,
    pub keys: Vec<String>,
    /// What `rows` are ranked by.
    pub rank_by: RankBy,
    /// Best first by `rank_by`.
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
            let site = &k.site.run;
            Ok(SweepRow {
                settings: settings.clone(),
                site_value_eur: site.with_mining.site_total_eur,
                site_value_without_mining_eur: site.without_mining.site_total_eur,
                value_added_eur: site.value_added_eur,
                value_added_eur_per_mwh: site.value_added_eur_per_mwh,
                export_revenue_eur: site.with_mining.export_revenue_eur,
                import_cost_eur: site.with_mining.import_cost_eur,
                mining_from_curtailment_mwh: k.mining_from_curtailment_mwh,
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
                mining_co2eq_t: k.carbon.mining_co2eq_t,
                grid_unrated_mwh: k.carbon.grid_unrated_mwh,
            })
        })
        .collect();
    let rows = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut result = SweepResult {
        scenario: scenarios
            .first()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        keys: varies.iter().map(|v| v.key.clone()).collect(),
        rank_by: RankBy::default(),
        rows,
    };
    result.rank(RankBy::default());
    Ok(result)
}

impl SweepResult {
    /// Ranks the rows best first by `by`; rows without a value go last, ties keep the
    /// order of the combinations.
    pub fn rank(&mut self, by: RankBy) {
        self.rank_by = by;
        self.rows.sort_by(|a, b| match (by.of(a), by.of(b)) {
            (Some(x), Some(y)) if by.higher_is_better() => y.total_cmp(&x),
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    }

    pub fn to_dataframe(&self) -> PolarsResult<DataFrame> {
        let mut cols: Vec<Column> = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let v: Vec<&str> = self.rows.iter().map(|r| r.settings[i].1.as_str()).collect();
            cols.push(Column::new(k.as_str().into(), v));
        }
        let f = |name: &str, g: &dyn Fn(&SweepRow) -> f64| {
            Column::new(name.into(), self.rows.iter().map(g).collect::<Vec<f64>>())
        };
        cols.push(Column::new(
            "rank".into(),
            (1..=self.rows.len() as u32).collect::<Vec<u32>>(),
        ));
        cols.push(Column::new(
            "rank_by".into(),
            vec![self.rank_by.name(); self.rows.len()],
        ));
        cols.push(f("site_value_eur", &|r| r.site_value_eur));
        cols.push(f("site_value_without_mining_eur", &|r| {
            r.site_value_without_mining_eur
        }));
        cols.push(f("value_added_eur", &|r| r.value_added_eur));
        cols.push(Column::new(
            "value_added_eur_per_mwh".into(),
            self.rows
                .iter()
                .map(|r| r.value_added_eur_per_mwh)
                .collect::<Vec<Option<f64>>>(),
        ));
        cols.push(f("export_revenue_eur", &|r| r.export_revenue_eur));
        cols.push(f("import_cost_eur", &|r| r.import_cost_eur));
        cols.push(f("mining_from_curtailment_mwh", &|r| {
            r.mining_from_curtailment_mwh
        }));
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
        cols.push(f("mining_co2eq_t", &|r| r.mining_co2eq_t));
        cols.push(f("grid_unrated_mwh", &|r| r.grid_unrated_mwh));
        DataFrame::new_infer_height(cols)
    }

    /// The "best:" line: the top row's settings and the KPI it won on.
    pub fn best_line(&self) -> Option<String> {
        let best = self.rows.first()?;
        let by = self.rank_by;
        let settings: Vec<String> = best
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Some(format!(
            "best: {} ({}: {}, ranked by {}; site value {} EUR, mining profit {} EUR)",
            settings.join(" "),
            by.label(),
            by.show(best),
            by.name(),
            eur(best.site_value_eur),
            eur(best.profit_eur)
        ))
    }

    /// The ranking as text: a line naming the KPI, then the ranked KPI's column first
    /// (marked), then the usual ones.
    pub fn table(&self) -> String {
        let by = self.rank_by;
        let shown = [
            RankBy::SiteValue,
            RankBy::MiningProfit,
            RankBy::MiningEnergy,
            RankBy::GridImport,
            RankBy::AbsorbedShare,
            RankBy::Co2,
        ];
        let others: Vec<RankBy> = shown.into_iter().filter(|k| *k != by).collect();
        let mut s = format!(
            "ranked by {} ({}), best first\n",
            by.name(),
            if by.higher_is_better() {
                "higher is better"
            } else {
                "lower is better"
            }
        );
        let head: Vec<String> = self
            .keys
            .iter()
            .cloned()
            .chain([format!("[{}]", by.label())])
            .chain(others.iter().map(|k| k.label().to_string()))
            .chain(["max starts/day".to_string()])
            .collect();
        let body: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                r.settings
                    .iter()
                    .map(|(_, v)| v.clone())
                    .chain([by.show(r)])
                    .chain(others.iter().map(|k| k.show(r)))
                    .chain([r.max_starts_in_a_day.to_string()])
                    .collect()
            })
            .collect();
        let widths = column_widths(&head, &body);
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
