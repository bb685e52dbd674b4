//! A transformer encoder with cross-layer parameter sharing (ALBERT, Lan et al. 2020, §3.1):
//! `n_layers` layer applications over `n_groups` distinct parameter groups, sharing the
//! attention, the feed-forward network, both, or nothing.

use crate::attention::{AttentionConfig, MultiHeadAttention};
use crate::error::{Result, invalid};
use crate::feedforward::{Activation, FeedForward, FeedForwardConfig};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

/// What consecutive layers of one group share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SharingMode {
    /// Every layer has its own parameters (BERT).
    #[default]
    None,
    /// Attention and feed-forward (with their LayerNorms) shared in a group (ALBERT default).
    All,
    /// Only the attention block (and its LayerNorm) is shared.
    Attention,
    /// Only the feed-forward block (and its LayerNorm) is shared.
    FeedForward,
}

/// Configuration of [`Encoder`].
#[derive(Config, Debug)]
pub struct EncoderConfig {
    /// Model width `H`.
    pub d_model: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Layer applications `N`.
    pub n_layers: usize,
    /// Distinct parameter groups `G` (ALBERT: 1); layers `i·N/G .. (i+1)·N/G` share group `i`.
    #[config(default = 1)]
    pub n_groups: usize,
    /// What a group shares.
    #[config(default = "SharingMode::None")]
    pub sharing: SharingMode,
    /// Pre-norm (`x + f(LN(x))`) instead of BERT's post-norm (`LN(x + f(x))`).
    #[config(default = false)]
    pub norm_first: bool,
    /// LayerNorm epsilon.
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
    /// Head width (`None`: `d_model / n_heads`).
    #[config(default = "None")]
    pub head_dim: Option<usize>,
    /// Feed-forward activation.
    #[config(default = "Activation::Gelu")]
    pub activation: Activation,
    /// Dropout (attention probabilities and feed-forward).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl EncoderConfig {
    fn attention(&self) -> AttentionConfig {
        AttentionConfig::new(self.d_model, self.n_heads).with_head_dim(self.head_dim).with_dropout(self.dropout)
    }

    fn feed_forward(&self) -> FeedForwardConfig {
        FeedForwardConfig::new(self.d_model, self.d_ff).with_activation(self.activation).with_dropout(self.dropout)
    }

    /// Checks the config.
    ///
    /// # Errors
    /// [`crate::LayerError::InvalidConfig`] for zero layers or groups, `G` not dividing `N`,
    /// more than one group without sharing, or an invalid attention / feed-forward config.
    pub fn validate(&self) -> Result<()> {
        if self.n_layers == 0 {
            return Err(invalid("n_layers", 0, "at least one layer"));
        }
        if self.n_groups == 0 || !self.n_layers.is_multiple_of(self.n_groups) {
            return Err(invalid(
                "n_groups",
                self.n_groups,
                format!("a positive divisor of n_layers = {}", self.n_layers),
            ));
        }
        if self.sharing == SharingMode::None && self.n_groups != 1 && self.n_groups != self.n_layers {
            return Err(invalid(
                "n_groups",
                self.n_groups,
                "1 (or n_layers) when sharing is None: groups only mean something when layers share",
            ));
        }
        self.attention().head_dim()?;
        if self.d_ff == 0 {
            return Err(invalid("d_ff", 0, "a positive feed-forward width"));
        }
        Ok(())
    }

    /// Distinct attention blocks and feed-forward blocks this config allocates.
    pub fn distinct_blocks(&self) -> (usize, usize) {
        let (n, g) = (self.n_layers, self.n_groups);
        match self.sharing {
            SharingMode::None => (n, n),
            SharingMode::All => (g, g),
            SharingMode::Attention => (g, n),
            SharingMode::FeedForward => (n, g),
        }
    }

    /// Parameters without allocating, split into (attention, feed-forward, LayerNorms).
    ///
    /// # Errors
    /// As [`EncoderConfig::validate`].
    pub fn num_params(&self) -> Result<(usize, usize, usize)> {
        self.validate()?;
        let (a, f) = self.distinct_blocks();
        Ok((a * self.attention().num_params()?, f * self.feed_forward().num_params(), (a + f) * 2 * self.d_model))
    }

    /// Builds the encoder.
    ///
    /// # Errors
    /// As [`EncoderConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<Encoder> {
        self.validate()?;
        let (a, f) = self.distinct_blocks();
        let per_group = self.n_layers / self.n_groups;
        let index = |shared: bool| -> Vec<usize> {
            (0..self.n_layers).map(|i| if shared { i / per_group } else { i }).collect()
        };
        let shares_attention = matches!(self.sharing, SharingMode::All | SharingMode::Attention);
        let shares_ffn = matches!(self.sharing, SharingMode::All | SharingMode::FeedForward);
        let ln = || LayerNormConfig::new(self.d_model).with_epsilon(self.layer_norm_eps).init(device);
        Ok(Encoder {
            attention: (0..a).map(|_| self.attention().init(device)).collect::<Result<_>>()?,
            attention_norm: (0..a).map(|_| ln()).collect(),
            feed_forward: (0..f).map(|_| self.feed_forward().init(device)).collect::<Result<_>>()?,
            feed_forward_norm: (0..f).map(|_| ln()).collect(),
            attention_index: index(shares_attention),
            feed_forward_index: index(shares_ffn),
            norm_first: self.norm_first,
        })
    }
}

/// The encoder's outputs.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// Final hidden states `[batch, seq, d_model]`.
    pub hidden: Tensor<3>,
    /// With `collect`: the input and every layer's output (`n_layers + 1` tensors), as
    /// distillation needs them (Burn has no forward hooks).
    pub hidden_states: Vec<Tensor<3>>,
    /// With `collect`: every layer's attention probabilities `[batch, heads, seq, seq]`.
    pub attentions: Vec<Tensor<4>>,
    /// With `collect`: every layer's value vectors `[batch, seq, heads · head_dim]` (MiniLM's
    /// value relation).
    pub values: Vec<Tensor<3>>,
}

/// A transformer encoder whose layers index into shared blocks (see [`EncoderConfig`]).
/// Blocks may have different head counts and feed-forward widths (after pruning).
#[derive(Module, Debug)]
pub struct Encoder {
    /// Distinct attention blocks.
    pub attention: Vec<MultiHeadAttention>,
    /// The LayerNorm of each attention block.
    pub attention_norm: Vec<LayerNorm>,
    /// Distinct feed-forward blocks.
    pub feed_forward: Vec<FeedForward>,
    /// The LayerNorm of each feed-forward block.
    pub feed_forward_norm: Vec<LayerNorm>,
    /// Layer `i` uses `attention[attention_index[i]]`.
    #[module(skip)]
    pub attention_index: Vec<usize>,
    /// Layer `i` uses `feed_forward[feed_forward_index[i]]`.
    #[module(skip)]
    pub feed_forward_index: Vec<usize>,
    /// Pre-norm instead of post-norm.
    pub norm_first: bool,
}

impl Encoder {
    /// Number of layer applications.
    pub fn n_layers(&self) -> usize {
        self.attention_index.len()
    }

    /// [`Encoder::forward`] with typed errors for inputs of the wrong shape.
    ///
    /// # Errors
    /// [`crate::LayerError::Shape`] if `x` is not `[batch, seq, d_model]` or the mask not
    /// `[batch, seq]`.
    pub fn try_forward(&self, x: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>, collect: bool) -> Result<EncoderOutput> {
        if let Some(a) = self.attention.first() {
            crate::attention::check_input(&x, a.d_model(), pad_mask.as_ref())?;
        }
        Ok(self.forward(x, pad_mask, collect))
    }

    /// Runs every layer over `x` (`[batch, seq, d_model]`); `pad_mask` (`[batch, seq]`, `true` =
    /// padding) hides padded keys; `collect` keeps every hidden state and attention map.
    ///
    /// # Panics
    /// On inputs of the wrong shape, like Burn's layers; [`Encoder::try_forward`] returns an
    /// error instead.
    pub fn forward(&self, x: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>, collect: bool) -> EncoderOutput {
        let mut x = x;
        let mut hidden_states = Vec::new();
        let mut attentions = Vec::new();
        let mut values = Vec::new();
        if collect {
            hidden_states.push(x.clone());
        }
        for (&ai, &fi) in self.attention_index.iter().zip(&self.feed_forward_index) {
            let (att, n1) = (&self.attention[ai], &self.attention_norm[ai]);
            let (ffn, n2) = (&self.feed_forward[fi], &self.feed_forward_norm[fi]);
            if self.norm_first {
                let o = att.forward(n1.forward(x.clone()), pad_mask.clone());
                x = x + o.context;
                x = x.clone() + ffn.forward(n2.forward(x));
                if collect {
                    attentions.push(o.probs);
                    values.push(o.values);
                }
            } else {
                let o = att.forward(x.clone(), pad_mask.clone());
                x = n1.forward(x + o.context);
                x = n2.forward(x.clone() + ffn.forward(x));
                if collect {
                    attentions.push(o.probs);
                    values.push(o.values);
                }
            }
            if collect {
                hidden_states.push(x.clone());
            }
        }
        EncoderOutput { hidden: x, hidden_states, attentions, values }
    }
}
