//! `gridminer bench fleet` end to end on a small fleet: the driver built from the
//! emulated miners, every curtail confirmed, every figure there. Times are the bench's
//! business, never asserted here.

use gridminer::bench::fleet::{fleet, FleetBenchOptions};

use crate::loopback::block;

/// Catches: a bench whose JSON lacks one of the fields or carries a NaN (a
/// phase that measured nothing: no pause received by the emulator, no baseline, an
/// empty CPU window), and a curtail that left a miner unconfirmed.
#[test]
fn r11_bench_fleet_reports_every_field_with_every_miner_confirmed_paused() {
    let opts = FleetBenchOptions {
        miners: 5,
        runs: 2,
        idle_seconds: 1.0,
        first: block(5),
        ..FleetBenchOptions::default()
    };
    let b = fleet(&opts).expect("the bench runs");
    let json = serde_json::to_value(&b).expect("serializes");
    for field in [
        "miners",
        "last_command_sent_p99_ms",
        "all_confirmed_ms",
        "baseline_round_trip_p99_ms",
        "poll_cpu_percent",
        "rss_per_miner_kb",
    ] {
        let v = json[field].as_f64();
        assert!(
            v.is_some_and(f64::is_finite),
            "{field} is {:?} in {json:#}",
            json[field]
        );
    }
    assert_eq!(json["miners"], 5);
    assert_eq!(
        b.confirmed_paused,
        opts.miners * opts.runs,
        "every miner confirmed paused in every run: {json:#}"
    );
    assert_eq!(b.baseline_samples, 5 * 5, "five rounds of one per miner");
}
