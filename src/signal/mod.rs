//! IN: everything that produces an `Observation` for the controller.
//!
//! `replay` turns historical files into observations for the simulator; `operator`
//! verifies signed grid-operator commands. Sources only report what they saw, with when
//! they saw it; they never decide what stale data means.

pub mod modbus;
pub mod mqtt;
pub mod operator;
#[cfg(feature = "sim")]
pub mod replay;
