//! Integration tests, one binary (see `Cargo.toml` `[[test]]`).

mod bad_input;
mod brokers;
mod examples;
mod fuzz_corpus;
mod hasher;
mod layers;
mod live;
mod live_stratum;
mod modbus;
mod mqtt_limits;
mod mqtt_tls;
mod operator;
mod peers;
mod plausible;
mod policy_cases;
mod properties;
mod replay;
mod safety;
mod seam;
mod simulate;
mod stratum;
mod support;
mod telemetry;
mod validate;
