#![no_main]
//! cargo-fuzz target `modbus`: see `gridminer_fuzz::modbus` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gridminer_fuzz::run(gridminer_fuzz::modbus, data);
});
