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

/// `erf(x)` in f64 for testing the f32 kernels: the Maclaurin series for `|x| ≤ 3` and the
/// asymptotic expansion of `erfc` beyond (absolute error below 1e-8 everywhere).
pub fn erf_f64(x: f64) -> f64 {
    let a = x.abs();
    let y = if a <= 3.0 {
        // 2/√π · Σ (−1)ⁿ x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum, mut n) = (a, a, 0f64);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) && n < 200.0 {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let z = 1.0 / (2.0 * a * a);
        let series = 1.0 - z + 3.0 * z * z - 15.0 * z.powi(3) + 105.0 * z.powi(4) - 945.0 * z.powi(5);
        1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series
    };
    y.copysign(x)
}

/// Exact GELU `0.5·x·(1 + erf(x/√2))` in f64.
pub fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + erf_f64(x / std::f64::consts::SQRT_2))
}

/// GELU's tanh form in f64.
pub fn gelu_tanh_f64(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

/// `LayerNorm(x + residual)·γ + β` over rows of `gamma.len()`, in f64 (biased variance).
///
/// # Panics
/// If the lengths disagree (test helper).
pub fn layer_norm_f64(x: &[f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
    let w = gamma.len();
    assert!(w > 0 && x.len().is_multiple_of(w) && beta.len() == w);
    let mut out = Vec::with_capacity(x.len());
    for (r, row) in x.chunks(w).enumerate() {
        let v: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(j, &a)| f64::from(a) + residual.map_or(0.0, |s| f64::from(s[r * w + j])))
            .collect();
        let mean = v.iter().sum::<f64>() / w as f64;
        let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / w as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        out.extend(v.iter().enumerate().map(|(j, a)| (a - mean) * rstd * f64::from(gamma[j]) + f64::from(beta[j])));
    }
    out
}

/// Softmax over rows of `width`, in f64.
///
/// # Panics
/// If `x` is not whole rows (test helper).
pub fn softmax_f64(x: &[f32], width: usize) -> Vec<f64> {
    assert!(width > 0 && x.len().is_multiple_of(width));
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(width) {
        let m = row.iter().map(|&a| f64::from(a)).fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|&a| (f64::from(a) - m).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|a| a / s));
    }
    out
}

/// Multi-head attention in f64, materializing every score: `q`, `k`, `v` are
/// `[b, t, h·dh]` (heads concatenated); hidden keys (padding `[b, t]`, `true` = hidden, and the
/// future when `causal`) score −10⁴ before the softmax. Returns `[b, t, h·dh]`.
///
/// # Panics
/// If the lengths disagree (test helper).
#[allow(clippy::too_many_arguments)]
pub fn attention_f64(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    b: usize,
    t: usize,
    h: usize,
    dh: usize,
    pad: Option<&[bool]>,
    causal: bool,
    scale: f32,
) -> Vec<f64> {
    let w = h * dh;
    assert!(q.len() == b * t * w && k.len() == q.len() && v.len() == q.len());
    let mut out = vec![0f64; q.len()];
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..t {
                let scores: Vec<f32> = (0..t)
                    .map(|j| {
                        let hidden = pad.is_some_and(|p| p[bi * t + j]) || (causal && j > i);
                        if hidden {
                            -1.0e4
                        } else {
                            let s: f64 = (0..dh)
                                .map(|e| {
                                    f64::from(q[(bi * t + i) * w + hi * dh + e])
                                        * f64::from(scale)
                                        * f64::from(k[(bi * t + j) * w + hi * dh + e])
                                })
                                .sum();
                            s as f32
                        }
                    })
                    .collect();
                let p = softmax_f64(&scores, t);
                for e in 0..dh {
                    out[(bi * t + i) * w + hi * dh + e] =
                        (0..t).map(|j| p[j] * f64::from(v[(bi * t + j) * w + hi * dh + e])).sum();
                }
            }
        }
    }
    out
}
