//! The controller step: observations -> state -> policy -> decision booked in the state.
//!
//! `Controller::step` is the one function both the live loop and the simulator call, so
//! a policy tuned on history behaves the same at the site. It does no I/O: sources feed
//! it through `observe`, and the caller hands each `Decision` to the actuators.

use crate::clock::Timestamp;
use crate::decision::Decision;
use crate::policy::{Memo, Policy};
use crate::signal::Observation;
use crate::state::SiteState;

#[derive(Debug, Clone)]
pub struct Controller {
    pub policy: Policy,
    pub state: SiteState,
    /// The policy's cache between steps of this state.
    memo: Memo,
}

impl Controller {
    pub fn new(policy: Policy) -> Self {
        let state = SiteState::new(&policy.loads);
        Controller {
            policy,
            state,
            memo: Memo::default(),
        }
    }

    #[inline]
    pub fn observe(&mut self, obs: Observation) {
        self.state.observe(obs);
    }

    /// Decides for `now` and books the decision (unit switches, policy memory).
    pub fn step(&mut self, now: Timestamp) -> Decision {
        let decision = self.policy.decide_with(&self.state, now, &mut self.memo);
        self.state.record(&decision, &self.policy.wear);
        decision
    }
}
