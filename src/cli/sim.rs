//! Glue for `simulate`, `sweep` and `bench sim` (the `sim` feature).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Override;
use crate::signal::replay::Replay;
use crate::sim::sweep::{RankBy, Vary};
use crate::sim::{self, report, SimOptions};

/// What `simulate` computes besides the run itself.
#[derive(Debug, Clone)]
pub struct Extras {
    /// The clairvoyant optimum.
    pub optimum: bool,
    /// The run again at other hashprices.
    pub hashprice_sensitivity: bool,
    /// `--compare`: the policy modes to run side by side instead of one report.
    pub compare: Option<String>,
    /// `--ledger DIR`: write the ledger the site would have written, and its key file
    /// (`--ledger-key`, default `<DIR>.key`).
    pub ledger: Option<PathBuf>,
    pub ledger_key: Option<PathBuf>,
}

/// The ledger of a simulated site: accounts every 15 minutes (or each step, if longer,
/// to the hour), a checkpoint every simulated day.
fn sim_ledger(
    sc: &crate::scenario::Scenario,
    dir: &Path,
    key: Option<&Path>,
    replay: &Replay,
) -> anyhow::Result<crate::ledger::recorder::Recorder> {
    use crate::ledger::config::LedgerConfig;
    use std::time::Duration;
    let mut config = LedgerConfig::new(dir, &sc.name);
    if let Some(k) = key {
        config.key = k.to_path_buf();
    }
    config.checkpoint_every = Duration::from_secs(86_400);
    config.account_every = if replay.step <= Duration::from_secs(900) {
        Duration::from_secs(900)
    } else {
        Duration::from_secs(3600)
    };
    let device = crate::ledger::entry::Device {
        site: sc.name.clone(),
        pv_capacity_w: sc.capacity.0.map_or(0.0, |w| w.0),
        wind_capacity_w: sc.capacity.1.map_or(0.0, |w| w.0),
    };
    let names = sc.loads.iter().map(|l| l.name.clone()).collect();
    let (mut r, found) = crate::ledger::recorder::Recorder::open(&config, device, names)
        .with_context(|| format!("opening the ledger in {}", dir.display()))?;
    if found.checkpointed > 0 || found.restaged > 0 {
        anyhow::bail!(
            "{} already holds a ledger of {} entries: a simulation writes a new one (give an empty or new directory)",
            dir.display(),
            found.checkpointed + found.restaged
        );
    }
    let bytes = std::fs::read(&sc.file).unwrap_or_default();
    r.start(
        replay.start,
        &sc.name,
        "simulate",
        &sc.policy.mode_name(),
        &bytes,
    );
    Ok(r)
}

pub fn simulate(
    path: &Path,
    out: Option<PathBuf>,
    json: bool,
    set: &[String],
    extras: Extras,
) -> anyhow::Result<ExitCode> {
    let overrides = set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let sc = crate::scenario::load_scenario(path, &overrides)?;
    let replay = Replay::load(&sc.history)?;
    if let Some(list) = &extras.compare {
        let modes = sim::compare::parse_modes(list).map_err(anyhow::Error::msg)?;
        let rows = sim::compare::compare(&sc, &replay, &modes, extras.optimum)?;
        if json {
            outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        } else {
            out!("{}", sim::compare::table(&sc.name, &rows))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let record = SimOptions {
        record: true,
        ..Default::default()
    };
    let mut ledger = match &extras.ledger {
        Some(dir) => Some(sim_ledger(&sc, dir, extras.ledger_key.as_deref(), &replay)?),
        None => None,
    };
    let mut run = if extras.optimum {
        sim::run_with_optimum(&sc, &replay, record, ledger.as_mut())?
    } else {
        sim::run_into(&sc, &replay, record, ledger.as_mut())?
    };
    if let (Some(l), Some(dir)) = (&ledger, &extras.ledger) {
        let s = l.status();
        if s.errors > 0 {
            anyhow::bail!(
                "the ledger in {} lost entries ({} errors; the last: {})",
                dir.display(),
                s.errors,
                s.last_error.as_deref().unwrap_or("?")
            );
        }
        tracing::info!(dir = %dir.display(), entries = s.entries, vkey = s.vkey, "Ledger written");
    }
    if extras.hashprice_sensitivity {
        run.kpis.sensitivity.hashprice_runs =
            sim::site::hashprice_sensitivity(&sc, &replay, &run.kpis)?;
    }
    let out = out.unwrap_or_else(|| PathBuf::from("out").join(&sc.name));
    let written = report::write_outputs(&sc, &run, &out)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&run.kpis)?)?;
    } else {
        out!("{}", report::summary_table(&run.kpis))?;
        outln!("  written to {}", written.display())?;
    }
    sim::check_bounds(&sc, &run.kpis)?;
    Ok(ExitCode::SUCCESS)
}

pub fn sweep(
    path: &Path,
    vary: &[String],
    out: Option<PathBuf>,
    threads: Option<usize>,
    json: bool,
    rank_by: RankBy,
) -> anyhow::Result<ExitCode> {
    let varies = vary
        .iter()
        .map(|s| Vary::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting up the thread pool")?;
    }
    let total: usize = varies.iter().map(|v| v.values.len()).product();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} variants, {elapsed} elapsed, eta {eta}")
            .expect("valid template"),
    );
    let mut result = sim::sweep::sweep(path, &varies, &|| bar.inc(1))?;
    result.rank(rank_by);
    bar.finish_and_clear();
    let out =
        out.unwrap_or_else(|| PathBuf::from("out").join(format!("{}-sweep", result.scenario)));
    let stage = sim::output::Staging::new(&out)?;
    let mut df = result.to_dataframe()?;
    sim::output::write_parquet(&mut df, &stage.file("sweep.parquet"))?;
    let mut f = std::fs::File::create(stage.file("sweep.csv"))?;
    {
        use polars::prelude::SerWriter;
        polars::prelude::CsvWriter::new(&mut f).finish(&mut df)?;
    }
    let written = stage.commit()?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&result.rows)?)?;
    } else {
        out!("{}", result.table())?;
        if let Some(best) = result.best_line() {
            outln!("{best}")?;
        }
        outln!("written to {}", written.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn bench(scenario: &Path, variants: usize, json: bool) -> anyhow::Result<ExitCode> {
    let b = crate::bench::sim(scenario, variants)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&b)?)?;
    } else {
        outln!("scenario {}: {} steps on {}", b.scenario, b.steps, b.cpu)?;
        outln!(
            "  load + align      {:.3} s   (budget {} s)",
            b.load_seconds,
            b.budget.load_seconds
        )?;
        outln!(
            "  run               {:.3} s   {:.0} steps/s (budget {} s)",
            b.run_seconds,
            b.steps_per_second,
            b.budget.run_seconds
        )?;
        outln!(
            "  baseline pass     {:.4} s   run/baseline = {:.1}",
            b.baseline_seconds,
            b.ratio_vs_baseline
        )?;
        outln!("  recorded run      {:.3} s", b.recorded_run_seconds)?;
        outln!(
            "  plan run          {:.3} s   {} plans solved, {:.1}x the run (budget {} s)",
            b.plan_run_seconds,
            b.plans_solved,
            b.plan_run_seconds / b.run_seconds,
            b.budget.plan_run_seconds
        )?;
        outln!(
            "  no-mining run     {:.4} s   (the same site without mining, in every run)",
            b.no_mining_seconds
        )?;
        outln!(
            "  optimum           {:.3} s   = {:.0} unit programmes over the run ({:.4} s each)",
            b.optimum_seconds,
            b.optimum_seconds / b.one_programme_seconds,
            b.one_programme_seconds
        )?;
        outln!(
            "  simulate          {:.3} s   load, recorded run, optimum, outputs (budget {} s)",
            b.simulate_seconds,
            b.budget.simulate_seconds
        )?;
        outln!("  sweep             {} variants in {:.1} s = {:.1} variants/s on {} threads (budget {} s)", b.sweep_variants, b.sweep_seconds, b.variants_per_second, b.sweep_threads, b.budget.sweep_seconds)?;
        outln!(
            "  peak memory       {:.0} MB (budget {} MB)",
            b.peak_rss_mb,
            b.budget.peak_rss_mb
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
