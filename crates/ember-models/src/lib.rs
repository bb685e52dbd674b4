//! # ember-models: real models for Ember's compression techniques
//!
//! - [`bert`]: a BERT-family encoder ([`Bert`], BERT and MiniLM checkpoints) configured from a
//!   Hugging Face `config.json`, with [`ember_quant::Linear`] and [`ember_quant::Embedding`]
//!   layers, so one [`ember_quant::Quantizer`] call makes it int8, ember-prune masks and shrinks
//!   its layers, and ember-distill reads its hidden states and attention maps.
//! - [`load`]: Hugging Face `model.safetensors` loading through burn-store, with typed errors
//!   for missing, extra or misshaped tensors.
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
//! let (model, config) = Bert::from_pretrained(dir, &device).unwrap();
//! let tok = TextTokenizer::from_file(format!("{dir}/tokenizer.json"), config.max_position_embeddings).unwrap();
//! let batch = tok.encode_batch(&["Small models can be fast.", "Quantize them to int8."]).unwrap();
//! let f32_emb = model.embed(&batch).unwrap();
//! let (int8, _report) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
//! let int8_emb = int8.embed(&batch).unwrap();
//! ```
//!
//! The guide (docs/models.md) follows; its examples run as doctests.
#![doc = include_str!("../../../docs/models.md")]

pub mod bert;
pub mod causal;
pub mod corpus;
pub mod error;
pub mod gelu;
pub mod load;
pub mod tokenizer;

pub use bert::{Bert, BertConfig, BertEmbeddings, BertLayer, BertOutput, HiddenAct, l2_normalize, mean_pool};
pub use causal::{ByteTokenizer, CausalAttention, CausalLm, CausalLmConfig, CausalLmOutput, Mlp, lm_loss, perplexity};
pub use corpus::MarkovCorpus;
pub use error::{ModelError, Result};
pub use load::{KeyMapping, LoadReport, bert_param_path, load_bert_bytes, load_bert_safetensors};
pub use tokenizer::{Encoded, TextTokenizer};
