//! The power model of the hasher, as pure functions: a power target becomes a number of
//! fully busy threads plus a duty cycle on one more, and that plan becomes an expected
//! power and hashrate.
//!
//! Role: the one place the mapping is defined, so the live pool and the simulator agree.
//! Must not touch threads, clocks or the OS.

use crate::units::{HashRate, Watts};

/// Fraction of wall time a thread hashes, `0.0 ..= 1.0`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize)]
pub struct Duty(f64);

impl Duty {
    pub const IDLE: Duty = Duty(0.0);
    pub const FULL: Duty = Duty(1.0);
    /// Clamped into `0 ..= 1`; NaN reads as idle.
    pub fn new(x: f64) -> Duty {
        if x.is_nan() {
            Duty(0.0)
        } else {
            Duty(x.clamp(0.0, 1.0))
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

/// How many threads hash, and how hard the last one does.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ThrottlePlan {
    /// Threads hashing all the time.
    pub full_threads: usize,
    /// Duty of one more thread (thread index `full_threads`); idle when zero.
    pub partial: Duty,
}

impl ThrottlePlan {
    pub const STOPPED: ThrottlePlan = ThrottlePlan {
        full_threads: 0,
        partial: Duty::IDLE,
    };

    /// Threads that hash at all (the partial one included).
    pub fn active_threads(&self) -> usize {
        self.full_threads + usize::from(self.partial.get() > 0.0)
    }

    /// Core-equivalents of hashing: `full_threads + partial`.
    pub fn cores(&self) -> f64 {
        self.full_threads as f64 + self.partial.get()
    }

    /// The duty a given worker thread should run at under this plan.
    pub fn duty_of(&self, thread: usize) -> Duty {
        match thread.cmp(&self.full_threads) {
            std::cmp::Ordering::Less => Duty::FULL,
            std::cmp::Ordering::Equal => self.partial,
            std::cmp::Ordering::Greater => Duty::IDLE,
        }
    }

    /// Modelled electrical power above idle (positive = consumption).
    pub fn power(&self, watts_per_core: Watts) -> Watts {
        watts_per_core * self.cores()
    }

    /// Expected hashrate given what one fully busy core achieves.
    pub fn hashrate(&self, per_core: HashRate) -> HashRate {
        per_core * self.cores()
    }
}

/// Maps a power target (W above idle, positive = consumption) onto `threads` worker
/// threads that each draw `watts_per_core` when hashing full time. Targets at or below
/// zero, or a non-positive per-core figure, stop hashing; targets above the maximum run
/// every thread.
pub fn plan_for_power(target: Watts, threads: usize, watts_per_core: Watts) -> ThrottlePlan {
    if !(target.0 > 0.0) || !(watts_per_core.0 > 0.0) || threads == 0 {
        return ThrottlePlan::STOPPED;
    }
    let cores = (target / watts_per_core).min(threads as f64);
    let full = cores.floor() as usize;
    let partial = if full >= threads {
        Duty::IDLE
    } else {
        Duty::new(cores - full as f64)
    };
    ThrottlePlan {
        full_threads: full,
        partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_targets_map_to_threads_and_duty() {
        let w = Watts(10.0);
        for (target, full, duty, active) in [
            (0.0, 0, 0.0, 0),
            (-5.0, 0, 0.0, 0),
            (f64::NAN, 0, 0.0, 0),
            (5.0, 0, 0.5, 1),
            (10.0, 1, 0.0, 1),
            (25.0, 2, 0.5, 3),
            (40.0, 4, 0.0, 4),
            (400.0, 4, 0.0, 4),
        ] {
            let p = plan_for_power(Watts(target), 4, w);
            assert_eq!(p.full_threads, full, "{target}");
            assert!((p.partial.get() - duty).abs() < 1e-12, "{target}");
            assert_eq!(p.active_threads(), active, "{target}");
            assert!(p.power(w).0 <= target.max(0.0) + 1e-9 || target.is_nan());
        }
        let p = plan_for_power(Watts(25.0), 4, w);
        assert_eq!(p.power(w), Watts(25.0));
        assert_eq!(p.hashrate(HashRate(1e6)), HashRate(2.5e6));
        assert_eq!(
            [p.duty_of(0), p.duty_of(1), p.duty_of(2), p.duty_of(3)],
            [Duty::FULL, Duty::FULL, Duty::new(0.5), Duty::IDLE]
        );
    }
}
