//! Shared test helpers: paths, the built binary, small scenarios built in code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gridminer::clock::Timestamp;
use gridminer::policy::{Mode, PolicyParams};
use gridminer::scenario::{Bounds, Scenario};
use gridminer::signal::replay::{DataReport, Replay};
use gridminer::signal::series::Interpolate;
use gridminer::signal::series::{ColumnRef, HashpriceSource, History, PowerSource, PriceSource};
use gridminer::site::{
    ExportValue, GridConnection, LoadKind, LoadSpec, PowerLevels, Tariff, WearLimits,
};
use gridminer::units::{HashRate, PricePerMwh, Watts};

/// A shipped scenario (path from the repo root) with `--set`-style overrides, replayed
/// through the simulator with every step recorded.
pub fn run_recorded(scenario: &str, overrides: &[&str]) -> (Scenario, gridminer::sim::SimRun) {
    let overrides: Vec<gridminer::config::Override> = overrides
        .iter()
        .map(|o| gridminer::config::Override::parse(o).unwrap())
        .collect();
    let sc = gridminer::scenario::load_scenario(&root().join(scenario), &overrides).unwrap();
    let replay = Replay::load(&sc.history).unwrap();
    let opts = gridminer::sim::SimOptions {
        record: true,
        ..Default::default()
    };
    let run = gridminer::sim::run(&sc, &replay, opts).unwrap();
    (sc, run)
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the gridminer binary built for these tests.
pub fn gridminer(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridminer"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the gridminer binary runs")
}

/// What a command that must succeed printed on stdout, as JSON; its output if it failed.
pub fn json_stdout(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout is not JSON: {}", text(o)))
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn asic(
    name: &str,
    count: u32,
    rated: f64,
    ths: f64,
    levels: PowerLevels,
    wear: WearLimits,
) -> LoadSpec {
    LoadSpec {
        name: name.into(),
        kind: LoadKind::Asic,
        count,
        rated_power: Watts(rated),
        hashrate: HashRate::from_ths(ths),
        levels,
        ramp: Duration::from_secs(60),
        wake: Duration::from_secs(60),
        wear,
    }
}

pub fn cpu(rated: f64, mhs: f64) -> LoadSpec {
    LoadSpec {
        name: "cpu".into(),
        kind: LoadKind::Cpu,
        count: 1,
        rated_power: Watts(rated),
        hashrate: HashRate::from_mhs(mhs),
        levels: PowerLevels::Continuous,
        ramp: Duration::ZERO,
        wake: Duration::ZERO,
        wear: WearLimits::default(),
    }
}

pub fn policy(mode: Mode, margin: f64, hysteresis: f64) -> PolicyParams {
    PolicyParams {
        mode,
        plan: None,
        margin: PricePerMwh(margin),
        hysteresis: PricePerMwh(hysteresis),
        min_on: Duration::ZERO,
        min_off: Duration::ZERO,
        max_starts_per_day: None,
        start_payback: Duration::ZERO,
        max_signal_age: Duration::from_secs(600),
        safe_limit: Watts::ZERO,
        frequency: None,
    }
}

/// A scenario over in-memory series: `Replay` is built directly from `pv`, `load`,
/// `price` (one value per step) and a constant hashprice.
pub fn scenario_in_memory(
    policy: PolicyParams,
    loads: Vec<LoadSpec>,
    grid: GridConnection,
    step: Duration,
    pv: Vec<f64>,
    load: Vec<f64>,
    price: Vec<f64>,
    hashprice: f64,
) -> (Scenario, Replay) {
    let col = |c: &str| ColumnRef {
        series: "mem".into(),
        column: c.into(),
        scale: 1.0,
    };
    let sc = Scenario {
        name: "in-memory".into(),
        description: String::new(),
        file: PathBuf::from("in-memory.toml"),
        history: History {
            step,
            start: None,
            end: None,
            interpolate: Interpolate::Hold,
            series: Vec::new(),
            pv: Some(col("pv")),
            wind: None,
            base_load: PowerSource::Series(col("load")),
            price: PriceSource::Series(col("price")),
            hashprice: HashpriceSource::Constant(gridminer::units::Hashprice(hashprice)),
            carbon: None,
        },
        grid,
        tariff: Tariff {
            import_adder: PricePerMwh(80.0),
            export: ExportValue::DayAhead,
        },
        loads,
        policy,
        operator: Vec::new(),
        bounds: Bounds::default(),
        location: None,
        carbon: Default::default(),
        capacity: (None, None),
    };
    let n = pv.len();
    let replay = Replay {
        start: Timestamp::parse("2018-06-01T00:00:00Z").unwrap(),
        step,
        len: n,
        pv: Some(pv),
        wind: None,
        site_load: load,
        price,
        hashprice: vec![hashprice; n],
        carbon_intensity: None,
        report: DataReport::default(),
    };
    (sc, replay)
}

/// A PV site exporting at most 1 kW, importing at a 100 EUR/MWh adder: 3 kW of PV over
/// a 500 W site load is surplus for any test load, and no PV makes mining uneconomic.
pub const SURPLUS_SITE: &str = r#"
[site]
pv = true
export_limit = "1 kW"
import_limit = "10 kW"
[tariff]
import_adder_eur_mwh = 100.0
export = "day-ahead"
"#;

/// The config of a small live test site `site`: a 100 ms tick, a constant hashprice, an
/// economic policy that tolerates old readings, and `SURPLUS_SITE`. `top` adds top-level
/// keys; `tables` the `[mqtt]` section, signals, loads and the rest.
pub fn site_config(site: &str, top: &str, tables: &str) -> String {
    site_config_aged(site, "1h", top, tables)
}

/// `site_config` with the policy's `max_signal_age` at `max_age`.
pub fn site_config_aged(site: &str, max_age: &str, top: &str, tables: &str) -> String {
    format!(
        r#"
site_id = "{site}"
tick = "100ms"
hashprice = 50.0
policy = {{ mode = "economic", max_signal_age = "{max_age}" }}
{top}
{SURPLUS_SITE}
{tables}
"#
    )
}

/// `[[signals]]` for `{site}/pv`, `{site}/load` (both W) and `{site}/price`.
pub fn site_signals(site: &str) -> String {
    format!(
        r#"
[[signals]]
topic = "{site}/pv"
quantity = "pv_power"
[[signals]]
topic = "{site}/load"
quantity = "site_load"
[[signals]]
topic = "{site}/price"
quantity = "price"
"#
    )
}

/// `site_signals`, and one MQTT load `miners` of `count` 500 W units, its setpoint on
/// `{site}/miners/setpoint`.
pub fn site_feeds(site: &str, count: u32) -> String {
    site_signals(site)
        + &format!(
            r#"
[[loads]]
kind = "mqtt"
topic = "{site}/miners/setpoint"
name = "miners"
count = {count}
rated_power = "500 W"
hashrate = "20 TH/s"
"#
        )
}

/// An `[mqtt]` section for an external broker on 127.0.0.1:`port`, with `more` keys.
pub fn external_broker(port: u16, more: &str) -> String {
    format!("[mqtt]\nbroker = \"external\"\nhost = \"127.0.0.1\"\nport = {port}\n{more}\n")
}
