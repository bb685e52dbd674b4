//! AVX2 kernel, exact in both of its forms.
//!
//! `vpmaddubsw` (u8·i8 → i16 pair sums) saturates for ordinary inputs (255·127·2 > 32 767), so:
//! - with weights beyond ±64, A arrives widened to i16 (row stride `lda` elements), B is packed
//!   as i16 pairs (per K pair, 16 columns × 2 i16 = two ymm of 8 columns), and `vpmaddwd`
//!   multiplies exactly;
//! - with weights within ±64 (7-bit, "reduce_range" quantization), every pair sum is at most
//!   2·255·64 = 32 640, so `vpmaddubsw` is exact: B stays in i8 quads (as for AVX-VNNI), A stays
//!   u8, and `vpmaddubsw` + `vpmaddwd(·, 1)` + `vpaddd` stand in for `vpdpbusd`.
//!
//! `PackedB::pack` picks the form from the weights. Register tile: 6 rows × 16 columns = 12 ymm
//! accumulators.

use crate::microkernel::{Job, Tile};
use std::arch::x86_64::*;

const NR: usize = 16;

/// # Safety
/// See [`crate::microkernel::run`]; the CPU must support AVX2.
pub(crate) unsafe fn run(job: &Job<'_>, sink: &mut dyn FnMut(&Tile)) {
    // SAFETY: forwarded contract; the packed layout tells which form the weights allow.
    unsafe {
        if job.b.spec().widen {
            super::drive_rows(job, sink, NR, 2, |p| job.b.panel_i16(p), rows)
        } else {
            super::drive_rows(job, sink, NR, 1, |p| job.b.panel_i8(p), rows_maddubs)
        }
    }
}

/// # Safety
/// See [`super::TileFn`]; weights within ±64.
unsafe fn rows_maddubs(rows: usize, a: *const u8, lda: usize, panel: *const i8, k0: usize, k1: usize, out: *mut i32) {
    // SAFETY: forwarded.
    unsafe { super::dispatch_rows!(rows, tile_maddubs(a, lda, panel, k0, k1, out)) }
}

#[target_feature(enable = "avx2")]
unsafe fn tile_maddubs<const R: usize>(
    a: *const u8,
    lda: usize,
    panel: *const i8,
    k0: usize,
    k1: usize,
    out: *mut i32,
) {
    // SAFETY: pointers stay within A rows (k1 ≤ lda) and the panel (k1 ≤ packed K).
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        let mut k = k0;
        while k < k1 {
            let bp = panel.add(k * NR);
            let b0 = _mm256_load_si256(bp as *const __m256i);
            let b1 = _mm256_load_si256(bp.add(32) as *const __m256i);
            for (i, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32((a.add(i * lda + k) as *const i32).read_unaligned());
                // Exact: |pair sum| ≤ 2·255·64 < 2¹⁵ for weights within ±64.
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones);
                acc[0] = _mm256_add_epi32(acc[0], p0);
                acc[1] = _mm256_add_epi32(acc[1], p1);
            }
            k += 4;
        }
        for (i, acc) in acc.iter().enumerate() {
            _mm256_store_si256(out.add(i * NR) as *mut __m256i, acc[0]);
            _mm256_store_si256(out.add(i * NR + 8) as *mut __m256i, acc[1]);
        }
    }
}

/// # Safety
/// See [`super::TileFn`].
unsafe fn rows(rows: usize, a: *const u8, lda: usize, panel: *const i16, k0: usize, k1: usize, out: *mut i32) {
    // SAFETY: forwarded.
    unsafe { super::dispatch_rows!(rows, tile(a, lda, panel, k0, k1, out)) }
}

#[target_feature(enable = "avx2")]
unsafe fn tile<const R: usize>(a: *const u8, lda: usize, panel: *const i16, k0: usize, k1: usize, out: *mut i32) {
    // SAFETY: pointers stay within A rows (k1 ≤ lda) and the panel (k1 ≤ packed K).
    unsafe {
        let a16 = a as *const i16;
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        let mut k = k0;
        while k < k1 {
            let bp = panel.add(k * NR);
            let b0 = _mm256_load_si256(bp as *const __m256i);
            let b1 = _mm256_load_si256(bp.add(16) as *const __m256i);
            for (i, acc) in acc.iter_mut().enumerate() {
                // A is widened to i16: one 4-byte load broadcasts the K pair (a_k, a_k+1).
                let av = _mm256_set1_epi32((a16.add(i * lda + k) as *const i32).read_unaligned());
                acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(av, b0));
                acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(av, b1));
            }
            k += 2;
        }
        for (i, acc) in acc.iter().enumerate() {
            _mm256_store_si256(out.add(i * NR) as *mut __m256i, acc[0]);
            _mm256_store_si256(out.add(i * NR + 8) as *mut __m256i, acc[1]);
        }
    }
}
