//! The crate's error type.

use thiserror::Error;

/// What went wrong building, loading or running a model.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file that cannot be read or written.
    #[error("cannot access {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        message: String,
    },
    /// An invalid or unsupported model configuration (`config.json` or a builder).
    #[error("invalid config {what} = {value}: {expected}")]
    Config {
        /// The setting.
        what: String,
        /// Its value.
        value: String,
        /// What would be valid.
        expected: String,
    },
    /// A checkpoint tensor the model needs is absent.
    #[error("checkpoint {file}: tensor `{tensor}` is missing (the model's `{param}` needs it)")]
    MissingTensor {
        /// The checkpoint.
        file: String,
        /// The checkpoint key looked for (after the Hugging Face → Ember name mapping).
        tensor: String,
        /// The model parameter.
        param: String,
    },
    /// A checkpoint tensor the model has no place for (and which is not a known, ignorable
    /// buffer or head).
    #[error("checkpoint {file}: unexpected tensor `{tensor}` (not part of this model; wrong architecture or config?)")]
    UnexpectedTensor {
        /// The checkpoint.
        file: String,
        /// The tensor's key.
        tensor: String,
    },
    /// A checkpoint tensor whose shape or dtype does not match the model's parameter.
    #[error("checkpoint {file}: tensor `{tensor}` {message}")]
    TensorMismatch {
        /// The checkpoint.
        file: String,
        /// The tensor's key.
        tensor: String,
        /// Expected and found.
        message: String,
    },
    /// A checkpoint file that is not valid safetensors (truncated, corrupt header, …).
    #[error("checkpoint {file} is malformed: {message}")]
    Checkpoint {
        /// The checkpoint.
        file: String,
        /// What was wrong.
        message: String,
    },
    /// A tokenizer file that cannot be loaded, or text that cannot be encoded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Inputs of the wrong shape or content (ids outside the vocabulary, too long, …).
    #[error("invalid input {what}: {message}")]
    Input {
        /// Which input.
        what: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A value could not be read back from the device (the backend failed while computing it,
    /// for example an operation the device does not support).
    #[error("reading {what} from the device failed: {message}")]
    Device {
        /// What was being read.
        what: String,
        /// The backend's error.
        message: String,
    },
    /// An error from ember-quant (quantizing, saving or loading an int8 model).
    #[error(transparent)]
    Quant(#[from] ember_quant::QuantError),
    /// An error from ember-layers (the models' blocks: invalid sizes, inputs, or structural
    /// edits such as removing every head).
    #[error(transparent)]
    Layers(#[from] ember_layers::LayerError),
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

pub(crate) fn config_err(what: &str, value: impl ToString, expected: &str) -> ModelError {
    ModelError::Config { what: what.into(), value: value.to_string(), expected: expected.into() }
}

/// The first size in `sizes` that is zero, as a [`ModelError::Config`].
pub(crate) fn check_nonzero(sizes: &[(&str, usize)]) -> Result<()> {
    match sizes.iter().find(|(_, v)| *v == 0) {
        Some((what, _)) => Err(config_err(what, 0, "at least 1")),
        None => Ok(()),
    }
}

/// A model of `params` f32 parameters must fit in memory a process can address: its byte size
/// must fit in `isize` (Rust's allocation limit). Huge sizes in a config are an error here
/// rather than an overflow in parameter arithmetic or an aborted allocation in `init`.
pub(crate) fn check_addressable(params: u128) -> Result<()> {
    let bytes = params.saturating_mul(4);
    if bytes > isize::MAX as u128 {
        return Err(config_err(
            "sizes",
            format!("{params} parameters ({bytes} bytes as f32)"),
            &format!("a model this process can allocate (at most {} bytes)", isize::MAX),
        ));
    }
    Ok(())
}

/// `layer_norm_eps` must be finite and positive.
pub(crate) fn check_eps(eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 { Ok(()) } else { Err(config_err("layer_norm_eps", eps, "a finite value > 0")) }
}

/// A text file's contents, or [`ModelError::Io`] naming it.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| ModelError::Io { path: path.display().to_string(), message: e.to_string() })
}

/// An invalid ember-layers config as the model config error it is (naming the setting).
pub(crate) fn layer_config(e: ember_layers::LayerError) -> ModelError {
    match e {
        ember_layers::LayerError::InvalidConfig { what, value, expected } => {
            ModelError::Config { what: what.into(), value, expected }
        }
        other => ModelError::Layers(other),
    }
}
