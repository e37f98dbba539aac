//! The ledger as the daemon and the simulator write it: the log, the accountant, and
//! the checkpoint clock. A ledger that cannot be written never stops control: the
//! error is logged, counted and shown, and the entries it could not take are lost
//! (said so), while the loads follow the policy as before.

use std::time::Duration;

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

pub struct Recorder {
    log: Log,
    accountant: Accountant,
    every_ms: i64,
    next_checkpoint: Option<Timestamp>,
    status: LedgerStatus,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("status", &self.status)
            .finish()
    }
}

/// The SHA-256 of a configuration file's bytes, hex (what a `start` entry names).
pub fn config_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

impl Recorder {
    /// Opens (or makes) the log `config` describes, for loads `names`.
    pub fn open(
        config: &LedgerConfig,
        device: Device,
        names: Vec<String>,
    ) -> Result<(Recorder, Recovered), LedgerError> {
        let key = SiteKey::load_or_create(&config.key, &config.name)?;
        let (log, found) = Log::open(&config.dir, key)?;
        let status = LedgerStatus {
            origin: log.origin().to_string(),
            vkey: log.vkey().to_string(),
            entries: log.size(),
            checkpointed: log.checkpointed(),
            ..Default::default()
        };
        Ok((
            Recorder {
                log,
                accountant: Accountant::new(device, names, config.account_every),
                every_ms: config.checkpoint_every.as_millis() as i64,
                next_checkpoint: None,
                status,
            },
            found,
        ))
    }

    /// Checkpoints without syncing each file: for a simulation's ledger, an output file
    /// like its report (a crash means running it again), where a year of daily
    /// checkpoints would otherwise wait on the disk most of the time.
    pub fn set_durable(&mut self, durable: bool) {
        self.log.set_durable(durable);
    }

    pub fn status(&self) -> &LedgerStatus {
        &self.status
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
        match self.log.append(&entry.to_bytes()) {
            Ok(_) => self.status.entries = self.log.size(),
            Err(e) => self.failed(&e, entry.kind()),
        }
    }

    fn failed(&mut self, e: &LedgerError, what: &str) {
        self.status.errors += 1;
        self.status.last_error = Some(e.to_string());
        tracing::error!(error = %e, what, "The ledger could not take an entry; control goes on without it");
    }

    /// After the controller's step at `now`: the accounts and certificates due, and a
    /// checkpoint if one is due (returned, to be published).
    pub fn after_step(&mut self, now: Timestamp, state: &SiteState, work: Work) -> Option<Vec<u8>> {
        for e in self.accountant.step(now, state, work) {
            self.record(&e);
        }
        let due = *self
            .next_checkpoint
            .get_or_insert(Timestamp(now.0 + self.every_ms));
        (now >= due).then(|| {
            self.next_checkpoint = Some(Timestamp(now.0 + self.every_ms));
            self.checkpoint()
        })?
    }

    /// A checkpoint now, if anything was appended since the last.
    pub fn checkpoint(&mut self) -> Option<Vec<u8>> {
        match self.log.checkpoint() {
            Ok(c) => {
                self.status.checkpointed = self.log.checkpointed();
                c
            }
            Err(e) => {
                self.failed(&e, "checkpoint");
                None
            }
        }
    }

    /// At shutdown: the open interval and hour, a `stop` entry, a checkpoint.
    pub fn close(&mut self, now: Timestamp, state: &SiteState) -> Option<Vec<u8>> {
        for e in self.accountant.close(now, state) {
            self.record(&e);
        }
        self.record(&Entry::Stop {
            at: now.to_rfc3339(),
        });
        self.checkpoint()
    }

    pub fn every(&self) -> Duration {
        Duration::from_millis(self.every_ms as u64)
    }
}
