//! The crate's error type.

use thiserror::Error;

/// Invalid layer configurations, inputs and structural edits.
#[derive(Debug, Error)]
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
    /// A structural edit (removing heads, neurons or layers, sharing blocks) that cannot be
    /// applied to this module.
    #[error("cannot {action}: {reason}")]
    Edit {
        /// What was asked.
        action: String,
        /// Why not, and what would work.
        reason: String,
    },
    /// An error from ember-quant (an int8 layer's state, or an edit of an int8 layer).
    #[error(transparent)]
    Quant(#[from] ember_quant::QuantError),
}

/// `Result` with [`LayerError`].
pub type Result<T, E = LayerError> = std::result::Result<T, E>;

pub(crate) fn invalid(what: &'static str, value: impl ToString, expected: impl Into<String>) -> LayerError {
    LayerError::InvalidConfig { what, value: value.to_string(), expected: expected.into() }
}

pub(crate) fn edit(action: impl Into<String>, reason: impl Into<String>) -> LayerError {
    LayerError::Edit { action: action.into(), reason: reason.into() }
}

/// A parameter count computed without overflow: every config size is a `usize` a user (or a
/// file) chose, so products are taken in `u128` and saturate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Count(pub(crate) u128);

impl From<usize> for Count {
    fn from(v: usize) -> Self {
        Count(v as u128)
    }
}

impl std::ops::Add for Count {
    type Output = Count;
    fn add(self, rhs: Count) -> Count {
        Count(self.0.saturating_add(rhs.0))
    }
}

impl std::ops::Mul for Count {
    type Output = Count;
    fn mul(self, rhs: Count) -> Count {
        Count(self.0.saturating_mul(rhs.0))
    }
}

impl std::iter::Sum for Count {
    fn sum<I: Iterator<Item = Count>>(iter: I) -> Count {
        iter.fold(Count(0), |a, b| a + b)
    }
}

impl Count {
    /// The count as `usize`, or an error when no process could hold that many f32 values
    /// (their bytes must fit in `isize`, Rust's allocation limit).
    pub(crate) fn checked(self) -> Result<usize> {
        let bytes = self.0.saturating_mul(4);
        if bytes > isize::MAX as u128 {
            return Err(invalid(
                "sizes",
                format!("{} parameters ({bytes} bytes as f32)", self.0),
                format!("a model this process can allocate (at most {} bytes)", isize::MAX),
            ));
        }
        Ok(self.0 as usize)
    }
}
