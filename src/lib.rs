//! gridminer: turns cryptocurrency mining into a flexible, grid-friendly load.
pub mod units;
