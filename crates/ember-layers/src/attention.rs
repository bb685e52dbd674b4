//! Multi-head self-attention whose inner width (`n_heads × head_dim`) may differ from the model
//! width, so heads can be removed physically (Burn's `MultiHeadAttention` fixes
//! `d_k = d_model / n_heads` and cannot lose a head).

use crate::error::{LayerError, Result, invalid};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor};

/// Configuration of [`MultiHeadAttention`].
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Model width (input and output features).
    pub d_model: usize,
    /// Number of heads (≥ 1).
    pub n_heads: usize,
    /// Width of each head; `None` means `d_model / n_heads` (which must then divide evenly).
    #[config(default = "None")]
    pub head_dim: Option<usize>,
    /// Biases on the four projections (BERT: yes).
    #[config(default = true)]
    pub bias: bool,
    /// Dropout on the attention probabilities.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl AttentionConfig {
    /// The head width this config gives.
    ///
    /// # Errors
    /// [`crate::LayerError::InvalidConfig`] for zero sizes or heads that do not divide
    /// `d_model` when `head_dim` is not given.
    pub fn head_dim(&self) -> Result<usize> {
        if self.d_model == 0 {
            return Err(invalid("d_model", 0, "a positive width"));
        }
        if self.n_heads == 0 {
            return Err(invalid("n_heads", 0, "at least one head"));
        }
        match self.head_dim {
            Some(0) => Err(invalid("head_dim", 0, "a positive head width")),
            Some(d) => Ok(d),
            None if !self.d_model.is_multiple_of(self.n_heads) => Err(invalid(
                "n_heads",
                self.n_heads,
                format!("a divisor of d_model = {} (or give head_dim explicitly)", self.d_model),
            )),
            None => Ok(self.d_model / self.n_heads),
        }
    }

    /// Parameters of the layer, without allocating it: `4·D·I` weights (+ `3·I + D` biases),
    /// with `I = n_heads · head_dim`.
    ///
    /// # Errors
    /// As [`AttentionConfig::head_dim`].
    pub fn num_params(&self) -> Result<usize> {
        let inner = self.n_heads * self.head_dim()?;
        Ok(4 * self.d_model * inner + if self.bias { 3 * inner + self.d_model } else { 0 })
    }

    /// Builds the layer.
    ///
    /// # Errors
    /// As [`AttentionConfig::head_dim`].
    pub fn init(&self, device: &Device) -> Result<MultiHeadAttention> {
        let head_dim = self.head_dim()?;
        let inner = self.n_heads * head_dim;
        let lin = |i, o| LinearConfig::new(i, o).with_bias(self.bias).init(device);
        Ok(MultiHeadAttention {
            query: lin(self.d_model, inner),
            key: lin(self.d_model, inner),
            value: lin(self.d_model, inner),
            output: lin(inner, self.d_model),
            dropout: DropoutConfig::new(self.dropout).init(),
            n_heads: self.n_heads,
            head_dim,
        })
    }
}

/// Multi-head self-attention, `softmax(Q·Kᵀ/√d_h + mask)·V` per head, then the output
/// projection. Weights are Burn `[d_in, d_out]` Linears: `query`, `key`, `value` are
/// `[d_model, n_heads·head_dim]`, `output` is `[n_heads·head_dim, d_model]`; head `h` owns
/// columns `h·head_dim..(h+1)·head_dim` of the first three and the same rows of `output`.
#[derive(Module, Debug)]
pub struct MultiHeadAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection.
    pub output: Linear,
    /// Dropout on the attention probabilities.
    pub dropout: Dropout,
    /// Heads.
    pub n_heads: usize,
    /// Width of each head.
    pub head_dim: usize,
}

/// What attention returns: the projected context, the attention probabilities and the value
/// vectors (for MiniLM's value-relation distillation).
#[derive(Debug, Clone)]
pub struct AttentionOutput {
    /// `[batch, seq, d_model]`.
    pub context: Tensor<3>,
    /// `[batch, n_heads, seq, seq]` (rows sum to 1 over unmasked keys).
    pub probs: Tensor<4>,
    /// The value projection's output `[batch, seq, n_heads · head_dim]` (heads concatenated).
    pub values: Tensor<3>,
}

/// Score given to masked keys: finite, so a fully masked row gives a uniform distribution
/// instead of NaN.
const MASKED: f32 = -1.0e9;

/// Checks `x` (`[batch, seq, d_model]`) and `pad_mask` (`[batch, seq]`).
pub(crate) fn check_input(x: &Tensor<3>, d_model: usize, pad_mask: Option<&Tensor<2, Bool>>) -> Result<()> {
    let [b, t, d] = x.dims();
    if d != d_model {
        return Err(LayerError::Shape {
            what: "input".into(),
            expected: format!("[batch, seq, {d_model}]"),
            actual: format!("{:?}", x.dims()),
        });
    }
    if let Some(m) = pad_mask
        && m.dims() != [b, t]
    {
        return Err(LayerError::Shape {
            what: "pad_mask".into(),
            expected: format!("[{b}, {t}] (true = padding)"),
            actual: format!("{:?}", m.dims()),
        });
    }
    Ok(())
}

impl MultiHeadAttention {
    /// Model width.
    pub fn d_model(&self) -> usize {
        self.query.weight.dims()[0]
    }

    /// [`MultiHeadAttention::forward`] with typed errors for inputs of the wrong shape.
    ///
    /// # Errors
    /// [`LayerError::Shape`] if `x` is not `[batch, seq, d_model]` or the mask not `[batch, seq]`.
    pub fn try_forward(&self, x: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>) -> Result<AttentionOutput> {
        check_input(&x, self.d_model(), pad_mask.as_ref())?;
        Ok(self.forward(x, pad_mask))
    }

    /// Self-attention over `x` (`[batch, seq, d_model]`); `pad_mask` (`[batch, seq]`, `true` =
    /// padding) hides padded keys.
    ///
    /// # Panics
    /// On inputs of the wrong shape, like Burn's layers; [`MultiHeadAttention::try_forward`]
    /// returns an error instead.
    pub fn forward(&self, x: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>) -> AttentionOutput {
        let [b, t, _] = x.dims();
        let (h, dh) = (self.n_heads, self.head_dim);
        let split = |y: Tensor<3>| y.reshape([b, t, h, dh]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let values = self.value.forward(x);
        let v = split(values.clone());
        let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((dh as f32).sqrt());
        if let Some(mask) = pad_mask {
            let m: Tensor<4, Bool> = mask.reshape([b, 1, 1, t]).expand([b, h, t, t]);
            scores = scores.mask_fill(m, MASKED);
        }
        let probs = softmax(scores, 3);
        let ctx = self.dropout.forward(probs.clone()).matmul(v).swap_dims(1, 2).reshape([b, t, h * dh]);
        AttentionOutput { context: self.output.forward(ctx), probs, values }
    }
}
