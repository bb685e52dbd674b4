//! f32 GEMM for the small row counts of inference: `C = A·B (+ bias)` with `B` a weight matrix
//! `[K, N]` in Burn's row-major layout, read in place (no packing). The weights are taken in
//! blocks of whole rows (256 KB, in memory order); while one block is multiplied, its tiles
//! prefetch the next block into L2, so the stream of weights from memory overlaps the
//! arithmetic. Within a block, register tiles of up to 14 rows × 32 columns (AVX-512, 28
//! accumulators) or 6 × 16 (AVX2 + FMA) load each weight vector once for all their rows; row
//! counts above a tile's run as equal passes (19 rows: 10 + 9) that find the block in L2.
//!
//! It is what float `Linear`s run on CPU devices for inputs of at most [`SMALL_M`] rows (a
//! batch of a few short sentences): there the time is the stream of f32 weights from memory,
//! which Burn's GEMM reads panel by panel with strides of a whole weight row. Larger inputs are
//! compute-bound and stay on Burn's GEMM. `cargo run --release -p ember-kernels --example
//! sgemm_table` measures it against the machine's FMA peak and memory bandwidth.
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
use crate::fused::{RowKernel, RowOptions, SharedMut};
use crate::pool;
use crate::simd::{Lanes, Scalar8};

/// Bytes of weights per block of rows: the block being multiplied and the next one, fetched
/// while it is, share L2 with room to spare.
const BLOCK_BYTES: usize = 256 * 1024;
/// The row count up to which float layers use this GEMM (see the module docs).
pub const SMALL_M: usize = 48;

/// A slice of the next weight block that one tile call asks the memory system for while it
/// computes: at its `kk`-th step, `lines` cache lines from `base + kk·stride` (for
/// `kk < rows`), so the block after this one arrives in L2 while this one is multiplied.
#[derive(Clone, Copy)]
struct Ahead {
    base: *const f32,
    stride: usize,
    rows: usize,
    lines: usize,
}

impl Ahead {
    const NONE: Ahead = Ahead { base: std::ptr::null(), stride: 0, rows: 0, lines: 0 };

    #[inline(always)]
    fn fetch(&self, kk: usize) {
        if kk < self.rows {
            let row = self.base.wrapping_add(kk * self.stride);
            for l in 0..self.lines {
                // A hint only: it never faults, and the addresses stay within `b` (the last
                // line of a slice may reach into the next row's first line).
                #[cfg(target_arch = "x86_64")]
                // SAFETY: prefetching reads no memory the program can observe.
                unsafe {
                    use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
                    _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(l * 16).cast::<i8>());
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (row, l);
            }
        }
    }
}

/// The widest panel, in floats (2 AVX-512 vectors).
const MAX_NR: usize = 32;

/// The operands of one register tile: `rows` rows of `A` from `a` (row stride `lda`), `kc`
/// weight rows from `b` (row stride `ldb`, `NV·N` columns each), the prefetch streams, and the
/// `w ≤ NV·N` columns of `C` at `c` (row stride `ldc`).
#[derive(Clone, Copy)]
struct TileArgs<'a> {
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    kc: usize,
    ahead: &'a [Ahead; 2],
    c: *mut f32,
    ldc: usize,
    w: usize,
}

/// One register tile of `MR` rows × `NV` vectors:
/// `C[r, ..w] += Σ_{kk < kc} a[r·lda + kk] · b[kk·ldb ..][..NV·N]`, accumulated in registers
/// and added to `C` once.
///
/// # Safety
/// The CPU has `V`'s features; `a` is valid for reads at `r·lda + kk` (`r < MR`, `kk < kc`),
/// `b` at `kk·ldb + ..NV·N`; `c` is valid for writes of `MR` rows of `w ≤ NV·N` values at
/// stride `ldc`, written by no one else during the call.
#[inline(always)]
unsafe fn tile<V: Lanes, const MR: usize, const NV: usize>(t: TileArgs<'_>) {
    let TileArgs { a, lda, b, ldb, kc, ahead, c, ldc, w } = t;
    // SAFETY: the caller's contract covers every access below.
    unsafe {
        let mut acc = [[V::zero(); NV]; MR];
        for kk in 0..kc {
            ahead[0].fetch(kk);
            ahead[1].fetch(kk);
            let bv: [V; NV] = std::array::from_fn(|v| V::load(b.add(kk * ldb + v * V::N)));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = V::splat(*a.add(r * lda + kk));
                for (x, &y) in acc_r.iter_mut().zip(&bv) {
                    *x = V::fma(av, y, *x);
                }
            }
        }
        let one = V::splat(1.0);
        for (r, acc_r) in acc.iter().enumerate() {
            let out = c.add(r * ldc);
            if w == NV * V::N {
                for (v, &x) in acc_r.iter().enumerate() {
                    let p = out.add(v * V::N);
                    V::fma(one, x, V::load(p)).store(p);
                }
            } else {
                let mut tmp = [0f32; MAX_NR];
                for (v, &x) in acc_r.iter().enumerate() {
                    x.store(tmp.as_mut_ptr().add(v * V::N));
                }
                for (q, &x) in tmp.iter().enumerate().take(w) {
                    *out.add(q) += x;
                }
            }
        }
    }
}

/// [`tile`] for a row count known at run time (`1..=14`).
///
/// # Safety
/// As for [`tile`], with `rows` rows.
#[inline(always)]
unsafe fn tile_rows<V: Lanes, const NV: usize>(rows: usize, t: TileArgs<'_>) {
    macro_rules! rows {
        ($($n:literal)*) => {
            match rows {
                // SAFETY: the caller's contract, with `rows` rows.
                $($n => unsafe { tile::<V, $n, NV>(t) },)*
                // SAFETY: as above (callers pass at most 14 rows).
                _ => unsafe { tile::<V, 14, NV>(t) },
            }
        };
    }
    rows!(1 2 3 4 5 6 7 8 9 10 11 12 13)
}

/// All `m` rows of `C` for the columns `cols`: blocks of whole weight rows (read in place, in
/// memory order, the next block prefetched while this one is multiplied), each multiplied by
/// passes of at most `MAXMR` rows of `A` in `MAXMR × NR` register tiles. Every weight is read
/// from memory once; a pass after the first finds its block in L2.
/// `c` points at `C[0, 0]` (row stride `n`); this call writes only its columns.
#[inline(always)]
/// # Safety
/// The CPU has `V`'s features; `MAXMR ≤ 14` and `NV·N ≤` [`MAX_NR`].
unsafe fn band<V: Lanes, const NV: usize, const MAXMR: usize>(
    job: &Job<'_>,
    cols: std::ops::Range<usize>,
    c: *mut f32,
) {
    let Job { a, b, bias, m, k, n } = *job;
    let nr = NV * V::N;
    let width = cols.end - cols.start;
    let panels = width.div_ceil(nr);
    for i in 0..m {
        // SAFETY: row i < m, columns within `cols`, which belong to this call only.
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * n + cols.start), width) };
        match bias {
            Some(bv) => row.copy_from_slice(&bv[cols.clone()]),
            None => row.fill(0.0),
        }
    }
    if k == 0 {
        return;
    }
    // Passes of equal row counts (no padded rows): 12 rows are one pass of 12, 19 two of 10
    // and 9.
    let passes = m.div_ceil(MAXMR);
    let per_pass = m.div_ceil(passes);
    let kb = (BLOCK_BYTES / 4 / width).max(8).min(k);
    // The last panel when it is narrower than NR: copied, zero-padded, per block.
    let edge_w = width % nr;
    let mut edge = vec![0f32; if edge_w > 0 { kb * nr } else { 0 }];
    let calls = passes * panels;
    let mut k0 = 0;
    while k0 < k {
        let kc = kb.min(k - k0);
        let next_rows = kb.min(k - k0 - kc);
        if edge_w > 0 {
            let j = cols.start + (panels - 1) * nr;
            for kk in 0..kc {
                let src = &b[(k0 + kk) * n + j..(k0 + kk) * n + j + edge_w];
                edge[kk * nr..kk * nr + edge_w].copy_from_slice(src);
            }
        }
        for pass in 0..passes {
            let i0 = pass * per_pass;
            let rows = per_pass.min(m - i0);
            let at = a[i0 * k + k0..].as_ptr();
            for p in 0..panels {
                // This call's share of the next block: a 1/calls slice of each of its rows.
                let t = pass * panels + p;
                let ahead = if next_rows == 0 {
                    Ahead::NONE
                } else {
                    let (f0, f1) = (t * width / calls, (t + 1) * width / calls);
                    Ahead {
                        base: b.as_ptr().wrapping_add((k0 + kc) * n + cols.start + f0),
                        stride: n,
                        rows: next_rows,
                        lines: if f1 > f0 { (f1 - f0).div_ceil(16) + 1 } else { 0 },
                    }
                };
                let j = cols.start + p * nr;
                // The first pass over the first block also fetches the next panel's columns
                // (nothing fetched that block ahead of time).
                let own = if k0 == 0 && pass == 0 && p + 1 < panels {
                    let w_next = nr.min(width - (p + 1) * nr);
                    Ahead { base: b.as_ptr().wrapping_add(j + nr), stride: n, rows: kc, lines: w_next.div_ceil(16) + 1 }
                } else {
                    Ahead::NONE
                };
                let (bt, ldb, w) = if p + 1 == panels && edge_w > 0 {
                    (edge.as_ptr(), nr, edge_w)
                } else {
                    (b[k0 * n + j..].as_ptr(), n, nr)
                };
                // SAFETY: A rows i0..i0 + rows ≤ m, columns k0..k0 + kc ≤ k; weight rows
                // k0..k0 + kc, columns j..j + nr ≤ n for a full panel (the edge copy holds
                // kc × nr); C rows i0..i0 + rows and columns j..j + w within `cols` (this
                // call's only); `run_band` checked the features.
                unsafe {
                    let t = TileArgs {
                        a: at,
                        lda: k,
                        b: bt,
                        ldb,
                        kc,
                        ahead: &[ahead, own],
                        c: c.add(i0 * n + j),
                        ldc: n,
                        w,
                    };
                    tile_rows::<V, NV>(rows, t)
                };
            }
        }
        k0 += kc;
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
        // 6 × 2 vectors: 12 accumulators of the 16 registers.
        // SAFETY: this function's features are the type's.
        unsafe { band::<std::arch::x86_64::__m256, 2, 6>(j, cols, c) }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn avx512(j: &Job<'_>, cols: std::ops::Range<usize>, c: *mut f32) {
        // 14 × 2 vectors: 28 accumulators of the 32 registers.
        // SAFETY: as above.
        unsafe { band::<std::arch::x86_64::__m512, 2, 14>(j, cols, c) }
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `sgemm` checked that the CPU has the kernel's features.
        RowKernel::Avx2 => unsafe { avx2(job, cols, c) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        RowKernel::Avx512 => unsafe { avx512(job, cols, c) },
        // SAFETY: plain Rust needs no features.
        _ => unsafe { band::<Scalar8, 2, 6>(job, cols, c) },
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
    let nr = if opts.kernel == RowKernel::Avx512 { 32 } else { 16 };
    let panels = n.div_ceil(nr);
    let threads = if opts.threads == 0 { pool::max_threads() } else { opts.threads.min(pool::max_threads()) };
    // 20 µs is about 40 000 multiply-adds.
    let parts = threads.min(m.saturating_mul(k).saturating_mul(n) / 40_000).min(panels).max(1);
    let per = panels.div_ceil(parts);
    let job = Job { a, b, bias, m, k, n };
    let c = SharedMut(out.as_mut_ptr());
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
        // Every row count of a pass (1 to 14) and of several passes, ragged panels, several
        // weight blocks (k above 256 KB / 4 / n rows: 2 048 at n = 32), k = 0.
        let mut shapes = vec![
            (1, 1, 1),
            (5, 3, 7),
            (6, 16, 64),
            (7, 17, 65),
            (13, 384, 384),
            (12, 600, 130),
            (64, 40, 130),
            (3, 0, 5),
        ];
        shapes.extend((1..=30).map(|m| (m, 37, 70)));
        shapes.extend([(15, 2100, 33), (29, 700, 100), (48, 64, 1)]);
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
