//! The embedded MQTT broker (rumqttd), so a single box needs nothing else.
//!
//! rumqttd runs its router and servers on threads of its own and has no stop: the broker
//! lives as long as the process. `start` returns once the listener accepts connections;
//! a daemon stopped and started again in the same process (tests, a reload) finds the
//! broker it started before on that address and uses it, rather than failing to bind.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use super::MqttError;

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    pub listen: SocketAddr,
}

/// Addresses this process runs a broker on.
static STARTED: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

impl EmbeddedBroker {
    /// Starts a broker on `listen` (v3.1.1), or finds the one this process already runs
    /// there, and waits until it accepts connections. Blocks: call it off the runtime.
    pub fn start(listen: SocketAddr) -> Result<Self, MqttError> {
        // Held throughout, so two starts on one address cannot both bind.
        let mut started = STARTED
            .lock()
            .map_err(|_| MqttError::Broker("a broker start panicked".into()))?;
        if started.contains(&listen) {
            return Ok(EmbeddedBroker { listen });
        }
        let broker = Self::spawn(listen)?;
        started.push(listen);
        Ok(broker)
    }

    fn spawn(listen: SocketAddr) -> Result<Self, MqttError> {
        let server = ServerSettings {
            name: "v4".into(),
            listen,
            tls: None,
            next_connection_delay_ms: 1,
            connections: ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: 256 * 1024,
                max_inflight_count: 500,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let config = Config {
            id: 0,
            router: RouterConfig {
                max_connections: 1000,
                max_outgoing_packet_count: 2000,
                max_segment_size: 100 * 1024 * 1024,
                max_segment_count: 10,
                ..Default::default()
            },
            v4: Some(HashMap::from([("1".to_string(), server)])),
            v5: None,
            ws: None,
            cluster: None,
            console: None,
            bridge: None,
            prometheus: None,
            metrics: None,
        };
        let mut broker = Broker::new(config);
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(error) = broker.start() {
                    tracing::error!(%error, "Embedded MQTT broker stopped");
                }
            })
            .map_err(|e| MqttError::Broker(e.to_string()))?;
        // Wait for the listener, with a deadline: the broker binds on its own thread.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(200)) {
                Ok(_) => return Ok(EmbeddedBroker { listen }),
                Err(e) if Instant::now() > deadline => {
                    return Err(MqttError::Broker(format!("no listener on {listen}: {e}")))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}
