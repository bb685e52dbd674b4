//! # ember-layers: parameter-efficient transformer building blocks for Burn
//!
//! ALBERT-style factorized embeddings and cross-layer parameter sharing, attention and
//! feed-forward modules whose inner widths are free (so `ember-prune` can remove heads and
//! neurons physically), an encoder that returns every hidden state and attention map for
//! distillation, and parameter accounting that reproduces published model sizes.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use ember_layers::{EncoderConfig, FactorizedEmbeddingConfig, SharingMode};
//!
//! let device = Device::flex();
//! // A tiny ALBERT: E = 16, H = 32, 4 layer applications of one shared layer.
//! let emb = FactorizedEmbeddingConfig::new(100, 16, 32).init(&device).unwrap();
//! let enc = EncoderConfig::new(32, 4, 64, 4).with_sharing(SharingMode::All).init(&device).unwrap();
//! let ids = Tensor::<2, Int>::from_ints([[1, 2, 3]], &device);
//! let out = enc.forward(emb.forward(ids, None).unwrap(), None, true);
//! assert_eq!(out.hidden.dims(), [1, 3, 32]);
//! assert_eq!(out.hidden_states.len(), 5);      // input + 4 layers
//! assert_eq!(enc.attention.len(), 1);          // one set of parameters
//! ```
//!
//! ## Modules
//! - [`embedding`]: [`FactorizedEmbedding`] (ALBERT §3.1) with an optional tied LM head.
//! - [`attention`], [`feedforward`]: blocks with free inner widths.
//! - [`encoder`]: [`Encoder`] with sharing modes all / attention / feed-forward / none over `G`
//!   groups, pre- or post-norm, padding masks.
//! - [`mobilebert`]: MobileBERT's bottleneck layers, stacked FFNs, NoNorm and trigram embedding.
//! - [`params`]: counts by component from configs (BERT, ALBERT, TinyBERT, MobileBERT).
//!
//! ## Feature flags
//! - `flex` (default), `ndarray` (default): the CPU backends the tests run on.

pub mod attention;
pub mod embedding;
pub mod encoder;
pub mod error;
pub mod feedforward;
pub mod mobilebert;
pub mod params;

pub use attention::{AttentionConfig, AttentionOutput, MultiHeadAttention};
pub use embedding::{FactorizedEmbedding, FactorizedEmbeddingConfig};
pub use encoder::{Encoder, EncoderConfig, EncoderOutput, SharingMode};
pub use error::{LayerError, Result};
pub use feedforward::{Activation, FeedForward, FeedForwardConfig};
pub use mobilebert::{MobileBert, MobileBertLayer, Normalization};
pub use params::{MobileBertSpec, ParamBreakdown, TransformerSpec};

// The guide's code blocks are compiled and run as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/layers.md")]
struct GuideDoctests;
