//! AVX2 kernel, exact: operands widened to i16 and multiplied with `vpmaddwd`. A arrives
//! widened to i16 by the driver (row stride `lda` elements), B is packed as i16 pairs.
//!
//! `vpmaddubsw` (u8·i8 → saturating i16 pair sums) would be twice as fast but saturates for
//! ordinary inputs (255·127·2 > 32 767), so this kernel packs B as i16 pairs instead. Layout:
//! 16-column panels; for each K pair, 16 columns × 2 i16 (two ymm of 8 columns).
//! Register tile: 6 rows × 16 columns = 12 ymm accumulators.

use crate::microkernel::{Job, Tile};
use std::arch::x86_64::*;

const NR: usize = 16;

/// # Safety
/// See [`crate::microkernel::run`]; the CPU must support AVX2.
pub(crate) unsafe fn run(job: &Job<'_>, sink: &mut dyn FnMut(&Tile)) {
    // SAFETY: forwarded contract.
    unsafe { super::drive_rows(job, sink, NR, 2, |p| job.b.panel_i16(p), rows) }
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
