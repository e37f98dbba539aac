//! KPIs: energy by source, money, hashes and wear, summed step by step.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::Serialize;

use super::site::{self, BreakEven, Flows, Sensitivity, SiteKpis, SiteStep};
use crate::clock::Timestamp;
use crate::decision::{Reason, ALL_REASONS};
use crate::policy::Split;
use crate::scenario::Scenario;
use crate::signal::replay::{DataReport, Replay};
use crate::site::carbon::EmissionFactors;
use crate::site::LoadSpec;
use crate::state::LoadLedger;
use crate::units::{Hashprice, PricePerMwh, Watts};

/// Where the watts of one step went. Powers in W (step averages), prices in EUR/MWh.
#[derive(Debug, Clone, Copy)]
pub struct StepFlows {
    pub at: Timestamp,
    pub step_h: f64,
    pub generation: f64,
    pub site_load: f64,
    pub mining: f64,
    pub export: f64,
    pub import: f64,
    pub curtailed: f64,
    /// What would have been curtailed with no mining.
    pub curtailed_without: f64,
    /// Mining power by the energy it took.
    pub split: Split,
    pub export_value: f64,
    pub import_price: f64,
    pub hashes: f64,
    /// EUR per PH/s per day.
    pub hashprice: f64,
    pub reason: Reason,
    pub import_over_limit: bool,
    /// Share of the generation that is PV's (the rest is wind's), for the own
    /// generation's carbon.
    pub pv_share: f64,
    /// The grid's carbon intensity in force, gCO2eq/kWh (NaN: none known).
    pub carbon_intensity: f64,
}

/// The carbon of mining (issue 15): what the grid's intensity was, and what mining's
/// energy carried by source: curtailed surplus and own generation at the site's own
/// PV/wind lifecycle factors, grid energy at the grid's intensity in force. Grid energy
/// mined while no intensity was known is kept apart (`grid_unrated_mwh`), never rated.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CarbonKpis {
    /// Where the emission factors come from (and what the scenario overrode).
    pub factor_source: String,
    /// The generation-mix file the grid's intensity comes from (`None`: no `[carbon]
    /// mix`, so no grid intensity and every grid kWh unrated).
    pub grid_mix: Option<String>,
    pub own_pv_g_kwh: f64,
    pub own_wind_g_kwh: f64,
    /// The grid's intensity averaged over time (the steps that had one).
    pub grid_intensity_mean_g_kwh: Option<f64>,
    /// The grid's intensity weighted by mining's grid draw.
    pub grid_intensity_mining_weighted_g_kwh: Option<f64>,
    /// Hours of the run with no grid intensity (a gap in the mix).
    pub hours_without_grid_intensity: f64,
    /// All mining's carbon, t CO2eq (rated energy only).
    pub mining_co2eq_t: f64,
    pub curtailed_co2eq_t: f64,
    /// Own generation that would otherwise have been exported.
    pub own_generation_co2eq_t: f64,
    pub grid_co2eq_t: f64,
    /// Grid energy mined with no intensity known, MWh (in no figure above).
    pub grid_unrated_mwh: f64,
    /// Mining's carbon per kWh over the run (its rated energy).
    pub mining_intensity_g_kwh: Option<f64>,
    /// gCO2eq per TH (1e12 hashes) mined on rated energy.
    pub g_per_th: Option<f64>,
    /// Share of hashes mined on otherwise-curtailed energy.
    pub hashes_on_curtailed_share: f64,
    /// Share of hashes mined on own generation, curtailed surplus included.
    pub hashes_on_own_generation_share: f64,
    /// Per UTC hour of the day (24 rows).
    pub by_hour: Vec<PeriodCarbon>,
    /// Per UTC calendar year the run touches.
    pub by_year: Vec<PeriodCarbon>,
    /// The controller's own energy account (`SiteState::energy`, what the ledger
    /// certifies): its grid energy at the intensity in force, t CO2eq, and its grid
    /// energy unrated, MWh. It splits each interval by the tiers the policy saw at its
    /// start, the figures above by the step's own, so the two agree closely, not exactly.
    pub account_grid_co2eq_t: f64,
    pub account_grid_unrated_mwh: f64,
}

/// Mining's carbon over one period: a UTC calendar year (`2018`) or one UTC hour of the
/// day over the whole run (`13:00`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeriodCarbon {
    pub period: String,
    pub mining_mwh: f64,
    pub mining_co2eq_t: f64,
    /// Over the period's rated energy.
    pub mining_intensity_g_kwh: Option<f64>,
    /// The grid's, time-weighted over the period's steps that had one.
    pub grid_intensity_mean_g_kwh: Option<f64>,
}

/// Sums for [`CarbonKpis`]; gram and kWh, per hour of the day too.
#[derive(Debug, Default)]
struct CarbonAcc {
    grid_h: f64,
    grid_int_h: f64,
    no_int_h: f64,
    grid_rated_kwh: f64,
    grid_g: f64,
    grid_unrated_kwh: f64,
    curtailed_g: f64,
    own_g: f64,
    hashes: f64,
    hashes_rated: f64,
    hashes_curtailed: f64,
    hashes_own: f64,
    /// Per hour: mining kWh, rated kWh, g, hours with a grid intensity, their sum.
    hours: [[f64; 5]; 24],
    /// The same per calendar year, in time order.
    years: Vec<(String, [f64; 5])>,
}

impl CarbonAcc {
    /// Books the step, into UTC calendar year `year` (`YYYY`) too; returns the step's
    /// mining carbon, g (rated energy only).
    fn step(&mut self, f: &StepFlows, own: (f64, f64), year: &str) -> f64 {
        let kwh = |w: f64| w * f.step_h / 1e3;
        let (free, exp, imp) = (
            kwh(f.split.free.0),
            kwh(f.split.export.0),
            kwh(f.split.import.0),
        );
        let own_ef = f.pv_share * own.0 + (1.0 - f.pv_share) * own.1;
        let (free_g, exp_g) = (free * own_ef, exp * own_ef);
        let rated = !f.carbon_intensity.is_nan();
        let grid_g = if rated { imp * f.carbon_intensity } else { 0.0 };
        if rated {
            self.grid_h += f.step_h;
            self.grid_int_h += f.carbon_intensity * f.step_h;
            self.grid_rated_kwh += imp;
            self.grid_g += grid_g;
        } else {
            self.no_int_h += f.step_h;
            self.grid_unrated_kwh += imp;
        }
        self.curtailed_g += free_g;
        self.own_g += exp_g;
        let total = free + exp + imp;
        let rated_kwh = if rated { total } else { free + exp };
        if total > 0.0 {
            self.hashes_curtailed += f.hashes * free / total;
            self.hashes_own += f.hashes * (free + exp) / total;
            self.hashes_rated += f.hashes * rated_kwh / total;
        } else {
            self.hashes_rated += f.hashes;
        }
        self.hashes += f.hashes;
        let g = free_g + exp_g + grid_g;
        // Mining kWh, rated kWh, g, hours with a grid intensity, their sum.
        let add = |slot: &mut [f64; 5]| {
            slot[0] += total;
            slot[1] += rated_kwh;
            slot[2] += g;
            if rated {
                slot[3] += f.step_h;
                slot[4] += f.carbon_intensity * f.step_h;
            }
        };
        add(&mut self.hours[(f.at.0.rem_euclid(Timestamp::MS_PER_DAY) / 3_600_000) as usize]);
        if self.years.last().is_none_or(|(y, _)| y != year) {
            self.years.push((year.to_string(), [0.0; 5]));
        }
        add(&mut self.years.last_mut().expect("pushed above").1);
        g
    }

    fn finish(&self, factors: &EmissionFactors, grid_mix: Option<String>) -> CarbonKpis {
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        let period = |period: String, s: &[f64; 5]| PeriodCarbon {
            period,
            mining_mwh: s[0] / 1e3,
            mining_co2eq_t: s[2] / 1e6,
            mining_intensity_g_kwh: ratio(s[2], s[1]),
            grid_intensity_mean_g_kwh: ratio(s[4], s[3]),
        };
        let g = self.curtailed_g + self.own_g + self.grid_g;
        let rated_kwh: f64 = self.hours.iter().map(|h| h[1]).sum();
        CarbonKpis {
            factor_source: factors.source(),
            grid_mix,
            own_pv_g_kwh: factors.own_pv.0,
            own_wind_g_kwh: factors.own_wind.0,
            grid_intensity_mean_g_kwh: ratio(self.grid_int_h, self.grid_h),
            grid_intensity_mining_weighted_g_kwh: ratio(self.grid_g, self.grid_rated_kwh),
            hours_without_grid_intensity: self.no_int_h,
            mining_co2eq_t: g / 1e6,
            curtailed_co2eq_t: self.curtailed_g / 1e6,
            own_generation_co2eq_t: self.own_g / 1e6,
            grid_co2eq_t: self.grid_g / 1e6,
            grid_unrated_mwh: self.grid_unrated_kwh / 1e3,
            mining_intensity_g_kwh: ratio(g, rated_kwh),
            g_per_th: ratio(g, self.hashes_rated / 1e12),
            hashes_on_curtailed_share: ratio(self.hashes_curtailed, self.hashes).unwrap_or(0.0),
            hashes_on_own_generation_share: ratio(self.hashes_own, self.hashes).unwrap_or(0.0),
            by_hour: self
                .hours
                .iter()
                .enumerate()
                .map(|(i, h)| period(format!("{i:02}:00"), h))
                .collect(),
            by_year: self
                .years
                .iter()
                .map(|(y, s)| period(y.clone(), s))
                .collect(),
            // The controller's account, set by the simulator from its state.
            account_grid_co2eq_t: 0.0,
            account_grid_unrated_mwh: 0.0,
        }
    }
}

/// EUR per hash at a hashprice of 1 EUR per PH/s per day.
const EUR_PER_HASH_PER_HASHPRICE: f64 = 1.0 / (1e15 * 86_400.0);

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadKpis {
    pub name: String,
    pub units: u32,
    pub energy_mwh: f64,
    pub hashes: f64,
    pub revenue_eur: f64,
    pub starts: u64,
    pub starts_per_device_day: f64,
    pub max_starts_in_a_day: u32,
    /// What the starts cost at the hardware's `start_cost_eur`, EUR.
    pub wear_cost_eur: f64,
    /// Stops that cut `min_on` short because a higher rule or a hard limit demanded it.
    pub forced_stops: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MonthKpis {
    /// `YYYY-MM`.
    pub month: String,
    pub mining_from_curtailment_mwh: f64,
    pub mining_from_export_mwh: f64,
    pub mining_from_import_mwh: f64,
    pub curtailed_without_mining_mwh: f64,
    pub revenue_eur: f64,
    pub energy_cost_eur: f64,
    /// Starts made in the month at their `start_cost_eur`.
    pub wear_cost_eur: f64,
    /// Revenue minus energy cost minus wear cost.
    pub profit_eur: f64,
}

/// The clairvoyant optimum, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OptimumKpis {
    /// Profit no policy can beat on this data: the tighter of the two bounds below.
    pub upper_bound_eur: f64,
    /// Which bound that is.
    pub bound: crate::sim::optimum::BoundKind,
    /// The Lagrangian dual bound (prices wear limits; loose on a non-convex tariff);
    /// not computed when the no-wear bound already meets the best feasible profit.
    pub lagrangian_bound_eur: Option<f64>,
    /// The exact optimum without wear limits, step by step (exact for any tariff).
    pub no_wear_bound_eur: f64,
    /// Profit of the best schedule known that keeps every limit (perfect foresight),
    /// its starts' wear cost taken off as the online profit's is: the better of the
    /// solver's schedule and the online policy's own run, which is feasible too.
    pub feasible_eur: f64,
    /// Which schedule that is.
    pub feasible_source: FeasibleSource,
    /// What the solver's schedule's starts cost, EUR (in its profit).
    pub feasible_wear_cost_eur: f64,
    /// (bound - best feasible) / |bound|: how well the optimum itself is known. The
    /// true optimum lies between the two.
    pub gap: f64,
    /// Online profit / upper bound; 1 where the bound is 0 and the policy lost nothing.
    pub ratio: f64,
    pub iterations: u32,
    pub solve_seconds: f64,
}

/// Where the best feasible schedule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeasibleSource {
    /// The solver's merit-order programmes and best responses.
    Solver,
    /// The online policy's own run: the solver found nothing better.
    Online,
}

impl std::fmt::Display for FeasibleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeasibleSource::Solver => "the solver's schedule",
            FeasibleSource::Online => "the online policy's own run",
        })
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Kpis {
    pub scenario: String,
    pub start: String,
    pub end: String,
    pub step_s: u64,
    pub steps: usize,
    pub days: f64,
    pub generation_mwh: f64,
    pub site_load_mwh: f64,
    pub mining_mwh: f64,
    pub mining_from_curtailment_mwh: f64,
    pub mining_from_export_mwh: f64,
    pub mining_from_import_mwh: f64,
    pub curtailed_without_mining_mwh: f64,
    pub curtailed_mwh: f64,
    /// Share of the otherwise-curtailed energy that mining absorbed.
    pub absorbed_share: f64,
    pub export_mwh: f64,
    pub import_mwh: f64,
    pub revenue_eur: f64,
    pub energy_cost_eur: f64,
    /// Every start at its load's `start_cost_eur`, EUR.
    pub wear_cost_eur: f64,
    /// Revenue minus energy cost minus wear cost: what the optimum's profit is
    /// compared with, charged the same way.
    pub profit_eur: f64,
    pub hashes: f64,
    /// Steps where the site drew more than its import limit (site load alone, in the data).
    pub import_over_limit_steps: usize,
    /// Steps per decision reason.
    pub reasons: Vec<(String, usize)>,
    /// Per quantity the series feed: steps at which its reading was missing or older
    /// than the policy allows (after the series' `max_age` dropped it, if set).
    pub stale_steps: Vec<(String, usize)>,
    pub loads: Vec<LoadKpis>,
    pub months: Vec<MonthKpis>,
    /// Per UTC day: (day start, mining from curtailment MWh), for picking a week to plot.
    #[serde(skip)]
    pub daily_absorbed: Vec<(Timestamp, f64)>,
    pub data: DataReport,
    pub optimum: Option<OptimumKpis>,
    /// The site with and without mining, whole run and per month.
    pub site: SiteKpis,
    /// Break-even prices per load group, and the run at other hashprices.
    pub sensitivity: Sensitivity,
    /// Mining's carbon, and the grid's.
    pub carbon: CarbonKpis,
}

/// Which UTC calendar month a step falls in, as steps arrive in time order.
#[derive(Debug)]
pub(crate) struct Months {
    /// Start of the next month, ms.
    end: i64,
}

impl Default for Months {
    fn default() -> Self {
        Months { end: i64::MIN }
    }
}

impl Months {
    /// `Some("YYYY-MM")` when `at` is the first step of a month.
    #[inline(always)]
    pub fn enter(&mut self, at: Timestamp) -> Option<String> {
        // Every step asks, a month's first answers: keep the question inlined.
        if at.0 < self.end {
            None
        } else {
            self.begin(at)
        }
    }

    #[cold]
    fn begin(&mut self, at: Timestamp) -> Option<String> {
        let t = utc(at);
        let (y, m) = (t.year(), t.month());
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        self.end = Utc
            .with_ymd_and_hms(ny, nm, 1, 0, 0, 0)
            .single()
            .map_or(i64::MAX, |t| t.timestamp_millis());
        Some(format!("{y:04}-{m:02}"))
    }
}

pub(crate) struct Accumulator {
    k: Kpis,
    reason_steps: [usize; ALL_REASONS.len()],
    months: Months,
    day: i64,
    /// Per load: EUR per start, and the ledger's start count at the last booking.
    start_cost: Vec<f64>,
    starts_seen: Vec<u64>,
    /// Wear booked by [`Accumulator::starts`] since the last step, EUR.
    pending_wear: f64,
    /// The site's money with mining, as simulated.
    site: site::Book,
    /// Sums over steps of the held hashprice and import price, for their run means.
    hashprice_sum: f64,
    import_price_sum: f64,
    loads: Vec<LoadSpec>,
    carbon: CarbonAcc,
    /// The own PV's and wind's factors, gCO2eq/kWh.
    own_factors: (f64, f64),
    factors: EmissionFactors,
    grid_mix: Option<String>,
}

impl Accumulator {
    pub fn new(sc: &Scenario, replay: &Replay) -> Self {
        let k = Kpis {
            scenario: sc.name.clone(),
            start: replay.start.to_rfc3339(),
            end: replay.time(replay.len).to_rfc3339(),
            step_s: replay.step.as_secs(),
            steps: replay.len,
            days: replay.len as f64 * replay.step.as_secs_f64() / 86_400.0,
            loads: sc
                .loads
                .iter()
                .map(|l| LoadKpis {
                    name: l.name.clone(),
                    units: l.count,
                    ..Default::default()
                })
                .collect(),
            data: replay.report.clone(),
            ..Default::default()
        };
        Accumulator {
            k,
            reason_steps: [0; ALL_REASONS.len()],
            months: Months::default(),
            day: i64::MIN,
            start_cost: sc.loads.iter().map(|l| l.wear.start_cost_eur).collect(),
            starts_seen: vec![0; sc.loads.len()],
            pending_wear: 0.0,
            site: site::Book::new(replay.step),
            hashprice_sum: 0.0,
            import_price_sum: 0.0,
            loads: sc.loads.clone(),
            carbon: CarbonAcc::default(),
            own_factors: (sc.carbon.own_pv.0, sc.carbon.own_wind.0),
            factors: sc.carbon.clone(),
            grid_mix: sc
                .history
                .carbon
                .as_ref()
                .map(|m| m.series.path.display().to_string()),
        }
    }

    /// Books load `k`'s starts up to now, from its ledger's running count: the new ones
    /// cost `start_cost_eur` each, in the step [`Accumulator::step`] books next.
    pub fn starts(&mut self, k: usize, total_starts: u64) {
        let new = total_starts.saturating_sub(self.starts_seen[k]);
        self.starts_seen[k] = total_starts;
        let cost = new as f64 * self.start_cost[k];
        self.k.loads[k].wear_cost_eur += cost;
        self.pending_wear += cost;
    }

    /// Books one load's step: energy in Wh... given as W·h, hashes, and the hashprice.
    pub fn load(&mut self, k: usize, wh: f64, hashes: f64, hashprice: f64) {
        let l = &mut self.k.loads[k];
        l.energy_mwh += wh / 1e6;
        l.hashes += hashes;
        l.revenue_eur += hashes * hashprice * EUR_PER_HASH_PER_HASHPRICE;
    }

    /// Books one step; returns mining's carbon over it, g (rated energy only).
    pub fn step(&mut self, f: StepFlows) -> f64 {
        let mwh = |w: f64| w * f.step_h / 1e6;
        let k = &mut self.k;
        k.generation_mwh += mwh(f.generation);
        k.site_load_mwh += mwh(f.site_load);
        k.mining_mwh += mwh(f.mining);
        let (free, exp, imp) = (
            mwh(f.split.free.0),
            mwh(f.split.export.0),
            mwh(f.split.import.0),
        );
        k.mining_from_curtailment_mwh += free;
        k.mining_from_export_mwh += exp;
        k.mining_from_import_mwh += imp;
        k.curtailed_without_mining_mwh += mwh(f.curtailed_without);
        k.curtailed_mwh += mwh(f.curtailed);
        k.export_mwh += mwh(f.export);
        k.import_mwh += mwh(f.import);
        let revenue = f.hashes * f.hashprice * EUR_PER_HASH_PER_HASHPRICE;
        let cost = exp * f.export_value + imp * f.import_price;
        k.revenue_eur += revenue;
        k.energy_cost_eur += cost;
        let wear = std::mem::take(&mut self.pending_wear);
        k.wear_cost_eur += wear;
        k.hashes += f.hashes;
        k.import_over_limit_steps += f.import_over_limit as usize;
        self.reason_steps[super::reason_index(f.reason)] += 1;
        self.hashprice_sum += f.hashprice;
        self.import_price_sum += f.import_price;
        self.site.book(
            f.at,
            &SiteStep {
                flows: Flows {
                    export: Watts(f.export),
                    import: Watts(f.import),
                    curtailed: Watts(f.curtailed),
                },
                mining: Watts(f.mining),
                mining_from_curtailment: f.split.free,
                export_value: PricePerMwh(f.export_value),
                import_price: PricePerMwh(f.import_price),
                mining_revenue_eur: revenue,
                wear_cost_eur: wear,
            },
        );

        if let Some(month) = self.months.enter(f.at) {
            k.months.push(MonthKpis {
                month,
                ..Default::default()
            });
        }
        let month = k.months.last_mut().expect("pushed above");
        let co2 = self.carbon.step(&f, self.own_factors, &month.month[..4]);
        month.mining_from_curtailment_mwh += free;
        month.mining_from_export_mwh += exp;
        month.mining_from_import_mwh += imp;
        month.curtailed_without_mining_mwh += mwh(f.curtailed_without);
        month.revenue_eur += revenue;
        month.energy_cost_eur += cost;
        month.wear_cost_eur += wear;

        let day = f.at.day();
        if day != self.day {
            self.day = day;
            k.daily_absorbed
                .push((Timestamp(day * Timestamp::MS_PER_DAY), 0.0));
        }
        k.daily_absorbed.last_mut().expect("pushed above").1 += free;
        co2
    }

    /// The run's KPIs; `without_mining` is the same replay's site with no mining
    /// ([`site::without_mining`]).
    pub fn finish(mut self, ledgers: &[LoadLedger], without_mining: site::Book) -> Kpis {
        let k = &mut self.k;
        let steps = k.steps.max(1) as f64;
        let (hashprice, import_price) = (
            Hashprice(self.hashprice_sum / steps),
            PricePerMwh(self.import_price_sum / steps),
        );
        k.sensitivity = Sensitivity {
            hashprice_mean_eur_per_ph_day: hashprice.0,
            import_price_mean_eur_per_mwh: import_price.0,
            loads: self
                .loads
                .iter()
                .map(|l| BreakEven::of(l, hashprice, import_price))
                .collect(),
            hashprice_runs: Vec::new(),
        };
        k.carbon = self.carbon.finish(&self.factors, self.grid_mix.take());
        k.site = SiteKpis::compare(std::mem::take(&mut self.site), without_mining);
        k.profit_eur = k.revenue_eur - k.energy_cost_eur - k.wear_cost_eur;
        k.absorbed_share = if k.curtailed_without_mining_mwh > 0.0 {
            k.mining_from_curtailment_mwh / k.curtailed_without_mining_mwh
        } else {
            0.0
        };
        for m in &mut k.months {
            m.profit_eur = m.revenue_eur - m.energy_cost_eur - m.wear_cost_eur;
        }
        for (l, ledger) in k.loads.iter_mut().zip(ledgers) {
            l.starts = ledger.total_starts;
            l.forced_stops = ledger.forced_stops;
            l.max_starts_in_a_day = ledger.max_starts_in_a_day;
            l.starts_per_device_day = if k.days > 0.0 {
                l.starts as f64 / (l.units as f64 * k.days)
            } else {
                0.0
            };
        }
        k.reasons = ALL_REASONS
            .iter()
            .zip(self.reason_steps)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.as_str().to_string(), n))
            .collect();
        self.k
    }
}

pub fn utc(t: Timestamp) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(t.0).unwrap_or_default()
}
