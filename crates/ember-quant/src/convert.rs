//! Whole-model conversion to int8 and the per-layer accuracy report.

use crate::calibrate::{CalibrationData, LinearFinder};
use crate::error::{QuantError, Result};
use crate::linear::host_f32;
use crate::report::{ErrorStats, LayerKind, LayerReport, QuantReport};
use crate::runtime::Prepared;
use crate::scheme::{QuantDtype, WeightGranularity, dequantize_weight, quantize_weight_with_scales};
use crate::spec::{ActivationGranularity, ActivationMode, LinearQuantSpec, SPEC_LEN};
use burn::config::Config;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use ember_kernels::{PackOptions, PackedB};
use std::collections::{BTreeMap, HashMap};

/// Settings of a whole-model int8 conversion.
#[derive(Config, Debug)]
pub struct QuantizeConfig {
    /// Dynamic (default) or static activations.
    #[config(default = "ActivationMode::Dynamic")]
    pub mode: ActivationMode,
    /// Activation integer type: affine u8 (default, like ONNX Runtime and fbgemm) or symmetric i8.
    #[config(default = "QuantDtype::U8Affine")]
    pub activation_dtype: QuantDtype,
    /// Dynamic-mode activation granularity (per row by default).
    #[config(default = "ActivationGranularity::PerRow")]
    pub activation_granularity: ActivationGranularity,
    /// Weight scale granularity (per output channel by default).
    #[config(default = "WeightGranularity::PerChannel")]
    pub weight: WeightGranularity,
    /// Layers to convert: regular expressions searched in each layer's weight path
    /// (`encoder.attention.0.query.weight`), see [`crate::select`]. Empty: every Ember
    /// `Linear`.
    #[config(default = "Vec::new()")]
    pub include: Vec<String>,
    /// Layers left in float (same syntax), applied after `include`.
    #[config(default = "Vec::new()")]
    pub exclude: Vec<String>,
    /// Also convert Ember [`Embedding`](crate::Embedding) tables (per-row symmetric i8), subject
    /// to the same patterns (ember-prune's `PruneConfig` has the same option, off there).
    #[config(default = true)]
    pub include_embeddings: bool,
    /// How weight clipping ranges are chosen: `None` (default) uses max |w| per channel (or per
    /// tensor / group), which never clips; an observer (for example
    /// [`ObserverConfig::Mse`](crate::ObserverConfig)) may clip outlier weights to lower the
    /// overall error. Per-tensor and per-channel granularity only.
    #[config(default = "None")]
    pub weight_observer: Option<crate::observer::ObserverConfig>,
}

/// Converts every selected Ember [`Linear`](crate::Linear) of a model to int8, the
/// `ModuleMapper`-style whole-model call. Layers are selected by path patterns
/// ([`QuantizeConfig`]) and optionally a Burn [`ParamGroup`] matched against each layer's
/// `weight` parameter.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use ember_quant::{LinearConfig, QuantizeConfig, Quantizer};
/// let device = Device::flex();
/// let layer = LinearConfig::new(64, 32).init(&device);
/// let (int8, report) = Quantizer::new(QuantizeConfig::new()).quantize(&layer).unwrap();
/// assert!(int8.is_quantized());
/// println!("{}", report.to_markdown());
/// let y = int8.forward(Tensor::<2>::ones([4, 64], &device));
/// assert_eq!(y.dims(), [4, 32]);
/// ```
///
/// Models trained with [`crate::qat`] fake quantization are folded first (`materialize`) and
/// each layer keeps the scales QAT learned, so the int8 weights are exactly the fake-quantized
/// ones (pruned zeros stay zero).
#[derive(Debug)]
pub struct Quantizer {
    config: QuantizeConfig,
    group: Option<ParamGroup>,
    calibration: Option<CalibrationData>,
    smoothing: BTreeMap<String, Vec<f32>>,
}

struct Planned {
    values: Vec<i8>,
    /// Shape of `values`.
    values_dims: [usize; 2],
    /// Shape of the emptied float weight.
    weight_dims: [usize; 2],
    scales: Vec<f32>,
    act: Vec<f32>,
    smooth: Vec<f32>,
    /// `None` for embeddings.
    spec: Option<LinearQuantSpec>,
    device: Device,
}

impl Quantizer {
    /// A quantizer with `config`.
    pub fn new(config: QuantizeConfig) -> Self {
        Quantizer { config, group: None, calibration: None, smoothing: BTreeMap::new() }
    }

    /// Only converts layers whose `weight` parameter `group` matches (by id or path).
    pub fn with_group(mut self, group: ParamGroup) -> Self {
        self.group = Some(group);
        self
    }

    /// Calibration statistics: required for static mode; in either mode their input samples
    /// give the report its per-layer output errors.
    pub fn with_calibration(mut self, data: CalibrationData) -> Self {
        self.calibration = Some(data);
        self
    }

    /// SmoothQuant factors for layers that keep them inside the activation quantizer (see
    /// [`crate::smooth`]), keyed by layer path.
    pub fn with_smoothing(mut self, factors: BTreeMap<String, Vec<f32>>) -> Self {
        self.smoothing = factors;
        self
    }

    fn selected(&self, selection: &ParamGroup, path: &str, id: &ParamId) -> bool {
        crate::select::selects(selection, path, id)
            && self.group.as_ref().is_none_or(|g| crate::select::selects(g, path, id))
    }

    /// Converts `model`, returning the int8 model and a per-layer report. `model` is not
    /// changed (modules are cheap to clone: tensors are shared).
    ///
    /// # Errors
    /// - [`QuantError::Empty`]: no float Ember `Linear` is selected;
    /// - [`QuantError::NotCalibrated`]: static mode and a selected layer has no statistics;
    /// - [`QuantError::NonFinite`]: NaN/Inf weights (the message names the layer);
    /// - [`QuantError::InvalidConfig`], [`QuantError::Shape`]: an include / exclude pattern that
    ///   is not a regular expression, invalid group size, smoothing factors of the wrong length.
    pub fn quantize<M: Module>(&self, model: &M) -> Result<(M, QuantReport)> {
        self.config.weight.validate()?;
        let selection = crate::select::selection(&self.config.include, &self.config.exclude)?;
        // LSQ scales live in the QAT reparameterizations: collect them before folding.
        let mut qat_scales = QatScales::default();
        model.visit(&mut qat_scales);
        let model = model.clone().materialize();
        let mut finder = LinearFinder::default();
        model.visit(&mut finder);
        let layers: Vec<_> =
            finder.found.into_iter().filter(|(p, id, dims)| dims[0] > 0 && self.selected(&selection, p, id)).collect();
        let embeddings: Vec<_> = if self.config.include_embeddings {
            finder
                .embeddings
                .into_iter()
                .filter(|(p, id, dims)| dims[0] > 0 && self.selected(&selection, p, id))
                .collect()
        } else {
            vec![]
        };
        if layers.is_empty() && embeddings.is_empty() {
            return Err(QuantError::Empty {
                what: "selection".into(),
                expected: "at least one float `ember_quant::Linear` matching the include/exclude patterns and group"
                    .into(),
            });
        }
        let mut reader = WeightReader {
            path: Vec::new(),
            wanted: layers.iter().chain(&embeddings).map(|l| l.0.clone()).collect(),
            ..Default::default()
        };
        model.visit(&mut reader);
        if let Some(e) = reader.error {
            return Err(e);
        }
        let mut plans = HashMap::new();
        let mut report = QuantReport::default();
        for (path, _, dims) in &layers {
            let (k, n) = (dims[0], dims[1]);
            let (w, device) = reader.weights.remove(path).ok_or_else(|| QuantError::Data {
                what: path.clone(),
                message: "weight not found during conversion".into(),
            })?;
            let bias = reader.biases.remove(path);
            let what = |m: &str| if path.is_empty() { m.to_string() } else { format!("{path}.{m}") };
            crate::error::check_finite(|| what("weight"), &w)?;
            let stats = self.calibration.as_ref().and_then(|c| c.layers.get(path));
            let act = match self.config.mode {
                ActivationMode::Dynamic => vec![],
                ActivationMode::Static => {
                    let s = stats.ok_or_else(|| QuantError::NotCalibrated { path: path.clone() })?;
                    if s.d_input != k {
                        return Err(QuantError::Shape {
                            what: format!("calibration statistics of `{path}`"),
                            expected: format!("d_input {k}"),
                            actual: format!("{}", s.d_input),
                        });
                    }
                    let (lo, hi) = s.range(self.config.activation_dtype);
                    let p = self.config.activation_dtype.params(lo, hi)?;
                    vec![p.scale, p.zero_point as f32]
                }
            };
            let smooth = self.smoothing.get(path).cloned().unwrap_or_default();
            let mut ws = w.clone();
            if !smooth.is_empty() {
                crate::scheme::apply_smoothing(&mut ws, k, n, &smooth, &format!("smoothing factors of `{path}`"))?;
            }
            let observed = match (&self.config.weight_observer, qat_scales.0.contains_key(path)) {
                (Some(obs), false) => Some(observed_weight_scales(obs, &ws, n, self.config.weight, path)?),
                _ => None,
            };
            let fixed = qat_scales
                .0
                .get(path)
                .filter(|s| s.len() == n && self.config.weight == WeightGranularity::PerChannel)
                .or(observed.as_ref());
            let (values, scales) =
                quantize_weight_with_scales(&ws, k, n, self.config.weight, fixed.map(|v| v.as_slice()))?;
            let spec = LinearQuantSpec {
                mode: self.config.mode,
                activation_dtype: self.config.activation_dtype,
                activation_granularity: self.config.activation_granularity,
                weight: self.config.weight,
                d_input: k,
                d_output: n,
            };
            report.layers.push(layer_report(
                path,
                &w,
                &ws,
                &values,
                &scales,
                &smooth,
                &act,
                bias.as_deref(),
                spec,
                stats,
            )?);
            plans.insert(
                path.clone(),
                Planned {
                    values,
                    values_dims: [k, n],
                    weight_dims: [0, n],
                    scales,
                    act,
                    smooth,
                    spec: Some(spec),
                    device,
                },
            );
        }
        for (path, _, dims) in &embeddings {
            let (rows, d) = (dims[0], dims[1]);
            let (w, device) = reader.weights.remove(path).ok_or_else(|| QuantError::Data {
                what: path.clone(),
                message: "embedding table not found during conversion".into(),
            })?;
            let (values, scales) = crate::embedding::quantize_rows_symmetric(&w, rows, d).map_err(|e| match e {
                QuantError::NonFinite { index, value, .. } => {
                    QuantError::NonFinite { what: format!("{path}.weight"), index, value }
                }
                other => other,
            })?;
            let deq: Vec<f32> = values.iter().enumerate().map(|(i, &q)| q as f32 * scales[i / d.max(1)]).collect();
            report.layers.push(LayerReport {
                path: path.clone(),
                d_input: rows,
                d_output: d,
                kind: LayerKind::Embedding,
                mode: ActivationMode::Dynamic,
                weight: WeightGranularity::PerChannel,
                activation_dtype: QuantDtype::I8Symmetric,
                weight_error: ErrorStats::between(&w, &deq),
                output_error: None,
                float_bytes: rows * d * 4,
                int8_bytes: rows * d + rows * 4,
            });
            plans.insert(
                path.clone(),
                Planned {
                    values,
                    values_dims: [rows, d],
                    weight_dims: [0, d],
                    scales,
                    act: vec![],
                    smooth: vec![],
                    spec: None,
                    device,
                },
            );
        }
        let mut mapper = Swapper { path: Vec::new(), plans, current: None };
        let model = model.map(&mut mapper);
        Ok((model, report))
    }
}

/// Symmetric weight scales from an observer's clipping range, per channel or per tensor.
fn observed_weight_scales(
    obs: &crate::observer::ObserverConfig,
    w: &[f32],
    n: usize,
    granularity: WeightGranularity,
    path: &str,
) -> Result<Vec<f32>> {
    let scale = |(lo, hi): (f32, f32)| QuantDtype::I8Symmetric.params(lo, hi).map(|p| p.scale);
    match granularity {
        WeightGranularity::PerTensor => {
            let mut o = obs.build()?;
            o.observe(w)?;
            Ok(vec![scale(o.range(QuantDtype::I8Symmetric)?)?])
        }
        WeightGranularity::PerChannel => {
            let proto = obs.build()?;
            let mut pc = crate::observer::PerChannel::new(proto.as_ref(), n);
            pc.observe_rows(w, n)?;
            pc.ranges(QuantDtype::I8Symmetric)?.into_iter().map(scale).collect()
        }
        WeightGranularity::PerGroup { .. } => Err(QuantError::UnsupportedScheme(format!(
            "a weight observer with per-group scales (layer `{path}`): groups use max |w|; use per-channel or \
             per-tensor scales with an observer"
        ))),
    }
}

/// LSQ scales learned by QAT, keyed by layer path (collected before folding).
#[derive(Default)]
struct QatScales(HashMap<String, Vec<f32>>, Vec<String>);

impl ModuleVisitor for QatScales {
    track_path!(1);
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let p = &self.1;
        let n = p.len();
        if D == 1
            && n >= 3
            && p[n - 1] == "scale"
            && p[n - 2] == crate::qat::FAKE_QUANT_NAME
            && p[n - 3] == "weight"
            && let Ok(v) = host_f32("qat scale", param.val())
        {
            self.0.insert(p[..n - 3].join("."), v.iter().map(|s| s.abs()).collect());
        }
    }
}

#[derive(Default)]
struct WeightReader {
    path: Vec<String>,
    wanted: std::collections::HashSet<String>,
    weights: HashMap<String, (Vec<f32>, Device)>,
    biases: HashMap<String, Vec<f32>>,
    error: Option<QuantError>,
}

impl ModuleVisitor for WeightReader {
    track_path!(path);
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some((field, layer)) = self.path.split_last() else { return };
        let layer = layer.join(".");
        if !self.wanted.contains(&layer) || self.error.is_some() {
            return;
        }
        let v = match host_f32(&self.path.join("."), param.val()) {
            Ok(v) => v,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        match field.as_str() {
            "weight" if D == 2 => {
                self.weights.insert(layer, (v, param.device()));
            }
            "bias" if D == 1 => {
                self.biases.insert(layer, v);
            }
            _ => {}
        }
    }
}

struct Swapper {
    path: Vec<String>,
    plans: HashMap<String, Planned>,
    current: Option<String>,
}

impl Swapper {
    fn layer_and_field(&self) -> Option<(String, String)> {
        let n = self.path.len();
        // `<layer>.weight` or `<layer>.quant.<field>`.
        if n >= 1 && self.path[n - 1] == "weight" {
            return Some((self.path[..n - 1].join("."), "weight".into()));
        }
        if n >= 2 && self.path[n - 2] == "quant" {
            return Some((self.path[..n - 2].join("."), self.path[n - 1].clone()));
        }
        None
    }
}

impl ModuleMapper for Swapper {
    track_path!(path);
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((layer, field)) = self.layer_and_field() else { return param };
        let Some(plan) = self.plans.get(&layer) else { return param };
        self.current = Some(layer);
        let d = &plan.device;
        let vec1 = |v: &Vec<f32>| Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), d);
        let t: Tensor<D> = match field.as_str() {
            "weight" if D == 2 => Tensor::zeros(reshape_dims::<D>(&plan.weight_dims), d),
            "scales" if D == 1 => vec1(&plan.scales).reshape(reshape_dims::<D>(&[plan.scales.len()])),
            "activation" if D == 1 => vec1(&plan.act).reshape(reshape_dims::<D>(&[plan.act.len()])),
            "smooth" if D == 1 => vec1(&plan.smooth).reshape(reshape_dims::<D>(&[plan.smooth.len()])),
            _ => return param,
        };
        let require_grad = field == "weight" && param.is_require_grad();
        Param::initialized(param.id, t).set_require_grad(require_grad)
    }
    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        let Some((layer, field)) = self.layer_and_field() else { return param };
        let Some(plan) = self.plans.get(&layer) else { return param };
        let d = &plan.device;
        match field.as_str() {
            "values" if D == 2 => Param::initialized(
                ParamId::new(),
                Tensor::from_data(
                    TensorData::new(plan.values.clone(), reshape_dims::<D>(&plan.values_dims)),
                    (d, DType::I8),
                ),
            ),
            "spec" if D == 1 => match &plan.spec {
                Some(spec) => Param::initialized(
                    param.id,
                    Tensor::from_data(TensorData::new(spec.encode(), reshape_dims::<D>(&[SPEC_LEN])), (d, DType::I32)),
                ),
                None => param,
            },
            _ => param,
        }
    }
}

fn reshape_dims<const D: usize>(dims: &[usize]) -> [usize; D] {
    let mut out = [1usize; D];
    out[..dims.len().min(D)].copy_from_slice(&dims[..dims.len().min(D)]);
    out
}

#[allow(clippy::too_many_arguments)]
fn layer_report(
    path: &str,
    w: &[f32],
    w_smoothed: &[f32],
    values: &[i8],
    scales: &[f32],
    smooth: &[f32],
    act: &[f32],
    bias: Option<&[f32]>,
    spec: LinearQuantSpec,
    stats: Option<&crate::calibrate::LayerStats>,
) -> Result<LayerReport> {
    let (k, n) = (spec.d_input, spec.d_output);
    let deq = dequantize_weight(values, k, n, spec.weight, scales);
    let weight_error = ErrorStats::between(w_smoothed, &deq);
    let output_error = match stats.filter(|s| !s.samples.is_empty() && s.d_input == k) {
        None => None,
        Some(s) => {
            let m = s.samples.len() / k;
            let mut reference = vec![0f32; m * n];
            for r in 0..m {
                let row = &s.samples[r * k..(r + 1) * k];
                let out = &mut reference[r * n..(r + 1) * n];
                if let Some(b) = bias {
                    out.copy_from_slice(b);
                }
                for (kk, &x) in row.iter().enumerate() {
                    if x != 0.0 {
                        let wr = &w[kk * n..(kk + 1) * n];
                        out.iter_mut().zip(wr).for_each(|(o, &wv)| *o += x * wv);
                    }
                }
            }
            let group_size = match spec.weight {
                WeightGranularity::PerGroup { group_size } => Some(group_size),
                _ => None,
            };
            let packed = PackedB::pack(values, k, n, PackOptions { group_size, ..PackOptions::default() })?;
            let prepared = Prepared {
                spec,
                packed,
                scales: scales.to_vec(),
                bias: bias.map(<[f32]>::to_vec),
                act: match act {
                    [s, z] => Some(ember_kernels::QuantParams { scale: *s, zero_point: *z as i32 }),
                    _ => None,
                },
                smooth_inv: if smooth.is_empty() { None } else { Some(smooth.iter().map(|s| 1.0 / s).collect()) },
            };
            let got = prepared.run(&s.samples, m)?;
            Some(ErrorStats::between(&reference, &got))
        }
    };
    Ok(LayerReport {
        path: path.to_string(),
        kind: LayerKind::Linear,
        d_input: k,
        d_output: n,
        mode: spec.mode,
        weight: spec.weight,
        activation_dtype: spec.activation_dtype,
        weight_error,
        output_error,
        float_bytes: (k * n + bias.map_or(0, |b| b.len())) * 4,
        int8_bytes: k * n + scales.len() * 4 + bias.map_or(0, |b| b.len()) * 4 + act.len() * 4 + smooth.len() * 4,
    })
}
