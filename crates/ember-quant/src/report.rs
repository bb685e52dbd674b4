//! The numeric suite: error statistics between float and int8 results, per layer and per model.

use crate::error::{QuantError, Result};
use crate::scheme::{QuantDtype, WeightGranularity};
use crate::spec::ActivationMode;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// How far a quantized result is from its float reference.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorStats {
    /// Signal-to-quantization-noise ratio `10·log10(Σ ref² / Σ (ref − q)²)` in dB (`inf` when
    /// identical).
    pub sqnr_db: f64,
    /// Cosine similarity of the flattened results (1 when both are zero).
    pub cosine: f64,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// Mean squared difference.
    pub mse: f64,
}

impl ErrorStats {
    /// Statistics of `quantized` against `reference` (equal lengths; extra elements of the
    /// longer one are ignored).
    pub fn between(reference: &[f32], quantized: &[f32]) -> Self {
        let (mut s, mut e, mut dot, mut qq, mut max_abs) = (0f64, 0f64, 0f64, 0f64, 0f64);
        let n = reference.len().min(quantized.len());
        for (&r, &q) in reference.iter().zip(quantized) {
            let (r, q) = (r as f64, q as f64);
            s += r * r;
            e += (r - q) * (r - q);
            dot += r * q;
            qq += q * q;
            max_abs = max_abs.max((r - q).abs());
        }
        let sqnr_db = if e == 0.0 { f64::INFINITY } else { 10.0 * (s / e).log10() };
        let cosine = if s == 0.0 && qq == 0.0 {
            1.0
        } else if s == 0.0 || qq == 0.0 {
            0.0
        } else {
            dot / (s.sqrt() * qq.sqrt())
        };
        ErrorStats { sqnr_db, cosine, max_abs, mse: if n == 0 { 0.0 } else { e / n as f64 } }
    }
}

/// Compares two tensors of the same shape (for example a float model's and an int8 model's
/// outputs).
///
/// # Errors
/// [`QuantError::Shape`] if the shapes differ; [`QuantError::Data`] if they cannot be read.
pub fn compare<const D: usize>(reference: Tensor<D>, quantized: Tensor<D>) -> Result<ErrorStats> {
    if reference.dims() != quantized.dims() {
        return Err(QuantError::Shape {
            what: "compared tensors".into(),
            expected: format!("{:?}", reference.dims()),
            actual: format!("{:?}", quantized.dims()),
        });
    }
    let a = crate::linear::host_f32("reference", reference)?;
    let b = crate::linear::host_f32("quantized", quantized)?;
    Ok(ErrorStats::between(&a, &b))
}

/// What kind of layer a report entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerKind {
    /// An int8 `Linear` (`d_input × d_output`).
    Linear,
    /// An int8 `Embedding` (`n_embedding × d_model` in `d_input × d_output`), per-row scales.
    Embedding,
}

/// One converted layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// Layer path.
    pub path: String,
    /// Linear or embedding.
    pub kind: LayerKind,
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Activation mode.
    pub mode: ActivationMode,
    /// Weight granularity.
    pub weight: WeightGranularity,
    /// Activation integer type.
    pub activation_dtype: QuantDtype,
    /// Int8 weights (dequantized) against the float weights.
    pub weight_error: ErrorStats,
    /// The layer's int8 output (the real kernel path) against its float output, on the
    /// calibration input samples; `None` without calibration samples.
    pub output_error: Option<ErrorStats>,
    /// Bytes of the float weight and bias.
    pub float_bytes: usize,
    /// Bytes of the int8 weight, scales, bias and activation parameters.
    pub int8_bytes: usize,
}

/// The per-layer report of a conversion.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QuantReport {
    /// One entry per converted layer, in model order.
    pub layers: Vec<LayerReport>,
}

fn fmt_db(v: f64) -> String {
    if v.is_infinite() { "inf".into() } else { format!("{v:.1}") }
}

impl QuantReport {
    /// A markdown table: layer, shape, scheme, weight SQNR, output SQNR / cosine / max-abs
    /// error, and sizes.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from(
            "| layer | d_in×d_out | mode | weight scales | weight SQNR dB | output SQNR dB | output cosine | output max abs | f32 KiB | int8 KiB |\n\
             |---|---|---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for l in &self.layers {
            let (o_sqnr, o_cos, o_max) = match &l.output_error {
                Some(e) => (fmt_db(e.sqnr_db), format!("{:.5}", e.cosine), format!("{:.3e}", e.max_abs)),
                None => ("–".into(), "–".into(), "–".into()),
            };
            s.push_str(&format!(
                "| {} | {}×{} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |\n",
                if l.path.is_empty() { "(root)" } else { &l.path },
                l.d_input,
                l.d_output,
                match l.kind {
                    LayerKind::Linear => format!("{:?} {:?}", l.mode, l.activation_dtype),
                    LayerKind::Embedding => "embedding".to_string(),
                },
                match l.kind {
                    LayerKind::Linear => format!("{:?}", l.weight),
                    LayerKind::Embedding => "per row".to_string(),
                },
                fmt_db(l.weight_error.sqnr_db),
                o_sqnr,
                o_cos,
                o_max,
                l.float_bytes as f64 / 1024.0,
                l.int8_bytes as f64 / 1024.0
            ));
        }
        let (f, q): (usize, usize) = self.layers.iter().fold((0, 0), |(a, b), l| (a + l.float_bytes, b + l.int8_bytes));
        s.push_str(&format!(
            "\n{} layers, {:.1} KiB → {:.1} KiB ({:.3}×)\n",
            self.layers.len(),
            f as f64 / 1024.0,
            q as f64 / 1024.0,
            q as f64 / f.max(1) as f64
        ));
        s
    }

    /// The worst (lowest) output SQNR over layers with calibration samples.
    pub fn worst_output_sqnr_db(&self) -> Option<f64> {
        self.layers.iter().filter_map(|l| l.output_error.map(|e| e.sqnr_db)).reduce(f64::min)
    }
}
