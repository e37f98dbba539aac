//! Scenario cases of a policy file (`policies/*.toml`): inputs -> expected decision.
//!
//! A policy file holds `[policy]` (the parameters), `[fixture]` (a small site to decide
//! for) and `[[case]]`s. The test suite runs every case of every file, and
//! `config check` validates them, so a policy's documented behaviour is executable.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::Timestamp;
use crate::config::{non_negative, price, read_table, ConfigError, Problems};
use crate::decision::{Decision, Reason};
use crate::policy::config::{validate_policy, RawPolicy};
use crate::policy::Policy;
use crate::signal::{Observation, OperatorAction, Quantity};
use crate::site::config::{export_value, take_load, validate_loads, RawExport, RawLoad};
use crate::site::{GridConnection, Tariff};
use crate::state::{Reading, SiteState};
use crate::units::{de_watts, Hashprice, Hertz, PricePerMwh, Watts};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixture {
    #[serde(deserialize_with = "de_watts")]
    export_limit: Watts,
    #[serde(deserialize_with = "de_watts")]
    import_limit: Watts,
    import_adder_eur_mwh: f64,
    export: RawExport,
    #[serde(default = "yes")]
    pv: bool,
    #[serde(default)]
    wind: bool,
    loads: Vec<toml::Value>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    at: Option<String>,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    pv: Option<Watts>,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    wind: Option<Watts>,
    #[serde(deserialize_with = "de_watts")]
    site_load: Watts,
    price: f64,
    hashprice: f64,
    frequency: Option<f64>,
    /// Signals whose last reading is older than the policy's max age.
    #[serde(default)]
    stale: Vec<String>,
    /// Units on long enough to stop, per load.
    #[serde(default)]
    running: BTreeMap<String, u32>,
    /// Units switched on at `at` (held by min_on), per load.
    #[serde(default)]
    just_started: BTreeMap<String, u32>,
    /// Units switched off at `at` (kept off by min_off), per load.
    #[serde(default)]
    just_stopped: BTreeMap<String, u32>,
    /// Starts every unit of the load has already made today.
    #[serde(default)]
    starts_used: BTreeMap<String, u32>,
    command: Option<RawCommand>,
    expect: RawExpect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    act: String,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    limit: Option<Watts>,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    setpoint: Option<Watts>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    reason: String,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    total: Option<Watts>,
    #[serde(default)]
    units_on: BTreeMap<String, u32>,
}

/// A case, checked and ready to run.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub state: SiteState,
    pub at: Timestamp,
    pub reason: Reason,
    pub total: Option<Watts>,
    /// (load index, units on).
    pub units_on: Vec<(usize, u32)>,
}

/// A policy file: the policy bound to its fixture site, and its cases.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    pub policy: Policy,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone)]
pub struct CaseOutcome {
    pub name: String,
    pub failure: Option<String>,
    pub decision: Decision,
}

/// Reads and checks a policy file, every problem with its key path.
pub fn load(path: &Path) -> Result<PolicyFile, ConfigError> {
    let mut table = read_table(path)?;
    let mut p = Problems::default();
    let raw_policy: Option<RawPolicy> = p.section(&mut table, "policy");
    let fixture: Option<RawFixture> = p.section(&mut table, "fixture");
    let raw_cases: Vec<(usize, RawCase)> = p.array(&mut table, "case", false);
    for k in table.keys() {
        p.push(k.clone(), "unknown key (expected policy, fixture, case)");
    }
    let params = raw_policy.and_then(|r| validate_policy(&mut p, "policy", r));
    let policy = fixture.and_then(|f| {
        let loads: Vec<(usize, RawLoad)> = f
            .loads
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, take_load(&mut p, &format!("fixture.loads[{i}]"), v)?)))
            .collect();
        let loads = validate_loads(&mut p, "fixture.loads", loads);
        non_negative(&mut p, "fixture.export_limit", f.export_limit);
        non_negative(&mut p, "fixture.import_limit", f.import_limit);
        price(
            &mut p,
            "fixture.import_adder_eur_mwh",
            f.import_adder_eur_mwh,
        );
        let export = export_value(&mut p, "fixture.export", f.export);
        Some(Policy::new(
            params?,
            loads,
            GridConnection {
                export_limit: f.export_limit,
                import_limit: f.import_limit,
            },
            Tariff {
                import_adder: PricePerMwh(f.import_adder_eur_mwh),
                export,
            },
            f.pv,
            f.wind,
        ))
    });
    let cases = match &policy {
        Some(pol) => raw_cases
            .into_iter()
            .filter_map(|(i, c)| case(&mut p, &format!("case[{i}]"), pol, c))
            .collect(),
        None => Vec::new(),
    };
    let file = policy.map(|policy| PolicyFile { policy, cases });
    p.into_result(path, file)
}

fn case(p: &mut Problems, at_path: &str, pol: &Policy, c: RawCase) -> Option<Case> {
    let at = match &c.at {
        Some(s) => Timestamp::parse(s)
            .map_err(|e| p.push(format!("{at_path}.at"), e))
            .ok()?,
        None => Timestamp::parse("2018-06-01T12:00:00Z").expect("valid"),
    };
    let old = at - pol.params.max_signal_age * 2;
    let mut stale = Vec::new();
    for (i, s) in c.stale.iter().enumerate() {
        match Quantity::ALL.iter().find(|q| q.as_str() == s) {
            Some(q) => stale.push(*q),
            None => p.push(
                format!("{at_path}.stale[{i}]"),
                format!("{s:?} is not a signal"),
            ),
        }
    }
    let when = |q: Quantity| if stale.contains(&q) { old } else { at };
    let mut state = SiteState::new(&pol.loads);
    if let Some(v) = c.pv {
        state.pv = Some(Reading {
            value: v,
            at: when(Quantity::PvPower),
        });
    }
    if let Some(v) = c.wind {
        state.wind = Some(Reading {
            value: v,
            at: when(Quantity::WindPower),
        });
    }
    state.site_load = Some(Reading {
        value: c.site_load,
        at: when(Quantity::SiteLoad),
    });
    state.price = Some(Reading {
        value: PricePerMwh(c.price),
        at: when(Quantity::Price),
    });
    state.hashprice = Some(Reading {
        value: Hashprice(c.hashprice),
        at: when(Quantity::Hashprice),
    });
    if let Some(f) = c.frequency {
        state.frequency = Some(Reading {
            value: Hertz(f),
            at: when(Quantity::GridFrequency),
        });
    }
    let index = |p: &mut Problems, key: &str, name: &str| {
        let i = pol.loads.iter().position(|l| l.name == name);
        if i.is_none() {
            p.push(
                format!("{at_path}.{key}.{name}"),
                "no such load in the fixture",
            );
        }
        i
    };
    let day_ago = at - Duration::from_secs(86_400);
    for (key, map, on, since) in [
        ("running", &c.running, true, day_ago),
        ("just_started", &c.just_started, true, at),
        ("just_stopped", &c.just_stopped, false, at),
    ] {
        for (name, &n) in map {
            let Some(i) = index(p, key, name) else {
                continue;
            };
            let units = &mut state.loads[i].units;
            let free: Vec<usize> = (0..units.len())
                .filter(|&u| !units[u].on && units[u].since.0 < day_ago.0)
                .collect();
            if free.len() < n as usize {
                p.push(
                    format!("{at_path}.{key}.{name}"),
                    format!("only {} units left to set", free.len()),
                );
                continue;
            }
            for &u in &free[..n as usize] {
                units[u].on = on;
                units[u].since = since;
            }
        }
    }
    for (name, &n) in &c.starts_used {
        let Some(i) = index(p, "starts_used", name) else {
            continue;
        };
        for u in &mut state.loads[i].units {
            u.day = at.day();
            u.starts_today = n;
        }
    }
    for (l, wear) in state.loads.iter_mut().zip(&pol.wear) {
        l.rebuild(at, wear);
    }
    if let Some(cmd) = c.command {
        let action = match (cmd.act.as_str(), cmd.limit, cmd.setpoint) {
            ("curtail", Some(l), None) => Some(OperatorAction::CurtailTo(l)),
            ("setpoint", None, Some(s)) => Some(OperatorAction::Setpoint(s)),
            ("release", None, None) => Some(OperatorAction::Release),
            _ => {
                p.push(
                    format!("{at_path}.command"),
                    "expected act = curtail with limit, setpoint with setpoint, or release",
                );
                None
            }
        };
        if let Some(action) = action {
            state.observe(Observation::Operator {
                issuer: crate::signal::Issuer::scenario(),
                action,
                until: None,
                at,
            });
        }
    }
    let reason = Reason::parse(&c.expect.reason)
        .ok_or_else(|| {
            p.push(
                format!("{at_path}.expect.reason"),
                format!("{:?} is not a reason", c.expect.reason),
            )
        })
        .ok();
    let units_on = c
        .expect
        .units_on
        .iter()
        .filter_map(|(name, &n)| index(p, "expect.units_on", name).map(|i| (i, n)))
        .collect();
    Some(Case {
        name: c.name,
        state,
        at,
        reason: reason?,
        total: c.expect.total,
        units_on,
    })
}

impl PolicyFile {
    /// Runs every case.
    pub fn run(&self) -> Vec<CaseOutcome> {
        self.cases
            .iter()
            .map(|c| {
                let d = self.policy.decide(&c.state, c.at);
                let mut wrong = Vec::new();
                if d.reason != c.reason {
                    wrong.push(format!(
                        "reason {} (expected {})",
                        d.reason.as_str(),
                        c.reason.as_str()
                    ));
                }
                if let Some(t) = c.total {
                    if (d.total().0 - t.0).abs() > 0.5 {
                        wrong.push(format!(
                            "total {:.1} W (expected {:.1} W)",
                            d.total().0,
                            t.0
                        ));
                    }
                }
                for &(i, n) in &c.units_on {
                    if d.loads[i].units_on != n {
                        wrong.push(format!(
                            "{} units on {} (expected {n})",
                            self.policy.loads[i].name, d.loads[i].units_on
                        ));
                    }
                }
                CaseOutcome {
                    name: c.name.clone(),
                    failure: (!wrong.is_empty()).then(|| wrong.join(", ")),
                    decision: d,
                }
            })
            .collect()
    }
}
