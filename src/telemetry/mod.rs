//! Telemetry: what the controller saw and did, written to InfluxDB and served to
//! Prometheus. OUT only: nothing here feeds back into a decision.
//!
//! ```text
//!  controller --Point--> TelemetrySender --try_send--> InfluxWriter::run --/api/v2/write--> InfluxDB
//!      |                  (drops, counted, when full)       |  unreachable
//!      |                                                    v
//!      |                                          Buffer (segment files on disk, bounded)
//!      +--count/set--> Metrics <--GET /metrics-- MetricsServer::run
//! ```
//!
//! - [`points`]: the one table of measurement, tag and field names, and the functions
//!   that turn `SiteState`, `Decision`, load power and operator commands into points.
//! - [`influx`]: the writer task and the sender the controller holds.
//! - [`buffer`]: the bounded on-disk buffer that keeps points while the server is away.
//! - [`metrics`]: the `Metrics` handle and the Prometheus endpoint.
//! - [`evidence`]: frequency-response evidence records (pure bookkeeping), the events
//!   file, and how they print.
//! - [`status`]: the state document (MQTT `gridminer/{site}/state`) and Home Assistant
//!   discovery.
//! - [`web`]: the dashboard, served from that same state document.
//! - [`config`]: `[influx]`, `[metrics]`, `[web]` and `[events]`.
//!
//! Must not: block the control loop, or lose a point without counting it.

pub mod buffer;
pub mod config;
mod error;
pub mod evidence;
pub mod influx;
pub mod metrics;
pub mod points;
pub mod status;
pub mod web;

pub use config::{InfluxConfig, MetricsConfig, TelemetryConfig};
pub use error::TelemetryError;
pub use influx::{writer, InfluxWriter, TelemetrySender};
pub use metrics::{DropCause, Metrics, MetricsServer};
pub use points::Point;
