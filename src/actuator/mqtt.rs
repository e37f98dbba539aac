//! A load controlled by something else over MQTT: its setpoint is published, retained,
//! on its topic (`{"power_w": 1000.0, "units_on": 2}`), and, where the equipment reports
//! it, its measured power arrives on a read-back topic.
//!
//! The driver keeps a connection of its own to the daemon's broker (same login, TLS and
//! packet limit; no availability, which the daemon's connection speaks for), so that
//! what it confirms is about its own messages only. A write is confirmed when the broker
//! sends the setpoint back on the subscription the driver holds on its own topic: the
//! broker then holds it as the retained setpoint every subscriber gets. A publish the
//! broker drops (an ACL that forbids it; MQTT 3.1.1 acknowledges it all the same) or that
//! is lost with the connection never comes back, and fails as
//! [`ActuatorError::NotConfirmed`]; with no connection up the write is not even queued
//! (rumqttc drops what was queued for a connection that then fails) and fails as
//! [`ActuatorError::Transport`] once [`CONFIRM_WITHIN`] passed without one. So the
//! broker's user needs read as well as write access to the setpoint topic.
//!
//! Must not: retry inside (the daemon decides, see `SetPower`), or block on a full queue.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{ActuatorError, Commanded, ReadPower, SetPower};
use crate::clock::Clock;
use crate::decision::LoadTarget;
use crate::mqtt::{Inbound, MqttConnection, MqttError, MqttSettings, MqttStats};
use crate::state::Reading;
use crate::units::Watts;

/// How long a write may take, from the call until the broker sent the setpoint back
/// (a connection that is still coming up included), before it counts as failed. A broker on the same site answers in milliseconds; this allows for a slow
/// link without holding a newer target back for long.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// The body of a setpoint message: `{"power_w": 1000.0, "units_on": 2}`.
pub fn setpoint_body(target: LoadTarget) -> String {
    serde_json::json!({ POWER_KEY: target.power.0, "units_on": target.units_on }).to_string()
}

/// The JSON key of a read-back given as an object (`{"power_w": 980}`), the same as the
/// setpoint's.
pub const POWER_KEY: &str = "power_w";

/// A read-back above this many times the load's rating cannot be its power (a meter in
/// kW read as W, a broken sensor) and is refused rather than counted.
pub const READBACK_MAX_OF_RATED: f64 = 2.0;

/// One MQTT load: where its setpoint goes and where its read-back comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttLoad {
    /// The setpoint topic.
    pub topic: String,
    /// The topic the equipment reports its measured power on (W, a number or
    /// `{"power_w": ...}`); `None`: it does not, and the load is shown unconfirmed.
    pub readback: Option<String>,
    /// Count × rating: bounds what a read-back may say.
    pub rated: Watts,
}

/// Writes the setpoint ([`SetPower`]).
pub struct MqttSetpoint {
    client: AsyncClient,
    topic: String,
    /// The last message the broker sent on the setpoint topic.
    echo: watch::Receiver<Option<Inbound>>,
    stats: Arc<MqttStats>,
    clock: Arc<dyn Clock>,
}

/// Reads the equipment's reports ([`ReadPower`]).
pub struct MqttReadback {
    topic: String,
    reports: watch::Receiver<Option<Inbound>>,
    max: Watts,
}

/// The driver's connection: run it (see [`MqttLink::run`]) for the setpoint and the
/// read-back to work.
pub struct MqttLink {
    connection: MqttConnection,
    inbound: mpsc::Receiver<Inbound>,
    topic: String,
    readback: Option<String>,
    echo: watch::Sender<Option<Inbound>>,
    reports: watch::Sender<Option<Inbound>>,
}

/// Sets up the driver of `load` on a connection of its own (`settings.client_id` must
/// differ from every other client's). Nothing is sent until the link runs.
pub fn connect(
    settings: &MqttSettings,
    load: &MqttLoad,
    clock: Arc<dyn Clock>,
) -> Result<(MqttSetpoint, Option<MqttReadback>, MqttLink), MqttError> {
    let mut subscriptions = vec![load.topic.clone()];
    subscriptions.extend(load.readback.clone());
    // Two topics, retained messages at most on each subscribe: a small queue suffices,
    // and the router below never waits on anyone.
    let (tx, inbound) = mpsc::channel(64);
    let (connection, client) = MqttConnection::for_driver(settings, subscriptions, tx)?;
    let (echo_tx, echo) = watch::channel(None);
    let (reports_tx, reports) = watch::channel(None);
    let setpoint = MqttSetpoint {
        client,
        topic: load.topic.clone(),
        echo,
        stats: connection.stats.clone(),
        clock,
    };
    let readback = load.readback.as_ref().map(|topic| MqttReadback {
        topic: topic.clone(),
        reports,
        max: load.rated * READBACK_MAX_OF_RATED,
    });
    let link = MqttLink {
        connection,
        inbound,
        topic: load.topic.clone(),
        readback: load.readback.clone(),
        echo: echo_tx,
        reports: reports_tx,
    };
    Ok((setpoint, readback, link))
}

impl MqttSetpoint {
    /// Whether the driver's connection is up.
    pub fn connected(&self) -> bool {
        self.stats.connected.load(Ordering::Relaxed)
    }
}

impl SetPower for MqttSetpoint {
    async fn set(&mut self, target: LoadTarget) -> Result<Commanded, ActuatorError> {
        let deadline = tokio::time::Instant::now() + CONFIRM_WITHIN;
        // A connection still coming up (at start, after a reconnect) is waited for,
        // within the same deadline: a write queued while it is down would be dropped.
        while !self.connected() {
            let changed = self.stats.connection_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.connected() {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(ActuatorError::Transport(format!(
                    "no connection to the MQTT broker within {:?}",
                    CONFIRM_WITHIN
                )));
            }
        }
        let body = Bytes::from(setpoint_body(target));
        // Only what the broker sends after this publish can confirm it.
        self.echo.mark_unchanged();
        let at = self.clock.now();
        // Retained, so equipment that reconnects learns its setpoint at once.
        self.client
            .try_publish(&self.topic, QoS::AtLeastOnce, true, body.clone())
            .map_err(|e| ActuatorError::Transport(e.to_string()))?;
        let echoed = async {
            loop {
                self.echo
                    .changed()
                    .await
                    .map_err(|_| ActuatorError::Stopped)?;
                if self
                    .echo
                    .borrow_and_update()
                    .as_ref()
                    .is_some_and(|m| m.payload == body)
                {
                    return Ok(());
                }
            }
        };
        match tokio::time::timeout_at(deadline, echoed).await {
            Ok(Ok(())) => Ok(Commanded { target, at }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ActuatorError::NotConfirmed {
                within: CONFIRM_WITHIN,
                what: format!("the broker did not return the setpoint on {}", self.topic),
            }),
        }
    }
}

impl ReadPower for MqttReadback {
    async fn read(&mut self) -> Result<Reading<Watts>, ActuatorError> {
        self.reports
            .changed()
            .await
            .map_err(|_| ActuatorError::Stopped)?;
        let msg = self
            .reports
            .borrow_and_update()
            .clone()
            .ok_or(ActuatorError::Stopped)?;
        let value = parse_power(&msg.payload)
            .map_err(|e| ActuatorError::BadReading(format!("on {}: {e}", self.topic)))?;
        if !(Watts::ZERO..=self.max).contains(&value) {
            return Err(ActuatorError::BadReading(format!(
                "on {}: {value} is outside 0 W to {} ({READBACK_MAX_OF_RATED} × rated)",
                self.topic, self.max
            )));
        }
        Ok(Reading { value, at: msg.at })
    }
}

/// A read-back payload: a number of watts, or an object with [`POWER_KEY`].
pub fn parse_power(payload: &[u8]) -> Result<Watts, String> {
    let clip = |s: &str| s.chars().take(64).collect::<String>();
    let text = std::str::from_utf8(payload).map_err(|_| "not UTF-8".to_string())?;
    let value = match serde_json::from_str::<serde_json::Value>(text.trim()) {
        Ok(serde_json::Value::Number(n)) => n.as_f64(),
        Ok(serde_json::Value::Object(o)) => match o.get(POWER_KEY) {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(other) => {
                return Err(format!(
                    "{POWER_KEY} is not a number: {}",
                    clip(&other.to_string())
                ))
            }
            None => return Err(format!("no {POWER_KEY} in {}", clip(text))),
        },
        _ => None,
    };
    match value {
        Some(v) if v.is_finite() => Ok(Watts(v)),
        _ => Err(format!("not a power in W: {:?}", clip(text))),
    }
}

impl MqttLink {
    /// Keeps the connection up and hands what arrives to the setpoint and the read-back,
    /// until `stop`; then disconnects. Stop it only after the load's last write (the safe
    /// state) is out.
    pub async fn run(self, stop: CancellationToken) -> Result<(), MqttError> {
        let MqttLink {
            connection,
            mut inbound,
            topic,
            readback,
            echo,
            reports,
        } = self;
        let route = async move {
            // Ends when the connection does (it holds the sender).
            while let Some(msg) = inbound.recv().await {
                if msg.topic == topic {
                    echo.send_replace(Some(msg));
                } else if readback.as_ref() == Some(&msg.topic) {
                    reports.send_replace(Some(msg));
                }
            }
        };
        let (ran, ()) = tokio::join!(connection.run(stop), route);
        ran
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readback_payloads() {
        assert_eq!(parse_power(b"980.5"), Ok(Watts(980.5)));
        assert_eq!(parse_power(b" 12 \n"), Ok(Watts(12.0)));
        assert_eq!(parse_power(br#"{"power_w": 3000}"#), Ok(Watts(3000.0)));
        for bad in [
            &b"3.2 kW"[..],
            b"abc",
            br#"{"power": 1}"#,
            br#"{"power_w": "1"}"#,
            b"\xff",
            b"",
        ] {
            assert!(
                parse_power(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
