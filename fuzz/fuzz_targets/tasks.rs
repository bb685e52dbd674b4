//! Fuzz target `tasks`: see `ember_fuzz::tasks`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: ember_fuzz::init("tasks"),
    |data: &[u8]| ember_fuzz::tasks(data)
);
