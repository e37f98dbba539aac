//! `simulate --compare economic,plan`: the same scenario, data and site under several
//! policy modes, side by side, each with its own clairvoyant bound (a mode that may
//! import has a larger one).

use serde::Serialize;

use super::{run, run_with_optimum, SimError, SimOptions};
use crate::policy::config::{DEFAULT_PLAN_HORIZON, DEFAULT_PLAN_STEP, PLAN};
use crate::policy::{Mode, PlanParams};
use crate::scenario::Scenario;
use crate::signal::replay::Replay;

/// One mode's run, as the comparison shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    /// The mode as `--compare` names it (`plan` shows its base: `plan:surplus-only`).
    pub policy: String,
    pub profit_eur: f64,
    pub revenue_eur: f64,
    pub energy_cost_eur: f64,
    pub wear_cost_eur: f64,
    /// The clairvoyant bound of the same mode's energy, and the run's share of it.
    pub upper_bound_eur: Option<f64>,
    pub ratio_to_bound: Option<f64>,
    pub starts: u64,
    pub forced_stops: u64,
    pub max_starts_in_a_day: u32,
    pub mining_mwh: f64,
    pub import_mwh: f64,
    /// Mining's carbon (rated energy), t CO2eq, and the grid energy mined unrated.
    pub mining_co2eq_t: f64,
    pub grid_unrated_mwh: f64,
}

/// What `--compare` takes: `economic`, `surplus-only`, `plan` (on the scenario's own
/// energy mode) or `plan:economic` / `plan:surplus-only`, a plan optionally with its
/// horizon (`plan@24h`, `plan:economic@24h`).
pub fn parse_modes(list: &str) -> Result<Vec<String>, String> {
    let modes: Vec<String> = list
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    if modes.is_empty() {
        return Err("--compare: name at least one mode".into());
    }
    for m in &modes {
        let (name, horizon) = split_horizon(m)?;
        let base = name.strip_prefix("plan:").unwrap_or(name);
        let plan = name == PLAN || name.starts_with("plan:");
        if !(name == PLAN || base == "economic" || base == "surplus-only")
            || (horizon.is_some() && !plan)
        {
            return Err(format!(
                "--compare: {m:?} is not a mode (economic, surplus-only, plan, plan:economic or plan:surplus-only; a plan may add @HORIZON)"
            ));
        }
    }
    Ok(modes)
}

/// `plan:economic@24h` as (`plan:economic`, 24 h).
fn split_horizon(m: &str) -> Result<(&str, Option<std::time::Duration>), String> {
    match m.split_once('@') {
        None => Ok((m, None)),
        Some((name, h)) => {
            let d = crate::units::parse_duration(h).map_err(|e| format!("--compare {m}: {e}"))?;
            if !(DEFAULT_PLAN_STEP..=crate::policy::config::MAX_PLAN_HORIZON).contains(&d) {
                return Err(format!("--compare {m}: the horizon must be 15m..=48h"));
            }
            Ok((name, Some(d)))
        }
    }
}

/// `sc` with its policy in `mode` (see [`parse_modes`]); a plan keeps the scenario's own
/// plan settings where it has them.
pub fn with_mode(sc: &Scenario, mode: &str) -> Result<Scenario, String> {
    let mut sc = sc.clone();
    let (mode, horizon) = split_horizon(mode)?;
    let energy = |name: &str| match name {
        "economic" => Mode::Economic,
        _ => Mode::SurplusOnly,
    };
    if let Some(base) = mode.strip_prefix("plan:").or((mode == PLAN).then_some("")) {
        if !base.is_empty() {
            sc.policy.mode = energy(base);
        }
        let mut plan = sc.policy.plan.unwrap_or(PlanParams {
            horizon: DEFAULT_PLAN_HORIZON,
            step: DEFAULT_PLAN_STEP,
        });
        if let Some(h) = horizon {
            plan.horizon = h;
        }
        sc.policy.plan = Some(plan);
        if sc.history.pv.is_some() && sc.location.is_none() {
            return Err(format!(
                "--compare {mode}: scenario {:?} has PV but no site.latitude and site.longitude, which the planner's PV forecast needs",
                sc.name
            ));
        }
    } else {
        sc.policy.mode = energy(mode);
        sc.policy.plan = None;
    }
    Ok(sc)
}

/// Runs `sc` under each mode; with `optimum`, each beside its bound.
pub fn compare(
    sc: &Scenario,
    replay: &Replay,
    modes: &[String],
    optimum: bool,
) -> Result<Vec<CompareRow>, SimError> {
    let mut rows = Vec::new();
    for mode in modes {
        let variant = with_mode(sc, mode).map_err(|message| SimError::Output {
            path: sc.file.display().to_string(),
            message,
        })?;
        let r = if optimum {
            run_with_optimum(&variant, replay, SimOptions::default(), None)?
        } else {
            run(&variant, replay, SimOptions::default())?
        };
        let k = &r.kpis;
        let name = match variant.policy.plan {
            Some(p) => format!(
                "{PLAN}:{}@{}",
                variant.policy.mode,
                crate::units::format_duration(p.horizon)
            ),
            None => variant.policy.mode.to_string(),
        };
        rows.push(CompareRow {
            policy: name,
            profit_eur: k.profit_eur,
            revenue_eur: k.revenue_eur,
            energy_cost_eur: k.energy_cost_eur,
            wear_cost_eur: k.wear_cost_eur,
            upper_bound_eur: k.optimum.as_ref().map(|o| o.upper_bound_eur),
            ratio_to_bound: k.optimum.as_ref().map(|o| o.ratio),
            starts: k.loads.iter().map(|l| l.starts).sum(),
            forced_stops: k.loads.iter().map(|l| l.forced_stops).sum(),
            max_starts_in_a_day: k
                .loads
                .iter()
                .map(|l| l.max_starts_in_a_day)
                .max()
                .unwrap_or(0),
            mining_mwh: k.mining_mwh,
            import_mwh: k.import_mwh,
            mining_co2eq_t: k.carbon.mining_co2eq_t,
            grid_unrated_mwh: k.carbon.grid_unrated_mwh,
        });
    }
    Ok(rows)
}

/// The comparison as a table, one row per mode.
pub fn table(scenario: &str, rows: &[CompareRow]) -> String {
    let mut s = format!(
        "{scenario}: the same data and site under each policy\n\n  {:<22} {:>12} {:>12} {:>8} {:>8} {:>8} {:>10} {:>10}\n",
        "policy", "profit EUR", "bound EUR", "ratio", "starts", "forced", "mined MWh", "t CO2eq"
    );
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_string(), f);
    for r in rows {
        s.push_str(&format!(
            "  {:<22} {:>12.2} {:>12} {:>8} {:>8} {:>8} {:>10.3} {:>10.2}\n",
            r.policy,
            r.profit_eur,
            opt(r.upper_bound_eur, &|v| format!("{v:.2}")),
            opt(r.ratio_to_bound, &|v| format!("{v:.4}")),
            r.starts,
            r.forced_stops,
            r.mining_mwh,
            r.mining_co2eq_t,
        ));
    }
    s
}
