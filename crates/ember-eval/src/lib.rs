//! # ember-eval: the yardsticks for compressed models
//!
//! Metrics as accumulators over batches (plain slices, so they work with any model and
//! device): accuracy, top-k accuracy, precision / recall / F1 (binary, macro, micro, weighted,
//! per class), Matthews correlation, Pearson and Spearman, perplexity, SQuAD-style exact match
//! and F1 with the official normalization, MultiRC and ReCoRD.
//!
//! ```
//! use ember_eval::{Average, ConfusionMatrix, Correlation};
//!
//! let mut cm = ConfusionMatrix::new(2).unwrap();
//! cm.update(&[1, 0, 1, 1], &[1, 0, 0, 1]).unwrap();   // predictions, labels
//! assert!((cm.prf(Average::Binary { positive: 1 }).unwrap().f1 - 0.8).abs() < 1e-12);
//! let mut r = Correlation::new();
//! r.update(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]).unwrap();
//! assert!((r.spearman().unwrap() - 1.0).abs() < 1e-12);
//! ```
//!
//! ## Modules
//! - [`classification`] — [`Accuracy`], [`TopKAccuracy`], [`ConfusionMatrix`] (P/R/F1, MCC).
//! - [`regression`] — [`Correlation`] (Pearson, Spearman with average ranks).
//! - [`glue`] — [`GlueTask`]: official TSV readers, label maps, metrics, [`glue_score`].
//! - [`superglue`] — [`SuperGlueTask`]: official JSONL readers, metrics, [`superglue_score`].
//! - [`latency`] — [`measure`]: warm-up, budgets, p50/p90/p99, items/s and tokens/s.
//! - [`report`] — [`CompressionReport`] (markdown, JSON, SVG) and [`EnergyModel`] (Horowitz 2014).
//! - [`similarity`] — [`cosine`], [`row_cosines`], [`pair_cosines`]: how close compressed
//!   embeddings stay to the original's.
//! - [`language`] — [`Perplexity`], [`SquadMetric`], [`MultiRc`], [`normalize_answer`].
//! - [`size`] — [`ModelSize`]: bytes by component and dtype for any Burn module, [`file_size`],
//!   linear multiply-accumulates by dtype for the energy estimate.
//! - [`tensor`] — `update_tensor` on every accumulator: metrics straight from Burn tensors.
//!
//! The guide (GUIDE.md in this crate) follows; its examples run as doctests.
#![doc = include_str!("../GUIDE.md")]
//!

pub mod classification;
pub mod error;
pub mod glue;
pub mod language;
pub mod latency;
pub mod regression;
pub mod report;
pub mod similarity;
pub mod size;
pub mod superglue;
pub mod tensor;

pub use classification::{Accuracy, Average, ConfusionMatrix, Prf, TopKAccuracy};
pub use error::{EvalError, Result};
pub use glue::{GlueExample, GlueLabel, GluePrediction, GlueSplit, GlueTask, TaskScore, glue_score};
pub use language::{MultiRc, Perplexity, SquadMetric, exact_match, normalize_answer, token_f1};
pub use latency::{LatencyConfig, LatencyReport, measure, percentile, summarize};
pub use regression::{Correlation, average_ranks};
pub use report::{CompressionReport, EnergyModel, MetricFloor, StageRow};
pub use similarity::{cosine, pair_cosines, row_cosines};
pub use size::{Component, ModelSize, TensorSize, file_size};
pub use superglue::{
    MultiRcQuestion, RecordQuery, SgExample, SgScore, SgSplit, SuperGlueTask, evaluate_multirc, evaluate_record,
    superglue_score,
};
