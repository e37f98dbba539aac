//! Bad files get a clear error naming the file and line or the key path, and
//! `simulate` writes nothing when it fails.

use std::path::Path;

use super::support::{gridminer, root, text};

const GOOD_SCENARIO: &str = r#"
name = "tiny"
policy = "POLICY"
step = "15m"
hashprice = 50.0

[[series]]
name = "gen"
file = "gen.csv"

[site]
pv = { series = "gen", column = "pv_kw", unit = "kW" }
base_load = "1 kW"
export_limit = "5 kW"
import_limit = "5 kW"

[tariff]
price = { series = "gen", column = "price" }
import_adder_eur_mwh = 100.0
export = "day-ahead"

[[loads]]
kind = "asic"
name = "s19"
count = 2
rated_power = "3250 W"
hashrate = "95 TH/s"
"#;

const GOOD_CSV: &str = "timestamp,pv_kw,price\n\
2018-06-01T10:00:00Z,9.0,30\n\
2018-06-01T10:15:00Z,9.5,30\n\
2018-06-01T10:30:00Z,10.0,30\n\
2018-06-01T10:45:00Z,8.0,30\n";

fn setup(scenario: &str, csv: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let policy = root().join("policies/economic.toml");
    std::fs::write(
        dir.path().join("s.toml"),
        scenario.replace("POLICY", policy.to_str().unwrap()),
    )
    .unwrap();
    std::fs::write(dir.path().join("gen.csv"), csv).unwrap();
    dir
}

/// Runs `simulate` expecting failure; returns the message; checks nothing was written.
fn fails(dir: &Path) -> String {
    let o = gridminer(&["simulate", "s.toml", "--out", "out"], dir);
    assert!(!o.status.success(), "should fail: {}", text(&o));
    assert!(!dir.join("out").exists(), "a failed run wrote output");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "nothing but the inputs: {leftovers:?}");
    text(&o)
}

#[test]
fn the_good_tiny_scenario_runs() {
    let dir = setup(GOOD_SCENARIO, GOOD_CSV);
    let o = gridminer(&["simulate", "s.toml", "--out", "out"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.path().join("out/report.md").exists());
}

#[test]
fn missing_column_names_the_file_and_the_columns_there_are() {
    let dir = setup(GOOD_SCENARIO, &GOOD_CSV.replace("pv_kw", "pv"));
    let e = fails(dir.path());
    assert!(
        e.contains("gen.csv")
            && e.contains("no column \"pv_kw\"")
            && e.contains("timestamp, pv, price"),
        "{e}"
    );
}

#[test]
fn unparsable_number_names_file_line_and_column() {
    let dir = setup(GOOD_SCENARIO, &GOOD_CSV.replace("10.0,30", "ten,30"));
    let e = fails(dir.path());
    assert!(
        e.contains("gen.csv: line 4, column \"pv_kw\": \"ten\" is not a number"),
        "{e}"
    );
    // A row with a field too many is a CSV shape error, named with its file.
    let dir = setup(GOOD_SCENARIO, &GOOD_CSV.replace("9.5,30", "9,5,30"));
    let e = fails(dir.path());
    assert!(e.contains("gen.csv") && e.contains("more fields"), "{e}");
}

#[test]
fn timestamps_out_of_order_name_the_line() {
    let csv = GOOD_CSV.replace("2018-06-01T10:30:00Z", "2018-06-01T10:05:00Z");
    let dir = setup(GOOD_SCENARIO, &csv);
    let e = fails(dir.path());
    assert!(
        e.contains("gen.csv: line 4") && e.contains("must increase"),
        "{e}"
    );
}

#[test]
fn a_timestamp_that_is_not_one_names_the_line() {
    let dir = setup(
        GOOD_SCENARIO,
        &GOOD_CSV.replace("2018-06-01T10:45:00Z", "yesterday"),
    );
    let e = fails(dir.path());
    assert!(e.contains("line 5") && e.contains("yesterday"), "{e}");
}

#[test]
fn every_config_problem_is_listed_with_its_key_path() {
    let broken = GOOD_SCENARIO
        .replace("export_limit = \"5 kW\"", "export_limit = \"5 kilowatts\"")
        .replace(
            "step = \"15m\"",
            "step = \"15 fortnights\"\ncolour = \"blue\"",
        )
        .replace("count = 2", "count = 2\nspeed = 11")
        .replace("rated_power = \"3250 W\"", "rated_power = \"-3 W\"")
        .replace(
            "series = \"gen\", column = \"price\"",
            "series = \"nope\", column = \"price\"",
        );
    let dir = setup(&broken, GOOD_CSV);
    let e = fails(dir.path());
    for path in [
        "site.export_limit",
        "step",
        "colour",
        "loads[0]",
        "tariff.price.series",
    ] {
        assert!(e.contains(path), "{path} not named in:\n{e}");
    }
    assert!(e.contains("unknown power unit \"kilowatts\""), "{e}");
    assert!(e.contains("unknown duration unit \"fortnights\""), "{e}");
    assert!(e.contains("no series named \"nope\""), "{e}");
    // config check lists them too, and fails.
    let o = gridminer(&["config", "check", "s.toml"], dir.path());
    assert!(!o.status.success());
    let listed = text(&o);
    assert!(
        listed.lines().filter(|l| l.starts_with("  ")).count() >= 5,
        "{listed}"
    );
}

#[test]
fn a_broken_policy_case_is_reported_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let text_of = std::fs::read_to_string(root().join("policies/surplus-only.toml")).unwrap();
    let broken = text_of
        .replacen(
            "expect = { reason = \"surplus\", total = \"10 kW\"",
            "expect = { reason = \"surplus\", total = \"11 kW\"",
            1,
        )
        .replace("mode = \"surplus-only\"", "mode = \"greedy\"");
    std::fs::write(dir.path().join("p.toml"), &broken).unwrap();
    let o = gridminer(&["config", "check", "p.toml"], dir.path());
    assert!(!o.status.success());
    assert!(
        text(&o).contains("policy.mode") && text(&o).contains("\"greedy\""),
        "{}",
        text(&o)
    );
    std::fs::write(
        dir.path().join("p.toml"),
        broken.replace("mode = \"greedy\"", "mode = \"surplus-only\""),
    )
    .unwrap();
    let o = gridminer(&["config", "check", "p.toml"], dir.path());
    assert!(!o.status.success());
    assert!(
        text(&o).contains("case[0]") && text(&o).contains("expected 11000.0 W"),
        "{}",
        text(&o)
    );
}
