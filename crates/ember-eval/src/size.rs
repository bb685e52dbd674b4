//! Model size accounting: bytes by component and by dtype for any Burn module, and the size of
//! a saved file.
//!
//! [`ModelSize::of`] walks a module's parameters (Burn's `ModuleVisitor`: shapes and dtypes only,
//! no values are read, though lazily initialized parameters get initialized) and
//! files each tensor under a [`Component`]:
//!
//! | component | what lands there |
//! |---|---|
//! | [`Component::Masks`] | boolean tensors, such as ember-prune's persistent masks |
//! | [`Component::QuantParams`] | scales, zero points, SmoothQuant divisors and layout specs of quantized layers (ember-quant's `quant.scales` / `activation` / `smooth` / `spec`), and the scale part of Burn's own quantized tensors |
//! | [`Component::Embeddings`] | tables of modules whose type ends in `Embedding` (Burn's, ember-quant's int8 one, ember-layers'), and any tensor under a path segment containing `embed` |
//! | [`Component::Linear`] | weights and biases of modules whose type ends in `Linear` (Burn's, ember-quant's float or int8), including int8 values |
//! | [`Component::Other`] | everything else (norms, convolution kernels, free parameters) |
//!
//! The rules apply in that order: a mask on a linear weight is a mask, the int8 scales of an
//! embedding are quantization parameters. Sizes are logical (`elements × dtype size`, with
//! Burn's packing for its quantized dtypes), which is what a file of the raw tensors holds;
//! [`file_size`] measures a saved file, headers and all.
//!
//! ```
//! use burn::nn::{EmbeddingConfig, LinearConfig};
//! use burn::tensor::Device;
//! use ember_eval::{Component, ModelSize};
//!
//! let device = Device::default();
//! let emb = EmbeddingConfig::new(100, 16).init(&device);
//! let lin = LinearConfig::new(16, 8).init(&device);
//! let (e, l) = (ModelSize::of(&emb), ModelSize::of(&lin));
//! assert_eq!(e.bytes(Component::Embeddings), 100 * 16 * 4);
//! assert_eq!(l.bytes(Component::Linear), (16 * 8 + 8) * 4);
//! assert_eq!(l.params(), 16 * 8 + 8);
//! ```

use crate::error::{EvalError, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::quantization::{global_scale_size, params_shape, quantized_data_len, scale_size};
use burn::tensor::{Bool, DType, Int, Shape, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What a parameter tensor is, for size accounting (see the [module docs](self) for the rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Embedding tables (float or int8 values).
    Embeddings,
    /// Linear weights and biases (float or int8 values).
    Linear,
    /// Scales, zero points and other quantization metadata.
    QuantParams,
    /// Boolean masks (for example pruning masks).
    Masks,
    /// Everything else: norms, convolutions, free parameters.
    Other,
}

impl Component {
    /// All components, in report order.
    pub const ALL: [Component; 5] =
        [Component::Embeddings, Component::Linear, Component::QuantParams, Component::Masks, Component::Other];

    /// The snake_case name used in JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            Component::Embeddings => "embeddings",
            Component::Linear => "linear",
            Component::QuantParams => "quant_params",
            Component::Masks => "masks",
            Component::Other => "other",
        }
    }
}

/// One stored tensor (or, for Burn's quantized tensors, one of its two parts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSize {
    /// Dotted parameter path, e.g. `encoder.layers.0.ffn.up.weight`.
    pub path: String,
    /// Where it is counted.
    pub component: Component,
    /// Burn's dtype name (`f32`, `i8`, `bool`, `qfloat`, …).
    pub dtype: String,
    /// Logical shape.
    pub shape: Vec<usize>,
    /// Elements.
    pub elements: usize,
    /// Bytes stored.
    pub bytes: usize,
}

/// The size of a module by parameter, component and dtype. See the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSize {
    /// Every tensor, in visiting order.
    pub tensors: Vec<TensorSize>,
}

impl ModelSize {
    /// Walks `module`'s parameters (shapes and dtypes; no values are read).
    pub fn of<M: Module>(module: &M) -> Self {
        let mut v = SizeVisitor { path: Vec::new(), container: Vec::new(), out: Vec::new() };
        module.visit(&mut v);
        ModelSize { tensors: v.out }
    }

    /// Total bytes.
    pub fn total_bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.bytes).sum()
    }

    /// Bytes in one component.
    pub fn bytes(&self, component: Component) -> usize {
        self.tensors.iter().filter(|t| t.component == component).map(|t| t.bytes).sum()
    }

    /// Bytes per component (every component present, zeros included).
    pub fn by_component(&self) -> BTreeMap<Component, usize> {
        let mut m: BTreeMap<Component, usize> = Component::ALL.iter().map(|c| (*c, 0)).collect();
        for t in &self.tensors {
            *m.entry(t.component).or_default() += t.bytes;
        }
        m
    }

    /// Bytes per dtype name.
    pub fn by_dtype(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for t in &self.tensors {
            *m.entry(t.dtype.clone()).or_default() += t.bytes;
        }
        m
    }

    /// Model parameters: elements of embeddings, linear layers and other tensors, counting an
    /// int8 weight once (its float slot is empty) and leaving out masks and quantization
    /// metadata, which are overhead rather than parameters.
    pub fn params(&self) -> usize {
        self.tensors
            .iter()
            .filter(|t| !matches!(t.component, Component::Masks | Component::QuantParams))
            .map(|t| t.elements)
            .sum()
    }

    /// Multiply-accumulates per token in the linear layers' weights, as `(float, int8)`: each
    /// rank-2 `Linear` weight element is used once per token. Int8 values (`i8`/`u8`) count as
    /// int8; float weights and Burn's own quantized weights (which Burn's matmul dequantizes
    /// to float) count as float. Attention's score and context products depend on the sequence
    /// length and are not included; masked (pruned) weights still count, since dense kernels
    /// multiply the zeros. Two things a parameter walk cannot see are **not** counted: a block
    /// shared across layers (ALBERT-style) runs once per layer but is stored, and counted, once;
    /// and a head tied to an embedding table (`Embedding::tied_logits`, vocab × width MACs per
    /// token) is not a `Linear`. For such models pass your own counts to
    /// [`crate::EnergyModel::estimate_mj`]. For [`crate::EnergyModel::estimate_module`].
    pub fn linear_macs_per_token(&self) -> (u64, u64) {
        let (mut float, mut int8) = (0u64, 0u64);
        for t in self.tensors.iter().filter(|t| t.component == Component::Linear && t.shape.len() == 2) {
            if matches!(t.dtype.as_str(), "i8" | "u8") {
                int8 += t.elements as u64;
            } else {
                float += t.elements as u64;
            }
        }
        (float, int8)
    }

    /// A markdown table: bytes and share per component, then per dtype.
    pub fn to_markdown(&self) -> String {
        let total = self.total_bytes().max(1) as f64;
        let mut s = String::from("| component | bytes | share |\n|---|---:|---:|\n");
        for (c, b) in self.by_component() {
            s += &format!("| {} | {} | {:.1} % |\n", c.name(), b, 100.0 * b as f64 / total);
        }
        s += &format!("| **total** | {} | 100 % |\n\n| dtype | bytes |\n|---|---:|\n", self.total_bytes());
        for (d, b) in self.by_dtype() {
            s += &format!("| {d} | {b} |\n");
        }
        s
    }

    /// JSON: `{"total_bytes", "params", "by_component": {...}, "by_dtype": {...}, "tensors": [...]}`.
    pub fn to_json(&self) -> String {
        let by_component: BTreeMap<&str, usize> = self.by_component().into_iter().map(|(c, b)| (c.name(), b)).collect();
        serde_json::json!({
            "total_bytes": self.total_bytes(),
            "params": self.params(),
            "by_component": by_component,
            "by_dtype": self.by_dtype(),
            "tensors": self.tensors,
        })
        .to_string()
    }
}

/// The size in bytes of a saved file (a checkpoint, a quantized model).
///
/// # Errors
/// [`EvalError::Io`] if the file cannot be read or is not a regular file.
pub fn file_size(path: impl AsRef<Path>) -> Result<u64> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path)
        .map_err(|e| EvalError::Io { path: path.display().to_string(), message: e.to_string() })?;
    if !meta.is_file() {
        return Err(EvalError::Io { path: path.display().to_string(), message: "not a regular file".into() });
    }
    Ok(meta.len())
}

struct SizeVisitor {
    path: Vec<String>,
    container: Vec<String>,
    out: Vec<TensorSize>,
}

/// Field names of quantization metadata inside a `*QuantState` module.
const QUANT_META: [&str; 7] = ["scales", "scale", "zero_point", "zero_points", "activation", "smooth", "spec"];

impl SizeVisitor {
    fn classify(&self, is_bool: bool) -> Component {
        let n = self.path.len();
        let name = self.path.last().map_or("", String::as_str);
        let parent = self.container.last().map_or("", String::as_str);
        if is_bool {
            return Component::Masks;
        }
        if parent.ends_with("QuantState") && QUANT_META.contains(&name) {
            return Component::QuantParams;
        }
        // The module that owns the tensor: the parent, or the grandparent for a quant state.
        let owner = if parent.ends_with("QuantState") && n >= 2 { self.container[n - 2].as_str() } else { parent };
        // A reparameterized tensor (a masked weight) is visited as its base under the owner.
        if owner.ends_with("Linear") {
            return Component::Linear;
        }
        if owner.ends_with("Embedding") || self.path.iter().any(|p| p.to_ascii_lowercase().contains("embed")) {
            return Component::Embeddings;
        }
        Component::Other
    }

    fn push(&mut self, component: Component, dtype: DType, shape: Shape) {
        let path = self.path.join(".");
        let elements = shape.num_elements();
        match dtype {
            DType::QFloat(scheme) => {
                let total = quantized_data_len(&scheme, &shape);
                let scales = params_shape(&shape, &scheme).num_elements() * scale_size(scheme.scale_dtype())
                    + global_scale_size(&scheme);
                let scales = scales.min(total);
                self.out.push(TensorSize {
                    path: path.clone(),
                    component,
                    dtype: dtype.name().into(),
                    shape: shape.to_vec(),
                    elements,
                    bytes: total - scales,
                });
                self.out.push(TensorSize {
                    path: format!("{path}#scales"),
                    component: Component::QuantParams,
                    dtype: format!("{:?}", scheme.scale_dtype()).to_lowercase(),
                    shape: params_shape(&shape, &scheme).to_vec(),
                    elements: 0,
                    bytes: scales,
                });
            }
            _ => self.out.push(TensorSize {
                path,
                component,
                dtype: dtype.name().into(),
                shape: shape.to_vec(),
                elements,
                bytes: elements * dtype.size(),
            }),
        }
    }
}

impl ModuleVisitor for SizeVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.container.push(container_type.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.container.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let c = self.classify(false);
        let t = param.val();
        self.push(c, t.dtype(), t.shape());
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        let c = self.classify(false);
        let t = param.val();
        self.push(c, t.dtype(), t.shape());
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        let c = self.classify(true);
        let t = param.val();
        self.push(c, t.dtype(), t.shape());
    }
}
