//! Meaning: raw shapes in, typed values out, every problem gathered with its key path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::*;
use super::{relative_to, ConfigError, Problems};
use crate::clock::Timestamp;
use crate::policy::{FrequencyResponse, Mode, OperatorAction, PolicyParams};
use crate::signal::plausible;
use crate::site::{
    ExportValue, GridConnection, LoadKind, LoadSpec, PowerLevels, Tariff, WearLimits,
};
use crate::units::{parse_watts, Hertz, PricePerMwh, Watts};

/// A validated simulation scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub file: PathBuf,
    pub step: Duration,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub interpolate: Interpolate,
    pub series: Vec<SeriesSpec>,
    pub pv: Option<ColumnRef>,
    pub wind: Option<ColumnRef>,
    pub base_load: PowerSource,
    pub grid: GridConnection,
    pub price: PriceSource,
    pub tariff: Tariff,
    pub hashprice: HashpriceSource,
    pub loads: Vec<LoadSpec>,
    pub policy: PolicyParams,
    pub operator: Vec<OperatorEvent>,
    pub bounds: Bounds,
}

#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub name: String,
    pub path: PathBuf,
    pub time_column: String,
}

/// A column of a series and the factor that turns its numbers into the model's unit
/// (watts for power, EUR/MWh for prices, EUR/(PH/s·day) for hashprice).
#[derive(Debug, Clone)]
pub struct ColumnRef {
    pub series: String,
    pub column: String,
    pub scale: f64,
}

#[derive(Debug, Clone)]
pub enum PowerSource {
    Constant(Watts),
    Series(ColumnRef),
}

#[derive(Debug, Clone)]
pub enum PriceSource {
    Constant(PricePerMwh),
    Series(ColumnRef),
}

#[derive(Debug, Clone)]
pub enum HashpriceSource {
    Constant(crate::units::Hashprice),
    Series(ColumnRef),
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
            "unknown key (expected name, description, policy, step, start, end, interpolate, series, site, tariff, hashprice, loads, operator, bounds)",
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
            SeriesSpec {
                path: relative_to(path, &s.file),
                name: s.name,
                time_column: s.time_column,
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

    let operator = operator
        .into_iter()
        .filter_map(|(i, e)| {
            let at = format!("operator[{i}]");
            let t = timestamp(&mut p, &format!("{at}.at"), &e.at)?;
            let until = e
                .until
                .and_then(|u| timestamp(&mut p, &format!("{at}.until"), &u));
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
            step: step?,
            start,
            end,
            interpolate,
            series,
            pv,
            wind,
            base_load,
            grid,
            price,
            tariff,
            hashprice: hashprice?,
            loads,
            policy: policy?,
            operator,
            bounds,
        })
    })();
    p.into_result(path, scenario)
}

#[derive(serde::Deserialize)]
struct StepOnly(#[serde(deserialize_with = "crate::units::de_duration")] Duration);

/// Checks a `[policy]` table; `at` is its key path.
pub fn validate_policy(p: &mut Problems, at: &str, raw: RawPolicy) -> Option<PolicyParams> {
    let mode = match raw.mode.as_str() {
        "surplus-only" => Some(Mode::SurplusOnly),
        "economic" => Some(Mode::Economic),
        other => {
            p.push(
                format!("{at}.mode"),
                format!("{other:?}: expected \"surplus-only\" or \"economic\""),
            );
            None
        }
    };
    price(p, &format!("{at}.margin_eur_mwh"), raw.margin_eur_mwh);
    if !(raw.hysteresis_eur_mwh.is_finite() && raw.hysteresis_eur_mwh >= 0.0) {
        p.push(
            format!("{at}.hysteresis_eur_mwh"),
            "must be a finite number >= 0",
        );
    } else {
        price(
            p,
            &format!("{at}.hysteresis_eur_mwh"),
            raw.hysteresis_eur_mwh,
        );
    }
    if raw.max_starts_per_day == Some(0) {
        p.push(
            format!("{at}.max_starts_per_day"),
            "0 would never start anything; omit it for no limit",
        );
    }
    if raw.max_signal_age.is_zero() {
        p.push(format!("{at}.max_signal_age"), "must be > 0");
    }
    let safe_limit = raw.safe_limit.unwrap_or(Watts::ZERO);
    non_negative(p, &format!("{at}.safe_limit"), safe_limit);
    let frequency = raw.frequency.map(|f| {
        for (key, hz) in [
            ("nominal_hz", f.nominal_hz),
            ("shed_below_hz", f.shed_below_hz),
            ("absorb_above_hz", f.absorb_above_hz),
        ] {
            // A threshold outside the range readings may have would never be crossed.
            let (lo, hi) = (plausible::MIN_FREQUENCY, plausible::MAX_FREQUENCY);
            if !(lo.0..=hi.0).contains(&hz) {
                p.push(
                    format!("{at}.frequency.{key}"),
                    format!("{hz} is outside {lo}..={hi}"),
                );
            }
        }
        if !(f.shed_below_hz < f.nominal_hz && f.nominal_hz < f.absorb_above_hz) {
            p.push(
                format!("{at}.frequency"),
                format!(
                    "need shed_below_hz < nominal_hz < absorb_above_hz, got {} < {} < {}",
                    f.shed_below_hz, f.nominal_hz, f.absorb_above_hz
                ),
            );
        }
        FrequencyResponse {
            nominal: Hertz(f.nominal_hz),
            shed_below: Hertz(f.shed_below_hz),
            absorb_above: Hertz(f.absorb_above_hz),
            hold: f.hold,
        }
    });
    Some(PolicyParams {
        mode: mode?,
        margin: PricePerMwh(raw.margin_eur_mwh),
        hysteresis: PricePerMwh(raw.hysteresis_eur_mwh),
        min_on: raw.min_on.unwrap_or_default(),
        min_off: raw.min_off.unwrap_or_default(),
        max_starts_per_day: raw.max_starts_per_day,
        max_signal_age: raw.max_signal_age,
        safe_limit,
        frequency,
    })
}

/// Most units one load group may have: each has a switching ledger in memory, and no site
/// has more miners than this behind one controller.
pub const MAX_UNITS: u32 = 1_000_000;

/// Takes one `[[loads]]` entry at `at`: its `kind` first, then that kind's own shape,
/// so that a bad key is reported at its own path (inside serde's tagged enums the path
/// is lost, and with it every problem after the first).
pub fn take_load(p: &mut Problems, at: &str, v: toml::Value) -> Option<RawLoad> {
    let mut t = table_of(p, at, v)?;
    let kind = t.remove("kind");
    match kind.as_ref().and_then(toml::Value::as_str) {
        Some("asic") => p.take(at, toml::Value::Table(t)).map(RawLoad::Asic),
        Some("cpu") => p.take(at, toml::Value::Table(t)).map(RawLoad::Cpu),
        _ => {
            p.push(
                format!("{at}.kind"),
                format!("{}: expected \"asic\" or \"cpu\"", show(kind.as_ref())),
            );
            None
        }
    }
}

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

/// Checks the loads, each with its index in the file, under the key path `at` (`loads`).
/// Their wear limits become the stricter of hardware and policy. Names must be unique:
/// they label telemetry series and MQTT topics.
pub fn validate_loads(p: &mut Problems, at: &str, loads: Vec<(usize, RawLoad)>) -> Vec<LoadSpec> {
    let mut names = std::collections::HashMap::new();
    let mut cpu_pools = 0;
    let key = at;
    let loads: Vec<LoadSpec> = loads
        .into_iter()
        .map(|(i, l)| {
            let at = format!("{key}[{i}]");
            let spec = match l {
                RawLoad::Asic(a) => {
                    if a.count == 0 {
                        p.push(format!("{at}.count"), "must be at least 1");
                    } else if a.count > MAX_UNITS {
                        p.push(
                            format!("{at}.count"),
                            format!("{} is more than {MAX_UNITS} units", a.count),
                        );
                    }
                    let levels = match a.min_power {
                        None => PowerLevels::OnOff,
                        Some(m) => {
                            if !(m.0 > 0.0 && m <= a.rated_power) {
                                p.push(
                                    format!("{at}.min_power"),
                                    format!(
                                        "{m} must be > 0 and at most rated_power {}",
                                        a.rated_power
                                    ),
                                );
                            }
                            PowerLevels::Range { min: m }
                        }
                    };
                    LoadSpec {
                        name: a.name,
                        kind: LoadKind::Asic,
                        // Clamped so a rejected count cannot allocate a ledger per unit.
                        count: a.count.min(MAX_UNITS),
                        rated_power: a.rated_power,
                        hashrate: a.hashrate,
                        levels,
                        ramp: a.ramp.unwrap_or_default(),
                        wake: a.wake.unwrap_or_default(),
                        wear: WearLimits {
                            min_on: a.min_on.unwrap_or_default(),
                            min_off: a.min_off.unwrap_or_default(),
                            max_starts_per_day: a.max_starts_per_day,
                        },
                    }
                }
                RawLoad::Cpu(c) => {
                    cpu_pools += 1;
                    LoadSpec {
                        name: c.name,
                        kind: LoadKind::Cpu,
                        count: 1,
                        rated_power: c.rated_power,
                        hashrate: c.hashrate,
                        levels: PowerLevels::Continuous,
                        ramp: Duration::ZERO,
                        wake: Duration::ZERO,
                        wear: WearLimits::default(),
                    }
                }
            };
            if !(spec.rated_power.0 > 0.0 && spec.rated_power.is_finite()) {
                p.push(
                    format!("{at}.rated_power"),
                    format!("{} must be > 0", spec.rated_power),
                );
            } else if !(spec.rated_power * f64::from(spec.count)).is_finite() {
                p.push(
                    format!("{at}.rated_power"),
                    format!(
                        "{} times {} units is not a finite power",
                        spec.rated_power, spec.count
                    ),
                );
            }
            if !(spec.hashrate.0 > 0.0 && spec.hashrate.0.is_finite()) {
                p.push(format!("{at}.hashrate"), "must be > 0");
            }
            if spec.name.trim().is_empty() {
                p.push(format!("{at}.name"), "must not be empty");
            }
            if let Some(first) = names.insert(spec.name.clone(), i) {
                p.push(
                    format!("{at}.name"),
                    format!("{:?} is used twice (also {key}[{first}])", spec.name),
                );
            }
            spec
        })
        .collect();
    if cpu_pools > 1 {
        p.push(key, "at most one cpu pool");
    }
    loads
}

/// `safe_limit` is the most mining allowed while the signals are stale: the site cannot
/// supply more than its import limit plus its generation, so more is a config mistake
/// (it would read as "no limit"). `generation_keys` names where generation is stated.
pub fn safe_limit_within(
    p: &mut Problems,
    at: &str,
    safe_limit: Watts,
    import_limit: Watts,
    generation: Watts,
    generation_keys: &str,
) {
    let most = import_limit + generation;
    if safe_limit > most {
        p.push(
            at,
            format!(
                "{safe_limit} is more than the import limit {import_limit} plus the generation capacity {generation} \
                 ({generation_keys}): it is the most mining allowed while blind"
            ),
        );
    }
}

/// Checks what export earns: `"day-ahead"` or `{ fixed_eur_mwh = ... }`.
pub fn export_value(p: &mut Problems, at: &str, raw: RawExport) -> ExportValue {
    match raw {
        RawExport::Named(n) if n == "day-ahead" => ExportValue::DayAhead,
        RawExport::Named(n) => {
            p.push(
                at,
                format!("{n:?}: expected \"day-ahead\" or {{ fixed_eur_mwh = ... }}"),
            );
            ExportValue::DayAhead
        }
        RawExport::Fixed { fixed_eur_mwh } => {
            price(p, &format!("{at}.fixed_eur_mwh"), fixed_eur_mwh);
            ExportValue::Fixed(PricePerMwh(fixed_eur_mwh))
        }
    }
}

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

fn timestamp(p: &mut Problems, at: &str, s: &str) -> Option<Timestamp> {
    Timestamp::parse(s).map_err(|e| p.push(at, e)).ok()
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

/// A price in EUR/MWh: finite and within the range a price signal may have.
pub fn price(p: &mut Problems, at: &str, v: f64) {
    let max = plausible::MAX_PRICE;
    if !(v.is_finite() && v.abs() <= max.0) {
        p.push(
            at,
            format!("{v} must be a finite price within -{max}..={max}"),
        );
    }
}

/// A hashprice in EUR per PH/s per day: finite, >= 0 and within the signal range.
pub fn hashprice_value(p: &mut Problems, at: &str, v: f64) {
    let max = plausible::MAX_HASHPRICE;
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

fn finite(p: &mut Problems, at: &str, v: f64) {
    if !v.is_finite() {
        p.push(at, format!("{v} must be a finite number"));
    }
}
