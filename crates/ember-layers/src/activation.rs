//! The feed-forward non-linearities, with fast exact GELU on CPU devices.
//!
//! Burn's CPU backends compute `erf` and `tanh` one element at a time through libm, which made
//! GELU the largest cost of an int8 BERT forward pass. On Flex and NdArray devices (without
//! autodiff) [`gelu`] and [`gelu_tanh`] move the tensor to the host (without a copy when it is
//! uniquely owned) and run `ember_kernels::fused::{gelu, gelu_tanh}`: branch-free forms
//! compiled for AVX-512 / AVX2 (Abramowitz & Stegun 7.1.26 for erf, |error| ≤ 5e-7 in f32;
//! `tanh(u) = (1 − e^{−2|u|}) / (1 + e^{−2|u|})` with a Cody–Waite polynomial `exp`), split over
//! Ember's threads. Everywhere else (GPU, autodiff devices) they are Burn's ops.

use crate::error::{Result, invalid};
use burn::tensor::Tensor;
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

/// Applies a fused row kernel to the values on the host when `x` is f32 on a CPU device
/// without autodiff (no copy when `x` is uniquely owned); `fallback` (Burn's ops) otherwise.
fn on_host<const D: usize>(
    x: Tensor<D>,
    f: fn(&mut [f32], &ember_kernels::fused::RowOptions) -> ember_kernels::Result<()>,
    fallback: fn(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    if !crate::host::fused(&x) {
        return fallback(x);
    }
    let device = x.device();
    let Some((mut v, shape)) = crate::host::to_host(x) else {
        unreachable!("an f32 tensor on a CPU device reads back as f32 values")
    };
    // Element-wise kernels fail only for an instruction set the CPU lacks, which the selected
    // options never name; the values are untouched then, and Burn's op runs on them.
    let ok = f(&mut v, &crate::host::options()).is_ok();
    let y = crate::host::from_host(v, shape, &device);
    if ok { y } else { fallback(y) }
}

/// Exact GELU `0.5·x·(1 + erf(x/√2))`, fast on CPU devices (see the [module docs](self)).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    on_host(x, ember_kernels::fused::gelu, burn::tensor::activation::gelu)
}

/// GELU's tanh approximation `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, fast on CPU devices.
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    on_host(x, ember_kernels::fused::gelu_tanh, |x| {
        let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715) * (2.0f64 / std::f64::consts::PI).sqrt();
        x * (inner.tanh() + 1.0) * 0.5
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
