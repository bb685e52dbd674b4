//! Loading Hugging Face BERT checkpoints (`model.safetensors`) into [`Bert`].
//!
//! The file is first checked as a whole: a valid safetensors header whose offsets fit the file,
//! every Hugging Face key mapped to an Ember parameter ([`bert_param_path`]; `bert.` prefixes
//! of task models stripped), nothing missing, nothing unexpected, shapes and dtypes right.
//! Each problem is a typed [`ModelError`] naming the tensor. Then burn-store moves the data:
//! a `SafetensorsStore` with one exact key remapping per tensor, the `PyTorchToBurnAdapter`
//! (Linear weights `[out, in]` → `[in, out]`, LayerNorm `weight`/`bias` → `gamma`/`beta`) and a
//! cast of f16 / bf16 / f64 checkpoints to f32.
//!
//! Known tensors outside the encoder are skipped and listed in [`LoadReport::ignored`]: the
//! `position_ids` buffer, the pooler, and pre-training or task heads (`cls.*`, `classifier.*`,
//! `qa_outputs.*`).

use crate::bert::{Bert, BertConfig};
use crate::error::{ModelError, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::store::{
    FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::{Bool, DType, Device, Int, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// What a checkpoint load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tensors loaded into the model.
    pub applied: usize,
    /// Checkpoint tensors deliberately skipped (buffers, pooler, heads).
    pub ignored: Vec<String>,
}

/// Where a Hugging Face BERT key goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMapping {
    /// The Ember parameter path (LayerNorm names keep the checkpoint's `weight`/`bias`;
    /// the adapter renames them).
    Param(String),
    /// A known tensor outside the encoder, skipped.
    Ignored,
    /// Not a BERT encoder tensor.
    Unknown,
}

/// Maps a Hugging Face `BertModel` key (optionally under `bert.`) to the Ember path.
///
/// ```
/// use ember_models::{KeyMapping, bert_param_path};
/// assert_eq!(
///     bert_param_path("bert.encoder.layer.3.attention.self.query.weight"),
///     KeyMapping::Param("layers.3.query.weight".into())
/// );
/// assert_eq!(bert_param_path("pooler.dense.weight"), KeyMapping::Ignored);
/// ```
pub fn bert_param_path(key: &str) -> KeyMapping {
    let key = key.strip_prefix("bert.").unwrap_or(key);
    if key == "embeddings.position_ids"
        || ["pooler.", "cls.", "classifier.", "qa_outputs."].iter().any(|p| key.starts_with(p))
    {
        return KeyMapping::Ignored;
    }
    let norm_param = |p: &str| matches!(p, "weight" | "bias" | "gamma" | "beta");
    let lin_param = |p: &str| matches!(p, "weight" | "bias");
    let parts: Vec<&str> = key.split('.').collect();
    let mapped = match parts.as_slice() {
        ["embeddings", "word_embeddings", "weight"] => Some("embeddings.word.weight".to_string()),
        ["embeddings", "position_embeddings", "weight"] => Some("embeddings.position.weight".to_string()),
        ["embeddings", "token_type_embeddings", "weight"] => Some("embeddings.token_type.weight".to_string()),
        ["embeddings", "LayerNorm", p] if norm_param(p) => Some(format!("embeddings.norm.{p}")),
        ["encoder", "layer", n, rest @ ..] if n.parse::<usize>().is_ok() => {
            let field = match rest {
                ["attention", "self", m @ ("query" | "key" | "value"), p] if lin_param(p) => Some((*m, *p)),
                ["attention", "output", "dense", p] if lin_param(p) => Some(("attn_out", *p)),
                ["attention", "output", "LayerNorm", p] if norm_param(p) => Some(("attn_norm", *p)),
                ["intermediate", "dense", p] if lin_param(p) => Some(("ffn_up", *p)),
                ["output", "dense", p] if lin_param(p) => Some(("ffn_down", *p)),
                ["output", "LayerNorm", p] if norm_param(p) => Some(("ffn_norm", *p)),
                _ => None,
            };
            field.map(|(f, p)| format!("layers.{n}.{f}.{p}"))
        }
        _ => None,
    };
    mapped.map_or(KeyMapping::Unknown, KeyMapping::Param)
}

/// A parameter the model expects: its path in checkpoint naming and the checkpoint's shape.
struct Expected {
    shape: Vec<usize>,
}

#[derive(Default)]
struct ExpectVisitor {
    path: Vec<String>,
    container: Vec<String>,
    out: BTreeMap<String, Expected>,
    masks: usize,
}

impl ExpectVisitor {
    fn add(&mut self, shape: Vec<usize>) {
        if self.container.iter().any(|c| c.ends_with("QuantState")) {
            return; // int8 state: not in float checkpoints
        }
        let n = self.path.len();
        let owner = self.container.last().map_or("", String::as_str);
        let mut path = self.path.clone();
        let mut shape = shape;
        if is_type(owner, "LayerNorm") && n > 0 {
            // Burn's gamma/beta are the checkpoint's weight/bias (the adapter renames them).
            path[n - 1] = match path[n - 1].as_str() {
                "gamma" => "weight".into(),
                "beta" => "bias".into(),
                other => other.into(),
            };
        }
        if is_type(owner, "Linear") && path.last().is_some_and(|p| p == "weight") && shape.len() == 2 {
            shape.reverse(); // PyTorch stores [out, in]
        }
        self.out.insert(path.join("."), Expected { shape });
    }
}

impl ModuleVisitor for ExpectVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.container.push(container_type.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.container.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.add(param.val().dims().to_vec());
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.add(param.val().dims().to_vec());
    }
    fn visit_bool<const D: usize>(&mut self, _param: &Param<Tensor<D, Bool>>) {
        self.masks += 1; // pruning masks (ember-prune reparameterizations)
    }
}

/// Whether a visitor's container type (`"Struct:LayerNorm"` or `"LayerNorm"`) names `name`.
fn is_type(container: &str, name: &str) -> bool {
    container.rsplit(':').next() == Some(name)
}

fn normalize_norm_name(path: &str) -> String {
    if let Some(p) = path.strip_suffix(".gamma") {
        format!("{p}.weight")
    } else if let Some(p) = path.strip_suffix(".beta") {
        format!("{p}.bias")
    } else {
        path.to_string()
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Loads a Hugging Face BERT checkpoint file into `model` (built from the same config), see
/// the [module docs](self).
///
/// # Errors
/// [`ModelError::Io`]; [`ModelError::Checkpoint`] for a file that is not valid safetensors
/// (truncated, header sizes beyond the file, …); [`ModelError::MissingTensor`],
/// [`ModelError::UnexpectedTensor`] and [`ModelError::TensorMismatch`] naming the tensor;
/// [`ModelError::Config`] for a target model that is already int8 or pruned.
pub fn load_bert_safetensors(model: Bert, path: impl AsRef<Path>) -> Result<(Bert, LoadReport)> {
    let path = path.as_ref();
    let bytes =
        std::fs::read(path).map_err(|e| ModelError::Io { path: path.display().to_string(), message: e.to_string() })?;
    load_bert_bytes(model, bytes, &path.display().to_string())
}

/// [`load_bert_safetensors`] from the file's bytes; `name` is used in error messages.
///
/// # Errors
/// As [`load_bert_safetensors`].
pub fn load_bert_bytes(mut model: Bert, bytes: Vec<u8>, name: &str) -> Result<(Bert, LoadReport)> {
    let file = name.to_string();
    let quantized = model.embeddings.word.is_quantized()
        || model.layers.iter().any(|l| {
            [&l.query, &l.key, &l.value, &l.attn_out, &l.ffn_up, &l.ffn_down].iter().any(|x| x.is_quantized())
        });
    if quantized {
        return Err(crate::error::config_err(
            "target model",
            "int8",
            "a float model from BertConfig::init (load the float checkpoint, then quantize; reload int8 files with ember_quant::load_quantized)",
        ));
    }
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| ModelError::Checkpoint { file: file.clone(), message: describe_safetensors_error(&e, &bytes) })?;
    let mut expected = ExpectVisitor::default();
    model.visit(&mut expected);
    if expected.masks > 0 {
        return Err(crate::error::config_err(
            "target model",
            "pruned (carries masks)",
            "a float model from BertConfig::init (load first, then prune)",
        ));
    }
    let expected = expected.out;

    let mut report = LoadReport::default();
    let mut found: BTreeMap<String, String> = BTreeMap::new(); // ember path → hf key
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    for key in &names {
        match bert_param_path(key) {
            KeyMapping::Ignored => report.ignored.push(key.clone()),
            KeyMapping::Unknown => return Err(ModelError::UnexpectedTensor { file, tensor: key.clone() }),
            KeyMapping::Param(p) => {
                let Some(exp) = expected.get(&normalize_norm_name(&p)) else {
                    return Err(ModelError::UnexpectedTensor { file, tensor: key.clone() });
                };
                let view = st
                    .tensor(key)
                    .map_err(|e| ModelError::Checkpoint { file: file.clone(), message: e.to_string() })?;
                if view.shape() != exp.shape.as_slice() {
                    return Err(ModelError::TensorMismatch {
                        file,
                        tensor: key.clone(),
                        message: format!(
                            "has shape {:?}, the model expects {:?} (config and checkpoint disagree)",
                            view.shape(),
                            exp.shape
                        ),
                    });
                }
                use safetensors::Dtype as S;
                if !matches!(view.dtype(), S::F32 | S::F16 | S::BF16 | S::F64) {
                    return Err(ModelError::TensorMismatch {
                        file,
                        tensor: key.clone(),
                        message: format!(
                            "has dtype {:?}, expected a float dtype (f32, f16, bf16 or f64)",
                            view.dtype()
                        ),
                    });
                }
                if let Some(i) = first_non_finite(&view) {
                    return Err(ModelError::TensorMismatch {
                        file,
                        tensor: key.clone(),
                        message: format!(
                            "holds NaN or infinity at flat index {i} (as f32): the checkpoint is corrupt (trained weights are finite)"
                        ),
                    });
                }
                if let Some(prev) = found.insert(normalize_norm_name(&p), key.clone()) {
                    return Err(ModelError::UnexpectedTensor {
                        file,
                        tensor: format!("{key} (a second copy of `{prev}`)"),
                    });
                }
            }
        }
    }
    if let Some((param, _)) = expected.iter().find(|(p, _)| !found.contains_key(*p)) {
        let tensor = hf_name_hint(param);
        return Err(ModelError::MissingTensor { file, tensor, param: param.clone() });
    }
    drop(st);

    let mut remapper = KeyRemapper::new();
    for (ember, hf) in &found {
        let target = names_in_file(ember, hf);
        remapper = remapper
            .add_pattern(format!("^{}$", regex_escape(hf)), target)
            .map_err(|e| ModelError::Checkpoint { file: file.clone(), message: format!("key {hf}: {e}") })?;
    }
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .remap(remapper)
        .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| ModelError::Checkpoint { file: file.clone(), message: e.to_string() })?;
    // burn-store validates by default: shape or dtype errors came back as `Err` above.
    report.applied = result.applied.len();
    if report.applied != found.len() {
        let applied: std::collections::BTreeSet<String> =
            result.applied.iter().map(|p| normalize_norm_name(p)).collect();
        let missing = found.keys().find(|p| !applied.contains(*p)).cloned().unwrap_or_default();
        return Err(ModelError::MissingTensor {
            file,
            tensor: found.get(&missing).cloned().unwrap_or_default(),
            param: missing,
        });
    }
    Ok((model, report))
}

/// The flat index of the first NaN or infinity in a float tensor (by its bit pattern: all
/// exponent bits set), or of an f64 too large for the f32 it is loaded as, if any.
fn first_non_finite(view: &safetensors::tensor::TensorView<'_>) -> Option<usize> {
    use safetensors::Dtype as S;
    let data = view.data();
    match view.dtype() {
        S::F32 => {
            data.chunks_exact(4).position(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7f80_0000 == 0x7f80_0000)
        }
        S::F16 => data.chunks_exact(2).position(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 == 0x7c00),
        S::BF16 => data.chunks_exact(2).position(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7f80 == 0x7f80),
        // Loaded as f32: a finite f64 beyond f32's range would become infinite.
        S::F64 => data.chunks_exact(8).position(|c| {
            let v = f64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            !(v.is_finite() && v.abs() <= f32::MAX as f64)
        }),
        _ => None,
    }
}

/// A safetensors parse error in words: what is wrong with the file and what a valid one has.
/// (The crate's own messages, such as "incomplete metadata, file not fully covered", do not say
/// that the file is truncated.)
fn describe_safetensors_error(e: &safetensors::SafeTensorError, bytes: &[u8]) -> String {
    use safetensors::SafeTensorError as E;
    const N_LEN: usize = 8;
    let len = bytes.len();
    let claimed = bytes.get(..N_LEN).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    match (e, claimed) {
        (E::HeaderTooSmall, _) => format!(
            "the file has {len} bytes, fewer than the {N_LEN}-byte header length a safetensors file starts with \
             (truncated, or not a safetensors file)"
        ),
        (E::HeaderTooLarge | E::InvalidHeaderLength, Some(n)) if n > (len - N_LEN) as u64 => format!(
            "the header length is {n} bytes but only {} bytes follow it (truncated, or not a safetensors file)",
            len - N_LEN
        ),
        (E::HeaderTooLarge, Some(n)) => {
            format!("the header length is {n} bytes, over safetensors' 100 MB limit (not a safetensors file?)")
        }
        (E::InvalidHeader(u), _) => format!("the header is not UTF-8 text ({u}); expected a JSON header"),
        (E::InvalidHeaderDeserialization(j), _) => format!(
            "the header is not valid JSON ({j}); expected a JSON object of tensor names with dtype, shape and \
             data_offsets"
        ),
        (E::TensorInvalidInfo, _) => "a tensor's dtype and shape do not match the size of its data_offsets in the \
             header (corrupt header; expected end − start = elements × dtype size)"
            .to_string(),
        (E::MetadataIncompleteBuffer, Some(n)) => {
            let after = len.saturating_sub(N_LEN).saturating_sub(n as usize);
            match data_end(bytes, n as usize) {
                Some(end) if end > after => format!(
                    "the header's tensors need {end} bytes of data but only {after} follow the header (truncated file)"
                ),
                Some(end) => format!(
                    "the header's tensors need {end} bytes of data but {after} follow the header (trailing bytes, \
                     or a corrupt header)"
                ),
                None => format!("{e}: the data after the header does not match the header (truncated file?)"),
            }
        }
        _ => e.to_string(),
    }
}

/// The largest `data_offsets` end in a safetensors header of `n` bytes.
fn data_end(bytes: &[u8], n: usize) -> Option<usize> {
    let header: serde_json::Value = serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    header
        .as_object()?
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64().map(|e| e as usize))
        .try_fold(0usize, |m, e| Some(m.max(e?)))
}

/// The Ember path with the checkpoint's own parameter name (`weight`/`bias` or `gamma`/`beta`).
fn names_in_file(ember: &str, hf: &str) -> String {
    let last = hf.rsplit('.').next().unwrap_or("");
    match ember.rsplit_once('.') {
        Some((prefix, _)) => format!("{prefix}.{last}"),
        None => ember.to_string(),
    }
}

/// The Hugging Face key for an Ember path, for messages.
fn hf_name_hint(ember: &str) -> String {
    let parts: Vec<&str> = ember.split('.').collect();
    match parts.as_slice() {
        ["embeddings", "word", p] => format!("embeddings.word_embeddings.{p}"),
        ["embeddings", "position", p] => format!("embeddings.position_embeddings.{p}"),
        ["embeddings", "token_type", p] => format!("embeddings.token_type_embeddings.{p}"),
        ["embeddings", "norm", p] => format!("embeddings.LayerNorm.{p}"),
        ["layers", n, f, p] => {
            let hf = match *f {
                "query" | "key" | "value" => format!("attention.self.{f}"),
                "attn_out" => "attention.output.dense".into(),
                "attn_norm" => "attention.output.LayerNorm".into(),
                "ffn_up" => "intermediate.dense".into(),
                "ffn_down" => "output.dense".into(),
                "ffn_norm" => "output.LayerNorm".into(),
                other => other.into(),
            };
            format!("encoder.layer.{n}.{hf}.{p}")
        }
        _ => ember.to_string(),
    }
}

impl Bert {
    /// Loads a Hugging Face model directory: `config.json` and `model.safetensors`.
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use ember_models::{Bert, TextTokenizer};
    ///
    /// let device = Device::flex();
    /// let (model, config) = Bert::from_pretrained("models/all-minilm-l6-v2", &device).unwrap();
    /// let tok = TextTokenizer::from_file("models/all-minilm-l6-v2/tokenizer.json", config.max_position_embeddings).unwrap();
    /// let batch = tok.encode_batch(&["A sentence.", "Another, longer sentence."]).unwrap();
    /// let emb = model.embed(&batch).unwrap(); // [2, 384], L2-normalised
    /// ```
    ///
    /// # Errors
    /// As [`BertConfig::from_file`] and [`load_bert_safetensors`].
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<(Bert, BertConfig)> {
        let dir = dir.as_ref();
        let config = BertConfig::from_file(dir.join("config.json"))?;
        let path = dir.join("model.safetensors");
        let name = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| ModelError::Io { path: name.clone(), message: e.to_string() })?;
        check_config_fits_checkpoint(&config, &bytes, &name)?;
        let (model, _) = load_bert_bytes(config.init(device)?, bytes, &name)?;
        Ok((model, config))
    }
}

/// Refuses a config whose model is more than twice as large as everything the checkpoint holds
/// for it, before `init` allocates that model (a lying or mismatched `config.json` must not cost
/// gigabytes). Smaller disagreements are left to the loader, which names the tensor.
fn check_config_fits_checkpoint(config: &BertConfig, bytes: &[u8], name: &str) -> Result<()> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| ModelError::Checkpoint { file: name.into(), message: describe_safetensors_error(&e, bytes) })?;
    let held: u128 = meta
        .tensors()
        .iter()
        .filter(|(key, _)| matches!(bert_param_path(key), KeyMapping::Param(_)))
        .map(|(_, info)| info.shape.iter().map(|&d| d as u128).product::<u128>())
        .sum();
    let wanted = config.num_params() as u128;
    if wanted > 2 * held {
        return Err(crate::error::config_err(
            "sizes",
            format!("{wanted} parameters"),
            &format!("a model the checkpoint {name} can fill (it holds {held} values for BERT parameters)"),
        ));
    }
    Ok(())
}
