//! gridminer: turns cryptocurrency mining into a flexible, grid-friendly load.
//!
//! The crate reads as the data flow:
//!
//! ```text
//!  signal (replay | live sources) --Observation--> state::SiteState
//!        --> policy::Policy::decide (pure) --Decision--> actuator (simulated | live loads)
//!                      ^                                     |
//!                      +------ controller::Controller::step -+--> sim (KPIs, report)
//! ```
//!
//! Layout:
//! - [`units`]: power, energy, prices, hashprice as types.
//! - [`clock`]: `Timestamp`, and the `Clock` that says "now" (system or simulated).
//! - [`emulator`]: faithful emulations of field devices that cannot run here (a simulated
//!   Whatsminer fleet on loopback), checked by independent clients.
//! - [`config`]: TOML files to validated, typed values; every problem with its key path.
//! - [`site`]: the site model: grid connection, tariff, mining loads and their limits.
//! - [`signal`]: IN: everything that produces an `Observation` (history replay, signed
//!   grid-operator commands).
//! - [`decision`]: the decision's vocabulary (`Decision`, `LoadTarget`, `Reason`), shared by
//!   policy and state.
//! - [`state`]: `SiteState`, the latest value of every quantity with its age, and wear ledgers.
//! - [`policy`]: DECIDE: the pure rule stack and the allocator.
//! - [`actuator`]: OUT: loads that take power targets, behind one seam (`SetPower`,
//!   `ReadPower`, `ActuatorError`): the embedded pool, MQTT setpoint loads, simulated
//!   dynamics; `LoadStatus` is what is known of each (commanded, confirmed, errors).
//! - [`controller`]: the one step both live and simulated runs call.
//! - [`mqtt`]: the MQTT transport: embedded broker, connection, topics, status.
//! - [`scenario`]: scenario and policy-case files, read and checked for the simulator.
//! - [`runtime`]: the edge daemon: tasks, their supervision and the systemd watchdog,
//!   shutdown in order.
//! - [`sim`]: the simulation runner, KPIs, the clairvoyant optimum, reports, sweeps.
//! - [`bench`]: the `bench` subcommands' measurements.

pub mod actuator;
pub mod assets;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod controller;
pub mod decision;
pub mod emulator;
pub mod ledger;
pub mod mqtt;
pub mod optimum;
pub mod policy;
pub mod runtime;
pub mod scenario;
pub mod signal;
#[cfg(feature = "sim")]
pub mod sim;
pub mod site;
pub mod state;
pub mod telemetry;
pub mod units;
