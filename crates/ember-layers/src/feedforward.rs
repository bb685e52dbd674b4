//! The position-wise feed-forward block, on Ember's int8-ready [`Linear`], with a free inner
//! width (so neurons can be removed physically).

use crate::activation::Activation;
use crate::error::{Result, edit, invalid};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Tensor};
use ember_quant::{ActivationGranularity, ActivationMode, Linear, LinearConfig};

/// Rows per block of the feed-forward block on the fused CPU path (see [`FeedForward::forward`]).
const FUSED_CHUNK_ROWS: usize = 256;

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
    ///
    /// # Errors
    /// Sizes no process could allocate.
    pub fn num_params(&self) -> Result<usize> {
        self.count().checked()
    }

    pub(crate) fn count(&self) -> crate::error::Count {
        use crate::error::Count as C;
        let (d, f) = (C::from(self.d_model), C::from(self.d_ff));
        C::from(2) * d * f + if self.bias { f + d } else { C(0) }
    }

    /// Builds the block (float; convert it with `ember_quant::Quantizer`).
    ///
    /// # Errors
    /// [`crate::LayerError::InvalidConfig`] for a zero width or sizes no process could
    /// allocate.
    pub fn init(&self, device: &Device) -> Result<FeedForward> {
        if self.d_model == 0 || self.d_ff == 0 {
            return Err(invalid("d_model/d_ff", format!("{}/{}", self.d_model, self.d_ff), "positive widths"));
        }
        self.num_params()?;
        Ok(FeedForward {
            inner: LinearConfig::new(self.d_model, self.d_ff).with_bias(self.bias).init(device),
            outer: LinearConfig::new(self.d_ff, self.d_model).with_bias(self.bias).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
        })
    }
}

/// `outer(dropout(act(inner(x))))`. Inner neuron `j` is column `j` of `inner` and row `j` of
/// `outer`: [`FeedForward::retain_neurons`] keeps a subset of both.
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
    /// Assembles a block from its two layers.
    ///
    /// # Errors
    /// [`crate::LayerError::Shape`] unless `outer` reads `inner`'s outputs.
    pub fn from_parts(inner: Linear, outer: Linear, activation: Activation, dropout: f64) -> Result<Self> {
        if inner.d_output() != outer.d_input() {
            return Err(crate::LayerError::Shape {
                what: "outer layer input".into(),
                expected: inner.d_output().to_string(),
                actual: outer.d_input().to_string(),
            });
        }
        Ok(FeedForward { inner, outer, dropout: DropoutConfig::new(dropout).init(), activation })
    }

    /// Applies the block over the last dimension. On CPU devices without autodiff, inputs of
    /// more than 256 rows run in blocks of 256 rows when each row's result depends on that row
    /// only (float, static or per-row dynamic int8 layers), which keeps the inner activations in
    /// cache.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let rows: usize = dims[..D - 1].iter().product();
        if rows > FUSED_CHUNK_ROWS && crate::host::fused(&x) && self.rows_independent() {
            // Inference on a CPU device: blocks of rows, so the inner activations (4 × the
            // model width) stay in L2 between the two GEMMs and the activation instead of
            // going out to memory and back (about 4 % of an int8 MiniLM forward at batch 32).
            let d = dims[D - 1];
            let flat: Tensor<2> = x.reshape([rows, d]);
            let parts: Vec<Tensor<2>> = (0..rows)
                .step_by(FUSED_CHUNK_ROWS)
                .map(|r0| {
                    let part = flat.clone().slice([r0..(r0 + FUSED_CHUNK_ROWS).min(rows), 0..d]);
                    self.outer.forward(self.dropout.forward(self.activation.apply(self.inner.forward(part))))
                })
                .collect();
            let mut out = dims;
            out[D - 1] = self.outer.d_output();
            return Tensor::cat(parts, 0).reshape(out);
        }
        self.outer.forward(self.dropout.forward(self.activation.apply(self.inner.forward(x))))
    }

    /// Whether each output row depends on its input row only (float layers, static or per-row
    /// dynamic int8), so blocks of rows give the same result as the whole input.
    fn rows_independent(&self) -> bool {
        [&self.inner, &self.outer].iter().all(|l| match l.quant_spec() {
            None => !l.is_quantized(),
            Some(s) => s.mode == ActivationMode::Static || s.activation_granularity == ActivationGranularity::PerRow,
        })
    }

    /// Inner width.
    pub fn d_ff(&self) -> usize {
        self.inner.d_output()
    }

    /// Model width.
    pub fn d_model(&self) -> usize {
        self.inner.d_input()
    }

    /// The config that builds a block of this shape.
    pub fn config(&self) -> FeedForwardConfig {
        FeedForwardConfig::new(self.d_model(), self.d_ff())
            .with_activation(self.activation)
            .with_bias(self.inner.bias.is_some())
            .with_dropout(self.dropout.prob)
    }

    /// The block with only the inner neurons in `keep` (ascending, unique): `inner`'s columns
    /// and bias entries and `outer`'s rows. New parameter ids for the narrowed weights.
    ///
    /// # Errors
    /// [`crate::LayerError::Edit`] for an empty, unsorted or out-of-range `keep`, or an int8
    /// block (remove neurons while float, then convert).
    pub fn retain_neurons(&self, keep: &[usize]) -> Result<Self> {
        let action = format!("keep {} of {} feed-forward neurons", keep.len(), self.d_ff());
        crate::attention::check_keep(keep, self.d_ff()).map_err(|r| edit(&action, r))?;
        let wrap = |e: ember_quant::QuantError| edit(&action, e.to_string());
        Ok(FeedForward {
            inner: self.inner.retain_outputs(keep).map_err(wrap)?,
            outer: self.outer.retain_inputs(keep).map_err(wrap)?,
            dropout: self.dropout.clone(),
            activation: self.activation,
        })
    }
}
