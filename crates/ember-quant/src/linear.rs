//! Ember's [`Linear`]: a drop-in for `burn::nn::Linear` that can hold int8 weights and run
//! Ember's int8 kernels.
//!
//! Same config fields ([`LinearConfig`] mirrors `burn::nn::LinearConfig`), same `weight`
//! (`[d_input, d_output]`) and `bias` fields and parameter paths, same `forward` signature. A
//! float `Linear` computes exactly what Burn's does. After [`Linear::quantize`] (or a whole-model
//! [`crate::Quantizer`]) it holds canonical i8 weights plus scales in its `quant` state, its
//! float `weight` becomes an empty `[0, d_output]` tensor (so saved models shrink about 4×), and
//! `forward` quantizes the input (dynamically or with calibrated static parameters) and runs the
//! int8 GEMM through a Burn backend extension on Flex and NdArray devices. Elsewhere (GPU,
//! autodiff devices, CPUs without a SIMD int8 kernel) it takes a float fallback that computes
//! the same quantized math with Burn float ops (see [`crate::runtime::Int8Route`]).

use crate::error::{QuantError, Result};
use crate::runtime::{Int8Route, OpStatus, Prepared, int8_route};
use crate::scheme::{QuantDtype, WeightGranularity, quantize_weight};
use crate::spec::{ActivationGranularity, ActivationMode, LinearQuantSpec};
use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::{Initializer, LinearLayout};
use burn::tensor::{DType, Device, Int, Tensor, TensorData, module::linear};
use ember_kernels::quantize::QuantParams;
use ember_kernels::{PackOptions, PackedB};
use std::sync::{Arc, Mutex};

/// Configuration of a [`Linear`]: the same fields and defaults as `burn::nn::LinearConfig`.
#[derive(Config, Debug)]
pub struct LinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether the layer has a bias.
    #[config(default = true)]
    pub bias: bool,
    /// Weight initializer (Burn's default, Kaiming uniform with gain 1/√3).
    #[config(default = "Initializer::KaimingUniform{gain:1.0/3.0f64.sqrt(), fan_out_only:false}")]
    pub initializer: Initializer,
    /// Storage layout of the weight (`Row`: `[d_input, d_output]`; `Col`: stored `[d_output,
    /// d_input]` and transposed on load and save, as in Burn).
    #[config(default = "LinearLayout::Row")]
    pub layout: LinearLayout,
}

impl LinearConfig {
    /// Initializes a float layer exactly as `burn::nn::LinearConfig::init` does (same
    /// initializer calls, so the same seed gives the same weights).
    pub fn init(&self, device: &Device) -> Linear {
        let cfg = burn::nn::LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .with_layout(self.layout);
        Linear::from(cfg.init(device))
    }
}

/// The int8 state of a [`Linear`]: empty tensors while the layer is float.
#[derive(Module, Debug)]
pub struct LinearQuantState {
    /// Canonical symmetric i8 weights `[d_input, d_output]` (`DType::I8`), row-major like
    /// `Linear::weight`; `[0, 0]` while float.
    pub values: Param<Tensor<2, Int>>,
    /// Weight scales: 1 (per tensor), `d_output` (per channel) or `ceil(d_input / g) · d_output`
    /// (per group, row-major `[groups, d_output]`).
    pub scales: Param<Tensor<1>>,
    /// Static activation parameters `[scale, zero_point]`; empty in dynamic mode.
    pub activation: Param<Tensor<1>>,
    /// SmoothQuant divisors `[d_input]` applied to the input inside the quantizer (the weights
    /// were multiplied by them before quantization); empty when not smoothed.
    pub smooth: Param<Tensor<1>>,
    /// The encoded [`LinearQuantSpec`] (`Int`, 9 values); empty while float.
    pub spec: Param<Tensor<1, Int>>,
}

/// Packed weights, built at first use and shared by clones of the layer.
#[derive(Clone, Debug, Default)]
pub(crate) struct PreparedCache(Arc<Mutex<CacheSlot>>);

/// The packed weights and the id of the values they were packed from.
type CacheSlot = Option<(ParamId, Arc<Prepared>)>;

impl PreparedCache {
    pub(crate) fn lock(&self) -> std::sync::LockResult<std::sync::MutexGuard<'_, CacheSlot>> {
        self.0.lock()
    }
}

/// A linear layer `y = x·W + b`, float or int8. See the [module docs](self).
#[derive(Module, Debug)]
pub struct Linear {
    /// Float weights `[d_input, d_output]`; `[0, d_output]` once quantized.
    pub weight: Param<Tensor<2>>,
    /// Optional bias `[d_output]` (kept in f32 when quantized).
    pub bias: Option<Param<Tensor<1>>>,
    /// Int8 weights, scales and spec (empty while float).
    pub quant: LinearQuantState,
    /// Marks this module as Ember's `Linear` for whole-model passes ([`crate::tag`]).
    tag: crate::tag::LayerTag<Linear>,
    #[module(skip)]
    cache: PreparedCache,
    #[module(skip)]
    words: crate::words::WordCache,
}

impl From<burn::nn::Linear> for Linear {
    fn from(l: burn::nn::Linear) -> Self {
        let device = l.weight.device();
        Linear {
            weight: l.weight,
            bias: l.bias,
            quant: LinearQuantState::empty(&device),
            tag: Default::default(),
            cache: PreparedCache::default(),
            words: Default::default(),
        }
    }
}

fn float_param<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::initialized(ParamId::new(), t).set_require_grad(false)
}

impl LinearQuantState {
    /// The state of a float layer: empty tensors on `device`.
    pub fn empty(device: &Device) -> Self {
        LinearQuantState {
            values: Param::initialized(
                ParamId::new(),
                Tensor::from_data(TensorData::new(Vec::<i8>::new(), [0, 0]), (device, DType::I8)),
            ),
            scales: float_param(Tensor::from_data(TensorData::new(Vec::<f32>::new(), [0]), device)),
            activation: float_param(Tensor::from_data(TensorData::new(Vec::<f32>::new(), [0]), device)),
            smooth: float_param(Tensor::from_data(TensorData::new(Vec::<f32>::new(), [0]), device)),
            spec: Param::initialized(
                ParamId::new(),
                Tensor::from_data(TensorData::new(Vec::<i32>::new(), [0]), (device, DType::I32)),
            ),
        }
    }
}

/// How to quantize one layer (the per-layer part of [`crate::QuantizeConfig`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerQuantization {
    /// Dynamic or static activations.
    pub mode: ActivationMode,
    /// Activation integer type.
    pub activation_dtype: QuantDtype,
    /// Dynamic-mode granularity.
    pub activation_granularity: ActivationGranularity,
    /// Weight scale granularity.
    pub weight: WeightGranularity,
    /// Static activation parameters (required in static mode).
    pub activation_params: Option<QuantParams>,
    /// SmoothQuant divisors per input channel: the input is divided by them inside the
    /// quantizer and the weight rows multiplied by them, an exact rewrite in f32.
    pub smooth: Option<Vec<f32>>,
}

impl Default for LayerQuantization {
    fn default() -> Self {
        LayerQuantization {
            mode: ActivationMode::Dynamic,
            activation_dtype: QuantDtype::U8Affine,
            activation_granularity: ActivationGranularity::PerRow,
            weight: WeightGranularity::PerChannel,
            activation_params: None,
            smooth: None,
        }
    }
}

pub(crate) fn host_f32<const D: usize>(what: &str, t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| QuantError::Data { what: what.into(), message: format!("{e:?}") })
}

/// An `Int` tensor's values on the host as `E` (i8 values, i64 specs).
pub(crate) fn host_int<E: burn::tensor::Element, const D: usize>(what: &str, t: Tensor<D, Int>) -> Result<Vec<E>> {
    t.into_data()
        .convert::<E>()
        .try_into_vec::<E>()
        .map_err(|e| QuantError::Data { what: what.into(), message: format!("{e:?}") })
}

impl Linear {
    /// Assembles a layer from its parts (the packing cache starts empty).
    pub fn from_parts(weight: Param<Tensor<2>>, bias: Option<Param<Tensor<1>>>, quant: LinearQuantState) -> Self {
        Linear {
            weight,
            bias,
            quant,
            tag: Default::default(),
            cache: PreparedCache::default(),
            words: Default::default(),
        }
    }

    /// Input features.
    pub fn d_input(&self) -> usize {
        match self.quant_spec() {
            Some(s) => s.d_input,
            None => self.weight.dims()[0],
        }
    }

    /// Output features.
    pub fn d_output(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Whether the layer holds int8 weights.
    pub fn is_quantized(&self) -> bool {
        self.quant.spec.dims()[0] != 0
    }

    /// The layer's quantization spec, `None` while float (or if the stored spec is malformed;
    /// [`Linear::try_quant_spec`] says why).
    pub fn quant_spec(&self) -> Option<LinearQuantSpec> {
        self.try_quant_spec().ok().flatten()
    }

    /// The layer's quantization spec, `Ok(None)` while float.
    ///
    /// # Errors
    /// [`QuantError::Data`] if the stored spec is malformed (for example loaded from a file of
    /// another format version).
    pub fn try_quant_spec(&self) -> Result<Option<LinearQuantSpec>> {
        if !self.is_quantized() {
            return Ok(None);
        }
        if let Ok(g) = self.cache.0.lock()
            && let Some((id, p)) = g.as_ref()
            && *id == self.quant.values.id
        {
            return Ok(Some(p.spec));
        }
        let v = host_int::<i64, 1>("quant.spec", self.quant.spec.val())?;
        LinearQuantSpec::decode("quant.spec", &v).map(Some)
    }

    /// Converts the layer to int8 with `q` (weights quantized symmetric i8 with the chosen
    /// granularity, the float weight replaced by an empty `[0, d_output]` tensor). Parameter ids
    /// of `weight` and `bias` are kept. Packing happens at first use.
    ///
    /// # Errors
    /// - [`QuantError::NonFinite`] for NaN/Inf weights;
    /// - [`QuantError::InvalidConfig`] for static mode without activation parameters;
    /// - [`QuantError::Shape`] for smoothing factors of the wrong length;
    /// - [`QuantError::InvalidConfig`] for an invalid group size or an already-quantized layer.
    pub fn quantize(self, q: &LayerQuantization) -> Result<Linear> {
        if self.is_quantized() {
            return Err(QuantError::InvalidConfig {
                what: "layer",
                value: "already int8".into(),
                expected: "a float layer (dequantize with `to_float` first)".into(),
            });
        }
        q.weight.validate()?;
        let [k, n] = self.weight.dims();
        let device = self.weight.device();
        let mut w = host_f32("weight", self.weight.val())?;
        if let Some(s) = &q.smooth {
            crate::scheme::apply_smoothing(&mut w, k, n, s, "smooth")?;
        }
        let (values, scales) = quantize_weight(&w, k, n, q.weight)?;
        let activation = match q.mode {
            ActivationMode::Dynamic => vec![],
            ActivationMode::Static => {
                let p = q.activation_params.ok_or_else(|| QuantError::InvalidConfig {
                    what: "activation_params",
                    value: "None".into(),
                    expected: "calibrated [scale, zero point] for static mode (from a Calibrator run, or use \
                               ActivationMode::Dynamic)"
                        .into(),
                })?;
                let (lo, hi) = match q.activation_dtype {
                    QuantDtype::U8Affine => (0, 255),
                    QuantDtype::I8Symmetric => (0, 0),
                };
                p.validate(lo, hi.max(lo)).map_err(QuantError::from)?;
                vec![p.scale, p.zero_point as f32]
            }
        };
        let spec = LinearQuantSpec {
            mode: q.mode,
            activation_dtype: q.activation_dtype,
            activation_granularity: q.activation_granularity,
            weight: q.weight,
            d_input: k,
            d_output: n,
        };
        let quant = LinearQuantState {
            values: Param::initialized(
                self.quant.values.id,
                Tensor::from_data(TensorData::new(values, [k, n]), (&device, DType::I8)),
            ),
            scales: Param::initialized(
                self.quant.scales.id,
                Tensor::from_data(TensorData::new(scales.clone(), [scales.len()]), &device),
            )
            .set_require_grad(false),
            activation: Param::initialized(
                self.quant.activation.id,
                Tensor::from_data(TensorData::new(activation.clone(), [activation.len()]), &device),
            )
            .set_require_grad(false),
            smooth: Param::initialized(
                self.quant.smooth.id,
                Tensor::from_data(
                    TensorData::new(q.smooth.clone().unwrap_or_default(), [q.smooth.as_ref().map_or(0, Vec::len)]),
                    &device,
                ),
            )
            .set_require_grad(false),
            spec: Param::initialized(
                self.quant.spec.id,
                Tensor::from_data(TensorData::new(spec.encode(), [crate::spec::SPEC_LEN]), (&device, DType::I32)),
            ),
        };
        let weight = Param::initialized(self.weight.id, Tensor::<2>::zeros([0, n], &device));
        // A new ParamId for the values keys the packing cache to these weights.
        let quant = LinearQuantState { values: Param::initialized(ParamId::new(), quant.values.val()), ..quant };
        Ok(Linear::from_parts(weight, self.bias, quant))
    }

    /// The effective float weight `[d_input, d_output]`: the stored one for a float layer, the
    /// dequantized int8 weight (divided back by any SmoothQuant factors) for an int8 layer.
    ///
    /// # Errors
    /// [`QuantError::Data`] if the int8 state is malformed.
    pub fn effective_weight(&self) -> Result<Tensor<2>> {
        if !self.is_quantized() {
            return Ok(self.weight.val());
        }
        let p = self.prepared()?;
        let device = self.quant.values.device();
        let w = self.dequantized_weight(&p, &device)?;
        Ok(match &p.smooth_inv {
            Some(inv) => {
                w * Tensor::<1>::from_data(TensorData::new(inv.clone(), [inv.len()]), &device).unsqueeze_dim::<2>(1)
            }
            None => w,
        })
    }

    /// A float copy of the layer: the same weights for a float layer; the dequantized weights
    /// (what the int8 layer computes with, up to activation quantization) for an int8 layer.
    ///
    /// # Errors
    /// As [`Linear::effective_weight`].
    pub fn to_float(&self) -> Result<Linear> {
        let w = self.effective_weight()?;
        let device = w.device();
        Ok(Linear::from_parts(
            Param::initialized(self.weight.id, w),
            self.bias.clone(),
            LinearQuantState::empty(&device),
        ))
    }

    /// Converts to `burn::nn::Linear` (dequantizing an int8 layer, see [`Linear::to_float`]).
    ///
    /// # Errors
    /// As [`Linear::effective_weight`].
    pub fn to_burn(&self) -> Result<burn::nn::Linear> {
        let f = self.to_float()?;
        Ok(burn::nn::Linear { weight: f.weight, bias: f.bias })
    }

    /// A float layer keeping only the output features (weight columns and bias entries) at
    /// `keep`, in that order: the physical form of removing output neurons. The new
    /// parameters get new ids (their shapes changed; optimizer state for the old ones does not
    /// apply).
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use ember_quant::LinearConfig;
    /// let device = Device::flex();
    /// let layer = LinearConfig::new(4, 6).init(&device);
    /// let small = layer.retain_outputs(&[0, 2, 5]).unwrap();
    /// assert_eq!((small.d_input(), small.d_output()), (4, 3));
    /// let x = Tensor::<2>::ones([1, 4], &device);
    /// let (full, part) = (layer.forward(x.clone()), small.forward(x));
    /// assert!(full.select(1, Tensor::from_ints([0, 2, 5], &device)).equal(part).all().into_scalar::<bool>());
    /// ```
    ///
    /// # Errors
    /// [`QuantError::InvalidConfig`] for an int8 layer (remove structure while float, then
    /// convert), an empty `keep`, or indices that are out of range, repeated or not ascending.
    pub fn retain_outputs(&self, keep: &[usize]) -> Result<Linear> {
        check_retain(self, keep, self.d_output(), "output")?;
        let idx = index_tensor(keep, &self.weight.device());
        let weight = self.weight.val().select(1, idx.clone()).detach();
        let bias = self.bias.as_ref().map(|b| b.val().select(0, idx).detach());
        Ok(self.rebuilt(weight, bias))
    }

    /// A float layer keeping only the input features (weight rows) at `keep`: what the layer
    /// after a removed neuron keeps. The bias is unchanged.
    ///
    /// # Errors
    /// As [`Linear::retain_outputs`].
    pub fn retain_inputs(&self, keep: &[usize]) -> Result<Linear> {
        check_retain(self, keep, self.d_input(), "input")?;
        let idx = index_tensor(keep, &self.weight.device());
        let weight = self.weight.val().select(0, idx).detach();
        let bias = self.bias.as_ref().map(|b| b.val().detach());
        Ok(self.rebuilt(weight, bias))
    }

    /// A float layer from new weight and bias values (new parameter ids; the bias keeps its id
    /// when its shape is unchanged), with `requires_grad` as the old weight.
    fn rebuilt(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Linear {
        let grad = self.weight.is_require_grad();
        let device = weight.device();
        let weight = Param::initialized(ParamId::new(), weight).set_require_grad(grad);
        let bias = bias.map(|b| {
            let same = self.bias.as_ref().is_some_and(|old| old.dims() == b.dims());
            let id = if same { self.bias.as_ref().map_or_else(ParamId::new, |o| o.id) } else { ParamId::new() };
            Param::initialized(id, b).set_require_grad(grad)
        });
        Linear::from_parts(weight, bias, LinearQuantState::empty(&device))
    }

    /// Reads the int8 state and packs the weights (once per set of weights; clones share it).
    pub(crate) fn prepared(&self) -> Result<Arc<Prepared>> {
        let id = self.quant.values.id;
        if let Ok(g) = self.cache.0.lock()
            && let Some((cid, p)) = g.as_ref()
            && *cid == id
        {
            return Ok(p.clone());
        }
        let spec = self
            .try_quant_spec()?
            .ok_or_else(|| QuantError::Data { what: "quant".into(), message: "the layer is not quantized".into() })?;
        let (k, n) = (spec.d_input, spec.d_output);
        let bad = |what: &str, message: String| QuantError::Data { what: what.into(), message };
        let vdims = self.quant.values.dims();
        if vdims != [k, n] {
            return Err(bad("quant.values", format!("shape {vdims:?}, the spec says [{k}, {n}]")));
        }
        let values = host_int::<i8, 2>("quant.values", self.quant.values.val())?;
        let scales = host_f32("quant.scales", self.quant.scales.val())?;
        if scales.len() != spec.num_weight_scales() {
            return Err(bad(
                "quant.scales",
                format!("{} scales, the spec ({:?}) needs {}", scales.len(), spec.weight, spec.num_weight_scales()),
            ));
        }
        if let Some(i) = scales.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad("quant.scales", format!("scale {} at {i} is not finite and positive", scales[i])));
        }
        let act = host_f32("quant.activation", self.quant.activation.val())?;
        let act = match (spec.mode, act.as_slice()) {
            (ActivationMode::Dynamic, _) => None,
            (ActivationMode::Static, [s, z]) => {
                let p = QuantParams { scale: *s, zero_point: *z as i32 };
                let (lo, hi) = match spec.activation_dtype {
                    QuantDtype::U8Affine => (0, 255),
                    QuantDtype::I8Symmetric => (0, 0),
                };
                p.validate(lo, hi)?;
                Some(p)
            }
            (ActivationMode::Static, other) => {
                return Err(bad(
                    "quant.activation",
                    format!("{} values, static mode needs [scale, zero_point]", other.len()),
                ));
            }
        };
        let smooth = host_f32("quant.smooth", self.quant.smooth.val())?;
        let smooth_inv = match smooth.len() {
            0 => None,
            l if l == k => {
                if let Some(i) = smooth.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
                    return Err(bad("quant.smooth", format!("factor {} at {i} is not finite and positive", smooth[i])));
                }
                Some(smooth.iter().map(|s| 1.0 / s).collect())
            }
            l => return Err(bad("quant.smooth", format!("{l} factors, expected 0 or d_input = {k}"))),
        };
        let bias = match &self.bias {
            Some(b) => {
                let b = host_f32("bias", b.val())?;
                crate::error::check_finite(|| "bias".into(), &b)?;
                Some(b)
            }
            None => None,
        };
        let group_size = match spec.weight {
            WeightGranularity::PerGroup { group_size } => Some(group_size),
            _ => None,
        };
        let packed = PackedB::pack(&values, k, n, PackOptions { group_size, ..PackOptions::default() })?;
        let p = Arc::new(Prepared { spec, packed, scales, bias, act, smooth_inv });
        if let Ok(mut g) = self.cache.0.lock() {
            *g = Some((id, p.clone()));
        }
        Ok(p)
    }

    /// The int8 weights times their scales, on `device` (via i32 words where the device's
    /// kernels have no i8, see `words.rs`).
    fn dequantized_weight(&self, p: &Prepared, device: &Device) -> Result<Tensor<2>> {
        let (k, n) = (p.spec.d_input, p.spec.d_output);
        let v = self.words.float_values(&self.quant.values, device)?;
        Ok(match p.spec.weight {
            WeightGranularity::PerTensor => v.mul_scalar(p.scales[0]),
            WeightGranularity::PerChannel => {
                v * Tensor::<1>::from_data(TensorData::new(p.scales.clone(), [n]), device).unsqueeze::<2>()
            }
            WeightGranularity::PerGroup { group_size } => {
                let groups = k.div_ceil(group_size);
                let idx: Vec<i32> = (0..k).map(|r| (r / group_size) as i32).collect();
                let s = Tensor::<2>::from_data(TensorData::new(p.scales.clone(), [groups, n]), device)
                    .select(0, Tensor::<1, Int>::from_data(TensorData::new(idx, [k]), device));
                v * s
            }
        })
    }

    /// Forward pass, as `burn::nn::Linear::forward`: `input` is `[..., d_input]`, the output
    /// `[..., d_output]`.
    ///
    /// An int8 layer whose input holds NaN or ±Inf takes the float fallback, so the non-finite
    /// values propagate as they would through a float layer instead of failing;
    /// [`Linear::try_forward`] reports them as an error.
    ///
    /// # Panics
    /// If the last dimension of `input` is not `d_input` (as Burn's `Linear`), if the int8
    /// state is malformed, or if a GPU device fails to read the int8 values back to re-lay them
    /// (use [`Linear::try_forward`] to get an error instead).
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        match self.try_forward(input.clone()) {
            Ok(y) => y,
            Err(QuantError::NonFinite { .. })
            | Err(QuantError::Kernel(ember_kernels::KernelError::NonFinite { .. })) => {
                let p = self.prepared().expect("int8 state was readable a moment ago");
                self.forward_fallback(input, &p).unwrap_or_else(|e| panic!("ember_quant::Linear::forward: {e}"))
            }
            Err(e) => panic!("ember_quant::Linear::forward: {e}"),
        }
    }

    /// Forward pass that reports problems as errors instead of panicking.
    ///
    /// # Errors
    /// - [`QuantError::Shape`]: the last dimension of `input` is not `d_input`;
    /// - [`QuantError::NonFinite`] / [`QuantError::Kernel`]: NaN or ±Inf in the input of an
    ///   int8 layer on the kernel route;
    /// - [`QuantError::Data`]: malformed int8 state.
    pub fn try_forward<const D: usize>(&self, input: Tensor<D>) -> Result<Tensor<D>> {
        let d_in = self.d_input();
        let dims = input.dims();
        if D == 0 || dims[D - 1] != d_in {
            return Err(QuantError::Shape {
                what: "Linear input".into(),
                expected: format!("[..., {d_in}]"),
                actual: format!("{dims:?}"),
            });
        }
        if dims.contains(&0) {
            // Nothing to compute (and Burn's Flex matmul crashes on an empty operand).
            let mut out = dims;
            out[D - 1] = self.d_output();
            return Ok(Tensor::zeros(out, &input.device()));
        }
        if !self.is_quantized() {
            crate::calibrate::record_input(self.weight.id, &input);
            let weight = self.weight.val();
            let rows: usize = dims[..D - 1].iter().product();
            if rows <= ember_kernels::sgemm::SMALL_M
                && input.dtype() == DType::F32
                && weight.dtype() == DType::F32
                && crate::runtime::f32_route(&input.device())
            {
                // Ember's f32 GEMM for small inputs on CPU devices without autodiff: it streams
                // the weight rows in order (see `ember_kernels::sgemm`).
                let bias = match &self.bias {
                    Some(b) => Some(
                        b.val()
                            .into_data()
                            .try_into_vec::<f32>()
                            .map_err(|e| QuantError::Data { what: "bias".into(), message: format!("{e:?}") })?,
                    ),
                    None => None,
                };
                let status = OpStatus::default();
                use crate::ext::EmberInt8Ops;
                let out = burn::backend::Dispatch::ember_f32_linear(
                    input.into_dispatch(),
                    weight.into_dispatch(),
                    bias.as_deref(),
                    &status,
                );
                return match status.take() {
                    Some(e) => Err(e),
                    None => Ok(Tensor::from_dispatch(out)),
                };
            }
            return Ok(linear(input, weight, self.bias.as_ref().map(|b| b.val())));
        }
        let p = self.prepared()?;
        match int8_route(&input.device()) {
            Int8Route::Kernels if input.dtype() == DType::F32 => {
                let status = OpStatus::default();
                use crate::ext::EmberInt8Ops;
                let out = burn::backend::Dispatch::ember_int8_linear(input.into_dispatch(), &p, &status);
                match status.take() {
                    Some(e) => Err(e),
                    None => Ok(Tensor::from_dispatch(out)),
                }
            }
            _ => self.forward_fallback(input, &p),
        }
    }

    /// The float fallback: the same quantized math with Burn float ops (works on any device,
    /// with autodiff: the input gradient flows through the straight-through estimator).
    fn forward_fallback<const D: usize>(&self, input: Tensor<D>, p: &Prepared) -> Result<Tensor<D>> {
        let device = input.device();
        let w = self.dequantized_weight(p, &device)?;
        let x = match &p.smooth_inv {
            Some(inv) => {
                input * Tensor::<1>::from_data(TensorData::new(inv.clone(), [inv.len()]), &device).unsqueeze::<D>()
            }
            None => input,
        };
        let x = crate::fake::fake_quantize_activation(x, &p.spec, p.act);
        Ok(linear(x, w, self.bias.as_ref().map(|b| b.val().to_device(&device))))
    }
}

/// `keep` must be non-empty, ascending, unique and below `width`, and the layer float.
fn check_retain(layer: &Linear, keep: &[usize], width: usize, what: &'static str) -> Result<()> {
    let bad = |value: String, expected: String| QuantError::InvalidConfig { what, value, expected };
    if layer.is_quantized() {
        return Err(bad(
            "an int8 layer".into(),
            format!("a float layer: remove {what} features (heads, neurons) before converting to int8"),
        ));
    }
    if keep.is_empty() {
        return Err(bad("[]".into(), format!("at least one of the {width} {what} features to keep")));
    }
    if let Some(w) = keep.windows(2).find(|w| w[0] >= w[1]) {
        return Err(bad(format!("{} then {}", w[0], w[1]), "ascending indices without repeats".into()));
    }
    if let Some(&i) = keep.iter().find(|&&i| i >= width) {
        return Err(bad(i.to_string(), format!("indices below the layer's {width} {what} features")));
    }
    Ok(())
}

fn index_tensor(keep: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = keep.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [keep.len()]), device)
}
