//! f32 row kernels for the non-GEMM part of a transformer layer: LayerNorm with the residual
//! add fused, softmax, exact and tanh GELU, and a fused multi-head attention (scores, padding /
//! causal mask, softmax and the product with V in one pass per query row).
//!
//! Plain slices, no Burn: `ember-layers` calls them on CPU devices. Every kernel has a scalar
//! form (plain Rust, compiled for the baseline target) and SIMD forms that are the same code
//! compiled for AVX2 + FMA and for AVX-512 ([`RowKernel`]); the reductions are written with 16
//! independent lanes so that the compiler vectorizes them. [`crate::reference`] holds f64
//! references the tests compare against.
//!
//! ```
//! use ember_kernels::fused::{attention, layer_norm, AttentionDims, AttentionMask, RowOptions};
//!
//! // Two sequences of 3 tokens, 2 heads of width 2 (projections concatenate heads: width 4).
//! let dims = AttentionDims { batch: 2, seq: 3, heads: 2, head_dim: 2 };
//! let q: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
//! let (k, v) = (q.iter().map(|x| x * 0.5).collect::<Vec<_>>(), q.clone());
//! // The last token of the second sequence is padding.
//! let pad = [false, false, false, false, false, true];
//! let mask = AttentionMask { key_padding: Some(&pad), causal: false };
//! let mut ctx = vec![0f32; 24];
//! attention(&q, &k, &v, dims, mask, 1.0 / 2f32.sqrt(), &mut ctx, &RowOptions::default()).unwrap();
//!
//! // LayerNorm(x + residual) in place over rows of 4.
//! let mut x = ctx.clone();
//! layer_norm(&mut x, Some(&q), &[1.0; 4], &[0.0; 4], 1e-12, &RowOptions::default()).unwrap();
//! let row = &x[..4];
//! assert!(row.iter().sum::<f32>().abs() < 1e-5);
//! ```
//!
//! ## Accuracy
//! - `exp` (softmax, tanh): Cody–Waite range reduction and a degree-6 polynomial, relative
//!   error ≤ 1e-6 on `[−87, 0]`, exactly 0 below −87 (softmax inputs are shifted by the row
//!   maximum, so they are ≤ 0; a masked key next to any real score gets exactly 0).
//! - GELU (erf): Abramowitz & Stegun 7.1.26 for `erf`, absolute error ≤ 5e-7 in f32.
//! - GELU (tanh form): `tanh(u) = (1 − e^{−2|u|}) / (1 + e^{−2|u|})`, error ≈ 2e-7.
//! - LayerNorm: two passes per row (mean, then the centred variance), f32 accumulation in 16
//!   lanes; relative error ~1e-6 for rows of a few thousand.
//! - Attention: f32 dot products and sums; masked keys get the score [`MASKED_SCORE`] (as
//!   `ember-layers` does), so a query whose keys are all hidden gets a uniform distribution.
//!
//! ## Threads
//! Rows (LayerNorm, softmax, GELU chunks) or (sequence, head) pairs (attention) are split over
//! Ember's GEMM pool ([`RowOptions::threads`], 0 = every core); work under about 20 µs stays on
//! the caller's thread.

use crate::error::{KernelError, Result};
use crate::pool;
use crate::simd::{Lanes, Scalar8};
use std::sync::OnceLock;

static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many row-kernel calls (attention, LayerNorm, softmax, GELU) this process has made;
/// tests use it to prove that a fused path really ran.
pub fn calls() -> u64 {
    CALLS.load(std::sync::atomic::Ordering::Relaxed)
}

fn count() {
    CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The score hidden keys get before the softmax: `−10⁴` (`ember_layers::MASKED_SCORE` is this
/// constant; its docs say why the value is safe in every float type).
pub const MASKED_SCORE: f32 = -1.0e4;

/// The instruction set a row kernel is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowKernel {
    /// Plain Rust for the baseline target (SSE2 on x86-64).
    Scalar,
    /// x86-64 AVX2 + FMA (8 lanes).
    Avx2,
    /// x86-64 AVX-512F (16 lanes).
    Avx512,
}

impl RowKernel {
    /// Every row kernel, slowest first.
    pub const ALL: [RowKernel; 3] = [RowKernel::Scalar, RowKernel::Avx2, RowKernel::Avx512];

    /// Short name for tables (`scalar`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            RowKernel::Scalar => "scalar",
            RowKernel::Avx2 => "avx2",
            RowKernel::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run it.
    pub fn is_supported(self) -> bool {
        match self {
            RowKernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            RowKernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            RowKernel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The kernels this CPU can run, slowest first.
    pub fn supported() -> Vec<RowKernel> {
        Self::ALL.into_iter().filter(|k| k.is_supported()).collect()
    }

    /// The kernel calls use by default: the widest this CPU has, capped by the GEMM kernel
    /// `EMBER_KERNEL` selects (so `EMBER_KERNEL=scalar` or `=avx2` also pins these).
    pub fn selected() -> RowKernel {
        static SELECTED: OnceLock<RowKernel> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            let cap = match crate::KernelId::selected() {
                crate::KernelId::Scalar => RowKernel::Scalar,
                crate::KernelId::Avx2 | crate::KernelId::AvxVnni => RowKernel::Avx2,
                crate::KernelId::Avx512Vnni | crate::KernelId::Amx => RowKernel::Avx512,
            };
            Self::supported().into_iter().rfind(|&k| k as u8 <= cap as u8).unwrap_or(RowKernel::Scalar)
        })
    }
}

impl std::fmt::Display for RowKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Options of a row-kernel call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowOptions {
    /// The instruction set ([`RowKernel::selected`] by default).
    pub kernel: RowKernel,
    /// Threads (0: every core the process may use).
    pub threads: usize,
}

impl Default for RowOptions {
    fn default() -> Self {
        RowOptions { kernel: RowKernel::selected(), threads: 0 }
    }
}

impl RowOptions {
    /// The default kernel with `threads` threads (0: every core).
    pub fn with_threads(threads: usize) -> Self {
        RowOptions { threads, ..RowOptions::default() }
    }

    /// [`KernelError::KernelUnavailable`] (naming the kernels this CPU has) unless this CPU
    /// runs `kernel`.
    pub(crate) fn require(&self) -> Result<()> {
        if self.kernel.is_supported() {
            Ok(())
        } else {
            Err(KernelError::KernelUnavailable {
                name: self.kernel.name().into(),
                available: RowKernel::supported().iter().map(|k| k.name()).collect::<Vec<_>>().join(", "),
            })
        }
    }

    /// [`RowOptions::require`], counting the call (see [`calls`]).
    fn check(&self) -> Result<()> {
        self.require()?;
        count();
        Ok(())
    }

    /// Parts to split `work` (≈ flops) into.
    fn parts(&self, work: usize, units: usize) -> usize {
        // About 20 µs of work per part at a few Gflop/s.
        const MIN_WORK: usize = 60_000;
        let threads = if self.threads == 0 { pool::max_threads() } else { self.threads.min(pool::max_threads()) };
        threads.min(work / MIN_WORK).min(units).max(1)
    }
}

/// Dispatches `$body` (an expression using the generic inline functions) to a copy compiled for
/// the kernel's instruction set.
macro_rules! dispatch {
    ($kernel:expr, fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {{
        // `FMA`: whether the body may use fused multiply-adds (the vector copies; the scalar
        // one keeps separate multiplies and adds, which need no `fma` instruction).
        #[inline(always)]
        fn generic<const FMA: bool>($($arg: $ty),*) $body
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2($($arg: $ty),*) { generic::<true>($($arg),*) }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512($($arg: $ty),*) { generic::<true>($($arg),*) }
        match $kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `RowOptions::check` verified the features on this CPU before any call.
            RowKernel::Avx2 => unsafe { avx2($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            RowKernel::Avx512 => unsafe { avx512($($arg),*) },
            _ => generic::<false>($($arg),*),
        }
    }};
}

/// `a·b + c`, fused where `fma` says the instruction is there (a constant after inlining).
#[inline(always)]
fn madd(fma: bool, a: f32, b: f32, c: f32) -> f32 {
    if fma { a.mul_add(b, c) } else { a * b + c }
}

/// `exp(x)` for `x ≤ 0`, relative error ≤ 1e-6, branch-free; 0 below −87 (where f32 runs
/// out of normal numbers), so hidden keys get exactly no weight. `fma`: see [`madd`].
#[inline(always)]
pub(crate) fn exp_neg(x0: f32, fma: bool) -> f32 {
    // Not `f32::max`, which would turn NaN into −87: NaN must stay NaN.
    let x = if x0 < -87.0 { -87.0 } else { x0 };
    // Round to nearest by the 1.5·2²³ trick; the integer then sits in the low mantissa bits, so
    // no float → int conversion (Rust's saturating `as` would not vectorize).
    const MAGIC: f32 = 12_582_912.0;
    let shifted = madd(fma, x, std::f32::consts::LOG2_E, MAGIC);
    let n = shifted - MAGIC;
    let ni = (shifted.to_bits() as i32).wrapping_sub(0x4B40_0000);
    // Cody–Waite: ln 2 split into a high part exact in f32 and a low correction.
    let r = madd(fma, -n, 1.428_606_8e-6, madd(fma, -n, 0.693_145_75, x));
    let mut p = 0.001_388_889;
    for c in [0.008_333_334, 0.041_666_668, 0.166_666_67, 0.5, 1.0, 1.0] {
        p = madd(fma, p, r, c);
    }
    // 2^n through the exponent bits (n ≥ −126 after the clamp).
    let y = p * f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    if x0 < -87.0 { 0.0 } else { y }
}

/// `erf(x)`, Abramowitz & Stegun 7.1.26 (|error| ≤ 5e-7 in f32), branch-free.
#[inline(always)]
pub(crate) fn erf(x: f32, fma: bool) -> f32 {
    let a = x.abs();
    let t = 1.0 / madd(fma, 0.327_591_1, a, 1.0);
    let mut poly = 1.061_405_4;
    for c in [-1.453_152, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
        poly = madd(fma, poly, t, c);
    }
    let y = madd(fma, -(poly * t), exp_neg(-a * a, fma), 1.0);
    y.copysign(x)
}

/// `tanh(u)` from [`exp_neg`] (|error| ≈ 2e-7), branch-free.
#[inline(always)]
fn tanh(u: f32, fma: bool) -> f32 {
    let e = exp_neg(-2.0 * u.abs(), fma);
    ((1.0 - e) / (1.0 + e)).copysign(u)
}

/// Splits `len` items into `parts` contiguous ranges and runs `f(range)` on the pool.
fn split(len: usize, parts: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    if parts <= 1 {
        f(0..len);
        return;
    }
    let per = len.div_ceil(parts);
    pool::run(parts, &|p| {
        let start = (p * per).min(len);
        f(start..((p + 1) * per).min(len));
    });
}

/// Runs `f(row index, row)` over the rows of `width` of `x`, split over the pool when the work
/// (`cost` per value) is worth it.
fn for_each_row(x: &mut [f32], width: usize, cost: usize, opts: &RowOptions, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    let rows = x.len() / width;
    let parts = opts.parts(x.len() * cost, rows);
    let ptr = SharedMut(x.as_mut_ptr());
    split(rows, parts, &|range| {
        for row in range {
            // SAFETY: each row belongs to exactly one part, and lies within `x`.
            f(row, unsafe { std::slice::from_raw_parts_mut(ptr.get().add(row * width), width) });
        }
    });
}

/// A pointer that may cross to the pool's threads; every part writes a disjoint range.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: parts only touch disjoint index ranges of the buffer (see each use).
unsafe impl Sync for SharedMut {}
// SAFETY: as for `Sync`: the pointer is only dereferenced on disjoint ranges.
unsafe impl Send for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    #[inline(always)]
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Exact GELU `0.5·x·(1 + erf(x/√2))` in place (NaN stays NaN).
///
/// # Errors
/// [`KernelError::KernelUnavailable`] if `opts.kernel` does not run on this CPU.
pub fn gelu(v: &mut [f32], opts: &RowOptions) -> Result<()> {
    elementwise(v, opts, 40, false)
}

/// GELU's tanh form `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` in place.
///
/// # Errors
/// As [`gelu`].
pub fn gelu_tanh(v: &mut [f32], opts: &RowOptions) -> Result<()> {
    elementwise(v, opts, 40, true)
}

fn elementwise(v: &mut [f32], opts: &RowOptions, cost: usize, tanh_form: bool) -> Result<()> {
    opts.check()?;
    let len = v.len();
    let parts = opts.parts(len * cost, len.div_ceil(1024));
    let ptr = SharedMut(v.as_mut_ptr());
    let kernel = opts.kernel;
    split(len, parts, &|r| {
        // SAFETY: the ranges of `split` are disjoint and within `v`.
        let s = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(r.start), r.len()) };
        if tanh_form {
            dispatch!(
                kernel,
                fn run(s: &mut [f32]) {
                    const C: f32 = 0.797_884_6; // √(2/π)
                    for x in s.iter_mut() {
                        let u = C * madd(FMA, 0.044_715 * *x * *x, *x, *x);
                        *x = 0.5 * *x * (1.0 + tanh(u, FMA));
                    }
                }
            )
        } else {
            dispatch!(
                kernel,
                fn run(s: &mut [f32]) {
                    for x in s.iter_mut() {
                        *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2, FMA));
                    }
                }
            )
        }
    });
    Ok(())
}

/// Folds a slice with `op` in 16 independent lanes (so it vectorizes), then the lanes as a tree
/// (8 + 8, 4 + 4, …: vector shuffles, not 16 dependent steps), then the tail. Not the
/// sequential order.
#[inline(always)]
fn lane_fold(v: &[f32], init: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 16];
    let mut chunks = v.chunks_exact(16);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = op(*a, x);
        }
    }
    let mut w = 8;
    while w > 0 {
        for i in 0..w {
            acc[i] = op(acc[i], acc[i + w]);
        }
        w /= 2;
    }
    chunks.remainder().iter().fold(acc[0], |a, &x| op(a, x))
}

/// Sum of a slice (see [`lane_fold`]).
#[inline(always)]
fn lane_sum(v: &[f32]) -> f32 {
    lane_fold(v, 0.0, |a, x| a + x)
}

/// Maximum of a slice (plain `>` compares, so it compiles to `vmaxps`; a NaN never wins, but
/// `exp_neg` keeps it, so the softmax of a row holding NaN is NaN).
#[inline(always)]
fn lane_max(v: &[f32]) -> f32 {
    lane_fold(v, f32::NEG_INFINITY, |a, x| if x > a { x } else { a })
}

#[inline(always)]
fn layer_norm_row(r: &mut [f32], res: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32) {
    if let Some(res) = res {
        for (x, y) in r.iter_mut().zip(res) {
            *x += *y;
        }
    }
    let w = r.len() as f32;
    let mean = lane_sum(r) / w;
    let mut acc = [0f32; 16];
    let mut chunks = r.chunks_exact(16);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            let d = *x - mean;
            *a += d * d;
        }
    }
    let mut var = chunks.remainder().iter().map(|x| (x - mean) * (x - mean)).sum::<f32>();
    for a in acc {
        var += a;
    }
    let rstd = 1.0 / (var / w + eps).sqrt();
    for ((x, g), b) in r.iter_mut().zip(gamma).zip(beta) {
        *x = (*x - mean) * rstd * *g + *b;
    }
}

/// `x ← LayerNorm(x + residual)·γ + β` over rows of `gamma.len()` values, in place (biased
/// variance, `eps` inside the square root, as PyTorch and Burn).
///
/// # Errors
/// [`KernelError::Length`] if `x` is not whole rows, `residual` not `x`'s length or `beta` not
/// `gamma`'s; [`KernelError::Shape`] for an empty `gamma` or an `eps` that is not finite and
/// > 0; [`KernelError::KernelUnavailable`] for a kernel this CPU lacks.
pub fn layer_norm(
    x: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    opts: &RowOptions,
) -> Result<()> {
    opts.check()?;
    let w = gamma.len();
    if w == 0 || !(eps.is_finite() && eps > 0.0) {
        return Err(KernelError::Shape(format!(
            "layer_norm needs a non-empty gamma and a finite eps > 0 (got {w} values, eps {eps})"
        )));
    }
    if beta.len() != w {
        return Err(KernelError::Length { what: "beta", expected: w, actual: beta.len(), shape: "gamma's".into() });
    }
    if !x.len().is_multiple_of(w) {
        return Err(KernelError::Length {
            what: "x",
            expected: x.len() / w * w,
            actual: x.len(),
            shape: format!("whole rows of {w}"),
        });
    }
    if let Some(r) = residual
        && r.len() != x.len()
    {
        return Err(KernelError::Length { what: "residual", expected: x.len(), actual: r.len(), shape: "x's".into() });
    }
    let kernel = opts.kernel;
    for_each_row(x, w, 8, opts, &|row, r| {
        let res = residual.map(|v| &v[row * w..(row + 1) * w]);
        dispatch!(
            kernel,
            fn run(r: &mut [f32], res: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32) {
                layer_norm_row(r, res, gamma, beta, eps)
            }
        );
    });
    Ok(())
}

#[inline(always)]
fn softmax_row(r: &mut [f32], fma: bool) {
    let m = lane_max(r);
    // A row of −∞ (max −∞) is shifted by 0 instead, so it becomes 0/0 = NaN like any softmax.
    let m = if m.is_finite() { m } else { 0.0 };
    for x in r.iter_mut() {
        *x = exp_neg(*x - m, fma);
    }
    let inv = 1.0 / lane_sum(r);
    for x in r.iter_mut() {
        *x *= inv;
    }
}

/// Softmax over each row of `width` values, in place (max-shifted; rows of `−∞` give NaN as
/// `0/0`, as every softmax does; finite rows never do).
///
/// # Errors
/// [`KernelError::Length`] if `x` is not whole rows (or `width` is 0).
pub fn softmax(x: &mut [f32], width: usize, opts: &RowOptions) -> Result<()> {
    opts.check()?;
    if width == 0 || !x.len().is_multiple_of(width) {
        return Err(KernelError::Length {
            what: "x",
            expected: x.len().checked_div(width).map_or(0, |r| r * width),
            actual: x.len(),
            shape: format!("whole rows of width {width} (> 0)"),
        });
    }
    let kernel = opts.kernel;
    for_each_row(x, width, 30, opts, &|_, r| {
        dispatch!(
            kernel,
            fn run(r: &mut [f32]) {
                softmax_row(r, FMA)
            }
        );
    });
    Ok(())
}

/// The shape of a multi-head attention call. `q`, `k`, `v` and the output are
/// `[batch, seq, heads · head_dim]` row-major, heads concatenated (the layout the projections
/// produce), so no transpose is needed on either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence (queries and keys).
    pub seq: usize,
    /// Heads.
    pub heads: usize,
    /// Width of each head.
    pub head_dim: usize,
}

impl AttentionDims {
    fn elements(&self) -> Option<usize> {
        self.batch.checked_mul(self.seq)?.checked_mul(self.heads)?.checked_mul(self.head_dim)
    }
}

/// Which keys each query may not see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttentionMask<'a> {
    /// `[batch, seq]`, `true` = a padded key nobody sees.
    pub key_padding: Option<&'a [bool]>,
    /// Hide every key after its query (decoders).
    pub causal: bool,
}

/// Query rows processed together (each loaded key vector feeds this many FMAs).
const QUERY_BLOCK: usize = 4;

/// `seq` rounded up to whole 16-lane vectors: the width of the Kᵀ and score buffers.
fn padded(seq: usize) -> usize {
    seq.div_ceil(16) * 16
}

/// One attention call's operands, shared by every (sequence, head) unit.
#[derive(Clone, Copy)]
struct AttentionJob<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: SharedMut,
    /// Sequences and tokens: `d.seq` is the longest sequence when `offsets` is given.
    d: AttentionDims,
    /// Packed sequences of different lengths: sequence `b` is rows `offsets[b]..offsets[b + 1]`
    /// (`None`: every sequence is `d.seq` rows).
    offsets: Option<&'a [usize]>,
    pad: Option<&'a [bool]>,
    causal: bool,
    scale: f32,
}

impl AttentionJob<'_> {
    /// First row and length of sequence `b`.
    #[inline(always)]
    fn sequence(&self, b: usize) -> (usize, usize) {
        match self.offsets {
            Some(o) => (o[b], o[b + 1] - o[b]),
            None => (b * self.d.seq, self.d.seq),
        }
    }
}

/// Asks for the cache line holding `x` in L1 (a hint: no effect on results).
#[inline(always)]
fn prefetch_l1(x: &f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program can observe; `x` is a valid reference.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((x as *const f32).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

#[inline(always)]
fn attention_unit<V: Lanes>(job: &AttentionJob<'_>, unit: usize, kt: &mut [f32], scores: &mut [f32]) {
    let AttentionJob { q, k, v, out, d, pad, causal, scale, .. } = *job;
    let out = out.get();
    let dh = d.head_dim;
    let w = d.heads * dh;
    let (b, h) = (unit / d.heads, unit % d.heads);
    let (base, t) = job.sequence(b);
    if t == 0 {
        return;
    }
    let tp = padded(t);
    // The next unit's slice of K (the next head of this sequence, or the first head of the
    // next) heads for L1 while this one computes: its rows are strided, which the hardware
    // prefetchers do not follow, and the transpose below stalled on them (a quarter of the
    // kernel's time at 54 tokens).
    if unit + 1 < d.batch * d.heads {
        let (nb, nh) = ((unit + 1) / d.heads, (unit + 1) % d.heads);
        let (nbase, nt) = job.sequence(nb);
        let first = nbase * w + nh * dh;
        for j in 0..nt {
            let row = &k[first + j * w..first + j * w + dh];
            let mut e = 0;
            while e < dh {
                prefetch_l1(&row[e]);
                e += 16;
            }
            prefetch_l1(&row[dh - 1]);
        }
    }
    // Kᵀ of this head, [dh, tp] with zero columns past t, so that each query's scores are
    // whole-vector AXPYs over the keys.
    for j in 0..t {
        let row = &k[(base + j) * w + h * dh..][..dh];
        for (e, &x) in row.iter().enumerate() {
            kt[e * tp + j] = x;
        }
    }
    let pad = pad.map(|p| &p[base..base + t]);
    let block = &mut scores[..QUERY_BLOCK * tp];
    let mut i0 = 0;
    while i0 < t {
        let rows = QUERY_BLOCK.min(t - i0);
        // The block's query rows, read in place (a missing row repeats the last one; its scores
        // are never stored).
        let qr: [&[f32]; QUERY_BLOCK] = std::array::from_fn(|r| &q[(base + i0 + r.min(rows - 1)) * w + h * dh..][..dh]);
        // Two vectors of keys per tile (32 on AVX-512), then one (tp is a multiple of 16).
        let mut jc = 0;
        while jc + 2 * V::N <= tp {
            score_tile::<V, 2>(&qr, &kt[jc..], tp, dh, scale, &mut block[jc..], rows);
            jc += 2 * V::N;
        }
        while jc < tp {
            score_tile::<V, 1>(&qr, &kt[jc..], tp, dh, scale, &mut block[jc..], rows);
            jc += V::N;
        }
        for (r, row) in block.chunks_exact_mut(tp).take(rows).enumerate() {
            let i = i0 + r;
            // The padding keys past t take no weight (exp(−∞) = 0), so the softmax runs over
            // whole 16-lane vectors.
            row[t..].fill(f32::NEG_INFINITY);
            let s = &mut row[..t];
            if let Some(p) = pad {
                for (x, &hidden) in s.iter_mut().zip(p) {
                    if hidden {
                        *x = MASKED_SCORE;
                    }
                }
            }
            if causal {
                for x in &mut s[i + 1..] {
                    *x = MASKED_SCORE;
                }
            }
            softmax_row(row, V::FMA);
        }
        // Rows past the block's end take part in the P·V tiles below as zeros.
        for s in block.chunks_exact_mut(tp).skip(rows) {
            s.fill(0.0);
        }
        // P·V for the whole block in register tiles of QUERY_BLOCK rows × 32 / 16 / 1 columns:
        // each value row is loaded once for every query of the block.
        let v0 = base * w + h * dh;
        let o0 = (base + i0) * w + h * dh;
        let mut c = 0;
        while c + 2 * V::N <= dh {
            pv_tile_v::<V, 2>(block, tp, t, &v[v0 + c..], w, out, o0 + c, rows);
            c += 2 * V::N;
        }
        while c + V::N <= dh {
            pv_tile_v::<V, 1>(block, tp, t, &v[v0 + c..], w, out, o0 + c, rows);
            c += V::N;
        }
        while c < dh {
            pv_tile::<1>(block, tp, t, v, v0, w, c, out, o0, rows);
            c += 1;
        }
        i0 += rows;
    }
}

/// Scores of the block's query rows × `NV` vectors of keys: `out[r·tp ..][..NV·N] = scale ·
/// Σ_e q_r[e] · kt[e·tp ..][..NV·N]` for `r < rows`, accumulated in vector registers.
#[inline(always)]
fn score_tile<V: Lanes, const NV: usize>(
    qr: &[&[f32]; QUERY_BLOCK],
    kt: &[f32],
    tp: usize,
    dh: usize,
    scale: f32,
    out: &mut [f32],
    rows: usize,
) {
    let width = NV * V::N;
    assert!(
        kt.len() >= (dh - 1) * tp + width && out.len() >= (rows - 1) * tp + width && qr.iter().all(|r| r.len() >= dh)
    );
    // SAFETY: the lengths checked above bound every access; the dispatcher picked a `V` whose
    // features this CPU has.
    unsafe {
        let mut acc = [[V::zero(); NV]; QUERY_BLOCK];
        for e in 0..dh {
            let kp = kt.as_ptr().add(e * tp);
            let kv: [V; NV] = std::array::from_fn(|i| V::load(kp.add(i * V::N)));
            for (a, q) in acc.iter_mut().zip(qr) {
                let qv = V::splat(*q.get_unchecked(e));
                for (x, &k) in a.iter_mut().zip(&kv) {
                    *x = V::fma(qv, k, *x);
                }
            }
        }
        let sv = V::splat(scale);
        for (r, a) in acc.iter().enumerate().take(rows) {
            for (i, &x) in a.iter().enumerate() {
                V::fma(x, sv, V::zero()).store(out.as_mut_ptr().add(r * tp + i * V::N));
            }
        }
    }
}

/// `out[o0 + r·stride ..][..NV·N] = Σ_{j < t} p[r·tp + j] · v[j·stride ..][..NV·N]` for the
/// block's `rows` query rows, accumulated in vector registers (each value row loaded once per
/// block).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pv_tile_v<V: Lanes, const NV: usize>(
    p: &[f32],
    tp: usize,
    t: usize,
    v: &[f32],
    stride: usize,
    out: *mut f32,
    o0: usize,
    rows: usize,
) {
    assert!(p.len() >= QUERY_BLOCK * tp && tp >= t && v.len() >= (t - 1) * stride + NV * V::N);
    // SAFETY: the lengths checked above bound the reads; the writes are query rows of this
    // block, columns o0..o0 + NV·N of this head, which belong to this (sequence, head) unit
    // only; the dispatcher picked a `V` whose features this CPU has.
    unsafe {
        let mut acc = [[V::zero(); NV]; QUERY_BLOCK];
        for j in 0..t {
            let vp = v.as_ptr().add(j * stride);
            let vv: [V; NV] = std::array::from_fn(|i| V::load(vp.add(i * V::N)));
            for (r, a) in acc.iter_mut().enumerate() {
                let pj = V::splat(*p.get_unchecked(r * tp + j));
                for (x, &y) in a.iter_mut().zip(&vv) {
                    *x = V::fma(pj, y, *x);
                }
            }
        }
        for (r, a) in acc.iter().enumerate().take(rows) {
            for (i, &x) in a.iter().enumerate() {
                x.store(out.add(o0 + r * stride + i * V::N));
            }
        }
    }
}

/// `out[o0 + r·stride + c ..][..W] = Σ_j p[r][j] · v[v0 + j·stride + c ..][..W]` for the block's
/// `rows` query rows (`p` rows of `tp`, `t` keys), accumulated in registers.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pv_tile<const W: usize>(
    p: &[f32],
    tp: usize,
    t: usize,
    v: &[f32],
    v0: usize,
    stride: usize,
    c: usize,
    out: *mut f32,
    o0: usize,
    rows: usize,
) {
    let mut acc = [[0f32; W]; QUERY_BLOCK];
    for j in 0..t {
        let start = v0 + j * stride + c;
        let vr = &v[start..start + W];
        for (r, a) in acc.iter_mut().enumerate() {
            let pj = p[r * tp + j];
            for (x, &y) in a.iter_mut().zip(vr) {
                *x += pj * y;
            }
        }
    }
    for (r, a) in acc.iter().enumerate().take(rows) {
        // SAFETY: query row (block start + r), columns c..c + W of this head belong to this
        // (sequence, head) unit only.
        let o = unsafe { std::slice::from_raw_parts_mut(out.add(o0 + r * stride + c), W) };
        o.copy_from_slice(a);
    }
}

/// Multi-head attention `softmax(scale·Q·Kᵀ + mask)·V` per (sequence, head), written into `out`
/// in the same heads-concatenated layout. Only one block of 4 score rows per thread is ever
/// held (no `[batch, heads, seq, seq]` tensor); hidden keys score [`MASKED_SCORE`].
///
/// # Errors
/// [`KernelError::Length`] if a buffer does not match `dims` or the padding mask is not
/// `batch · seq`; [`KernelError::Shape`] for a zero dimension, a size overflow or a non-finite
/// `scale`; [`KernelError::KernelUnavailable`] for a kernel this CPU lacks.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: AttentionDims,
    mask: AttentionMask<'_>,
    scale: f32,
    out: &mut [f32],
    opts: &RowOptions,
) -> Result<()> {
    opts.check()?;
    let n = dims
        .elements()
        .filter(|_| dims.batch > 0 && dims.seq > 0 && dims.heads > 0 && dims.head_dim > 0)
        .ok_or_else(|| KernelError::Shape(format!("attention needs positive dimensions that fit, got {dims:?}")))?;
    if !scale.is_finite() {
        return Err(KernelError::Shape(format!("attention scale must be finite, got {scale}")));
    }
    let shape = format!("[{}, {}, {}·{}]", dims.batch, dims.seq, dims.heads, dims.head_dim);
    for (what, len) in [("q", q.len()), ("k", k.len()), ("v", v.len()), ("out", out.len())] {
        if len != n {
            return Err(KernelError::Length { what, expected: n, actual: len, shape: shape.clone() });
        }
    }
    if let Some(p) = mask.key_padding
        && p.len() != dims.batch * dims.seq
    {
        return Err(KernelError::Length {
            what: "key_padding",
            expected: dims.batch * dims.seq,
            actual: p.len(),
            shape: format!("[{}, {}]", dims.batch, dims.seq),
        });
    }
    let job = AttentionJob {
        q,
        k,
        v,
        out: SharedMut(out.as_mut_ptr()),
        d: dims,
        offsets: None,
        pad: mask.key_padding,
        causal: mask.causal,
        scale,
    };
    run_attention(&job, n.saturating_mul(dims.seq).saturating_mul(4), opts);
    Ok(())
}

/// [`attention`] over packed sequences of different lengths: sequence `s` is the `lengths[s]`
/// rows that follow the previous sequence's in `q`, `k`, `v` and `out` (each
/// `[Σ lengths, heads · head_dim]`, heads concatenated), and attends to its own rows only
/// (with `causal`, to those up to itself). This is how a padded batch runs without its
/// padding: the padded positions are simply not there. A sequence of length 0 is allowed
/// and has no rows.
///
/// # Errors
/// [`KernelError::Length`] if a buffer does not hold `Σ lengths` rows; [`KernelError::Shape`]
/// for no sequences, a zero head count or width, a size overflow or a non-finite `scale`;
/// [`KernelError::KernelUnavailable`] for a kernel this CPU lacks.
///
/// ```
/// use ember_kernels::fused::{attention_packed, RowOptions};
/// // Two sequences of 1 and 2 tokens, one head of width 1.
/// let (q, k, v) = ([1.0f32, 1.0, 1.0], [0.0f32, 0.0, 0.0], [5.0f32, 1.0, 3.0]);
/// let mut out = [0f32; 3];
/// attention_packed(&q, &k, &v, &[1, 2], 1, 1, false, 1.0, &mut out, &RowOptions::default()).unwrap();
/// // Equal scores: each token averages the values of its own sequence.
/// assert_eq!(out, [5.0, 2.0, 2.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn attention_packed(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lengths: &[usize],
    heads: usize,
    head_dim: usize,
    causal: bool,
    scale: f32,
    out: &mut [f32],
    opts: &RowOptions,
) -> Result<()> {
    opts.check()?;
    let mut offsets = Vec::with_capacity(lengths.len() + 1);
    offsets.push(0usize);
    let (mut rows, mut longest, mut work) = (0usize, 0usize, 0usize);
    for &l in lengths {
        rows = rows.checked_add(l).ok_or_else(|| KernelError::Shape("attention_packed: Σ lengths overflows".into()))?;
        longest = longest.max(l);
        work = work.saturating_add(l.saturating_mul(l));
        offsets.push(rows);
    }
    let width = heads.checked_mul(head_dim);
    let n = width.and_then(|w| w.checked_mul(rows)).filter(|_| !lengths.is_empty() && heads > 0 && head_dim > 0);
    let Some(n) = n else {
        return Err(KernelError::Shape(format!(
            "attention_packed needs at least one sequence and positive heads and head width that fit, got {} \
             sequences, {heads} heads of {head_dim}",
            lengths.len()
        )));
    };
    if !scale.is_finite() {
        return Err(KernelError::Shape(format!("attention scale must be finite, got {scale}")));
    }
    let shape = format!("[{rows} (Σ lengths), {heads}·{head_dim}]");
    for (what, len) in [("q", q.len()), ("k", k.len()), ("v", v.len()), ("out", out.len())] {
        if len != n {
            return Err(KernelError::Length { what, expected: n, actual: len, shape: shape.clone() });
        }
    }
    if rows == 0 {
        return Ok(());
    }
    let dims = AttentionDims { batch: lengths.len(), seq: longest, heads, head_dim };
    let job = AttentionJob {
        q,
        k,
        v,
        out: SharedMut(out.as_mut_ptr()),
        d: dims,
        offsets: Some(&offsets),
        pad: None,
        causal,
        scale,
    };
    run_attention(&job, work.saturating_mul(heads * head_dim).saturating_mul(4), opts);
    Ok(())
}

/// Runs every (sequence, head) unit of a checked job over the pool.
fn run_attention(job: &AttentionJob<'_>, work: usize, opts: &RowOptions) {
    let dims = job.d;
    let units = dims.batch * dims.heads;
    let parts = opts.parts(work, units);
    let kernel = opts.kernel;
    let (t, dh) = (dims.seq, dims.head_dim);
    split(units, parts, &|range| {
        let tp = padded(t);
        let mut kt = vec![0f32; dh * tp];
        // Score rows of one query block.
        let mut scores = vec![0f32; QUERY_BLOCK * tp];
        for unit in range {
            let (kt, scores) = (&mut kt[..], &mut scores[..]);
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2(job: &AttentionJob<'_>, unit: usize, kt: &mut [f32], scores: &mut [f32]) {
                attention_unit::<std::arch::x86_64::__m256>(job, unit, kt, scores)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512(job: &AttentionJob<'_>, unit: usize, kt: &mut [f32], scores: &mut [f32]) {
                attention_unit::<std::arch::x86_64::__m512>(job, unit, kt, scores)
            }
            match kernel {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `RowOptions::check` verified the features on this CPU.
                RowKernel::Avx2 => unsafe { avx2(job, unit, kt, scores) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                RowKernel::Avx512 => unsafe { avx512(job, unit, kt, scores) },
                _ => attention_unit::<Scalar8>(job, unit, kt, scores),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    fn rng(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    fn kernels() -> Vec<RowKernel> {
        RowKernel::supported()
    }

    fn opts(kernel: RowKernel, threads: usize) -> RowOptions {
        RowOptions { kernel, threads }
    }

    #[test]
    fn exp_erf_tanh_are_accurate() {
        // Both forms: separate multiplies and adds (scalar kernel) and fused (vector kernels).
        for fma in [false, true] {
            for i in 0..=8700 {
                let x = -(i as f32) / 100.0;
                let rel = ((f64::from(exp_neg(x, fma)) - f64::from(x).exp()) / f64::from(x).exp()).abs();
                assert!(rel < 1e-6, "exp({x}) relative error {rel} (fma {fma})");
            }
            assert_eq!(exp_neg(-1000.0, fma), 0.0);
            assert_eq!(exp_neg(f32::NEG_INFINITY, fma), 0.0);
            assert!(exp_neg(f32::NAN, fma).is_nan());
            let mut worst = 0f64;
            for i in -800..=800 {
                let x = i as f64 / 100.0;
                worst = worst.max((f64::from(erf(x as f32, fma)) - reference::erf_f64(x)).abs());
                let th = (f64::from(tanh(x as f32, fma)) - x.tanh()).abs();
                assert!(th < 5e-7, "tanh({x}) error {th} (fma {fma})");
            }
            assert!(worst < 5e-7, "erf max error {worst} (fma {fma})");
            assert!(erf(f32::INFINITY, fma) == 1.0 && erf(f32::NEG_INFINITY, fma) == -1.0);
        }
    }

    #[test]
    fn gelu_forms_match_the_reference_on_every_kernel() {
        let mut r = rng(1);
        let x: Vec<f32> = (0..5000).map(|i| r() * if i % 7 == 0 { 30.0 } else { 4.0 }).collect();
        for k in kernels() {
            for threads in [1, 2] {
                let mut a = x.clone();
                gelu(&mut a, &opts(k, threads)).unwrap();
                let mut b = x.clone();
                gelu_tanh(&mut b, &opts(k, threads)).unwrap();
                for ((p, q), &x) in a.iter().zip(&b).zip(&x) {
                    let x64 = f64::from(x);
                    let want = reference::gelu_f64(x64);
                    assert!(
                        (f64::from(*p) - want).abs() <= 1e-6 * (1.0 + want.abs()),
                        "{k} gelu({x}) = {p}, want {want}"
                    );
                    let want = reference::gelu_tanh_f64(x64);
                    assert!((f64::from(*q) - want).abs() <= 1e-6 * (1.0 + want.abs()), "{k} gelu_tanh({x}) = {q}");
                }
            }
        }
        let mut nan = [f32::NAN, 1.0];
        gelu(&mut nan, &RowOptions::default()).unwrap();
        assert!(nan[0].is_nan() && (nan[1] - 0.841_344_7).abs() < 1e-6);
    }

    #[test]
    fn layer_norm_matches_the_reference_on_every_kernel() {
        let mut r = rng(2);
        for &(rows, w) in &[(1usize, 1usize), (3, 5), (7, 16), (33, 384), (5, 1000)] {
            let x: Vec<f32> = (0..rows * w).map(|i| r() * 10.0 + (i % 3) as f32).collect();
            let res: Vec<f32> = (0..rows * w).map(|_| r() * 100.0).collect();
            let g: Vec<f32> = (0..w).map(|_| r() + 1.0).collect();
            let b: Vec<f32> = (0..w).map(|_| r()).collect();
            for with_res in [false, true] {
                let want = reference::layer_norm_f64(&x, with_res.then_some(&res[..]), &g, &b, 1e-5);
                for k in kernels() {
                    for threads in [1, 2] {
                        let mut y = x.clone();
                        layer_norm(&mut y, with_res.then_some(&res[..]), &g, &b, 1e-5, &opts(k, threads)).unwrap();
                        let err = y.iter().zip(&want).map(|(p, q)| (f64::from(*p) - q).abs()).fold(0f64, f64::max);
                        assert!(err < 2e-5, "{k} rows {rows} width {w} residual {with_res}: error {err}");
                    }
                }
            }
        }
        // A constant row normalizes to beta (variance 0, eps keeps it finite).
        let mut c = vec![3.0f32; 8];
        layer_norm(&mut c, None, &[2.0; 8], &[0.5; 8], 1e-12, &RowOptions::default()).unwrap();
        assert!(c.iter().all(|&v| v == 0.5), "{c:?}");
    }

    #[test]
    fn layer_norm_and_softmax_reject_bad_shapes() {
        let o = RowOptions::default();
        let mut x = vec![0f32; 10];
        assert!(matches!(layer_norm(&mut x, None, &[1.0; 4], &[0.0; 4], 1e-5, &o), Err(KernelError::Length { .. })));
        assert!(matches!(layer_norm(&mut x, None, &[1.0; 5], &[0.0; 4], 1e-5, &o), Err(KernelError::Length { .. })));
        assert!(layer_norm(&mut x, Some(&[0.0; 9]), &[1.0; 5], &[0.0; 5], 1e-5, &o).is_err());
        assert!(layer_norm(&mut x, None, &[], &[], 1e-5, &o).is_err());
        assert!(layer_norm(&mut x, None, &[1.0; 5], &[0.0; 5], 0.0, &o).is_err());
        assert!(layer_norm(&mut x, None, &[1.0; 5], &[0.0; 5], f32::NAN, &o).is_err());
        assert!(softmax(&mut x, 3, &o).is_err());
        assert!(softmax(&mut x, 0, &o).is_err());
        assert_eq!(x, vec![0f32; 10], "errors leave the data alone");
    }

    #[test]
    fn softmax_matches_the_reference_including_extremes() {
        let mut r = rng(3);
        for &w in &[1usize, 2, 15, 16, 17, 100] {
            let x: Vec<f32> = (0..4 * w).map(|i| r() * if i % 5 == 0 { 80.0 } else { 3.0 }).collect();
            let want = reference::softmax_f64(&x, w);
            for k in kernels() {
                let mut y = x.clone();
                softmax(&mut y, w, &opts(k, 1)).unwrap();
                let err = y.iter().zip(&want).map(|(p, q)| (f64::from(*p) - q).abs()).fold(0f64, f64::max);
                assert!(err < 1e-6, "{k} width {w}: {err}");
            }
        }
        let mut nan = vec![f32::NAN, 0.0, 1.0];
        softmax(&mut nan, 3, &RowOptions::default()).unwrap();
        assert!(nan.iter().all(|v| v.is_nan()), "a NaN score makes the row NaN: {nan:?}");
        let mut big = vec![1e30f32, 0.0, -1e30];
        softmax(&mut big, 3, &RowOptions::default()).unwrap();
        assert_eq!(big, vec![1.0, 0.0, 0.0]);
    }

    fn attention_case(b: usize, t: usize, h: usize, dh: usize, pad: Option<Vec<bool>>, causal: bool, seed: u64) {
        let mut r = rng(seed);
        let n = b * t * h * dh;
        let q: Vec<f32> = (0..n).map(|_| r() * 3.0).collect();
        let k: Vec<f32> = (0..n).map(|_| r() * 3.0).collect();
        let v: Vec<f32> = (0..n).map(|_| r()).collect();
        let scale = 1.0 / (dh as f32).sqrt();
        let want = reference::attention_f64(&q, &k, &v, b, t, h, dh, pad.as_deref(), causal, scale);
        for kernel in kernels() {
            for threads in [1, 2] {
                let mut out = vec![f32::NAN; n];
                let mask = AttentionMask { key_padding: pad.as_deref(), causal };
                let dims = AttentionDims { batch: b, seq: t, heads: h, head_dim: dh };
                attention(&q, &k, &v, dims, mask, scale, &mut out, &opts(kernel, threads)).unwrap();
                let err = out.iter().zip(&want).map(|(p, q)| (f64::from(*p) - q).abs()).fold(0f64, f64::max);
                assert!(err < 2e-5, "{kernel} b{b} t{t} h{h} dh{dh} causal {causal}: error {err}");
            }
        }
    }

    #[test]
    fn attention_matches_the_reference_with_every_mask() {
        attention_case(1, 1, 1, 1, None, false, 1);
        attention_case(2, 5, 3, 4, None, false, 2);
        attention_case(2, 5, 3, 4, None, true, 3);
        let pad: Vec<bool> = (0..3 * 7).map(|i| i % 7 >= 4 + i / 7).collect();
        attention_case(3, 7, 2, 16, Some(pad.clone()), false, 4);
        attention_case(3, 7, 2, 16, Some(pad), true, 5);
        // Every key of one sequence hidden: a uniform average of the values, no NaN.
        let all: Vec<bool> = (0..2 * 6).map(|i| i >= 6).collect();
        attention_case(2, 6, 4, 8, Some(all), false, 6);
        attention_case(2, 6, 4, 8, Some(vec![false; 12]), false, 7);
        // Long sequences, wide heads, enough work to split over threads.
        attention_case(2, 130, 4, 64, None, true, 8);
        attention_case(4, 33, 12, 32, None, false, 9);
    }

    /// Packed sequences against the padded reference: each sequence's rows equal those of the
    /// same sequence padded to the longest with its padding hidden.
    fn packed_case(lengths: &[usize], h: usize, dh: usize, causal: bool, seed: u64) {
        let mut r = rng(seed);
        let (b, t, w) = (lengths.len(), lengths.iter().copied().max().unwrap_or(0).max(1), h * dh);
        let n = b * t * w;
        let q: Vec<f32> = (0..n).map(|_| r() * 3.0).collect();
        let k: Vec<f32> = (0..n).map(|_| r() * 3.0).collect();
        let v: Vec<f32> = (0..n).map(|_| r()).collect();
        let pad: Vec<bool> = (0..b * t).map(|i| i % t >= lengths[i / t]).collect();
        let scale = 1.0 / (dh as f32).sqrt();
        let want = reference::attention_f64(&q, &k, &v, b, t, h, dh, Some(&pad), causal, scale);
        let real: Vec<usize> = (0..b * t).filter(|&i| !pad[i]).collect();
        let pack = |x: &[f32]| -> Vec<f32> { real.iter().flat_map(|&i| x[i * w..(i + 1) * w].to_vec()).collect() };
        let (qp, kp, vp) = (pack(&q), pack(&k), pack(&v));
        for kernel in kernels() {
            for threads in [1, 2] {
                let mut out = vec![f32::NAN; qp.len()];
                attention_packed(&qp, &kp, &vp, lengths, h, dh, causal, scale, &mut out, &opts(kernel, threads))
                    .unwrap();
                for (row, &i) in real.iter().enumerate() {
                    for c in 0..w {
                        let err = (f64::from(out[row * w + c]) - want[i * w + c]).abs();
                        assert!(err < 2e-5, "{kernel} {lengths:?} h{h} dh{dh} causal {causal}: row {row} error {err}");
                    }
                }
            }
        }
    }

    #[test]
    fn packed_attention_matches_the_padded_reference() {
        packed_case(&[1], 1, 1, false, 11);
        packed_case(&[5, 2, 7], 3, 4, false, 12);
        packed_case(&[5, 2, 7], 3, 4, true, 13);
        // Empty sequences have no rows; lengths across vector widths and query blocks.
        packed_case(&[0, 17, 0, 33, 1, 16], 2, 16, false, 14);
        packed_case(&[40, 3, 65], 4, 32, true, 15);
        packed_case(&[9, 30, 2, 12, 31], 12, 24, false, 16);
    }

    #[test]
    fn packed_attention_rejects_bad_shapes() {
        let o = RowOptions::default();
        let x = [0f32; 6];
        let mut out = [0f32; 6];
        assert!(attention_packed(&x, &x, &x, &[], 1, 2, false, 1.0, &mut out, &o).is_err());
        assert!(attention_packed(&x, &x, &x, &[1, 1], 0, 2, false, 1.0, &mut out, &o).is_err());
        assert!(attention_packed(&x, &x, &x, &[1, 1], 1, 2, false, 1.0, &mut out, &o).is_err(), "4 values, 6 given");
        assert!(attention_packed(&x, &x, &x, &[usize::MAX, 2], 1, 2, false, 1.0, &mut out, &o).is_err());
        assert!(attention_packed(&x, &x, &x, &[1, 2], 1, 2, false, f32::INFINITY, &mut out, &o).is_err());
        attention_packed(&x, &x, &x, &[1, 2], 1, 2, false, 1.0, &mut out, &o).unwrap();
        attention_packed(&[], &[], &[], &[0, 0], 1, 2, false, 1.0, &mut [], &o).unwrap();
    }

    #[test]
    fn attention_rejects_bad_shapes() {
        let o = RowOptions::default();
        let d = AttentionDims { batch: 1, seq: 2, heads: 1, head_dim: 2 };
        let x = [0f32; 4];
        let mut out = [0f32; 4];
        let m = AttentionMask::default();
        assert!(attention(&x, &x, &x[..3], d, m, 1.0, &mut out, &o).is_err());
        assert!(attention(&x, &x, &x, AttentionDims { seq: 0, ..d }, m, 1.0, &mut out, &o).is_err());
        assert!(attention(&x, &x, &x, d, m, f32::NAN, &mut out, &o).is_err());
        let bad = [true; 3];
        let m2 = AttentionMask { key_padding: Some(&bad), causal: false };
        assert!(attention(&x, &x, &x, d, m2, 1.0, &mut out, &o).is_err());
        let huge = AttentionDims { batch: usize::MAX, seq: 2, heads: 2, head_dim: 2 };
        assert!(attention(&x, &x, &x, huge, m, 1.0, &mut out, &o).is_err());
        attention(&x, &x, &x, d, m, 1.0, &mut out, &o).unwrap();
        // A NaN query propagates to its output row, as Burn's ops do.
        let q = [f32::NAN, 0.0, 1.0, 1.0];
        attention(&q, &x, &x, d, m, 1.0, &mut out, &o).unwrap();
        assert!(out[..2].iter().all(|v| v.is_nan()) && out[2..].iter().all(|v| v.is_finite()), "{out:?}");
    }

    #[test]
    fn unsupported_kernels_are_errors() {
        for k in RowKernel::ALL.into_iter().filter(|k| !k.is_supported()) {
            let mut v = [1f32; 4];
            assert!(matches!(gelu(&mut v, &opts(k, 1)), Err(KernelError::KernelUnavailable { .. })));
            let e = crate::sgemm::sgemm(&[1.0], &[1.0], None, 1, 1, 1, &mut v[..1], &opts(k, 1));
            assert!(matches!(e, Err(KernelError::KernelUnavailable { .. })));
        }
        assert!(RowKernel::supported().contains(&RowKernel::selected()));
    }
}
