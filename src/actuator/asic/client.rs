//! One miner through asic-rs: find it, read it, tell it to pause, resume or take a power
//! limit. Only here does gridminer touch asic-rs's types; everything above sees
//! [`Observed`], [`Identity`] and [`ActuatorError`].
//!
//! asic-rs answers a control call with `anyhow::Result<bool>`: `Err` is taken as a
//! transport failure, `Ok(false)` as a refusal, `Ok(true)` as an acknowledgement and
//! never more (the read-back decides; see `control`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use asic_rs::core::data::collector::DataField;
use asic_rs::core::data::miner::{MinerData, TuningTarget};
use asic_rs::core::traits::miner::{Miner, MinerAuth};
use asic_rs::MinerFactory;
use serde::Serialize;

use super::control::Observed;
use crate::actuator::ActuatorError;
use crate::clock::Timestamp;
use crate::units::{HashRate, Watts};

/// What a miner is, as found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    pub address: IpAddr,
    pub make: String,
    pub model: String,
    pub firmware: String,
    pub firmware_version: Option<String>,
    pub supports_pause: bool,
    pub supports_resume: bool,
    pub supports_power_limit: bool,
    /// The power-limit range the firmware reports, where it does.
    pub min_power: Option<Watts>,
    pub max_power: Option<Watts>,
    /// What it reports at discovery.
    pub hashrate: Option<HashRate>,
    pub expected_hashrate: Option<HashRate>,
    pub power: Option<Watts>,
    pub limit: Option<Watts>,
    pub mining: bool,
}

/// A found miner, ready to be read and told.
#[derive(Clone)]
pub struct AsicMiner {
    miner: Arc<dyn Miner>,
    pub identity: Identity,
}

impl std::fmt::Debug for AsicMiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsicMiner")
            .field("identity", &self.identity)
            .finish()
    }
}

/// The factory gridminer discovers with: only the firmware families it drives, and a
/// bounded time to identify one address.
pub fn factory(identify_within: Duration) -> MinerFactory {
    MinerFactory::new()
        .with_firmwares(firmwares())
        .with_identification_timeout(identify_within)
}

fn firmwares() -> Vec<Arc<dyn asic_rs::core::traits::entry::FirmwareEntry>> {
    asic_rs::factory::default_firmware_registry()
}

fn watts(p: &measurements::Power) -> Watts {
    Watts(p.as_watts())
}

fn hashrate(h: &asic_rs::core::data::hashrate::HashRate) -> HashRate {
    use asic_rs::core::data::hashrate::HashRateUnit;
    HashRate(h.clone().as_unit(HashRateUnit::Hash).value)
}

fn limit_of(t: &Option<TuningTarget>) -> Option<Watts> {
    match t {
        Some(TuningTarget::Power(p)) => Some(watts(p)),
        _ => None,
    }
}

/// The read-back of `data`, measured at `at`.
fn observed(data: &MinerData, at: Timestamp) -> Observed {
    Observed {
        at,
        mining: data.is_mining,
        power: data.wattage.as_ref().map(watts),
        hashrate: data.hashrate.as_ref().map(hashrate),
        limit: limit_of(&data.tuning_target),
    }
}

/// Finds the miner at `address`: `Ok(None)` if nothing there answers as a miner.
pub async fn discover(
    factory: &MinerFactory,
    address: IpAddr,
    password: Option<&str>,
) -> Result<Option<AsicMiner>, ActuatorError> {
    let found = factory
        .get_miner(address)
        .await
        .map_err(|e| ActuatorError::Transport(format!("{address}: {e:#}")))?;
    let Some(mut miner) = found else {
        return Ok(None);
    };
    if let Some(p) = password {
        // The user name is the firmware's own (asic-rs keeps it per backend).
        // (Each backend keeps its own user name: Whatsminer's is always "admin".)
        miner.set_auth(MinerAuth::new("admin", p));
    }
    let data = miner.get_data().await;
    let caps = data
        .tuning_capabilities
        .as_ref()
        .and_then(|c| c.power.as_ref());
    let bound = |t: Option<&TuningTarget>| match t {
        Some(TuningTarget::Power(p)) => Some(watts(p)),
        _ => None,
    };
    let identity = Identity {
        address,
        make: data.device_info.make.to_string(),
        model: data.device_info.model.to_string(),
        firmware: data.device_info.firmware.to_string(),
        firmware_version: data.firmware_version.clone(),
        supports_pause: miner.supports_pause(),
        supports_resume: miner.supports_resume(),
        supports_power_limit: miner.supports_set_power_limit(),
        min_power: caps.and_then(|c| bound(c.minimum.as_ref())),
        max_power: caps.and_then(|c| bound(c.maximum.as_ref())),
        hashrate: data.hashrate.as_ref().map(hashrate),
        expected_hashrate: data.expected_hashrate.as_ref().map(hashrate),
        power: data.wattage.as_ref().map(watts),
        limit: limit_of(&data.tuning_target),
        mining: data.is_mining,
    };
    Ok(Some(AsicMiner {
        miner: Arc::from(miner),
        identity,
    }))
}

/// The fields a read-back needs; the rest (pools, boards, messages, MAC) cost round trips
/// the control loop has no use for.
const READ_ONLY: [DataField; 4] = [
    DataField::IsMining,
    DataField::Wattage,
    DataField::Hashrate,
    DataField::TuningTarget,
];

impl AsicMiner {
    pub fn address(&self) -> IpAddr {
        self.identity.address
    }

    /// Reads the miner; stamped with when the answer came.
    pub async fn read(&self, now: impl Fn() -> Timestamp) -> Result<Observed, ActuatorError> {
        let data = self.miner.get_data_filtered(not_read().to_vec()).await;
        // asic-rs fills what it could not read with defaults: no wattage, no hashrate
        // and no tuning target together mean no answer at all.
        if data.wattage.is_none() && data.hashrate.is_none() && data.tuning_target.is_none() {
            return Err(ActuatorError::Transport(format!(
                "{}: no answer to the read-back",
                self.address()
            )));
        }
        Ok(observed(&data, now()))
    }

    pub async fn pause(&self) -> Result<(), ActuatorError> {
        answer(self.address(), "pause", self.miner.pause(None).await)
    }

    pub async fn resume(&self) -> Result<(), ActuatorError> {
        answer(self.address(), "resume", self.miner.resume(None).await)
    }

    pub async fn set_limit(&self, limit: Watts) -> Result<(), ActuatorError> {
        let p = measurements::Power::from_watts(limit.0);
        answer(
            self.address(),
            "set_power_limit",
            self.miner.set_power_limit(p).await,
        )
    }
}

fn answer(address: IpAddr, what: &str, r: anyhow::Result<bool>) -> Result<(), ActuatorError> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err(ActuatorError::Refused(format!("{address}: {what} refused"))),
        Err(e) => {
            let msg = format!("{address}: {what}: {e:#}");
            // A firmware that answers with an error status refused; anything else is the
            // way to it.
            if msg.contains("Status") || msg.contains("status") || msg.contains("not supported") {
                Err(ActuatorError::Refused(msg))
            } else {
                Err(ActuatorError::Transport(msg))
            }
        }
    }
}

/// Every field but [`READ_ONLY`]: what a read-back leaves out, listed once.
fn not_read() -> &'static [DataField] {
    use strum::IntoEnumIterator;
    static NOT_READ: std::sync::OnceLock<Vec<DataField>> = std::sync::OnceLock::new();
    NOT_READ.get_or_init(|| {
        DataField::iter()
            .filter(|f| !READ_ONLY.contains(f))
            .collect()
    })
}
