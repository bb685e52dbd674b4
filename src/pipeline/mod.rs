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
//! - [`text`]: plain text into sentences.
//! - [`train`]: pieces for your own fine-tuning loop (a warm-up + linear-decay schedule, AdamW
//!   with clipping).
//!
//! The `compress` example runs it: `cargo run --release --example compress -- --teacher DIR
//! --task embed --data FILE`.

pub mod embed;
pub mod text;
pub mod train;

use thiserror::Error;

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
