//! The example site configs in deploy/examples, as shipped: each passes `gridminer config
//! check` (the placeholder files they name sit beside them), and each describes the site
//! it says it does.

use super::support::{gridminer, root, text};

/// Every site config in deploy/examples passes `gridminer config check` as shipped, with
/// the placeholder files beside it, and the SunSpec/TLS one describes what it says.
#[test]
fn every_example_site_config_checks_out() {
    use gridminer::signal::modbus::DeviceKind;
    use gridminer::signal::operator::OperatorKey;
    use gridminer::{mqtt::config::Broker, runtime::config::LoadDriver};

    let dir = root().join("deploy/examples");
    let mut sites: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    sites.sort();
    let names: Vec<_> = sites.iter().map(|p| p.file_name().unwrap()).collect();
    assert_eq!(
        names,
        ["asic-fleet.toml", "embedded.toml", "sunspec-tls.toml"]
    );
    for path in &sites {
        let o = gridminer(&["config", "check", &path.display().to_string()], &root());
        assert!(o.status.success(), "{}", text(&o));
        let site = gridminer::runtime::config::load(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if path.ends_with("asic-fleet.toml") {
            // The fleet is checked without the network: its 20 miners listed, its
            // models' keys kept for the groups made at start.
            let f = &site.config.fleets;
            assert_eq!(f.len(), 1);
            assert_eq!(f[0].miners.len(), 20);
            assert!(f[0].models.contains_key("M30SPlusVE40"));
            continue;
        }
        if !path.ends_with("sunspec-tls.toml") {
            continue;
        }
        let c = &site.config;
        assert_eq!(c.broker, Broker::External);
        assert!(c.mqtt.tls_ca.is_some(), "TLS");
        assert!(
            c.mqtt.username.is_some() && c.mqtt.password.is_some(),
            "a login"
        );
        let roles: Vec<_> = site
            .modbus
            .iter()
            .map(|d| match &d.kind {
                DeviceKind::SunSpec { role } => role.as_str(),
                DeviceKind::Raw { .. } => "raw",
            })
            .collect();
        assert_eq!(roles, ["pv", "grid-meter"]);
        assert!(matches!(
            site.operators.operators[..],
            [ref op] if matches!(op.key, OperatorKey::Ed25519(_))
        ));
        assert!(site.telemetry.influx.is_some());
        assert!(matches!(
            c.drivers[..],
            [LoadDriver::Hasher { .. }, LoadDriver::Mqtt { .. }]
        ));
    }
}
