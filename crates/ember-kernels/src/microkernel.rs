//! The contract between the GEMM driver and the per-ISA micro-kernels.
//!
//! A micro-kernel computes raw i32 tiles `Σ_k A[r, k]·B[k, c]` (no zero-point correction) for a
//! range of rows, a range of packed panels and a range of packed K, and hands each finished tile
//! to the driver's epilogue through a callback.

use crate::dispatch::KernelId;
use crate::pack::PackedB;

/// One unit of work for a micro-kernel.
pub(crate) struct Job<'a> {
    /// Packed activations: row `r` starts at `a + r·lda`, zero-padded like the weights' K.
    pub a: *const u8,
    /// Row stride of `a` in bytes (the packed K).
    pub lda: usize,
    /// A is in the AMX tile layout ([`crate::gemm::ALayout::Tiles16`]) instead of row-major;
    /// only the AMX kernel is ever given this.
    pub a_tiles: bool,
    /// Rows `m0..m1`.
    pub m0: usize,
    pub m1: usize,
    pub b: &'a PackedB,
    /// Panels `p0..p1`.
    pub p0: usize,
    pub p1: usize,
    /// Packed K bytes `k0..k1` (multiples of the kernel's K step).
    pub k0: usize,
    pub k1: usize,
    /// Optional direct i32 output (per-tensor zero point): kernels that support it start each
    /// accumulator at `init[col]` (= −z_a·Σ_k B[k, col]) and store full blocks straight into
    /// `out`, skipping the sink. Blocks they do not store directly still go to the sink.
    pub direct: Option<DirectI32>,
}

/// Destination for [`Job::direct`].
#[derive(Clone, Copy)]
pub(crate) struct DirectI32 {
    pub out: *mut i32,
    /// Row stride of `out` in elements (N).
    pub ldc: usize,
    /// N columns.
    pub n: usize,
    /// Initial accumulator per column, `npanels · nr` values (zero past N).
    pub init: *const i32,
}

/// A finished i32 tile: rows `row..row+rows` of panel `panel`; element (r, c) is at
/// `acc + r·ld + c` for `c < nr`.
pub(crate) struct Tile {
    pub row: usize,
    pub rows: usize,
    pub panel: usize,
    pub acc: *const i32,
    pub ld: usize,
}

/// Runs `job` on `kernel`, calling `sink` for every finished tile.
///
/// # Safety
/// `kernel` must be supported by this CPU, `job.b` must be packed for it, `job.a` must point to
/// at least `m1·lda` readable bytes, and the K range must lie inside the packed K.
pub(crate) unsafe fn run(kernel: KernelId, job: &Job<'_>, sink: &mut dyn FnMut(&Tile)) {
    debug_assert_eq!(job.b.kernel(), kernel);
    if job.m0 >= job.m1 || job.p0 >= job.p1 {
        return;
    }
    crate::dispatch::count_invocation(kernel);
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        match kernel {
            KernelId::Scalar => crate::scalar::run(job, sink),
            #[cfg(target_arch = "x86_64")]
            KernelId::Avx2 => crate::x86_64::avx2::run(job, sink),
            #[cfg(target_arch = "x86_64")]
            KernelId::AvxVnni => crate::x86_64::avx_vnni::run(job, sink),
            #[cfg(target_arch = "x86_64")]
            KernelId::Avx512Vnni => crate::x86_64::avx512_vnni::run(job, sink),
            #[cfg(target_arch = "x86_64")]
            KernelId::Amx => crate::x86_64::amx::run(job, sink),
            #[cfg(not(target_arch = "x86_64"))]
            _ => crate::scalar::run(job, sink),
        }
    }
}
