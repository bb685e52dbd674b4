//! Fuzz target `gemm`: see `ember_fuzz::gemm`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: ember_fuzz::init("gemm"),
    |data: &[u8]| ember_fuzz::gemm(data)
);
