//! Issue 15: the grid's carbon intensity and mining's carbon.
//!
//! A simulation over a short window of Germany's 2018 data against the same figures
//! recomputed here from the mix file itself (its own CSV reading, its own factor table
//! from the README's list, its own hourly weighting), so a wrong column, factor, hour
//! alignment or gap rule in the simulator shows as a difference; and the live signal
//! `grid_carbon_intensity` taken from MQTT, an impossible value refused and shown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gridminer::config::Override;
use gridminer::runtime;
use gridminer::scenario::load_scenario;
use gridminer::signal::mqtt::RejectReason;
use gridminer::signal::replay::Replay;
use gridminer::sim;
use rumqttc::QoS;

use super::brokers::free_port;
use super::live::{subscriber, wait_for, CPU_LOAD};
use super::support::{root, run_recorded, site_config};

/// The README's factors (gCO2eq/kWh), written out again here rather than read from the
/// crate: pumped storage is absent on purpose.
const FACTORS: [(&str, f64); 16] = [
    ("biomass_mw", 230.0),
    ("fossil_brown_coal_lignite_mw", 820.0),
    ("fossil_coal_derived_gas_mw", 820.0),
    ("fossil_gas_mw", 490.0),
    ("fossil_hard_coal_mw", 820.0),
    ("fossil_oil_mw", 650.0),
    ("geothermal_mw", 38.0),
    ("hydro_run_of_river_and_poundage_mw", 24.0),
    ("hydro_water_reservoir_mw", 24.0),
    ("nuclear_mw", 12.0),
    ("other_mw", 700.0),
    ("other_renewable_mw", 700.0),
    ("solar_mw", 45.0),
    ("waste_mw", 700.0),
    ("wind_offshore_mw", 12.0),
    ("wind_onshore_mw", 11.0),
];

/// Hour start (epoch ms) -> intensity, from the mix CSV: each quarter-hour with every
/// counted cell, energy-weighted (all quarters are 15 min); an hour with none is absent.
fn hourly_from_csv() -> HashMap<i64, f64> {
    let text =
        std::fs::read_to_string(root().join("data/de-2018-entsoe-generation-mix.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let idx: Vec<(usize, f64)> = FACTORS
        .iter()
        .map(|(c, f)| (header.iter().position(|h| h == c).unwrap(), *f))
        .collect();
    let mut sums: HashMap<i64, (f64, f64)> = HashMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let t = chrono::DateTime::parse_from_rfc3339(cells[0])
            .unwrap()
            .timestamp_millis();
        let mut num = 0.0;
        let mut den = 0.0;
        let mut complete = true;
        for &(i, f) in &idx {
            match cells[i].parse::<f64>() {
                Ok(g) => {
                    num += g * f;
                    den += g;
                }
                Err(_) => complete = false,
            }
        }
        if complete {
            let s = sums.entry(t - t.rem_euclid(3_600_000)).or_default();
            s.0 += num;
            s.1 += den;
        }
    }
    sums.into_iter().map(|(h, (n, d))| (h, n / d)).collect()
}

fn close(a: f64, b: f64, rel: f64, what: &str) {
    assert!(
        (a - b).abs() <= rel * b.abs().max(1e-9),
        "{what}: {a} against {b} recomputed"
    );
}

/// r15: nine days of the German hybrid site around 2018-01-21, a day whose mix has no
/// oil figure, at a hashprice that makes mining worth grid energy (so grid carbon
/// counts). The grid's intensity in every step, its time- and mining-weighted means,
/// mining's carbon by source, gCO2eq per TH and the hashes' shares all match what is
/// recomputed here from the files, the timeseries and the factors; the gap day's 24
/// hours have no intensity and their grid energy is unrated, never rated at a guess.
#[test]
fn r15_a_german_week_s_carbon_figures_match_a_recomputation() {
    let (sc, run) = run_recorded(
        "simulations/de-2018-hybrid.toml",
        &[
            "start=\"2018-01-15T00:00:00Z\"",
            "end=\"2018-01-24T00:00:00Z\"",
            "step=\"15m\"",
            "hashprice=400.0",
        ],
    );
    let (k, ts) = (&run.kpis.carbon, run.timeseries.as_ref().unwrap());
    let hourly = hourly_from_csv();
    let col = |n: &str| ts.column(n).unwrap();
    let (intensity, grid_w, co2) = (
        col("grid_carbon_intensity_g_kwh"),
        col("mining_grid_w"),
        col("mining_co2eq_g"),
    );
    let (mining_w, pv_w, wind_w) = (col("mining_w"), col("pv_w"), col("wind_w"));
    let step_h = 0.25;
    let (mut int_sum, mut int_h, mut no_int_h) = (0.0, 0.0, 0.0);
    let (mut grid_g, mut grid_kwh, mut unrated_kwh, mut own_g, mut total_g) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &t) in ts.time.iter().enumerate() {
        let hour = t - t.rem_euclid(3_600_000);
        let grid = f64::from(grid_w[i]) * step_h / 1e3;
        let mining = f64::from(mining_w[i]) * step_h / 1e3;
        let (pv, wind) = (f64::from(pv_w[i]), f64::from(wind_w[i]));
        let own_ef = if pv + wind > 0.0 {
            (pv * 45.0 + wind * 11.0) / (pv + wind)
        } else {
            45.0
        };
        let own = (mining - grid) * own_ef;
        own_g += own;
        let step_g = match hourly.get(&hour) {
            Some(&want) => {
                let got = f64::from(intensity[i]);
                assert!(
                    (got - want).abs() <= 1e-4 * want,
                    "step {i}: {got} g/kWh, the mix gives {want}"
                );
                int_sum += want * step_h;
                int_h += step_h;
                grid_g += grid * want;
                grid_kwh += grid;
                own + grid * want
            }
            None => {
                assert!(intensity[i].is_nan(), "step {i}: an intensity in a gap");
                no_int_h += step_h;
                unrated_kwh += grid;
                own
            }
        };
        close(f64::from(co2[i]), step_g, 1e-4, &format!("step {i} g"));
        total_g += step_g;
    }
    assert_eq!(no_int_h, 24.0, "2018-01-21 has no oil figure all day");
    assert_eq!(k.hours_without_grid_intensity, 24.0);
    assert!(grid_kwh > 1000.0, "mining drew grid energy: {grid_kwh} kWh");
    assert!(unrated_kwh > 0.0, "and some in the gap: {unrated_kwh} kWh");
    close(
        k.grid_intensity_mean_g_kwh.unwrap(),
        int_sum / int_h,
        1e-6,
        "time-weighted",
    );
    close(
        k.grid_intensity_mining_weighted_g_kwh.unwrap(),
        grid_g / grid_kwh,
        1e-5,
        "mining-weighted",
    );
    close(k.grid_co2eq_t, grid_g / 1e6, 1e-5, "grid t");
    close(k.grid_unrated_mwh, unrated_kwh / 1e3, 1e-5, "unrated MWh");
    close(
        k.curtailed_co2eq_t + k.own_generation_co2eq_t,
        own_g / 1e6,
        1e-5,
        "own t",
    );
    close(k.mining_co2eq_t, total_g / 1e6, 1e-5, "mining t");
    // Per kWh and per TH over the rated energy only.
    let rated_kwh = run.kpis.mining_mwh * 1e3 - unrated_kwh;
    close(
        k.mining_intensity_g_kwh.unwrap(),
        total_g / rated_kwh,
        1e-5,
        "mining g/kWh",
    );
    // Hashes per step from each group's power (a unit's hash rate is linear in its
    // power), those of a step's unrated grid share left out.
    let (mut hashes, mut hashes_rated) = (0.0, 0.0);
    for (i, &t) in ts.time.iter().enumerate() {
        let h: f64 = sc
            .loads
            .iter()
            .map(|l| {
                let w = f64::from(col(&format!("{}_w", l.name))[i]);
                w * l.hashrate.0 / l.rated_power.0 * 900.0
            })
            .sum();
        let (mining, grid) = (f64::from(mining_w[i]), f64::from(grid_w[i]));
        let rated = hourly.contains_key(&(t - t.rem_euclid(3_600_000)));
        hashes += h;
        hashes_rated += if rated || mining <= 0.0 {
            h
        } else {
            h * (mining - grid) / mining
        };
    }
    close(hashes, run.kpis.hashes, 1e-4, "hashes");
    close(
        k.g_per_th.unwrap(),
        total_g / (hashes_rated / 1e12),
        1e-4,
        "g/TH",
    );
    let own_share = k.hashes_on_own_generation_share;
    assert!(
        k.hashes_on_curtailed_share <= own_share && own_share < 1.0,
        "{k:?}"
    );
    // The year and hour-of-day tables add up to the run.
    let by_hour: f64 = k.by_hour.iter().map(|h| h.mining_co2eq_t).sum();
    close(by_hour, k.mining_co2eq_t, 1e-9, "hours");
    assert_eq!(k.by_hour.len(), 24);
    assert_eq!(k.by_year.len(), 1);
    close(k.by_year[0].mining_co2eq_t, k.mining_co2eq_t, 1e-9, "year");
    // The controller's own account (the ledger's) books the same grid carbon and the
    // same unrated energy, to within the one-step lag of its tiers.
    close(k.account_grid_co2eq_t, k.grid_co2eq_t, 0.05, "account t");
    close(
        k.account_grid_unrated_mwh,
        k.grid_unrated_mwh,
        0.05,
        "account unrated",
    );
    // The report says it all, with the factors' source.
    let md = sim::report::markdown(&sc, &run.kpis, None, None);
    assert!(md.contains("## Carbon"), "{md}");
    assert!(md.contains("IPCC AR5 WG3 Annex III"), "{md}");
    assert!(
        md.contains(&format!("{:.2} t CO2eq", k.mining_co2eq_t)),
        "{md}"
    );
}

/// r15: a mix file that does not cover the run is an error naming it, not a run whose
/// grid energy is silently unrated; a `[carbon]` problem is reported with its key path
/// beside the scenario's others.
#[test]
fn r15_the_mix_must_cover_the_run_and_carbon_keys_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mix = dir.path().join("mix.csv");
    let text =
        std::fs::read_to_string(root().join("data/de-2018-entsoe-generation-mix.csv")).unwrap();
    // Only the first day.
    let day: Vec<&str> = text.lines().take(1 + 96).collect();
    std::fs::write(&mix, day.join("\n")).unwrap();
    let set = |s: &str| Override::parse(s).unwrap();
    let path = root().join("simulations/de-2018-hybrid.toml");
    let sc = load_scenario(
        &path,
        &[
            set(&format!("carbon.mix=\"{}\"", mix.display())),
            set("start=\"2018-01-01T00:00:00Z\""),
            set("end=\"2018-01-03T00:00:00Z\""),
        ],
    )
    .unwrap();
    let e = Replay::load(&sc.history).unwrap_err().to_string();
    assert!(e.contains("carbon.mix") && e.contains("only covers"), "{e}");

    let e = load_scenario(
        &path,
        &[
            set("carbon.factors.lignite_mw=800"),
            set("carbon.own_wind=1e9"),
            set("site.export_limit=\"-1 MW\""),
        ],
    )
    .unwrap_err();
    let shown = format!("{e}");
    for key in [
        "carbon.factors.lignite_mw",
        "carbon.own_wind",
        "site.export_limit",
    ] {
        assert!(shown.contains(key), "{key} in {shown}");
    }
}

/// r15: `grid_carbon_intensity` over MQTT: a value is taken into the state (and so into
/// the energy account), the state document, the Prometheus gauge; 2500 g/kWh is refused
/// as out of range, counted, shown as the signal's `last_rejected`, and the reading is
/// dropped rather than kept from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_the_carbon_signal_is_taken_and_an_impossible_one_refused() {
    let id = "c15";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("site.toml");
    let mqtt = format!("[mqtt]\nbroker = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n");
    let signals = format!(
        "[[signals]]\ntopic = \"{id}/load\"\nquantity = \"site_load\"\n\n[[signals]]\ntopic = \"{id}/price\"\nquantity = \"price\"\n\n[[signals]]\ntopic = \"{id}/co2\"\nquantity = \"grid_carbon_intensity\"\njson_field = \"carbonIntensity\"\nmax_age = \"2h\"\n"
    );
    std::fs::write(
        &cfg,
        site_config(id, "", &format!("{mqtt}{signals}\n{CPU_LOAD}")),
    )
    .unwrap();
    let site = gridminer::runtime::config::load(&cfg).expect("config");
    let running = runtime::start(site).await.expect("daemon starts");
    let (client, mut rx) = subscriber(port, &format!("gridminer/{id}/#")).await;
    let availability = format!("gridminer/{id}/availability");
    while super::live::next_message(&mut rx, &availability).await != "online" {}
    let publish = |topic: &'static str, payload: &'static str| {
        let client = client.clone();
        async move {
            client
                .publish(format!("{id}/{topic}"), QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    };
    let mut snaps = running.snapshots.clone();
    publish("co2", r#"{"carbonIntensity": 412.5, "zone": "DE"}"#).await;
    wait_for(&mut snaps, "the intensity in the state", |s| {
        s.state.carbon_intensity.is_some_and(|r| r.value.0 == 412.5)
    })
    .await;
    let state_topic = format!("gridminer/{id}/state");
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(&mut rx, &state_topic, deadline).await["signals"]["grid_carbon_intensity"]["value"]
        != 412.5
    {}
    let text = running.metrics.render();
    assert!(
        text.contains("gridminer_grid_carbon_intensity_g_per_kwh 412.5"),
        "{text}"
    );

    let before = running.counters.signals.rejected(RejectReason::OutOfRange);
    let deadline = Instant::now() + Duration::from_secs(20);
    publish("co2", r#"{"carbonIntensity": 2500}"#).await;
    wait_for(&mut snaps, "the reading dropped", |s| {
        s.state.carbon_intensity.is_none()
    })
    .await;
    assert!(running.counters.signals.rejected(RejectReason::OutOfRange) > before);
    let last = loop {
        let l = state(&mut rx, &state_topic, deadline).await["signals"]["grid_carbon_intensity"]
            ["last_rejected"]
            .clone();
        if !l.is_null() {
            break l;
        }
    };
    assert_eq!(last["reason"], "out_of_range", "{last}");
    assert_eq!(last["source"], format!("{id}/co2"), "{last}");
    running.stop(Duration::from_secs(10)).await.unwrap();
}

/// The next state document, before `deadline`.
async fn state(
    rx: &mut tokio::sync::mpsc::Receiver<(String, Vec<u8>)>,
    topic: &str,
    deadline: Instant,
) -> serde_json::Value {
    assert!(Instant::now() < deadline, "the state never showed it");
    super::live::next_message(rx, topic).await
}

/// r15: a live config takes the own PV's and wind's factors from `[carbon]` (for the
/// carbon of own generation mined); a mix or grid factors there, which live would
/// ignore, are errors with their key paths, beside the config's other problems.
#[test]
fn r15_a_live_config_takes_own_factors_and_refuses_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("site.toml");
    let write = |carbon: &str| {
        let mqtt = format!(
            "[mqtt]\nbroker = \"embedded\"\nlisten = \"127.0.0.1:{}\"\n",
            free_port()
        );
        let tables = format!("{mqtt}[carbon]\n{carbon}\n{CPU_LOAD}");
        std::fs::write(&cfg, site_config("c15l", "", &tables)).unwrap();
    };
    write("own_pv = 40\nown_wind = 9");
    let site = gridminer::runtime::config::load(&cfg).expect("config");
    assert_eq!(site.config.carbon.own_pv.0, 40.0);
    assert_eq!(site.config.carbon.own_wind.0, 9.0);
    write("mix = \"mix.csv\"\nfactors = { fossil_gas_mw = 450 }\nown_pv = 3000");
    let Err(e) = gridminer::runtime::config::load(&cfg) else {
        panic!("a mix in a live config was accepted");
    };
    let shown = e.to_string();
    for key in ["carbon.mix", "carbon.factors", "carbon.own_pv"] {
        assert!(shown.contains(key), "{key} in {shown}");
    }
}
