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
use std::sync::OnceLock;

const NR: usize = 32;
/// Quads per K block (64 bytes of K).
const QB: usize = 16;
/// Below this many rows a tile of 16 rows wastes too much: the VNNI tile is used instead.
pub(crate) const MIN_AMX_ROWS: usize = 4;

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

/// # Safety
/// See [`crate::microkernel::run`]; AMX must be available and the weights packed in the AMX
/// layout (K range a multiple of 64).
pub(crate) unsafe fn run(job: &Job<'_>, sink: &mut dyn FnMut(&Tile)) {
    let mut scratch = Scratch([0; 32 * NR]);
    let m = job.m1 - job.m0;
    let full_end = job.m0 + m / 32 * 32;
    let tail = job.m1 - full_end;
    let c = scratch.0.as_mut_ptr();
    // SAFETY: forwarded contract; tiles are configured before use and released at the end.
    unsafe {
        if full_end > job.m0 {
            TileConfig::new(16, 16).load();
            for p in job.p0..job.p1 {
                let panel = job.b.panel_i8(p);
                let mut r = job.m0;
                while r < full_end {
                    block_2x2(job.a.add(r * job.lda), job.lda, panel, job.k0, job.k1, c);
                    sink(&Tile { row: r, rows: 32, panel: p, acc: c, ld: NR });
                    r += 32;
                }
            }
        }
        if tail > 16 {
            TileConfig::new(16, tail - 16).load();
            for p in job.p0..job.p1 {
                block_2x2(job.a.add(full_end * job.lda), job.lda, job.b.panel_i8(p), job.k0, job.k1, c);
                sink(&Tile { row: full_end, rows: tail, panel: p, acc: c, ld: NR });
            }
        } else if tail >= MIN_AMX_ROWS {
            TileConfig::new(tail, 0).load();
            for p in job.p0..job.p1 {
                block_1x2(job.a.add(full_end * job.lda), job.lda, job.b.panel_i8(p), job.k0, job.k1, c);
                sink(&Tile { row: full_end, rows: tail, panel: p, acc: c, ld: NR });
            }
        } else if tail > 0 {
            for p in job.p0..job.p1 {
                super::avx512_vnni::rows_tile::<2, QB>(
                    tail,
                    job.a.add(full_end * job.lda),
                    job.lda,
                    job.b.panel_i8(p),
                    job.k0,
                    job.k1,
                    c,
                    NR,
                );
                sink(&Tile { row: full_end, rows: tail, panel: p, acc: c, ld: NR });
            }
        }
        if full_end > job.m0 || tail >= MIN_AMX_ROWS {
            asm!("tilerelease", options(nostack, nomem));
        }
    }
}

/// C (32 × 32 i32, row stride 128 bytes) = A rows [0, 16) and [16, 16 + r1) × panel, over K
/// bytes `k0..k1`.
///
/// # Safety
/// Tiles configured with [`TileConfig::new`]`(16, r1)`; A and the panel cover the K range.
#[inline]
unsafe fn block_2x2(a: *const u8, lda: usize, panel: *const i8, k0: usize, k1: usize, c: *mut i32) {
    // SAFETY: loads stay inside A (configured rows × 64 bytes at stride lda) and the panel.
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        let a1 = a.add(16 * lda);
        let mut k = k0;
        while k < k1 {
            let b = panel.add(k * NR);
            asm!(
                "tileloadd tmm4, [{a0} + {lda}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tileloadd tmm5, [{a1} + {lda}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                a0 = in(reg) a.add(k),
                a1 = in(reg) a1.add(k),
                lda = in(reg) lda,
                b0 = in(reg) b,
                b1 = in(reg) b.add(1024),
                s = in(reg) 64usize,
                options(nostack, readonly),
            );
            k += 64;
        }
        asm!(
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c1} + {s}*1], tmm1",
            "tilestored [{c2} + {s}*1], tmm2",
            "tilestored [{c3} + {s}*1], tmm3",
            c0 = in(reg) c,
            c1 = in(reg) c.add(16),
            c2 = in(reg) c.add(16 * NR),
            c3 = in(reg) c.add(16 * NR + 16),
            s = in(reg) NR * 4,
            options(nostack),
        );
    }
}

/// Like [`block_2x2`] for one A tile of the configured rows (≤ 16).
///
/// # Safety
/// Tiles configured with [`TileConfig::new`]`(rows, 0)`.
#[inline]
unsafe fn block_1x2(a: *const u8, lda: usize, panel: *const i8, k0: usize, k1: usize, c: *mut i32) {
    // SAFETY: as for block_2x2.
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
        let mut k = k0;
        while k < k1 {
            let b = panel.add(k * NR);
            asm!(
                "tileloadd tmm4, [{a0} + {lda}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                a0 = in(reg) a.add(k),
                lda = in(reg) lda,
                b0 = in(reg) b,
                b1 = in(reg) b.add(1024),
                s = in(reg) 64usize,
                options(nostack, readonly),
            );
            k += 64;
        }
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
