//! The compression pipeline on real models, as a library: a pretrained Hugging Face encoder in,
//! a smaller and faster student out (distilled, pruned structurally, int8), each stage measured
//! on held-out data and saved where other tools read it.
//!
//! - [`embed`]: sentence embeddings. The student is built from the teacher (a subset of its
//!   layers), distilled on the teacher's embeddings, narrowed (FFN neurons by measured
//!   importance) and distilled again, then converted to int8. Quality is the Spearman
//!   correlation of the student's pairwise similarities with the teacher's on held-out
//!   sentences. Written: the float student in Hugging Face layout (loadable by `transformers`,
//!   sentence-transformers and `Bert::from_pretrained`), the int8 student in Ember's format, and
//!   the report (markdown, JSON, SVG).
//! - [`classify`]: text classification (or regression). The teacher is the checkpoint
//!   fine-tuned on the task's train split (or used as is when it has a trained head); the
//!   student is distilled on its soft targets and hidden states, narrowed, distilled again and
//!   converted to int8; every stage is scored with the task's metric on the dev split.
//! - [`lm`]: a byte-level language model compressed from scratch (the `compress` example's
//!   default, zero-download run): a teacher trained on a corpus, an ALBERT-style student
//!   distilled from it, pruned gradually under distillation and converted to int8, each stage's
//!   held-out perplexity measured; the typed JSON [`lm::Recipe`] holds every setting.
//! - [`data`]: labelled task data (GLUE TSV or plain `text<TAB>label`) into batches.
//! - [`text`]: plain text into sentences.
//! - [`round_robin_latency`]: latency of several models at several batches, measured
//!   interleaved in one run so that the baseline sees the same machine.
//! - [`train`]: pieces for your own fine-tuning loop (a warm-up + linear-decay schedule, AdamW
//!   with clipping).
//!
//! The `ember compress` command runs it: `ember compress --teacher DIR --task embed --data FILE`
//! and `… --task classify --data DIR_OR_TSV [--glue-task NAME]` (from a clone:
//! `cargo run --release -- compress …`).

pub mod classify;
pub mod data;
pub mod embed;
pub mod lm;
pub mod text;
pub mod train;

use thiserror::Error;

/// Progress callback of the pipelines: (stage, step done, steps, last loss; NaN where a stage
/// has no loss). Each pipeline's `run` documents its stage names.
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize, f64);

/// What went wrong in a pipeline run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// An invalid recipe setting.
    #[error("invalid recipe setting {what} = {value}: expected {expected}")]
    Recipe {
        /// The setting.
        what: String,
        /// Its value.
        value: String,
        /// What would be valid.
        expected: String,
    },
    /// Data that cannot be used (too little text, no sentences, …).
    #[error("data {what}: {message}")]
    Data {
        /// The data source.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// Training diverged.
    #[error("{stage} diverged at step {step} (loss {loss}): lower the learning rate")]
    Diverged {
        /// The stage.
        stage: String,
        /// The step.
        step: usize,
        /// The loss seen.
        loss: f64,
    },
    /// A model error (loading, shapes, saving).
    #[error(transparent)]
    Model(#[from] ember_models::ModelError),
    /// A quantization error.
    #[error(transparent)]
    Quant(#[from] ember_quant::QuantError),
    /// A pruning-criterion error.
    #[error(transparent)]
    Prune(#[from] ember_prune::PruneError),
    /// An evaluation error.
    #[error(transparent)]
    Eval(#[from] ember_eval::EvalError),
    /// A file that cannot be read or written.
    #[error("cannot access {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        message: String,
    },
}

/// The pipeline's result type.
pub type Result<T> = std::result::Result<T, PipelineError>;

pub(crate) fn recipe_err(what: &str, value: impl std::fmt::Display, expected: &str) -> PipelineError {
    PipelineError::Recipe { what: what.into(), value: value.to_string(), expected: expected.into() }
}

pub(crate) fn io_err(path: &std::path::Path, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// Latency of `call` on every model at every batch, measured round-robin so that a noisy
/// machine's drift is shared by all models: three rounds, each timing every model at every
/// batch in turn (after 2 warm-up calls, at least 3 calls and `min_ms` ms per measurement, with
/// [`ember_eval::measure`]). Returns `[model][batch]` = (median of the rounds' p50, median of the
/// rounds' p90), in ms. `call` should finish its work before returning (read the output back,
/// as `into_data` does), or asynchronous devices time only the launch.
///
/// ```
/// use burn::tensor::Device;
/// use ember_slm::models::{BertConfig, Encoded};
/// use ember_slm::pipeline::round_robin_latency;
///
/// let device = Device::flex();
/// let (big, small) = (
///     BertConfig::new(100, 64, 4, 4, 128, 32).init(&device).unwrap(),
///     BertConfig::new(100, 64, 1, 4, 128, 32).init(&device).unwrap(),
/// );
/// let b1 = Encoded::from_ids(&[vec![1, 5, 7, 2]], 0).unwrap();
/// let b8 = Encoded::from_ids(&vec![vec![1, 5, 7, 9, 11, 2]; 8], 0).unwrap();
/// let t = round_robin_latency(&[&big, &small], &[&b1, &b8], 1, |m, b| m.embed(b).map(|e| e.into_data())).unwrap();
/// assert_eq!((t.len(), t[0].len()), (2, 2));
/// assert!(t.iter().flatten().all(|&(p50, p90)| p50 > 0.0 && p90 >= p50));
/// ```
///
/// # Errors
/// The first error `call` returns; [`PipelineError::Eval`] for a `min_ms` the latency harness
/// refuses.
pub fn round_robin_latency<M, T>(
    models: &[&M],
    batches: &[&ember_models::Encoded],
    min_ms: u64,
    call: impl Fn(&M, &ember_models::Encoded) -> std::result::Result<T, ember_models::ModelError>,
) -> Result<Vec<Vec<(f64, f64)>>> {
    let mut samples: Vec<Vec<(Vec<f64>, Vec<f64>)>> = vec![vec![(Vec::new(), Vec::new()); batches.len()]; models.len()];
    for _round in 0..3 {
        for (i, m) in models.iter().enumerate() {
            for (k, batch) in batches.iter().enumerate() {
                let cfg = ember_eval::LatencyConfig {
                    warmup: 2,
                    min_iterations: 3,
                    min_time: std::time::Duration::from_millis(min_ms),
                    max_iterations: 100_000,
                    items_per_call: batch.batch,
                    tokens_per_call: batch.tokens(),
                    threads: 0,
                };
                let mut failed = None;
                let r = ember_eval::measure(&format!("model {i}"), &cfg, || {
                    if let Err(e) = call(m, batch) {
                        failed = Some(e);
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e.into());
                }
                samples[i][k].0.push(r.p50_ms);
                samples[i][k].1.push(r.p90_ms);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(samples
        .into_iter()
        .map(|per_batch| per_batch.into_iter().map(|(mut p50, mut p90)| (median(&mut p50), median(&mut p90))).collect())
        .collect())
}

/// [`round_robin_latency`] at a batch of 1 and one of 32: each model's p50 (batch 1, batch 32).
pub(crate) fn round_robin<M, T>(
    models: &[&M],
    batches: [&ember_models::Encoded; 2],
    min_ms: u64,
    call: impl Fn(&M, &ember_models::Encoded) -> std::result::Result<T, ember_models::ModelError>,
) -> Result<Vec<(f64, f64)>> {
    let t = round_robin_latency(models, &batches, min_ms, call)?;
    Ok(t.iter().map(|b| (b[0].0, b[1].0)).collect())
}

/// A tensor's values on the host as f32 (row-major); `what` names it in the error.
pub(crate) fn host<const D: usize>(t: burn::tensor::Tensor<D>, what: &str) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| PipelineError::Data { what: what.into(), message: format!("not readable as f32: {e:?}") })
}

/// The student's layers for a teacher of `n` layers: `layers`, or every other layer from 1
/// when it is empty.
pub(crate) fn student_layers(layers: &[usize], n: usize) -> Result<Vec<usize>> {
    if layers.is_empty() {
        return Ok(if n == 1 { vec![0] } else { (1..n).step_by(2).collect() });
    }
    if let Some(&l) = layers.iter().find(|&&l| l >= n) {
        return Err(recipe_err("layers", l, &format!("a teacher layer in 0..{n}")));
    }
    Ok(layers.to_vec())
}

/// Removes `fraction` of every FFN's neurons of `model` by Wanda's structured importance
/// (`‖W₂[j,:]‖₂ · ‖X_j‖₂`, input norms measured while `forward` runs calibration data), the same
/// number in every layer; `ffns` are the model's FFN blocks, `prefix` their parameter path
/// before `encoder.`, `retain` removes neurons of one block.
pub(crate) fn narrow_ffns<M: burn::module::Module + Clone>(
    model: &M,
    ffns: &[ember_layers::FeedForward],
    prefix: &str,
    fraction: f64,
    forward: impl FnOnce(&M) -> Result<()>,
    retain: impl Fn(&M, usize, &[usize]) -> Result<M>,
) -> Result<M> {
    use ember_quant::{CalibrationConfig, Calibrator, ObserverConfig};
    if fraction == 0.0 {
        return Ok(model.clone());
    }
    let session = Calibrator::new(model, &CalibrationConfig::new(ObserverConfig::MinMax).with_sample_rows(0))?;
    forward(model)?;
    let norms = session.finish()?.input_channel_norms();
    let mut m = model.clone();
    for (block, ffn) in ffns.iter().enumerate() {
        let path = format!("{prefix}encoder.feed_forward.{block}.outer.weight");
        let channels = ember_prune::channel_importance_of(&ffn.outer.weight, norms.get(&path).map(Vec::as_slice))?;
        let keep = ember_prune::keep_top(&channels, ember_prune::units_to_keep(ffn.d_ff(), fraction)?)?;
        m = retain(&m, block, &keep)?;
    }
    Ok(m)
}

/// TinyBERT's hidden-state term: the mean over `targets` (the teacher's mapped layer outputs,
/// host `[b, t, h]` each) of `‖s − t‖² / ‖t‖²` averaged over real tokens, `s` the student's
/// output of layer `k` (`hidden_states[k + 1]`); `pad` `[b, t]` is `true` at padding.
pub(crate) fn hidden_term(
    hidden_states: &[burn::tensor::Tensor<3>],
    targets: &[Vec<f32>],
    pad: burn::tensor::Tensor<2, burn::tensor::Bool>,
) -> burn::tensor::Tensor<1> {
    use burn::tensor::{Tensor, TensorData};
    let device = pad.device();
    let [b, seq] = pad.dims();
    let real = pad.bool_not().float();
    let n_real = real.clone().sum().clamp_min(1.0);
    let mut term = Tensor::<1>::zeros([1], &device);
    for (k, t) in targets.iter().enumerate() {
        let h = t.len() / (b * seq).max(1);
        let t = Tensor::<3>::from_data(TensorData::new(t.clone(), [b, seq, h]), &device);
        let err = (hidden_states[k + 1].clone() - t.clone()).powi_scalar(2).sum_dim(2).squeeze_dim::<2>(2);
        let norm = t.powi_scalar(2).sum_dim(2).squeeze_dim::<2>(2).clamp_min(1e-6);
        term = term + ((err / norm) * real.clone()).sum() / n_real.clone();
    }
    term.div_scalar(targets.len().max(1) as f64)
}

/// Writes `report.{md,json,svg}` and `curve.json` (the loss every 10 steps, then `extra`
/// entries) to `out`.
pub(crate) fn write_report(
    out: &std::path::Path,
    report: &ember_eval::CompressionReport,
    curve: &[(String, usize, f64)],
    extra: Vec<serde_json::Value>,
) -> Result<()> {
    let write =
        |name: &str, bytes: &[u8]| std::fs::write(out.join(name), bytes).map_err(|e| io_err(&out.join(name), e));
    write("report.md", report.to_markdown().as_bytes())?;
    write("report.json", report.to_json().as_bytes())?;
    write("report.svg", report.to_svg()?.as_bytes())?;
    let mut json: Vec<_> =
        curve.iter().map(|(s, step, l)| serde_json::json!({"stage": s, "step": step, "loss": l})).collect();
    json.extend(extra);
    write("curve.json", serde_json::to_string(&json).unwrap_or_default().as_bytes())
}

/// A small seeded generator (SplitMix64) for shuffling: the same seed gives the same run.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}
