//! Portable reference kernel (layout: 16-column panels, K in quads), the only kernel on CPUs
//! without a SIMD kernel of their own.
//!
//! Written as plain loops over a 4 × 16 tile of i32 accumulators with the four bytes of a quad
//! read together, a shape compilers vectorise across the columns (interleaved loads such as
//! NEON `ld4` or x86 shuffles). Wrapping i32 arithmetic, like the SIMD kernels, so every kernel
//! returns bit-identical accumulators for the same inputs.

use crate::microkernel::{Job, Tile};

const NR: usize = 16;
const MR: usize = 4;

/// # Safety
/// See [`crate::microkernel::run`].
pub(crate) unsafe fn run(job: &Job<'_>, sink: &mut dyn FnMut(&Tile)) {
    let mut acc = [[0i32; NR]; MR];
    let nq = (job.k1 - job.k0) / 4;
    for p in job.p0..job.p1 {
        // SAFETY: the panel holds the quads k0/4..k1/4 of NR columns.
        let panel = unsafe { std::slice::from_raw_parts(job.b.panel_i8(p).add(job.k0 * NR), nq * NR * 4) };
        let mut r = job.m0;
        while r < job.m1 {
            let rows = (job.m1 - r).min(MR);
            let mut a_rows: [&[u8]; MR] = [&[]; MR];
            for (i, a_row) in a_rows.iter_mut().enumerate().take(rows) {
                // SAFETY: row r + i of A covers packed K bytes k0..k1.
                *a_row = unsafe { std::slice::from_raw_parts(job.a.add((r + i) * job.lda + job.k0), nq * 4) };
            }
            match rows {
                4 => tile::<4>(&a_rows, panel, nq, &mut acc),
                3 => tile::<3>(&a_rows, panel, nq, &mut acc),
                2 => tile::<2>(&a_rows, panel, nq, &mut acc),
                _ => tile::<1>(&a_rows, panel, nq, &mut acc),
            }
            sink(&Tile { row: r, rows, panel: p, acc: acc.as_ptr().cast::<i32>(), ld: NR });
            r += rows;
        }
    }
}

#[inline(always)]
fn tile<const R: usize>(a_rows: &[&[u8]; MR], panel: &[i8], nq: usize, acc: &mut [[i32; NR]; MR]) {
    for row in acc.iter_mut().take(R) {
        *row = [0; NR];
    }
    for q in 0..nq {
        let b: &[i8; NR * 4] = panel[q * NR * 4..(q + 1) * NR * 4].try_into().expect("one quad of 16 columns");
        for (i, row) in acc.iter_mut().enumerate().take(R) {
            let a = &a_rows[i][q * 4..q * 4 + 4];
            let (a0, a1, a2, a3) = (a[0] as i32, a[1] as i32, a[2] as i32, a[3] as i32);
            for (c, s) in row.iter_mut().enumerate() {
                let d = a0 * b[c * 4] as i32
                    + a1 * b[c * 4 + 1] as i32
                    + a2 * b[c * 4 + 2] as i32
                    + a3 * b[c * 4 + 3] as i32;
                *s = s.wrapping_add(d);
            }
        }
    }
}
