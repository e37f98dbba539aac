//! Integration tests, one binary (see `Cargo.toml` `[[test]]`).

mod bad_input;
mod hasher;
mod peers;
mod policy_cases;
mod properties;
mod replay;
mod simulate;
mod stratum;
mod support;
