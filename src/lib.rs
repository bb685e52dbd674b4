//! # Ember
//!
//! Compression for small language models on [Burn](https://burn.dev): knowledge distillation,
//! pruning, int8 quantization and parameter sharing, usable inside your own Burn code on any
//! device.
//!
//! This umbrella crate re-exports each Ember crate behind a Cargo feature:
//!
//! | feature | module | crate |
//! |---|---|---|
//! | `kernels` (default) | [`kernels`] | `ember-kernels`: int8 GEMM (u8·i8 → i32) with runtime CPU dispatch |
//! | `layers` (default) | [`layers`] | `ember-layers`: factorized embeddings, cross-layer sharing, prunable attention / FFN, parameter accounting |
//! | `quant` (default) | [`quant`] | `ember-quant`: int8 quantization of Burn models (dynamic / static int8 `Linear`, observers, QAT, SmoothQuant) |
//! | `prune` (default) | [`prune`] | `ember-prune`: pruning masks (magnitude / random / Wanda / movement; unstructured, N:M, neurons; per layer or global), cubic schedules, masks that persist through fine-tuning |
//! | `eval` (default) | [`eval`] | `ember-eval`: metrics (accuracy, P/R/F1, MCC, Pearson/Spearman, perplexity, SQuAD/MultiRC/ReCoRD), GLUE and SuperGLUE readers and scores, latency harness, compression report |
//! | `models` (default) | [`models`] | `ember-models`: BERT / MiniLM / ALBERT from Hugging Face safetensors and tokenizer.json, sequence-classification heads, sentence-pair tokenization, Hugging Face export, a small causal LM with factorized embeddings and sharing |
//! | `pipeline` (default) | [`pipeline`] | the compression pipeline on real models: a Hugging Face encoder distilled, pruned and quantized for sentence embeddings or text classification (teacher fine-tuning, GLUE / labelled TSV data, task metrics), measured on held-out data, saved in Hugging Face and Ember layouts |
//! | `distill` (default) | [`distill`] | `ember-distill`: knowledge distillation losses (T²-scaled KD, hidden / attention / relation / PKD), layer maps, projections, the `Distiller`, a top-k teacher cache |
//!
//! The `cli` feature (default) builds the `ember` command (`cargo install --path .` from a
//! clone): `ember compress`, `quantize`, `prune`, `embed`, `eval` and `bench`. Library users
//! who want none of it depend with `default-features = false` and the features they use.
//!
//! ```
//! # #[cfg(feature = "kernels")] {
//! use ember_slm::kernels::KernelId;
//! println!("int8 kernel chosen on this CPU: {}", KernelId::selected().name());
//! # }
//! ```

#[cfg(feature = "kernels")]
pub use ember_kernels as kernels;

#[cfg(feature = "quant")]
pub use ember_quant as quant;

#[cfg(feature = "layers")]
pub use ember_layers as layers;

#[cfg(feature = "distill")]
pub use ember_distill as distill;

#[cfg(feature = "prune")]
pub use ember_prune as prune;

#[cfg(feature = "eval")]
pub use ember_eval as eval;
#[cfg(feature = "models")]
pub use ember_models as models;

#[cfg(feature = "pipeline")]
pub mod pipeline;

/// The README's code blocks, compiled as doctests so that its quick start keeps compiling.
#[cfg(all(doctest, feature = "models", feature = "quant"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
