//! The edge controller's config (`gridminer run --config site.toml`): the site, its
//! policy, the MQTT broker and topic table, and the loads. Components with a config of
//! their own (operators, Modbus devices, telemetry) take their sections from the table
//! before the rest is checked here, so unknown keys are still caught everywhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::actuator::asic::config::{FleetConfig, RawAsicFleet};
use crate::actuator::hasher::config::RawCpuLoad;
use crate::actuator::hasher::stratum::StratumConfig;
use crate::config::{
    hashprice_value, inline_policy, non_negative, price, read_table, show, table_of, ConfigError,
    Problems,
};
use crate::mqtt::config::{Broker, MqttConfig, RawMqtt};
use crate::policy::config::{safe_limit_within, validate_policy, RawPolicy};
use crate::policy::{Policy, PolicyParams};
use crate::signal::modbus::validate_devices;
use crate::signal::mqtt::{self as mqtt_signals, MqttSignal, RawMqttSignal};
use crate::signal::operator::take_operator_config;
use crate::site::carbon::{validate_factors, EmissionFactors, RawCarbon};
use crate::site::config::{export_value, validate_loads, RawAsicGroup, RawExport, RawLoad};
use crate::site::{GridConnection, LoadSpec, Ratings, Tariff};
use crate::units::{de_duration, de_opt_watts, de_watts, HashRate, Hashprice, PricePerMwh, Watts};

/// A validated live config.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub file: PathBuf,
    pub site: String,
    pub tick: Duration,
    pub policy: PolicyParams,
    pub grid: GridConnection,
    /// What the site can physically carry: every measured power is checked against it.
    pub ratings: Ratings,
    pub tariff: Tariff,
    pub has_pv: bool,
    pub has_wind: bool,
    /// Where the site is (`site.latitude`, `site.longitude`): the planner's PV shape.
    pub location: Option<crate::site::solar::Location>,
    /// Used when no MQTT signal carries the hashprice.
    pub hashprice: Option<Hashprice>,
    pub broker: Broker,
    pub mqtt: crate::mqtt::MqttSettings,
    pub ha_discovery: bool,
    pub signals: Vec<MqttSignal>,
    pub loads: Vec<LoadSpec>,
    /// How each load is driven, by index into `loads`.
    pub drivers: Vec<LoadDriver>,
    /// The ASIC fleets: their groups join `loads` at start, once the miners have said
    /// what models they are (`runtime::fleet::resolve`).
    pub fleets: Vec<FleetConfig>,
    /// The lifecycle factors of the site's own PV and wind (`[carbon]`), for the carbon
    /// of own generation mined; the grid's intensity comes live from its signal.
    pub carbon: EmissionFactors,
}

/// How a load is driven live.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadDriver {
    /// The embedded SHA-256d pool.
    Hasher {
        threads: usize,
        watts_per_core: Watts,
        hashrate_per_core: HashRate,
        /// The Stratum pool to mine for. Without one the pool hashes a local job (real
        /// work, no shares); with one it hashes only the pool's jobs, and nothing while
        /// it has none.
        pool: Option<StratumConfig>,
    },
    /// Equipment controlled by something else: its setpoint is published on `topic`;
    /// where it reports its measured power (W), that comes on `readback`.
    Mqtt {
        topic: String,
        readback: Option<String>,
    },
    /// One model's group of ASIC fleet `fleet` (index into the started fleets).
    Asic { fleet: usize, group: usize },
}

impl LiveConfig {
    pub fn policy(&self) -> Policy {
        Policy::new(
            self.policy.clone(),
            self.loads.clone(),
            self.grid,
            self.tariff,
            self.has_pv,
            self.has_wind,
        )
        .with_location(self.location)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    #[serde(default)]
    pv: bool,
    #[serde(default)]
    wind: bool,
    #[serde(deserialize_with = "de_watts")]
    export_limit: Watts,
    #[serde(deserialize_with = "de_watts")]
    import_limit: Watts,
    /// Installed PV; bounds PV readings and counts towards what `safe_limit` may be.
    #[serde(default, deserialize_with = "de_opt_watts")]
    pv_capacity: Option<Watts>,
    /// Installed wind, likewise.
    #[serde(default, deserialize_with = "de_opt_watts")]
    wind_capacity: Option<Watts>,
    /// The grid connection's physical rating, either way, where the limits above are
    /// contractual and lower. Bounds grid power readings; defaults to the larger limit.
    #[serde(default, deserialize_with = "de_opt_watts")]
    connection_rating: Option<Watts>,
    /// Where the site is, degrees north and east: the clear-sky shape of the planner's
    /// PV forecast (`mode = "plan"`).
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTariff {
    import_adder_eur_mwh: f64,
    export: RawExport,
}

/// A live `[[loads]]` entry, by its `kind`.
#[derive(Debug)]
enum RawLiveLoad {
    /// The embedded SHA-256d pool.
    Cpu(RawCpuLoad),
    /// Anything else, told its setpoint on `topic` over MQTT and reporting its power on
    /// `readback` if it can; the rest as an ASIC group (checked as such, unknown keys
    /// included).
    Mqtt {
        topic: String,
        readback: Option<String>,
        group: RawAsicGroup,
    },
    /// Miners driven through their firmware's API (asic-rs), grouped by model at start.
    Fleet(RawAsicFleet),
}

/// Takes the topic at `key` of `t`: a string naming one topic (no `+` or `#`: the load
/// publishes to it, or must know whose report it is). `required`: whether it may be
/// missing. `Err(())` when a problem was pushed.
fn take_topic(
    p: &mut Problems,
    at: &str,
    t: &mut toml::Table,
    key: &str,
    what: &str,
    required: bool,
) -> Result<Option<String>, ()> {
    match t.remove(key) {
        None if !required => Ok(None),
        Some(toml::Value::String(topic)) if !topic.is_empty() && !topic.contains(['+', '#']) => {
            Ok(Some(topic))
        }
        other => {
            p.push(
                format!("{at}.{key}"),
                format!(
                    "{}: expected {what} (one topic, no wildcards)",
                    show(other.as_ref())
                ),
            );
            Err(())
        }
    }
}

/// Takes one live load at `at`: its `kind` first, then that kind's own shape, so that
/// every bad key is reported at its own path.
fn take_live_load(p: &mut Problems, at: &str, v: toml::Value) -> Option<RawLiveLoad> {
    let mut t = table_of(p, at, v)?;
    let kind = t.remove("kind");
    match kind.as_ref().and_then(toml::Value::as_str) {
        Some("cpu") => p.take(at, toml::Value::Table(t)).map(RawLiveLoad::Cpu),
        Some("asic-fleet") => p.take(at, toml::Value::Table(t)).map(RawLiveLoad::Fleet),
        Some("mqtt") => {
            let topic = take_topic(p, at, &mut t, "topic", "the setpoint topic", true);
            let readback = take_topic(
                p,
                at,
                &mut t,
                "readback",
                "the topic the equipment reports its power on",
                false,
            );
            if let (Ok(Some(setpoint)), Ok(Some(report))) = (&topic, &readback) {
                if setpoint == report {
                    p.push(
                        format!("{at}.readback"),
                        format!("\"{report}\": the setpoint's own topic; the equipment reports its power on another"),
                    );
                }
            }
            let group = p.take(at, toml::Value::Table(t));
            Some(RawLiveLoad::Mqtt {
                topic: topic.ok()??,
                readback: readback.ok()?,
                group: group?,
            })
        }
        _ => {
            p.push(
                format!("{at}.kind"),
                format!(
                    "{}: expected \"cpu\", \"mqtt\" or \"asic-fleet\"",
                    show(kind.as_ref())
                ),
            );
            None
        }
    }
}

/// Reads a live config with the sections its components own.
pub fn load(path: &Path) -> Result<super::Site, ConfigError> {
    let mut operators = None;
    let mut modbus = Vec::new();
    let mut telemetry = None;
    let mut ledger = None;
    let config = load_live(path, &mut |t: &mut toml::Table, p: &mut Problems| {
        operators = take_operator_config(t, path, p);
        modbus = validate_devices(t, p);
        telemetry = Some(crate::telemetry::config::validate(p, t, path));
        ledger = crate::ledger::config::validate(p, t, path);
    })?;
    // The log's default name follows the site, known once the file is read.
    if let Some(l) = ledger.as_mut() {
        if l.name.is_empty() {
            l.name = crate::ledger::config::default_name(&config.site);
        }
    }
    Ok(super::Site {
        config,
        operators: operators.expect("no problems means the operator sections were taken"),
        modbus,
        telemetry: telemetry.expect("taken above"),
        ledger,
    })
}

/// Reads and checks a live config. `extra` takes the sections other components own
/// (e.g. `[[operators]]`) out of the table first, reporting into the same problems.
pub fn load_live(
    path: &Path,
    extra: &mut dyn FnMut(&mut toml::Table, &mut Problems),
) -> Result<LiveConfig, ConfigError> {
    let mut table = read_table(path)?;
    inline_policy(path, &mut table)?;
    let mut p = Problems::default();
    extra(&mut table, &mut p);
    let site: Option<String> = p.section(&mut table, "site_id");
    let tick = match table.remove("tick") {
        Some(v) => p.take::<Tick>("tick", v).map(|t| t.0),
        None => Some(Duration::from_secs(1)),
    };
    let raw_site: Option<RawSite> = p.section(&mut table, "site");
    let tariff: Option<RawTariff> = p.section(&mut table, "tariff");
    let raw_policy: Option<RawPolicy> = p.section(&mut table, "policy");
    let hashprice: Option<f64> = table
        .remove("hashprice")
        .and_then(|v| p.take("hashprice", v));
    let raw_mqtt: Option<RawMqtt> = p.section(&mut table, "mqtt");
    let raw_signals: Vec<(usize, RawMqttSignal)> = p.array(&mut table, "signals", false);
    let raw_loads = p.array_with(&mut table, "loads", true, take_live_load);
    let raw_carbon: Option<RawCarbon> = table.remove("carbon").and_then(|v| p.take("carbon", v));
    for k in table.keys() {
        p.push(k.clone(), "unknown key");
    }

    if let Some(s) = &site {
        if s.is_empty() || s.contains(['/', '+', '#']) {
            p.push(
                "site_id",
                format!("{s:?}: must be non-empty, without / + #"),
            );
        }
    }
    if let Some(t) = tick {
        if t < Duration::from_millis(10) || t > Duration::from_secs(60) {
            p.push("tick", format!("{t:?} is outside 10ms..=60s"));
        }
    }
    let policy = raw_policy.and_then(|r| validate_policy(&mut p, "policy", r));
    let carbon = raw_carbon.map_or_else(EmissionFactors::default, |c| {
        // A mix and its factors make the grid's intensity from history: a simulation's.
        // Live, the grid's intensity is a signal; saying otherwise would be ignored.
        if c.mix.is_some() {
            p.push(
                "carbon.mix",
                "a generation-mix file is for simulations; live, map an MQTT signal with quantity = \"grid_carbon_intensity\"",
            );
        }
        if !c.factors.is_empty() {
            p.push(
                "carbon.factors",
                "the grid's factors weigh a generation mix, which only simulations read; live, the grid's intensity is a signal (own_pv and own_wind apply)",
            );
        }
        validate_factors(&mut p, "carbon", &c)
    });
    if let Some(s) = &raw_site {
        non_negative(&mut p, "site.export_limit", s.export_limit);
        non_negative(&mut p, "site.import_limit", s.import_limit);
        for (key, generator, cap, has) in [
            ("pv_capacity", "pv", s.pv_capacity, s.pv),
            ("wind_capacity", "wind", s.wind_capacity, s.wind),
        ] {
            if let Some(c) = cap {
                non_negative(&mut p, &format!("site.{key}"), c);
                if !has {
                    p.push(
                        format!("site.{key}"),
                        format!("given, but site.{generator} is not true"),
                    );
                }
            }
        }
        if let Some(r) = s.connection_rating {
            let limits = s.import_limit.max(s.export_limit);
            if !(r.is_finite() && r >= limits) {
                p.push(
                    "site.connection_rating",
                    format!("{r} must be finite and at least the larger limit, {limits}"),
                );
            }
        }
    }
    if let Some(h) = hashprice {
        hashprice_value(&mut p, "hashprice", h);
    }
    let tariff = tariff.map(|t| {
        price(
            &mut p,
            "tariff.import_adder_eur_mwh",
            t.import_adder_eur_mwh,
        );
        Tariff {
            import_adder: PricePerMwh(t.import_adder_eur_mwh),
            export: export_value(&mut p, "tariff.export", t.export),
        }
    });
    let signals = mqtt_signals::validate(&mut p, "signals", raw_signals);
    let has_hashprice_signal = signals
        .iter()
        .any(|s| s.carries == mqtt_signals::Carries::Hashprice);
    if hashprice.is_none() && !has_hashprice_signal {
        p.push(
            "hashprice",
            "missing: give a constant or a signal with quantity = \"hashprice\"",
        );
    }

    let mut raw = Vec::new();
    let mut drivers = Vec::new();
    let mut fleets: Vec<FleetConfig> = Vec::new();
    let base = path.parent().unwrap_or(Path::new("."));
    for (i, l) in raw_loads {
        let at = format!("loads[{i}]");
        match l {
            RawLiveLoad::Cpu(cpu) => {
                let cpu = cpu.check(&mut p, &at);
                raw.push((i, RawLoad::Cpu(cpu.spec)));
                drivers.push(LoadDriver::Hasher {
                    threads: cpu.threads,
                    watts_per_core: cpu.watts_per_core,
                    hashrate_per_core: cpu.hashrate_per_core,
                    pool: cpu.pool,
                });
            }
            RawLiveLoad::Mqtt {
                topic,
                readback,
                group,
            } => {
                raw.push((i, RawLoad::Asic(group)));
                drivers.push(LoadDriver::Mqtt { topic, readback });
            }
            RawLiveLoad::Fleet(f) => {
                if let Some(f) = f.check(&mut p, &at, base) {
                    fleets.push(f);
                }
            }
        }
    }
    // All loads at once, each with its own index: names are checked across them all.
    let loads = validate_loads(&mut p, "loads", raw);
    if loads.is_empty() && fleets.is_empty() {
        p.push("loads", "needs at least one load");
    }
    for (i, f) in fleets.iter().enumerate() {
        let clash =
            loads.iter().any(|l| l.name == f.name) || fleets[..i].iter().any(|o| o.name == f.name);
        if clash {
            p.push(
                "loads",
                format!("{:?} is used twice as a load name", f.name),
            );
        }
    }

    let mqtt = raw_mqtt.and_then(|m| m.check(&mut p, path, site.as_deref().unwrap_or_default()));

    let mining: Watts = loads
        .iter()
        .map(|l| l.rated_power * f64::from(l.count))
        .sum();
    let ratings = raw_site.as_ref().map(|s| Ratings {
        connection: s
            .connection_rating
            .unwrap_or(s.import_limit.max(s.export_limit)),
        pv: s.pv_capacity,
        wind: s.wind_capacity,
        mining,
    });
    if let (Some(policy), Some(s), Some(r)) = (&policy, &raw_site, &ratings) {
        safe_limit_within(
            &mut p,
            "policy.safe_limit",
            policy.safe_limit,
            s.import_limit,
            r.generation(),
            "site.pv_capacity and site.wind_capacity",
        );
    }

    let location = raw_site
        .as_ref()
        .and_then(|s| crate::site::config::location(&mut p, "site", s.latitude, s.longitude));
    if let (Some(policy), Some(s)) = (&policy, &raw_site) {
        let pv_forecast = signals.iter().any(|g| {
            g.carries == crate::signal::mqtt::Carries::Forecast(crate::signal::Quantity::PvPower)
        });
        crate::site::config::plan_needs_location(
            &mut p,
            "site",
            policy.plan.is_some(),
            s.pv,
            location,
            pv_forecast,
        );
    }

    let config = (|| {
        let s = raw_site?;
        let ratings = ratings?;
        let MqttConfig {
            broker,
            connection: mqtt,
            ha_discovery,
        } = mqtt?;
        Some(LiveConfig {
            file: path.to_path_buf(),
            site: site?,
            tick: tick?,
            policy: policy?,
            grid: GridConnection {
                export_limit: s.export_limit,
                import_limit: s.import_limit,
            },
            ratings,
            tariff: tariff?,
            has_pv: s.pv,
            has_wind: s.wind,
            location,
            hashprice: hashprice.map(Hashprice),
            broker,
            mqtt,
            ha_discovery,
            signals,
            loads,
            drivers,
            fleets,
            carbon,
        })
    })();
    p.into_result(path, config)
}

#[derive(Deserialize)]
struct Tick(#[serde(deserialize_with = "de_duration")] Duration);
