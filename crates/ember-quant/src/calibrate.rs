//! Calibration: recording the inputs of Ember [`Linear`](crate::Linear) layers.
//!
//! Burn modules have no forward hooks, so Ember's `Linear` records its own input while a
//! [`Calibrator`] session that covers it is alive:
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use ember_quant::{Calibrator, CalibrationConfig, LinearConfig, ObserverConfig};
//! let device = Device::flex();
//! let layer = LinearConfig::new(8, 4).init(&device);
//! let session = Calibrator::new(&layer, &CalibrationConfig::new(ObserverConfig::percentile(99.9))).unwrap();
//! for _ in 0..4 {
//!     layer.forward(Tensor::<2>::random([16, 8], burn::tensor::Distribution::Default, &device));
//! }
//! let stats = session.finish().unwrap();
//! let layer_stats = &stats.layers[""];          // the path of the layer inside the model ("" = root)
//! assert_eq!(layer_stats.rows, 64);
//! assert_eq!(layer_stats.channel_l2.len(), 8);   // ‖X_j‖₂ per input channel (Wanda)
//! ```
//!
//! What is recorded per layer (keyed by the layer's module path, e.g. `encoder.layers.0.ffn.fc1`):
//! the chosen observer's clipping range (for static quantization), the observed min/max,
//! per-input-channel min, max and L2 norm (`‖X_j‖₂ = √Σ x_j²` over every row seen, the input
//! statistic of Wanda pruning and SmoothQuant), and a sample of input rows for the per-layer
//! error report. [`CalibrationData`] is plain data (serde), so it can be saved, inspected, or
//! handed to `ember-prune` (which does not depend on this crate).
//!
//! The session is process-wide but keyed by parameter ids, so concurrent sessions on different
//! models do not interfere. Recording reads each input back to the host: calibration runs at
//! host speed, not at inference speed.

use crate::error::{QuantError, Result};
use crate::observer::{Observer, ObserverConfig};
use crate::scheme::QuantDtype;
use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// Calibration settings.
#[derive(Config, Debug)]
pub struct CalibrationConfig {
    /// The observer that picks each layer's activation clipping range.
    pub observer: ObserverConfig,
    /// Input rows kept per layer for the per-layer error report (reservoir of the first rows).
    #[config(default = 64)]
    pub sample_rows: usize,
}

/// Statistics of one layer's input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// Input features.
    pub d_input: usize,
    /// Rows (tokens) observed.
    pub rows: u64,
    /// Observer name.
    pub observer: String,
    /// The observer's clipping range for affine u8 activations.
    pub range_u8: (f32, f32),
    /// The observer's clipping range for symmetric i8 activations.
    pub range_i8: (f32, f32),
    /// Smallest and largest value seen.
    pub min_max: (f32, f32),
    /// Per input channel minimum.
    pub channel_min: Vec<f32>,
    /// Per input channel maximum.
    pub channel_max: Vec<f32>,
    /// Per input channel L2 norm over every row seen, `‖X_j‖₂`.
    pub channel_l2: Vec<f32>,
    /// A sample of input rows, row-major `[samples, d_input]`.
    pub samples: Vec<f32>,
}

impl LayerStats {
    /// Per input channel maximum of |x| (SmoothQuant's activation statistic).
    pub fn channel_abs_max(&self) -> Vec<f32> {
        self.channel_min.iter().zip(&self.channel_max).map(|(a, b)| a.abs().max(b.abs())).collect()
    }

    /// The clipping range for `dtype`.
    pub fn range(&self, dtype: QuantDtype) -> (f32, f32) {
        match dtype {
            QuantDtype::U8Affine => self.range_u8,
            QuantDtype::I8Symmetric => self.range_i8,
        }
    }
}

/// Calibration results, keyed by layer path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationData {
    /// Per-layer statistics.
    pub layers: BTreeMap<String, LayerStats>,
}

impl CalibrationData {
    /// Input-channel L2 norms keyed by **weight parameter path** (`<layer>.weight`): the plain
    /// data `ember-prune`'s Wanda criterion takes.
    pub fn input_channel_norms(&self) -> BTreeMap<String, Vec<f32>> {
        self.layers
            .iter()
            .map(|(p, s)| {
                (if p.is_empty() { "weight".to_string() } else { format!("{p}.weight") }, s.channel_l2.clone())
            })
            .collect()
    }
}

struct Recorder {
    path: String,
    d_input: usize,
    observer: Box<dyn Observer>,
    rows: u64,
    cmin: Vec<f32>,
    cmax: Vec<f32>,
    sumsq: Vec<f64>,
    samples: Vec<f32>,
    sample_rows: usize,
    error: Option<QuantError>,
}

impl Recorder {
    fn observe(&mut self, x: &[f32]) {
        if self.error.is_some() {
            return;
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            self.error = Some(QuantError::NonFinite {
                what: format!("calibration input of layer `{}` (batch {})", self.path, self.rows),
                index: i,
                value: x[i],
            });
            return;
        }
        if let Err(e) = self.observer.observe(x) {
            self.error = Some(e);
            return;
        }
        let k = self.d_input;
        for row in x.chunks_exact(k) {
            for (j, &v) in row.iter().enumerate() {
                self.cmin[j] = self.cmin[j].min(v);
                self.cmax[j] = self.cmax[j].max(v);
                self.sumsq[j] += (v as f64) * (v as f64);
            }
            if self.samples.len() < self.sample_rows * k {
                self.samples.extend_from_slice(row);
            }
            self.rows += 1;
        }
    }
}

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
type Registry = HashMap<ParamId, Arc<Mutex<Recorder>>>;
static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Called by `Linear::forward` on float layers: records `x` if a session covers the layer.
pub(crate) fn record_input<const D: usize>(weight_id: ParamId, x: &Tensor<D>) {
    if ACTIVE.load(Ordering::Acquire) == 0 {
        return;
    }
    let rec = match REGISTRY.lock() {
        Ok(g) => g.get(&weight_id).cloned(),
        Err(_) => None,
    };
    let Some(rec) = rec else { return };
    let data = crate::linear::host_f32("calibration input", x.clone());
    if let Ok(mut r) = rec.lock() {
        match data {
            Ok(v) => r.observe(&v),
            Err(e) => {
                r.error.get_or_insert(e);
            }
        }
    }
}

/// Finds Ember `Linear` layers (float ones) in a module: (path, weight id, d_input).
#[derive(Default)]
pub(crate) struct LinearFinder {
    path: Vec<String>,
    weights: HashMap<String, (ParamId, Vec<usize>)>,
    /// Ember Linear layers: (path, weight id, weight dims).
    pub found: Vec<(String, ParamId, Vec<usize>)>,
    /// Ember Embedding tables: (path, weight id, weight dims).
    pub embeddings: Vec<(String, ParamId, Vec<usize>)>,
}

impl ModuleVisitor for LinearFinder {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        // Ember's layers announce their type through their tag ([`crate::tag`]), visited after
        // their `weight`; the path then ends with the tag's field name.
        let linear = crate::tag::is_linear(container_type);
        if linear || crate::tag::is_embedding(container_type) {
            let layer = self.path[..self.path.len().saturating_sub(1)].join(".");
            let wpath = if layer.is_empty() { "weight".to_string() } else { format!("{layer}.weight") };
            if let Some((id, dims)) = self.weights.get(&wpath) {
                let list = if linear { &mut self.found } else { &mut self.embeddings };
                list.push((layer, *id, dims.clone()));
            }
        }
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D == 2 {
            self.weights.insert(self.path.join("."), (param.id, param.lazy_shape().to_vec()));
        }
    }
}

/// A calibration session over every float Ember `Linear` of a model (see the
/// [module docs](self)). Dropping it without [`Calibrator::finish`] discards the statistics.
pub struct Calibrator {
    layers: Vec<(String, ParamId, Arc<Mutex<Recorder>>)>,
}

impl Calibrator {
    /// Starts recording the inputs of every float Ember `Linear` in `model`.
    ///
    /// # Errors
    /// [`QuantError::InvalidConfig`] for an invalid observer config; [`QuantError::Empty`] if
    /// `model` has no float Ember `Linear` (Burn's own `Linear` cannot record its inputs: change
    /// the field type to `ember_quant::Linear`).
    pub fn new<M: Module>(model: &M, config: &CalibrationConfig) -> Result<Self> {
        let proto = config.observer.build()?;
        let mut finder = LinearFinder::default();
        model.visit(&mut finder);
        let layers: Vec<_> = finder.found.into_iter().filter(|(_, _, dims)| dims[0] > 0).collect();
        if layers.is_empty() {
            return Err(QuantError::Empty {
                what: "model".into(),
                expected: "at least one float `ember_quant::Linear` layer to calibrate (Burn's own `Linear` \
                           cannot record its inputs)"
                    .into(),
            });
        }
        let mut out = Vec::new();
        let mut reg = REGISTRY.lock().map_err(|_| QuantError::Data {
            what: "calibration registry".into(),
            message: "poisoned by a panic in another thread".into(),
        })?;
        for (path, id, dims) in layers {
            let k = dims[0];
            let rec = Arc::new(Mutex::new(Recorder {
                path: path.clone(),
                d_input: k,
                observer: proto.fresh(),
                rows: 0,
                cmin: vec![f32::INFINITY; k],
                cmax: vec![f32::NEG_INFINITY; k],
                sumsq: vec![0.0; k],
                samples: Vec::new(),
                sample_rows: config.sample_rows,
                error: None,
            }));
            reg.insert(id, rec.clone());
            out.push((path, id, rec));
        }
        ACTIVE.fetch_add(1, Ordering::AcqRel);
        Ok(Calibrator { layers: out })
    }

    /// Paths of the layers this session records.
    pub fn layer_paths(&self) -> Vec<&str> {
        self.layers.iter().map(|(p, _, _)| p.as_str()).collect()
    }

    /// Ends the session and returns the statistics of every layer that saw at least one row
    /// (layers that never ran are left out; static conversion then reports them as
    /// [`QuantError::NotCalibrated`]).
    ///
    /// # Errors
    /// [`QuantError::NonFinite`] naming the layer and batch if any recorded input held NaN/Inf.
    pub fn finish(self) -> Result<CalibrationData> {
        let mut data = CalibrationData::default();
        for (path, _, rec) in &self.layers {
            let mut r = rec.lock().map_err(|_| QuantError::Data {
                what: path.clone(),
                message: "calibration recorder poisoned".into(),
            })?;
            if let Some(e) = r.error.take() {
                return Err(e);
            }
            if r.rows == 0 {
                continue;
            }
            let stats = LayerStats {
                d_input: r.d_input,
                rows: r.rows,
                observer: r.observer.name().to_string(),
                range_u8: r.observer.range(QuantDtype::U8Affine)?,
                range_i8: r.observer.range(QuantDtype::I8Symmetric)?,
                min_max: r.observer.min_max()?,
                channel_min: r.cmin.clone(),
                channel_max: r.cmax.clone(),
                channel_l2: r.sumsq.iter().map(|s| s.sqrt() as f32).collect(),
                samples: std::mem::take(&mut r.samples),
            };
            data.layers.insert(path.clone(), stats);
        }
        Ok(data)
    }
}

impl Drop for Calibrator {
    fn drop(&mut self) {
        if let Ok(mut reg) = REGISTRY.lock() {
            for (_, id, _) in &self.layers {
                reg.remove(id);
            }
        }
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
    }
}
