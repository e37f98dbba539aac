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

/// `setup`, with the scenario's `step = "15m"` line followed by `more`.
fn setup_with(more: &str, csv: &str) -> tempfile::TempDir {
    setup(
        &GOOD_SCENARIO.replacen("step = \"15m\"", &format!("step = \"15m\"\n{more}"), 1),
        csv,
    )
}

/// `simulate s.toml` in `dir` with a `--set` for each of `sets`.
fn simulate(dir: &Path, sets: &[&str]) -> std::process::Output {
    let mut args = vec!["simulate", "s.toml", "--out", "out"];
    for s in sets {
        args.extend(["--set", s]);
    }
    gridminer(&args, dir)
}

/// What `simulate` with `sets` printed; it must succeed.
fn runs(dir: &Path, sets: &[&str]) -> String {
    let o = simulate(dir, sets);
    assert!(o.status.success(), "{sets:?}: {}", text(&o));
    text(&o)
}

/// What `simulate` with `sets` printed; it must fail.
fn refused(dir: &Path, sets: &[&str]) -> String {
    let o = simulate(dir, sets);
    assert!(!o.status.success(), "{sets:?} should fail: {}", text(&o));
    text(&o)
}

/// Issue 12 defect 7: a window shorter than one step ran with 0 steps and exited 0,
/// every KPI 0 or NaN. It is an error: at `end` when the scenario gives both ends, from
/// the replay when the data's end makes it short.
#[test]
fn r12_defect7_a_window_shorter_than_one_step_is_an_error() {
    let dir = setup_with(
        "start = \"2018-06-01T10:00:00Z\"\nend = \"2018-06-01T10:10:00Z\"",
        GOOD_CSV,
    );
    let e = fails(dir.path());
    assert!(
        e.contains("end: 2018-06-01T10:10:00Z is less than one step (15m) after start"),
        "{e}"
    );
    // The data ends at 11:00, ten minutes after the start.
    let dir = setup_with("start = \"2018-06-01T10:50:00Z\"", GOOD_CSV);
    let e = fails(dir.path());
    assert!(e.contains("shorter than one step (15m)"), "{e}");
    // One whole step is a run.
    let dir = setup_with("start = \"2018-06-01T10:45:00Z\"", GOOD_CSV);
    runs(dir.path(), &[]);
}

/// Issue 12 defect 8: a series value no price, hashprice or power can have (a price of
/// 1e200, a negative hashprice a constant may not be, PV that overflows once scaled to
/// W) ran and gave meaningless figures or `null`s. Each is an error naming the file, the
/// line, the time and the column, with the range; a huge constant (an adder of 1e308, a
/// base load of 1e300 W) is named by its key path and written as a person would read it.
#[test]
fn r12_defect8_absurd_series_values_and_constants_are_errors() {
    let dir = setup(GOOD_SCENARIO, &GOOD_CSV.replace("10.0,30", "10.0,1e200"));
    let e = fails(dir.path());
    assert!(
        e.contains("gen.csv: line 4 (2018-06-01T10:30:00Z), column \"price\": 1e200 EUR/MWh is outside -100000..=100000 EUR/MWh"),
        "{e}"
    );
    // PV in kW that is +inf once in W.
    let dir = setup(GOOD_SCENARIO, &GOOD_CSV.replace("9.5,30", "1e306,30"));
    let e = fails(dir.path());
    assert!(
        e.contains("gen.csv: line 3 (2018-06-01T10:15:00Z), column \"pv_kw\": inf W is outside"),
        "{e}"
    );
    // A hashprice series obeys the constant's rule: 0 or more.
    let hp_series = GOOD_SCENARIO.replace(
        "hashprice = 50.0",
        "hashprice = { series = \"gen\", column = \"hp\" }",
    );
    let csv = "timestamp,pv_kw,price,hp\n\
        2018-06-01T10:00:00Z,9.0,30,50\n\
        2018-06-01T10:15:00Z,9.5,30,-5\n";
    let e = fails(setup(&hp_series, csv).path());
    assert!(
        e.contains(
            "line 3 (2018-06-01T10:15:00Z), column \"hp\": -5 EUR/(PH/s·day) is outside 0..=10000"
        ),
        "{e}"
    );
    let negative = GOOD_SCENARIO.replace("hashprice = 50.0", "hashprice = -5.0");
    let e = fails(setup(&negative, GOOD_CSV).path());
    assert!(
        e.contains("hashprice: -5 must be a finite number within 0..=10000"),
        "{e}"
    );
    runs(setup(&hp_series, &csv.replace(",-5", ",55")).path(), &[]);
    // Constants: the key path, and 1e308 rather than its 309 digits.
    let dir = setup(GOOD_SCENARIO, GOOD_CSV);
    let e = refused(dir.path(), &["tariff.import_adder_eur_mwh=1e308"]);
    assert!(
        e.contains("tariff.import_adder_eur_mwh: 1e308 must be a finite price within -100000..=100000 EUR/MWh"),
        "{e}"
    );
    let e = refused(dir.path(), &["site.base_load=1e300 W"]);
    assert!(
        e.contains("site.base_load: 1e300 W must be a finite power within 0..=1e12 W"),
        "{e}"
    );
}

/// Issue 12 defect 8: `--set loads[0].count=0` said "unknown key" (the index was taken
/// as part of a key name), though the README promises any key path. Indexed paths work
/// for `--set` and `sweep --vary`, so the value's own check speaks, at its key path; an
/// index past the end is a problem of its own.
#[test]
fn r12_defect8_set_and_vary_take_indexed_key_paths() {
    let dir = setup(GOOD_SCENARIO, GOOD_CSV);
    let e = refused(dir.path(), &["loads[0].count=0"]);
    assert!(e.contains("loads[0].count: must be at least 1"), "{e}");
    assert!(!e.contains("unknown key"), "{e}");
    let e = refused(dir.path(), &["loads[3].count=1"]);
    assert!(
        e.contains("loads[3].count: loads has 1 entry; there is no loads[3]"),
        "{e}"
    );
    assert!(runs(dir.path(), &["loads[0].count=7"]).contains("s19 (7 units)"));
    // sweep --vary reads the same paths.
    let o = gridminer(
        &[
            "sweep",
            "s.toml",
            "--vary",
            "loads[0].count=1,2",
            "--out",
            "sweep",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("loads[0].count="), "{}", text(&o));
}

/// Issue 12 defect 8: a missing file's error said so three times (the error's own
/// message, then its source, then the source's), for a scenario and for a series file.
/// Once is enough.
#[test]
fn r12_defect8_a_missing_file_is_said_once() {
    let dir = setup(GOOD_SCENARIO, GOOD_CSV);
    let o = gridminer(&["simulate", "nothere.toml", "--out", "out"], dir.path());
    assert!(!o.status.success());
    assert_eq!(text(&o).matches("No such file").count(), 1, "{}", text(&o));
    assert!(text(&o).contains("nothere.toml"), "{}", text(&o));
    std::fs::remove_file(dir.path().join("gen.csv")).unwrap();
    let e = refused(dir.path(), &[]);
    assert_eq!(e.matches("No such file").count(), 1, "{e}");
    assert_eq!(e.matches("gen.csv").count(), 1, "{e}");
}

/// Issue 12 defect 8: an operator command whose `until` is not after its `at` never
/// holds, and was accepted silently. It is a problem at `operator[i].until`.
#[test]
fn r12_defect8_an_operator_until_before_its_at_is_rejected() {
    let op = |until: &str| {
        format!(
            "{GOOD_SCENARIO}\n[[operator]]\nat = \"2018-06-01T10:30:00Z\"\nact = \"curtail\"\nlimit = \"1 kW\"\nuntil = \"{until}\"\n"
        )
    };
    for bad in ["2018-06-01T10:15:00Z", "2018-06-01T10:30:00Z"] {
        let e = fails(setup(&op(bad), GOOD_CSV).path());
        assert!(
            e.contains(&format!(
                "operator[0].until: {bad} is not after at 2018-06-01T10:30:00Z"
            )),
            "{e}"
        );
    }
    runs(setup(&op("2018-06-01T10:45:00Z"), GOOD_CSV).path(), &[]);
}
