//! `EMBER_KERNEL` forces the kernel chosen by `KernelId::selected`. This file is its own test
//! binary (its own process), so setting the variable cannot disturb other tests.

use ember_kernels::{KERNEL_ENV, KernelId, PackOptions, PackedB};

#[test]
fn environment_variable_forces_the_kernel() {
    // SAFETY: the only test in this process, run before any other thread reads the environment.
    unsafe { std::env::set_var(KERNEL_ENV, "scalar") };
    assert_eq!(KernelId::from_env().unwrap(), Some(KernelId::Scalar));
    assert_eq!(KernelId::selected(), KernelId::Scalar);
    let packed = PackedB::pack(&[1, 2, 3, 4], 2, 2, PackOptions::default()).unwrap();
    assert_eq!(packed.kernel(), KernelId::Scalar);
    // SAFETY: as above.
    unsafe { std::env::set_var(KERNEL_ENV, "no-such-kernel") };
    assert!(KernelId::from_env().is_err());
    // The choice was made once and stays.
    assert_eq!(KernelId::selected(), KernelId::Scalar);
}
