//! The `[policy]` section: its file shape and its checks, into `PolicyParams`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::{FrequencyResponse, Mode, PlanParams, PolicyParams};
use crate::config::{non_negative, price, Problems};
use crate::units::{de_duration, de_opt_duration, Hertz, PricePerMwh, Watts};

/// The `[policy]` table of a policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub mode: String,
    #[serde(default)]
    pub margin_eur_mwh: f64,
    #[serde(default)]
    pub hysteresis_eur_mwh: f64,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_on: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub min_off: Option<Duration>,
    #[serde(default)]
    pub max_starts_per_day: Option<u32>,
    /// The running a start must pay for its wear cost within, at least `min_on`
    /// (default 12 h: judged over a 15-minute `min_on` alone, a start earns about
    /// 0.10 EUR, so any real start cost would refuse every start).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub start_payback: Option<Duration>,
    #[serde(default = "default_max_age", deserialize_with = "de_duration")]
    pub max_signal_age: Duration,
    #[serde(default, deserialize_with = "crate::units::de_opt_watts")]
    pub safe_limit: Option<Watts>,
    #[serde(default)]
    pub frequency: Option<RawFrequency>,
    /// The planner's settings, read with `mode = "plan"`.
    #[serde(default)]
    pub plan: Option<RawPlan>,
}

/// `plan = { horizon = "12h", base = "surplus-only", step = "15m" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub horizon: Option<Duration>,
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub step: Option<Duration>,
}

/// The plan's horizon when the policy does not say.
pub const DEFAULT_PLAN_HORIZON: Duration = Duration::from_secs(12 * 3600);
/// The plan's slot when the policy does not say.
pub const DEFAULT_PLAN_STEP: Duration = Duration::from_secs(15 * 60);
/// Longest horizon: two days, as far as a day-ahead market and a weather forecast reach.
pub const MAX_PLAN_HORIZON: Duration = Duration::from_secs(48 * 3600);
/// Shortest and longest slot.
pub const PLAN_STEP: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(3600);

/// The modes as a policy file writes them: one table for parsing and for showing, so a
/// report names a mode the way its file does.
const MODES: [(&str, Mode); 2] = [
    ("surplus-only", Mode::SurplusOnly),
    ("economic", Mode::Economic),
];

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = MODES
            .iter()
            .find(|(_, m)| m == self)
            .map(|(n, _)| *n)
            .expect("every mode is in MODES");
        f.write_str(name)
    }
}

/// The mode that plans ahead, on the energy of its `base` mode.
pub const PLAN: &str = "plan";

impl PolicyParams {
    /// The mode as a policy file names it: `plan` when it plans, else its energy mode.
    pub fn mode_name(&self) -> String {
        match self.plan {
            Some(_) => PLAN.to_string(),
            None => self.mode.to_string(),
        }
    }
}

/// `start_payback` when the policy does not say.
pub const DEFAULT_START_PAYBACK: Duration = Duration::from_secs(12 * 3600);

/// Longest `start_payback`: a week of running.
pub const MAX_START_PAYBACK: Duration = Duration::from_secs(7 * 86_400);

fn default_max_age() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFrequency {
    pub nominal_hz: f64,
    pub shed_below_hz: f64,
    pub absorb_above_hz: f64,
    #[serde(deserialize_with = "de_duration")]
    pub hold: Duration,
}

/// Checks a `[policy]` table; `at` is its key path.
pub fn validate_policy(p: &mut Problems, at: &str, raw: RawPolicy) -> Option<PolicyParams> {
    let expected = || {
        let mut names: Vec<String> = MODES.iter().map(|(n, _)| format!("{n:?}")).collect();
        names.push(format!("{PLAN:?}"));
        names.join(", ")
    };
    let mode_named = |name: &str| MODES.iter().find(|(n, _)| *n == name).map(|(_, m)| *m);
    let (mode, plan) = if raw.mode == PLAN {
        let plan = raw.plan.unwrap_or(RawPlan {
            horizon: None,
            base: None,
            step: None,
        });
        let base = match plan.base.as_deref() {
            None => Some(Mode::Economic),
            Some(b) => {
                let m = mode_named(b);
                if m.is_none() {
                    p.push(
                        format!("{at}.plan.base"),
                        format!("{b:?}: expected \"surplus-only\" or \"economic\" (the energy the plan may use)"),
                    );
                }
                m
            }
        };
        let horizon = plan.horizon.unwrap_or(DEFAULT_PLAN_HORIZON);
        let step = plan.step.unwrap_or(DEFAULT_PLAN_STEP);
        if !PLAN_STEP.contains(&step) {
            p.push(
                format!("{at}.plan.step"),
                format!(
                    "{} is outside {}..={}",
                    crate::units::format_duration(step),
                    crate::units::format_duration(*PLAN_STEP.start()),
                    crate::units::format_duration(*PLAN_STEP.end())
                ),
            );
        } else if !(step..=MAX_PLAN_HORIZON).contains(&horizon) {
            p.push(
                format!("{at}.plan.horizon"),
                format!(
                    "{} is outside one step ({})..={}",
                    crate::units::format_duration(horizon),
                    crate::units::format_duration(step),
                    crate::units::format_duration(MAX_PLAN_HORIZON)
                ),
            );
        }
        (base, Some(PlanParams { horizon, step }))
    } else {
        let mode = mode_named(&raw.mode);
        if mode.is_none() {
            p.push(
                format!("{at}.mode"),
                format!("{:?}: expected {}", raw.mode, expected()),
            );
        }
        if raw.plan.is_some() {
            p.push(
                format!("{at}.plan"),
                format!(
                    "is read only with mode = \"{PLAN}\" (mode is {:?})",
                    raw.mode
                ),
            );
        }
        (mode, None)
    };
    price(p, &format!("{at}.margin_eur_mwh"), raw.margin_eur_mwh);
    if !(raw.hysteresis_eur_mwh.is_finite() && raw.hysteresis_eur_mwh >= 0.0) {
        p.push(
            format!("{at}.hysteresis_eur_mwh"),
            "must be a finite number >= 0",
        );
    } else {
        price(
            p,
            &format!("{at}.hysteresis_eur_mwh"),
            raw.hysteresis_eur_mwh,
        );
    }
    if raw.max_starts_per_day == Some(0) {
        p.push(
            format!("{at}.max_starts_per_day"),
            "0 would never start anything; omit it for no limit",
        );
    }
    let start_payback = raw.start_payback.unwrap_or(DEFAULT_START_PAYBACK);
    if start_payback > MAX_START_PAYBACK {
        p.push(
            format!("{at}.start_payback"),
            format!("{start_payback:?} is more than {MAX_START_PAYBACK:?}: no forecast of a run is that good"),
        );
    }
    if raw.max_signal_age.is_zero() {
        p.push(format!("{at}.max_signal_age"), "must be > 0");
    }
    let safe_limit = raw.safe_limit.unwrap_or(Watts::ZERO);
    non_negative(p, &format!("{at}.safe_limit"), safe_limit);
    let frequency = raw.frequency.map(|f| {
        for (key, hz) in [
            ("nominal_hz", f.nominal_hz),
            ("shed_below_hz", f.shed_below_hz),
            ("absorb_above_hz", f.absorb_above_hz),
        ] {
            // A threshold outside the range readings may have would never be crossed.
            let (lo, hi) = (crate::units::MIN_FREQUENCY, crate::units::MAX_FREQUENCY);
            if !(lo.0..=hi.0).contains(&hz) {
                p.push(
                    format!("{at}.frequency.{key}"),
                    format!("{hz} is outside {lo}..={hi}"),
                );
            }
        }
        if !(f.shed_below_hz < f.nominal_hz && f.nominal_hz < f.absorb_above_hz) {
            p.push(
                format!("{at}.frequency"),
                format!(
                    "need shed_below_hz < nominal_hz < absorb_above_hz, got {} < {} < {}",
                    f.shed_below_hz, f.nominal_hz, f.absorb_above_hz
                ),
            );
        }
        FrequencyResponse {
            nominal: Hertz(f.nominal_hz),
            shed_below: Hertz(f.shed_below_hz),
            absorb_above: Hertz(f.absorb_above_hz),
            hold: f.hold,
        }
    });
    Some(PolicyParams {
        mode: mode?,
        plan,
        margin: PricePerMwh(raw.margin_eur_mwh),
        hysteresis: PricePerMwh(raw.hysteresis_eur_mwh),
        min_on: raw.min_on.unwrap_or_default(),
        min_off: raw.min_off.unwrap_or_default(),
        max_starts_per_day: raw.max_starts_per_day,
        start_payback: start_payback.min(MAX_START_PAYBACK),
        max_signal_age: raw.max_signal_age,
        safe_limit,
        frequency,
    })
}

/// `safe_limit` is the most mining allowed while the signals are stale: the site cannot
/// supply more than its import limit plus its generation, so more is a config mistake
/// (it would read as "no limit"). `generation_keys` names where generation is stated.
pub fn safe_limit_within(
    p: &mut Problems,
    at: &str,
    safe_limit: Watts,
    import_limit: Watts,
    generation: Watts,
    generation_keys: &str,
) {
    let most = import_limit + generation;
    if safe_limit > most {
        p.push(
            at,
            format!(
                "{safe_limit} is more than the import limit {import_limit} plus the generation capacity {generation} \
                 ({generation_keys}): it is the most mining allowed while blind"
            ),
        );
    }
}
