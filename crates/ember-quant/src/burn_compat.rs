//! Conversion between Ember's int8 weights and Burn's own quantized (`QFloat`) tensors, where
//! Burn can express the scheme.
//!
//! Burn 0.22 stores symmetric quantized tensors with per-tensor or per-block scales, block
//! dimensions being `u8`. For a `[d_input, d_output]` weight that means: per-tensor always;
//! per-output-channel scales as `[d_input, 1]` blocks only when `d_input ≤ 255`; per-group
//! scales as `[group_size, 1]` blocks when `group_size ≤ 255` and divides `d_input`. Anything
//! else is [`QuantError::UnsupportedScheme`]. Burn has no zero points (its affine mode was
//! removed), so only Ember's symmetric i8 weights convert; Burn's `Q8S` range `[−127, 127]`
//! matches Ember's.
//!
//! Use this to hand an Ember-quantized weight to Burn code that expects `QFloat`, or to run a
//! model quantized with Burn's `Quantizer` on Ember's kernels ([`linear_from_burn_quantized`]).

use crate::QuantDtype;
use crate::error::{QuantError, Result};
use crate::linear::{Linear, LinearQuantState};
use crate::scheme::WeightGranularity;
use crate::spec::{ActivationGranularity, ActivationMode, LinearQuantSpec, SPEC_LEN};
use burn::module::{Param, ParamId};
use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, QuantizedBytes};
use burn::tensor::{DType, Tensor, TensorData};

/// Burn's `QuantScheme` for an Ember weight granularity over a `[k, n]` weight.
///
/// # Errors
/// [`QuantError::UnsupportedScheme`] where Burn's block sizes (u8) cannot express it.
pub fn burn_scheme(granularity: WeightGranularity, k: usize) -> Result<QuantScheme> {
    let base = QuantScheme::default().with_value(QuantValue::Q8S).with_store(QuantStore::Native);
    let scale = burn::tensor::quantization::ScaleDtype::F32;
    match granularity {
        WeightGranularity::PerTensor => Ok(base.per_tensor(scale)),
        WeightGranularity::PerChannel if k <= 255 && k > 0 => Ok(base.per_block([k as u8, 1], scale)),
        WeightGranularity::PerGroup { group_size } if group_size <= 255 && k.is_multiple_of(group_size) => {
            Ok(base.per_block([group_size as u8, 1], scale))
        }
        g => Err(QuantError::UnsupportedScheme(format!(
            "{g:?} scales over d_input = {k} cannot be a Burn QFloat tensor (Burn's block sizes are u8 and must \
             divide the shape): keep Ember's int8 Linear, or use per-tensor scales"
        ))),
    }
}

/// The int8 weight of `layer` as a Burn `QFloat` tensor `[d_input, d_output]` (SmoothQuant
/// factors are not included: they live in the activation quantizer).
///
/// # Errors
/// [`QuantError::InvalidConfig`] for a float layer; [`QuantError::UnsupportedScheme`] (see
/// [`burn_scheme`]).
pub fn to_burn_qfloat(layer: &Linear) -> Result<Tensor<2>> {
    let spec = layer.try_quant_spec()?.ok_or_else(|| QuantError::InvalidConfig {
        what: "layer",
        value: "float".into(),
        expected: "an int8 layer (convert it first)".into(),
    })?;
    let scheme = burn_scheme(spec.weight, spec.d_input)?;
    let values = crate::linear::host_int::<i8, 2>("quant.values", layer.quant.values.val())?;
    let scales = crate::linear::host_f32("quant.scales", layer.quant.scales.val())?;
    let data = TensorData::quantized(values, [spec.d_input, spec.d_output], scheme, &scales, None);
    Ok(Tensor::from_data(data, &layer.quant.values.device()))
}

/// An int8 Ember [`Linear`] from a `burn::nn::Linear` whose weight Burn quantized (symmetric
/// `Q8S`/`Q8F`, `Native` store, per tensor or with `[b, 1]` blocks), running in `mode` on
/// Ember's kernels.
///
/// # Errors
/// [`QuantError::UnsupportedScheme`] for a float weight, a scheme Ember's kernels do not run
/// (4- or 2-bit values, packed stores, two-level scales, other block shapes), or static `mode`
/// (Burn keeps no activation parameters).
pub fn linear_from_burn_quantized(layer: burn::nn::Linear, mode: ActivationMode) -> Result<Linear> {
    if mode == ActivationMode::Static {
        return Err(QuantError::UnsupportedScheme(
            "static mode from a Burn-quantized layer: Burn stores no activation parameters; convert in dynamic \
             mode, or calibrate an Ember Linear and use Quantizer with ActivationMode::Static"
                .into(),
        ));
    }
    let w = layer.weight.val();
    let device = w.device();
    let [k, n] = w.dims();
    let (bytes, shape, dtype) = w.into_data().into_parts();
    let DType::QFloat(scheme) = dtype else {
        return Err(QuantError::UnsupportedScheme(format!("weight dtype {dtype:?} is not a Burn QFloat tensor")));
    };
    if !matches!(scheme.value, QuantValue::Q8S | QuantValue::Q8F) || scheme.store != QuantStore::Native {
        return Err(QuantError::UnsupportedScheme(format!(
            "{scheme:?}: Ember's kernels run 8-bit values stored natively"
        )));
    }
    let (values, decoded) = QuantizedBytes { bytes, scheme, shape }.into_vec_i8();
    if decoded.global.is_some() {
        return Err(QuantError::UnsupportedScheme("two-level (block + tensor) scales".into()));
    }
    let scales = decoded.block;
    let granularity = if scales.len() == 1 {
        WeightGranularity::PerTensor
    } else if scales.len() == n {
        WeightGranularity::PerChannel
    } else if n > 0 && scales.len() % n == 0 && k % (scales.len() / n) == 0 && (k / (scales.len() / n)) % 4 == 0 {
        WeightGranularity::PerGroup { group_size: k / (scales.len() / n) }
    } else {
        return Err(QuantError::UnsupportedScheme(format!(
            "{} scales over a [{k}, {n}] weight: expected 1, {n}, or whole groups of a multiple of 4 along d_input",
            scales.len()
        )));
    };
    let spec = LinearQuantSpec {
        mode,
        activation_dtype: QuantDtype::U8Affine,
        activation_granularity: ActivationGranularity::PerRow,
        weight: granularity,
        d_input: k,
        d_output: n,
    };
    let empty = |device| Tensor::<1>::from_data(TensorData::new(Vec::<f32>::new(), [0]), device);
    let ns = scales.len();
    let quant = LinearQuantState {
        values: Param::initialized(
            ParamId::new(),
            Tensor::from_data(TensorData::new(values, [k, n]), (&device, DType::I8)),
        ),
        scales: Param::initialized(ParamId::new(), Tensor::from_data(TensorData::new(scales, [ns]), &device))
            .set_require_grad(false),
        activation: Param::initialized(ParamId::new(), empty(&device)).set_require_grad(false),
        smooth: Param::initialized(ParamId::new(), empty(&device)).set_require_grad(false),
        spec: Param::initialized(
            ParamId::new(),
            Tensor::from_data(TensorData::new(spec.encode(), [SPEC_LEN]), (&device, DType::I32)),
        ),
    };
    Ok(Linear::from_parts(Param::initialized(layer.weight.id, Tensor::zeros([0, n], &device)), layer.bias, quant))
}
