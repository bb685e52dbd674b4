//! Bad input through the environment: an unknown `EMBER_KERNEL` is a typed error from
//! `KernelId::from_env`. Its own test binary (its own process) with a single test, so setting
//! the variable cannot race with another test reading the environment.

use ember_kernels::{KERNEL_ENV, KernelError, KernelId};

#[test]
fn bad_input_unknown_kernel_in_environment() {
    // SAFETY: the only test in this process; no other thread reads or writes the environment.
    unsafe { std::env::set_var(KERNEL_ENV, "bogus") };
    let e = KernelId::from_env().unwrap_err();
    assert!(matches!(&e, KernelError::KernelUnavailable { name, .. } if name == "bogus"), "{e}");
    assert!(e.to_string().contains("kernel `bogus`") && e.to_string().contains("available: scalar"), "{e}");
    // `selected` reports the bad value once and falls back instead of failing every call.
    assert!(KernelId::selected().is_supported());
}
