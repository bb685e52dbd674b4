//! # ember-kernels
//!
//! Ember's int8 matrix-multiply engine: `C[M×N] = A[M×K]·B[K×N]` with u8 (or i8) activations,
//! i8 weights **packed once**, exact i32 accumulation and fused epilogues (zero-point
//! correction, per-row activation scales × per-channel or per-group weight scales, bias, f32 or
//! requantized u8/i8 output). Plain slices, no Burn dependency: `ember-quant` builds Burn layers
//! on top of it.
//!
//! ```
//! use ember_kernels::{dynamic_quantized_matmul, DynamicOptions, KernelId, PackOptions, PackedB, WeightScales};
//! use ember_kernels::quantize::params_i8_symmetric;
//!
//! // A 4 → 3 linear layer with f32 weights W[K=4, N=3], quantized symmetric per tensor.
//! let w = [0.5f32, -1.0, 0.25, 1.0, 0.0, -0.5, -0.25, 0.75, 1.0, 0.125, 0.5, -1.0];
//! let p = params_i8_symmetric(1.0).unwrap();
//! let mut wq = [0i8; 12];
//! ember_kernels::quantize::quantize(&w, p, &mut wq).unwrap();
//! // Pack once (for the fastest kernel this CPU has), then run many times.
//! let packed = PackedB::pack(&wq, 4, 3, PackOptions::default()).unwrap();
//! let x = [1.0f32, 2.0, 3.0, 4.0];
//! let mut y = [0f32; 3];
//! dynamic_quantized_matmul(&x, 1, &packed, WeightScales::PerTensor(p.scale), None, &mut y, &DynamicOptions::default()).unwrap();
//! // Exact: [2.25, 3.25, -1.75]; the int8 error is a fraction of a percent of the range.
//! assert!((y[0] - 2.25).abs() < 0.05 && (y[1] - 3.25).abs() < 0.05 && (y[2] + 1.75).abs() < 0.05);
//! println!("ran on {}", KernelId::selected().name());
//! ```
//!
//! ## Modules and entry points
//! - [`gemm()`]: quantized activations × packed weights with an [`Epilogue`]: exact i32, f32, or
//!   requantized u8/i8.
//! - [`dynamic_quantized_matmul`]: f32 in, f32 out; quantizes activations per row (or per
//!   tensor) on the fly. What dynamic int8 `Linear` layers call.
//! - [`PackedB`]: weights packed for one kernel; [`PackedB::unpack`] gives back the canonical
//!   row-major i8 that is saved to disk.
//! - [`quantize`]: f32 ↔ u8/i8 row quantizers (round half to even, saturating, NaN/Inf rejected).
//! - [`KernelId`]: the kernels (AMX-INT8, AVX-512 VNNI, AVX-VNNI, AVX2, scalar), runtime
//!   detection and the `EMBER_KERNEL` override.
//! - [`fused`]: f32 row kernels for the rest of a transformer layer: LayerNorm with the residual
//!   add, softmax, GELU (erf and tanh forms) and a fused multi-head attention.
//! - [`sgemm`](mod@sgemm): f32 GEMM streaming row-major weights, for float `Linear`s on small
//!   inputs on CPU devices.
//! - [`reference`](mod@reference): naive i64 reference GEMM and f64 references of the row
//!   kernels, for tests.
//!
//! ## Exactness
//! All kernels accumulate in i32 with wrapping arithmetic and return identical accumulators. The
//! i32 result is exact for `K ≤` [`MAX_EXACT_K`] (65 793) whatever the values; no kernel
//! saturates ([`KernelId::may_saturate`]).
//!
//! ## Threads
//! Work is split across output panels (then rows) on Ember's own spinning pool (not rayon's:
//! waking a parked rayon worker cost 12-25 µs per call on the reference machine). The thread
//! count is set per call ([`GemmOptions::threads`]); shapes that would run under about 30 µs on
//! one thread stay on the caller's thread.
//!
//! ## Feature flags
//! None: every kernel is compiled on x86-64 and chosen at run time. On other architectures the
//! scalar kernel runs.

#[cfg(target_arch = "x86_64")]
mod x86_64;

/// Row count below which the AMX kernel runs VNNI tiles (for the threading estimate).
pub(crate) const fn x86_64_amx_min_rows() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        x86_64::amx::MIN_AMX_ROWS
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        8
    }
}

mod abuf;
mod dispatch;
mod error;
pub mod fused;
mod gemm;
pub mod machine;
mod microkernel;
mod pack;
mod pool;
pub mod quantize;
pub mod reference;
mod scalar;
pub mod sgemm;
mod simd;

pub use dispatch::{KERNEL_ENV, KernelId, kernel_invocations};
pub use error::{KernelError, Result};
pub use gemm::{
    ActivationData, Activations, DynamicOptions, Epilogue, GemmOptions, QuantizedOutput, RowParam, WeightScales,
    dynamic_quantized_matmul, gemm,
};
pub use machine::cpu_model;
pub use pack::{MAX_EXACT_K, PackOptions, PackedB, WeightLayout};
pub use quantize::{Granularity, QuantParams};

// The guides' code blocks are compiled and run as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../INT8-KERNELS.md")]
struct GuideDoctests;
