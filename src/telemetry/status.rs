//! Status on MQTT: the retained `gridminer/{site}/state` JSON after every step, and Home
//! Assistant discovery so the site appears in Home Assistant by itself.

use serde_json::{json, Value};

use super::evidence::Record;
use crate::actuator::asic::MinerStatus;
use crate::actuator::hasher::HashingReport;
use crate::actuator::status::LoadStatus;
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::mqtt::Topics;
use crate::signal::operator::ActiveCommand;
use crate::signal::OperatorAction;
use crate::signal::Quantity;
use crate::site::LoadSpec;
use crate::state::{MiningEnergy, SiteState};

/// The state document: every signal with value and age and its last refused value, the
/// decision and its reason, each load's target and what its driver reports (`status`:
/// commanded, read-back with its age, confirmation, latency, last error; and, for a
/// hashing load, its hashing and pool counters), the operator command in force, the
/// latest frequency-response evidence records (`events`, newest first; see
/// [`Record::state_json`]), and mining energy by source (`energy`). Each signal carries
/// its `max_age_s` (configured, null if none) and `stale`: the last step's verdict.
pub fn state_json(
    state: &SiteState,
    decision: &Decision,
    loads: &[LoadSpec],
    status: &[LoadStatus],
    hashing: &[Option<HashingReport>],
    fleet: &[MinerStatus],
    events: &[Record],
    now: Timestamp,
) -> Value {
    // Every signal is an object, with nulls for what is unknown, so a consumer reading
    // `signals.pv_power.value` never meets a null object.
    let reading = |v: Option<(f64, Timestamp)>, q: Quantity| {
        let (value, age) = v.map_or((None, None), |(value, at)| {
            (Some(value), Some(now.since(at).as_secs_f64()))
        });
        json!({
            "value": value,
            "age_s": age,
            "max_age_s": state.freshness.max_age(q).map(|a| a.as_secs_f64()),
            // The step's verdict, not re-derived here: what the policy saw.
            "stale": state.freshness.is_stale(q),
            "last_rejected": state.rejected.last(q),
        })
    };
    let mut signals = serde_json::Map::new();
    for q in Quantity::ALL {
        let r = state.reading(q).map(|r| (r.value, r.at));
        signals.insert(q.as_str().to_string(), reading(r, q));
    }
    let loads: Vec<Value> = loads
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v = json!({
                "name": l.name,
                "target_w": decision.loads.get(i).map_or(0.0, |t| t.power.0),
                "units_on": decision.loads.get(i).map_or(0, |t| t.units_on),
                "hashing": hashing.get(i).and_then(Option::as_ref).map(hashing_json),
            });
            if let Some(s) = status.get(i) {
                if let (Value::Object(o), Value::Object(more)) = (&mut v, load_status_json(s, now))
                {
                    o.extend(more);
                }
            }
            v
        })
        .collect();
    // In the operator's own vocabulary (`act`, `limit_w`, `setpoint_w`), as commanded.
    let command_json = |c: &ActiveCommand| {
        let (act, watts) = match c.action {
            OperatorAction::CurtailTo(w) | OperatorAction::CurtailBy(w) => {
                ("curtail", Some(("limit_w", w)))
            }
            OperatorAction::Setpoint(w) => ("setpoint", Some(("setpoint_w", w))),
            OperatorAction::Release => ("release", None),
        };
        let mut v = json!({
            "act": act,
            "operator": c.issuer.id,
            "priority": c.issuer.priority,
            "until": c.until.map(|u| u.to_rfc3339()),
            "received": c.received.to_rfc3339(),
        });
        if let Some((key, w)) = watts {
            v[key] = json!(w.0);
        }
        v
    };
    let commands: Vec<Value> = state.commands.in_force(now).map(command_json).collect();
    // The one that binds: the tightest curtailment, else the setpoint that acts.
    let command = state
        .commands
        .curtail_cap(now)
        .map(|(_, c)| c)
        .or_else(|| {
            state
                .commands
                .in_force(now)
                .find(|c| matches!(c.action, OperatorAction::Setpoint(_)))
        })
        .map(command_json);
    json!({
        "at": now.to_rfc3339(),
        "signals": signals,
        "decision": {
            "reason": decision.reason.as_str(),
            "target_w": decision.total().0,
            "limit_w": decision.limit.map(|l| l.0),
        },
        "loads": loads,
        "fleet": fleet,
        "operator_command": command,
        "operator_commands": commands,
        "failsafe_w": state.failsafe.map(|w| w.0),
        "events": events.iter().map(Record::state_json).collect::<Vec<_>>(),
        "energy": energy_json(&state.energy),
    })
}

/// Mining energy by source since `since` (this process's first step), Wh.
fn energy_json(e: &MiningEnergy) -> Value {
    json!({
        "curtailed_wh": e.curtailed.0,
        "own_generation_wh": e.own_generation.0,
        "grid_wh": e.grid.0,
        "since": e.since.map(|t| t.to_rfc3339()),
    })
}

/// What a load's driver reports: `actual_w` (what the load is counted as drawing: its
/// read-back, or without one the last setpoint written; null until known), `commanded`
/// (the last write that succeeded), `readback` (the last report, with its age),
/// `confirmation` (`confirmed`, `pending` or `unconfirmed`), `confirm_latency_s`,
/// `last_error` and the `errors` count.
fn load_status_json(s: &LoadStatus, now: Timestamp) -> Value {
    let age = |at: Timestamp| now.since(at).as_secs_f64();
    json!({
        "actual_w": s.reading().map(|r| r.value.0),
        "commanded": s.commanded.map(|c| json!({
            "power_w": c.target.power.0,
            "units_on": c.target.units_on,
            "at": c.at.to_rfc3339(),
            "age_s": age(c.at),
        })),
        "readback": s.actual.map(|r| json!({
            "power_w": r.value.0,
            "at": r.at.to_rfc3339(),
            "age_s": age(r.at),
        })),
        "confirmation": s.confirmation().as_str(),
        "confirm_latency_s": s.latency.map(|l| l.as_secs_f64()),
        "last_error": s.last_error.as_ref().map(|e| json!({
            "message": e.message(),
            "at": e.at.to_rfc3339(),
            "age_s": age(e.at),
        })),
        "errors": s.errors,
    })
}

/// A hashing load: what its workers do, and the Stratum pool's view of its shares
/// (`pool` is null when it mines no pool).
fn hashing_json(r: &HashingReport) -> Value {
    let h = &r.hasher;
    json!({
        "hashrate_hs": h.hashrate.0,
        "hashes": h.hashes,
        "hashing_threads": h.hashing_threads,
        "shares_found": h.shares,
        // `StratumCounts` serializes with the field names the state documents.
        "pool": r.pool,
    })
}

/// Home Assistant MQTT discovery: (topic, retained config payload) per entity.
pub fn ha_discovery(topics: &Topics, loads: &[LoadSpec]) -> Vec<(String, String)> {
    let site = topics.site();
    let device = json!({
        "identifiers": [format!("gridminer_{site}")],
        "name": format!("gridminer {site}"),
        "manufacturer": "gridminer",
        "model": "flexible mining load controller",
    });
    let mut out = Vec::new();
    let mut sensor = |object: String,
                      name: String,
                      template: String,
                      unit: Option<&str>,
                      class: Option<&str>| {
        let mut cfg = json!({
            "name": name,
            "unique_id": format!("gridminer_{site}_{object}"),
            "state_topic": topics.state(),
            "value_template": template,
            "availability_topic": topics.availability(),
            "device": device,
        });
        if let Some(u) = unit {
            cfg["unit_of_measurement"] = json!(u);
            cfg["state_class"] = json!("measurement");
        }
        if let Some(c) = class {
            cfg["device_class"] = json!(c);
        }
        out.push((topics.ha_config("sensor", &object), cfg.to_string()));
    };
    for q in [
        Quantity::PvPower,
        Quantity::WindPower,
        Quantity::SiteLoad,
        Quantity::GridPower,
    ] {
        let n = q.as_str();
        sensor(
            n.into(),
            n.replace('_', " "),
            format!("{{{{ value_json.signals.{n}.value }}}}"),
            Some("W"),
            Some("power"),
        );
    }
    sensor(
        "mining_target".into(),
        "mining target".into(),
        "{{ value_json.decision.target_w }}".into(),
        Some("W"),
        Some("power"),
    );
    sensor(
        "reason".into(),
        "decision reason".into(),
        "{{ value_json.decision.reason }}".into(),
        None,
        None,
    );
    for (i, l) in loads.iter().enumerate() {
        sensor(
            format!("load_{}_actual", l.name),
            format!("{} power", l.name),
            format!("{{{{ value_json.loads[{i}].actual_w }}}}"),
            Some("W"),
            Some("power"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Watts;

    /// The state of a site under a curtailment: once this panicked in serde (an
    /// internally tagged enum holding a float), killing the status task.
    #[test]
    fn state_shows_the_command_in_force() {
        let at = Timestamp(1_700_000_000_000);
        let mut state = SiteState::new(&[]);
        for (action, act, key) in [
            (
                OperatorAction::CurtailTo(Watts(1500.0)),
                "curtail",
                Some("limit_w"),
            ),
            (
                OperatorAction::Setpoint(Watts(800.0)),
                "setpoint",
                Some("setpoint_w"),
            ),
            (OperatorAction::Release, "release", None),
        ] {
            state.commands = crate::signal::operator::CommandsInForce::default();
            let issuer = crate::signal::Issuer {
                id: "tso".into(),
                priority: 10,
            };
            state
                .commands
                .apply(issuer, action, None, at, Watts(2000.0))
                .unwrap();
            let decision = crate::decision::Decision {
                at,
                loads: vec![],
                reason: crate::decision::Reason::OperatorCurtail,
                limit: Some(Watts(1500.0)),
                held_on: 0,
                blocked_starts: 0,
                memory: Default::default(),
            };
            let v = state_json(&state, &decision, &[], &[], &[], &[], &[], at);
            if action == OperatorAction::Release {
                // A release leaves nothing in force.
                assert!(v["operator_command"].is_null(), "{v}");
                assert_eq!(v["operator_commands"], json!([]));
            } else {
                assert_eq!(v["operator_command"]["act"], act);
                assert_eq!(v["operator_command"]["operator"], "tso");
                assert_eq!(v["operator_commands"][0]["act"], act);
            }
            if let Some(key) = key {
                assert!(v["operator_command"][key].as_f64().unwrap() > 0.0);
            }
            // The whole state serialises too (snapshots, telemetry).
            serde_json::to_value(&state).unwrap();
        }
    }

    #[test]
    fn discovery_names_every_entity_once() {
        let t = Topics::new("s1");
        let d = ha_discovery(&t, &[]);
        let mut topics: Vec<&str> = d.iter().map(|(t, _)| t.as_str()).collect();
        topics.dedup();
        assert_eq!(topics.len(), d.len());
        assert!(topics.contains(&"homeassistant/sensor/gridminer_s1/pv_power/config"));
        let cfg: Value = serde_json::from_str(&d[0].1).unwrap();
        assert_eq!(cfg["state_topic"], "gridminer/s1/state");
        assert_eq!(cfg["availability_topic"], "gridminer/s1/availability");
    }
}
