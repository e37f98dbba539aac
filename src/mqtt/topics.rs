//! The one table of MQTT topics gridminer publishes and subscribes to.

/// Topics of one site, `gridminer/{site}/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    site: String,
}

/// Home Assistant's discovery prefix.
pub const HA_DISCOVERY_PREFIX: &str = "homeassistant";
/// Payloads of the availability topic.
pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

impl Topics {
    pub fn new(site: &str) -> Self {
        Topics {
            site: site.to_string(),
        }
    }
    pub fn site(&self) -> &str {
        &self.site
    }
    /// Retained JSON: every signal with value and age, the decision and its reason, each
    /// load's target and actual power, the operator command in force.
    pub fn state(&self) -> String {
        format!("gridminer/{}/state", self.site)
    }
    /// Retained `online` / `offline` (the offline one is the connection's last will).
    pub fn availability(&self) -> String {
        format!("gridminer/{}/availability", self.site)
    }
    /// Operator commands in: compact JWS.
    pub fn cmd(&self) -> String {
        format!("gridminer/{}/cmd", self.site)
    }
    /// Answers to operator commands: `{jti, accepted, reason, effective_limit_w, at}`.
    pub fn cmd_ack(&self) -> String {
        format!("gridminer/{}/cmd/ack", self.site)
    }
    /// Retained: the ledger's latest signed checkpoint (c2sp.org/tlog-checkpoint).
    pub fn ledger_checkpoint(&self) -> String {
        format!("gridminer/{}/ledger/checkpoint", self.site)
    }
    /// Home Assistant discovery config of one entity.
    pub fn ha_config(&self, component: &str, object: &str) -> String {
        format!(
            "{HA_DISCOVERY_PREFIX}/{component}/gridminer_{}/{object}/config",
            self.site
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_of_a_site() {
        let t = Topics::new("plant-1");
        assert_eq!(t.state(), "gridminer/plant-1/state");
        assert_eq!(t.availability(), "gridminer/plant-1/availability");
        assert_eq!(t.cmd(), "gridminer/plant-1/cmd");
        assert_eq!(t.cmd_ack(), "gridminer/plant-1/cmd/ack");
        assert_eq!(
            t.ha_config("sensor", "pv_power"),
            "homeassistant/sensor/gridminer_plant-1/pv_power/config"
        );
    }
}
