//! The BERT-family encoder: BERT, MiniLM and ALBERT checkpoints, composed of ember-layers
//! blocks only.
//!
//! A [`Bert`] is a [`FactorizedEmbedding`] (BERT: `E = H`, no projection; ALBERT: `E < H` with
//! the projection) and an [`Encoder`] (BERT: one block per layer; ALBERT: blocks shared across
//! layers), post-LayerNorm, as Hugging Face's `BertModel` / `AlbertModel`: word + absolute
//! position + token-type embeddings, LayerNorm; per layer, multi-head self-attention with a
//! padding mask, output projection, residual and LayerNorm, then the feed-forward block,
//! residual and LayerNorm. Dropout is left out (inference, distillation targets, fine-tuning
//! without dropout). Sentence embeddings are the mean over real tokens, L2-normalised
//! ([`mean_pool`], [`l2_normalize`]), as sentence-transformers computes them.
//!
//! Because every linear layer is an `ember_quant::Linear` and every table an
//! `ember_quant::Embedding`, one `ember_quant::Quantizer` call makes the model int8; because
//! the blocks are ember-layers', the same model loses heads, neurons and layers physically
//! ([`Bert::retain_heads`], [`Bert::retain_neurons`], [`Bert::retain_layers`]), becomes an
//! ALBERT-style shared encoder ([`Bert::to_shared`]), and records what it became in its
//! [`BertArchitecture`], which [`Bert::save`] writes next to the weights.
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
//!
//! // A student: layer 0 keeps heads 0 and 3 and half its FFN, layer 1 stays as it was; the
//! // architecture records the widths of each layer.
//! let small = model.retain_heads(0, &[0, 3]).unwrap().retain_neurons(0, &(0..32).collect::<Vec<_>>()).unwrap();
//! let layout = small.architecture().unwrap().encoder.layout.unwrap();
//! assert_eq!((layout.attention_heads, layout.ffn_widths), (vec![2, 4], vec![32, 64]));
//! ```

use crate::error::{ModelError, Result, config_err};
use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor};
use ember_layers::{
    Activation, Encoder, EncoderConfig, EncoderLayout, FactorizedEmbedding, FactorizedEmbeddingConfig, SharedInit,
    SharingMode,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

fn default_act() -> String {
    "gelu".into()
}
pub(crate) fn default_type_vocab() -> usize {
    2
}
pub(crate) fn default_eps() -> f64 {
    1e-12
}
pub(crate) fn default_position_type() -> String {
    "absolute".into()
}

/// A Hugging Face BERT `config.json` (unknown fields ignored, Hugging Face's defaults for the
/// optional ones). [`BertConfig::architecture`] turns it into Ember's [`BertArchitecture`].
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
    /// Feed-forward activation name (see [`Activation::from_hf`]).
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
    /// Heads removed from each layer (Hugging Face's `pruned_heads`: layer index, as a string
    /// in JSON, → original head indices). Their layers hold `num_attention_heads − removed`
    /// heads of width `hidden_size / num_attention_heads`, as `transformers`' `prune_heads`
    /// leaves them; [`Bert::save_pretrained`] writes it for students that lost heads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pruned_heads: BTreeMap<String, Vec<usize>>,
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
            pruned_heads: BTreeMap::new(),
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
        Self::from_json(&crate::error::read_text(path.as_ref())?)
    }

    /// Ember's description of the model this config builds.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the field for zero sizes, heads that do not divide the
    /// width, relative position encodings, an unknown activation, a non-positive epsilon or
    /// sizes no process could allocate.
    pub fn architecture(&self) -> Result<BertArchitecture> {
        crate::error::check_nonzero(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ])?;
        check_hf_common(
            self.hidden_size,
            self.num_attention_heads,
            self.layer_norm_eps,
            &self.position_embedding_type,
        )?;
        let encoder = EncoderConfig::new(
            self.hidden_size,
            self.num_attention_heads,
            self.intermediate_size,
            self.num_hidden_layers,
        )
        .with_activation(Activation::from_hf(&self.hidden_act).map_err(crate::error::layer_config)?)
        .with_layer_norm_eps(self.layer_norm_eps);
        let encoder = match self.heads_per_layer()? {
            None => encoder,
            Some(heads) => {
                let n = self.num_hidden_layers;
                encoder
                    .with_head_dim(Some(self.head_dim()))
                    .with_layout(Some(EncoderLayout {
                        attention_heads: heads,
                        ffn_widths: vec![self.intermediate_size; n],
                        attention_index: (0..n).collect(),
                        feed_forward_index: (0..n).collect(),
                    }))
                    .simplified()
            }
        };
        let arch = BertArchitecture::new(
            FactorizedEmbeddingConfig::bert(
                self.vocab_size,
                self.hidden_size,
                self.max_position_embeddings,
                self.type_vocab_size,
            )
            .with_layer_norm_eps(self.layer_norm_eps),
            encoder,
        );
        arch.validate()?;
        Ok(arch)
    }

    /// The heads each layer keeps after `pruned_heads`, or `None` when no head was removed.
    fn heads_per_layer(&self) -> Result<Option<Vec<usize>>> {
        if self.pruned_heads.values().all(Vec::is_empty) {
            return Ok(None);
        }
        let (n, h) = (self.num_hidden_layers, self.num_attention_heads);
        let mut heads = vec![h; n];
        for (layer, removed) in &self.pruned_heads {
            let l = layer.parse::<usize>().ok().filter(|&l| l < n).ok_or_else(|| {
                config_err("pruned_heads", format!("layer {layer:?}"), &format!("a layer index in 0..{n}"))
            })?;
            let distinct: std::collections::BTreeSet<usize> = removed.iter().copied().collect();
            if let Some(bad) = distinct.iter().find(|&&i| i >= h) {
                return Err(config_err(
                    "pruned_heads",
                    format!("head {bad} of layer {l}"),
                    &format!("a head index in 0..{h} (num_attention_heads)"),
                ));
            }
            if distinct.len() >= h {
                return Err(config_err(
                    "pruned_heads",
                    format!("all {h} heads of layer {l}"),
                    "at least one head kept per layer",
                ));
            }
            heads[l] = h - distinct.len();
        }
        Ok(Some(heads))
    }

    /// Checks sizes and options (as [`BertConfig::architecture`]).
    ///
    /// # Errors
    /// As [`BertConfig::architecture`].
    pub fn validate(&self) -> Result<()> {
        self.architecture().map(|_| ())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Parameters of the encoder (embeddings and layers, no pooler); saturates at `usize::MAX`
    /// for configs [`BertConfig::validate`] rejects.
    pub fn num_params(&self) -> usize {
        self.architecture().and_then(|a| a.num_params()).unwrap_or(usize::MAX)
    }

    /// A model with random weights (load a checkpoint into it with
    /// [`crate::load_bert_safetensors`], or use [`Bert::from_pretrained`]).
    ///
    /// # Errors
    /// As [`BertConfig::architecture`].
    pub fn init(&self, device: &Device) -> Result<Bert> {
        self.architecture()?.init(device)
    }
}

/// The checks BERT and ALBERT configs share: heads dividing the width, a positive epsilon,
/// absolute positions.
pub(crate) fn check_hf_common(hidden: usize, heads: usize, eps: f64, position_type: &str) -> Result<()> {
    if !hidden.is_multiple_of(heads) {
        return Err(config_err("num_attention_heads", heads, &format!("a divisor of hidden_size = {hidden}")));
    }
    crate::error::check_eps(eps)?;
    if position_type != "absolute" {
        return Err(config_err(
            "position_embedding_type",
            position_type,
            "\"absolute\" (relative position encodings are not implemented)",
        ));
    }
    Ok(())
}

/// What a BERT-family model is, in ember-layers' terms: its embedding and its encoder,
/// including every block's width and the layer → block maps. [`Bert::architecture`] reads it
/// off a model (after any shrinking or sharing); [`Bert::save`] writes it as `ember.json`.
#[derive(Config, Debug)]
pub struct BertArchitecture {
    /// The embedding (ALBERT: factorized with a projection).
    pub embedding: FactorizedEmbeddingConfig,
    /// The encoder (post-norm, not causal).
    pub encoder: EncoderConfig,
}

impl BertArchitecture {
    /// Checks that both parts are valid and fit each other.
    ///
    /// # Errors
    /// [`ModelError::Config`] for an invalid part (naming the setting), when the embedding's
    /// output width is not the encoder's, or the encoder is causal or pre-norm (not BERT).
    pub fn validate(&self) -> Result<()> {
        self.embedding.validate().map_err(crate::error::layer_config)?;
        self.encoder.validate().map_err(crate::error::layer_config)?;
        if self.embedding.hidden_size != self.encoder.d_model {
            return Err(config_err(
                "embedding.hidden_size",
                self.embedding.hidden_size,
                &format!("the encoder's width d_model = {}", self.encoder.d_model),
            ));
        }
        if self.encoder.causal || self.encoder.norm_first {
            return Err(config_err(
                "encoder",
                "causal or pre-norm",
                "a bidirectional post-norm encoder (a BERT-family model)",
            ));
        }
        Ok(())
    }

    /// Parameters of the model (embedding and encoder).
    ///
    /// # Errors
    /// As [`BertArchitecture::validate`].
    pub fn num_params(&self) -> Result<usize> {
        self.validate()?;
        let (a, f, n) = self.encoder.num_params()?;
        let total = [self.embedding.num_params()?, a, f, n].iter().try_fold(0usize, |s, &x| s.checked_add(x));
        total.ok_or_else(|| config_err("sizes", "overflow", "a model this process can count"))
    }

    /// A model with random weights.
    ///
    /// # Errors
    /// As [`BertArchitecture::validate`].
    pub fn init(&self, device: &Device) -> Result<Bert> {
        self.validate()?;
        Ok(Bert { embeddings: self.embedding.init(device)?, encoder: self.encoder.init(device)? })
    }
}

/// A BERT-family encoder. See the [module docs](self).
#[derive(Module, Debug)]
pub struct Bert {
    /// The embedding block (Hugging Face `embeddings`, and ALBERT's
    /// `encoder.embedding_hidden_mapping_in` as its projection).
    pub embeddings: FactorizedEmbedding,
    /// The layers (Hugging Face `encoder.layer` / `encoder.albert_layer_groups`).
    pub encoder: Encoder,
}

/// What [`Bert::try_forward`] returns.
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// The last layer's hidden states `[batch, seq, hidden]`.
    pub last_hidden: Tensor<3>,
    /// With `collect`: the embedding output and every layer's output (`layers + 1` tensors).
    pub hidden_states: Vec<Tensor<3>>,
    /// With `collect`: every layer's attention probabilities `[batch, heads, seq, seq]`.
    pub attentions: Vec<Tensor<4>>,
    /// With `collect`: every layer's value vectors `[batch, seq, heads · head_dim]` (MiniLM's
    /// value-relation distillation).
    pub values: Vec<Tensor<3>>,
}

fn bad<T>(what: &str, message: String) -> Result<T> {
    Err(ModelError::Input { what: what.into(), message })
}

impl Bert {
    /// Model width.
    pub fn hidden_size(&self) -> usize {
        self.embeddings.hidden_size()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.embeddings.vocab_size()
    }

    /// Longest sequence.
    pub fn max_positions(&self) -> usize {
        self.embeddings.max_positions()
    }

    /// Layers.
    pub fn n_layers(&self) -> usize {
        self.encoder.n_layers()
    }

    /// The device of the model's parameters.
    pub fn device(&self) -> Device {
        self.embeddings.word.weight.device()
    }

    /// The model's architecture, read off its modules (after shrinking or sharing, the shape
    /// it has now).
    ///
    /// # Errors
    /// [`ModelError::Layers`] for an encoder assembled by hand that no config describes.
    pub fn architecture(&self) -> Result<BertArchitecture> {
        Ok(BertArchitecture::new(self.embeddings.config(), self.encoder.config()?))
    }

    /// Runs the encoder on `ids` `[batch, seq]` with optional `token_types` (zeros when
    /// `None`) and `pad_mask` (`true` at padding; padded keys get no attention). With
    /// `collect`, the output also carries every hidden state, attention map and value tensor.
    ///
    /// # Errors
    /// [`ModelError::Input`] when a sequence is longer than the position table or the shapes
    /// of `token_types` / `pad_mask` differ from `ids`; [`ModelError::Layers`] for an id or token
    /// type outside its table (checked with one read from the device).
    pub fn try_forward(
        &self,
        ids: Tensor<2, Int>,
        token_types: Option<Tensor<2, Int>>,
        pad_mask: Option<Tensor<2, Bool>>,
        collect: bool,
    ) -> Result<BertOutput> {
        self.run(ids, token_types, pad_mask, collect, false)
    }

    /// The last hidden state `[batch, seq, hidden]` for callers that read nothing at padded
    /// positions (mean pooling over the mask, the first token): zeros at padding, and on CPU
    /// devices the padding is never computed (see `ember_layers::Encoder::forward_real_tokens`:
    /// a batch padded to its longest sentence costs only its real tokens). Real tokens'
    /// outputs equal [`Bert::try_forward`]'s to float rounding.
    ///
    /// # Errors
    /// As [`Bert::try_forward`].
    pub fn forward_real_tokens(
        &self,
        ids: Tensor<2, Int>,
        token_types: Option<Tensor<2, Int>>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<3>> {
        Ok(self.run(ids, token_types, pad_mask, false, true)?.last_hidden)
    }

    fn run(
        &self,
        ids: Tensor<2, Int>,
        token_types: Option<Tensor<2, Int>>,
        pad_mask: Option<Tensor<2, Bool>>,
        collect: bool,
        real_only: bool,
    ) -> Result<BertOutput> {
        let [b, s] = ids.dims();
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
        let x = self.embeddings.forward(ids, token_types)?;
        let out = match (collect, real_only) {
            (false, true) => {
                let hidden = self.encoder.forward_real_tokens(x, pad_mask)?;
                ember_layers::EncoderOutput { hidden, hidden_states: vec![], attentions: vec![], values: vec![] }
            }
            _ => self.encoder.try_forward(x, pad_mask, collect)?,
        };
        Ok(BertOutput {
            last_hidden: out.hidden,
            hidden_states: out.hidden_states,
            attentions: out.attentions,
            values: out.values,
        })
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
        batch.check(self.vocab_size(), self.embeddings.type_vocab_size().max(1))?;
        let (ids, types, pad) = batch.tensors(&self.device());
        let types = (self.embeddings.type_vocab_size() > 0).then_some(types);
        let hidden = self.forward_real_tokens(ids, types, Some(pad.clone()))?;
        Ok(l2_normalize(mean_pool(hidden, pad)))
    }

    /// The model with attention block `block` narrowed to the heads in `keep` (ascending).
    /// BERT has one block per layer; an ALBERT block is shared by its layers, which all lose
    /// the heads.
    ///
    /// # Errors
    /// [`ModelError::Layers`] for a block out of range, an invalid `keep` or an int8 model.
    pub fn retain_heads(&self, block: usize, keep: &[usize]) -> Result<Bert> {
        Ok(Bert { embeddings: self.embeddings.clone(), encoder: self.encoder.retain_heads(block, keep)? })
    }

    /// The model with feed-forward block `block` narrowed to the neurons in `keep`.
    ///
    /// # Errors
    /// As [`Bert::retain_heads`].
    pub fn retain_neurons(&self, block: usize, keep: &[usize]) -> Result<Bert> {
        Ok(Bert { embeddings: self.embeddings.clone(), encoder: self.encoder.retain_neurons(block, keep)? })
    }

    /// The model with only the layers in `keep` (0-based, ascending): DistilBERT-style
    /// students (`[1, 3, 5]` of a 6-layer teacher).
    ///
    /// # Errors
    /// [`ModelError::Layers`] for an empty, unsorted or out-of-range `keep`.
    pub fn retain_layers(&self, keep: &[usize]) -> Result<Bert> {
        Ok(Bert { embeddings: self.embeddings.clone(), encoder: self.encoder.retain_layers(keep)? })
    }

    /// An ALBERT-style student: the layers in `n_groups` groups sharing their blocks as
    /// `sharing` says, each shared block initialised from its group's layers by `init` (see
    /// `ember_layers::Encoder::to_shared`). The embedding is kept.
    ///
    /// # Errors
    /// [`ModelError::Layers`] as `Encoder::to_shared`.
    pub fn to_shared(&self, sharing: SharingMode, n_groups: usize, init: SharedInit) -> Result<Bert> {
        Ok(Bert { embeddings: self.embeddings.clone(), encoder: self.encoder.to_shared(sharing, n_groups, init)? })
    }

    /// Saves the model (float or int8) to the directory `dir` (created if missing) in Ember's
    /// layout: `ember.json` (the [`BertArchitecture`] and the layout version) and
    /// `model.ember.safetensors` (every parameter by path: f32, or int8 with scales, see
    /// `ember_quant::save_quantized`). Returns the weight file's size in bytes.
    ///
    /// # Errors
    /// [`ModelError::Io`] when the directory or a file cannot be written; as
    /// [`Bert::architecture`].
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<u64> {
        crate::save::save_model(self, dir.as_ref(), crate::save::ModelKind::Bert, &self.architecture()?)
    }

    /// Loads a model saved by [`Bert::save`] onto `device`.
    ///
    /// # Errors
    /// [`ModelError::Io`] for missing files; [`ModelError::Checkpoint`] for a directory of
    /// another model kind or layout version (files saved before Ember's layout 2 name their
    /// version), a malformed `ember.json`, or weights that do not fit it.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Bert> {
        let (arch, weights): (BertArchitecture, _) =
            crate::save::read_model(dir.as_ref(), crate::save::ModelKind::Bert)?;
        let skeleton = arch.init(device)?;
        crate::save::load_weights(skeleton, &weights)
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
