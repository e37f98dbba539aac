//! The edge daemon (`gridminer run`): builds every task from a `LiveConfig`, spawns them
//! on a `TaskTracker`, and shuts down in order on SIGINT/SIGTERM: the controller drives
//! the loads to the safe state, the loads apply it, the final status goes out, then the
//! MQTT connection says `offline` and disconnects.
//!
//! Tasks: MQTT connection (transport), the controller loop (observations and operator
//! commands in, decisions out on a `watch`), per load a task following the latest
//! decision through the actuator seam and one reading back what it draws ([`loads`],
//! with an MQTT load's own connection, or the Stratum client of an embedded pool that
//! mines for a pool), and the status publisher. Hashing runs on the pool's own OS threads.
//!
//! Every task is supervised ([`supervise`]): one that ends or panics while no shutdown
//! was asked makes [`Running::failed`] resolve, and `gridminer run` then stops in the
//! same order and exits non-zero.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actuator::asic::MinerStatus;
use crate::actuator::hasher::{HashingReport, PoolActivity};
use crate::actuator::status::LoadStatus;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::controller::{Controller, MaxAges};
use crate::decision::Decision;
use crate::mqtt::config::Broker;
use crate::mqtt::{broker::EmbeddedBroker, Inbound, MqttConnection, MqttError, MqttStats, Topics};
use crate::signal::modbus::{ModbusDevice, ModbusSource};
use crate::signal::mqtt::{Carries, MqttSignals, RejectReason, SignalStats};
use crate::signal::operator::{Ack, OperatorCommands, OperatorConfig, ReplayFile, HARD_CEILING};
use crate::signal::plausible::Plausibility;
use crate::signal::rejected::{self, LastRejected, LogLine, RejectLog};
use crate::signal::{Observation, Quantity};
use crate::state::{Reading, SiteState};
use crate::telemetry::config::TelemetryConfig;
use crate::telemetry::web::{Dashboard, StateDoc};
use crate::telemetry::{metrics::Metrics, metrics::MetricsServer, points, status, TelemetrySender};
use crate::units::{Hashprice, Watts};
use config::LiveConfig;
use loads::Meter;

pub mod config;
mod evidence;
mod fault;
pub mod fleet;
mod loads;
pub mod supervise;

pub use fault::ENV as FAULT_ENV;
use supervise::Supervisor;
pub use supervise::{Ended, Task, TaskFailure};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    #[error(transparent)]
    Fleet(#[from] fleet::FleetError),
    #[error("shutdown took longer than {0:?}")]
    ShutdownTimeout(Duration),
    #[error("ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    /// Not `#[from]`: the failure is the message, not a source to print again.
    #[error("{0}; the daemon stopped with its loads in the safe state")]
    Task(TaskFailure),
}

/// How often every ASIC miner's point goes to InfluxDB.
const FLEET_POINTS_EVERY: Duration = Duration::from_secs(10);

/// What the controller publishes after every step.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Timestamp,
    pub decision: Decision,
    pub state: SiteState,
    /// What each load's driver reports (commanded, confirmed actual power, last error,
    /// latency), in config order, read before the decision.
    pub loads: Vec<LoadStatus>,
    /// Each hashing load's report (hashes, hashrate, Stratum counters), read after the
    /// decision was made, before the loads apply it; `None` for other loads.
    pub hashing: Vec<Option<HashingReport>>,
    /// Every miner of the ASIC fleets, group by group.
    pub fleet: Vec<MinerStatus>,
    /// The latest frequency-response evidence records, newest first (the open one too).
    pub events: Arc<Vec<crate::telemetry::evidence::Record>>,
    /// The ledger's size, checkpoint and errors (`None` without `[ledger]`).
    pub ledger: Option<crate::ledger::recorder::LedgerStatus>,
    /// The latest operator acks, newest first (see [`ShownAcks`]).
    pub acks: Arc<Vec<serde_json::Value>>,
}

/// The operator acks the state shows, newest first: the last [`ShownAcks::KEPT`], with a
/// run of heartbeats from one operator shown as its latest (a heartbeat every few seconds
/// would push every curtail out of sight).
#[derive(Debug, Default)]
struct ShownAcks(std::collections::VecDeque<serde_json::Value>);

impl ShownAcks {
    const KEPT: usize = 20;

    /// `ack` as published, with who sent it and what it ordered where known.
    fn push(
        &mut self,
        ack: &Ack,
        command: Option<&crate::signal::operator::AcceptedCommand>,
    ) -> serde_json::Value {
        use crate::signal::operator::Order;
        let mut v = serde_json::to_value(ack).expect("an Ack serialises");
        let order = command.map(|c| match &c.order {
            Order::Heartbeat => "heartbeat",
            Order::Act(crate::signal::OperatorAction::Release) => "release",
            Order::Act(crate::signal::OperatorAction::Setpoint(_)) => "setpoint",
            Order::Act(_) => "curtail",
        });
        v["operator"] = command.map(|c| c.issuer.id.clone()).into();
        v["act"] = order.into();
        let beat =
            |x: &serde_json::Value| x["act"] == "heartbeat" && x["operator"] == v["operator"];
        if order == Some("heartbeat") && self.0.front().is_some_and(beat) {
            self.0.pop_front();
        }
        self.0.push_front(v.clone());
        self.0.truncate(Self::KEPT);
        v
    }

    fn shown(&self) -> Arc<Vec<serde_json::Value>> {
        Arc::new(self.0.iter().cloned().collect())
    }
}

/// Shared counters of the daemon, for metrics and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub signals: SignalStats,
    pub steps: AtomicU64,
}

/// Handles a test or `main` holds on a running daemon.
pub struct Running {
    pub metrics: Metrics,
    /// Where the Prometheus endpoint listens, if configured.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the dashboard listens, if configured (`[web]`).
    pub web_addr: Option<std::net::SocketAddr>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub counters: Arc<Counters>,
    pub operator: Option<Arc<crate::signal::operator::Counters>>,
    /// The MQTT connection's counters: connects, errors, refusals by the broker.
    pub mqtt: Arc<MqttStats>,
    /// The embedded hashing pools' workers, in load order (for watchers and benches).
    pub hashers: Vec<PoolActivity>,
    shutdown: CancellationToken,
    transport: CancellationToken,
    tracker: TaskTracker,
    transport_tracker: TaskTracker,
    supervisor: Supervisor,
    /// Each MQTT load's setpoint topic with its safe (0 W) setpoint.
    safe_setpoints: Vec<(String, String)>,
    client: AsyncClient,
    mqtt_settings: crate::mqtt::MqttSettings,
}

impl Running {
    /// Resolves when a task the daemon depends on has ended or panicked while no
    /// shutdown was asked (see [`Task::critical`]); then [`Running::stop`] it.
    pub async fn failed(&self) -> TaskFailure {
        self.supervisor.failed().await
    }

    /// Stops in order and waits, at most `deadline` per phase. `Err(Task)` if a task
    /// failed (before or while stopping), after the same orderly stop.
    pub async fn stop(self, deadline: Duration) -> Result<(), RuntimeError> {
        supervise::notify_stopping();
        self.shutdown.cancel();
        self.tracker.close();
        let t = tokio::time::timeout(deadline, self.tracker.wait()).await;
        self.safe_setpoints_out(deadline).await;
        // Only now the connection goes: the final state and the loads' safe state are out.
        self.transport.cancel();
        self.transport_tracker.close();
        let u = tokio::time::timeout(deadline, self.transport_tracker.wait()).await;
        if let Some(failure) = self.supervisor.first() {
            return Err(RuntimeError::Task(failure));
        }
        t.and(u)
            .map_err(|_| RuntimeError::ShutdownTimeout(deadline))
    }

    /// The MQTT loads' safe state once more, after their drivers: a driver that died
    /// never applied it. Queued on the daemon's connection (ahead of its goodbye) while
    /// that lives; when the connection is what died, sent on one of its own.
    async fn safe_setpoints_out(&self, deadline: Duration) {
        let queued = self.safe_setpoints.iter().all(|(topic, body)| {
            self.client
                .try_publish(topic.as_str(), QoS::AtLeastOnce, true, body.clone())
                .is_ok()
        });
        if queued {
            return;
        }
        match crate::mqtt::publish_once(&self.mqtt_settings, &self.safe_setpoints, deadline).await {
            Ok(()) => tracing::info!("MQTT loads told the safe state on a new connection"),
            Err(error) => tracing::error!(
                %error,
                "Could not tell the MQTT loads the safe state: their retained setpoints stand until the next start"
            ),
        }
    }
}

/// Everything a site config describes.
pub struct Site {
    pub config: LiveConfig,
    pub operators: OperatorConfig,
    pub modbus: Vec<ModbusDevice>,
    pub telemetry: TelemetryConfig,
    /// `[ledger]`: the tamper-evident log of what the site did, if kept.
    pub ledger: Option<crate::ledger::config::LedgerConfig>,
}

/// Starts the daemon.
pub async fn start(site: Site) -> Result<Running, RuntimeError> {
    let Site {
        mut config,
        operators,
        modbus,
        telemetry,
        ledger,
    } = site;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The fleets' groups are loads of the policy: found before anything decides.
    let fleets = fleet::resolve(&mut config, clock.clone()).await?;
    if let Broker::Embedded(settings) = &config.broker {
        let settings = settings.clone();
        let addr = settings.listen;
        tokio::task::spawn_blocking(move || EmbeddedBroker::start(&settings))
            .await
            .map_err(|e| MqttError::Broker(e.to_string()))??;
        tracing::info!(%addr, "Embedded MQTT broker listening");
    }
    let topics = Topics::new(&config.site);
    let signals = MqttSignals::new(config.signals.clone());
    let mut subscriptions = signals.topics();
    subscriptions.push(topics.cmd());
    let (inbound_tx, inbound_rx) = mpsc::channel::<Inbound>(4096);
    let (connection, client) =
        MqttConnection::new(&config.mqtt, topics.clone(), subscriptions, inbound_tx)?;
    let metrics = Metrics::new();
    let mqtt_stats = connection.stats.clone();
    metrics.watch_mqtt(mqtt_stats.clone());

    let shutdown = CancellationToken::new();
    let transport = CancellationToken::new();
    let tracker = TaskTracker::new();
    let transport_tracker = TaskTracker::new();
    let supervisor = Supervisor::new(shutdown.clone());
    let fault = fault::Fault::from_env();
    // Its last will says `offline` (retained) if it dies: the broker announces it.
    let mqtt_task = supervisor.spawn(
        &transport_tracker,
        Task::Mqtt,
        connection.run(transport.clone()),
    );
    fault.arm_mqtt(mqtt_task, &tracker, &shutdown);

    let mut core = LiveStep::from_config(&config);
    let events_file = crate::telemetry::evidence::file::EventsFile::new(
        telemetry
            .events
            .path(&operators.replay_cache_path(&config.site), &config.site),
        telemetry.events.max_bytes,
    );
    // No operators, no accepted commands: nothing to remember across restarts.
    let replay_file = (!operators.operators.is_empty())
        .then(|| ReplayFile::new(operators.replay_cache_path(&config.site)));
    let mut commands =
        OperatorCommands::new(config.site.clone(), operators).with_max_power(config.ratings.mining);
    // Before the first decision: the commands in force and the failsafe as a previous
    // process left them, so a restart never lifts a cap.
    if let Some(file) = &replay_file {
        restore_record(
            &mut commands,
            &mut core.controller,
            file,
            &metrics,
            clock.now(),
        );
    }
    if let Some(obs) = commands.tick(clock.now()) {
        tracing::warn!(
            "Operator heartbeat failsafe engaged at start: no heartbeat within the timeout"
        );
        core.controller.observe(obs);
    }
    let first = Arc::new(Snapshot {
        at: clock.now(),
        decision: core.controller.preview(clock.now()),
        state: core.controller.state().clone(),
        loads: config
            .drivers
            .iter()
            .zip(&config.loads)
            .map(|(driver, spec)| loads::initial_status(spec, driver))
            .collect(),
        hashing: vec![None; config.loads.len()],
        fleet: Vec::new(),
        events: Arc::default(),
        acks: Arc::default(),
        ledger: None,
    });
    let (snap_tx, snap_rx) = watch::channel(first);
    let counters = Arc::new(Counters::default());
    let operator_counters = commands.counters();

    // The fleets' miners: each fleet's tasks stop once every one of its groups has
    // applied the safe state (the last follower drops the guard).
    let fleets: Vec<_> = fleets
        .into_iter()
        .map(|f| {
            let stop = CancellationToken::new();
            for task in f.tasks(stop.clone()) {
                supervisor.spawn(&tracker, Task::Load("fleet".into()), async move {
                    task.await;
                    Ok::<(), std::convert::Infallible>(())
                });
            }
            (f, Arc::new(stop.drop_guard()))
        })
        .collect();
    // The loads.
    let wiring = loads::Wiring {
        snapshots: &snap_rx,
        mqtt: &config.mqtt,
        clock: &clock,
        tracker: &tracker,
        shutdown: &shutdown,
        supervisor: &supervisor,
        fault,
        fleets: &fleets,
    };
    let meters: Vec<Meter> = config
        .drivers
        .iter()
        .zip(&config.loads)
        .enumerate()
        .map(|(i, (driver, spec))| loads::start(driver.clone(), i, spec, &wiring))
        .collect::<Result<_, _>>()?;
    let hashers = meters.iter().filter_map(Meter::activity).collect();

    // Status and Home Assistant discovery; the dashboard shows the same document.
    let (docs_tx, docs_rx) = watch::channel(Arc::new(StateDoc::new(
        snap_rx.borrow().at,
        serde_json::Value::Null,
    )));
    {
        let client = client.clone();
        let mut rx = snap_rx.clone();
        let loads = config.loads.clone();
        let topics = topics.clone();
        let ha = config.ha_discovery.then(|| ha_entities(&config, &modbus));
        supervisor.spawn(&tracker, Task::Status, async move {
            if let Some((signals, fleet)) = ha {
                let site = status::HaSite {
                    signals: &signals,
                    loads: &loads,
                    fleet,
                };
                for (topic, body) in status::ha_discovery(&topics, &site) {
                    let _ = client.publish(topic, QoS::AtLeastOnce, true, body).await;
                }
            }
            loop {
                let snap = rx.borrow_and_update().clone();
                let mut json = status::state_json(
                    &snap.state,
                    &snap.decision,
                    &loads,
                    &snap.loads,
                    &snap.hashing,
                    &snap.fleet,
                    &snap.events,
                    &snap.acks,
                    snap.at,
                );
                // The ledger's size, last checkpoint and errors: null without `[ledger]`.
                json["ledger"] = serde_json::to_value(&snap.ledger).unwrap_or_default();
                let doc = StateDoc::new(snap.at, json);
                let body = doc.text.clone();
                docs_tx.send_replace(Arc::new(doc));
                let _ = client.try_publish(topics.state(), QoS::AtMostOnce, true, body);
                if rx.changed().await.is_err() {
                    break;
                }
            }
            Ok::<(), std::convert::Infallible>(())
        });
    }

    // Telemetry: InfluxDB (flushed after the loads are safe, with the transport) and the
    // Prometheus endpoint.
    let mut influx: Option<TelemetrySender> = None;
    if let Some(cfg) = telemetry.influx {
        match crate::telemetry::writer(cfg, metrics.clone()) {
            Ok((sender, writer)) => {
                influx = Some(sender);
                supervisor.spawn(
                    &transport_tracker,
                    Task::Influx,
                    writer.run(transport.clone()),
                );
            }
            Err(error) => tracing::error!(%error, "InfluxDB writer not started"),
        }
    }
    let mut metrics_addr = None;
    if let Some(m) = telemetry.metrics {
        match MetricsServer::bind(m.listen, metrics.clone()).await {
            Ok(server) => {
                metrics_addr = server.local_addr().ok();
                supervisor.spawn(&tracker, Task::Metrics, server.run(shutdown.clone()));
            }
            Err(error) => tracing::error!(%error, "Metrics endpoint not started"),
        }
    }

    let mut web_addr = None;
    if let Some(w) = telemetry.web {
        match Dashboard::bind(w.listen, docs_rx).await {
            Ok(server) => {
                web_addr = server.local_addr().ok();
                let at = web_addr.unwrap_or(w.listen);
                tracing::info!(url = %format_args!("http://{at}/"), "Dashboard serving");
                supervisor.spawn(&tracker, Task::Web, server.run(shutdown.clone()));
            }
            Err(error) => tracing::error!(%error, "Dashboard not started"),
        }
    }

    // Modbus devices: each polls on its own task and reconnects inside.
    let (obs_tx, obs_rx) = mpsc::channel::<Observation>(1024);
    for device in modbus {
        // Its one error (a device that cannot serve its role) is logged inside; its
        // signals then go stale.
        let task = Task::Modbus(device.name.clone());
        let source = ModbusSource::new(device);
        supervisor.spawn(&tracker, task, source.run(obs_tx.clone(), shutdown.clone()));
    }
    drop(obs_tx);

    // The controller.
    {
        let shutdown = shutdown.clone();
        let counters = counters.clone();
        let client = client.clone();
        let tick = config.tick;
        let names: Vec<String> = config.loads.iter().map(|l| l.name.clone()).collect();
        let ledger = match &ledger {
            Some(l) => Some(open_ledger(
                l,
                &config,
                names.clone(),
                clock.now(),
                (&client, &topics),
                &tracker,
            )?),
            None => None,
        };
        let evidence = evidence::Recorder::new(
            &config.site,
            names.clone(),
            events_file,
            tracker.clone(),
            metrics.clone(),
            influx.clone(),
        );
        let live = LiveLoop {
            core,
            reject_log: RejectLog::default(),
            metrics: metrics.clone(),
            influx,
            names,
            signals,
            commands,
            replay_file,
            fleet_points_at: None,
            topics,
            client,
            clock,
            meters,
            snapshots: snap_tx,
            counters,
            watchdog: supervise::Watchdog::new(tick),
            evidence,
            acks: ShownAcks::default(),
            ledger,
            work: WorkMark::default(),
        };
        supervisor.spawn(
            &tracker,
            Task::Controller,
            live.run(tick, inbound_rx, obs_rx, shutdown),
        );
    }
    let safe_setpoints = loads::safe_setpoints(&config.drivers);
    supervise::notify_ready();
    Ok(Running {
        metrics,
        metrics_addr,
        web_addr,
        snapshots: snap_rx,
        counters,
        operator: Some(operator_counters),
        mqtt: mqtt_stats,
        hashers,
        shutdown,
        transport,
        tracker,
        transport_tracker,
        supervisor,
        safe_setpoints,
        client,
        mqtt_settings: config.mqtt.clone(),
    })
}

/// Gives the command channel and the state what a previous run left: the `jti`s it
/// accepted, the commands in force, the last heartbeat. When the file cannot be used, the
/// record is lost: a captured command from before the restart could be sent again, and a
/// curtailment may have been in force. Rather than refuse to start (the loads would stay
/// where they were, out of anyone's control) or ignore it, the channel refuses tokens
/// signed before the start (see `OperatorCommands::record_lost`), which locks a grid
/// operator out for no more than the clock skew allowance, and mining is held at 0 W
/// until an operator releases it.
fn restore_record(
    commands: &mut OperatorCommands,
    controller: &mut Controller,
    file: &ReplayFile,
    metrics: &Metrics,
    now: Timestamp,
) {
    match file.load(now, HARD_CEILING) {
        Ok(record) => {
            let (live, in_force) = commands.restore(record, now);
            let held = in_force.all().len();
            controller.restore_commands(in_force);
            tracing::info!(path = %file.path().display(), live, commands_in_force = held, "Operator record restored");
        }
        Err(error) => {
            metrics.replay_cache_error();
            let (fence, hold) = commands.record_lost(now);
            controller.observe(hold);
            tracing::error!(
                %error,
                %fence,
                "Operator record unusable: mining held at 0 W until an operator releases it; \
                 commands signed before the fence are refused (issued_before_restart); the \
                 file is replaced at the next accepted command"
            );
        }
    }
}

/// What Home Assistant discovery announces: the quantities a source feeds (MQTT signals,
/// Modbus devices, a configured hashprice) and whether an ASIC fleet is configured.
fn ha_entities(config: &LiveConfig, modbus: &[ModbusDevice]) -> (Vec<Quantity>, bool) {
    let mut fed: Vec<Quantity> = config
        .signals
        .iter()
        // A day-ahead schedule is a price source too (the state's `price_eur_mwh`).
        .filter_map(|s| match s.carries {
            Carries::PriceSchedule => Some(Quantity::Price),
            Carries::Forecast(_) => None,
            c => c.quantity(),
        })
        .chain(modbus.iter().flat_map(ModbusDevice::quantities))
        .chain(config.hashprice.map(|_| Quantity::Hashprice))
        .collect();
    fed.sort_by_key(|&q| q as usize);
    fed.dedup();
    (fed, !config.fleets.is_empty())
}

/// The live loop's control step without the I/O around it: what a value must pass to
/// reach the state, the configured constants, and `Controller::step`. The loop feeds it
/// what arrives and when; a test can feed it a recorded stream and compare it with the
/// simulator, which drives the same `Controller` (tests/it/parity.rs).
pub struct LiveStep {
    controller: Controller,
    /// What every MQTT and Modbus value must pass before the state sees it.
    plausible: Plausibility,
    /// A configured constant: observed afresh every step, so it never ages.
    hashprice: Option<Hashprice>,
}

impl LiveStep {
    /// The step a site config describes: its policy, each signal's `max_age`, its
    /// ratings for plausibility, its constant hashprice.
    pub fn from_config(config: &LiveConfig) -> Self {
        let mut max_ages = MaxAges::default();
        for s in &config.signals {
            if let (Some(q), Some(age)) = (s.carries.quantity(), s.max_age) {
                max_ages.limit(q, age);
            }
        }
        LiveStep {
            controller: Controller::new(config.policy(), max_ages),
            plausible: Plausibility::new(config.ratings),
            hashprice: config.hashprice,
        }
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Takes `obs` if it is plausible at this site. If not, the quantity's last reading
    /// is dropped and the reason returned: a source that reports what cannot be is
    /// broken, so its signal goes stale now, and the policy's staleness rule applies
    /// rather than an old value.
    pub fn admit(&mut self, obs: Observation, now: Timestamp) -> Result<(), String> {
        match self.plausible.check(&obs, now) {
            Ok(()) => {
                self.controller.observe(obs);
                Ok(())
            }
            Err(detail) => {
                self.controller.forget(&obs);
                Err(detail)
            }
        }
    }

    /// One step at `now` with each load's latest reported power.
    pub fn step(&mut self, now: Timestamp, loads: &[Option<Reading<Watts>>]) -> Decision {
        if let Some(h) = self.hashprice {
            self.controller
                .observe(Observation::Hashprice { value: h, at: now });
        }
        self.controller.step(now, loads)
    }
}

struct LiveLoop {
    core: LiveStep,
    /// The rate limit on logging refused signal values.
    reject_log: RejectLog,
    metrics: Metrics,
    influx: Option<TelemetrySender>,
    names: Vec<String>,
    signals: MqttSignals,
    commands: OperatorCommands,
    /// Where accepted `jti`s are kept across restarts; `None` without operators.
    replay_file: Option<ReplayFile>,
    /// When the fleet's miners last went to InfluxDB: at most every `FLEET_POINTS_EVERY`
    /// (a point per miner per tick would be thousands a second).
    fleet_points_at: Option<Timestamp>,
    topics: Topics,
    client: AsyncClient,
    clock: Arc<dyn Clock>,
    /// One per load, in config order.
    meters: Vec<Meter>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    counters: Arc<Counters>,
    /// Fed after every tick's step, so a hung loop stops feeding it.
    watchdog: supervise::Watchdog,
    /// The frequency-response evidence: fed every decision, sampled on its own timers.
    evidence: evidence::Recorder,
    /// What the state shows of the operator acks.
    acks: ShownAcks,
    /// The tamper-evident ledger, if kept (`[ledger]`).
    ledger: Option<crate::ledger::recorder::Recorder>,
    /// The hashing counters at the last step, for the ledger's accounts.
    work: WorkMark,
}

/// The loads' work counters as last seen: the ledger books what they did since.
#[derive(Debug, Default)]
struct WorkMark {
    at: Option<Timestamp>,
    hashes: u64,
    shares: u64,
}

impl WorkMark {
    /// What the loads did since the last call: the hashers' own counters, the fleets'
    /// reported hashrate over the time since (they report no counter).
    fn since(
        &mut self,
        now: Timestamp,
        hashing: &[Option<HashingReport>],
        fleet: &[MinerStatus],
    ) -> crate::ledger::account::Work {
        let hashes: u64 = hashing.iter().flatten().map(|r| r.hasher.hashes).sum();
        let shares: u64 = hashing
            .iter()
            .flatten()
            .filter_map(|r| r.pool.as_ref().map(|p| p.accepted))
            .sum();
        let fleet_hs: f64 = fleet.iter().filter_map(|m| m.hashrate_ths).sum::<f64>() * 1e12;
        let dt = self.at.map_or(0.0, |t| now.since(t).as_secs_f64());
        let work = crate::ledger::account::Work {
            hashes: hashes.saturating_sub(self.hashes) as f64 + fleet_hs * dt,
            shares_accepted: shares.saturating_sub(self.shares),
        };
        *self = WorkMark {
            at: Some(now),
            hashes,
            shares,
        };
        work
    }
}

/// Opens the ledger `[ledger]` describes and books the start: the software and the
/// hash of the configuration file it runs on.
///
/// The log is written on a thread of its own (on `tracker`, so shutdown waits for the
/// last checkpoint), each checkpoint published retained on `ledger/checkpoint` for
/// anyone to hold the site to.
fn open_ledger(
    l: &crate::ledger::config::LedgerConfig,
    config: &LiveConfig,
    names: Vec<String>,
    now: Timestamp,
    (client, topics): (&AsyncClient, &Topics),
    tracker: &TaskTracker,
) -> Result<crate::ledger::recorder::Recorder, RuntimeError> {
    let device = crate::ledger::entry::Device {
        site: config.site.clone(),
        pv_capacity_w: config.ratings.pv.map_or(0.0, |w| w.0),
        wind_capacity_w: config.ratings.wind.map_or(0.0, |w| w.0),
    };
    let (mut recorder, found) = crate::ledger::recorder::Recorder::open(l, device, names)?;
    tracing::info!(
        dir = %l.dir.display(),
        vkey = recorder.status().vkey,
        checkpointed = found.checkpointed,
        restaged = found.restaged,
        torn_bytes = found.torn_bytes,
        "Ledger open"
    );
    let bytes = std::fs::read(&config.file).unwrap_or_default();
    recorder.start(now, &config.site, "run", &config.policy.mode_name(), &bytes);
    let (client, topic) = (client.clone(), topics.ledger_checkpoint());
    recorder.in_background(
        Box::new(move |c: &[u8]| {
            let _ = client.try_publish(topic.as_str(), QoS::AtLeastOnce, true, c.to_vec());
        }),
        |job| {
            tracker.spawn_blocking(job);
        },
    );
    Ok(recorder)
}

impl LiveLoop {
    /// A tick, plus an immediate step when an operator command or a frequency reading
    /// arrives. The step is the simulator's.
    async fn run(
        mut self,
        tick: Duration,
        mut inbound: mpsc::Receiver<Inbound>,
        mut observations: mpsc::Receiver<Observation>,
        shutdown: CancellationToken,
    ) -> Result<(), std::convert::Infallible> {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let sample_due = self.evidence.due();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {
                    self.step();
                    self.watchdog.stepped();
                }
                _ = evidence::until(sample_due) => {
                    let (now, loads) = (self.clock.now(), self.load_statuses());
                    self.evidence.sample(now, &loads, &self.meters);
                }
                Some(obs) = observations.recv() => {
                    let urgent = matches!(obs, Observation::Frequency { .. });
                    if self.admit(obs, "modbus", None) {
                        self.metrics.observation("modbus");
                        if urgent {
                            self.step();
                        }
                    }
                }
                // Closed only if the MQTT connection died: the supervisor stops the
                // daemon, and until then the loop steps on (the loads follow it).
                Some(msg) = inbound.recv() => {
                    if msg.topic == self.topics.cmd() {
                        self.command(&msg);
                    } else {
                        match self.signals.parse(&msg) {
                            Ok(obs) => {
                                let urgent = matches!(obs, Observation::Frequency { .. });
                                if self.admit(obs, &msg.topic, Some(&msg.payload)) {
                                    self.counters.signals.accepted.fetch_add(1, Ordering::Relaxed);
                                    self.metrics.observation("mqtt");
                                    if urgent {
                                        self.step();
                                    }
                                }
                            }
                            Err(r) => {
                                let signal = self.signals.signal(&r.topic);
                                self.rejected(r.reason, &r.topic, signal, &msg.payload, &r.detail);
                            }
                        }
                    }
                }
            }
        }
        // Safe state: every load off, published as the final decision, with the open
        // evidence record closed short.
        let now = self.clock.now();
        self.evidence
            .close(now, &self.load_statuses(), &self.meters);
        let d = self.core.controller.safe_state(now);
        let (loads, hashing) = (self.load_statuses(), self.hashing_reports());
        self.publish(d, now, loads, hashing, self.fleet_statuses());
        tracing::info!("Loads set to the safe state");
        self.ledger_events();
        if let Some(ledger) = &mut self.ledger {
            ledger.close(now, self.core.controller.state());
        }
        Ok(())
    }

    /// Whether `obs` (from `source`: a topic with its `payload`, or `modbus`) was taken;
    /// a refused one is counted, logged and shown as its signal's `last_rejected` (see
    /// `LiveStep::admit`).
    fn admit(&mut self, obs: Observation, source: &str, payload: Option<&[u8]>) -> bool {
        let signal = rejected::signal_of(&obs);
        // Modbus has no payload: the refused value is shown with its unit.
        let shown = payload.is_none().then(|| rejected::shown_value(&obs));
        let now = self.clock.now();
        let Err(detail) = self.core.admit(obs, now) else {
            return true;
        };
        let payload = payload.unwrap_or_else(|| shown.as_deref().unwrap_or_default().as_bytes());
        self.rejected(RejectReason::OutOfRange, source, signal, payload, &detail);
        false
    }

    /// Counts, logs and shows a value refused for `reason` from `source` (a topic, or
    /// `modbus`) meant for `signal`: the state keeps it as the signal's `last_rejected`,
    /// and the log has the first of each source and reason with its payload, then a count
    /// once a minute (`RejectLog`): a flood of bad values must not flood the log.
    fn rejected(
        &mut self,
        reason: RejectReason,
        source: &str,
        signal: Option<crate::signal::Quantity>,
        payload: &[u8],
        detail: &str,
    ) {
        self.counters.signals.reject(reason);
        self.metrics.reject(reason.as_str());
        let now = self.clock.now();
        let prefix = rejected::payload_prefix(payload);
        match self.reject_log.note(source, reason, &prefix, now) {
            LogLine::First => {
                tracing::warn!(
                    source,
                    reason = reason.as_str(),
                    payload = format_args!("\"{prefix}\""),
                    detail,
                    "Refused a signal value; a signal with no usable value goes stale"
                );
                if let Some(sender) = &self.influx {
                    sender.send(points::rejected_point(signal, source, reason, 1, now));
                }
            }
            LogLine::Summary { count, over } => {
                self.refusals(signal, source, reason, count, over, &prefix);
            }
            LogLine::Quiet => tracing::debug!(
                source,
                reason = reason.as_str(),
                payload = format_args!("\"{prefix}\""),
                detail,
                "Refused a signal value"
            ),
        }
        if let Some(signal) = signal {
            let last = LastRejected {
                reason,
                at: now,
                source: source.into(),
                payload_prefix: prefix.into(),
            };
            self.core.controller.note_rejected(signal, last);
        }
    }

    /// The once-a-minute line (and InfluxDB point) for a run of `count` refused values
    /// (see `RejectLog`), the latest with payload prefix `latest`.
    fn refusals(
        &self,
        signal: Option<crate::signal::Quantity>,
        source: &str,
        reason: RejectReason,
        count: u64,
        over: Duration,
        latest: &str,
    ) {
        tracing::warn!(
            source,
            reason = reason.as_str(),
            count,
            over_s = over.as_secs(),
            latest = format_args!("\"{latest}\""),
            "Refused signal values, {count} in the last {}s",
            over.as_secs()
        );
        if let Some(sender) = &self.influx {
            let now = self.clock.now();
            sender.send(points::rejected_point(signal, source, reason, count, now));
        }
    }

    fn command(&mut self, msg: &Inbound) {
        let now = self.clock.now();
        let received =
            self.commands
                .receive(&msg.payload, now, &self.core.controller.state().commands);
        for obs in received.observations.iter().cloned() {
            self.core.controller.observe(obs);
        }
        if let Ok(cmd) = &received.outcome {
            if let crate::signal::operator::Order::Act(_) = cmd.order {
                self.evidence.accepted(&cmd.issuer.id, &cmd.jti);
            }
        }
        if received.outcome.is_ok() {
            // Saved before the command acts: once it has had an effect, a restart must
            // neither let it be replayed nor forget it.
            self.save_record();
        }
        // Accepted or not, decide now: an accepted curtail acts in this very step.
        let d = self.step();
        let ack = Ack::new(&received.outcome, d.limit, now);
        let shown = self.acks.push(&ack, received.outcome.as_ref().ok());
        // Every command and refusal; not the heartbeats accepted every few seconds,
        // which say only that the operator is there (the failsafe's concern).
        if shown["act"] != "heartbeat" {
            if let Some(ledger) = &mut self.ledger {
                ledger.record(&crate::ledger::entry::Entry::Command {
                    at: now.to_rfc3339(),
                    ack: shown,
                });
            }
        }
        // The ack shows in the state at once, not a tick later.
        self.republish_acks();
        if let Some(sender) = &self.influx {
            if let Ok(cmd) = &received.outcome {
                if let crate::signal::operator::Order::Act(action) = &cmd.order {
                    sender.send(points::operator_command_point(action, cmd.until, true, now));
                }
            }
        }
        if let Err(r) = &received.outcome {
            self.metrics.reject(r.reason.as_str());
            tracing::warn!(reason = r.reason.as_str(), jti = ?r.jti, "Refused an operator command");
        }
        let _ = self.client.try_publish(
            self.topics.cmd_ack(),
            QoS::AtLeastOnce,
            false,
            ack.to_json(),
        );
    }

    fn save_record(&self) {
        let Some(file) = &self.replay_file else {
            return;
        };
        if let Err(error) = file.save(&self.commands.record(&self.core.controller.state().commands))
        {
            // The command is still obeyed: refusing a curtailment because a disk is full
            // would hurt the grid more than what a restart could then forget.
            self.metrics.replay_cache_error();
            tracing::error!(%error, "Could not save the operator record; after a restart, commands accepted since could be replayed until they expire, and commands in force since would be forgotten");
        }
    }

    fn step(&mut self) -> Decision {
        let now = self.clock.now();
        if let Some(obs) = self.commands.tick(now) {
            tracing::warn!("Operator heartbeat failsafe engaged: no heartbeat within the timeout");
            self.core.controller.observe(obs);
        }
        for d in self.reject_log.due(now) {
            let signal = self.signals.signal(&d.source);
            self.refusals(signal, &d.source, d.reason, d.count, d.over, &d.latest);
        }
        // One look at each load: what it is counted as drawing is what the status shows.
        let loads = self.load_statuses();
        let readings: Vec<Option<Reading<Watts>>> = loads.iter().map(LoadStatus::reading).collect();
        let d = self.core.step(now, &readings);
        self.counters.steps.fetch_add(1, Ordering::Relaxed);
        self.metrics.decision(&d);
        self.metrics.state(self.core.controller.state());
        self.metrics.loads(&self.names, &d, &loads);
        let hashing = self.hashing_reports();
        self.metrics.hashing(&self.names, &hashing);
        // One look at every miner per step: metrics, InfluxDB and the snapshot share it.
        let fleet = self.fleet_statuses();
        self.metrics.fleet(&fleet);
        if let Some(sender) = &self.influx {
            if self
                .fleet_points_at
                .is_none_or(|t| now.since(t) >= FLEET_POINTS_EVERY)
                && !fleet.is_empty()
            {
                self.fleet_points_at = Some(now);
                sender.send_all(points::fleet_points(&fleet, now));
            }
            sender.send_all(points::signal_points(self.core.controller.state(), now));
            sender.send(points::decision_point(&d));
            sender.send_all(points::load_points(&self.names, &d, &loads));
            sender.send_all(points::hashing_points(&self.names, &hashing, now));
        }
        // What the loads did since the last step, read before the snapshot takes them.
        let work = self
            .ledger
            .is_some()
            .then(|| self.work.since(now, &hashing, &fleet));
        self.publish(d.clone(), now, loads.clone(), hashing, fleet);
        // After the loads have their targets: the evidence of a shed must not delay it.
        // A record opened here shows in the next step's snapshot.
        let state = self.core.controller.state();
        self.evidence.decided(&d, state, &loads, &self.meters);
        self.ledger_events();
        if let (Some(ledger), Some(work)) = (&mut self.ledger, work) {
            ledger.after_step(now, self.core.controller.state(), work);
        }
        d
    }

    /// The frequency-response evidence records closed since the last look, into the
    /// ledger.
    fn ledger_events(&mut self) {
        let closed = self.evidence.take_closed();
        if let Some(ledger) = &mut self.ledger {
            for record in closed {
                let at = record
                    .closed
                    .map_or(record.trigger.at, |c| c.at)
                    .to_rfc3339();
                ledger.record(&crate::ledger::entry::Entry::FrequencyEvent {
                    at,
                    evidence: record.state_json(),
                });
            }
        }
    }

    /// What each load's driver reports now, in config order.
    fn load_statuses(&self) -> Vec<LoadStatus> {
        self.meters.iter().map(Meter::status).collect()
    }

    /// Every ASIC miner's status now, group by group.
    fn fleet_statuses(&self) -> Vec<MinerStatus> {
        self.meters
            .iter()
            .filter_map(Meter::miners)
            .flatten()
            .collect()
    }

    /// What each hashing load reports now (`None` for the others).
    fn hashing_reports(&self) -> Vec<Option<HashingReport>> {
        self.meters.iter().map(Meter::hashing).collect()
    }

    /// Publishes a decision with the load statuses it was decided on.
    fn publish(
        &self,
        decision: Decision,
        now: Timestamp,
        loads: Vec<LoadStatus>,
        hashing: Vec<Option<HashingReport>>,
        fleet: Vec<MinerStatus>,
    ) {
        self.snapshots.send_replace(Arc::new(Snapshot {
            at: now,
            decision,
            state: self.core.controller.state().clone(),
            loads,
            hashing,
            fleet,
            events: self.evidence.shown(),
            ledger: self.ledger.as_ref().map(|l| l.status()),
            acks: self.acks.shown(),
        }));
    }

    /// The latest snapshot again with the acks as they are now.
    fn republish_acks(&self) {
        let acks = self.acks.shown();
        self.snapshots.send_modify(|s| {
            let mut next = (**s).clone();
            next.acks = acks;
            *s = Arc::new(next);
        });
    }
}
