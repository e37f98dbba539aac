//! `gridminer bench sim`: a year of steps through the full policy stack, its loading,
//! and a sweep, against a baseline pass doing only the energy accounting.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::scenario::load_scenario;
use crate::signal::replay::Replay;
use crate::sim::sweep::{sweep, Vary};
use crate::sim::{optimum, report, run, SimError, SimOptions};

use super::fleet::cpu_model;
use super::peak_rss_mb;

#[derive(Debug, Serialize)]
pub struct SimBench {
    pub scenario: String,
    /// The CPU the figures were taken on.
    pub cpu: String,
    pub steps: usize,
    /// Loading and aligning the scenario's files.
    pub load_seconds: f64,
    /// The full controller step with device dynamics and accounting, single-threaded.
    pub run_seconds: f64,
    pub steps_per_second: f64,
    /// Baseline: one pass over the same inputs doing only the energy accounting.
    pub baseline_seconds: f64,
    pub ratio_vs_baseline: f64,
    /// The same run recording every step (what `simulate` does).
    pub recorded_run_seconds: f64,
    /// The same run with the look-ahead planner (`mode = "plan"`, 12 h ahead in quarter
    /// hours, on the scenario's own energy mode), single-threaded, beside `run_seconds`
    /// as its baseline.
    pub plan_run_seconds: f64,
    /// How many plans it solved (it re-plans when what it reads changes).
    pub plans_solved: u64,
    /// The same site without mining (every run books it beside the run itself).
    pub no_mining_seconds: f64,
    /// The clairvoyant optimum: the best feasible schedule and both bounds.
    pub optimum_seconds: f64,
    /// Baseline for the optimum: one unit's exact programme over the whole run.
    pub one_programme_seconds: f64,
    /// All of `simulate`: load, recorded run, optimum, every output written.
    pub simulate_seconds: f64,
    pub sweep_variants: usize,
    pub sweep_seconds: f64,
    pub variants_per_second: f64,
    pub sweep_threads: usize,
    /// Peak resident memory after loading and a recorded run of the year (VmHWM).
    pub peak_rss_mb: f64,
    pub budget: Budget,
}

#[derive(Debug, Serialize)]
pub struct Budget {
    pub run_seconds: f64,
    pub plan_run_seconds: f64,
    pub simulate_seconds: f64,
    pub load_seconds: f64,
    pub sweep_seconds: f64,
    pub peak_rss_mb: f64,
}

/// Runs the simulation benchmark on `scenario` with a sweep of `variants` (rounded to a
/// product of three varied policy keys).
pub fn sim(scenario: &Path, variants: usize) -> Result<SimBench, SimError> {
    let sc = load_scenario(scenario, &[])?;
    let t = Instant::now();
    let replay = Replay::load(&sc.history)?;
    let load_seconds = t.elapsed().as_secs_f64();

    // Baseline: the same loop's bookkeeping without policy or devices.
    let t = Instant::now();
    let mut acc = 0.0;
    for i in 0..replay.len {
        let pv = replay.pv.as_ref().map_or(0.0, |v| v[i]);
        let wind = replay.wind.as_ref().map_or(0.0, |v| v[i]);
        let net = pv + wind - replay.site_load[i];
        let export = net.clamp(0.0, sc.grid.export_limit.0);
        acc += export * replay.price[i] + (net - export).max(0.0) * replay.hashprice[i];
    }
    black_box(acc);
    let baseline_seconds = t.elapsed().as_secs_f64();

    // Warm once, then time the best of three (the machine may be busy).
    black_box(run(&sc, &replay, SimOptions::default())?);
    let mut run_seconds = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        black_box(run(&sc, &replay, SimOptions::default())?);
        run_seconds = run_seconds.min(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    black_box(run(
        &sc,
        &replay,
        SimOptions {
            record: true,
            ..Default::default()
        },
    )?);
    let recorded_run_seconds = t.elapsed().as_secs_f64();
    let planning =
        crate::sim::compare::with_mode(&sc, "plan").map_err(|message| SimError::Output {
            path: scenario.display().to_string(),
            message,
        })?;
    let solved_before = crate::policy::plans_solved();
    let mut plan_run_seconds = f64::INFINITY;
    for _ in 0..2 {
        let t = Instant::now();
        black_box(run(&planning, &replay, SimOptions::default())?);
        plan_run_seconds = plan_run_seconds.min(t.elapsed().as_secs_f64());
    }
    let plans_solved = (crate::policy::plans_solved() - solved_before) / 2;
    let peak = peak_rss_mb().unwrap_or(f64::NAN);

    let mut no_mining_seconds = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        black_box(crate::sim::site::without_mining(&sc, &replay));
        no_mining_seconds = no_mining_seconds.min(t.elapsed().as_secs_f64());
    }
    // The optimum, and the whole of `simulate` as a user runs it, best of three each.
    let profit = run(&sc, &replay, SimOptions::default())?.kpis.profit_eur;
    let mut optimum_seconds = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        black_box(crate::sim::optimum(&sc, &replay, profit)?);
        optimum_seconds = optimum_seconds.min(t.elapsed().as_secs_f64());
    }
    let one_programme_seconds = optimum::bench_one_programme(replay.len);
    let out = std::env::temp_dir().join(format!("gridminer-bench-sim-{}", std::process::id()));
    let mut simulate_seconds = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let sc = load_scenario(scenario, &[])?;
        let replay = Replay::load(&sc.history)?;
        let r = crate::sim::run_with_optimum(
            &sc,
            &replay,
            SimOptions {
                record: true,
                ..Default::default()
            },
            None,
        )?;
        black_box(report::write_outputs(&sc, &r, &out)?);
        simulate_seconds = simulate_seconds.min(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&out);

    let side = (variants as f64).cbrt().round().max(1.0) as usize;
    let varies = vec![
        Vary {
            key: "policy.margin_eur_mwh".into(),
            values: (0..side).map(|i| (i * 2).to_string()).collect(),
        },
        Vary {
            key: "policy.hysteresis_eur_mwh".into(),
            values: (0..side).map(|i| i.to_string()).collect(),
        },
        Vary {
            key: "policy.min_on".into(),
            values: (0..side).map(|i| format!("{}m", 5 + 5 * i)).collect(),
        },
    ];
    let t = Instant::now();
    let result = sweep(scenario, &varies, &|| {})?;
    let sweep_seconds = t.elapsed().as_secs_f64();
    let n = result.rows.len();
    Ok(SimBench {
        scenario: sc.name,
        cpu: cpu_model(),
        steps: replay.len,
        load_seconds,
        run_seconds,
        steps_per_second: replay.len as f64 / run_seconds,
        baseline_seconds,
        ratio_vs_baseline: run_seconds / baseline_seconds,
        recorded_run_seconds,
        plan_run_seconds,
        plans_solved,
        no_mining_seconds,
        optimum_seconds,
        one_programme_seconds,
        simulate_seconds,
        sweep_variants: n,
        sweep_seconds,
        variants_per_second: n as f64 / sweep_seconds,
        sweep_threads: rayon::current_num_threads(),
        peak_rss_mb: peak,
        budget: Budget {
            run_seconds: 0.2,
            plan_run_seconds: 10.0,
            simulate_seconds: 1.0,
            load_seconds: 1.0,
            sweep_seconds: 60.0,
            peak_rss_mb: 200.0,
        },
    })
}
