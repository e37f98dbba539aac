//! The file formats as serde sees them: TOML shapes, units still as written.
//!
//! Nothing here checks meaning (ranges, references between sections); `validate.rs`
//! does that and turns these into the typed `Config` values. Every struct denies
//! unknown keys, so a typo is an error with its key path, never silently ignored.

use std::time::Duration;

use serde::Deserialize;

use crate::units::{de_duration, de_hashrate, de_opt_duration, de_watts, HashRate, Watts};

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
    pub loads: Vec<RawLoad>,
    #[serde(default)]
    pub operator: Vec<RawOperatorEvent>,
    #[serde(default)]
    pub bounds: RawBounds,
}

fn default_step() -> Duration {
    Duration::from_secs(60)
}

/// How a series is brought to the control step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interpolate {
    /// Each interval's value holds for every step inside it. Interval averages (ENTSO-E,
    /// day-ahead prices) keep their energy exactly.
    #[default]
    Hold,
    /// Linear between interval midpoints: smoother, energy kept only approximately.
    Linear,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeries {
    pub name: String,
    /// CSV or parquet, relative to the scenario file.
    pub file: String,
    #[serde(default = "default_time_column")]
    pub time_column: String,
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

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawExport {
    Named(String),
    Fixed { fixed_eur_mwh: f64 },
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

/// The `[policy]` table of a policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub mode: String,
    #[serde(default)]
    pub margin_eur_mwh: f64,
    #[serde(default)]
    pub hysteresis_eur_mwh: f64,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_on: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_off: Option<Duration>,
    #[serde(default)]
    pub max_starts_per_day: Option<u32>,
    #[serde(default = "default_max_age", deserialize_with = "de_duration")]
    pub max_signal_age: Duration,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    pub safe_limit: Option<Watts>,
    #[serde(default)]
    pub frequency: Option<RawFrequency>,
}

fn default_max_age() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFrequency {
    pub nominal_hz: f64,
    pub shed_below_hz: f64,
    pub absorb_above_hz: f64,
    #[serde(deserialize_with = "de_duration")]
    pub hold: Duration,
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
