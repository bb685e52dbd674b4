//! Fuzz target `checkpoint`: see `ember_fuzz::checkpoint`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: ember_fuzz::init("checkpoint"),
    |data: &[u8]| ember_fuzz::checkpoint(data)
);
