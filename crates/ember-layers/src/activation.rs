//! The feed-forward non-linearities, with fast exact GELU on CPU devices.
//!
//! Burn's CPU backends compute `erf` and `tanh` one element at a time through libm, which made
//! GELU the largest cost of an int8 BERT forward pass. On Flex and NdArray devices (without
//! autodiff) [`gelu`] and [`gelu_tanh`] read the tensor to the host and apply branch-free,
//! auto-vectorized forms: Abramowitz & Stegun 7.1.26 for erf (|error| ≤ 1.5e-7 in exact
//! arithmetic, ≤ 5e-7 in f32) and `tanh(u) = (1 − e^{−2|u|}) / (1 + e^{−2|u|})` with a
//! Cody–Waite range-reduced polynomial `exp`. Everywhere else (GPU, autodiff devices) they are
//! Burn's ops.

use crate::error::{Result, invalid};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The non-linearity between the two projections of a feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Activation {
    /// Exact (erf) GELU, as BERT and MiniLM use (Hugging Face `"gelu"`).
    #[default]
    Gelu,
    /// The tanh approximation of GELU (`"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`), as
    /// ALBERT and GPT-2 use.
    GeluTanh,
    /// ReLU (MobileBERT, the original Transformer).
    Relu,
    /// SiLU / swish (`"silu"`, `"swish"`).
    Silu,
}

impl Activation {
    /// Parses a Hugging Face `hidden_act` name.
    ///
    /// # Errors
    /// [`crate::LayerError::InvalidConfig`] for an activation this crate does not implement.
    pub fn from_hf(name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            other => Err(invalid(
                "hidden_act",
                other,
                "one of gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu, swish",
            )),
        }
    }

    /// The Hugging Face name of the activation (`"gelu"`, `"gelu_new"`, `"relu"`, `"silu"`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_new",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
        }
    }

    /// Applies the activation element-wise.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_tanh(x),
            Activation::Relu => burn::tensor::activation::relu(x),
            Activation::Silu => burn::tensor::activation::silu(x),
        }
    }
}

/// `exp(x)` for `x ≤ 0` (clamped at −87), relative error ≈ 2e-7, branch-free.
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    let x = x.max(-87.0);
    // Round to nearest by the 1.5·2²³ trick (no libm call, so the loop vectorizes).
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    // Cody–Waite: ln 2 split in a high part exact in f32 and a low correction.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // 2^n through the exponent bits (n ≥ −126 after the clamp).
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `erf(x)`, Abramowitz & Stegun 7.1.26 (|error| ≤ 5e-7 in f32), branch-free.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp_neg(-a * a);
    y.copysign(x)
}

#[inline(always)]
fn gelu_loop(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// The loop compiled for AVX2 + FMA (8 lanes, fused multiply-adds).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_loop_avx2(v: &mut [f32]) {
    gelu_loop(v);
}

/// `0.5·x·(1 + erf(x/√2))` over a slice, in place (AVX2 + FMA when the CPU has them).
fn gelu_slice(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: both features were just detected on this CPU.
        unsafe { gelu_loop_avx2(v) };
        return;
    }
    gelu_loop(v);
}

/// `tanh(u)` branch-free from [`exp_neg`] (|error| ≈ 2e-7).
#[inline(always)]
fn tanh(u: f32) -> f32 {
    let e = exp_neg(-2.0 * u.abs());
    ((1.0 - e) / (1.0 + e)).copysign(u)
}

#[inline(always)]
fn gelu_tanh_loop(v: &mut [f32]) {
    const C: f32 = 0.797_884_6; // √(2/π)
    for x in v.iter_mut() {
        let u = C * (*x + 0.044_715 * *x * *x * *x);
        *x = 0.5 * *x * (1.0 + tanh(u));
    }
}

/// The loop compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_tanh_loop_avx2(v: &mut [f32]) {
    gelu_tanh_loop(v);
}

fn gelu_tanh_slice(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: both features were just detected on this CPU.
        unsafe { gelu_tanh_loop_avx2(v) };
        return;
    }
    gelu_tanh_loop(v);
}

fn host_device(device: &burn::tensor::Device) -> bool {
    #[allow(unreachable_patterns)]
    match device.as_dispatch() {
        #[cfg(feature = "flex")]
        burn::backend::DispatchDevice::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        burn::backend::DispatchDevice::NdArray(_) => true,
        _ => false,
    }
}

/// Applies `f` to the values on the host when `x` is f32 on a CPU device without autodiff;
/// `None` otherwise (the caller then uses Burn's op).
fn on_host<const D: usize>(x: &Tensor<D>, f: fn(&mut [f32])) -> Option<Tensor<D>> {
    let device = x.device();
    if !host_device(&device) || x.dtype() != burn::tensor::DType::F32 {
        return None;
    }
    let shape = x.shape();
    let mut v = x.clone().into_data().try_into_vec::<f32>().ok()?;
    f(&mut v);
    Some(Tensor::from_data(TensorData::new(v, shape), &device))
}

/// Exact GELU `0.5·x·(1 + erf(x/√2))`, fast on CPU devices (see the [module docs](self)).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    on_host(&x, gelu_slice).unwrap_or_else(|| burn::tensor::activation::gelu(x))
}

/// GELU's tanh approximation `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, fast on CPU devices.
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    on_host(&x, gelu_tanh_slice).unwrap_or_else(|| {
        let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715) * (2.0f64 / std::f64::consts::PI).sqrt();
        x * (inner.tanh() + 1.0) * 0.5
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf64(x: f64) -> f64 {
        // Series / continued fraction free reference: high-order A&S 7.1.28 is not exact
        // enough, so integrate exp(−t²) with composite Simpson on a fine grid.
        let n = 20_000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_and_exp_are_accurate() {
        let mut worst = 0f64;
        for i in -600..=600 {
            let x = i as f64 / 100.0;
            worst = worst.max((f64::from(erf(x as f32)) - erf64(x)).abs());
        }
        assert!(worst < 5e-7, "erf max error {worst}");
        for i in 0..=870 {
            let x = -(i as f32) / 10.0;
            let rel = ((f64::from(exp_neg(x)) - f64::from(x).exp()) / f64::from(x).exp()).abs();
            assert!(rel < 1e-6, "exp({x}) relative error {rel}");
        }
        assert_eq!(exp_neg(-1000.0), exp_neg(-87.0));
        assert!(erf(f32::INFINITY) == 1.0 && erf(f32::NEG_INFINITY) == -1.0);
    }

    #[test]
    fn gelu_matches_burn_on_flex() {
        let d = burn::tensor::Device::flex();
        let x = Tensor::<2>::random([64, 37], burn::tensor::Distribution::Normal(0.0, 3.0), &d);
        let a: Vec<f32> = gelu(x.clone()).into_data().try_into_vec().unwrap();
        let b: Vec<f32> = burn::tensor::activation::gelu(x).into_data().try_into_vec().unwrap();
        let err = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(err < 1e-5, "{err}");
    }

    #[test]
    fn gelu_tanh_matches_the_formula_on_flex() {
        let d = burn::tensor::Device::flex();
        let x = Tensor::<2>::random([64, 37], burn::tensor::Distribution::Normal(0.0, 3.0), &d);
        let a: Vec<f32> = gelu_tanh(x.clone()).into_data().try_into_vec().unwrap();
        let v: Vec<f32> = x.into_data().try_into_vec().unwrap();
        let c = (2.0f64 / std::f64::consts::PI).sqrt();
        let err = a
            .iter()
            .zip(&v)
            .map(|(p, &x)| {
                let x = f64::from(x);
                (f64::from(*p) - 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())).abs()
            })
            .fold(0f64, f64::max);
        assert!(err < 2e-6, "{err}");
    }
}
