//! The daemon's loads: each driver behind the actuator seam, one task following the
//! latest decision through [`SetPower`] and, for a load that reports its power, one
//! reading it through [`ReadPower`]; the embedded pool's Stratum client where a pool is
//! configured; and the meters the controller reads every step.
//!
//! Role: turn each `LoadDriver` into running drivers and book every result in the load's
//! [`LoadStatus`]. Must not decide how much a load draws (the controller does), and must
//! never make the control loop wait: a meter is read from atomics and short, uncontended
//! locks, never held across an `.await`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::LoadDriver;
use super::fault::Fault;
use super::supervise::{Supervisor, Task};
use super::{RuntimeError, Snapshot};
use crate::actuator::asic::{Fleet, MinerStatus};
use crate::actuator::hasher::stratum::{StratumClient, StratumStats};
use crate::actuator::hasher::{
    load::READ_EVERY, HasherConfig, HasherPool, HashingReport, Kernel, PoolActivity, PoolLoad,
};
use crate::actuator::mqtt::{self as mqtt_load, setpoint_body, MqttLoad};
use crate::actuator::status::{LoadStatus, Operation};
use crate::actuator::{ActuatorError, ReadPower, SetPower};
use crate::clock::{Clock, Timestamp};
use crate::decision::LoadTarget;
use crate::mqtt::MqttSettings;
use crate::site::LoadSpec;
use crate::telemetry::evidence::UnitTiming;
use crate::units::Watts;

/// The first wait before writing a target again after a transient failure, doubled
/// after each failure up to `RETRY_MAX`: the equipment must get its target once the way
/// to it is back, even if the target does not change in the meantime.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// How the controller and the status learn what a load does.
pub(super) struct Meter {
    status: Arc<Mutex<LoadStatus>>,
    /// The embedded pool, for its hashing report: with a Stratum pool configured it
    /// draws nothing while it has no job, whatever its target.
    hasher: Option<(Arc<HasherPool>, Option<Arc<StratumStats>>)>,
    /// An ASIC group: its fleet and the group's index in it.
    fleet: Option<(Fleet, usize)>,
}

/// A poisoned lock still holds a consistent status (each update is one assignment
/// series that cannot panic), so it is used rather than propagated.
fn lock(status: &Mutex<LoadStatus>) -> MutexGuard<'_, LoadStatus> {
    status.lock().unwrap_or_else(|p| p.into_inner())
}

impl Meter {
    /// Everything known of the load from its driver, never waiting; what the controller
    /// counts the load as drawing is its [`LoadStatus::reading`].
    pub(super) fn status(&self) -> LoadStatus {
        lock(&self.status).clone()
    }

    /// What became of each command sent to the load since `since`, for the evidence
    /// of a frequency response: one timing for the load as a whole, named `load`, from
    /// its status (a fleet gives one per miner).
    pub(super) fn timings(&self, load: &str, since: Timestamp) -> Vec<UnitTiming> {
        if let Some((fleet, g)) = &self.fleet {
            // An ASIC group: each miner's own command, sent, acknowledged by its
            // firmware and confirmed by its read-back (an acknowledgement alone is a
            // timing, never proof).
            return fleet
                .commands_since(*g, since)
                .into_iter()
                .map(|(address, c)| UnitTiming {
                    unit: address.to_string(),
                    command: match c.command {
                        crate::actuator::asic::Command::SetLimit(w) => format!("power limit {w}"),
                        other => other.as_str().to_string(),
                    },
                    sent: c.sent,
                    acked: c.acked,
                    confirmed: c.confirmed,
                    error: c.error.filter(|_| c.failed || c.acked.is_none()),
                })
                .collect();
        }
        UnitTiming::of_load(load, &lock(&self.status), since)
            .into_iter()
            .collect()
    }

    /// A view of a hashing load's workers; `None` for anything else.
    pub(super) fn activity(&self) -> Option<PoolActivity> {
        self.hasher.as_ref().map(|(pool, _)| pool.activity())
    }

    /// Every miner of an ASIC group; `None` for any other load.
    pub(super) fn miners(&self) -> Option<Vec<MinerStatus>> {
        self.fleet.as_ref().map(|(f, g)| f.statuses(Some(*g)))
    }

    /// The hashing report of a hashing load; `None` for anything else.
    pub(super) fn hashing(&self) -> Option<HashingReport> {
        let (pool, stratum) = self.hasher.as_ref()?;
        Some(HashingReport::read(pool, stratum.as_deref()))
    }
}

impl LoadDriver {
    /// Whether the load reports what it draws (so its power can be confirmed).
    pub fn reports_power(&self) -> bool {
        match self {
            LoadDriver::Hasher { .. } => true,
            LoadDriver::Mqtt { readback, .. } => readback.is_some(),
            LoadDriver::Asic { .. } => true,
        }
    }
}

/// The status of load `spec` driven by `driver` before anything was written or read.
pub(super) fn initial_status(spec: &LoadSpec, driver: &LoadDriver) -> LoadStatus {
    LoadStatus::new(rating(spec), driver.reports_power())
}

/// Count × rating.
fn rating(spec: &LoadSpec) -> Watts {
    spec.rated_power * f64::from(spec.count)
}

/// What starting a load needs from the daemon.
pub(super) struct Wiring<'a> {
    pub snapshots: &'a watch::Receiver<Arc<Snapshot>>,
    /// The daemon's broker settings: an MQTT load connects with them, as a client of
    /// its own.
    pub mqtt: &'a MqttSettings,
    pub clock: &'a Arc<dyn Clock>,
    pub tracker: &'a TaskTracker,
    pub shutdown: &'a CancellationToken,
    pub supervisor: &'a Supervisor,
    pub fault: Fault,
    /// The started ASIC fleets, as `LoadDriver::Asic` names them, each with the guard
    /// that stops its miners' tasks once every group's follower has applied the safe
    /// state.
    pub fleets: &'a [(Fleet, Arc<tokio_util::sync::DropGuard>)],
}

/// A load task's body as the supervisor takes it: it only ever ends, never fails (what
/// goes wrong is booked in the load's status), so any end while the daemon runs is news.
async fn ends(work: impl std::future::Future<Output = ()>) -> Result<(), std::convert::Infallible> {
    work.await;
    Ok(())
}

/// Starts load `i` (as `spec` describes it) and the tasks that drive it; returns its
/// meter.
pub(super) fn start(
    driver: LoadDriver,
    i: usize,
    spec: &LoadSpec,
    w: &Wiring<'_>,
) -> Result<Meter, RuntimeError> {
    let name = spec.name.as_str();
    let status = Arc::new(Mutex::new(initial_status(spec, &driver)));
    let follower = Follower {
        snapshots: w.snapshots.clone(),
        i,
        status: status.clone(),
        clock: w.clock.clone(),
        name: name.to_owned(),
    };
    match driver {
        LoadDriver::Hasher {
            threads,
            watts_per_core,
            hashrate_per_core,
            pool: stratum,
        } => {
            let kernel = Kernel::best();
            tracing::info!(
                load = name,
                kernel = kernel.name(),
                threads,
                "Embedded hashing pool ready"
            );
            let (pool, shares) = HasherPool::start(HasherConfig {
                threads,
                watts_per_core,
                hashrate_per_core,
                kernel,
            });
            let pool = Arc::new(pool);
            let stats = match stratum {
                None => {
                    // No pool configured: hash a local job, real work that never yields a
                    // share (so the share receiver may go).
                    pool.set_job(Arc::new(local_job()));
                    None
                }
                Some(config) => {
                    // Only the pool's jobs are hashed: until the first arrives the
                    // workers rest and the meter reads 0 W, so the controller and the
                    // state see a load that is not mining.
                    tracing::info!(load = name, pool = %config.addr, user = config.user, "Mining for a Stratum pool");
                    let client = StratumClient::new(config);
                    let stats = client.stats();
                    // Transport failures are retried inside; only a refusal the config
                    // says to give up on ends it (see `Task::critical`).
                    w.supervisor.spawn(
                        w.tracker,
                        Task::Stratum(name.to_owned()),
                        client.run(pool.clone(), shares, w.shutdown.clone()),
                    );
                    Some(stats)
                }
            };
            // Each task owns a handle on the pool: it joins its threads when the last
            // handle goes.
            let load = PoolLoad::new(pool.clone(), w.clock.clone(), READ_EVERY);
            let task = || Task::Load(name.to_owned());
            w.supervisor.spawn(
                w.tracker,
                task(),
                ends(follower.clone().read(load.clone(), w.shutdown.clone())),
            );
            w.supervisor.spawn(
                w.tracker,
                task(),
                ends(follower.follow(w.fault.driver(i, load))),
            );
            Ok(Meter {
                status,
                hasher: Some((pool, stats)),
                fleet: None,
            })
        }
        LoadDriver::Mqtt { topic, readback } => {
            let mut settings = w.mqtt.clone();
            // Unique per load: a broker drops the older of two connections sharing an id.
            settings.client_id = format!("{}-load{i}", settings.client_id);
            let load = MqttLoad {
                topic,
                readback,
                rated: rating(spec),
            };
            let (setpoint, reader, link) = mqtt_load::connect(&settings, &load, w.clock.clone())?;
            // The link outlives the controller: the safe state goes out through it, and
            // only then is it stopped.
            let stop = CancellationToken::new();
            let task = || Task::Load(name.to_owned());
            // Without its connection the load's setpoints cannot be written.
            w.supervisor
                .spawn(w.tracker, task(), link.run(stop.clone()));
            if let Some(reader) = reader {
                w.supervisor.spawn(
                    w.tracker,
                    task(),
                    ends(follower.clone().read(reader, w.shutdown.clone())),
                );
            }
            // The guard stops the link however the follower ends, a panic included: a
            // link left running would hold up the shutdown.
            let driver = w.fault.driver(i, setpoint);
            w.supervisor.spawn(
                w.tracker,
                task(),
                ends(follower.follow_holding(driver, stop.drop_guard())),
            );
            Ok(Meter {
                status,
                hasher: None,
                fleet: None,
            })
        }
        LoadDriver::Asic { fleet, group } => {
            let (fleet, guard) = w.fleets.get(fleet).ok_or_else(|| {
                RuntimeError::Fleet(super::fleet::FleetError::Empty(name.to_owned()))
            })?;
            let task = || Task::Load(name.to_owned());
            w.supervisor.spawn(
                w.tracker,
                task(),
                ends(
                    follower
                        .clone()
                        .read(fleet.group(group), w.shutdown.clone()),
                ),
            );
            // The miners' tasks outlive the controller: the safe state goes out through
            // them, and only when every group has applied it do they stop.
            let driver = w.fault.driver(i, fleet.group(group));
            w.supervisor.spawn(
                w.tracker,
                task(),
                ends(follower.follow_holding(driver, guard.clone())),
            );
            Ok(Meter {
                status,
                hasher: None,
                fleet: Some((fleet.clone(), group)),
            })
        }
    }
}

/// The target of load `i` in a decision.
fn target_of(s: &Snapshot, i: usize) -> LoadTarget {
    s.decision.loads.get(i).copied().unwrap_or(LoadTarget::OFF)
}

/// Returns once the decisions ask load `i` for something other than `target` (`false`)
/// or end (`true`: the controller is gone).
async fn superseded(rx: &mut watch::Receiver<Arc<Snapshot>>, i: usize, target: LoadTarget) -> bool {
    loop {
        if rx.changed().await.is_err() {
            return true;
        }
        if target_of(&rx.borrow_and_update(), i) != target {
            return false;
        }
    }
}

/// What a load's tasks share: where decisions come from, and where results go.
#[derive(Clone)]
struct Follower {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    i: usize,
    status: Arc<Mutex<LoadStatus>>,
    clock: Arc<dyn Clock>,
    name: String,
}

impl Follower {
    /// Follows the latest decision for the load: the newest target wins, stale ones never
    /// queue. A write that failed for a transient reason is tried again (backing off)
    /// until it works or a newer target replaces it. Ends after applying the safe state
    /// when the controller is gone.
    async fn follow(mut self, mut driver: impl SetPower + Send + 'static) {
        let mut written = None;
        let mut retry = RETRY_FIRST;
        let mut failing = false;
        loop {
            let target = target_of(&self.snapshots.borrow_and_update(), self.i);
            let mut again = None;
            if written != Some(target) {
                // A write still waiting for its confirmation gives way to a newer target
                // (or to the end): the latest wins, and a dead broker must not hold up
                // the safe state. What became of it is unknown, so nothing is booked.
                lock(&self.status).sending(target, self.clock.now());
                let outcome = tokio::select! {
                    r = driver.set(target) => Ok(r),
                    ended = superseded(&mut self.snapshots, self.i, target) => Err(ended),
                };
                match outcome {
                    Err(true) => break,
                    Err(false) => continue,
                    Ok(Ok(c)) => {
                        if failing {
                            tracing::info!(load = self.name, "Load setpoint written again");
                        }
                        lock(&self.status).commanded(c);
                        (written, retry, failing) = (Some(target), RETRY_FIRST, false);
                    }
                    Ok(Err(error)) => {
                        if error.is_transient() {
                            again = Some(retry);
                            retry = (retry * 2).min(RETRY_MAX);
                        }
                        self.failed(Operation::Set, error, &mut failing);
                    }
                }
            }
            tokio::select! {
                changed = self.snapshots.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(again.unwrap_or_default()), if again.is_some() => {}
            }
        }
        // The controller's final decision was the safe state; make sure it holds.
        match driver.set(LoadTarget::OFF).await {
            Ok(c) => lock(&self.status).commanded(c),
            Err(error) => {
                tracing::error!(%error, load = self.name, "Could not apply the safe state to the load");
                lock(&self.status).failed(Operation::Set, error, self.clock.now());
            }
        }
    }

    /// [`Follower::follow`], holding `guard` until it ends however it ends (a panic
    /// included): what the guard keeps running (a load's connection, a fleet's miner
    /// tasks) is needed to apply the safe state, and must stop once it is applied.
    async fn follow_holding<G: Send + 'static>(
        self,
        driver: impl SetPower + Send + 'static,
        guard: G,
    ) {
        let _guard = guard;
        self.follow(driver).await;
    }

    /// Books every reading of the load until `shutdown` or the driver stops.
    async fn read(self, mut driver: impl ReadPower + Send + 'static, shutdown: CancellationToken) {
        let mut failing = false;
        loop {
            let read = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = driver.read() => r,
            };
            match read {
                Ok(r) => {
                    lock(&self.status).observed(r);
                    failing = false;
                }
                Err(ActuatorError::Stopped) => break,
                Err(error) => self.failed(Operation::Read, error, &mut failing),
            }
        }
    }

    /// Books a failure; logs the first of a run of them as a warning, the rest at debug
    /// (a dead broker must not flood the log; the status and metrics count them all).
    fn failed(&self, op: Operation, error: ActuatorError, failing: &mut bool) {
        let op_name = op.as_str();
        if *failing {
            tracing::debug!(%error, load = self.name, op = op_name, "Load still failing");
        } else {
            tracing::warn!(%error, load = self.name, op = op_name, "Load write or read failed; the load is counted at what it last confirmed");
        }
        *failing = true;
        lock(&self.status).failed(op, error, self.clock.now());
    }
}

/// The genesis block's header at an unreachable difficulty: real SHA-256d work for a
/// pool with no Stratum connection, which never produces a share to submit.
fn local_job() -> crate::actuator::hasher::FixedHeader {
    use crate::actuator::hasher::{BlockHeader, FixedHeader, Target};
    const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
    FixedHeader {
        header: BlockHeader::from_hex(GENESIS).expect("a valid header"),
        target: Target::from_difficulty(1e15).expect("a valid difficulty"),
    }
}

/// The safe state of every load that outlives the process: each MQTT load's setpoint
/// topic with a 0 W setpoint. It is retained at the broker, so unless it is replaced the
/// equipment keeps (and, reconnecting, relearns) the last target of a dead daemon. The
/// embedded pools need nothing: their threads end with the process.
pub(super) fn safe_setpoints(drivers: &[LoadDriver]) -> Vec<(String, String)> {
    drivers
        .iter()
        .filter_map(|d| match d {
            LoadDriver::Mqtt { topic, .. } => Some((topic.clone(), setpoint_body(LoadTarget::OFF))),
            LoadDriver::Hasher { .. } | LoadDriver::Asic { .. } => None,
        })
        .collect()
}
