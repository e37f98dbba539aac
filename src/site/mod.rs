//! The site model: what the site physically is (grid connection, mining loads) and what
//! energy costs there. Typed and validated; built from config, read by the policy, the
//! simulator and the live controller alike. No I/O here.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::units::{HashRate, Hashprice, PricePerMwh, Watts};

pub mod carbon;
pub mod config;
pub mod solar;

/// The grid connection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GridConnection {
    /// Most the site may feed in; generation above it (after site load and mining) is
    /// curtailed.
    pub export_limit: Watts,
    /// Most the site may draw.
    pub import_limit: Watts,
}

/// What the site can physically carry, in W: the envelope every measured power must lie
/// within (`signal::plausible`), and what `safe_limit` is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratings {
    /// The grid connection's physical rating, either way: at least the import and export
    /// limits (which may be contractual and lower).
    pub connection: Watts,
    /// Installed PV, where the config says.
    pub pv: Option<Watts>,
    /// Installed wind, where the config says.
    pub wind: Option<Watts>,
    /// All mining loads at rated power.
    pub mining: Watts,
}

impl Ratings {
    /// Generation capacity the config states (an unstated one counts as none).
    pub fn generation(&self) -> Watts {
        self.pv.unwrap_or(Watts::ZERO) + self.wind.unwrap_or(Watts::ZERO)
    }

    /// Everything the site can carry at once: connection, generation and mining. No power
    /// measured at the site can exceed it by much.
    pub fn envelope(&self) -> Watts {
        self.connection + self.generation() + self.mining
    }
}

/// What exported energy earns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum ExportValue {
    /// The day-ahead price (negative prices make export cost money).
    DayAhead,
    /// A fixed feed-in tariff.
    Fixed(PricePerMwh),
}

/// As a report names it: "the day-ahead price", "a fixed 80 EUR/MWh".
impl fmt::Display for ExportValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportValue::DayAhead => f.write_str("the day-ahead price"),
            ExportValue::Fixed(p) => write!(f, "a fixed {p:#}"),
        }
    }
}

/// Prices at the site.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tariff {
    /// Added to the day-ahead price for every MWh imported: network fees, levies, taxes.
    pub import_adder: PricePerMwh,
    pub export: ExportValue,
}

impl Tariff {
    /// What one MWh drawn from the grid costs when the day-ahead price is `day_ahead`.
    pub fn import_price(&self, day_ahead: PricePerMwh) -> PricePerMwh {
        day_ahead + self.import_adder
    }
    /// What one MWh fed in earns when the day-ahead price is `day_ahead`.
    pub fn export_value(&self, day_ahead: PricePerMwh) -> PricePerMwh {
        match self.export {
            ExportValue::DayAhead => day_ahead,
            ExportValue::Fixed(p) => p,
        }
    }
}

/// Which power levels a load's firmware accepts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum PowerLevels {
    /// Off or full power, nothing between.
    OnOff,
    /// Off, or any power from `min` up to rated.
    Range { min: Watts },
    /// Anything from zero to rated (the embedded CPU pool).
    Continuous,
}

/// As a report names it: "on/off", "2 kW to rated", "continuous".
impl fmt::Display for PowerLevels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerLevels::OnOff => f.write_str("on/off"),
            PowerLevels::Range { min } => write!(f, "{min:#} to rated"),
            PowerLevels::Continuous => f.write_str("continuous"),
        }
    }
}

/// Limits that protect hardware from wear, per unit.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct WearLimits {
    pub min_on: Duration,
    pub min_off: Duration,
    /// Starts allowed per unit per UTC calendar day; `None` is unlimited.
    pub max_starts_per_day: Option<u32>,
    /// What one start of one unit costs in wear (fans, thermal cycling, PSU inrush),
    /// EUR, >= 0 (0: starts are free). The policy only starts a unit whose expected
    /// earnings over its first run beat it; the simulator and the optimum charge it per
    /// start. Hardware only: the policy file has no say in it.
    pub start_cost_eur: f64,
}

/// Most a start may cost (EUR): more than any miner is worth, so a larger value is a
/// typo (a unit price in cents, say) rather than a real wear cost.
pub const MAX_START_COST_EUR: f64 = 1000.0;

/// One group of identical mining units, controlled unit by unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadSpec {
    pub name: String,
    pub kind: LoadKind,
    /// Units in the group (1 for the CPU pool).
    pub count: u32,
    /// Power of one unit at full output.
    pub rated_power: Watts,
    /// Hash rate of one unit at full output; it scales linearly with power.
    pub hashrate: HashRate,
    pub levels: PowerLevels,
    /// Time from wake to full power (linear).
    pub ramp: Duration,
    /// Time from the start command until the unit draws power and hashes.
    pub wake: Duration,
    /// The hardware's own limits; the policy may be stricter (see `PolicyParams`).
    pub wear: WearLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadKind {
    Asic,
    Cpu,
}

impl LoadSpec {
    /// Full power of the whole group.
    pub fn max_power(&self) -> Watts {
        self.rated_power * self.count as f64
    }
    /// Hash rate one unit makes at `power`.
    pub fn hashrate_at(&self, power: Watts) -> HashRate {
        HashRate(self.hashrate.0 * (power / self.rated_power).clamp(0.0, 1.0))
    }
    /// Break-even energy price for this load at `hashprice` (EUR/MWh).
    pub fn value_per_mwh(&self, hashprice: Hashprice) -> PricePerMwh {
        hashprice.value_per_mwh(self.hashrate, self.rated_power)
    }
    /// Smallest power a running unit can be set to.
    pub fn min_unit_power(&self) -> Watts {
        match self.levels {
            PowerLevels::OnOff => self.rated_power,
            PowerLevels::Range { min } => min,
            PowerLevels::Continuous => Watts::ZERO,
        }
    }
    /// Whether units are switched on and off (and so count starts and dwell times).
    pub fn is_switched(&self) -> bool {
        !matches!(self.levels, PowerLevels::Continuous)
    }
}
