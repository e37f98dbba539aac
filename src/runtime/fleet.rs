//! The ASIC fleets at start: every listed and scanned address asked what it is (asic-rs
//! discovery, bounded concurrency), the miners found grouped by model, and each group
//! made a load of the policy (rated power, hashrate, power range or on/off, wear) from
//! the config's `models` where it says, and from what the miners report otherwise.
//!
//! A listed miner that does not answer joins its configured `model`'s group as unknown
//! (out of the capacity until it answers); without a model it is left out, with a
//! warning, until the next start. A scanned address that does not answer is nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use super::config::{LiveConfig, LoadDriver};
use crate::actuator::asic::assign::Model;
use crate::actuator::asic::client::{self, AsicMiner};
use crate::actuator::asic::config::{FleetConfig, RawModel};
use crate::actuator::asic::relay::{MqttRelay, Relay};
use crate::actuator::asic::{Fleet, GroupSpec, MinerSpec};
use crate::clock::Clock;
use crate::site::{LoadKind, LoadSpec, PowerLevels, WearLimits};
use crate::units::{HashRate, Watts};

/// How long discovery may take per address.
pub const IDENTIFY_WITHIN: Duration = Duration::from_secs(10);

/// How often a listed miner is asked at start before it counts as not answering.
pub const DISCOVERY_ATTEMPTS: usize = 3;

/// Why a fleet could not be made into loads.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet {fleet:?}, model {model:?}: {what} is not known from the miners; give loads.models.{model:?}.{key}")]
    Unknown {
        fleet: String,
        model: String,
        what: &'static str,
        key: &'static str,
    },
    #[error("fleet {0:?}: no miner answered and none has a configured model")]
    Empty(String),
}

/// A load name from a fleet and model: MQTT-safe (no `+`, `#`, `/`).
pub fn group_name(fleet: &str, model: &str) -> String {
    let model: String = model
        .chars()
        .map(|c| match c {
            '+' => 'p',
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    format!("{fleet}-{model}")
}

/// Finds the miners of `fleet`.
pub async fn discover(fleet: &FleetConfig) -> Vec<Option<AsicMiner>> {
    let factory = client::factory(IDENTIFY_WITHIN);
    let factory = &factory;
    let mut found: Vec<(usize, Option<AsicMiner>)> = stream::iter(fleet.miners.iter().enumerate())
        .map(|(i, m)| async move {
            // A listed miner is expected: asked again when a first answer was lost (a
            // flaky link drops a connection of the several discovery makes).
            let attempts = if m.listed { DISCOVERY_ATTEMPTS } else { 1 };
            for _ in 0..attempts {
                match client::discover(factory, m.address, m.password.as_deref()).await {
                    Ok(Some(found)) => return (i, Some(found)),
                    Ok(None) => {}
                    Err(e) => tracing::debug!(miner = %m.address, error = %e, "No miner found"),
                }
            }
            (i, None)
        })
        .buffer_unordered(fleet.concurrency)
        .collect()
        .await;
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, m)| m).collect()
}

/// What a model is to the policy: the config's figures, else the largest the miners
/// report.
fn model_spec(
    fleet: &FleetConfig,
    model: &str,
    raw: &RawModel,
    found: &[&AsicMiner],
) -> Result<(Watts, HashRate, PowerLevels), FleetError> {
    let unknown = |what, key| FleetError::Unknown {
        fleet: fleet.name.clone(),
        model: model.to_owned(),
        what,
        key,
    };
    let max = |f: &dyn Fn(&AsicMiner) -> Option<f64>| -> Option<f64> {
        found
            .iter()
            .filter_map(|m| f(m))
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
    };
    let rated = raw
        .rated_power
        .or_else(|| {
            max(&|m| {
                let id = &m.identity;
                id.max_power.or(id.limit).map(|w| w.0)
            })
            .map(Watts)
        })
        .ok_or_else(|| unknown("rated power", "rated_power"))?;
    let hashrate = raw
        .hashrate
        .or_else(|| max(&|m| m.identity.expected_hashrate.map(|h| h.0)).map(HashRate))
        .ok_or_else(|| unknown("hashrate", "hashrate"))?;
    let limits = !found.is_empty() && found.iter().all(|m| m.identity.supports_power_limit);
    let min = raw
        .min_power
        .or_else(|| max(&|m| m.identity.min_power.map(|w| w.0)).map(Watts));
    let levels = match (raw.on_off, limits || raw.min_power.is_some(), min) {
        (false, true, Some(min)) => PowerLevels::Range {
            min: min.min(rated),
        },
        _ => PowerLevels::OnOff,
    };
    Ok((rated, hashrate, levels))
}

/// Discovers the miners of `fleet` and groups them by model: the fleet, and one load
/// of the policy per group (in the fleet's group order).
pub async fn build(
    fleet: &FleetConfig,
    clock: Arc<dyn Clock>,
) -> Result<(Fleet, Vec<LoadSpec>), FleetError> {
    build_with_relay(fleet, None, clock).await
}

/// [`build`], with the relay hard cuts go to (`None`: a stop that fails ends at the
/// miner being left out of the capacity).
pub async fn build_with_relay(
    fleet: &FleetConfig,
    relay: Option<Arc<dyn Relay>>,
    clock: Arc<dyn Clock>,
) -> Result<(Fleet, Vec<LoadSpec>), FleetError> {
    let found = discover(fleet).await;
    // Model of each miner: as found, else as configured (listed ones only).
    let mut by_model: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (m, found)) in fleet.miners.iter().zip(&found).enumerate() {
        let model = match found {
            Some(a) => Some(a.identity.model.clone()),
            None if m.listed => {
                if m.model.is_none() {
                    tracing::warn!(fleet = fleet.name, miner = %m.address, "Listed miner did not answer and has no `model`: left out until the next start");
                }
                m.model.clone()
            }
            None => None,
        };
        if let Some(model) = model {
            by_model.entry(model).or_default().push(i);
        }
    }
    if by_model.is_empty() {
        return Err(FleetError::Empty(fleet.name.clone()));
    }
    let mut miners = Vec::new();
    let mut groups = Vec::new();
    let mut loads = Vec::new();
    for (model, members) in &by_model {
        let raw = fleet.models.get(model).cloned().unwrap_or_default();
        let present: Vec<&AsicMiner> = members.iter().filter_map(|&i| found[i].as_ref()).collect();
        let (rated, hashrate, levels) = model_spec(fleet, model, &raw, &present)?;
        let wear = WearLimits {
            min_on: raw.min_on.unwrap_or_default(),
            min_off: raw.min_off.unwrap_or_default(),
            max_starts_per_day: raw.max_starts_per_day,
            start_cost_eur: raw.start_cost_eur.filter(|c| c.is_finite()).unwrap_or(0.0),
        };
        let name = group_name(&fleet.name, model);
        let first = miners.len();
        for &i in members {
            let m = &fleet.miners[i];
            miners.push((
                MinerSpec {
                    address: m.address,
                    password: m.password.clone(),
                    model: Some(model.clone()),
                },
                found[i].clone(),
                rated,
            ));
        }
        groups.push(GroupSpec {
            name: name.clone(),
            model: Model {
                rated,
                levels,
                wear,
            },
            members: (first..miners.len()).collect(),
        });
        tracing::info!(
            fleet = fleet.name,
            group = name,
            model,
            miners = members.len(),
            answering = present.len(),
            rated = %rated,
            "ASIC group ready"
        );
        loads.push(LoadSpec {
            name,
            kind: LoadKind::Asic,
            count: members.len() as u32,
            rated_power: rated,
            hashrate,
            levels,
            ramp: raw.ramp.unwrap_or_default(),
            wake: raw.wake.unwrap_or_default(),
            wear,
        });
    }
    let fleet = Fleet::new(
        miners,
        groups,
        fleet.timings,
        fleet.concurrency,
        relay,
        clock,
    );
    Ok((fleet, loads))
}

/// Discovers every fleet of `config` and makes its groups loads: appended to
/// `config.loads` with `LoadDriver::Asic` drivers, the mining rating updated. Returns
/// the fleets, by the index the drivers name.
pub async fn resolve(
    config: &mut LiveConfig,
    clock: Arc<dyn Clock>,
) -> Result<Vec<Fleet>, FleetError> {
    let mut fleets = Vec::new();
    for (f, fleet) in config.fleets.clone().iter().enumerate() {
        let relay = fleet.relay_topic.as_ref().map(|topic| {
            Arc::new(MqttRelay {
                settings: config.mqtt.clone(),
                topic: topic.clone(),
            }) as Arc<dyn Relay>
        });
        let (started, loads) = build_with_relay(fleet, relay, clock.clone()).await?;
        for (g, spec) in loads.into_iter().enumerate() {
            config.drivers.push(LoadDriver::Asic { fleet: f, group: g });
            config.loads.push(spec);
        }
        fleets.push(started);
    }
    config.ratings.mining = config
        .loads
        .iter()
        .map(|l| l.rated_power * f64::from(l.count))
        .sum();
    Ok(fleets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_mqtt_safe() {
        assert_eq!(group_name("fleet", "M30S+"), "fleet-m30sp");
        assert_eq!(group_name("f", "M30S++ V10/x#"), "f-m30spp_v10_x_");
    }
}
