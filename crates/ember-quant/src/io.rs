//! Saving and loading quantized models.
//!
//! A quantized model cannot go through Burn's `load_file` into a model built from its config:
//! Burn checks every tensor's shape against the destination, and the destination (a fresh
//! float model) has no int8 weights yet. Ember's format is a plain **safetensors** file holding
//! every parameter of the module by its path, in its own dtype (f32, i8, i32, bool as u8), plus
//! metadata naming the format and version. [`load_quantized`] takes a model built from its
//! config (random float weights, which are discarded) and replaces every parameter by the
//! file's tensor, whatever its shape, so int8 layers come back int8:
//!
//! ```no_run
//! # use burn::tensor::Device;
//! # use ember_quant::{LinearConfig, Quantizer, QuantizeConfig};
//! # let device = Device::flex();
//! # let model = LinearConfig::new(64, 32).init(&device);
//! let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
//! ember_quant::save_quantized(&int8, "model.int8.safetensors").unwrap();
//! // in a fresh process: config → skeleton → load
//! let skeleton = LinearConfig::new(64, 32).init(&device);
//! let loaded = ember_quant::load_quantized(skeleton, "model.int8.safetensors").unwrap();
//! assert!(loaded.is_quantized());
//! ```
//!
//! The file is any safetensors reader's to open (`tensor names = parameter paths`). Loading
//! validates everything: a truncated or corrupt file, a file from another format or version,
//! missing, extra, wrong-rank or wrong-kind tensors, and malformed int8 layer state are typed
//! [`QuantError::File`] errors naming the tensor.

use crate::error::{QuantError, Result};
use crate::spec::LinearQuantSpec;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Bool, DType, Int, Tensor, TensorData};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Format name stored in the file's metadata.
pub const FORMAT: &str = "ember-quant";
/// Format version written by this build.
pub const FORMAT_VERSION: &str = "1";

struct Collect {
    path: Vec<String>,
    tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
    error: Option<QuantError>,
}

fn to_bytes(what: &str, data: TensorData) -> Result<(Dtype, Vec<usize>, Vec<u8>)> {
    let shape = data.shape().to_vec();
    let bad = |m: String| QuantError::Data { what: what.into(), message: m };
    let (dtype, bytes) = match data.dtype() {
        DType::F32 => (Dtype::F32, data.as_bytes().to_vec()),
        DType::F16 | DType::BF16 | DType::F64 => {
            (Dtype::F32, bytemuck_f32(data.convert::<f32>().try_into_vec::<f32>().map_err(|e| bad(format!("{e:?}")))?))
        }
        DType::I8 => (Dtype::I8, data.as_bytes().to_vec()),
        DType::I32 => (Dtype::I32, data.as_bytes().to_vec()),
        DType::I64 => (Dtype::I64, data.as_bytes().to_vec()),
        DType::U8 => (Dtype::U8, data.as_bytes().to_vec()),
        DType::Bool(_) => {
            let v = data.convert::<bool>().try_into_vec::<bool>().map_err(|e| bad(format!("{e:?}")))?;
            (Dtype::BOOL, v.into_iter().map(u8::from).collect())
        }
        other => return Err(bad(format!("dtype {other:?} cannot be saved (quantize with Ember, not Burn's QFloat)"))),
    };
    Ok((dtype, shape, bytes))
}

fn bytemuck_f32(v: Vec<f32>) -> Vec<u8> {
    v.into_iter().flat_map(f32::to_le_bytes).collect()
}

impl Collect {
    fn add(&mut self, data: impl FnOnce() -> TensorData) {
        if self.error.is_some() {
            return;
        }
        let path = self.path.join(".");
        match to_bytes(&path, data()) {
            Ok(t) => {
                self.tensors.insert(path, t);
            }
            Err(e) => self.error = Some(e),
        }
    }
}

impl ModuleVisitor for Collect {
    track_path!(path);
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.add(|| p.val().into_data());
    }
    fn visit_int<const D: usize>(&mut self, p: &Param<Tensor<D, Int>>) {
        self.add(|| p.val().into_data());
    }
    fn visit_bool<const D: usize>(&mut self, p: &Param<Tensor<D, Bool>>) {
        self.add(|| p.val().into_data());
    }
}

/// Saves every parameter of `model` (float, int8, int and bool) to a safetensors file at
/// `path`, returning the file size in bytes. Reparameterizations (QAT, masks) are saved as
/// their effective values: convert or `materialize` first to save a deployable model.
///
/// # Errors
/// [`QuantError::Io`] if the file cannot be written; [`QuantError::Data`] for a tensor whose
/// dtype has no safetensors form (Burn `QFloat` tensors).
pub fn save_quantized<M: Module>(model: &M, path: impl AsRef<Path>) -> Result<u64> {
    let path = path.as_ref();
    let mut c = Collect { path: Vec::new(), tensors: BTreeMap::new(), error: None };
    model.visit(&mut c);
    if let Some(e) = c.error {
        return Err(e);
    }
    let views: Vec<(String, TensorView<'_>)> = c
        .tensors
        .iter()
        .map(|(k, (d, s, b))| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| QuantError::Data { what: k.clone(), message: e.to_string() })
        })
        .collect::<Result<_>>()?;
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("version".to_string(), FORMAT_VERSION.to_string()),
    ]);
    let io = |source| QuantError::Io { path: path.display().to_string(), source };
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| QuantError::Data { what: "model".into(), message: e.to_string() })?;
    std::fs::write(path, &bytes).map_err(io)?;
    Ok(bytes.len() as u64)
}

struct Apply<'a> {
    path: Vec<String>,
    file: HashMap<String, TensorView<'a>>,
    errors: Vec<String>,
    missing: Vec<String>,
}

impl Apply<'_> {
    fn take(&mut self, kind: &str, rank: usize) -> Option<TensorData> {
        let path = self.path.join(".");
        let Some(view) = self.file.remove(&path) else {
            self.missing.push(path);
            return None;
        };
        if view.shape().len() != rank {
            self.errors.push(format!("`{path}` has rank {} in the file, the model expects {rank}", view.shape().len()));
            return None;
        }
        let shape = view.shape().to_vec();
        let bytes = view.data();
        let data = match (kind, view.dtype()) {
            ("float", Dtype::F32) => TensorData::new(
                bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<f32>>(),
                shape,
            ),
            ("int", Dtype::I8) => TensorData::new(bytes.iter().map(|&b| b as i8).collect::<Vec<i8>>(), shape),
            ("int", Dtype::I32) => TensorData::new(
                bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<i32>>(),
                shape,
            ),
            ("int", Dtype::I64) => TensorData::new(
                bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect::<Vec<i64>>(),
                shape,
            ),
            ("bool", Dtype::BOOL | Dtype::U8) => {
                TensorData::new(bytes.iter().map(|&b| b != 0).collect::<Vec<bool>>(), shape)
            }
            (k, d) => {
                self.errors.push(format!("`{path}` is {d:?} in the file, the model expects a {k} tensor"));
                return None;
            }
        };
        Some(data)
    }
}

impl ModuleMapper for Apply<'_> {
    track_path!(path);
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.take("float", D) {
            Some(d) => {
                let rg = p.is_require_grad();
                Param::initialized(p.id, Tensor::from_data(d, &p.device())).set_require_grad(rg)
            }
            None => p,
        }
    }
    fn map_int<const D: usize>(&mut self, p: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        match self.take("int", D) {
            Some(d) => {
                let dtype = d.dtype();
                Param::initialized(burn::module::ParamId::new(), Tensor::from_data(d, (&p.device(), dtype)))
            }
            None => p,
        }
    }
    fn map_bool<const D: usize>(&mut self, p: Param<Tensor<D, Bool>>) -> Param<Tensor<D, Bool>> {
        match self.take("bool", D) {
            Some(d) => Param::initialized(p.id, Tensor::from_data(d, &p.device())),
            None => p,
        }
    }
}

/// Validates every Ember int8 layer state after loading.
#[derive(Default)]
struct CheckSpecs {
    path: Vec<String>,
    error: Option<QuantError>,
}

impl ModuleVisitor for CheckSpecs {
    track_path!(path);
    fn visit_int<const D: usize>(&mut self, p: &Param<Tensor<D, Int>>) {
        let n = self.path.len();
        if self.error.is_some() || D != 1 || n < 2 || self.path[n - 1] != "spec" || self.path[n - 2] != "quant" {
            return;
        }
        if p.dims()[0] == 0 {
            return;
        }
        let what = self.path.join(".");
        let r = p
            .val()
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| QuantError::Data { what: what.clone(), message: format!("{e:?}") })
            .and_then(|v| LinearQuantSpec::decode(&what, &v));
        if let Err(e) = r {
            self.error = Some(e);
        }
    }
}

/// Loads a file written by [`save_quantized`] into `model` (built from its config; its
/// weights are replaced), see the [module docs](self).
///
/// # Errors
/// [`QuantError::Io`] if the file cannot be read; [`QuantError::File`] for a malformed,
/// truncated or foreign file, a version this build cannot read, or tensors that are missing,
/// extra, of the wrong rank or kind, or an invalid int8 layer state.
pub fn load_quantized<M: Module>(model: M, path: impl AsRef<Path>) -> Result<M> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| QuantError::Io { path: shown.clone(), source })?;
    load_quantized_bytes(model, &bytes).map_err(|e| match e {
        QuantError::File { message, .. } => QuantError::File { path: shown, message },
        other => other,
    })
}

/// [`load_quantized`] from bytes in memory.
///
/// # Errors
/// As [`load_quantized`] (the path in messages is `<memory>`).
pub fn load_quantized_bytes<M: Module>(model: M, bytes: &[u8]) -> Result<M> {
    let file_err = |message: String| QuantError::File { path: "<memory>".into(), message };
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
    let info = meta.metadata().clone().unwrap_or_default();
    match info.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) => return Err(file_err(format!("format `{other}`, expected `{FORMAT}`"))),
        None => {
            return Err(file_err(format!(
                "no `format` metadata: not written by ember_quant::save_quantized (expected format `{FORMAT}`)"
            )));
        }
    }
    match info.get("version").map(String::as_str) {
        Some(FORMAT_VERSION) => {}
        v => return Err(file_err(format!("format version {v:?}, this build reads version {FORMAT_VERSION}"))),
    }
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
    let file: HashMap<String, TensorView<'_>> = st.tensors().into_iter().collect();
    let mut apply = Apply { path: Vec::new(), file, errors: Vec::new(), missing: Vec::new() };
    let model = model.map(&mut apply);
    if !apply.errors.is_empty() {
        return Err(file_err(apply.errors.join("; ")));
    }
    let mut extra: Vec<String> = apply.file.keys().cloned().collect();
    extra.sort();
    let mut problems = Vec::new();
    if !apply.missing.is_empty() {
        problems.push(format!("tensors missing from the file: {}", name_list(&apply.missing)));
    }
    if !extra.is_empty() {
        problems.push(format!("tensors in the file that the model does not have: {}", name_list(&extra)));
    }
    if !problems.is_empty() {
        return Err(file_err(format!("{} (is this file from another model or config?)", problems.join("; "))));
    }
    let mut check = CheckSpecs::default();
    model.visit(&mut check);
    if let Some(e) = check.error {
        return Err(file_err(e.to_string()));
    }
    Ok(model)
}

/// At most 12 names, then a count.
fn name_list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
    match names.len() {
        n if n > 12 => format!("{} and {} more", shown.join(", "), n - 12),
        _ => shown.join(", "),
    }
}
