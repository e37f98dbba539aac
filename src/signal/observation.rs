//! The signals' vocabulary: what a site measures or is told (`Quantity`), and what a
//! source reports (`Observation`), including a grid operator's command (`OperatorAction`,
//! from an `Issuer`). The bottom of the data flow: state, policy and telemetry read it.

use serde::Serialize;

use crate::clock::Timestamp;
use crate::units::{CarbonIntensity, Hashprice, Hertz, PricePerMwh, Watts};

/// The quantities a site measures or is told. One table for signals, state, telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// PV output, W, >= 0.
    PvPower,
    /// Wind output, W, >= 0.
    WindPower,
    /// Site consumption other than mining, W, >= 0.
    SiteLoad,
    /// Power at the grid connection, W: import positive, export negative. With the
    /// generation and the mining power it gives the site load where no meter measures
    /// that directly.
    GridPower,
    /// What the mining loads report drawing, all together, W.
    MiningPower,
    /// Grid frequency, Hz.
    GridFrequency,
    /// Day-ahead price now, EUR/MWh.
    Price,
    /// Hashprice, EUR per PH/s per day.
    Hashprice,
    /// The grid's carbon intensity now, gCO2eq/kWh: for the energy account and its
    /// certificates; no policy reads it.
    GridCarbonIntensity,
}

impl Quantity {
    pub const ALL: [Quantity; 9] = [
        Quantity::PvPower,
        Quantity::WindPower,
        Quantity::SiteLoad,
        Quantity::GridPower,
        Quantity::MiningPower,
        Quantity::GridFrequency,
        Quantity::Price,
        Quantity::Hashprice,
        Quantity::GridCarbonIntensity,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Quantity::PvPower => "pv_power",
            Quantity::WindPower => "wind_power",
            Quantity::SiteLoad => "site_load",
            Quantity::GridPower => "grid_power",
            Quantity::MiningPower => "mining_power",
            Quantity::GridFrequency => "grid_frequency",
            Quantity::Price => "price",
            Quantity::Hashprice => "hashprice",
            Quantity::GridCarbonIntensity => "grid_carbon_intensity",
        }
    }
}

/// Something a source saw or was told.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Power {
        quantity: Quantity,
        value: Watts,
        at: Timestamp,
    },
    Frequency {
        value: Hertz,
        at: Timestamp,
    },
    Price {
        value: PricePerMwh,
        at: Timestamp,
    },
    Hashprice {
        value: Hashprice,
        at: Timestamp,
    },
    /// The grid's carbon intensity (`grid_carbon_intensity`).
    CarbonIntensity {
        value: CarbonIntensity,
        at: Timestamp,
    },
    /// A grid operator's command, already authenticated and admitted (see
    /// [`CommandsInForce::admit`]).
    Operator {
        issuer: Issuer,
        action: OperatorAction,
        until: Option<Timestamp>,
        at: Timestamp,
    },
    /// The heartbeat failsafe engaged (`Some`: the most mining allowed while it holds) or
    /// lifted (`None`).
    Failsafe {
        limit: Option<Watts>,
        at: Timestamp,
    },
    /// A day-ahead price schedule: `(start, price)` in time order; each price holds until
    /// the next start (the last for as long as the interval before it).
    PriceSchedule {
        entries: Vec<(Timestamp, PricePerMwh)>,
        at: Timestamp,
    },
    /// A provider's forecast of a generation power (`pv_power` or `wind_power`), in the
    /// schedule's shape: `(start, W)` in time order.
    Forecast {
        quantity: Quantity,
        entries: Vec<(Timestamp, Watts)>,
        at: Timestamp,
    },
}

impl Observation {
    /// The quantity a reading carries (`None` for commands, the failsafe and schedules).
    pub fn quantity(&self) -> Option<Quantity> {
        match self {
            Observation::Power { quantity, .. } => Some(*quantity),
            Observation::Frequency { .. } => Some(Quantity::GridFrequency),
            Observation::Price { .. } => Some(Quantity::Price),
            Observation::Hashprice { .. } => Some(Quantity::Hashprice),
            Observation::CarbonIntensity { .. } => Some(Quantity::GridCarbonIntensity),
            Observation::Operator { .. }
            | Observation::Failsafe { .. }
            | Observation::PriceSchedule { .. }
            | Observation::Forecast { .. } => None,
        }
    }
}

/// A grid operator's command.
/// Serialised adjacently tagged (`{"act": "curtail-to", "watts": 1500.0}`): serde cannot
/// put a bare number inside an internally tagged enum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "act", content = "watts", rename_all = "kebab-case")]
pub enum OperatorAction {
    /// Mining at most this much.
    CurtailTo(Watts),
    /// Mining this much less than when the command arrived.
    CurtailBy(Watts),
    /// Mining exactly this much, as far as the loads can.
    Setpoint(Watts),
    /// End the command in force.
    Release,
}

/// Who sent a command: the operator's id and its priority. A higher priority outranks a
/// lower one (a TSO above an aggregator); see [`CommandsInForce`] for what that allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issuer {
    pub id: String,
    pub priority: u32,
}

impl Issuer {
    /// The scenario file's operator events in a simulation: one source, outranking none.
    pub fn scenario() -> Self {
        Issuer {
            id: "scenario".into(),
            priority: 0,
        }
    }
}
