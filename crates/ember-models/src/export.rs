//! Saving a float BERT-family model in Hugging Face's `BertModel` layout, for other tools:
//! `config.json`, `model.safetensors` (Hugging Face key names, PyTorch's `[out, in]` Linear
//! weights, f32), the tokenizer files, and sentence-transformers' module files (mean pooling,
//! L2 normalisation: what [`Bert::embed`] computes). `transformers`' `AutoModel`,
//! sentence-transformers and [`Bert::from_pretrained`] load the directory.
//!
//! Students keep every structural edit Hugging Face's format can express:
//! - a **layer subset** is a smaller `num_hidden_layers`;
//! - **removed heads** are written as `transformers`' `pruned_heads` (per layer, the removed
//!   heads' indices; `num_attention_heads` stays the original count, so a head keeps its width
//!   `hidden_size / num_attention_heads`); the removed heads are listed as the last ones, since
//!   the kept heads are renumbered from 0 in the weights;
//! - **FFN widths** differing between layers are padded to the widest with zero neurons (a zero
//!   row of the first Linear, a zero bias and a zero column of the second: the activation of 0
//!   is 0 for GELU, ReLU and SiLU, so the outputs are exactly the model's), since Hugging Face's
//!   BERT has one `intermediate_size`.
//!
//! What the format cannot express is refused with a typed error: shared blocks (ALBERT-style
//! students: save them with [`Bert::save`]), a factorized embedding (`E ≠ H`), a head width that
//! does not divide the width, int8 weights and unfolded pruning masks.
//!
//! ```
//! use burn::tensor::Device;
//! use ember_models::{Bert, BertConfig, Encoded};
//!
//! let device = Device::flex();
//! let teacher = BertConfig::new(100, 32, 3, 4, 64, 16).init(&device).unwrap();
//! // A student: layers 0 and 2, layer 0 without head 1 and with half its FFN.
//! let student = teacher
//!     .retain_heads(0, &[0, 2, 3]).unwrap()
//!     .retain_neurons(0, &(0..32).collect::<Vec<_>>()).unwrap()
//!     .retain_layers(&[0, 2]).unwrap();
//! let dir = std::env::temp_dir().join(format!("ember-export-doc-{}", std::process::id()));
//! let export = student.save_pretrained(&dir, None).unwrap();
//! assert_eq!(export.config.num_hidden_layers, 2);
//! assert_eq!(export.config.pruned_heads["0"], vec![3]); // 3 heads kept of 4
//! assert_eq!(export.padded_neurons, 32);                  // layer 0 padded from 32 to 64
//!
//! let back = Bert::from_pretrained(&dir, &device).unwrap();
//! let batch = Encoded::from_ids(&[vec![1, 7, 9, 2]], 0).unwrap();
//! let (a, b) = (student.embed(&batch).unwrap(), back.embed(&batch).unwrap());
//! assert!(a.sub(b).abs().max().into_scalar::<f32>() < 1e-5);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use crate::bert::{Bert, BertConfig};
use crate::error::{ModelError, Result, config_err};
use crate::load::{HfLayout, HostTensors, float_tensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The weights file of a Hugging Face directory.
pub const HF_WEIGHTS_FILE: &str = "model.safetensors";
/// The config file of a Hugging Face directory.
pub const HF_CONFIG_FILE: &str = "config.json";
/// Tokenizer files copied from the tokenizer directory when present.
pub const TOKENIZER_FILES: [&str; 4] =
    ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"];

/// What [`Bert::save_pretrained`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct HfExport {
    /// The directory.
    pub dir: PathBuf,
    /// The `config.json` written.
    pub config: BertConfig,
    /// Bytes of `model.safetensors`.
    pub weight_bytes: u64,
    /// Zero neurons added so that every layer has `intermediate_size` (0 when the widths agree).
    pub padded_neurons: usize,
    /// Tokenizer files copied.
    pub tokenizer_files: Vec<String>,
}

fn io_err(path: &Path, e: impl ToString) -> ModelError {
    ModelError::Io { path: path.display().to_string(), message: e.to_string() }
}

impl Bert {
    /// Writes the model to `dir` in Hugging Face's `BertModel` layout (see the
    /// [module docs](self)), with the tokenizer files found in `tokenizer_dir` (for example the
    /// teacher's directory). Files are written under temporary names and renamed into place, so
    /// an error leaves an earlier export in `dir` intact.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming what the format cannot hold (shared blocks, a factorized
    /// embedding, an int8 model, masks, non-finite weights, head widths that do not divide the
    /// width); [`ModelError::Io`] for files that cannot be written or read.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>, tokenizer_dir: Option<&Path>) -> Result<HfExport> {
        self.save_hf(dir.as_ref(), tokenizer_dir, None)
    }

    /// [`Bert::save_pretrained`]; with `task` = (key prefix, extra tensors, config entries), a
    /// task model: every encoder key under the prefix, the extra tensors added, the entries
    /// merged into `config.json`, and no sentence-transformers files.
    pub(crate) fn save_hf(
        &self,
        dir: &Path,
        tokenizer_dir: Option<&Path>,
        task: Option<(&str, HostTensors, serde_json::Value)>,
    ) -> Result<HfExport> {
        let (config, mut tensors, padded) = self.hf_tensors()?;
        let mut overrides = None;
        if let Some((prefix, extra, entries)) = task {
            tensors = tensors.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect();
            tensors.extend(extra);
            overrides = Some(entries);
        }
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        let weights = serialize(&tensors)?;
        let weight_bytes = weights.len() as u64;
        files.push((dir.join(HF_WEIGHTS_FILE), weights));
        let mut json = serde_json::to_value(&config).map_err(|e| io_err(dir, e))?;
        if let Some(o) = json.as_object_mut() {
            o.insert("model_type".into(), "bert".into());
            o.insert("architectures".into(), serde_json::json!(["BertModel"]));
            o.insert("torch_dtype".into(), "float32".into());
            o.insert("hidden_dropout_prob".into(), 0.1.into());
            o.insert("attention_probs_dropout_prob".into(), 0.1.into());
            o.insert("initializer_range".into(), 0.02.into());
            if let Some(serde_json::Value::Object(extra)) = &overrides {
                for (k, v) in extra {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
        files.push((dir.join(HF_CONFIG_FILE), pretty(&json)?));
        // sentence-transformers: the encoder, mean pooling, L2 normalisation.
        if overrides.is_none() {
            files.push((
                dir.join("modules.json"),
                pretty(&serde_json::json!([
                    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
                ]))?,
            ));
            files.push((
                dir.join("sentence_bert_config.json"),
                pretty(&serde_json::json!({"max_seq_length": config.max_position_embeddings, "do_lower_case": false}))?,
            ));
            files.push((
                dir.join("1_Pooling").join("config.json"),
                pretty(&serde_json::json!({
                    "word_embedding_dimension": config.hidden_size,
                    "pooling_mode_cls_token": false,
                    "pooling_mode_mean_tokens": true,
                    "pooling_mode_max_tokens": false,
                    "pooling_mode_mean_sqrt_len_tokens": false
                }))?,
            ));
        }
        let mut tokenizer_files = Vec::new();
        if let Some(src) = tokenizer_dir {
            for name in TOKENIZER_FILES {
                let path = src.join(name);
                if path.is_file() {
                    files.push((dir.join(name), std::fs::read(&path).map_err(|e| io_err(&path, e))?));
                    tokenizer_files.push(name.to_string());
                }
            }
            if tokenizer_files.is_empty() {
                return Err(io_err(
                    src,
                    format!("no tokenizer file ({}) in the tokenizer directory", TOKENIZER_FILES.join(", ")),
                ));
            }
        }
        write_all(dir, &files)?;
        Ok(HfExport { dir: dir.to_path_buf(), config, weight_bytes, padded_neurons: padded, tokenizer_files })
    }

    /// The Hugging Face config and tensors of the model (keys as in `BertModel`), and the
    /// zero neurons added.
    fn hf_tensors(&self) -> Result<(BertConfig, HostTensors, usize)> {
        let arch = self.architecture()?;
        let (emb, enc) = (&arch.embedding, &arch.encoder);
        let n = self.encoder.n_layers();
        let identity: Vec<usize> = (0..n).collect();
        if self.encoder.attention_index != identity
            || self.encoder.feed_forward_index != identity
            || self.encoder.attention.len() != n
            || self.encoder.feed_forward.len() != n
        {
            return Err(config_err(
                "encoder",
                "blocks shared between layers",
                "one block per layer (BertModel has no sharing: save ALBERT-style models with Bert::save)",
            ));
        }
        if self.embeddings.projection.is_some()
            || self.embeddings.position.is_none()
            || self.embeddings.token_type.is_none()
            || self.embeddings.norm.is_none()
        {
            return Err(config_err(
                "embedding",
                "factorized, or without positions, token types or LayerNorm",
                "BERT's embedding (E = H, position and token-type tables, LayerNorm)",
            ));
        }
        let hidden = enc.d_model;
        let head_dim = self.encoder.attention[0].head_dim;
        if head_dim == 0 || !hidden.is_multiple_of(head_dim) {
            return Err(config_err(
                "head width",
                head_dim,
                &format!(
                    "a divisor of the width {hidden} (BertModel's heads are hidden_size / num_attention_heads wide)"
                ),
            ));
        }
        let n_heads = hidden / head_dim;
        let layout = self.encoder.layout();
        let mut pruned_heads = BTreeMap::new();
        for (l, &h) in layout.attention_heads.iter().enumerate() {
            if h > n_heads {
                return Err(config_err(
                    "attention heads",
                    format!("{h} in layer {l}"),
                    &format!("at most hidden_size / head width = {n_heads}"),
                ));
            }
            if h < n_heads {
                pruned_heads.insert(l.to_string(), (h..n_heads).collect());
            }
        }
        let d_ff = layout.ffn_widths.iter().copied().max().unwrap_or(0);
        let mut config = BertConfig::new(emb.vocab_size, hidden, n, n_heads, d_ff, emb.max_positions);
        config.type_vocab_size = emb.type_vocab_size;
        config.layer_norm_eps = enc.layer_norm_eps;
        config.hidden_act = enc.activation.hf_name().to_string();
        config.pruned_heads = pruned_heads;

        let mut tensors = BTreeMap::new();
        let mut padded = 0;
        for (path, (shape, values)) in float_tensors(self)? {
            let Some(key) = HfLayout::BERT.hf_key(&path, 1) else {
                if shape.iter().product::<usize>() == 0 {
                    continue; // empty state of a float layer
                }
                return Err(config_err(&path, format!("{shape:?}"), "a parameter of BertModel"));
            };
            tensors.insert(key, (shape, values));
        }
        // Pad narrower FFNs with zero neurons up to `d_ff`.
        for (l, &f) in layout.ffn_widths.iter().enumerate() {
            if f == d_ff {
                continue;
            }
            padded += d_ff - f;
            let p = format!("encoder.layer.{l}.");
            if let Some((shape, v)) = tensors.get_mut(&format!("{p}intermediate.dense.weight")) {
                // [f, hidden] → [d_ff, hidden]: zero rows.
                v.resize(d_ff * hidden, 0.0);
                shape[0] = d_ff;
            }
            if let Some((shape, v)) = tensors.get_mut(&format!("{p}intermediate.dense.bias")) {
                v.resize(d_ff, 0.0);
                shape[0] = d_ff;
            }
            if let Some((shape, v)) = tensors.get_mut(&format!("{p}output.dense.weight")) {
                // [hidden, f] → [hidden, d_ff]: zero columns.
                let mut w = vec![0.0f32; hidden * d_ff];
                for r in 0..hidden {
                    w[r * d_ff..r * d_ff + f].copy_from_slice(&v[r * f..(r + 1) * f]);
                }
                *v = w;
                shape[1] = d_ff;
            }
        }
        config.validate()?;
        Ok((config, tensors, padded))
    }
}

fn pretty(v: &serde_json::Value) -> Result<Vec<u8>> {
    let mut text = serde_json::to_string_pretty(v).map_err(|e| config_err("config", e, "serializable JSON"))?;
    text.push('\n');
    Ok(text.into_bytes())
}

fn serialize(tensors: &HostTensors) -> Result<Vec<u8>> {
    let bytes: Vec<(&String, Vec<u8>, &Vec<usize>)> =
        tensors.iter().map(|(k, (s, v))| (k, v.iter().flat_map(|x| x.to_le_bytes()).collect(), s)).collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (k, b, s) in &bytes {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.to_vec(), b)
            .map_err(|e| config_err(k, e, "a tensor whose size matches its shape"))?;
        views.push((k.to_string(), view));
    }
    // `transformers` requires the `format` metadata of PyTorch checkpoints.
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| config_err("model.safetensors", e, "serializable tensors"))
}

/// Writes every file under a temporary name, then renames them all into place; on an error
/// the temporaries are removed and nothing in `dir` is replaced.
fn write_all(dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    let mut written: Vec<(PathBuf, PathBuf)> = Vec::new();
    let cleanup = |written: &[(PathBuf, PathBuf)]| {
        for (tmp, _) in written {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for (path, bytes) in files {
        let parent = path.parent().unwrap_or(dir);
        if let Err(e) = std::fs::create_dir_all(parent) {
            cleanup(&written);
            return Err(io_err(parent, e));
        }
        let tmp = ember_quant::io::temporary_path(path);
        if let Err(e) = std::fs::write(&tmp, bytes) {
            let _ = std::fs::remove_file(&tmp);
            cleanup(&written);
            return Err(io_err(path, e));
        }
        written.push((tmp, path.clone()));
    }
    for (i, (tmp, path)) in written.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, path) {
            cleanup(&written[i..]);
            return Err(io_err(path, e));
        }
    }
    Ok(())
}
