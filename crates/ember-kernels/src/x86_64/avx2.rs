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

super::ymm_tile_16!(
    /// Quads of u8 A × quads of i8 B within ±64: `vpmaddubsw` (exact: every pair sum is at most
    /// 2·255·64 < 2¹⁵), `vpmaddwd` with ones to sum pairs into i32, `vpaddd`.
    tile_maddubs,
    "avx2",
    u8,
    i8,
    4,
    |acc, a, b| _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)))
);

/// # Safety
/// See [`super::TileFn`].
unsafe fn rows(rows: usize, a: *const u8, lda: usize, panel: *const i16, k0: usize, k1: usize, out: *mut i32) {
    // SAFETY: forwarded.
    unsafe { super::dispatch_rows!(rows, tile(a, lda, panel, k0, k1, out)) }
}

super::ymm_tile_16!(
    /// Pairs of i16-widened A × pairs of i16 B with `vpmaddwd` (exact), `vpaddd`.
    tile,
    "avx2",
    i16,
    i16,
    2,
    |acc, a, b| _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
);
