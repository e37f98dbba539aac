//! What a simulation tells its user: the terminal summary, `report.md`, and the output
//! folder (`report.md`, `report.html`, `summary.json`, `timeseries.parquet`, `week.svg`,
//! `monthly.svg`).
//!
//! Every figure is written for an analyst, through the units' `{:#}` form and the
//! config types' `Display` (`economic`, `2 kW to rated`, `200 TH/s`), never as Rust debug
//! text: a report is read by people deciding on hardware, not by the program's authors.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::output::{write_parquet, Staging};
use super::{chart, html, svg, Kpis, SimError, SimRun, Timeseries};
use crate::clock::Timestamp;
use crate::decision::Reason;
use crate::scenario::Scenario;
use crate::signal::series::HashpriceSource;
use crate::units::{format_duration, grouped, Eur, HashRate, Hashprice, WattHours};

/// A KPI's MWh as energy, for `{:#}`.
fn mwh(v: f64) -> WattHours {
    WattHours::from_mwh(v)
}

/// `2018-01-01T00:00:00Z` as `2018-01-01 00:00`; anything else as given.
fn when(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// What each decision reason means, for the reader of a report (the codes are what
/// `timeseries.parquet` and the README use).
pub fn reason_meaning(r: Reason) -> String {
    match r {
        Reason::Stale(q) => format!("the {} signal was stale: loads held safe", q.as_str()),
        Reason::OperatorSetpoint => "a grid operator set the mining power".into(),
        Reason::OperatorCurtail => "a grid operator capped the mining power".into(),
        Reason::UnderFrequency => "grid frequency low: mining shed".into(),
        Reason::OverFrequency => "grid frequency high: mining absorbing".into(),
        Reason::Surplus => "only otherwise-curtailed energy mined".into(),
        Reason::Economic => {
            "paid energy (forgone export or import) mined: hashes worth more".into()
        }
        Reason::Idle => "nothing worth mining".into(),
        Reason::WearLimit => "min on/off time or the start limit held a unit".into(),
        Reason::Failsafe => "operators quiet: the heartbeat failsafe capped mining".into(),
        Reason::Planned => {
            "the look-ahead plan ran other units than the moment alone would (a start kept for later, or units kept on through a dip)".into()
        }
    }
}

/// The hashprice over the run, EUR/(PH/s·day): (mean, min, max) of the steps that had
/// one (a series' gaps are left out, not held), or the scenario's constant.
pub fn hashprice_range(sc: &Scenario, ts: Option<&Timeseries>) -> Option<(f64, f64, f64)> {
    if let HashpriceSource::Constant(h) = sc.history.hashprice {
        return Some((h.0, h.0, h.0));
    }
    let col = ts?.column(super::output::INPUTS[4])?;
    let (mut n, mut sum, mut lo, mut hi) = (0usize, 0.0, f64::INFINITY, f64::NEG_INFINITY);
    for &v in col.iter().filter(|v| !v.is_nan()) {
        let v = f64::from(v);
        n += 1;
        sum += v;
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (n > 0).then(|| (sum / n as f64, lo, hi))
}

/// Rows of the summary table: (label, value).
pub fn summary_rows(k: &Kpis) -> Vec<(String, String)> {
    let seconds = k.steps as f64 * k.step_s as f64;
    let mean_rate = if seconds > 0.0 {
        k.hashes / seconds
    } else {
        0.0
    };
    let mut r = vec![
        (
            "period".to_string(),
            format!(
                "{} .. {} UTC ({:.1} days, {} steps of {})",
                when(&k.start),
                when(&k.end),
                k.days,
                grouped(k.steps as f64, Some(0)),
                format_duration(Duration::from_secs(k.step_s))
            ),
        ),
        ("generation".into(), format!("{:#}", mwh(k.generation_mwh))),
        (
            "otherwise curtailed".into(),
            format!("{:#}", mwh(k.curtailed_without_mining_mwh)),
        ),
        ("mining energy".into(), format!("{:#}", mwh(k.mining_mwh))),
        (
            "  from curtailed surplus".into(),
            format!("{:#}", mwh(k.mining_from_curtailment_mwh)),
        ),
        (
            "  from forgone export".into(),
            format!("{:#}", mwh(k.mining_from_export_mwh)),
        ),
        (
            "  from grid import".into(),
            format!("{:#}", mwh(k.mining_from_import_mwh)),
        ),
        (
            "curtailment absorbed".into(),
            format!("{:.1} %", 100.0 * k.absorbed_share),
        ),
        ("revenue".into(), format!("{:#}", Eur(k.revenue_eur))),
        (
            "energy cost".into(),
            format!("{:#}", Eur(k.energy_cost_eur)),
        ),
        (
            "wear cost (starts)".into(),
            format!("{:#}", Eur(k.wear_cost_eur)),
        ),
        ("profit".into(), format!("{:#}", Eur(k.profit_eur))),
        (
            "hashes".into(),
            format!("{:.3e} (mean {:#})", k.hashes, HashRate(mean_rate)),
        ),
    ];
    for l in &k.loads {
        let units = if l.units == 1 { "unit" } else { "units" };
        r.push((
            format!("{} ({} {units})", l.name, l.units),
            format!(
                "{:#}, {:#} revenue, {:.2} starts/device/day (max {} in a day, {:#} wear), {} forced stops",
                mwh(l.energy_mwh),
                Eur(l.revenue_eur),
                l.starts_per_device_day,
                l.max_starts_in_a_day,
                Eur(l.wear_cost_eur),
                l.forced_stops
            ),
        ));
    }
    let c = &k.carbon;
    let g = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0} gCO2eq/kWh"));
    r.push((
        "mining carbon".into(),
        format!(
            "{:.1} t CO2eq ({}; grid {} over time, {} over mining's grid draw)",
            c.mining_co2eq_t,
            g(c.mining_intensity_g_kwh),
            g(c.grid_intensity_mean_g_kwh),
            g(c.grid_intensity_mining_weighted_g_kwh)
        ),
    ));
    r.push((
        "  per TH".into(),
        c.g_per_th
            .map_or("n/a".to_string(), |v| format!("{v:.3e} gCO2eq/TH")),
    ));
    r.push((
        "  hashes on curtailed / own".into(),
        format!(
            "{:.1} % / {:.1} % (own generation includes curtailed surplus)",
            100.0 * c.hashes_on_curtailed_share,
            100.0 * c.hashes_on_own_generation_share
        ),
    ));
    if let Some(o) = &k.optimum {
        r.push((
            "clairvoyant optimum".into(),
            format!(
                "at most {:#} ({}); best schedule known {:#} ({}): known to {:.2} %",
                Eur(o.upper_bound_eur),
                o.bound,
                Eur(o.feasible_eur),
                o.feasible_source,
                100.0 * o.gap
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

/// The site, tariff, policy and loads as sentences (`report.md`'s "Site and policy",
/// and the HTML page's).
pub fn site_lines(sc: &Scenario, hashprice: Option<(f64, f64, f64)>) -> Vec<String> {
    let mut out = vec![format!(
        "grid: export limit {:#}, import limit {:#}; import price = day-ahead + {:#}; export earns {}",
        sc.grid.export_limit, sc.grid.import_limit, sc.tariff.import_adder, sc.tariff.export
    )];
    let p = &sc.policy;
    out.push(format!(
        "policy: {}, margin {:#}, hysteresis {:#}, min on {}, min off {}, max starts/day {}, start payback {}, max signal age {}",
        p.mode,
        p.margin,
        p.hysteresis,
        format_duration(p.min_on),
        format_duration(p.min_off),
        p.max_starts_per_day.map_or("no limit".into(), |n| n.to_string()),
        format_duration(p.start_payback),
        format_duration(p.max_signal_age)
    ));
    let mean_hp = hashprice.map(|(mean, lo, hi)| {
        let how = match sc.history.hashprice {
            HashpriceSource::Constant(_) => "constant".to_string(),
            HashpriceSource::Series(_) => {
                format!("series, {:#} .. {:#}", Hashprice(lo), Hashprice(hi))
            }
        };
        out.push(format!("hashprice: {:#} ({how})", Hashprice(mean)));
        Hashprice(mean)
    });
    for l in &sc.loads {
        let efficiency = if l.hashrate.0 > 0.0 {
            format!(
                " ({} J/TH)",
                grouped(l.rated_power.0 / (l.hashrate.0 / 1e12), None)
            )
        } else {
            String::new()
        };
        let breakeven = mean_hp.map_or(String::new(), |h| {
            format!("; break-even {:#} at {h:#}", l.value_per_mwh(h))
        });
        out.push(format!(
            "load {}: {} × {:#} ({:#} in all), {:#} each{efficiency}, {}, wake {}, ramp {}, {:#} a start{breakeven}",
            l.name,
            l.count,
            l.rated_power,
            l.max_power(),
            l.hashrate,
            l.levels,
            format_duration(l.wake),
            format_duration(l.ramp),
            Eur(l.wear.start_cost_eur)
        ));
    }
    out
}

/// `report.md`.
pub fn markdown(
    sc: &Scenario,
    k: &Kpis,
    week_from: Option<Timestamp>,
    hashprice: Option<(f64, f64, f64)>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", sc.name);
    if !sc.description.is_empty() {
        let _ = writeln!(s, "{}\n", sc.description.trim());
    }
    let _ = writeln!(
        s,
        "Charts of the whole run: [report.html](report.html) (one file, opens offline).\n"
    );
    let _ = writeln!(s, "## Summary\n\n| | |\n|---|---|");
    for (a, b) in summary_rows(k) {
        let _ = writeln!(s, "| {} | {} |", a.trim(), b);
    }
    let _ = writeln!(s, "\n## Site and policy\n");
    for line in site_lines(sc, hashprice) {
        let _ = writeln!(s, "- {line}");
    }
    let _ = writeln!(
        s,
        "\n## Decisions\n\n| reason | meaning | steps | share |\n|---|---|---|---|"
    );
    for (r, n) in &k.reasons {
        let meaning = Reason::parse(r).map_or(String::new(), reason_meaning);
        let share = *n as f64 / k.steps.max(1) as f64;
        let _ = writeln!(
            s,
            "| {r} | {meaning} | {} | {:.1} % |",
            grouped(*n as f64, Some(0)),
            100.0 * share
        );
    }
    let _ = writeln!(
        s,
        "\n## Signals\n\nSteps at which a signal the series feed was stale: missing, dropped past its series' `max_age`, or older than the policy's `max_signal_age`.\n\n| signal | stale steps | share |\n|---|---|---|"
    );
    for (q, n) in &k.stale_steps {
        let share = *n as f64 / k.steps.max(1) as f64;
        let _ = writeln!(
            s,
            "| {q} | {} | {:.2} % |",
            grouped(*n as f64, Some(0)),
            share * 100.0
        );
    }
    let _ = writeln!(s, "\n## Months\n\n| month | from curtailment MWh | from export MWh | from import MWh | otherwise curtailed MWh | revenue EUR | energy cost EUR | wear cost EUR | profit EUR |\n|---|---|---|---|---|---|---|---|---|");
    let (e, m) = (|v: f64| grouped(v, Some(2)), |v: f64| grouped(v, Some(0)));
    for x in &k.months {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.month,
            e(x.mining_from_curtailment_mwh),
            e(x.mining_from_export_mwh),
            e(x.mining_from_import_mwh),
            e(x.curtailed_without_mining_mwh),
            m(x.revenue_eur),
            m(x.energy_cost_eur),
            m(x.wear_cost_eur),
            m(x.profit_eur)
        );
    }
    s.push_str(&carbon_markdown(k));
    let _ = writeln!(
        s,
        "\n## Data\n\nInterpolation to the control step: {}.\n",
        k.data.interpolate
    );
    let _ = writeln!(s, "| series | file | rows | resolution | duplicated timestamps (averaged) | missing intervals | empty cells |\n|---|---|---|---|---|---|---|");
    for r in &k.data.series {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.file,
            grouped(r.rows as f64, Some(0)),
            format_duration(Duration::from_secs(
                u64::try_from(r.resolution_s).unwrap_or(0)
            )),
            r.duplicated_timestamps,
            r.missing_intervals,
            r.empty_cells
        );
    }
    let _ = writeln!(s, "\nSteps with no observation (the signal ages; after the policy's max signal age, loads go to the safe state):\n");
    for (q, n) in &k.data.steps_without_value {
        let _ = writeln!(s, "- {q}: {}", grouped(*n as f64, Some(0)));
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
            "![week](week.svg)\n\nThe week from {} with the most otherwise-curtailed energy mined: mining stacked by the energy it took, against generation and the export limit; the day-ahead price against each group's break-even price.\n",
            when(&w.to_rfc3339())
        );
    }
    let _ = writeln!(s, "![monthly](monthly.svg)");
    if let Some(o) = &k.optimum {
        let _ = writeln!(
            s,
            "\n## Optimum\n\nWith perfect foresight of the same data and the same wear limits and start costs, no schedule earns more than {:#}: the tighter of two bounds, here the {} (the exact optimum without wear limits is {:#}; the Lagrangian dual bound, which prices the wear limits, {}). The best schedule known that keeps every limit is {}, earning {:#} (after {:#} of wear), so the optimum itself is known to within {:.2} %. The online policy's profit is {:.1} % of the bound. Solved in {:.2} s.",
            Eur(o.upper_bound_eur),
            o.bound,
            Eur(o.no_wear_bound_eur),
            match o.lagrangian_bound_eur {
                Some(l) => format!("{:#} after {} evaluations", Eur(l), o.iterations),
                None => "not needed".to_string(),
            },
            o.feasible_source,
            Eur(o.feasible_eur),
            Eur(o.feasible_wear_cost_eur),
            100.0 * o.gap,
            100.0 * o.ratio,
            o.solve_seconds
        );
    }
    s.push_str(&super::site::markdown(k));
    s
}

/// `report.md`'s "Carbon": mining's carbon by source, the grid's intensity, per hour of
/// the day, and where the factors come from.
pub fn carbon_markdown(k: &Kpis) -> String {
    let c = &k.carbon;
    let g = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
    let mut s = String::from("\n## Carbon\n\n");
    let _ = writeln!(
        s,
        "Lifecycle emission factors: {}. Own PV {} and own wind {} gCO2eq/kWh; the grid's hourly intensity is `sum(G·EF)/sum(G)` over {} (pumped-storage generation left out; an hour with a gap in the mix has none, and grid energy mined then is unrated, in no figure below).\n",
        c.factor_source,
        c.own_pv_g_kwh,
        c.own_wind_g_kwh,
        c.grid_mix
            .as_deref()
            .map_or("no mix (no `[carbon] mix`: every grid kWh unrated)".to_string(), |m| format!("the generation mix `{m}`"))
    );
    let _ = writeln!(s, "| | |\n|---|---|");
    let rows = [
        (
            "grid intensity, time-weighted",
            format!("{} gCO2eq/kWh", g(c.grid_intensity_mean_g_kwh)),
        ),
        (
            "grid intensity, weighted by mining's grid draw",
            format!("{} gCO2eq/kWh", g(c.grid_intensity_mining_weighted_g_kwh)),
        ),
        (
            "hours without a grid intensity",
            format!("{:.0}", c.hours_without_grid_intensity),
        ),
        ("mining carbon", format!("{:.2} t CO2eq", c.mining_co2eq_t)),
        (
            "  on curtailed surplus",
            format!("{:.2} t CO2eq", c.curtailed_co2eq_t),
        ),
        (
            "  on own generation otherwise exported",
            format!("{:.2} t CO2eq", c.own_generation_co2eq_t),
        ),
        ("  on grid import", format!("{:.2} t CO2eq", c.grid_co2eq_t)),
        (
            "grid energy mined unrated",
            format!("{:#}", mwh(c.grid_unrated_mwh)),
        ),
        (
            "mining energy's intensity, over the run",
            format!("{} gCO2eq/kWh", g(c.mining_intensity_g_kwh)),
        ),
        (
            "per TH (1e12 hashes)",
            format!(
                "{} gCO2eq",
                c.g_per_th.map_or("n/a".into(), |v| format!("{v:.3e}"))
            ),
        ),
        (
            "hashes on otherwise-curtailed energy",
            format!("{:.1} %", 100.0 * c.hashes_on_curtailed_share),
        ),
        (
            "hashes on own generation (curtailed included)",
            format!("{:.1} %", 100.0 * c.hashes_on_own_generation_share),
        ),
    ];
    for (a, b) in rows {
        let _ = writeln!(s, "| {} | {b} |", a.trim());
    }
    for (what, rows) in [
        ("UTC calendar year", &c.by_year),
        ("UTC hour of the day, over the whole run", &c.by_hour),
    ] {
        let _ = writeln!(
            s,
            "\nPer {what}:\n\n| period | mining MWh | mining t CO2eq | mining gCO2eq/kWh | grid gCO2eq/kWh |\n|---|---|---|---|---|"
        );
        for r in rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} | {} | {} |",
                r.period,
                grouped(r.mining_mwh, Some(2)),
                r.mining_co2eq_t,
                g(r.mining_intensity_g_kwh),
                g(r.grid_intensity_mean_g_kwh)
            );
        }
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
    let hashprice = hashprice_range(sc, run.timeseries.as_ref());
    let write = |name: &str, text: &str| {
        let p = stage.file(name);
        std::fs::write(&p, text).map_err(|e| io(&p, e))
    };
    write("report.md", &markdown(sc, &run.kpis, week_from, hashprice))?;
    let kpis_json = serde_json::to_value(&run.kpis).expect("KPIs serialise");
    write(
        "summary.json",
        &serde_json::to_string_pretty(&kpis_json).expect("KPIs serialise"),
    )?;
    write(
        "report.html",
        &html::page(sc, &run.kpis, kpis_json, run.timeseries.as_ref()),
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
                &svg::week(
                    ts,
                    w,
                    &svg::Reference {
                        export_limit: sc.grid.export_limit,
                        breakeven: chart::breakeven_per_hashprice(sc),
                    },
                    &format!(
                        "{}: power flows, week from {}",
                        sc.name,
                        when(&w.to_rfc3339())
                    ),
                ),
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
