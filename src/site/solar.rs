//! Where the sun is, and how much it gives on a clear day: the shape a PV forecast is
//! drawn on. Small, cited models with no data and no internet:
//!
//! - Solar position: declination and the equation of time as Fourier series in the day
//!   angle (J. W. Spencer, "Fourier series representation of the position of the sun",
//!   Search 2(5), 1971), good to a fraction of a degree, which is all a 15-minute shape
//!   needs.
//! - Clear-sky global horizontal irradiance: the Haurwitz model,
//!   `GHI = 1098 cos(z) exp(-0.059 / cos(z))` W/m² for a zenith angle `z` below 90°
//!   (B. Haurwitz, "Insolation in relation to cloudiness and cloud density", Journal of
//!   Meteorology 2, 1945; as pvlib's `clearsky.haurwitz` documents it, and as Reno,
//!   Hansen and Stein, SAND2012-2389, rank it among the best of the simple models).

use std::f64::consts::PI;

use serde::Serialize;

use crate::clock::Timestamp;

/// A site's place on Earth, degrees (north and east positive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
}

impl Location {
    /// Cosine of the solar zenith angle at `t` (negative when the sun is down).
    pub fn cos_zenith(&self, t: Timestamp) -> f64 {
        let days = t.0 as f64 / Timestamp::MS_PER_DAY as f64;
        let day_of_year = days.rem_euclid(365.2422);
        // Spencer's day angle, radians.
        let g = 2.0 * PI * day_of_year / 365.2422;
        let declination = 0.006918 - 0.399912 * g.cos() + 0.070257 * g.sin()
            - 0.006758 * (2.0 * g).cos()
            + 0.000907 * (2.0 * g).sin()
            - 0.002697 * (3.0 * g).cos()
            + 0.00148 * (3.0 * g).sin();
        // Equation of time, minutes.
        let eot = 229.18
            * (0.000075 + 0.001868 * g.cos()
                - 0.032077 * g.sin()
                - 0.014615 * (2.0 * g).cos()
                - 0.040849 * (2.0 * g).sin());
        let utc_minutes = days.rem_euclid(1.0) * 1440.0;
        let solar_minutes = utc_minutes + 4.0 * self.longitude + eot;
        let hour_angle = (solar_minutes / 4.0 - 180.0).to_radians();
        let lat = self.latitude.to_radians();
        lat.sin() * declination.sin() + lat.cos() * declination.cos() * hour_angle.cos()
    }

    /// Clear-sky global horizontal irradiance at `t`, W/m² (Haurwitz); 0 at night.
    pub fn clear_sky_ghi(&self, t: Timestamp) -> f64 {
        let c = self.cos_zenith(t);
        if c <= 0.0 {
            0.0
        } else {
            1098.0 * c * (-0.059 / c).exp()
        }
    }
}

/// The latitude and longitude ranges a location may take.
pub const LATITUDE: std::ops::RangeInclusive<f64> = -90.0..=90.0;
pub const LONGITUDE: std::ops::RangeInclusive<f64> = -180.0..=180.0;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).expect("a valid time")
    }

    /// Solar noon at Greenwich near the June solstice: the zenith is the latitude minus
    /// the declination (23.44°), and the Haurwitz GHI of pvlib's documentation follows.
    #[test]
    fn noon_at_the_solstice_is_where_the_almanac_puts_it() {
        let london = Location {
            latitude: 51.48,
            longitude: 0.0,
        };
        // Solar noon at 0° is about 12:02 UTC on 21 June (equation of time -1.8 min).
        let c = london.cos_zenith(at("2018-06-21T12:02:00Z"));
        let zenith = c.acos().to_degrees();
        assert!((zenith - (51.48 - 23.44)).abs() < 0.3, "zenith {zenith}");
        let ghi = london.clear_sky_ghi(at("2018-06-21T12:02:00Z"));
        let expected = 1098.0 * c * (-0.059 / c).exp();
        assert!(
            (ghi - expected).abs() < 1e-9 && (900.0..1000.0).contains(&ghi),
            "{ghi}"
        );
        // Midnight: the sun is down.
        assert_eq!(london.clear_sky_ghi(at("2018-06-21T00:00:00Z")), 0.0);
    }

    /// Golden, Colorado (the PVDAQ system's site, 105° W): the day is centred on about
    /// 19:00 UTC, and morning and afternoon are symmetric about solar noon.
    #[test]
    fn the_day_is_centred_on_solar_noon_at_the_sites_longitude() {
        let golden = Location {
            latitude: 39.74,
            longitude: -105.18,
        };
        let noon = at("2013-03-20T19:08:00Z");
        let before = golden.clear_sky_ghi(noon - std::time::Duration::from_secs(3 * 3600));
        let after = golden.clear_sky_ghi(noon + std::time::Duration::from_secs(3 * 3600));
        assert!(
            (before - after).abs() / before < 0.02,
            "{before} vs {after}"
        );
        assert!(golden.clear_sky_ghi(noon) > before);
        assert_eq!(golden.clear_sky_ghi(at("2013-03-20T07:00:00Z")), 0.0);
    }
}
