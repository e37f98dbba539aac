//! The accountant: the controller's state, step by step, into the ledger's accounts and
//! certificates. Pure (no clock, no I/O): the live loop and the simulator call it after
//! each step with the state, so a simulated year writes the same kind of ledger a site
//! does.
//!
//! Each step's energy (the state's per-source counters, `state::MiningEnergy`, since
//! the step before) is split between PV and wind by their shares of generation at the
//! interval's start (as the controller's tiers are) and between intervals at their
//! boundaries in proportion to time, so an hour's certificate holds exactly that hour's
//! energy however the steps fall. Counts (starts, stops, shares) belong to the step
//! that made them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::entry::{self, Account, BySource, Certificate, Device, Entry, GroupCounts, Source};
use crate::clock::Timestamp;
use crate::state::{MiningEnergy, SiteState};

const HOUR_MS: i64 = 3_600_000;

/// What the loads did between two steps beyond energy (the caller measures it).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Work {
    /// Hashes computed since the last step.
    pub hashes: f64,
    /// Shares the pool accepted since the last step.
    pub shares_accepted: u64,
}

/// Additive flows over a span of time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Flow {
    /// Own generation's energy by technology: (curtailed, otherwise exported), Wh.
    pv: (f64, f64),
    wind: (f64, f64),
    grid: f64,
    own_eur: f64,
    grid_eur: f64,
    grid_co2: f64,
    grid_unrated: f64,
    hashes: f64,
    /// Intensity times known time (g/kWh·ms), and the known time (ms).
    intensity_ms: f64,
    known_ms: f64,
}

impl Flow {
    fn scaled(&self, f: f64) -> Flow {
        Flow {
            pv: (self.pv.0 * f, self.pv.1 * f),
            wind: (self.wind.0 * f, self.wind.1 * f),
            grid: self.grid * f,
            own_eur: self.own_eur * f,
            grid_eur: self.grid_eur * f,
            grid_co2: self.grid_co2 * f,
            grid_unrated: self.grid_unrated * f,
            hashes: self.hashes * f,
            intensity_ms: self.intensity_ms * f,
            known_ms: self.known_ms * f,
        }
    }

    fn add(&mut self, o: &Flow) {
        self.pv.0 += o.pv.0;
        self.pv.1 += o.pv.1;
        self.wind.0 += o.wind.0;
        self.wind.1 += o.wind.1;
        self.grid += o.grid;
        self.own_eur += o.own_eur;
        self.grid_eur += o.grid_eur;
        self.grid_co2 += o.grid_co2;
        self.grid_unrated += o.grid_unrated;
        self.hashes += o.hashes;
        self.intensity_ms += o.intensity_ms;
        self.known_ms += o.known_ms;
    }

    fn wh(&self) -> f64 {
        self.pv.0 + self.pv.1 + self.wind.0 + self.wind.1 + self.grid
    }

    fn intensity(&self) -> Option<f64> {
        (self.known_ms > 0.0).then(|| self.intensity_ms / self.known_ms)
    }
}

/// One open bucket (an account interval or a certificate hour).
#[derive(Debug, Clone, Default)]
struct Bucket {
    from: Option<Timestamp>,
    flow: Flow,
}

/// Where the last step left things.
#[derive(Debug, Clone)]
struct Mark {
    at: Timestamp,
    energy: MiningEnergy,
    /// PV's share of own generation then.
    pv_share: f64,
    intensity: Option<f64>,
    starts: Vec<u64>,
    on: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Accountant {
    device: Device,
    names: Vec<String>,
    every_ms: i64,
    mark: Option<Mark>,
    interval: Bucket,
    hour: Bucket,
    /// The open interval's (starts, stops) per load and accepted shares.
    counts: Vec<(u64, u64)>,
    shares: u64,
}

impl Accountant {
    /// Accounts every `every` (aligned to multiples of it since the epoch) for the loads
    /// `names` (config order), certificates every UTC hour, for `device`.
    pub fn new(device: Device, names: Vec<String>, every: Duration) -> Self {
        let every_ms = (every.as_millis() as i64).clamp(1_000, HOUR_MS);
        Accountant {
            device,
            every_ms,
            mark: None,
            interval: Bucket::default(),
            hour: Bucket::default(),
            counts: vec![(0, 0); names.len()],
            shares: 0,
            names,
        }
    }

    /// After the controller's step at `now`: the entries of every interval and hour
    /// that ended since the last step.
    pub fn step(&mut self, now: Timestamp, state: &SiteState, work: Work) -> Vec<Entry> {
        let next = self.mark_of(now, state);
        let Some(last) = self.mark.replace(next.clone()) else {
            self.interval.from = Some(now);
            self.hour.from = Some(now);
            return Vec::new();
        };
        if now <= last.at {
            return Vec::new(); // a clock stepping back books nothing (as the energy)
        }
        let flow = span_flow(&last, &next, work);
        let mut out = Vec::new();
        let (mut t, end) = (last.at, now);
        let whole = (end.0 - t.0) as f64;
        loop {
            let cut_interval = next_boundary(t, self.every_ms);
            let cut_hour = next_boundary(t, HOUR_MS);
            let cut = cut_interval.min(cut_hour);
            if cut > end.0 {
                let part = flow.scaled((end.0 - t.0) as f64 / whole);
                self.interval.flow.add(&part);
                self.hour.flow.add(&part);
                break;
            }
            let part = flow.scaled((cut - t.0) as f64 / whole);
            self.interval.flow.add(&part);
            self.hour.flow.add(&part);
            let at = Timestamp(cut);
            if cut == cut_interval {
                out.extend(self.close_interval(at, &last));
            }
            if cut == cut_hour {
                out.extend(self.close_hour(at));
            }
            t = at;
            if cut == end.0 {
                break;
            }
        }
        // Counts belong to the step that made them: after the boundaries it closed.
        for (i, ((s0, s1), o1)) in last
            .starts
            .iter()
            .zip(&next.starts)
            .zip(&next.on)
            .enumerate()
        {
            let starts = s1.saturating_sub(*s0);
            let on_change = *o1 as i64 - last.on[i] as i64;
            let stops = (starts as i64 - on_change).max(0) as u64;
            self.counts[i].0 += starts;
            self.counts[i].1 += stops;
        }
        self.shares += work.shares_accepted;
        out
    }

    /// At shutdown (or a simulation's end): the open interval and hour, cut at `now`.
    pub fn close(&mut self, now: Timestamp, state: &SiteState) -> Vec<Entry> {
        let mut out = self.step(now, state, Work::default());
        if let Some(last) = self.mark.clone() {
            out.extend(self.close_interval(now, &last));
            out.extend(self.close_hour(now));
        }
        out
    }

    fn mark_of(&self, now: Timestamp, state: &SiteState) -> Mark {
        let pv = state.pv.map_or(0.0, |r| r.value.0.max(0.0));
        let wind = state.wind.map_or(0.0, |r| r.value.0.max(0.0));
        let pv_share = if pv + wind > 0.0 {
            pv / (pv + wind)
        } else if self.device.pv_capacity_w > 0.0 || self.device.wind_capacity_w <= 0.0 {
            1.0
        } else {
            0.0
        };
        Mark {
            at: now,
            energy: state.energy,
            pv_share,
            intensity: state.carbon_intensity.map(|r| r.value.0),
            starts: state.loads.iter().map(|l| l.total_starts).collect(),
            on: state.loads.iter().map(|l| l.on_count()).collect(),
        }
    }

    fn close_interval(&mut self, at: Timestamp, last: &Mark) -> Option<Entry> {
        let b = std::mem::replace(
            &mut self.interval,
            Bucket {
                from: Some(at),
                ..Bucket::default()
            },
        );
        let counts = std::mem::replace(&mut self.counts, vec![(0, 0); self.names.len()]);
        let shares = std::mem::take(&mut self.shares);
        let from = b.from?;
        if at <= from {
            return None;
        }
        let f = &b.flow;
        let r = |x: f64| entry::round(x, 3);
        let groups = self
            .names
            .iter()
            .zip(&counts)
            .zip(&last.on)
            .map(|((n, &(starts, stops)), &on)| (n.clone(), GroupCounts { starts, stops, on }))
            .collect::<BTreeMap<_, _>>();
        Some(Entry::Account(Account {
            from: from.to_rfc3339(),
            to: at.to_rfc3339(),
            wh: BySource {
                curtailed: r(f.pv.0 + f.wind.0),
                own_generation: r(f.pv.1 + f.wind.1),
                grid: r(f.grid),
            },
            own_generation_eur: entry::round(f.own_eur, 6),
            grid_eur: entry::round(f.grid_eur, 6),
            grid_intensity_g_per_kwh: f.intensity().map(|x| entry::round(x, 3)),
            grid_co2eq_g: r(f.grid_co2),
            grid_unrated_wh: r(f.grid_unrated),
            hashes: f.hashes.round(),
            shares_accepted: shares,
            groups,
        }))
    }

    fn close_hour(&mut self, at: Timestamp) -> Vec<Entry> {
        let b = std::mem::replace(
            &mut self.hour,
            Bucket {
                from: Some(at),
                ..Bucket::default()
            },
        );
        let Some(from) = b.from.filter(|&f| f < at) else {
            return Vec::new();
        };
        let f = &b.flow;
        let total = f.wh();
        let intensity = f.intensity().map(|x| entry::round(x, 3));
        Source::ALL
            .into_iter()
            .filter_map(|source| {
                let (wh, curtailed, co2) = match source {
                    Source::Pv => (f.pv.0 + f.pv.1, f.pv.0, 0.0),
                    Source::Wind => (f.wind.0 + f.wind.1, f.wind.0, 0.0),
                    Source::Grid => (f.grid, 0.0, f.grid_co2),
                };
                let whole = wh.floor() as u64;
                (whole > 0).then(|| {
                    Entry::Certificate(Certificate {
                        id: format!(
                            "{}/{}/{}",
                            self.device.site,
                            from.to_rfc3339(),
                            source.as_str()
                        ),
                        device: self.device.clone(),
                        consumer: "mining".into(),
                        start: from.to_rfc3339(),
                        end: at.to_rfc3339(),
                        source,
                        technology: source.technology().into(),
                        wh: whole,
                        otherwise_curtailed_wh: (curtailed.floor() as u64).min(whole),
                        grid_intensity_g_per_kwh: intensity,
                        co2eq_g: entry::round(co2, 3),
                        hashes: if total > 0.0 {
                            (f.hashes * wh / total).round()
                        } else {
                            0.0
                        },
                    })
                })
            })
            .collect()
    }
}

/// The first multiple of `every` after `t`.
fn next_boundary(t: Timestamp, every: i64) -> i64 {
    (t.0.div_euclid(every) + 1) * every
}

/// The flow between two marks: the energy the state booked, split by technology at
/// the first mark's shares.
fn span_flow(last: &Mark, next: &Mark, work: Work) -> Flow {
    let (a, b) = (&last.energy, &next.energy);
    let d = |x: f64, y: f64| (y - x).max(0.0);
    let curtailed = d(a.curtailed.0, b.curtailed.0);
    let own = d(a.own_generation.0, b.own_generation.0);
    let s = last.pv_share;
    let ms = (next.at.0 - last.at.0) as f64;
    Flow {
        pv: (curtailed * s, own * s),
        wind: (curtailed * (1.0 - s), own * (1.0 - s)),
        grid: d(a.grid.0, b.grid.0),
        own_eur: b.own_generation_eur.0 - a.own_generation_eur.0,
        grid_eur: b.grid_eur.0 - a.grid_eur.0,
        grid_co2: d(a.grid_co2eq_g, b.grid_co2eq_g),
        grid_unrated: d(a.grid_unrated.0, b.grid_unrated.0),
        hashes: work.hashes.max(0.0),
        intensity_ms: last.intensity.map_or(0.0, |i| i * ms),
        known_ms: if last.intensity.is_some() { ms } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::WattHours;

    /// r15: a step across an hour's end is split in proportion to time, so each
    /// certificate holds its own hour's energy and no more, and the accounts agree.
    #[test]
    fn r15_a_step_across_the_hour_is_split_by_time() {
        let device = Device {
            site: "s".into(),
            pv_capacity_w: 1000.0,
            wind_capacity_w: 0.0,
        };
        let mut a = Accountant::new(device, Vec::new(), Duration::from_secs(900));
        let mut state = SiteState::new(&[]);
        let minute = 60_000;
        assert!(a
            .step(Timestamp(50 * minute), &state, Work::default())
            .is_empty());
        state.energy.curtailed = WattHours(1000.0);
        let work = Work {
            hashes: 2e12,
            shares_accepted: 3,
        };
        let first = a.step(Timestamp(70 * minute), &state, work);
        let last = a.close(Timestamp(70 * minute), &state);
        let (mut accounts, mut certs) = (Vec::new(), Vec::new());
        for e in first.into_iter().chain(last) {
            match e {
                Entry::Account(x) => accounts.push(x),
                Entry::Certificate(c) => certs.push(c),
                other => panic!("{other:?}"),
            }
        }
        let wh: Vec<f64> = accounts.iter().map(|x| x.wh.curtailed).collect();
        assert_eq!(wh, [500.0, 500.0]);
        assert_eq!(accounts[0].to, "1970-01-01T01:00:00Z");
        assert_eq!(accounts.iter().map(|x| x.shares_accepted).sum::<u64>(), 3);
        let c: Vec<(String, String, u64, u64, f64)> = certs
            .iter()
            .map(|c| {
                (
                    c.start.clone(),
                    c.end.clone(),
                    c.wh,
                    c.otherwise_curtailed_wh,
                    c.hashes,
                )
            })
            .collect();
        assert_eq!(
            c,
            [
                (
                    "1970-01-01T00:50:00Z".into(),
                    "1970-01-01T01:00:00Z".into(),
                    500,
                    500,
                    1e12
                ),
                (
                    "1970-01-01T01:00:00Z".into(),
                    "1970-01-01T01:10:00Z".into(),
                    500,
                    500,
                    1e12
                ),
            ]
        );
        assert!(certs.iter().all(|c| c.source == Source::Pv));
    }
}
