//! Loading Hugging Face checkpoints (`model.safetensors`) of the BERT family into [`Bert`]:
//! `BertModel` (BERT, MiniLM) and `AlbertModel` (ALBERT), each through one key-mapping table
//! ([`HfLayout::BERT`], [`HfLayout::ALBERT`]).
//!
//! The file is first checked as a whole: a valid safetensors header whose offsets fit the file,
//! every Hugging Face key mapped to an Ember parameter (the `bert.` / `albert.` prefixes of task
//! models stripped), nothing missing, nothing unexpected, shapes and dtypes right, values
//! finite. Each problem is a typed [`ModelError`] naming the tensor. Then burn-store moves the
//! data: a `SafetensorsStore` with one exact key remapping per tensor, the
//! `PyTorchToBurnAdapter` (Linear weights `[out, in]` → `[in, out]`, LayerNorm `weight`/`bias` →
//! `gamma`/`beta`) and a cast of f16 / bf16 / f64 checkpoints to f32.
//!
//! Known tensors outside the encoder are skipped and listed in [`LoadReport::ignored`]: the
//! `position_ids` buffer, the pooler, and pre-training or task heads.

use crate::albert::AlbertConfig;
use crate::bert::{Bert, BertConfig};
use crate::error::{ModelError, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::store::{
    FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::{Bool, DType, Device, Int, Tensor};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What a checkpoint load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tensors loaded into the model.
    pub applied: usize,
    /// Checkpoint tensors deliberately skipped (buffers, pooler, heads).
    pub ignored: Vec<String>,
}

/// Where a Hugging Face key goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMapping {
    /// The Ember parameter path (LayerNorm names keep the checkpoint's `weight`/`bias`;
    /// the adapter renames them).
    Param(String),
    /// A known tensor outside the encoder, skipped.
    Ignored,
    /// Not a tensor of this architecture.
    Unknown,
}

/// How a layer's keys are numbered in a Hugging Face checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKeys {
    /// `<prefix>{i}.` — block `i` (BERT's `encoder.layer.{i}.`).
    Indexed(&'static str),
    /// `<prefix>{g}.<inner>{j}.` — block `g · inner_group_num + j` (ALBERT's
    /// `encoder.albert_layer_groups.{g}.albert_layers.{j}.`).
    Grouped(&'static str, &'static str),
}

/// The key map of one Hugging Face architecture: a table from checkpoint module names to
/// Ember module paths (parameter names `weight` / `bias`, or `gamma` / `beta` in old
/// checkpoints, are carried over).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HfLayout {
    /// The Hugging Face model class.
    pub name: &'static str,
    /// Prefixes of task models, stripped first (`bert.`).
    pub prefixes: &'static [&'static str],
    /// Key prefixes of known tensors that are not part of the encoder (skipped).
    pub ignored: &'static [&'static str],
    /// Modules outside the layers: (checkpoint name, Ember path).
    pub modules: &'static [(&'static str, &'static str)],
    /// How layers are numbered.
    pub layers: LayerKeys,
    /// Modules of one layer: (checkpoint name, Ember path with `{b}` for the block).
    pub block: &'static [(&'static str, &'static str)],
}

const EMBEDDINGS: [(&str, &str); 4] = [
    ("embeddings.word_embeddings", "embeddings.word"),
    ("embeddings.position_embeddings", "embeddings.position"),
    ("embeddings.token_type_embeddings", "embeddings.token_type"),
    ("embeddings.LayerNorm", "embeddings.norm"),
];

impl HfLayout {
    /// Hugging Face `BertModel` (BERT, MiniLM, and task models under `bert.`).
    pub const BERT: HfLayout = HfLayout {
        name: "BertModel",
        prefixes: &["bert."],
        ignored: &["embeddings.position_ids", "pooler.", "cls.", "classifier.", "qa_outputs."],
        modules: &EMBEDDINGS,
        layers: LayerKeys::Indexed("encoder.layer."),
        block: &[
            ("attention.self.query", "encoder.attention.{b}.query"),
            ("attention.self.key", "encoder.attention.{b}.key"),
            ("attention.self.value", "encoder.attention.{b}.value"),
            ("attention.output.dense", "encoder.attention.{b}.output"),
            ("attention.output.LayerNorm", "encoder.attention_norm.{b}"),
            ("intermediate.dense", "encoder.feed_forward.{b}.inner"),
            ("output.dense", "encoder.feed_forward.{b}.outer"),
            ("output.LayerNorm", "encoder.feed_forward_norm.{b}"),
        ],
    };

    /// Hugging Face `AlbertModel` (and task models under `albert.`).
    pub const ALBERT: HfLayout = HfLayout {
        name: "AlbertModel",
        prefixes: &["albert."],
        ignored: &[
            "embeddings.position_ids",
            "pooler.",
            "predictions.",
            "sop_classifier.",
            "classifier.",
            "qa_outputs.",
        ],
        modules: &[
            EMBEDDINGS[0],
            EMBEDDINGS[1],
            EMBEDDINGS[2],
            EMBEDDINGS[3],
            ("encoder.embedding_hidden_mapping_in", "embeddings.projection"),
        ],
        layers: LayerKeys::Grouped("encoder.albert_layer_groups.", "albert_layers."),
        block: &[
            ("attention.query", "encoder.attention.{b}.query"),
            ("attention.key", "encoder.attention.{b}.key"),
            ("attention.value", "encoder.attention.{b}.value"),
            ("attention.dense", "encoder.attention.{b}.output"),
            ("attention.LayerNorm", "encoder.attention_norm.{b}"),
            ("ffn", "encoder.feed_forward.{b}.inner"),
            ("ffn_output", "encoder.feed_forward.{b}.outer"),
            ("full_layer_layer_norm", "encoder.feed_forward_norm.{b}"),
        ],
    };

    /// Maps a checkpoint key; `inner_group_num` numbers ALBERT's blocks (1 for BERT).
    ///
    /// ```
    /// use ember_models::{HfLayout, KeyMapping};
    /// assert_eq!(
    ///     HfLayout::BERT.map("bert.encoder.layer.3.attention.self.query.weight", 1),
    ///     KeyMapping::Param("encoder.attention.3.query.weight".into())
    /// );
    /// assert_eq!(
    ///     HfLayout::ALBERT.map("encoder.albert_layer_groups.0.albert_layers.0.ffn_output.bias", 1),
    ///     KeyMapping::Param("encoder.feed_forward.0.outer.bias".into())
    /// );
    /// assert_eq!(HfLayout::BERT.map("pooler.dense.weight", 1), KeyMapping::Ignored);
    /// ```
    pub fn map(&self, key: &str, inner_group_num: usize) -> KeyMapping {
        let key = self.prefixes.iter().find_map(|p| key.strip_prefix(p)).unwrap_or(key);
        if self.ignored.iter().any(|p| key == *p || (p.ends_with('.') && key.starts_with(p))) {
            return KeyMapping::Ignored;
        }
        let Some((module, param)) = key.rsplit_once('.') else { return KeyMapping::Unknown };
        if !matches!(param, "weight" | "bias" | "gamma" | "beta") {
            return KeyMapping::Unknown;
        }
        if let Some((_, ember)) = self.modules.iter().find(|(hf, _)| *hf == module) {
            return KeyMapping::Param(format!("{ember}.{param}"));
        }
        let Some((block, rest)) = self.split_layer(module, inner_group_num.max(1)) else {
            return KeyMapping::Unknown;
        };
        match self.block.iter().find(|(hf, _)| *hf == rest) {
            Some((_, ember)) => KeyMapping::Param(format!("{}.{param}", ember.replace("{b}", &block.to_string()))),
            None => KeyMapping::Unknown,
        }
    }

    /// `(block, module inside the layer)` of a layer module name.
    fn split_layer<'k>(&self, module: &'k str, inner: usize) -> Option<(usize, &'k str)> {
        let number = |s: &'k str| -> Option<(usize, &'k str)> {
            let (n, rest) = s.split_once('.')?;
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
            Some((n.parse().ok()?, rest))
        };
        match self.layers {
            LayerKeys::Indexed(prefix) => number(module.strip_prefix(prefix)?),
            LayerKeys::Grouped(prefix, inner_prefix) => {
                let (g, rest) = number(module.strip_prefix(prefix)?)?;
                let (j, rest) = number(rest.strip_prefix(inner_prefix)?)?;
                (j < inner).then_some(())?;
                Some((g.checked_mul(inner)?.checked_add(j)?, rest))
            }
        }
    }

    /// The checkpoint key of an Ember parameter path (for messages, and the reverse map).
    pub fn hf_key(&self, ember: &str, inner_group_num: usize) -> Option<String> {
        let (module, param) = ember.rsplit_once('.')?;
        if let Some((hf, _)) = self.modules.iter().find(|(_, e)| *e == module) {
            return Some(format!("{hf}.{param}"));
        }
        for (hf, template) in self.block {
            let (head, tail) = template.split_once("{b}")?;
            let Some(b) = module.strip_prefix(head).and_then(|r| r.strip_suffix(tail)) else { continue };
            let Ok(b) = b.parse::<usize>() else { continue };
            let layer = match self.layers {
                LayerKeys::Indexed(prefix) => format!("{prefix}{b}"),
                LayerKeys::Grouped(prefix, inner) => {
                    let k = inner_group_num.max(1);
                    format!("{prefix}{}.{inner}{}", b / k, b % k)
                }
            };
            return Some(format!("{layer}.{hf}.{param}"));
        }
        None
    }
}

/// Maps a Hugging Face `BertModel` key (optionally under `bert.`) to the Ember path:
/// [`HfLayout::BERT`]'s table.
///
/// ```
/// use ember_models::{KeyMapping, bert_param_path};
/// assert_eq!(
///     bert_param_path("bert.encoder.layer.3.attention.self.query.weight"),
///     KeyMapping::Param("encoder.attention.3.query.weight".into())
/// );
/// assert_eq!(bert_param_path("pooler.dense.weight"), KeyMapping::Ignored);
/// ```
pub fn bert_param_path(key: &str) -> KeyMapping {
    HfLayout::BERT.map(key, 1)
}

/// The parameters a model expects, in checkpoint naming (`weight`/`bias` for LayerNorms) and
/// checkpoint shape (`[out, in]` for Linear weights).
#[derive(Default)]
struct ExpectVisitor {
    path: Vec<String>,
    container: Vec<String>,
    shapes: BTreeMap<String, Vec<usize>>,
    linears: BTreeSet<String>,
    quantized: bool,
    masks: usize,
    /// With `Some`: each float parameter's values too (row-major, as the model holds them).
    values: Option<BTreeMap<String, Vec<f32>>>,
}

impl ExpectVisitor {
    fn add(&mut self, shape: Vec<usize>, values: Option<Vec<f32>>) {
        if self.path.iter().any(|p| p == "quant") {
            if shape.iter().product::<usize>() > 0 && self.path.last().is_some_and(|p| p == "values") {
                self.quantized = true;
            }
            return; // int8 state: not in float checkpoints
        }
        let n = self.path.len();
        let owner = self.container.last().map_or("", String::as_str);
        let mut path = self.path.clone();
        if owner.rsplit(':').next() == Some("LayerNorm") && n > 0 {
            // Burn's gamma/beta are the checkpoint's weight/bias (the adapter renames them).
            path[n - 1] = match path[n - 1].as_str() {
                "gamma" => "weight".into(),
                "beta" => "bias".into(),
                other => other.into(),
            };
        }
        let key = path.join(".");
        if let (Some(all), Some(v)) = (self.values.as_mut(), values) {
            all.insert(key.clone(), v);
        }
        self.shapes.insert(key, shape);
    }

    /// Shapes with Linear weights in PyTorch's `[out, in]` order.
    fn expected(mut self) -> (BTreeMap<String, Vec<usize>>, bool, usize) {
        for layer in &self.linears {
            let w = if layer.is_empty() { "weight".to_string() } else { format!("{layer}.weight") };
            if let Some(s) = self.shapes.get_mut(&w) {
                s.reverse();
            }
        }
        (self.shapes, self.quantized, self.masks)
    }
}

impl ModuleVisitor for ExpectVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if ember_quant::tag::is_linear(container_type) {
            self.linears.insert(self.path[..self.path.len().saturating_sub(1)].join("."));
        }
        self.path.push(name.to_string());
        self.container.push(container_type.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.container.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let dims = t.dims().to_vec();
        let values =
            self.values.is_some().then(|| t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default());
        self.add(dims, values);
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.add(param.val().dims().to_vec(), None);
    }
    fn visit_bool<const D: usize>(&mut self, _param: &Param<Tensor<D, Bool>>) {
        self.masks += 1; // pruning masks (ember-prune reparameterizations)
    }
}

/// Tensors on the host by name: (shape, row-major f32 values).
pub(crate) type HostTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// A float model's parameters as a Hugging Face checkpoint holds them: Ember paths with
/// LayerNorm `weight` / `bias` names, Linear weights transposed to `[out, in]`, values as f32.
///
/// # Errors
/// [`ModelError::Config`] for an int8 model or one carrying pruning masks.
pub(crate) fn float_tensors<M: Module>(model: &M) -> Result<HostTensors> {
    let mut visitor = ExpectVisitor { values: Some(BTreeMap::new()), ..ExpectVisitor::default() };
    model.visit(&mut visitor);
    let linears = visitor.linears.clone();
    let mut values = visitor.values.take().unwrap_or_default();
    let (shapes, quantized, masks) = visitor.expected();
    if quantized {
        return Err(crate::error::config_err(
            "model",
            "int8",
            "a float model (export the float model; int8 models are saved with Bert::save)",
        ));
    }
    if masks > 0 {
        return Err(crate::error::config_err(
            "model",
            "pruned (carries masks)",
            "a model whose masks are folded into its weights (ember-prune's fold)",
        ));
    }
    let mut out = BTreeMap::new();
    for (path, shape) in shapes {
        let mut v = values.remove(&path).unwrap_or_default();
        if v.len() != shape.iter().product::<usize>() {
            return Err(crate::error::config_err(&path, format!("{shape:?}"), "values readable as f32"));
        }
        let is_linear_weight = path.strip_suffix(".weight").is_some_and(|layer| linears.contains(layer))
            || (path == "weight" && linears.contains(""));
        if is_linear_weight && shape.len() == 2 {
            // The model holds [in, out]; `shape` is already [out, in].
            let (rows, cols) = (shape[0], shape[1]);
            let mut t = vec![0.0f32; v.len()];
            for i in 0..cols {
                for o in 0..rows {
                    t[o * cols + i] = v[i * rows + o];
                }
            }
            v = t;
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(crate::error::config_err(
                &path,
                "NaN or infinite values",
                "finite weights (a diverged training run?)",
            ));
        }
        out.insert(path, (shape, v));
    }
    Ok(out)
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
pub fn load_bert_bytes(model: Bert, bytes: Vec<u8>, name: &str) -> Result<(Bert, LoadReport)> {
    load_hf_bytes(model, bytes, name, &HfLayout::BERT, 1)
}

/// Loads a Hugging Face ALBERT checkpoint's bytes into `model` (built by `config`).
///
/// # Errors
/// As [`load_bert_safetensors`].
pub fn load_albert_bytes(model: Bert, bytes: Vec<u8>, name: &str, config: &AlbertConfig) -> Result<(Bert, LoadReport)> {
    load_hf_bytes(model, bytes, name, &HfLayout::ALBERT, config.inner_group_num)
}

/// Loads a checkpoint in the Hugging Face `layout` (ALBERT's blocks numbered with
/// `inner_group_num`) into `model`, see the [module docs](self).
///
/// # Errors
/// As [`load_bert_safetensors`].
pub fn load_hf_bytes(
    mut model: Bert,
    bytes: Vec<u8>,
    name: &str,
    layout: &HfLayout,
    inner_group_num: usize,
) -> Result<(Bert, LoadReport)> {
    let file = name.to_string();
    let mut visitor = ExpectVisitor::default();
    model.visit(&mut visitor);
    let (expected, quantized, masks) = visitor.expected();
    if quantized {
        return Err(crate::error::config_err(
            "target model",
            "int8",
            "a float model from its config's init (load the float checkpoint, then quantize; reload int8 models with Bert::load)",
        ));
    }
    if masks > 0 {
        return Err(crate::error::config_err(
            "target model",
            "pruned (carries masks)",
            "a float model from its config's init (load first, then prune)",
        ));
    }
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| ModelError::Checkpoint { file: file.clone(), message: describe_safetensors_error(&e, &bytes) })?;
    let mut report = LoadReport::default();
    let mut found: BTreeMap<String, String> = BTreeMap::new(); // ember path → hf key
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    for key in &names {
        match layout.map(key, inner_group_num) {
            KeyMapping::Ignored => report.ignored.push(key.clone()),
            KeyMapping::Unknown => return Err(ModelError::UnexpectedTensor { file, tensor: key.clone() }),
            KeyMapping::Param(p) => {
                let Some(exp) = expected.get(&normalize_norm_name(&p)) else {
                    return Err(ModelError::UnexpectedTensor { file, tensor: key.clone() });
                };
                let view = st
                    .tensor(key)
                    .map_err(|e| ModelError::Checkpoint { file: file.clone(), message: e.to_string() })?;
                if view.shape() != exp.as_slice() {
                    return Err(ModelError::TensorMismatch {
                        file,
                        tensor: key.clone(),
                        message: format!(
                            "has shape {:?}, the model expects {:?} (config and checkpoint disagree)",
                            view.shape(),
                            exp
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
        let tensor = layout.hf_key(param, inner_group_num).unwrap_or_else(|| param.clone());
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
        let applied: BTreeSet<String> = result.applied.iter().map(|p| normalize_norm_name(p)).collect();
        let missing = found.keys().find(|p| !applied.contains(*p)).cloned().unwrap_or_default();
        return Err(ModelError::MissingTensor {
            file,
            tensor: found.get(&missing).cloned().unwrap_or_default(),
            param: missing,
        });
    }
    Ok((model, report))
}

/// The Ember path with the checkpoint's own parameter name (`weight`/`bias` or `gamma`/`beta`).
fn names_in_file(ember: &str, hf: &str) -> String {
    let last = hf.rsplit('.').next().unwrap_or("");
    match ember.rsplit_once('.') {
        Some((prefix, _)) => format!("{prefix}.{last}"),
        None => ember.to_string(),
    }
}

/// The Hugging Face architecture a `config.json` names (`model_type`).
fn model_type(text: &str, name: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| crate::error::config_err(name, e, "a Hugging Face config.json (a JSON object)"))?;
    Ok(v.get("model_type").and_then(|t| t.as_str()).unwrap_or("bert").to_string())
}

impl Bert {
    /// Loads a Hugging Face model directory, `config.json` and `model.safetensors`, of a
    /// `BertModel` (BERT, MiniLM: `"model_type": "bert"`, or no model type) or an `AlbertModel`
    /// (`"model_type": "albert"`).
    ///
    /// ```no_run
    /// use burn::tensor::Device;
    /// use ember_models::{Bert, TextTokenizer};
    ///
    /// let device = Device::flex();
    /// let model = Bert::from_pretrained("models/all-minilm-l6-v2", &device).unwrap();
    /// let tok = TextTokenizer::from_file("models/all-minilm-l6-v2/tokenizer.json", model.max_positions()).unwrap();
    /// let batch = tok.encode_batch(&["A sentence.", "Another, longer sentence."]).unwrap();
    /// let emb = model.embed(&batch).unwrap(); // [2, 384], L2-normalised
    /// ```
    ///
    /// # Errors
    /// [`ModelError::Io`] for missing files; [`ModelError::Config`] for an invalid config or
    /// another `model_type`; as [`load_bert_safetensors`].
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<Bert> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let text = crate::error::read_text(&config_path).map_err(|e| match e {
            ModelError::Io { path, message } if dir.join(crate::save::CONFIG_FILE).exists() => ModelError::Io {
                path,
                message: format!("{message} (this directory was saved by Ember: load it with Bert::load)"),
            },
            other => other,
        })?;
        let path = dir.join("model.safetensors");
        let name = path.display().to_string();
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| ModelError::Io { path: name.clone(), message: e.to_string() })
        };
        match model_type(&text, &config_path.display().to_string())?.as_str() {
            "bert" => {
                let config = BertConfig::from_json(&text)?;
                let bytes = read(&path)?;
                check_config_fits_checkpoint(config.num_params(), &bytes, &name, &HfLayout::BERT, 1)?;
                Ok(load_bert_bytes(config.init(device)?, bytes, &name)?.0)
            }
            "albert" => {
                let config = AlbertConfig::from_json(&text)?;
                let bytes = read(&path)?;
                let params = config.architecture()?.num_params()?;
                check_config_fits_checkpoint(params, &bytes, &name, &HfLayout::ALBERT, config.inner_group_num)?;
                Ok(load_albert_bytes(config.init(device)?, bytes, &name, &config)?.0)
            }
            other => Err(crate::error::config_err(
                "model_type",
                other,
                "\"bert\" (BERT, MiniLM) or \"albert\": the architectures ember-models loads",
            )),
        }
    }
}

/// Refuses a config whose model is more than twice as large as everything the checkpoint holds
/// for it, before `init` allocates that model (a lying or mismatched `config.json` must not cost
/// gigabytes). Smaller disagreements are left to the loader, which names the tensor.
fn check_config_fits_checkpoint(
    wanted: usize,
    bytes: &[u8],
    name: &str,
    layout: &HfLayout,
    inner: usize,
) -> Result<()> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| ModelError::Checkpoint { file: name.into(), message: describe_safetensors_error(&e, bytes) })?;
    let held: u128 = meta
        .tensors()
        .iter()
        .filter(|(key, _)| matches!(layout.map(key, inner), KeyMapping::Param(_)))
        .map(|(_, info)| info.shape.iter().map(|&d| d as u128).product::<u128>())
        .sum();
    if wanted as u128 > 2 * held {
        return Err(crate::error::config_err(
            "sizes",
            format!("{wanted} parameters"),
            &format!("a model the checkpoint {name} can fill (it holds {held} values for its parameters)"),
        ));
    }
    Ok(())
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
