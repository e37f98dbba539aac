#![no_main]
//! cargo-fuzz target `site_config`: see `gridminer_fuzz::site_config` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gridminer_fuzz::run(gridminer_fuzz::site_config, data);
});
