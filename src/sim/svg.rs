//! The report's two charts as plain SVG text: a week of power flows and energy and profit
//! per month. No plotting crate: the charts are simple and the output must not depend on
//! fonts being installed.

use std::fmt::Write;

use super::kpi::{utc, MonthKpis};
use super::output::Timeseries;
use crate::clock::Timestamp;

const W: f64 = 1100.0;
const H: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 80.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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

fn header(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{x}" y="24" font-size="16" text-anchor="middle">{t}</text>
"##,
        x = W / 2.0,
        t = esc(title)
    );
}

fn y_axis(
    out: &mut String,
    lo: f64,
    hi: f64,
    step: f64,
    right: bool,
    label: &str,
    fmt: impl Fn(f64) -> String,
) {
    let x = if right { W - RIGHT } else { LEFT };
    let ph = H - TOP - BOTTOM;
    let _ = writeln!(
        out,
        r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{}" stroke="#444"/>"##,
        H - BOTTOM
    );
    let mut v = lo;
    while v <= hi + step * 1e-6 {
        let y = H - BOTTOM - (v - lo) / (hi - lo) * ph;
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
            fmt(v)
        );
        v += step;
    }
    let (lx, rot) = if right { (W - 18.0, 90) } else { (18.0, -90) };
    let _ = writeln!(
        out,
        r##"<text x="{lx}" y="{y}" text-anchor="middle" transform="rotate({rot} {lx} {y})">{}</text>"##,
        esc(label),
        y = TOP + ph / 2.0
    );
}

fn legend(out: &mut String, items: &[(&str, &str)]) {
    let mut x = LEFT;
    let y = H - 22.0;
    for (name, color) in items {
        let _ = writeln!(
            out,
            r##"<rect x="{x}" y="{}" width="14" height="10" fill="{color}"/>"##,
            y - 9.0
        );
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{y}">{}</text>"##,
            x + 18.0,
            esc(name)
        );
        x += 26.0 + 7.0 * name.len() as f64;
    }
}

/// Power flows over the 7 days starting at `from`: generation, site load, mining,
/// export, curtailment with and without mining (MW, left), day-ahead price (EUR/MWh,
/// right).
pub fn week(ts: &Timeseries, from: Timestamp, title: &str) -> String {
    let end = from.0 + 7 * Timestamp::MS_PER_DAY;
    let idx: Vec<usize> = (0..ts.len())
        .filter(|&i| ts.time[i] >= from.0 && ts.time[i] < end)
        .collect();
    let col = |n: &str| ts.column(n).unwrap_or(&[]);
    let (pv, wind) = (col("pv_w"), col("wind_w"));
    let gen: Vec<f64> = idx
        .iter()
        .map(|&i| {
            let a = pv.get(i).copied().unwrap_or(0.0) as f64;
            let b = wind.get(i).copied().unwrap_or(0.0) as f64;
            a.max(0.0) * (!a.is_nan()) as u8 as f64 + b.max(0.0) * (!b.is_nan()) as u8 as f64
        })
        .collect();
    let pick = |n: &str| -> Vec<f64> {
        idx.iter()
            .map(|&i| col(n).get(i).copied().unwrap_or(f32::NAN) as f64)
            .collect()
    };
    let lines: Vec<(&str, &str, Vec<f64>)> = vec![
        ("generation", "#f2a900", gen),
        ("site load", "#555555", pick("site_load_w")),
        ("mining", "#d62728", pick("mining_w")),
        ("export", "#2ca02c", pick("export_w")),
        ("curtailment", "#9467bd", pick("curtailed_w")),
        (
            "curtailment without mining",
            "#c5b0d5",
            pick("curtailed_without_mining_w"),
        ),
    ];
    let price = pick("price_eur_mwh");

    let mut out = String::new();
    header(&mut out, title);
    let n = idx.len().max(2);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let max_mw = lines
        .iter()
        .flat_map(|(_, _, v)| v.iter())
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, &b| a.max(b / 1e6));
    let (lo, hi, step) = nice(0.0, max_mw, 6);
    y_axis(&mut out, lo, hi, step, false, "power (MW)", |v| {
        format!("{v}")
    });
    let (pmin, pmax) = price
        .iter()
        .filter(|v| v.is_finite())
        .fold((0.0f64, 1.0f64), |(a, b), &p| (a.min(p), b.max(p)));
    let (plo, phi, pstep) = nice(pmin, pmax, 6);
    y_axis(
        &mut out,
        plo,
        phi,
        pstep,
        true,
        "day-ahead price (EUR/MWh)",
        |v| format!("{v}"),
    );
    // Day ticks.
    for d in 0..=7 {
        let x = LEFT + d as f64 / 7.0 * pw;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#ccc" stroke-dasharray="3 3"/>"##,
            H - BOTTOM
        );
        if d < 7 {
            let day = utc(Timestamp(from.0 + d * Timestamp::MS_PER_DAY))
                .format("%a %d %b")
                .to_string();
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{}" text-anchor="middle">{day}</text>"##,
                x + pw / 14.0,
                H - BOTTOM + 18.0
            );
        }
    }
    let poly = |out: &mut String,
                v: &[f64],
                lo: f64,
                hi: f64,
                scale: f64,
                color: &str,
                width: f64,
                dash: &str| {
        let mut d = String::new();
        let mut pen = false;
        for (k, &y) in v.iter().enumerate() {
            if !y.is_finite() {
                pen = false;
                continue;
            }
            let x = LEFT + k as f64 / (n - 1) as f64 * pw;
            let yy = H - BOTTOM - ((y / scale) - lo) / (hi - lo) * ph;
            let _ = write!(d, "{}{x:.1},{yy:.1} ", if pen { "L" } else { "M" });
            pen = true;
        }
        let _ = writeln!(
            out,
            r##"<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}"/>"##
        );
    };
    for (_, color, v) in &lines {
        poly(&mut out, v, lo, hi, 1e6, color, 1.4, "");
    }
    poly(&mut out, &price, plo, phi, 1.0, "#1f77b4", 1.0, "4 2");
    let mut items: Vec<(&str, &str)> = lines.iter().map(|(n, c, _)| (*n, *c)).collect();
    items.push(("price (right)", "#1f77b4"));
    legend(&mut out, &items);
    out.push_str("</svg>\n");
    out
}

/// Mining energy per month by source (MWh, stacked bars, left) and profit (EUR, right).
pub fn monthly(months: &[MonthKpis], title: &str) -> String {
    let mut out = String::new();
    header(&mut out, title);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let n = months.len().max(1) as f64;
    let total = |m: &MonthKpis| {
        m.mining_from_curtailment_mwh + m.mining_from_export_mwh + m.mining_from_import_mwh
    };
    let emax = months.iter().map(total).fold(0.0, f64::max);
    let (lo, hi, step) = nice(0.0, emax, 6);
    y_axis(&mut out, lo, hi, step, false, "mining energy (MWh)", |v| {
        format!("{v}")
    });
    let (pmin, pmax) = months.iter().fold((0.0f64, 0.0f64), |(a, b), m| {
        (a.min(m.profit_eur), b.max(m.profit_eur))
    });
    let (plo, phi, pstep) = nice(pmin, pmax.max(1.0), 6);
    y_axis(&mut out, plo, phi, pstep, true, "profit (EUR)", |v| {
        format!("{v}")
    });
    let y = |v: f64| H - BOTTOM - (v - lo) / (hi - lo) * ph;
    let py = |v: f64| H - BOTTOM - (v - plo) / (phi - plo) * ph;
    let colors = ["#9467bd", "#2ca02c", "#d62728"];
    let slot = pw / n;
    let mut profit_path = String::new();
    for (k, m) in months.iter().enumerate() {
        let x = LEFT + k as f64 * slot + slot * 0.15;
        let bw = slot * 0.7;
        let mut base = 0.0;
        for (v, color) in [
            m.mining_from_curtailment_mwh,
            m.mining_from_export_mwh,
            m.mining_from_import_mwh,
        ]
        .into_iter()
        .zip(colors)
        {
            let (y0, y1) = (y(base), y(base + v));
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
            H - BOTTOM + 18.0,
            esc(&m.month)
        );
        let _ = write!(
            profit_path,
            "{}{cx:.1},{:.1} ",
            if k == 0 { "M" } else { "L" },
            py(m.profit_eur)
        );
        let _ = writeln!(
            out,
            r##"<circle cx="{cx:.1}" cy="{:.1}" r="3" fill="black"/>"##,
            py(m.profit_eur)
        );
    }
    let _ = writeln!(
        out,
        r##"<path d="{profit_path}" fill="none" stroke="black" stroke-width="1.5"/>"##
    );
    legend(
        &mut out,
        &[
            ("from otherwise-curtailed energy", colors[0]),
            ("from forgone export", colors[1]),
            ("from grid import", colors[2]),
            ("profit (right)", "black"),
        ],
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes_cover_the_range() {
        let (lo, hi, step) = nice(0.0, 7.3, 6);
        assert_eq!((lo, hi, step), (0.0, 8.0, 2.0));
        let (lo, hi, _) = nice(-31.0, 120.0, 6);
        assert!(lo <= -31.0 && hi >= 120.0);
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
}
