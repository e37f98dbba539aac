//! The fleet at run time: one task per miner (read it, send what its [`Control`] asks,
//! book the answers), the groups the policy drives as loads ([`FleetGroup`]: the
//! actuator seam's [`SetPower`] and [`ReadPower`]), and a rebalancer that re-assigns a
//! group's target whenever a miner leaves or rejoins the capacity.
//!
//! Nothing here waits on a miner while holding a lock, and the controller never waits on
//! a miner: a group's `set` hands out goals and returns once every miner acknowledged
//! its command (or left the capacity); confirmation comes from the read-backs.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::{watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::assign::{assign, Member, Model};
use super::client::{self, AsicMiner, Identity};
use super::control::{Command, CommandRecord, Control, Goal, MinerState, Timings};
use super::relay::Relay;
use crate::actuator::{ActuatorError, Commanded, ReadPower, SetPower};
use crate::clock::{Clock, Timestamp};
use crate::decision::LoadTarget;
use crate::state::Reading;
use crate::units::{HashRate, Watts};

/// A fleet task, for the daemon to spawn.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a group's `set` waits for every miner's acknowledgement.
pub const ACK_WITHIN: Duration = Duration::from_secs(15);
/// How long one command or read may take before it counts as a transport failure.
pub const CALL_WITHIN: Duration = Duration::from_secs(10);

/// One miner of the fleet as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct MinerSpec {
    pub address: IpAddr,
    pub password: Option<String>,
    /// The model it is grouped under when it cannot be found at start.
    pub model: Option<String>,
}

/// A group of one model's miners, driven by the policy as one load.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    pub model: Model,
    /// Indices into the fleet's miners.
    pub members: Vec<usize>,
}

struct FleetMiner {
    spec: MinerSpec,
    client: Mutex<Option<AsicMiner>>,
    control: Mutex<Control>,
    /// Wakes the miner's task: a new goal.
    wake: Notify,
}

struct Group {
    spec: GroupSpec,
    target: Mutex<Option<LoadTarget>>,
}

struct Inner {
    miners: Vec<FleetMiner>,
    /// The PDU relay for hard cuts, where one is configured.
    relay: Option<Arc<dyn Relay>>,
    groups: Vec<Group>,
    clock: Arc<dyn Clock>,
    /// Bounds the calls in flight to the whole fleet.
    permits: Semaphore,
    /// Bumped after every acknowledgement and read-back.
    progress: watch::Sender<u64>,
}

/// A poisoned lock still holds consistent bookkeeping (every update is a series of
/// assignments that cannot panic half-way in a way that matters), so it is used.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One miner's status, as the state document and `fleet status` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinerStatus {
    pub address: IpAddr,
    pub group: String,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub state: MinerState,
    pub power_w: Option<f64>,
    pub hashrate_ths: Option<f64>,
    pub limit_w: Option<f64>,
    /// What it is asked for: mining or not, and at what limit.
    pub target: Goal,
    pub last_command: Option<CommandRecord>,
    /// Whether the last command's effect showed in a read-back.
    pub confirmed: Option<bool>,
    /// Its send-to-confirmation time, s.
    pub confirm_latency_s: Option<f64>,
    pub starts_today: u32,
    /// Learned from its read-backs: resume to hashing, hashing to full power, s; and the
    /// power it draws over its limit.
    pub wake_s: Option<f64>,
    pub ramp_s: Option<f64>,
    pub power_per_limit: Option<f64>,
    /// What it may draw while out of the capacity, W.
    pub uncontrolled_w: f64,
    pub read_at: Option<Timestamp>,
    pub failures: u64,
}

/// The fleet: its miners and groups, and the tasks that drive them.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

impl Fleet {
    /// A fleet of `miners` (found or not: `found[i]` is miner `i`'s client) in `groups`.
    pub fn new(
        miners: Vec<(MinerSpec, Option<AsicMiner>, Watts)>,
        groups: Vec<GroupSpec>,
        timings: Timings,
        concurrency: usize,
        relay: Option<Arc<dyn Relay>>,
        clock: Arc<dyn Clock>,
    ) -> Fleet {
        let now = clock.now();
        let miners = miners
            .into_iter()
            .map(|(spec, found, rated)| {
                let mut control = Control::new(timings, rated, relay.is_some());
                if let Some(m) = &found {
                    let id = &m.identity;
                    control.observed(super::control::Observed {
                        at: now,
                        mining: id.mining,
                        power: id.power,
                        hashrate: id.hashrate,
                        limit: id.limit,
                    });
                }
                FleetMiner {
                    spec,
                    client: Mutex::new(found),
                    control: Mutex::new(control),
                    wake: Notify::new(),
                }
            })
            .collect();
        let (progress, _) = watch::channel(0);
        Fleet {
            inner: Arc::new(Inner {
                miners,
                relay,
                groups: groups
                    .into_iter()
                    .map(|spec| Group {
                        spec,
                        target: Mutex::new(None),
                    })
                    .collect(),
                clock,
                permits: Semaphore::new(concurrency.max(1)),
                progress,
            }),
        }
    }

    /// The load driving group `g`.
    pub fn group(&self, g: usize) -> FleetGroup {
        FleetGroup {
            inner: self.inner.clone(),
            g,
            progress: self.inner.progress.subscribe(),
        }
    }

    pub fn groups(&self) -> usize {
        self.inner.groups.len()
    }

    /// The fleet's tasks: one per miner and the rebalancer. Each ends at `shutdown`.
    pub fn tasks(&self, shutdown: CancellationToken) -> Vec<BoxFuture<'static, ()>> {
        let mut out: Vec<BoxFuture<'static, ()>> = (0..self.inner.miners.len())
            .map(|i| {
                let inner = self.inner.clone();
                let stop = shutdown.clone();
                Box::pin(async move { inner.drive(i, stop).await }) as BoxFuture<'static, ()>
            })
            .collect();
        let inner = self.inner.clone();
        out.push(Box::pin(async move { inner.rebalance(shutdown).await }));
        out
    }

    /// Every miner's status in group `g` (all groups: `None`).
    pub fn statuses(&self, g: Option<usize>) -> Vec<MinerStatus> {
        let now = self.inner.clock.now();
        self.inner
            .groups
            .iter()
            .enumerate()
            .filter(|(i, _)| g.is_none_or(|g| g == *i))
            .flat_map(|(_, group)| {
                group
                    .spec
                    .members
                    .iter()
                    .map(|&m| self.inner.status(m, &group.spec.name, now))
            })
            .collect()
    }

    /// Every miner's commands since `since`, with the miner's address.
    pub fn commands_since(&self, g: usize, since: Timestamp) -> Vec<(IpAddr, CommandRecord)> {
        let Some(group) = self.inner.groups.get(g) else {
            return Vec::new();
        };
        group
            .spec
            .members
            .iter()
            .flat_map(|&m| {
                let miner = &self.inner.miners[m];
                let c = lock(&miner.control);
                c.commands()
                    .filter(|r| r.sent >= since)
                    .map(|r| (miner.spec.address, r.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Inner {
    fn status(&self, m: usize, group: &str, now: Timestamp) -> MinerStatus {
        let miner = &self.miners[m];
        let id: Option<Identity> = lock(&miner.client).as_ref().map(|c| c.identity.clone());
        let c = lock(&miner.control);
        let last = c.last().copied();
        let cmd = c.last_command().cloned();
        MinerStatus {
            address: miner.spec.address,
            group: group.to_owned(),
            model: id
                .as_ref()
                .map(|i| i.model.clone())
                .or_else(|| miner.spec.model.clone()),
            firmware: id.as_ref().map(|i| i.firmware.clone()),
            state: c.state(now),
            power_w: last.and_then(|o| o.power).map(|w| w.0),
            hashrate_ths: last.and_then(|o| o.hashrate).map(|h: HashRate| h.0 / 1e12),
            limit_w: last.and_then(|o| o.limit).map(|w| w.0),
            target: c.goal(),
            confirmed: cmd.as_ref().map(|r| r.confirmed.is_some()),
            confirm_latency_s: cmd
                .as_ref()
                .and_then(|r| r.latency())
                .map(|d| d.as_secs_f64()),
            last_command: cmd,
            starts_today: c.starts_on(now.day()),
            wake_s: c.learned().wake.map(|d| d.as_secs_f64()),
            ramp_s: c.learned().ramp.map(|d| d.as_secs_f64()),
            power_per_limit: c.learned().power_per_limit,
            uncontrolled_w: c.uncontrolled(now).0,
            read_at: last.map(|o| o.at),
            failures: c.failures,
        }
    }

    fn bump(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Re-assigns group `g`'s target to its miners; wakes those whose goal changed.
    fn apply(&self, g: usize) -> Watts {
        let group = &self.groups[g];
        let Some(target) = *lock(&group.target) else {
            return Watts::ZERO;
        };
        let now = self.clock.now();
        let members: Vec<Member> = group
            .spec
            .members
            .iter()
            .map(|&m| {
                let c = lock(&self.miners[m].control);
                Member {
                    excluded: c.excluded(now),
                    uncontrolled: c.uncontrolled(now),
                    mining: c.goal().mining,
                    since: c.goal_since(),
                    starts_today: c.starts_on(now.day()),
                    power_per_limit: c.learned().power_per_limit,
                }
            })
            .collect();
        let a = assign(&group.spec.model, target, &members, now);
        for (&m, goal) in group.spec.members.iter().zip(a.goals) {
            let miner = &self.miners[m];
            let changed = {
                let mut c = lock(&miner.control);
                let before = c.goal();
                c.set_goal(goal, now);
                before != goal
            };
            if changed {
                miner.wake.notify_one();
            }
        }
        a.over
    }

    /// Whether every miner of group `g` has acknowledged what it was told: `Ok(true)`
    /// done, `Ok(false)` still waiting, `Err` a failure that makes the group's write
    /// fail.
    fn acknowledged(&self, g: usize, over: Watts) -> Result<bool, ActuatorError> {
        if over > Watts::ZERO {
            return Err(ActuatorError::Refused(format!(
                "{over} drawn by miners that do not comply is over the group's target"
            )));
        }
        let now = self.clock.now();
        let mut done = true;
        for &m in &self.groups[g].spec.members {
            let c = lock(&self.miners[m].control);
            if c.excluded(now) {
                continue;
            }
            done &= c.goal_acknowledged(now);
        }
        Ok(done)
    }

    /// What group `g` draws by its read-backs: the sum of its miners' last reading
    /// (and, for those out of the capacity, what they may draw), stamped with the
    /// oldest reading of a miner in the capacity.
    fn reading(&self, g: usize) -> Option<Reading<Watts>> {
        let now = self.clock.now();
        let mut total = Watts::ZERO;
        let mut oldest: Option<Timestamp> = None;
        for &m in &self.groups[g].spec.members {
            let c = lock(&self.miners[m].control);
            if c.excluded(now) {
                total += c.uncontrolled(now);
                continue;
            }
            total += c.power().unwrap_or(Watts::ZERO);
            if let Some(o) = c.last() {
                oldest = Some(oldest.map_or(o.at, |t| t.min(o.at)));
            }
        }
        Some(Reading {
            value: total,
            at: oldest.unwrap_or(now),
        })
    }

    /// Miner `i`'s task: read it on its schedule, send what its control asks, until
    /// `stop`.
    async fn drive(self: Arc<Self>, i: usize, stop: CancellationToken) {
        let miner = &self.miners[i];
        // Spread the fleet's polls over the poll period rather than in one burst.
        let poll = lock(&miner.control).timings().poll;
        let n = self.miners.len().max(1) as u32;
        let offset = poll / n * (i as u32);
        let mut last_read = self.clock.now() - poll + offset;
        loop {
            let now = self.clock.now();
            if lock(&miner.client).is_none() {
                // Not found at start: look again now and then.
                if now >= last_read + poll {
                    last_read = now;
                    self.find(i).await;
                }
            }
            let client = lock(&miner.client).clone();
            // Nothing is sent to a miner not found yet (it is unknown, out of the
            // capacity, counted at its rating); what it is asked waits for it.
            let command = if client.is_some() {
                let mut c = lock(&miner.control);
                c.readmit(now);
                c.tick(now);
                let cmd = c.next_command(now);
                if let Some(cmd) = cmd {
                    c.sent(cmd, now);
                }
                cmd
            } else {
                None
            };
            if let (Some(cmd), Some(client)) = (command, &client) {
                let result = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = self.call(client, cmd) => r,
                };
                let at = self.clock.now();
                if let Err(e) = &result {
                    tracing::warn!(miner = %miner.spec.address, command = cmd.as_str(), error = %e, "Miner command failed");
                }
                lock(&miner.control).acked(result, at);
                // The first verification read comes one `verify_every` after the answer.
                last_read = at;
                self.bump();
                continue;
            }
            let next_read = lock(&miner.control).next_read(last_read);
            if let Some(client) = &client {
                if now >= next_read {
                    let read = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = self.read(client) => r,
                    };
                    last_read = self.clock.now();
                    match read {
                        Ok(o) => lock(&miner.control).observed(o),
                        Err(e) => {
                            tracing::debug!(miner = %miner.spec.address, error = %e, "Miner read-back failed");
                            lock(&miner.control).read_failed(last_read);
                        }
                    }
                    self.bump();
                    continue;
                }
            }
            let due = {
                let c = lock(&miner.control);
                let read = c.next_read(last_read);
                c.next_due().map_or(read, |d| d.min(read))
            };
            let wait = due.since(self.clock.now());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = miner.wake.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
            }
        }
    }

    async fn call(&self, client: &AsicMiner, cmd: Command) -> Result<(), ActuatorError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ActuatorError::Stopped)?;
        let work = async {
            match cmd {
                Command::Pause => client.pause().await,
                Command::Resume => client.resume().await,
                Command::SetLimit(w) => client.set_limit(w).await,
                Command::HardCut | Command::Restore => match &self.relay {
                    Some(r) => r.switch(client.address(), cmd == Command::Restore).await,
                    None => Err(ActuatorError::Refused("no relay configured".into())),
                },
            }
        };
        tokio::time::timeout(CALL_WITHIN, work)
            .await
            .unwrap_or_else(|_| {
                Err(ActuatorError::Transport(format!(
                    "{}: {} not answered within {CALL_WITHIN:?}",
                    client.address(),
                    cmd.as_str()
                )))
            })
    }

    async fn read(&self, client: &AsicMiner) -> Result<super::control::Observed, ActuatorError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ActuatorError::Stopped)?;
        let clock = self.clock.clone();
        tokio::time::timeout(CALL_WITHIN, client.read(move || clock.now()))
            .await
            .unwrap_or_else(|_| {
                Err(ActuatorError::Transport(format!(
                    "{}: read-back not answered within {CALL_WITHIN:?}",
                    client.address()
                )))
            })
    }

    /// Looks for a miner that was not found at start.
    async fn find(&self, i: usize) {
        let miner = &self.miners[i];
        let factory = client::factory(CALL_WITHIN);
        let found = {
            let Ok(_permit) = self.permits.acquire().await else {
                return;
            };
            client::discover(&factory, miner.spec.address, miner.spec.password.as_deref()).await
        };
        if let Ok(Some(m)) = found {
            tracing::info!(miner = %miner.spec.address, model = m.identity.model, "Miner found");
            *lock(&miner.client) = Some(m);
        }
    }

    /// Re-assigns each group's target whenever a miner's standing changes.
    async fn rebalance(self: Arc<Self>, stop: CancellationToken) {
        let mut rx = self.progress.subscribe();
        // Per miner: out of the capacity, and what it may draw meanwhile (a stuck miner
        // that is then paused frees its share for the others).
        // (The draw in steps of 100 W: a meter's ripple must not re-assign the group.)
        let mut standing: Vec<(bool, i64)> = vec![(false, 0); self.miners.len()];
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = rx.changed() => if r.is_err() { return },
            }
            let now = self.clock.now();
            for (g, group) in self.groups.iter().enumerate() {
                let mut changed = false;
                for &m in &group.spec.members {
                    let c = lock(&self.miners[m].control);
                    let now_standing = (
                        c.excluded(now),
                        (c.uncontrolled(now).0 / 100.0).round() as i64,
                    );
                    changed |= standing[m] != now_standing;
                    standing[m] = now_standing;
                }
                if changed {
                    let over = self.apply(g);
                    if over > Watts::ZERO {
                        tracing::error!(group = group.spec.name, %over, "Miners that do not comply draw more than the group's target");
                    }
                }
            }
        }
    }
}

/// One group of the fleet as a load.
pub struct FleetGroup {
    inner: Arc<Inner>,
    g: usize,
    progress: watch::Receiver<u64>,
}

impl FleetGroup {
    pub fn name(&self) -> &str {
        &self.inner.groups[self.g].spec.name
    }
}

impl SetPower for FleetGroup {
    async fn set(&mut self, target: LoadTarget) -> Result<Commanded, ActuatorError> {
        *lock(&self.inner.groups[self.g].target) = Some(target);
        let at = self.inner.clock.now();
        let over = self.inner.apply(self.g);
        let mut rx = self.inner.progress.subscribe();
        let deadline = tokio::time::Instant::now() + ACK_WITHIN;
        loop {
            if self.inner.acknowledged(self.g, over)? {
                return Ok(Commanded { target, at });
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Err(ActuatorError::Stopped) },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ActuatorError::NotConfirmed {
                        within: ACK_WITHIN,
                        what: format!("not every miner of {} acknowledged", self.name()),
                    });
                }
            }
        }
    }
}

impl ReadPower for FleetGroup {
    async fn read(&mut self) -> Result<Reading<Watts>, ActuatorError> {
        if self.progress.changed().await.is_err() {
            return Err(ActuatorError::Stopped);
        }
        self.progress.borrow_and_update();
        self.inner
            .reading(self.g)
            .ok_or_else(|| ActuatorError::BadReading("no miner read yet".into()))
    }
}
