//! Sequence classification and regression on a BERT-family encoder, as Hugging Face's
//! `BertForSequenceClassification`: the `[CLS]` state through the pooler (`tanh(W·h + b)`),
//! dropout, then a linear layer to one logit per label (or one score for regression).
//!
//! - [`BertClassifier::from_pretrained`] loads a Hugging Face directory: the encoder as
//!   [`Bert::from_pretrained`], the pooler (`pooler.dense` / `bert.pooler.dense`) and the head
//!   (`classifier`) when the checkpoint has them and the head's width fits the labels asked for;
//!   otherwise they are initialised as `transformers` does (normal, σ = 0.02, zero bias), and
//!   [`LoadedClassifier::head_loaded`] says so (the head then needs training).
//! - [`BertClassifier::save_pretrained`] writes `BertForSequenceClassification`'s layout
//!   (`bert.`-prefixed encoder keys, `bert.pooler.dense`, `classifier`; `config.json` with
//!   `id2label`, `label2id` and `problem_type`), which `transformers` and
//!   [`BertClassifier::from_pretrained`] read.
//! - [`BertClassifier::save`] / [`BertClassifier::load`] keep float or int8 models in Ember's
//!   format (`ember.json` + `model.ember.safetensors`).
//!
//! Every `Linear` (pooler and head included) is ember-quant's, so `Quantizer::quantize` converts
//! the whole classifier to int8, and the structural edits of [`Bert`] apply to its encoder.
//!
//! ```
//! use burn::tensor::Device;
//! use ember_models::{BertClassifier, BertConfig, Encoded};
//!
//! let device = Device::flex();
//! let bert = BertConfig::new(50, 16, 2, 2, 32, 20).init(&device).unwrap();
//! let model = BertClassifier::new(bert, vec!["neg".into(), "pos".into()], 0.1).unwrap();
//! let batch = Encoded::from_ids(&[vec![2, 7, 9, 3], vec![2, 5, 3]], 0).unwrap();
//! let logits = model.logits(&batch).unwrap(); // [2, 2]
//! assert_eq!(logits.dims(), [2, 2]);
//! ```

use crate::bert::Bert;
use crate::error::{ModelError, Result, config_err};
use crate::load::HostTensors;
use crate::tokenizer::Encoded;
use crate::{BertArchitecture, BertOutput};
use burn::module::{Module, Param, ParamId};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Distribution, Tensor, TensorData, activation::tanh};
use ember_quant::Linear;
use ember_quant::linear::LinearQuantState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A BERT-family encoder with `BertForSequenceClassification`'s pooler and head. See the
/// [module docs](self).
#[derive(Module, Debug)]
pub struct BertClassifier {
    /// The encoder.
    pub bert: Bert,
    /// The pooler `[hidden, hidden]` (applied to the `[CLS]` state, then `tanh`).
    pub pooler: Linear,
    /// The head `[hidden, outputs]`.
    pub classifier: Linear,
    /// Dropout before the head (active only on an autodiff device in training mode).
    pub dropout: Dropout,
}

/// What a saved classifier is, besides its encoder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassifierArchitecture {
    /// The encoder.
    pub bert: BertArchitecture,
    /// Label names in class-index order; empty for regression (one output).
    pub labels: Vec<String>,
    /// Dropout before the head.
    pub dropout: f64,
}

/// What [`BertClassifier::from_pretrained`] found.
#[derive(Debug)]
pub struct LoadedClassifier {
    /// The model.
    pub model: BertClassifier,
    /// The checkpoint had a head of the right width (`false`: a new, untrained head).
    pub head_loaded: bool,
    /// The checkpoint had a pooler (`false`: a new pooler).
    pub pooler_loaded: bool,
    /// The checkpoint's own label names (`config.json`'s `id2label`), in index order, if any.
    pub checkpoint_labels: Vec<String>,
}

/// The output width for `labels` (1 for regression).
fn outputs(labels: &[String]) -> usize {
    labels.len().max(1)
}

fn check_labels(labels: &[String]) -> Result<()> {
    if labels.len() == 1 {
        return Err(config_err(
            "labels",
            format!("{labels:?}"),
            "two or more label names (classification), or none (regression, one output)",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(d) = labels.iter().find(|l| !seen.insert(l.as_str())) {
        return Err(config_err("labels", format!("{d:?} twice"), "distinct label names"));
    }
    Ok(())
}

fn check_dropout(p: f64) -> Result<()> {
    if !(p.is_finite() && (0.0..1.0).contains(&p)) {
        return Err(config_err("dropout", p, "a probability in [0, 1)"));
    }
    Ok(())
}

/// A float layer `[d_in, d_out]` drawn as `transformers` initialises BERT (normal, σ = 0.02),
/// with a zero bias.
fn new_linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let w = Tensor::<2>::random([d_in, d_out], Distribution::Normal(0.0, 0.02), device);
    let b = Tensor::<1>::zeros([d_out], device);
    Linear::from_parts(
        Param::initialized(ParamId::new(), w),
        Some(Param::initialized(ParamId::new(), b)),
        LinearQuantState::empty(device),
    )
}

/// A float layer from Hugging Face's `[out, in]` weight and `[out]` bias.
fn linear_from_hf(weight: &[f32], bias: &[f32], d_out: usize, d_in: usize, device: &Device) -> Linear {
    let mut t = vec![0.0f32; weight.len()];
    for o in 0..d_out {
        for i in 0..d_in {
            t[i * d_out + o] = weight[o * d_in + i];
        }
    }
    Linear::from_parts(
        Param::initialized(ParamId::new(), Tensor::from_data(TensorData::new(t, [d_in, d_out]), device)),
        Some(Param::initialized(ParamId::new(), Tensor::from_data(TensorData::new(bias.to_vec(), [d_out]), device))),
        LinearQuantState::empty(device),
    )
}

/// A tensor on the host: shape and row-major values.
type HostTensor = (Vec<usize>, Vec<f32>);

/// One float tensor of a safetensors file as f32 with its shape, if the file has `key`.
fn read_f32(st: &safetensors::SafeTensors<'_>, key: &str, file: &str) -> Result<Option<HostTensor>> {
    let Ok(view) = st.tensor(key) else { return Ok(None) };
    use safetensors::Dtype as S;
    let d = view.data();
    let values: Vec<f32> = match view.dtype() {
        S::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        S::F64 => d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
        S::BF16 => {
            d.chunks_exact(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)).collect()
        }
        S::F16 => d.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        other => {
            return Err(ModelError::TensorMismatch {
                file: file.into(),
                tensor: key.into(),
                message: format!("has dtype {other:?}, expected a float dtype (f32, f16, bf16 or f64)"),
            });
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::TensorMismatch {
            file: file.into(),
            tensor: key.into(),
            message: format!("holds NaN or infinity at flat index {i}: the checkpoint is corrupt"),
        });
    }
    Ok(Some((view.shape().to_vec(), values)))
}

/// IEEE half → single.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

impl BertClassifier {
    /// A classifier on `bert` with a new pooler and head for `labels` (two or more names; none
    /// for regression, one output) and `dropout` before the head.
    ///
    /// # Errors
    /// [`ModelError::Config`] for one label, repeated labels or a dropout outside `[0, 1)`.
    pub fn new(bert: Bert, labels: Vec<String>, dropout: f64) -> Result<BertClassifier> {
        check_labels(&labels)?;
        check_dropout(dropout)?;
        let (h, device) = (bert.hidden_size(), bert.device());
        let n = outputs(&labels);
        let _ = labels;
        Ok(BertClassifier {
            bert,
            pooler: new_linear(h, h, &device),
            classifier: new_linear(h, n, &device),
            dropout: DropoutConfig::new(dropout).init(),
        })
    }

    /// Loads a Hugging Face directory (see the [module docs](self)) for `labels` (two or more
    /// names, or none for regression). The checkpoint's head is used when its width is the
    /// number of outputs asked for.
    ///
    /// # Errors
    /// As [`Bert::from_pretrained`]; [`ModelError::TensorMismatch`] for a pooler or head tensor
    /// of the wrong shape or a non-float or non-finite one; [`ModelError::Config`] as
    /// [`BertClassifier::new`].
    pub fn from_pretrained(
        dir: impl AsRef<Path>,
        labels: Vec<String>,
        dropout: f64,
        device: &Device,
    ) -> Result<LoadedClassifier> {
        let dir = dir.as_ref();
        let bert = Bert::from_pretrained(dir, device)?;
        let h = bert.hidden_size();
        let mut model = BertClassifier::new(bert, labels.clone(), dropout)?;
        let n = outputs(&labels);
        let path = dir.join("model.safetensors");
        let file = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| ModelError::Io { path: file.clone(), message: e.to_string() })?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelError::Checkpoint { file: file.clone(), message: e.to_string() })?;
        let pair = |w: &str, b: &str| -> Result<Option<(HostTensor, HostTensor)>> {
            match (read_f32(&st, w, &file)?, read_f32(&st, b, &file)?) {
                (Some(w), Some(b)) => Ok(Some((w, b))),
                (Some(_), None) => {
                    Err(ModelError::MissingTensor { file: file.clone(), tensor: b.into(), param: w.into() })
                }
                _ => Ok(None),
            }
        };
        let mut pooler_loaded = false;
        for prefix in ["bert.", ""] {
            let (w, b) = (format!("{prefix}pooler.dense.weight"), format!("{prefix}pooler.dense.bias"));
            if let Some(((ws, wv), (bs, bv))) = pair(&w, &b)? {
                if ws != [h, h] || bs != [h] {
                    return Err(ModelError::TensorMismatch {
                        file,
                        tensor: w,
                        message: format!("has shape {ws:?} (bias {bs:?}), expected [{h}, {h}] ([{h}])"),
                    });
                }
                model.pooler = linear_from_hf(&wv, &bv, h, h, device);
                pooler_loaded = true;
                break;
            }
        }
        let mut head_loaded = false;
        if let Some(((ws, wv), (bs, bv))) = pair("classifier.weight", "classifier.bias")? {
            if ws.len() != 2 || ws[1] != h || bs != [ws[0]] {
                return Err(ModelError::TensorMismatch {
                    file,
                    tensor: "classifier.weight".into(),
                    message: format!("has shape {ws:?} (bias {bs:?}), expected [labels, {h}] ([labels])"),
                });
            }
            if ws[0] == n {
                model.classifier = linear_from_hf(&wv, &bv, n, h, device);
                head_loaded = true;
            }
        }
        let checkpoint_labels = id2label(&crate::error::read_text(&dir.join("config.json"))?);
        Ok(LoadedClassifier { model, head_loaded, pooler_loaded, checkpoint_labels })
    }

    /// The number of outputs (labels, or 1 for regression).
    pub fn n_outputs(&self) -> usize {
        self.classifier.d_output()
    }

    /// The device of the model's parameters.
    pub fn device(&self) -> Device {
        self.bert.device()
    }

    /// Sets the dropout probability of the encoder's embedding and attention blocks and of the
    /// head (BERT fine-tuning uses 0.1; dropout acts only on an autodiff device in training).
    ///
    /// # Errors
    /// [`ModelError::Config`] for a probability outside `[0, 1)`.
    pub fn with_dropout(mut self, p: f64) -> Result<BertClassifier> {
        check_dropout(p)?;
        self.dropout = DropoutConfig::new(p).init();
        self.bert.embeddings.dropout = DropoutConfig::new(p).init();
        for a in &mut self.bert.encoder.attention {
            a.dropout = DropoutConfig::new(p).init();
        }
        Ok(self)
    }

    /// The encoder's output (every layer's states and maps with `collect`) and the logits
    /// `[batch, outputs]` of a tokenized batch.
    ///
    /// # Errors
    /// As [`Bert::try_forward`]; [`ModelError::Input`] for ids outside the vocabulary.
    pub fn forward_batch(&self, batch: &Encoded, collect: bool) -> Result<(BertOutput, Tensor<2>)> {
        let bert = &self.bert;
        batch.check(bert.vocab_size(), bert.embeddings.type_vocab_size().max(1))?;
        let (ids, types, pad) = batch.tensors(&self.device());
        let types = (bert.embeddings.type_vocab_size() > 0).then_some(types);
        // Inference reads only the first token: the padding need not be computed.
        let out = if collect {
            bert.try_forward(ids, types, Some(pad), true)?
        } else {
            let last_hidden = bert.forward_real_tokens(ids, types, Some(pad))?;
            crate::BertOutput { last_hidden, hidden_states: vec![], attentions: vec![], values: vec![] }
        };
        let [b, _, h] = out.last_hidden.dims();
        let cls = out.last_hidden.clone().slice([0..b, 0..1, 0..h]).reshape([b, h]);
        let pooled = tanh(self.pooler.try_forward(cls).map_err(ModelError::from)?);
        let logits = self.classifier.try_forward(self.dropout.forward(pooled)).map_err(ModelError::from)?;
        Ok((out, logits))
    }

    /// The logits `[batch, outputs]` of a tokenized batch.
    ///
    /// # Errors
    /// As [`BertClassifier::forward_batch`].
    pub fn logits(&self, batch: &Encoded) -> Result<Tensor<2>> {
        Ok(self.forward_batch(batch, false)?.1)
    }

    /// The classifier with encoder block edits applied by `edit` (for example
    /// `|b| b.retain_layers(&[1, 3, 5])`); the pooler and head are kept.
    ///
    /// # Errors
    /// The edit's error.
    pub fn map_encoder(&self, edit: impl FnOnce(&Bert) -> Result<Bert>) -> Result<BertClassifier> {
        Ok(BertClassifier {
            bert: edit(&self.bert)?,
            pooler: self.pooler.clone(),
            classifier: self.classifier.clone(),
            dropout: self.dropout.clone(),
        })
    }

    /// The architecture, for [`BertClassifier::save`], with `labels` (as the model was made
    /// with; they are not stored in the modules).
    ///
    /// # Errors
    /// As [`Bert::architecture`]; [`ModelError::Config`] when `labels` do not match the head.
    pub fn architecture(&self, labels: &[String]) -> Result<ClassifierArchitecture> {
        check_labels(labels)?;
        if outputs(labels) != self.n_outputs() {
            return Err(config_err(
                "labels",
                format!("{} names", labels.len()),
                &format!("as many as the head's {} outputs (none for one output)", self.n_outputs()),
            ));
        }
        Ok(ClassifierArchitecture {
            bert: self.bert.architecture()?,
            labels: labels.to_vec(),
            dropout: self.dropout.prob,
        })
    }

    /// Saves the model (float or int8) with its `labels` in Ember's format (see [`Bert::save`]);
    /// returns the weight file's bytes.
    ///
    /// # Errors
    /// As [`BertClassifier::architecture`] and [`Bert::save`].
    pub fn save(&self, dir: impl AsRef<Path>, labels: &[String]) -> Result<u64> {
        let arch = self.architecture(labels)?;
        crate::save::save_model(self, dir.as_ref(), crate::save::ModelKind::BertClassifier, &arch)
    }

    /// Loads a model saved by [`BertClassifier::save`]; returns it with its labels.
    ///
    /// # Errors
    /// As [`Bert::load`].
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(BertClassifier, Vec<String>)> {
        let (arch, weights): (ClassifierArchitecture, _) =
            crate::save::read_model(dir.as_ref(), crate::save::ModelKind::BertClassifier)?;
        check_labels(&arch.labels)?;
        check_dropout(arch.dropout)?;
        let bert = arch.bert.init(device)?;
        let skeleton = BertClassifier::new(bert, arch.labels.clone(), arch.dropout)?;
        Ok((crate::save::load_weights(skeleton, &weights)?, arch.labels))
    }

    /// Writes the float model in Hugging Face's `BertForSequenceClassification` layout with its
    /// `labels` (see the [module docs](self)) and the tokenizer files of `tokenizer_dir`.
    ///
    /// # Errors
    /// As [`Bert::save_pretrained`] and [`BertClassifier::architecture`].
    pub fn save_pretrained(
        &self,
        dir: impl AsRef<Path>,
        labels: &[String],
        tokenizer_dir: Option<&Path>,
    ) -> Result<crate::HfExport> {
        self.architecture(labels)?;
        let head =
            crate::load::float_tensors(&HeadOnly { pooler: self.pooler.clone(), classifier: self.classifier.clone() })?;
        let mut extra: HostTensors = BTreeMap::new();
        for (path, t) in head {
            let key = match path.as_str() {
                "pooler.weight" => "bert.pooler.dense.weight".to_string(),
                "pooler.bias" => "bert.pooler.dense.bias".to_string(),
                "classifier.weight" | "classifier.bias" => path.clone(),
                _ if t.0.iter().product::<usize>() == 0 => continue,
                _ => return Err(config_err(&path, format!("{:?}", t.0), "a parameter of the pooler or head")),
            };
            extra.insert(key, t);
        }
        let id2label: BTreeMap<String, String> = if labels.is_empty() {
            BTreeMap::from([("0".to_string(), "LABEL_0".to_string())])
        } else {
            labels.iter().enumerate().map(|(i, l)| (i.to_string(), l.clone())).collect()
        };
        let label2id: BTreeMap<String, usize> =
            id2label.iter().map(|(i, l)| (l.clone(), i.parse().unwrap_or(0))).collect();
        let problem = if labels.is_empty() { "regression" } else { "single_label_classification" };
        let config = serde_json::json!({
            "architectures": ["BertForSequenceClassification"],
            "id2label": id2label,
            "label2id": label2id,
            "problem_type": problem,
            "classifier_dropout": null,
        });
        self.bert.save_hf(dir.as_ref(), tokenizer_dir, Some(("bert.", extra, config)))
    }
}

/// The pooler and head alone, to read their parameters as Hugging Face holds them.
#[derive(Module, Debug)]
struct HeadOnly {
    pooler: Linear,
    classifier: Linear,
}

/// `config.json`'s `id2label` in index order (empty when absent or not a dense `0..n` map).
fn id2label(config: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(config) else { return Vec::new() };
    let Some(map) = v.get("id2label").and_then(|m| m.as_object()) else { return Vec::new() };
    let mut out = vec![String::new(); map.len()];
    for (k, l) in map {
        match (k.parse::<usize>(), l.as_str()) {
            (Ok(i), Some(l)) if i < out.len() => out[i] = l.to_string(),
            _ => return Vec::new(),
        }
    }
    if out.iter().any(String::is_empty) { Vec::new() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert_exactly() {
        for (h, f) in
            [(0x3c00u16, 1.0f32), (0xc000, -2.0), (0x3555, 0.333_251_95), (0x0001, 5.960_464_5e-8), (0x7bff, 65504.0)]
        {
            assert_eq!(f16_to_f32(h), f, "{h:#x}");
        }
    }

    #[test]
    fn labels_are_checked() {
        let bert = crate::BertConfig::new(20, 8, 1, 2, 16, 10).init(&Device::flex()).unwrap();
        assert!(BertClassifier::new(bert.clone(), vec!["only".into()], 0.1).is_err());
        assert!(BertClassifier::new(bert.clone(), vec!["a".into(), "a".into()], 0.1).is_err());
        assert!(BertClassifier::new(bert.clone(), vec!["a".into(), "b".into()], 1.0).is_err());
        let m = BertClassifier::new(bert, Vec::new(), 0.0).unwrap();
        assert_eq!(m.n_outputs(), 1);
        assert!(m.architecture(&["a".into(), "b".into()]).is_err());
    }

    fn logits_of(m: &BertClassifier) -> Vec<f32> {
        let batch = Encoded::from_ids(&[vec![2, 7, 9, 3, 4, 3], vec![2, 5, 3]], 0).unwrap();
        m.logits(&batch).unwrap().into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn hugging_face_and_ember_files_round_trip() {
        let device = Device::flex();
        device.seed(3);
        let bert = crate::BertConfig::new(20, 8, 2, 2, 16, 10).init(&device).unwrap();
        let labels: Vec<String> = vec!["neg".into(), "neutral".into(), "pos".into()];
        let m = BertClassifier::new(bert, labels.clone(), 0.1).unwrap();
        let expected = logits_of(&m);
        let dir = std::env::temp_dir().join(format!("ember-classifier-rt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let export = m.save_pretrained(&dir, &labels, None).unwrap();
        // Hugging Face's BertForSequenceClassification keys and config.
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("classifier.weight").unwrap().shape(), [3, 8]);
        assert_eq!(st.tensor("bert.pooler.dense.weight").unwrap().shape(), [8, 8]);
        assert!(st.tensor("bert.encoder.layer.1.output.dense.weight").is_ok());
        assert!(st.tensor("encoder.layer.1.output.dense.weight").is_err());
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["architectures"][0], "BertForSequenceClassification");
        assert_eq!(config["id2label"]["2"], "pos");
        assert_eq!(config["label2id"]["neutral"], 1);
        assert!(!dir.join("modules.json").exists());
        assert!(export.weight_bytes > 0);
        // Reloaded: the same logits, the head found, the labels read.
        let loaded = BertClassifier::from_pretrained(&dir, labels.clone(), 0.1, &device).unwrap();
        assert!(loaded.head_loaded && loaded.pooler_loaded);
        assert_eq!(loaded.checkpoint_labels, labels);
        for (a, b) in logits_of(&loaded.model).iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Another label count: a new head, the same pooler.
        let other = BertClassifier::from_pretrained(&dir, vec!["a".into(), "b".into()], 0.1, &device).unwrap();
        assert!(!other.head_loaded && other.pooler_loaded);
        // Ember's format keeps labels.
        let edir = dir.join("ember");
        m.save(&edir, &labels).unwrap();
        let (back, back_labels) = BertClassifier::load(&edir, &device).unwrap();
        assert_eq!(back_labels, labels);
        assert_eq!(logits_of(&back), expected);
        assert!(Bert::load(&edir, &device).is_err(), "a classifier directory is not a Bert one");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn id2label_reads_dense_maps_only() {
        assert_eq!(id2label(r#"{"id2label": {"1": "pos", "0": "neg"}}"#), vec!["neg", "pos"]);
        assert!(id2label(r#"{"id2label": {"0": "neg", "2": "pos"}}"#).is_empty());
        assert!(id2label("{}").is_empty());
    }
}
