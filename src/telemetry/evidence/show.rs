//! Evidence records for people (`gridminer events` without `--json`): one block per
//! event, the trigger and verdicts on its first lines, then a table of the units'
//! timings and one of the samples. Times after the trigger are `+N ms`; a reading
//! measured before the trigger (a miner polled seconds ago) is marked `(before trigger)`,
//! never shown as the response.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Record, TriggerKind, Verdict, OFFSETS};
use crate::clock::Timestamp;

/// `+12 ms`, `+1.25 s`.
fn after(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("+{} ms", d.as_millis())
    } else {
        format!("+{:.2} s", d.as_secs_f64())
    }
}

fn offset(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs())
    }
}

fn verdict(v: Verdict, last: Option<Duration>, what: &str) -> String {
    match last {
        Some(l) => format!("{} (last {what} {})", v.as_str(), after(l)),
        None => v.as_str().to_owned(),
    }
}

/// The records as text, in the order given.
pub fn text(records: &[Record]) -> String {
    let mut out = String::new();
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        block(&mut out, r);
    }
    out
}

fn block(out: &mut String, r: &Record) {
    let t = r.trigger.at;
    let rel = |at: Timestamp| after(at.since(t));
    let detail = match r.trigger.kind {
        TriggerKind::UnderFrequency => r
            .trigger
            .frequency
            .map_or("frequency unknown".into(), |f| format!("{f:.3}")),
        TriggerKind::OperatorCurtail => format!(
            "jti {} from {}",
            r.trigger
                .jti
                .as_deref()
                .unwrap_or("(not known: restored command)"),
            r.trigger
                .operator
                .as_deref()
                .unwrap_or("(unknown operator)")
        ),
    };
    let watts = |w: Option<crate::units::Watts>| w.map_or("unknown".into(), |w| format!("{w:.1}"));
    let closed = match r.closed {
        Some(c) => format!("{} at {}", c.why.as_str(), rel(c.at)),
        None => "open".into(),
    };
    let _ = writeln!(
        out,
        "{t}  {}  {detail}  site {}\n  mining before {}, cap {}; record {closed}",
        r.trigger.kind.as_str(),
        r.site,
        watts(r.mining_before),
        watts(r.cap),
    );
    let resp = &r.response;
    let _ = writeln!(
        out,
        "  FFR {} s window: commands {}; drop {}",
        resp.window.as_secs_f64(),
        verdict(resp.commands, resp.last_acked, "ack"),
        verdict(resp.drop, resp.last_confirmed, "confirmation"),
    );
    let _ = writeln!(
        out,
        "  {:<12} {:<16} {:<18} {:>9} {:>9} {:>11}  error",
        "load", "unit", "command", "sent", "acked", "confirmed"
    );
    for l in &r.loads {
        if l.units.is_empty() {
            let why = if l.command_due {
                "(no command sent)"
            } else {
                "(no command needed)"
            };
            let _ = writeln!(out, "  {:<12} {why}", l.load);
        }
        for u in &l.units {
            let confirmed = match (u.confirmed, l.readback) {
                (Some(c), _) => rel(c),
                (None, false) => "no readback".into(),
                (None, true) => "-".into(),
            };
            let _ = writeln!(
                out,
                "  {:<12} {:<16} {:<18} {:>9} {:>9} {:>11}  {}",
                l.load,
                u.unit,
                u.command,
                rel(u.sent),
                u.acked.map_or("-".into(), rel),
                confirmed,
                u.error.as_deref().unwrap_or("")
            );
        }
    }
    let _ = writeln!(
        out,
        "  {:<8} {:>10} {:>9} {:>11}  readings",
        "sample", "taken", "mining", "oldest age"
    );
    for o in OFFSETS {
        let Some(s) = r.samples.iter().find(|s| s.offset == o) else {
            let _ = writeln!(out, "  {:<8} {:>10}", offset(o), "not taken");
            continue;
        };
        let readings: Vec<String> = s
            .loads
            .iter()
            .map(|l| {
                let power = l.power.map_or("unknown".into(), |w| format!("{w:.1}"));
                let age = l
                    .age
                    .map_or(String::new(), |a| format!(", {:.3} s old", a.as_secs_f64()));
                let mark = if l.estimated {
                    " (no readback: setpoint)"
                } else if l.power.is_some() && !l.after_trigger {
                    " (before trigger)"
                } else {
                    ""
                };
                format!("{} {power}{age}{mark}", l.load)
            })
            .collect();
        let _ = writeln!(
            out,
            "  {:<8} {:>10} {:>9} {:>11}  {}",
            offset(o),
            rel(s.at),
            watts(s.mining),
            s.oldest_age
                .map_or("-".into(), |a| format!("{:.3} s", a.as_secs_f64())),
            readings.join("; ")
        );
    }
}
