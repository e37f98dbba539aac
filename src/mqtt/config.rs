//! The `[mqtt]` section: which broker (embedded or external, a tagged `Broker`), how to
//! reach and log in to it, and the packet limit; checked into `MqttSettings`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::broker::{EmbeddedSettings, Login};
use super::{read_ca, MqttSettings, DEFAULT_MAX_PACKET_SIZE};
use crate::config::{relative_to, Problems};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
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

/// A checked `[mqtt]` section.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub broker: Broker,
    /// How the daemon connects (to its own broker, for `Broker::Embedded`).
    pub connection: MqttSettings,
    pub ha_discovery: bool,
}

impl RawMqtt {
    /// Checks the section of the site `site` whose file is `path` (a password file is
    /// relative to it); `None` when a problem was found.
    pub fn check(self, p: &mut Problems, path: &Path, site: &str) -> Option<MqttConfig> {
        let m = self;
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
            None => DEFAULT_MAX_PACKET_SIZE,
            Some(v) => parse_bytes(v).unwrap_or_else(|e| {
                p.push("mqtt.max_packet_size", e);
                DEFAULT_MAX_PACKET_SIZE
            }),
        };
        let client_id = m.client_id.unwrap_or_else(|| format!("gridminer-{site}"));
        match m.broker.as_str() {
            "embedded" => {
                let listen = m.listen.unwrap_or_else(|| "127.0.0.1:1883".into());
                match listen.parse::<SocketAddr>() {
                    Ok(addr) => {
                        if m.host.is_some() || m.tls_ca.is_some() {
                            p.push("mqtt", "host and tls_ca are for broker = \"external\"");
                        }
                        let login = match (&m.username, &password) {
                            (Some(u), Some(pw)) => Some(Login {
                                username: u.clone(),
                                password: pw.clone(),
                            }),
                            _ => None,
                        };
                        // A wildcard address is not loopback: `is_loopback` is false
                        // for 0.0.0.0 and ::, so the broker warns about those too.
                        return Some(MqttConfig {
                            broker: Broker::Embedded(EmbeddedSettings {
                                listen: addr,
                                login,
                                max_packet_size,
                            }),
                            connection: MqttSettings {
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
                            ha_discovery: m.ha_discovery,
                        });
                    }
                    Err(e) => p.push("mqtt.listen", format!("{listen:?}: {e}")),
                }
            }
            "external" => match m.host {
                Some(host) => {
                    let tls_ca = m.tls_ca.map(|f| relative_to(path, &f));
                    if let Some(ca) = &tls_ca {
                        if let Err(e) = read_ca(ca) {
                            p.push("mqtt.tls_ca", e.to_string());
                        }
                    }
                    let port = m.port.unwrap_or(if tls_ca.is_some() { 8883 } else { 1883 });
                    return Some(MqttConfig {
                        broker: Broker::External,
                        connection: MqttSettings {
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
                        ha_discovery: m.ha_discovery,
                    });
                }
                None => p.push("mqtt.host", "missing: broker = \"external\" needs a host"),
            },
            other => p.push(
                "mqtt.broker",
                format!("{other:?}: expected \"embedded\" or \"external\""),
            ),
        }
        None
    }
}

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
