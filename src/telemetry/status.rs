//! Status on MQTT: the retained `gridminer/{site}/state` JSON after every step, and Home
//! Assistant discovery so the site appears in Home Assistant by itself.

use serde_json::{json, Value};

use super::evidence::Record;
use crate::actuator::asic::{MinerState, MinerStatus};
use crate::actuator::hasher::HashingReport;
use crate::actuator::status::LoadStatus;
use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::mqtt::Topics;
use crate::signal::operator::ActiveCommand;
use crate::signal::OperatorAction;
use crate::signal::Quantity;
use crate::site::{LoadKind, LoadSpec};
use crate::state::{MiningEnergy, SiteState};

/// The state document: every signal with value and age and its last refused value, the
/// decision and its reason, each load's target and what its driver reports (`status`:
/// commanded, read-back with its age, confirmation, latency, last error; and, for a
/// hashing load, its hashing and pool counters), the operator command in force, the
/// latest frequency-response evidence records (`events`, newest first; see
/// [`Record::state_json`]), the price the policy goes by (`price_eur_mwh`), the fleet's
/// totals (`fleet_totals`), mining energy by source (`energy`), the latest operator acks
/// (`operator_acks`, newest first, each as published on `cmd/ack` with its `operator` and
/// `act`), the day-ahead schedule (`price_schedule`) and each load's break-even energy
/// price at the hashprice now (`breakeven_eur_per_mwh`, null without a hashprice). Each
/// signal carries its `max_age_s` (configured, null if none) and `stale`: the last step's
/// verdict.
pub fn state_json(
    state: &SiteState,
    decision: &Decision,
    loads: &[LoadSpec],
    status: &[LoadStatus],
    hashing: &[Option<HashingReport>],
    fleet: &[MinerStatus],
    events: &[Record],
    acks: &[Value],
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
    let hashprice = state.hashprice.map(|r| r.value);
    let loads: Vec<Value> = loads
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v = json!({
                "name": l.name,
                "target_w": decision.loads.get(i).map_or(0.0, |t| t.power.0),
                "units_on": decision.loads.get(i).map_or(0, |t| t.units_on),
                "hashing": hashing.get(i).and_then(Option::as_ref).map(hashing_json),
                "breakeven_eur_per_mwh": hashprice.map(|h| l.value_per_mwh(h).0),
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
        "fleet_totals": fleet_totals_json(fleet),
        "operator_command": command,
        "operator_commands": commands,
        "failsafe_w": state.failsafe.map(|w| w.0),
        // What the policy prices energy at now: the price signal while the step found it
        // fresh, else the day-ahead schedule's entry for now; null with neither.
        "price_eur_mwh": state
            .price
            .filter(|_| !state.freshness.is_stale(Quantity::Price))
            .map(|r| r.value)
            .or_else(|| state.scheduled_price(now))
            .map(|p| p.0),
        "events": events.iter().map(Record::state_json).collect::<Vec<_>>(),
        "energy": energy_json(&state.energy),
        "operator_acks": acks,
        "price_schedule": state.price_schedule.iter().map(|(start, p)| json!({
            "start": start.to_rfc3339(),
            "price": p.0,
        })).collect::<Vec<_>>(),
    })
}

/// The fleet in a few numbers: what its miners report drawing and hashing together (TH/s;
/// each null until one reports), how many are unresponsive, how many there are.
fn fleet_totals_json(fleet: &[MinerStatus]) -> Value {
    // Null until one reports: a fleet nobody heard from is unknown, not 0 W.
    let total = |each: fn(&MinerStatus) -> Option<f64>| {
        let reported: Vec<f64> = fleet.iter().filter_map(each).collect();
        (!reported.is_empty()).then(|| reported.iter().sum::<f64>())
    };
    json!({
        "power_w": total(|m| m.power_w),
        "hashrate_ths": total(|m| m.hashrate_ths),
        "unresponsive": fleet.iter().filter(|m| m.state == MinerState::Unresponsive).count(),
        "miners": fleet.len(),
    })
}

/// Mining energy by source since `since` (this process's first step), Wh.
fn energy_json(e: &MiningEnergy) -> Value {
    json!({
        "curtailed_wh": e.curtailed.0,
        "own_generation_wh": e.own_generation.0,
        "grid_wh": e.grid.0,
        // What the ledger's accounts state: the forgone export value of the own
        // generation mined, the grid energy's cost, and its carbon at the grid's
        // intensity in force (grid energy with none known kept apart, unrated).
        "own_generation_eur": e.own_generation_eur.0,
        "grid_eur": e.grid_eur.0,
        "grid_co2eq_g": e.grid_co2eq_g,
        "grid_unrated_wh": e.grid_unrated.0,
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

/// What a site has, as Home Assistant should see it: discovery announces exactly these
/// entities (and deletes the signal and fleet entities it does not have).
#[derive(Debug, Clone, Copy)]
pub struct HaSite<'a> {
    /// The quantities something feeds: an MQTT signal, a Modbus device, a configured
    /// constant. The mining power needs none (the loads report it) and is always there.
    pub signals: &'a [Quantity],
    pub loads: &'a [LoadSpec],
    /// Whether an ASIC fleet is configured (its power and unresponsive count).
    pub fleet: bool,
}

/// How Home Assistant should read one sensor: unit, `device_class` and
/// `state_class`. One table, so the combinations the schema test checks are all here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    unit: Option<&'static str>,
    device_class: Option<&'static str>,
    state_class: Option<&'static str>,
}

impl Kind {
    const POWER: Kind = Kind::measured(Some("W"), Some("power"));
    const FREQUENCY: Kind = Kind::measured(Some("Hz"), Some("frequency"));
    /// A price per MWh is not `monetary` (Home Assistant takes that for totals only).
    const PRICE: Kind = Kind::measured(Some("EUR/MWh"), None);
    const HASHPRICE: Kind = Kind::measured(Some("EUR/(PH/s·day)"), None);
    /// Home Assistant has no device class for a carbon intensity.
    const CARBON_INTENSITY: Kind = Kind::measured(Some("gCO2eq/kWh"), None);
    const COUNT: Kind = Kind::measured(None, None);
    /// Home Assistant has no device class for a hash rate: a plain measurement.
    const HASHRATE_HS: Kind = Kind::measured(Some("H/s"), None);
    const HASHRATE_THS: Kind = Kind::measured(Some("TH/s"), None);
    /// A meter for the Energy dashboard: it only grows, and a drop (a restart starts
    /// counting at 0) is read as a new meter cycle, not as negative energy.
    const ENERGY: Kind = Kind {
        unit: Some("Wh"),
        device_class: Some("energy"),
        state_class: Some("total_increasing"),
    };
    /// Text: no unit, no class, so Home Assistant keeps it as a string.
    const TEXT: Kind = Kind {
        unit: None,
        device_class: None,
        state_class: None,
    };

    const fn measured(unit: Option<&'static str>, device_class: Option<&'static str>) -> Kind {
        Kind {
            unit,
            device_class,
            state_class: Some("measurement"),
        }
    }

    fn of(q: Quantity) -> Kind {
        match q {
            Quantity::PvPower
            | Quantity::WindPower
            | Quantity::SiteLoad
            | Quantity::GridPower
            | Quantity::MiningPower => Kind::POWER,
            Quantity::GridFrequency => Kind::FREQUENCY,
            Quantity::Price => Kind::PRICE,
            Quantity::Hashprice => Kind::HASHPRICE,
            Quantity::GridCarbonIntensity => Kind::CARBON_INTENSITY,
        }
    }
}

/// A Jinja expression for a number in the state document, rendered so that Home
/// Assistant shows `unknown` where it is null, missing or stale: an MQTT sensor that
/// expects a number takes the rendered string `None` as unknown, and ignores an empty
/// one, keeping the last value (homeassistant/components/mqtt/sensor.py,
/// `_update_state`, `PAYLOAD_NONE`). `expr` must be a value; `stale` a condition.
fn numeric_template(set: &str, expr: &str, stale: Option<&str>) -> String {
    let fresh = stale.map_or(String::new(), |s| format!(" and not ({s})"));
    format!("{set}{{{{ {expr} if {expr} is number{fresh} else None }}}}")
}

/// A name as a discovery object id: Home Assistant takes `[a-zA-Z0-9_-]+` only.
fn object_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Home Assistant MQTT discovery: (topic, retained config payload) per entity of `site`,
/// and an empty retained payload (which deletes the entity in Home Assistant and the
/// retained config at the broker) for each signal or fleet entity the site does not have.
pub fn ha_discovery(topics: &Topics, site: &HaSite) -> Vec<(String, String)> {
    let name = topics.site();
    let device = json!({
        "identifiers": [format!("gridminer_{name}")],
        "name": format!("gridminer {name}"),
        "manufacturer": "gridminer",
        "model": "flexible mining load controller",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let mut out = Vec::new();
    // `present`: a Jinja condition on the state document, true while it has this entity
    // (a document without it, from another version or config, makes it unavailable).
    let mut sensor = |object: &str, label: String, template: String, kind: Kind, present: &str| {
        let mut cfg = json!({
            "name": label,
            "unique_id": format!("gridminer_{name}_{object}"),
            "object_id": format!("gridminer_{name}_{object}"),
            "state_topic": topics.state(),
            "value_template": template,
            // Both must say online: the daemon (its last will says offline) and the
            // state document (it has this entity).
            "availability": [
                {
                    "topic": topics.availability(),
                    "payload_available": crate::mqtt::topics::ONLINE,
                    "payload_not_available": crate::mqtt::topics::OFFLINE,
                },
                {
                    "topic": topics.state(),
                    "value_template": format!("{{{{ 'online' if {present} else 'offline' }}}}"),
                },
            ],
            "availability_mode": "all",
            "device": device,
            "origin": { "name": "gridminer", "sw_version": env!("CARGO_PKG_VERSION") },
        });
        for (key, v) in [
            ("unit_of_measurement", kind.unit),
            ("device_class", kind.device_class),
            ("state_class", kind.state_class),
        ] {
            if let Some(v) = v {
                cfg[key] = json!(v);
            }
        }
        out.push((topics.ha_config("sensor", object), cfg.to_string()));
    };
    let mut gone = Vec::new();
    for q in Quantity::ALL {
        let n = q.as_str();
        if q != Quantity::MiningPower && !site.signals.contains(&q) {
            gone.push(n.to_string());
            continue;
        }
        let s = format!("value_json.signals.{n}");
        let (template, present) = if q == Quantity::Price {
            // The price the policy goes by, the day-ahead schedule's when no fresh
            // price signal: a site fed only a schedule has a price too.
            (
                numeric_template("", "value_json.price_eur_mwh", None),
                "value_json.price_eur_mwh is defined".to_string(),
            )
        } else {
            (
                numeric_template(&format!("{{% set s = {s} %}}"), "s.value", Some("s.stale")),
                format!("{s} is defined"),
            )
        };
        sensor(n, n.replace('_', " "), template, Kind::of(q), &present);
    }
    sensor(
        "mining_target",
        "mining target".into(),
        numeric_template("", "value_json.decision.target_w", None),
        Kind::POWER,
        "value_json.decision is defined",
    );
    sensor(
        "reason",
        "decision reason".into(),
        "{{ value_json.decision.reason }}".into(),
        Kind::TEXT,
        "value_json.decision is defined",
    );
    let mut ids = std::collections::HashSet::new();
    for (i, l) in site.loads.iter().enumerate() {
        let mut id = object_id(&l.name);
        if !ids.insert(id.clone()) {
            // Two names that read the same as ids ("a.b", "a_b") stay apart.
            id = format!("{id}_{i}");
            ids.insert(id.clone());
        }
        // By name, not position: a JSON string is a Jinja string literal.
        let pick = format!(
            "{{% set l = value_json.loads | selectattr('name', 'eq', {}) | first %}}",
            json!(l.name)
        );
        let present = format!(
            "value_json.loads | selectattr('name', 'eq', {}) | list | count > 0",
            json!(l.name)
        );
        let mut of_load = vec![
            ("target", "l.target_w", "target", Kind::POWER),
            ("actual", "l.actual_w", "power", Kind::POWER),
        ];
        if l.kind == LoadKind::Cpu {
            // The embedded pool reports its hashing (an ASIC fleet's is in its totals).
            of_load.push((
                "hashrate",
                "l.hashing.hashrate_hs",
                "hashrate",
                Kind::HASHRATE_HS,
            ));
        }
        for (what, key, label, kind) in of_load {
            sensor(
                &format!("load_{id}_{what}"),
                format!("{} {label}", l.name),
                numeric_template(&pick, key, None),
                kind,
                &present,
            );
        }
    }
    let fleet = [
        ("fleet_power", "fleet power", "power_w", Kind::POWER),
        (
            "fleet_hashrate",
            "fleet hashrate",
            "hashrate_ths",
            Kind::HASHRATE_THS,
        ),
        (
            "fleet_unresponsive",
            "fleet unresponsive",
            "unresponsive",
            Kind::COUNT,
        ),
    ];
    for (object, label, key, kind) in fleet {
        if site.fleet {
            sensor(
                object,
                label.into(),
                numeric_template("", &format!("value_json.fleet_totals.{key}"), None),
                kind,
                "value_json.fleet_totals is defined",
            );
        } else {
            gone.push(object.to_string());
        }
    }
    for (object, label, key) in [
        (
            "energy_curtailed",
            "mining energy from curtailed surplus",
            "curtailed_wh",
        ),
        (
            "energy_own_generation",
            "mining energy from own generation",
            "own_generation_wh",
        ),
        ("energy_grid", "mining energy from the grid", "grid_wh"),
    ] {
        sensor(
            object,
            label.into(),
            numeric_template("", &format!("value_json.energy.{key}"), None),
            Kind::ENERGY,
            "value_json.energy is defined",
        );
    }
    out.extend(
        gone.into_iter()
            .map(|object| (topics.ha_config("sensor", &object), String::new())),
    );
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
            let v = state_json(&state, &decision, &[], &[], &[], &[], &[], &[], at);
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
        let d = ha_discovery(
            &t,
            &HaSite {
                signals: &[Quantity::PvPower],
                loads: &[],
                fleet: false,
            },
        );
        let mut topics: Vec<&str> = d.iter().map(|(t, _)| t.as_str()).collect();
        topics.sort();
        topics.dedup();
        assert_eq!(topics.len(), d.len());
        assert!(topics.contains(&"homeassistant/sensor/gridminer_s1/pv_power/config"));
        let cfg: Value = serde_json::from_str(&d[0].1).unwrap();
        assert_eq!(cfg["state_topic"], "gridminer/s1/state");
        assert_eq!(cfg["availability"][0]["topic"], "gridminer/s1/availability");
        // Unconfigured: deleted (an empty retained config), not announced.
        let wind = "homeassistant/sensor/gridminer_s1/wind_power/config";
        assert!(d.iter().any(|(t, body)| t == wind && body.is_empty()));
    }
}
