//! Structured pruning that really shrinks the model: neurons of a `Linear` pair or of an
//! `ember-layers` [`FeedForward`], and attention heads of an `ember-layers`
//! [`MultiHeadAttention`] (Burn's own `MultiHeadAttention` has a fixed head count).
//!
//! Each operation comes in two forms with the same outputs (tested to 1e-5):
//! * `mask_*` attaches [`PruneMask`](crate::PruneMask)s (the neuron's input column and output row, or the head's
//!   query/key/value columns and output rows), so the model keeps its shape while you fine-tune;
//! * `shrink_*` builds the smaller module: narrower `Linear`s, fewer heads, new parameters.
//!
//! A removed neuron's bias still feeds its activation in the masked form, but the next layer's
//! row for it is zero, so it contributes nothing and both forms agree.

use std::collections::HashMap;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Gradients, Int, Tensor, TensorData};
use ember_layers::{FeedForward, MultiHeadAttention};

use crate::error::{PruneError, Result};
use crate::mask::{Axis, expand_neurons};
use crate::prune::apply_masks;

fn kept(keep: &[bool], what: &str, expected: usize) -> Result<Vec<i64>> {
    if keep.len() != expected {
        return Err(PruneError::Shape {
            what: format!("{what} keep-mask"),
            expected: expected.to_string(),
            actual: keep.len().to_string(),
        });
    }
    let idx: Vec<i64> = keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i as i64).collect();
    if idx.is_empty() {
        return Err(PruneError::InvalidConfig {
            what: format!("{what} keep-mask"),
            value: "nothing kept".into(),
            expected: "at least one neuron or head (remove the whole block instead)".into(),
        });
    }
    Ok(idx)
}

fn index_tensor(idx: &[i64], like: &Tensor<2>) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(idx.to_vec(), [idx.len()]), &like.device())
}

/// A `Linear` with only the output neurons (weight columns and bias entries) in `idx`.
fn select_outputs(l: &Linear, idx: &[i64]) -> Linear {
    let w = l.weight.val();
    let i = index_tensor(idx, &w);
    Linear {
        weight: Param::from_tensor(w.select(1, i.clone()).detach()),
        bias: l.bias.as_ref().map(|b| Param::from_tensor(b.val().select(0, i).detach())),
    }
}

/// A `Linear` with only the input features (weight rows) in `idx`.
fn select_inputs(l: &Linear, idx: &[i64]) -> Linear {
    let w = l.weight.val();
    let i = index_tensor(idx, &w);
    Linear {
        weight: Param::from_tensor(w.select(0, i).detach()),
        bias: l.bias.as_ref().map(|b| Param::from_tensor(b.val().detach())),
    }
}

fn dims(l: &Linear) -> [usize; 2] {
    l.weight.val().dims()
}

/// Removes the hidden neurons of `first → activation → second` where `keep` is `false`: the
/// columns (and bias entries) of `first` and the rows of `second`.
///
/// # Errors
/// [`PruneError::Shape`] when `keep` is not `first`'s output width or the layers do not chain,
/// [`PruneError::InvalidConfig`] when nothing is kept.
pub fn shrink_linear_pair(first: &Linear, second: &Linear, keep: &[bool]) -> Result<(Linear, Linear)> {
    let ([_, hidden], [second_in, _]) = (dims(first), dims(second));
    if hidden != second_in {
        return Err(PruneError::Shape {
            what: "second layer input".into(),
            expected: hidden.to_string(),
            actual: second_in.to_string(),
        });
    }
    let idx = kept(keep, "neuron", hidden)?;
    Ok((select_outputs(first, &idx), select_inputs(second, &idx)))
}

/// [`shrink_linear_pair`] for an `ember-layers` feed-forward block (`inner → activation → outer`).
///
/// # Errors
/// As [`shrink_linear_pair`].
pub fn shrink_feed_forward(ffn: &FeedForward, keep: &[bool]) -> Result<FeedForward> {
    let (inner, outer) = shrink_linear_pair(&ffn.inner, &ffn.outer, keep)?;
    Ok(FeedForward { inner, outer, dropout: ffn.dropout.clone(), activation: ffn.activation })
}

/// Removes the attention heads where `keep_heads` is `false`: their query, key and value
/// columns and their output-projection rows.
///
/// # Errors
/// [`PruneError::Shape`] when `keep_heads` is not `n_heads` long, [`PruneError::InvalidConfig`]
/// when no head is kept.
pub fn shrink_attention(att: &MultiHeadAttention, keep_heads: &[bool]) -> Result<MultiHeadAttention> {
    kept(keep_heads, "head", att.n_heads)?;
    check_attention(att)?;
    let cols = head_columns(keep_heads, att.head_dim);
    let idx: Vec<i64> = cols.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i as i64).collect();
    Ok(MultiHeadAttention {
        query: select_outputs(&att.query, &idx),
        key: select_outputs(&att.key, &idx),
        value: select_outputs(&att.value, &idx),
        output: select_inputs(&att.output, &idx),
        dropout: att.dropout.clone(),
        n_heads: keep_heads.iter().filter(|k| **k).count(),
        head_dim: att.head_dim,
    })
}

/// The projections must be `n_heads · head_dim` wide.
fn check_attention(att: &MultiHeadAttention) -> Result<()> {
    let width = att.n_heads * att.head_dim;
    for (what, got) in [
        ("query", dims(&att.query)[1]),
        ("key", dims(&att.key)[1]),
        ("value", dims(&att.value)[1]),
        ("output (input width)", dims(&att.output)[0]),
    ] {
        if got != width {
            return Err(PruneError::Shape {
                what: format!("attention {what}"),
                expected: format!("{width} (n_heads · head_dim)"),
                actual: got.to_string(),
            });
        }
    }
    Ok(())
}

/// Per-column keep flags of the `n_heads · head_dim` projection width.
fn head_columns(keep_heads: &[bool], head_dim: usize) -> Vec<bool> {
    keep_heads.iter().flat_map(|k| std::iter::repeat_n(*k, head_dim)).collect()
}

/// Masks (without shrinking) the hidden neurons of a feed-forward block: `inner`'s columns and
/// `outer`'s rows. Equal outputs to [`shrink_feed_forward`] with the same `keep`.
///
/// # Errors
/// As [`shrink_feed_forward`].
pub fn mask_feed_forward(ffn: FeedForward, keep: &[bool]) -> Result<FeedForward> {
    let ([d_model, d_ff], [outer_in, d_out]) = (dims(&ffn.inner), dims(&ffn.outer));
    if outer_in != d_ff {
        return Err(PruneError::Shape {
            what: "outer layer input".into(),
            expected: d_ff.to_string(),
            actual: outer_in.to_string(),
        });
    }
    kept(keep, "neuron", d_ff)?;
    let masks = HashMap::from([
        ("inner.weight".to_string(), expand_neurons(keep, d_model, d_ff, Axis::Output)),
        ("outer.weight".to_string(), expand_neurons(keep, d_ff, d_out, Axis::Input)),
    ]);
    apply_masks(ffn, masks)
}

/// Masks (without shrinking) attention heads: their query/key/value columns and output rows.
/// Equal outputs to [`shrink_attention`] with the same `keep_heads`.
///
/// # Errors
/// As [`shrink_attention`].
pub fn mask_attention(att: MultiHeadAttention, keep_heads: &[bool]) -> Result<MultiHeadAttention> {
    kept(keep_heads, "head", att.n_heads)?;
    check_attention(&att)?;
    let cols = head_columns(keep_heads, att.head_dim);
    let [d_model, width] = dims(&att.query);
    let [_, d_out] = dims(&att.output);
    let qkv = expand_neurons(&cols, d_model, width, Axis::Output);
    let masks = HashMap::from([
        ("query.weight".to_string(), qkv.clone()),
        ("key.weight".to_string(), qkv.clone()),
        ("value.weight".to_string(), qkv),
        ("output.weight".to_string(), expand_neurons(&cols, width, d_out, Axis::Input)),
    ]);
    apply_masks(att, masks)
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

/// Magnitude importance of each hidden neuron of a feed-forward block:
/// `‖inner[:, j]‖₂ · ‖outer[j, :]‖₂`.
pub fn ffn_neuron_scores(ffn: &FeedForward) -> Vec<f32> {
    let ([d_model, d_ff], [outer_in, d_out]) = (dims(&ffn.inner), dims(&ffn.outer));
    if outer_in != d_ff {
        return Vec::new();
    }
    let (w1, w2) = (host(ffn.inner.weight.val()), host(ffn.outer.weight.val()));
    (0..d_ff)
        .map(|j| {
            let a: f32 = (0..d_model).map(|i| w1[i * d_ff + j].powi(2)).sum();
            let b: f32 = w2[j * d_out..(j + 1) * d_out].iter().map(|v| v * v).sum();
            (a * b).sqrt()
        })
        .collect()
}

/// First-order head importance (Michel et al. 2019): `I_h = |∂L/∂ξ_h|` for a gate `ξ_h` on
/// each head's context. Since the output projection `W_o` is linear in the context,
/// `∂L/∂ξ_h = Σ_{d ∈ head h} Σ_k W_o[d, k] · ∂L/∂W_o[d, k]`, so the importance comes from the
/// output projection's weight and gradient alone: no gate in the model is needed. Accumulated
/// per batch (the paper takes the absolute value per example; `|Σ_batch|` is a lower bound of
/// the per-example sum).
#[derive(Clone, Debug, Default)]
pub struct HeadImportance {
    scores: HashMap<String, Vec<f64>>,
}

impl HeadImportance {
    /// Empty scores.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `|∂L/∂ξ_h|` for every head of `att` (an attention block of the model being trained,
    /// named `block` by the caller), from one batch's gradients (call after `backward`, before
    /// the optimizer consumes them). Blocks without a gradient are skipped; masked blocks (see
    /// [`mask_attention`]) work too.
    pub fn accumulate(&mut self, block: &str, att: &MultiHeadAttention, grads: &Gradients) {
        // Effective weight times the stored base's gradient: for a masked projection this is
        // `W_eff ⊙ ∂L/∂W_eff` restricted to the kept entries, the same gate derivative.
        let w = att.output.weight.val();
        let [rows, d_out] = w.dims();
        let (heads, head_dim) = (att.n_heads, att.head_dim);
        if rows != heads * head_dim {
            return;
        }
        let Some(g) = att.output.weight.base().grad(grads) else { return };
        let (w, g) = (host(w), host(g));
        let s = self.scores.entry(block.to_string()).or_insert_with(|| vec![0.0; heads]);
        if s.len() != heads {
            return;
        }
        for (h, score) in s.iter_mut().enumerate() {
            let range = h * head_dim * d_out..(h + 1) * head_dim * d_out;
            let dot: f64 = w[range.clone()].iter().zip(&g[range]).map(|(a, b)| *a as f64 * *b as f64).sum();
            *score += dot.abs();
        }
    }

    /// Importance per head, by block name.
    pub fn scores(&self) -> &HashMap<String, Vec<f64>> {
        &self.scores
    }
}
