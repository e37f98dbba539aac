//! Raw register maps for devices that do not speak SunSpec: each entry says where a number
//! lives (table, address), how it is encoded (type, word order) and what it measures
//! (quantity, unit, scale). Pure decoding; the reads happen in `mod.rs`.

use std::fmt;

use serde::Deserialize;

use crate::clock::Timestamp;
use crate::signal::{Observation, Quantity};
use crate::units::{Hertz, Watts};

/// Which Modbus register table a value is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Holding registers, function 3.
    Holding,
    /// Input registers, function 4.
    Input,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Holding => "holding",
            Table::Input => "input",
        })
    }
}

/// How the registers encode the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterType {
    U16,
    I16,
    U32,
    I32,
    /// IEEE 754 single precision.
    F32,
}

impl RegisterType {
    /// Registers (16-bit words) the value spans.
    pub fn words(self) -> u16 {
        match self {
            RegisterType::U16 | RegisterType::I16 => 1,
            RegisterType::U32 | RegisterType::I32 | RegisterType::F32 => 2,
        }
    }
}

/// Order of the two words of a 32-bit value. Bytes within a word are always big-endian
/// (Modbus says so); devices disagree only about the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordOrder {
    /// High word at the lower address (the Modbus and SunSpec convention).
    #[default]
    Big,
    /// Low word at the lower address ("word swapped").
    Little,
}

/// What a register measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawTarget {
    /// A power quantity. `watts_per_unit` turns the scaled value into watts (1 for W,
    /// 1000 for kW). The sign is the quantity's own (grid power: import positive); a meter
    /// that counts the other way gets a negative `scale`.
    Power {
        quantity: Quantity,
        watts_per_unit: f64,
    },
    /// Grid frequency, in Hz.
    Frequency,
}

/// One entry of a raw register map, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRegister {
    pub target: RawTarget,
    pub table: Table,
    pub address: u16,
    pub kind: RegisterType,
    pub word_order: WordOrder,
    /// Multiplies the decoded number (a device reporting 0.1 W steps has 0.1).
    pub scale: f64,
}

impl RawRegister {
    /// The number the registers hold, before `scale`. `Err` says why the reply is unusable
    /// (wrong length, a float that is NaN or infinite).
    pub fn decode(&self, words: &[u16]) -> Result<f64, String> {
        let want = usize::from(self.kind.words());
        if words.len() != want {
            return Err(format!("expected {want} register(s), got {}", words.len()));
        }
        let u32_value = || match self.word_order {
            WordOrder::Big => (u32::from(words[0]) << 16) | u32::from(words[1]),
            WordOrder::Little => (u32::from(words[1]) << 16) | u32::from(words[0]),
        };
        let v = match self.kind {
            RegisterType::U16 => f64::from(words[0]),
            RegisterType::I16 => f64::from(words[0] as i16),
            RegisterType::U32 => f64::from(u32_value()),
            RegisterType::I32 => f64::from(u32_value() as i32),
            RegisterType::F32 => f64::from(f32::from_bits(u32_value())),
        };
        if !v.is_finite() {
            return Err(format!("{:?} value is not finite", self.kind));
        }
        Ok(v)
    }

    /// The observation these registers make, measured at `at`.
    pub fn observation(&self, words: &[u16], at: Timestamp) -> Result<Observation, String> {
        let v = self.decode(words)? * self.scale;
        Ok(match self.target {
            RawTarget::Power {
                quantity,
                watts_per_unit,
            } => Observation::Power {
                quantity,
                value: Watts(v * watts_per_unit),
                at,
            },
            RawTarget::Frequency => Observation::Frequency {
                value: Hertz(v),
                at,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(kind: RegisterType, word_order: WordOrder, scale: f64) -> RawRegister {
        RawRegister {
            target: RawTarget::Power {
                quantity: Quantity::GridPower,
                watts_per_unit: 1.0,
            },
            table: Table::Input,
            address: 30775,
            kind,
            word_order,
            scale,
        }
    }

    #[test]
    fn types_and_word_orders() {
        use RegisterType::*;
        use WordOrder::*;
        let cases: &[(RegisterType, WordOrder, &[u16], f64)] = &[
            (U16, Big, &[0xFFFF], 65535.0),
            (I16, Big, &[0xFFFF], -1.0),
            (I16, Big, &[0x8000], -32768.0),
            (U32, Big, &[0x0001, 0x1170], 70000.0),
            (U32, Little, &[0x1170, 0x0001], 70000.0),
            (I32, Big, &[0xFFFF, 0xF63C], -2500.0),
            (I32, Little, &[0xF63C, 0xFFFF], -2500.0),
            (F32, Big, &[0x4248, 0x0000], 50.0),
            (F32, Little, &[0x0000, 0x4248], 50.0),
        ];
        for &(kind, order, words, want) in cases {
            assert_eq!(
                reg(kind, order, 1.0).decode(words),
                Ok(want),
                "{kind:?} {order:?} {words:x?}"
            );
        }
    }

    #[test]
    fn scale_and_unit_reach_the_observation() {
        let mut r = reg(RegisterType::I16, WordOrder::Big, 0.1);
        r.target = RawTarget::Power {
            quantity: Quantity::PvPower,
            watts_per_unit: 1000.0,
        };
        let obs = r.observation(&[125], Timestamp(7)).unwrap();
        assert_eq!(
            obs,
            Observation::Power {
                quantity: Quantity::PvPower,
                value: Watts(12.5 * 1000.0),
                at: Timestamp(7)
            }
        );
    }

    #[test]
    fn unusable_replies_are_errors() {
        let f = reg(RegisterType::F32, WordOrder::Big, 1.0);
        assert!(f
            .decode(&[0x7FC0, 0x0000])
            .unwrap_err()
            .contains("not finite"));
        assert!(f.decode(&[0x4248]).unwrap_err().contains("expected 2"));
    }
}
