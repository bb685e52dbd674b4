//! The transformer stack of every Ember model: `n_layers` layer applications over distinct
//! attention and feed-forward blocks, with cross-layer parameter sharing (ALBERT, Lan et al.
//! 2020, §3.1), pre- or post-norm, padding and causal masks, and per-block widths.
//!
//! Layer `i` runs `attention[attention_index[i]]` and `feed_forward[feed_forward_index[i]]`
//! (each block with its LayerNorm). Unshared encoders (BERT) have one block per layer; ALBERT
//! has one block for all twelve. The mapping and every block's head count and FFN width form
//! the [`EncoderLayout`], which [`EncoderConfig`] derives from its uniform settings or takes
//! explicitly, so an encoder shrunk by [`Encoder::retain_heads`], [`Encoder::retain_neurons`]
//! or [`Encoder::retain_layers`] has a config ([`Encoder::config`]) that builds it again.
//!
//! Students from teachers: [`Encoder::retain_layers`] keeps a subset of layers (DistilBERT's
//! every-other-layer student), the `retain_*` methods narrow blocks by indices chosen with
//! ember-prune's criteria, and [`Encoder::to_shared`] turns an unshared encoder into an
//! ALBERT-style shared one, each group's block initialised from its layers ([`SharedInit`]).

use crate::activation::Activation;
use crate::attention::{AttentionConfig, AttentionMask, MultiHeadAttention, check_input};
use crate::error::{Count, LayerError, Result, edit, invalid};
use crate::feedforward::{FeedForward, FeedForwardConfig};
use burn::config::Config;
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Bool, Device, Int, Tensor};
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

impl SharingMode {
    fn shares_attention(self) -> bool {
        matches!(self, SharingMode::All | SharingMode::Attention)
    }
    fn shares_feed_forward(self) -> bool {
        matches!(self, SharingMode::All | SharingMode::FeedForward)
    }
}

/// The explicit structure of an encoder: every block's width and which block each layer uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderLayout {
    /// Heads of each attention block.
    pub attention_heads: Vec<usize>,
    /// Inner width of each feed-forward block.
    pub ffn_widths: Vec<usize>,
    /// The attention block of each layer.
    pub attention_index: Vec<usize>,
    /// The feed-forward block of each layer.
    pub feed_forward_index: Vec<usize>,
}

impl EncoderLayout {
    /// Checks that the layout describes `n_layers` layers over blocks that are all used.
    ///
    /// # Errors
    /// [`LayerError::InvalidConfig`] naming the inconsistency.
    pub fn validate(&self, n_layers: usize) -> Result<()> {
        if self.attention_index.len() != n_layers || self.feed_forward_index.len() != n_layers {
            return Err(invalid(
                "layout",
                format!("{} / {} layer indices", self.attention_index.len(), self.feed_forward_index.len()),
                format!("one attention and one feed-forward index per layer (n_layers = {n_layers})"),
            ));
        }
        for (what, widths, index) in [
            ("layout.attention_heads", &self.attention_heads, &self.attention_index),
            ("layout.ffn_widths", &self.ffn_widths, &self.feed_forward_index),
        ] {
            if widths.contains(&0) {
                return Err(invalid(what, format!("{widths:?}"), "positive widths (remove a block by not using it)"));
            }
            let mut used = vec![false; widths.len()];
            for &i in index {
                match used.get_mut(i) {
                    Some(u) => *u = true,
                    None => {
                        return Err(invalid(
                            what,
                            format!("a layer using block {i}"),
                            format!("block indices below the {} blocks", widths.len()),
                        ));
                    }
                }
            }
            if let Some(unused) = used.iter().position(|u| !u) {
                return Err(invalid(what, format!("block {unused} used by no layer"), "every block used by a layer"));
            }
        }
        Ok(())
    }
}

/// Configuration of [`Encoder`].
#[derive(Config, Debug)]
pub struct EncoderConfig {
    /// Model width `H`.
    pub d_model: usize,
    /// Attention heads of every block (unless `layout` says otherwise).
    pub n_heads: usize,
    /// Feed-forward width of every block (unless `layout` says otherwise).
    pub d_ff: usize,
    /// Layer applications `N`.
    pub n_layers: usize,
    /// Distinct parameter groups `G` (ALBERT: 1); layers `i·N/G .. (i+1)·N/G` share group `i`.
    #[config(default = 1)]
    pub n_groups: usize,
    /// What a group shares.
    #[config(default = "SharingMode::None")]
    pub sharing: SharingMode,
    /// Pre-norm (`x + f(LN(x))`, GPT-style) instead of BERT's post-norm (`LN(x + f(x))`).
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
    /// Each query sees only itself and earlier keys (decoders).
    #[config(default = false)]
    pub causal: bool,
    /// Biases on every projection.
    #[config(default = true)]
    pub bias: bool,
    /// Explicit per-block widths and layer → block maps, replacing the uniform structure of
    /// `n_heads`, `d_ff`, `n_groups` and `sharing` (what a shrunk encoder's
    /// [`Encoder::config`] records).
    #[config(default = "None")]
    pub layout: Option<EncoderLayout>,
}

impl EncoderConfig {
    fn attention(&self, heads: usize) -> Result<AttentionConfig> {
        Ok(AttentionConfig::new(self.d_model, heads)
            .with_head_dim(Some(self.head_dim()?))
            .with_bias(self.bias)
            .with_dropout(self.dropout))
    }

    fn feed_forward(&self, width: usize) -> FeedForwardConfig {
        FeedForwardConfig::new(self.d_model, width)
            .with_activation(self.activation)
            .with_bias(self.bias)
            .with_dropout(self.dropout)
    }

    /// The head width: `head_dim`, or `d_model / n_heads`.
    ///
    /// # Errors
    /// [`LayerError::InvalidConfig`] for zero sizes, or heads that do not divide `d_model`
    /// without an explicit `head_dim`.
    pub fn head_dim(&self) -> Result<usize> {
        AttentionConfig::new(self.d_model, self.n_heads).with_head_dim(self.head_dim).head_dim()
    }

    /// The layout this config builds: `layout` if given, otherwise derived from the uniform
    /// settings.
    ///
    /// # Errors
    /// As [`EncoderConfig::validate`].
    pub fn resolved_layout(&self) -> Result<EncoderLayout> {
        if self.n_layers == 0 {
            return Err(invalid("n_layers", 0, "at least one layer"));
        }
        if let Some(layout) = &self.layout {
            layout.validate(self.n_layers)?;
            return Ok(layout.clone());
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
        if self.d_ff == 0 {
            return Err(invalid("d_ff", 0, "a positive feed-forward width"));
        }
        let per_group = self.n_layers / self.n_groups;
        let index = |shared: bool| -> Vec<usize> {
            (0..self.n_layers).map(|i| if shared { i / per_group } else { i }).collect()
        };
        let (a, f) = self.distinct_blocks();
        Ok(EncoderLayout {
            attention_heads: vec![self.n_heads; a],
            ffn_widths: vec![self.d_ff; f],
            attention_index: index(self.sharing.shares_attention()),
            feed_forward_index: index(self.sharing.shares_feed_forward()),
        })
    }

    /// Checks the config.
    ///
    /// # Errors
    /// [`LayerError::InvalidConfig`] for zero layers or groups, `G` not dividing `N`, more than
    /// one group without sharing, an inconsistent `layout`, an invalid attention / feed-forward
    /// config, a non-positive epsilon, or sizes no process could allocate.
    pub fn validate(&self) -> Result<()> {
        self.resolved_layout()?;
        self.head_dim()?;
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(invalid("layer_norm_eps", self.layer_norm_eps, "a finite value > 0"));
        }
        self.count().and_then(|(a, f, n)| (a + f + n).checked()).map(|_| ())
    }

    /// The same encoder described by the uniform settings (`n_heads`, `d_ff`, `n_groups`,
    /// `sharing`) when they can describe its `layout`, otherwise unchanged: what
    /// [`Encoder::config`] writes, so unshrunk models keep short configs.
    pub fn simplified(self) -> Self {
        let Some(layout) = self.layout.clone() else { return self };
        let (Some(&heads), Some(&width)) = (layout.attention_heads.first(), layout.ffn_widths.first()) else {
            return self;
        };
        // The head width is the layout's, whatever `n_heads` becomes.
        let Ok(head_dim) = self.head_dim() else { return self };
        let (na, nf) = (layout.attention_heads.len(), layout.ffn_widths.len());
        let candidates = [
            (SharingMode::None, 1),
            (SharingMode::All, na),
            (SharingMode::Attention, na),
            (SharingMode::FeedForward, nf),
        ];
        let mut base = self.clone().with_layout(None);
        base.n_heads = heads;
        base.d_ff = width;
        base.head_dim = (heads.checked_mul(head_dim) != Some(self.d_model)).then_some(head_dim);
        for (sharing, groups) in candidates {
            let c = base.clone().with_sharing(sharing).with_n_groups(groups.max(1));
            if c.resolved_layout().is_ok_and(|l| l == layout) {
                return c;
            }
        }
        self
    }

    /// Distinct attention blocks and feed-forward blocks this config allocates.
    pub fn distinct_blocks(&self) -> (usize, usize) {
        if let Some(l) = &self.layout {
            return (l.attention_heads.len(), l.ffn_widths.len());
        }
        let (n, g) = (self.n_layers, self.n_groups);
        match self.sharing {
            SharingMode::None => (n, n),
            SharingMode::All => (g, g),
            SharingMode::Attention => (g, n),
            SharingMode::FeedForward => (n, g),
        }
    }

    fn count(&self) -> Result<(Count, Count, Count)> {
        let layout = self.resolved_layout()?;
        let attention = layout.attention_heads.iter().map(|&h| self.attention(h)?.count()).sum::<Result<Count>>()?;
        let ffn = layout.ffn_widths.iter().map(|&w| self.feed_forward(w).count()).sum::<Count>();
        let blocks = Count::from(layout.attention_heads.len()) + Count::from(layout.ffn_widths.len());
        Ok((attention, ffn, blocks * Count::from(2) * Count::from(self.d_model)))
    }

    /// Parameters without allocating, split into (attention, feed-forward, LayerNorms).
    ///
    /// # Errors
    /// As [`EncoderConfig::validate`].
    pub fn num_params(&self) -> Result<(usize, usize, usize)> {
        self.validate()?;
        let (a, f, n) = self.count()?;
        Ok((a.checked()?, f.checked()?, n.checked()?))
    }

    /// Builds the encoder (float; convert it with `ember_quant::Quantizer`).
    ///
    /// # Errors
    /// As [`EncoderConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<Encoder> {
        self.validate()?;
        let layout = self.resolved_layout()?;
        let ln = || LayerNormConfig::new(self.d_model).with_epsilon(self.layer_norm_eps).init(device);
        Ok(Encoder {
            attention: layout
                .attention_heads
                .iter()
                .map(|&h| self.attention(h)?.init(device))
                .collect::<Result<_>>()?,
            attention_norm: layout.attention_heads.iter().map(|_| ln()).collect(),
            feed_forward: layout
                .ffn_widths
                .iter()
                .map(|&w| self.feed_forward(w).init(device))
                .collect::<Result<_>>()?,
            feed_forward_norm: layout.ffn_widths.iter().map(|_| ln()).collect(),
            attention_index: layout.attention_index,
            feed_forward_index: layout.feed_forward_index,
            norm_first: self.norm_first,
            causal: self.causal,
            layer_norm_eps: self.layer_norm_eps,
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

/// How [`Encoder::to_shared`] initialises a group's shared block from the layers it replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SharedInit {
    /// The element-wise mean of the group's blocks (weights, biases and LayerNorms). Heads and
    /// neurons are averaged by index; a trained BERT's heads are not aligned across layers, so
    /// this is a starting point for distillation, not a finished model (measured in the README).
    #[default]
    Mean,
    /// A copy of the group's first layer.
    First,
}

/// A transformer encoder whose layers index into shared blocks (see the [module docs](self)).
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
    /// Causal self-attention.
    pub causal: bool,
    /// The LayerNorms' epsilon (Burn's `LayerNorm` keeps it private). It must be the norms'
    /// own: the fused CPU path reads it from here.
    pub layer_norm_eps: f64,
}

impl Encoder {
    /// Number of layer applications.
    pub fn n_layers(&self) -> usize {
        self.attention_index.len()
    }

    /// Model width.
    pub fn d_model(&self) -> usize {
        self.attention.first().map_or(0, MultiHeadAttention::d_model)
    }

    /// The structure: every block's width and each layer's blocks.
    pub fn layout(&self) -> EncoderLayout {
        EncoderLayout {
            attention_heads: self.attention.iter().map(|a| a.n_heads).collect(),
            ffn_widths: self.feed_forward.iter().map(FeedForward::d_ff).collect(),
            attention_index: self.attention_index.clone(),
            feed_forward_index: self.feed_forward_index.clone(),
        }
    }

    /// How many layers use each attention block and each feed-forward block.
    pub fn block_uses(&self) -> (Vec<usize>, Vec<usize>) {
        let count = |index: &[usize], n: usize| {
            let mut c = vec![0; n];
            index.iter().for_each(|&i| c[i] += 1);
            c
        };
        (count(&self.attention_index, self.attention.len()), count(&self.feed_forward_index, self.feed_forward.len()))
    }

    /// The config that builds an encoder of this shape: uniform settings when they describe it,
    /// otherwise with an explicit [`EncoderLayout`].
    ///
    /// # Errors
    /// [`LayerError::InvalidConfig`] for an encoder assembled by hand that no config describes
    /// (blocks of different head widths or activations, or no blocks).
    pub fn config(&self) -> Result<EncoderConfig> {
        let (Some(a0), Some(f0)) = (self.attention.first(), self.feed_forward.first()) else {
            return Err(invalid("encoder", "no blocks", "at least one attention and one feed-forward block"));
        };
        if self.attention.iter().any(|a| a.head_dim != a0.head_dim)
            || self.feed_forward.iter().any(|f| f.activation != f0.activation)
        {
            return Err(invalid(
                "encoder",
                "blocks of different head widths or activations",
                "blocks that one EncoderConfig describes",
            ));
        }
        let d_model = a0.d_model();
        let head_dim = (a0.n_heads * a0.head_dim != d_model).then_some(a0.head_dim);
        let base = EncoderConfig::new(d_model, a0.n_heads, f0.d_ff(), self.n_layers())
            .with_norm_first(self.norm_first)
            .with_layer_norm_eps(self.layer_norm_eps)
            .with_head_dim(head_dim)
            .with_activation(f0.activation)
            .with_dropout(a0.dropout.prob)
            .with_causal(self.causal)
            .with_bias(a0.query.bias.is_some());
        Ok(base.with_layout(Some(self.layout())).simplified())
    }

    /// [`Encoder::forward`] with typed errors for inputs of the wrong shape.
    ///
    /// # Errors
    /// [`LayerError::Shape`] if `x` is not `[batch, seq, d_model]` or the mask not
    /// `[batch, seq]`.
    pub fn try_forward(&self, x: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>, collect: bool) -> Result<EncoderOutput> {
        check_input(&x, self.d_model(), pad_mask.as_ref())?;
        let [b, t, _] = x.dims();
        let mask = AttentionMask::new(pad_mask, self.causal, b, t, &x.device())?;
        Ok(self.forward_masked(x, &mask, collect))
    }

    /// Runs every layer over `x` (`[batch, seq, d_model]`); `pad_mask` (`[batch, seq]`, `true` =
    /// padding) hides padded keys (and, for a causal encoder, future keys are hidden too);
    /// `collect` keeps every hidden state, attention map and value tensor.
    ///
    /// # Panics
    /// On inputs of the wrong shape, like Burn's layers; [`Encoder::try_forward`] returns an
    /// error instead.
    pub fn forward(&self, x: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>, collect: bool) -> EncoderOutput {
        match self.try_forward(x, pad_mask, collect) {
            Ok(o) => o,
            Err(e) => panic!("Encoder::forward: {e}"),
        }
    }

    /// The layers over `x` with a prepared mask (built once by the caller for the batch).
    pub fn forward_masked(&self, x: Tensor<3>, mask: &AttentionMask, collect: bool) -> EncoderOutput {
        let mut x = x;
        let mut out =
            EncoderOutput { hidden: x.clone(), hidden_states: Vec::new(), attentions: Vec::new(), values: Vec::new() };
        if collect {
            out.hidden_states.push(x.clone());
        }
        // Inference on a CPU device: the fused kernels (attention without probabilities,
        // LayerNorm with the residual add) and no clones, so tensors move to the host and back
        // without copies.
        if !collect && crate::host::fused(&x) {
            out.hidden = self.fused_layers(x, mask);
            return out;
        }
        for (&ai, &fi) in self.attention_index.iter().zip(&self.feed_forward_index) {
            let (att, n1) = (&self.attention[ai], &self.attention_norm[ai]);
            let (ffn, n2) = (&self.feed_forward[fi], &self.feed_forward_norm[fi]);
            let o = if self.norm_first {
                let o = att.forward(n1.forward(x.clone()), mask);
                x = x + o.context.clone();
                x = x.clone() + ffn.forward(n2.forward(x));
                o
            } else {
                let o = att.forward(x.clone(), mask);
                x = n1.forward(x + o.context.clone());
                x = n2.forward(x.clone() + ffn.forward(x));
                o
            };
            if collect {
                out.attentions.push(o.probs);
                out.values.push(o.values);
                out.hidden_states.push(x.clone());
            }
        }
        out.hidden = x;
        out
    }

    /// The layers on the fused CPU path: attention without probabilities, LayerNorm with the
    /// residual add, no clones (tensors move to the host and back without copies).
    fn fused_layers(&self, mut x: Tensor<3>, mask: &AttentionMask) -> Tensor<3> {
        let eps = self.layer_norm_eps;
        for (&ai, &fi) in self.attention_index.iter().zip(&self.feed_forward_index) {
            let (att, n1) = (&self.attention[ai], &self.attention_norm[ai]);
            let (ffn, n2) = (&self.feed_forward[fi], &self.feed_forward_norm[fi]);
            if self.norm_first {
                let c = att.context(crate::host::add_layer_norm(n1, eps, x.clone(), None), mask);
                x = x + c;
                let f = ffn.forward(crate::host::add_layer_norm(n2, eps, x.clone(), None));
                x = x + f;
            } else {
                let c = att.context(x.clone(), mask);
                x = crate::host::add_layer_norm(n1, eps, c, Some(x));
                let f = ffn.forward(x.clone());
                x = crate::host::add_layer_norm(n2, eps, f, Some(x));
            }
        }
        x
    }

    /// Inference for callers that read nothing at padded positions (mean pooling over the
    /// mask, the first token): the last hidden state `[batch, seq, d_model]` with zeros at
    /// every position `pad_mask` marks as padding.
    ///
    /// On a CPU device without autodiff (Flex, NdArray) the padded positions are dropped
    /// before the first layer: every projection, feed-forward block and normalization runs on
    /// the real tokens alone, and attention runs per sequence on the packed tokens
    /// ([`AttentionMask::packed`], `ember_kernels::fused::attention_packed`). A batch padded
    /// to its longest sentence does only the work of its real tokens, which is the largest
    /// saving on batches of mixed lengths. Elsewhere (GPU devices, autodiff) it is
    /// [`Encoder::forward`]'s hidden state with the padded positions zeroed.
    ///
    /// Real tokens' outputs equal [`Encoder::forward`]'s to float rounding (tested): padded
    /// tokens never influence real ones (they are hidden keys, and every other op works row by
    /// row). The one exception is an int8 layer with a per-tensor dynamic activation scale,
    /// which is then computed over the real tokens only.
    ///
    /// # Errors
    /// [`LayerError::Shape`] if `x` is not `[batch, seq, d_model]` or the mask not
    /// `[batch, seq]`.
    ///
    /// ```
    /// use burn::tensor::{Bool, Device, Tensor, TensorData};
    /// use ember_layers::EncoderConfig;
    /// let device = Device::default();
    /// let enc = EncoderConfig::new(16, 2, 32, 2).init(&device).unwrap();
    /// let x = Tensor::<3>::ones([2, 3, 16], &device);
    /// // The second sentence has one real token.
    /// let pad = Tensor::<2, Bool>::from_data(TensorData::from([[false, false, false], [false, true, true]]), &device);
    /// let y = enc.forward_real_tokens(x, Some(pad)).unwrap();
    /// assert_eq!(y.dims(), [2, 3, 16]);
    /// let padded: Vec<f32> = y.slice([1..2, 1..3, 0..16]).into_data().try_to_vec().unwrap();
    /// assert!(padded.iter().all(|&v| v == 0.0));
    /// ```
    pub fn forward_real_tokens(&self, x: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>) -> Result<Tensor<3>> {
        check_input(&x, self.d_model(), pad_mask.as_ref())?;
        let [b, t, d] = x.dims();
        let device = x.device();
        let mask = AttentionMask::new(pad_mask.clone(), self.causal, b, t, &device)?;
        let pad = if crate::host::fused(&x) { mask.host_padding() } else { None };
        match pad {
            // Nothing padded: every token is real.
            Some(None) => Ok(self.fused_layers(x, &mask)),
            Some(Some(pad)) if !pad.contains(&true) => Ok(self.fused_layers(x, &mask)),
            Some(Some(pad)) => {
                let lengths: Vec<usize> = pad.chunks_exact(t).map(|s| s.iter().filter(|&&h| !h).count()).collect();
                let real: Vec<usize> = (0..b * t).filter(|&i| !pad[i]).collect();
                let zeros = || Tensor::zeros([b, t, d], &device);
                if real.is_empty() {
                    return Ok(zeros());
                }
                let Some((values, _)) = crate::host::to_host(x) else { unreachable!("f32 on a CPU device") };
                let mut packed = Vec::with_capacity(real.len() * d);
                for &i in &real {
                    packed.extend_from_slice(&values[i * d..(i + 1) * d]);
                }
                drop(values);
                let n = real.len();
                let xp = crate::host::from_host(packed, burn::tensor::Shape::new([1, n, d]), &device);
                let y = self.fused_layers(xp, &AttentionMask::packed(lengths, self.causal, &device));
                let Some((y, _)) = crate::host::to_host(y) else { return Ok(zeros()) };
                let mut out = vec![0f32; b * t * d];
                for (r, &i) in real.iter().enumerate() {
                    out[i * d..(i + 1) * d].copy_from_slice(&y[r * d..(r + 1) * d]);
                }
                Ok(crate::host::from_host(out, burn::tensor::Shape::new([b, t, d]), &device))
            }
            // Not the fused path (or the padding could not be read): every position, then the
            // padded ones zeroed.
            None => {
                let y = self.forward_masked(x, &mask, false).hidden;
                Ok(match pad_mask {
                    Some(p) => y.mask_fill(p.reshape([b, t, 1]).expand([b, t, d]), 0.0),
                    None => y,
                })
            }
        }
    }

    /// The encoder with attention block `block` narrowed to the heads in `keep` (see
    /// [`MultiHeadAttention::retain_heads`]). For an unshared encoder block `i` is layer `i`;
    /// a shared block shrinks for every layer that uses it.
    ///
    /// # Errors
    /// [`LayerError::Edit`] for a block out of range or an invalid `keep`.
    pub fn retain_heads(&self, block: usize, keep: &[usize]) -> Result<Encoder> {
        let Some(att) = self.attention.get(block) else {
            return Err(edit(
                format!("keep heads of attention block {block}"),
                format!("the encoder has {} attention blocks", self.attention.len()),
            ));
        };
        let mut out = self.clone();
        out.attention[block] = att.retain_heads(keep)?;
        Ok(out)
    }

    /// The encoder with feed-forward block `block` narrowed to the neurons in `keep` (see
    /// [`FeedForward::retain_neurons`]).
    ///
    /// # Errors
    /// [`LayerError::Edit`] for a block out of range or an invalid `keep`.
    pub fn retain_neurons(&self, block: usize, keep: &[usize]) -> Result<Encoder> {
        let Some(ffn) = self.feed_forward.get(block) else {
            return Err(edit(
                format!("keep neurons of feed-forward block {block}"),
                format!("the encoder has {} feed-forward blocks", self.feed_forward.len()),
            ));
        };
        let mut out = self.clone();
        out.feed_forward[block] = ffn.retain_neurons(keep)?;
        Ok(out)
    }

    /// The encoder with only the layers in `keep` (ascending, unique, 0-based), in order:
    /// DistilBERT's student from every other layer is `retain_layers(&[1, 3, 5])` of a 6-layer
    /// teacher (or `[0, 2, 4]`). Blocks no kept layer uses are dropped; the kept blocks keep
    /// their parameters (and ids).
    ///
    /// # Errors
    /// [`LayerError::Edit`] for an empty, unsorted or out-of-range `keep`.
    pub fn retain_layers(&self, keep: &[usize]) -> Result<Encoder> {
        crate::attention::check_keep(keep, self.n_layers())
            .map_err(|r| edit(format!("keep layers {keep:?} of {}", self.n_layers()), r))?;
        let remap = |index: &[usize], n: usize| -> (Vec<usize>, Vec<usize>) {
            let used: Vec<usize> = {
                let mut u: Vec<usize> = keep.iter().map(|&l| index[l]).collect();
                u.sort_unstable();
                u.dedup();
                u
            };
            let mut new_id = vec![usize::MAX; n];
            used.iter().enumerate().for_each(|(new, &old)| new_id[old] = new);
            (used, keep.iter().map(|&l| new_id[index[l]]).collect())
        };
        let (att_used, attention_index) = remap(&self.attention_index, self.attention.len());
        let (ffn_used, feed_forward_index) = remap(&self.feed_forward_index, self.feed_forward.len());
        Ok(Encoder {
            attention: att_used.iter().map(|&i| self.attention[i].clone()).collect(),
            attention_norm: att_used.iter().map(|&i| self.attention_norm[i].clone()).collect(),
            feed_forward: ffn_used.iter().map(|&i| self.feed_forward[i].clone()).collect(),
            feed_forward_norm: ffn_used.iter().map(|&i| self.feed_forward_norm[i].clone()).collect(),
            attention_index,
            feed_forward_index,
            norm_first: self.norm_first,
            causal: self.causal,
            layer_norm_eps: self.layer_norm_eps,
        })
    }

    /// An ALBERT-style shared encoder from this one: the `n_layers` layers in `n_groups`
    /// consecutive groups, each group's shared attention and / or feed-forward block (as
    /// `sharing` says) initialised from the blocks its layers used ([`SharedInit`]). The parts
    /// that are not shared keep one block per layer. Every block of the result has fresh
    /// parameter ids.
    ///
    /// # Errors
    /// [`LayerError::Edit`] for `SharingMode::None`, a group count that does not divide the
    /// layers, blocks of one group with different widths (narrow them alike first), or int8
    /// blocks.
    pub fn to_shared(&self, sharing: SharingMode, n_groups: usize, init: SharedInit) -> Result<Encoder> {
        let n = self.n_layers();
        let action = format!("share {n} layers in {n_groups} groups ({sharing:?})");
        if sharing == SharingMode::None {
            return Err(edit(action, "the sharing mode is None (nothing would be shared)"));
        }
        if n_groups == 0 || !n.is_multiple_of(n_groups) {
            return Err(edit(action, format!("the group count must divide the {n} layers")));
        }
        let per = n / n_groups;
        let groups: Vec<Vec<usize>> = (0..n_groups).map(|g| (g * per..(g + 1) * per).collect()).collect();
        let groups = |shared: bool| shared.then_some((groups.as_slice(), init));
        let fail = |e: LayerError| edit(&action, e.to_string());
        let (attention, attention_norm, attention_index) =
            share(&self.attention, &self.attention_norm, &self.attention_index, groups(sharing.shares_attention()))
                .map_err(fail)?;
        let (feed_forward, feed_forward_norm, feed_forward_index) = share(
            &self.feed_forward,
            &self.feed_forward_norm,
            &self.feed_forward_index,
            groups(sharing.shares_feed_forward()),
        )
        .map_err(fail)?;
        Ok(Encoder {
            attention,
            attention_norm,
            feed_forward,
            feed_forward_norm,
            attention_index,
            feed_forward_index,
            norm_first: self.norm_first,
            causal: self.causal,
            layer_norm_eps: self.layer_norm_eps,
        })
    }
}

/// One component's blocks (attention or feed-forward, with their LayerNorms) and layer index
/// after [`Encoder::to_shared`]: with `groups`, one block per group initialised from the
/// distinct blocks its layers used (in layer order); without, one fresh copy per layer.
#[allow(clippy::type_complexity)]
fn share<B: Module>(
    blocks: &[B],
    norms: &[LayerNorm],
    index: &[usize],
    groups: Option<(&[Vec<usize>], SharedInit)>,
) -> Result<(Vec<B>, Vec<LayerNorm>, Vec<usize>)> {
    let Some((groups, init)) = groups else {
        let blocks = index.iter().map(|&i| fresh(blocks[i].clone())).collect();
        let norms = index.iter().map(|&i| fresh(norms[i].clone())).collect();
        return Ok((blocks, norms, (0..index.len()).collect()));
    };
    let (mut new_blocks, mut new_norms, mut new_index) = (Vec::new(), Vec::new(), Vec::new());
    for (g, layers) in groups.iter().enumerate() {
        let mut sources: Vec<usize> = Vec::new();
        for &l in layers {
            if !sources.contains(&index[l]) {
                sources.push(index[l]);
            }
        }
        if init == SharedInit::First {
            sources.truncate(1);
        }
        new_blocks.push(combine(&sources.iter().map(|&i| &blocks[i]).collect::<Vec<_>>())?);
        new_norms.push(combine(&sources.iter().map(|&i| &norms[i]).collect::<Vec<_>>())?);
        new_index.extend(std::iter::repeat_n(g, layers.len()));
    }
    Ok((new_blocks, new_norms, new_index))
}

/// Gives every parameter a new id (a copy that trains independently of the original).
pub(crate) fn fresh<M: Module>(m: M) -> M {
    struct Fresh;
    impl ModuleMapper for Fresh {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let grad = p.is_require_grad();
            Param::initialized(ParamId::new(), p.val().detach()).set_require_grad(grad)
        }
        fn map_int<const D: usize>(&mut self, p: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
            Param::initialized(ParamId::new(), p.val())
        }
        fn map_bool<const D: usize>(&mut self, p: Param<Tensor<D, Bool>>) -> Param<Tensor<D, Bool>> {
            Param::initialized(ParamId::new(), p.val())
        }
    }
    m.map(&mut Fresh)
}

/// The element-wise mean of modules of one shape, with fresh ids (one module: a fresh copy).
fn combine<M: Module>(blocks: &[&M]) -> Result<M> {
    let Some(first) = blocks.first() else {
        return Err(invalid("group", "no layers", "at least one layer per group"));
    };
    let mut sums = Vec::new();
    let mut shapes = Vec::new();
    for b in blocks {
        let mut r = Reader::default();
        b.visit(&mut r);
        if let Some(e) = r.error {
            return Err(e);
        }
        if shapes.is_empty() {
            shapes = r.shapes.clone();
            sums = r.values;
        } else if r.shapes != shapes {
            return Err(edit(
                "average the group's blocks",
                format!("their shapes differ ({:?} against {:?}): narrow them alike first", r.shapes, shapes),
            ));
        } else {
            for (s, v) in sums.iter_mut().zip(r.values) {
                if let (Some(a), Some(b)) = (s.as_mut(), v) {
                    *a = a.clone() + b;
                }
            }
        }
    }
    let k = blocks.len() as f64;
    let mut writer = Writer { values: sums.into_iter().map(|s| s.map(|s| s.div_scalar(k))).collect(), next: 0 };
    Ok((*first).clone().map(&mut writer))
}

/// Every float parameter of a module, flattened, in visit order (`None` for the empty int8
/// state of a float layer; int8 state itself is refused).
#[derive(Default)]
struct Reader {
    shapes: Vec<Vec<usize>>,
    values: Vec<Option<Tensor<1>>>,
    error: Option<LayerError>,
}

impl burn::module::ModuleVisitor for Reader {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let v = p.val().detach();
        let dims = v.dims();
        let n = dims.iter().product::<usize>();
        self.shapes.push(dims.to_vec());
        self.values.push((n > 0).then(|| v.reshape([n])));
    }
    fn visit_int<const D: usize>(&mut self, p: &Param<Tensor<D, Int>>) {
        if p.dims().iter().product::<usize>() > 0 && self.error.is_none() {
            self.error = Some(edit("average int8 blocks", "convert to int8 after sharing, not before"));
        }
    }
}

/// Writes [`Reader`]'s order of values back, with fresh ids.
struct Writer {
    values: Vec<Option<Tensor<1>>>,
    next: usize,
}

impl ModuleMapper for Writer {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let grad = p.is_require_grad();
        let v = match self.values.get(self.next).cloned().flatten() {
            Some(v) => v.reshape(p.shape()),
            None => p.val().detach(),
        };
        self.next += 1;
        Param::initialized(ParamId::new(), v).set_require_grad(grad)
    }
    fn map_int<const D: usize>(&mut self, p: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        Param::initialized(ParamId::new(), p.val())
    }
}
