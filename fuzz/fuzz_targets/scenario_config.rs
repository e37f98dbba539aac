#![no_main]
//! cargo-fuzz target `scenario_config`: see `gridminer_fuzz::scenario_config` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gridminer_fuzz::run(gridminer_fuzz::scenario_config, data);
});
