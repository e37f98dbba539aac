//! Integration tests: one binary, one module per area.

mod hasher;
mod peers;
mod stratum;
