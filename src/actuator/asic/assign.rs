//! Which miners of a group run, and at what limit, for the group's target: the watt
//! allocator below the policy. Pure.
//!
//! The policy gives a group `units_on` and a total power. Here that becomes one goal per
//! miner, with three rules:
//! - **the target is a cap**: what miners out of the capacity (unresponsive, unknown)
//!   may still draw is taken off the total first, so the group never draws more than
//!   its target because one miner would not stop;
//! - **wear per device**: a running miner keeps running (no needless start); a start
//!   goes to the resting miner with the fewest starts today whose own `min_off` has
//!   passed and whose starts today are below its limit; a stop goes to the miner running
//!   longest whose `min_on` has passed;
//! - **learned power**: a miner seen drawing more (or less) than its limit is set to the
//!   limit that makes it draw its share.

use std::time::Duration;

use super::control::Goal;
use crate::clock::Timestamp;
use crate::decision::LoadTarget;
use crate::site::{PowerLevels, WearLimits};
use crate::units::Watts;

/// One miner as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    /// Out of the capacity: gets no power, and its `uncontrolled` draw is taken off.
    pub excluded: bool,
    pub uncontrolled: Watts,
    /// Asked to mine now.
    pub mining: bool,
    /// Since when it has been asked for that.
    pub since: Option<Timestamp>,
    pub starts_today: u32,
    /// Power drawn over the limit set, as learned.
    pub power_per_limit: Option<f64>,
}

/// A group's miners and what they are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub rated: Watts,
    pub levels: PowerLevels,
    pub wear: WearLimits,
}

/// The goals, and how far the uncontrolled draw alone exceeds the target (the group is
/// over its cap by that much whatever the others do).
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub goals: Vec<Goal>,
    pub over: Watts,
}

fn held(m: &Member, now: Timestamp, d: Duration) -> bool {
    m.since.is_some_and(|s| now.since(s) < d)
}

pub fn assign(model: &Model, target: LoadTarget, members: &[Member], now: Timestamp) -> Assignment {
    let uncontrolled: Watts = members.iter().map(|m| m.uncontrolled).sum();
    let budget = (target.power - uncontrolled).max(Watts::ZERO);
    let over = (uncontrolled - target.power).max(Watts::ZERO);
    let mut goals = vec![Goal::OFF; members.len()];
    let available: Vec<usize> = (0..members.len())
        .filter(|&i| !members[i].excluded)
        .collect();

    // How many can run on the budget.
    let mut k = (target.units_on as usize).min(available.len());
    let per = |k: usize| {
        if k == 0 {
            Watts::ZERO
        } else {
            budget / k as f64
        }
    };
    match model.levels {
        PowerLevels::OnOff => {
            while k > 0 && budget < model.rated * k as f64 * (1.0 - 1e-9) {
                k -= 1;
            }
        }
        PowerLevels::Range { min } => {
            while k > 0 && per(k) < min * (1.0 - 1e-9) {
                k -= 1;
            }
        }
        PowerLevels::Continuous => {}
    }
    if k == 0 || budget <= Watts::ZERO {
        return Assignment { goals, over };
    }

    // Who runs: running ones first (longest-held `min_on` first kept), then starts by
    // fewest starts today among those allowed to start.
    let mut running: Vec<usize> = available
        .iter()
        .copied()
        .filter(|&i| members[i].mining)
        .collect();
    // Keep first those that may not stop yet, then the most recently started (a stop
    // goes to the one running longest).
    running.sort_by_key(|&i| {
        let m = &members[i];
        (
            !held(m, now, model.wear.min_on),
            std::cmp::Reverse(m.since.map_or(i64::MIN, |s| s.0)),
        )
    });
    let mut chosen: Vec<usize> = running.into_iter().take(k).collect();
    if chosen.len() < k {
        let mut resting: Vec<usize> = available
            .iter()
            .copied()
            .filter(|&i| !members[i].mining)
            .filter(|&i| !held(&members[i], now, model.wear.min_off))
            .filter(|&i| {
                model
                    .wear
                    .max_starts_per_day
                    .is_none_or(|max| members[i].starts_today < max)
            })
            .collect();
        resting.sort_by_key(|&i| {
            let m = &members[i];
            (m.starts_today, m.since.map_or(i64::MIN, |s| s.0))
        });
        chosen.extend(resting.into_iter().take(k - chosen.len()));
    }
    let share = per(chosen.len().max(1));
    for &i in &chosen {
        goals[i] = Goal {
            mining: true,
            limit: match model.levels {
                PowerLevels::OnOff => None,
                PowerLevels::Range { min } => {
                    let ratio = members[i].power_per_limit.unwrap_or(1.0).clamp(0.8, 1.25);
                    let want = share.min(model.rated);
                    Some(Watts((want.0 / ratio).round()).clamp(min, model.rated))
                }
                PowerLevels::Continuous => Some(share.min(model.rated)),
            },
        };
    }
    Assignment { goals, over }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATED: Watts = Watts(3400.0);

    fn member(mining: bool) -> Member {
        Member {
            excluded: false,
            uncontrolled: Watts::ZERO,
            mining,
            since: None,
            starts_today: 0,
            power_per_limit: None,
        }
    }

    fn on_off() -> Model {
        Model {
            rated: RATED,
            levels: PowerLevels::OnOff,
            wear: WearLimits {
                min_on: Duration::ZERO,
                min_off: Duration::ZERO,
                max_starts_per_day: None,
                start_cost_eur: 0.0,
            },
        }
    }

    fn target(units: u32, w: f64) -> LoadTarget {
        LoadTarget {
            units_on: units,
            power: Watts(w),
        }
    }

    fn power(model: &Model, a: &Assignment) -> Watts {
        a.goals
            .iter()
            .filter(|g| g.mining)
            .map(|g| g.limit.unwrap_or(model.rated))
            .sum()
    }

    #[test]
    fn r11_a_miner_that_will_not_stop_is_taken_off_the_target() {
        // Catches: the group drawing its target plus a liar's power, over the cap.
        let model = on_off();
        let mut members = vec![member(true); 4];
        members[0].excluded = true;
        members[0].uncontrolled = RATED;
        let a = assign(&model, target(2, 6800.0), &members, Timestamp(0));
        assert!(!a.goals[0].mining);
        assert_eq!(a.goals.iter().filter(|g| g.mining).count(), 1);
        assert!(power(&model, &a) + RATED <= Watts(6800.0));
        assert_eq!(a.over, Watts::ZERO);
        // Curtailed to nothing: the liar alone is over the cap, and says by how much.
        let a = assign(&model, LoadTarget::OFF, &members, Timestamp(0));
        assert!(a.goals.iter().all(|g| !g.mining));
        assert_eq!(a.over, RATED);
    }

    #[test]
    fn r11_starts_go_to_the_miner_with_fewest_starts_and_respect_its_min_off() {
        let mut model = on_off();
        model.wear.min_off = Duration::from_secs(600);
        model.wear.max_starts_per_day = Some(3);
        let now = Timestamp(10_000_000);
        let mut members = vec![member(false); 4];
        members[0].starts_today = 2;
        members[1].starts_today = 1;
        members[2].starts_today = 0;
        members[2].since = Some(now - Duration::from_secs(60)); // stopped a minute ago
        members[3].starts_today = 3; // at its limit
        let a = assign(&model, target(1, 3400.0), &members, now);
        assert_eq!(
            a.goals.iter().position(|g| g.mining),
            Some(1),
            "2 is in min_off, 3 at its limit, 1 has fewer starts than 0"
        );
        // Asked for more than may start: fewer run, never a wear breach.
        let a = assign(&model, target(4, 4.0 * 3400.0), &members, now);
        assert_eq!(a.goals.iter().filter(|g| g.mining).count(), 2);
    }

    #[test]
    fn r11_running_miners_keep_running_and_stops_go_to_the_longest_running() {
        let model = on_off();
        let now = Timestamp(10_000_000);
        let mut members = vec![member(true); 3];
        members[0].since = Some(now - Duration::from_secs(3600));
        members[1].since = Some(now - Duration::from_secs(60));
        members[2].since = Some(now - Duration::from_secs(600));
        let a = assign(&model, target(2, 6800.0), &members, now);
        assert!(!a.goals[0].mining, "running longest: stops");
        assert!(a.goals[1].mining && a.goals[2].mining);
    }

    #[test]
    fn r11_range_miners_share_the_power_and_learned_draw_sets_the_limit() {
        let model = Model {
            rated: RATED,
            levels: PowerLevels::Range { min: Watts(1800.0) },
            wear: on_off().wear,
        };
        let mut members = vec![member(true); 2];
        members[1].power_per_limit = Some(1.05);
        let a = assign(&model, target(2, 5000.0), &members, Timestamp(0));
        assert_eq!(a.goals[0].limit, Some(Watts(2500.0)));
        // Draws 5 % over its limit: asked for less, so it draws its share.
        assert_eq!(a.goals[1].limit, Some(Watts((2500.0f64 / 1.05).round())));
        // Less than two minimums: one runs.
        let a = assign(&model, target(2, 3000.0), &members, Timestamp(0));
        assert_eq!(a.goals.iter().filter(|g| g.mining).count(), 1);
    }
}
