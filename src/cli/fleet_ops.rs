//! Glue for `fleet scan` (find miners on the network with asic-rs, say what each can do,
//! print a config for them) and `fleet status` (every miner as the running daemon sees
//! it, from its retained state).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::actuator::asic::client::{self, Identity};
use crate::actuator::asic::config::parse_range;
use crate::runtime::config::load;
use crate::units::Watts;

/// How long a scan waits for one address.
const SCAN_IDENTIFY_WITHIN: Duration = Duration::from_secs(5);
/// Addresses asked at once.
const SCAN_CONCURRENCY: usize = 256;

fn ths(h: Option<crate::units::HashRate>) -> Option<f64> {
    h.map(|h| (h.0 / 1e12 * 100.0).round() / 100.0)
}

/// Scans `ranges`, prints what answers and a config snippet for it.
pub async fn scan(
    ranges: &[String],
    password_file: Option<&Path>,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let mut addresses: Vec<IpAddr> = Vec::new();
    for r in ranges {
        addresses.extend(parse_range(r).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let password = password_file
        .map(|f| {
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        })
        .transpose()?;
    let factory = client::factory(SCAN_IDENTIFY_WITHIN);
    let factory = &factory;
    let password = password.as_deref();
    let mut found: Vec<Identity> = stream::iter(addresses.iter().copied())
        .map(|a| async move {
            client::discover(factory, a, password)
                .await
                .ok()
                .flatten()
                .map(|m| m.identity)
        })
        .buffer_unordered(SCAN_CONCURRENCY)
        .filter_map(|m| async move { m })
        .collect()
        .await;
    found.sort_by_key(|m| m.address);
    let snippet = config_snippet(&found);
    if json_out {
        let miners: Vec<Value> = found.iter().map(identity_json).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "scanned": addresses.len(),
                "miners": miners,
                "config": snippet,
            }))?
        )?;
    } else {
        outln!(
            "{:<16} {:<11} {:<12} {:<18} {:>9} {:>8} {:>7} {:<17}",
            "address",
            "make",
            "model",
            "firmware",
            "TH/s",
            "W",
            "pause",
            "power limit"
        )?;
        for m in &found {
            let range = match (m.supports_power_limit, m.min_power, m.max_power) {
                (false, ..) => "no".to_string(),
                (true, Some(lo), Some(hi)) => format!("{:.0}-{:.0} W", lo.0, hi.0),
                (true, ..) => "yes".to_string(),
            };
            outln!(
                "{:<16} {:<11} {:<12} {:<18} {:>9} {:>8} {:>7} {:<17}",
                m.address.to_string(),
                m.make,
                m.model,
                m.firmware,
                ths(m.hashrate).map_or("-".into(), |h| format!("{h:.2}")),
                m.power.map_or("-".into(), |w| format!("{:.0}", w.0)),
                if m.supports_pause && m.supports_resume {
                    "yes"
                } else {
                    "no"
                },
                range
            )?;
        }
        outln!(
            "\n{} miner(s) of {} address(es).",
            found.len(),
            addresses.len()
        )?;
        if !found.is_empty() {
            outln!("\n# A site config for them:\n{snippet}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn identity_json(m: &Identity) -> Value {
    json!({
        "address": m.address,
        "make": m.make,
        "model": m.model,
        "firmware": m.firmware,
        "firmware_version": m.firmware_version,
        "hashrate_ths": ths(m.hashrate),
        "expected_hashrate_ths": ths(m.expected_hashrate),
        "power_w": m.power.map(|w| w.0),
        "power_limit_w": m.limit.map(|w| w.0),
        "mining": m.mining,
        "supports": {
            "pause": m.supports_pause,
            "resume": m.supports_resume,
            "power_limit": m.supports_power_limit,
            "power_limit_min_w": m.min_power.map(|w| w.0),
            "power_limit_max_w": m.max_power.map(|w| w.0),
        },
    })
}

/// A `[[loads]] kind = "asic-fleet"` entry listing `found`, with each model's figures
/// as the miners reported them.
pub fn config_snippet(found: &[Identity]) -> String {
    let mut by_model: BTreeMap<&str, Vec<&Identity>> = BTreeMap::new();
    for m in found {
        by_model.entry(m.model.as_str()).or_default().push(m);
    }
    let miners: Vec<String> = found.iter().map(|m| format!("\"{}\"", m.address)).collect();
    let mut s = String::from("[[loads]]\nkind = \"asic-fleet\"\nname = \"fleet\"\n");
    s.push_str(&format!("miners = [{}]\n", miners.join(", ")));
    s.push_str("# password_file = \"miners.password\"\n");
    for (model, ms) in by_model {
        s.push_str(&format!("\n[loads.models.\"{model}\"]\n"));
        let max = |f: &dyn Fn(&Identity) -> Option<f64>| {
            ms.iter()
                .filter_map(|m| f(m))
                .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
        };
        if let Some(w) = max(&|m| m.max_power.or(m.limit).map(|w| w.0)) {
            s.push_str(&format!("rated_power = \"{w:.0} W\"\n"));
        }
        if let Some(h) = max(&|m| m.expected_hashrate.map(|h| h.0)) {
            s.push_str(&format!("hashrate = \"{:.1} TH/s\"\n", h / 1e12));
        }
        if ms.iter().all(|m| m.supports_power_limit) {
            match max(&|m| m.min_power.map(|w| w.0)) {
                Some(w) => s.push_str(&format!("min_power = \"{}\"\n", Watts(w))),
                None => s.push_str(
                    "# It takes power limits but reports no range: give its lowest to run it\n\
                     # by power limit (otherwise on/off), e.g.\n# min_power = \"1800 W\"\n",
                ),
            }
        } else {
            s.push_str("on_off = true\n");
        }
        s.push_str("# wake = \"2m\"\n# ramp = \"1m\"\n# min_on = \"15m\"\n# min_off = \"5m\"\n");
    }
    s
}

/// Prints every miner of the site's fleets as the daemon last published them.
pub async fn status(config_path: &PathBuf, json_out: bool) -> anyhow::Result<ExitCode> {
    let site = load(config_path)?;
    let topic = crate::mqtt::Topics::new(&site.config.site).state();
    let body = crate::mqtt::read_retained(
        &site.config.mqtt,
        &topic,
        Duration::from_millis(500),
        Duration::from_secs(10),
    )
    .await
    .with_context(|| format!("reading {topic}"))?;
    let Some(body) = body else {
        anyhow::bail!(
            "no state on {topic}: is `gridminer run --config {}` running?",
            config_path.display()
        );
    };
    let state: Value = serde_json::from_slice(&body).context("the state document")?;
    let fleet = state["fleet"].as_array().cloned().unwrap_or_default();
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&fleet)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<16} {:<18} {:<12} {:>8} {:>8} {:>8} {:<18} {:>10} {:>6} {:>7} {:>7}",
        "miner",
        "group",
        "state",
        "W",
        "TH/s",
        "target",
        "last command",
        "confirmed",
        "starts",
        "wake",
        "ramp"
    )?;
    let num = |v: &Value, digits: usize| {
        v.as_f64()
            .map_or("-".to_string(), |x| format!("{x:.digits$}"))
    };
    for m in &fleet {
        let target = if m["target"]["mining"].as_bool() == Some(true) {
            m["target"]["limit"]
                .as_f64()
                .map_or("on".to_string(), |w| format!("{w:.0}"))
        } else {
            "off".to_string()
        };
        let cmd = &m["last_command"];
        let confirmed = match (m["confirmed"].as_bool(), m["confirm_latency_s"].as_f64()) {
            (Some(true), Some(s)) => format!("{s:.1} s"),
            (Some(false), _) if cmd["failed"].as_bool() == Some(true) => "FAILED".into(),
            (Some(false), _) => "pending".into(),
            _ => "-".into(),
        };
        let secs = |v: &Value| v.as_f64().map_or("-".to_string(), |s| format!("{s:.0} s"));
        outln!(
            "{:<16} {:<18} {:<12} {:>8} {:>8} {:>8} {:<18} {:>10} {:>6} {:>7} {:>7}",
            m["address"].as_str().unwrap_or("?"),
            m["group"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
            num(&m["power_w"], 0),
            num(&m["hashrate_ths"], 1),
            target,
            cmd["command"]["kind"].as_str().unwrap_or("-"),
            confirmed,
            num(&m["starts_today"], 0),
            secs(&m["wake_s"]),
            secs(&m["ramp_s"]),
        )?;
    }
    let unresponsive = fleet
        .iter()
        .filter(|m| m["state"] == "unresponsive")
        .count();
    outln!("\n{} miner(s), {unresponsive} unresponsive.", fleet.len())?;
    // What the fleet showed, in the keys a scenario's `[[loads]]` takes, so the
    // simulator can be set from the real dynamics.
    let mut groups: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for m in &fleet {
        let g = groups
            .entry(m["group"].as_str().unwrap_or("?"))
            .or_default();
        g.0.extend(m["wake_s"].as_f64());
        g.1.extend(m["ramp_s"].as_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let mut printed_header = false;
    for (g, (mut wake, mut ramp)) in groups {
        let (n_wake, n_ramp) = (wake.len(), ramp.len());
        if let (Some(w), Some(r)) = (median(&mut wake), median(&mut ramp)) {
            if !printed_header {
                outln!(
                    "\n# Learned (median over the miners seen waking), for a scenario's [[loads]]:"
                )?;
                printed_header = true;
            }
            outln!(
                "# {g}: wake = \"{w:.1}s\", ramp = \"{r:.1}s\"  ({n_wake} and {n_ramp} miners)"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
