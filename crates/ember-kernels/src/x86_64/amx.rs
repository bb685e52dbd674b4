//! AMX-INT8 kernel (`tdpbusd`, inline `asm!`: the AMX intrinsics are unstable in Rust 1.95).
//!
//! Layout: 32-column panels; K padded to 64 bytes; for every 64 bytes of K a panel holds two
//! 1 KiB B tiles (16 quads × 16 columns × 4 bytes), i.e. exactly what `tileloadd` reads with a
//! 64-byte stride. A is read in place (row stride = packed K).
//!
//! Blocking: 32×32 output blocks as 2×2 tiles (tmm0-3 accumulate C, tmm4-5 hold two 16-row A
//! tiles, tmm6-7 two B tiles): 4 `tdpbusd` per 4 tile loads. Rows left over after the 32-row
//! blocks use a 2×2 block with a short second A tile, or a 1×2 block for ≤ 16 rows; fewer than
//! [`MIN_AMX_ROWS`] rows run the AVX-512 VNNI tile over the same layout, which is faster there.
//!
//! Linux hands out AMX tile state only on request: [`amx_available`] calls
//! `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` once per process. Every run ends with
//! `tilerelease` so threads do not keep the 8 KiB tile state live between calls.

use crate::microkernel::{Job, Tile};
use std::arch::asm;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

const NR: usize = 32;
/// Quads per K block (64 bytes of K).
const QB: usize = 16;
/// Below this many rows a tile of 16 rows wastes too much: the VNNI tile is used instead
/// (measured crossover on the reference machine: VNNI is faster up to 6 rows, AMX from 8).
pub(crate) const MIN_AMX_ROWS: usize = 8;
/// Bytes of packed B kept hot in L2 while the row blocks pass over it (L2 is 2 MiB per core on
/// the reference machine; half leaves room for A, C and the other thread).
const L2_BUDGET: usize = 1 << 20;

/// Whether the CPU reports AMX-TILE and AMX-INT8 and the OS granted tile data to this process.
pub(crate) fn amx_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| cpuid_amx_int8() && request_permission())
}

/// CPUID.(EAX=7, ECX=0):EDX bit 24 = AMX-TILE, bit 25 = AMX-INT8 (std's detection macro for
/// AMX is unstable in Rust 1.95).
fn cpuid_amx_int8() -> bool {
    let r = std::arch::x86_64::__cpuid_count(7, 0);
    (r.edx >> 24) & 3 == 3
}

#[cfg(target_os = "linux")]
fn request_permission() -> bool {
    const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: plain syscalls with integer / pointer-to-u64 arguments.
    unsafe {
        if libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0 {
            return false;
        }
        let mut mask: u64 = 0;
        libc::syscall(libc::SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &mut mask as *mut u64) == 0
            && mask & (1 << XFEATURE_XTILEDATA) != 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_permission() -> bool {
    // Other OSes need their own permission protocol; until it is written AMX stays off there.
    false
}

/// A 64-byte tile configuration (palette 1).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    /// tmm0-3: C (rows of A0, A0, A1, A1), tmm4-5: A (`r0`, `r1` rows), tmm6-7: B (16 rows).
    /// `r1 == 0` leaves tmm2, tmm3 and tmm5 unconfigured (1×2 blocking).
    fn new(r0: usize, r1: usize) -> TileConfig {
        let mut c = [0u8; 64];
        c[0] = 1;
        let rows = [r0, r0, r1, r1, r0, r1, 16, 16];
        for (t, &r) in rows.iter().enumerate() {
            if r > 0 {
                c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
                c[48 + t] = r as u8;
            }
        }
        TileConfig(c)
    }

    /// # Safety
    /// AMX must be available (see [`amx_available`]).
    unsafe fn load(&self) {
        // SAFETY: a valid palette-1 configuration, 64-byte aligned.
        unsafe { asm!("ldtilecfg [{}]", in(reg) self.0.as_ptr(), options(nostack, readonly)) };
    }
}

#[repr(C, align(64))]
struct Scratch([i32; 32 * NR]);

/// Rows `r0..r1` (few) with the AVX-512 VNNI tile over the AMX layout, two panels (64 columns,
/// four zmm accumulators per row) at a time.
///
/// # Safety
/// As for [`run`]; AVX-512 VNNI available.
unsafe fn vnni_rows(job: &Job<'_>, r0: usize, r1: usize, sink: &mut dyn FnMut(&Tile)) {
    #[repr(C, align(64))]
    struct Wide([i32; 6 * 2 * NR]);
    // Uninitialised: each tile writes every element the sink then reads.
    let mut wide = MaybeUninit::<Wide>::uninit();
    let c = wide.as_mut_ptr().cast::<i32>();
    let mut r = r0;
    while r < r1 {
        let rows = (r1 - r).min(6);
        // SAFETY: forwarded; the tile writes rows × 64 i32 into `c`.
        unsafe {
            let a = job.a.add(r * job.lda);
            let mut p = job.p0;
            while p + 1 < job.p1 {
                let panels = [job.b.panel_i8(p), job.b.panel_i8(p + 1)];
                super::avx512_vnni::rows_tile::<2, QB, 2>(rows, a, job.lda, panels, job.k0, job.k1, c, 2 * NR);
                sink(&Tile { row: r, rows, panel: p, acc: c, ld: 2 * NR });
                sink(&Tile { row: r, rows, panel: p + 1, acc: c.add(NR), ld: 2 * NR });
                p += 2;
            }
            if p < job.p1 {
                let panels = [job.b.panel_i8(p)];
                super::avx512_vnni::rows_tile::<2, QB, 1>(rows, a, job.lda, panels, job.k0, job.k1, c, NR);
                sink(&Tile { row: r, rows, panel: p, acc: c, ld: NR });
            }
        }
        r += rows;
    }
}

/// # Safety
/// See [`crate::microkernel::run`]; AMX must be available and the weights packed in the AMX
/// layout (K range a multiple of 64).
pub(crate) unsafe fn run(job: &Job<'_>, sink: &mut dyn FnMut(&Tile)) {
    let m = job.m1 - job.m0;
    if m < MIN_AMX_ROWS && !job.a_tiles {
        // SAFETY: forwarded.
        return unsafe { vnni_rows(job, job.m0, job.m1, sink) };
    }
    // Uninitialised on purpose (zeroing it per call showed up in small-shape profiles): every
    // block is fully written by a tile store before the sink reads it.
    let mut scratch = MaybeUninit::<Scratch>::uninit();
    let c = scratch.as_mut_ptr().cast::<i32>();
    let full_end = job.m0 + m / 32 * 32;
    let tail = job.m1 - full_end;
    // SAFETY: forwarded contract; tiles are configured before use and released at the end.
    // (A software pipeline that ran block j − 1's epilogue while the TMUL computed block j was
    // tried: +3-7 % at K = 384, −2-10 % at K ≥ 768, so blocks are finished one at a time.)
    unsafe {
        if full_end > job.m0 {
            TileConfig::new(16, 16).load();
            // GotoBLAS-style order: a block of panels that fits in L2 stays there while every
            // 32-row block of A passes over it; each A block stays in L1 across those panels,
            // and output rows are written in long runs.
            let panel_bytes = (job.k1 - job.k0) * NR;
            let nc = (L2_BUDGET / panel_bytes.max(1)).max(1);
            let mut pc = job.p0;
            while pc < job.p1 {
                let pc_end = (pc + nc).min(job.p1);
                let mut r = job.m0;
                while r < full_end {
                    for p in pc..pc_end {
                        // Full blocks inside N with direct output accumulate from −z_a·colsum
                        // and are stored straight into C; others go through the sink.
                        let direct = job.direct.filter(|d| (p + 1) * NR <= d.n);
                        match direct {
                            Some(d) => init_2x2(d.init.add(p * NR)),
                            None => zero_2x2(),
                        }
                        compute_2x2(job.a.add(r * job.lda), job.lda, job.a_tiles, job.b.panel_i8(p), job.k0, job.k1);
                        match direct {
                            Some(d) => store_2x2_to(d.out.add(r * d.ldc + p * NR), d.ldc),
                            None => {
                                store_2x2_to(c, NR);
                                sink(&Tile { row: r, rows: 32, panel: p, acc: c, ld: NR });
                            }
                        }
                    }
                    r += 32;
                }
                pc = pc_end;
            }
        }
        if tail > 16 {
            // ldtilecfg clears the tiles: the pending block is already in its scratch buffer.
            TileConfig::new(16, tail - 16).load();
            for p in job.p0..job.p1 {
                zero_2x2();
                compute_2x2(job.a.add(full_end * job.lda), job.lda, job.a_tiles, job.b.panel_i8(p), job.k0, job.k1);
                store_2x2_to(c, NR);
                sink(&Tile { row: full_end, rows: tail, panel: p, acc: c, ld: NR });
            }
        } else if tail >= MIN_AMX_ROWS || (tail > 0 && job.a_tiles) {
            TileConfig::new(tail, 0).load();
            for p in job.p0..job.p1 {
                asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
                compute_1x2(job.a.add(full_end * job.lda), job.lda, job.a_tiles, job.b.panel_i8(p), job.k0, job.k1);
                store_1x2(c);
                sink(&Tile { row: full_end, rows: tail, panel: p, acc: c, ld: NR });
            }
        } else if tail > 0 {
            vnni_rows(job, full_end, job.m1, sink);
        }
        if full_end > job.m0 || tail >= MIN_AMX_ROWS || job.a_tiles {
            asm!("tilerelease", options(nostack, nomem));
        }
    }
}

/// Zeroes the 2×2 accumulators.
///
/// # Safety
/// Tiles configured for 2×2 blocking.
#[inline]
unsafe fn zero_2x2() {
    // SAFETY: register-only.
    unsafe { asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem)) };
}

/// Starts every row of the 2×2 accumulators at `init[0..32]` (a stride-0 tile load repeats
/// one 64-byte row).
///
/// # Safety
/// Tiles configured for 2×2 blocking; `init` has 32 readable i32.
#[inline]
unsafe fn init_2x2(init: *const i32) {
    // SAFETY: each load reads the same 64 bytes for every row.
    unsafe {
        asm!(
            "tileloadd tmm0, [{i0} + {z}*1]",
            "tileloadd tmm1, [{i1} + {z}*1]",
            "tileloadd tmm2, [{i0} + {z}*1]",
            "tileloadd tmm3, [{i1} + {z}*1]",
            i0 = in(reg) init,
            i1 = in(reg) init.add(16),
            z = in(reg) 0usize,
            options(nostack, readonly),
        );
    }
}

/// Stores the 2×2 accumulators as a 32 × 32 block of a row-major i32 matrix.
///
/// # Safety
/// Tiles configured for 2×2 blocking with 16-row tiles; `c` has 32 rows of 32 writable i32 at
/// row stride `ldc` elements.
#[inline]
unsafe fn store_2x2_to(c: *mut i32, ldc: usize) {
    // SAFETY: the stores stay inside the block.
    unsafe {
        asm!(
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c1} + {s}*1], tmm1",
            "tilestored [{c2} + {s}*1], tmm2",
            "tilestored [{c3} + {s}*1], tmm3",
            c0 = in(reg) c,
            c1 = in(reg) c.add(16),
            c2 = in(reg) c.add(16 * ldc),
            c3 = in(reg) c.add(16 * ldc + 16),
            s = in(reg) ldc * 4,
            options(nostack),
        );
    }
}

/// tmm0-3 += A rows [0, 16) and [16, 16 + r1) × the panel's two 16-column B tiles, over K bytes
/// `k0..k1`.
///
/// # Safety
/// Tiles configured with [`TileConfig::new`]`(16, r1)`; A and the panel cover the K range.
#[inline]
unsafe fn compute_2x2(a: *const u8, lda: usize, a_tiles: bool, panel: *const i8, k0: usize, k1: usize) {
    // SAFETY: loads stay inside A (configured rows × 64 bytes at stride lda) and the panel.
    unsafe {
        // Row-major A: a tile is 16 rows at stride lda. Tile layout: 1 KiB contiguous per
        // 64 bytes of K (stride 64), 16·lda bytes per 16-row block. Either way the second A
        // tile starts 16·lda bytes further.
        let (stride, kmul) = if a_tiles { (64, 16) } else { (lda, 1) };
        let a1 = a.add(16 * lda);
        let mut k = k0;
        while k < k1 {
            let b = panel.add(k * NR);
            asm!(
                "tileloadd tmm4, [{a0} + {lda}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbusd tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {lda}*1]",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                a0 = in(reg) a.add(k * kmul),
                a1 = in(reg) a1.add(k * kmul),
                lda = in(reg) stride,
                b0 = in(reg) b,
                b1 = in(reg) b.add(1024),
                s = in(reg) 64usize,
                options(nostack, readonly),
            );
            k += 64;
        }
    }
}

/// Like [`compute_2x2`] for one A tile of the configured rows (≤ 16): tmm0-1 += A × B.
///
/// # Safety
/// Tiles configured with [`TileConfig::new`]`(rows, 0)`.
#[inline]
unsafe fn compute_1x2(a: *const u8, lda: usize, a_tiles: bool, panel: *const i8, k0: usize, k1: usize) {
    // SAFETY: as for compute_2x2.
    unsafe {
        let (stride, kmul) = if a_tiles { (64, 16) } else { (lda, 1) };
        let mut k = k0;
        while k < k1 {
            let b = panel.add(k * NR);
            asm!(
                "tileloadd tmm4, [{a0} + {lda}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                a0 = in(reg) a.add(k * kmul),
                lda = in(reg) stride,
                b0 = in(reg) b,
                b1 = in(reg) b.add(1024),
                s = in(reg) 64usize,
                options(nostack, readonly),
            );
            k += 64;
        }
    }
}

/// Stores tmm0-1 (1×2 blocking) at `c` with a 128-byte row stride.
///
/// # Safety
/// Tiles configured for 1×2 blocking; `c` has room for 16 × 32 i32.
#[inline]
unsafe fn store_1x2(c: *mut i32) {
    // SAFETY: the stores stay inside the block.
    unsafe {
        asm!(
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c1} + {s}*1], tmm1",
            c0 = in(reg) c,
            c1 = in(reg) c.add(16),
            s = in(reg) NR * 4,
            options(nostack),
        );
    }
}
