//! What every subcommand shares: the error type, the device and thread options, model
//! directories (Hugging Face or Ember, encoder or classifier, float or int8), sentence files and
//! output paths that are never overwritten by surprise.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use clap::Args;
use ember_slm::models::{Bert, BertClassifier, Encoded, ModelError, TextTokenizer};

/// Everything that can go wrong in a subcommand: printed as one line, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag or input the command cannot use.
    #[error("{0}")]
    Usage(String),
    /// A file or directory that cannot be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// What failed.
        message: String,
    },
    /// From ember-models.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// From ember-quant.
    #[error(transparent)]
    Quant(#[from] ember_slm::quant::QuantError),
    /// From ember-prune.
    #[error(transparent)]
    Prune(#[from] ember_slm::prune::PruneError),
    /// From ember-eval.
    #[error(transparent)]
    Eval(#[from] ember_slm::eval::EvalError),
    /// From the embed and classify pipelines.
    #[error(transparent)]
    Pipeline(#[from] ember_slm::pipeline::PipelineError),
    /// From the built-in LM pipeline's recipe.
    #[error(transparent)]
    Recipe(#[from] ember_slm::pipeline::lm::RecipeError),
    /// From the built-in LM pipeline's run.
    #[error(transparent)]
    Lm(#[from] ember_slm::pipeline::lm::LmError),
}

/// The result of a subcommand.
pub type Result<T> = std::result::Result<T, CliError>;

/// A usage error.
pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// An I/O error on `path`.
pub fn io_err(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// The device and thread options of every subcommand that runs a model.
#[derive(Args, Debug, Clone)]
pub struct RunOpts {
    /// Where the model runs: flex (CPU), ndarray (CPU), wgpu (a build with --features wgpu) or
    /// cuda (a build with --features cuda)
    #[arg(long, value_name = "NAME", default_value = "flex")]
    pub device: String,
    /// CPU threads for Burn's float ops and Ember's int8 kernels together [default: every core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
}

impl RunOpts {
    /// The device, after the thread count is applied.
    pub fn setup(&self) -> Result<Device> {
        let device = device(&self.device)?;
        self.apply_threads()?;
        Ok(device)
    }

    /// Sets the thread count of Burn's CPU work and Ember's kernels.
    pub fn apply_threads(&self) -> Result<()> {
        ember_slm::quant::set_cpu_threads(self.threads_used())?;
        Ok(())
    }

    /// The threads the run uses.
    pub fn threads_used(&self) -> usize {
        self.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |n| n as usize)
    }
}

/// The device named `name`.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "flex" => Ok(Device::flex()),
        "ndarray" => ndarray_device(),
        "wgpu" => wgpu_device(),
        "cuda" => cuda_device(),
        other => Err(usage(format!("--device {other}: expected flex, ndarray, wgpu or cuda"))),
    }
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)] // NdArray is deprecated upstream; Ember still supports it.
fn ndarray_device() -> Result<Device> {
    Ok(Device::ndarray())
}

#[cfg(not(feature = "ndarray"))]
fn ndarray_device() -> Result<Device> {
    Err(usage("--device ndarray: this build has no NdArray backend; build with `--features ndarray`"))
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Ok(Device::cuda(burn::tensor::DeviceIndex::Default))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    Err(usage(
        "--device cuda: this build has no CUDA backend; build with `--features cuda` (its build downloads a toolchain)",
    ))
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    Ok(Device::wgpu(Default::default()))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device> {
    Err(usage("--device wgpu: this build has no wgpu backend; build with `--features wgpu`"))
}

/// The network in a model directory.
#[allow(clippy::large_enum_variant)] // a few per process, built once and never moved in a loop
pub enum Net {
    /// A sentence encoder (`BertModel`, ALBERT, Ember's `bert`).
    Encoder(Bert),
    /// A sequence classifier with its label names (none: regression).
    Classifier(BertClassifier, Vec<String>),
}

/// Where a model directory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `config.json` + `model.safetensors` (Hugging Face).
    HuggingFace,
    /// `ember.json` + `model.ember.safetensors` (Ember, float or int8).
    Ember,
}

/// A loaded model directory: the network, its tokenizer and its layout.
pub struct Model {
    /// The directory.
    pub dir: PathBuf,
    /// The network.
    pub net: Net,
    /// `tokenizer.json` of the directory.
    pub tokenizer: TextTokenizer,
    /// Its layout.
    pub layout: Layout,
}

/// Label names from a Hugging Face `config.json` of a sequence classifier (`None` for an
/// encoder; an empty list for a regression head).
fn hf_classifier_labels(config: &serde_json::Value) -> Option<Vec<String>> {
    let archs = config.get("architectures")?.as_array()?;
    if !archs.iter().any(|a| a.as_str().is_some_and(|s| s.ends_with("ForSequenceClassification"))) {
        return None;
    }
    let n = config.get("num_labels").and_then(serde_json::Value::as_u64);
    let map = config.get("id2label").and_then(serde_json::Value::as_object);
    let mut labels: Vec<(u64, String)> = map
        .map(|m| {
            m.iter().filter_map(|(k, v)| Some((k.parse::<u64>().ok()?, v.as_str()?.to_string()))).collect::<Vec<_>>()
        })
        .unwrap_or_default();
    labels.sort();
    let regression = config.get("problem_type").and_then(serde_json::Value::as_str) == Some("regression")
        || n == Some(1)
        || labels.len() == 1;
    if regression {
        return Some(Vec::new());
    }
    Some(labels.into_iter().map(|(_, l)| l).collect())
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| io_err(path, format!("not valid JSON: {e}")))
}

impl Model {
    /// Loads `dir` onto `device`: an Ember directory (`ember.json`) or a Hugging Face one
    /// (`config.json`), with its `tokenizer.json`; sequences are cut at `max_tokens` (default:
    /// the model's position table).
    pub fn load(dir: &Path, device: &Device, max_tokens: Option<usize>) -> Result<Model> {
        if !dir.is_dir() {
            return Err(usage(format!(
                "{}: not a directory (expected a model directory: Hugging Face with config.json, or Ember's with ember.json)",
                dir.display()
            )));
        }
        let ember = dir.join(ember_slm::models::save::CONFIG_FILE);
        let (net, layout) = if ember.is_file() {
            let header = read_json(&ember)?;
            match header.get("kind").and_then(serde_json::Value::as_str) {
                Some("bert_classifier") => {
                    let (m, labels) = BertClassifier::load(dir, device)?;
                    (Net::Classifier(m, labels), Layout::Ember)
                }
                Some("bert") => (Net::Encoder(Bert::load(dir, device)?), Layout::Ember),
                other => {
                    return Err(usage(format!(
                        "{}: model kind {} is not an encoder (expected bert or bert_classifier)",
                        ember.display(),
                        other.unwrap_or("(missing)")
                    )));
                }
            }
        } else if dir.join("config.json").is_file() {
            let config = read_json(&dir.join("config.json"))?;
            match hf_classifier_labels(&config) {
                Some(labels) => {
                    let loaded = BertClassifier::from_pretrained(dir, labels.clone(), 0.0, device)?;
                    if !loaded.head_loaded {
                        return Err(usage(format!(
                            "{}: config.json names a sequence classifier but model.safetensors has no head of {} outputs",
                            dir.display(),
                            labels.len().max(1)
                        )));
                    }
                    (Net::Classifier(loaded.model, labels), Layout::HuggingFace)
                }
                None => (Net::Encoder(Bert::from_pretrained(dir, device)?), Layout::HuggingFace),
            }
        } else {
            return Err(usage(format!(
                "{}: neither config.json (Hugging Face) nor ember.json (Ember) is there",
                dir.display()
            )));
        };
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(usage(format!("{}: no tokenizer.json (the model's tokenizer is needed)", dir.display())));
        }
        let bert = match &net {
            Net::Encoder(b) => b,
            Net::Classifier(c, _) => &c.bert,
        };
        let limit = bert.max_positions();
        let max_len = match max_tokens {
            Some(0) => return Err(usage("--max-tokens 0: expected at least 1")),
            Some(n) => n.min(limit),
            None => limit,
        };
        let tokenizer = TextTokenizer::from_file(&tok_path, max_len)?;
        Ok(Model { dir: dir.to_path_buf(), net, tokenizer, layout })
    }

    /// The encoder (a classifier's own).
    pub fn encoder(&self) -> &Bert {
        match &self.net {
            Net::Encoder(b) => b,
            Net::Classifier(c, _) => &c.bert,
        }
    }

    /// `encoder` or `classifier`.
    pub fn kind(&self) -> &'static str {
        match &self.net {
            Net::Encoder(_) => "encoder",
            Net::Classifier(..) => "classifier",
        }
    }

    /// Whether the encoder's linear layers are int8.
    pub fn is_int8(&self) -> bool {
        self.encoder().encoder.attention.iter().any(|a| a.query.is_quantized())
    }

    /// Tokenizes `texts` (single sentences).
    pub fn encode(&self, texts: &[String]) -> Result<Encoded> {
        Ok(self.tokenizer.encode_batch(texts)?)
    }

    /// The model's output on a batch: sentence embeddings for an encoder, logits for a
    /// classifier.
    pub fn output(&self, batch: &Encoded) -> Result<Tensor<2>> {
        Ok(self.forward(batch)?)
    }

    /// [`Model::output`] with the model's own error type.
    pub fn forward(&self, batch: &Encoded) -> ember_slm::models::Result<Tensor<2>> {
        match &self.net {
            Net::Encoder(b) => b.embed(batch),
            Net::Classifier(c, _) => c.logits(batch),
        }
    }

    /// Parameters of the model (int8 weights count once, as float ones do).
    pub fn params(&self) -> Result<u64> {
        let encoder = self.encoder().architecture()?.num_params()? as u64;
        Ok(match &self.net {
            Net::Encoder(_) => encoder,
            Net::Classifier(c, _) => {
                let h = c.bert.hidden_size() as u64;
                encoder + h * h + h + (h + 1) * c.n_outputs() as u64
            }
        })
    }

    /// Bytes of the directory's weight file.
    pub fn weight_bytes(&self) -> u64 {
        let name = match self.layout {
            Layout::HuggingFace => "model.safetensors",
            Layout::Ember => ember_slm::models::save::WEIGHTS_FILE,
        };
        std::fs::metadata(self.dir.join(name)).map_or(0, |m| m.len())
    }

    /// Copies the tokenizer files of this directory into `out`.
    pub fn copy_tokenizer(&self, out: &Path) -> Result<()> {
        for name in ember_slm::models::export::TOKENIZER_FILES {
            let src = self.dir.join(name);
            if src.is_file() {
                std::fs::copy(&src, out.join(name)).map_err(|e| io_err(&out.join(name), e))?;
            }
        }
        Ok(())
    }
}

/// The rows of a `[n, d]` tensor.
pub fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, d] = t.dims();
    let v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| usage(format!("model output not readable as f32: {e:?}")))?;
    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
        return Err(usage(format!("the model produced a non-finite output ({bad}): its weights are broken")));
    }
    Ok(v.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
}

/// Sentences the model-checking commands use when the user gives none: varied lengths and
/// topics, as a quick sanity set (not a benchmark corpus).
pub const BUILT_IN_SENTENCES: [&str; 16] = [
    "Small language models can run on a laptop.",
    "The whale surfaced beside the ship at dawn.",
    "Quantization stores weights as eight-bit integers.",
    "A cat sat on the warm windowsill all afternoon.",
    "Distillation trains a small student to imitate a large teacher.",
    "Prices rose sharply after the storm closed the harbour.",
    "She read the letter twice before she understood it.",
    "Pruning removes the attention heads that matter least.",
    "The committee will meet again next Tuesday to vote on the proposal.",
    "Rust's ownership rules prevent data races at compile time.",
    "He forgot his umbrella and walked home in the rain.",
    "Sentence embeddings map similar meanings to nearby vectors.",
    "The museum opened a new wing for modern sculpture.",
    "Latency at batch one matters for interactive search.",
    "Two trains left the station in opposite directions.",
    "An int8 model is about four times smaller than its float original.",
];

/// Non-empty lines of `path` (`-`: standard input), or the built-in sentences when `path` is
/// `None`.
pub fn read_sentences(path: Option<&Path>) -> Result<Vec<String>> {
    let Some(path) = path else {
        return Ok(BUILT_IN_SENTENCES.iter().map(|s| (*s).to_string()).collect());
    };
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| io_err(path, e))?;
        s
    } else {
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        String::from_utf8(bytes).map_err(|_| io_err(path, "not UTF-8 text"))?
    };
    let lines: Vec<String> =
        text.lines().map(|l| l.trim_end_matches('\r').trim().to_string()).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return Err(usage(format!("{}: no non-empty line (one sentence per line expected)", path.display())));
    }
    Ok(lines)
}

/// Refuses an output directory that already holds files, unless `force`; creates it.
pub fn fresh_dir(out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(usage(format!("--out {}: exists and is not a directory", out.display())));
        }
        let non_empty = std::fs::read_dir(out).map_err(|e| io_err(out, e))?.next().is_some();
        if non_empty && !force {
            return Err(usage(format!(
                "--out {}: the directory is not empty; choose another or pass --force to write into it",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))
}

/// Writes `bytes` to `path` through a temporary file renamed into place, so that an error never
/// leaves a half-written file where an earlier one was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}
