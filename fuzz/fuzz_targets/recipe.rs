//! Fuzz target `recipe`: see `ember_fuzz::recipe`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: ember_fuzz::init("recipe"),
    |data: &[u8]| ember_fuzz::recipe(data)
);
