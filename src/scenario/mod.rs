//! Scenario files (`simulations/*.toml`): a site, its history, its policy and what the
//! grid operator did, checked into a typed `Scenario` the simulator runs; and policy case
//! files (`policies/*.toml` cases, [`cases`]). The policy itself reads no files: this is
//! where they are read.

pub mod cases;

use std::collections::HashSet;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::Timestamp;
use crate::config::{
    finite, hashprice_value, inline_policy, non_negative, price, read_table, relative_to,
    timestamp, ConfigError, Override, Problems,
};
use crate::policy::config::{safe_limit_within, validate_policy, RawPolicy};
use crate::policy::PolicyParams;
use crate::signal::series::{
    CarbonMix, ColumnRef, HashpriceSource, History, Interpolate, PowerSource, PriceSource,
    SeriesSpec,
};
use crate::signal::OperatorAction;
use crate::site::carbon::{validate_factors, EmissionFactors, RawCarbon};
use crate::site::config::{export_value, take_load, validate_loads, RawExport, RawLoad};
use crate::site::{GridConnection, LoadSpec, Tariff};
use crate::units::{de_duration, de_watts, parse_watts, PricePerMwh, Watts};

/// A validated simulation scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub file: PathBuf,
    /// What the replay reads, and on which steps.
    pub history: History,
    pub grid: GridConnection,
    pub tariff: Tariff,
    pub loads: Vec<LoadSpec>,
    pub policy: PolicyParams,
    pub operator: Vec<OperatorEvent>,
    pub bounds: Bounds,
    /// Where the site is (`site.latitude`, `site.longitude`), for the planner's PV shape.
    pub location: Option<crate::site::solar::Location>,
    /// The emission factors (`[carbon]`, defaults without it): the grid mix's, when
    /// `history.carbon` reads one, and the own generation's.
    pub carbon: EmissionFactors,
    /// Installed PV and wind where the scenario states it (`site.pv.capacity`, ...): the
    /// production device the ledger's certificates name.
    pub capacity: (Option<Watts>, Option<Watts>),
}

/// A grid-operator command replayed at a point in simulated time.
#[derive(Debug, Clone)]
pub struct OperatorEvent {
    pub at: Timestamp,
    pub action: OperatorAction,
    pub until: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct Bounds {
    pub min_profit_eur: Option<f64>,
    pub min_absorbed_share: Option<f64>,
    pub min_ratio_to_optimum: Option<f64>,
    pub max_grid_import_mwh: Option<f64>,
    pub max_starts_per_device_day: Option<f64>,
}

/// Checks a scenario table (policy already inlined) and builds the typed `Scenario`.
pub fn validate_scenario(path: &Path, mut table: toml::Table) -> Result<Scenario, ConfigError> {
    let mut p = Problems::default();
    // Each section on its own, so one broken section does not hide the others.
    let name: Option<String> = p.section(&mut table, "name");
    let description: String = table
        .remove("description")
        .and_then(|v| p.take("description", v))
        .unwrap_or_default();
    let step = match table.remove("step") {
        Some(v) => p.take::<StepOnly>("step", v).map(|s| s.0),
        None => Some(Duration::from_secs(60)),
    };
    let start: Option<Option<String>> =
        Some(table.remove("start").and_then(|v| p.take("start", v)));
    let end: Option<Option<String>> = Some(table.remove("end").and_then(|v| p.take("end", v)));
    let interpolate: Interpolate = table
        .remove("interpolate")
        .and_then(|v| p.take("interpolate", v))
        .unwrap_or_default();
    let series: Vec<(usize, RawSeries)> = p.array(&mut table, "series", true);
    let site: Option<RawSite> = p.section(&mut table, "site");
    let tariff: Option<RawTariff> = p.section(&mut table, "tariff");
    let hashprice: Option<RawHashprice> = p.section(&mut table, "hashprice");
    let carbon: Option<RawCarbon> = table.remove("carbon").and_then(|v| p.take("carbon", v));
    let loads: Vec<(usize, RawLoad)> = p.array_with(&mut table, "loads", true, take_load);
    let policy: Option<RawPolicy> = p.section(&mut table, "policy");
    let operator: Vec<(usize, RawOperatorEvent)> = p.array(&mut table, "operator", false);
    let bounds: RawBounds = table
        .remove("bounds")
        .and_then(|v| p.take("bounds", v))
        .unwrap_or_default();
    for key in table.keys() {
        p.push(
            key.clone(),
            "unknown key (expected name, description, policy, step, start, end, interpolate, series, site, tariff, hashprice, carbon, loads, operator, bounds)",
        );
    }

    if let Some(step) = step {
        if step < Duration::from_secs(1) || step > Duration::from_secs(3600) {
            p.push("step", format!("{step:?} is outside 1s..=1h"));
        }
        if step.subsec_millis() != 0 {
            p.push("step", "must be a whole number of seconds");
        }
    }
    let start = start.flatten().and_then(|s| timestamp(&mut p, "start", &s));
    let end = end.flatten().and_then(|s| timestamp(&mut p, "end", &s));
    if let (Some(a), Some(b)) = (start, end) {
        if b <= a {
            p.push("end", format!("{b} is not after start {a}"));
        } else if let Some(step) = step.filter(|&s| b.since(a) < s) {
            // Else the run has no step at all, and succeeds with nothing in it.
            p.push(
                "end",
                format!(
                    "{b} is less than one step ({}) after start {a}",
                    crate::units::format_duration(step)
                ),
            );
        }
    }

    let mut names = HashSet::new();
    let series: Vec<SeriesSpec> = series
        .into_iter()
        .map(|(i, s)| {
            if !names.insert(s.name.clone()) {
                p.push(
                    format!("series[{i}].name"),
                    format!("{:?} is defined twice", s.name),
                );
            }
            if s.max_age.is_some_and(|a| a.is_zero()) {
                p.push(format!("series[{i}].max_age"), "must be more than 0 s");
            }
            SeriesSpec {
                path: relative_to(path, &s.file),
                name: s.name,
                time_column: s.time_column,
                max_age: s.max_age,
            }
        })
        .collect();
    let column = |p: &mut Problems, at: &str, series: &str, column: &str, scale: f64| {
        if !names.contains(series) {
            p.push(
                format!("{at}.series"),
                format!("no series named {series:?}"),
            );
        }
        ColumnRef {
            series: series.to_string(),
            column: column.to_string(),
            scale,
        }
    };

    let mut site_parts = None;
    let mut location = None;
    let mut capacity = (None, None);
    // Installed generation where the scenario states it (`capacity`), for `safe_limit`.
    let mut generation = Watts::ZERO;
    if let Some(site) = site {
        let mut generator = |p: &mut Problems, at: &str, g: Option<RawGenerator>| {
            let g = g?;
            if let Some(c) = g.capacity {
                generation += c;
            }
            let unit = power_unit(p, &format!("{at}.unit"), &g.unit);
            let scale = match (g.capacity, g.reference_capacity) {
                (Some(c), Some(r)) if r.0 > 0.0 && c.0 >= 0.0 => c / r,
                (None, None) => 1.0,
                (Some(c), Some(r)) => {
                    p.push(
                        format!("{at}.reference_capacity"),
                        format!("capacity {c} and reference_capacity {r} must be >= 0 and > 0"),
                    );
                    1.0
                }
                _ => {
                    p.push(at, "capacity and reference_capacity go together");
                    1.0
                }
            };
            Some(column(p, at, &g.series, &g.column, unit * scale))
        };
        location = crate::site::config::location(&mut p, "site", site.latitude, site.longitude);
        capacity = (
            site.pv.as_ref().and_then(|g| g.capacity),
            site.wind.as_ref().and_then(|g| g.capacity),
        );
        let pv = generator(&mut p, "site.pv", site.pv);
        let wind = generator(&mut p, "site.wind", site.wind);
        if pv.is_none() && wind.is_none() {
            p.push("site", "needs pv, wind or both");
        }
        let base_load = match site.base_load {
            RawPowerSource::Constant(w) => {
                non_negative(&mut p, "site.base_load", w);
                PowerSource::Constant(w)
            }
            RawPowerSource::Series(c) => {
                let unit = power_unit(
                    &mut p,
                    "site.base_load.unit",
                    c.unit.as_deref().unwrap_or("W"),
                );
                PowerSource::Series(column(&mut p, "site.base_load", &c.series, &c.column, unit))
            }
        };
        non_negative(&mut p, "site.export_limit", site.export_limit);
        non_negative(&mut p, "site.import_limit", site.import_limit);
        generation = generation.max(Watts::ZERO);
        site_parts = Some((
            pv,
            wind,
            base_load,
            GridConnection {
                export_limit: site.export_limit,
                import_limit: site.import_limit,
            },
        ));
    }

    let tariff = tariff.map(|t| {
        price(
            &mut p,
            "tariff.import_adder_eur_mwh",
            t.import_adder_eur_mwh,
        );
        let export = export_value(&mut p, "tariff.export", t.export);
        let price = match t.price {
            RawPrice::Constant(v) => {
                price(&mut p, "tariff.price", v);
                PriceSource::Constant(PricePerMwh(v))
            }
            RawPrice::Series(c) => {
                PriceSource::Series(column(&mut p, "tariff.price", &c.series, &c.column, 1.0))
            }
        };
        (
            price,
            Tariff {
                import_adder: PricePerMwh(t.import_adder_eur_mwh),
                export,
            },
        )
    });

    let hashprice = hashprice.map(|h| match h {
        RawHashprice::Constant(v) => {
            hashprice_value(&mut p, "hashprice", v);
            HashpriceSource::Constant(crate::units::Hashprice(v))
        }
        RawHashprice::Series(c) => {
            HashpriceSource::Series(column(&mut p, "hashprice", &c.series, &c.column, 1.0))
        }
    });

    let factors = carbon
        .as_ref()
        .map(|c| validate_factors(&mut p, "carbon", c))
        .unwrap_or_default();
    let carbon_mix = carbon.and_then(|c| {
        let mix = c.mix?;
        Some(CarbonMix {
            series: SeriesSpec {
                name: "carbon.mix".into(),
                path: relative_to(path, &mix),
                time_column: c.time_column,
                max_age: None,
            },
            factors: factors.clone(),
        })
    });

    let policy = policy.and_then(|raw| validate_policy(&mut p, "policy", raw));
    let loads = validate_loads(&mut p, "loads", loads);
    if let (Some(policy), Some((.., grid))) = (&policy, &site_parts) {
        safe_limit_within(
            &mut p,
            "policy.safe_limit",
            policy.safe_limit,
            grid.import_limit,
            generation,
            "site.pv.capacity and site.wind.capacity",
        );
    }
    if let (Some(policy), Some((pv, ..))) = (&policy, &site_parts) {
        crate::site::config::plan_needs_location(
            &mut p,
            "site",
            policy.plan.is_some(),
            pv.is_some(),
            location,
            false,
        );
    }

    let operator = operator
        .into_iter()
        .filter_map(|(i, e)| {
            let at = format!("operator[{i}]");
            let t = timestamp(&mut p, &format!("{at}.at"), &e.at)?;
            let until = e
                .until
                .and_then(|u| timestamp(&mut p, &format!("{at}.until"), &u));
            if let Some(u) = until.filter(|&u| u <= t) {
                // A command that ends before it starts never holds: a typo, not a plan.
                p.push(format!("{at}.until"), format!("{u} is not after at {t}"));
            }
            let action = operator_action(&mut p, &at, &e.act, e.limit, e.by, e.setpoint)?;
            Some(OperatorEvent {
                at: t,
                action,
                until,
            })
        })
        .collect();

    for (key, v) in [
        ("min_profit_eur", bounds.min_profit_eur),
        ("min_absorbed_share", bounds.min_absorbed_share),
        ("min_ratio_to_optimum", bounds.min_ratio_to_optimum),
        ("max_grid_import_mwh", bounds.max_grid_import_mwh),
        (
            "max_starts_per_device_day",
            bounds.max_starts_per_device_day,
        ),
    ] {
        if let Some(v) = v {
            // A NaN bound would pass every run: no comparison with it is ever true.
            finite(&mut p, &format!("bounds.{key}"), v);
        }
    }
    let bounds = Bounds {
        min_profit_eur: bounds.min_profit_eur,
        min_absorbed_share: bounds.min_absorbed_share,
        min_ratio_to_optimum: bounds.min_ratio_to_optimum,
        max_grid_import_mwh: bounds.max_grid_import_mwh,
        max_starts_per_device_day: bounds.max_starts_per_device_day,
    };

    let scenario = (|| {
        let (pv, wind, base_load, grid) = site_parts?;
        let (price, tariff) = tariff?;
        Some(Scenario {
            name: name?,
            description,
            file: path.to_path_buf(),
            history: History {
                step: step?,
                start,
                end,
                interpolate,
                series,
                pv,
                wind,
                base_load,
                price,
                hashprice: hashprice?,
                carbon: carbon_mix,
            },
            grid,
            tariff,
            loads,
            policy: policy?,
            operator,
            bounds,
            location,
            carbon: factors,
            capacity,
        })
    })();
    p.into_result(path, scenario)
}

#[derive(serde::Deserialize)]
struct StepOnly(#[serde(deserialize_with = "crate::units::de_duration")] Duration);

fn operator_action(
    p: &mut Problems,
    at: &str,
    act: &str,
    limit: Option<Watts>,
    by: Option<Watts>,
    setpoint: Option<Watts>,
) -> Option<OperatorAction> {
    for (key, v) in [("limit", limit), ("by", by), ("setpoint", setpoint)] {
        if let Some(w) = v {
            non_negative(p, &format!("{at}.{key}"), w);
        }
    }
    let need = |p: &mut Problems, key: &str, v: Option<Watts>| {
        if v.is_none() {
            p.push(
                format!("{at}.{key}"),
                format!("missing: act = {act:?} needs {key}"),
            );
        }
        v
    };
    match act {
        "curtail" => match (limit, by) {
            (Some(l), None) => Some(OperatorAction::CurtailTo(l)),
            (None, Some(b)) => Some(OperatorAction::CurtailBy(b)),
            _ => {
                p.push(at.to_string(), "curtail needs exactly one of limit or by");
                None
            }
        },
        "setpoint" => need(p, "setpoint", setpoint).map(OperatorAction::Setpoint),
        "release" => Some(OperatorAction::Release),
        other => {
            p.push(
                format!("{at}.act"),
                format!("{other:?}: expected curtail, setpoint or release"),
            );
            None
        }
    }
}

fn power_unit(p: &mut Problems, at: &str, unit: &str) -> f64 {
    match parse_watts(&format!("1 {unit}")) {
        Ok(w) => w.0,
        Err(_) => {
            p.push(at, format!("{unit:?}: expected W, kW, MW or GW"));
            1.0
        }
    }
}

/// Reads a scenario file, inlines its policy file and applies `overrides`.
pub fn load_scenario_table(
    path: &Path,
    overrides: &[Override],
) -> Result<toml::Table, ConfigError> {
    let mut table = read_table(path)?;
    inline_policy(path, &mut table)?;
    let mut problems = Vec::new();
    for o in overrides {
        if let Err(p) = o.apply(&mut table) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(table)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Loads and validates a scenario.
pub fn load_scenario(path: &Path, overrides: &[Override]) -> Result<Scenario, ConfigError> {
    let table = load_scenario_table(path, overrides)?;
    validate_scenario(path, table)
}

/// A simulation scenario (`simulations/*.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Inlined from the file that `policy = "path"` names, before deserialising.
    pub policy: RawPolicy,
    #[serde(default = "default_step", deserialize_with = "de_duration")]
    pub step: Duration,
    pub start: Option<String>,
    pub end: Option<String>,
    #[serde(default)]
    pub interpolate: Interpolate,
    pub series: Vec<RawSeries>,
    pub site: RawSite,
    pub tariff: RawTariff,
    pub hashprice: RawHashprice,
    #[serde(default)]
    pub carbon: Option<RawCarbon>,
    pub loads: Vec<RawLoad>,
    #[serde(default)]
    pub operator: Vec<RawOperatorEvent>,
    #[serde(default)]
    pub bounds: RawBounds,
}

fn default_step() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeries {
    pub name: String,
    /// CSV or parquet, relative to the scenario file.
    pub file: String,
    #[serde(default = "default_time_column")]
    pub time_column: String,
    /// A reading from this series older than this is dropped, as a live signal's
    /// `max_age` drops it, so the policy sees it stale. Default: only the policy's
    /// `max_signal_age` applies.
    #[serde(default, deserialize_with = "crate::units::de_opt_duration")]
    pub max_age: Option<Duration>,
}

fn default_time_column() -> String {
    "timestamp".into()
}

/// A column of a named series, with the unit its numbers are in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumnRef {
    pub series: String,
    pub column: String,
    /// Unit of the numbers in the column: `W`, `kW`, `MW` for power; ignored for prices.
    #[serde(default)]
    pub unit: Option<String>,
}

/// A generator scaled from a series: `capacity / reference_capacity` times the column.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGenerator {
    pub series: String,
    pub column: String,
    pub unit: String,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    pub capacity: Option<Watts>,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    pub reference_capacity: Option<Watts>,
}

#[derive(Debug)]
pub enum RawPowerSource {
    Constant(Watts),
    Series(RawColumnRef),
}

/// A constant power or a series column. Not `untagged` on the two: a bare number would
/// get "did not match any variant" rather than the unit it needs.
impl<'de> Deserialize<'de> for RawPowerSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::IntoDeserializer;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Num(f64),
            Str(String),
            Series(RawColumnRef),
        }
        match Shape::deserialize(d)? {
            Shape::Num(n) => de_watts(n.into_deserializer()).map(RawPowerSource::Constant),
            Shape::Str(s) => de_watts(s.into_deserializer()).map(RawPowerSource::Constant),
            Shape::Series(c) => Ok(RawPowerSource::Series(c)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    #[serde(default)]
    pub pv: Option<RawGenerator>,
    #[serde(default)]
    pub wind: Option<RawGenerator>,
    pub base_load: RawPowerSource,
    #[serde(deserialize_with = "de_watts")]
    pub export_limit: Watts,
    #[serde(deserialize_with = "de_watts")]
    pub import_limit: Watts,
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTariff {
    /// The day-ahead price (EUR/MWh): a series column or a constant.
    pub price: RawPrice,
    /// Added to the day-ahead price for every MWh imported: network fees, levies, taxes.
    pub import_adder_eur_mwh: f64,
    /// `"day-ahead"` or `{ fixed_eur_mwh = 80.0 }`.
    pub export: RawExport,
}

/// EUR/MWh: a constant or a series column.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPrice {
    Constant(f64),
    Series(RawColumnRef),
}

/// EUR per PH/s per day: a constant or a series column.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawHashprice {
    Constant(f64),
    Series(RawColumnRef),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperatorEvent {
    pub at: String,
    pub act: String,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    pub limit: Option<Watts>,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    pub by: Option<Watts>,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    pub setpoint: Option<Watts>,
    pub until: Option<String>,
}

/// Bounds the scenario's KPIs must stay within; `simulate` fails when one is broken.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBounds {
    pub min_profit_eur: Option<f64>,
    pub min_absorbed_share: Option<f64>,
    pub min_ratio_to_optimum: Option<f64>,
    pub max_grid_import_mwh: Option<f64>,
    pub max_starts_per_device_day: Option<f64>,
}
