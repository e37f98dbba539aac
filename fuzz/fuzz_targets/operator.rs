#![no_main]
//! cargo-fuzz target `operator`: see `gridminer_fuzz::operator` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gridminer_fuzz::run(gridminer_fuzz::operator, data);
});
