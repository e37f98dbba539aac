//! gridminer: turns cryptocurrency mining into a flexible, grid-friendly load.
pub mod actuator;
pub mod cli;
pub mod units;
