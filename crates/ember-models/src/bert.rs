//! A BERT-family encoder (BERT, MiniLM and other `BertModel` checkpoints) configured from a
//! Hugging Face `config.json`, with Ember's int8-ready layers.
//!
//! Every linear layer is an [`ember_quant::Linear`] and every table an
//! [`ember_quant::Embedding`], so [`ember_quant::Quantizer`] converts the whole model to int8
//! in one call; the layers are plain Burn parameters, so ember-prune masks and removes them and
//! ember-distill reads their hidden states and attention maps ([`BertOutput`]).
//!
//! The forward pass follows Hugging Face's `BertModel` (post-LayerNorm layers): word + absolute
//! position + token-type embeddings, LayerNorm; per layer, multi-head self-attention with an
//! additive padding mask, output projection, residual and LayerNorm, then the feed-forward
//! block (erf GELU unless the config says otherwise), residual and LayerNorm. Dropout is left
//! out (the model is for inference, distillation targets and fine-tuning without dropout).
//! Sentence embeddings are the mean over real tokens, L2-normalised ([`mean_pool`],
//! [`l2_normalize`]), as sentence-transformers computes them.
//!
//! ```
//! use burn::tensor::Device;
//! use ember_models::{BertConfig, Encoded};
//!
//! // vocab 100, width 32, 2 layers, 4 heads, FFN 64, 16 positions (random weights; real
//! // checkpoints come from `Bert::from_pretrained`).
//! let config = BertConfig::new(100, 32, 2, 4, 64, 16);
//! let model = config.init(&Device::flex()).unwrap();
//! let batch = Encoded::from_ids(&[vec![1, 7, 9, 2], vec![1, 5, 2]], 0).unwrap(); // padded to 4
//! let emb = model.embed(&batch).unwrap();
//! assert_eq!(emb.dims(), [2, 32]);                    // [batch, hidden], unit rows
//! let err = model.embed(&Encoded::from_ids(&[vec![1, 100]], 0).unwrap()).unwrap_err();
//! assert!(err.to_string().contains("outside the model's vocabulary 0..100"));
//! ```

use crate::error::{ModelError, Result, check_eps, check_nonzero, config_err};
use crate::gelu::gelu;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor};
use ember_quant::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The activation of the feed-forward block (`hidden_act` in `config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HiddenAct {
    /// Exact GELU with erf (`"gelu"`), BERT's and MiniLM's.
    Gelu,
    /// The tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`).
    GeluTanh,
    /// ReLU (`"relu"`).
    Relu,
}

impl HiddenAct {
    /// Parses a Hugging Face `hidden_act` name.
    ///
    /// # Errors
    /// [`ModelError::Config`] for an activation this crate does not implement.
    pub fn from_hf(name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(HiddenAct::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(HiddenAct::GeluTanh),
            "relu" => Ok(HiddenAct::Relu),
            other => Err(config_err("hidden_act", other, "one of gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu")),
        }
    }

    pub(crate) fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            HiddenAct::Gelu => gelu(x),
            HiddenAct::GeluTanh => {
                // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
                let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715) * (2.0f64 / std::f64::consts::PI).sqrt();
                x.clone() * (inner.tanh() + 1.0) * 0.5
            }
            HiddenAct::Relu => relu(x),
        }
    }
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

/// A BERT configuration, read from a Hugging Face `config.json` (unknown fields ignored,
/// Hugging Face's defaults for the optional ones).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads (must divide `hidden_size`).
    pub num_attention_heads: usize,
    /// Feed-forward inner width.
    pub intermediate_size: usize,
    /// Feed-forward activation name (see [`HiddenAct::from_hf`]).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest sequence (rows of the position table).
    pub max_position_embeddings: usize,
    /// Token types (segments).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Position embedding kind; only `"absolute"` is supported.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

impl BertConfig {
    /// A configuration from sizes (the rest at BERT's defaults: erf GELU, 2 token types,
    /// epsilon 1e-12, padding id 0, absolute positions).
    pub fn new(vocab: usize, hidden: usize, layers: usize, heads: usize, intermediate: usize, max_pos: usize) -> Self {
        BertConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: intermediate,
            hidden_act: default_act(),
            max_position_embeddings: max_pos,
            type_vocab_size: default_type_vocab(),
            layer_norm_eps: default_eps(),
            pad_token_id: 0,
            position_embedding_type: default_position_type(),
        }
    }

    /// Parses `config.json` text and validates it.
    ///
    /// # Errors
    /// [`ModelError::Config`] for malformed JSON, missing sizes or invalid values.
    pub fn from_json(text: &str) -> Result<Self> {
        let c: BertConfig = serde_json::from_str(text)
            .map_err(|e| config_err("config.json", e, "a Hugging Face BERT config with the size fields"))?;
        c.validate()?;
        Ok(c)
    }

    /// Reads and validates a `config.json` file.
    ///
    /// # Errors
    /// [`ModelError::Io`], or as [`BertConfig::from_json`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::Io { path: path.display().to_string(), message: e.to_string() })?;
        Self::from_json(&text)
    }

    /// Checks sizes and options.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check_nonzero(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ])?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(config_err(
                "num_attention_heads",
                self.num_attention_heads,
                &format!("a divisor of hidden_size = {}", self.hidden_size),
            ));
        }
        check_eps(self.layer_norm_eps)?;
        if self.position_embedding_type != "absolute" {
            return Err(config_err(
                "position_embedding_type",
                &self.position_embedding_type,
                "\"absolute\" (relative position encodings are not implemented)",
            ));
        }
        HiddenAct::from_hf(&self.hidden_act)?;
        crate::error::check_addressable(self.params_u128())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Parameters of the encoder (embeddings and layers, no pooler).
    /// Saturates at `usize::MAX` for sizes no machine can hold ([`validate`](Self::validate)
    /// rejects those).
    pub fn num_params(&self) -> usize {
        usize::try_from(self.params_u128()).unwrap_or(usize::MAX)
    }

    /// The parameter count, saturating at `u128::MAX` (no overflow for any sizes).
    fn params_u128(&self) -> u128 {
        use crate::error::Count;
        let c = Count::from;
        let (h, f, two, four) = (c(self.hidden_size), c(self.intermediate_size), c(2), c(4));
        let tables = c(self.vocab_size) + c(self.max_position_embeddings) + c(self.type_vocab_size);
        let emb = tables * h + two * h;
        let layer = four * (h * h + h) + (h * f + f) + (f * h + h) + four * h;
        (emb + c(self.num_hidden_layers) * layer).0
    }

    /// A model with random weights (load a checkpoint into it with
    /// [`crate::load_bert_safetensors`], or use [`Bert::from_pretrained`]).
    ///
    /// # Errors
    /// As [`BertConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<Bert> {
        self.validate()?;
        let (h, f) = (self.hidden_size, self.intermediate_size);
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let norm = || LayerNormConfig::new(h).with_epsilon(self.layer_norm_eps).init(device);
        let layers = (0..self.num_hidden_layers)
            .map(|_| BertLayer {
                query: lin(h, h),
                key: lin(h, h),
                value: lin(h, h),
                attn_out: lin(h, h),
                attn_norm: norm(),
                ffn_up: lin(h, f),
                ffn_down: lin(f, h),
                ffn_norm: norm(),
            })
            .collect();
        Ok(Bert {
            embeddings: BertEmbeddings {
                word: EmbeddingConfig::new(self.vocab_size, h).init(device),
                position: EmbeddingConfig::new(self.max_position_embeddings, h).init(device),
                token_type: EmbeddingConfig::new(self.type_vocab_size, h).init(device),
                norm: norm(),
            },
            layers,
            heads: self.num_attention_heads,
            act: HiddenAct::from_hf(&self.hidden_act)?,
        })
    }
}

/// Word, position and token-type tables and their LayerNorm.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// Word pieces `[vocab, hidden]` (HF `embeddings.word_embeddings`).
    pub word: Embedding,
    /// Absolute positions `[max_positions, hidden]` (HF `embeddings.position_embeddings`).
    pub position: Embedding,
    /// Token types `[type_vocab, hidden]` (HF `embeddings.token_type_embeddings`).
    pub token_type: Embedding,
    /// HF `embeddings.LayerNorm`.
    pub norm: LayerNorm,
}

/// One post-LayerNorm encoder layer (HF names in the field docs).
#[derive(Module, Debug)]
pub struct BertLayer {
    /// `attention.self.query`.
    pub query: Linear,
    /// `attention.self.key`.
    pub key: Linear,
    /// `attention.self.value`.
    pub value: Linear,
    /// `attention.output.dense`.
    pub attn_out: Linear,
    /// `attention.output.LayerNorm`.
    pub attn_norm: LayerNorm,
    /// `intermediate.dense`.
    pub ffn_up: Linear,
    /// `output.dense`.
    pub ffn_down: Linear,
    /// `output.LayerNorm`.
    pub ffn_norm: LayerNorm,
}

/// A BERT encoder. See the [module docs](self).
#[derive(Module, Debug)]
pub struct Bert {
    /// The embedding block.
    pub embeddings: BertEmbeddings,
    /// The layers (HF `encoder.layer`).
    pub layers: Vec<BertLayer>,
    /// Attention heads.
    #[module(skip)]
    pub heads: usize,
    /// Feed-forward activation.
    #[module(skip)]
    pub act: HiddenAct,
}

/// What [`Bert::forward`] returns.
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// The last layer's hidden states `[batch, seq, hidden]`.
    pub last_hidden: Tensor<3>,
    /// With `collect`: the embedding output and every layer's output (`layers + 1` tensors).
    pub hidden_states: Vec<Tensor<3>>,
    /// With `collect`: every layer's attention probabilities `[batch, heads, seq, seq]`.
    pub attentions: Vec<Tensor<4>>,
    /// With `collect`: every layer's value vectors `[batch, heads, seq, head_dim]` (MiniLM's
    /// value-relation distillation).
    pub values: Vec<Tensor<4>>,
}

impl BertLayer {
    fn forward(
        &self,
        x: Tensor<3>,
        bias: Option<Tensor<4>>,
        heads: usize,
        act: HiddenAct,
    ) -> (Tensor<3>, Tensor<4>, Tensor<4>) {
        let [b, s, h] = x.dims();
        let d = h / heads;
        let split = |t: Tensor<3>| t.reshape([b, s, heads, d]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        let mut scores = q.matmul(k.transpose()) / (d as f64).sqrt();
        if let Some(bias) = bias {
            scores = scores + bias;
        }
        let probs = softmax(scores, 3);
        let ctx = probs.clone().matmul(v.clone()).swap_dims(1, 2).reshape([b, s, h]);
        let a = self.attn_norm.forward(self.attn_out.forward(ctx) + x);
        let f = self.ffn_down.forward(act.apply(self.ffn_up.forward(a.clone())));
        (self.ffn_norm.forward(f + a), probs, v)
    }
}

impl Bert {
    /// Model width.
    pub fn hidden_size(&self) -> usize {
        self.embeddings.word.d_model()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.embeddings.word.n_embedding()
    }

    /// Longest sequence.
    pub fn max_positions(&self) -> usize {
        self.embeddings.position.n_embedding()
    }

    /// Runs the encoder on `ids` `[batch, seq]` with optional `token_types` (zeros when
    /// `None`) and `pad_mask` (`true` at padding; padded keys get no attention). With
    /// `collect`, the output also carries every hidden state, attention map and value tensor.
    ///
    /// # Errors
    /// [`ModelError::Input`] when a sequence is longer than the position table or the shapes
    /// of `token_types` / `pad_mask` differ from `ids`. (Ids outside the vocabulary are checked
    /// by [`crate::Encoded`] on the host; here they would panic in Burn's gather.)
    pub fn try_forward(
        &self,
        ids: Tensor<2, Int>,
        token_types: Option<Tensor<2, Int>>,
        pad_mask: Option<Tensor<2, Bool>>,
        collect: bool,
    ) -> Result<BertOutput> {
        let [b, s] = ids.dims();
        let bad = |what: &str, message: String| Err(ModelError::Input { what: what.into(), message });
        if s > self.max_positions() {
            return bad(
                "ids",
                format!("sequence length {s} exceeds max_position_embeddings = {}", self.max_positions()),
            );
        }
        if let Some(t) = &token_types
            && t.dims() != [b, s]
        {
            return bad("token_types", format!("shape {:?}, expected the ids' [{b}, {s}]", t.dims()));
        }
        if let Some(m) = &pad_mask
            && m.dims() != [b, s]
        {
            return bad("pad_mask", format!("shape {:?}, expected the ids' [{b}, {s}]", m.dims()));
        }
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..s as i64, &device).unsqueeze::<2>().repeat_dim(0, b);
        let types = token_types.unwrap_or_else(|| Tensor::zeros([b, s], &device));
        let e = &self.embeddings;
        let mut x = e.norm.forward(e.word.forward(ids) + e.position.forward(positions) + e.token_type.forward(types));
        // Additive mask at padded keys: −1e4 underflows exp() to 0 next to any real score and
        // stays finite in f16 (HF uses the dtype's minimum), so a fully padded row is uniform
        // rather than NaN.
        let bias = pad_mask.map(|m| (m.float() * -1.0e4).reshape([b, 1, 1, s]));
        let mut out = BertOutput {
            last_hidden: x.clone(),
            hidden_states: Vec::new(),
            attentions: Vec::new(),
            values: Vec::new(),
        };
        if collect {
            out.hidden_states.push(x.clone());
        }
        for layer in &self.layers {
            let (y, probs, v) = layer.forward(x, bias.clone(), self.heads, self.act);
            x = y;
            if collect {
                out.hidden_states.push(x.clone());
                out.attentions.push(probs);
                out.values.push(v);
            }
        }
        out.last_hidden = x;
        Ok(out)
    }

    /// [`Bert::try_forward`] that panics on invalid inputs.
    ///
    /// # Panics
    /// On the errors of [`Bert::try_forward`].
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        token_types: Option<Tensor<2, Int>>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        match self.try_forward(ids, token_types, pad_mask, false) {
            Ok(o) => o.last_hidden,
            Err(e) => panic!("Bert::forward: {e}"),
        }
    }

    /// Sentence embeddings `[batch, hidden]` of a tokenized batch: mean over real tokens,
    /// L2-normalised (sentence-transformers' pooling for all-MiniLM-L6-v2 and similar models).
    ///
    /// # Errors
    /// [`ModelError::Input`] for ids outside the vocabulary, or as [`Bert::try_forward`].
    pub fn embed(&self, batch: &crate::Encoded) -> Result<Tensor<2>> {
        batch.check(self.vocab_size(), self.embeddings.token_type.n_embedding())?;
        let device = self.embeddings.word.weight.device();
        let (ids, types, pad) = batch.tensors(&device);
        let out = self.try_forward(ids, Some(types), Some(pad.clone()), false)?;
        Ok(l2_normalize(mean_pool(out.last_hidden, pad)))
    }
}

/// Mean of `hidden` `[batch, seq, hidden]` over the positions where `pad_mask` is `false`.
/// A row with no real token gives zeros (not NaN).
pub fn mean_pool(hidden: Tensor<3>, pad_mask: Tensor<2, Bool>) -> Tensor<2> {
    let keep = pad_mask.bool_not().float().unsqueeze_dim::<3>(2); // [b, s, 1]
    let sum = (hidden * keep.clone()).sum_dim(1).squeeze_dim::<2>(1);
    let count = keep.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1.0);
    sum / count
}

/// Rows of `x` divided by their L2 norm (floored at 1e-12, as PyTorch's `F.normalize`).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
