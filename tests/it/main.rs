//! Integration tests, one binary (see `Cargo.toml` `[[test]]`).

// A test's unwrap that fails is a failed test; `unwrap_used` is for the crate's own code.
#![allow(clippy::unwrap_used)]

mod bad_input;
mod bench_fleet;
mod brokers;
mod evidence;
mod examples;
mod fleet_driver;
mod fleet_emulator;
mod fleet_live;
mod fuzz_corpus;
mod hasher;
mod layers;
mod live;
mod live_stratum;
mod loopback;
mod modbus;
mod mqtt_limits;
mod mqtt_tls;
mod operator;
mod parity;
mod peers;
mod plausible;
mod policy_cases;
mod properties;
mod r12_inputs;
mod r12_optimum;
mod r12_report;
mod r13_demo;
mod r13_ha;
mod r13_web;
mod r14_plan;
mod r15_carbon;
mod r15_ledger;
mod replay;
mod safety;
mod seam;
mod simulate;
mod stratum;
mod supervise;
mod support;
mod telemetry;
mod validate;
mod visible;
mod webdriver;
