//! The embedded pool behind the actuator seam: [`SetPower`] is its power target,
//! [`ReadPower`] the power it draws (its model's, and nothing while it has no job,
//! whatever the target), sampled every `every`.
//!
//! [`SetPower`]: crate::actuator::SetPower
//! [`ReadPower`]: crate::actuator::ReadPower

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::HasherPool;
use crate::actuator::{ActuatorError, Commanded, ReadPower, SetPower};
use crate::clock::Clock;
use crate::decision::LoadTarget;
use crate::state::Reading;
use crate::units::Watts;

/// How often the pool's power is sampled by default: it follows a target within
/// milliseconds and a sample is a few atomic loads, so often enough that what the
/// controller counts is never much older than a step.
pub const READ_EVERY: Duration = Duration::from_millis(100);

/// A handle on the pool as a load; clone one for each task (the pool is shared).
#[derive(Clone)]
pub struct PoolLoad {
    pool: Arc<HasherPool>,
    clock: Arc<dyn Clock>,
    every: Duration,
    /// When the next sample is due; `None`: at once.
    next: Option<Instant>,
}

impl PoolLoad {
    pub fn new(pool: Arc<HasherPool>, clock: Arc<dyn Clock>, every: Duration) -> Self {
        PoolLoad {
            pool,
            clock,
            every,
            next: None,
        }
    }
}

impl SetPower for PoolLoad {
    /// An atomic store the workers read: it cannot fail.
    async fn set(&mut self, target: LoadTarget) -> Result<Commanded, ActuatorError> {
        self.pool.set_power_target(target.power);
        Ok(Commanded {
            target,
            at: self.clock.now(),
        })
    }
}

impl ReadPower for PoolLoad {
    async fn read(&mut self) -> Result<Reading<Watts>, ActuatorError> {
        if let Some(next) = self.next {
            // Cancel-safe: `next` stays, so a dropped wait resumes where it was.
            tokio::time::sleep_until(next).await;
        }
        self.next = Some(Instant::now() + self.every);
        Ok(Reading {
            value: self.pool.power(),
            at: self.clock.now(),
        })
    }
}
