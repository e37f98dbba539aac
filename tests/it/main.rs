//! Integration tests, one binary (see `Cargo.toml` `[[test]]`).

mod bad_input;
mod policy_cases;
mod properties;
mod replay;
mod simulate;
mod support;
mod telemetry;
