//! f32 GEMM for the small row counts of inference: `C = A·B (+ bias)` with `B` a weight matrix
//! `[K, N]` in Burn's row-major layout, read sequentially (blocks of whole rows are copied
//! into register-panel order, so the weights stream from memory at full bandwidth and each
//! panel is then reused from cache by every row tile). Register tiles of 6 rows × 64 columns
//! (AVX-512, 24 accumulators) or 6 × 16 (AVX2 + FMA), fused multiply-adds.
//!
//! It is what float `Linear`s run on CPU devices for inputs of at most
//! [`SMALL_M`] rows (a batch of a few short sentences): there the time is the stream of f32
//! weights from memory, which Burn's GEMM reads panel by panel with strides of a whole weight
//! row. Larger inputs are compute-bound and stay on Burn's GEMM.
//!
//! ```
//! use ember_kernels::fused::RowOptions;
//! use ember_kernels::sgemm::sgemm;
//!
//! let a = [1.0f32, 2.0, 3.0, 4.0]; // 2 × 2
//! let b = [1.0f32, 0.0, 1.0, 0.0, 1.0, 1.0]; // 2 × 3
//! let mut c = [0f32; 6];
//! sgemm(&a, &b, Some(&[0.5, 0.5, 0.5]), 2, 2, 3, &mut c, &RowOptions::default()).unwrap();
//! assert_eq!(c, [1.5, 2.5, 3.5, 3.5, 4.5, 7.5]);
//! ```

use crate::error::{KernelError, Result};
use crate::fused::{RowKernel, RowOptions};
use crate::pool;

/// Rows of a register tile.
const MR: usize = 6;
/// Most weight rows per packed block.
const KC: usize = 256;
/// Floats of packed weights per block (512 KB: half of a typical L2).
const BLOCK_FLOATS: usize = 128 * 1024;
/// The row count up to which float layers use this GEMM (see the module docs).
pub const SMALL_M: usize = 48;

/// `acc[r][..] = Σ_{kk < kc} a[r·lda + kk] · panel[kk·NR ..][..NR]` in registers.
#[inline(always)]
fn tile<const NR: usize, const FMA: bool>(a: &[f32], lda: usize, kc: usize, panel: &[f32]) -> [[f32; NR]; MR] {
    let mut acc = [[0f32; NR]; MR];
    for kk in 0..kc {
        let brow = &panel[kk * NR..(kk + 1) * NR];
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = a[r * lda + kk];
            for (c, &bv) in acc_r.iter_mut().zip(brow) {
                *c = if FMA { av.mul_add(bv, *c) } else { av * bv + *c };
            }
        }
    }
    acc
}

/// All `m` rows of `C` for the columns `cols`, accumulated over blocks of at most `KC` weight
/// rows.
/// `c` points at `C[0, 0]` (row stride `n`); this call writes only its columns.
#[inline(always)]
fn band<const NR: usize, const FMA: bool>(job: &Job<'_>, cols: std::ops::Range<usize>, c: *mut f32) {
    let Job { a, b, bias, m, k, n } = *job;
    let width = cols.end - cols.start;
    let panels = width.div_ceil(NR);
    for i in 0..m {
        // SAFETY: row i < m, columns within `cols`, which belong to this call only.
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * n + cols.start), width) };
        match bias {
            Some(bv) => row.copy_from_slice(&bv[cols.clone()]),
            None => row.fill(0.0),
        }
    }
    // Rows per block: as many as keep the packed block in half of L2, 16 to KC.
    let kcb = (BLOCK_FLOATS / (panels * NR)).clamp(16, KC);
    let mut packed = vec![0f32; panels * kcb * NR];
    let mut apad = vec![0f32; MR * kcb];
    let mut k0 = 0;
    while k0 < k {
        let kc = kcb.min(k - k0);
        // Weight rows k0..k0 + kc, this band's columns, read in order and laid out panel by
        // panel (kc × NR each, zero past the last column).
        for kk in 0..kc {
            let src = &b[(k0 + kk) * n + cols.start..(k0 + kk) * n + cols.end];
            for p in 0..panels {
                let w = NR.min(width - p * NR);
                let dst = &mut packed[p * kcb * NR + kk * NR..p * kcb * NR + (kk + 1) * NR];
                if w == NR {
                    // A copy of constant size compiles to vector moves (no `memcpy` call per
                    // 256 bytes).
                    let d: &mut [f32; NR] = dst.try_into().expect("NR values");
                    let s: &[f32; NR] = src[p * NR..p * NR + NR].try_into().expect("NR values");
                    *d = *s;
                } else {
                    dst[..w].copy_from_slice(&src[p * NR..p * NR + w]);
                    dst[w..].fill(0.0);
                }
            }
        }
        let mut i = 0;
        while i < m {
            let mr = MR.min(m - i);
            // A full tile reads A in place (row stride k); a partial one a zero-padded copy.
            let (at, lda): (&[f32], usize) = if mr == MR {
                (&a[i * k + k0..], k)
            } else {
                apad.fill(0.0);
                for r in 0..mr {
                    apad[r * kcb..r * kcb + kc].copy_from_slice(&a[(i + r) * k + k0..(i + r) * k + k0 + kc]);
                }
                (&apad, kcb)
            };
            for p in 0..panels {
                let acc = tile::<NR, FMA>(at, lda, kc, &packed[p * kcb * NR..(p + 1) * kcb * NR]);
                let (j, w) = (cols.start + p * NR, NR.min(width - p * NR));
                for (r, acc_r) in acc.iter().enumerate().take(mr) {
                    // SAFETY: row i + r < m, columns j..j + w within `cols` (this call's only).
                    let out = unsafe { std::slice::from_raw_parts_mut(c.add((i + r) * n + j), w) };
                    for (y, &x) in out.iter_mut().zip(acc_r) {
                        *y += x;
                    }
                }
            }
            i += mr;
        }
        k0 += kc;
    }
}

#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every part writes a disjoint set of columns of C (see `band`).
unsafe impl Sync for Out {}
// SAFETY: as for `Sync`.
unsafe impl Send for Out {}

impl Out {
    #[inline(always)]
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// The operands of one call.
#[derive(Clone, Copy)]
struct Job<'a> {
    a: &'a [f32],
    b: &'a [f32],
    bias: Option<&'a [f32]>,
    m: usize,
    k: usize,
    n: usize,
}

fn run_band(kernel: RowKernel, job: &Job<'_>, cols: std::ops::Range<usize>, c: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(j: &Job<'_>, cols: std::ops::Range<usize>, c: *mut f32) {
        band::<16, true>(j, cols, c)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn avx512(j: &Job<'_>, cols: std::ops::Range<usize>, c: *mut f32) {
        band::<64, true>(j, cols, c)
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `sgemm` checked that the CPU has the kernel's features.
        RowKernel::Avx2 => unsafe { avx2(job, cols, c) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        RowKernel::Avx512 => unsafe { avx512(job, cols, c) },
        _ => band::<16, false>(job, cols, c),
    }
}

/// `out[m × n] = a[m × k] · b[k × n] (+ bias[n])`, every matrix row-major f32. Any `m` works;
/// it is fastest against Burn's GEMM for `m ≤` [`SMALL_M`].
///
/// Threads ([`RowOptions::threads`]): column bands of whole register panels when the work is
/// worth it (about 20 µs per part), otherwise the calling thread.
///
/// # Errors
/// [`KernelError::Length`] if a buffer does not match its shape; [`KernelError::Shape`] for a
/// size overflow; [`KernelError::KernelUnavailable`] for a kernel this CPU lacks.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    out: &mut [f32],
    opts: &RowOptions,
) -> Result<()> {
    opts.require()?;
    let size = |x: usize, y: usize| x.checked_mul(y).ok_or_else(|| KernelError::Shape(format!("{x}×{y} overflows")));
    let shape = format!("m={m}, k={k}, n={n}");
    for (what, len, want) in [("a", a.len(), size(m, k)?), ("b", b.len(), size(k, n)?), ("out", out.len(), size(m, n)?)]
    {
        if len != want {
            return Err(KernelError::Length { what, expected: want, actual: len, shape: shape.clone() });
        }
    }
    if let Some(bv) = bias
        && bv.len() != n
    {
        return Err(KernelError::Length { what: "bias", expected: n, actual: bv.len(), shape });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let nr = if opts.kernel == RowKernel::Avx512 { 64 } else { 16 };
    let panels = n.div_ceil(nr);
    let threads = if opts.threads == 0 { pool::max_threads() } else { opts.threads.min(pool::max_threads()) };
    // 20 µs is about 40 000 multiply-adds.
    let parts = threads.min(m.saturating_mul(k).saturating_mul(n) / 40_000).min(panels).max(1);
    let per = panels.div_ceil(parts);
    let job = Job { a, b, bias, m, k, n };
    let c = Out(out.as_mut_ptr());
    let kernel = opts.kernel;
    let f = |p: usize| {
        let (c0, c1) = ((p * per * nr).min(n), ((p + 1) * per * nr).min(n));
        if c0 < c1 {
            run_band(kernel, &job, c0..c1, c.get());
        }
    };
    if parts == 1 {
        f(0)
    } else {
        pool::run(parts, &f)
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::gemm_f32_f64;

    #[test]
    fn sgemm_matches_the_f64_reference_on_every_kernel_and_edge() {
        let mut s = 7u64;
        let mut r = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let shapes =
            [(1, 1, 1), (5, 3, 7), (6, 16, 64), (7, 17, 65), (13, 384, 384), (12, 600, 130), (64, 40, 130), (3, 0, 5)];
        for &(m, k, n) in &shapes {
            let a: Vec<f32> = (0..m * k).map(|_| r()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| r()).collect();
            let bias: Vec<f32> = (0..n).map(|_| r()).collect();
            let want = gemm_f32_f64(&a, &b, m, k, n);
            for kernel in RowKernel::supported() {
                for threads in [1, 2] {
                    for with_bias in [false, true] {
                        let mut c = vec![f32::NAN; m * n];
                        let o = RowOptions { kernel, threads };
                        sgemm(&a, &b, with_bias.then_some(&bias[..]), m, k, n, &mut c, &o).unwrap();
                        for (idx, (&got, &w)) in c.iter().zip(&want).enumerate() {
                            let w = w + if with_bias { f64::from(bias[idx % n]) } else { 0.0 };
                            let tol = 1e-5 * (1.0 + k as f64).sqrt() * (1.0 + w.abs());
                            assert!((f64::from(got) - w).abs() <= tol, "{kernel} {m}×{k}×{n} [{idx}] {got} vs {w}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sgemm_rejects_bad_shapes() {
        let o = RowOptions::default();
        let mut c = [0f32; 4];
        assert!(sgemm(&[0.0; 3], &[0.0; 4], None, 2, 2, 2, &mut c, &o).is_err());
        assert!(sgemm(&[0.0; 4], &[0.0; 4], Some(&[0.0; 3]), 2, 2, 2, &mut c, &o).is_err());
        assert!(sgemm(&[0.0; 4], &[0.0; 4], None, 2, 2, 2, &mut c[..3], &o).is_err());
        assert!(sgemm(&[], &[], None, usize::MAX, 2, 2, &mut c, &o).is_err());
        let nan = [f32::NAN, 1.0, 1.0, 1.0];
        sgemm(&nan, &[1.0; 4], None, 2, 2, 2, &mut c, &o).unwrap();
        assert!(c[0].is_nan() && c[1].is_nan() && c[2] == 2.0, "NaN propagates to its row only: {c:?}");
    }
}
