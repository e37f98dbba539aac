//! What a history file source is: the series files a replay reads, the column each
//! quantity comes from and how it is scaled, and how values between samples are found.
//! Plain data (no polars): scenarios are checked without the simulator built.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::Timestamp;
use crate::signal::Quantity;
use crate::site::carbon::EmissionFactors;
use crate::units::{Hashprice, PricePerMwh, Watts};

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

#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub name: String,
    pub path: PathBuf,
    pub time_column: String,
    /// How old a reading from this series may be before it is dropped.
    pub max_age: Option<Duration>,
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
    Constant(Hashprice),
    Series(ColumnRef),
}

/// Everything a replay reads: the series, which column gives each quantity, and the
/// grid of steps it is sampled on.
#[derive(Debug, Clone)]
pub struct History {
    pub step: Duration,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub interpolate: Interpolate,
    pub series: Vec<SeriesSpec>,
    pub pv: Option<ColumnRef>,
    pub wind: Option<ColumnRef>,
    pub base_load: PowerSource,
    pub price: PriceSource,
    pub hashprice: HashpriceSource,
    /// The grid's generation mix, for its carbon intensity (`[carbon] mix`).
    pub carbon: Option<CarbonMix>,
}

/// A generation-mix file (one column per ENTSO-E production type, MW) and the factors
/// that weigh it.
#[derive(Debug, Clone)]
pub struct CarbonMix {
    pub series: SeriesSpec,
    pub factors: EmissionFactors,
}

impl History {
    /// The quantities this history feeds, each with the column it comes from.
    pub fn columns(&self) -> Vec<(Quantity, &ColumnRef)> {
        let mut out = Vec::new();
        out.extend(self.pv.iter().map(|c| (Quantity::PvPower, c)));
        out.extend(self.wind.iter().map(|c| (Quantity::WindPower, c)));
        if let PowerSource::Series(c) = &self.base_load {
            out.push((Quantity::SiteLoad, c));
        }
        if let PriceSource::Series(c) = &self.price {
            out.push((Quantity::Price, c));
        }
        if let HashpriceSource::Series(c) = &self.hashprice {
            out.push((Quantity::Hashprice, c));
        }
        out
    }

    /// The maximum age of each quantity read from a series that has one.
    pub fn max_ages(&self) -> Vec<(Quantity, Duration)> {
        self.columns()
            .into_iter()
            .filter_map(|(q, c)| {
                let s = self.series.iter().find(|s| s.name == c.series)?;
                Some((q, s.max_age?))
            })
            .collect()
    }
}
