//! The crate's error type.

use thiserror::Error;

/// Invalid evaluation inputs.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Nothing was accumulated (a metric of zero examples is undefined).
    #[error("no examples: {0} needs at least one")]
    Empty(String),
    /// Predictions and labels (or two series) of different lengths.
    #[error("length mismatch in {what}: {left} vs {right}")]
    LengthMismatch {
        /// Which inputs.
        what: String,
        /// First length.
        left: usize,
        /// Second length.
        right: usize,
    },
    /// A correlation over a constant series (its standard deviation is 0).
    #[error("{0} is constant: the correlation is undefined (scipy returns NaN; Ember reports it)")]
    Constant(String),
    /// A class index outside the configured classes.
    #[error("class {class} is outside 0..{classes} in {what}")]
    InvalidClass {
        /// Which input.
        what: String,
        /// The index.
        class: usize,
        /// Number of classes.
        classes: usize,
    },
    /// NaN or infinity in scores or values.
    #[error("{0} contains NaN or infinite values; metrics need finite numbers")]
    NonFinite(String),
    /// A malformed task file.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A file that cannot be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        message: String,
    },
    /// A tensor whose values cannot be read to the host in the expected element type.
    #[error("cannot read {what} from the device: {message}")]
    Data {
        /// Which tensor.
        what: String,
        /// The cause.
        message: String,
    },
    /// An invalid setting (k = 0, a positive class outside the classes, …).
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

/// `Result` with [`EvalError`].
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

pub(crate) fn same_len(what: &str, a: usize, b: usize) -> Result<()> {
    if a == b { Ok(()) } else { Err(EvalError::LengthMismatch { what: what.into(), left: a, right: b }) }
}
