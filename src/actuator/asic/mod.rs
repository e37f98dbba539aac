//! ASIC fleets through asic-rs: each miner found, read back on a schedule and told to
//! pause, resume or take a power limit, every command verified by what the miner then
//! reports; one group per model, each a load of the policy.
//!
//! - [`control`]: one miner's verified actuation, pure: what to send, when it counts as
//!   done, retries, escalation (power limit, then pause, then a hard cut), learned wake
//!   and ramp times.
//! - [`assign`]: a group's target shared over its miners, pure: the target is a cap (a
//!   miner that will not stop is taken off it), wear levelled per device.
//! - [`client`]: the only place asic-rs's types appear.
//! - [`fleet`]: the tasks, and each group as [`SetPower`](super::SetPower) and
//!   [`ReadPower`](super::ReadPower).
//! - [`relay`]: the hard cut, a PDU relay told over MQTT.
//! - [`config`]: the `kind = "asic-fleet"` load's keys.

pub mod assign;
pub mod client;
pub mod config;
pub mod control;
pub mod fleet;
pub mod relay;

pub use control::{Command, CommandRecord, Goal, MinerState, Timings};
pub use fleet::{Fleet, FleetGroup, GroupSpec, MinerSpec, MinerStatus};
