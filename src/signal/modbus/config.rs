//! `[[modbus]]` config entries: raw serde shapes (`deny_unknown_fields`) and their
//! validation into `ModbusDevice`, with every problem reported at its key path.
//!
//! ```toml
//! [[modbus]]
//! name = "inverter"
//! kind = "sunspec"            # or "raw"
//! role = "pv"                 # sunspec: "pv" | "wind" | "grid-meter" | "site-load"
//! host = "192.0.2.10"
//! port = 502                  # default 502
//! unit_id = 1                 # default 1
//! poll = "1s"                 # default 1s
//! timeout = "500ms"           # default 500ms; at most `poll`
//! backoff_min = "1s"          # reconnection backoff, default 1s ...
//! backoff_max = "30s"         # ... doubling up to 30s
//!
//! [[modbus]]
//! name = "meter"
//! kind = "raw"
//! host = "192.0.2.11"
//! registers = [
//!   # quantity: grid_power | pv_power | wind_power | site_load | mining_power | grid_frequency
//!   # type: u16 | i16 | u32 | i32 | f32; word_order: big (default) | little
//!   # table: holding | input; unit: W | kW | MW for power (default W), Hz for frequency
//!   { quantity = "grid_power", address = 30775, type = "i32", word_order = "big",
//!     scale = 1.0, unit = "W", table = "input" },
//! ]
//! ```

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use super::raw::{RawRegister, RawTarget, RegisterType, Table, WordOrder};
use super::sunspec::Role;
use super::{DeviceKind, ModbusDevice};
use crate::config::Problems;
use crate::signal::Quantity;
use crate::units::de_opt_duration;

/// One `[[modbus]]` entry as written; `kind` picks the variant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind")]
pub enum RawModbusDevice {
    #[serde(rename = "sunspec")]
    SunSpec(RawSunSpecDevice),
    #[serde(rename = "raw")]
    Raw(RawRegisterDevice),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSunSpecDevice {
    pub name: String,
    pub role: Role,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub poll: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub backoff_min: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub backoff_max: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegisterDevice {
    pub name: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub poll: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub backoff_min: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub backoff_max: Option<Duration>,
    pub registers: Vec<RawRegisterEntry>,
}

/// One register of a raw map, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegisterEntry {
    pub quantity: String,
    pub address: u16,
    #[serde(rename = "type")]
    pub kind: RegisterType,
    #[serde(default)]
    pub word_order: WordOrder,
    #[serde(default = "default_scale")]
    pub scale: f64,
    pub unit: Option<String>,
    pub table: Table,
}

fn default_port() -> u16 {
    502
}
fn default_unit_id() -> u8 {
    1
}
fn default_scale() -> f64 {
    1.0
}

pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Takes the optional `modbus` array out of `table` and validates every entry; problems
/// go to `problems` under `modbus[i]....`. Entries with problems are left out.
pub fn validate_devices(table: &mut toml::Table, problems: &mut Problems) -> Vec<ModbusDevice> {
    let items = match table.remove("modbus") {
        None => return Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            problems.push("modbus", "expected an array of tables ([[modbus]])");
            return Vec::new();
        }
    };
    let mut names = HashSet::new();
    let mut devices = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("modbus[{i}]");
        let name = item
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string);
        if let Some(name) = name {
            if !names.insert(name.clone()) {
                problems.push(
                    format!("{path}.name"),
                    format!("{name:?} names another Modbus device too"),
                );
            }
        }
        if let Some(d) = validate_device(&path, item, problems) {
            devices.push(d);
        }
    }
    devices
}

/// Validates one `[[modbus]]` entry found at `path`.
pub fn validate_device(
    path: &str,
    value: toml::Value,
    problems: &mut Problems,
) -> Option<ModbusDevice> {
    // Serde's internally tagged enums buffer the entry and lose the key path of an error
    // inside it, so the tag is read here and the variant's struct is deserialised directly.
    let mut table = match value {
        toml::Value::Table(t) => t,
        _ => {
            problems.push(path, "expected a table");
            return None;
        }
    };
    let kind = table.remove("kind");
    let at = |key: &str| format!("{path}.{key}");
    match kind.as_ref().and_then(|k| k.as_str()) {
        Some("sunspec") => {
            let raw: RawSunSpecDevice = problems.take(path, toml::Value::Table(table))?;
            let common = Common {
                name: raw.name,
                host: raw.host,
                port: raw.port,
                unit_id: raw.unit_id,
                poll: raw.poll,
                timeout: raw.timeout,
                backoff_min: raw.backoff_min,
                backoff_max: raw.backoff_max,
            };
            common.validate(path, DeviceKind::SunSpec { role: raw.role }, problems)
        }
        Some("raw") => {
            let raw: RawRegisterDevice = problems.take(path, toml::Value::Table(table))?;
            let common = Common {
                name: raw.name,
                host: raw.host,
                port: raw.port,
                unit_id: raw.unit_id,
                poll: raw.poll,
                timeout: raw.timeout,
                backoff_min: raw.backoff_min,
                backoff_max: raw.backoff_max,
            };
            // Both halves are checked before giving up, so every problem is reported.
            let registers = validate_registers(&at("registers"), raw.registers, problems);
            let device = common.validate(
                path,
                DeviceKind::Raw {
                    registers: Vec::new(),
                },
                problems,
            );
            match (device, registers) {
                (Some(d), Some(registers)) => Some(ModbusDevice {
                    kind: DeviceKind::Raw { registers },
                    ..d
                }),
                _ => None,
            }
        }
        Some(other) => {
            problems.push(
                at("kind"),
                format!("unknown device kind {other:?} (expected \"sunspec\" or \"raw\")"),
            );
            None
        }
        None => {
            problems.push(at("kind"), "missing (\"sunspec\" or \"raw\")");
            None
        }
    }
}

/// The keys every device kind has.
struct Common {
    name: String,
    host: String,
    port: u16,
    unit_id: u8,
    poll: Option<Duration>,
    timeout: Option<Duration>,
    backoff_min: Option<Duration>,
    backoff_max: Option<Duration>,
}

impl Common {
    fn validate(
        self,
        path: &str,
        kind: DeviceKind,
        problems: &mut Problems,
    ) -> Option<ModbusDevice> {
        let before = problems.0.len();
        let at = |key: &str| format!("{path}.{key}");
        if self.name.trim().is_empty() {
            problems.push(at("name"), "must not be empty");
        }
        if self.host.trim().is_empty() {
            problems.push(at("host"), "must not be empty");
        }
        if self.port == 0 {
            problems.push(at("port"), "must be 1-65535");
        }
        let poll = self.poll.unwrap_or(DEFAULT_POLL);
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let backoff_min = self.backoff_min.unwrap_or(DEFAULT_BACKOFF_MIN);
        let backoff_max = self
            .backoff_max
            .unwrap_or(DEFAULT_BACKOFF_MAX.max(backoff_min));
        if poll.is_zero() {
            problems.push(at("poll"), "must be longer than zero");
        }
        if timeout.is_zero() {
            problems.push(at("timeout"), "must be longer than zero");
        } else if timeout > poll {
            // A reply that may take longer than the poll period makes every reading older
            // than the period says, and the staleness rule is tuned to the period.
            problems.push(
                at("timeout"),
                format!("{timeout:?} is longer than poll ({poll:?})"),
            );
        }
        if backoff_min.is_zero() {
            problems.push(at("backoff_min"), "must be longer than zero");
        }
        if backoff_max < backoff_min {
            problems.push(
                at("backoff_max"),
                format!("{backoff_max:?} is shorter than backoff_min ({backoff_min:?})"),
            );
        }
        (problems.0.len() == before).then_some(ModbusDevice {
            name: self.name,
            host: self.host,
            port: self.port,
            unit_id: self.unit_id,
            poll,
            timeout,
            backoff_min,
            backoff_max,
            kind,
        })
    }
}

fn validate_registers(
    path: &str,
    entries: Vec<RawRegisterEntry>,
    problems: &mut Problems,
) -> Option<Vec<RawRegister>> {
    let before = problems.0.len();
    if entries.is_empty() {
        problems.push(path, "a raw device needs at least one register");
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let at = |key: &str| format!("{path}[{i}].{key}");
        let quantity = Quantity::ALL.into_iter().find(|q| q.as_str() == e.quantity);
        let target = match quantity {
            Some(Quantity::GridFrequency) => match e.unit.as_deref().unwrap_or("Hz") {
                "Hz" => Some(RawTarget::Frequency),
                u => {
                    problems.push(at("unit"), format!("{u:?} is not a frequency unit (Hz)"));
                    None
                }
            },
            Some(
                q @ (Quantity::PvPower
                | Quantity::WindPower
                | Quantity::SiteLoad
                | Quantity::GridPower
                | Quantity::MiningPower),
            ) => {
                let factor = match e.unit.as_deref().unwrap_or("W") {
                    "W" => Some(1.0),
                    "kW" => Some(1e3),
                    "MW" => Some(1e6),
                    u => {
                        problems.push(
                            at("unit"),
                            format!("{u:?} is not a power unit (W, kW or MW)"),
                        );
                        None
                    }
                };
                factor.map(|watts_per_unit| RawTarget::Power {
                    quantity: q,
                    watts_per_unit,
                })
            }
            _ => {
                problems.push(
                    at("quantity"),
                    format!(
                        "{:?} is not measured over Modbus (expected grid_power, pv_power, \
                         wind_power, site_load, mining_power or grid_frequency)",
                        e.quantity
                    ),
                );
                None
            }
        };
        if quantity.is_some() && !seen.insert(e.quantity.clone()) {
            problems.push(
                at("quantity"),
                format!(
                    "{:?} is read from another register of this device too",
                    e.quantity
                ),
            );
        }
        if u32::from(e.address) + u32::from(e.kind.words()) > 0x1_0000 {
            problems.push(
                at("address"),
                format!("a {:?} at {} runs past register 65535", e.kind, e.address),
            );
        }
        if !e.scale.is_finite() || e.scale == 0.0 {
            problems.push(at("scale"), "must be a finite number other than zero");
        }
        if let Some(target) = target {
            out.push(RawRegister {
                target,
                table: e.table,
                address: e.address,
                kind: e.kind,
                word_order: e.word_order,
                scale: e.scale,
            });
        }
    }
    (problems.0.len() == before).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Vec<ModbusDevice>, Vec<String>) {
        let mut table: toml::Table = text.parse().unwrap();
        let mut problems = Problems::default();
        let devices = validate_devices(&mut table, &mut problems);
        (devices, problems.0.iter().map(|p| p.to_string()).collect())
    }

    const EXAMPLE: &str = r#"
        [[modbus]]
        name = "inverter"
        kind = "sunspec"
        role = "pv"
        host = "192.0.2.10"
        port = 502
        unit_id = 1
        poll = "1s"
        timeout = "500ms"
        [[modbus]]
        name = "meter"
        kind = "raw"
        host = "192.0.2.11"
        port = 502
        unit_id = 1
        poll = "1s"
        timeout = "500ms"
        registers = [ { quantity = "grid_power", address = 30775, type = "i32", word_order = "big", scale = 1.0, unit = "W", table = "input" } ]
    "#;

    #[test]
    fn the_documented_example_validates() {
        let (devices, problems) = check(EXAMPLE);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].kind, DeviceKind::SunSpec { role: Role::Pv });
        assert_eq!(devices[0].timeout, Duration::from_millis(500));
        assert_eq!(devices[0].backoff_max, DEFAULT_BACKOFF_MAX);
        let DeviceKind::Raw { registers } = &devices[1].kind else {
            panic!("raw device expected")
        };
        assert_eq!(
            registers[0],
            RawRegister {
                target: RawTarget::Power {
                    quantity: Quantity::GridPower,
                    watts_per_unit: 1.0
                },
                table: Table::Input,
                address: 30775,
                kind: RegisterType::I32,
                word_order: WordOrder::Big,
                scale: 1.0,
            }
        );
    }

    #[test]
    fn the_serde_tagged_enum_reads_the_same_shape() {
        let mut table: toml::Table = EXAMPLE.parse().unwrap();
        let items = table.remove("modbus").unwrap();
        let raw: Vec<RawModbusDevice> = items.try_into().unwrap();
        assert!(matches!(raw[0], RawModbusDevice::SunSpec(ref d) if d.role == Role::Pv));
        assert!(matches!(raw[1], RawModbusDevice::Raw(ref d) if d.registers.len() == 1));
    }

    #[test]
    fn every_problem_has_its_key_path() {
        let (devices, problems) = check(
            r#"
            [[modbus]]
            name = "a"
            kind = "sunspec"
            role = "battery"
            host = "h"
            [[modbus]]
            name = "a"
            kind = "raw"
            host = ""
            port = 0
            poll = "1s"
            timeout = "2s"
            backoff_min = "10s"
            backoff_max = "1s"
            registers = [
              { quantity = "price", address = 1, type = "u16", table = "holding" },
              { quantity = "grid_power", address = 65535, type = "i32", table = "input", unit = "kWh", scale = 0.0 },
              { quantity = "grid_frequency", address = 3, type = "u16", table = "input", unit = "mHz" },
              { quantity = "grid_power", address = 5, type = "u16", table = "input" },
            ]
            [[modbus]]
            name = "c"
            kind = "modbus-rtu"
            [[modbus]]
            name = "d"
            host = "h"
            [[modbus]]
            name = "e"
            kind = "raw"
            host = "h"
            colour = "red"
            registers = [ { quantity = "pv_power", address = 1, type = "u64", table = "holding" } ]
            "#,
        );
        assert!(devices.is_empty());
        let expect = [
            "modbus[0].role: unknown variant `battery`",
            "modbus[1].name: \"a\" names another Modbus device too",
            "modbus[1].registers[0].quantity: \"price\" is not measured over Modbus",
            "modbus[1].registers[1].unit: \"kWh\" is not a power unit",
            "modbus[1].registers[1].address: a I32 at 65535 runs past register 65535",
            "modbus[1].registers[1].scale: must be a finite number other than zero",
            "modbus[1].registers[2].unit: \"mHz\" is not a frequency unit",
            "modbus[1].registers[3].quantity: \"grid_power\" is read from another register",
            "modbus[1].host: must not be empty",
            "modbus[1].port: must be 1-65535",
            "modbus[1].timeout: 2s is longer than poll (1s)",
            "modbus[1].backoff_max: 1s is shorter than backoff_min (10s)",
            "modbus[2].kind: unknown device kind \"modbus-rtu\"",
            "modbus[3].kind: missing",
            "modbus[4].colour: unknown field `colour`",
            // Hidden behind the unknown key before every bad key was reported (r9).
            "modbus[4].registers[0].type: unknown variant `u64`",
        ];
        for e in expect {
            assert!(
                problems.iter().any(|p| p.starts_with(e)),
                "no problem starting {e:?} in\n{}",
                problems.join("\n")
            );
        }
        assert_eq!(problems.len(), expect.len(), "{}", problems.join("\n"));
    }
}
