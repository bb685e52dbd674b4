//! The GEMM entry points, their operands and epilogues, and the blocking/threading driver.
//!
//! # The math
//! With A quantized per row (`A_real[m, k] = s_a[m]·(A[m, k] − z_a[m])`, `A` in u8, or i8
//! handled as u8 with the zero point shifted by 128) and B symmetric i8 per output channel or
//! per group along K (`B_real[k, n] = s_b[g(k), n]·B[k, n]`):
//!
//! ```text
//! acc[m, n]   = Σ_k A[m, k]·B[k, n]                     (i32, the micro-kernel)
//! exact[m, n] = acc[m, n] − z_a[m]·Σ_k B[k, n]          (zero-point correction, column sums
//!                                                        precomputed when B is packed)
//! C[m, n]     = Σ_g s_a[m]·s_b[g, n]·exact_g[m, n] + bias[n]          (f32 epilogue)
//! Q[m, n]     = saturate(round_half_even(C[m, n] / s_o) + z_o)        (requantize epilogue)
//! ```

use crate::abuf::AlignedBuf;
use crate::dispatch::KernelId;
use crate::error::{KernelError, Result, check_len, mul};
use crate::microkernel::{self, DirectI32, Job, Tile};
use crate::pack::{MAX_EXACT_K, PackedB};
use crate::pool;
use crate::quantize::{Granularity, QInt, QuantParams, params_u8};
use std::cell::RefCell;

/// A per-row (per-token) or per-tensor activation parameter.
#[derive(Clone, Copy, Debug)]
pub enum RowParam<'a, T> {
    /// One value for every row.
    PerTensor(T),
    /// One value per row (`M` values).
    PerRow(&'a [T]),
}

impl<T: Copy> RowParam<'_, T> {
    #[inline(always)]
    fn get(&self, r: usize) -> T {
        match self {
            RowParam::PerTensor(v) => *v,
            RowParam::PerRow(v) => v[r],
        }
    }
    fn check_len(&self, what: &'static str, m: usize) -> Result<()> {
        match self {
            RowParam::PerTensor(_) => Ok(()),
            RowParam::PerRow(v) => check_len(what, v.len(), m, || format!("one per row, M = {m}")),
        }
    }
    fn values(&self) -> &[T] {
        match self {
            RowParam::PerTensor(v) => std::slice::from_ref(v),
            RowParam::PerRow(v) => v,
        }
    }
}

/// Quantized activation storage.
#[derive(Clone, Copy, Debug)]
pub enum ActivationData<'a> {
    /// Unsigned (affine) activations, `[M × K]` row-major.
    U8(&'a [u8]),
    /// Signed activations, `[M × K]` row-major (symmetric: zero point 0).
    I8(&'a [i8]),
}

/// The left operand `A[M × K]`: quantized activations with their parameters.
#[derive(Clone, Copy, Debug)]
pub struct Activations<'a> {
    /// Row-major quantized values.
    pub data: ActivationData<'a>,
    /// Rows.
    pub m: usize,
    /// Columns (the reduction length).
    pub k: usize,
    /// Zero points, in the domain of the data (`[0, 255]` for u8, `[−128, 127]` for i8).
    pub zero_points: RowParam<'a, i32>,
    /// Scales (used by the f32 and requantizing epilogues; ignored for i32 output).
    pub scales: RowParam<'a, f32>,
}

impl<'a> Activations<'a> {
    /// u8 activations with per-tensor zero point `zero_point` and scale 1.
    pub fn u8(data: &'a [u8], m: usize, k: usize, zero_point: i32) -> Self {
        Activations {
            data: ActivationData::U8(data),
            m,
            k,
            zero_points: RowParam::PerTensor(zero_point),
            scales: RowParam::PerTensor(1.0),
        }
    }

    /// Symmetric i8 activations (zero point 0, scale 1).
    pub fn i8(data: &'a [i8], m: usize, k: usize) -> Self {
        Activations {
            data: ActivationData::I8(data),
            m,
            k,
            zero_points: RowParam::PerTensor(0),
            scales: RowParam::PerTensor(1.0),
        }
    }

    /// Replaces the scales.
    pub fn with_scales(mut self, scales: RowParam<'a, f32>) -> Self {
        self.scales = scales;
        self
    }

    /// Replaces the zero points.
    pub fn with_zero_points(mut self, zero_points: RowParam<'a, i32>) -> Self {
        self.zero_points = zero_points;
        self
    }
}

/// Scales of the symmetric int8 weights.
#[derive(Clone, Copy, Debug)]
pub enum WeightScales<'a> {
    /// One scale for the whole matrix.
    PerTensor(f32),
    /// One scale per output channel (`N` values).
    PerChannel(&'a [f32]),
    /// One scale per K group and output channel, `[num_groups × N]` row-major; needs weights
    /// packed with [`crate::PackOptions::group_size`].
    PerGroup(&'a [f32]),
}

/// Requantized output storage.
#[derive(Debug)]
pub enum QuantizedOutput<'a> {
    /// u8 output, `[M × N]`.
    U8(&'a mut [u8]),
    /// i8 output, `[M × N]`.
    I8(&'a mut [i8]),
}

/// What happens to the i32 accumulators: the fused epilogue.
#[derive(Debug)]
pub enum Epilogue<'a> {
    /// Exact `Σ_k (A[m, k] − z_a[m])·B[k, n]` in i32 (requires `K ≤` [`MAX_EXACT_K`]).
    I32 {
        /// `[M × N]` output.
        out: &'a mut [i32],
    },
    /// Dequantized f32: `s_a[m]·s_b[n]·exact[m, n] + bias[n]` (summed over groups).
    F32 {
        /// Weight scales.
        weight_scales: WeightScales<'a>,
        /// Optional bias, `N` finite values.
        bias: Option<&'a [f32]>,
        /// `[M × N]` output.
        out: &'a mut [f32],
    },
    /// The f32 result requantized with `output` parameters (for chaining int8 layers).
    Requantize {
        /// Weight scales.
        weight_scales: WeightScales<'a>,
        /// Optional bias, `N` finite values.
        bias: Option<&'a [f32]>,
        /// Output scale and zero point.
        output: QuantParams,
        /// `[M × N]` output.
        out: QuantizedOutput<'a>,
    },
}

/// Execution options.
#[derive(Clone, Copy, Debug, Default)]
pub struct GemmOptions {
    /// Threads to use; `0` means every core this process may run on. Shapes too small to gain
    /// from threads run on the calling thread whatever this says.
    pub threads: usize,
}

impl GemmOptions {
    /// Single-threaded.
    pub fn single_thread() -> Self {
        GemmOptions { threads: 1 }
    }

    /// At most `threads` threads.
    pub fn with_threads(threads: usize) -> Self {
        GemmOptions { threads }
    }

    fn resolved_threads(&self) -> usize {
        let max = pool::max_threads();
        if self.threads == 0 { max } else { self.threads.min(max) }
    }
}

// ------------------------------------------------------------------------------------------
// Epilogue state, shared by all threads of one call.

#[derive(Clone, Copy)]
enum OutPtr {
    I32(*mut i32),
    F32(*mut f32),
    U8(*mut u8),
    I8(*mut i8),
}

struct Epi<'a> {
    out: OutPtr,
    n: usize,
    nr: usize,
    zp: RowParam<'a, i32>,
    sa: RowParam<'a, f32>,
    /// Weight scales for the current group, N values.
    sb: &'a [f32],
    bias: Option<&'a [f32]>,
    col_sums: &'a [i32],
    /// Add into the f32 output instead of overwriting (groups after the first).
    accumulate: bool,
    /// For requantization: 1/scale, zero point.
    inv_out: f32,
    zp_out: i32,
}

// SAFETY: the raw output pointer is only written at disjoint tiles by different threads.
unsafe impl Sync for Epi<'_> {}

impl Epi<'_> {
    #[inline(always)]
    fn tile_body(&self, t: &Tile) {
        let col0 = t.panel * self.nr;
        if col0 >= self.n {
            return;
        }
        let cols = self.nr.min(self.n - col0);
        let cs = &self.col_sums[col0..col0 + cols];
        let sb = &self.sb[col0.min(self.sb.len())..(col0 + cols).min(self.sb.len())];
        let bias = self.bias.map(|b| &b[col0..col0 + cols]);
        for r in 0..t.rows {
            let row = t.row + r;
            // SAFETY: the kernel wrote `rows × ld` accumulators with ld ≥ cols.
            let acc = unsafe { std::slice::from_raw_parts(t.acc.add(r * t.ld), cols) };
            let zp = self.zp.get(row);
            let off = row * self.n + col0;
            // SAFETY (all arms): `off + cols ≤ M·N` and no other thread writes this tile.
            match self.out {
                OutPtr::I32(o) => {
                    // SAFETY: see above.
                    let o = unsafe { std::slice::from_raw_parts_mut(o.add(off), cols) };
                    for c in 0..cols {
                        o[c] = acc[c].wrapping_sub(zp.wrapping_mul(cs[c]));
                    }
                }
                OutPtr::F32(o) => {
                    // SAFETY: see above.
                    let o = unsafe { std::slice::from_raw_parts_mut(o.add(off), cols) };
                    let sa = self.sa.get(row);
                    if self.accumulate {
                        for c in 0..cols {
                            o[c] += acc[c].wrapping_sub(zp.wrapping_mul(cs[c])) as f32 * (sa * sb[c]);
                        }
                    } else if let Some(bias) = bias {
                        for c in 0..cols {
                            o[c] = acc[c].wrapping_sub(zp.wrapping_mul(cs[c])) as f32 * (sa * sb[c]) + bias[c];
                        }
                    } else {
                        for c in 0..cols {
                            o[c] = acc[c].wrapping_sub(zp.wrapping_mul(cs[c])) as f32 * (sa * sb[c]);
                        }
                    }
                }
                OutPtr::U8(o) => {
                    // SAFETY: see above.
                    let o = unsafe { std::slice::from_raw_parts_mut(o.add(off), cols) };
                    self.requant_row(acc, zp, row, cs, sb, bias, o);
                }
                OutPtr::I8(o) => {
                    // SAFETY: see above.
                    let o = unsafe { std::slice::from_raw_parts_mut(o.add(off), cols) };
                    self.requant_row(acc, zp, row, cs, sb, bias, o);
                }
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn requant_row<T: QInt>(
        &self,
        acc: &[i32],
        zp: i32,
        row: usize,
        cs: &[i32],
        sb: &[f32],
        bias: Option<&[f32]>,
        o: &mut [T],
    ) {
        let sa = self.sa.get(row);
        let lo = (T::MIN - self.zp_out) as f32;
        let hi = (T::MAX - self.zp_out) as f32;
        for c in 0..o.len() {
            let v = acc[c].wrapping_sub(zp.wrapping_mul(cs[c])) as f32 * (sa * sb[c]) + bias.map_or(0.0, |b| b[c]);
            let q = (v * self.inv_out).round_ties_even().max(lo).min(hi) as i32 + self.zp_out;
            o[c] = T::from_i32(q);
        }
    }

    fn tile(&self, t: &Tile) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512dq") {
                // SAFETY: the CPU supports the enabled features.
                return unsafe { self.tile_avx512(t) };
            }
            #[target_feature(enable = "avx2,fma")]
            fn v256(e: &Epi<'_>, t: &Tile) {
                e.tile_body(t)
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports the enabled features.
                return unsafe { v256(self, t) };
            }
        }
        self.tile_body(t)
    }

    /// The i32 and f32 epilogues in AVX-512 with masked column tails; requantization goes
    /// through the portable body.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    fn tile_avx512(&self, t: &Tile) {
        use std::arch::x86_64::*;
        let col0 = t.panel * self.nr;
        if col0 >= self.n {
            return;
        }
        if matches!(self.out, OutPtr::U8(_) | OutPtr::I8(_)) {
            return self.tile_body(t);
        }
        let cols = self.nr.min(self.n - col0);
        if cols == self.nr {
            // SAFETY: a full tile: `nr` columns inside N for every row of the tile.
            unsafe {
                match self.nr {
                    16 => return self.full_tile_avx512::<1>(t, col0),
                    32 => return self.full_tile_avx512::<2>(t, col0),
                    64 => return self.full_tile_avx512::<4>(t, col0),
                    _ => {}
                }
            }
        }
        // SAFETY: every access is masked to `cols` columns of rows inside the tile and output.
        unsafe {
            let cs_ptr = self.col_sums.as_ptr().add(col0);
            for r in 0..t.rows {
                let row = t.row + r;
                let acc_ptr = t.acc.add(r * t.ld);
                let zp = _mm512_set1_epi32(self.zp.get(row));
                let off = row * self.n + col0;
                let mut c = 0;
                while c < cols {
                    let mask: __mmask16 = if cols - c >= 16 { 0xffff } else { (1u16 << (cols - c)) - 1 };
                    let acc = _mm512_maskz_loadu_epi32(mask, acc_ptr.add(c));
                    let cs = _mm512_maskz_loadu_epi32(mask, cs_ptr.add(c));
                    let exact = _mm512_sub_epi32(acc, _mm512_mullo_epi32(zp, cs));
                    match self.out {
                        OutPtr::I32(o) => _mm512_mask_storeu_epi32(o.add(off + c), mask, exact),
                        OutPtr::F32(o) => {
                            let sa = _mm512_set1_ps(self.sa.get(row));
                            let sb = _mm512_maskz_loadu_ps(mask, self.sb.as_ptr().add(col0 + c));
                            let v = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(sa, sb));
                            let v = if self.accumulate {
                                _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, o.add(off + c)))
                            } else if let Some(bias) = self.bias {
                                _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(col0 + c)))
                            } else {
                                v
                            };
                            _mm512_mask_storeu_ps(o.add(off + c), mask, v);
                        }
                        OutPtr::U8(_) | OutPtr::I8(_) => unreachable!("handled above"),
                    }
                    c += 16;
                }
            }
        }
    }
}

impl Epi<'_> {
    /// Full tiles of `16·NV` columns: column sums, weight scales and bias stay in registers
    /// across the tile's rows, no masks.
    ///
    /// # Safety
    /// AVX-512 F/BW/DQ available; columns `col0..col0 + 16·NV` lie inside N; the tile holds
    /// `rows × ld` accumulators with `ld ≥ 16·NV`; output is i32 or f32.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    unsafe fn full_tile_avx512<const NV: usize>(&self, t: &Tile, col0: usize) {
        use std::arch::x86_64::*;
        // SAFETY: in bounds by the caller's contract.
        unsafe {
            let cs: [__m512i; NV] =
                std::array::from_fn(|v| _mm512_loadu_si512(self.col_sums.as_ptr().add(col0 + 16 * v) as *const _));
            match self.out {
                OutPtr::I32(o) => {
                    for r in 0..t.rows {
                        let row = t.row + r;
                        let zp = _mm512_set1_epi32(self.zp.get(row));
                        let acc = t.acc.add(r * t.ld);
                        let out = o.add(row * self.n + col0);
                        for (v, cs) in cs.iter().enumerate() {
                            let a = _mm512_loadu_si512(acc.add(16 * v) as *const _);
                            let exact = _mm512_sub_epi32(a, _mm512_mullo_epi32(zp, *cs));
                            _mm512_storeu_si512(out.add(16 * v) as *mut _, exact);
                        }
                    }
                }
                OutPtr::F32(o) => {
                    let sb: [__m512; NV] =
                        std::array::from_fn(|v| _mm512_loadu_ps(self.sb.as_ptr().add(col0 + 16 * v)));
                    let bias: Option<[__m512; NV]> = match (self.accumulate, self.bias) {
                        (false, Some(b)) => {
                            Some(std::array::from_fn(|v| _mm512_loadu_ps(b.as_ptr().add(col0 + 16 * v))))
                        }
                        _ => None,
                    };
                    for r in 0..t.rows {
                        let row = t.row + r;
                        let zp = _mm512_set1_epi32(self.zp.get(row));
                        let sa = _mm512_set1_ps(self.sa.get(row));
                        let acc = t.acc.add(r * t.ld);
                        let out = o.add(row * self.n + col0);
                        for v in 0..NV {
                            let a = _mm512_loadu_si512(acc.add(16 * v) as *const _);
                            let exact = _mm512_sub_epi32(a, _mm512_mullo_epi32(zp, cs[v]));
                            // Same operation order as the portable body: (exact · (s_a·s_b)) + bias.
                            let mut y = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(sa, sb[v]));
                            if self.accumulate {
                                y = _mm512_add_ps(y, _mm512_loadu_ps(out.add(16 * v)));
                            } else if let Some(bias) = &bias {
                                y = _mm512_add_ps(y, bias[v]);
                            }
                            _mm512_storeu_ps(out.add(16 * v), y);
                        }
                    }
                }
                OutPtr::U8(_) | OutPtr::I8(_) => self.tile_body(t),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Scratch for packed activations, reused across calls on each thread.

struct Scratch {
    a: AlignedBuf<u8>,
    zp: Vec<i32>,
    scale: Vec<f32>,
}

thread_local! {
    /// Per-column accumulator start values for direct i32 stores, reused across calls.
    static DIRECT_INIT: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
    static SCRATCH: RefCell<Scratch> =
        RefCell::new(Scratch { a: AlignedBuf::zeroed(0), zp: Vec::new(), scale: Vec::new() });
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch { a: AlignedBuf::zeroed(0), zp: Vec::new(), scale: Vec::new() }),
    })
}

// ------------------------------------------------------------------------------------------
// Validation helpers.

/// A bias must have one finite value per output column: a NaN would otherwise pass silently
/// into every output row.
fn check_bias(bias: Option<&[f32]>, n: usize) -> Result<()> {
    let Some(bias) = bias else { return Ok(()) };
    check_len("bias", bias.len(), n, || format!("N = {n}"))?;
    match bias.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(KernelError::NonFinite { what: "bias", index, value: bias[index] }),
        None => Ok(()),
    }
}

fn check_scales(what: &'static str, s: &[f32]) -> Result<()> {
    // Branch-free scan first (it vectorises; this runs on every call), position only on error.
    let bad = s.iter().fold(false, |acc, v| acc | !(v.is_finite() & (*v > 0.0)));
    match bad.then(|| s.iter().position(|v| !(v.is_finite() && *v > 0.0))).flatten() {
        Some(i) => Err(KernelError::InvalidScale { what, index: i, value: s[i] }),
        None => Ok(()),
    }
}

fn check_zero_points(z: &[i32], min: i32, max: i32) -> Result<()> {
    match z.iter().position(|v| *v < min || *v > max) {
        Some(i) => Err(KernelError::InvalidZeroPoint { index: i, value: z[i], min, max }),
        None => Ok(()),
    }
}

/// Weight scales expanded to `groups × N` (or `N` when not per group).
enum ScalesView<'a> {
    Borrowed(&'a [f32]),
    Owned(Vec<f32>),
}

impl ScalesView<'_> {
    fn get(&self) -> &[f32] {
        match self {
            ScalesView::Borrowed(s) => s,
            ScalesView::Owned(v) => v,
        }
    }
}

fn resolve_weight_scales<'a>(ws: &WeightScales<'a>, b: &PackedB) -> Result<(ScalesView<'a>, bool)> {
    let n = b.n();
    match *ws {
        WeightScales::PerTensor(s) => {
            check_scales("weight_scales", std::slice::from_ref(&s))?;
            Ok((ScalesView::Owned(vec![s; n]), false))
        }
        WeightScales::PerChannel(s) => {
            check_len("weight_scales", s.len(), n, || format!("per output channel, N = {n}"))?;
            check_scales("weight_scales", s)?;
            Ok((ScalesView::Borrowed(s), false))
        }
        WeightScales::PerGroup(s) => {
            if b.group_size().is_none() {
                return Err(KernelError::Shape(
                    "per-group weight scales need weights packed with PackOptions::group_size".into(),
                ));
            }
            let g = b.num_groups();
            check_len("weight_scales", s.len(), g * n, || format!("{g} groups × N = {n}"))?;
            check_scales("weight_scales", s)?;
            Ok((ScalesView::Borrowed(s), g > 1))
        }
    }
}

// ------------------------------------------------------------------------------------------
// Entry points.

/// `C[M × N] = A[M × K] · B[K × N]` with a fused epilogue, on the kernel `b` was packed for.
///
/// The kernel accumulates `Σ_k A[m, k]·B[k, n]` in i32; the epilogue subtracts
/// `z_a[m]·Σ_k B[k, n]` (exact for `K ≤` [`MAX_EXACT_K`]) and then, per [`Epilogue`], stores
/// it, or scales it to f32 with `s_a[m]·s_b[n]` (summed over K groups for per-group scales) and
/// adds the bias, or also requantizes it. All buffers are row-major; `out` has `M·N` elements.
/// Threads: see [`GemmOptions`].
///
/// # Errors
/// Nothing is written when an error is returned.
/// - [`KernelError::Shape`]: `a.k != b.k()`, or per-group scales on weights packed without
///   groups;
/// - [`KernelError::Length`]: `a.data`, per-row zero points or scales, weight scales, bias or
///   `out` of the wrong length;
/// - [`KernelError::InvalidZeroPoint`], [`KernelError::InvalidScale`]: activation, weight or
///   output parameters out of range (scales must be finite and positive);
/// - [`KernelError::NonFinite`]: a NaN or infinite bias;
/// - [`KernelError::KTooLarge`]: i32 output with `K >` [`MAX_EXACT_K`];
/// - [`KernelError::KernelUnavailable`]: `b` was packed for a kernel this CPU cannot run.
///
/// ```
/// use ember_kernels::{gemm, Activations, Epilogue, GemmOptions, PackOptions, PackedB};
/// // A = [[1, 2, 3]] (u8, zero point 1), B = [[1, 0], [0, 1], [1, 1]] (K = 3, N = 2).
/// let b = PackedB::pack(&[1, 0, 0, 1, 1, 1], 3, 2, PackOptions::default()).unwrap();
/// let mut c = [0i32; 2];
/// gemm(&Activations::u8(&[1, 2, 3], 1, 3, 1), &b, Epilogue::I32 { out: &mut c }, &GemmOptions::default()).unwrap();
/// assert_eq!(c, [2, 3]); // (1−1)·1 + (3−1)·1 = 2; (2−1) + (3−1) = 3
/// ```
pub fn gemm(a: &Activations<'_>, b: &PackedB, epilogue: Epilogue<'_>, opts: &GemmOptions) -> Result<()> {
    let kernel = b.kernel().require()?;
    let (m, k, n) = (a.m, a.k, b.n());
    if k != b.k() {
        return Err(KernelError::Shape(format!("A is {m}×{k} but B is {}×{n}: K must match", b.k())));
    }
    let mk = mul(m, k)?;
    let mn = mul(m, n)?;
    let (zmin, zmax, shift) = match a.data {
        ActivationData::U8(d) => {
            check_len("a", d.len(), mk, || format!("M = {m}, K = {k}"))?;
            (0, 255, 0)
        }
        ActivationData::I8(d) => {
            check_len("a", d.len(), mk, || format!("M = {m}, K = {k}"))?;
            (-128, 127, 128)
        }
    };
    a.zero_points.check_len("zero_points", m)?;
    check_zero_points(a.zero_points.values(), zmin, zmax)?;
    let needs_scales = !matches!(epilogue, Epilogue::I32 { .. });
    if needs_scales {
        a.scales.check_len("scales", m)?;
        check_scales("scales", a.scales.values())?;
    }
    let out_len = match &epilogue {
        Epilogue::I32 { out } => out.len(),
        Epilogue::F32 { out, .. } => out.len(),
        Epilogue::Requantize { out: QuantizedOutput::U8(o), .. } => o.len(),
        Epilogue::Requantize { out: QuantizedOutput::I8(o), .. } => o.len(),
    };
    check_len("out", out_len, mn, || format!("M = {m}, N = {n}"))?;
    if matches!(epilogue, Epilogue::I32 { .. }) && k > MAX_EXACT_K {
        return Err(KernelError::KTooLarge { k, max: MAX_EXACT_K });
    }
    let opts = *opts;
    let zp_shifted: Vec<i32>;
    let zp = if shift == 0 {
        a.zero_points
    } else {
        zp_shifted = a.zero_points.values().iter().map(|z| z + shift).collect();
        match a.zero_points {
            RowParam::PerTensor(_) => RowParam::PerTensor(zp_shifted[0]),
            RowParam::PerRow(_) => RowParam::PerRow(&zp_shifted),
        }
    };
    let kp = b.packed_k();
    let layout = a_layout(b, m);
    // Zero-copy when A is u8, needs no padding and the kernel reads it row-major.
    if let ActivationData::U8(d) = a.data
        && kp == k
        && layout == ALayout::RowMajor
    {
        let ap = APtr { ptr: d.as_ptr(), layout };
        return run_epilogue(kernel, ap, m, b, zp, a.scales, epilogue, opts);
    }
    with_scratch(|s| {
        let len = a_len(m, kp, layout)?;
        s.a.ensure_len(len);
        let buf = &mut s.a[..len];
        fill_a(buf, m, kp, layout, 1, &|r, row| {
            for g in b.groups() {
                let dst = &mut row[g.p0..g.p0 + g.plen];
                let src = r * k + g.k0..r * k + g.k0 + g.len;
                match a.data {
                    ActivationData::U8(d) => dst[..g.len].copy_from_slice(&d[src]),
                    ActivationData::I8(d) => {
                        for (o, &v) in dst[..g.len].iter_mut().zip(&d[src]) {
                            *o = (v as u8) ^ 0x80;
                        }
                    }
                }
                dst[g.len..].fill(0);
            }
            Ok(())
        })?;
        run_epilogue(kernel, APtr { ptr: buf.as_ptr(), layout }, m, b, zp, a.scales, epilogue, opts)
    })
}

/// Packed activations handed to the kernels.
#[derive(Clone, Copy)]
struct APtr {
    ptr: *const u8,
    layout: ALayout,
}

/// How packed activations are laid out; chosen per call by [`a_layout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ALayout {
    /// Row-major u8, row stride = packed K bytes.
    RowMajor,
    /// AMX tiles: 16-row blocks, and inside a block 1 KiB per 64 bytes of K (16 rows × 64
    /// bytes), so every A tile load reads one contiguous KiB instead of 16 rows scattered at
    /// the row stride. Rows are padded to a multiple of 16 with zeros.
    Tiles16,
    /// Row-major i16 (u8 widened), for the AVX2 kernel: one `vpbroadcastd` from memory then
    /// broadcasts a K pair ready for `vpmaddwd`.
    Widened16,
}

fn a_layout(b: &PackedB, m: usize) -> ALayout {
    match b.kernel() {
        KernelId::Amx if m >= crate::x86_64_amx_min_rows() => ALayout::Tiles16,
        // The AVX2 kernel reads i16 A when B is in its i16 layout, u8 A with 7-bit weights.
        KernelId::Avx2 if b.spec().widen => ALayout::Widened16,
        _ => ALayout::RowMajor,
    }
}

/// Bytes of packed A.
fn a_len(m: usize, kp: usize, layout: ALayout) -> Result<usize> {
    match layout {
        ALayout::RowMajor => mul(m, kp),
        ALayout::Tiles16 => mul(m.div_ceil(16) * 16, kp),
        ALayout::Widened16 => mul(mul(m, kp)?, 2),
    }
}

/// Fills the packed A buffer row by row: `fill(r, row)` must write all `kp` bytes of row `r`
/// (zero padding included). Row-major rows are written in place; for the other layouts each
/// row is built in a per-part buffer and then scattered (tiles) or widened (i16); the padding
/// rows of the last 16-row tile block are zeroed. Runs `parts` parts on the pool; returns the
/// error of the lowest failing part.
fn fill_a(
    a: &mut [u8],
    m: usize,
    kp: usize,
    layout: ALayout,
    parts: usize,
    fill: &(dyn Fn(usize, &mut [u8]) -> Result<()> + Sync),
) -> Result<()> {
    let parts = parts.clamp(1, m.max(1));
    let rows_per = m.div_ceil(parts);
    let a_ptr = SendPtr(a.as_mut_ptr());
    // One slot per part for its first error (no allocation in the common single-part case).
    let errors: Vec<std::sync::Mutex<Option<KernelError>>> =
        if parts > 1 { (0..parts).map(|_| std::sync::Mutex::new(None)).collect() } else { Vec::new() };
    let single_error = std::cell::Cell::new(None);
    let run_part = |part: usize| -> Result<()> {
        let a_ptr = &a_ptr;
        let mut rowbuf = if layout == ALayout::RowMajor { Vec::new() } else { vec![0u8; kp] };
        for r in part * rows_per..((part + 1) * rows_per).min(m) {
            let result = match layout {
                ALayout::RowMajor => {
                    // SAFETY: each part writes only its own rows.
                    fill(r, unsafe { std::slice::from_raw_parts_mut(a_ptr.0.add(r * kp), kp) })
                }
                ALayout::Tiles16 => {
                    let res = fill(r, &mut rowbuf);
                    for (ks, chunk) in rowbuf.chunks_exact(64).enumerate() {
                        // SAFETY: the piece lies inside row r's block; rows belong to one part.
                        unsafe { tile_piece(a_ptr.0, r, kp, ks).copy_from(chunk.as_ptr(), 64) };
                    }
                    res
                }
                ALayout::Widened16 => {
                    let res = fill(r, &mut rowbuf);
                    // SAFETY: row r's 2·kp bytes; the buffer is 64-byte aligned and the offset
                    // even, so the i16 view is aligned.
                    let dst = unsafe { std::slice::from_raw_parts_mut(a_ptr.0.add(r * kp * 2) as *mut i16, kp) };
                    for (d, &v) in dst.iter_mut().zip(&rowbuf) {
                        *d = v as i16;
                    }
                    res
                }
            };
            result?;
        }
        Ok(())
    };
    if parts == 1 {
        single_error.set(run_part(0).err());
    } else {
        pool::run(parts, &|part| {
            if let Err(e) = run_part(part)
                && let Ok(mut slot) = errors[part].lock()
            {
                *slot = Some(e);
            }
        });
    }
    if let Some(e) = single_error.take() {
        return Err(e);
    }
    if layout == ALayout::Tiles16 {
        for r in m..m.div_ceil(16) * 16 {
            for ks in 0..kp / 64 {
                // SAFETY: inside the buffer (sized by `a_len`).
                unsafe { tile_piece(a.as_mut_ptr(), r, kp, ks).write_bytes(0, 64) };
            }
        }
    }
    for e in errors {
        if let Some(e) = e.into_inner().ok().flatten() {
            return Err(e);
        }
    }
    Ok(())
}

/// Address of the 64 bytes of row `r`, K bytes `64·ks..64·ks + 64`, in the tile layout.
#[inline]
fn tile_piece(a: *mut u8, r: usize, kp: usize, ks: usize) -> *mut u8 {
    a.wrapping_add((r / 16) * 16 * kp + ks * 1024 + (r % 16) * 64)
}

/// Options for [`dynamic_quantized_matmul`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DynamicOptions {
    /// Threading.
    pub gemm: GemmOptions,
    /// Activation quantization granularity (per row by default, which is more accurate than
    /// ONNX Runtime's per-tensor choice at the same cost).
    pub granularity: Granularity,
}

/// The fused dynamic-quantization linear layer: `out = x·B_real + bias` where `x` (f32,
/// `[M × K]`) is quantized to affine u8 on the fly (per row or per tensor), multiplied with the
/// packed int8 weights and dequantized in the epilogue. This is the entry point `ember-quant`
/// uses for dynamic int8 `Linear` layers.
///
/// Per row `m` (or once for all rows with [`Granularity::PerTensor`]): `s_a = (hi − lo)/255`
/// and `z_a = round(−lo/s_a)` over `[lo, hi] = [min(x_m, 0), max(x_m, 0)]`; then
/// `out[m, n] = s_a·s_b[n]·Σ_k (q[m, k] − z_a)·B[k, n] + bias[n]`. Each activation is off by at
/// most `s_a/2`, so `|out − x·B_real| ≤ (s_a/2)·Σ_k |B_real[k, n]|`. `x` is `[M × K]`, `out`
/// `[M × N]`, `bias` `[N]`, all row-major.
///
/// # Errors
/// Nothing is written to `out` when an error is returned.
/// - [`KernelError::Length`]: `x`, `out`, weight scales or bias of the wrong length;
/// - [`KernelError::NonFinite`]: NaN/±Inf in `x` (with its flat index) or in the bias;
/// - [`KernelError::InvalidScale`], [`KernelError::Shape`]: invalid or mismatched weight scales;
/// - [`KernelError::KernelUnavailable`]: `b` was packed for a kernel this CPU cannot run.
///
/// ```
/// use ember_kernels::{dynamic_quantized_matmul, DynamicOptions, PackOptions, PackedB, WeightScales};
/// let w = [127i8, -127, 64, 0]; // K = 2, N = 2, scale 1/127
/// let b = PackedB::pack(&w, 2, 2, PackOptions::default()).unwrap();
/// let mut y = [0f32; 2];
/// dynamic_quantized_matmul(&[1.0, 0.5], 1, &b, WeightScales::PerTensor(1.0 / 127.0), None, &mut y, &DynamicOptions::default()).unwrap();
/// assert!((y[0] - 1.252).abs() < 0.01 && (y[1] + 1.0).abs() < 0.01);
/// ```
pub fn dynamic_quantized_matmul(
    x: &[f32],
    m: usize,
    b: &PackedB,
    weight_scales: WeightScales<'_>,
    bias: Option<&[f32]>,
    out: &mut [f32],
    opts: &DynamicOptions,
) -> Result<()> {
    let kernel = b.kernel().require()?;
    let (k, n) = (b.k(), b.n());
    check_len("x", x.len(), mul(m, k)?, || format!("M = {m}, K = {k}"))?;
    check_len("out", out.len(), mul(m, n)?, || format!("M = {m}, N = {n}"))?;
    // Validate everything before quantizing, so errors leave `out` untouched.
    let _ = resolve_weight_scales(&weight_scales, b)?;
    check_bias(bias, n)?;
    let kp = b.packed_k();
    let gopts = opts.gemm;
    let layout = a_layout(b, m);
    with_scratch(|s| {
        let len = a_len(m, kp, layout)?;
        s.a.ensure_len(len);
        s.zp.resize(m, 0);
        s.scale.resize(m, 0.0);
        let groups = b.groups();
        let threads = gopts.resolved_threads();
        let parts = if threads > 1 && parallel_worth_it(kernel, m, kp, n) { threads } else { 1 };
        let a = &mut s.a[..len];
        // Every range, parameter and NaN/Inf check happens before the GEMM, so an error leaves
        // `out` untouched.
        match opts.granularity {
            Granularity::PerTensor => {
                let (mut lo, mut hi) = (0f32, 0f32);
                for r in 0..m {
                    let (l, h) = crate::quantize::scan_row(&x[r * k..(r + 1) * k], r * k)?;
                    lo = lo.min(l);
                    hi = hi.max(h);
                }
                let p = params_u8(lo, hi)?;
                s.zp.fill(p.zero_point);
                s.scale.fill(p.scale);
                fill_a(a, m, kp, layout, parts, &|r, row| {
                    crate::quantize::quantize_groups_packed(&x[r * k..(r + 1) * k], groups, p, row);
                    Ok(())
                })?;
            }
            Granularity::PerRow => {
                // Range, parameters and quantization row by row (the row stays in L1 between
                // the two passes), rows spread over the parts.
                let (zp_ptr, sc_ptr) = (SendPtr(s.zp.as_mut_ptr()), SendPtr(s.scale.as_mut_ptr()));
                fill_a(a, m, kp, layout, parts, &|r, row| {
                    let (zp_ptr, sc_ptr) = (&zp_ptr, &sc_ptr);
                    let p = crate::quantize::quantize_row_dynamic_packed(&x[r * k..(r + 1) * k], r * k, groups, row)?;
                    // SAFETY: row r's parameters are written only by the part that owns row r.
                    unsafe {
                        *zp_ptr.0.add(r) = p.zero_point;
                        *sc_ptr.0.add(r) = p.scale;
                    }
                    Ok(())
                })?;
            }
        }
        let epi = Epilogue::F32 { weight_scales, bias, out };
        run_epilogue(
            kernel,
            APtr { ptr: s.a.as_ptr(), layout },
            m,
            b,
            RowParam::PerRow(&s.zp),
            RowParam::PerRow(&s.scale),
            epi,
            gopts,
        )
    })
}

struct SendPtr<T>(*mut T);
// SAFETY: used only to hand disjoint regions to pool parts.
unsafe impl<T> Sync for SendPtr<T> {}

/// Rough single-thread throughput per kernel (GOP/s), for the threading threshold.
fn est_gops(kernel: KernelId, m: usize) -> f64 {
    match kernel {
        KernelId::Scalar => 4.0,
        KernelId::Avx2 => 100.0,
        KernelId::AvxVnni => 300.0,
        KernelId::Avx512Vnni => 800.0,
        // Few rows run VNNI tiles; tiles only fill up from 32 rows.
        KernelId::Amx if m < crate::x86_64_amx_min_rows() => 300.0,
        KernelId::Amx if m < 32 => 1000.0,
        KernelId::Amx => 2500.0,
    }
}

/// Whether a problem is big enough that splitting it beats the hand-off cost (a few µs when
/// workers are spinning, 12-25 µs when they were parked). The single-thread time is estimated
/// as the larger of compute time and the time to stream the packed weights once (which is what
/// bounds a GEMV: M = 1 with a large B runs at memory speed, and two cores stream faster).
fn parallel_worth_it(kernel: KernelId, m: usize, kp: usize, n: usize) -> bool {
    let ops = 2.0 * m as f64 * kp as f64 * n as f64;
    let compute_us = ops / (est_gops(kernel, m) * 1e3);
    let stream_us = (kp * n) as f64 / (STREAM_GBPS * 1e3);
    compute_us.max(stream_us) >= PARALLEL_MIN_US
}

/// Conservative single-core bandwidth for streaming packed weights from L3 / memory (GB/s).
const STREAM_GBPS: f64 = 30.0;

/// Single-thread run time (estimated, µs) below which a call stays on one thread.
const PARALLEL_MIN_US: f64 = 30.0;

#[allow(clippy::too_many_arguments)]
fn run_epilogue(
    kernel: KernelId,
    a: APtr,
    m: usize,
    b: &PackedB,
    zp: RowParam<'_, i32>,
    sa: RowParam<'_, f32>,
    epilogue: Epilogue<'_>,
    opts: GemmOptions,
) -> Result<()> {
    let n = b.n();
    let nr = b.spec().nr;
    let mut base = Epi {
        out: OutPtr::I32(std::ptr::null_mut()),
        n,
        nr,
        zp,
        sa,
        sb: &[],
        bias: None,
        col_sums: b.col_sums_total(),
        accumulate: false,
        inv_out: 1.0,
        zp_out: 0,
    };
    let full_k = [(0usize, b.packed_k())];
    match epilogue {
        Epilogue::I32 { out } => {
            base.out = OutPtr::I32(out.as_mut_ptr());
            // With one zero point for all rows the correction is a per-column constant: kernels
            // that can start their accumulators from it store straight into `out`.
            match base.zp {
                RowParam::PerTensor(z) if kernel == KernelId::Amx && m >= crate::x86_64_amx_min_rows() => {
                    DIRECT_INIT.with(|cell| {
                        let mut fresh = Vec::new();
                        let mut guard = cell.try_borrow_mut();
                        let init = match guard.as_mut() {
                            Ok(v) => &mut **v,
                            Err(_) => &mut fresh,
                        };
                        init.clear();
                        init.resize(b.npanels() * nr, 0);
                        for (v, &cs) in init.iter_mut().zip(b.col_sums_total()) {
                            *v = z.wrapping_mul(cs).wrapping_neg();
                        }
                        let d = DirectI32 { out: out.as_mut_ptr(), ldc: n, n, init: init.as_ptr() };
                        drive(kernel, a, m, b, &full_k, |_| &base, Some(d), opts);
                    });
                }
                _ => drive(kernel, a, m, b, &full_k, |_| &base, None, opts),
            }
        }
        Epilogue::F32 { weight_scales, bias, out } => {
            let (scales, grouped) = resolve_weight_scales(&weight_scales, b)?;
            check_bias(bias, n)?;
            base.out = OutPtr::F32(out.as_mut_ptr());
            base.bias = bias;
            run_f32(kernel, a, m, b, base, scales.get(), grouped, opts);
        }
        Epilogue::Requantize { weight_scales, bias, output, out } => {
            let (scales, grouped) = resolve_weight_scales(&weight_scales, b)?;
            check_bias(bias, n)?;
            let (qmin, qmax) = match out {
                QuantizedOutput::U8(_) => (0, 255),
                QuantizedOutput::I8(_) => (-128, 127),
            };
            output.validate(qmin, qmax)?;
            base.bias = bias;
            if grouped {
                // Groups must be summed in f32 before rounding: go through an f32 buffer.
                let mut tmp = vec![0f32; m * n];
                base.out = OutPtr::F32(tmp.as_mut_ptr());
                run_f32(kernel, a, m, b, base, scales.get(), true, opts);
                let p = output;
                match out {
                    QuantizedOutput::U8(o) => crate::quantize::quantize(&tmp, p, o)?,
                    QuantizedOutput::I8(o) => crate::quantize::quantize(&tmp, p, o)?,
                }
            } else {
                base.out = match out {
                    QuantizedOutput::U8(o) => OutPtr::U8(o.as_mut_ptr()),
                    QuantizedOutput::I8(o) => OutPtr::I8(o.as_mut_ptr()),
                };
                base.inv_out = 1.0 / output.scale;
                base.zp_out = output.zero_point;
                base.sb = scales.get();
                drive(kernel, a, m, b, &full_k, |_| &base, None, opts);
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_f32(
    kernel: KernelId,
    a: APtr,
    m: usize,
    b: &PackedB,
    base: Epi<'_>,
    scales: &[f32],
    grouped: bool,
    opts: GemmOptions,
) {
    let n = b.n();
    if !grouped {
        let epi = Epi { sb: scales, ..base };
        drive(kernel, a, m, b, &[(0, b.packed_k())], |_| &epi, None, opts);
        return;
    }
    let groups = b.groups();
    let epis: Vec<Epi<'_>> = groups
        .iter()
        .enumerate()
        .map(|(g, _)| Epi {
            sb: &scales[g * n..(g + 1) * n],
            col_sums: &b.col_sums()[g * n..(g + 1) * n],
            accumulate: g > 0,
            bias: if g == 0 { base.bias } else { None },
            ..base
        })
        .collect();
    let ranges: Vec<(usize, usize)> = groups.iter().map(|g| (g.p0, g.p0 + g.plen)).collect();
    drive(kernel, a, m, b, &ranges, |g| &epis[g], None, opts);
}

/// Splits the work into parts (panels first, then rows) and runs the kernel over each K range
/// in order, calling the range's epilogue on every tile.
#[allow(clippy::too_many_arguments)]
fn drive<'e>(
    kernel: KernelId,
    a: APtr,
    m: usize,
    b: &PackedB,
    ranges: &[(usize, usize)],
    epi: impl Fn(usize) -> &'e Epi<'e> + Sync,
    direct: Option<DirectI32>,
    opts: GemmOptions,
) {
    let kp = b.packed_k();
    let npanels = b.npanels();
    if m == 0 || b.n() == 0 {
        return;
    }
    if kp == 0 {
        // K = 0: the product is zero; the epilogue still writes bias / zero outputs.
        let zeros = vec![0i32; b.spec().nr];
        let e = epi(0);
        for p in 0..npanels {
            for r in 0..m {
                e.tile(&Tile { row: r, rows: 1, panel: p, acc: zeros.as_ptr(), ld: 0 });
            }
        }
        return;
    }
    let threads = opts.resolved_threads();
    let parallel = threads > 1 && parallel_worth_it(kernel, m, kp, b.n());
    let row_align = if kernel == KernelId::Amx { 32 } else { 6 };
    // Many rows: each thread takes a contiguous band of rows (its own stretch of C, all of B);
    // few rows: each thread takes a band of panels (its own stretch of B).
    let many_rows = m >= 4 * row_align * threads;
    let (parts, split_panels) = if !parallel {
        (1, true)
    } else if npanels >= threads && !many_rows {
        (threads, true)
    } else {
        let rows_per = m.div_ceil(threads).div_ceil(row_align) * row_align;
        (m.div_ceil(rows_per), false)
    };
    let a_tiles = a.layout == ALayout::Tiles16;
    let a_ptr = SendPtr(a.ptr as *mut u8);
    let direct = direct.map(|d| (SendPtr(d.out), d.ldc, d.n, SendPtr(d.init as *mut i32)));
    let run_part = |part: usize| {
        let a_ptr = &a_ptr;
        let direct = direct.as_ref().map(|(o, ldc, n, i)| DirectI32 { out: o.0, ldc: *ldc, n: *n, init: i.0 });
        let (m0, m1, p0, p1) = if split_panels {
            (0, m, npanels * part / parts, npanels * (part + 1) / parts)
        } else {
            let rows_per = m.div_ceil(parts).div_ceil(row_align) * row_align;
            ((part * rows_per).min(m), ((part + 1) * rows_per).min(m), 0, npanels)
        };
        for (g, &(k0, k1)) in ranges.iter().enumerate() {
            let e = epi(g);
            let job = Job { a: a_ptr.0, lda: kp, a_tiles, m0, m1, b, p0, p1, k0, k1, direct };
            // SAFETY: the kernel is supported (checked by the caller), `b` is packed for it, A
            // holds m·kp bytes and the K range lies inside the packed K.
            unsafe { microkernel::run(kernel, &job, &mut |t: &Tile| e.tile(t)) };
        }
    };
    pool::run(parts, &run_part);
}
