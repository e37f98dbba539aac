//! Integration tests, one binary (see `Cargo.toml` `[[test]]`).

mod bad_input;
mod modbus;
mod policy_cases;
mod properties;
mod replay;
mod simulate;
mod support;
