//! AVX-512 VNNI kernel: 512-bit `vpdpbusd` (wrapping, exact modulo 2³²).
//!
//! Layout: 64-column panels, K in quads; one quad of 16 columns is one 64-byte zmm. The tile
//! routine is generic over the number of 16-column sub-tiles per panel (`NT`) and over how many
//! quads form a contiguous block per sub-tile (`QB`), so the same code also reads the AMX layout
//! (`NT = 2`, `QB = 16`) for the rows the AMX kernel leaves to it.
//! Register tile: 6 rows × 64 columns = 24 zmm accumulators, 4 for B, 1 broadcast.

use crate::microkernel::{Job, Tile};
use std::arch::x86_64::*;

const NT: usize = 4;
const NR: usize = 16 * NT;

/// # Safety
/// See [`crate::microkernel::run`]; the CPU must support AVX-512 F/BW/VL/VNNI.
pub(crate) unsafe fn run(job: &Job<'_>, sink: &mut dyn FnMut(&Tile)) {
    // SAFETY: forwarded contract.
    unsafe { super::drive_rows(job, sink, NR, 1, |p| job.b.panel_i8(p), rows) }
}

/// # Safety
/// See [`super::TileFn`].
unsafe fn rows(rows: usize, a: *const u8, lda: usize, panel: *const i8, k0: usize, k1: usize, out: *mut i32) {
    // SAFETY: forwarded.
    unsafe { rows_tile::<NT, 1, 1>(rows, a, lda, [panel], k0, k1, out, NR) }
}

/// Dispatches a run of `rows ≤ 6` rows to the const-generic tile, over `P` panels side by side
/// (output columns `0..P·16·T`).
///
/// # Safety
/// `a` has `rows` rows of stride `lda` covering `k0..k1`; each panel is in the (`T`, `Q`)
/// layout covering `k0..k1` (multiples of `4·Q`); `out` has room for `rows × ldo` i32 with
/// `ldo ≥ P·16·T`.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn rows_tile<const T: usize, const Q: usize, const P: usize>(
    rows: usize,
    a: *const u8,
    lda: usize,
    panel: [*const i8; P],
    k0: usize,
    k1: usize,
    out: *mut i32,
    ldo: usize,
) {
    // SAFETY: forwarded.
    unsafe { super::dispatch_rows!(rows, tile::<T, Q, P>(a, lda, panel, k0, k1, out, ldo)) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const R: usize, const T: usize, const Q: usize, const P: usize>(
    a: *const u8,
    lda: usize,
    panels: [*const i8; P],
    k0: usize,
    k1: usize,
    out: *mut i32,
    ldo: usize,
) {
    // SAFETY: all offsets stay inside the ranges the caller vouched for.
    unsafe {
        let mut acc = [[[_mm512_setzero_si512(); T]; P]; R];
        let mut q = k0 / 4;
        let q1 = k1 / 4;
        while q < q1 {
            // Block of Q quads: sub-tile t of the block starts at t·Q·64.
            let bases = panels.map(|p| p.add((q / Q) * T * Q * 64));
            for j in 0..Q {
                let mut b = [[_mm512_setzero_si512(); T]; P];
                for (bp, base) in b.iter_mut().zip(bases) {
                    for (t, bt) in bp.iter_mut().enumerate() {
                        *bt = _mm512_load_si512(base.add(t * Q * 64 + j * 64) as *const __m512i);
                    }
                }
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_epi32((a.add(i * lda + (q + j) * 4) as *const i32).read_unaligned());
                    for (accp, bp) in acc.iter_mut().zip(&b) {
                        for t in 0..T {
                            accp[t] = _mm512_dpbusd_epi32(accp[t], av, bp[t]);
                        }
                    }
                }
            }
            q += Q;
        }
        for (i, acc) in acc.iter().enumerate() {
            for (pi, accp) in acc.iter().enumerate() {
                for (t, v) in accp.iter().enumerate() {
                    _mm512_storeu_si512(out.add(i * ldo + (pi * T + t) * 16) as *mut __m512i, *v);
                }
            }
        }
    }
}
