//! Plausibility: whether a value a source reports, in model units (after the unit scale),
//! could have been measured at this site. One check for every source (MQTT topics and
//! Modbus/SunSpec registers alike), so a feed cannot get past by its transport.
//!
//! A value outside its range is a broken meter, a wrong unit or a hostile publisher:
//! `1e308` on a kW topic is +inf W and would make all surplus look free, and a schedule
//! dated in year 584 million would wrap to "now". Such a value is never applied; the
//! runtime counts it (`out_of_range`), logs it, and drops the quantity's last reading so
//! the policy sees the signal stale and falls back to its safe rule. This module only
//! judges; it never touches the state.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::signal::{Observation, Quantity};
use crate::site::Ratings;
use crate::units::{
    PricePerMwh, Watts, MAX_CARBON_INTENSITY, MAX_FREQUENCY, MAX_HASHPRICE, MAX_PRICE,
    MIN_FREQUENCY,
};

/// A measured power may exceed the rating it is bounded by this many times (meters read
/// a little over a rating; a factor of 1000 is a kW/W mix-up).
pub const RATING_MARGIN: f64 = 2.0;
/// How far below zero a power that cannot be negative may read: this share of the site's
/// envelope, but at least `NEGATIVE_TOLERANCE_MIN` (an inverter's standby draw at night,
/// a meter's offset).
pub const NEGATIVE_TOLERANCE_SHARE: f64 = 0.01;
pub const NEGATIVE_TOLERANCE_MIN: Watts = Watts(100.0);
/// How far back a price schedule may start: a day-ahead schedule republished in the
/// afternoon still holds this morning's hours.
pub const SCHEDULE_PAST: Duration = Duration::from_secs(86_400);
/// How far ahead a schedule entry may lie: day-ahead markets publish about 36 hours
/// ahead; a few days allows forecasts. A schedule beyond it could keep a price "fresh"
/// long after its feed died.
pub const SCHEDULE_AHEAD: Duration = Duration::from_secs(4 * 86_400);

/// The ranges of one site, built once from its ratings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plausibility {
    ratings: Ratings,
}

impl Plausibility {
    pub fn new(ratings: Ratings) -> Self {
        Plausibility { ratings }
    }

    /// The range a power quantity must lie within, in W (import and generation positive).
    pub fn power_range(&self, quantity: Quantity) -> (Watts, Watts) {
        let r = &self.ratings;
        let envelope = r.envelope();
        let below = (envelope * NEGATIVE_TOLERANCE_SHARE).max(NEGATIVE_TOLERANCE_MIN);
        let non_negative = |cap: Watts| (-below, cap * RATING_MARGIN + below);
        match quantity {
            Quantity::GridPower => {
                let m = r.connection * RATING_MARGIN + below;
                (-m, m)
            }
            Quantity::PvPower => non_negative(r.pv.unwrap_or(envelope)),
            Quantity::WindPower => non_negative(r.wind.unwrap_or(envelope)),
            Quantity::MiningPower => non_negative(r.mining),
            // Site load, and anything else measured in watts: within the whole site.
            _ => non_negative(envelope),
        }
    }

    /// `Ok` when `obs` could have been measured at this site at `now` (the time it was
    /// received); else why not. Operator commands are judged by their own channel.
    pub fn check(&self, obs: &Observation, now: Timestamp) -> Result<(), String> {
        match obs {
            Observation::Power {
                quantity, value, ..
            } => {
                let (lo, hi) = self.power_range(*quantity);
                within(value.0, lo.0, hi.0).map_err(|e| format!("{} {e} W", quantity.as_str()))
            }
            Observation::Frequency { value, .. } => {
                within(value.0, MIN_FREQUENCY.0, MAX_FREQUENCY.0)
                    .map_err(|e| format!("grid_frequency {e} Hz"))
            }
            Observation::Price { value, .. } => price(*value).map_err(|e| format!("price {e}")),
            Observation::Hashprice { value, .. } => within(value.0, 0.0, MAX_HASHPRICE.0)
                .map_err(|e| format!("hashprice {e} EUR/(PH/s·day)")),
            Observation::CarbonIntensity { value, .. } => {
                within(value.0, 0.0, MAX_CARBON_INTENSITY.0)
                    .map_err(|e| format!("grid_carbon_intensity {e} gCO2eq/kWh"))
            }
            Observation::PriceSchedule { entries, .. } => schedule(entries, now),
            Observation::Forecast {
                quantity, entries, ..
            } => {
                let (lo, hi) = self.power_range(*quantity);
                let (from, to) = (now - SCHEDULE_PAST, now + SCHEDULE_AHEAD);
                for (i, (start, w)) in entries.iter().enumerate() {
                    if !(from..=to).contains(start) {
                        return Err(format!(
                            "{}_forecast[{i}].start {start} is outside {from}..={to} (a day back, four days ahead)",
                            quantity.as_str().trim_end_matches("_power")
                        ));
                    }
                    within(w.0, lo.0, hi.0).map_err(|e| {
                        format!(
                            "{}_forecast[{i}].value {e} W",
                            quantity.as_str().trim_end_matches("_power")
                        )
                    })?;
                }
                Ok(())
            }
            Observation::Operator { .. } | Observation::Failsafe { .. } => Ok(()),
        }
    }
}

/// `v` within `lo..=hi` (NaN never is).
fn within(v: f64, lo: f64, hi: f64) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{v} is outside {lo}..={hi}"))
    }
}

fn price(p: PricePerMwh) -> Result<(), String> {
    within(p.0, -MAX_PRICE.0, MAX_PRICE.0).map_err(|e| format!("{e} EUR/MWh"))
}

/// Every entry's start within `SCHEDULE_PAST` before `now` and `SCHEDULE_AHEAD` after,
/// every price within `MAX_PRICE`.
fn schedule(entries: &[(Timestamp, PricePerMwh)], now: Timestamp) -> Result<(), String> {
    // Saturating: `now` is a clock reading, but the window must not wrap whatever it is.
    let (from, to) = (now - SCHEDULE_PAST, now + SCHEDULE_AHEAD);
    for (i, (start, p)) in entries.iter().enumerate() {
        if !(from..=to).contains(start) {
            return Err(format!(
                "price_schedule[{i}].start {start} is outside {from}..={to} (a day back, four days ahead)"
            ));
        }
        price(*p).map_err(|e| format!("price_schedule[{i}].price {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Hashprice, Hertz};

    /// A 10 kW connection, 20 kW of PV, 2 kW of mining.
    fn site() -> Plausibility {
        Plausibility::new(Ratings {
            connection: Watts(10e3),
            pv: Some(Watts(20e3)),
            wind: None,
            mining: Watts(2e3),
        })
    }

    fn power(quantity: Quantity, w: f64) -> Observation {
        Observation::Power {
            quantity,
            value: Watts(w),
            at: NOW,
        }
    }

    const NOW: Timestamp = Timestamp(1_780_000_000_000);

    /// r9 hole 8: values are judged after scaling, each against its range.
    #[test]
    fn r9_values_outside_their_range_are_refused() {
        let p = site();
        let ok = [
            power(Quantity::PvPower, 19e3),
            power(Quantity::PvPower, -50.0),
            power(Quantity::GridPower, -15e3),
            power(Quantity::GridPower, 20e3),
            power(Quantity::SiteLoad, 30e3),
            power(Quantity::MiningPower, 2e3),
            Observation::Frequency {
                value: Hertz(49.95),
                at: NOW,
            },
            Observation::Price {
                value: PricePerMwh(-500.0),
                at: NOW,
            },
            Observation::Hashprice {
                value: Hashprice(50.0),
                at: NOW,
            },
        ];
        for obs in ok {
            assert_eq!(p.check(&obs, NOW), Ok(()), "{obs:?}");
        }
        let bad = [
            power(Quantity::PvPower, f64::INFINITY),
            power(Quantity::PvPower, 1e308 * 1e3),
            power(Quantity::PvPower, f64::NAN),
            power(Quantity::PvPower, -5e3),
            power(Quantity::PvPower, 41e3),
            power(Quantity::SiteLoad, -1e3),
            power(Quantity::GridPower, 21e3),
            power(Quantity::GridPower, -21e3),
            power(Quantity::WindPower, 1e6),
            Observation::Frequency {
                value: Hertz(-5.0),
                at: NOW,
            },
            Observation::Frequency {
                value: Hertz(1e308),
                at: NOW,
            },
            Observation::Frequency {
                value: Hertz(f64::NAN),
                at: NOW,
            },
            Observation::Price {
                value: PricePerMwh(f64::INFINITY),
                at: NOW,
            },
            Observation::Price {
                value: PricePerMwh(-200_000.0),
                at: NOW,
            },
            Observation::Hashprice {
                value: Hashprice(f64::INFINITY),
                at: NOW,
            },
            Observation::Hashprice {
                value: Hashprice(-1.0),
                at: NOW,
            },
        ];
        for obs in bad {
            assert!(p.check(&obs, NOW).is_err(), "{obs:?}");
        }
    }

    /// r9 hole 9: a schedule must lie around now.
    #[test]
    fn r9_schedules_outside_the_window_are_refused() {
        let p = site();
        let h = |hours: i64| Timestamp(NOW.0 + hours * 3_600_000);
        let sched = |entries: Vec<(Timestamp, f64)>| Observation::PriceSchedule {
            entries: entries
                .into_iter()
                .map(|(t, v)| (t, PricePerMwh(v)))
                .collect(),
            at: NOW,
        };
        assert_eq!(
            p.check(
                &sched(vec![(h(-24), 10.0), (h(0), 20.0), (h(96), 5.0)]),
                NOW
            ),
            Ok(())
        );
        for bad in [
            vec![(h(-25), 10.0), (h(0), 20.0)],
            vec![(h(0), 10.0), (h(97), 20.0)],
            vec![(Timestamp(0), 10.0), (Timestamp(4_102_444_800_000), 20.0)],
            vec![(Timestamp(i64::MAX), 10.0)],
            vec![(h(0), 1e6)],
        ] {
            let e = p.check(&sched(bad.clone()), NOW).unwrap_err();
            assert!(e.contains("price_schedule["), "{bad:?}: {e}");
        }
    }

    #[test]
    fn without_a_capacity_generation_is_bounded_by_the_site() {
        let p = Plausibility::new(Ratings {
            connection: Watts(10e3),
            pv: None,
            wind: None,
            mining: Watts(2e3),
        });
        let (lo, hi) = p.power_range(Quantity::PvPower);
        assert_eq!((lo, hi), (Watts(-120.0), Watts(24e3 + 120.0)));
    }
}
