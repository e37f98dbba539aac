//! OUT: loads that take power set-points.
//!
//! Role: drive loads; must not decide set-points (the policy does).

pub mod hasher;
