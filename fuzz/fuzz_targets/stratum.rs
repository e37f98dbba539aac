#![no_main]
//! cargo-fuzz target `stratum`: see `gridminer_fuzz::stratum` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gridminer_fuzz::run(gridminer_fuzz::stratum, data);
});
