//! The crate's error type.

use thiserror::Error;

/// Invalid pruning settings and inputs.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PruneError {
    /// A sparsity outside `[0, 1)`.
    #[error("sparsity must be in [0, 1) (the fraction of weights removed), got {0}")]
    Sparsity(f64),
    /// An N:M pattern that cannot be applied.
    #[error("invalid {n}:{m} sparsity for a dimension of {dim}: {expected}")]
    NM {
        /// Kept weights per group.
        n: usize,
        /// Group size.
        m: usize,
        /// The grouped dimension.
        dim: usize,
        /// What would be valid.
        expected: String,
    },
    /// The selection matched no prunable parameter.
    #[error("the selection matched no prunable parameter ({0})")]
    EmptySelection(String),
    /// Scores or weights that do not fit each other.
    #[error("shape mismatch in {what}: expected {expected}, got {actual}")]
    Shape {
        /// Which input.
        what: String,
        /// The expected shape.
        expected: String,
        /// The shape passed.
        actual: String,
    },
    /// NaN or infinity in weights or scores.
    #[error("{0} contains NaN or infinite values; pruning needs finite numbers")]
    NonFinite(String),
    /// A setting that cannot work.
    #[error("invalid {what} = {value}: {expected}")]
    InvalidConfig {
        /// The setting.
        what: String,
        /// Its value.
        value: String,
        /// What would be valid.
        expected: String,
    },
}

/// `Result` with [`PruneError`].
pub type Result<T, E = PruneError> = std::result::Result<T, E>;

pub(crate) fn check_sparsity(s: f64) -> Result<()> {
    if (0.0..1.0).contains(&s) { Ok(()) } else { Err(PruneError::Sparsity(s)) }
}
