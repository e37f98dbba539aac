//! What a simulation tells its user: the terminal summary, `report.md`, and the output
//! folder (`report.md`, `summary.json`, `timeseries.parquet`, `week.svg`, `monthly.svg`).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::output::{write_parquet, Staging};
use super::{svg, Kpis, SimError, SimRun};
use crate::clock::Timestamp;
use crate::scenario::Scenario;
use crate::units::format_duration;

/// Rows of the summary table: (label, value).
pub fn summary_rows(k: &Kpis) -> Vec<(String, String)> {
    let mut r = vec![
        (
            "period".to_string(),
            format!(
                "{} .. {} ({:.1} days, {} steps of {}s)",
                k.start, k.end, k.days, k.steps, k.step_s
            ),
        ),
        ("generation".into(), format!("{:.1} MWh", k.generation_mwh)),
        (
            "otherwise curtailed".into(),
            format!("{:.1} MWh", k.curtailed_without_mining_mwh),
        ),
        ("mining energy".into(), format!("{:.1} MWh", k.mining_mwh)),
        (
            "  from curtailed surplus".into(),
            format!("{:.1} MWh", k.mining_from_curtailment_mwh),
        ),
        (
            "  from forgone export".into(),
            format!("{:.1} MWh", k.mining_from_export_mwh),
        ),
        (
            "  from grid import".into(),
            format!("{:.1} MWh", k.mining_from_import_mwh),
        ),
        (
            "curtailment absorbed".into(),
            format!("{:.1} %", 100.0 * k.absorbed_share),
        ),
        ("revenue".into(), format!("{:.0} EUR", k.revenue_eur)),
        (
            "energy cost".into(),
            format!("{:.0} EUR", k.energy_cost_eur),
        ),
        (
            "wear cost (starts)".into(),
            format!("{:.0} EUR", k.wear_cost_eur),
        ),
        ("profit".into(), format!("{:.0} EUR", k.profit_eur)),
        ("hashes".into(), format!("{:.3e}", k.hashes)),
    ];
    for l in &k.loads {
        r.push((
            format!("{} ({} units)", l.name, l.units),
            format!(
                "{:.1} MWh, {:.0} EUR revenue, {:.2} starts/device/day (max {} in a day, {:.0} EUR wear), {} forced stops",
                l.energy_mwh, l.revenue_eur, l.starts_per_device_day, l.max_starts_in_a_day, l.wear_cost_eur, l.forced_stops
            ),
        ));
    }
    if let Some(o) = &k.optimum {
        r.push((
            "clairvoyant optimum".into(),
            format!(
                "at most {:.0} EUR (best schedule found {:.0} EUR, after {:.0} EUR wear)",
                o.upper_bound_eur, o.feasible_eur, o.feasible_wear_cost_eur
            ),
        ));
        r.push(("profit / optimum".into(), format!("{:.3}", o.ratio)));
    }
    r
}

/// The summary as an aligned text table.
pub fn summary_table(k: &Kpis) -> String {
    let rows = summary_rows(k);
    let w = rows.iter().map(|(a, _)| a.len()).max().unwrap_or(0);
    let mut s = format!("scenario {}\n", k.scenario);
    for (a, b) in rows {
        let _ = writeln!(s, "  {a:<w$}  {b}");
    }
    s.push_str(&super::site::summary(k));
    s
}

/// `report.md`.
pub fn markdown(sc: &Scenario, k: &Kpis, week_from: Option<Timestamp>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", sc.name);
    if !sc.description.is_empty() {
        let _ = writeln!(s, "{}\n", sc.description.trim());
    }
    let _ = writeln!(s, "## Summary\n\n| | |\n|---|---|");
    for (a, b) in summary_rows(k) {
        let _ = writeln!(s, "| {} | {} |", a.trim(), b);
    }
    let _ = writeln!(s, "\n## Site and policy\n");
    let _ = writeln!(
        s,
        "- grid: export limit {:.0} kW, import limit {:.0} kW; import price = day-ahead + {} EUR/MWh; export value: {:?}",
        sc.grid.export_limit.0 / 1e3,
        sc.grid.import_limit.0 / 1e3,
        sc.tariff.import_adder.0,
        sc.tariff.export
    );
    let p = &sc.policy;
    let _ = writeln!(
        s,
        "- policy: {:?}, margin {} EUR/MWh, hysteresis {} EUR/MWh, min on {}, min off {}, max starts/day {}, start payback {}, max signal age {}",
        p.mode,
        p.margin.0,
        p.hysteresis.0,
        format_duration(p.min_on),
        format_duration(p.min_off),
        p.max_starts_per_day.map_or("none".into(), |n| n.to_string()),
        format_duration(p.start_payback),
        format_duration(p.max_signal_age)
    );
    for l in &sc.loads {
        let _ = writeln!(
            s,
            "- load {}: {} × {:.0} W, {:.3e} H/s each, {:?}, wake {}, ramp {}, {} EUR a start",
            l.name,
            l.count,
            l.rated_power.0,
            l.hashrate.0,
            l.levels,
            format_duration(l.wake),
            format_duration(l.ramp),
            l.wear.start_cost_eur
        );
    }
    let _ = writeln!(s, "\n## Decisions\n\n| reason | steps |\n|---|---|");
    for (r, n) in &k.reasons {
        let _ = writeln!(s, "| {r} | {n} |");
    }
    let _ = writeln!(
        s,
        "\n## Signals\n\nSteps at which a signal the series feed was stale: missing, dropped past its series' `max_age`, or older than the policy's `max_signal_age`.\n\n| signal | stale steps | share |\n|---|---|---|"
    );
    for (q, n) in &k.stale_steps {
        let share = *n as f64 / k.steps.max(1) as f64;
        let _ = writeln!(s, "| {q} | {n} | {:.2} % |", share * 100.0);
    }
    let _ = writeln!(s, "\n## Months\n\n| month | from curtailment MWh | from export MWh | from import MWh | otherwise curtailed MWh | revenue EUR | energy cost EUR | wear cost EUR | profit EUR |\n|---|---|---|---|---|---|---|---|---|");
    for m in &k.months {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |",
            m.month,
            m.mining_from_curtailment_mwh,
            m.mining_from_export_mwh,
            m.mining_from_import_mwh,
            m.curtailed_without_mining_mwh,
            m.revenue_eur,
            m.energy_cost_eur,
            m.wear_cost_eur,
            m.profit_eur
        );
    }
    let _ = writeln!(
        s,
        "\n## Data\n\nInterpolation to the control step: {}.\n",
        k.data.interpolate
    );
    let _ = writeln!(s, "| series | file | rows | resolution | duplicated timestamps (averaged) | missing intervals | empty cells |\n|---|---|---|---|---|---|---|");
    for r in &k.data.series {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}s | {} | {} | {} |",
            r.name,
            r.file,
            r.rows,
            r.resolution_s,
            r.duplicated_timestamps,
            r.missing_intervals,
            r.empty_cells
        );
    }
    let _ = writeln!(s, "\nSteps with no observation (the signal ages; after the policy's max signal age, loads go to the safe state):\n");
    for (q, n) in &k.data.steps_without_value {
        let _ = writeln!(s, "- {q}: {n}");
    }
    if k.import_over_limit_steps > 0 {
        let _ = writeln!(
            s,
            "\nSite load alone exceeded the import limit in {} steps.",
            k.import_over_limit_steps
        );
    }
    let _ = writeln!(s, "\n## Charts\n");
    if let Some(w) = week_from {
        let _ = writeln!(
            s,
            "![week]({})\n\nThe week from {} with the most otherwise-curtailed energy mined.\n",
            "week.svg", w
        );
    }
    let _ = writeln!(s, "![monthly](monthly.svg)");
    if let Some(o) = &k.optimum {
        let _ = writeln!(
            s,
            "\n## Optimum\n\nWith perfect foresight of the same data and the same wear limits and start costs, no schedule earns more than {:.0} EUR (a Lagrangian dual bound, {} iterations, {:.1} s); the best schedule found earns {:.0} EUR. The online policy's profit is {:.1} % of the bound.",
            o.upper_bound_eur, o.iterations, o.solve_seconds, o.feasible_eur, 100.0 * o.ratio
        );
    }
    s
}

/// The 7 days (from a UTC midnight) with the most otherwise-curtailed energy mined.
pub fn best_week(k: &Kpis) -> Option<Timestamp> {
    let d = &k.daily_absorbed;
    if d.is_empty() {
        return None;
    }
    let n = d.len().min(7);
    (0..=d.len() - n)
        .max_by(|&a, &b| {
            let sa: f64 = d[a..a + n].iter().map(|x| x.1).sum();
            let sb: f64 = d[b..b + n].iter().map(|x| x.1).sum();
            sa.total_cmp(&sb).then(b.cmp(&a))
        })
        .map(|i| d[i].0)
}

/// Writes the whole output folder, or nothing.
pub fn write_outputs(sc: &Scenario, run: &SimRun, out: &Path) -> Result<PathBuf, SimError> {
    let stage = Staging::new(out)?;
    let io = |p: &Path, e: std::io::Error| SimError::Output {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let week_from = best_week(&run.kpis);
    let write = |name: &str, text: &str| {
        let p = stage.file(name);
        std::fs::write(&p, text).map_err(|e| io(&p, e))
    };
    write("report.md", &markdown(sc, &run.kpis, week_from))?;
    write(
        "summary.json",
        &serde_json::to_string_pretty(&run.kpis).expect("KPIs serialise"),
    )?;
    if let Some(ts) = &run.timeseries {
        let mut df = ts.to_dataframe().map_err(|e| SimError::Output {
            path: "timeseries.parquet".into(),
            message: e.to_string(),
        })?;
        write_parquet(&mut df, &stage.file("timeseries.parquet"))?;
        if let Some(w) = week_from {
            write(
                "week.svg",
                &svg::week(ts, w, &format!("{}: power flows, week from {}", sc.name, w)),
            )?;
        }
    }
    write(
        "monthly.svg",
        &svg::monthly(
            &run.kpis.months,
            &format!("{}: mining energy and profit per month", sc.name),
        ),
    )?;
    stage.commit()
}
