//! The f32 baseline every int8 benchmark is compared with: the `gemm` crate, configured as
//! Burn's Flex CPU backend uses it (no `x86-v4` feature, so AVX2/FMA kernels).

/// `c[m×n] = a[m×k] · b[k×n]`, all row-major f32, on `threads` threads (rayon's pool when > 1).
pub fn f32_gemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize, threads: usize) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "buffers too small for {m}×{k}×{n}");
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: row-major buffers of at least the stated shapes (checked above).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}
