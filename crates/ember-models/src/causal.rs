//! A small GPT-style causal language model, composed of ember-layers blocks.
//!
//! A [`FactorizedEmbedding`] (tokens and learned absolute positions, no LayerNorm), a pre-norm
//! causal [`Encoder`] (the same attention and feed-forward blocks as BERT, with a causal mask),
//! a final LayerNorm and a language-model head tied to the token table by default. ALBERT's two
//! savings are options: a **factorized embedding** (`embedding_size` `E < d_model`: tokens and
//! positions live in `E` dimensions, projected to `d_model`, and back for the tied head) and
//! **cross-layer sharing** ([`SharingMode`]: all, attention only or feed-forward only, each
//! block with its LayerNorm).
//!
//! Every linear layer is an `ember_quant::Linear` and the token table an
//! `ember_quant::Embedding` (the tied head then runs the int8 GEMM once quantized), so the same
//! model is trained, distilled, pruned (physically too: [`CausalLm::retain_heads`], …) and
//! quantized with the other Ember crates. [`ByteTokenizer`] maps any text to bytes
//! (vocabulary 256), so no tokenizer file is needed.
//!
//! No pretrained causal-LM checkpoint is loaded: none is available to the project's tests, and
//! an untested GPT-2 loader would be a claim without evidence.

use crate::error::{ModelError, Result, check_eps, check_nonzero, config_err};
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_layers::{
    Activation, Encoder, EncoderConfig, EncoderLayout, FactorizedEmbedding, FactorizedEmbeddingConfig, SharedInit,
    SharingMode,
};
use ember_quant::{Linear, LinearConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Configuration of [`CausalLm`] (serde, so it can live in a recipe).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CausalLmConfig {
    /// Vocabulary size (256 for [`ByteTokenizer`]).
    pub vocab_size: usize,
    /// Model width.
    pub d_model: usize,
    /// Decoder layers.
    pub n_layers: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Feed-forward inner width.
    pub d_ff: usize,
    /// Longest context.
    pub max_seq_len: usize,
    /// ALBERT factorized embedding size `E` (`None`: tokens embedded at `d_model`).
    #[serde(default)]
    pub embedding_size: Option<usize>,
    /// Cross-layer parameter sharing.
    #[serde(default)]
    pub sharing: SharingMode,
    /// Layers per sharing group (ALBERT shares across all layers: `n_layers`); the last group
    /// may be shorter. Ignored without sharing.
    #[serde(default)]
    pub share_group: Option<usize>,
    /// Tie the output head to the token table (default true).
    #[serde(default = "yes")]
    pub tie_embeddings: bool,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Explicit per-block head counts, FFN widths and layer → block maps, replacing `n_heads`,
    /// `d_ff`, `sharing` and `share_group` for the decoder (what a shrunk model's
    /// [`CausalLm::config`] records; `n_heads` then only fixes the head width,
    /// `d_model / n_heads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<EncoderLayout>,
}

fn yes() -> bool {
    true
}
fn default_eps() -> f64 {
    1e-5
}

impl CausalLmConfig {
    /// A configuration with a tied head, no factorization and no sharing.
    pub fn new(
        vocab_size: usize,
        d_model: usize,
        n_layers: usize,
        n_heads: usize,
        d_ff: usize,
        max_seq_len: usize,
    ) -> Self {
        CausalLmConfig {
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            d_ff,
            max_seq_len,
            embedding_size: None,
            sharing: SharingMode::None,
            share_group: None,
            tie_embeddings: true,
            layer_norm_eps: default_eps(),
            layout: None,
        }
    }

    /// With a factorized embedding of size `e`.
    pub fn with_embedding_size(mut self, e: usize) -> Self {
        self.embedding_size = Some(e);
        self
    }

    /// With cross-layer sharing over groups of `group` layers.
    pub fn with_sharing(mut self, mode: SharingMode, group: usize) -> Self {
        self.sharing = mode;
        self.share_group = Some(group);
        self
    }

    fn group(&self) -> usize {
        if self.sharing == SharingMode::None { 1 } else { self.share_group.unwrap_or(self.n_layers).max(1) }
    }

    /// The embedding this config builds.
    pub fn embedding(&self) -> FactorizedEmbeddingConfig {
        let e = self.embedding_size.unwrap_or(self.d_model);
        FactorizedEmbeddingConfig::new(self.vocab_size, e, self.d_model)
            .with_max_positions(self.max_seq_len)
            .with_type_vocab_size(0)
            .with_layer_norm(false)
            .with_projection(self.embedding_size.is_some())
    }

    /// The decoder stack this config builds (pre-norm, causal).
    pub fn decoder(&self) -> EncoderConfig {
        let layout = self.layout.clone().unwrap_or_else(|| {
            let group = self.group();
            let shared =
                |yes: bool| -> Vec<usize> { (0..self.n_layers).map(|l| if yes { l / group } else { l }).collect() };
            let attention_index = shared(matches!(self.sharing, SharingMode::All | SharingMode::Attention));
            let feed_forward_index = shared(matches!(self.sharing, SharingMode::All | SharingMode::FeedForward));
            let blocks = |index: &[usize]| index.iter().max().map_or(0, |m| m + 1);
            EncoderLayout {
                attention_heads: vec![self.n_heads; blocks(&attention_index)],
                ffn_widths: vec![self.d_ff; blocks(&feed_forward_index)],
                attention_index,
                feed_forward_index,
            }
        });
        // The head width is d_model / n_heads even when the layout gives blocks fewer heads.
        let head_dim = self.d_model / self.n_heads.max(1);
        EncoderConfig::new(self.d_model, self.n_heads, self.d_ff, self.n_layers)
            .with_head_dim((head_dim * self.n_heads != self.d_model || self.layout.is_some()).then_some(head_dim))
            .with_norm_first(true)
            .with_causal(true)
            .with_activation(Activation::Gelu)
            .with_layer_norm_eps(self.layer_norm_eps)
            .with_layout(Some(layout))
            .simplified()
    }

    /// Checks sizes and options.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field; [`ModelError::Layers`] for an inconsistent
    /// `layout`.
    pub fn validate(&self) -> Result<()> {
        check_nonzero(&[
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
        ])?;
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(config_err("n_heads", self.n_heads, &format!("a divisor of d_model = {}", self.d_model)));
        }
        if self.embedding_size == Some(0) {
            return Err(config_err("embedding_size", 0, "at least 1 (or none)"));
        }
        if let Some(g) = self.share_group
            && self.sharing != SharingMode::None
            && (g == 0 || g > self.n_layers)
        {
            return Err(config_err("share_group", g, &format!("1..={} layers", self.n_layers)));
        }
        check_eps(self.layer_norm_eps)?;
        if self.n_layers > 1 << 20 {
            return Err(config_err("n_layers", self.n_layers, "at most 2^20 layers"));
        }
        self.embedding().validate().map_err(crate::error::layer_config)?;
        self.decoder().validate().map_err(crate::error::layer_config)?;
        self.params().map(|_| ())
    }

    /// Distinct attention and feed-forward blocks after sharing.
    pub fn distinct_blocks(&self) -> (usize, usize) {
        self.decoder().distinct_blocks()
    }

    fn params(&self) -> Result<usize> {
        let (a, f, n) = self.decoder().num_params().map_err(crate::error::layer_config)?;
        let (h, e, v) =
            (self.d_model as u128, self.embedding_size.unwrap_or(self.d_model) as u128, self.vocab_size as u128);
        let mut extra = 2 * h; // final norm
        if self.embedding_size.is_some() && self.tie_embeddings {
            extra += h * e + e; // out projection for the tied head
        }
        if !self.tie_embeddings {
            extra += h * v + v;
        }
        let emb = self.embedding().num_params().map_err(crate::error::layer_config)?;
        let total = emb as u128 + a as u128 + f as u128 + n as u128 + extra;
        crate::error::check_addressable(total)?;
        Ok(total as usize)
    }

    /// Parameters, by the same formulas the modules follow (ember-layers' accounting).
    /// Saturates at `usize::MAX` for configs [`validate`](Self::validate) rejects.
    pub fn num_params(&self) -> usize {
        self.validate().and_then(|_| self.params()).unwrap_or(usize::MAX)
    }

    /// A model with random weights.
    ///
    /// # Errors
    /// As [`CausalLmConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<CausalLm> {
        self.validate()?;
        let (h, v) = (self.d_model, self.vocab_size);
        let e = self.embedding_size.unwrap_or(h);
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        Ok(CausalLm {
            embeddings: self.embedding().init(device)?,
            decoder: self.decoder().init(device)?,
            norm: LayerNormConfig::new(h).with_epsilon(self.layer_norm_eps).init(device),
            proj_out: (self.embedding_size.is_some() && self.tie_embeddings).then(|| lin(h, e)),
            head: (!self.tie_embeddings).then(|| lin(h, v)),
        })
    }
}

/// A GPT-style causal LM. See the [module docs](self).
#[derive(Module, Debug)]
pub struct CausalLm {
    /// Token table `[vocab, E]`, positions `[max_seq_len, E]`, projection `E → d_model` when
    /// factorized.
    pub embeddings: FactorizedEmbedding,
    /// The pre-norm causal decoder blocks (fewer blocks than layers when shared).
    pub decoder: Encoder,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// `d_model → E` before the tied head of a factorized model.
    pub proj_out: Option<Linear>,
    /// Untied head `d_model → vocab`.
    pub head: Option<Linear>,
}

/// What [`CausalLm::try_forward`] returns.
#[derive(Debug, Clone)]
pub struct CausalLmOutput {
    /// Next-token logits `[batch, seq, vocab]`.
    pub logits: Tensor<3>,
    /// With `collect`: the embedding output and every layer's output.
    pub hidden_states: Vec<Tensor<3>>,
    /// With `collect`: every layer's attention probabilities `[batch, heads, seq, seq]`.
    pub attentions: Vec<Tensor<4>>,
}

impl CausalLm {
    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.embeddings.vocab_size()
    }

    /// Longest context.
    pub fn max_seq_len(&self) -> usize {
        self.embeddings.max_positions()
    }

    /// Layers.
    pub fn n_layers(&self) -> usize {
        self.decoder.n_layers()
    }

    /// The device of the model's parameters.
    pub fn device(&self) -> Device {
        self.embeddings.word.weight.device()
    }

    /// The config that builds a model of this shape (per-block widths in `layout` after
    /// shrinking).
    ///
    /// # Errors
    /// [`ModelError::Layers`] for a decoder assembled by hand that no config describes.
    pub fn config(&self) -> Result<CausalLmConfig> {
        let dec = self.decoder.config()?;
        let e = self.embeddings.config();
        let head_dim = self.decoder.attention.first().map_or(1, |a| a.head_dim);
        let mut c = CausalLmConfig::new(
            e.vocab_size,
            dec.d_model,
            dec.n_layers,
            dec.d_model / head_dim.max(1),
            dec.d_ff,
            e.max_positions,
        );
        c.embedding_size = e.projection.then_some(e.embedding_size);
        c.tie_embeddings = self.head.is_none();
        c.layer_norm_eps = self.decoder.layer_norm_eps;
        c.layout = Some(self.decoder.layout());
        // Without a layout when the uniform fields say the same.
        let uniform = |sharing: SharingMode, group: usize| {
            let mut u = c.clone();
            u.layout = None;
            u.n_heads = dec.n_heads;
            u.sharing = sharing;
            u.share_group = (sharing != SharingMode::None).then_some(group);
            u
        };
        let n = c.n_layers;
        let candidates = [(SharingMode::None, 1)].into_iter().chain(
            [SharingMode::All, SharingMode::Attention, SharingMode::FeedForward]
                .into_iter()
                .flat_map(|m| (1..=n).map(move |g| (m, g))),
        );
        let layout = self.decoder.layout();
        for (sharing, group) in candidates {
            let u = uniform(sharing, group);
            if u.n_heads * head_dim == u.d_model && u.decoder().resolved_layout().is_ok_and(|l| l == layout) {
                return Ok(u);
            }
        }
        Ok(c)
    }

    /// Next-token logits for `ids` `[batch, seq]` (`seq ≤ max_seq_len`); with `collect`, also
    /// every hidden state and attention map (for distillation).
    ///
    /// # Errors
    /// [`ModelError::Input`] for an empty batch, an empty or too long sequence, or an id
    /// outside the vocabulary (checked with one device reduction before the gather).
    pub fn try_forward(&self, ids: Tensor<2, Int>, collect: bool) -> Result<CausalLmOutput> {
        let [b, s] = ids.dims();
        if b == 0 || s == 0 || s > self.max_seq_len() {
            return Err(ModelError::Input {
                what: "ids".into(),
                message: format!("shape [{b}, {s}], expected a batch ≥ 1 of 1..={} tokens", self.max_seq_len()),
            });
        }
        check_range("ids", ids.clone(), self.vocab_size(), None)?;
        let x = self.embeddings.forward(ids, None)?;
        let out = self.decoder.try_forward(x, None, collect)?;
        let x = self.norm.forward(out.hidden);
        let logits = match (&self.head, &self.proj_out) {
            (Some(head), _) => head.forward(x),
            (None, Some(p)) => self.embeddings.tied_logits(p.forward(x))?,
            (None, None) => self.embeddings.tied_logits(x)?,
        };
        Ok(CausalLmOutput { logits, hidden_states: out.hidden_states, attentions: out.attentions })
    }

    /// Logits `[batch, seq, vocab]`.
    ///
    /// # Panics
    /// On the errors of [`CausalLm::try_forward`].
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        match self.try_forward(ids, false) {
            Ok(o) => o.logits,
            Err(e) => panic!("CausalLm::forward: {e}"),
        }
    }

    fn with_decoder(&self, decoder: Encoder) -> CausalLm {
        CausalLm { decoder, ..self.clone() }
    }

    /// The model with attention block `block` narrowed to the heads in `keep`.
    ///
    /// # Errors
    /// [`ModelError::Layers`] for a block out of range, an invalid `keep` or an int8 model.
    pub fn retain_heads(&self, block: usize, keep: &[usize]) -> Result<CausalLm> {
        Ok(self.with_decoder(self.decoder.retain_heads(block, keep)?))
    }

    /// The model with feed-forward block `block` narrowed to the neurons in `keep`.
    ///
    /// # Errors
    /// As [`CausalLm::retain_heads`].
    pub fn retain_neurons(&self, block: usize, keep: &[usize]) -> Result<CausalLm> {
        Ok(self.with_decoder(self.decoder.retain_neurons(block, keep)?))
    }

    /// The model with only the layers in `keep` (0-based, ascending).
    ///
    /// # Errors
    /// [`ModelError::Layers`] for an empty, unsorted or out-of-range `keep`.
    pub fn retain_layers(&self, keep: &[usize]) -> Result<CausalLm> {
        Ok(self.with_decoder(self.decoder.retain_layers(keep)?))
    }

    /// The model with its layers in `n_groups` groups sharing blocks (see
    /// `ember_layers::Encoder::to_shared`).
    ///
    /// # Errors
    /// [`ModelError::Layers`] as `Encoder::to_shared`.
    pub fn to_shared(&self, sharing: SharingMode, n_groups: usize, init: SharedInit) -> Result<CausalLm> {
        Ok(self.with_decoder(self.decoder.to_shared(sharing, n_groups, init)?))
    }

    /// Saves the model (float or int8) to `dir` with its config (see [`crate::save`]);
    /// returns the weight file's size in bytes.
    ///
    /// # Errors
    /// [`ModelError::Io`] when the directory or a file cannot be written.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<u64> {
        crate::save::save_model(self, dir.as_ref(), crate::save::ModelKind::CausalLm, &self.config()?)
    }

    /// Loads a model saved by [`CausalLm::save`] onto `device`.
    ///
    /// # Errors
    /// As `Bert::load`.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<CausalLm> {
        let (config, weights): (CausalLmConfig, _) =
            crate::save::read_model(dir.as_ref(), crate::save::ModelKind::CausalLm)?;
        crate::save::load_weights(config.init(device)?, &weights)
    }
}

/// Turns a failed read-back from the device into [`ModelError::Device`] instead of a panic.
fn device_err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> ModelError + '_ {
    move |e| ModelError::Device { what: what.into(), message: e.to_string() }
}

/// Checks that every value of `ids` is in `0..vocab` (or equals `ignore`).
fn check_range(what: &str, ids: Tensor<2, Int>, vocab: usize, ignore: Option<i64>) -> Result<()> {
    let flat = ids.reshape([-1]);
    let flat = match ignore {
        Some(i) => {
            let keep = flat.clone().not_equal_elem(i);
            flat.mask_fill(keep.bool_not(), 0)
        }
        None => flat,
    };
    let lo: i64 = flat.clone().min().try_into_scalar().map_err(device_err(what))?;
    let hi: i64 = flat.max().try_into_scalar().map_err(device_err(what))?;
    if lo < 0 || hi >= vocab as i64 {
        let bad = if lo < 0 { lo } else { hi };
        return Err(ModelError::Input {
            what: what.into(),
            message: format!("token {bad} is outside the vocabulary 0..{vocab}"),
        });
    }
    Ok(())
}

/// Mean next-token cross-entropy (natural log) of `logits` `[batch, seq, vocab]` against
/// `targets` `[batch, seq]`, skipping positions whose target is `ignore` (e.g. −100).
/// Differentiable; 0 when every position is ignored.
///
/// # Errors
/// [`ModelError::Input`] when the shapes disagree or a target (other than `ignore`) is
/// outside `0..vocab`.
pub fn lm_loss(logits: Tensor<3>, targets: Tensor<2, Int>, ignore: Option<i64>) -> Result<Tensor<1>> {
    let [b, s, v] = logits.dims();
    if targets.dims() != [b, s] {
        return Err(ModelError::Input {
            what: "targets".into(),
            message: format!("shape {:?}, expected the logits' leading [{b}, {s}]", targets.dims()),
        });
    }
    check_range("targets", targets.clone(), v, ignore)?;
    let n = b * s;
    let flat = targets.reshape([n]);
    let (index, keep) = match ignore {
        Some(i) => {
            let keep = flat.clone().not_equal_elem(i);
            (flat.mask_fill(keep.clone().bool_not(), 0), keep.float())
        }
        None => (flat.clone(), Tensor::<1>::ones([n], &logits.device())),
    };
    let logp = log_softmax(logits.reshape([n, v]), 1).gather(1, index.reshape([n, 1])).reshape([n]);
    let count = keep.clone().sum().clamp_min(1.0);
    Ok(-(logp * keep).sum() / count)
}

/// Bytes as tokens: vocabulary 256, any UTF-8 text, no file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// Vocabulary size (256).
    pub const VOCAB: usize = 256;

    /// The text's bytes as token ids.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }

    /// Token ids back to text (invalid UTF-8 replaced; ids ≥ 256 skipped).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().filter_map(|&i| u8::try_from(i).ok()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Held-out perplexity of `model` on a token stream: windows of `seq_len + 1` tokens at a
/// stride of `seq_len` (consecutive windows share their boundary token, so every token after
/// the first is predicted exactly once, from at most `seq_len` tokens of context), `batch`
/// windows at a time; a tail shorter than a window is dropped. Returns `exp(mean NLL)`, the
/// NLL in nats (the perplexity itself has no unit).
///
/// # Errors
/// [`ModelError::Input`] when the stream is shorter than one window, `seq_len` exceeds the
/// model's context, a token is outside the vocabulary, or the loss is not finite;
/// [`ModelError::Device`] when the device fails to compute or return the loss.
pub fn perplexity(model: &CausalLm, tokens: &[u32], seq_len: usize, batch: usize, device: &Device) -> Result<f64> {
    let bad = |message: String| Err(ModelError::Input { what: "perplexity".into(), message });
    if seq_len == 0 || seq_len > model.max_seq_len() {
        return bad(format!("seq_len {seq_len}, expected 1..={}", model.max_seq_len()));
    }
    if let Some(t) = tokens.iter().find(|&&t| t as usize >= model.vocab_size()) {
        return bad(format!("token {t} is outside the vocabulary 0..{}", model.vocab_size()));
    }
    let windows = tokens.len().saturating_sub(1) / seq_len;
    if windows == 0 {
        return bad(format!("{} tokens, need at least {}", tokens.len(), seq_len + 1));
    }
    let batch = batch.max(1);
    let (mut sum, mut count) = (0f64, 0usize);
    for start in (0..windows).step_by(batch) {
        let rows = batch.min(windows - start);
        let mut input = Vec::with_capacity(rows * seq_len);
        let mut target = Vec::with_capacity(rows * seq_len);
        for w in start..start + rows {
            let base = w * seq_len;
            input.extend(tokens[base..base + seq_len].iter().map(|&t| i64::from(t)));
            target.extend(tokens[base + 1..base + seq_len + 1].iter().map(|&t| i64::from(t)));
        }
        let x = Tensor::<2, Int>::from_data(TensorData::new(input, [rows, seq_len]), device);
        let y = Tensor::<2, Int>::from_data(TensorData::new(target, [rows, seq_len]), device);
        let loss: f32 = lm_loss(model.try_forward(x, false)?.logits, y, None)?
            .try_into_scalar()
            .map_err(device_err("the held-out loss"))?;
        sum += f64::from(loss) * (rows * seq_len) as f64;
        count += rows * seq_len;
    }
    let nll = sum / count as f64;
    if !nll.is_finite() {
        return bad(format!("mean NLL is {nll}"));
    }
    Ok(nll.exp())
}
