//! Energy tiers: what each extra watt of mining costs at this moment.
//!
//! Mining power is served cheapest-first, and physics fixes the order: first the surplus
//! above the export limit that would be curtailed (free), then what would have been
//! exported (costs the forgone export value, which negative prices make a gain), then
//! grid import (costs the import price). The policy, the simulator's accounting and the
//! clairvoyant optimum all use this one description.

use crate::site::{GridConnection, Tariff};
use crate::units::{PricePerMwh, Watts};

/// One moment's tiers. Widths in W, costs in EUR/MWh.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tiers {
    /// Surplus above the export limit: curtailed unless mined.
    pub free: Watts,
    /// Surplus the grid would take: exported unless mined.
    pub export: Watts,
    pub export_cost: PricePerMwh,
    /// Import headroom left for mining (zero in surplus-only mode).
    pub import: Watts,
    pub import_cost: PricePerMwh,
}

/// Where a given mining power comes from.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Split {
    pub free: Watts,
    pub export: Watts,
    pub import: Watts,
}

impl Tiers {
    /// Tiers for a site whose generation minus site load is `net` (export positive).
    /// `allow_import` is false in surplus-only mode.
    pub fn new(
        net: Watts,
        grid: &GridConnection,
        tariff: &Tariff,
        day_ahead: PricePerMwh,
        allow_import: bool,
    ) -> Self {
        let surplus = net.max(Watts::ZERO);
        let base_import = (-net).max(Watts::ZERO);
        Tiers {
            free: (surplus - grid.export_limit).max(Watts::ZERO),
            export: surplus.min(grid.export_limit),
            export_cost: tariff.export_value(day_ahead),
            import: if allow_import {
                (grid.import_limit - base_import).max(Watts::ZERO)
            } else {
                Watts::ZERO
            },
            import_cost: tariff.import_price(day_ahead),
        }
    }

    /// Most power mining may draw.
    pub fn capacity(&self) -> Watts {
        self.free + self.export + self.import
    }

    /// How power `m` splits over the tiers (beyond capacity counts as import).
    pub fn split(&self, m: Watts) -> Split {
        let m = m.max(Watts::ZERO);
        let free = m.min(self.free);
        let export = (m - free).min(self.export);
        Split {
            free,
            export,
            import: m - free - export,
        }
    }

    /// The tier costs in order: (upper edge in W from 0, cost). Beyond capacity, power
    /// costs infinitely much: no price makes it worth drawing.
    pub fn edges(&self) -> [(f64, f64); 4] {
        let a = self.free.0;
        let b = a + self.export.0;
        let c = b + self.import.0;
        [
            (a, 0.0),
            (b, self.export_cost.0),
            (c, self.import_cost.0),
            (f64::INFINITY, f64::INFINITY),
        ]
    }

    /// The first tier edge above `x` (infinity past capacity).
    pub fn next_edge(&self, x: f64) -> f64 {
        self.edges()
            .into_iter()
            .map(|(e, _)| e)
            .find(|&e| e > x)
            .unwrap_or(f64::INFINITY)
    }

    /// Cost and paid energy of the power band `[from, to)` (W), as
    /// (EUR/MWh × W, paid W): divide by the band width for averages.
    pub fn band(&self, from: f64, to: f64) -> (f64, f64) {
        // The allocator's inner loop: the overlap with each tier in closed form (the
        // free tier costs nothing, so only its edge matters).
        let a = self.free.0;
        let b = a + self.export.0;
        let c = b + self.import.0;
        let overlap = |lo: f64, hi: f64| (to.min(hi) - from.max(lo)).max(0.0);
        let (export, import, beyond) = (overlap(a, b), overlap(b, c), (to - from.max(c)).max(0.0));
        let mut cost = export * self.export_cost.0 + import * self.import_cost.0;
        if beyond > 0.0 {
            cost = f64::INFINITY;
        }
        (cost, export + import + beyond)
    }

    /// The highest power `x >= from` such that every watt in `[from, x)` costs at most
    /// `value` EUR/MWh, with `margin` added to paid (non-free) watts.
    pub fn affordable_up_to(&self, from: f64, value: f64, margin: f64) -> f64 {
        let mut lo = 0.0;
        let mut x = from;
        for (i, (hi, c)) in self.edges().into_iter().enumerate() {
            if hi > from && hi > lo {
                let need = if i > 0 { c + margin } else { c };
                if need > value || hi.is_infinite() {
                    return x.max(from);
                }
                x = hi;
            }
            lo = hi;
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::ExportValue;

    fn tiers(net: f64, price: f64, import: bool) -> Tiers {
        Tiers::new(
            Watts(net),
            &GridConnection {
                export_limit: Watts(1000.0),
                import_limit: Watts(500.0),
            },
            &Tariff {
                import_adder: PricePerMwh(100.0),
                export: ExportValue::DayAhead,
            },
            PricePerMwh(price),
            import,
        )
    }

    #[test]
    fn tiers_follow_the_grid_connection() {
        let t = tiers(1500.0, 40.0, true);
        assert_eq!(
            (t.free, t.export, t.import),
            (Watts(500.0), Watts(1000.0), Watts(500.0))
        );
        assert_eq!(t.export_cost, PricePerMwh(40.0));
        assert_eq!(t.import_cost, PricePerMwh(140.0));
        let t = tiers(-200.0, 40.0, true);
        assert_eq!(
            (t.free, t.export, t.import),
            (Watts(0.0), Watts(0.0), Watts(300.0))
        );
        let t = tiers(-200.0, 40.0, false);
        assert_eq!(t.capacity(), Watts(0.0));
    }

    #[test]
    fn band_costs_and_affordability() {
        let t = tiers(1500.0, 40.0, true);
        // 400 W free + 200 W at 40 + 100 W at 140.
        let (cost, paid) = t.band(100.0, 1600.0 + 100.0);
        assert!((cost - (1000.0 * 40.0 + 200.0 * 140.0)).abs() < 1e-9);
        assert_eq!(paid, 1200.0);
        assert_eq!(t.affordable_up_to(0.0, 10.0, 5.0), 500.0);
        assert_eq!(t.affordable_up_to(0.0, 50.0, 5.0), 1500.0);
        assert_eq!(t.affordable_up_to(0.0, 50.0, 15.0), 500.0);
        assert_eq!(t.affordable_up_to(700.0, 200.0, 0.0), 2000.0);
        let s = t.split(Watts(1700.0));
        assert_eq!(
            (s.free, s.export, s.import),
            (Watts(500.0), Watts(1000.0), Watts(200.0))
        );
    }

    #[test]
    fn negative_prices_make_forgone_export_pay() {
        let t = tiers(800.0, -30.0, true);
        let (cost, _) = t.band(0.0, 800.0);
        assert!(cost < 0.0);
        assert_eq!(t.affordable_up_to(0.0, 0.0, 5.0), 800.0);
    }
}
