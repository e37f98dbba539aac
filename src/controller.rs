//! The controller step: observations -> state -> policy -> decision booked in the state.
//!
//! `Controller::step` is the one function both the live loop and the simulator call, and
//! it is the whole step: the loads' own reports become the mining power, readings older
//! than their signal's maximum age are dropped, the policy decides, and the decision is
//! booked. So a policy tuned on history behaves the same at the site, stale drops
//! included. It does no I/O: sources feed it through `observe`, and the caller hands each
//! `Decision` to the actuators.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::decision::{Decision, LoadTarget};
use crate::policy::{Memo, Policy, Tiers};
use crate::signal::operator::CommandsInForce;
use crate::signal::rejected::LastRejected;
use crate::signal::{Observation, Quantity};
use crate::state::{MiningEnergy, Reading, SiteState, SourcedPower};
use crate::units::{CarbonIntensity, Watts};

/// How old each quantity's reading may be before the controller drops it (and the
/// policy then sees it missing): the site config's `max_age` per signal live, the
/// scenario's per series in a simulation. Tighter than the policy's `max_signal_age`
/// where a source is known to go quiet sooner.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MaxAges([Option<Duration>; Quantity::ALL.len()]);

impl MaxAges {
    /// Limits `q` to `age`; of two limits on one quantity the tighter holds.
    pub fn limit(&mut self, q: Quantity, age: Duration) {
        let slot = &mut self.0[q as usize];
        *slot = Some(slot.map_or(age, |a| a.min(age)));
    }

    pub fn get(&self, q: Quantity) -> Option<Duration> {
        self.0[q as usize]
    }
}

/// Where the energy mining draws until the next step comes from: the last step and the
/// tiers found in force then (`None`: the policy was blind to generation or site load).
#[derive(Debug, Clone, Copy, Default)]
struct EnergyMark(Option<(Timestamp, Option<Tiers>, Option<CarbonIntensity>)>);

impl EnergyMark {
    /// Books `mining` (what the loads reported at `now`, hence drew since the last step)
    /// into `energy` over the time since the last step, split by the tiers in force over
    /// it, not those found at its end; then marks `now` with `tiers`. A blind interval
    /// counts as grid, the one source that claims nothing the site cannot show (tiers of
    /// zero width put every watt there). A clock stepping back books nothing.
    fn book(
        &mut self,
        energy: &mut MiningEnergy,
        now: Timestamp,
        mining: Watts,
        tiers: Option<Tiers>,
        carbon: Option<CarbonIntensity>,
    ) {
        if let Some((last, in_force, carbon)) = self.0 {
            let t = in_force.unwrap_or_default();
            let s = t.split(mining);
            let p = SourcedPower {
                curtailed: s.free,
                own_generation: s.export,
                grid: s.import,
                export_value: t.export_cost,
                import_price: t.import_cost,
                carbon,
            };
            energy.add(now.since(last), p);
        }
        energy.since.get_or_insert(now);
        self.0 = Some((now, tiers, carbon));
    }
}

#[derive(Debug, Clone)]
pub struct Controller {
    policy: Policy,
    state: SiteState,
    max_ages: MaxAges,
    /// The policy's cache between steps of this state.
    memo: Memo,
    energy: EnergyMark,
}

impl Controller {
    pub fn new(policy: Policy, max_ages: MaxAges) -> Self {
        let mut state = SiteState::new(&policy.loads);
        state.freshness.max_age = Quantity::ALL.map(|q| max_ages.get(q));
        Controller {
            policy,
            state,
            max_ages,
            memo: Memo::default(),
            energy: EnergyMark::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn state(&self) -> &SiteState {
        &self.state
    }

    pub fn max_ages(&self) -> &MaxAges {
        &self.max_ages
    }

    #[inline]
    pub fn observe(&mut self, obs: Observation) {
        self.state.observe(obs);
    }

    /// Drops the reading `obs` would have set: its source reported what cannot be, so
    /// the signal goes stale now rather than keep an older value.
    pub fn forget(&mut self, obs: &Observation) {
        self.state.forget(obs);
    }

    /// Shows a value refused for `q` as the signal's `last_rejected` in the state.
    pub fn note_rejected(&mut self, q: Quantity, last: LastRejected) {
        self.state.rejected.record(q, last);
    }

    /// Takes back the commands in force a previous process left (before the first step).
    pub fn restore_commands(&mut self, commands: CommandsInForce) {
        self.state.commands = commands;
    }

    /// What the policy would decide now, booking nothing (for a status before the first
    /// step).
    pub fn preview(&self, now: Timestamp) -> Decision {
        self.policy.decide(&self.state, now)
    }

    /// One control step at `now`. `loads` is each load's latest power as it reports it
    /// (in config order; `None` for one that has reported nothing): their sum is the
    /// mining power, a load that has not confirmed its last command counting at what it
    /// last confirmed. Then readings past their maximum age are dropped, the policy
    /// decides, and the decision is booked (unit switches, policy memory).
    pub fn step(&mut self, now: Timestamp, loads: &[Option<Reading<Watts>>]) -> Decision {
        let mining = loads.iter().flatten().map(|r| r.value).sum();
        self.state.observe(Observation::Power {
            quantity: Quantity::MiningPower,
            value: mining,
            at: now,
        });
        self.expire(now);
        self.state.freshness.stale = Quantity::ALL.map(|q| self.is_stale(q, now));
        // Here, not in the live loop: the simulator counts the same energy the same way.
        let tiers = self.policy.source_tiers(&self.state, now);
        let carbon = self.state.carbon_intensity.map(|r| r.value);
        self.energy
            .book(&mut self.state.energy, now, mining, tiers, carbon);
        let decision = self.policy.decide_with(&self.state, now, &mut self.memo);
        self.state.record(&decision, &self.policy.wear);
        decision
    }

    /// The safe state: every load off, booked as the final decision (shutdown, a task
    /// that died). The reason stays what the policy would say, so the record shows why
    /// mining was where it was when it stopped.
    pub fn safe_state(&mut self, now: Timestamp) -> Decision {
        let mut d = self.policy.decide(&self.state, now);
        d.loads.iter_mut().for_each(|t| *t = LoadTarget::OFF);
        self.state.record(&d, &self.policy.wear);
        d
    }

    /// Whether `q`'s reading is missing or older than the policy allows at `now`.
    pub fn is_stale(&self, q: Quantity, now: Timestamp) -> bool {
        self.state
            .reading(q)
            .is_none_or(|r| r.fresh(now, self.policy.params.max_signal_age).is_none())
    }

    /// Drops every reading older than its quantity's maximum age.
    fn expire(&mut self, now: Timestamp) {
        for q in Quantity::ALL {
            let Some(max) = self.max_ages.get(q) else {
                continue;
            };
            if self
                .state
                .reading(q)
                .is_some_and(|r| r.fresh(now, max).is_none())
            {
                self.state.clear(q);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::WattHours;

    /// r13: mining energy is booked per source by the tiers in force over the interval
    /// (not the ones found at its end), as grid while the policy was blind, and never
    /// backwards when the clock steps back.
    #[test]
    fn r13_mining_energy_books_each_interval_by_the_tiers_in_force() {
        let tiers = Tiers {
            free: Watts(500.0),
            export: Watts(1000.0),
            ..Tiers::default()
        };
        let h = 3_600_000;
        let mut e = MiningEnergy::default();
        let mut mark = EnergyMark::default();
        mark.book(&mut e, Timestamp(0), Watts(0.0), Some(tiers), None);
        // One hour at 1700 W: 500 W curtailed surplus, 1000 W own generation, 200 W grid.
        mark.book(&mut e, Timestamp(h), Watts(1700.0), None, None);
        assert_eq!(
            (e.curtailed, e.own_generation, e.grid),
            (WattHours(500.0), WattHours(1000.0), WattHours(200.0))
        );
        // The hour after was blind: all of it grid.
        mark.book(
            &mut e,
            Timestamp(2 * h),
            Watts(300.0),
            Some(Tiers::default()),
            None,
        );
        assert_eq!(e.grid, WattHours(500.0));
        // A clock stepping back books nothing; counting resumes from there.
        mark.book(&mut e, Timestamp(h), Watts(300.0), Some(tiers), None);
        assert_eq!(e.total(), WattHours(2000.0));
        mark.book(&mut e, Timestamp(h + h / 2), Watts(400.0), None, None);
        assert_eq!(e.curtailed, WattHours(700.0));
        assert_eq!(e.since, Some(Timestamp(0)));
    }

    /// r15: the accounts the ledger certifies: own generation mined at the export value
    /// it forwent, grid energy at the import price and at the carbon intensity in force
    /// over the interval (not the one found at its end); unrated grid energy kept apart.
    #[test]
    fn r15_mining_energy_books_money_and_grid_carbon_by_the_interval_in_force() {
        let tiers = Tiers {
            free: Watts(500.0),
            export: Watts(1000.0),
            export_cost: crate::units::PricePerMwh(50.0),
            import: Watts(5000.0),
            import_cost: crate::units::PricePerMwh(100.0),
        };
        let h = 3_600_000;
        let (mut e, mut mark) = (MiningEnergy::default(), EnergyMark::default());
        mark.book(
            &mut e,
            Timestamp(0),
            Watts(0.0),
            Some(tiers),
            Some(CarbonIntensity(400.0)),
        );
        // One hour at 3500 W: 500 curtailed, 1000 own generation, 2000 grid at 400 g/kWh.
        mark.book(&mut e, Timestamp(h), Watts(3500.0), Some(tiers), None);
        assert_eq!(e.grid, WattHours(2000.0));
        assert!((e.own_generation_eur.0 - 0.05).abs() < 1e-12);
        assert!((e.grid_eur.0 - 0.2).abs() < 1e-12);
        assert!((e.grid_co2eq_g - 800.0).abs() < 1e-9);
        // The next hour had no intensity in force: its grid energy is unrated.
        mark.book(&mut e, Timestamp(2 * h), Watts(3500.0), None, None);
        assert_eq!(e.grid_unrated, WattHours(2000.0));
        assert!((e.grid_co2eq_g - 800.0).abs() < 1e-9);
    }

    #[test]
    fn of_two_maximum_ages_the_tighter_holds() {
        let mut m = MaxAges::default();
        m.limit(Quantity::PvPower, Duration::from_secs(60));
        m.limit(Quantity::PvPower, Duration::from_secs(30));
        m.limit(Quantity::PvPower, Duration::from_secs(90));
        assert_eq!(m.get(Quantity::PvPower), Some(Duration::from_secs(30)));
        assert_eq!(m.get(Quantity::Price), None);
    }
}
