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

super::ymm_tile_16!(
    /// Quads of u8 A × quads of i8 B with `vpdpbusd` (wrapping).
    tile,
    "avx2,avxvnni",
    u8,
    i8,
    4,
    |acc, a, b| _mm256_dpbusd_avx_epi32(acc, a, b)
);
