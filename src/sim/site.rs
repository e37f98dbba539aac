//! Site economics: the same site with and without mining, and how the answer moves with
//! the hashprice.
//!
//! Every run books the site's money twice over the same data and tariff: as simulated
//! (export revenue, the cost of everything imported, mining revenue, wear), and with no
//! mining at all, which is pure physics over the replay (no controller: nothing decides
//! when there is nothing to switch). The difference of the two site totals is what mining
//! adds. Where the power of one step goes is [`Flows::of`], which `sim::run` uses too, and
//! what a MWh costs or earns comes from `policy::Tiers`, as for the policy: the two runs
//! cannot split or price energy differently.
//!
//! By the tier algebra the value added equals the run's `profit_eur` (mining revenue
//! minus the value of the energy mining took minus wear); the no-mining run reaches it
//! from the other side, so the two agreeing checks both.
//!
//! Nothing here decides or changes a run; [`hashprice_sensitivity`] re-runs the whole
//! simulation at other hashprices.

use std::fmt::Write;
use std::time::Duration;

use rayon::prelude::*;
use serde::Serialize;

use super::kpi::{Kpis, Months};
use super::{run, Physics, SimError, SimOptions};
use crate::clock::Timestamp;
use crate::policy::Tiers;
use crate::scenario::Scenario;
use crate::signal::replay::Replay;
use crate::site::{GridConnection, LoadSpec};
use crate::units::{Hashprice, PricePerMwh, Watts};

/// Where the site's power goes in one step besides generation, site load and mining.
/// generation + import = site load + mining + export + curtailed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Flows {
    /// Fed into the grid, at most the export limit.
    pub export: Watts,
    /// Drawn from the grid (site load and mining together).
    pub import: Watts,
    /// Generation above what the site used and the grid took.
    pub curtailed: Watts,
}

impl Flows {
    /// The one energy-flow rule of the simulator: what the site does not use is exported
    /// up to the export limit and curtailed above it; what it lacks is imported.
    pub fn of(generation: Watts, site_load: Watts, mining: Watts, grid: &GridConnection) -> Self {
        let net = generation - site_load - mining;
        Flows {
            export: net.clamp(Watts::ZERO, grid.export_limit),
            import: (-net).max(Watts::ZERO),
            curtailed: (net - grid.export_limit).max(Watts::ZERO),
        }
    }
}

/// The site's money over a period, with or without mining. Energy in MWh, money in EUR
/// (costs positive, as booked; `site_total_eur` takes them off).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SiteAccount {
    pub export_mwh: f64,
    /// Export at the tariff's export value (day-ahead or fixed feed-in).
    pub export_revenue_eur: f64,
    pub import_mwh: f64,
    /// Everything imported (site load, and mining's share with mining) at the import price
    /// (day-ahead + adder).
    pub import_cost_eur: f64,
    pub curtailed_mwh: f64,
    pub mining_mwh: f64,
    pub mining_revenue_eur: f64,
    /// Energy mining took from otherwise-curtailed surplus.
    pub mining_from_curtailment_mwh: f64,
    /// The part of the mining revenue earned on that energy (each step's revenue shared
    /// over its energy sources by power): curtailment turned into money.
    pub mining_revenue_from_curtailment_eur: f64,
    /// Starts at their `start_cost_eur`.
    pub wear_cost_eur: f64,
    /// Export revenue - import cost + mining revenue - wear cost.
    pub site_total_eur: f64,
}

/// What one step adds to a [`Book`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SiteStep {
    pub flows: Flows,
    pub mining: Watts,
    /// Of `mining`, what came from otherwise-curtailed surplus.
    pub mining_from_curtailment: Watts,
    /// The step's export value and import price, from its `Tiers`.
    pub export_value: PricePerMwh,
    pub import_price: PricePerMwh,
    pub mining_revenue_eur: f64,
    pub wear_cost_eur: f64,
}

/// A month's steps summed as they come: powers in W and power × price in W·EUR/MWh,
/// turned into MWh and EUR once, at the end. A step is then a few additions: the
/// no-mining run is a tenth of a year's run when each step books a whole account.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    export_w: f64,
    export_revenue_w: f64,
    import_w: f64,
    import_cost_w: f64,
    curtailed_w: f64,
    mining_w: f64,
    from_curtailment_w: f64,
    mining_revenue_eur: f64,
    revenue_from_curtailment_eur: f64,
    wear_cost_eur: f64,
}

impl Sums {
    #[inline(always)]
    fn add(&mut self, s: &SiteStep) {
        self.export_w += s.flows.export.0;
        self.export_revenue_w += s.flows.export.0 * s.export_value.0;
        self.import_w += s.flows.import.0;
        self.import_cost_w += s.flows.import.0 * s.import_price.0;
        self.curtailed_w += s.flows.curtailed.0;
        self.mining_w += s.mining.0;
        self.from_curtailment_w += s.mining_from_curtailment.0;
        self.mining_revenue_eur += s.mining_revenue_eur;
        if s.mining.0 > 0.0 {
            self.revenue_from_curtailment_eur +=
                s.mining_revenue_eur * (s.mining_from_curtailment / s.mining);
        }
        self.wear_cost_eur += s.wear_cost_eur;
    }

    /// The account of steps `step_h` hours long.
    fn account(&self, step_h: f64) -> SiteAccount {
        let mwh = |w: f64| w * step_h / 1e6;
        let (export_revenue_eur, import_cost_eur) =
            (mwh(self.export_revenue_w), mwh(self.import_cost_w));
        SiteAccount {
            export_mwh: mwh(self.export_w),
            export_revenue_eur,
            import_mwh: mwh(self.import_w),
            import_cost_eur,
            curtailed_mwh: mwh(self.curtailed_w),
            mining_mwh: mwh(self.mining_w),
            mining_revenue_eur: self.mining_revenue_eur,
            mining_from_curtailment_mwh: mwh(self.from_curtailment_w),
            mining_revenue_from_curtailment_eur: self.revenue_from_curtailment_eur,
            wear_cost_eur: self.wear_cost_eur,
            site_total_eur: export_revenue_eur - import_cost_eur + self.mining_revenue_eur
                - self.wear_cost_eur,
        }
    }
}

/// One run's site money per UTC month, as the steps arrive.
#[derive(Debug, Default)]
pub struct Book {
    step_h: f64,
    months: Vec<(String, Sums)>,
    calendar: Months,
}

impl Book {
    pub fn new(step: Duration) -> Self {
        Book {
            step_h: step.as_secs_f64() / 3600.0,
            ..Default::default()
        }
    }

    #[inline(always)]
    pub(crate) fn book(&mut self, at: Timestamp, s: &SiteStep) {
        if let Some(m) = self.calendar.enter(at) {
            self.months.push((m, Sums::default()));
        }
        self.months.last_mut().expect("entered above").1.add(s);
    }

    /// Each month's account.
    fn months(&self) -> impl Iterator<Item = (&str, SiteAccount)> {
        self.months
            .iter()
            .map(|(m, s)| (m.as_str(), s.account(self.step_h)))
    }

    /// The whole run: the sum of its months.
    pub fn total(&self) -> SiteAccount {
        let mut t = Sums::default();
        for (_, m) in &self.months {
            t = Sums {
                export_w: t.export_w + m.export_w,
                export_revenue_w: t.export_revenue_w + m.export_revenue_w,
                import_w: t.import_w + m.import_w,
                import_cost_w: t.import_cost_w + m.import_cost_w,
                curtailed_w: t.curtailed_w + m.curtailed_w,
                mining_w: t.mining_w + m.mining_w,
                from_curtailment_w: t.from_curtailment_w + m.from_curtailment_w,
                mining_revenue_eur: t.mining_revenue_eur + m.mining_revenue_eur,
                revenue_from_curtailment_eur: t.revenue_from_curtailment_eur
                    + m.revenue_from_curtailment_eur,
                wear_cost_eur: t.wear_cost_eur + m.wear_cost_eur,
            };
        }
        t.account(self.step_h)
    }
}

/// The same site over the same replay with no mining: pure physics, each step's flows
/// from [`Flows::of`] at zero mining, priced by the step's `Tiers`.
pub fn without_mining(sc: &Scenario, replay: &Replay) -> Book {
    let mut phys = Physics::default();
    let mut book = Book::new(replay.step);
    // Whole milliseconds (a step is at least a second): cheaper than `Replay::time`'s
    // `Duration` arithmetic, which was a tenth of this loop.
    let step_ms = replay.step.as_millis() as i64;
    for i in 0..replay.len {
        phys.read(replay, i);
        let generation = Watts(phys.pv + phys.wind);
        let load = Watts(phys.load);
        // Import is allowed or not only for mining; the prices do not depend on it.
        let tiers = Tiers::new(
            generation - load,
            &sc.grid,
            &sc.tariff,
            PricePerMwh(phys.price),
            true,
        );
        book.book(
            Timestamp(replay.start.0 + i as i64 * step_ms),
            &SiteStep {
                flows: Flows::of(generation, load, Watts::ZERO, &sc.grid),
                mining: Watts::ZERO,
                mining_from_curtailment: Watts::ZERO,
                export_value: tiers.export_cost,
                import_price: tiers.import_cost,
                mining_revenue_eur: 0.0,
                wear_cost_eur: 0.0,
            },
        );
    }
    book
}

/// The site with and without mining over one period.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Comparison {
    pub with_mining: SiteAccount,
    pub without_mining: SiteAccount,
    /// Site total with mining minus without: what mining adds to the site, EUR.
    pub value_added_eur: f64,
    /// `value_added_eur` per MWh mined; absent when nothing was mined.
    pub value_added_eur_per_mwh: Option<f64>,
}

impl Comparison {
    fn of(with_mining: SiteAccount, without_mining: SiteAccount) -> Self {
        let added = with_mining.site_total_eur - without_mining.site_total_eur;
        Comparison {
            with_mining,
            without_mining,
            value_added_eur: added,
            value_added_eur_per_mwh: (with_mining.mining_mwh > 0.0)
                .then(|| added / with_mining.mining_mwh),
        }
    }
}

/// The site with and without mining, as the KPIs report it: the whole run (its fields
/// at the top level of `site` in the JSON) and each UTC month.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SiteKpis {
    #[serde(flatten)]
    pub run: Comparison,
    pub months: Vec<SiteMonth>,
}

/// One UTC month of [`SiteKpis`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct SiteMonth {
    /// `YYYY-MM`.
    pub month: String,
    #[serde(flatten)]
    pub site: Comparison,
}

impl SiteKpis {
    /// Compares two books over the same replay (so the same months).
    pub(crate) fn compare(with: Book, without: Book) -> Self {
        debug_assert_eq!(with.months.len(), without.months.len());
        SiteKpis {
            run: Comparison::of(with.total(), without.total()),
            months: with
                .months()
                .zip(without.months())
                .map(|((month, w), (_, wo))| SiteMonth {
                    month: month.to_string(),
                    site: Comparison::of(w, wo),
                })
                .collect(),
        }
    }
}

/// What the result hangs on: each load group's break-even prices, and the run again at
/// other hashprices.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sensitivity {
    /// The hashprice the break-even energy prices are at: the run's, as the simulator
    /// held it (a hole keeps the last value), averaged over its steps. EUR per PH/s per day.
    pub hashprice_mean_eur_per_ph_day: f64,
    /// The import price the grid break-even hashprices are at: day-ahead + adder, as held,
    /// averaged over the run's steps (not weighted by what was imported). EUR/MWh.
    pub import_price_mean_eur_per_mwh: f64,
    pub loads: Vec<BreakEven>,
    /// The run at other hashprices, the run itself (change 0 %) among them; empty unless
    /// `simulate --hashprice-sensitivity` asked for them.
    pub hashprice_runs: Vec<HashpriceRun>,
}

/// One load group's break-even prices. Hash rate scales linearly with power, so the value
/// of a MWh is the same at any power level of the group.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BreakEven {
    pub name: String,
    /// The energy price at which the group's hashes just pay for the energy at the
    /// run's mean hashprice, EUR/MWh. The policy also wants its margin on paid energy.
    pub break_even_price_eur_per_mwh: f64,
    /// The hashprice below which the group stops paying on grid energy at the run's mean
    /// import price, EUR per PH/s per day; absent for a group that hashes nothing.
    pub grid_break_even_hashprice_eur_per_ph_day: Option<f64>,
}

impl BreakEven {
    pub fn of(load: &LoadSpec, hashprice: Hashprice, import_price: PricePerMwh) -> Self {
        let per_unit_hashprice = Hashprice(1.0)
            .value_per_mwh(load.hashrate, load.rated_power)
            .0;
        BreakEven {
            name: load.name.clone(),
            break_even_price_eur_per_mwh: hashprice
                .value_per_mwh(load.hashrate, load.rated_power)
                .0,
            grid_break_even_hashprice_eur_per_ph_day: (per_unit_hashprice > 0.0)
                .then(|| import_price.0 / per_unit_hashprice),
        }
    }
}

/// The run at one hashprice.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HashpriceRun {
    /// Every step's hashprice changed by this much, %.
    pub hashprice_change_pct: f64,
    pub hashprice_mean_eur_per_ph_day: f64,
    pub mining_profit_eur: f64,
    pub mining_mwh: f64,
    /// The site total with mining.
    pub site_value_eur: f64,
    pub value_added_eur: f64,
}

impl HashpriceRun {
    fn of(change_pct: f64, k: &Kpis) -> Self {
        HashpriceRun {
            hashprice_change_pct: change_pct,
            hashprice_mean_eur_per_ph_day: k.sensitivity.hashprice_mean_eur_per_ph_day,
            mining_profit_eur: k.profit_eur,
            mining_mwh: k.mining_mwh,
            site_value_eur: k.site.run.with_mining.site_total_eur,
            value_added_eur: k.site.run.value_added_eur,
        }
    }
}

/// The hashprice changes `simulate --hashprice-sensitivity` runs, %.
pub const HASHPRICE_CHANGES_PCT: [f64; 4] = [-50.0, -25.0, 25.0, 50.0];

/// Re-runs the whole simulation (the policy reacts to the hashprice) with every step's
/// hashprice changed by each of [`HASHPRICE_CHANGES_PCT`], in parallel; `base` is the run
/// at the data's own hashprice. Returns the rows in order of change, `base` at 0 %.
pub fn hashprice_sensitivity(
    sc: &Scenario,
    replay: &Replay,
    base: &Kpis,
) -> Result<Vec<HashpriceRun>, SimError> {
    let mut rows = HASHPRICE_CHANGES_PCT
        .par_iter()
        .map(|&pct| {
            let mut r = replay.clone();
            let factor = 1.0 + pct / 100.0;
            // A hole stays a hole: NaN times anything is NaN.
            r.hashprice.iter_mut().for_each(|h| *h *= factor);
            let k = run(sc, &r, SimOptions::default())?.kpis;
            Ok(HashpriceRun::of(pct, &k))
        })
        .collect::<Result<Vec<_>, SimError>>()?;
    rows.push(HashpriceRun::of(0.0, base));
    rows.sort_by(|a, b| a.hashprice_change_pct.total_cmp(&b.hashprice_change_pct));
    Ok(rows)
}

/// Money as the summaries show it: whole euros, cents for a small site's small sums.
pub(crate) fn eur(v: f64) -> String {
    // `+ 0.0` makes a negated zero (a cost of nothing) print as 0.
    let v = v + 0.0;
    if v.abs() < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// One piece of the site economics as a report shows it.
enum Part {
    /// A label and its text.
    Line(String, String),
    /// A table: its title heads the first column, which labels the rows.
    Table {
        head: Vec<String>,
        rows: Vec<Vec<String>>,
    },
}

/// Energy as the summaries show it, in MWh: to the kWh for a small site.
pub(crate) fn mwh(v: f64) -> String {
    let v = v + 0.0;
    if v.abs() < 10.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

/// The site economics and sensitivity, once for every way of showing them.
fn parts(k: &Kpis) -> Vec<Part> {
    let site = &k.site.run;
    let (w, wo) = (&site.with_mining, &site.without_mining);
    let head = |title: &str| {
        [title, "without mining", "with mining", "mining adds"]
            .map(String::from)
            .to_vec()
    };
    // Costs negative, so that each column adds up to its site total.
    let account = [
        (
            "export revenue",
            wo.export_revenue_eur,
            w.export_revenue_eur,
        ),
        (
            "energy cost (import)",
            -wo.import_cost_eur,
            -w.import_cost_eur,
        ),
        (
            "mining revenue",
            wo.mining_revenue_eur,
            w.mining_revenue_eur,
        ),
        ("wear cost (starts)", -wo.wear_cost_eur, -w.wear_cost_eur),
        ("site total", wo.site_total_eur, w.site_total_eur),
    ];
    let mut parts = vec![
        Part::Table {
            head: head("site economics, EUR"),
            rows: account
                .iter()
                .map(|(label, without, with)| {
                    vec![
                        label.to_string(),
                        eur(*without),
                        eur(*with),
                        eur(with - without),
                    ]
                })
                .collect(),
        },
        Part::Line(
            "value added by mining".into(),
            format!(
                "{} EUR{}",
                eur(site.value_added_eur),
                site.value_added_eur_per_mwh
                    .map_or(String::new(), |v| format!(
                        ", {v:.1} EUR per MWh mined ({} MWh)",
                        mwh(w.mining_mwh)
                    ))
            ),
        ),
        Part::Line(
            "curtailment mined".into(),
            format!(
                "{} MWh of {} MWh otherwise curtailed, turned into {} EUR of hashes",
                mwh(w.mining_from_curtailment_mwh),
                mwh(wo.curtailed_mwh),
                eur(w.mining_revenue_from_curtailment_eur)
            ),
        ),
    ];
    if k.site.months.len() > 1 {
        parts.push(Part::Table {
            head: head("site total per month, EUR"),
            rows: k
                .site
                .months
                .iter()
                .map(|m| {
                    vec![
                        m.month.clone(),
                        eur(m.site.without_mining.site_total_eur),
                        eur(m.site.with_mining.site_total_eur),
                        eur(m.site.value_added_eur),
                    ]
                })
                .collect(),
        });
    }
    let se = &k.sensitivity;
    parts.push(Part::Line(
        "hashprice (run mean)".into(),
        format!(
            "{:.2} EUR per PH/s per day; import price (run mean, day-ahead + adder) {:.2} EUR/MWh",
            se.hashprice_mean_eur_per_ph_day, se.import_price_mean_eur_per_mwh
        ),
    ));
    for b in &se.loads {
        let grid = b
            .grid_break_even_hashprice_eur_per_ph_day
            .map_or("never pays on grid energy (no hashes)".to_string(), |h| {
                format!("pays on grid energy above a hashprice of {h:.2}")
            });
        parts.push(Part::Line(
            format!("break-even {}", b.name),
            format!(
                "energy up to {:.2} EUR/MWh at the mean hashprice; {grid}",
                b.break_even_price_eur_per_mwh
            ),
        ));
    }
    if !se.hashprice_runs.is_empty() {
        parts.push(Part::Table {
            head: [
                "hashprice sensitivity",
                "hashprice",
                "mining profit EUR",
                "site value EUR",
                "value added EUR",
                "mining MWh",
            ]
            .map(String::from)
            .to_vec(),
            rows: se
                .hashprice_runs
                .iter()
                .map(|r| {
                    vec![
                        format!("{:+.0} %", r.hashprice_change_pct),
                        format!("{:.2}", r.hashprice_mean_eur_per_ph_day),
                        eur(r.mining_profit_eur),
                        eur(r.site_value_eur),
                        eur(r.value_added_eur),
                        mwh(r.mining_mwh),
                    ]
                })
                .collect(),
        });
    }
    parts
}

/// Width of a label column in the terminal summary.
const LABEL: usize = 26;

/// The site economics and sensitivity as lines of the terminal summary.
pub fn summary(k: &Kpis) -> String {
    let mut s = String::new();
    for part in parts(k) {
        match part {
            Part::Line(label, text) => {
                let _ = writeln!(s, "  {label:<LABEL$} {text}");
            }
            Part::Table { head, rows } => {
                let widths = super::sweep::column_widths(&head, &rows);
                let cells = |r: &[String]| {
                    r.iter()
                        .zip(&widths)
                        .skip(1)
                        .map(|(c, w)| format!("{c:>w$}"))
                        .collect::<Vec<_>>()
                        .join("  ")
                };
                let _ = writeln!(s, "  {:<LABEL$} {}", head[0], cells(&head));
                for r in &rows {
                    let _ = writeln!(s, "    {:<w$} {}", r[0], cells(r), w = LABEL - 2);
                }
            }
        }
    }
    s
}

/// The site economics and sensitivity as a `report.md` section.
pub fn markdown(k: &Kpis) -> String {
    let mut s = String::from("## Site economics\n\nThe same site over the same data and tariff without mining (pure physics: no controller) beside the run. Costs are negative.\n");
    for part in parts(k) {
        match part {
            Part::Line(label, text) => {
                let _ = writeln!(s, "\n- **{label}**: {text}");
            }
            Part::Table { head, rows } => {
                let row = |r: &[String]| format!("| {} |", r.join(" | "));
                let _ = writeln!(s, "\n{}", row(&head));
                let _ = writeln!(s, "|{}", "---|".repeat(head.len()));
                for r in &rows {
                    let _ = writeln!(s, "{}", row(r));
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> GridConnection {
        GridConnection {
            export_limit: Watts(1000.0),
            import_limit: Watts(500.0),
        }
    }

    #[test]
    fn flows_export_up_to_the_limit_curtail_above_and_import_the_lack() {
        let g = grid();
        let f = Flows::of(Watts(2500.0), Watts(500.0), Watts(300.0), &g);
        assert_eq!(
            (f.export, f.import, f.curtailed),
            (Watts(1000.0), Watts(0.0), Watts(700.0))
        );
        let f = Flows::of(Watts(1000.0), Watts(500.0), Watts(300.0), &g);
        assert_eq!(
            (f.export, f.import, f.curtailed),
            (Watts(200.0), Watts(0.0), Watts(0.0))
        );
        let f = Flows::of(Watts(0.0), Watts(500.0), Watts(300.0), &g);
        assert_eq!(
            (f.export, f.import, f.curtailed),
            (Watts(0.0), Watts(800.0), Watts(0.0))
        );
    }

    #[test]
    fn an_account_books_money_and_shares_revenue_by_energy_source() {
        let mut book = Book::new(Duration::from_secs(1800));
        // Half an hour: 1 kW exported at 50, nothing imported, 2 kW mined of which
        // 500 W from curtailment, earning 0.4 EUR, one start at 0.1 EUR.
        book.book(
            Timestamp(0),
            &SiteStep {
                flows: Flows {
                    export: Watts(1000.0),
                    import: Watts(0.0),
                    curtailed: Watts(100.0),
                },
                mining: Watts(2000.0),
                mining_from_curtailment: Watts(500.0),
                export_value: PricePerMwh(50.0),
                import_price: PricePerMwh(130.0),
                mining_revenue_eur: 0.4,
                wear_cost_eur: 0.1,
            },
        );
        let a = book.total();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(a.export_mwh, 0.0005));
        assert!(close(a.export_revenue_eur, 0.025));
        assert!(close(a.curtailed_mwh, 0.00005));
        assert!(close(a.mining_mwh, 0.001));
        assert!(close(a.mining_from_curtailment_mwh, 0.00025));
        assert!(close(a.mining_revenue_from_curtailment_eur, 0.1));
        assert!(close(a.site_total_eur, 0.025 + 0.4 - 0.1));
    }

    #[test]
    fn break_even_of_an_s19_class_group() {
        let load = LoadSpec {
            name: "s19".into(),
            kind: crate::site::LoadKind::Asic,
            count: 1,
            rated_power: Watts(3250.0),
            hashrate: crate::units::HashRate::from_ths(95.0),
            levels: crate::site::PowerLevels::OnOff,
            ramp: Default::default(),
            wake: Default::default(),
            wear: Default::default(),
        };
        // 95 TH/s at 3.25 kW: 1.2179 EUR/MWh per unit of hashprice.
        let b = BreakEven::of(&load, Hashprice(50.0), PricePerMwh(121.79));
        assert!((b.break_even_price_eur_per_mwh - 60.897).abs() < 0.01);
        let h = b.grid_break_even_hashprice_eur_per_ph_day.unwrap();
        assert!((h - 100.0).abs() < 0.01, "{h}");
    }
}
