//! Prometheus metrics: a cheap, cloneable `Metrics` handle the daemon counts into, and
//! `MetricsServer`, a minimal HTTP endpoint answering `GET /metrics` in the text
//! exposition format (version 0.0.4).
//!
//! Counting is an atomic add (or, for counters labelled by a name only known at run
//! time, a short uncontended lock), so the control loop can count every message. The text
//! is built only when scraped; an idle endpoint costs an idle socket. Must not: block the
//! caller, or hold a lock while writing to a socket.

use crate::actuator::asic::{MinerState, MinerStatus};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::error::TelemetryError;
use super::evidence::{Record, TriggerKind};
use crate::actuator::hasher::stratum::StratumCounts;
use crate::actuator::hasher::HashingReport;
use crate::actuator::status::{Confirmation, LoadStatus};
use crate::decision::{Decision, ALL_REASONS};
use crate::mqtt::MqttStats;
use crate::signal::Quantity;
use crate::state::SiteState;

/// Metric names and their labels: the one table.
pub mod name {
    /// Counter, label `source`: observations received from each source.
    pub const OBSERVATIONS: &str = "gridminer_observations_total";
    /// Counter, label `reason`: messages rejected (unparseable, out of range, ...).
    pub const REJECTED: &str = "gridminer_rejected_messages_total";
    /// Counter, label `reason`: decisions by the reason that shaped them.
    pub const DECISIONS: &str = "gridminer_decisions_total";
    /// Gauge, label `quantity`: the latest power reading, W (import positive).
    pub const POWER: &str = "gridminer_power_watts";
    /// Gauge: the latest grid frequency, Hz.
    pub const FREQUENCY: &str = "gridminer_grid_frequency_hertz";
    /// Gauge: the latest energy price, EUR/MWh.
    pub const PRICE: &str = "gridminer_price_eur_per_mwh";
    /// Gauge: the latest hashprice, EUR per PH/s per day.
    pub const HASHPRICE: &str = "gridminer_hashprice_eur_per_phs_day";
    pub const CARBON_INTENSITY: &str = "gridminer_grid_carbon_intensity_g_per_kwh";
    /// Gauge: mining power the last decision asked of all loads together, W.
    pub const MINING_TARGET: &str = "gridminer_mining_target_watts";
    /// Gauge: mining power all loads report drawing together, W.
    pub const MINING_ACTUAL: &str = "gridminer_mining_actual_watts";
    /// Gauge, label `load`: power the load was told, W.
    pub const LOAD_TARGET: &str = "gridminer_load_target_watts";
    /// Gauge, label `load`: power the load is counted as drawing, W: its read-back, or
    /// without one the last setpoint written.
    pub const LOAD_ACTUAL: &str = "gridminer_load_actual_watts";
    /// Gauge, label `load`: units told to run.
    pub const LOAD_UNITS_ON: &str = "gridminer_load_units_on";
    /// Gauge, label `load`: power last written to the load successfully, W.
    pub const LOAD_COMMANDED: &str = "gridminer_load_commanded_watts";
    /// Gauge, label `load`: power the load last reported drawing (read-back), W.
    pub const LOAD_READBACK: &str = "gridminer_load_readback_watts";
    /// Gauge, label `load`: age of that report at the last step, s.
    pub const LOAD_READBACK_AGE: &str = "gridminer_load_readback_age_seconds";
    /// Gauge, label `load`: 1 while the read-back matches what was written, else 0
    /// (always 0 for a load without read-back).
    pub const LOAD_CONFIRMED: &str = "gridminer_load_confirmed";
    /// Gauge, label `load`: time from the last confirmed write to the first read-back
    /// that matched it, s.
    pub const LOAD_CONFIRM_LATENCY: &str = "gridminer_load_confirmation_latency_seconds";
    /// Counter, label `load`: failed writes and reads.
    pub const LOAD_ERRORS: &str = "gridminer_load_errors_total";
    /// Gauge, labels `group`, `state`: ASIC miners in each state (mining, sleeping,
    /// waking, unresponsive, unknown). Alarm on `state="unresponsive"` above 0.
    pub const FLEET_MINERS: &str = "gridminer_fleet_miners";
    /// Gauge, labels `miner`, `group`: what the miner last reported drawing, W.
    pub const MINER_POWER: &str = "gridminer_miner_power_watts";
    /// Gauge, labels `miner`, `group`: 1 while the miner is out of the capacity (did not
    /// comply, or is not heard from).
    pub const MINER_EXCLUDED: &str = "gridminer_miner_excluded";
    /// Counter, labels `miner`, `group`: failed sends and read-backs.
    pub const MINER_FAILURES: &str = "gridminer_miner_failures_total";
    /// Gauge, labels `miner`, `group`: send to read-back confirmation of its last
    /// confirmed command, s.
    pub const MINER_CONFIRM_LATENCY: &str = "gridminer_miner_confirm_latency_seconds";
    /// Gauge, label `load`: when the last write or read failed, s since the epoch.
    pub const LOAD_LAST_ERROR: &str = "gridminer_load_last_error_timestamp_seconds";
    /// Counter: telemetry points the server accepted.
    pub const POINTS_WRITTEN: &str = "gridminer_telemetry_points_written_total";
    /// Counter: telemetry points put in the on-disk buffer.
    pub const POINTS_BUFFERED: &str = "gridminer_telemetry_points_buffered_total";
    /// Counter, label `cause`: telemetry points lost (see `DropCause`).
    pub const POINTS_DROPPED: &str = "gridminer_telemetry_points_dropped_total";
    /// Gauge: points waiting in the on-disk buffer.
    pub const BUFFER_POINTS: &str = "gridminer_telemetry_buffer_points";
    /// Gauge: bytes of the on-disk buffer.
    pub const BUFFER_BYTES: &str = "gridminer_telemetry_buffer_bytes";
    /// Counter: connections the MQTT broker accepted, reconnects included.
    pub const MQTT_CONNECTS: &str = "gridminer_mqtt_connects_total";
    /// Counter: failed MQTT connection attempts and dropped connections.
    pub const MQTT_CONNECTION_ERRORS: &str = "gridminer_mqtt_connection_errors_total";
    /// Counter: MQTT connection attempts the broker refused (credentials, authorisation).
    pub const MQTT_REFUSALS: &str = "gridminer_mqtt_connection_refusals_total";
    /// Counter: failures to load or write the operator replay cache file.
    pub const REPLAY_CACHE_ERRORS: &str = "gridminer_operator_replay_cache_errors_total";
    /// Counter, label `trigger`: frequency-response events (evidence records opened), by
    /// what triggered them.
    pub const RESPONSE_EVENTS: &str = "gridminer_response_events_total";
    /// Gauge: the last closed event's time from trigger to the last command acknowledged, s.
    pub const RESPONSE_LAST_ACK: &str = "gridminer_response_last_ack_latency_seconds";
    /// Gauge: the last closed event's time from trigger to the last drop confirmed, s.
    pub const RESPONSE_LAST_CONFIRM: &str = "gridminer_response_last_confirm_latency_seconds";
    /// Counter: failures to write the events file.
    pub const EVENTS_FILE_ERRORS: &str = "gridminer_events_file_errors_total";
    /// Counter, label `load`: nonces a hashing load has hashed.
    pub const HASHER_HASHES: &str = "gridminer_hasher_hashes_total";
    /// Gauge, label `load`: a hashing load's measured hashrate, H/s.
    pub const HASHER_HASHRATE: &str = "gridminer_hasher_hashrate_hashes_per_second";
    /// Gauge, label `load`: 1 while a Stratum session is up (subscribed, authorized).
    pub const STRATUM_CONNECTED: &str = "gridminer_stratum_connected";
    /// Counter, label `load`: Stratum connections made.
    pub const STRATUM_CONNECTIONS: &str = "gridminer_stratum_connections_total";
    /// Counter, label `load`: jobs received from the pool.
    pub const STRATUM_JOBS: &str = "gridminer_stratum_jobs_total";
    /// Counter, label `load`: shares sent to the pool.
    pub const STRATUM_SUBMITTED: &str = "gridminer_stratum_submitted_total";
    /// Counter, labels `load`, `outcome` (see [`super::SHARE_OUTCOMES`]): shares by what
    /// became of them.
    pub const STRATUM_SHARES: &str = "gridminer_stratum_shares_total";
    /// Counter, label `load`: messages from the pool rejected as malformed.
    pub const STRATUM_MALFORMED: &str = "gridminer_stratum_malformed_messages_total";
    /// Counter, label `load`: times the pool refused the login or the subscription.
    pub const STRATUM_REFUSALS: &str = "gridminer_stratum_refusals_total";
}

/// The `outcome` label values of [`name::STRATUM_SHARES`]: the pool accepted or
/// rejected the share; or it was never sent, its job made stale, or failing the local
/// check.
pub const SHARE_OUTCOMES: [&str; 4] = ["accepted", "rejected", "stale_dropped", "invalid_dropped"];

/// The `reason` label of [`name::REJECTED`] for MQTT messages over `mqtt.max_packet_size`,
/// dropped unread by the connection (`MqttStats::oversized`).
pub const OVERSIZED: &str = "oversized";

/// Why telemetry points were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// The on-disk buffer reached `buffer_max_bytes`; its oldest points went.
    BufferFull,
    /// The writer's channel was full (or closed): the controller did not wait.
    ChannelFull,
    /// The server refused a batch for good (malformed, too large).
    Refused,
    /// The on-disk buffer could not be written.
    BufferError,
}

impl DropCause {
    pub const ALL: [DropCause; 4] = [
        DropCause::BufferFull,
        DropCause::ChannelFull,
        DropCause::Refused,
        DropCause::BufferError,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DropCause::BufferFull => "buffer_full",
            DropCause::ChannelFull => "channel_full",
            DropCause::Refused => "refused",
            DropCause::BufferError => "buffer_error",
        }
    }
}

/// Counters and gauges of the running daemon. Clone freely: clones share the values.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    observations: Mutex<Vec<(String, u64)>>,
    rejected: Mutex<Vec<(String, u64)>>,
    decisions: [AtomicU64; ALL_REASONS.len()],
    /// f64 bits; `Gauge::UNSET` until first set.
    quantities: [Gauge; Quantity::ALL.len()],
    mining_target: Gauge,
    mining_actual: Gauge,
    loads: Mutex<Vec<LoadGauges>>,
    points_written: AtomicU64,
    points_buffered: AtomicU64,
    points_dropped: [AtomicU64; DropCause::ALL.len()],
    buffer_points: AtomicU64,
    buffer_bytes: AtomicU64,
    /// The MQTT connection's own counters, once the daemon has one.
    mqtt: OnceLock<Arc<MqttStats>>,
    replay_cache_errors: AtomicU64,
    responses: [AtomicU64; TriggerKind::ALL.len()],
    response_ack: Gauge,
    response_confirm: Gauge,
    events_file_errors: AtomicU64,
    /// Hashing loads by name, as last reported.
    hashing: Mutex<Vec<(String, HashingReport)>>,
    /// The ASIC fleets' miners, as last reported.
    fleet: Mutex<Vec<MinerStatus>>,
}

#[derive(Debug)]
struct Gauge(AtomicU64);

impl Default for Gauge {
    fn default() -> Self {
        Gauge(AtomicU64::new(Gauge::UNSET))
    }
}

impl Gauge {
    /// A NaN payload no arithmetic produces: "never set", left out of the exposition.
    const UNSET: u64 = 0x7ff8_dead_beef_0001;
    fn set(&self, v: Option<f64>) {
        self.0.store(v.map_or(Self::UNSET, f64::to_bits), Relaxed)
    }
    fn get(&self) -> Option<f64> {
        let b = self.0.load(Relaxed);
        (b != Self::UNSET).then(|| f64::from_bits(b))
    }
}

#[derive(Debug, Clone)]
struct LoadGauges {
    name: String,
    target: f64,
    actual: Option<f64>,
    units_on: u32,
    commanded: Option<f64>,
    readback: Option<f64>,
    readback_age: Option<f64>,
    confirmed: bool,
    latency: Option<f64>,
    errors: u64,
    last_error: Option<f64>,
}

/// The metric families labelled `load` of [`Metrics::loads`]: (name, type, help, value;
/// `None` leaves the load's sample out).
type LoadFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LoadGauges) -> Option<f64>,
);

const LOAD_FAMILIES: [LoadFamily; 10] = [
    (
        name::LOAD_TARGET,
        "gauge",
        "Power each load was told, W.",
        |l| Some(l.target),
    ),
    (
        name::LOAD_ACTUAL,
        "gauge",
        "Power each load is counted as drawing (read-back, or the setpoint written), W.",
        |l| l.actual,
    ),
    (
        name::LOAD_UNITS_ON,
        "gauge",
        "Units each load was told to run.",
        |l| Some(f64::from(l.units_on)),
    ),
    (
        name::LOAD_COMMANDED,
        "gauge",
        "Power last written to each load successfully, W.",
        |l| l.commanded,
    ),
    (
        name::LOAD_READBACK,
        "gauge",
        "Power each load last reported drawing, W.",
        |l| l.readback,
    ),
    (
        name::LOAD_READBACK_AGE,
        "gauge",
        "Age of that report at the last step, s.",
        |l| l.readback_age,
    ),
    (
        name::LOAD_CONFIRMED,
        "gauge",
        "1 while the read-back matches what was written.",
        |l| Some(if l.confirmed { 1.0 } else { 0.0 }),
    ),
    (
        name::LOAD_CONFIRM_LATENCY,
        "gauge",
        "Time from the last confirmed write to the read-back matching it, s.",
        |l| l.latency,
    ),
    (
        name::LOAD_ERRORS,
        "counter",
        "Failed writes and reads, by load.",
        |l| Some(l.errors as f64),
    ),
    (
        name::LOAD_LAST_ERROR,
        "gauge",
        "When the last write or read failed, s since the epoch.",
        |l| l.last_error,
    ),
];

fn bump(family: &Mutex<Vec<(String, u64)>>, label: &str) {
    let mut f = family
        .lock()
        .expect("metrics lock is never poisoned: no panics inside");
    match f.iter_mut().find(|(l, _)| l == label) {
        Some((_, n)) => *n += 1,
        None => f.push((label.to_string(), 1)),
    }
}

fn read(family: &Mutex<Vec<(String, u64)>>, label: &str) -> u64 {
    let f = family
        .lock()
        .expect("metrics lock is never poisoned: no panics inside");
    f.iter().find(|(l, _)| l == label).map_or(0, |(_, n)| *n)
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one observation from `source` (the source's configured name).
    pub fn observation(&self, source: &str) {
        bump(&self.0.observations, source)
    }

    /// Counts one rejected message, by why it was rejected.
    pub fn reject(&self, reason: &str) {
        bump(&self.0.rejected, reason)
    }

    /// Counts a decision by its reason and sets the mining target gauge.
    pub fn decision(&self, d: &Decision) {
        let i = ALL_REASONS
            .iter()
            .position(|r| *r == d.reason)
            .expect("ALL_REASONS lists every reason");
        self.0.decisions[i].fetch_add(1, Relaxed);
        self.0.mining_target.set(Some(d.total().0));
    }

    /// Sets the gauge of every quantity the state holds (those it lacks keep their value).
    pub fn state(&self, s: &SiteState) {
        let values = Quantity::ALL.map(|q| s.reading(q).map(|r| r.value));
        for (g, v) in self.0.quantities.iter().zip(values) {
            if v.is_some() {
                g.set(v);
            }
        }
    }

    /// Sets each load's target (from `d`) and what its driver reports (`status`: the
    /// power it is counted at, commanded, read-back and its age at the decision,
    /// confirmation, errors), and the mining total over the loads whose power is known.
    /// In config order, as `d.loads`; a load missing from `status` shows its target only.
    pub fn loads(&self, names: &[String], d: &Decision, status: &[LoadStatus]) {
        let mut loads = self.0.loads.lock().expect("metrics lock is never poisoned");
        loads.clear();
        let mut total = None::<f64>;
        for (i, (name, t)) in names.iter().zip(&d.loads).enumerate() {
            let s = status.get(i);
            let a = s.and_then(LoadStatus::reading).map(|r| r.value.0);
            if let Some(a) = a {
                total = Some(total.unwrap_or(0.0) + a);
            }
            let readback = s.and_then(|s| s.actual);
            loads.push(LoadGauges {
                name: name.clone(),
                target: t.power.0,
                actual: a,
                units_on: t.units_on,
                commanded: s.and_then(|s| s.commanded).map(|c| c.target.power.0),
                readback: readback.map(|r| r.value.0),
                readback_age: readback.map(|r| r.age(d.at).as_secs_f64()),
                confirmed: s.is_some_and(|s| s.confirmation() == Confirmation::Confirmed),
                latency: s.and_then(|s| s.latency).map(|l| l.as_secs_f64()),
                errors: s.map_or(0, |s| s.errors),
                last_error: s
                    .and_then(|s| s.last_error.as_ref())
                    .map(|e| e.at.0 as f64 / 1000.0),
            });
        }
        self.0.mining_actual.set(total);
    }

    /// Keeps each hashing load's latest report (`reports` in config order, as `names`;
    /// `None` for loads that do not hash).
    pub fn hashing(&self, names: &[String], reports: &[Option<HashingReport>]) {
        let mut h = self
            .0
            .hashing
            .lock()
            .expect("metrics lock is never poisoned");
        h.clear();
        for (name, r) in names.iter().zip(reports) {
            if let Some(r) = r {
                h.push((name.clone(), r.clone()));
            }
        }
    }

    /// Keeps every ASIC miner's latest status.
    pub fn fleet(&self, miners: &[MinerStatus]) {
        *self.0.fleet.lock().expect("metrics lock is never poisoned") = miners.to_vec();
    }

    pub fn observations(&self, source: &str) -> u64 {
        read(&self.0.observations, source)
    }
    pub fn rejected(&self, reason: &str) -> u64 {
        read(&self.0.rejected, reason)
    }
    pub fn points_written(&self) -> u64 {
        self.0.points_written.load(Relaxed)
    }
    pub fn points_buffered(&self) -> u64 {
        self.0.points_buffered.load(Relaxed)
    }
    pub fn points_dropped(&self, cause: DropCause) -> u64 {
        self.0.points_dropped[cause as usize].load(Relaxed)
    }
    /// Points waiting in the on-disk buffer.
    pub fn buffer_points(&self) -> u64 {
        self.0.buffer_points.load(Relaxed)
    }

    /// Exports the MQTT connection's counters (the first connection given wins).
    pub fn watch_mqtt(&self, stats: Arc<MqttStats>) {
        let _ = self.0.mqtt.set(stats);
    }

    /// Counts a failure to load or write the operator replay cache file.
    pub fn replay_cache_error(&self) {
        self.0.replay_cache_errors.fetch_add(1, Relaxed);
    }
    pub fn replay_cache_errors(&self) -> u64 {
        self.0.replay_cache_errors.load(Relaxed)
    }

    /// Counts an evidence record opened for `kind`.
    pub fn response_opened(&self, kind: TriggerKind) {
        self.0.responses[kind as usize].fetch_add(1, Relaxed);
    }
    /// Events triggered by `kind` since start.
    pub fn responses(&self, kind: TriggerKind) -> u64 {
        self.0.responses[kind as usize].load(Relaxed)
    }
    /// Sets the last response latencies from a closed record (unknown ones are left out
    /// of the exposition, not kept from an older event).
    pub fn response_closed(&self, r: &Record) {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        self.0.response_ack.set(secs(r.response.last_acked));
        self.0.response_confirm.set(secs(r.response.last_confirmed));
    }
    /// Counts a failure to write the events file.
    pub fn events_file_error(&self) {
        self.0.events_file_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_written(&self, n: u64) {
        self.0.points_written.fetch_add(n, Relaxed);
    }
    pub(crate) fn count_buffered(&self, n: u64) {
        self.0.points_buffered.fetch_add(n, Relaxed);
    }
    pub(crate) fn count_dropped(&self, cause: DropCause, n: u64) {
        self.0.points_dropped[cause as usize].fetch_add(n, Relaxed);
    }
    pub(crate) fn buffer_level(&self, points: u64, bytes: u64) {
        self.0.buffer_points.store(points, Relaxed);
        self.0.buffer_bytes.store(bytes, Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let m = &self.0;
        let mut out = String::with_capacity(4096);
        let lock = |f: &Mutex<Vec<(String, u64)>>| {
            f.lock().expect("metrics lock is never poisoned").clone()
        };

        header(
            &mut out,
            name::OBSERVATIONS,
            "counter",
            "Observations received, by source.",
        );
        for (l, n) in lock(&m.observations) {
            sample(&mut out, name::OBSERVATIONS, &[("source", &l)], n as f64);
        }
        header(
            &mut out,
            name::REJECTED,
            "counter",
            "Messages rejected, by reason.",
        );
        for (l, n) in lock(&m.rejected) {
            sample(&mut out, name::REJECTED, &[("reason", &l)], n as f64);
        }
        // Dropped unread by the MQTT connection, before any parsing: counted there.
        if let Some(mqtt) = m.mqtt.get() {
            let n = mqtt.oversized.load(Relaxed);
            sample(&mut out, name::REJECTED, &[("reason", OVERSIZED)], n as f64);
        }
        header(
            &mut out,
            name::DECISIONS,
            "counter",
            "Policy decisions, by reason.",
        );
        for (r, n) in ALL_REASONS.iter().zip(&m.decisions) {
            let n = n.load(Relaxed);
            sample(
                &mut out,
                name::DECISIONS,
                &[("reason", r.as_str())],
                n as f64,
            );
        }

        header(
            &mut out,
            name::POWER,
            "gauge",
            "Latest power reading, W (grid: import positive).",
        );
        for (q, g) in Quantity::ALL.iter().zip(&m.quantities) {
            let Some(v) = g.get() else { continue };
            match q {
                Quantity::GridFrequency
                | Quantity::Price
                | Quantity::Hashprice
                | Quantity::GridCarbonIntensity => {}
                _ => sample(&mut out, name::POWER, &[("quantity", q.as_str())], v),
            }
        }
        for (q, metric, help) in [
            (
                Quantity::GridFrequency,
                name::FREQUENCY,
                "Latest grid frequency, Hz.",
            ),
            (
                Quantity::Price,
                name::PRICE,
                "Latest energy price, EUR/MWh.",
            ),
            (
                Quantity::Hashprice,
                name::HASHPRICE,
                "Latest hashprice, EUR per PH/s per day.",
            ),
            (
                Quantity::GridCarbonIntensity,
                name::CARBON_INTENSITY,
                "Latest grid carbon intensity, gCO2eq/kWh.",
            ),
        ] {
            let i = Quantity::ALL.iter().position(|x| *x == q).expect("in ALL");
            if let Some(v) = m.quantities[i].get() {
                header(&mut out, metric, "gauge", help);
                sample(&mut out, metric, &[], v);
            }
        }
        for (g, metric, help) in [
            (
                &m.mining_target,
                name::MINING_TARGET,
                "Mining power last asked of all loads, W.",
            ),
            (
                &m.mining_actual,
                name::MINING_ACTUAL,
                "Mining power the loads report, W.",
            ),
            (
                &m.response_ack,
                name::RESPONSE_LAST_ACK,
                "Last closed event: trigger to the last command acknowledged, s.",
            ),
            (
                &m.response_confirm,
                name::RESPONSE_LAST_CONFIRM,
                "Last closed event: trigger to the last drop confirmed, s.",
            ),
        ] {
            if let Some(v) = g.get() {
                header(&mut out, metric, "gauge", help);
                sample(&mut out, metric, &[], v);
            }
        }
        let loads = m
            .loads
            .lock()
            .expect("metrics lock is never poisoned")
            .clone();
        for (metric, kind, help, value) in LOAD_FAMILIES {
            header(&mut out, metric, kind, help);
            for l in &loads {
                if let Some(v) = value(l) {
                    sample(&mut out, metric, &[("load", &l.name)], v);
                }
            }
        }

        for (metric, v, help) in [
            (
                name::POINTS_WRITTEN,
                &m.points_written,
                "Telemetry points the server accepted.",
            ),
            (
                name::POINTS_BUFFERED,
                &m.points_buffered,
                "Telemetry points put in the on-disk buffer.",
            ),
        ] {
            header(&mut out, metric, "counter", help);
            sample(&mut out, metric, &[], v.load(Relaxed) as f64);
        }
        header(
            &mut out,
            name::POINTS_DROPPED,
            "counter",
            "Telemetry points lost, by cause.",
        );
        for c in DropCause::ALL {
            let n = m.points_dropped[c as usize].load(Relaxed);
            sample(
                &mut out,
                name::POINTS_DROPPED,
                &[("cause", c.as_str())],
                n as f64,
            );
        }
        self.render_hashing(&mut out);
        self.render_fleet(&mut out);
        for (metric, v, help) in [
            (
                name::BUFFER_POINTS,
                &m.buffer_points,
                "Points waiting in the on-disk buffer.",
            ),
            (
                name::BUFFER_BYTES,
                &m.buffer_bytes,
                "Bytes of the on-disk buffer.",
            ),
        ] {
            header(&mut out, metric, "gauge", help);
            sample(&mut out, metric, &[], v.load(Relaxed) as f64);
        }
        header(
            &mut out,
            name::RESPONSE_EVENTS,
            "counter",
            "Frequency-response events, by trigger.",
        );
        for (k, n) in TriggerKind::ALL.iter().zip(&m.responses) {
            let n = n.load(Relaxed) as f64;
            sample(
                &mut out,
                name::RESPONSE_EVENTS,
                &[("trigger", k.as_str())],
                n,
            );
        }
        let mut counters = vec![
            (
                name::REPLAY_CACHE_ERRORS,
                &m.replay_cache_errors,
                "Failures to load or write the operator replay cache file.",
            ),
            (
                name::EVENTS_FILE_ERRORS,
                &m.events_file_errors,
                "Failures to write the events file.",
            ),
        ];
        if let Some(mqtt) = m.mqtt.get() {
            counters.extend([
                (
                    name::MQTT_CONNECTS,
                    &mqtt.connects,
                    "Connections the MQTT broker accepted.",
                ),
                (
                    name::MQTT_CONNECTION_ERRORS,
                    &mqtt.connection_errors,
                    "Failed MQTT connection attempts and dropped connections.",
                ),
                (
                    name::MQTT_REFUSALS,
                    &mqtt.refusals,
                    "MQTT connection attempts the broker refused.",
                ),
            ]);
        }
        for (metric, v, help) in counters {
            header(&mut out, metric, "counter", help);
            sample(&mut out, metric, &[], v.load(Relaxed) as f64);
        }
        out
    }
}

/// A metric family labelled `load`: (name, type, help).
type Family = (&'static str, &'static str, &'static str);

/// Of each hashing load, valued by [`hasher_values`].
const HASHER_FAMILIES: [Family; 2] = [
    (name::HASHER_HASHES, "counter", "Nonces hashed, by load."),
    (name::HASHER_HASHRATE, "gauge", "Measured hashrate, H/s."),
];

fn hasher_values(r: &HashingReport) -> [f64; 2] {
    [r.hasher.hashes as f64, r.hasher.hashrate.0]
}

/// Of each Stratum pool, valued by [`pool_values`].
const POOL_FAMILIES: [Family; 6] = [
    (name::STRATUM_CONNECTED, "gauge", "1 while a session is up."),
    (name::STRATUM_CONNECTIONS, "counter", "Connections made."),
    (name::STRATUM_JOBS, "counter", "Jobs received."),
    (name::STRATUM_SUBMITTED, "counter", "Shares submitted."),
    (name::STRATUM_MALFORMED, "counter", "Malformed messages."),
    (
        name::STRATUM_REFUSALS,
        "counter",
        "Logins or subscriptions the pool refused.",
    ),
];

fn pool_values(c: &StratumCounts) -> [f64; 6] {
    [
        if c.connected { 1.0 } else { 0.0 },
        c.connections as f64,
        c.jobs as f64,
        c.submitted as f64,
        c.malformed as f64,
        c.refusals as f64,
    ]
}

impl Metrics {
    /// The ASIC miners: counts by state per group, and each miner's power, standing,
    /// failures and confirmation latency.
    fn render_fleet(&self, out: &mut String) {
        let fleet = self
            .0
            .fleet
            .lock()
            .expect("metrics lock is never poisoned")
            .clone();
        if fleet.is_empty() {
            return;
        }
        let mut groups: Vec<&str> = fleet.iter().map(|m| m.group.as_str()).collect();
        groups.dedup();
        header(
            out,
            name::FLEET_MINERS,
            "gauge",
            "ASIC miners in each state, by group.",
        );
        for g in &groups {
            for st in MinerState::ALL {
                let n = fleet
                    .iter()
                    .filter(|m| m.group == *g && m.state == st)
                    .count();
                sample(
                    out,
                    name::FLEET_MINERS,
                    &[("group", g), ("state", st.as_str())],
                    n as f64,
                );
            }
        }
        let families: [(&str, &str, &str, fn(&MinerStatus) -> Option<f64>); 4] = [
            (
                name::MINER_POWER,
                "gauge",
                "What the miner last reported drawing, W.",
                |m| m.power_w,
            ),
            (
                name::MINER_EXCLUDED,
                "gauge",
                "1 while the miner is out of the capacity.",
                |m| {
                    Some(f64::from(u8::from(matches!(
                        m.state,
                        MinerState::Unresponsive | MinerState::Unknown
                    ))))
                },
            ),
            (
                name::MINER_FAILURES,
                "counter",
                "Failed sends and read-backs, by miner.",
                |m| Some(m.failures as f64),
            ),
            (
                name::MINER_CONFIRM_LATENCY,
                "gauge",
                "Send to read-back confirmation of the miner's last confirmed command, s.",
                |m| m.confirm_latency_s,
            ),
        ];
        for (metric, kind, help, value) in families {
            header(out, metric, kind, help);
            for m in &fleet {
                if let Some(v) = value(m) {
                    let miner = m.address.to_string();
                    sample(out, metric, &[("miner", &miner), ("group", &m.group)], v);
                }
            }
        }
    }

    /// The hashing loads' metrics, and their Stratum pools' for those that mine one.
    fn render_hashing(&self, out: &mut String) {
        let hashing = self
            .0
            .hashing
            .lock()
            .expect("metrics lock is never poisoned")
            .clone();
        let pools: Vec<_> = hashing
            .iter()
            .filter_map(|(l, r)| r.pool.map(|c| (l.clone(), c)))
            .collect();
        if !hashing.is_empty() {
            per_load(out, &HASHER_FAMILIES, &hashing, hasher_values);
        }
        if pools.is_empty() {
            return;
        }
        per_load(out, &POOL_FAMILIES, &pools, pool_values);
        header(
            out,
            name::STRATUM_SHARES,
            "counter",
            "Shares by outcome: accepted or rejected by the pool, or not sent (stale job, failed local check).",
        );
        for (l, c) in &pools {
            let counts = [c.accepted, c.rejected, c.stale_dropped, c.invalid_dropped];
            for (outcome, n) in SHARE_OUTCOMES.iter().zip(counts) {
                let labels = [("load", l.as_str()), ("outcome", outcome)];
                sample(out, name::STRATUM_SHARES, &labels, n as f64);
            }
        }
    }
}

/// Metric families labelled `load`: each one's header, then a sample per load, with
/// the value `values` gives at the family's place.
fn per_load<T, const N: usize>(
    out: &mut String,
    families: &[Family; N],
    loads: &[(String, T)],
    values: fn(&T) -> [f64; N],
) {
    for (k, (metric, kind, help)) in families.iter().enumerate() {
        header(out, metric, kind, help);
        for (l, v) in loads {
            sample(out, metric, &[("load", l)], values(v)[k]);
        }
    }
}

fn header(out: &mut String, metric: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
}

fn sample(out: &mut String, metric: &str, labels: &[(&str, &str)], v: f64) {
    out.push_str(metric);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"");
            for c in val.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = if v.is_nan() {
        writeln!(out, " NaN")
    } else if v.is_infinite() {
        writeln!(out, " {}Inf", if v > 0.0 { "+" } else { "-" })
    } else {
        writeln!(out, " {v}")
    };
}

/// Serves `GET /metrics` on a TCP listener.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    metrics: Metrics,
}

/// How long one scrape may take; a client that stalls longer is dropped. Connections are
/// served one at a time, so this bounds how long one bad client delays the next.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

impl MetricsServer {
    pub async fn bind(addr: SocketAddr, metrics: Metrics) -> Result<Self, TelemetryError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(TelemetryError::Metrics)?;
        Ok(Self::from_listener(listener, metrics))
    }

    /// Serves on a listener already bound (tests bind `127.0.0.1:0`).
    pub fn from_listener(listener: TcpListener, metrics: Metrics) -> Self {
        MetricsServer { listener, metrics }
    }

    pub fn local_addr(&self) -> Result<SocketAddr, TelemetryError> {
        self.listener.local_addr().map_err(TelemetryError::Metrics)
    }

    /// Answers scrapes until `shutdown`. A failed connection is logged, never fatal.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), TelemetryError> {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        // Out of file descriptors and the like: keep serving.
                        tracing::warn!(%error, "Metrics endpoint could not accept");
                        continue;
                    }
                },
            };
            let served = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = tokio::time::timeout(SCRAPE_TIMEOUT, serve(stream, &self.metrics)) => r,
            };
            match served {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, %peer, "Metrics scrape failed"),
                Err(_) => tracing::debug!(%peer, "Metrics scrape timed out"),
            }
        }
    }
}

async fn serve(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => {
            let body = metrics.render();
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await
        }
        (b"GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n").await,
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", "").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
