//! The site's sections as files give them (`[[loads]]`, the export tariff) and their
//! checks, into the typed site model.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ExportValue, LoadKind, LoadSpec, PowerLevels, WearLimits, MAX_START_COST_EUR};
use crate::config::{price, show, table_of, Problems};
use crate::units::{de_hashrate, de_opt_duration, de_watts, HashRate, PricePerMwh, Watts};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawExport {
    Named(String),
    Fixed { fixed_eur_mwh: f64 },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RawLoad {
    Asic(RawAsicGroup),
    Cpu(RawCpuPool),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsicGroup {
    pub name: String,
    pub count: u32,
    /// Power of one unit at full output.
    #[serde(deserialize_with = "de_watts")]
    pub rated_power: Watts,
    /// Hash rate of one unit at full output.
    #[serde(deserialize_with = "de_hashrate")]
    pub hashrate: HashRate,
    /// Lowest power-limit setting the firmware accepts; absent means on/off only.
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    pub min_power: Option<Watts>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub ramp: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub wake: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_on: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_off: Option<Duration>,
    #[serde(default)]
    pub max_starts_per_day: Option<u32>,
    /// Wear one start costs, EUR (default 0).
    #[serde(default)]
    pub start_cost_eur: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCpuPool {
    pub name: String,
    #[serde(deserialize_with = "de_watts")]
    pub rated_power: Watts,
    #[serde(deserialize_with = "de_hashrate")]
    pub hashrate: HashRate,
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

/// Checks the loads, each with its index in the file, under the key path `key` (`loads`).
/// Their wear limits become the stricter of hardware and policy. Names must be unique:
/// they label telemetry series and MQTT topics.
pub fn validate_loads(p: &mut Problems, key: &str, loads: Vec<(usize, RawLoad)>) -> Vec<LoadSpec> {
    let mut names = HashMap::new();
    let mut cpu_pools = 0;
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
                    if a.max_starts_per_day == Some(0) {
                        // As for the policy's limit: zero starts would mean a load that
                        // never runs; leave the load out instead.
                        p.push(
                            format!("{at}.max_starts_per_day"),
                            "must be at least 1 (omit it for no limit)",
                        );
                    }
                    let start_cost_eur = a.start_cost_eur.unwrap_or(0.0);
                    if !(0.0..=MAX_START_COST_EUR).contains(&start_cost_eur) {
                        // Also catches NaN: `contains` is false for it.
                        p.push(
                            format!("{at}.start_cost_eur"),
                            format!("{start_cost_eur} must be from 0 to {MAX_START_COST_EUR} EUR"),
                        );
                    }
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
                            // A rejected value never reaches a policy (the config fails),
                            // but the spec must still hold a number the economics can use.
                            start_cost_eur: if start_cost_eur.is_finite() {
                                start_cost_eur.clamp(0.0, MAX_START_COST_EUR)
                            } else {
                                0.0
                            },
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

/// A site's `latitude` and `longitude` (degrees), both or neither, each in range; `at`
/// is the table's key path.
pub fn location(
    p: &mut Problems,
    at: &str,
    latitude: Option<f64>,
    longitude: Option<f64>,
) -> Option<super::solar::Location> {
    match (latitude, longitude) {
        (None, None) => None,
        (Some(latitude), Some(longitude)) => {
            let mut ok = true;
            for (key, v, range) in [
                ("latitude", latitude, super::solar::LATITUDE),
                ("longitude", longitude, super::solar::LONGITUDE),
            ] {
                if !range.contains(&v) {
                    p.push(
                        format!("{at}.{key}"),
                        format!("{v} is outside {}..={} degrees", range.start(), range.end()),
                    );
                    ok = false;
                }
            }
            ok.then_some(super::solar::Location {
                latitude,
                longitude,
            })
        }
        (Some(_), None) => {
            p.push(
                format!("{at}.longitude"),
                "latitude and longitude go together",
            );
            None
        }
        (None, Some(_)) => {
            p.push(
                format!("{at}.latitude"),
                "latitude and longitude go together",
            );
            None
        }
    }
}

/// The planner draws the PV forecast on the clear sky at the site's location; without
/// one (and without a provider's `pv_forecast`) it could only hold today's reading.
pub fn plan_needs_location(
    p: &mut Problems,
    at: &str,
    plans: bool,
    has_pv: bool,
    location: Option<super::solar::Location>,
    pv_forecast: bool,
) {
    if plans && has_pv && location.is_none() && !pv_forecast {
        p.push(
            format!("{at}.latitude"),
            "mode = \"plan\" with PV needs the site's latitude and longitude (the clear-sky shape of its PV forecast), or a pv_forecast signal",
        );
    }
}
