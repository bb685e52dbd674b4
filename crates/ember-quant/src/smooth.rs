//! SmoothQuant (Xiao et al. 2023, arXiv 2211.10438) as exact rewrites.
//!
//! Activation outliers concentrate in a few input channels; SmoothQuant divides input channel
//! `j` by `s_j = max|X_j|^α / max|W_j|^(1−α)` (eq. 4) and multiplies weight row `j` by `s_j`,
//! which leaves `X·W` unchanged in exact arithmetic and moves quantization difficulty from the
//! activations to the weights. `α = 0.5` is the paper's default.
//!
//! Where the division can be folded depends on the model:
//! - [`smooth_layer_norm`]: into the LayerNorm that feeds the smoothed Linears and nothing else
//!   (pre-norm blocks: the LayerNorm output goes only to Q/K/V, or only to the first FFN layer);
//! - [`smooth_linear_pair`]: into a preceding Linear whose output feeds only the next one
//!   linearly (the value projection → attention output projection: attention mixes tokens, not
//!   channels);
//! - elsewhere (post-norm blocks such as BERT's, where the LayerNorm output is also the
//!   residual), inside the int8 layer's activation quantizer: compute factors with
//!   [`smoothing_factors_for`] and pass them to [`crate::Quantizer::with_smoothing`]; the layer
//!   stores them and divides its input before quantizing.
//!
//! Each function returns the factors it applied. Statistics come from a calibration run
//! ([`crate::LayerStats::channel_abs_max`]).

use crate::error::{QuantError, Result, check_finite};
use crate::linear::{Linear, host_f32};
use burn::module::Param;
use burn::nn::LayerNorm;
use burn::tensor::{Tensor, TensorData};

/// Clamp of the factors, so that dead channels (all-zero activations or weights) cannot
/// produce 0 or ∞.
const MIN_FACTOR: f32 = 1e-5;
const MAX_FACTOR: f32 = 1e5;

/// `s_j = max|X_j|^α / max|W_j|^(1−α)` (SmoothQuant eq. 4), clamped to `[1e-5, 1e5]`; a channel
/// whose activation or weight maximum is 0 gets `s_j = 1`.
///
/// # Errors
/// [`QuantError::InvalidConfig`] for `α ∉ [0, 1]`; [`QuantError::Shape`] for different
/// lengths; [`QuantError::NonFinite`] for NaN/Inf statistics.
pub fn smoothing_factors(act_abs_max: &[f32], weight_abs_max: &[f32], alpha: f32) -> Result<Vec<f32>> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(QuantError::InvalidConfig {
            what: "alpha",
            value: alpha.to_string(),
            expected: "a migration strength in [0, 1] (0.5 in the paper)".into(),
        });
    }
    if act_abs_max.len() != weight_abs_max.len() {
        return Err(QuantError::Shape {
            what: "smoothing statistics".into(),
            expected: format!("{} weight rows (one per activation channel)", act_abs_max.len()),
            actual: format!("{}", weight_abs_max.len()),
        });
    }
    check_finite(|| "activation abs-max".into(), act_abs_max)?;
    check_finite(|| "weight abs-max".into(), weight_abs_max)?;
    Ok(act_abs_max
        .iter()
        .zip(weight_abs_max)
        .map(|(&a, &w)| {
            let (a, w) = (a.abs(), w.abs());
            if a == 0.0 || w == 0.0 { 1.0 } else { (a.powf(alpha) / w.powf(1.0 - alpha)).clamp(MIN_FACTOR, MAX_FACTOR) }
        })
        .collect())
}

/// Per input channel max |W[j, :]| over the float weights of `linears` (which share an input).
///
/// # Errors
/// [`QuantError::Shape`] if the layers' inputs differ; [`QuantError::InvalidConfig`] for int8
/// layers (smooth before converting).
pub fn weight_row_abs_max(linears: &[&Linear]) -> Result<Vec<f32>> {
    let mut out: Option<Vec<f32>> = None;
    for l in linears {
        if l.is_quantized() {
            return Err(QuantError::InvalidConfig {
                what: "layer",
                value: "int8".into(),
                expected: "float layers: smooth before converting to int8".into(),
            });
        }
        let [k, n] = l.weight.dims();
        let w = host_f32("weight", l.weight.val())?;
        let rows: Vec<f32> = (0..k).map(|r| w[r * n..(r + 1) * n].iter().fold(0f32, |a, v| a.max(v.abs()))).collect();
        match &mut out {
            None => out = Some(rows),
            Some(o) if o.len() == k => o.iter_mut().zip(rows).for_each(|(a, b)| *a = a.max(b)),
            Some(o) => {
                return Err(QuantError::Shape {
                    what: "smoothed layers".into(),
                    expected: format!("d_input {}", o.len()),
                    actual: format!("{k}"),
                });
            }
        }
    }
    out.ok_or_else(|| QuantError::Empty { what: "linears".into(), expected: "at least one layer".into() })
}

/// Factors for `linears` sharing an input whose per-channel abs-max is `act_abs_max`.
///
/// # Errors
/// As [`smoothing_factors`] and [`weight_row_abs_max`].
pub fn smoothing_factors_for(linears: &[&Linear], act_abs_max: &[f32], alpha: f32) -> Result<Vec<f32>> {
    smoothing_factors(act_abs_max, &weight_row_abs_max(linears)?, alpha)
}

fn vector(v: &[f32], like: &Tensor<2>) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &like.device())
}

/// A replacement parameter with the same id and trainability, as a fresh leaf (the rewrite is
/// not part of any autodiff graph).
fn replaced<const D: usize>(old: &Param<Tensor<D>>, value: Tensor<D>) -> Param<Tensor<D>> {
    let rg = old.is_require_grad();
    Param::initialized(old.id, value.detach()).set_require_grad(rg)
}

fn scale_rows(l: &mut Linear, s: &[f32]) {
    let w = l.weight.val();
    let f = vector(s, &w).unsqueeze_dim::<2>(1);
    l.weight = replaced(&l.weight, w * f);
}

/// Folds `1/s` into `norm` (γ and β) and `s` into the weight rows of `linears`, which must be
/// the only consumers of `norm`'s output. Returns `s`.
///
/// # Errors
/// As [`smoothing_factors_for`], and [`QuantError::Shape`] if `norm`'s width differs.
pub fn smooth_layer_norm(
    norm: &mut LayerNorm,
    linears: &mut [&mut Linear],
    act_abs_max: &[f32],
    alpha: f32,
) -> Result<Vec<f32>> {
    let refs: Vec<&Linear> = linears.iter().map(|l| &**l).collect();
    let s = smoothing_factors_for(&refs, act_abs_max, alpha)?;
    let g = norm.gamma.val();
    if g.dims()[0] != s.len() {
        return Err(QuantError::Shape {
            what: "LayerNorm".into(),
            expected: format!("width {}", s.len()),
            actual: format!("{}", g.dims()[0]),
        });
    }
    let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
    let inv_t = Tensor::<1>::from_data(TensorData::new(inv, [s.len()]), &g.device());
    norm.gamma = replaced(&norm.gamma, g * inv_t.clone());
    if let Some(b) = &norm.beta {
        norm.beta = Some(replaced(b, b.val() * inv_t));
    }
    for l in linears.iter_mut() {
        scale_rows(l, &s);
    }
    Ok(s)
}

/// Folds `1/s` into the output columns (weight and bias) of `prev` and `s` into the weight
/// rows of `next`; valid when `prev`'s output reaches `next` only through channel-preserving
/// linear maps (V → attention → output projection). Returns `s`.
///
/// # Errors
/// As [`smoothing_factors_for`], and [`QuantError::Shape`] if `prev`'s output width is not
/// `next`'s input width.
pub fn smooth_linear_pair(prev: &mut Linear, next: &mut Linear, act_abs_max: &[f32], alpha: f32) -> Result<Vec<f32>> {
    if prev.is_quantized() {
        return Err(QuantError::InvalidConfig {
            what: "layer",
            value: "int8".into(),
            expected: "float layers: smooth before converting to int8".into(),
        });
    }
    let s = smoothing_factors_for(&[&*next], act_abs_max, alpha)?;
    let w = prev.weight.val();
    if w.dims()[1] != s.len() {
        return Err(QuantError::Shape {
            what: "smoothed pair".into(),
            expected: format!("prev d_output = next d_input = {}", s.len()),
            actual: format!("{}", w.dims()[1]),
        });
    }
    let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
    let inv_t = vector(&inv, &w);
    prev.weight = replaced(&prev.weight, w * inv_t.clone().unsqueeze::<2>());
    if let Some(b) = &prev.bias {
        prev.bias = Some(replaced(b, b.val() * inv_t));
    }
    scale_rows(next, &s);
    Ok(s)
}
