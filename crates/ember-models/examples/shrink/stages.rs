//! The recipe of the `shrink` example, shared with its test (`tests/shrink.rs`): measure
//! importance on the sentences, narrow every layer, keep a subset of the layers, convert to
//! int8. Only public APIs: ember-quant's calibration and conversion, ember-prune's criteria,
//! the model's `retain_*` methods.

#![allow(dead_code)]

use ember_models::{Bert, Encoded};
use ember_prune::{channel_importance_of, keep_top, unit_scores, units_to_keep};
use ember_quant::{CalibrationConfig, Calibrator, ObserverConfig, QuantizeConfig, Quantizer};
use std::collections::BTreeMap;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `shrink` removes.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Fraction of each layer's heads removed.
    pub heads: f64,
    /// Fraction of each layer's feed-forward neurons removed.
    pub neurons: f64,
    /// The layers kept (0-based), after narrowing.
    pub layers: Vec<usize>,
}

impl Plan {
    /// The acceptance plan: a third of the heads, half the FFN neurons, layers 1, 3, 5.
    pub fn default_for(n_layers: usize) -> Plan {
        Plan { heads: 1.0 / 3.0, neurons: 0.5, layers: (1..n_layers).step_by(2).collect() }
    }
}

/// Input-channel L2 norms of every linear layer over the batch (by weight path): the
/// activations that Wanda's structured criterion weighs each channel by.
pub fn input_norms(model: &Bert, batch: &Encoded) -> Result<BTreeMap<String, Vec<f32>>, BoxError> {
    let session = Calibrator::new(model, &CalibrationConfig::new(ObserverConfig::MinMax).with_sample_rows(0))?;
    model.embed(batch)?;
    Ok(session.finish()?.input_channel_norms())
}

/// Removes, by measured importance (`‖W_o[j,:]‖₂ · ‖X_j‖₂` summed in quadrature per head, and
/// per neuron of the FFN's second layer), `plan.heads` of every attention block's heads and
/// `plan.neurons` of every FFN block's neurons, then keeps `plan.layers`.
pub fn shrink(model: &Bert, norms: &BTreeMap<String, Vec<f32>>, plan: &Plan) -> Result<Bert, BoxError> {
    let mut m = model.clone();
    for (block, att) in model.encoder.attention.iter().enumerate() {
        let path = format!("encoder.attention.{block}.output.weight");
        let channels = channel_importance_of(&att.output.weight, norms.get(&path).map(Vec::as_slice))?;
        let keep = keep_top(&unit_scores(&channels, att.head_dim)?, units_to_keep(att.n_heads, plan.heads)?)?;
        m = m.retain_heads(block, &keep)?;
    }
    for (block, ffn) in model.encoder.feed_forward.iter().enumerate() {
        let path = format!("encoder.feed_forward.{block}.outer.weight");
        let channels = channel_importance_of(&ffn.outer.weight, norms.get(&path).map(Vec::as_slice))?;
        let keep = keep_top(&channels, units_to_keep(ffn.d_ff(), plan.neurons)?)?;
        m = m.retain_neurons(block, &keep)?;
    }
    Ok(m.retain_layers(&plan.layers)?)
}

/// ember-quant's default conversion: dynamic per-row u8 activations, per-channel i8 weights,
/// int8 embedding tables.
pub fn int8(model: &Bert) -> Result<Bert, BoxError> {
    Ok(Quantizer::new(QuantizeConfig::new()).quantize(model)?.0)
}

/// The four stages: `f32`, `int8`, `shrunk`, `shrunk_int8`.
pub fn stages(model: Bert, batch: &Encoded, plan: &Plan) -> Result<Vec<(&'static str, Bert)>, BoxError> {
    let norms = input_norms(&model, batch)?;
    let shrunk = shrink(&model, &norms, plan)?;
    let (int8_model, shrunk_int8) = (int8(&model)?, int8(&shrunk)?);
    Ok(vec![("f32", model), ("int8", int8_model), ("shrunk", shrunk), ("shrunk_int8", shrunk_int8)])
}

/// Parameters of a model (its architecture's count: int8 layers count their weights once, as
/// the float model does) and those outside the token, position and token-type tables.
pub fn params(model: &Bert) -> Result<(usize, usize), BoxError> {
    let arch = model.architecture()?;
    let total = arch.num_params()?;
    let e = &arch.embedding;
    let tables = (e.vocab_size + e.max_positions + e.type_vocab_size) * e.embedding_size;
    Ok((total, total - tables))
}

/// The rows of a `[batch, d]` tensor.
pub fn rows(t: burn::tensor::Tensor<2>) -> Result<Vec<Vec<f32>>, BoxError> {
    let [_, d] = t.dims();
    let v = t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    Ok(v.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
}
