//! Stratum V1 client: feeds the worker pool with a mining pool's jobs and submits the
//! shares it finds.
//!
//! Role: everything between a `stratum+tcp://` URL and the [`HasherPool`]: connect,
//! `mining.configure` (BIP 310 version rolling, when the pool offers it),
//! `mining.subscribe`, `mining.authorize`, jobs from `mining.notify` (dropping stale ones
//! on `clean_jobs`), difficulty from `mining.set_difficulty`, and `mining.submit` of
//! every share after a local check against the pool target. It reconnects with
//! exponential backoff and subscribes again. It runs as a Tokio task and must never hash
//! (the pool's threads do), and must never panic on what a pool sends.
//!
//! Files: [`message`] (protocol vocabulary and validation), [`transport`] (bounded line
//! reading), [`work`] (coinbase, merkle root, version rolling), `session` (one
//! connection's state machine), [`error`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::pool::{HasherPool, Share};

pub mod error;
pub mod message;
mod session;
pub mod transport;
pub mod work;

pub use error::StratumError;

/// `host:port` of a pool, from `stratum+tcp://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAddr {
    pub host: String,
    pub port: u16,
}

impl PoolAddr {
    pub fn parse(url: &str) -> Result<PoolAddr, StratumError> {
        let bad = |reason| StratumError::Url {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("stratum+tcp://")
            .ok_or_else(|| bad("must start with stratum+tcp://"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("needs a :port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("needs a host"));
        }
        let port = port.parse().map_err(|_| bad("port is not a number"))?;
        Ok(PoolAddr {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for PoolAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How to reach and log in to the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct StratumConfig {
    pub addr: PoolAddr,
    pub user: String,
    pub password: String,
    pub user_agent: String,
    /// Ask for BIP 310 version rolling (used only if the pool grants it).
    pub version_rolling: bool,
    /// How long the pool may take to accept a connection or answer the handshake.
    pub answer_timeout: Duration,
    /// A pool silent for this long is taken as a dead connection (half-open TCP); pools
    /// send a job at least every minute or two.
    pub idle_timeout: Duration,
    /// First and longest wait between reconnection attempts (doubling in between).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// After the pool refuses the login (or the subscription): `None` ends the client with
    /// the error, for a person at `hash mine` to read; `Some(wait)` logs it and tries
    /// again after `wait`, for the unattended daemon, which should be mining again once
    /// the pool account is fixed without anyone restarting it.
    pub retry_refused: Option<Duration>,
}

impl StratumConfig {
    pub fn new(url: &str, user: &str, password: &str) -> Result<StratumConfig, StratumError> {
        Ok(StratumConfig {
            addr: PoolAddr::parse(url)?,
            user: user.to_owned(),
            password: password.to_owned(),
            user_agent: format!("gridminer/{}", env!("CARGO_PKG_VERSION")),
            version_rolling: true,
            answer_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            retry_refused: None,
        })
    }
}

/// Counters, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct StratumStats {
    /// A session is up: subscribed and authorized (jobs follow). False while connecting,
    /// backing off, or after the pool refused us.
    pub connected: AtomicBool,
    pub connections: AtomicU64,
    pub jobs: AtomicU64,
    pub submitted: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Shares of jobs made stale by `clean_jobs` or a reconnection, not sent.
    pub stale_dropped: AtomicU64,
    /// Shares that failed the local check, not sent (a kernel bug if ever non-zero).
    pub invalid_dropped: AtomicU64,
    /// Messages from the pool rejected as malformed or hostile.
    pub malformed: AtomicU64,
    /// Times the pool refused the login or the subscription.
    pub refusals: AtomicU64,
}

/// A copy of [`StratumStats`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StratumCounts {
    pub connected: bool,
    pub connections: u64,
    pub jobs: u64,
    pub submitted: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub stale_dropped: u64,
    pub invalid_dropped: u64,
    pub malformed: u64,
    pub refusals: u64,
}

impl StratumStats {
    pub fn snapshot(&self) -> StratumCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StratumCounts {
            connected: self.connected.load(Ordering::Relaxed),
            connections: g(&self.connections),
            jobs: g(&self.jobs),
            submitted: g(&self.submitted),
            accepted: g(&self.accepted),
            rejected: g(&self.rejected),
            stale_dropped: g(&self.stale_dropped),
            invalid_dropped: g(&self.invalid_dropped),
            malformed: g(&self.malformed),
            refusals: g(&self.refusals),
        }
    }
}

/// The client: one per pool connection, reconnecting as needed.
pub struct StratumClient {
    config: StratumConfig,
    stats: Arc<StratumStats>,
}

impl StratumClient {
    pub fn new(config: StratumConfig) -> StratumClient {
        StratumClient {
            config,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<StratumStats> {
        self.stats.clone()
    }

    /// Mines for the pool until `shutdown` is cancelled (`Ok`) or the pool refuses us
    /// (`Err` with a non-transient error) and `retry_refused` is `None`. Transport
    /// failures and broken handshakes are retried with exponential backoff, refusals after
    /// `retry_refused`; the hasher idles while there is no valid job.
    pub async fn run(
        self,
        pool: Arc<HasherPool>,
        mut shares: UnboundedReceiver<Share>,
        shutdown: CancellationToken,
    ) -> Result<(), StratumError> {
        let mut backoff = self.config.backoff_min;
        loop {
            let jobs_before = self.stats.jobs.load(Ordering::Relaxed);
            let result =
                session::run(&self.config, &pool, &mut shares, &self.stats, &shutdown).await;
            // Whatever ended the session, its jobs are no longer valid work.
            self.stats.connected.store(false, Ordering::Relaxed);
            pool.clear_job();
            let wait = match result {
                Ok(()) => return Ok(()),
                Err(e) if !e.is_transient() => {
                    let refused = matches!(e, StratumError::Refused { .. });
                    if refused {
                        self.stats.refusals.fetch_add(1, Ordering::Relaxed);
                    }
                    match self.config.retry_refused.filter(|_| refused) {
                        Some(wait) => {
                            tracing::error!(error = %e, retry_in_s = wait.as_secs_f64(), "Pool refused us; trying again later");
                            wait
                        }
                        None => {
                            tracing::error!(error = %e, "Pool refused us; giving up");
                            return Err(e);
                        }
                    }
                }
                Err(e) => {
                    if self.stats.jobs.load(Ordering::Relaxed) > jobs_before {
                        // The session worked for a while: start backing off afresh.
                        backoff = self.config.backoff_min;
                    }
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Pool connection lost; reconnecting");
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_urls() {
        assert_eq!(
            PoolAddr::parse("stratum+tcp://pool.example:3333").unwrap(),
            PoolAddr {
                host: "pool.example".into(),
                port: 3333
            }
        );
        assert_eq!(
            PoolAddr::parse("stratum+tcp://[::1]:4000/")
                .unwrap()
                .to_string(),
            "[::1]:4000"
        );
        for bad in [
            "http://x:1",
            "stratum+tcp://x",
            "stratum+tcp://:1",
            "stratum+tcp://x:99999",
        ] {
            let e = PoolAddr::parse(bad).unwrap_err();
            assert!(!e.is_transient(), "{bad}");
        }
    }
}
