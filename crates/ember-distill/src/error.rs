//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong when distilling: bad shapes, bad settings, bad numbers.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DistillError {
    /// Teacher and student (or a tensor and its mask or labels) disagree in shape.
    #[error("shape mismatch in {what}: expected {expected}, got {actual}")]
    Shape {
        /// Which input.
        what: String,
        /// The expected shape.
        expected: String,
        /// The shape passed.
        actual: String,
    },
    /// Teacher and student logits have different vocabularies (class counts).
    #[error(
        "vocabulary mismatch: the teacher has {teacher} classes, the student {student}; distillation needs the same output vocabulary (map the student's vocabulary first)"
    )]
    VocabMismatch {
        /// The teacher's last dimension.
        teacher: usize,
        /// The student's last dimension.
        student: usize,
    },
    /// A temperature that is not finite and > 0.
    #[error("temperature must be finite and > 0, got {0}")]
    Temperature(f64),
    /// A setting that cannot work.
    #[error("invalid {what} = {value}: {expected}")]
    InvalidConfig {
        /// The setting.
        what: String,
        /// Its value, formatted.
        value: String,
        /// What would be valid.
        expected: String,
    },
    /// A layer map entry that points outside the teacher or the student.
    #[error("layer map entry student {student} → teacher {teacher} is out of range: {reason}")]
    LayerOutOfRange {
        /// The student layer index.
        student: usize,
        /// The teacher layer index.
        teacher: usize,
        /// Which bound was violated.
        reason: String,
    },
    /// A model output the configured losses need is missing.
    #[error("missing output: {0}")]
    MissingOutput(String),
    /// NaN or infinity in an input.
    #[error("{what} contains NaN or infinite values; distillation needs finite numbers")]
    NonFinite {
        /// Which input.
        what: String,
    },
    /// A teacher-cache entry that is missing, corrupt or does not match the batch.
    #[error("teacher cache: {0}")]
    Cache(String),
    /// Reading or writing the on-disk cache failed.
    #[error("teacher cache I/O on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with [`DistillError`].
pub type Result<T, E = DistillError> = std::result::Result<T, E>;

pub(crate) fn invalid(what: impl Into<String>, value: impl ToString, expected: impl Into<String>) -> DistillError {
    DistillError::InvalidConfig { what: what.into(), value: value.to_string(), expected: expected.into() }
}

pub(crate) fn shape(
    what: impl Into<String>,
    expected: impl Into<String>,
    actual: impl std::fmt::Debug,
) -> DistillError {
    DistillError::Shape { what: what.into(), expected: expected.into(), actual: format!("{actual:?}") }
}
