//! The edge controller's config (`gridminer run --config site.toml`): the site, its
//! policy, the MQTT broker and topic table, and the loads. Components with a config of
//! their own (operators, Modbus devices, telemetry) take their sections from the table
//! before the rest is checked here, so unknown keys are still caught everywhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::raw::{RawAsicGroup, RawCpuPool, RawExport, RawLoad, RawPolicy};
use super::validate::{hashprice_value, non_negative, price, safe_limit_within, show, table_of};
use super::{
    export_value, read_table, relative_to, validate_loads, validate_policy, ConfigError, Problems,
};
use crate::actuator::hasher::stratum::StratumConfig;
use crate::policy::{Policy, PolicyParams};
use crate::signal::mqtt::{self as mqtt_signals, MqttSignal, RawMqttSignal};
use crate::site::{GridConnection, LoadSpec, Ratings, Tariff};
use crate::units::{de_duration, de_opt_watts, de_watts, HashRate, Hashprice, PricePerMwh, Watts};

/// How long the daemon waits before logging in again after a pool refused it: long
/// enough not to hammer a pool that said no, short enough that a fixed account mines
/// again within minutes without a restart.
pub const POOL_REFUSED_RETRY: Duration = Duration::from_secs(300);

/// Where the broker is.
#[derive(Debug, Clone, PartialEq)]
pub enum Broker {
    /// rumqttd inside the process, set up so.
    Embedded(crate::mqtt::broker::EmbeddedSettings),
    External,
}

/// The range of `mqtt.max_packet_size`, in bytes: at least room for a signed operator
/// command with a long topic many times over (a limit that drops commands would lock
/// the operator out), at most what MQTT can express (a 4-byte remaining length).
pub const MAX_PACKET_SIZE_RANGE: std::ops::RangeInclusive<usize> = 16 * 1024..=268_435_455;

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
    /// Used when no MQTT signal carries the hashprice.
    pub hashprice: Option<Hashprice>,
    pub broker: Broker,
    pub mqtt: crate::mqtt::MqttSettings,
    pub ha_discovery: bool,
    pub signals: Vec<MqttSignal>,
    pub loads: Vec<LoadSpec>,
    /// How each load is driven, by index into `loads`.
    pub drivers: Vec<LoadDriver>,
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
    /// Equipment controlled by something else: its setpoint is published on `topic`.
    Mqtt { topic: String },
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTariff {
    import_adder_eur_mwh: f64,
    export: RawExport,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    /// `"embedded"` or `"external"`.
    broker: String,
    listen: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    tls_ca: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    client_id: Option<String>,
    #[serde(default = "yes")]
    ha_discovery: bool,
    /// Bytes: an integer, or a string with a unit ("256 KiB", "1 MiB", "64 kB").
    max_packet_size: Option<toml::Value>,
}

/// A byte count: an integer, or a number with B, kB, KiB, MB or MiB.
fn parse_bytes(v: &toml::Value) -> Result<usize, String> {
    const UNITS: [(&str, f64); 5] = [
        ("B", 1.0),
        ("kB", 1e3),
        ("KiB", 1024.0),
        ("MB", 1e6),
        ("MiB", 1024.0 * 1024.0),
    ];
    let bytes = match v {
        toml::Value::Integer(n) => *n as f64,
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            let (number, unit) = (s[..split].trim(), s[split..].trim());
            let factor = match UNITS.iter().find(|(u, _)| *u == unit) {
                Some((_, f)) => *f,
                None if unit.is_empty() => 1.0,
                None => {
                    return Err(format!(
                        "{s:?}: unit {unit:?}, expected B, kB, KiB, MB or MiB"
                    ))
                }
            };
            let n: f64 = number
                .parse()
                .map_err(|_| format!("{s:?}: expected a number of bytes, e.g. \"256 KiB\""))?;
            n * factor
        }
        other => {
            return Err(format!(
                "{other}: expected bytes, e.g. 262144 or \"256 KiB\""
            ))
        }
    };
    let range = &MAX_PACKET_SIZE_RANGE;
    if !(bytes >= *range.start() as f64 && bytes <= *range.end() as f64) || bytes.fract() != 0.0 {
        return Err(format!(
            "{bytes} bytes: expected a whole number within {}..={} (16 KiB to 256 MiB)",
            range.start(),
            range.end()
        ));
    }
    Ok(bytes as usize)
}

fn yes() -> bool {
    true
}

/// A live `[[loads]]` entry, by its `kind`.
#[derive(Debug)]
enum RawLiveLoad {
    /// The embedded SHA-256d pool.
    Cpu(RawCpuLoad),
    /// Anything else, told its setpoint on `topic` over MQTT; the rest as an ASIC group
    /// (checked as such, unknown keys included).
    Mqtt { topic: String, group: RawAsicGroup },
}

/// Most threads one embedded pool may run.
pub const MAX_THREADS: usize = 4096;

/// Takes one live load at `at`: its `kind` first, then that kind's own shape, so that
/// every bad key is reported at its own path.
fn take_live_load(p: &mut Problems, at: &str, v: toml::Value) -> Option<RawLiveLoad> {
    let mut t = table_of(p, at, v)?;
    let kind = t.remove("kind");
    match kind.as_ref().and_then(toml::Value::as_str) {
        Some("cpu") => p.take(at, toml::Value::Table(t)).map(RawLiveLoad::Cpu),
        Some("mqtt") => {
            let topic = match t.remove("topic") {
                Some(toml::Value::String(topic)) if !topic.is_empty() => Some(topic),
                other => {
                    p.push(
                        format!("{at}.topic"),
                        format!("{}: expected the setpoint topic", show(other.as_ref())),
                    );
                    None
                }
            };
            let group = p.take(at, toml::Value::Table(t));
            Some(RawLiveLoad::Mqtt {
                topic: topic?,
                group: group?,
            })
        }
        _ => {
            p.push(
                format!("{at}.kind"),
                format!("{}: expected \"cpu\" or \"mqtt\"", show(kind.as_ref())),
            );
            None
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCpuLoad {
    name: String,
    threads: usize,
    #[serde(deserialize_with = "de_watts")]
    watts_per_core: Watts,
    #[serde(deserialize_with = "crate::units::de_hashrate")]
    hashrate_per_core: HashRate,
    pool: Option<RawStratum>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStratum {
    url: String,
    user: String,
    #[serde(default = "x")]
    password: String,
}

fn x() -> String {
    "x".into()
}

/// Reads and checks a live config. `extra` takes the sections other components own
/// (e.g. `[[operators]]`) out of the table first, reporting into the same problems.
pub fn load_live(
    path: &Path,
    extra: &mut dyn FnMut(&mut toml::Table, &mut Problems),
) -> Result<LiveConfig, ConfigError> {
    let mut table = read_table(path)?;
    super::inline_policy(path, &mut table)?;
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
    for (i, l) in raw_loads {
        let at = format!("loads[{i}]");
        match l {
            RawLiveLoad::Cpu(RawCpuLoad {
                name,
                threads,
                watts_per_core,
                hashrate_per_core,
                pool,
            }) => {
                if threads == 0 || threads > MAX_THREADS {
                    p.push(
                        format!("{at}.threads"),
                        format!("{threads}: must be 1..={MAX_THREADS}"),
                    );
                }
                let threads = threads.clamp(1, MAX_THREADS);
                raw.push((
                    i,
                    RawLoad::Cpu(RawCpuPool {
                        name,
                        rated_power: watts_per_core * threads as f64,
                        hashrate: HashRate(hashrate_per_core.0 * threads as f64),
                    }),
                ));
                let pool = pool.and_then(|s| {
                    StratumConfig::new(&s.url, &s.user, &s.password)
                        .inspect_err(|e| p.push(format!("{at}.pool.url"), e.to_string()))
                        .ok()
                        .map(|c| StratumConfig {
                            retry_refused: Some(POOL_REFUSED_RETRY),
                            ..c
                        })
                });
                drivers.push(LoadDriver::Hasher {
                    threads,
                    watts_per_core,
                    hashrate_per_core,
                    pool,
                });
            }
            RawLiveLoad::Mqtt { topic, group } => {
                raw.push((i, RawLoad::Asic(group)));
                drivers.push(LoadDriver::Mqtt { topic });
            }
        }
    }
    // All loads at once, each with its own index: names are checked across them all.
    let loads = validate_loads(&mut p, "loads", raw);
    if loads.is_empty() {
        p.push("loads", "needs at least one load");
    }

    let mut mqtt_parts = None;
    if let Some(m) = raw_mqtt {
        let has_password = m.password.is_some() || m.password_file.is_some();
        let password = match (m.password, m.password_file) {
            (Some(pw), None) => Some(pw),
            (None, Some(f)) => match std::fs::read_to_string(relative_to(path, &f)) {
                Ok(s) => Some(s.trim_end().to_string()),
                Err(e) => {
                    p.push("mqtt.password_file", format!("{f}: {e}"));
                    None
                }
            },
            (None, None) => None,
            (Some(_), Some(_)) => {
                p.push("mqtt.password", "give password or password_file, not both");
                None
            }
        };
        if password.is_some() && m.username.is_none() {
            // rumqttc sends credentials only as a pair: a lone password would be dropped.
            p.push("mqtt.username", "missing: a password needs a username");
        }
        // Nor would a lone username be sent: the daemon would connect anonymously, and
        // the embedded broker would check nothing, while the config looks like a login.
        if m.username.is_some() && !has_password {
            p.push(
                "mqtt.password",
                "missing: a username needs a password (password or password_file; \
                 password = \"\" for an empty one)",
            );
        }
        let max_packet_size = match &m.max_packet_size {
            None => crate::mqtt::DEFAULT_MAX_PACKET_SIZE,
            Some(v) => parse_bytes(v).unwrap_or_else(|e| {
                p.push("mqtt.max_packet_size", e);
                crate::mqtt::DEFAULT_MAX_PACKET_SIZE
            }),
        };
        let site_name = site.clone().unwrap_or_default();
        let client_id = m
            .client_id
            .unwrap_or_else(|| format!("gridminer-{site_name}"));
        match m.broker.as_str() {
            "embedded" => {
                let listen = m.listen.unwrap_or_else(|| "127.0.0.1:1883".into());
                match listen.parse::<SocketAddr>() {
                    Ok(addr) => {
                        if m.host.is_some() || m.tls_ca.is_some() {
                            p.push("mqtt", "host and tls_ca are for broker = \"external\"");
                        }
                        let login = match (&m.username, &password) {
                            (Some(u), Some(pw)) => Some(crate::mqtt::broker::Login {
                                username: u.clone(),
                                password: pw.clone(),
                            }),
                            _ => None,
                        };
                        // A wildcard address is not loopback: `is_loopback` is false
                        // for 0.0.0.0 and ::, so the broker warns about those too.
                        mqtt_parts = Some((
                            Broker::Embedded(crate::mqtt::broker::EmbeddedSettings {
                                listen: addr,
                                login,
                                max_packet_size,
                            }),
                            crate::mqtt::MqttSettings {
                                host: connect_to(addr).ip().to_string(),
                                port: addr.port(),
                                client_id,
                                username: m.username,
                                password,
                                tls_ca: None,
                                keep_alive: Duration::from_secs(15),
                                max_packet_size,
                                relay: false,
                            },
                            m.ha_discovery,
                        ));
                    }
                    Err(e) => p.push("mqtt.listen", format!("{listen:?}: {e}")),
                }
            }
            "external" => match m.host {
                Some(host) => {
                    let tls_ca = m.tls_ca.map(|f| relative_to(path, &f));
                    if let Some(ca) = &tls_ca {
                        if let Err(e) = crate::mqtt::read_ca(ca) {
                            p.push("mqtt.tls_ca", e.to_string());
                        }
                    }
                    let port = m.port.unwrap_or(if tls_ca.is_some() { 8883 } else { 1883 });
                    mqtt_parts = Some((
                        Broker::External,
                        crate::mqtt::MqttSettings {
                            host,
                            port,
                            client_id,
                            username: m.username,
                            password,
                            tls_ca,
                            keep_alive: Duration::from_secs(15),
                            max_packet_size,
                            relay: true,
                        },
                        m.ha_discovery,
                    ));
                }
                None => p.push("mqtt.host", "missing: broker = \"external\" needs a host"),
            },
            other => p.push(
                "mqtt.broker",
                format!("{other:?}: expected \"embedded\" or \"external\""),
            ),
        }
    }

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

    let config = (|| {
        let s = raw_site?;
        let ratings = ratings?;
        let (broker, mqtt, ha_discovery) = mqtt_parts?;
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
            hashprice: hashprice.map(Hashprice),
            broker,
            mqtt,
            ha_discovery,
            signals,
            loads,
            drivers,
        })
    })();
    p.into_result(path, config)
}

/// Where the daemon reaches its own broker listening on `listen`: a wildcard address
/// (0.0.0.0, ::) is reached on loopback, which it includes.
fn connect_to(listen: SocketAddr) -> SocketAddr {
    use std::net::{Ipv4Addr, Ipv6Addr};
    match listen.ip() {
        ip if !ip.is_unspecified() => listen,
        std::net::IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, listen.port())),
        std::net::IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, listen.port())),
    }
}

#[derive(Deserialize)]
struct Tick(#[serde(deserialize_with = "de_duration")] Duration);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r9_hole3_max_packet_size_takes_bytes_with_units_within_its_range() {
        let ok = [
            (toml::Value::Integer(262_144), 262_144),
            ("256 KiB".into(), 262_144),
            ("1MiB".into(), 1_048_576),
            ("64 kB".into(), 64_000),
            ("1.5 MiB".into(), 1_572_864),
            ("268435455 B".into(), 268_435_455),
        ];
        for (v, want) in ok {
            assert_eq!(parse_bytes(&v), Ok(want), "{v}");
        }
        let bad: [toml::Value; 8] = [
            toml::Value::Integer(1024),
            toml::Value::Integer(-1),
            "256 MiB".into(),
            "1 GiB".into(),
            "lots".into(),
            "100000.5".into(),
            toml::Value::Float(262_144.0),
            toml::Value::Boolean(true),
        ];
        for v in bad {
            assert!(parse_bytes(&v).is_err(), "{v} is refused");
        }
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        let at = |s: &str| connect_to(s.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:1883"), "127.0.0.1:1883");
        assert_eq!(at("[::]:1883"), "[::1]:1883");
        assert_eq!(at("192.168.1.5:1883"), "192.168.1.5:1883");
    }
}
