//! The report's two charts as plain SVG text: a week of power flows and prices, and
//! energy and profit per month. No plotting crate: the charts are simple and the output
//! must not depend on fonts being installed. (`report.html` has the interactive year.)

use std::fmt::Write;

use super::chart::{Buckets, Flows};
use super::html::escape as esc;
use super::kpi::{utc, MonthKpis};
use super::output::Timeseries;
use crate::clock::Timestamp;
use crate::units::{PricePerMwh, Watts};

const W: f64 = 1100.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;

/// A plot area inside the picture, px.
#[derive(Debug, Clone, Copy)]
struct Panel {
    top: f64,
    bottom: f64,
}

impl Panel {
    fn height(self) -> f64 {
        self.bottom - self.top
    }
    /// The y of `v` on the axis `lo..hi`.
    fn y(self, v: f64, lo: f64, hi: f64) -> f64 {
        self.bottom - (v - lo) / (hi - lo) * self.height()
    }
}

/// A "nice" axis: rounded step and bounds covering `[lo, hi]`.
fn nice(lo: f64, hi: f64, ticks: usize) -> (f64, f64, f64) {
    let (lo, hi) = if hi - lo < 1e-9 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / ticks as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

fn header(out: &mut String, height: f64, title: &str) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{x}" y="24" font-size="16" text-anchor="middle">{t}</text>
"##,
        x = W / 2.0,
        t = esc(title)
    );
}

/// A tick label: no float noise (`0.30000000000000004`).
fn tick(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

#[allow(clippy::too_many_arguments)]
fn y_axis(out: &mut String, p: Panel, lo: f64, hi: f64, step: f64, right: bool, label: &str) {
    let x = if right { W - RIGHT } else { LEFT };
    let _ = writeln!(
        out,
        r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#444"/>"##,
        p.top, p.bottom
    );
    let mut v = lo;
    while v <= hi + step * 1e-6 {
        let y = p.y(v, lo, hi);
        if !right {
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e5e5e5"/>"##,
                W - RIGHT
            );
        }
        let (tx, anchor) = if right {
            (x + 6.0, "start")
        } else {
            (x - 6.0, "end")
        };
        let _ = writeln!(
            out,
            r##"<text x="{tx}" y="{:.1}" text-anchor="{anchor}">{}</text>"##,
            y + 4.0,
            tick(v)
        );
        v += step;
    }
    let (lx, rot) = if right { (W - 18.0, 90) } else { (18.0, -90) };
    let _ = writeln!(
        out,
        r##"<text x="{lx}" y="{y}" text-anchor="middle" transform="rotate({rot} {lx} {y})">{}</text>"##,
        esc(label),
        y = p.top + p.height() / 2.0
    );
}

/// Legend items (name, colour, dashed) in rows from `y`, wrapping at the plot's width.
fn legend(out: &mut String, mut y: f64, items: &[(&str, &str, bool)]) {
    let mut x = LEFT;
    for (name, color, dashed) in items {
        let w = 26.0 + 7.0 * name.chars().count() as f64;
        if x + w > W - RIGHT && x > LEFT {
            x = LEFT;
            y += 18.0;
        }
        if *dashed {
            let _ = writeln!(
                out,
                r##"<line x1="{x}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="{color}" stroke-width="2" stroke-dasharray="4 2"/>"##,
                y - 4.0,
                x + 14.0,
                y - 4.0
            );
        } else {
            let _ = writeln!(
                out,
                r##"<rect x="{x}" y="{}" width="14" height="10" fill="{color}"/>"##,
                y - 9.0
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{y}">{}</text>"##,
            x + 18.0,
            esc(name)
        );
        x += w;
    }
}

/// Reference lines the week is drawn against.
#[derive(Debug, Clone)]
pub struct Reference {
    /// Drawn on the flows: export above it is curtailed.
    pub export_limit: Watts,
    /// Per load group, its break-even energy price per EUR/(PH/s·day) of hashprice (the
    /// break-even line is this times the hashprice at each step).
    pub breakeven: Vec<(String, PricePerMwh)>,
}

/// Mining's three sources, bottom to top of a stack, with their colours: one table for
/// both charts (and the HTML page's, in `html`).
pub const SOURCES: [(&str, &str); 3] = [
    ("from otherwise-curtailed energy", "#9467bd"),
    ("from forgone export", "#2ca02c"),
    ("from grid import", "#d62728"),
];

/// Colours of the break-even lines, per load group in order (cycled).
pub const GROUP_COLORS: [&str; 6] = [
    "#e377c2", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f", "#ff7f0e",
];

/// The 7 days starting at `from`: mining stacked by the energy it took (curtailed
/// surplus, forgone export, grid import) against generation, site load, export and the
/// export limit (MW); below, the day-ahead price against each group's break-even price
/// (EUR/MWh). Means over buckets of up to 15 minutes: a week of 1-second steps would be
/// 600,000 points a line, far beyond the picture's width.
pub fn week(ts: &Timeseries, from: Timestamp, r: &Reference, title: &str) -> String {
    let end = from.0 + 7 * Timestamp::MS_PER_DAY;
    let flows = Flows::new(ts);
    let idx: Vec<usize> = (0..flows.len())
        .filter(|&i| flows.time[i] >= from.0 && flows.time[i] < end)
        .collect();
    let time: Vec<i64> = idx.iter().map(|&i| flows.time[i]).collect();
    let step_ms = match time.as_slice() {
        [a, b, ..] => b - a,
        _ => 60_000,
    };
    // About one point per pixel of the plot's 960: 15-minute means for a week of minutes.
    let buckets = Buckets::fitting(&time, step_ms, 1200);
    let pick = |v: &[f64]| -> Vec<f64> {
        let sub: Vec<f64> = idx.iter().map(|&i| v[i]).collect();
        buckets.mean(&sub)
    };
    let xs: Vec<f64> = buckets
        .start_ms
        .iter()
        .map(|&t| (t - from.0) as f64 / (end - from.0) as f64)
        .collect();
    let sources = [
        pick(&flows.from_curtailment),
        pick(&flows.from_export),
        pick(&flows.from_import),
    ];
    let lines: Vec<(&str, &str, Vec<f64>)> = vec![
        ("generation", "#f2a900", pick(&flows.generation)),
        ("site load", "#555555", pick(&flows.site_load)),
        ("export", "#1f77b4", pick(&flows.export)),
        ("curtailed", "#4b2a7a", pick(&flows.curtailed)),
    ];
    let price = pick(&flows.price);
    let hashprice = pick(&flows.hashprice);
    let breakeven: Vec<Vec<f64>> = r
        .breakeven
        .iter()
        .map(|(_, k)| hashprice.iter().map(|h| h * k.0).collect())
        .collect();

    let flows_panel = Panel {
        top: 50.0,
        bottom: 400.0,
    };
    let price_panel = Panel {
        top: 440.0,
        bottom: 640.0,
    };
    let height = 720.0 + 18.0 * (r.breakeven.len() / 4) as f64;
    let mut out = String::new();
    header(&mut out, height, title);
    let pw = W - LEFT - RIGHT;
    let x_of = |x: f64| LEFT + x * pw;

    let stack_top = (0..xs.len())
        .map(|k| sources.iter().map(|s| s[k].max(0.0)).sum::<f64>())
        .fold(0.0f64, f64::max);
    let max_mw = lines
        .iter()
        .flat_map(|(_, _, v)| v.iter())
        .chain(std::iter::once(&stack_top))
        .chain(std::iter::once(&r.export_limit.0))
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, &b| a.max(b))
        / 1e6;
    let (lo, hi, step) = nice(0.0, max_mw, 6);
    y_axis(&mut out, flows_panel, lo, hi, step, false, "power (MW)");

    let (pmin, pmax) = price
        .iter()
        .chain(breakeven.iter().flatten())
        .filter(|v| v.is_finite())
        .fold((0.0f64, 1.0f64), |(a, b), &p| (a.min(p), b.max(p)));
    let (plo, phi, pstep) = nice(pmin, pmax, 4);
    y_axis(
        &mut out,
        price_panel,
        plo,
        phi,
        pstep,
        false,
        "price (EUR/MWh)",
    );
    for panel in [flows_panel, price_panel] {
        for d in 0..=7 {
            let x = LEFT + d as f64 / 7.0 * pw;
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ccc" stroke-dasharray="3 3"/>"##,
                panel.top, panel.bottom
            );
            if d < 7 {
                let day = utc(Timestamp(from.0 + d * Timestamp::MS_PER_DAY))
                    .format("%a %d %b")
                    .to_string();
                let _ = writeln!(
                    out,
                    r##"<text x="{:.1}" y="{}" text-anchor="middle">{day}</text>"##,
                    x + pw / 14.0,
                    panel.bottom + 16.0
                );
            }
        }
    }

    // The stack: each source's band between the sum of those below and that plus itself.
    let mut base = vec![0.0f64; xs.len()];
    for (src, (_, color)) in sources.iter().zip(SOURCES) {
        let top: Vec<f64> = base
            .iter()
            .zip(src)
            .map(|(b, v)| b + if v.is_finite() { v.max(0.0) } else { 0.0 })
            .collect();
        if top.iter().zip(&base).any(|(t, b)| t > b) {
            let mut d = String::new();
            for (k, (x, t)) in xs.iter().zip(&top).enumerate() {
                let y = flows_panel.y(t / 1e6, lo, hi);
                let _ = write!(
                    d,
                    "{}{:.1},{y:.1} ",
                    if k == 0 { "M" } else { "L" },
                    x_of(*x)
                );
            }
            for (x, b) in xs.iter().zip(&base).rev() {
                let _ = write!(d, "L{:.1},{:.1} ", x_of(*x), flows_panel.y(b / 1e6, lo, hi));
            }
            let _ = writeln!(
                out,
                r##"<path d="{d}Z" fill="{color}" fill-opacity="0.75" stroke="none"/>"##
            );
        }
        base = top;
    }

    let poly = |out: &mut String,
                p: Panel,
                v: &[f64],
                lo: f64,
                hi: f64,
                scale: f64,
                color: &str,
                dash: &str| {
        let mut d = String::new();
        let mut pen = false;
        for (x, &y) in xs.iter().zip(v) {
            if !y.is_finite() {
                pen = false;
                continue;
            }
            let yy = p.y(y / scale, lo, hi);
            let _ = write!(d, "{}{:.1},{yy:.1} ", if pen { "L" } else { "M" }, x_of(*x));
            pen = true;
        }
        let _ = writeln!(
            out,
            r##"<path d="{d}" fill="none" stroke="{color}" stroke-width="1.4" stroke-dasharray="{dash}"/>"##
        );
    };
    for (_, color, v) in &lines {
        poly(&mut out, flows_panel, v, lo, hi, 1e6, color, "");
    }
    let limit_y = flows_panel.y(r.export_limit.0 / 1e6, lo, hi);
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{limit_y:.1}" x2="{}" y2="{limit_y:.1}" stroke="#1f77b4" stroke-width="1.5" stroke-dasharray="8 4"/>"##,
        W - RIGHT
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#1f77b4">export limit {}</text>"##,
        W - RIGHT - 4.0,
        limit_y - 4.0,
        esc(&format!("{:#}", r.export_limit))
    );
    poly(&mut out, price_panel, &price, plo, phi, 1.0, "#222222", "");
    for (k, v) in breakeven.iter().enumerate() {
        let color = GROUP_COLORS[k % GROUP_COLORS.len()];
        poly(&mut out, price_panel, v, plo, phi, 1.0, color, "6 3");
    }

    let mut items: Vec<(String, &str, bool)> = SOURCES
        .iter()
        .map(|(n, c)| (format!("mining {n}"), *c, false))
        .collect();
    items.extend(lines.iter().map(|(n, c, _)| (n.to_string(), *c, false)));
    items.push(("export limit".into(), "#1f77b4", true));
    items.push(("day-ahead price".into(), "#222222", false));
    for (k, (name, _)) in r.breakeven.iter().enumerate() {
        items.push((
            format!("{name} break-even"),
            GROUP_COLORS[k % GROUP_COLORS.len()],
            true,
        ));
    }
    let items: Vec<(&str, &str, bool)> =
        items.iter().map(|(n, c, d)| (n.as_str(), *c, *d)).collect();
    legend(&mut out, 680.0, &items);
    out.push_str("</svg>\n");
    out
}

/// Mining energy per month by source (MWh, stacked bars, left) and profit (EUR, right).
pub fn monthly(months: &[MonthKpis], title: &str) -> String {
    const H: f64 = 520.0;
    let p = Panel {
        top: 50.0,
        bottom: H - 80.0,
    };
    let mut out = String::new();
    header(&mut out, H, title);
    let pw = W - LEFT - RIGHT;
    let n = months.len().max(1) as f64;
    let total = |m: &MonthKpis| {
        m.mining_from_curtailment_mwh + m.mining_from_export_mwh + m.mining_from_import_mwh
    };
    let emax = months.iter().map(total).fold(0.0, f64::max);
    let (lo, hi, step) = nice(0.0, emax, 6);
    y_axis(&mut out, p, lo, hi, step, false, "mining energy (MWh)");
    let (pmin, pmax) = months.iter().fold((0.0f64, 0.0f64), |(a, b), m| {
        (a.min(m.profit_eur), b.max(m.profit_eur))
    });
    let (plo, phi, pstep) = nice(pmin, pmax.max(1.0), 6);
    y_axis(&mut out, p, plo, phi, pstep, true, "profit (EUR)");
    let slot = pw / n;
    let mut profit_path = String::new();
    for (k, m) in months.iter().enumerate() {
        let x = LEFT + k as f64 * slot + slot * 0.15;
        let bw = slot * 0.7;
        let mut base = 0.0;
        for (v, (_, color)) in [
            m.mining_from_curtailment_mwh,
            m.mining_from_export_mwh,
            m.mining_from_import_mwh,
        ]
        .into_iter()
        .zip(SOURCES)
        {
            let (y0, y1) = (p.y(base, lo, hi), p.y(base + v, lo, hi));
            let _ = writeln!(
                out,
                r##"<rect x="{x:.1}" y="{y1:.1}" width="{bw:.1}" height="{:.1}" fill="{color}"/>"##,
                (y0 - y1).max(0.0)
            );
            base += v;
        }
        let cx = x + bw / 2.0;
        let _ = writeln!(
            out,
            r##"<text x="{cx:.1}" y="{}" text-anchor="middle">{}</text>"##,
            p.bottom + 18.0,
            esc(&m.month)
        );
        let py = p.y(m.profit_eur, plo, phi);
        let _ = write!(
            profit_path,
            "{}{cx:.1},{py:.1} ",
            if k == 0 { "M" } else { "L" },
        );
        let _ = writeln!(
            out,
            r##"<circle cx="{cx:.1}" cy="{py:.1}" r="3" fill="black"/>"##,
        );
    }
    let _ = writeln!(
        out,
        r##"<path d="{profit_path}" fill="none" stroke="black" stroke-width="1.5"/>"##
    );
    let mut items: Vec<(&str, &str, bool)> = SOURCES.iter().map(|(n, c)| (*n, *c, false)).collect();
    items.push(("profit (right)", "black", false));
    legend(&mut out, H - 22.0, &items);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Decision, LoadTarget, PolicyMemory, Reason};
    use crate::site::{LoadKind, LoadSpec, PowerLevels, WearLimits};
    use crate::units::HashRate;

    #[test]
    fn nice_axes_cover_the_range() {
        let (lo, hi, step) = nice(0.0, 7.3, 6);
        assert_eq!((lo, hi, step), (0.0, 8.0, 2.0));
        let (lo, hi, _) = nice(-31.0, 120.0, 6);
        assert!(lo <= -31.0 && hi >= 120.0);
        assert_eq!(tick(0.1 + 0.2), "0.3");
    }

    #[test]
    fn monthly_chart_is_well_formed() {
        let m = vec![
            MonthKpis {
                month: "2018-01".into(),
                mining_from_curtailment_mwh: 3.0,
                profit_eur: 100.0,
                ..Default::default()
            },
            MonthKpis {
                month: "2018-02".into(),
                mining_from_export_mwh: 2.0,
                profit_eur: -20.0,
                ..Default::default()
            },
        ];
        let s = monthly(&m, "t <&>");
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("2018-02") && s.contains("t &lt;&amp;&gt;"));
        assert_eq!(s.matches("<rect").count(), 1 + 6 + 4);
    }

    /// A week of a 10 MW surplus behind a 6 MW limit, 5 MW of mining: 4 MW from the
    /// curtailment, 1 MW from export, stacked; the export limit and one break-even line
    /// per group drawn.
    #[test]
    fn r12_the_week_stacks_mining_and_draws_the_reference_lines() {
        let load = LoadSpec {
            name: "s21".into(),
            kind: LoadKind::Asic,
            count: 1,
            rated_power: Watts(5e6),
            hashrate: HashRate::from_ths(200.0),
            levels: PowerLevels::OnOff,
            ramp: Default::default(),
            wake: Default::default(),
            wear: WearLimits::default(),
        };
        let mut ts = Timeseries::new(std::slice::from_ref(&load), 7 * 1440);
        let d = Decision {
            at: Timestamp(0),
            loads: vec![LoadTarget {
                units_on: 1,
                power: Watts(5e6),
            }],
            reason: Reason::Economic,
            limit: None,
            held_on: 0,
            blocked_starts: 0,
            memory: PolicyMemory::default(),
        };
        for i in 0..7 * 1440 {
            ts.push(
                Timestamp(i * 60_000),
                [10e6, 0.0, 0.0, 40.0, 50.0],
                &d,
                &[5e6],
                [5e6, 5e6, 0.0, 0.0, 4e6],
                [f64::NAN, 0.0, 0.0],
            );
        }
        let r = Reference {
            export_limit: Watts(6e6),
            breakeven: vec![
                ("s21".into(), PricePerMwh(1.0)),
                ("s19".into(), PricePerMwh(2.0)),
            ],
        };
        let s = week(&ts, Timestamp(0), &r, "w");
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        // Two stacked bands (no import band: nothing imported), closed paths.
        assert_eq!(s.matches(r##"fill-opacity="0.75""##).count(), 2);
        assert!(s.contains("export limit 6 MW"));
        assert_eq!(s.matches(r##"stroke-dasharray="6 3""##).count(), 2);
        assert!(s.contains("s19 break-even"));
        // A week of minutes drawn as 15-minute means, not 10,080 points a line.
        let generation = s
            .lines()
            .find(|l| l.contains(r##"stroke="#f2a900""##))
            .unwrap();
        assert_eq!(generation.matches('L').count(), 7 * 96 - 1);
        assert!(s.len() < 150_000, "{}", s.len());
    }
}
