//! `ModbusError`: everything that can go wrong between us and a Modbus device.
//!
//! Three kinds of failure stay apart, because they call for different responses:
//! - the transport failed (no connection, a dropped socket, no reply in time): reconnect
//!   with backoff and count it as an error;
//! - the device answered, but refused (a Modbus exception) or garbled the reply: the
//!   connection may be fine; the reply is rejected and counted;
//! - the device is not what the config says (no SunSpec marker, no model for the role).

use std::fmt;
use std::io;
use std::time::Duration;

use super::raw::Table;

/// The exception code of a Modbus exception reply (function code | 0x80).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionCode(pub u8);

impl ExceptionCode {
    pub const ILLEGAL_FUNCTION: Self = Self(0x01);
    pub const ILLEGAL_DATA_ADDRESS: Self = Self(0x02);
    pub const ILLEGAL_DATA_VALUE: Self = Self(0x03);
    pub const SERVER_DEVICE_FAILURE: Self = Self(0x04);
    pub const ACKNOWLEDGE: Self = Self(0x05);
    pub const SERVER_DEVICE_BUSY: Self = Self(0x06);
    pub const GATEWAY_PATH_UNAVAILABLE: Self = Self(0x0A);
    pub const GATEWAY_TARGET_FAILED: Self = Self(0x0B);

    pub fn name(self) -> &'static str {
        match self.0 {
            0x01 => "illegal function",
            0x02 => "illegal data address",
            0x03 => "illegal data value",
            0x04 => "server device failure",
            0x05 => "acknowledge",
            0x06 => "server device busy",
            0x08 => "memory parity error",
            0x0A => "gateway path unavailable",
            0x0B => "gateway target device failed to respond",
            _ => "vendor-specific exception",
        }
    }
}

impl fmt::Display for ExceptionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} ({})", self.0, self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    /// No TCP connection (address did not resolve, refused, unreachable, or no answer to
    /// the handshake within the timeout).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The connection broke while a request was on the wire.
    #[error("connection lost: {0}")]
    Transport(#[source] io::Error),
    /// No reply within the device's timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The device answered with a Modbus exception.
    #[error("device refused to read {count} {table} register(s) at {address}: exception {code}")]
    Exception {
        table: Table,
        address: u16,
        count: u16,
        code: ExceptionCode,
    },
    /// The device answered with something that is not a valid reply to our request: a frame
    /// that does not decode, a mismatched transaction or function, the wrong number of
    /// registers, or a value no device can mean (a NaN float, a scale factor out of range).
    #[error("malformed reply to reading {count} register(s) at {address}: {reason}")]
    Malformed {
        address: u16,
        count: u16,
        reason: String,
    },
    /// None of the SunSpec base addresses (40000, 0, 50000) holds the `SunS` marker.
    #[error("not a SunSpec device: no \"SunS\" marker at 40000, 0 or 50000")]
    NotSunSpec,
    /// The SunSpec model chain has no model that serves the configured role.
    #[error("the SunSpec model chain {found:?} has no {wanted} model")]
    NoModel {
        wanted: &'static str,
        found: Vec<u16>,
    },
    /// A model's length register is too short for the points we read from it.
    #[error("SunSpec model {id} at {address} is {len} registers long; its points need {needed}")]
    ModelTooShort {
        id: u16,
        address: u16,
        len: u16,
        needed: u16,
    },
}

impl ModbusError {
    /// Whether trying again later may succeed without anyone changing the config or the
    /// device. The source retries transient errors forever (with backoff); a non-transient
    /// one found during SunSpec discovery ends `ModbusSource::run`.
    pub fn is_transient(&self) -> bool {
        match self {
            ModbusError::Connect { .. } | ModbusError::Transport(_) | ModbusError::Timeout(_) => {
                true
            }
            ModbusError::Exception { code, .. } => matches!(
                *code,
                ExceptionCode::SERVER_DEVICE_FAILURE
                    | ExceptionCode::ACKNOWLEDGE
                    | ExceptionCode::SERVER_DEVICE_BUSY
                    | ExceptionCode::GATEWAY_PATH_UNAVAILABLE
                    | ExceptionCode::GATEWAY_TARGET_FAILED
            ),
            // One garbled reply says nothing about the next; the connection is rebuilt.
            ModbusError::Malformed { .. } => true,
            // A device still booting may not show its SunSpec map yet.
            ModbusError::NotSunSpec => true,
            ModbusError::NoModel { .. } | ModbusError::ModelTooShort { .. } => false,
        }
    }

    /// The device answered, but the answer was refused or unusable: counted as a rejected
    /// reply rather than a transport error.
    pub fn is_rejected_reply(&self) -> bool {
        matches!(
            self,
            ModbusError::Exception { .. } | ModbusError::Malformed { .. }
        )
    }

    /// After this error the byte stream can no longer be trusted (a late reply would be
    /// taken for the next request's), so the connection is dropped and rebuilt.
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            ModbusError::Connect { .. }
                | ModbusError::Transport(_)
                | ModbusError::Timeout(_)
                | ModbusError::Malformed { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_or_not() {
        let exception = |code| ModbusError::Exception {
            table: Table::Holding,
            address: 40000,
            count: 2,
            code,
        };
        assert!(ModbusError::Timeout(Duration::from_millis(500)).is_transient());
        assert!(exception(ExceptionCode::SERVER_DEVICE_BUSY).is_transient());
        assert!(!exception(ExceptionCode::ILLEGAL_DATA_ADDRESS).is_transient());
        assert!(exception(ExceptionCode::ILLEGAL_DATA_ADDRESS).is_rejected_reply());
        assert!(!exception(ExceptionCode::ILLEGAL_DATA_ADDRESS).breaks_connection());
        assert!(!ModbusError::NoModel {
            wanted: "meter",
            found: vec![1, 103]
        }
        .is_transient());
    }
}
