//! The hard cut: a miner's outlet switched off (and on again) through a PDU relay, for a
//! miner whose firmware would not stop. Over MQTT: `OFF` or `ON`, retained, on the
//! fleet's `relay_topic` with `{miner}` replaced by the miner's address, the way a relay
//! board or a Tasmota/Shelly PDU takes it. A switch counts as sent when the broker has
//! acknowledged it (QoS 1); that the power is gone is what the miner's silence then
//! shows (see `control`).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use crate::actuator::ActuatorError;
use crate::mqtt::{publish_once, MqttSettings};

/// How long a switch may take to reach the broker.
pub const SWITCH_WITHIN: Duration = Duration::from_secs(5);

/// Switches a miner's outlet.
pub trait Relay: Send + Sync {
    fn switch(
        &self,
        miner: IpAddr,
        on: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), ActuatorError>> + Send + '_>>;
}

/// A relay told over MQTT.
pub struct MqttRelay {
    pub settings: MqttSettings,
    /// The topic, with `{miner}` for the miner's address.
    pub topic: String,
}

impl MqttRelay {
    pub fn topic_for(&self, miner: IpAddr) -> String {
        self.topic.replace("{miner}", &miner.to_string())
    }
}

impl Relay for MqttRelay {
    fn switch(
        &self,
        miner: IpAddr,
        on: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), ActuatorError>> + Send + '_>> {
        let mut settings = self.settings.clone();
        // A connection of its own per switch: a hard cut is rare, and must not wait on
        // (or be lost with) the daemon's own connection. Its id names the miner: two
        // miners cut at once must not share one (the broker would drop the first).
        settings.client_id = format!("{}-relay-{miner}", settings.client_id);
        let message = (
            self.topic_for(miner),
            if on { "ON" } else { "OFF" }.to_string(),
        );
        Box::pin(async move {
            publish_once(&settings, &[message], SWITCH_WITHIN)
                .await
                .map_err(|e| ActuatorError::Transport(format!("relay of {miner}: {e}")))
        })
    }
}
