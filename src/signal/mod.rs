//! IN: everything that produces an `Observation` for the controller.
//!
//! `replay` turns historical files into observations for the simulator; `operator`
//! verifies signed grid-operator commands; `plausible` judges whether a live value could
//! have been measured at the site at all; `rejected` keeps refused values visible (the
//! last per signal in the state, a rate-limited log). Sources only report what they saw,
//! with when they saw it; they never decide what stale data means.

pub mod modbus;
pub mod mqtt;
mod observation;
pub mod operator;
pub mod plausible;
pub mod rejected;
#[cfg(feature = "sim")]
pub mod replay;
pub mod series;

pub use observation::{Issuer, Observation, OperatorAction, Quantity};
