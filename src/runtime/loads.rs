//! The daemon's loads: one task per load following the latest decision, the embedded
//! pool's Stratum client where a pool is configured, and the meters the controller
//! reads every step.
//!
//! Role: turn each `LoadDriver` into running drivers. Must not decide how much a load
//! draws (the controller does), and must never make the control loop wait: a meter is
//! read from atomics and short, uncontended locks, never across an `.await`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::LoadDriver;
use super::fault::Fault;
use super::supervise::{Supervisor, Task};
use super::Snapshot;
use crate::actuator::hasher::stratum::{StratumClient, StratumStats};
use crate::actuator::hasher::{HasherConfig, HasherPool, HashingReport, Kernel, PoolActivity};
use crate::decision::LoadTarget;
use crate::units::Watts;

/// How the controller learns what a load draws.
pub(super) enum Meter {
    /// Not measured: the setpoint last applied stands in (W, as f64 bits).
    Setpoint(Arc<AtomicU64>),
    /// The embedded pool, read where it runs: with a Stratum pool configured it draws
    /// nothing while it has no job, whatever its target.
    Hasher {
        pool: Arc<HasherPool>,
        stratum: Option<Arc<StratumStats>>,
    },
}

impl Meter {
    /// Power the load draws now (W, consumption positive).
    pub(super) fn power(&self) -> Watts {
        match self {
            Meter::Setpoint(w) => Watts(f64::from_bits(w.load(Ordering::Relaxed))),
            Meter::Hasher { pool, .. } => pool.power(),
        }
    }

    /// A view of a hashing load's workers; `None` for anything else.
    pub(super) fn activity(&self) -> Option<PoolActivity> {
        match self {
            Meter::Setpoint(_) => None,
            Meter::Hasher { pool, .. } => Some(pool.activity()),
        }
    }

    /// The hashing report of a hashing load; `None` for anything else.
    pub(super) fn hashing(&self) -> Option<HashingReport> {
        match self {
            Meter::Setpoint(_) => None,
            Meter::Hasher { pool, stratum } => Some(HashingReport::read(pool, stratum.as_deref())),
        }
    }
}

/// What starting a load needs from the daemon.
pub(super) struct Wiring<'a> {
    pub snapshots: &'a watch::Receiver<Arc<Snapshot>>,
    pub client: &'a AsyncClient,
    pub tracker: &'a TaskTracker,
    pub shutdown: &'a CancellationToken,
    pub supervisor: &'a Supervisor,
    pub fault: Fault,
}

/// Starts load `i` (named `name`) and the tasks that drive it; returns its meter.
pub(super) fn start(driver: LoadDriver, i: usize, name: &str, w: &Wiring<'_>) -> Meter {
    let rx = w.snapshots.clone();
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
                    let (pool, shutdown) = (pool.clone(), w.shutdown.clone());
                    // Transport failures and refusals are retried inside; only a refusal
                    // the config says to give up on ends it (see `Task::critical`).
                    w.supervisor.spawn(
                        w.tracker,
                        Task::Stratum(name.to_owned()),
                        client.run(pool, shares, shutdown),
                    );
                    Some(stats)
                }
            };
            let p = pool.clone();
            let apply = w
                .fault
                .driver(i, move |t: LoadTarget| p.set_power_target(t.power));
            w.supervisor
                .spawn(w.tracker, Task::Load(name.to_owned()), follow(rx, i, apply));
            Meter::Hasher {
                pool,
                stratum: stats,
            }
        }
        LoadDriver::Mqtt { topic } => {
            let client = w.client.clone();
            let power = Arc::new(AtomicU64::new(0f64.to_bits()));
            let reported = power.clone();
            let apply = w.fault.driver(i, move |t: LoadTarget| {
                // Retained, so equipment that reconnects learns its setpoint at once.
                if let Err(error) =
                    client.try_publish(topic.clone(), QoS::AtLeastOnce, true, setpoint(t))
                {
                    tracing::warn!(%error, topic, "Could not queue a load setpoint");
                }
                reported.store(t.power.0.to_bits(), Ordering::Relaxed);
            });
            w.supervisor
                .spawn(w.tracker, Task::Load(name.to_owned()), follow(rx, i, apply));
            Meter::Setpoint(power)
        }
    }
}

/// Follows the latest decision for load `i`: the newest target wins, stale ones never
/// queue. Ends after applying the safe state when the controller is gone. `apply` owns
/// (a handle on) the load's driver: the hashing pool joins its threads when the last
/// handle goes.
async fn follow<F>(
    mut rx: watch::Receiver<Arc<Snapshot>>,
    i: usize,
    mut apply: F,
) -> Result<(), std::convert::Infallible>
where
    F: FnMut(LoadTarget) + Send + 'static,
{
    let mut last = None;
    loop {
        let target = rx
            .borrow_and_update()
            .decision
            .loads
            .get(i)
            .copied()
            .unwrap_or(LoadTarget::OFF);
        if last != Some(target) {
            apply(target);
            last = Some(target);
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
    // The controller's final decision was the safe state; make sure it holds.
    apply(LoadTarget::OFF);
    Ok(())
}

/// The body of an MQTT load's setpoint message.
fn setpoint(t: LoadTarget) -> String {
    serde_json::json!({ "power_w": t.power.0, "units_on": t.units_on }).to_string()
}

/// The safe state of every load that outlives the process: each MQTT load's setpoint
/// topic with a 0 W setpoint. It is retained at the broker, so unless it is replaced the
/// equipment keeps (and, reconnecting, relearns) the last target of a dead daemon. The
/// embedded pools need nothing: their threads end with the process.
pub(super) fn safe_setpoints(drivers: &[LoadDriver]) -> Vec<(String, String)> {
    drivers
        .iter()
        .filter_map(|d| match d {
            LoadDriver::Mqtt { topic } => Some((topic.clone(), setpoint(LoadTarget::OFF))),
            LoadDriver::Hasher { .. } => None,
        })
        .collect()
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
