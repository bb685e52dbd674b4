//! A small GPT-style causal language model, trained in the project.
//!
//! Pre-LayerNorm decoder blocks (causal multi-head self-attention, GELU feed-forward), learned
//! absolute positions, a final LayerNorm and a language-model head tied to the token table by
//! default. ALBERT's two savings are options: a **factorized embedding** (`embedding_size`
//! `E < d_model`: tokens live in `E` dimensions, projected to `d_model` and back for the tied
//! head) and **cross-layer sharing** ([`ember_layers::SharingMode`]: all, attention only or
//! feed-forward only, each block with its LayerNorm).
//!
//! Every linear layer is an [`ember_quant::Linear`] and the token table an
//! [`ember_quant::Embedding`] (the tied head then runs the int8 GEMM once quantized), so the
//! same model is trained, distilled, pruned and quantized with the other Ember crates.
//! [`ByteTokenizer`] maps any text to bytes (vocabulary 256), so no tokenizer file is needed.
//!
//! No pretrained causal-LM checkpoint is loaded: none is available to the project's tests, and
//! an untested GPT-2 loader would be a claim without evidence.

use crate::error::{ModelError, Result, check_eps, check_nonzero, config_err};
use crate::gelu::gelu;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_layers::SharingMode;
use ember_quant::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use serde::{Deserialize, Serialize};

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
    /// Layers per sharing group (ALBERT shares across all layers: `n_layers`). Ignored without
    /// sharing.
    #[serde(default)]
    pub share_group: Option<usize>,
    /// Tie the output head to the token table (default true).
    #[serde(default = "yes")]
    pub tie_embeddings: bool,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
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

    /// Checks sizes and options.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field.
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
        crate::error::check_addressable(self.params_u128())
    }

    fn group(&self) -> usize {
        if self.sharing == SharingMode::None { 1 } else { self.share_group.unwrap_or(self.n_layers).max(1) }
    }

    /// Distinct attention and feed-forward blocks after sharing.
    pub fn distinct_blocks(&self) -> (usize, usize) {
        let groups = self.n_layers.div_ceil(self.group());
        match self.sharing {
            SharingMode::None => (self.n_layers, self.n_layers),
            SharingMode::All => (groups, groups),
            SharingMode::Attention => (groups, self.n_layers),
            SharingMode::FeedForward => (self.n_layers, groups),
        }
    }

    /// Parameters, by the same formula the modules follow.
    /// Saturates at `usize::MAX` for sizes no machine can hold ([`validate`](Self::validate)
    /// rejects those).
    pub fn num_params(&self) -> usize {
        usize::try_from(self.params_u128()).unwrap_or(usize::MAX)
    }

    /// The parameter count, saturating at `u128::MAX` (no overflow for any sizes).
    fn params_u128(&self) -> u128 {
        use crate::error::Count;
        let c = Count::from;
        let (h, f, v) = (c(self.d_model), c(self.d_ff), c(self.vocab_size));
        let e = self.embedding_size.map_or(h, c);
        let (two, four) = (c(2), c(4));
        let mut n = v * e + c(self.max_seq_len) * h + two * h; // tables + final norm
        if self.embedding_size.is_some() {
            n += e * h + h; // in projection
            if self.tie_embeddings {
                n += h * e + e; // out projection for the tied head
            }
        }
        if !self.tie_embeddings {
            n += h * v + v;
        }
        let (a, m) = self.distinct_blocks();
        let total = n + c(a) * (four * (h * h + h) + two * h) + c(m) * (h * f + f + f * h + h + two * h);
        total.0
    }

    /// A model with random weights.
    ///
    /// # Errors
    /// As [`CausalLmConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<CausalLm> {
        self.validate()?;
        let (h, f, v) = (self.d_model, self.d_ff, self.vocab_size);
        let e = self.embedding_size.unwrap_or(h);
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let norm = |d| LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps).init(device);
        let (na, nm) = self.distinct_blocks();
        let group = self.group();
        let index =
            |shared: bool| -> Vec<usize> { (0..self.n_layers).map(|l| if shared { l / group } else { l }).collect() };
        let share_attn = matches!(self.sharing, SharingMode::All | SharingMode::Attention);
        let share_ffn = matches!(self.sharing, SharingMode::All | SharingMode::FeedForward);
        Ok(CausalLm {
            tok: EmbeddingConfig::new(v, e).init(device),
            pos: EmbeddingConfig::new(self.max_seq_len, h).init(device),
            proj_in: self.embedding_size.map(|_| lin(e, h)),
            attn: (0..na)
                .map(|_| CausalAttention {
                    norm: norm(h),
                    query: lin(h, h),
                    key: lin(h, h),
                    value: lin(h, h),
                    out: lin(h, h),
                })
                .collect(),
            ffn: (0..nm).map(|_| Mlp { norm: norm(h), up: lin(h, f), down: lin(f, h) }).collect(),
            norm: norm(h),
            proj_out: (self.embedding_size.is_some() && self.tie_embeddings).then(|| lin(h, e)),
            head: (!self.tie_embeddings).then(|| lin(h, v)),
            attn_index: index(share_attn),
            ffn_index: index(share_ffn),
            heads: self.n_heads,
        })
    }
}

/// Pre-LN causal self-attention.
#[derive(Module, Debug)]
pub struct CausalAttention {
    /// LayerNorm before attention.
    pub norm: LayerNorm,
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection.
    pub out: Linear,
}

/// Pre-LN GELU feed-forward block.
#[derive(Module, Debug)]
pub struct Mlp {
    /// LayerNorm before the block.
    pub norm: LayerNorm,
    /// `d_model → d_ff`.
    pub up: Linear,
    /// `d_ff → d_model`.
    pub down: Linear,
}

/// A GPT-style causal LM. See the [module docs](self).
#[derive(Module, Debug)]
pub struct CausalLm {
    /// Token table `[vocab, E]`.
    pub tok: Embedding,
    /// Position table `[max_seq_len, d_model]`.
    pub pos: Embedding,
    /// Factorized embedding projection `E → d_model`.
    pub proj_in: Option<Linear>,
    /// Distinct attention blocks (fewer than layers when shared).
    pub attn: Vec<CausalAttention>,
    /// Distinct feed-forward blocks.
    pub ffn: Vec<Mlp>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// `d_model → E` before the tied head of a factorized model.
    pub proj_out: Option<Linear>,
    /// Untied head `d_model → vocab`.
    pub head: Option<Linear>,
    /// Attention block of each layer.
    #[module(skip)]
    pub attn_index: Vec<usize>,
    /// Feed-forward block of each layer.
    #[module(skip)]
    pub ffn_index: Vec<usize>,
    /// Attention heads.
    #[module(skip)]
    pub heads: usize,
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

fn causal_bias(s: usize, device: &Device) -> Tensor<4> {
    let v: Vec<f32> = (0..s * s).map(|i| if i % s > i / s { -1.0e4 } else { 0.0 }).collect();
    Tensor::<2>::from_data(TensorData::new(v, [s, s]), device).reshape([1, 1, s, s])
}

impl CausalAttention {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>, heads: usize) -> (Tensor<3>, Tensor<4>) {
        let [b, s, h] = x.dims();
        let d = h / heads;
        let n = self.norm.forward(x.clone());
        let split = |t: Tensor<3>| t.reshape([b, s, heads, d]).swap_dims(1, 2);
        let q = split(self.query.forward(n.clone()));
        let k = split(self.key.forward(n.clone()));
        let v = split(self.value.forward(n));
        let probs = softmax(q.matmul(k.transpose()) / (d as f64).sqrt() + bias, 3);
        let ctx = probs.clone().matmul(v).swap_dims(1, 2).reshape([b, s, h]);
        (x + self.out.forward(ctx), probs)
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        x.clone() + self.down.forward(gelu(self.up.forward(self.norm.forward(x))))
    }
}

impl CausalLm {
    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tok.n_embedding()
    }

    /// Longest context.
    pub fn max_seq_len(&self) -> usize {
        self.pos.n_embedding()
    }

    /// Layers.
    pub fn n_layers(&self) -> usize {
        self.attn_index.len()
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
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..s as i64, &device).unsqueeze::<2>().repeat_dim(0, b);
        let mut t = self.tok.forward(ids);
        if let Some(p) = &self.proj_in {
            t = p.forward(t);
        }
        let mut x = t + self.pos.forward(positions);
        let bias = causal_bias(s, &device);
        let mut out = CausalLmOutput { logits: x.clone(), hidden_states: Vec::new(), attentions: Vec::new() };
        if collect {
            out.hidden_states.push(x.clone());
        }
        for (&a, &m) in self.attn_index.iter().zip(&self.ffn_index) {
            let (y, probs) = self.attn[a].forward(x, bias.clone(), self.heads);
            x = self.ffn[m].forward(y);
            if collect {
                out.hidden_states.push(x.clone());
                out.attentions.push(probs);
            }
        }
        let x = self.norm.forward(x);
        out.logits = match (&self.head, &self.proj_out) {
            (Some(head), _) => head.forward(x),
            (None, Some(p)) => self.tok.try_tied_logits(p.forward(x))?,
            (None, None) => self.tok.try_tied_logits(x)?,
        };
        Ok(out)
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
