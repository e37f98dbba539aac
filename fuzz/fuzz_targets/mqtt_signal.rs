#![no_main]
//! cargo-fuzz target `mqtt_signal`: see `gridminer_fuzz::mqtt_signal` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gridminer_fuzz::run(gridminer_fuzz::mqtt_signal, data);
});
