//! The grid's carbon intensity from its generation mix: one lifecycle emission factor
//! per ENTSO-E production type, and the production-based intensity
//! `sum_f(G_f * EF_f) / sum_f(G_f)` of a mix. Also the lifecycle factors of the site's
//! own PV and wind, for the carbon of own generation mined.
//!
//! Pure: the mix file is read by `signal::replay`; what the intensity is for (the
//! energy account, the certificates, the report) is decided above. The policy never
//! reads any of it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::units::CarbonIntensity;

/// Where the default factors come from, as the report prints it.
pub const FACTOR_SOURCE: &str = "IPCC AR5 WG3 Annex III (2014), Table A.III.2, lifecycle medians (gCO2eq/kWh), as used by Electricity Maps' default emission factors";

/// The highest factor a config may set: above any fuel's lifecycle intensity (lignite's
/// upper range is about 1,200), so a larger value is a unit mistake (kg for g, or t/GWh
/// read as g/Wh).
pub const MAX_FACTOR: f64 = crate::units::MAX_CARBON_INTENSITY.0;

/// One column of the mix and the factor it takes by default. `None`: left out of the
/// mix altogether (numerator and denominator).
pub struct Fuel {
    pub column: &'static str,
    pub default: Option<f64>,
}

/// The 17 ENTSO-E production types of the mix file, in its column order, each with its
/// default factor (gCO2eq/kWh) and why, citing [`FACTOR_SOURCE`] (AR5 WG3 Annex III,
/// Table A.III.2, the median of the lifecycle range per technology):
pub const FUELS: [Fuel; 17] = [
    // Biomass: AR5's "biomass - dedicated" median 230 (co-firing is 740, but German
    // biomass plants are dedicated ones, mostly biogas CHP).
    fuel("biomass_mw", Some(230.0)),
    // Lignite: AR5 gives one coal figure (pulverised coal, 820) for hard coal and lignite.
    fuel("fossil_brown_coal_lignite_mw", Some(820.0)),
    // Coal-derived gas (blast-furnace and coke-oven gas burnt in power plants): AR5 has no
    // row for it; its carbon is the coal's it was made from, so it takes coal's 820
    // rather than natural gas's 490, which would understate it.
    fuel("fossil_coal_derived_gas_mw", Some(820.0)),
    // Natural gas: AR5's combined-cycle median, 490.
    fuel("fossil_gas_mw", Some(490.0)),
    // Hard coal: AR5's pulverised coal median, 820.
    fuel("fossil_hard_coal_mw", Some(820.0)),
    // Oil: AR5 has no oil row; 650 is Electricity Maps' default for oil (IPCC 2014
    // based), between gas and coal as oil-fired plants are.
    fuel("fossil_oil_mw", Some(650.0)),
    // Geothermal: AR5's median, 38.
    fuel("geothermal_mw", Some(38.0)),
    // Pumped storage re-releases energy stored from the grid earlier: counting it would
    // count that energy twice (once as generated, once as re-released), so it is left
    // out of the numerator and the denominator.
    fuel("hydro_pumped_storage_mw", None),
    // Run-of-river and reservoir hydro: AR5's hydropower median, 24.
    fuel("hydro_run_of_river_and_poundage_mw", Some(24.0)),
    fuel("hydro_water_reservoir_mw", Some(24.0)),
    // Nuclear: AR5's median, 12.
    fuel("nuclear_mw", Some(12.0)),
    // Other (unidentified, mostly fossil), other renewable and waste: AR5 has no row;
    // Electricity Maps' default for unknown generation is 700, kept for all three rather
    // than guess a mix for each.
    fuel("other_mw", Some(700.0)),
    fuel("other_renewable_mw", Some(700.0)),
    // Solar: AR5's rooftop PV median is 41, utility PV 48; 45 is Electricity Maps'
    // default (their mean of the two).
    fuel("solar_mw", Some(45.0)),
    fuel("waste_mw", Some(700.0)),
    // Wind: AR5's offshore median 12, onshore 11.
    fuel("wind_offshore_mw", Some(12.0)),
    fuel("wind_onshore_mw", Some(11.0)),
];

const fn fuel(column: &'static str, default: Option<f64>) -> Fuel {
    Fuel { column, default }
}

/// Default factor of the site's own PV: solar's, 45 (AR5, as the grid's solar above).
pub const OWN_PV_DEFAULT: f64 = 45.0;
/// Default factor of the site's own wind: onshore wind's, 11 (AR5).
pub const OWN_WIND_DEFAULT: f64 = 11.0;

/// The factor table in force: one factor per counted production type, and the own
/// generation's. Each in gCO2eq/kWh.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmissionFactors {
    /// By [`FUELS`] index; `None` for a type left out of the mix.
    pub by_fuel: [Option<CarbonIntensity>; 17],
    pub own_pv: CarbonIntensity,
    pub own_wind: CarbonIntensity,
    /// What the config changed, as `key = value`, for the report's source line.
    pub overridden: Vec<String>,
}

impl Default for EmissionFactors {
    fn default() -> Self {
        EmissionFactors {
            by_fuel: FUELS.map(|f| f.default.map(CarbonIntensity)),
            own_pv: CarbonIntensity(OWN_PV_DEFAULT),
            own_wind: CarbonIntensity(OWN_WIND_DEFAULT),
            overridden: Vec::new(),
        }
    }
}

impl EmissionFactors {
    /// The table's source, with what the config overrode.
    pub fn source(&self) -> String {
        if self.overridden.is_empty() {
            FACTOR_SOURCE.to_string()
        } else {
            format!(
                "{FACTOR_SOURCE}; overridden in the scenario: {}",
                self.overridden.join(", ")
            )
        }
    }

    /// `(sum_f G_f * EF_f, sum_f G_f)` of one mix row (generation per [`FUELS`] column,
    /// any power unit, NaN for an empty cell), over the counted types; `None` when a
    /// counted type has no value: leaving it out would shift the mix towards the others,
    /// an intensity nobody measured.
    pub fn weighted(&self, row: &[f64; 17]) -> Option<(f64, f64)> {
        let mut num = 0.0;
        let mut den = 0.0;
        for (g, ef) in row.iter().zip(&self.by_fuel) {
            let Some(ef) = ef else { continue };
            if g.is_nan() {
                return None;
            }
            num += g * ef.0;
            den += g;
        }
        Some((num, den))
    }

    /// The intensity of one mix row; `None` as [`Self::weighted`], or with no
    /// generation counted at all.
    pub fn intensity(&self, row: &[f64; 17]) -> Option<CarbonIntensity> {
        self.weighted(row)
            .filter(|&(_, den)| den > 0.0)
            .map(|(num, den)| CarbonIntensity(num / den))
    }

    /// The hourly intensity of a mix series: rows `(start, end)` (epoch ms) with their
    /// generation. Each hour's is energy-weighted over the rows of value within it
    /// (`sum G·EF·t / sum G·t`), so a quarter-hour of high output weighs more than a
    /// quiet one. Returns one value per whole hour from the first row's hour to the last
    /// row's, NaN where no row of the hour had every counted type (never filled).
    pub fn hourly(&self, rows: &[(i64, i64, [f64; 17])]) -> (i64, Vec<f64>) {
        const H: i64 = 3_600_000;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return (0, Vec::new());
        };
        let h0 = first.0.div_euclid(H);
        let n = ((last.1 - 1).div_euclid(H) - h0 + 1).max(0) as usize;
        let mut sums = vec![(0.0f64, 0.0f64); n];
        for (a, b, row) in rows {
            let Some((num, den)) = self.weighted(row) else {
                continue;
            };
            let mut t = *a;
            while t < *b {
                let h = t.div_euclid(H);
                let end = ((h + 1) * H).min(*b);
                let w = (end - t) as f64;
                if let Some(s) = sums.get_mut((h - h0) as usize) {
                    s.0 += num * w;
                    s.1 += den * w;
                }
                t = end;
            }
        }
        let vals = sums
            .into_iter()
            .map(|(num, den)| if den > 0.0 { num / den } else { f64::NAN })
            .collect();
        (h0 * H, vals)
    }
}

/// `[carbon]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCarbon {
    /// The generation-mix file (relative to the file that names it).
    pub mix: Option<String>,
    /// Its time column.
    #[serde(default = "default_time_column")]
    pub time_column: String,
    /// Factor overrides by mix column, gCO2eq/kWh.
    #[serde(default)]
    pub factors: BTreeMap<String, f64>,
    /// The site's own PV and wind, gCO2eq/kWh.
    pub own_pv: Option<f64>,
    pub own_wind: Option<f64>,
}

fn default_time_column() -> String {
    "timestamp".into()
}

/// Checks a factor: a finite number in `0..=MAX_FACTOR`.
fn factor(p: &mut Problems, at: &str, v: f64) -> Option<CarbonIntensity> {
    if v.is_finite() && (0.0..=MAX_FACTOR).contains(&v) {
        Some(CarbonIntensity(v))
    } else {
        p.push(at, format!("{v} is outside 0..={MAX_FACTOR} gCO2eq/kWh"));
        None
    }
}

/// The factor table `raw` describes (defaults where it says nothing), every problem
/// under `at` (`carbon`).
pub fn validate_factors(p: &mut Problems, at: &str, raw: &RawCarbon) -> EmissionFactors {
    let mut t = EmissionFactors::default();
    for (column, &v) in &raw.factors {
        let key = format!("{at}.factors.{column}");
        match FUELS.iter().position(|f| f.column == column) {
            Some(i) if FUELS[i].default.is_none() => p.push(
                key,
                "is left out of the mix (it re-releases stored grid energy) and takes no factor",
            ),
            Some(i) => {
                if let Some(f) = factor(p, &key, v) {
                    t.by_fuel[i] = Some(f);
                    t.overridden.push(format!("{column} = {v}"));
                }
            }
            None => p.push(
                key,
                format!(
                    "unknown production type (expected one of {})",
                    FUELS
                        .iter()
                        .filter(|f| f.default.is_some())
                        .map(|f| f.column)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    for (key, v, slot) in [
        ("own_pv", raw.own_pv, &mut t.own_pv),
        ("own_wind", raw.own_wind, &mut t.own_wind),
    ] {
        if let Some(f) = v.and_then(|v| factor(p, &format!("{at}.{key}"), v)) {
            *slot = f;
            t.overridden.push(format!("{key} = {}", f.0));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, f64)]) -> [f64; 17] {
        let mut r = [0.0; 17];
        for (c, v) in pairs {
            r[FUELS.iter().position(|f| f.column == *c).expect("a column")] = *v;
        }
        r
    }

    /// r15: a hand-made mix's intensity, exactly: 1000 MW lignite (820), 1000 MW gas
    /// (490), 2000 MW onshore wind (11) give (820000 + 490000 + 22000) / 4000 = 333.
    #[test]
    fn r15_the_intensity_of_a_hand_made_mix_is_exact() {
        let t = EmissionFactors::default();
        let r = row(&[
            ("fossil_brown_coal_lignite_mw", 1000.0),
            ("fossil_gas_mw", 1000.0),
            ("wind_onshore_mw", 2000.0),
        ]);
        assert_eq!(t.intensity(&r), Some(CarbonIntensity(333.0)));
    }

    /// r15: pumped storage is in neither the numerator nor the denominator: adding any
    /// amount of it changes nothing.
    #[test]
    fn r15_pumped_storage_is_left_out_of_the_mix() {
        let t = EmissionFactors::default();
        let base = row(&[("nuclear_mw", 1000.0), ("fossil_hard_coal_mw", 1000.0)]);
        let mut with = base;
        with[7] = 5000.0;
        assert_eq!(FUELS[7].column, "hydro_pumped_storage_mw");
        assert_eq!(t.intensity(&base), Some(CarbonIntensity(416.0)));
        assert_eq!(t.intensity(&with), t.intensity(&base));
        // Even an empty pumped-storage cell leaves the row rated.
        with[7] = f64::NAN;
        assert_eq!(t.intensity(&with), t.intensity(&base));
    }

    /// r15: an empty cell of a counted type leaves the row unrated (not the mix without
    /// it), and an hour is weighted by energy over its rows of value only.
    #[test]
    fn r15_hours_weigh_quarters_by_energy_and_skip_gaps() {
        let t = EmissionFactors::default();
        let q = 900_000;
        let coal = row(&[("fossil_hard_coal_mw", 1000.0)]);
        let wind = row(&[("wind_onshore_mw", 3000.0)]);
        let mut gap = coal;
        gap[5] = f64::NAN; // oil empty
        assert_eq!(t.intensity(&gap), None);
        let rows = [
            (0, q, coal),
            (q, 2 * q, wind),
            (2 * q, 3 * q, gap),
            (3 * q, 4 * q, gap),
            // The next hour: only gaps.
            (4 * q, 5 * q, gap),
        ];
        let (start, v) = t.hourly(&rows);
        assert_eq!(start, 0);
        assert_eq!(v.len(), 2);
        // (1000·820 + 3000·11) / 4000 = 213.25
        assert_eq!(v[0], 213.25);
        assert!(v[1].is_nan());
    }

    /// r15: overrides by column, with every problem at its key path at once.
    #[test]
    fn r15_factor_overrides_and_their_errors_have_key_paths() {
        let raw: RawCarbon = toml::from_str(
            "factors = { fossil_gas_mw = 450, fossil_coal_mw = 800, nuclear_mw = 2500, hydro_pumped_storage_mw = 5 }\nown_pv = -1\nown_wind = 7",
        )
        .expect("the shape is right");
        let mut p = Problems::default();
        let t = validate_factors(&mut p, "carbon", &raw);
        let got: Vec<(String, String)> =
            p.0.iter()
                .map(|x| (x.path.clone(), x.message.clone()))
                .collect();
        let paths: Vec<&str> = got.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            paths,
            [
                "carbon.factors.fossil_coal_mw",
                "carbon.factors.hydro_pumped_storage_mw",
                "carbon.factors.nuclear_mw",
                "carbon.own_pv"
            ],
            "{got:?}"
        );
        assert!(got[0].1.contains("unknown production type"), "{got:?}");
        assert!(got[2].1.contains("outside 0..=2000"), "{got:?}");
        assert_eq!(t.by_fuel[3], Some(CarbonIntensity(450.0)));
        assert_eq!(
            t.by_fuel[10],
            Some(CarbonIntensity(12.0)),
            "kept at default"
        );
        assert_eq!(t.own_wind, CarbonIntensity(7.0));
        assert_eq!(t.own_pv, CarbonIntensity(OWN_PV_DEFAULT));
        assert!(t.source().contains("fossil_gas_mw = 450"));
    }
}
