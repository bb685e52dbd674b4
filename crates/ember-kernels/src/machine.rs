//! What the machine can do, for benchmark output: kernels are judged by their fraction of the
//! register-only peak of the CPU they ran on (machines differ: AMX, AVX-512 VNNI without AMX,
//! AVX2 only), so every Ember benchmark prints [`cpu_model`] and these peaks beside its numbers.
//!
//! A peak is measured, not looked up: 12 independent chains of the instruction on registers
//! only (no memory operands), one thread, the best of 3 runs of about 0.1-0.3 s. It includes
//! the clock the CPU sustains under that load.
//!
//! ```no_run
//! println!("{} · VNNI {:?} GOP/s · f32 FMA {:?} GFLOP/s", ember_kernels::machine::cpu_model(),
//!     ember_kernels::machine::vnni_peak_gops(), ember_kernels::machine::f32_fma_peak_gflops());
//! ```

use std::hint::black_box;
use std::time::Instant;

/// The CPU's model name as the operating system reports it (`/proc/cpuinfo` on Linux). Falls
/// back to the architecture name (`x86_64`, `aarch64`) where the model is not available.
///
/// ```
/// assert!(!ember_kernels::machine::cpu_model().is_empty());
/// ```
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Best of 3 timings of `run(iters)`, as `ops_per_iter · iters` per second, in G/s. The count
/// goes through `black_box` after the clock starts, so the loop cannot move out of the timed
/// region.
fn rate(ops_per_iter: usize, run: &dyn Fn(usize) -> f32) -> f64 {
    let iters = 10_000_000usize;
    (0..3)
        .map(|_| {
            let t = Instant::now();
            black_box(run(black_box(iters)));
            (iters * ops_per_iter) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0f64, f64::max)
}

/// Register-only AVX-512 VNNI peak of one thread in GOP/s (`vpdpbusd` on 512-bit registers: 64
/// multiply-adds, 128 operations, per instruction); `None` without AVX-512 VNNI.
pub fn vnni_peak_gops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        #[target_feature(enable = "avx512f,avx512vnni")]
        fn chains(iters: usize) -> f32 {
            let mut acc = [_mm512_setzero_si512(); 12];
            let (a, b) = (_mm512_set1_epi8(3), _mm512_set1_epi8(5));
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = _mm512_dpbusd_epi32(*x, a, b);
                }
            }
            acc.iter().map(|&x| _mm512_reduce_add_epi32(x)).fold(0i32, i32::wrapping_add) as f32
        }
        if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")) {
            return None;
        }
        // SAFETY: the CPU has the function's features (checked above).
        Some(rate(12 * 64 * 2, &|n| unsafe { chains(n) }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Register-only f32 FMA peak of one thread in GFLOP/s on the widest vectors the CPU has
/// (AVX-512: 16 lanes, AVX2 + FMA: 8; one fused multiply-add = 2 operations); `None` without
/// FMA.
pub fn f32_fma_peak_gflops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        #[target_feature(enable = "avx512f")]
        fn avx512(iters: usize) -> f32 {
            let mut acc = [_mm512_set1_ps(0.0); 12];
            let (x, y) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(0.999_999_9));
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = _mm512_fmadd_ps(*a, x, y);
                }
            }
            acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(iters: usize) -> f32 {
            let mut acc = [_mm256_set1_ps(0.0); 12];
            let (x, y) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(0.999_999_9));
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = _mm256_fmadd_ps(*a, x, y);
                }
            }
            let s = acc.iter().fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
            let mut out = [0f32; 8];
            // SAFETY: `out` holds 8 floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
            out.iter().sum()
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 F (checked above).
            Some(rate(12 * 16 * 2, &|n| unsafe { avx512(n) }))
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            Some(rate(12 * 8 * 2, &|n| unsafe { avx2(n) }))
        } else {
            None
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}
