//! MQTT transport: the embedded broker, the one connection the daemon keeps, and the
//! topic table. It moves bytes; it does not interpret them (`signal::mqtt` turns inbound
//! messages into observations, the status and actuator tasks publish through the client).
//!
//! Reconnection lives here, as rumqttc intends: the event loop is kept polling, with a
//! backoff after each error, and every reconnect resubscribes and re-announces
//! availability. The rest of the daemon only sees signals ageing while it is down.

pub mod broker;
pub mod status;
pub mod topics;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
}

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
}

/// The daemon's MQTT connection: drive it with `run`, publish through `client`.
pub struct MqttConnection {
    eventloop: EventLoop,
    client: AsyncClient,
    subscriptions: Vec<String>,
    inbound: mpsc::Sender<Inbound>,
    topics: Topics,
    /// `host:port`, for logs.
    host: String,
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
        let mut opts = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
        opts.set_keep_alive(settings.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(256 * 1024, 256 * 1024)
            .set_inflight(100)
            .set_last_will(LastWill::new(
                topics.availability(),
                topics::OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
            opts.set_credentials(u, p);
        }
        if let Some(ca_path) = &settings.tls_ca {
            install_crypto_provider();
            let ca = read_ca(ca_path)?;
            opts.set_transport(Transport::Tls(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            }));
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
                stats: Arc::default(),
            },
            client,
        ))
    }

    /// Keeps the connection up until `shutdown`, then says goodbye: availability
    /// `offline` (retained) and a clean disconnect.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), MqttError> {
        let clock = SystemClock;
        let mut backoff = Duration::from_millis(100);
        let mut down_logged = false;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                e = self.eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    self.stats.connects.fetch_add(1, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
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
                    let _ = self.client.try_publish(
                        self.topics.availability(),
                        QoS::AtLeastOnce,
                        true,
                        topics::ONLINE,
                    );
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    let msg = Inbound {
                        topic: p.topic,
                        payload: p.payload,
                        at: clock.now(),
                    };
                    // Backpressure: the controller must keep up; waiting here slows the
                    // broker rather than dropping readings.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        r = self.inbound.send(msg) => if r.is_err() { break },
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    self.stats.connection_errors.fetch_add(1, Ordering::Relaxed);
                    let refused = match &error {
                        rumqttc::ConnectionError::ConnectionRefused(code) => Some(*code),
                        _ => None,
                    };
                    if refused.is_some() {
                        self.stats.refusals.fetch_add(1, Ordering::Relaxed);
                    }
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
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.goodbye().await;
        Ok(())
    }

    /// Publishes `offline` and disconnects, driving the event loop until the disconnect
    /// is out or a short deadline passes (a dead broker must not hold up shutdown).
    async fn goodbye(&mut self) {
        let _ = self.client.try_publish(
            self.topics.availability(),
            QoS::AtLeastOnce,
            true,
            topics::OFFLINE,
        );
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
