//! When `EMBER_KERNEL` is set (scripts/memcheck.sh sets it under valgrind), the named kernel must
//! be one this CPU — or valgrind's model of it — can run, and the one in use: a forced kernel
//! that silently fell back to another would make a memcheck pass meaningless.

use ember_kernels::{KERNEL_ENV, KernelId, PackOptions, PackedB};

#[test]
fn a_forced_kernel_is_supported_and_selected() {
    let supported: Vec<&str> = KernelId::supported().iter().map(|k| k.short_name()).collect();
    eprintln!("supported kernels: {supported:?}; {KERNEL_ENV}={:?}", std::env::var(KERNEL_ENV).ok());
    match KernelId::from_env() {
        Ok(Some(k)) => {
            assert_eq!(KernelId::selected(), k);
            let packed = PackedB::pack(&[1, 2, 3, 4], 2, 2, PackOptions::default()).unwrap();
            assert_eq!(packed.kernel(), k);
        }
        Ok(None) => assert_eq!(KernelId::selected(), KernelId::best()),
        Err(e) => panic!("{KERNEL_ENV} names a kernel that cannot run here: {e}"),
    }
}
