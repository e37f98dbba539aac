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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actuator::hasher::{HashingReport, PoolActivity};
use crate::actuator::status::LoadStatus;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::controller::Controller;
use crate::decision::{Decision, LoadTarget};
use crate::mqtt::config::Broker;
use crate::mqtt::{broker::EmbeddedBroker, Inbound, MqttConnection, MqttError, MqttStats, Topics};
use crate::signal::modbus::{ModbusDevice, ModbusSource};
use crate::signal::mqtt::{Carries, MqttSignals, RejectReason, SignalStats};
use crate::signal::operator::{Ack, OperatorCommands, OperatorConfig, ReplayFile, HARD_CEILING};
use crate::signal::plausible::Plausibility;
use crate::signal::Observation;
use crate::state::{Reading, SiteState};
use crate::telemetry::config::TelemetryConfig;
use crate::telemetry::{metrics::Metrics, metrics::MetricsServer, points, status, TelemetrySender};
use crate::units::{Hashprice, Watts};
use config::LiveConfig;
use loads::Meter;

pub mod config;
mod loads;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    #[error("shutdown took longer than {0:?}")]
    ShutdownTimeout(Duration),
}

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
}

impl Running {
    /// Stops in order and waits, at most `deadline`.
    pub async fn stop(self, deadline: Duration) -> Result<(), RuntimeError> {
        self.shutdown.cancel();
        self.tracker.close();
        let t = tokio::time::timeout(deadline, self.tracker.wait()).await;
        // Only now the connection goes: the final state and the loads' safe state are out.
        self.transport.cancel();
        self.transport_tracker.close();
        let u = tokio::time::timeout(deadline, self.transport_tracker.wait()).await;
        t.and(u)
            .map_err(|_| RuntimeError::ShutdownTimeout(deadline))
    }
}

/// Everything a site config describes.
pub struct Site {
    pub config: LiveConfig,
    pub operators: OperatorConfig,
    pub modbus: Vec<ModbusDevice>,
    pub telemetry: TelemetryConfig,
}

/// Starts the daemon.
pub async fn start(site: Site) -> Result<Running, RuntimeError> {
    let Site {
        config,
        operators,
        modbus,
        telemetry,
    } = site;
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
    {
        let t = transport.clone();
        transport_tracker.spawn(async move {
            if let Err(error) = connection.run(t).await {
                tracing::error!(%error, "MQTT connection task failed");
            }
        });
    }

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let policy = config.policy();
    let mut controller = Controller::new(policy);
    // No operators, no accepted commands: nothing to remember across restarts.
    let replay_file = (!operators.operators.is_empty())
        .then(|| ReplayFile::new(operators.replay_cache_path(&config.site)));
    let mut commands =
        OperatorCommands::new(config.site.clone(), operators).with_max_power(config.ratings.mining);
    // Before the first decision: the commands in force and the failsafe as a previous
    // process left them, so a restart never lifts a cap.
    if let Some(file) = &replay_file {
        restore_record(&mut commands, &mut controller, file, &metrics, clock.now());
    }
    if let Some(obs) = commands.tick(clock.now()) {
        tracing::warn!(
            "Operator heartbeat failsafe engaged at start: no heartbeat within the timeout"
        );
        controller.observe(obs);
    }
    let first = Arc::new(Snapshot {
        at: clock.now(),
        decision: controller.policy.decide(&controller.state, clock.now()),
        state: controller.state.clone(),
        loads: config
            .drivers
            .iter()
            .zip(&config.loads)
            .map(|(driver, spec)| loads::initial_status(spec, driver))
            .collect(),
        hashing: vec![None; config.loads.len()],
    });
    let (snap_tx, snap_rx) = watch::channel(first);
    let counters = Arc::new(Counters::default());
    let operator_counters = commands.counters();

    // The loads.
    let wiring = loads::Wiring {
        snapshots: &snap_rx,
        mqtt: &config.mqtt,
        clock: &clock,
        tracker: &tracker,
        shutdown: &shutdown,
    };
    let meters: Vec<Meter> = config
        .drivers
        .iter()
        .zip(&config.loads)
        .enumerate()
        .map(|(i, (driver, spec))| loads::start(driver.clone(), i, spec, &wiring))
        .collect::<Result<_, _>>()?;
    let hashers = meters.iter().filter_map(Meter::activity).collect();

    // Status and Home Assistant discovery.
    {
        let client = client.clone();
        let mut rx = snap_rx.clone();
        let loads = config.loads.clone();
        let topics = topics.clone();
        let ha = config.ha_discovery;
        tracker.spawn(async move {
            if ha {
                for (topic, body) in status::ha_discovery(&topics, &loads) {
                    let _ = client.publish(topic, QoS::AtLeastOnce, true, body).await;
                }
            }
            loop {
                let snap = rx.borrow_and_update().clone();
                let body = status::state_json(
                    &snap.state,
                    &snap.decision,
                    &loads,
                    &snap.loads,
                    &snap.hashing,
                    snap.at,
                )
                .to_string();
                let _ = client.try_publish(topics.state(), QoS::AtMostOnce, true, body);
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    // Telemetry: InfluxDB (flushed after the loads are safe, with the transport) and the
    // Prometheus endpoint.
    let mut influx: Option<TelemetrySender> = None;
    if let Some(cfg) = telemetry.influx {
        match crate::telemetry::writer(cfg, metrics.clone()) {
            Ok((sender, writer)) => {
                influx = Some(sender);
                let t = transport.clone();
                transport_tracker.spawn(async move {
                    if let Err(error) = writer.run(t).await {
                        tracing::error!(%error, "InfluxDB writer failed");
                    }
                });
            }
            Err(error) => tracing::error!(%error, "InfluxDB writer not started"),
        }
    }
    let mut metrics_addr = None;
    if let Some(m) = telemetry.metrics {
        match MetricsServer::bind(m.listen, metrics.clone()).await {
            Ok(server) => {
                metrics_addr = server.local_addr().ok();
                let t = shutdown.clone();
                tracker.spawn(async move {
                    if let Err(error) = server.run(t).await {
                        tracing::error!(%error, "Metrics endpoint failed");
                    }
                });
            }
            Err(error) => tracing::error!(%error, "Metrics endpoint not started"),
        }
    }

    // Modbus devices: each polls on its own task and reconnects inside.
    let (obs_tx, obs_rx) = mpsc::channel::<Observation>(1024);
    for device in modbus {
        let name = device.name.clone();
        let source = ModbusSource::new(device);
        let (tx, shutdown) = (obs_tx.clone(), shutdown.clone());
        tracker.spawn(async move {
            if let Err(error) = source.run(tx, shutdown).await {
                tracing::error!(%error, device = name, "Modbus device cannot serve its role; its signals will go stale");
            }
        });
    }
    drop(obs_tx);

    // The controller.
    {
        let shutdown = shutdown.clone();
        let counters = counters.clone();
        let client = client.clone();
        let tick = config.tick;
        let max_ages = signals.max_ages();
        let hashprice = config.hashprice;
        let names = config.loads.iter().map(|l| l.name.clone()).collect();
        let live = LiveLoop {
            controller,
            plausible: Plausibility::new(config.ratings),
            warned: [None; RejectReason::ALL.len()],
            hashprice,
            metrics: metrics.clone(),
            influx,
            names,
            signals,
            commands,
            replay_file,
            topics,
            client,
            clock,
            meters,
            snapshots: snap_tx,
            counters,
            max_ages,
        };
        tracker.spawn(async move { live.run(tick, inbound_rx, obs_rx, shutdown).await });
    }
    Ok(Running {
        metrics,
        metrics_addr,
        snapshots: snap_rx,
        counters,
        operator: Some(operator_counters),
        mqtt: mqtt_stats,
        hashers,
        shutdown,
        transport,
        tracker,
        transport_tracker,
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
            controller.state.commands = in_force;
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

/// At most one warning per this long for refused signal values.
const WARN_EVERY: Duration = Duration::from_secs(10);

struct LiveLoop {
    controller: Controller,
    /// What every MQTT and Modbus value must pass before the state sees it.
    plausible: Plausibility,
    /// When a signal value refused for each reason was last logged as a warning.
    warned: [Option<Timestamp>; RejectReason::ALL.len()],
    /// A configured constant: observed afresh every step, so it never ages.
    hashprice: Option<Hashprice>,
    metrics: Metrics,
    influx: Option<TelemetrySender>,
    names: Vec<String>,
    signals: MqttSignals,
    commands: OperatorCommands,
    /// Where accepted `jti`s are kept across restarts; `None` without operators.
    replay_file: Option<ReplayFile>,
    topics: Topics,
    client: AsyncClient,
    clock: Arc<dyn Clock>,
    /// One per load, in config order.
    meters: Vec<Meter>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    counters: Arc<Counters>,
    max_ages: Vec<(Carries, Duration)>,
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
    ) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => { self.step(); }
                Some(obs) = observations.recv() => {
                    if self.admit(&obs, "modbus") {
                        self.metrics.observation("modbus");
                        let urgent = matches!(obs, Observation::Frequency { .. });
                        self.controller.observe(obs);
                        if urgent {
                            self.step();
                        }
                    }
                }
                msg = inbound.recv() => {
                    let Some(msg) = msg else { break };
                    if msg.topic == self.topics.cmd() {
                        self.command(&msg);
                    } else {
                        match self.signals.parse(&msg) {
                            Ok(obs) if !self.admit(&obs, &msg.topic) => {}
                            Ok(obs) => {
                                self.counters.signals.accepted.fetch_add(1, Ordering::Relaxed);
                                self.metrics.observation("mqtt");
                                let urgent = matches!(obs, Observation::Frequency { .. });
                                self.controller.observe(obs);
                                if urgent {
                                    self.step();
                                }
                            }
                            Err(r) => self.rejected(r.reason, &r.topic, &r.detail),
                        }
                    }
                }
            }
        }
        // Safe state: every load off, published as the final decision.
        let now = self.clock.now();
        let mut d = self.controller.policy.decide(&self.controller.state, now);
        d.loads.iter_mut().for_each(|t| *t = LoadTarget::OFF);
        self.controller
            .state
            .record(&d, &self.controller.policy.wear);
        let (loads, hashing) = (self.load_statuses(), self.hashing_reports());
        self.publish(d, now, loads, hashing);
        tracing::info!("Loads set to the safe state");
    }

    /// Whether `obs` (from `source`: a topic, or `modbus`) is plausible at this site. If
    /// not, it is counted and logged, and the quantity's last reading is dropped: a source
    /// that reports what cannot be is broken, so its signal goes stale now, and the
    /// policy's staleness rule applies rather than an old value.
    fn admit(&mut self, obs: &Observation, source: &str) -> bool {
        let Err(detail) = self.plausible.check(obs, self.clock.now()) else {
            return true;
        };
        self.rejected(RejectReason::OutOfRange, source, &detail);
        self.controller.state.forget(obs);
        false
    }

    /// Counts and logs a value refused for `reason` from `source` (a topic, or `modbus`).
    /// One warning per reason per `WARN_EVERY` at most, the rest at debug: a flood of bad
    /// values must not flood the log (the counters have them all).
    fn rejected(&mut self, reason: RejectReason, source: &str, detail: &str) {
        self.counters.signals.reject(reason);
        self.metrics.reject(reason.as_str());
        let now = self.clock.now();
        let warned = &mut self.warned[reason as usize];
        let reason = reason.as_str();
        if warned.is_none_or(|t| now.since(t) >= WARN_EVERY) {
            *warned = Some(now);
            tracing::warn!(
                source,
                reason,
                detail,
                "Refused a signal value; a signal with no usable value goes stale"
            );
        } else {
            tracing::debug!(source, reason, detail, "Refused a signal value");
        }
    }

    fn command(&mut self, msg: &Inbound) {
        let now = self.clock.now();
        let received = self
            .commands
            .receive(&msg.payload, now, &self.controller.state.commands);
        for obs in received.observations.iter().cloned() {
            self.controller.observe(obs);
        }
        if received.outcome.is_ok() {
            // Saved before the command acts: once it has had an effect, a restart must
            // neither let it be replayed nor forget it.
            self.save_record();
        }
        // Accepted or not, decide now: an accepted curtail acts in this very step.
        let d = self.step();
        let ack = Ack::new(&received.outcome, d.limit, now);
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
        if let Err(error) = file.save(&self.commands.record(&self.controller.state.commands)) {
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
            self.controller.observe(obs);
        }
        self.expire(now);
        if let Some(h) = self.hashprice {
            self.controller
                .observe(Observation::Hashprice { value: h, at: now });
        }
        let readings = self.readings();
        let loads = self.load_statuses();
        self.controller.observe(Observation::Power {
            quantity: crate::signal::Quantity::MiningPower,
            value: readings.iter().flatten().map(|r| r.value).sum(),
            at: now,
        });
        let d = self.controller.step(now);
        self.counters.steps.fetch_add(1, Ordering::Relaxed);
        self.metrics.decision(&d);
        self.metrics.state(&self.controller.state);
        self.metrics.loads(&self.names, &d, &loads);
        let hashing = self.hashing_reports();
        self.metrics.hashing(&self.names, &hashing);
        if let Some(sender) = &self.influx {
            sender.send_all(points::signal_points(&self.controller.state, now));
            sender.send(points::decision_point(&d));
            sender.send_all(points::load_points(&self.names, &d, &loads));
            sender.send_all(points::hashing_points(&self.names, &hashing, now));
        }
        self.publish(d.clone(), now, loads, hashing);
        d
    }

    /// What each load is counted as drawing now (`Meter::reading`), in config order.
    fn readings(&self) -> Vec<Option<Reading<Watts>>> {
        self.meters.iter().map(Meter::reading).collect()
    }

    /// What each load's driver reports now, in config order.
    fn load_statuses(&self) -> Vec<LoadStatus> {
        self.meters.iter().map(Meter::status).collect()
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
    ) {
        self.snapshots.send_replace(Arc::new(Snapshot {
            at: now,
            decision,
            state: self.controller.state.clone(),
            loads,
            hashing,
        }));
    }

    /// Per-signal maximum ages: an older reading is dropped, so the policy sees it stale.
    fn expire(&mut self, now: Timestamp) {
        let s = &mut self.controller.state;
        for &(carries, max) in &self.max_ages {
            let too_old = |at: Timestamp| now.since(at) > max;
            match carries {
                Carries::Power(q) => {
                    let Some(slot) = s.power_slot(q) else {
                        continue;
                    };
                    if slot.is_some_and(|r| too_old(r.at)) {
                        *slot = None;
                    }
                }
                Carries::Frequency => {
                    if s.frequency.is_some_and(|r| too_old(r.at)) {
                        s.frequency = None;
                    }
                }
                Carries::Price => {
                    if s.price.is_some_and(|r| too_old(r.at)) {
                        s.price = None;
                    }
                }
                Carries::Hashprice => {
                    if s.hashprice.is_some_and(|r| too_old(r.at)) {
                        s.hashprice = None;
                    }
                }
                Carries::PriceSchedule => {}
            }
        }
    }
}
