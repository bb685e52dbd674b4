//! Portable scalar reference kernel (layout: 16-column panels, K in quads).
//!
//! Uses wrapping i32 arithmetic like the SIMD kernels, so every kernel returns bit-identical
//! accumulators for the same inputs.

use crate::microkernel::{Job, Tile};

/// # Safety
/// See [`crate::microkernel::run`].
pub(crate) unsafe fn run(job: &Job<'_>, sink: &mut dyn FnMut(&Tile)) {
    const NR: usize = 16;
    let mut acc = [0i32; NR];
    for p in job.p0..job.p1 {
        let panel = job.b.panel_i8(p);
        for r in job.m0..job.m1 {
            acc.fill(0);
            for q in job.k0 / 4..job.k1 / 4 {
                // SAFETY: row r and quad q are inside the packed A and B buffers.
                let (aq, bq) = unsafe {
                    (
                        std::slice::from_raw_parts(job.a.add(r * job.lda + q * 4), 4),
                        std::slice::from_raw_parts(panel.add(q * NR * 4), NR * 4),
                    )
                };
                for (c, s) in acc.iter_mut().enumerate() {
                    let mut d = 0i32;
                    for kk in 0..4 {
                        d += aq[kk] as i32 * bq[c * 4 + kk] as i32;
                    }
                    *s = s.wrapping_add(d);
                }
            }
            sink(&Tile { row: r, rows: 1, panel: p, acc: acc.as_ptr(), ld: NR });
        }
    }
}
