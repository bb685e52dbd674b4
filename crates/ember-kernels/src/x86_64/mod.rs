//! x86-64 micro-kernels, one file per ISA, and the row/panel driver they share.

pub(crate) mod amx;
pub(crate) mod avx2;
pub(crate) mod avx512_vnni;
pub(crate) mod avx_vnni;

use crate::microkernel::{Job, Tile};

/// Rows in the register tile of the AVX2, AVX-VNNI and AVX-512 VNNI kernels.
pub(crate) const MR: usize = 6;

/// Calls a const-generic tile routine `$tile::<R, ...>` for a run-time row count `1..=6`.
macro_rules! dispatch_rows {
    ($rows:expr, $tile:ident::<$($g:ty),*>($($arg:expr),* $(,)?)) => {
        match $rows {
            6 => $tile::<6, $($g),*>($($arg),*),
            5 => $tile::<5, $($g),*>($($arg),*),
            4 => $tile::<4, $($g),*>($($arg),*),
            3 => $tile::<3, $($g),*>($($arg),*),
            2 => $tile::<2, $($g),*>($($arg),*),
            _ => $tile::<1, $($g),*>($($arg),*),
        }
    };
    ($rows:expr, $tile:ident($($arg:expr),* $(,)?)) => {
        match $rows {
            6 => $tile::<6>($($arg),*),
            5 => $tile::<5>($($arg),*),
            4 => $tile::<4>($($arg),*),
            3 => $tile::<3>($($arg),*),
            2 => $tile::<2>($($arg),*),
            _ => $tile::<1>($($arg),*),
        }
    };
}
pub(crate) use dispatch_rows;

/// Defines `unsafe fn $name<const R: usize>(a, lda, panel, k0, k1, out)`: an `R × 16` tile of
/// ymm i32 accumulators over a 16-column panel, for the 256-bit kernels. Each K step of `$step`
/// elements broadcasts 4 bytes of an A row (A elements of type `$a`, row stride `lda`
/// elements), loads two 32-byte B vectors (columns 0-7 and 8-15; B elements of type `$b`,
/// `16·$step` per step) and folds them in with `$dot(acc, a_broadcast, b) -> acc`.
macro_rules! ymm_tile_16 {
    ($(#[$doc:meta])* $name:ident, $features:literal, $a:ty, $b:ty, $step:expr, $dot:expr) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        unsafe fn $name<const R: usize>(a: *const u8, lda: usize, panel: *const $b, k0: usize, k1: usize, out: *mut i32) {
            // SAFETY: pointers stay within A rows (k1 ≤ lda) and the panel (k1 ≤ packed K);
            // panels are 64-byte aligned and each step is a multiple of 32 bytes.
            unsafe {
                let a = a as *const $a;
                let mut acc = [[_mm256_setzero_si256(); 2]; R];
                let mut k = k0;
                while k < k1 {
                    let bp = panel.add(k * 16) as *const u8;
                    let b0 = _mm256_load_si256(bp as *const __m256i);
                    let b1 = _mm256_load_si256(bp.add(32) as *const __m256i);
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let av = _mm256_set1_epi32((a.add(i * lda + k) as *const i32).read_unaligned());
                        acc[0] = $dot(acc[0], av, b0);
                        acc[1] = $dot(acc[1], av, b1);
                    }
                    k += $step;
                }
                for (i, acc) in acc.iter().enumerate() {
                    _mm256_store_si256(out.add(i * 16) as *mut __m256i, acc[0]);
                    _mm256_store_si256(out.add(i * 16 + 8) as *mut __m256i, acc[1]);
                }
            }
        }
    };
}
pub(crate) use ymm_tile_16;

/// A register-tile routine: `rows ≤ MR` rows of A at `a` (row stride `lda`) times one packed
/// panel over packed K bytes `k0..k1`, written as `rows × nr` i32 at `out` (row stride `nr`).
pub(crate) type TileFn<P> =
    unsafe fn(rows: usize, a: *const u8, lda: usize, panel: P, k0: usize, k1: usize, out: *mut i32);

/// Drives an `MR × nr` register tile over every (panel, row block) of a job, handing each
/// finished tile to the sink. Panels outer, rows inner: one panel of B stays in L1 while all
/// rows pass over it.
///
/// # Safety
/// As for [`crate::microkernel::run`]; `tile` must be runnable on this CPU, `nr ≤ 64`,
/// `panel(p)` must return panel `p` in the layout `tile` reads, and A's elements must be
/// `a_elem_bytes` wide (row stride `lda` elements).
pub(crate) unsafe fn drive_rows<P: Copy>(
    job: &Job<'_>,
    sink: &mut dyn FnMut(&Tile),
    nr: usize,
    a_elem_bytes: usize,
    panel: impl Fn(usize) -> P,
    tile: TileFn<P>,
) {
    #[repr(C, align(64))]
    struct Scratch([i32; MR * 64]);
    // Uninitialised: each tile writes every element the sink then reads.
    let mut scratch = std::mem::MaybeUninit::<Scratch>::uninit();
    let buf = scratch.as_mut_ptr().cast::<i32>();
    for p in job.p0..job.p1 {
        let b = panel(p);
        let mut r = job.m0;
        while r < job.m1 {
            let rows = (job.m1 - r).min(MR);
            // SAFETY: forwarded contract; the tile writes rows × nr ≤ MR × 64 i32 into scratch.
            unsafe { tile(rows, job.a.add(r * job.lda * a_elem_bytes), job.lda, b, job.k0, job.k1, buf) };
            sink(&Tile { row: r, rows, panel: p, acc: buf, ld: nr });
            r += rows;
        }
    }
}
