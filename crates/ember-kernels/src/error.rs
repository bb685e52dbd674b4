//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong when calling `ember-kernels` with user data.
///
/// Every public function that takes slices or parameters from a caller validates them and
/// returns one of these instead of panicking.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum KernelError {
    /// A buffer does not have the length its shape implies.
    #[error("`{what}` has {actual} elements, expected {expected} ({shape})")]
    Length {
        /// Which argument was wrong.
        what: &'static str,
        /// The length that the shape implies.
        expected: usize,
        /// The length that was passed.
        actual: usize,
        /// The shape it was checked against, spelled out.
        shape: String,
    },
    /// Two operands disagree on a shared dimension.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An input contained NaN or ±Inf where finite numbers are required.
    #[error("`{what}` contains a non-finite value ({value}) at index {index}; quantization needs finite inputs")]
    NonFinite {
        /// Which argument held the value.
        what: &'static str,
        /// Flat index of the first offending element.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A quantization scale was not a finite positive number.
    #[error("`{what}` has an invalid scale {value} at index {index}: scales must be finite and > 0")]
    InvalidScale {
        /// Which argument held the scale.
        what: &'static str,
        /// Index of the offending scale.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A zero point is outside the range of the quantized type.
    #[error("zero point {value} at index {index} is outside [{min}, {max}]")]
    InvalidZeroPoint {
        /// Index of the offending zero point.
        index: usize,
        /// The offending value.
        value: i32,
        /// Smallest allowed value.
        min: i32,
        /// Largest allowed value.
        max: i32,
    },
    /// The reduction dimension is too long for exact i32 accumulation.
    #[error(
        "K = {k} exceeds {max}, the largest reduction length for which i32 accumulation of u8·i8 products is exact"
    )]
    KTooLarge {
        /// The requested reduction length (or group length).
        k: usize,
        /// The largest exact length, [`crate::MAX_EXACT_K`].
        max: usize,
    },
    /// A group size of zero, or one that a weight-scale layout does not fit.
    #[error("invalid group size {0}: must be at least 1")]
    InvalidGroupSize(usize),
    /// The weights were packed for a kernel other than the one requested.
    #[error("weights were packed for kernel `{packed}` but the call asked for `{requested}`; repack them")]
    KernelMismatch {
        /// Kernel the weights are packed for.
        packed: &'static str,
        /// Kernel that was requested.
        requested: &'static str,
    },
    /// A kernel was requested by name that does not exist or this CPU cannot run.
    #[error("kernel `{name}` is not available on this CPU (available: {available})")]
    KernelUnavailable {
        /// The requested name.
        name: String,
        /// Names of the kernels this CPU can run.
        available: String,
    },
    /// A shape is so large that its element count overflows `usize`.
    #[error("shape {0} overflows usize")]
    Overflow(String),
}

/// Shorthand for `Result<T, KernelError>`.
pub type Result<T> = std::result::Result<T, KernelError>;

pub(crate) fn check_len(
    what: &'static str,
    actual: usize,
    expected: usize,
    shape: impl FnOnce() -> String,
) -> Result<()> {
    if actual == expected { Ok(()) } else { Err(KernelError::Length { what, expected, actual, shape: shape() }) }
}

pub(crate) fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| KernelError::Overflow(format!("{a}×{b}")))
}
