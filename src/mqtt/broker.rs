//! The embedded MQTT broker (rumqttd), so a single box needs nothing else.
//!
//! rumqttd runs its router and servers on threads of its own and has no stop: the broker
//! lives as long as the process. `start` returns once the listener accepts connections;
//! a daemon stopped and started again in the same process (tests, a reload) finds the
//! broker it started before on that address and uses it, rather than failing to bind.
//!
//! With `mqtt.username` and a password configured, the broker admits only that login
//! (rumqttd's static `auth` table, compared in constant time; a wrong or missing login
//! is dropped before any packet is answered). Without one it admits anyone who can reach
//! the address, which is why listening beyond loopback without a login is warned about.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use super::MqttError;

/// The one login the embedded broker admits.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: configs are logged and printed.
        f.debug_struct("Login")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How the embedded broker is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedSettings {
    pub listen: SocketAddr,
    /// `None`: anyone who reaches `listen` may connect, publish and subscribe.
    pub login: Option<Login>,
    /// `mqtt.max_packet_size`: the broker takes packets up to `super::broker_limit` of
    /// it and disconnects a client that sends more, so nothing larger is ever stored or
    /// passed on; the daemon drops what it receives between the two.
    pub max_packet_size: usize,
}

impl EmbeddedSettings {
    /// Whether anyone beyond this host may connect without a login: no login, and an
    /// address other than loopback (a wildcard such as 0.0.0.0 included).
    pub fn open_beyond_loopback(&self) -> bool {
        self.login.is_none() && !self.listen.ip().is_loopback()
    }
}

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    pub listen: SocketAddr,
}

/// The brokers this process runs.
static STARTED: Mutex<Vec<EmbeddedSettings>> = Mutex::new(Vec::new());

impl EmbeddedBroker {
    /// Starts a broker (v3.1.1) as `settings` say, or finds the one this process already
    /// runs on that address, and waits until it accepts connections. A broker already
    /// running there with other settings is an error (rumqttd cannot be reconfigured or
    /// stopped). Blocks: call it off the runtime.
    pub fn start(settings: &EmbeddedSettings) -> Result<Self, MqttError> {
        let listen = settings.listen;
        // Held throughout, so two starts on one address cannot both bind.
        let mut started = STARTED
            .lock()
            .map_err(|_| MqttError::Broker("a broker start panicked".into()))?;
        if let Some(running) = started.iter().find(|s| s.listen == listen) {
            if running != settings {
                return Err(MqttError::Broker(format!(
                    "this process runs a broker on {listen} already, with other settings \
                     (login or max_packet_size); it cannot be changed without a restart"
                )));
            }
            return Ok(EmbeddedBroker { listen });
        }
        if settings.open_beyond_loopback() {
            tracing::warn!(
                %listen,
                "The embedded MQTT broker listens beyond loopback without a login: anyone who \
                 reaches it can publish signals and read the site's state; set mqtt.username \
                 and mqtt.password (or password_file), or listen on 127.0.0.1"
            );
        }
        let broker = Self::spawn(settings)?;
        started.push(settings.clone());
        Ok(broker)
    }

    fn spawn(settings: &EmbeddedSettings) -> Result<Self, MqttError> {
        let listen = settings.listen;
        let auth = settings
            .login
            .as_ref()
            .map(|l| HashMap::from([(l.username.clone(), l.password.clone())]));
        let server = ServerSettings {
            name: "v4".into(),
            listen,
            tls: None,
            next_connection_delay_ms: 1,
            connections: ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: super::broker_limit(settings.max_packet_size),
                max_inflight_count: 500,
                auth,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r9_hole10_listening_beyond_loopback_without_a_login_is_flagged() {
        let login = Some(Login {
            username: "site".into(),
            password: "pw".into(),
        });
        let cases = [
            ("127.0.0.1:1883", None, false),
            ("[::1]:1883", None, false),
            ("0.0.0.0:1883", None, true),
            ("[::]:1883", None, true),
            ("192.168.1.5:1883", None, true),
            ("0.0.0.0:1883", login.clone(), false),
            ("127.0.0.1:1883", login, false),
        ];
        for (listen, login, open) in cases {
            let s = EmbeddedSettings {
                listen: listen.parse().unwrap(),
                login,
                max_packet_size: 1 << 18,
            };
            assert_eq!(s.open_beyond_loopback(), open, "{listen}");
        }
    }

    #[test]
    fn a_login_never_shows_its_password() {
        let l = Login {
            username: "site".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{l:?}").contains("hunter2"));
    }
}
