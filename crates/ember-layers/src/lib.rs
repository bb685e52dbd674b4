//! # ember-layers: the building blocks of every Ember model
//!
//! One attention, one feed-forward block, one (optionally factorized) embedding and one encoder
//! stack with cross-layer sharing, all on ember-quant's int8-ready [`ember_quant::Linear`] and
//! [`ember_quant::Embedding`]. So the same block is trained, distilled and pruned while float
//! (its heads, neurons and layers removed physically by `retain_*` methods) and runs Ember's
//! int8 kernels after one `ember_quant::Quantizer` call. ember-models builds BERT, MiniLM,
//! ALBERT and the causal LM from these blocks only; your own model can too.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use ember_layers::{EncoderConfig, FactorizedEmbeddingConfig, SharingMode};
//! use ember_quant::{QuantizeConfig, Quantizer};
//!
//! let device = Device::flex();
//! // A tiny ALBERT: E = 16, H = 32, 4 layer applications of one shared layer.
//! let emb = FactorizedEmbeddingConfig::new(100, 16, 32).init(&device).unwrap();
//! let enc = EncoderConfig::new(32, 4, 64, 4).with_sharing(SharingMode::All).init(&device).unwrap();
//! let ids = Tensor::<2, Int>::from_ints([[1, 2, 3]], &device);
//! let out = enc.forward(emb.forward(ids.clone(), None).unwrap(), None, true);
//! assert_eq!(out.hidden.dims(), [1, 3, 32]);
//! assert_eq!(out.hidden_states.len(), 5);      // input + 4 layers
//! assert_eq!(enc.attention.len(), 1);          // one set of parameters
//!
//! // Structure is removed on the layers; the config records what is left.
//! let small = enc.retain_heads(0, &[0, 2]).unwrap().retain_neurons(0, &[1, 5, 9]).unwrap();
//! assert_eq!(small.config().unwrap().init(&device).unwrap().layout(), small.layout());
//! // And the same blocks run Ember's int8 kernels after one call.
//! let (int8, _report) = Quantizer::new(QuantizeConfig::new()).quantize(&small).unwrap();
//! assert!(int8.attention[0].query.is_quantized());
//! ```
//!
//! ## Modules
//! - [`embedding`]: [`FactorizedEmbedding`] (ALBERT §3.1; BERT's embedding is the unfactorized
//!   case) with a tied LM head.
//! - [`attention`]: the one [`MultiHeadAttention`] (padding and causal masks through
//!   [`AttentionMask`], the documented [`MASKED_SCORE`], free head width, `retain_heads`).
//! - [`feedforward`]: [`FeedForward`] with `retain_neurons`; [`activation`]: GELU (erf and
//!   tanh, fast on CPU devices), ReLU, SiLU.
//! - [`encoder`]: [`Encoder`] with sharing modes all / attention / feed-forward / none over `G`
//!   groups, pre- or post-norm, per-block widths ([`EncoderLayout`]), `retain_layers` and
//!   `to_shared` (students from teachers).
//! - [`mobilebert`]: MobileBERT's bottleneck layers, stacked FFNs, NoNorm and trigram embedding.
//! - [`params`]: counts by component from configs (BERT, ALBERT, TinyBERT, MobileBERT).
//!
//! ## Feature flags
//! - `flex` (default), `ndarray` (default): the CPU backends (int8 kernels run on both).
//! - `wgpu`, `cuda`: Burn's GPU backends (int8 layers take the float path there).

pub mod activation;
pub mod attention;
pub mod embedding;
pub mod encoder;
pub mod error;
pub mod feedforward;
mod host;
pub mod mobilebert;
pub mod params;

pub use activation::Activation;
pub use attention::{AttentionConfig, AttentionMask, AttentionOutput, MASKED_SCORE, MultiHeadAttention};
pub use embedding::{FactorizedEmbedding, FactorizedEmbeddingConfig};
pub use encoder::{Encoder, EncoderConfig, EncoderLayout, EncoderOutput, SharedInit, SharingMode};
pub use error::{LayerError, Result};
pub use feedforward::{FeedForward, FeedForwardConfig};
pub use mobilebert::{MobileBert, MobileBertLayer, MobileBertOutput, Normalization};
pub use params::{MobileBertSpec, ParamBreakdown, TransformerSpec};

// The guide's code blocks are compiled and run as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../GUIDE.md")]
struct GuideDoctests;
