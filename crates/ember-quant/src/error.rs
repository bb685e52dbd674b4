//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong when quantizing, calibrating, converting, saving or loading.
///
/// Every public function that takes user data (tensors, configs, files) returns this instead of
/// panicking. Messages say what was wrong and what was expected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QuantError {
    /// NaN or ±Inf where finite numbers are required (calibration data, weights, activations).
    #[error("`{what}` contains a non-finite value ({value}) at flat index {index}; quantization needs finite inputs")]
    NonFinite {
        /// Which data held the value (a layer path, an observer, an argument name).
        what: String,
        /// Flat index of the first offending element.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// Empty data where at least one value is required (an observer that saw nothing, a layer
    /// that was never run during calibration, an empty tensor).
    #[error("`{what}` is empty: {expected}")]
    Empty {
        /// What was empty.
        what: String,
        /// What was expected instead.
        expected: String,
    },
    /// Shapes or lengths that do not agree.
    #[error("shape mismatch in `{what}`: expected {expected}, got {actual}")]
    Shape {
        /// Which tensor or argument.
        what: String,
        /// The expected shape, spelled out.
        expected: String,
        /// The shape that was passed.
        actual: String,
    },
    /// A configuration value outside its valid range.
    #[error("invalid `{what}` = {value}: {expected}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// Its value, formatted.
        value: String,
        /// The valid range or choices.
        expected: String,
    },
    /// A scheme that the requested target cannot express (for example per-channel scales over
    /// more than 255 inputs as a Burn `QFloat` tensor).
    #[error("unsupported quantization scheme: {0}")]
    UnsupportedScheme(String),
    /// Static quantization was requested for a layer that has no calibration statistics.
    #[error(
        "layer `{path}` has no calibration statistics: run batches through the model inside a \
         `Calibrator` session (or use dynamic mode)"
    )]
    NotCalibrated {
        /// The layer's parameter path.
        path: String,
    },
    /// A tensor's data could not be read as the expected dtype.
    #[error("tensor `{what}`: {message}")]
    Data {
        /// Which tensor.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// A quantized model file that is malformed, truncated, from another format version or
    /// scheme, or that does not fit the model it is loaded into.
    #[error("quantized model file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// An I/O error reading or writing a file.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error from the int8 kernels (invalid scales, shapes, non-finite activations).
    #[error(transparent)]
    Kernel(#[from] ember_kernels::KernelError),
}

/// `Result` with [`QuantError`].
pub type Result<T, E = QuantError> = std::result::Result<T, E>;

/// The first non-finite value of `values`, as a [`QuantError::NonFinite`] naming `what`.
pub(crate) fn check_finite(what: impl FnOnce() -> String, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(QuantError::NonFinite { what: what(), index, value: values[index] }),
    }
}
