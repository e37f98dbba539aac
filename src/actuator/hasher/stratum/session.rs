//! One connection to the pool: handshake (configure, subscribe, authorize), then jobs in
//! and shares out until the connection ends.
//!
//! Role: the protocol state machine of a single session. Reconnecting is the caller's
//! job (`mod.rs`). Must not panic on anything the pool sends: each bad message is
//! counted, logged and skipped; only a broken handshake ends the session.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::error::StratumError;
use super::message::{self, granted_version_mask, method, Incoming, Subscription};
use super::transport::{Line, LineReader};
use super::work::StratumJob;
use super::{StratumConfig, StratumStats};
use crate::actuator::hasher::job::HeaderSource;
use crate::actuator::hasher::pool::{HasherPool, JobSeq, Share};

/// Version bits we ask to roll (BIP 320's general-purpose bits).
const REQUESTED_MASK: u32 = 0x1fff_e000;
/// Jobs kept for late shares when the pool does not clean them.
const MAX_JOBS: usize = 8;

const ID_CONFIGURE: u64 = 1;
const ID_SUBSCRIBE: u64 = 2;
const ID_AUTHORIZE: u64 = 3;

enum Pending {
    Configure,
    Subscribe,
    Authorize,
    Submit { job_id: String, nonce: u32 },
}

struct Session<'a> {
    config: &'a StratumConfig,
    pool: &'a HasherPool,
    stats: &'a StratumStats,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    subscription: Option<Subscription>,
    authorized: bool,
    version_mask: u32,
    difficulty: f64,
    /// A notify that came before the subscription it needs.
    early_notify: Option<message::Notify>,
    jobs: BTreeMap<JobSeq, Arc<StratumJob>>,
}

/// Runs one session to its end. `Ok` only when `shutdown` was cancelled.
pub(super) async fn run(
    config: &StratumConfig,
    pool: &HasherPool,
    shares: &mut UnboundedReceiver<Share>,
    stats: &StratumStats,
    shutdown: &CancellationToken,
) -> Result<(), StratumError> {
    let addr = config.addr.to_string();
    let stream = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = timeout(config.answer_timeout, TcpStream::connect(&addr)) => r
            .map_err(|_| StratumError::Timeout("connect"))?
            .map_err(|source| StratumError::Connect { addr: addr.clone(), source })?,
    };
    stream.set_nodelay(true)?;
    stats.connections.fetch_add(1, Ordering::Relaxed);
    tracing::info!(pool = %addr, "Connected to pool");
    let (read, mut write) = stream.into_split();
    let mut lines = LineReader::new(read);

    let mut s = Session {
        config,
        pool,
        stats,
        pending: HashMap::new(),
        next_id: 10,
        subscription: None,
        authorized: false,
        version_mask: 0,
        difficulty: 1.0,
        early_notify: None,
        jobs: BTreeMap::new(),
    };
    // Pipelined handshake: pools answer in order, so configure's answer (the version
    // mask) is known before the first job arrives.
    let mut hello = String::new();
    if config.version_rolling {
        hello += &message::request(
            ID_CONFIGURE,
            method::CONFIGURE,
            json!([["version-rolling"], {
                "version-rolling.mask": format!("{REQUESTED_MASK:08x}"),
                "version-rolling.min-bit-count": 2
            }]),
        );
        s.pending.insert(ID_CONFIGURE, Pending::Configure);
    }
    hello += &message::request(ID_SUBSCRIBE, method::SUBSCRIBE, json!([config.user_agent]));
    hello += &message::request(
        ID_AUTHORIZE,
        method::AUTHORIZE,
        json!([config.user, config.password]),
    );
    s.pending.insert(ID_SUBSCRIBE, Pending::Subscribe);
    s.pending.insert(ID_AUTHORIZE, Pending::Authorize);
    write.write_all(hello.as_bytes()).await?;

    let handshake_deadline = Instant::now() + config.answer_timeout;
    let mut last_heard = Instant::now();
    loop {
        let ready = s.subscription.is_some() && s.authorized;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            line = lines.next_line() => {
                last_heard = Instant::now();
                match line? {
                    Line::Text(text) => s.handle_line(&text)?,
                    Line::TooLong => s.malformed("line too long", ""),
                    Line::NotUtf8 => s.malformed("line is not UTF-8", ""),
                }
            }
            Some(share) = shares.recv() => {
                if let Some(req) = s.submission(share) {
                    write.write_all(req.as_bytes()).await?;
                }
            }
            _ = sleep_until(handshake_deadline), if !ready => {
                return Err(StratumError::Timeout("subscribe/authorize"));
            }
            _ = sleep_until(last_heard + config.idle_timeout) => {
                return Err(StratumError::Timeout("silence (no message for idle_timeout)"));
            }
        }
    }
}

impl Session<'_> {
    fn malformed(&self, reason: &str, line: &str) {
        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
        let excerpt: String = line.chars().take(200).collect();
        tracing::warn!(reason, line = %excerpt, "Rejected malformed message from pool");
    }

    /// Handles one line; errors only for failures that end the session.
    fn handle_line(&mut self, line: &str) -> Result<(), StratumError> {
        let msg = match message::parse(line) {
            Ok(m) => m,
            Err(StratumError::Malformed(reason)) => {
                self.malformed(&reason, line);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match msg {
            Incoming::Response { id, result, error } => self.response(id, result, error, line),
            Incoming::Notify(n) => {
                if self.subscription.is_some() {
                    self.start_job(n);
                } else {
                    self.early_notify = Some(n);
                }
                Ok(())
            }
            Incoming::SetDifficulty(d) => {
                tracing::info!(difficulty = d, "Pool set difficulty");
                self.difficulty = d;
                Ok(())
            }
            Incoming::SetVersionMask(m) => {
                self.version_mask = m & REQUESTED_MASK;
                tracing::info!(mask = %format!("{m:08x}"), "Pool changed the version mask");
                Ok(())
            }
            Incoming::Other(method) => {
                tracing::debug!(method, "Ignoring pool notification");
                Ok(())
            }
        }
    }

    fn response(
        &mut self,
        id: u64,
        result: Value,
        error: Option<message::PoolError>,
        line: &str,
    ) -> Result<(), StratumError> {
        let Some(pending) = self.pending.remove(&id) else {
            self.malformed("response to no request of ours", line);
            return Ok(());
        };
        let refused = |what, e: Option<message::PoolError>| StratumError::Refused {
            what,
            message: e.map_or_else(|| result.to_string(), |e| e.message),
        };
        match pending {
            Pending::Configure => {
                if error.is_some() {
                    tracing::info!("Pool does not offer version rolling");
                } else {
                    match granted_version_mask(&result) {
                        Ok(Some(m)) => {
                            self.version_mask = m & REQUESTED_MASK;
                            tracing::info!(mask = %format!("{:08x}", self.version_mask), "Version rolling granted");
                        }
                        Ok(None) => tracing::info!("Pool declined version rolling"),
                        Err(StratumError::Malformed(reason)) => self.malformed(&reason, line),
                        Err(e) => return Err(e),
                    }
                }
            }
            Pending::Subscribe => {
                if error.is_some() {
                    return Err(refused("subscribe", error));
                }
                // Without a valid subscription nothing can be mined: end the session.
                let sub = Subscription::parse(&result).inspect_err(|e| {
                    self.malformed(&e.to_string(), line);
                })?;
                tracing::info!(extranonce1 = %hex::encode(&sub.extranonce1), extranonce2_size = sub.extranonce2_size, "Subscribed");
                self.subscription = Some(sub);
                if let Some(n) = self.early_notify.take() {
                    self.start_job(n);
                }
                self.mark_connected();
            }
            Pending::Authorize => {
                if error.is_some() || result != Value::Bool(true) {
                    return Err(refused("authorize", error));
                }
                tracing::info!(user = %self.config.user, "Authorized");
                self.authorized = true;
                self.mark_connected();
            }
            Pending::Submit { job_id, nonce } => {
                if error.is_none() && result == Value::Bool(true) {
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(job_id, nonce = %format!("{nonce:08x}"), "Share accepted");
                } else {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    let reason = error.map_or_else(|| result.to_string(), |e| e.message);
                    tracing::warn!(job_id, nonce = %format!("{nonce:08x}"), reason, "Share rejected");
                }
            }
        }
        Ok(())
    }

    /// Once both subscribed and authorized, the session counts as connected (the
    /// caller clears it when the session ends).
    fn mark_connected(&self) {
        if self.subscription.is_some() && self.authorized {
            self.stats.connected.store(true, Ordering::Relaxed);
        }
    }

    fn start_job(&mut self, n: message::Notify) {
        let sub = self
            .subscription
            .as_ref()
            .expect("start_job after subscribe");
        let clean = n.clean_jobs;
        let job_id = n.job_id.clone();
        let job = match StratumJob::new(
            n,
            sub.extranonce1.clone(),
            sub.extranonce2_size,
            self.version_mask,
            self.difficulty,
        ) {
            Ok(j) => Arc::new(j),
            Err(e) => {
                self.malformed(&e.to_string(), &job_id);
                return;
            }
        };
        if clean {
            // Shares of older jobs would be stale: forget the jobs, so any such share
            // still in flight is dropped instead of sent.
            self.jobs.clear();
        }
        let seq = self.pool.set_job(job.clone());
        self.jobs.insert(seq, job);
        while self.jobs.len() > MAX_JOBS {
            self.jobs.pop_first();
        }
        self.stats.jobs.fetch_add(1, Ordering::Relaxed);
        tracing::info!(job_id, clean, difficulty = self.difficulty, "New job");
    }

    /// The `mining.submit` line for a share, or `None` if it must not be sent.
    fn submission(&mut self, share: Share) -> Option<String> {
        let Some(job) = self.jobs.get(&share.job) else {
            self.stats.stale_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(job = share.job.0, "Dropping share of a stale job");
            return None;
        };
        // Local check against the pool target, on a header rebuilt from the job itself:
        // a share we cannot justify is never sent.
        let header = job.header(share.roll).with_nonce(share.header.nonce());
        if header != share.header || !job.target.is_met_by(&header.block_hash()) {
            self.stats.invalid_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                job_id = job.notify.job_id,
                "Share fails the local check; not sent"
            );
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(
            id,
            Pending::Submit {
                job_id: job.notify.job_id.clone(),
                nonce: header.nonce(),
            },
        );
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        Some(message::request(
            id,
            method::SUBMIT,
            job.submit_params(&self.config.user, &share),
        ))
    }
}
