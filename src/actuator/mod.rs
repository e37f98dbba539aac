//! OUT: the loads that take power targets.
//!
//! `simulated` models a load's response (wake delay, ramp, instant stop) for the
//! simulator; `hasher` is the embedded SHA-256d pool, a live load. Actuators follow the
//! latest target and report the power they draw; they never decide how much to draw.

pub mod hasher;
pub mod simulated;
