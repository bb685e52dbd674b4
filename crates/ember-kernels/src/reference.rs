//! Naive reference implementations (i64 accumulation, no packing, no SIMD) for testing kernels
//! — Ember's own tests and yours. Slow by design: O(M·K·N) scalar loops.

/// `C[m, n] = Σ_k (A[m, k] − z_a[m])·B[k, n]` in i64, with `A` u8 `[M × K]`, `B` i8 `[K × N]`
/// (both row-major) and one zero point per row.
///
/// # Panics
/// If a slice's length does not match its shape (this is a test helper, not a library entry
/// point).
pub fn gemm_u8i8_i64(a: &[u8], zero_points: &[i32], b: &[i8], m: usize, k: usize, n: usize) -> Vec<i64> {
    assert_eq!(a.len(), m * k, "a is M×K");
    assert_eq!(b.len(), k * n, "b is K×N");
    assert_eq!(zero_points.len(), m, "one zero point per row");
    let mut c = vec![0i64; m * n];
    for i in 0..m {
        for kk in 0..k {
            let av = a[i * k + kk] as i64 - zero_points[i] as i64;
            for j in 0..n {
                c[i * n + j] += av * b[kk * n + j] as i64;
            }
        }
    }
    c
}

/// `C[m, n] = Σ_k A[m, k]·B[k, n]` for f32 row-major matrices, accumulated in f64.
///
/// # Panics
/// If a slice's length does not match its shape.
pub fn gemm_f32_f64(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    assert_eq!(a.len(), m * k, "a is M×K");
    assert_eq!(b.len(), k * n, "b is K×N");
    let mut c = vec![0f64; m * n];
    for i in 0..m {
        for kk in 0..k {
            let av = a[i * k + kk] as f64;
            for j in 0..n {
                c[i * n + j] += av * b[kk * n + j] as f64;
            }
        }
    }
    c
}
