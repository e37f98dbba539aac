//! OUT: the loads that take power targets, behind one small seam.
//!
//! A driver implements one trait per capability it has: [`SetPower`] (tell the load a
//! target) and [`ReadPower`] (what the load really draws). Both are async and return
//! [`ActuatorError`], so a failed write is a value the caller must handle, never a
//! `false` or an `Ok(())`. [`status::LoadStatus`] is what the daemon keeps of each load
//! from those results: target, commanded, confirmed actual power with its age, the last
//! error and the command-to-confirmation latency.
//!
//! Drivers: [`hasher`] (the embedded SHA-256d pool: set is its power target, read its
//! measured power), [`mqtt`] (equipment told its setpoint over MQTT, with an optional
//! read-back topic) and [`simulated`] (the simulator's load model, whose synchronous core
//! the simulator calls). Actuators follow the latest target and report what they draw;
//! they never decide how much to draw.

use std::future::Future;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::decision::LoadTarget;
use crate::state::Reading;
use crate::units::Watts;

pub mod asic;
pub mod hasher;
pub mod mqtt;
pub mod simulated;
pub mod status;

/// A write the load (or the way to it) took: what was written, and when the write was
/// confirmed as delivered. Not a confirmation that the load draws it: that is what
/// [`ReadPower`] is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Commanded {
    pub target: LoadTarget,
    pub at: Timestamp,
}

/// Tells a load how much to draw.
pub trait SetPower {
    /// Writes `target` and returns once the driver knows it was delivered (the device
    /// acknowledged it, the broker holds it), or why not. A driver never retries inside:
    /// the caller decides with [`ActuatorError::is_transient`], so that a newer target
    /// replaces a failed one rather than queueing behind it.
    fn set(
        &mut self,
        target: LoadTarget,
    ) -> impl Future<Output = Result<Commanded, ActuatorError>> + Send;
}

/// Reads what a load draws (W, consumption positive), stamped with when it was measured.
pub trait ReadPower {
    /// The load's next measurement. A driver paces itself: one that must ask its device
    /// asks at the rate the device tolerates, one the device reports to waits for the
    /// next report. Cancel-safe: dropping the future loses no later report.
    fn read(&mut self) -> impl Future<Output = Result<Reading<Watts>, ActuatorError>> + Send;
}

/// Why a write or a read failed. Transport apart from the load's answer: a dropped
/// socket is not a refusal, and neither is a write whose delivery never showed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActuatorError {
    /// The way to the load is down: no connection, a failed socket, a full queue.
    #[error("transport: {0}")]
    Transport(String),
    /// The load, or what stands for it, answered and refused the target.
    #[error("refused: {0}")]
    Refused(String),
    /// The write went out but its delivery was not confirmed within `within`: the load
    /// may or may not have it.
    #[error("not confirmed within {within:?}: {what}")]
    NotConfirmed { within: Duration, what: String },
    /// The load reported something that cannot be its power.
    #[error("bad reading: {0}")]
    BadReading(String),
    /// The driver's connection task is gone; nothing will reach the load again.
    #[error("driver stopped")]
    Stopped,
}

impl ActuatorError {
    /// Whether trying the same again later may work: everything but a refusal (the load
    /// said no; asking again changes nothing until the target does) and a stopped driver.
    pub fn is_transient(&self) -> bool {
        match self {
            ActuatorError::Transport(_)
            | ActuatorError::NotConfirmed { .. }
            | ActuatorError::BadReading(_) => true,
            ActuatorError::Refused(_) | ActuatorError::Stopped => false,
        }
    }
}
