//! Quantization-aware training (QAT) of weights, on any device, for any model.
//!
//! [`prepare_qat`] attaches a [`FakeQuantWeight`] reparameterization (Burn's
//! `Reparameterization`, so it survives training, saving and device moves) to the weight of
//! every selected `Linear` — Burn's `burn::nn::Linear` and Ember's [`crate::Linear`] alike. Each
//! forward pass then sees fake-quantized symmetric i8 weights:
//! - [`QatMethod::Ste`]: per-channel (or per-tensor) min/max scales recomputed from the current
//!   weights every step, clipped straight-through gradient (see [`crate::fake`]);
//! - [`QatMethod::Lsq`]: learnable step sizes (LSQ, Esser et al. 2020), initialised at
//!   `max|w|/127` (the min/max step that 8-bit QAT starts from, as torchao's learnable fake
//!   quantizer does; the paper's `2⟨|w|⟩/√Q_P` targets 2–4 bits), gradient scale
//!   `g = 1/√(N·Q_P)` with `N` the weights per scale.
//!
//! Weights that are exactly zero when QAT starts (pruned ones) are frozen at zero when
//! [`QatConfig::preserve_zeros`] is on: one reparameterization per parameter is all Burn allows,
//! so the keep-mask and the fake quantizer are composed in this one. Conversion with
//! [`crate::Quantizer`] then folds the fake quantizer and uses the learned LSQ scales, so the
//! int8 weights are exactly the fake-quantized values and the pruned zeros stay zero.
//!
//! ```
//! use burn::module::Module;
//! use burn::tensor::{Device, Tensor};
//! use ember_quant::{qat::{prepare_qat, QatConfig}, LinearConfig, QuantizeConfig, Quantizer};
//! let device = Device::flex().autodiff();
//! let layer = LinearConfig::new(16, 8).init(&device);
//! let layer = prepare_qat(layer, &QatConfig::new()).unwrap();
//! let x = Tensor::<2>::ones([2, 16], &device);
//! let grads = layer.forward(x).sum().backward();
//! assert!(layer.weight.grad(&grads).is_some());
//! // ... optimizer steps ..., then:
//! let (int8, _report) = Quantizer::new(QuantizeConfig::new()).quantize(&layer.valid()).unwrap();
//! assert!(int8.is_quantized());
//! ```
//!
//! Activations are not fake-quantized during QAT: the int8 layers quantize them dynamically
//! (per row), which is how dynamic int8 transformers run.

use crate::error::{QuantError, Result};
use crate::fake::{fake_quantize_per_channel, lsq_fake_quantize};
use crate::scheme::{QuantDtype, WeightGranularity};
use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param, ParamId, Reparameterization, Reparameterizer};
use burn::tensor::{Bool, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The path component of the fake quantizer's parameters (`<layer>.weight.ember_fake_quant.scale`).
pub const FAKE_QUANT_NAME: &str = "ember_fake_quant";

/// How the weights' step sizes are obtained during QAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum QatMethod {
    /// Min/max scales recomputed each step; clipped straight-through estimator.
    #[default]
    Ste,
    /// Learnable step sizes (LSQ).
    Lsq,
}

/// QAT settings.
#[derive(Config, Debug)]
pub struct QatConfig {
    /// STE (default) or LSQ.
    #[config(default = "QatMethod::Ste")]
    pub method: QatMethod,
    /// Per-channel (default) or per-tensor weight scales (per-group is not supported in QAT).
    #[config(default = "WeightGranularity::PerChannel")]
    pub weight: WeightGranularity,
    /// Keep weights that are exactly zero at preparation (pruned ones) at zero.
    #[config(default = true)]
    pub preserve_zeros: bool,
    /// Layers to fake-quantize: regular expressions over weight paths ([`crate::select`]); empty: all.
    #[config(default = "Vec::new()")]
    pub include: Vec<String>,
    /// Layers left alone (same syntax as `include`), applied after it.
    #[config(default = "Vec::new()")]
    pub exclude: Vec<String>,
}

/// The fake quantizer attached to one weight (a Burn `Reparameterization`).
#[derive(Module, Debug)]
pub struct FakeQuantWeight {
    /// LSQ step sizes (`[1]` or `[d_output]`); `None` for STE.
    pub scale: Option<Param<Tensor<1>>>,
    /// Flattened keep-mask (false = frozen at zero); `None` when nothing is frozen.
    pub keep: Option<Param<Tensor<1, Bool>>>,
    /// One scale per channel of the last dimension (else one per tensor).
    pub per_channel: bool,
    /// LSQ gradient scale.
    pub grad_scale: f32,
}

fn amax_scales<const D: usize>(w: Tensor<D>, per_channel: bool) -> Tensor<1> {
    let dims = w.dims();
    let n = dims[D - 1];
    let rows = w.dims().iter().product::<usize>() / n.max(1);
    let a = if per_channel {
        let w2: Tensor<2> = w.abs().reshape([rows, n]);
        w2.max_dim(0).reshape([n])
    } else {
        w.abs().max().reshape([1])
    };
    let s = a.div_scalar(127.0);
    s.clone().mask_fill(s.equal_elem(0.0), 1.0).detach()
}

impl Reparameterization for FakeQuantWeight {
    const NAME: &'static str = FAKE_QUANT_NAME;

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let w = match &self.keep {
            Some(k) => {
                let keep: Tensor<D, Bool> = k.val().reshape(base.shape());
                base.mask_fill(keep.bool_not(), 0.0)
            }
            None => base,
        };
        match &self.scale {
            Some(s) => lsq_fake_quantize(w, s.val(), QuantDtype::I8Symmetric, self.grad_scale),
            None => {
                let s = amax_scales(w.clone(), self.per_channel);
                let s = if self.per_channel { s } else { s.expand([w.dims()[D - 1]]) };
                fake_quantize_per_channel(w, s, QuantDtype::I8Symmetric)
            }
        }
    }
}

/// The weights of every `Linear`: Ember's, recognised by their type tag ([`crate::tag`]), and
/// Burn's `burn::nn::Linear`, which carries no tag: a `Struct:Linear` whose only fields are
/// `weight` and `bias` (a user's own struct called `Linear` with other fields is not one).
#[derive(Default)]
struct LinearWeights {
    path: Vec<String>,
    /// Field names of every `Struct:Linear`, by its path.
    fields: std::collections::HashMap<String, HashSet<String>>,
    /// Paths of Ember `Linear`s (from their tags).
    ember: HashSet<String>,
}

impl LinearWeights {
    fn found(self) -> HashSet<String> {
        let burn =
            self.fields.iter().filter(|(_, f)| f.contains("weight") && f.iter().all(|n| n == "weight" || n == "bias"));
        self.ember
            .iter()
            .chain(burn.map(|(p, _)| p))
            .map(|p| if p.is_empty() { "weight".to_string() } else { format!("{p}.weight") })
            .collect()
    }
}

impl ModuleVisitor for LinearWeights {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if crate::tag::is_linear(container_type) {
            // The tag is entered under its field in the layer: the layer's path is one up.
            self.ember.insert(self.path[..self.path.len().saturating_sub(1)].join("."));
        } else if container_type == "Struct:Linear" {
            self.fields.entry(self.path.join(".")).or_default().insert(name.to_string());
        }
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _n: &str, _c: &str) {
        self.path.pop();
    }
}

struct Preparer {
    config: QatConfig,
    selection: burn::module::ParamGroup,
    linear_weights: HashSet<String>,
}

impl Reparameterizer for Preparer {
    type Reparam = FakeQuantWeight;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<FakeQuantWeight>) {
        if D != 2 || !self.linear_weights.contains(path) {
            return (param, None);
        }
        let c = &self.config;
        let selected = self.selection.matches(&param.id, Some(path));
        let w = param.val();
        let dims = w.dims();
        if !selected || dims.iter().product::<usize>() == 0 {
            return (param, None);
        }
        let per_channel = c.weight == WeightGranularity::PerChannel;
        let keep = if c.preserve_zeros {
            let flat: Tensor<1> = w.clone().reshape([dims.iter().product::<usize>()]);
            let keep = flat.not_equal_elem(0.0);
            let any_zero = !keep.clone().all().into_scalar::<bool>();
            any_zero.then(|| Param::initialized(ParamId::new(), keep))
        } else {
            None
        };
        let (scale, grad_scale) = match c.method {
            QatMethod::Ste => (None, 1.0),
            QatMethod::Lsq => {
                let s = amax_scales(w.clone(), per_channel);
                let per_scale = if per_channel { dims[0] } else { dims[0] * dims[1] };
                let g = 1.0 / ((per_scale as f32) * 127.0).sqrt();
                let s = Tensor::from_inner(s.inner()).to_device(&w.device());
                (Some(Param::initialized(ParamId::new(), s).set_require_grad(true)), g)
            }
        };
        (param, Some(FakeQuantWeight { scale, keep, per_channel, grad_scale }))
    }
}

/// Attaches fake quantizers to the weights of every selected `Linear` (Burn's or Ember's) of
/// `model` (see the [module docs](self)).
///
/// # Errors
/// [`QuantError::UnsupportedScheme`] for per-group weights (QAT supports per-tensor and
/// per-channel scales); [`QuantError::InvalidConfig`] for an include / exclude pattern that is
/// not a regular expression ([`crate::select`]).
pub fn prepare_qat<M: Module>(model: M, config: &QatConfig) -> Result<M> {
    if let WeightGranularity::PerGroup { .. } = config.weight {
        return Err(QuantError::UnsupportedScheme(
            "QAT fake-quantizes per tensor or per channel; per-group scales are for post-training conversion".into(),
        ));
    }
    let selection = crate::select::selection(&config.include, &config.exclude)?;
    let mut lw = LinearWeights::default();
    model.visit(&mut lw);
    Ok(model.apply_reparameterization(Preparer { config: config.clone(), selection, linear_weights: lw.found() }))
}
