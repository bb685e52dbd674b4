//! Position-wise feed-forward network with a free inner width (so neurons can be removed).

use crate::error::{Result, invalid};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// The non-linearity between the two projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Activation {
    /// Exact (erf) GELU, as BERT and ALBERT use.
    #[default]
    Gelu,
    /// ReLU (MobileBERT, the original Transformer).
    Relu,
}

impl Activation {
    /// Applies the activation.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Gelu => gelu(x),
            Activation::Relu => relu(x),
        }
    }
}

/// Configuration of [`FeedForward`].
#[derive(Config, Debug)]
pub struct FeedForwardConfig {
    /// Model width.
    pub d_model: usize,
    /// Inner width (BERT: 4·d_model).
    pub d_ff: usize,
    /// Activation.
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
    /// Biases on both projections.
    #[config(default = true)]
    pub bias: bool,
    /// Dropout after the activation.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl FeedForwardConfig {
    /// Parameters: `2·D·F` weights (+ `F + D` biases).
    pub fn num_params(&self) -> usize {
        2 * self.d_model * self.d_ff + if self.bias { self.d_ff + self.d_model } else { 0 }
    }

    /// Builds the layer.
    ///
    /// # Errors
    /// [`crate::LayerError::InvalidConfig`] for a zero width.
    pub fn init(&self, device: &Device) -> Result<FeedForward> {
        if self.d_model == 0 || self.d_ff == 0 {
            return Err(invalid("d_model/d_ff", format!("{}/{}", self.d_model, self.d_ff), "positive widths"));
        }
        Ok(FeedForward {
            inner: LinearConfig::new(self.d_model, self.d_ff).with_bias(self.bias).init(device),
            outer: LinearConfig::new(self.d_ff, self.d_model).with_bias(self.bias).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
        })
    }
}

/// `outer(dropout(act(inner(x))))`. Inner neuron `j` is column `j` of `inner` and row `j` of
/// `outer`: removing it removes both.
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `[d_model, d_ff]`.
    pub inner: Linear,
    /// `[d_ff, d_model]`.
    pub outer: Linear,
    /// Dropout after the activation.
    pub dropout: Dropout,
    /// The activation.
    #[module(skip)]
    pub activation: Activation,
}

impl FeedForward {
    /// Applies the network over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.outer.forward(self.dropout.forward(self.activation.apply(self.inner.forward(x))))
    }

    /// Inner width.
    pub fn d_ff(&self) -> usize {
        self.inner.weight.dims()[1]
    }
}
