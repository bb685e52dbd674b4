//! Row quantizers: f32 ↔ u8 (affine) and f32 ↔ i8 (symmetric or affine).
//!
//! Convention (as in ONNX `QuantizeLinear` and `torch.ao`): `real = scale · (q − zero_point)`,
//! and `q = saturate(round_half_even(real / scale) + zero_point)`. Ember computes `real / scale`
//! as `real · (1 / scale)` in f32 in every code path (scalar and vector), so all paths give
//! bit-identical results.
//!
//! Dynamic parameters ([`params_u8`], [`params_i8_symmetric`]) always include 0 in the range so
//! that zero (padding, ReLU outputs) is exact, and give every value inside the observed range an
//! error of at most `scale / 2`. A range of zero width gets `scale = 1`, a valid scale that
//! represents the (all-zero) input exactly. NaN or ±Inf anywhere is an error, never a silent NaN.

use crate::error::{KernelError, Result, check_len, mul};

/// Parameters of one quantized row or tensor: `real = scale · (q − zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    /// Step between adjacent quantized values; finite and > 0.
    pub scale: f32,
    /// The quantized value that represents real 0.
    pub zero_point: i32,
}

impl QuantParams {
    /// Checks that the scale is finite and positive (with a finite reciprocal, which the
    /// quantizers multiply by) and the zero point fits `[min, max]` (`[0, 255]` for u8,
    /// `[−128, 127]` for i8).
    ///
    /// # Errors
    /// [`KernelError::InvalidScale`] or [`KernelError::InvalidZeroPoint`].
    pub fn validate(&self, min: i32, max: i32) -> Result<()> {
        if !(self.scale.is_finite() && self.scale > 0.0 && (1.0 / self.scale).is_finite()) {
            return Err(KernelError::InvalidScale { what: "scale", index: 0, value: self.scale });
        }
        if self.zero_point < min || self.zero_point > max {
            return Err(KernelError::InvalidZeroPoint { index: 0, value: self.zero_point, min, max });
        }
        Ok(())
    }
}

/// Whether one set of parameters covers a whole tensor or each row gets its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Granularity {
    /// One scale and zero point per row (per token): the most accurate for activations.
    #[default]
    PerRow,
    /// One scale and zero point for the whole tensor (what ONNX Runtime's dynamic
    /// quantization uses).
    PerTensor,
}

/// Smallest scale Ember will emit, so that `1 / scale` stays finite.
const MIN_SCALE: f32 = f32::MIN_POSITIVE * 4.0;

/// Affine u8 parameters for values in `[min, max]` (the range is widened to include 0).
///
/// # Errors
/// [`KernelError::NonFinite`] if `min` or `max` is NaN or infinite.
///
/// ```
/// let p = ember_kernels::quantize::params_u8(-1.0, 3.0).unwrap();
/// assert_eq!(p.zero_point, 64); // round(1 / (4 / 255))
/// ```
pub fn params_u8(min: f32, max: f32) -> Result<QuantParams> {
    check_finite_pair(min, max)?;
    let (lo, hi) = (min.min(0.0), max.max(0.0));
    // hi/255 − lo/255 cannot overflow where (hi − lo)/255 could.
    let scale = hi / 255.0 - lo / 255.0;
    if scale == 0.0 {
        return Ok(QuantParams { scale: 1.0, zero_point: 0 });
    }
    let scale = scale.max(MIN_SCALE);
    let zero_point = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as i32;
    Ok(QuantParams { scale, zero_point })
}

/// Affine i8 parameters for values in `[min, max]` (the range is widened to include 0): the
/// u8 parameters shifted by −128, so `q ∈ [−128, 127]` covers the range with the same step.
///
/// # Errors
/// [`KernelError::NonFinite`] if `min` or `max` is NaN or infinite.
///
/// ```
/// let p = ember_kernels::quantize::params_i8_affine(-1.0, 3.0).unwrap();
/// assert_eq!(p.zero_point, 64 - 128);
/// ```
pub fn params_i8_affine(min: f32, max: f32) -> Result<QuantParams> {
    let p = params_u8(min, max)?;
    Ok(QuantParams { scale: p.scale, zero_point: p.zero_point - 128 })
}

/// Symmetric i8 parameters for values with `|x| ≤ abs_max`: zero point 0, `scale = abs_max/127`,
/// so in-range values use `[−127, 127]` (−128 is reached only by saturation).
///
/// # Errors
/// [`KernelError::NonFinite`] if `abs_max` is NaN or infinite.
pub fn params_i8_symmetric(abs_max: f32) -> Result<QuantParams> {
    check_finite_pair(abs_max, abs_max)?;
    let a = abs_max.abs();
    if a == 0.0 {
        return Ok(QuantParams { scale: 1.0, zero_point: 0 });
    }
    Ok(QuantParams { scale: (a / 127.0).max(MIN_SCALE), zero_point: 0 })
}

fn check_finite_pair(a: f32, b: f32) -> Result<()> {
    for (i, v) in [a, b].into_iter().enumerate() {
        if !v.is_finite() {
            return Err(KernelError::NonFinite { what: "range", index: i, value: v });
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Range scan (min, max, first non-finite) — vectorised by lane arrays + target features.

const LANES: usize = 16;
const EXP_MASK: u32 = 0x7f80_0000;

#[inline(always)]
fn scan_body(x: &[f32]) -> (f32, f32, bool) {
    let (mut lo, mut hi, mut bad) = ([0f32; LANES], [0f32; LANES], [0u32; LANES]);
    let mut chunks = x.chunks_exact(LANES);
    for ch in &mut chunks {
        for i in 0..LANES {
            let v = ch[i];
            lo[i] = if v < lo[i] { v } else { lo[i] };
            hi[i] = if v > hi[i] { v } else { hi[i] };
            bad[i] |= ((v.to_bits() & EXP_MASK) == EXP_MASK) as u32;
        }
    }
    let (mut l, mut h, mut b) = (0f32, 0f32, 0u32);
    for &v in chunks.remainder() {
        l = if v < l { v } else { l };
        h = if v > h { v } else { h };
        b |= ((v.to_bits() & EXP_MASK) == EXP_MASK) as u32;
    }
    for i in 0..LANES {
        l = l.min(lo[i]);
        h = h.max(hi[i]);
        b |= bad[i];
    }
    (l, h, b != 0)
}

/// AVX-512 range scan: masked tail, non-finite values detected with `vfpclassps`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
#[inline]
fn scan_avx512(x: &[f32]) -> (f32, f32, bool) {
    use std::arch::x86_64::*;
    let n = x.len();
    // SAFETY: every load is masked to `n` elements.
    unsafe {
        let (mut lo0, mut hi0) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let (mut lo1, mut hi1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut bad: __mmask16 = 0;
        let mut i = 0;
        // Two independent accumulator pairs hide the min/max latency.
        while i + 32 <= n {
            let v0 = _mm512_loadu_ps(x.as_ptr().add(i));
            let v1 = _mm512_loadu_ps(x.as_ptr().add(i + 16));
            lo0 = _mm512_min_ps(lo0, v0);
            hi0 = _mm512_max_ps(hi0, v0);
            lo1 = _mm512_min_ps(lo1, v1);
            hi1 = _mm512_max_ps(hi1, v1);
            // QNaN | +Inf | −Inf | SNaN
            bad |= _mm512_fpclass_ps_mask::<0x99>(v0) | _mm512_fpclass_ps_mask::<0x99>(v1);
            i += 32;
        }
        while i < n {
            let mask: __mmask16 = if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 };
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
            lo0 = _mm512_min_ps(lo0, v);
            hi0 = _mm512_max_ps(hi0, v);
            bad |= _mm512_fpclass_ps_mask::<0x99>(v);
            i += 16;
        }
        let lo = _mm512_reduce_min_ps(_mm512_min_ps(lo0, lo1));
        let hi = _mm512_reduce_max_ps(_mm512_max_ps(hi0, hi1));
        (lo, hi, bad != 0)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn scan_avx2(x: &[f32]) -> (f32, f32, bool) {
    scan_body(x)
}

/// `(min(x ∪ {0}), max(x ∪ {0}))`, or the first non-finite value as an error.
fn scan(what: &'static str, x: &[f32], base_index: usize) -> Result<(f32, f32)> {
    #[cfg(target_arch = "x86_64")]
    let (lo, hi, bad) =
        if std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512dq") {
            // SAFETY: the CPU supports the enabled features.
            unsafe { scan_avx512(x) }
        } else if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports the enabled features.
            unsafe { scan_avx2(x) }
        } else {
            scan_body(x)
        };
    #[cfg(not(target_arch = "x86_64"))]
    let (lo, hi, bad) = scan_body(x);
    if bad {
        let i = x.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(KernelError::NonFinite { what, index: base_index + i, value: x[i] });
    }
    Ok((lo, hi))
}

// ------------------------------------------------------------------------------------------
// Quantize / dequantize bodies.

/// `out[i] = clamp(round_half_even(x[i]·inv), qmin − zp, qmax − zp) + zp`. Inputs must be finite.
#[inline(always)]
fn quant_body<T: QInt>(x: &[f32], inv: f32, zp: i32, out: &mut [T]) {
    let lo = (T::MIN - zp) as f32;
    let hi = (T::MAX - zp) as f32;
    for (o, &v) in out.iter_mut().zip(x) {
        let r = (v * inv).round_ties_even();
        let r = if r < lo { lo } else { r };
        let r = if r > hi { hi } else { r };
        // SAFETY: `r` is finite (inputs are checked) and clamped into the i32 range.
        let q = unsafe { r.to_int_unchecked::<i32>() } + zp;
        *o = T::from_i32(q);
    }
}

#[inline(always)]
fn dequant_body<T: QInt>(q: &[T], scale: f32, zp: i32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(q) {
        *o = (v.to_i32() - zp) as f32 * scale;
    }
}

/// u8 / i8 as quantized storage types.
pub trait QInt: Copy + Send + Sync + 'static + private::Sealed {
    /// Smallest representable value.
    const MIN: i32;
    /// Largest representable value.
    const MAX: i32;
    /// Narrowing conversion of a value already clamped into `[MIN, MAX]`.
    fn from_i32(v: i32) -> Self;
    /// Widening conversion.
    fn to_i32(self) -> i32;
}

mod private {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for i8 {}
}

impl QInt for u8 {
    const MIN: i32 = 0;
    const MAX: i32 = 255;
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as u8
    }
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
}

impl QInt for i8 {
    const MIN: i32 = -128;
    const MAX: i32 = 127;
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as i8
    }
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
}

macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident<$T:ident: QInt>($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$m])*
        fn $name<$T: QInt>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
                fn v512<$T: QInt>($($arg: $ty),*) { $body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn v256<$T: QInt>($($arg: $ty),*) { $body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: the CPU supports the enabled features.
                    return unsafe { v512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports the enabled features.
                    return unsafe { v256($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

multiversion!(
    /// Vectorised [`quant_body`].
    fn quant_fast<T: QInt>(x: &[f32], inv: f32, zp: i32, out: &mut [T]) => quant_body
);
multiversion!(
    /// Vectorised [`dequant_body`].
    fn dequant_fast<T: QInt>(q: &[T], scale: f32, zp: i32, out: &mut [f32]) => dequant_body
);

// ------------------------------------------------------------------------------------------
// Public API.

/// Quantizes `x` with given (static) parameters, saturating values outside the representable
/// range: u8 for `T = u8`, i8 for `T = i8`.
///
/// # Errors
/// Length mismatch, an invalid scale or zero point, or a non-finite input.
///
/// ```
/// use ember_kernels::quantize::{quantize, QuantParams};
/// let p = QuantParams { scale: 0.5, zero_point: 10 };
/// let mut q = [0u8; 4];
/// quantize(&[0.0, 0.25, 0.75, 1000.0], p, &mut q).unwrap();
/// assert_eq!(q, [10, 10, 12, 255]); // 0.5 → 0 (ties to even), 1.5 → 2, saturated
/// ```
pub fn quantize<T: QInt>(x: &[f32], params: QuantParams, out: &mut [T]) -> Result<()> {
    check_len("out", out.len(), x.len(), || "same length as x".into())?;
    params.validate(T::MIN, T::MAX)?;
    scan("x", x, 0)?;
    quant_dispatch(x, 1.0 / params.scale, params.zero_point, out);
    Ok(())
}

/// `out[i] = scale · (q[i] − zero_point)`.
///
/// # Errors
/// Length mismatch or invalid parameters.
pub fn dequantize<T: QInt>(q: &[T], params: QuantParams, out: &mut [f32]) -> Result<()> {
    check_len("out", out.len(), q.len(), || "same length as q".into())?;
    params.validate(T::MIN, T::MAX)?;
    dequant_fast(q, params.scale, params.zero_point, out);
    Ok(())
}

/// Dynamic affine u8 quantization of one row: finds the range, picks [`params_u8`] and quantizes.
///
/// # Errors
/// Length mismatch or a non-finite input.
pub fn quantize_row_u8(x: &[f32], out: &mut [u8]) -> Result<QuantParams> {
    check_len("out", out.len(), x.len(), || "same length as x".into())?;
    let (lo, hi) = scan("x", x, 0)?;
    let p = params_u8(lo, hi)?;
    quant_dispatch(x, 1.0 / p.scale, p.zero_point, out);
    Ok(p)
}

/// Dynamic symmetric i8 quantization of one row (zero point 0).
///
/// # Errors
/// Length mismatch or a non-finite input.
pub fn quantize_row_i8_symmetric(x: &[f32], out: &mut [i8]) -> Result<QuantParams> {
    check_len("out", out.len(), x.len(), || "same length as x".into())?;
    let (lo, hi) = scan("x", x, 0)?;
    let p = params_i8_symmetric(hi.max(-lo))?;
    quant_fast(x, 1.0 / p.scale, 0, out);
    Ok(p)
}

/// Dynamic quantization of a `rows × cols` row-major matrix to u8 (affine) or i8 (symmetric),
/// per row or per tensor. `params` receives one entry per row (all equal for
/// [`Granularity::PerTensor`]).
///
/// # Errors
/// Length mismatches or a non-finite input (reported with its flat index).
pub fn quantize_rows<T: QInt>(
    x: &[f32],
    rows: usize,
    cols: usize,
    granularity: Granularity,
    out: &mut [T],
    params: &mut [QuantParams],
) -> Result<()> {
    let shape = || format!("{rows} rows × {cols} columns");
    check_len("x", x.len(), mul(rows, cols)?, shape)?;
    check_len("out", out.len(), x.len(), shape)?;
    check_len("params", params.len(), rows, shape)?;
    let pick = |lo: f32, hi: f32| if T::MIN == 0 { params_u8(lo, hi) } else { params_i8_symmetric(hi.max(-lo)) };
    match granularity {
        Granularity::PerTensor => {
            let (lo, hi) = scan("x", x, 0)?;
            let p = pick(lo, hi)?;
            quant_dispatch(x, 1.0 / p.scale, p.zero_point, out);
            params.fill(p);
        }
        Granularity::PerRow => {
            for r in 0..rows {
                let row = &x[r * cols..(r + 1) * cols];
                let (lo, hi) = scan("x", row, r * cols)?;
                let p = pick(lo, hi)?;
                quant_dispatch(row, 1.0 / p.scale, p.zero_point, &mut out[r * cols..(r + 1) * cols]);
                params[r] = p;
            }
        }
    }
    Ok(())
}

/// AVX-512 u8 quantization of a finite slice (bit-identical to [`quant_body`]: multiply by
/// `inv`, round half to even, clamp, add the zero point).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
fn quant_u8_avx512(x: &[f32], inv: f32, zp: i32, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = x.len().min(out.len());
    // SAFETY: all loads and stores are masked to `n` elements.
    unsafe {
        let invv = _mm512_set1_ps(inv);
        let lo = _mm512_set1_ps((0 - zp) as f32);
        let hi = _mm512_set1_ps((255 - zp) as f32);
        let zpv = _mm512_set1_epi32(zp);
        let q16 = |p: *const f32| {
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
                _mm512_loadu_ps(p),
                invv,
            ));
            _mm512_add_epi32(_mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(r, lo), hi)), zpv)
        };
        // 64 values per step: two saturating packs (exact: values are already in [0, 255])
        // interleave 128-bit lanes, one dword permute restores the order, one 64-byte store.
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let mut i = 0;
        while i + 64 <= n {
            let p = x.as_ptr().add(i);
            let ab = _mm512_packs_epi32(q16(p), q16(p.add(16)));
            let cd = _mm512_packs_epi32(q16(p.add(32)), q16(p.add(48)));
            let bytes = _mm512_permutexvar_epi32(order, _mm512_packus_epi16(ab, cd));
            _mm512_storeu_si512(out.as_mut_ptr().add(i) as *mut __m512i, bytes);
            i += 64;
        }
        while i < n {
            let mask: __mmask16 = if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 };
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(v, invv));
            let r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
            let q = _mm512_add_epi32(_mm512_cvttps_epi32(r), zpv);
            _mm_mask_storeu_epi8(out.as_mut_ptr().add(i) as *mut i8, mask, _mm512_cvtepi32_epi8(q));
            i += 16;
        }
    }
}

/// Quantizes with the fastest code path for `T` (u8 has a hand-written AVX-512 loop).
fn quant_dispatch<T: QInt>(x: &[f32], inv: f32, zp: i32, out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if T::MIN == 0 && std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: T is u8 (the only QInt with MIN 0), so the slice cast is a no-op.
        let out = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len()) };
        // SAFETY: the CPU supports the enabled features.
        return unsafe { quant_u8_avx512(x, inv, zp, out) };
    }
    quant_fast(x, inv, zp, out)
}

/// Dynamic affine u8 quantization of one row straight into its packed form: range scan,
/// [`params_u8`] and quantization of every K group (zero-padded to its packed length). This is
/// the per-row step of [`crate::dynamic_quantized_matmul`]; bit-identical to
/// [`quantize_row_u8`] on the same values.
pub(crate) fn quantize_row_dynamic_packed(
    xr: &[f32],
    base_index: usize,
    groups: &[crate::pack::KGroup],
    row: &mut [u8],
) -> Result<QuantParams> {
    let (lo, hi) = scan("x", xr, base_index)?;
    let p = params_u8(lo, hi)?;
    quantize_groups_packed(xr, groups, p, row);
    Ok(p)
}

/// Quantizes a finite row with known parameters into its packed form: each K group at its
/// packed offset, zero-padded to its packed length (crate-internal).
pub(crate) fn quantize_groups_packed(xr: &[f32], groups: &[crate::pack::KGroup], p: QuantParams, row: &mut [u8]) {
    let inv = 1.0 / p.scale;
    for g in groups {
        let dst = &mut row[g.p0..g.p0 + g.plen];
        quant_dispatch(&xr[g.k0..g.k0 + g.len], inv, p.zero_point, &mut dst[..g.len]);
        dst[g.len..].fill(0);
    }
}

/// Range of a slice with the non-finite check (crate-internal fast path for the fused GEMM).
pub(crate) fn scan_row(x: &[f32], base_index: usize) -> Result<(f32, f32)> {
    scan("x", x, base_index)
}
