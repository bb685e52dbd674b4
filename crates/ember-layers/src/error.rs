//! The crate's error type.

use thiserror::Error;

/// Invalid layer configurations and inputs.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum LayerError {
    /// A configuration that cannot be built.
    #[error("invalid `{what}` = {value}: {expected}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// Its value, formatted.
        value: String,
        /// What would be valid.
        expected: String,
    },
    /// An input whose shape does not fit the layer.
    #[error("shape mismatch in `{what}`: expected {expected}, got {actual}")]
    Shape {
        /// Which input.
        what: String,
        /// The expected shape.
        expected: String,
        /// The shape passed.
        actual: String,
    },
    /// An input whose values do not fit the layer (token ids outside the embedding table).
    #[error("invalid `{what}`: {message}")]
    Input {
        /// Which input.
        what: String,
        /// What was wrong and what was expected.
        message: String,
    },
}

/// `Result` with [`LayerError`].
pub type Result<T, E = LayerError> = std::result::Result<T, E>;

pub(crate) fn invalid(what: &'static str, value: impl ToString, expected: impl Into<String>) -> LayerError {
    LayerError::InvalidConfig { what, value: value.to_string(), expected: expected.into() }
}
