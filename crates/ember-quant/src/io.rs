//! Saving and loading quantized models.
//!
//! A quantized model cannot go through Burn's `load_file` into a model built from its config:
//! Burn checks every tensor's shape against the destination, and the destination (a fresh
//! float model) has no int8 weights yet. Ember's format is a plain **safetensors** file holding
//! every parameter of the module by its path, in its own dtype (f32, i8, i32, bool as u8), plus
//! metadata naming the format and version. [`load_quantized`] takes a model built from its
//! config (random float weights, which are discarded) and replaces every parameter by the
//! file's tensor; an Ember int8 layer takes the file's int8 state (or float state) whatever the
//! skeleton's, so int8 layers come back int8, and every other tensor must have the skeleton's
//! shape (build the skeleton from the config the saved model had: after structured pruning, the
//! shrunk config):
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
//! The file is any safetensors reader's to open (`tensor names = parameter paths`), and saving
//! the same model twice gives the same bytes (the header's keys are sorted). Loading validates
//! everything before it replaces anything, so a loaded model cannot fail later inside Burn: a
//! truncated or corrupt file, a file from another format or version, missing, extra, misshaped
//! or wrong-kind tensors, NaN or infinity in any f32 tensor, and a malformed int8 layer state
//! (an unknown scheme code, a spec of another shape, too few or non-positive scales, invalid
//! static activation parameters or smoothing factors) are typed [`QuantError::File`] errors
//! naming the tensor.

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
/// their effective values: convert or `materialize` first to save a deployable model. The file
/// is written next to `path` first and renamed over it only once complete, so an existing file
/// is never left half-written.
///
/// # Errors
/// [`QuantError::Io`] if the file cannot be written; [`QuantError::Data`] for a tensor whose
/// dtype has no safetensors form (Burn `QFloat` tensors).
pub fn save_quantized<M: Module>(model: &M, path: impl AsRef<Path>) -> Result<u64> {
    save_quantized_with(model, path, &BTreeMap::new())
}

/// [`save_quantized`] with extra metadata in the file's header (for example the layout
/// version of the model that wrote it, which [`file_metadata`] reads back).
///
/// # Errors
/// As [`save_quantized`]; [`QuantError::InvalidConfig`] for the reserved keys `format` and
/// `version`.
pub fn save_quantized_with<M: Module>(
    model: &M,
    path: impl AsRef<Path>,
    metadata: &BTreeMap<String, String>,
) -> Result<u64> {
    let path = path.as_ref();
    if let Some(k) = metadata.keys().find(|k| *k == "format" || *k == "version") {
        return Err(QuantError::InvalidConfig {
            what: "metadata",
            value: k.clone(),
            expected: "keys other than `format` and `version` (the file format's own)".into(),
        });
    }
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
    let mut meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("version".to_string(), FORMAT_VERSION.to_string());
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| QuantError::Data { what: "model".into(), message: e.to_string() })?;
    let bytes = canonical_header(bytes);
    write_atomically(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`. The temporary
/// name is unique per process and call, so concurrent saves never rename each other's file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| QuantError::Io { path: path.display().to_string(), source };
    let tmp = temporary_path(path);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// A fresh name beside `path` for a file to be renamed over it.
pub fn temporary_path(path: &Path) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// The header metadata of a file written by [`save_quantized`] (including `format` and
/// `version`), reading only the file's header.
///
/// # Errors
/// [`QuantError::Io`] if the file cannot be read; [`QuantError::File`] if it does not start with
/// a valid safetensors header.
pub fn file_metadata(path: impl AsRef<Path>) -> Result<BTreeMap<String, String>> {
    use std::io::Read;
    let path = path.as_ref();
    let shown = path.display().to_string();
    let io = |source| QuantError::Io { path: shown.clone(), source };
    let bad = |message: String| QuantError::File { path: shown.clone(), message };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| bad("shorter than a safetensors header length (8 bytes)".into()))?;
    let n = u64::from_le_bytes(len);
    // safetensors' own limit on header size.
    if n > 100_000_000 || n > file_len.saturating_sub(8) {
        return Err(bad(format!("header length {n} does not fit the file of {file_len} bytes")));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(io)?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let meta = v.get("__metadata__").and_then(|m| m.as_object()).cloned().unwrap_or_default();
    meta.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            other => Err(bad(format!("metadata `{k}` is {other}, expected a string"))),
        })
        .collect()
}

/// safetensors writes its metadata map in hash order, which differs between saves; this
/// rewrites the header's JSON with every object's keys sorted (same length, same offsets), so
/// that saving the same model always gives the same bytes (files can be hashed and compared).
fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            other => other,
        }
    }
    let Some(len) = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes) else {
        return bytes;
    };
    let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(8)).filter(|&e| e <= bytes.len()) else {
        return bytes;
    };
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&bytes[8..end]) else { return bytes };
    let Ok(mut text) = serde_json::to_vec(&sorted(header)) else { return bytes };
    if text.len() > end - 8 {
        return bytes;
    }
    // safetensors pads the header with spaces to keep the data aligned.
    text.resize(end - 8, b' ');
    bytes[8..end].copy_from_slice(&text);
    bytes
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

/// Every parameter's path and shape.
#[derive(Default)]
struct Shapes {
    path: Vec<String>,
    dims: BTreeMap<String, Vec<usize>>,
}

impl Shapes {
    fn add(&mut self, dims: Vec<usize>) {
        self.dims.insert(self.path.join("."), dims);
    }
}

impl ModuleVisitor for Shapes {
    track_path!(path);
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.add(p.dims().to_vec());
    }
    fn visit_int<const D: usize>(&mut self, p: &Param<Tensor<D, Int>>) {
        self.add(p.dims().to_vec());
    }
    fn visit_bool<const D: usize>(&mut self, p: &Param<Tensor<D, Bool>>) {
        self.add(p.dims().to_vec());
    }
}

/// `prefix.name` (or `name` for a layer at the root).
fn child(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

fn f32_values(view: &TensorView<'_>) -> Option<Vec<f32>> {
    (view.dtype() == Dtype::F32)
        .then(|| view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn int_values(view: &TensorView<'_>) -> Option<Vec<i64>> {
    match view.dtype() {
        Dtype::I32 => {
            Some(view.data().chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect())
        }
        Dtype::I64 => {
            Some(view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
        }
        _ => None,
    }
}

/// Checks the file against the skeleton's parameter shapes (`dims`):
/// - an Ember int8 layer (a `quant.values` parameter) that is int8 in the file has i8 values of
///   the layer's logical shape (`[d_input, d_output]`, or `[rows, d_model]` for an embedding),
///   an emptied float weight `[0, d]`, a decodable spec matching that shape (linear layers),
///   and as many finite, positive scales as its granularity needs, and valid static activation
///   parameters and smoothing factors; a layer that is float in the file has the skeleton's
///   weight shape;
/// - every other tensor has exactly the skeleton's shape;
/// - every f32 tensor is finite (a checkpoint with NaN or infinity is corrupt).
///
/// Missing and extra tensors are reported by the caller.
fn check_layout(
    dims: &BTreeMap<String, Vec<usize>>,
    file: &HashMap<String, TensorView<'_>>,
) -> std::result::Result<(), String> {
    let shape_of = |k: &str| file.get(k).map(|v| v.shape().to_vec());
    let mut owned: std::collections::HashSet<String> = std::collections::HashSet::new();
    for values_path in dims.keys().filter(|k| *k == "quant.values" || k.ends_with(".quant.values")) {
        let prefix = values_path.strip_suffix("quant.values").unwrap_or("").trim_end_matches('.');
        let weight_path = child(prefix, "weight");
        let Some(weight_dims) = dims.get(&weight_path) else { continue };
        // The layer's logical shape: the float weight's, or the int8 values' when the skeleton
        // is already quantized.
        let logical = if weight_dims.first() == Some(&0) { dims[values_path].clone() } else { weight_dims.clone() };
        let (rows, cols) = match logical.as_slice() {
            [r, c] => (*r, *c),
            _ => continue,
        };
        for name in ["weight", "quant.values", "quant.scales", "quant.activation", "quant.smooth", "quant.spec"] {
            owned.insert(child(prefix, name));
        }
        let (Some(vshape), Some(wshape)) = (shape_of(values_path), shape_of(&weight_path)) else { continue };
        let spec_path = child(prefix, "quant.spec");
        // What the layers themselves test: a linear layer is int8 when it has a spec, an
        // embedding when its values have rows.
        let quantized = if dims.contains_key(&spec_path) {
            shape_of(&spec_path).is_some_and(|s| s.iter().product::<usize>() > 0)
        } else {
            vshape.first().is_some_and(|&r| r != 0)
        };
        if !quantized {
            if wshape != logical {
                return Err(format!("`{weight_path}` has shape {wshape:?} in the file, the model expects {logical:?}"));
            }
            for name in ["quant.values", "quant.scales", "quant.activation", "quant.smooth", "quant.spec"] {
                let path = child(prefix, name);
                if let Some(shape) = shape_of(&path)
                    && shape.iter().product::<usize>() != 0
                {
                    return Err(format!("`{path}` has shape {shape:?} in a float layer, expected no values"));
                }
            }
            continue;
        }
        if vshape != logical {
            return Err(format!("`{values_path}` has shape {vshape:?} in the file, the model expects {logical:?}"));
        }
        if file[values_path.as_str()].dtype() != Dtype::I8 {
            return Err(format!(
                "`{values_path}` is {:?} in the file, expected I8",
                file[values_path.as_str()].dtype()
            ));
        }
        if wshape != [0, cols] {
            return Err(format!("`{weight_path}` has shape {wshape:?} in an int8 layer, expected [0, {cols}]"));
        }
        let scales_path = child(prefix, "quant.scales");
        let scales = file.get(&scales_path).and_then(f32_values).unwrap_or_default();
        if let Some(i) = scales.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(format!("`{scales_path}`: scale {} at {i} is not finite and positive", scales[i]));
        }
        let spec = file.get(&spec_path).and_then(int_values).filter(|v| !v.is_empty());
        let Some(spec) = spec else {
            // An embedding table: one scale per row.
            if scales.len() != rows {
                return Err(format!("`{scales_path}` has {} scales, the table has {rows} rows", scales.len()));
            }
            continue;
        };
        let spec = LinearQuantSpec::decode(&spec_path, &spec).map_err(|e| e.to_string())?;
        if (spec.d_input, spec.d_output) != (rows, cols) {
            return Err(format!(
                "`{spec_path}` describes a {} × {} layer, the model's is {rows} × {cols}",
                spec.d_input, spec.d_output
            ));
        }
        if scales.len() != spec.num_weight_scales() {
            return Err(format!(
                "`{scales_path}` has {} scales, {:?} weights of {rows} × {cols} need {}",
                scales.len(),
                spec.weight,
                spec.num_weight_scales()
            ));
        }
        let act_path = child(prefix, "quant.activation");
        let act = file.get(&act_path).and_then(f32_values).unwrap_or_default();
        match (spec.mode, act.as_slice()) {
            (crate::ActivationMode::Dynamic, []) => {}
            (crate::ActivationMode::Static, [scale, zp]) => {
                let (lo, hi) = match spec.activation_dtype {
                    crate::QuantDtype::U8Affine => (0.0, 255.0),
                    crate::QuantDtype::I8Symmetric => (0.0, 0.0),
                };
                // As the kernels require (`QuantParams::validate`): the reciprocal must be finite too.
                let valid = scale.is_finite()
                    && *scale > 0.0
                    && (1.0 / scale).is_finite()
                    && (lo..=hi).contains(zp)
                    && zp.fract() == 0.0;
                if !valid {
                    return Err(format!(
                        "`{act_path}`: static activation parameters [{scale}, {zp}] need a finite scale > 0 with a finite \
                         reciprocal and an integer zero point in [{lo}, {hi}]"
                    ));
                }
            }
            (mode, other) => {
                return Err(format!(
                    "`{act_path}` has {} values, {mode:?} mode needs {}",
                    other.len(),
                    match mode {
                        crate::ActivationMode::Dynamic => "none",
                        crate::ActivationMode::Static => "2 ([scale, zero_point])",
                    }
                ));
            }
        }
        let smooth_path = child(prefix, "quant.smooth");
        let smooth = file.get(&smooth_path).and_then(f32_values).unwrap_or_default();
        if !(smooth.is_empty() || smooth.len() == rows) {
            return Err(format!("`{smooth_path}` has {} factors, expected 0 or d_input = {rows}", smooth.len()));
        }
        if let Some(i) = smooth.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(format!("`{smooth_path}`: factor {} at {i} is not finite and positive", smooth[i]));
        }
    }
    for (path, want) in dims {
        if owned.contains(path) {
            continue;
        }
        if let Some(got) = shape_of(path)
            && &got != want
        {
            return Err(format!("`{path}` has shape {got:?} in the file, the model expects {want:?}"));
        }
    }
    let mut names: Vec<&String> = file.keys().collect();
    names.sort();
    for name in names {
        if let Some(v) = f32_values(&file[name.as_str()])
            && let Some(i) = v.iter().position(|x| !x.is_finite())
        {
            return Err(format!("`{name}` holds a non-finite value ({}) at flat index {i}", v[i]));
        }
    }
    Ok(())
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
    // Shapes and values are checked against the skeleton before anything is applied, so that a
    // loaded model never fails later (a misshaped LayerNorm would panic inside Burn's forward).
    let mut shapes = Shapes::default();
    model.visit(&mut shapes);
    let missing: Vec<String> = shapes.dims.keys().filter(|k| !file.contains_key(*k)).cloned().collect();
    let mut extra: Vec<String> = file.keys().filter(|k| !shapes.dims.contains_key(*k)).cloned().collect();
    extra.sort();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("tensors missing from the file: {}", name_list(&missing)));
    }
    if !extra.is_empty() {
        problems.push(format!("tensors in the file that the model does not have: {}", name_list(&extra)));
    }
    if !problems.is_empty() {
        return Err(file_err(format!("{} (is this file from another model or config?)", problems.join("; "))));
    }
    check_layout(&shapes.dims, &file).map_err(file_err)?;
    let mut apply = Apply { path: Vec::new(), file, errors: Vec::new(), missing: Vec::new() };
    let model = model.map(&mut apply);
    if !apply.errors.is_empty() {
        return Err(file_err(apply.errors.join("; ")));
    }
    if !apply.missing.is_empty() || !apply.file.is_empty() {
        // Unreachable after the checks above (the visitor and the mapper see the same paths).
        return Err(file_err("the model's parameters changed while loading".into()));
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
