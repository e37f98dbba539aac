//! What the ledger records, one entry each (version [`ENTRY_VERSION`]; canonical JSON,
//! `kind` naming the variant). Powers in W, energy in Wh, money in EUR, carbon in
//! gCO2eq, times RFC 3339 UTC.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{canonical, ENTRY_VERSION};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// The daemon (or a simulation) starting: what ran, on what configuration.
    Start(Start),
    /// One interval's energy account.
    Account(Account),
    /// One hour's certificate for one energy source of the mining load.
    Certificate(Certificate),
    /// A grid operator's command as received, and the ack sent for it.
    Command { at: String, ack: serde_json::Value },
    /// A frequency event's evidence record, once closed.
    FrequencyEvent {
        at: String,
        evidence: serde_json::Value,
    },
    /// A clean shutdown (its absence before the next start marks a crash).
    Stop { at: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Start {
    pub at: String,
    pub site: String,
    /// `gridminer <version>`.
    pub software: String,
    /// SHA-256 of the configuration file's bytes, hex.
    pub config_sha256: String,
    /// `run` or `simulate`.
    pub run: String,
    pub mode: String,
}

/// Energy by source, Wh.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BySource {
    /// Surplus above the export limit: curtailed had mining not taken it.
    pub curtailed: f64,
    /// Own generation the grid would have taken.
    pub own_generation: f64,
    /// Grid import.
    pub grid: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct GroupCounts {
    pub starts: u64,
    pub stops: u64,
    /// Units running at the interval's end.
    pub on: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub from: String,
    pub to: String,
    pub wh: BySource,
    /// Own generation mined at the export value it forwent; grid at the import price.
    pub own_generation_eur: f64,
    pub grid_eur: f64,
    /// Grid energy mined at the grid's intensity in force (`None`: none known).
    pub grid_intensity_g_per_kwh: Option<f64>,
    pub grid_co2eq_g: f64,
    /// Grid energy mined while no carbon intensity was known.
    pub grid_unrated_wh: f64,
    pub hashes: f64,
    pub shares_accepted: u64,
    pub groups: BTreeMap<String, GroupCounts>,
}

/// Where a certificate's energy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Pv,
    Wind,
    Grid,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Pv, Source::Wind, Source::Grid];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Pv => "pv",
            Source::Wind => "wind",
            Source::Grid => "grid",
        }
    }

    /// The technology, in EnergyTag's terms.
    pub fn technology(self) -> &'static str {
        match self {
            Source::Pv => "solar_photovoltaic",
            Source::Wind => "wind",
            Source::Grid => "grid_mix",
        }
    }
}

/// The production device a certificate names: the site and its nameplate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Device {
    pub site: String,
    pub pv_capacity_w: f64,
    pub wind_capacity_w: f64,
}

/// One hour's energy from one source into the mining load, modelled on the EnergyTag
/// Granular Certificate: device, interval (at most one hour, within one UTC hour),
/// energy (Wh, rounded down), technology, whether it would otherwise have been
/// curtailed, the grid's carbon intensity that hour, and the hashes mined on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    /// `<site>/<start>/<source>`: unique, so one hour's energy is never certified twice.
    pub id: String,
    pub device: Device,
    pub consumer: String,
    pub start: String,
    pub end: String,
    pub source: Source,
    pub technology: String,
    pub wh: u64,
    /// Of `wh`, what the site would have curtailed had mining not taken it.
    pub otherwise_curtailed_wh: u64,
    pub grid_intensity_g_per_kwh: Option<f64>,
    /// Grid certificates: the energy at the grid's intensity; own generation: 0 here
    /// (its lifecycle emissions are the report's, by factor).
    pub co2eq_g: f64,
    pub hashes: f64,
}

impl Entry {
    /// The entry as the ledger stores it: canonical JSON with its version.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Cannot fail: strings, numbers, maps with string keys.
        let mut v = serde_json::to_value(self).expect("an entry serialises");
        if let Some(m) = v.as_object_mut() {
            m.insert("v".into(), ENTRY_VERSION.into());
        }
        canonical::to_vec(&v)
    }

    /// An entry read back (unknown fields are refused: a reader must not skip what it
    /// cannot check).
    pub fn from_bytes(bytes: &[u8]) -> Result<Entry, String> {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if let Some(m) = v.as_object_mut() {
            m.remove("v");
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Start(_) => "start",
            Entry::Account(_) => "account",
            Entry::Certificate(_) => "certificate",
            Entry::Command { .. } => "command",
            Entry::FrequencyEvent { .. } => "frequency_event",
            Entry::Stop { .. } => "stop",
        }
    }
}

/// `x` to `decimals` places, so entries say what they measure and not float noise.
pub fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    let r = (x * f).round() / f;
    if r == 0.0 {
        0.0 // never -0
    } else {
        r
    }
}
