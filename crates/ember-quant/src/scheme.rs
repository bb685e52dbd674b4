//! Quantization schemes: integer type, granularity and the parameters that map reals to integers.
//!
//! Convention (ONNX `QuantizeLinear`, `torch.ao`): `real = scale · (q − zero_point)` and
//! `q = saturate(round_half_even(real / scale) + zero_point)`.
//!
//! - **Symmetric i8**: zero point 0, `scale = max|x| / 127`, values in `[−127, 127]`. Ember's int8
//!   weights always use it (the kernels take symmetric i8 weights, as ONNX Runtime and fbgemm do).
//! - **Affine u8**: `scale = (hi − lo) / 255`, `zero_point = round(−lo / scale)`, over a range
//!   widened to include 0 so that real zero (padding, ReLU output, a pruned weight) is exact.
//!
//! A zero-width range gets `scale = 1` (a valid scale that represents the all-zero tensor
//! exactly), never a division by zero.

use crate::error::{QuantError, Result};
use ember_kernels::quantize::{QuantParams, params_i8_symmetric, params_u8};
use serde::{Deserialize, Serialize};

/// Integer type and mapping of quantized values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum QuantDtype {
    /// `real = scale · q`, `q ∈ [−127, 127]` (−128 only by saturation).
    #[default]
    I8Symmetric,
    /// `real = scale · (q − zero_point)`, `q ∈ [0, 255]`.
    U8Affine,
}

impl QuantDtype {
    /// Smallest and largest quantized value used for in-range data.
    pub fn qrange(self) -> (i32, i32) {
        match self {
            QuantDtype::I8Symmetric => (-127, 127),
            QuantDtype::U8Affine => (0, 255),
        }
    }

    /// Parameters for data clipped to `[lo, hi]` (the range is widened to include 0; symmetric
    /// uses `max(|lo|, |hi|)`).
    ///
    /// # Errors
    /// [`QuantError::NonFinite`] if `lo` or `hi` is NaN or infinite.
    pub fn params(self, lo: f32, hi: f32) -> Result<QuantParams> {
        if !lo.is_finite() || !hi.is_finite() {
            let (index, value) = if lo.is_finite() { (1, hi) } else { (0, lo) };
            return Err(QuantError::NonFinite { what: "range".into(), index, value });
        }
        Ok(match self {
            QuantDtype::I8Symmetric => params_i8_symmetric(lo.abs().max(hi.abs()))?,
            QuantDtype::U8Affine => params_u8(lo, hi)?,
        })
    }
}

/// Quantize one value with `p` into `dtype`'s integer range, round half to even, saturating.
#[inline]
pub fn quantize_value(x: f32, p: QuantParams, dtype: QuantDtype) -> i32 {
    let (lo, hi) = match dtype {
        QuantDtype::I8Symmetric => (-128, 127),
        QuantDtype::U8Affine => (0, 255),
    };
    let q = (x * (1.0 / p.scale)).round_ties_even() + p.zero_point as f32;
    (q.clamp(lo as f32, hi as f32)) as i32
}

/// `quantize_value` followed by dequantization: the value the int8 path computes with.
#[inline]
pub fn fake_quantize_value(x: f32, p: QuantParams, dtype: QuantDtype) -> f32 {
    p.scale * (quantize_value(x, p, dtype) - p.zero_point) as f32
}

/// How many scales a weight matrix `[d_input, d_output]` gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum WeightGranularity {
    /// One scale for the whole matrix.
    PerTensor,
    /// One scale per output channel (any size, unlike Burn's block scales, which stop at 255
    /// inputs). The default, as in fbgemm and ONNX Runtime's per-channel mode.
    #[default]
    PerChannel,
    /// One scale per output channel and per group of `group_size` consecutive inputs (along K).
    PerGroup {
        /// Inputs per group; must be a multiple of 4 (the kernels' K step) and > 0.
        group_size: usize,
    },
}

impl WeightGranularity {
    /// Number of scales for a `[k, n]` weight: `1`, `n`, or `ceil(k / g) · n`.
    pub fn num_scales(self, k: usize, n: usize) -> usize {
        match self {
            WeightGranularity::PerTensor => 1,
            WeightGranularity::PerChannel => n,
            WeightGranularity::PerGroup { group_size } => k.div_ceil(group_size.max(1)) * n,
        }
    }

    /// Checks the group size.
    ///
    /// # Errors
    /// [`QuantError::InvalidConfig`] for a group size of 0 or not a multiple of 4.
    pub fn validate(self) -> Result<()> {
        if let WeightGranularity::PerGroup { group_size } = self
            && (group_size == 0 || group_size % 4 != 0)
        {
            return Err(QuantError::InvalidConfig {
                what: "group_size",
                value: group_size.to_string(),
                expected: "a positive multiple of 4".into(),
            });
        }
        Ok(())
    }
}

/// Symmetric i8 quantization of a row-major `[k, n]` weight matrix with the given granularity.
///
/// Returns the i8 values (same layout) and the scales: `1`, `n` (per output column) or
/// `[ceil(k/g), n]` row-major (per group). `clip` optionally gives each column's (or the
/// tensor's) clipping magnitude from an observer instead of the plain max|w|.
///
/// # Errors
/// [`QuantError::NonFinite`] for NaN/Inf weights, [`QuantError::Shape`] if `w.len() != k·n`.
pub fn quantize_weight(w: &[f32], k: usize, n: usize, granularity: WeightGranularity) -> Result<(Vec<i8>, Vec<f32>)> {
    quantize_weight_with_scales(w, k, n, granularity, None)
}

/// [`quantize_weight`] with optional fixed scales (for example the step sizes LSQ learned);
/// they must have [`WeightGranularity::num_scales`] finite positive entries.
///
/// # Errors
/// As [`quantize_weight`], and [`QuantError::Shape`] / [`QuantError::InvalidConfig`] for
/// fixed scales of the wrong length or non-positive.
pub fn quantize_weight_with_scales(
    w: &[f32],
    k: usize,
    n: usize,
    granularity: WeightGranularity,
    fixed_scales: Option<&[f32]>,
) -> Result<(Vec<i8>, Vec<f32>)> {
    granularity.validate()?;
    if w.len() != k * n {
        return Err(QuantError::Shape {
            what: "weight".into(),
            expected: format!("{k}×{n} = {} values", k * n),
            actual: format!("{} values", w.len()),
        });
    }
    crate::error::check_finite(|| "weight".into(), w)?;
    let groups = match granularity {
        WeightGranularity::PerGroup { group_size } => group_size,
        _ => k.max(1),
    };
    let n_groups = k.div_ceil(groups).max(1);
    let mut amax = vec![0f32; n_groups * n];
    for r in 0..k {
        let g = r / groups;
        for (c, &v) in w[r * n..(r + 1) * n].iter().enumerate() {
            let a = &mut amax[g * n + c];
            *a = a.max(v.abs());
        }
    }
    if granularity == WeightGranularity::PerTensor {
        let m = amax.iter().fold(0f32, |a, &b| a.max(b));
        amax = vec![m];
    }
    let scales: Vec<f32> = match fixed_scales {
        None => amax.iter().map(|&a| params_i8_symmetric(a).map(|p| p.scale)).collect::<Result<_, _>>()?,
        Some(f) => {
            if f.len() != amax.len() {
                return Err(QuantError::Shape {
                    what: "fixed scales".into(),
                    expected: format!("{} scales ({granularity:?})", amax.len()),
                    actual: format!("{}", f.len()),
                });
            }
            if let Some(i) = f.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(QuantError::InvalidConfig {
                    what: "fixed scales",
                    value: format!("{} at {i}", f[i]),
                    expected: "finite positive scales".into(),
                });
            }
            f.to_vec()
        }
    };
    let mut q = vec![0i8; k * n];
    for r in 0..k {
        let g = r / groups;
        for c in 0..n {
            let s = match granularity {
                WeightGranularity::PerTensor => scales[0],
                _ => scales[g * n + c],
            };
            let p = QuantParams { scale: s, zero_point: 0 };
            q[r * n + c] = quantize_value(w[r * n + c], p, QuantDtype::I8Symmetric) as i8;
        }
    }
    Ok((q, scales))
}

/// Multiplies row `r` of a row-major `[k, n]` weight by `factors[r]` (SmoothQuant: the input
/// is divided by the same factors inside the quantizer).
///
/// # Errors
/// [`QuantError::Shape`] unless there are `k` factors; [`QuantError::NonFinite`] /
/// [`QuantError::InvalidConfig`] for non-finite or non-positive factors. `what` names them.
pub fn apply_smoothing(w: &mut [f32], k: usize, n: usize, factors: &[f32], what: &str) -> Result<()> {
    if factors.len() != k {
        return Err(QuantError::Shape {
            what: what.to_string(),
            expected: format!("{k} factors (d_input)"),
            actual: format!("{}", factors.len()),
        });
    }
    crate::error::check_finite(|| what.to_string(), factors)?;
    if let Some(i) = factors.iter().position(|&v| v <= 0.0) {
        return Err(QuantError::InvalidConfig {
            what: "smoothing factors",
            value: format!("{} at {i} of `{what}`", factors[i]),
            expected: "positive factors".into(),
        });
    }
    for (r, row) in w.chunks_exact_mut(n.max(1)).enumerate() {
        row.iter_mut().for_each(|v| *v *= factors[r]);
    }
    Ok(())
}

/// Dequantize i8 weights produced by [`quantize_weight`] (same granularity and scales).
pub fn dequantize_weight(q: &[i8], k: usize, n: usize, granularity: WeightGranularity, scales: &[f32]) -> Vec<f32> {
    let groups = match granularity {
        WeightGranularity::PerGroup { group_size } => group_size,
        _ => k.max(1),
    };
    let mut out = vec![0f32; k * n];
    for r in 0..k {
        for c in 0..n {
            let s = match granularity {
                WeightGranularity::PerTensor => scales[0],
                WeightGranularity::PerChannel => scales[c],
                WeightGranularity::PerGroup { .. } => scales[(r / groups) * n + c],
            };
            out[r * n + c] = q[r * n + c] as f32 * s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_error_within_half_step() {
        let (k, n) = (5, 3);
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.37).collect();
        let (q, s) = quantize_weight(&w, k, n, WeightGranularity::PerChannel).unwrap();
        let d = dequantize_weight(&q, k, n, WeightGranularity::PerChannel, &s);
        for (i, (a, b)) in w.iter().zip(&d).enumerate() {
            assert!((a - b).abs() <= s[i % n] / 2.0 + 1e-6, "{i}: {a} vs {b}");
        }
    }

    #[test]
    fn zero_tensor_gets_valid_scale() {
        let (q, s) = quantize_weight(&[0.0; 6], 2, 3, WeightGranularity::PerTensor).unwrap();
        assert_eq!(s, vec![1.0]);
        assert!(q.iter().all(|&v| v == 0));
    }

    #[test]
    fn group_size_must_be_multiple_of_four() {
        let e = quantize_weight(&[0.0; 6], 2, 3, WeightGranularity::PerGroup { group_size: 3 }).unwrap_err();
        assert!(e.to_string().contains("multiple of 4"), "{e}");
    }

    #[test]
    fn ties_round_to_even() {
        let p = QuantParams { scale: 1.0, zero_point: 0 };
        assert_eq!(quantize_value(2.5, p, QuantDtype::I8Symmetric), 2);
        assert_eq!(quantize_value(-3.5, p, QuantDtype::I8Symmetric), -4);
        assert_eq!(quantize_value(300.0, p, QuantDtype::U8Affine), 255);
    }
}
