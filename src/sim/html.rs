//! `report.html`: the run as one self-contained page an analyst opens offline. The chart
//! library (uPlot, vendored in `crate::assets` with its licence and provenance), the page's
//! script and style, and the data are all inlined; nothing is fetched.
//!
//! The data is the run's record brought down to what a screen can show (`chart`: bucket
//! means, so a year of 1-minute steps becomes 8,760 hourly points and the file stays
//! well under a few MB), plus the KPI JSON exactly as `summary.json` has it. Everything
//! from the scenario (its name, description, load names) reaches the page escaped:
//! HTML-escaped in the markup, and `<`, `>`, `&` as `\u003c`... inside the JSON, so a
//! name such as `</script><script>` is text, never markup.

use serde_json::{json, Value};

use super::chart::{breakeven_per_hashprice, duration_curve, power_unit, Buckets, Flows};
use super::output::Timeseries;
use super::report::{self, summary_rows};
use super::svg::{GROUP_COLORS, SOURCES};
use super::Kpis;
use crate::decision::ALL_REASONS;
use crate::scenario::Scenario;
use crate::site::ExportValue;
use crate::units::{Hashprice, Watts};

use crate::assets::{UPLOT_CSS, UPLOT_JS, UPLOT_LICENSE};

const REPORT_JS: &str = include_str!("assets/report.js");
const REPORT_CSS: &str = include_str!("assets/report.css");

/// Most points a time chart gets: a year of hours.
const MAX_POINTS: usize = 10_000;
/// Most points of the daily charts (utilisation, reasons): a year of days.
const MAX_DAILY_POINTS: usize = 400;
/// Points of each duration curve.
const DURATION_POINTS: usize = 1_000;

/// The charts the page draws, in order: (id, heading). `report.js` draws into
/// `#chart-<id>`; the browser test checks each one has a canvas.
pub const CHARTS: [(&str, &str); 8] = [
    (
        "flows",
        "Mining power by energy source, against generation and the export limit",
    ),
    ("price", "Price against each group's break-even price"),
    ("price-duration", "Price duration curve"),
    ("curtailment-duration", "Curtailment duration curve"),
    (
        "months",
        "Online profit per month, and the clairvoyant optimum",
    ),
    ("site", "Site value with and without mining"),
    ("utilisation", "Utilisation per load group"),
    ("reasons", "Decision reasons over time"),
];

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped (for content and attribute values).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that may stand inside a `<script>` element: no `<`, `>` or `&` (so no
/// `</script>` and no `<!--`), and no U+2028/U+2029 (line breaks to older JavaScript
/// parsers). All become `\uXXXX` escapes, which JSON reads back as the same characters.
pub fn script_json(v: &Value) -> String {
    let s = serde_json::to_string(v).expect("a JSON value serialises");
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A script's text as it may stand inside `<script>`: a `</script` in it would end the
/// element early. (The vendored files have none, a test checks; this keeps it so.)
fn inline_script(js: &str) -> String {
    js.replace("</script", "<\\/script")
}

/// A number for the page's JSON: 5 significant figures (a chart needs no more, and it
/// keeps the file small); NaN and infinities as `null`, which a chart shows as a gap.
fn num(v: f64) -> Value {
    if !v.is_finite() {
        return Value::Null;
    }
    let rounded: f64 = format!("{v:.4e}").parse().unwrap_or(v);
    json!(rounded)
}

fn nums(v: impl IntoIterator<Item = f64>) -> Value {
    Value::Array(v.into_iter().map(num).collect())
}

/// The page. `kpis` is the run's KPI JSON as `summary.json` has it (the page reads the
/// months, the optimum and, where present, `site` from it); `ts` is the per-step record
/// (without one, the page has the tables and the month charts only).
pub fn page(sc: &Scenario, k: &Kpis, kpis: Value, ts: Option<&Timeseries>) -> String {
    let hashprice = report::hashprice_range(sc, ts);
    let data = data(sc, kpis, ts, hashprice);
    let mut s = String::with_capacity(200_000);
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    s.push_str(&format!(
        "<title>{} · gridminer simulation report</title>\n",
        escape(&sc.name)
    ));
    s.push_str(&format!(
        "<style>\n{UPLOT_CSS}\n</style>\n<style>\n{REPORT_CSS}\n</style>\n</head>\n<body>\n"
    ));
    s.push_str(&format!(
        "<header>\n<h1 id=\"scenario-name\">{}</h1>\n",
        escape(&sc.name)
    ));
    if !sc.description.trim().is_empty() {
        s.push_str(&format!("<p>{}</p>\n", escape(sc.description.trim())));
    }
    s.push_str("</header>\n<section id=\"summary\">\n<h2>Summary</h2>\n<table>\n");
    for (label, value) in summary_rows(k) {
        let class = if label.starts_with("  ") {
            " class=\"sub\""
        } else {
            ""
        };
        s.push_str(&format!(
            "<tr{class}><th>{}</th><td>{}</td></tr>\n",
            escape(label.trim()),
            escape(&value)
        ));
    }
    s.push_str("</table>\n<h2>Site and policy</h2>\n<ul>\n");
    for line in report::site_lines(sc, hashprice) {
        s.push_str(&format!("<li>{}</li>\n", escape(&line)));
    }
    s.push_str("</ul>\n</section>\n<main id=\"charts\">\n");
    for (id, title) in CHARTS {
        s.push_str(&format!(
            "<section class=\"chart\" id=\"chart-{id}\">\n<h2>{}</h2>\n<div class=\"plot\"></div>\n<p class=\"caption\"></p>\n</section>\n",
            escape(title)
        ));
    }
    s.push_str("</main>\n<footer>\n<p>Written by <code>gridminer simulate</code>. Charts drawn with <a href=\"https://github.com/leeoniya/uPlot\">uPlot</a> 1.6.32, inlined with its licence:</p>\n<details><summary>uPlot licence (MIT)</summary>\n<pre>");
    s.push_str(&escape(UPLOT_LICENSE));
    s.push_str("</pre>\n</details>\n</footer>\n");
    s.push_str("<script type=\"application/json\" id=\"report-data\">");
    s.push_str(&script_json(&data));
    s.push_str("</script>\n<script>\n");
    s.push_str(&inline_script(UPLOT_JS));
    s.push_str("\n</script>\n<script>\n");
    s.push_str(&inline_script(REPORT_JS));
    s.push_str("\n</script>\n</body>\n</html>\n");
    s
}

/// The page's data (see `report.js` for how each part is drawn). Powers in the chart's
/// unit (`meta.power_unit`), prices in EUR/MWh, times in seconds since the epoch.
fn data(
    sc: &Scenario,
    kpis: Value,
    ts: Option<&Timeseries>,
    hashprice: Option<(f64, f64, f64)>,
) -> Value {
    let breakeven = breakeven_per_hashprice(sc);
    let most = sc
        .loads
        .iter()
        .map(|l| l.max_power())
        .sum::<Watts>()
        .max(sc.grid.export_limit)
        .max(sc.grid.import_limit);
    let flows = ts.map(Flows::new);
    let generation_max = flows
        .as_ref()
        .map_or(0.0, |f| f.generation.iter().copied().fold(0.0, f64::max));
    let (unit, per_unit) = power_unit(most.max(Watts(generation_max)));
    let power = |v: &[f64]| nums(v.iter().map(|w| w / per_unit));
    let loads: Vec<Value> = sc
        .loads
        .iter()
        .zip(&breakeven)
        .map(|(l, (_, b))| {
            json!({
                "name": l.name,
                "units": l.count,
                "max_power": num(l.max_power().0 / per_unit),
                "breakeven_per_hashprice": num(b.0),
            })
        })
        .collect();
    let mut meta = json!({
        "scenario": sc.name,
        "power_unit": unit,
        "export_limit": num(sc.grid.export_limit.0 / per_unit),
        "import_limit": num(sc.grid.import_limit.0 / per_unit),
        "import_adder": num(sc.tariff.import_adder.0),
        "export_fixed": match sc.tariff.export {
            ExportValue::DayAhead => Value::Null,
            ExportValue::Fixed(p) => num(p.0),
        },
        "mode": sc.policy.mode.to_string(),
        "loads": loads,
        "hashprice": hashprice.map(|(mean, lo, hi)| json!({
            "mean": num(mean), "min": num(lo), "max": num(hi),
            "label": format!("{:#}", Hashprice(mean)),
        })),
        "sources": SOURCES.iter().map(|(n, c)| json!({"name": n, "color": c})).collect::<Vec<_>>(),
        "group_colors": GROUP_COLORS,
    });
    let mut out = json!({ "meta": Value::Null, "kpis": kpis });
    if let (Some(f), Some(ts)) = (&flows, ts) {
        let step_ms = sc.history.step.as_millis() as i64;
        let b = Buckets::fitting(&f.time, step_ms, MAX_POINTS);
        let t = nums(b.start_ms.iter().map(|&ms| ms as f64 / 1e3));
        let mean = |v: &[f64]| {
            b.mean(v)
                .into_iter()
                .map(|w| w / per_unit)
                .collect::<Vec<_>>()
        };
        out["flows"] = json!({
            "t": t,
            "generation": nums(mean(&f.generation)),
            "site_load": nums(mean(&f.site_load)),
            "from_curtailment": nums(mean(&f.from_curtailment)),
            "from_export": nums(mean(&f.from_export)),
            "from_import": nums(mean(&f.from_import)),
            "export": nums(mean(&f.export)),
            "curtailed": nums(mean(&f.curtailed)),
        });
        out["price"] = json!({
            "t": t,
            "price": nums(b.mean(&f.price)),
            "hashprice": nums(b.mean(&f.hashprice)),
        });
        let hours = f.len() as f64 * sc.history.step.as_secs_f64() / 3600.0;
        let price = duration_curve(&f.price, DURATION_POINTS);
        let without = duration_curve(&f.curtailed_without_mining, DURATION_POINTS);
        let with = duration_curve(&f.curtailed, DURATION_POINTS);
        out["duration"] = json!({
            "hours": num(hours),
            "price": {
                "x": nums(price.iter().map(|p| p.0 * hours)),
                "y": nums(price.iter().map(|p| p.1)),
            },
            "curtailment": {
                "x": nums(without.iter().map(|p| p.0 * hours)),
                "without_mining": power(&without.iter().map(|p| p.1).collect::<Vec<_>>()),
                "with_mining": power(&with.iter().map(|p| p.1).collect::<Vec<_>>()),
            },
        });
        let daily = Buckets::fitting(&f.time, step_ms, MAX_DAILY_POINTS);
        let utilisation: Vec<Value> = sc
            .loads
            .iter()
            .map(|l| {
                let full = l.max_power().0;
                let col = ts.column(&format!("{}_w", l.name)).unwrap_or(&[]);
                let share: Vec<f64> = (0..f.len())
                    .map(|i| {
                        col.get(i).map_or(f64::NAN, |&w| {
                            if full > 0.0 {
                                f64::from(w) / full
                            } else {
                                0.0
                            }
                        })
                    })
                    .collect();
                nums(daily.mean(&share).into_iter().map(|s| 100.0 * s))
            })
            .collect();
        let used: Vec<usize> = (0..ALL_REASONS.len())
            .filter(|&r| ts.reason.iter().any(|&x| usize::from(x) == r))
            .collect();
        let reasons: Vec<Value> = used
            .iter()
            .map(|&r| {
                nums(
                    daily
                        .share(|i| usize::from(ts.reason[i]) == r)
                        .into_iter()
                        .map(|s| 100.0 * s),
                )
            })
            .collect();
        out["daily"] = json!({
            "t": nums(daily.start_ms.iter().map(|&ms| ms as f64 / 1e3)),
            "bucket_s": daily.width_ms / 1000,
            "utilisation": utilisation,
            "reasons": reasons,
        });
        meta["bucket_s"] = json!(b.width_ms / 1000);
        meta["reasons"] = used
            .iter()
            .map(|&r| {
                json!({
                    "code": ALL_REASONS[r].as_str(),
                    "meaning": report::reason_meaning(ALL_REASONS[r]),
                })
            })
            .collect();
    }
    out["meta"] = meta;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r12_inlined_text_cannot_end_its_element() {
        // The vendored script must not hold what `inline_script` would have to change.
        assert!(!UPLOT_JS.contains("</script") && !REPORT_JS.contains("</script"));
        assert!(!UPLOT_CSS.contains("</style") && !REPORT_CSS.contains("</style"));
        let v = json!({"name": "</script><script>alert(1)</script><!-- & \u{2028}"});
        let s = script_json(&v);
        assert!(!s.contains('<') && !s.contains('>') && !s.contains('&'));
        assert!(!s.contains('\u{2028}'));
        // Read back, it is the same text.
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), v);
        assert_eq!(
            escape("<b a=\"x\">'&'</b>"),
            "&lt;b a=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/b&gt;"
        );
        assert_eq!(inline_script("a('</script>')"), "a('<\\/script>')");
    }

    #[test]
    fn numbers_are_short_and_gaps_are_null() {
        assert_eq!(num(1.234_567_89).to_string(), "1.2346");
        assert_eq!(num(6_000_000.0).to_string(), "6000000.0");
        assert_eq!(num(f64::NAN), Value::Null);
        assert_eq!(num(f64::INFINITY), Value::Null);
    }
}
