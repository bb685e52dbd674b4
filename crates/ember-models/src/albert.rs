//! ALBERT (Lan et al. 2020) from Hugging Face `AlbertModel` checkpoints, as a [`Bert`] whose
//! embedding is factorized (`E < H`, projected by `embedding_hidden_mapping_in`) and whose
//! encoder shares one layer group across all layers.
//!
//! `num_hidden_groups` groups of `inner_group_num` distinct layers; layer application `i` runs
//! group `⌊i · G / N⌋`, all of its inner layers in order (Hugging Face's `AlbertTransformer`),
//! so the Ember encoder has `N · inner_group_num` layer applications over
//! `G · inner_group_num` blocks. The released models have `G = 1`, `inner_group_num = 1`.
//!
//! ```
//! use ember_models::AlbertConfig;
//! // ALBERT-base: 11.7 M parameters, as published (Lan et al. 2020, Table 1), pooler included.
//! let base = AlbertConfig::base();
//! let h = base.hidden_size;
//! assert_eq!(base.architecture().unwrap().num_params().unwrap() + h * h + h, 11_683_584);
//! ```

use crate::bert::{Bert, BertArchitecture, check_hf_common};
use crate::error::{Result, config_err};
use burn::tensor::Device;
use ember_layers::{Activation, EncoderConfig, EncoderLayout, FactorizedEmbeddingConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

// Hugging Face's `AlbertConfig` defaults (those of ALBERT-xxlarge), used for absent fields.
fn d_vocab() -> usize {
    30000
}
fn d_embedding() -> usize {
    128
}
fn d_hidden() -> usize {
    4096
}
fn d_layers() -> usize {
    12
}
fn d_one() -> usize {
    1
}
fn d_heads() -> usize {
    64
}
fn d_intermediate() -> usize {
    16384
}
fn d_act() -> String {
    "gelu_new".into()
}
fn d_positions() -> usize {
    512
}

/// A Hugging Face ALBERT `config.json` (unknown fields ignored; absent fields take Hugging
/// Face's `AlbertConfig` defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlbertConfig {
    /// Vocabulary size.
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Factorized embedding size `E`.
    #[serde(default = "d_embedding")]
    pub embedding_size: usize,
    /// Model width `H`.
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    /// Layer applications `N`.
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    /// Groups of shared layers `G` (divides `N`).
    #[serde(default = "d_one")]
    pub num_hidden_groups: usize,
    /// Attention heads.
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    /// Feed-forward inner width.
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    /// Distinct layers inside each group.
    #[serde(default = "d_one")]
    pub inner_group_num: usize,
    /// Feed-forward activation (`"gelu_new"`: GELU's tanh form).
    #[serde(default = "d_act")]
    pub hidden_act: String,
    /// Longest sequence.
    #[serde(default = "d_positions")]
    pub max_position_embeddings: usize,
    /// Token types.
    #[serde(default = "crate::bert::default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "crate::bert::default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Position embedding kind; only `"absolute"` is supported.
    #[serde(default = "crate::bert::default_position_type")]
    pub position_embedding_type: String,
}

impl AlbertConfig {
    /// ALBERT-base (v2): V = 30000, E = 128, H = 768, 12 layers sharing one group, 12 heads,
    /// d_ff = 3072, `gelu_new`.
    pub fn base() -> Self {
        AlbertConfig {
            vocab_size: 30000,
            embedding_size: 128,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_hidden_groups: 1,
            num_attention_heads: 12,
            intermediate_size: 3072,
            inner_group_num: 1,
            hidden_act: d_act(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: crate::bert::default_position_type(),
        }
    }

    /// Parses `config.json` text and validates it.
    ///
    /// # Errors
    /// [`crate::ModelError::Config`] for malformed JSON or invalid values.
    pub fn from_json(text: &str) -> Result<Self> {
        let c: AlbertConfig =
            serde_json::from_str(text).map_err(|e| config_err("config.json", e, "a Hugging Face ALBERT config"))?;
        c.architecture()?;
        Ok(c)
    }

    /// Reads and validates a `config.json` file.
    ///
    /// # Errors
    /// [`crate::ModelError::Io`], or as [`AlbertConfig::from_json`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_json(&crate::error::read_text(path.as_ref())?)
    }

    /// The encoder block of inner layer `inner` of layer group `group`: the key map's
    /// `albert_layer_groups.{group}.albert_layers.{inner}` is block `group · inner_group_num +
    /// inner`.
    pub fn block(&self, group: usize, inner: usize) -> usize {
        group * self.inner_group_num + inner
    }

    /// Ember's description of the model.
    ///
    /// # Errors
    /// [`crate::ModelError::Config`] naming the field for zero sizes, groups that do not divide
    /// the layers, heads that do not divide the width, relative positions, an unknown
    /// activation or sizes no process could allocate.
    pub fn architecture(&self) -> Result<BertArchitecture> {
        crate::error::check_nonzero(&[
            ("vocab_size", self.vocab_size),
            ("embedding_size", self.embedding_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_hidden_groups", self.num_hidden_groups),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("inner_group_num", self.inner_group_num),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ])?;
        if !self.num_hidden_layers.is_multiple_of(self.num_hidden_groups) {
            return Err(config_err(
                "num_hidden_groups",
                self.num_hidden_groups,
                &format!("a divisor of num_hidden_layers = {}", self.num_hidden_layers),
            ));
        }
        check_hf_common(
            self.hidden_size,
            self.num_attention_heads,
            self.layer_norm_eps,
            &self.position_embedding_type,
        )?;
        let (n, g, k) = (self.num_hidden_layers, self.num_hidden_groups, self.inner_group_num);
        let blocks = g.checked_mul(k).ok_or_else(|| config_err("inner_group_num", k, "a smaller group"))?;
        let applications = n.checked_mul(k).ok_or_else(|| config_err("inner_group_num", k, "a smaller group"))?;
        if blocks > 1 << 20 || applications > 1 << 20 {
            return Err(config_err("num_hidden_layers × inner_group_num", applications, "at most 2^20 layers"));
        }
        // Layer application i runs group ⌊i·G/N⌋, every inner layer j of it in turn.
        let index: Vec<usize> = (0..n).flat_map(|i| (0..k).map(move |j| (i * g / n) * k + j)).collect();
        let layout = EncoderLayout {
            attention_heads: vec![self.num_attention_heads; blocks],
            ffn_widths: vec![self.intermediate_size; blocks],
            attention_index: index.clone(),
            feed_forward_index: index,
        };
        let encoder =
            EncoderConfig::new(self.hidden_size, self.num_attention_heads, self.intermediate_size, applications)
                .with_activation(Activation::from_hf(&self.hidden_act).map_err(crate::error::layer_config)?)
                .with_layer_norm_eps(self.layer_norm_eps)
                .with_layout(Some(layout))
                // A uniform config when it says the same (the released models: one shared block).
                .simplified();
        let arch = BertArchitecture::new(
            FactorizedEmbeddingConfig::new(self.vocab_size, self.embedding_size, self.hidden_size)
                .with_max_positions(self.max_position_embeddings)
                .with_type_vocab_size(self.type_vocab_size)
                .with_layer_norm_eps(self.layer_norm_eps)
                .with_projection(true),
            encoder,
        );
        arch.validate()?;
        Ok(arch)
    }

    /// A model with random weights.
    ///
    /// # Errors
    /// As [`AlbertConfig::architecture`].
    pub fn init(&self, device: &Device) -> Result<Bert> {
        self.architecture()?.init(device)
    }
}
