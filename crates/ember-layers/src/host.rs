//! The fused CPU path: on Flex and NdArray devices without autodiff, the blocks hand whole
//! tensors to `ember-kernels`' row kernels (attention, LayerNorm with the residual add, GELU)
//! instead of a chain of Burn ops. Tensors move to the host without a copy when they are
//! uniquely owned and contiguous (Flex), and back the same way.
//!
//! Everywhere else (GPU devices, autodiff devices, non-f32 tensors) the callers use Burn's ops,
//! so training and other backends are unchanged. Threads: [`ember_quant::int8_threads`], the
//! one setting of Ember's CPU kernels.

use burn::nn::LayerNorm;
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use ember_kernels::fused::RowOptions;

/// Whether `device` runs the fused row kernels (a CPU device without autodiff).
pub(crate) fn fused_device(device: &Device) -> bool {
    ember_quant::cpu_device(device)
}

/// Whether `x` takes the fused path (f32 on a fused device).
pub(crate) fn fused<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && fused_device(&x.device())
}

/// The row kernels' options: the selected kernel, Ember's CPU thread setting.
pub(crate) fn options() -> RowOptions {
    RowOptions::with_threads(ember_quant::int8_threads())
}

/// The values of an f32 tensor (no copy when it is uniquely owned and contiguous).
pub(crate) fn to_host<const D: usize>(x: Tensor<D>) -> Option<(Vec<f32>, Shape)> {
    let shape = x.shape();
    x.into_data().try_into_vec::<f32>().ok().map(|v| (v, shape))
}

/// A tensor of `values` on `device`.
pub(crate) fn from_host<const D: usize>(values: Vec<f32>, shape: Shape, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// `LayerNorm(x + residual)` (or `LayerNorm(x)`) with the fused row kernel on CPU devices,
/// Burn's ops elsewhere. `eps` must be the norm's epsilon (Burn keeps it private).
pub(crate) fn add_layer_norm<const D: usize>(
    norm: &LayerNorm,
    eps: f64,
    x: Tensor<D>,
    residual: Option<Tensor<D>>,
) -> Tensor<D> {
    let width = norm.gamma.dims()[0];
    let eligible = fused(&x)
        && D > 0
        && x.dims()[D - 1] == width
        && residual.as_ref().is_none_or(|r| r.dims() == x.dims() && fused(r))
        && (eps as f32).is_finite()
        && eps as f32 > 0.0;
    if !eligible {
        return burn_layer_norm(norm, x, residual);
    }
    let device = x.device();
    let gamma = to_host(norm.gamma.val()).map(|(g, _)| g);
    let beta = match &norm.beta {
        Some(b) => to_host(b.val()).map(|(v, _)| v),
        None => Some(vec![0.0; width]),
    };
    let (Some(g), Some(b)) = (gamma, beta) else { return burn_layer_norm(norm, x, residual) };
    // Both are f32 (checked above), so the reads cannot fail; were one to, Burn's op runs.
    let Some((mut v, shape)) = to_host(x) else { unreachable_f32() };
    let res = match residual.map(to_host) {
        Some(Some((r, _))) => Some(r),
        Some(None) => unreachable_f32(),
        None => None,
    };
    match ember_kernels::fused::layer_norm(&mut v, res.as_deref(), &g, &b, eps as f32, &options()) {
        Ok(()) => from_host(v, shape, &device),
        // Unreachable after the checks above; the data is untouched on an error, so Burn's op
        // can still run on it.
        Err(_) => {
            let x = from_host(v, shape.clone(), &device);
            burn_layer_norm(norm, x, res.map(|r| from_host(r, shape, &device)))
        }
    }
}

/// An f32 tensor on a CPU device always reads back as `Vec<f32>`.
fn unreachable_f32() -> ! {
    unreachable!("an f32 tensor on a CPU device reads back as f32 values")
}

fn burn_layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>, residual: Option<Tensor<D>>) -> Tensor<D> {
    match residual {
        Some(r) => norm.forward(x + r),
        None => norm.forward(x),
    }
}
