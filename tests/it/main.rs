//! Integration tests, one binary (see `Cargo.toml` `[[test]]`).

mod bad_input;
mod hasher;
mod live;
mod live_stratum;
mod modbus;
mod operator;
mod peers;
mod policy_cases;
mod properties;
mod replay;
mod simulate;
mod stratum;
mod support;
mod telemetry;
