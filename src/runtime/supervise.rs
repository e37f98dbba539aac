//! Supervision of the daemon's tasks, and the systemd notifications.
//!
//! Every long-running task is spawned through [`Supervisor::spawn`] under a [`Task`]
//! name. A task that ends, fails or panics while no shutdown was asked is recorded as a
//! [`TaskFailure`]; `Running::failed` hands the first to `gridminer run`, which stops the
//! daemon in order (loads to the safe state, availability `offline`) and exits non-zero,
//! so systemd restarts it. Which ends are fatal is one table, [`Task::critical`].
//!
//! [`Watchdog`] is the systemd side (`Type=notify`, `WatchdogSec=`): `READY=1` once
//! started, `WATCHDOG=1` from the control loop only after it has really stepped (a hung
//! loop stops notifying and is restarted), `STOPPING=1` on the way out. Every
//! notification is a no-op without `NOTIFY_SOCKET`.
//!
//! Must not decide anything about the loads: it only reports; the orderly stop in
//! `Running::stop` is what makes them safe.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A task the daemon runs, by role (and load or device name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    Controller,
    Mqtt,
    Status,
    /// The task that applies the decisions to load `name`.
    Load(String),
    /// The Stratum client feeding load `name`'s embedded pool.
    Stratum(String),
    Influx,
    Metrics,
    Web,
    /// The poller of Modbus device `name`.
    Modbus(String),
}

/// Which ends of a task stop the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Critical {
    /// Any end while no shutdown was asked.
    Always,
    /// Only a panic or a kill: the error the task returns is a designed outcome that the
    /// task has logged, and a restart cannot change it.
    OnPanic,
}

impl Task {
    /// The one table of what each task's end means. A restart costs a few seconds of
    /// control; carrying on with a dead task costs what that task guarded, unseen.
    pub fn critical(&self) -> Critical {
        match self {
            // Nothing decides any more: the loads hold their last target, a curtailment
            // from the grid operator is never applied.
            Task::Controller => Critical::Always,
            // No signals, no operator commands, no setpoints for MQTT loads, and the
            // site still looks online to whoever reads its state. It retries the broker
            // inside for ever, so its end is a bug, never an outage.
            Task::Mqtt => Critical::Always,
            // The retained state would freeze at a stale decision while `online`.
            Task::Status => Critical::Always,
            // The load no longer follows decisions: a curtail would not reach it.
            Task::Load(_) => Critical::Always,
            // It returns an error only when the pool refused us and `retry_refused` is
            // unset: the user chose to give up, the pool has no job, the load draws 0 W
            // (safe). Restarting would retry every `RestartSec` against that choice. A
            // panic is a bug, and the load's hashing would stop unexplained.
            Task::Stratum(_) => Critical::OnPanic,
            // Both retry and count their failures inside (a down InfluxDB is buffered
            // to disk, a failed scrape is logged); they end only by a bug, and then the
            // site runs unwatched, which is how a failure goes unnoticed on an
            // unattended box.
            Task::Influx | Task::Metrics => Critical::Always,
            // A viewer: a dashboard that stopped serving takes nothing from the site's
            // control, and stopping the mining for it would. Its accept errors are
            // retried inside; a panic is a bug.
            Task::Web => Critical::OnPanic,
            // It returns an error only for a device that cannot serve its configured
            // role (no such SunSpec model): a restart cannot fix the config, its signals
            // go stale and the policy's staleness rule (the designed response) applies.
            // A panic is a bug.
            Task::Modbus(_) => Critical::OnPanic,
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::Controller => f.write_str("controller"),
            Task::Mqtt => f.write_str("MQTT connection"),
            Task::Status => f.write_str("status publisher"),
            Task::Load(name) => write!(f, "driver of load `{name}`"),
            Task::Stratum(name) => write!(f, "Stratum client of load `{name}`"),
            Task::Influx => f.write_str("InfluxDB writer"),
            Task::Metrics => f.write_str("metrics endpoint"),
            Task::Web => f.write_str("dashboard"),
            Task::Modbus(name) => write!(f, "Modbus source `{name}`"),
        }
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It returned `Ok`.
    Returned,
    /// It returned this error.
    Failed(String),
    /// It panicked with this message.
    Panicked(String),
    /// It was aborted.
    Killed,
}

/// A task that ended while the daemon depended on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {task} task {how}")]
pub struct TaskFailure {
    pub task: Task,
    pub how: Ended,
}

impl TaskFailure {
    /// How likely this is the cause rather than a consequence, for the one failure the
    /// daemon exits with. A dead controller closes the decision channel, and the loads'
    /// drivers and the status publisher then end too, possibly first: a panic or kill
    /// outranks an error, which outranks a plain end, and on a tie the tasks that feed
    /// the others (controller, MQTT connection) come first.
    fn rank(&self) -> (u8, bool) {
        let how = match self.how {
            Ended::Panicked(_) | Ended::Killed => 2,
            Ended::Failed(_) => 1,
            Ended::Returned => 0,
        };
        (how, matches!(self.task, Task::Controller | Task::Mqtt))
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Returned => f.write_str("ended"),
            Ended::Failed(e) => write!(f, "failed: {e}"),
            Ended::Panicked(m) => write!(f, "panicked: {m}"),
            Ended::Killed => f.write_str("was killed"),
        }
    }
}

/// Spawns the daemon's tasks and records the failure that most likely caused the rest
/// (see `TaskFailure::rank`; the first, on a tie).
#[derive(Clone)]
pub struct Supervisor {
    first: Arc<watch::Sender<Option<TaskFailure>>>,
    /// Cancelled once a shutdown is asked: from then on a task may end.
    asked: CancellationToken,
}

impl Supervisor {
    pub fn new(asked: CancellationToken) -> Supervisor {
        Supervisor {
            first: Arc::new(watch::Sender::new(None)),
            asked,
        }
    }

    /// Spawns `work` as `task` on `tracker` (which then waits for it); returns what
    /// aborts it. Each task runs on a Tokio task of its own, so a panic unwinds it alone
    /// (dropping what it held: the controller's end closes the decision channel, and
    /// every load's driver applies OFF) and is reported here.
    pub fn spawn<F, E>(&self, tracker: &TaskTracker, task: Task, work: F) -> AbortHandle
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let inner = tokio::spawn(work);
        let abort = inner.abort_handle();
        let me = self.clone();
        tracker.spawn(async move {
            let how = match inner.await {
                Ok(Ok(())) => Ended::Returned,
                Ok(Err(e)) => Ended::Failed(e.to_string()),
                Err(e) if e.is_panic() => Ended::Panicked(panic_message(e.into_panic())),
                Err(_) => Ended::Killed,
            };
            me.ended(task, how);
        });
        abort
    }

    fn ended(&self, task: Task, how: Ended) {
        let bug = matches!(how, Ended::Panicked(_) | Ended::Killed);
        // After a shutdown was asked every task is meant to end; a panic still counts,
        // as the safe state may not have been applied by it.
        if self.asked.is_cancelled() && !bug {
            if let Ended::Failed(error) = &how {
                tracing::warn!(%task, %error, "Task failed while stopping");
            }
            return;
        }
        if task.critical() == Critical::OnPanic && !bug {
            tracing::warn!(%task, %how, "Task ended; the daemon carries on without it");
            return;
        }
        let failure = TaskFailure { task, how };
        tracing::error!(%failure, "A task the daemon depends on ended: stopping with the loads in the safe state");
        self.first.send_if_modified(|first| {
            let worse = first.as_ref().is_none_or(|f| failure.rank() > f.rank());
            if worse {
                *first = Some(failure);
            }
            worse
        });
    }

    /// Resolves with the first failure (at once if there has been one); a likelier cause
    /// that follows it replaces it in [`Supervisor::first`].
    pub async fn failed(&self) -> TaskFailure {
        let mut rx = self.first.subscribe();
        loop {
            if let Some(first) = rx.borrow_and_update().clone() {
                return first;
            }
            // `self` holds the sender, so the channel cannot close while this waits.
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// The likeliest cause among the failures so far.
    pub fn first(&self) -> Option<TaskFailure> {
        self.first.borrow().clone()
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// The systemd watchdog, fed by the control loop.
pub(super) struct Watchdog {
    /// `None` without `NOTIFY_SOCKET`: nothing is ever sent.
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Watchdog {
    /// Reads the environment once. Notifies at least four times per `WatchdogSec`
    /// (once a second when systemd set no watchdog but listens). A `tick` so long that
    /// steps could not keep the watchdog fed (over half of `WatchdogSec`) extends the
    /// watchdog to three ticks rather than be restarted between two healthy steps.
    pub(super) fn new(tick: Duration) -> Watchdog {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Watchdog {
                every: None,
                last: None,
            };
        }
        let mut timeout = sd_notify::watchdog_enabled();
        if let Some(t) = timeout.filter(|t| tick * 2 > *t) {
            let longer = tick * 3;
            let usec = u32::try_from(longer.as_micros()).unwrap_or(u32::MAX);
            tracing::warn!(
                watchdog_s = t.as_secs_f64(),
                tick_s = tick.as_secs_f64(),
                "WatchdogSec is shorter than two ticks; extending it to three"
            );
            notify(NotifyState::WatchdogUsec(usec));
            timeout = Some(longer);
        }
        Watchdog {
            every: Some(timeout.map_or(Duration::from_secs(1), |t| t / 4)),
            last: None,
        }
    }

    /// Called after each real step of the control loop.
    pub(super) fn stepped(&mut self) {
        let Some(every) = self.every else { return };
        let now = Instant::now();
        if self.last.is_none_or(|l| now.duration_since(l) >= every) {
            self.last = Some(now);
            notify(NotifyState::Watchdog);
        }
    }
}

/// Tells systemd the daemon is up (`READY=1`).
pub(super) fn notify_ready() {
    notify(NotifyState::Ready);
}

/// Tells systemd the daemon is stopping (`STOPPING=1`).
pub(super) fn notify_stopping() {
    notify(NotifyState::Stopping);
}

fn notify(state: NotifyState<'_>) {
    // Without NOTIFY_SOCKET this sends nothing and succeeds.
    if let Err(error) = sd_notify::notify(&[state]) {
        tracing::warn!(%error, "Could not notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervised() -> (Supervisor, TaskTracker, CancellationToken) {
        let asked = CancellationToken::new();
        (Supervisor::new(asked.clone()), TaskTracker::new(), asked)
    }

    /// Issue 10: a task that panicked was one log line. Now it is the daemon's failure,
    /// by name, and the panic message says why.
    #[tokio::test]
    async fn r10_a_panicking_task_is_the_daemons_failure_by_name() {
        let (s, tracker, _asked) = supervised();
        s.spawn(&tracker, Task::Load("miners".into()), async {
            if true {
                panic!("boom");
            }
            Ok::<(), std::convert::Infallible>(())
        });
        let f = tokio::time::timeout(Duration::from_secs(10), s.failed())
            .await
            .expect("reported");
        assert_eq!(f.task, Task::Load("miners".into()));
        assert_eq!(f.how, Ended::Panicked("boom".into()));
        assert_eq!(
            f.to_string(),
            "the driver of load `miners` task panicked: boom"
        );
    }

    /// What ends a task decides: any end of a critical one, only a panic or a kill of a
    /// Modbus source or a Stratum client (their error is a designed outcome), and
    /// nothing once a shutdown was asked, unless it panicked.
    #[tokio::test]
    async fn r10_which_ends_stop_the_daemon() {
        let err = || async { Err::<(), _>("no such SunSpec model") };
        let (s, tracker, _asked) = supervised();
        s.spawn(&tracker, Task::Modbus("meter".into()), err());
        s.spawn(&tracker, Task::Stratum("cpu".into()), err());
        tracker.close();
        tracker.wait().await;
        assert_eq!(s.first(), None);

        let (s, tracker, _asked) = supervised();
        s.spawn(&tracker, Task::Controller, async { Ok::<(), &str>(()) });
        tracker.close();
        tracker.wait().await;
        assert_eq!(
            s.first().map(|f| f.to_string()),
            Some("the controller task ended".into())
        );

        let (s, tracker, _asked) = supervised();
        let killed = s.spawn(
            &tracker,
            Task::Mqtt,
            std::future::pending::<Result<(), &str>>(),
        );
        killed.abort();
        tracker.close();
        tracker.wait().await;
        assert_eq!(s.first().map(|f| f.how), Some(Ended::Killed));

        let (s, tracker, asked) = supervised();
        asked.cancel();
        s.spawn(&tracker, Task::Controller, async { Ok::<(), &str>(()) });
        s.spawn(&tracker, Task::Influx, err());
        tracker.close();
        tracker.wait().await;
        assert_eq!(s.first(), None, "asked to stop");
    }

    /// A dead controller ends its loads' drivers too, maybe before its own end is seen:
    /// the daemon still exits naming the controller.
    #[tokio::test]
    async fn r10_the_cause_outranks_its_consequences() {
        let (s, tracker, _asked) = supervised();
        s.spawn(&tracker, Task::Load("miners".into()), async {
            Ok::<(), &str>(())
        });
        assert_eq!(s.failed().await.task, Task::Load("miners".into()));
        s.spawn(&tracker, Task::Controller, async {
            if true {
                panic!("boom");
            }
            Ok::<(), &str>(())
        });
        tracker.close();
        tracker.wait().await;
        assert_eq!(s.first().map(|f| f.task), Some(Task::Controller));
    }
}
