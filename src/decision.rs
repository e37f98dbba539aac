//! The decision's vocabulary, shared by the policy that makes a `Decision` and the state
//! that books it: what each load is told (`LoadTarget`), why (`Reason`), and what the
//! policy carries between steps (`PolicyMemory`). A leaf: it knows signals' names only.

use serde::Serialize;

use crate::clock::Timestamp;
use crate::signal::Quantity;
use crate::units::Watts;

/// What one load is told: how many units run, and their power together.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct LoadTarget {
    pub units_on: u32,
    /// Total over the running units, spread evenly across them.
    pub power: Watts,
}

impl LoadTarget {
    pub const OFF: LoadTarget = LoadTarget {
        units_on: 0,
        power: Watts::ZERO,
    };
}

/// Why the decision is what it is: the highest rule that shaped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A required signal is stale or missing.
    Stale(Quantity),
    OperatorSetpoint,
    OperatorCurtail,
    UnderFrequency,
    OverFrequency,
    /// Only otherwise-curtailed energy is mined.
    Surplus,
    /// Paid energy (forgone export or import) is mined because hashes are worth more.
    Economic,
    /// Nothing is worth mining.
    Idle,
    /// Economics wanted otherwise, but min on/off times or the daily start limit held.
    WearLimit,
    /// The heartbeat failsafe caps mining: the operators have gone quiet.
    Failsafe,
    /// The look-ahead plan runs a different number of units than the moment alone would:
    /// it keeps a start (or a paid hour of `min_on`) for later, or keeps units on
    /// through a dip rather than spend a start again.
    Planned,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Stale(Quantity::PvPower) => "stale:pv_power",
            Reason::Stale(Quantity::WindPower) => "stale:wind_power",
            Reason::Stale(Quantity::SiteLoad) => "stale:site_load",
            Reason::Stale(Quantity::GridPower) => "stale:grid_power",
            Reason::Stale(Quantity::MiningPower) => "stale:mining_power",
            Reason::Stale(Quantity::GridFrequency) => "stale:grid_frequency",
            Reason::Stale(Quantity::Price) => "stale:price",
            Reason::Stale(Quantity::Hashprice) => "stale:hashprice",
            // Never given: no policy reads the carbon intensity (so not in `ALL_REASONS`,
            // whose every entry a report counts).
            Reason::Stale(Quantity::GridCarbonIntensity) => "stale:grid_carbon_intensity",
            Reason::OperatorSetpoint => "operator_setpoint",
            Reason::OperatorCurtail => "operator_curtail",
            Reason::UnderFrequency => "under_frequency",
            Reason::OverFrequency => "over_frequency",
            Reason::Surplus => "surplus",
            Reason::Economic => "economic",
            Reason::Idle => "idle",
            Reason::WearLimit => "wear_limit",
            Reason::Failsafe => "failsafe",
            Reason::Planned => "planned",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        ALL_REASONS.into_iter().find(|r| r.as_str() == s)
    }
}

/// Every reason, for tables and parsing.
pub const ALL_REASONS: [Reason; 18] = [
    Reason::Stale(Quantity::PvPower),
    Reason::Stale(Quantity::WindPower),
    Reason::Stale(Quantity::SiteLoad),
    Reason::Stale(Quantity::GridPower),
    Reason::Stale(Quantity::MiningPower),
    Reason::Stale(Quantity::GridFrequency),
    Reason::Stale(Quantity::Price),
    Reason::Stale(Quantity::Hashprice),
    Reason::OperatorSetpoint,
    Reason::OperatorCurtail,
    Reason::UnderFrequency,
    Reason::OverFrequency,
    Reason::Surplus,
    Reason::Economic,
    Reason::Idle,
    Reason::WearLimit,
    Reason::Failsafe,
    Reason::Planned,
];

/// An ongoing frequency event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FrequencyEvent {
    Shed,
    Absorb,
}

/// What the policy carries from one decision to the next (kept in `SiteState`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct PolicyMemory {
    /// The frequency event in force and when the frequency was last outside the band.
    pub frequency: Option<(FrequencyEvent, Timestamp)>,
    /// The planner's PV clearness: smoothed sums of PV power (W) and of clear-sky
    /// irradiance (W/m²) over the daylight readings, whose ratio is the W of PV per W/m²
    /// of clear sky, and the time of the last reading taken. What the PV forecast stands
    /// on when there is no sun to read now.
    pub pv_clearness: Option<(f64, f64, Timestamp)>,
}

/// The policy's answer for one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub at: Timestamp,
    /// One per load, in config order.
    pub loads: Vec<LoadTarget>,
    pub reason: Reason,
    /// The cap a higher rule put on mining, if any.
    pub limit: Option<Watts>,
    /// Units kept running only because of `min_on`.
    pub held_on: u32,
    /// Units economics wanted that could not start (min_off or daily starts).
    pub blocked_starts: u32,
    pub memory: PolicyMemory,
}

impl Decision {
    pub fn total(&self) -> Watts {
        self.loads.iter().map(|l| l.power).sum()
    }
}
