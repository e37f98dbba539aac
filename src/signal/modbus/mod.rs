//! Modbus TCP signal source: SunSpec inverters and meters, and raw register maps for
//! devices that are not SunSpec, each polled by its own `ModbusSource`.
//!
//! ```text
//!  ModbusDevice (config.rs) -> ModbusSource::run: connect -> [SunSpec discovery] -> poll loop
//!        poll: read registers (RegisterReader seam) -> decode (sunspec.rs | raw.rs)
//!              -> Observation { value, at: SystemClock at the reply } -> mpsc
//! ```
//!
//! Reconnection lives here: any transport failure (refused, dropped, timed out, garbled
//! stream) drops the connection and retries with exponential backoff and jitter, forever.
//! A device that stopped answering simply stops producing observations; `SiteState` ages
//! its last values and the policy's staleness rule puts the loads in their safe state. This
//! module never decides what old data means. It logs one warning per outage and one info
//! line on recovery, and counts polls, errors and rejected replies in `ModbusStats`.
//!
//! tokio-modbus stays behind the two-method `RegisterReader` seam, as the `sunspec` crate's
//! `AsyncModbusClient` does; nothing outside `TcpReader` names a tokio-modbus type.

pub mod config;
pub mod error;
pub mod raw;
pub mod sunspec;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::{Request, Response};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::clock::{Clock, SystemClock};
use crate::signal::{Observation, Quantity};

pub use config::{validate_device, validate_devices, RawModbusDevice};
pub use error::{ExceptionCode, ModbusError};
pub use raw::{RawRegister, RawTarget, RegisterType, Table, WordOrder};
pub use sunspec::{AcReading, ModelHeader, Role};

/// One Modbus TCP device, validated (see `config.rs` for the TOML shape).
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusDevice {
    /// Unique among the devices; names the device in logs and telemetry.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Modbus unit (slave) id.
    pub unit_id: u8,
    /// Time between the starts of two polls.
    pub poll: Duration,
    /// Longest wait for one reply (and for the TCP handshake).
    pub timeout: Duration,
    /// Reconnection delays: the first retry waits about `backoff_min`, each failure doubles
    /// it, up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub kind: DeviceKind,
}

impl ModbusDevice {
    /// The quantities this device reports (a SunSpec device its role's power and the
    /// grid frequency its model carries; a raw map what its registers are for).
    pub fn quantities(&self) -> Vec<Quantity> {
        match &self.kind {
            DeviceKind::SunSpec { role } => vec![role.quantity(), Quantity::GridFrequency],
            DeviceKind::Raw { registers } => registers
                .iter()
                .map(|r| match r.target {
                    RawTarget::Power { quantity, .. } => quantity,
                    RawTarget::Frequency => Quantity::GridFrequency,
                })
                .collect(),
        }
    }
}

/// How a device's registers are found and read.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceKind {
    /// SunSpec map, discovered on every connect.
    SunSpec { role: Role },
    /// A fixed register map.
    Raw { registers: Vec<RawRegister> },
}

/// The narrow seam to the Modbus client: read registers, get words or a typed error.
/// Implementations check that the reply has exactly `count` words.
#[allow(async_fn_in_trait)] // Used with concrete types only; no `dyn`, no Send bound needed.
pub trait RegisterReader {
    async fn read_holding(&mut self, address: u16, count: u16) -> Result<Vec<u16>, ModbusError>;
    async fn read_input(&mut self, address: u16, count: u16) -> Result<Vec<u16>, ModbusError>;

    async fn read(
        &mut self,
        table: Table,
        address: u16,
        count: u16,
    ) -> Result<Vec<u16>, ModbusError> {
        match table {
            Table::Holding => self.read_holding(address, count).await,
            Table::Input => self.read_input(address, count).await,
        }
    }
}

/// `RegisterReader` over a tokio-modbus TCP connection, with a timeout on every request.
pub struct TcpReader {
    ctx: Context,
    timeout: Duration,
}

impl std::fmt::Debug for TcpReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpReader")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TcpReader {
    /// Connects to `host:port` (resolved on every call, so a device that moves is found).
    pub async fn connect(
        host: &str,
        port: u16,
        unit_id: u8,
        timeout: Duration,
    ) -> Result<Self, ModbusError> {
        let name = format!("{host}:{port}");
        let connect_err = |source| ModbusError::Connect {
            addr: name.clone(),
            source,
        };
        let attempt = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(connect_err)?
                .collect();
            let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
            for addr in addrs {
                match tokio_modbus::client::tcp::connect_slave(addr, tokio_modbus::Slave(unit_id))
                    .await
                {
                    Ok(ctx) => return Ok(ctx),
                    Err(e) => last = e,
                }
            }
            Err(connect_err(last))
        };
        let ctx = tokio::time::timeout(timeout, attempt).await.map_err(|_| {
            connect_err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no TCP handshake within {timeout:?}"),
            ))
        })??;
        Ok(TcpReader { ctx, timeout })
    }

    async fn call(
        &mut self,
        table: Table,
        address: u16,
        count: u16,
    ) -> Result<Vec<u16>, ModbusError> {
        // `Client::call` rather than `Reader::read_*`: those `debug_assert` the reply's
        // length, and a device's wrong answer must never panic us, not even in debug builds.
        let request = match table {
            Table::Holding => Request::ReadHoldingRegisters(address, count),
            Table::Input => Request::ReadInputRegisters(address, count),
        };
        let malformed = |reason: String| ModbusError::Malformed {
            address,
            count,
            reason,
        };
        let timeout = self.timeout;
        let reply = tokio::time::timeout(timeout, self.ctx.call(request))
            .await
            .map_err(|_| ModbusError::Timeout(timeout))?;
        match reply {
            Ok(Ok(Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words)))
                if words.len() == usize::from(count) =>
            {
                Ok(words)
            }
            Ok(Ok(Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words))) => {
                Err(malformed(format!(
                    "{} register(s) instead of {count}",
                    words.len()
                )))
            }
            Ok(Ok(other)) => Err(malformed(format!("unexpected response {other:?}"))),
            Ok(Err(code)) => Err(ModbusError::Exception {
                table,
                address,
                count,
                code: ExceptionCode(u8::from(code)),
            }),
            Err(tokio_modbus::Error::Protocol(e)) => Err(malformed(e.to_string())),
            // The codec reports frames it cannot decode as InvalidData.
            Err(tokio_modbus::Error::Transport(e))
                if e.kind() == std::io::ErrorKind::InvalidData =>
            {
                Err(malformed(e.to_string()))
            }
            Err(tokio_modbus::Error::Transport(e)) => Err(ModbusError::Transport(e)),
        }
    }
}

impl RegisterReader for TcpReader {
    async fn read_holding(&mut self, address: u16, count: u16) -> Result<Vec<u16>, ModbusError> {
        self.call(Table::Holding, address, count).await
    }
    async fn read_input(&mut self, address: u16, count: u16) -> Result<Vec<u16>, ModbusError> {
        self.call(Table::Input, address, count).await
    }
}

/// Counters of one source, for telemetry. Monotonic except `connected`.
#[derive(Debug, Default)]
pub struct ModbusStats {
    /// Polls started.
    pub polls: AtomicU64,
    /// Observations sent.
    pub observations: AtomicU64,
    /// Transport failures: connects that failed, dropped connections, timeouts.
    pub errors: AtomicU64,
    /// Replies rejected: Modbus exceptions and malformed replies.
    pub rejected: AtomicU64,
    /// Connections made (the first one and every reconnection).
    pub connects: AtomicU64,
    /// Whether the source holds a connection now.
    pub connected: AtomicBool,
}

/// A copy of `ModbusStats` at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub polls: u64,
    pub observations: u64,
    pub errors: u64,
    pub rejected: u64,
    pub connects: u64,
    pub connected: bool,
}

impl ModbusStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            polls: self.polls.load(Ordering::Relaxed),
            observations: self.observations.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Exponential backoff with jitter: each delay is drawn from [d/2, d], d doubling from
/// `min` up to `max`. Jitter keeps many sources from hammering a gateway in step.
#[derive(Debug, Clone)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }
    fn reset(&mut self) {
        self.next = self.min;
    }
    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        let unit = (RandomState::new().build_hasher().finish() >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + 0.5 * unit)
    }
}

/// Outage bookkeeping, so that a dead device logs one warning, not one per retry.
#[derive(Debug, Default)]
struct Health {
    down_since: Option<Instant>,
    rejecting: bool,
}

impl Health {
    fn failed(&mut self, device: &str, error: &ModbusError) {
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            warn!(device, %error, "Modbus device not answering; reconnecting with backoff");
        } else {
            debug!(device, %error, "Modbus device still not answering");
        }
    }
    fn answered(&mut self, device: &str) {
        if let Some(since) = self.down_since.take() {
            info!(device, outage = ?since.elapsed(), "Modbus device answering again");
        }
    }
    fn rejected(&mut self, device: &str, error: &ModbusError) {
        if !self.rejecting {
            self.rejecting = true;
            warn!(device, %error, "Modbus reply rejected");
        } else {
            debug!(device, %error, "Modbus reply rejected");
        }
    }
    fn clean_poll(&mut self, device: &str) {
        if std::mem::take(&mut self.rejecting) {
            info!(device, "Modbus replies usable again");
        }
    }
}

/// What a poll reads, once the device is connected (and, for SunSpec, discovered).
#[derive(Debug, Clone)]
enum Plan {
    SunSpec { role: Role, plan: sunspec::PollPlan },
    Raw,
}

/// Why the poll loop on one connection ended.
enum Ended {
    Shutdown,
    Reconnect(ModbusError),
}

/// Polls one Modbus device and sends what it measures as `Observation`s.
#[derive(Debug)]
pub struct ModbusSource {
    device: ModbusDevice,
    stats: Arc<ModbusStats>,
}

impl ModbusSource {
    pub fn new(device: ModbusDevice) -> Self {
        ModbusSource {
            device,
            stats: Arc::default(),
        }
    }

    /// The counters this source updates while it runs.
    pub fn stats(&self) -> Arc<ModbusStats> {
        Arc::clone(&self.stats)
    }

    pub fn device(&self) -> &ModbusDevice {
        &self.device
    }

    /// Connects, discovers, polls and reconnects until `shutdown` is cancelled or the
    /// receiver of `tx` is dropped (both return `Ok`). Transport failures, device
    /// exceptions and malformed replies are counted and retried, never returned. The one
    /// error returned is a SunSpec chain that cannot serve the configured role
    /// (`NoModel`, `ModelTooShort`): retrying cannot fix the config.
    pub async fn run(
        self,
        tx: mpsc::Sender<Observation>,
        shutdown: CancellationToken,
    ) -> Result<(), ModbusError> {
        let dev = &self.device;
        let name = dev.name.as_str();
        let mut backoff = Backoff::new(dev.backoff_min, dev.backoff_max);
        let mut health = Health::default();
        loop {
            let failure = match self.connect_and_plan(&shutdown).await {
                None => return Ok(()),
                Some(Ok((mut reader, plan))) => {
                    debug!(device = name, ?plan, "Modbus device connected");
                    match self
                        .poll_loop(
                            &mut reader,
                            &plan,
                            &tx,
                            &shutdown,
                            &mut backoff,
                            &mut health,
                        )
                        .await
                    {
                        Ended::Shutdown => {
                            self.stats.connected.store(false, Ordering::Relaxed);
                            return Ok(());
                        }
                        Ended::Reconnect(e) => e,
                    }
                }
                Some(Err(e)) if !e.is_transient() => {
                    error!(device = name, error = %e, "Modbus device cannot serve its configured role");
                    self.stats.connected.store(false, Ordering::Relaxed);
                    return Err(e);
                }
                Some(Err(e)) => e,
            };
            self.stats.connected.store(false, Ordering::Relaxed);
            if failure.is_rejected_reply() {
                ModbusStats::count(&self.stats.rejected);
            } else {
                ModbusStats::count(&self.stats.errors);
            }
            health.failed(name, &failure);
            let delay = backoff.next_delay();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// `None` on shutdown.
    async fn connect_and_plan(
        &self,
        shutdown: &CancellationToken,
    ) -> Option<Result<(TcpReader, Plan), ModbusError>> {
        let dev = &self.device;
        let work = async {
            let mut reader =
                TcpReader::connect(&dev.host, dev.port, dev.unit_id, dev.timeout).await?;
            ModbusStats::count(&self.stats.connects);
            self.stats.connected.store(true, Ordering::Relaxed);
            let plan = match &dev.kind {
                DeviceKind::SunSpec { role } => {
                    let models = sunspec::discover(&mut reader).await?;
                    let plan = sunspec::plan(&models, *role)?;
                    Plan::SunSpec { role: *role, plan }
                }
                DeviceKind::Raw { .. } => Plan::Raw,
            };
            Ok((reader, plan))
        };
        tokio::select! {
            _ = shutdown.cancelled() => None,
            r = work => Some(r),
        }
    }

    async fn poll_loop(
        &self,
        reader: &mut TcpReader,
        plan: &Plan,
        tx: &mpsc::Sender<Observation>,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
        health: &mut Health,
    ) -> Ended {
        let name = self.device.name.as_str();
        let mut ticker = tokio::time::interval(self.device.poll);
        // A poll that overran its period is followed by the next one a full period later:
        // catching up would only send a burst of equally old readings.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ended::Shutdown,
                _ = ticker.tick() => {}
            }
            ModbusStats::count(&self.stats.polls);
            let (observations, errors) = self.poll_once(reader, plan).await;
            let mut broken = None;
            let clean = errors.is_empty();
            for e in errors {
                if e.breaks_connection() {
                    broken = Some(e);
                } else {
                    ModbusStats::count(&self.stats.rejected);
                    health.rejected(name, &e);
                }
            }
            if let Some(e) = broken {
                return Ended::Reconnect(e);
            }
            if observations.is_empty() && clean {
                // Every point "not implemented": the device answers, it just has nothing.
                debug!(device = name, "Modbus poll gave no values");
            }
            health.answered(name);
            backoff.reset();
            if clean {
                health.clean_poll(name);
            }
            for obs in observations {
                let sent = tokio::select! {
                    _ = shutdown.cancelled() => return Ended::Shutdown,
                    r = tx.send(obs) => r,
                };
                if sent.is_err() {
                    // The controller is gone; nobody needs our readings.
                    return Ended::Shutdown;
                }
                ModbusStats::count(&self.stats.observations);
            }
        }
    }

    /// One poll: the observations it made and the errors it met. A transport failure stops
    /// the poll at once; a rejected register of a raw map only skips that register.
    async fn poll_once(
        &self,
        reader: &mut TcpReader,
        plan: &Plan,
    ) -> (Vec<Observation>, Vec<ModbusError>) {
        let clock = SystemClock;
        let mut observations = Vec::new();
        let mut errors = Vec::new();
        match (plan, &self.device.kind) {
            (Plan::SunSpec { role, plan }, _) => {
                let m = plan.model;
                match reader.read_holding(m.address, plan.count).await {
                    Ok(block) => {
                        let at = clock.now();
                        match sunspec::decode(m.id, &block) {
                            Ok(reading) => observations = reading.observations(*role, at),
                            Err(reason) => errors.push(ModbusError::Malformed {
                                address: m.address,
                                count: plan.count,
                                reason,
                            }),
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            (Plan::Raw, DeviceKind::Raw { registers }) => {
                for reg in registers {
                    let count = reg.kind.words();
                    match reader.read(reg.table, reg.address, count).await {
                        Ok(words) => match reg.observation(&words, clock.now()) {
                            Ok(obs) => observations.push(obs),
                            Err(reason) => errors.push(ModbusError::Malformed {
                                address: reg.address,
                                count,
                                reason,
                            }),
                        },
                        Err(e) => {
                            let stop = e.breaks_connection();
                            errors.push(e);
                            if stop {
                                break;
                            }
                        }
                    }
                }
            }
            (Plan::Raw, DeviceKind::SunSpec { .. }) => {
                unreachable!("a raw plan is only made for a raw device")
            }
        }
        (observations, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let caps = [100, 200, 400, 800, 800];
        for cap in caps {
            let d = b.next_delay();
            let cap = Duration::from_millis(cap);
            assert!(
                d <= cap && d >= cap / 2,
                "{d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
