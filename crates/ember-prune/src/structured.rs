//! Structured pruning: **which** neurons and attention heads to remove. Removing them is the
//! layers' job: ember-layers' `MultiHeadAttention::retain_heads`,
//! `FeedForward::retain_neurons` and `Encoder::retain_layers`, or `ember_quant::Linear`'s
//! `retain_outputs` / `retain_inputs` for a model of your own. This module works on plain
//! data (weights, activation norms, gradients, indices), so it serves any model: it never
//! needs to know a block's type.
//!
//! A *unit* (a neuron, or a head of `head_dim` channels) is a group of **input channels of the
//! layer after it**: hidden neuron `j` of `inner → act → outer` is row `j` of `outer`'s
//! `[d_in, d_out]` weight; head `h` is rows `h·d_h..(h+1)·d_h` of the attention output
//! projection. The criteria score those rows:
//!
//! | criterion | channel score `s_j` | needs |
//! |---|---|---|
//! | [`channel_importance`] without norms | `‖W[j,:]‖₂` (magnitude) | the weight |
//! | [`channel_importance`] with norms | `‖W[j,:]‖₂ · ‖X_j‖₂` (Wanda's structured form: the channel's output contribution) | input-channel L2 norms from a calibration run (`ember_quant::CalibrationData::input_channel_norms`) |
//! | [`TaylorImportance`] | `\|Σ_k W[j,k] · ∂L/∂W[j,k]\|` per unit (first-order Taylor of a gate on the unit, Michel et al. 2019 for heads, Molchanov et al. 2019) | gradients of a loss |
//!
//! [`unit_scores`] sums channel scores into units in quadrature (`√Σ s_j²`: for uncorrelated
//! channels, the norm of the unit's output), [`keep_top`] picks the units to keep, and
//! [`removal_masks`] builds the masked twin of a removal (for fine-tuning before the physical
//! removal; the outputs are the same).
//!
//! A **shared** block (ALBERT) is one set of parameters used by several layers: its input norms
//! from calibration and its gradients already sum over every use, so its scores are the
//! importance summed over its uses.
//!
//! ```
//! use ember_prune::structured::{channel_importance, keep_top, unit_scores};
//! // The output projection of a 2-head attention (head_dim 2) into 3 features, [4, 3] row-major.
//! let w_o = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.1, 0.0];
//! let norms = [2.0, 2.0, 1.0, 1.0]; // ‖X_j‖₂ of the context channels, from calibration
//! let channels = channel_importance(&w_o, 4, 3, Some(&norms)).unwrap();
//! let heads = unit_scores(&channels, 2).unwrap();
//! assert_eq!(keep_top(&heads, 1).unwrap(), vec![0]);
//! ```

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor};

use crate::error::{PruneError, Result};

fn host(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| PruneError::NonFinite(format!("a weight could not be read from its device ({e:?})")))
}

fn check_finite(what: &str, v: &[f32]) -> Result<()> {
    if v.iter().any(|x| !x.is_finite()) { Err(PruneError::NonFinite(what.into())) } else { Ok(()) }
}

/// Importance of each input channel (row) of a row-major `[d_in, d_out]` weight: `‖W[j,:]‖₂`,
/// times `‖X_j‖₂` when the input-channel L2 norms are given (see the [module docs](self)).
///
/// # Errors
/// [`PruneError::Shape`] when `weight` is not `d_in · d_out` long or the norms not `d_in`;
/// [`PruneError::NonFinite`] for NaN or infinite weights or norms.
pub fn channel_importance(weight: &[f32], d_in: usize, d_out: usize, norms: Option<&[f32]>) -> Result<Vec<f32>> {
    if d_in.checked_mul(d_out) != Some(weight.len()) {
        return Err(PruneError::Shape {
            what: "weight".into(),
            expected: format!("{} values ([{d_in}, {d_out}])", (d_in as u128) * (d_out as u128)),
            actual: weight.len().to_string(),
        });
    }
    check_finite("weight", weight)?;
    if let Some(n) = norms {
        if n.len() != d_in {
            return Err(PruneError::Shape {
                what: "input-channel norms".into(),
                expected: format!("{d_in} (the weight's input features)"),
                actual: n.len().to_string(),
            });
        }
        check_finite("input-channel norms", n)?;
    }
    Ok((0..d_in)
        .map(|j| {
            let row = &weight[j * d_out..(j + 1) * d_out];
            let w = row.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>().sqrt() as f32;
            w * norms.map_or(1.0, |n| n[j])
        })
        .collect())
}

/// [`channel_importance`] of a weight parameter of a model (any device).
///
/// # Errors
/// As [`channel_importance`]; [`PruneError::NonFinite`] if the weight cannot be read.
pub fn channel_importance_of(weight: &Param<Tensor<2>>, norms: Option<&[f32]>) -> Result<Vec<f32>> {
    let [d_in, d_out] = weight.dims();
    channel_importance(&host(weight.val())?, d_in, d_out, norms)
}

/// Scores of units of `unit_width` consecutive channels: `√Σ_{j ∈ unit} s_j²` (a neuron is a
/// unit of width 1 and keeps its score).
///
/// # Errors
/// [`PruneError::Shape`] when `unit_width` is zero or does not divide the channel count.
pub fn unit_scores(channel_scores: &[f32], unit_width: usize) -> Result<Vec<f32>> {
    if unit_width == 0 || !channel_scores.len().is_multiple_of(unit_width) {
        return Err(PruneError::Shape {
            what: "unit width".into(),
            expected: format!("a positive divisor of the {} channels", channel_scores.len()),
            actual: unit_width.to_string(),
        });
    }
    Ok(channel_scores
        .chunks_exact(unit_width)
        .map(|u| u.iter().map(|s| f64::from(*s) * f64::from(*s)).sum::<f64>().sqrt() as f32)
        .collect())
}

/// The indices (ascending) of the `keep` highest scores; ties keep the lower index, so the
/// choice is deterministic.
///
/// # Errors
/// [`PruneError::InvalidConfig`] when `keep` is 0 or more than the scores;
/// [`PruneError::NonFinite`] for NaN scores.
pub fn keep_top(scores: &[f32], keep: usize) -> Result<Vec<usize>> {
    if keep == 0 || keep > scores.len() {
        return Err(PruneError::InvalidConfig {
            what: "units to keep".into(),
            value: keep.to_string(),
            expected: format!("1..={} (remove a whole block instead of every unit)", scores.len()),
        });
    }
    if scores.iter().any(|s| s.is_nan()) {
        return Err(PruneError::NonFinite("scores".into()));
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept = order[..keep].to_vec();
    kept.sort_unstable();
    Ok(kept)
}

/// How many of `n` units remain after removing the fraction `remove` (rounded to the nearest
/// unit, at least one kept): 12 heads less a third keep 8, 1536 neurons less half keep 768.
///
/// # Errors
/// [`PruneError::Sparsity`] unless `remove` is in `[0, 1)`.
pub fn units_to_keep(n: usize, remove: f64) -> Result<usize> {
    crate::error::check_sparsity(remove)?;
    let removed = (n as f64 * remove).round() as usize;
    Ok(n.saturating_sub(removed).max(1))
}

/// First-order Taylor importance of units (Michel et al. 2019 for heads; Molchanov et al.
/// 2019): for a gate `ξ_u` on unit `u`'s input to the next layer `W` (the unit's rows),
/// `∂L/∂ξ_u = Σ_{j ∈ u} Σ_k W[j,k] · ∂L/∂W[j,k]` because the layer is linear in its input, so
/// the importance comes from the weight and its gradient alone: no gate in the model.
/// [`TaylorImportance::accumulate`] adds `|∂L/∂ξ_u|` per batch (the paper takes the absolute
/// value per example; `|Σ_batch|` is a lower bound of the per-example sum).
#[derive(Clone, Debug, Default)]
pub struct TaylorImportance {
    scores: HashMap<String, Vec<f64>>,
}

impl TaylorImportance {
    /// Empty scores.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one batch's `|∂L/∂ξ_u|` for the units of `weight` (the layer after the units: an
    /// attention output projection with `unit_width = head_dim`, or an FFN's second layer with
    /// width 1), under the name `block`. Call after `backward`, before the optimizer consumes
    /// the gradients. A masked weight works too (its effective value and its base's gradient
    /// give the same gate derivative restricted to the kept entries). A weight without a
    /// gradient adds nothing.
    ///
    /// # Errors
    /// [`PruneError::Shape`] when `unit_width` does not divide the weight's input features or
    /// `block` was accumulated before with another unit count; [`PruneError::NonFinite`] for
    /// unreadable or non-finite values.
    pub fn accumulate(
        &mut self,
        block: &str,
        weight: &Param<Tensor<2>>,
        unit_width: usize,
        grads: &Gradients,
    ) -> Result<()> {
        let [rows, d_out] = weight.dims();
        if unit_width == 0 || !rows.is_multiple_of(unit_width) {
            return Err(PruneError::Shape {
                what: format!("unit width of {block}"),
                expected: format!("a positive divisor of its {rows} input features"),
                actual: unit_width.to_string(),
            });
        }
        let Some(g) = weight.base().grad(grads) else { return Ok(()) };
        let (w, g) = (host(weight.val())?, host(g)?);
        check_finite(&format!("gradient of {block}"), &g)?;
        let units = rows / unit_width;
        let s = self.scores.entry(block.to_string()).or_insert_with(|| vec![0.0; units]);
        if s.len() != units {
            return Err(PruneError::Shape {
                what: format!("units of {block}"),
                expected: s.len().to_string(),
                actual: units.to_string(),
            });
        }
        let span = unit_width * d_out;
        for (u, score) in s.iter_mut().enumerate() {
            let range = u * span..(u + 1) * span;
            let dot: f64 = w[range.clone()].iter().zip(&g[range]).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            *score += dot.abs();
        }
        Ok(())
    }

    /// Importance per unit, by block name.
    pub fn scores(&self) -> &HashMap<String, Vec<f64>> {
        &self.scores
    }

    /// The scores of `block` as `f32` (for [`keep_top`]).
    pub fn block_scores(&self, block: &str) -> Option<Vec<f32>> {
        self.scores.get(block).map(|v| v.iter().map(|s| *s as f32).collect())
    }
}

/// One structured removal in plain terms, for [`removal_masks`]: the weights whose **output**
/// columns carry the units (the layers before: query / key / value, or an FFN's first layer),
/// the weights whose **input** rows carry them (the layer after), the unit width, and the units
/// to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// Weight parameter paths whose output columns are the units' channels.
    pub outputs_of: Vec<String>,
    /// Weight parameter paths whose input rows are the units' channels.
    pub inputs_of: Vec<String>,
    /// Channels per unit (`head_dim` for heads, 1 for neurons).
    pub unit_width: usize,
    /// Units kept (ascending).
    pub keep: Vec<usize>,
}

#[derive(Default)]
struct Dims {
    path: Vec<String>,
    dims: HashMap<String, [usize; 2]>,
}

impl ModuleVisitor for Dims {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D == 2 {
            let d = param.lazy_shape();
            self.dims.insert(self.path.join("."), [d[0], d[1]]);
        }
    }
}

/// The keep-masks (by weight path, for [`crate::apply_masks`]) that zero the removed units'
/// channels without changing any shape: the masked twin of the physical removal, with the same
/// outputs except that a removed neuron's bias still passes through the activation into a
/// zeroed row, contributing nothing.
///
/// # Errors
/// [`PruneError::InvalidConfig`] for a path that is not a rank-2 weight of `model`, a `keep`
/// that is empty, unsorted or out of range; [`PruneError::Shape`] when the weights disagree on
/// the number of channels or `unit_width` does not divide it.
pub fn removal_masks<M: Module>(model: &M, removals: &[Removal]) -> Result<HashMap<String, Vec<bool>>> {
    let mut dims = Dims::default();
    model.visit(&mut dims);
    let mut masks = HashMap::new();
    for r in removals {
        let lookup = |p: &String| {
            dims.dims.get(p).copied().ok_or_else(|| PruneError::InvalidConfig {
                what: "removal weight path".into(),
                value: p.clone(),
                expected: "the path of a rank-2 weight parameter of the model".into(),
            })
        };
        let mut channels = None;
        for (p, axis) in r.outputs_of.iter().map(|p| (p, 1)).chain(r.inputs_of.iter().map(|p| (p, 0))) {
            let c = lookup(p)?[axis];
            if *channels.get_or_insert(c) != c {
                return Err(PruneError::Shape {
                    what: format!("channels of {p}"),
                    expected: channels.unwrap_or(0).to_string(),
                    actual: c.to_string(),
                });
            }
        }
        let Some(channels) = channels else { continue };
        if r.unit_width == 0 || !channels.is_multiple_of(r.unit_width) {
            return Err(PruneError::Shape {
                what: "unit width".into(),
                expected: format!("a positive divisor of {channels} channels"),
                actual: r.unit_width.to_string(),
            });
        }
        let units = channels / r.unit_width;
        if r.keep.is_empty() || r.keep.windows(2).any(|w| w[0] >= w[1]) || r.keep.last().is_some_and(|&u| u >= units) {
            return Err(PruneError::InvalidConfig {
                what: "units to keep".into(),
                value: format!("{:?}", r.keep),
                expected: format!("ascending, unique indices below {units}, at least one"),
            });
        }
        let mut unit_kept = vec![false; units];
        r.keep.iter().for_each(|&u| unit_kept[u] = true);
        let kept: Vec<bool> = (0..channels).map(|c| unit_kept[c / r.unit_width]).collect();
        for p in &r.outputs_of {
            let [d_in, d_out] = lookup(p)?;
            masks.insert(p.clone(), crate::mask::expand_neurons(&kept, d_in, d_out, crate::Axis::Output));
        }
        for p in &r.inputs_of {
            let [d_in, d_out] = lookup(p)?;
            masks.insert(p.clone(), crate::mask::expand_neurons(&kept, d_in, d_out, crate::Axis::Input));
        }
    }
    Ok(masks)
}
