//! MQTT transport: the embedded broker, the one connection the daemon keeps, and the
//! topic table. It moves bytes; it does not interpret them (`signal::mqtt` turns inbound
//! messages into observations, the status and actuator tasks publish through the client).
//!
//! Reconnection lives here, as rumqttc intends: the event loop is kept polling, with a
//! backoff after each error, and every reconnect resubscribes and re-announces
//! availability. The rest of the daemon only sees signals ageing while it is down.
//!
//! rumqttc reaches an external broker through [`relay`], which drops (and counts)
//! messages over `mqtt.max_packet_size` that would otherwise end the connection; the
//! embedded broker refuses such messages itself.

pub mod broker;
pub mod config;
mod relay;
pub mod topics;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock, Timestamp};
pub use topics::Topics;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("embedded broker: {0}")]
    Broker(String),
    #[error("reading {}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("MQTT relay socket: {0}")]
    Relay(String),
    #[error("MQTT connection to {host}: {detail}")]
    Connection { host: String, detail: String },
}

/// The default of `mqtt.max_packet_size`: far above any message the daemon reads (a
/// reading is bytes, a signed command about a kilobyte, a week of 15-minute prices
/// tens of KB), and small enough that a hostile message costs little to discard.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 256 * 1024;

/// The largest packet the daemon writes (its state, Home Assistant discovery): a limit
/// of its own, unrelated to what it accepts.
pub const MAX_OUTGOING_PACKET_SIZE: usize = 256 * 1024;

/// The first wait before reconnecting, doubled after each failure up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// A connection must stay up this long before the reconnect backoff starts again from
/// `FIRST_RETRY`. Resetting it at every CONNACK let a connection that the broker drops
/// right after the login (a bad retained message, an ACL, a client-id clash) reconnect
/// ten times a second for ever (issue 9, hole 3: 422 connects in 36 s).
pub const STABLE_CONNECTION: Duration = Duration::from_secs(30);

/// How to reach the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS with this CA bundle (PEM); `None` is plain TCP.
    pub tls_ca: Option<PathBuf>,
    pub keep_alive: Duration,
    /// The largest packet taken from the broker, in bytes after the fixed header (what
    /// MQTT calls the remaining length: topic, packet id and payload). A message over
    /// it is dropped and counted; the connection stays up.
    pub max_packet_size: usize,
    /// Whether to reach the broker through the relay, which drops messages over the
    /// limit unread. Needed for a broker that may send them (any external one); the
    /// embedded broker refuses them from its clients, so its connection goes direct,
    /// one hop (and one wake-up of a busy CPU) shorter.
    pub relay: bool,
}

/// A message that arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub topic: String,
    pub payload: bytes::Bytes,
    pub at: Timestamp,
}

/// Counters of the connection, for metrics and tests.
#[derive(Debug, Default)]
pub struct MqttStats {
    /// Connections the broker accepted (CONNACK success), reconnects included.
    pub connects: AtomicU64,
    /// Failed connection attempts and dropped connections, refusals included.
    pub connection_errors: AtomicU64,
    /// Of those, attempts the broker answered with a refusal (bad username or
    /// password, not authorised, ...): the transport and TLS worked, the login did not.
    pub refusals: AtomicU64,
    pub received: AtomicU64,
    /// Messages dropped for being over `max_packet_size` (by the relay, unread, or on
    /// arrival from the embedded broker).
    pub oversized: AtomicU64,
    /// Whether the connection is up now (a CONNACK came, no error since): a driver
    /// refuses to write through a connection known to be down rather than queue.
    pub connected: AtomicBool,
    /// Woken whenever `connected` changes.
    pub connection_changed: tokio::sync::Notify,
}

impl MqttStats {
    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        self.connection_changed.notify_waiters();
    }
}

/// When to try again after a failed or lost connection: doubling waits, started again
/// only after a connection that stayed up `STABLE_CONNECTION`.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    up_since: Option<Instant>,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: FIRST_RETRY,
            up_since: None,
        }
    }

    fn connected(&mut self, now: Instant) {
        self.up_since = Some(now);
    }

    /// The wait before the next attempt, after a failure at `now`.
    fn failed(&mut self, now: Instant) -> Duration {
        if let Some(since) = self.up_since.take() {
            if now.saturating_duration_since(since) >= STABLE_CONNECTION {
                self.next = FIRST_RETRY;
            }
        }
        let wait = self.next;
        self.next = (wait * 2).min(MAX_RETRY);
        wait
    }
}

/// The daemon's MQTT connection: drive it with `run`, publish through `client`.
pub struct MqttConnection {
    eventloop: EventLoop,
    client: AsyncClient,
    subscriptions: Vec<String>,
    inbound: mpsc::Sender<Inbound>,
    /// The site's topics, for its availability; `None` on a driver's connection, which
    /// announces nothing (the daemon's own connection speaks for the site).
    topics: Option<Topics>,
    /// `host:port`, for logs.
    host: String,
    /// Taken by `run`, which serves it; `None` when the broker enforces the limit.
    relay: Option<relay::Relay>,
    max_packet_size: usize,
    pub stats: Arc<MqttStats>,
}

/// Socket options for every MQTT connection of the daemon: no Nagle delay. A setpoint or
/// an acknowledgement is a small write right after another; with Nagle it waits for the
/// broker's delayed ACK, about 40 ms on Linux, which measured as the whole of the
/// signal-to-load latency.
pub fn network_options() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// Installs the process's rustls crypto provider (ring). Idempotent.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a CA bundle (PEM) and checks that it holds at least one certificate rustls can
/// trust, so a wrong file is found by `config check` rather than at every reconnect.
pub fn read_ca(path: &Path) -> Result<Vec<u8>, MqttError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let pem = std::fs::read(path).map_err(|source| MqttError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MqttError::Tls(format!("{}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(MqttError::Tls(format!(
            "{}: no usable PEM certificate",
            path.display()
        )));
    }
    Ok(pem)
}

impl MqttConnection {
    /// Sets up the connection (nothing is sent until `run`). The last will marks the site
    /// offline if the connection drops without a goodbye.
    pub fn new(
        settings: &MqttSettings,
        topics: Topics,
        subscriptions: Vec<String>,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<(Self, AsyncClient), MqttError> {
        Self::build(settings, Some(topics), subscriptions, inbound)
    }

    /// A connection of a driver of its own (an MQTT load): the same broker, login, TLS
    /// and packet limit, under `settings.client_id`, with no last will and no
    /// availability, and a connection state of its own.
    pub fn for_driver(
        settings: &MqttSettings,
        subscriptions: Vec<String>,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<(Self, AsyncClient), MqttError> {
        Self::build(settings, None, subscriptions, inbound)
    }

    fn build(
        settings: &MqttSettings,
        topics: Option<Topics>,
        subscriptions: Vec<String>,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<(Self, AsyncClient), MqttError> {
        let tls = match &settings.tls_ca {
            Some(ca_path) => {
                install_crypto_provider();
                Some(relay::tls_config(&read_ca(ca_path)?)?)
            }
            None => None,
        };
        let stats = Arc::<MqttStats>::default();
        let (relay, mut opts) = if settings.relay {
            let upstream = relay::Upstream {
                host: settings.host.clone(),
                port: settings.port,
                tls,
            };
            let relay = relay::Relay::bind(upstream, settings.max_packet_size, stats.clone())?;
            let path = relay.path().to_string_lossy().into_owned();
            let mut opts = MqttOptions::new(&settings.client_id, path, 0);
            // The relay drops a PUBLISH over the limit; anything else over it (which no
            // broker sends) still ends the connection, in rumqttc.
            opts.set_transport(Transport::Unix)
                .set_max_packet_size(settings.max_packet_size, MAX_OUTGOING_PACKET_SIZE);
            (Some(relay), opts)
        } else {
            let mut opts = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
            if let Some(config) = tls {
                opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(config)));
            }
            // The broker takes nothing over `broker_limit`, so nothing over it can come;
            // between `max_packet_size` and it, `run` drops.
            opts.set_max_packet_size(
                broker_limit(settings.max_packet_size),
                MAX_OUTGOING_PACKET_SIZE,
            );
            (None, opts)
        };
        opts.set_keep_alive(settings.keep_alive)
            .set_clean_session(true)
            .set_inflight(100);
        if let Some(topics) = &topics {
            opts.set_last_will(LastWill::new(
                topics.availability(),
                topics::OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        }
        if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
            opts.set_credentials(u, p);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        eventloop.network_options = network_options();
        Ok((
            MqttConnection {
                eventloop,
                client: client.clone(),
                subscriptions,
                inbound,
                topics,
                host: format!("{}:{}", settings.host, settings.port),
                relay,
                max_packet_size: settings.max_packet_size,
                stats,
            },
            client,
        ))
    }

    /// Keeps the connection up until `shutdown`, then says goodbye: availability
    /// `offline` (retained) and a clean disconnect.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), MqttError> {
        let upstream_error = self.relay.as_ref().map(relay::Relay::upstream_error);
        // Stopped after the goodbye, which goes out through it.
        let relay_stop = CancellationToken::new();
        let relay_task = self
            .relay
            .take()
            .map(|relay| tokio::spawn(relay.run(relay_stop.clone())));
        let clock = SystemClock;
        let mut backoff = Backoff::new();
        let mut warned = relay::Warned::default();
        let mut down_logged = false;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                e = self.eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    self.stats.connects.fetch_add(1, Ordering::Relaxed);
                    self.stats.set_connected(true);
                    backoff.connected(Instant::now());
                    if down_logged {
                        tracing::info!(host = %self.host, "MQTT connection restored");
                        down_logged = false;
                    }
                    // Clean sessions: every (re)connect subscribes anew.
                    let filters = self
                        .subscriptions
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtMostOnce));
                    if !self.subscriptions.is_empty() {
                        let _ = self.client.try_subscribe_many(filters);
                    }
                    if let Some(t) = &self.topics {
                        let _ = self.client.try_publish(
                            t.availability(),
                            QoS::AtLeastOnce,
                            true,
                            topics::ONLINE,
                        );
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    // What the relay drops unread; here only without one (the
                    // embedded broker's own limit is at least the daemon's largest).
                    let size = remaining_length(&p);
                    if size > self.max_packet_size {
                        self.stats.oversized.fetch_add(1, Ordering::Relaxed);
                        let dropped = relay::Dropped {
                            topic: p.topic,
                            bytes: size,
                        };
                        warned.log(&dropped, self.max_packet_size);
                        continue;
                    }
                    let msg = Inbound {
                        topic: p.topic,
                        payload: p.payload,
                        at: clock.now(),
                    };
                    // Backpressure: the controller must keep up; waiting here slows the
                    // broker rather than dropping readings.
                    // A closed channel means the controller is gone: the connection
                    // stays up (the message is dropped) until the daemon stops it, since
                    // the loads' safe state still has to go out through it.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.inbound.send(msg) => {}
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    self.stats.connection_errors.fetch_add(1, Ordering::Relaxed);
                    self.stats.set_connected(false);
                    let refused = match &error {
                        rumqttc::ConnectionError::ConnectionRefused(code) => Some(*code),
                        _ => None,
                    };
                    if refused.is_some() {
                        self.stats.refusals.fetch_add(1, Ordering::Relaxed);
                    }
                    // rumqttc only sees the relay close its socket when the broker
                    // cannot be reached; the relay says why.
                    let upstream = upstream_error.as_deref().and_then(take);
                    let error = match upstream {
                        Some(why) => why,
                        None => error.to_string(),
                    };
                    // Logged once per outage; retried until it works, since a broker's
                    // password file or ACL can be fixed without restarting us.
                    match (refused, down_logged) {
                        (Some(code), false) => tracing::error!(
                            ?code,
                            host = %self.host,
                            "MQTT broker refused the connection (check mqtt.username and the password); retrying"
                        ),
                        (None, false) => tracing::warn!(
                            %error,
                            host = %self.host,
                            "MQTT connection failed or lost; reconnecting"
                        ),
                        (_, true) => tracing::debug!(%error, "MQTT reconnect failed"),
                    }
                    down_logged = true;
                    let wait = backoff.failed(Instant::now());
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        self.goodbye().await;
        // Closing our end lets the relay finish passing the goodbye on, then stop.
        self.eventloop.network = None;
        relay_stop.cancel();
        if let Some(task) = relay_task {
            match tokio::time::timeout(Duration::from_secs(2), task).await {
                Ok(Ok(Err(error))) => tracing::warn!(%error, "MQTT relay failed"),
                Ok(Err(error)) => tracing::warn!(%error, "MQTT relay task failed"),
                _ => {}
            }
        }
        Ok(())
    }

    /// Publishes `offline` and disconnects, driving the event loop until the disconnect
    /// is out or a short deadline passes (a dead broker must not hold up shutdown).
    async fn goodbye(&mut self) {
        self.stats.set_connected(false);
        if let Some(t) = &self.topics {
            let _ =
                self.client
                    .try_publish(t.availability(), QoS::AtLeastOnce, true, topics::OFFLINE);
        }
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

/// The options of a short connection of its own to the daemon's broker: the same host,
/// login and TLS, as `<client_id>-<suffix>` (a broker drops the older of two connections
/// sharing an id), a clean session, no last will, taking packets up to `max_incoming`.
fn one_shot_options(
    settings: &MqttSettings,
    suffix: &str,
    max_incoming: usize,
) -> Result<MqttOptions, MqttError> {
    let mut opts = MqttOptions::new(
        format!("{}-{suffix}", settings.client_id),
        &settings.host,
        settings.port,
    );
    if let Some(ca_path) = &settings.tls_ca {
        install_crypto_provider();
        let config = relay::tls_config(&read_ca(ca_path)?)?;
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(config)));
    }
    opts.set_keep_alive(settings.keep_alive)
        .set_clean_session(true)
        .set_max_packet_size(max_incoming, MAX_OUTGOING_PACKET_SIZE);
    if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
        opts.set_credentials(u, p);
    }
    Ok(opts)
}

/// Publishes `messages` (topic, body; retained, QoS 1) on a connection of its own, waits
/// until the broker has acknowledged each, and disconnects; at most `deadline`. This is
/// how the loads' safe state reaches the broker when the daemon's own connection is what
/// died. It sets no last will (the dead connection's says `offline`), subscribes to
/// nothing (so nothing can arrive, and no relay is needed), and logs in as
/// `<client_id>-safe`: a broker drops the older of two connections sharing an id.
pub async fn publish_once(
    settings: &MqttSettings,
    messages: &[(String, String)],
    deadline: Duration,
) -> Result<(), MqttError> {
    let host = format!("{}:{}", settings.host, settings.port);
    let failed = |detail: String| MqttError::Connection {
        host: host.clone(),
        detail,
    };
    let opts = one_shot_options(settings, "safe", MAX_OUTGOING_PACKET_SIZE)?;
    let (client, mut eventloop) = AsyncClient::new(opts, messages.len() + 1);
    eventloop.network_options = network_options();
    for (topic, body) in messages {
        client
            .try_publish(topic.as_str(), QoS::AtLeastOnce, true, body.clone())
            .map_err(|e| failed(e.to_string()))?;
    }
    let acked = tokio::time::timeout(deadline, async {
        let mut acked = 0;
        while acked < messages.len() {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                // One attempt: the caller's deadline is short, and a broker that cannot
                // be reached now is reported rather than retried.
                Err(e) => return Err(failed(e.to_string())),
            }
        }
        let _ = client.try_disconnect();
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return Ok(()),
                Ok(_) => {}
            }
        }
    })
    .await;
    acked.unwrap_or_else(|_| Err(failed(format!("no acknowledgement within {deadline:?}"))))
}

/// Reads the retained message on `topic` on a connection of its own (as
/// `<client_id>-read`), then disconnects: `None` if the broker holds none (it answers a
/// subscription with the retained message first, so one that has not come once the
/// subscription is acknowledged and `settle` has passed is not there). At most `deadline`.
pub async fn read_retained(
    settings: &MqttSettings,
    topic: &str,
    settle: Duration,
    deadline: Duration,
) -> Result<Option<bytes::Bytes>, MqttError> {
    let host = format!("{}:{}", settings.host, settings.port);
    let failed = |detail: String| MqttError::Connection {
        host: host.clone(),
        detail,
    };
    let opts = one_shot_options(settings, "read", usize::MAX >> 4)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 4);
    eventloop.network_options = network_options();
    client
        .try_subscribe(topic, QoS::AtLeastOnce)
        .map_err(|e| failed(e.to_string()))?;
    let read = tokio::time::timeout(deadline, async {
        let mut settled: Option<tokio::time::Instant> = None;
        loop {
            let event = match settled {
                Some(at) => match tokio::time::timeout_at(at, eventloop.poll()).await {
                    Ok(e) => e,
                    Err(_) => return Ok(None),
                },
                None => eventloop.poll().await,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => {
                    return Ok(Some(p.payload))
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    settled = Some(tokio::time::Instant::now() + settle)
                }
                Ok(_) => {}
                Err(e) => return Err(failed(e.to_string())),
            }
        }
    })
    .await;
    let _ = client.try_disconnect();
    read.unwrap_or_else(|_| Err(failed(format!("no answer within {deadline:?}"))))
}

/// The remaining length of a PUBLISH as it came: topic (with its 2-byte length), packet
/// id (QoS 1 and 2) and payload.
fn remaining_length(p: &rumqttc::Publish) -> usize {
    let pkid = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
    2 + p.topic.len() + pkid + p.payload.len()
}

/// The limit the embedded broker enforces on every client: `max_packet_size`, but never
/// less than what the daemon itself writes, or the broker would disconnect it.
pub fn broker_limit(max_packet_size: usize) -> usize {
    max_packet_size.max(MAX_OUTGOING_PACKET_SIZE)
}

/// Takes what a shared slot holds, leaving it empty (a poisoned lock holds nothing).
fn take(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().ok().and_then(|mut s| s.take())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9, hole 3: a connection the broker drops within a second of each login
    /// (a retained message it cannot take) backs off to `MAX_RETRY`; the wait starts
    /// from `FIRST_RETRY` again only after a connection that stayed up.
    #[test]
    fn r9_hole3_backoff_resets_only_after_a_stable_connection() {
        let t0 = Instant::now();
        let mut b = Backoff::new();
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            b.connected(now);
            now += Duration::from_secs(1);
            let w = b.failed(now);
            waits.push(w.as_millis());
            now += w;
        }
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        // Over 36 s of such flapping, 9 connects, not 422.
        let mut connects = 0;
        let (mut b, mut now) = (Backoff::new(), t0);
        while now < t0 + Duration::from_secs(36) {
            connects += 1;
            b.connected(now);
            now += Duration::from_millis(50);
            now += b.failed(now);
        }
        assert!(connects <= 10, "{connects} connects in 36 s");

        // Failures without any connection in between keep doubling too.
        let mut b = Backoff::new();
        let w: Vec<_> = (0..3).map(|_| b.failed(t0).as_millis()).collect();
        assert_eq!(w, [100, 200, 400]);

        // A connection up for `STABLE_CONNECTION` earns a fresh start.
        b.connected(t0);
        assert_eq!(b.failed(t0 + STABLE_CONNECTION), FIRST_RETRY);
        b.connected(t0);
        assert_eq!(
            b.failed(t0 + STABLE_CONNECTION - Duration::from_millis(1)),
            FIRST_RETRY * 2
        );
    }
}
