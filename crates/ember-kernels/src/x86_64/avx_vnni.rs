//! AVX-VNNI kernel: VEX-encoded 256-bit `vpdpbusd` (Alder Lake and later client CPUs, also
//! present on Sapphire Rapids). Layout: 16-column panels, K in quads (64 bytes per quad: two ymm
//! of 8 columns × 4 bytes). Register tile: 6 rows × 16 columns = 12 ymm accumulators.
//! `vpdpbusd` wraps (the `vpdpbusds` variant would saturate), so sums are exact modulo 2³².

use crate::microkernel::{Job, Tile};
use std::arch::x86_64::*;

const NR: usize = 16;

/// # Safety
/// See [`crate::microkernel::run`]; the CPU must support AVX-VNNI.
pub(crate) unsafe fn run(job: &Job<'_>, sink: &mut dyn FnMut(&Tile)) {
    // SAFETY: forwarded contract.
    unsafe { super::drive_rows(job, sink, NR, 1, |p| job.b.panel_i8(p), rows) }
}

/// # Safety
/// See [`super::TileFn`].
unsafe fn rows(rows: usize, a: *const u8, lda: usize, panel: *const i8, k0: usize, k1: usize, out: *mut i32) {
    // SAFETY: forwarded.
    unsafe { super::dispatch_rows!(rows, tile(a, lda, panel, k0, k1, out)) }
}

#[target_feature(enable = "avx2,avxvnni")]
unsafe fn tile<const R: usize>(a: *const u8, lda: usize, panel: *const i8, k0: usize, k1: usize, out: *mut i32) {
    // SAFETY: pointers stay within A rows (k1 ≤ lda) and the panel (k1 ≤ packed K).
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        let mut k = k0;
        while k < k1 {
            let bp = panel.add(k * NR);
            let b0 = _mm256_load_si256(bp as *const __m256i);
            let b1 = _mm256_load_si256(bp.add(32) as *const __m256i);
            for (i, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32((a.add(i * lda + k) as *const i32).read_unaligned());
                acc[0] = _mm256_dpbusd_avx_epi32(acc[0], av, b0);
                acc[1] = _mm256_dpbusd_avx_epi32(acc[1], av, b1);
            }
            k += 4;
        }
        for (i, acc) in acc.iter().enumerate() {
            _mm256_store_si256(out.add(i * NR) as *mut __m256i, acc[0]);
            _mm256_store_si256(out.add(i * NR + 8) as *mut __m256i, acc[1]);
        }
    }
}
