//! # ember-models: real models for Ember's compression techniques
//!
//! Every model here is composed of ember-layers blocks only (one attention, one feed-forward
//! block, one embedding, one encoder stack), on ember-quant's int8-ready layers. So one
//! `ember_quant::Quantizer` call makes any of them int8, ember-prune's criteria choose heads
//! and neurons that the models then remove physically, ember-distill reads their hidden states
//! and attention maps, and a shrunk model saves and loads with its per-layer widths.
//!
//! - [`bert`]: the BERT-family encoder [`Bert`] (BERT, MiniLM) configured from a Hugging Face
//!   `config.json` ([`BertConfig`]); students by layer subsets, narrowing and sharing.
//! - [`albert`]: ALBERT checkpoints ([`AlbertConfig`]): a [`Bert`] with a factorized
//!   embedding and one shared layer group.
//! - [`load`]: Hugging Face `model.safetensors` loading, one key-mapping table per architecture
//!   ([`HfLayout`]), with typed errors for missing, extra or misshaped tensors.
//! - [`save`]: Ember's own directory layout (`ember.json` + weights, float or int8), with a
//!   layout version.
//! - [`tokenizer`]: `tokenizer.json` through the `tokenizers` crate, padded batches.
//! - [`causal`]: a small GPT-style causal LM ([`CausalLm`]) with ALBERT-style factorized
//!   embeddings and cross-layer sharing as options, [`ByteTokenizer`], [`lm_loss`] and
//!   held-out [`perplexity`].
//! - [`corpus`]: [`MarkovCorpus`], built-in text with an exactly known entropy rate (the
//!   perplexity floor a language model is measured against).
//!
//! ```no_run
//! use burn::tensor::Device;
//! use ember_models::{Bert, TextTokenizer};
//! use ember_quant::{QuantizeConfig, Quantizer};
//!
//! let device = Device::flex();
//! let dir = "models/all-minilm-l6-v2"; // scripts/fetch-minilm.sh
//! let model = Bert::from_pretrained(dir, &device).unwrap();
//! let tok = TextTokenizer::from_file(format!("{dir}/tokenizer.json"), model.max_positions()).unwrap();
//! let batch = tok.encode_batch(&["Small models can be fast.", "Quantize them to int8."]).unwrap();
//! let f32_emb = model.embed(&batch).unwrap();
//! // A student: every other layer, then int8.
//! let student = model.retain_layers(&[1, 3, 5]).unwrap();
//! let (int8, _report) = Quantizer::new(QuantizeConfig::new()).quantize(&student).unwrap();
//! let int8_emb = int8.embed(&batch).unwrap();
//! int8.save("out/student").unwrap(); // ember.json + model.ember.safetensors
//! ```
//!
//! The guide (GUIDE.md in this crate) follows; its examples run as doctests.
#![doc = include_str!("../GUIDE.md")]

pub mod albert;
pub mod bert;
pub mod causal;
pub mod classifier;
pub mod corpus;
pub mod error;
pub mod export;
pub mod load;
pub mod save;
pub mod tokenizer;

pub use albert::AlbertConfig;
pub use bert::{Bert, BertArchitecture, BertConfig, BertOutput, l2_normalize, mean_pool};
pub use causal::{ByteTokenizer, CausalLm, CausalLmConfig, CausalLmOutput, lm_loss, perplexity};
pub use classifier::{BertClassifier, ClassifierArchitecture, LoadedClassifier};
pub use corpus::MarkovCorpus;
pub use ember_layers::{Activation, SharedInit, SharingMode};
pub use error::{ModelError, Result};
pub use export::HfExport;
pub use load::{
    HfLayout, KeyMapping, LayerKeys, LoadReport, bert_param_path, load_albert_bytes, load_bert_bytes,
    load_bert_safetensors, load_hf_bytes,
};
pub use tokenizer::{Encoded, TextTokenizer};
