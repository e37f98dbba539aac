//! The ledger as the daemon and the simulator write it: the accountant and the
//! checkpoint clock on the caller's side, the log behind a [`Writer`]. The simulator
//! writes inline; the daemon moves the writer to a thread of its own
//! ([`Recorder::in_background`]), so no append or checkpoint fsync ever runs on the
//! control loop (a shed must not wait on a disk). A ledger that cannot be written never
//! stops control: the error is logged, counted and shown, and the entries it could not
//! take are lost (said so), while the loads follow the policy as before.

use std::sync::{mpsc, Arc, Mutex};

use serde::Serialize;

use super::account::{Accountant, Work};
use super::config::LedgerConfig;
use super::entry::{Device, Entry, Start};
use super::log::{Log, Recovered};
use super::note::SiteKey;
use super::LedgerError;
use crate::clock::Timestamp;
use crate::state::SiteState;

/// What the state shows of the ledger.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct LedgerStatus {
    pub origin: String,
    pub vkey: String,
    pub entries: u64,
    pub checkpointed: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// What the writer is asked to do, in order.
enum Job {
    Append(Vec<u8>, &'static str),
    Checkpoint,
}

/// Called with each new signed checkpoint (the daemon publishes it).
pub type OnCheckpoint = Box<dyn Fn(&[u8]) + Send>;

/// The log and what its writes did.
struct Writer {
    log: Log,
    status: Arc<Mutex<LedgerStatus>>,
    on_checkpoint: Option<OnCheckpoint>,
}

impl Writer {
    fn run(&mut self, job: Job) {
        let result = match job {
            Job::Append(bytes, what) => {
                self.log.append(&bytes).map(|_| None).map_err(|e| (e, what))
            }
            Job::Checkpoint => self.log.checkpoint().map_err(|e| (e, "checkpoint")),
        };
        // A poisoned lock guards plain counters: nothing half-changed.
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(checkpoint) => {
                status.entries = self.log.size();
                status.checkpointed = self.log.checkpointed();
                drop(status);
                if let (Some(c), Some(f)) = (checkpoint, &self.on_checkpoint) {
                    f(&c);
                }
            }
            Err((e, what)) => {
                status.errors += 1;
                status.last_error = Some(e.to_string());
                tracing::error!(error = %e, what, "The ledger could not take an entry; control goes on without it");
            }
        }
    }
}

/// Where the recorder's jobs go: the writer itself, or the thread that owns it.
enum Sink {
    Inline(Box<Writer>),
    Thread(mpsc::Sender<Job>),
}

pub struct Recorder {
    sink: Sink,
    accountant: Accountant,
    every_ms: i64,
    next_checkpoint: Option<Timestamp>,
    status: Arc<Mutex<LedgerStatus>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("status", &self.status())
            .finish()
    }
}

/// The SHA-256 of a configuration file's bytes, hex (what a `start` entry names).
pub fn config_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

impl Recorder {
    /// Opens (or makes) the log `config` describes, for loads `names`; it writes inline
    /// until [`Recorder::in_background`].
    pub fn open(
        config: &LedgerConfig,
        device: Device,
        names: Vec<String>,
    ) -> Result<(Recorder, Recovered), LedgerError> {
        let key = SiteKey::load_or_create(&config.key, &config.name)?;
        let (log, found) = Log::open(&config.dir, key)?;
        let status = Arc::new(Mutex::new(LedgerStatus {
            origin: log.origin().to_string(),
            vkey: log.vkey().to_string(),
            entries: log.size(),
            checkpointed: log.checkpointed(),
            ..Default::default()
        }));
        let writer = Writer {
            log,
            status: status.clone(),
            on_checkpoint: None,
        };
        Ok((
            Recorder {
                sink: Sink::Inline(Box::new(writer)),
                accountant: Accountant::new(device, names, config.account_every),
                every_ms: config.checkpoint_every.as_millis() as i64,
                next_checkpoint: None,
                status,
            },
            found,
        ))
    }

    /// Hands the log to a thread `spawn` starts (the daemon's task tracker, so shutdown
    /// waits for the last checkpoint), with `on_checkpoint` for each checkpoint it
    /// makes. The thread ends once the recorder is dropped and every job is done.
    pub fn in_background(
        &mut self,
        on_checkpoint: OnCheckpoint,
        spawn: impl FnOnce(Box<dyn FnOnce() + Send>),
    ) {
        let (tx, rx) = mpsc::channel::<Job>();
        let Sink::Inline(mut writer) = std::mem::replace(&mut self.sink, Sink::Thread(tx)) else {
            return; // already in the background
        };
        writer.on_checkpoint = Some(on_checkpoint);
        spawn(Box::new(move || {
            for job in rx {
                writer.run(job);
            }
        }));
    }

    /// Checkpoints without syncing each file: for a simulation's ledger, an output file
    /// like its report (a crash means running it again), where a year of daily
    /// checkpoints would otherwise wait on the disk most of the time.
    pub fn set_durable(&mut self, durable: bool) {
        if let Sink::Inline(w) = &mut self.sink {
            w.log.set_durable(durable);
        }
    }

    /// The ledger's size, checkpoint and errors as the writer last left them.
    pub fn status(&self) -> LedgerStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn send(&mut self, job: Job) {
        match &mut self.sink {
            Sink::Inline(w) => w.run(job),
            Sink::Thread(tx) => {
                if tx.send(job).is_err() {
                    // The writer thread is gone (it panicked): count it as the loss it is.
                    let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
                    s.errors += 1;
                    s.last_error = Some("the ledger's writer thread is gone".into());
                }
            }
        }
    }

    /// The `start` entry: what runs, on which configuration.
    pub fn start(&mut self, now: Timestamp, site: &str, run: &str, mode: &str, config: &[u8]) {
        self.record(&Entry::Start(Start {
            at: now.to_rfc3339(),
            site: site.into(),
            software: format!("gridminer {}", env!("CARGO_PKG_VERSION")),
            config_sha256: config_hash(config),
            run: run.into(),
            mode: mode.into(),
        }));
    }

    /// Appends `entry`; a failure is logged and counted.
    pub fn record(&mut self, entry: &Entry) {
        self.send(Job::Append(entry.to_bytes(), entry.kind()));
    }

    /// After the controller's step at `now`: the accounts and certificates due, and a
    /// checkpoint if one is due.
    pub fn after_step(&mut self, now: Timestamp, state: &SiteState, work: Work) {
        for e in self.accountant.step(now, state, work) {
            self.record(&e);
        }
        let due = *self
            .next_checkpoint
            .get_or_insert(Timestamp(now.0 + self.every_ms));
        if now >= due {
            self.next_checkpoint = Some(Timestamp(now.0 + self.every_ms));
            self.send(Job::Checkpoint);
        }
    }

    /// At shutdown: the open interval and hour, a `stop` entry, a checkpoint.
    pub fn close(&mut self, now: Timestamp, state: &SiteState) {
        for e in self.accountant.close(now, state) {
            self.record(&e);
        }
        self.record(&Entry::Stop {
            at: now.to_rfc3339(),
        });
        self.send(Job::Checkpoint);
    }
}
