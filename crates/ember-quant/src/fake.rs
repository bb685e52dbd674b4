//! Fake quantization for quantization-aware training (QAT), on any device.
//!
//! Forward: `x̂ = (clamp(round(x/s) + z, q_min, q_max) − z) · s`, the value the int8 path computes
//! with. Backward:
//! - [`fake_quantize`] uses the clipped straight-through estimator (Bengio et al. 2013; Jacob et
//!   al. 2018): `∂x̂/∂x = 1` inside the clip range `[(q_min − z)·s, (q_max − z)·s]` and `0`
//!   outside; the scale gets no gradient.
//! - [`lsq_fake_quantize`] is LSQ (Esser et al. 2020, "Learned Step Size Quantization", eq. 3):
//!   the same STE for `x`, and for the step size `∂x̂/∂s = round(x/s) − x/s` inside the range,
//!   `q_min` or `q_max` (for `z = 0`) outside, multiplied by the gradient scale `g` (the paper's
//!   `g = 1/√(N·Q_P)`).
//!
//! Both are built from differentiable Burn ops (`detach` supplies the straight-through part), so
//! they run on every device, autodiff or not, with no custom backward kernel.

use crate::scheme::QuantDtype;
use crate::spec::{ActivationGranularity, ActivationMode, LinearQuantSpec};
use burn::tensor::Tensor;
use ember_kernels::quantize::QuantParams;

/// Fake-quantizes `x` with per-tensor parameters `p` into `dtype`'s range (clipped STE gradient).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use ember_kernels::quantize::QuantParams;
/// use ember_quant::{fake::fake_quantize, QuantDtype};
/// let d = Device::flex();
/// let x = Tensor::<1>::from_floats([0.26, -0.74, 9.0], &d);
/// let y = fake_quantize(x, QuantParams { scale: 0.5, zero_point: 0 }, QuantDtype::I8Symmetric);
/// assert_eq!(y.into_data().try_into_vec::<f32>().unwrap(), vec![0.5, -0.5, 9.0]);
/// ```
pub fn fake_quantize<const D: usize>(x: Tensor<D>, p: QuantParams, dtype: QuantDtype) -> Tensor<D> {
    let (qmin, qmax) = saturation(dtype);
    let z = p.zero_point as f32;
    let (lo, hi) = ((qmin - z) * p.scale, (qmax - z) * p.scale);
    let xc = x.clamp(lo, hi);
    let q = xc.clone().mul_scalar(1.0 / p.scale).round().add_scalar(z).clamp(qmin, qmax);
    let deq = q.sub_scalar(z).mul_scalar(p.scale);
    xc.clone() + (deq - xc).detach()
}

/// Fake-quantizes `x` with one symmetric scale per channel of the last dimension (`scales` has
/// `x.dims()[D-1]` entries), clipped STE gradient. This is what QAT applies to `[d_input,
/// d_output]` weights with per-output-channel scales.
pub fn fake_quantize_per_channel<const D: usize>(x: Tensor<D>, scales: Tensor<1>, dtype: QuantDtype) -> Tensor<D> {
    let (qmin, qmax) = saturation(dtype);
    let s: Tensor<D> = scales.detach().unsqueeze::<D>();
    let v = x.clone() / s.clone();
    let inside = v.clone().greater_equal_elem(qmin).bool_and(v.clone().lower_equal_elem(qmax));
    let deq = v.round().clamp(qmin, qmax) * s;
    // Inside: x + (deq − x).detach() (value deq, gradient 1); outside: deq detached (gradient 0).
    deq.clone().detach().mask_where(inside, x.clone() + (deq - x).detach())
}

/// LSQ fake quantization with a learnable step size `scale` (a scalar `[1]` or one per channel
/// of the last dimension) and gradient scale `grad_scale` (`1/√(N·Q_P)` in the paper).
/// `dtype` must be [`QuantDtype::I8Symmetric`] for weights (`z = 0`, `[−127, 127]`); with
/// [`QuantDtype::U8Affine`] the range is `[0, 255]` with `z = 0` (non-negative activations, as
/// LSQ does after ReLU).
pub fn lsq_fake_quantize<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<1>,
    dtype: QuantDtype,
    grad_scale: f32,
) -> Tensor<D> {
    let (qmin, qmax) = match dtype {
        QuantDtype::I8Symmetric => (-127.0, 127.0),
        QuantDtype::U8Affine => (0.0, 255.0),
    };
    // Value `s`, gradient scaled by g (Esser et al. 2020, Fig. 1 `gradscale`).
    let sg = scale.clone().mul_scalar(grad_scale);
    let s = (scale - sg.clone()).detach() + sg;
    let s: Tensor<D> = s.unsqueeze::<D>();
    let v = (x / s.clone()).clamp(qmin, qmax);
    let vr = v.clone() + (v.clone().round() - v).detach();
    vr * s
}

/// Saturation bounds of the kernels for `dtype` (in-range data uses `QuantDtype::qrange`).
fn saturation(dtype: QuantDtype) -> (f32, f32) {
    match dtype {
        QuantDtype::I8Symmetric => (-128.0, 127.0),
        QuantDtype::U8Affine => (0.0, 255.0),
    }
}

/// The activation quantization of an int8 layer, done with Burn ops (the float fallback and
/// QAT of activations): dynamic per row / per tensor, or static.
pub(crate) fn fake_quantize_activation<const D: usize>(
    x: Tensor<D>,
    spec: &LinearQuantSpec,
    act: Option<QuantParams>,
) -> Tensor<D> {
    if let (ActivationMode::Static, Some(p)) = (spec.mode, act) {
        return fake_quantize(x, p, spec.activation_dtype);
    }
    let dims = x.dims();
    let last = D - 1;
    let (lo, hi) = match spec.activation_granularity {
        ActivationGranularity::PerRow => (x.clone().min_dim(last), x.clone().max_dim(last)),
        ActivationGranularity::PerTensor => {
            let device = x.device();
            let flat_lo: Tensor<1> = x.clone().min();
            let flat_hi: Tensor<1> = x.clone().max();
            let mut one = [1usize; D];
            one[0] = 1;
            let lo = flat_lo.to_device(&device).reshape(one);
            let hi = flat_hi.to_device(&device).reshape(one);
            (lo, hi)
        }
    };
    let (lo, hi) = (lo.clamp_max(0.0), hi.clamp_min(0.0));
    let _ = dims;
    match spec.activation_dtype {
        QuantDtype::U8Affine => {
            // Kernel convention (ember_kernels::quantize::params_u8): s = hi/255 − lo/255, s = 1
            // for a zero range, z = clamp(round(−lo/s), 0, 255), q = clamp(round(x·(1/s)) + z).
            let s = hi.div_scalar(255.0) - lo.clone().div_scalar(255.0);
            let s = s.clone().mask_fill(s.equal_elem(0.0), 1.0);
            let z = (lo.neg() / s.clone()).round().clamp(0.0, 255.0);
            let inv = s.clone().recip();
            let q = ((x.clone() * inv).round() + z.clone()).clamp(0.0, 255.0);
            let deq = (q - z) * s;
            x.clone() + (deq - x).detach()
        }
        QuantDtype::I8Symmetric => {
            let a = lo.abs().max_pair(hi);
            let s = a.div_scalar(127.0);
            let s = s.clone().mask_fill(s.equal_elem(0.0), 1.0);
            let q = (x.clone() * s.clone().recip()).round().clamp(-128.0, 127.0);
            let deq = q * s;
            x.clone() + (deq - x).detach()
        }
    }
}
