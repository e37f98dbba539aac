//! Issue 9, holes 6 and 7: config values that panicked or passed silently. `config check`
//! and `run --config` both report them, every one with its key path, and never panic.

use std::path::Path;

use gridminer::config::ConfigError;

use super::support::{gridminer, text};

/// A live site with three loads, two signals, an operator and a frequency rule: valid.
pub const GOOD_SITE: &str = r#"
site_id = "v9"
tick = "1s"
hashprice = 50.0

[policy]
mode = "economic"
max_signal_age = "5m"
safe_limit = "0 W"
frequency = { nominal_hz = 50.0, shed_below_hz = 49.8, absorb_above_hz = 50.2, hold = "30s" }

[site]
pv = true
export_limit = "10 kW"
import_limit = "10 kW"

[tariff]
import_adder_eur_mwh = 100.0
export = "day-ahead"

[mqtt]
broker = "embedded"
listen = "127.0.0.1:0"

[[signals]]
topic = "v9/pv"
quantity = "pv_power"
unit = "kW"
max_age = "1m"

[[signals]]
topic = "v9/price"
quantity = "price"

[[loads]]
kind = "mqtt"
topic = "v9/a/setpoint"
name = "a"
count = 2
rated_power = "3 kW"
hashrate = "100 TH/s"

[[loads]]
kind = "mqtt"
topic = "v9/b/setpoint"
name = "b"
count = 1
rated_power = "3 kW"
hashrate = "100 TH/s"

[[loads]]
kind = "mqtt"
topic = "v9/c/setpoint"
name = "c"
count = 1
rated_power = "3 kW"
hashrate = "100 TH/s"

[[operators]]
id = "tso"
alg = "HS256"
secret = "tso-shared-secret-0123456789abcdef0123"
"#;

/// Writes `config` as `site.toml` in `dir`.
fn write(dir: &Path, config: &str) -> std::path::PathBuf {
    let path = dir.join("site.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The key paths `config check`'s library entry point reports for `config`.
fn problems(config: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    match gridminer::runtime::config::load(&write(dir.path(), config)) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.into_iter().map(|p| p.to_string()).collect()
        }
        Err(e) => panic!("not a config problem: {e}"),
    }
}

fn assert_reported(config: &str, paths: &[&str]) {
    let got = problems(config);
    for path in paths {
        assert!(
            got.iter().any(|p| p.starts_with(&format!("{path}: "))),
            "{path} not reported; got:\n{}",
            got.join("\n")
        );
    }
}

/// Both `config check` and `run --config` refuse `config` with exit status 1 (a panic
/// is 101) and list every path in `paths`; returns what `config check` printed.
fn both_commands_report(config: &str, paths: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), config);
    let mut listed = String::new();
    for args in [
        &["config", "check", "site.toml"][..],
        &["run", "--config", "site.toml"][..],
    ] {
        let o = gridminer(args, dir.path());
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        for path in paths {
            assert!(
                text(&o).contains(&format!("{path}: ")),
                "{args:?}: {path} missing from\n{}",
                text(&o)
            );
        }
        if listed.is_empty() {
            listed = text(&o);
        }
    }
    listed
}

#[test]
fn the_good_site_is_good() {
    assert_eq!(problems(GOOD_SITE), Vec::<String>::new());
}

/// r9 hole 6: durations of about 1.8e19 s or more panicked in `Duration::from_secs_f64`
/// (exit 101) in both `config check` and `run`.
#[test]
fn r9_hole6_absurd_durations_are_problems_not_panics() {
    let broken = GOOD_SITE
        .replace("tick = \"1s\"", "tick = 1e300")
        .replace("max_age = \"1m\"", "max_age = \"1e300s\"")
        .replace("hold = \"30s\"", "hold = \"1e300s\"")
        .replace("secret = \"tso", "max_lifetime = \"1e20d\"\nsecret = \"tso")
        .replace("max_signal_age = \"5m\"", "max_signal_age = \"36501d\"");
    let paths = [
        "tick",
        "signals[0].max_age",
        "policy.frequency.hold",
        "operators[0].max_lifetime",
        "policy.max_signal_age",
    ];
    assert_reported(&broken, &paths);
    let listed = both_commands_report(&broken, &paths);
    assert!(listed.contains("longest duration allowed"), "{listed}");
}

/// r9 hole 7: bad limits and prices, duplicate names, the third load's problem under
/// `loads[0]`, and `safe_limit` above what the site can supply, all accepted or
/// misreported before.
#[test]
fn r9_hole7_limits_prices_names_and_indices_are_checked() {
    for (from, to, path) in [
        (
            "import_limit = \"10 kW\"",
            "import_limit = -5",
            "site.import_limit",
        ),
        (
            "import_limit = \"10 kW\"",
            "import_limit = nan",
            "site.import_limit",
        ),
        (
            "export_limit = \"10 kW\"",
            "export_limit = nan",
            "site.export_limit",
        ),
        (
            "export_limit = \"10 kW\"",
            "export_limit = \"-1 kW\"",
            "site.export_limit",
        ),
        (
            "export_limit = \"10 kW\"",
            "export_limit = inf",
            "site.export_limit",
        ),
        ("hashprice = 50.0", "hashprice = inf", "hashprice"),
        ("hashprice = 50.0", "hashprice = -1.0", "hashprice"),
        ("hashprice = 50.0", "hashprice = nan", "hashprice"),
        (
            "import_adder_eur_mwh = 100.0",
            "import_adder_eur_mwh = nan",
            "tariff.import_adder_eur_mwh",
        ),
        (
            "import_adder_eur_mwh = 100.0",
            "import_adder_eur_mwh = -inf",
            "tariff.import_adder_eur_mwh",
        ),
        (
            "import_adder_eur_mwh = 100.0",
            "import_adder_eur_mwh = 1e9",
            "tariff.import_adder_eur_mwh",
        ),
        ("name = \"c\"", "name = \"a\"", "loads[2].name"),
        (
            "topic = \"v9/c/setpoint\"\nname = \"c\"\ncount = 1\nrated_power = \"3 kW\"",
            "topic = \"v9/c/setpoint\"\nname = \"c\"\ncount = 1\nrated_power = \"-3 kW\"",
            "loads[2].rated_power",
        ),
        (
            "topic = \"v9/c/setpoint\"\nname = \"c\"",
            "topic = \"v9/c/setpoint\"\nname = \"c\"\ncolour = \"red\"",
            "loads[2].colour",
        ),
        (
            "safe_limit = \"0 W\"",
            "safe_limit = \"1 MW\"",
            "policy.safe_limit",
        ),
        (
            "shed_below_hz = 49.8",
            "shed_below_hz = -5.0",
            "policy.frequency.shed_below_hz",
        ),
    ] {
        assert!(GOOD_SITE.contains(from), "{from}");
        let got = problems(&GOOD_SITE.replacen(from, to, 1));
        assert!(
            got.iter().any(|p| p.starts_with(&format!("{path}: "))),
            "{to}: {path} not reported; got:\n{}",
            got.join("\n")
        );
        assert!(
            !got.iter().any(|p| p.starts_with("loads[0]")),
            "{to}: blamed on loads[0]:\n{}",
            got.join("\n")
        );
    }
    // With its PV stated, the site may run mining off PV while blind, up to the import
    // limit plus the PV.
    let pv = GOOD_SITE
        .replace("safe_limit = \"0 W\"", "safe_limit = \"25 kW\"")
        .replace("pv = true", "pv = true\npv_capacity = \"15 kW\"");
    assert_eq!(problems(&pv), Vec::<String>::new());
    assert_reported(
        &pv.replace("safe_limit = \"25 kW\"", "safe_limit = \"26 kW\""),
        &["policy.safe_limit"],
    );
}

/// r9 hole 7: an "everything wrong at once" config listed 4 of its 6 problems. Now each
/// one, with its own path, from both `config check` and `run --config`.
/// r10: a load's `readback` is one topic other than its setpoint's, and neither topic has
/// a wildcard (the driver must know whose report a message is); each wrong one is
/// reported at its own key, and a good one is taken.
#[test]
fn r10_readback_topics_are_checked() {
    use gridminer::runtime::config::LoadDriver;
    let at_b = "topic = \"v9/b/setpoint\"";
    for (to, path) in [
        ("readback = \"v9/b/+/power\"", "loads[1].readback"),
        ("readback = \"v9/b/setpoint\"", "loads[1].readback"),
        ("readback = 5", "loads[1].readback"),
        ("readback = \"\"", "loads[1].readback"),
    ] {
        assert_reported(
            &GOOD_SITE.replacen(at_b, &format!("{at_b}\n{to}"), 1),
            &[path],
        );
    }
    assert_reported(
        &GOOD_SITE.replacen(at_b, "topic = \"v9/#\"", 1),
        &["loads[1].topic"],
    );
    let good = GOOD_SITE.replacen(at_b, &format!("{at_b}\nreadback = \"v9/b/power\""), 1);
    let dir = tempfile::tempdir().unwrap();
    let site = gridminer::runtime::config::load(&write(dir.path(), &good)).expect("valid");
    assert_eq!(
        site.config.drivers[1],
        LoadDriver::Mqtt {
            topic: "v9/b/setpoint".into(),
            readback: Some("v9/b/power".into()),
        }
    );
    assert!(matches!(
        &site.config.drivers[0],
        LoadDriver::Mqtt { readback: None, .. }
    ));
}

#[test]
fn r9_hole7_everything_wrong_at_once_is_listed_at_once() {
    let broken = GOOD_SITE
        .replace("tick = \"1s\"", "tick = \"1e300s\"\ncolour = \"blue\"")
        .replace("export_limit = \"10 kW\"", "export_limit = nan")
        .replace("hashprice = 50.0", "hashprice = inf")
        .replace("safe_limit = \"0 W\"", "safe_limit = \"1 MW\"")
        .replacen("name = \"b\"", "name = \"a\"", 1)
        .replacen(
            "name = \"c\"\ncount = 1\nrated_power = \"3 kW\"",
            "name = \"c\"\ncount = 1\nspeed = 11\nrated_power = \"3 kilowatts\"\nmin_on = \"1e300s\"",
            1,
        )
        .replace("quantity = \"price\"", "quantity = \"price\"\nmax_age = -1");
    let paths = [
        "tick",
        "colour",
        "site.export_limit",
        "hashprice",
        "policy.safe_limit",
        "loads[1].name",
        "loads[2].speed",
        "loads[2].rated_power",
        "loads[2].min_on",
        "signals[1].max_age",
    ];
    assert_reported(&broken, &paths);
    both_commands_report(&broken, &paths);
}

pub const SCENARIO: &str = r#"
name = "v9"
step = "15m"
hashprice = 50.0

[policy]
mode = "economic"

[[series]]
name = "gen"
file = "gen.csv"

[site]
pv = { series = "gen", column = "pv_kw", unit = "kW", capacity = "10 kW", reference_capacity = "10 kW" }
base_load = "1 kW"
export_limit = "5 kW"
import_limit = "5 kW"

[tariff]
price = { series = "gen", column = "price" }
import_adder_eur_mwh = 100.0
export = "day-ahead"

[[loads]]
kind = "asic"
name = "a"
count = 2
rated_power = "3250 W"
hashrate = "95 TH/s"

[[loads]]
kind = "asic"
name = "b"
count = 2
rated_power = "3250 W"
hashrate = "95 TH/s"

[[loads]]
kind = "cpu"
name = "c"
rated_power = "100 W"
hashrate = "30 MH/s"
"#;

fn scenario_problems(scenario: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, scenario).unwrap();
    match gridminer::scenario::load_scenario(&path, &[]) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

/// r9 holes 6 and 7 in scenario files: the same values, the same checks.
#[test]
fn r9_hole6_hole7_scenarios_are_checked_alike() {
    assert_eq!(scenario_problems(SCENARIO), Vec::<String>::new());
    for (from, to, path) in [
        ("step = \"15m\"", "step = 1e300", "step"),
        (
            "mode = \"economic\"",
            "mode = \"economic\"\nmin_on = \"1e300s\"",
            "policy.min_on",
        ),
        (
            "import_limit = \"5 kW\"",
            "import_limit = nan",
            "site.import_limit",
        ),
        (
            "export_limit = \"5 kW\"",
            "export_limit = -inf",
            "site.export_limit",
        ),
        ("hashprice = 50.0", "hashprice = inf", "hashprice"),
        (
            "import_adder_eur_mwh = 100.0",
            "import_adder_eur_mwh = nan",
            "tariff.import_adder_eur_mwh",
        ),
        ("name = \"b\"", "name = \"a\"", "loads[1].name"),
        (
            "name = \"c\"\nrated_power = \"100 W\"",
            "name = \"c\"\nrated_power = \"1e308 GW\"",
            "loads[2].rated_power",
        ),
        (
            "name = \"c\"",
            "name = \"c\"\nthreads = 4",
            "loads[2].threads",
        ),
        (
            "mode = \"economic\"",
            "mode = \"economic\"\nsafe_limit = \"16 kW\"",
            "policy.safe_limit",
        ),
    ] {
        assert!(SCENARIO.contains(from), "{from}");
        let got = scenario_problems(&SCENARIO.replacen(from, to, 1));
        assert!(
            got.iter().any(|p| p.starts_with(&format!("{path}: "))),
            "{to}: {path} not reported; got:\n{}",
            got.join("\n")
        );
    }
    // The import limit plus the stated PV capacity is allowed.
    assert_eq!(
        scenario_problems(&SCENARIO.replace(
            "mode = \"economic\"",
            "mode = \"economic\"\nsafe_limit = \"15 kW\""
        )),
        Vec::<String>::new()
    );
}

/// Issue 11: a load's wear cost per start is checked at its own key path, as the other
/// wear keys are: negative, NaN, infinite or above 1000 EUR is a problem (a price in
/// cents, say), 0 to 1000 EUR is fine. Catches a cost that slips through unchecked into
/// the economics, where a NaN would silently allow or forbid every start.
#[test]
fn r11_start_cost_is_range_checked_at_its_key_path() {
    let at = "name = \"a\"\ncount = 2";
    let with = |v: &str| GOOD_SITE.replacen(at, &format!("{at}\nstart_cost_eur = {v}"), 1);
    for bad in ["-1.0", "nan", "inf", "1000.5"] {
        assert_reported(&with(bad), &["loads[0].start_cost_eur"]);
    }
    for good in ["0.0", "2.5", "1000.0"] {
        assert_eq!(problems(&with(good)), Vec::<String>::new(), "{good}");
    }
    // The policy's payback time for a start: a week at most.
    let payback = |v: &str| {
        GOOD_SITE.replacen(
            "mode = \"economic\"",
            &format!("mode = \"economic\"\nstart_payback = \"{v}\""),
            1,
        )
    };
    assert_reported(&payback("8d"), &["policy.start_payback"]);
    assert_eq!(problems(&payback("12h")), Vec::<String>::new());
}

/// r12 defect 1: a load's hardware `max_starts_per_day = 0` was accepted, then ignored
/// online (each unit still started once a day) while the optimum honoured it. It is now
/// rejected at its key path, as the policy's own limit of 0 is.
#[test]
fn r12_a_hardware_start_limit_of_zero_is_a_problem() {
    let at = "name = \"a\"\ncount = 2";
    let with = |v: &str| GOOD_SITE.replacen(at, &format!("{at}\nmax_starts_per_day = {v}"), 1);
    assert_reported(&with("0"), &["loads[0].max_starts_per_day"]);
    assert_eq!(problems(&with("1")), Vec::<String>::new());
}
