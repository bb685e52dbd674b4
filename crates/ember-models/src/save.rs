//! Saving and loading Ember models with their architecture: a directory holding
//! [`CONFIG_FILE`] (`ember.json`: the model kind, the layout version and the config, every
//! block's width included) and [`WEIGHTS_FILE`] (`model.ember.safetensors`: every parameter by
//! its path, f32 or int8, in `ember_quant`'s format, with the layout version in its metadata).
//!
//! **Layout versions.** Version 2 is the model layout in which every model is composed of
//! ember-layers blocks (`encoder.attention.0.query.weight`, …). Version 1 was the layout of
//! ember-models 0.1 (`layers.0.query.weight` for BERT, `attn.0.query.weight` for the causal LM),
//! saved with `ember_quant::save_quantized` and no `ember.json`; such files are refused with an
//! error that names the version, never loaded into the wrong parameters: re-create them from the
//! float checkpoint (Hugging Face directories load with `Bert::from_pretrained`).

use crate::error::{ModelError, Result};
use burn::module::Module;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The architecture file of a saved model.
pub const CONFIG_FILE: &str = "ember.json";
/// The weight file of a saved model.
pub const WEIGHTS_FILE: &str = "model.ember.safetensors";
/// The model layout this build writes and reads.
pub const LAYOUT_VERSION: u32 = 2;
/// The weight file's metadata key holding the layout version.
pub const LAYOUT_KEY: &str = "ember_models.layout";
/// The weight file's metadata key holding the model kind.
pub const KIND_KEY: &str = "ember_models.kind";
/// The weight file's metadata key holding the id of the save it belongs to (also in
/// `ember.json`).
pub const SAVE_ID_KEY: &str = "ember_models.save_id";

/// The kinds of model a directory can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// [`crate::Bert`] (BERT, MiniLM, ALBERT and their students).
    Bert,
    /// [`crate::CausalLm`].
    CausalLm,
    /// [`crate::BertClassifier`].
    BertClassifier,
}

impl ModelKind {
    /// The name written to `ember.json`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Bert => "bert",
            ModelKind::CausalLm => "causal_lm",
            ModelKind::BertClassifier => "bert_classifier",
        }
    }
}

#[derive(Serialize)]
struct Header<'a, C: Serialize> {
    format: &'static str,
    layout_version: u32,
    kind: &'static str,
    save_id: String,
    config: &'a C,
}

fn io_err(path: &Path, e: impl ToString) -> ModelError {
    ModelError::Io { path: path.display().to_string(), message: e.to_string() }
}

fn format_err(path: &Path, message: String) -> ModelError {
    ModelError::Checkpoint { file: path.display().to_string(), message }
}

/// Writes `model` and its `config` to `dir` (see the [module docs](self)); returns the weight
/// file's size. Both files are written to temporary names first and renamed into place, weights
/// then config, so an error while writing leaves an earlier save of the directory intact; both
/// carry the same save id, so a directory caught between the two renames (a crash) is refused
/// by [`read_model`] instead of pairing new weights with an old config.
pub(crate) fn save_model<M: Module, C: Serialize>(model: &M, dir: &Path, kind: ModelKind, config: &C) -> Result<u64> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let save_id = save_id();
    let meta = BTreeMap::from([
        (LAYOUT_KEY.to_string(), LAYOUT_VERSION.to_string()),
        (KIND_KEY.to_string(), kind.name().to_string()),
        (SAVE_ID_KEY.to_string(), save_id.clone()),
    ]);
    let (weights, config_path) = (dir.join(WEIGHTS_FILE), dir.join(CONFIG_FILE));
    let (weights_tmp, config_tmp) =
        (ember_quant::io::temporary_path(&weights), ember_quant::io::temporary_path(&config_path));
    let header = Header { format: "ember-model", layout_version: LAYOUT_VERSION, kind: kind.name(), save_id, config };
    let text = serde_json::to_string_pretty(&header).map_err(|e| io_err(&config_path, e))? + "\n";
    let cleanup = || {
        let _ = std::fs::remove_file(&weights_tmp);
        let _ = std::fs::remove_file(&config_tmp);
    };
    let bytes = match ember_quant::save_quantized_with(model, &weights_tmp, &meta) {
        Ok(b) => b,
        Err(e) => {
            cleanup();
            return Err(e.into());
        }
    };
    let renamed = std::fs::write(&config_tmp, text)
        .map_err(|e| io_err(&config_path, e))
        .and_then(|_| std::fs::rename(&weights_tmp, &weights).map_err(|e| io_err(&weights, e)))
        .and_then(|_| std::fs::rename(&config_tmp, &config_path).map_err(|e| io_err(&config_path, e)));
    if let Err(e) = renamed {
        cleanup();
        return Err(e);
    }
    Ok(bytes)
}

/// An id shared by the two files of one save: the time in nanoseconds, the process and a
/// counter.
fn save_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n:x}", std::process::id())
}

/// Reads `dir`'s config for a model of `kind` and checks the weight file's layout; returns the
/// config and the weight file's path.
pub(crate) fn read_model<C: DeserializeOwned>(dir: &Path, kind: ModelKind) -> Result<(C, PathBuf)> {
    let path = dir.join(CONFIG_FILE);
    if !path.exists() {
        let hint = if dir.join("config.json").exists() {
            " (a Hugging Face directory: load it with Bert::from_pretrained)".to_string()
        } else if dir.is_file() {
            " (a file: models saved by ember-models 0.1 with ember_quant::save_quantized use model layout 1, \
             which this build cannot read; re-create them from the float checkpoint)"
                .to_string()
        } else {
            String::new()
        };
        return Err(io_err(&path, format!("no {CONFIG_FILE}: not a directory saved by Ember's save{hint}")));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format_err(&path, format!("not valid JSON: {e}")))?;
    if v.get("format").and_then(|f| f.as_str()) != Some("ember-model") {
        return Err(format_err(&path, "no `\"format\": \"ember-model\"`: not written by Ember".into()));
    }
    let version = v.get("layout_version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(LAYOUT_VERSION)) {
        return Err(format_err(
            &path,
            format!(
                "model layout version {}, this build reads version {LAYOUT_VERSION} (re-create the model from its \
                 float checkpoint with this version)",
                version.map_or("missing".to_string(), |v| v.to_string())
            ),
        ));
    }
    let found = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if found != kind.name() {
        return Err(format_err(&path, format!("holds a `{found}` model, expected `{}`", kind.name())));
    }
    let config = v.get("config").cloned().unwrap_or(serde_json::Value::Null);
    let config: C = serde_json::from_value(config).map_err(|e| format_err(&path, format!("invalid config: {e}")))?;
    let weights = dir.join(WEIGHTS_FILE);
    let meta = ember_quant::file_metadata(&weights)?;
    match meta.get(LAYOUT_KEY).map(String::as_str) {
        Some(v) if v == LAYOUT_VERSION.to_string() => {}
        Some(v) => {
            return Err(format_err(
                &weights,
                format!("model layout version {v}, this build reads version {LAYOUT_VERSION}"),
            ));
        }
        None => {
            return Err(format_err(
                &weights,
                format!(
                    "no model layout version: saved by ember-models 0.1 (layout 1, paths such as `layers.0.query`), \
                     this build reads layout {LAYOUT_VERSION}; re-create the model from its float checkpoint"
                ),
            ));
        }
    }
    if meta.get(KIND_KEY).map(String::as_str) != Some(kind.name()) {
        return Err(format_err(&weights, format!("not the weights of a `{}` model", kind.name())));
    }
    let id = v.get("save_id").and_then(|i| i.as_str());
    if meta.get(SAVE_ID_KEY).map(String::as_str) != id {
        return Err(format_err(
            dir,
            format!("{CONFIG_FILE} and {WEIGHTS_FILE} come from different saves (an interrupted save?): save again"),
        ));
    }
    Ok((config, weights))
}

/// Loads the weight file into a skeleton built from the directory's config.
pub(crate) fn load_weights<M: Module>(skeleton: M, weights: &Path) -> Result<M> {
    Ok(ember_quant::load_quantized(skeleton, weights)?)
}
