//! Command-line glue: clap definitions and the code that runs them. `anyhow` is allowed
//! here and in `main.rs` only.

pub mod hash;
