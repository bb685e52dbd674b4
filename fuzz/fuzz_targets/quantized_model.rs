//! Fuzz target `quantized_model`: see `ember_fuzz::quantized_model`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: ember_fuzz::init("quantized_model"),
    |data: &[u8]| ember_fuzz::quantized_model(data)
);
