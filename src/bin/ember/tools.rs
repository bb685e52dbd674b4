//! `ember quantize`, `ember prune`, `ember embed` and `ember bench`: one model directory in,
//! a model directory, an embeddings file or a latency table out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use ember_slm::models::{Bert, BertClassifier, Encoded};
use ember_slm::pipeline::round_robin_latency;
use ember_slm::prune::{channel_importance_of, keep_top, unit_scores, units_to_keep};
use ember_slm::quant::{ActivationMode, CalibrationConfig, Calibrator, ObserverConfig, QuantizeConfig, Quantizer};
use serde_json::json;

use crate::common::{
    Layout, Model, Net, Result, RunOpts, fresh_dir, io_err, read_sentences, rows, usage, write_atomic,
};

// ---------------------------------------------------------------------------------------------
// Shared
// ---------------------------------------------------------------------------------------------

/// The machine line every timing prints: CPU model, the int8 kernel chosen, register-only peaks.
pub fn machine_line(threads: usize) -> String {
    let peak = |v: Option<f64>, unit: &str| v.map_or_else(|| "n/a".to_string(), |p| format!("{p:.0} {unit}"));
    format!(
        "{}; int8 kernel {}; register-only peak per core: int8 {}, f32 {}; {threads} thread(s)",
        ember_slm::kernels::cpu_model(),
        ember_slm::kernels::KernelId::selected().name(),
        peak(ember_slm::kernels::machine::vnni_peak_gops(), "GOPS"),
        peak(ember_slm::kernels::machine::f32_fma_peak_gflops(), "GFLOPS"),
    )
}

/// The machine as JSON.
pub fn machine_json(threads: usize) -> serde_json::Value {
    json!({
        "cpu": ember_slm::kernels::cpu_model(),
        "int8_kernel": ember_slm::kernels::KernelId::selected().short_name(),
        "int8_peak_gops_per_core": ember_slm::kernels::machine::vnni_peak_gops(),
        "f32_peak_gflops_per_core": ember_slm::kernels::machine::f32_fma_peak_gflops(),
        "threads": threads,
    })
}

/// A batch of `n` sentences taken cyclically from `sentences`.
fn cycled(sentences: &[String], n: usize) -> Vec<String> {
    sentences.iter().cycle().take(n).cloned().collect()
}

/// The outputs of `model` on `sentences`, in batches of 32.
fn outputs(model: &Model, sentences: &[String]) -> Result<Vec<Vec<f32>>> {
    let mut all = Vec::with_capacity(sentences.len());
    for chunk in sentences.chunks(32) {
        all.extend(rows(model.output(&model.encode(chunk)?)?)?);
    }
    Ok(all)
}

/// How a converted model (`after`) compares with its original (`before`) on the same sentences:
/// the cosine of each output row (sentence embedding, or a classifier's logits) with the
/// original's, for classifiers the share of rows whose arg-max agrees, and (when timed) the p50
/// latency of both at batch 1 and 32, measured round-robin in the same run.
struct Comparison {
    sentences: usize,
    cos_mean: f64,
    cos_min: f64,
    agree: Option<f64>,
    /// `[model][batch 1, batch 32]` (p50, p90) ms.
    times: Option<Vec<Vec<(f64, f64)>>>,
    threads: usize,
}

impl Comparison {
    fn new(before: &Model, after: &Model, sentences: &[String], latency_ms: u64, threads: usize) -> Result<Self> {
        let (a, b) = (outputs(before, sentences)?, outputs(after, sentences)?);
        let cos = ember_slm::eval::row_cosines(&a, &b)?;
        let cos_mean = cos.iter().sum::<f64>() / cos.len().max(1) as f64;
        let cos_min = cos.iter().copied().fold(f64::INFINITY, f64::min);
        let argmax = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j]));
        let classifier = matches!(before.net, Net::Classifier(..)) && a.first().is_some_and(|r| r.len() > 1);
        let agree = classifier
            .then(|| a.iter().zip(&b).filter(|(x, y)| argmax(x) == argmax(y)).count() as f64 / a.len().max(1) as f64);
        let times = if latency_ms > 0 {
            let batches = [before.encode(&sentences[..1])?, before.encode(&cycled(sentences, 32))?];
            Some(latencies(&[before, after], &batches, latency_ms)?)
        } else {
            None
        };
        Ok(Comparison { sentences: sentences.len(), cos_mean, cos_min, agree, times, threads })
    }

    /// Its fields of a report, the two models named `names`.
    fn json(&self, names: [&str; 2]) -> serde_json::Map<String, serde_json::Value> {
        let v = json!({
            "sentences": self.sentences,
            "output_cosine_mean": self.cos_mean,
            "output_cosine_min": self.cos_min,
            "argmax_agreement": self.agree,
            "latency_p50_ms": self.times.as_ref().map(|t| json!({
                names[0]: {"batch_1": t[0][0].0, "batch_32": t[0][1].0},
                names[1]: {"batch_1": t[1][0].0, "batch_32": t[1][1].0},
            })),
            "machine": machine_json(self.threads),
        });
        match v {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    /// Its lines of a printed report: output agreement (`what`), then the machine and a latency
    /// table of the two models named `names`.
    fn text(&self, s: &mut String, what: &str, names: [&str; 2]) {
        let _ = write!(
            s,
            "{what} on {} sentences: cosine mean {:.5}, min {:.5}",
            self.sentences, self.cos_mean, self.cos_min
        );
        match self.agree {
            Some(g) => {
                let _ = writeln!(s, ", same arg-max on {:.1} %", 100.0 * g);
            }
            None => s.push('\n'),
        }
        if let Some(t) = &self.times {
            let _ = writeln!(s, "{}", machine_line(self.threads));
            let _ =
                writeln!(s, "| batch | {} p50 ms | {} p50 ms | speed-up |\n|---:|---:|---:|---:|", names[0], names[1]);
            for (k, b) in [1, 32].iter().enumerate() {
                let _ = writeln!(s, "| {b} | {:.2} | {:.2} | {:.2}× |", t[0][k].0, t[1][k].0, t[0][k].0 / t[1][k].0);
            }
        }
    }
}

/// (p50, p90) latency in ms of each model at each batch, `[model][batch]`, measured round-robin
/// in one run (`ember_slm::pipeline::round_robin_latency`).
fn latencies(models: &[&Model], batches: &[Encoded], min_ms: u64) -> Result<Vec<Vec<(f64, f64)>>> {
    let refs: Vec<&Encoded> = batches.iter().collect();
    Ok(round_robin_latency(models, &refs, min_ms, |m, b| m.forward(b).map(|t| t.into_data()))?)
}

fn check_fraction(flag: &str, v: f64) -> Result<()> {
    if (0.0..1.0).contains(&v) { Ok(()) } else { Err(usage(format!("{flag} {v}: expected a fraction in [0, 1)"))) }
}

fn print_or_json(json_out: bool, text: &str, value: &serde_json::Value) {
    if json_out {
        println!("{value}");
    } else {
        print!("{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// quantize
// ---------------------------------------------------------------------------------------------

/// Activation quantization.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// Scales from each input at run time, per token (no calibration; the most accurate).
    Dynamic,
    /// One scale per layer from calibration on --sentences (fixed at run time).
    Static,
}

/// Observers for static calibration.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Observer {
    /// The range seen (ONNX Runtime's default).
    Minmax,
    /// The 99.99th percentile of |x|.
    Percentile,
    /// The range that minimises the quantization MSE.
    Mse,
    /// The range that minimises the KL divergence (TensorRT's entropy calibration).
    Entropy,
}

/// `ember quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// The float model: a Hugging Face directory (config.json, model.safetensors,
    /// tokenizer.json; BERT, MiniLM, ALBERT, encoder or sequence classifier) or Ember's layout
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Where the int8 model goes, in Ember's layout (ember.json, model.ember.safetensors,
    /// tokenizer files) with quantize.json (the report)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How activations are quantized
    #[arg(long, value_enum, default_value = "dynamic")]
    pub mode: Mode,
    /// The calibration observer (static mode)
    #[arg(long, value_enum, default_value = "minmax")]
    pub observer: Observer,
    /// Keep the embedding tables in float (they are int8 by default)
    #[arg(long)]
    pub float_embeddings: bool,
    /// Leave matching layers in float: a regular expression over weight paths such as
    /// `encoder.feed_forward.5.outer.weight` (repeatable)
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
    /// Sentences, one per line (`-`: standard input), to calibrate on (static mode) and to compare
    /// the int8 outputs with the float ones [default: 16 built-in sentences]
    #[arg(long, value_name = "FILE")]
    pub sentences: Option<PathBuf>,
    /// Milliseconds of timing per model and batch size (0: no timing)
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub latency_ms: u64,
    /// Write into --out even when it holds files
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

/// `ember quantize`: a float model → int8 in Ember's layout, checked after reloading.
pub fn quantize(a: &QuantizeArgs) -> Result<()> {
    let device = a.run.setup()?;
    let sentences = read_sentences(a.sentences.as_deref())?;
    let model = Model::load(&a.model, &device, None)?;
    if model.is_int8() {
        return Err(usage(format!("--model {}: the model is already int8", a.model.display())));
    }
    let mut config = QuantizeConfig::new().with_include_embeddings(!a.float_embeddings).with_exclude(a.exclude.clone());
    let static_mode = matches!(a.mode, Mode::Static);
    if static_mode {
        config = config.with_mode(ActivationMode::Static);
    }
    let mut quantizer = Quantizer::new(config);
    if static_mode {
        let observer = match a.observer {
            Observer::Minmax => ObserverConfig::MinMax,
            Observer::Percentile => ObserverConfig::percentile(99.99),
            Observer::Mse => ObserverConfig::mse(),
            Observer::Entropy => ObserverConfig::entropy(),
        };
        let cfg = CalibrationConfig::new(observer);
        let session = match &model.net {
            Net::Encoder(b) => Calibrator::new(b, &cfg)?,
            Net::Classifier(c, _) => Calibrator::new(c, &cfg)?,
        };
        outputs(&model, &sentences)?;
        quantizer = quantizer.with_calibration(session.finish()?);
    }
    // Converted in memory first: an error leaves no output directory behind.
    let converted = match &model.net {
        Net::Encoder(b) => {
            let (q, report) = quantizer.quantize(b)?;
            (Net::Encoder(q), report.layers.len())
        }
        Net::Classifier(c, labels) => {
            let (q, report) = quantizer.quantize(c)?;
            (Net::Classifier(q, labels.clone()), report.layers.len())
        }
    };
    let (int8_net, layers) = converted;
    fresh_dir(&a.out, a.force)?;
    let int8_bytes = match &int8_net {
        Net::Encoder(q) => q.save(&a.out)?,
        Net::Classifier(q, labels) => q.save(&a.out, labels)?,
    };
    drop(int8_net);
    model.copy_tokenizer(&a.out)?;
    // Measured as a user would run it: reloaded from the files just written.
    let int8 = Model::load(&a.out, &device, None)?;
    let cmp = Comparison::new(&model, &int8, &sentences, a.latency_ms, a.run.threads_used())?;
    let names = ["float", "int8"];
    let float_bytes = model.weight_bytes();
    let mut report = json!({
        "model": a.model.display().to_string(),
        "out": a.out.display().to_string(),
        "kind": model.kind(),
        "mode": format!("{:?}", a.mode).to_lowercase(),
        "observer": static_mode.then(|| format!("{:?}", a.observer).to_lowercase()),
        "layers_converted": layers,
        "params": model.params()?,
        "float_bytes": float_bytes,
        "int8_bytes": int8_bytes,
    });
    if let Some(r) = report.as_object_mut() {
        r.extend(cmp.json(names));
    }
    write_atomic(&a.out.join("quantize.json"), format!("{report:#}\n").as_bytes())?;
    let mut s = String::new();
    let _ = writeln!(s, "{} ({}) → {} (int8, Ember layout)", a.model.display(), model.kind(), a.out.display());
    let _ = writeln!(
        s,
        "{layers} layers converted ({:?} activations); weights {:.1} MB → {:.1} MB ({:.2}×)",
        a.mode,
        float_bytes as f64 / 1e6,
        int8_bytes as f64 / 1e6,
        float_bytes as f64 / int8_bytes.max(1) as f64
    );
    cmp.text(&mut s, "int8 vs float outputs", names);
    let _ = writeln!(s, "report: {}", a.out.join("quantize.json").display());
    print_or_json(a.json, &s, &report);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// prune
// ---------------------------------------------------------------------------------------------

/// `ember prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// The float model: a Hugging Face directory (encoder or sequence classifier) or Ember's
    /// float layout
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Where the pruned model goes, in Hugging Face's layout (config.json, model.safetensors,
    /// tokenizer files) with prune.json (the report); Ember's layout with --ember-layout
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Fraction of every layer's attention heads removed
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub heads: f64,
    /// Fraction of every layer's feed-forward neurons removed
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub neurons: f64,
    /// The layers kept after narrowing, 0-based and comma-separated (e.g. 1,3,5) [default: all]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub layers: Vec<usize>,
    /// Sentences, one per line (`-`: standard input), on which importance is measured (Wanda:
    /// weight magnitude times input-activation norm) and outputs compared [default: built-in]
    #[arg(long, value_name = "FILE")]
    pub sentences: Option<PathBuf>,
    /// Write Ember's layout (ember.json) instead of Hugging Face's (needed for ALBERT-style
    /// shared models, which Hugging Face's BERT layout cannot hold)
    #[arg(long)]
    pub ember_layout: bool,
    /// Milliseconds of timing per model and batch size (0: no timing)
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub latency_ms: u64,
    /// Write into --out even when it holds files
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

/// Removes `heads` of every attention block's heads and `neurons` of every FFN's neurons by
/// Wanda's structured importance (`‖W[:, j]‖ · ‖x_j‖`, summed in quadrature over a head), then
/// keeps `layers` (all when empty). `retain` applies an edit to the encoder of `M`.
fn shrink_encoder<M: Clone>(
    model: &M,
    bert: &Bert,
    norms: &BTreeMap<String, Vec<f32>>,
    prefix: &str,
    a: &PruneArgs,
    retain: impl Fn(&M, &dyn Fn(&Bert) -> ember_slm::models::Result<Bert>) -> ember_slm::models::Result<M>,
) -> Result<M> {
    let mut m = model.clone();
    if a.heads > 0.0 {
        for (block, att) in bert.encoder.attention.iter().enumerate() {
            let path = format!("{prefix}encoder.attention.{block}.output.weight");
            let channels = channel_importance_of(&att.output.weight, norms.get(&path).map(Vec::as_slice))?;
            let keep = keep_top(&unit_scores(&channels, att.head_dim)?, units_to_keep(att.n_heads, a.heads)?)?;
            m = retain(&m, &|b: &Bert| b.retain_heads(block, &keep))?;
        }
    }
    if a.neurons > 0.0 {
        for (block, ffn) in bert.encoder.feed_forward.iter().enumerate() {
            let path = format!("{prefix}encoder.feed_forward.{block}.outer.weight");
            let channels = channel_importance_of(&ffn.outer.weight, norms.get(&path).map(Vec::as_slice))?;
            let keep = keep_top(&channels, units_to_keep(ffn.d_ff(), a.neurons)?)?;
            m = retain(&m, &|b: &Bert| b.retain_neurons(block, &keep))?;
        }
    }
    if !a.layers.is_empty() {
        m = retain(&m, &|b: &Bert| b.retain_layers(&a.layers))?;
    }
    Ok(m)
}

/// `ember prune`: structured pruning of heads, neurons and layers, written in a layout other
/// tools read.
pub fn prune(a: &PruneArgs) -> Result<()> {
    check_fraction("--heads", a.heads)?;
    check_fraction("--neurons", a.neurons)?;
    if a.heads == 0.0 && a.neurons == 0.0 && a.layers.is_empty() {
        return Err(usage("nothing to remove: give --heads, --neurons or --layers"));
    }
    let device = a.run.setup()?;
    let sentences = read_sentences(a.sentences.as_deref())?;
    let model = Model::load(&a.model, &device, None)?;
    if model.is_int8() {
        return Err(usage(format!(
            "--model {}: the model is int8; prune the float model, then quantize",
            a.model.display()
        )));
    }
    let n_layers = model.encoder().n_layers();
    if let Some(&l) = a.layers.iter().find(|&&l| l >= n_layers) {
        return Err(usage(format!("--layers: layer {l} does not exist (the model has layers 0..{n_layers})")));
    }
    let batch = model.encode(&sentences)?;
    let cfg = CalibrationConfig::new(ObserverConfig::MinMax).with_sample_rows(0);
    let pruned_net = match &model.net {
        Net::Encoder(b) => {
            let session = Calibrator::new(b, &cfg)?;
            b.embed(&batch)?;
            let norms = session.finish()?.input_channel_norms();
            Net::Encoder(shrink_encoder(b, b, &norms, "", a, |m, edit| edit(m))?)
        }
        Net::Classifier(c, labels) => {
            let session = Calibrator::new(c, &cfg)?;
            c.logits(&batch)?;
            let norms = session.finish()?.input_channel_norms();
            let edited =
                shrink_encoder(c, &c.bert, &norms, "bert.", a, |m: &BertClassifier, edit| m.map_encoder(|b| edit(b)))?;
            Net::Classifier(edited, labels.clone())
        }
    };
    fresh_dir(&a.out, a.force)?;
    let layout = if a.ember_layout { Layout::Ember } else { Layout::HuggingFace };
    match (&pruned_net, layout) {
        (Net::Encoder(b), Layout::HuggingFace) => {
            b.save_pretrained(&a.out, Some(&model.dir))?;
        }
        (Net::Classifier(c, labels), Layout::HuggingFace) => {
            c.save_pretrained(&a.out, labels, Some(&model.dir))?;
        }
        (Net::Encoder(b), Layout::Ember) => {
            b.save(&a.out)?;
            model.copy_tokenizer(&a.out)?;
        }
        (Net::Classifier(c, labels), Layout::Ember) => {
            c.save(&a.out, labels)?;
            model.copy_tokenizer(&a.out)?;
        }
    }
    let pruned = Model::load(&a.out, &device, None)?;
    let cmp = Comparison::new(&model, &pruned, &sentences, a.latency_ms, a.run.threads_used())?;
    let names = ["before", "after"];
    let (before, after) = (model.params()?, pruned.params()?);
    let arch = |m: &Model| {
        let e = &m.encoder().encoder;
        json!({
            "layers": m.encoder().n_layers(),
            "heads": e.attention.iter().map(|x| x.n_heads).collect::<Vec<_>>(),
            "neurons": e.feed_forward.iter().map(|x| x.d_ff()).collect::<Vec<_>>(),
        })
    };
    let mut report = json!({
        "model": a.model.display().to_string(),
        "out": a.out.display().to_string(),
        "layout": if a.ember_layout { "ember" } else { "hugging_face" },
        "remove": {"heads": a.heads, "neurons": a.neurons, "layers_kept": a.layers},
        "criterion": "wanda (weight magnitude × input-activation norm)",
        "params": {"before": before, "after": after},
        "architecture": {"before": arch(&model), "after": arch(&pruned)},
    });
    if let Some(r) = report.as_object_mut() {
        r.extend(cmp.json(names));
    }
    write_atomic(&a.out.join("prune.json"), format!("{report:#}\n").as_bytes())?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} → {} ({} layout): parameters {before} → {after} ({:.1} %)",
        a.model.display(),
        a.out.display(),
        if a.ember_layout { "Ember" } else { "Hugging Face" },
        100.0 * after as f64 / before.max(1) as f64
    );
    cmp.text(&mut s, "pruned vs original outputs (no fine-tuning)", names);
    let _ = writeln!(
        s,
        "report: {} (pruning without training loses quality: `ember compress` distils while it prunes)",
        a.out.join("prune.json").display()
    );
    print_or_json(a.json, &s, &report);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// embed
// ---------------------------------------------------------------------------------------------

/// Embedding file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmbedFormat {
    /// One JSON array of floats per line, in input order.
    Jsonl,
    /// NumPy's .npy: one float32 array of shape [sentences, dim].
    Npy,
    /// Tab-separated floats, one line per sentence.
    Tsv,
}

/// `ember embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// The model: a Hugging Face directory or Ember's layout (float or int8)
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// The sentences, one per line (`-`: standard input); every line gets a row, blank ones too
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The embeddings file (mean-pooled, L2-normalised rows, in input order)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// File format [default: from --out's extension (.npy, .tsv), else jsonl]
    #[arg(long, value_enum)]
    pub format: Option<EmbedFormat>,
    /// Sentences per forward pass
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Cut sentences at this many tokens [default: the model's position table]
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Replace --out if it exists
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

fn npy(rows: &[Vec<f32>], dim: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dim}), }}", rows.len());
    // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for r in rows {
        for v in r {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// `ember embed`: sentences → embeddings file.
pub fn embed(a: &EmbedArgs) -> Result<()> {
    if a.out.is_dir() {
        return Err(usage(format!("--out {}: is a directory (expected a file)", a.out.display())));
    }
    if a.out.exists() && !a.force {
        return Err(usage(format!("--out {}: exists; choose another file or pass --force", a.out.display())));
    }
    let format = a.format.unwrap_or_else(|| match a.out.extension().and_then(|e| e.to_str()) {
        Some("npy") => EmbedFormat::Npy,
        Some("tsv") => EmbedFormat::Tsv,
        _ => EmbedFormat::Jsonl,
    });
    let text = if a.input == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| io_err(&a.input, e))?;
        s
    } else {
        let bytes = std::fs::read(&a.input).map_err(|e| io_err(&a.input, e))?;
        String::from_utf8(bytes).map_err(|_| io_err(&a.input, "not UTF-8 text"))?
    };
    let lines: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
    if lines.is_empty() {
        return Err(usage(format!("--input {}: empty (one sentence per line expected)", a.input.display())));
    }
    let device = a.run.setup()?;
    let model = Model::load(&a.model, &device, a.max_tokens)?;
    let start = std::time::Instant::now();
    let mut all = Vec::with_capacity(lines.len());
    for (k, chunk) in lines.chunks(a.batch as usize).enumerate() {
        let embedded = model.encode(chunk).and_then(|b| Ok(model.encoder().embed(&b)?));
        match embedded {
            Ok(e) => all.extend(rows(e)?),
            Err(e) => {
                // Name the input line when a line has no token at all (an empty line, with a
                // tokenizer that adds no [CLS] / [SEP]).
                let empty = chunk.iter().position(|l| model.tokenizer.encode(l).is_ok_and(|t| t.is_empty()));
                return Err(match empty {
                    Some(i) => usage(format!(
                        "--input {} line {}: no token to embed (the line is empty and the tokenizer adds no special tokens)",
                        a.input.display(),
                        k * a.batch as usize + i + 1
                    )),
                    None => e,
                });
            }
        }
    }
    let dim = model.encoder().hidden_size();
    let bytes = match format {
        EmbedFormat::Npy => npy(&all, dim),
        EmbedFormat::Jsonl => {
            let mut s = String::new();
            for r in &all {
                let _ = writeln!(s, "{}", serde_json::Value::from(r.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()));
            }
            s.into_bytes()
        }
        EmbedFormat::Tsv => {
            let mut s = String::new();
            for r in &all {
                let cells: Vec<String> = r.iter().map(|v| v.to_string()).collect();
                let _ = writeln!(s, "{}", cells.join("\t"));
            }
            s.into_bytes()
        }
    };
    write_atomic(&a.out, &bytes)?;
    eprintln!(
        "{} sentences → {} ({:?}, dim {dim}, {} model) in {:.2} s",
        all.len(),
        a.out.display(),
        format,
        if model.is_int8() { "int8" } else { "float" },
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// bench
// ---------------------------------------------------------------------------------------------

/// `ember bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The model: a Hugging Face directory or Ember's layout (float or int8)
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// A second model measured in the same run (interleaved), reported as a ratio to --model
    #[arg(long, value_name = "DIR")]
    pub compare: Option<PathBuf>,
    /// Batch sizes, comma-separated
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "1,32")]
    pub batch: Vec<usize>,
    /// Sentences, one per line (`-`: standard input), cycled to fill each batch [default:
    /// 16 built-in sentences]
    #[arg(long, value_name = "FILE")]
    pub sentences: Option<PathBuf>,
    /// Milliseconds of timing per model, batch size and round (three rounds)
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub min_ms: u64,
    /// Cut sentences at this many tokens [default: the model's position table]
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

/// `ember bench`: p50 / p90 latency and throughput at the batch sizes asked for.
pub fn bench(a: &BenchArgs) -> Result<()> {
    if a.batch.is_empty() || a.batch.contains(&0) {
        return Err(usage("--batch: expected batch sizes of at least 1 (e.g. 1,8,32)"));
    }
    if a.min_ms == 0 {
        return Err(usage("--min-ms 0: expected at least 1 ms"));
    }
    let device = a.run.setup()?;
    let sentences = read_sentences(a.sentences.as_deref())?;
    let mut models = vec![Model::load(&a.model, &device, a.max_tokens)?];
    if let Some(dir) = &a.compare {
        models.push(Model::load(dir, &device, a.max_tokens)?);
    }
    let refs: Vec<&Model> = models.iter().collect();
    let batches: Vec<Encoded> =
        a.batch.iter().map(|&b| models[0].encode(&cycled(&sentences, b))).collect::<Result<_>>()?;
    let threads = a.run.threads_used();
    let t = latencies(&refs, &batches, a.min_ms)?;
    let mut table = String::new();
    let _ = writeln!(table, "{}", machine_line(threads));
    let name =
        |m: &Model| format!("{} ({}, {})", m.dir.display(), m.kind(), if m.is_int8() { "int8" } else { "float" });
    let _ = writeln!(table, "model: {}", name(&models[0]));
    if let Some(c) = models.get(1) {
        let _ = writeln!(table, "compare: {}", name(c));
        let _ = writeln!(
            table,
            "| batch | tokens | model p50 ms | compare p50 ms | model / compare |\n|---:|---:|---:|---:|---:|"
        );
    } else {
        let _ = writeln!(
            table,
            "| batch | tokens | p50 ms | p90 ms | sentences/s | tokens/s |\n|---:|---:|---:|---:|---:|---:|"
        );
    }
    let mut cases = Vec::new();
    for (k, batch) in batches.iter().enumerate() {
        let (p50, p90) = t[0][k];
        let mut case = json!({
            "batch": batch.batch, "tokens": batch.tokens(), "p50_ms": p50, "p90_ms": p90,
            "sentences_per_s": batch.batch as f64 / (p50 / 1e3), "tokens_per_s": batch.tokens() as f64 / (p50 / 1e3),
        });
        if let Some(c) = t.get(1) {
            case["compare_p50_ms"] = json!(c[k].0);
            case["ratio"] = json!(p50 / c[k].0);
            let _ = writeln!(
                table,
                "| {} | {} | {p50:.2} | {:.2} | {:.2} |",
                batch.batch,
                batch.tokens(),
                c[k].0,
                p50 / c[k].0
            );
        } else {
            let _ = writeln!(
                table,
                "| {} | {} | {p50:.2} | {p90:.2} | {:.1} | {:.0} |",
                batch.batch,
                batch.tokens(),
                batch.batch as f64 / (p50 / 1e3),
                batch.tokens() as f64 / (p50 / 1e3)
            );
        }
        cases.push(case);
    }
    let report = json!({
        "model": a.model.display().to_string(),
        "int8": models[0].is_int8(),
        "compare": a.compare.as_ref().map(|p| p.display().to_string()),
        "device": a.run.device,
        "cases": cases,
        "machine": machine_json(threads),
    });
    print_or_json(a.json, &table, &report);
    Ok(())
}
