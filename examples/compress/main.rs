//! # Compress a language model end to end
//!
//! ```text
//! cargo run --release --example compress                       # built-in corpus, default recipe
//! cargo run --release --example compress -- --corpus corpora/moby-dick.txt
//! cargo run --release --example compress -- --quick            # the CI smoke run (seconds)
//! cargo run --release --example compress -- --print-recipe > my.json   # edit, then --recipe my.json
//! # a real checkpoint: sentence embeddings of all-MiniLM-L6-v2 distilled, narrowed, int8
//! cargo run --release --example compress -- --teacher models/all-minilm-l6-v2 --task embed --data corpora/moby-dick.txt
//! ```
//!
//! With `--teacher DIR --task embed --data FILE` the run is `ember_slm::pipeline::embed` on a
//! Hugging Face encoder (see its docs; the recipe flags read and print its `EmbedRecipe`).
//!
//! Every technique of Ember in one ordinary Burn training program, each through the public
//! crate APIs exactly as a user would call them:
//!
//! 1. **teacher**: a byte-level causal LM ([`CausalLm`]) trained on the corpus (cached in
//!    `--out`: a rerun with the same teacher recipe and corpus skips it);
//! 2. **distilled**: an ALBERT-style student (factorized embedding, one block shared by every
//!    layer, narrower) trained by [`Distiller`] with soft-target KD, the hard labels and a
//!    hidden-state MSE through learned projections (TinyBERT's loss, one projection per layer
//!    pair as in TextBrewer);
//! 3. **pruned**: the student fine-tuned further under the same distillation while
//!    [`Pruner`] raises its sparsity on a cubic schedule ([`CubicSchedule`]); masks stay
//!    applied between updates and are folded at the end;
//! 4. **int8**: [`Quantizer`] converts every linear layer and the token table (static
//!    calibration by default); pruned zeros stay exactly zero.
//!
//! Each stage is evaluated on the held-out split (perplexity per byte, size on disk, latency p50
//! at batch 1 and 32) and the report is printed and written to `--out` as markdown, JSON and
//! SVG. On the built-in corpus, whose entropy rate is known exactly ([`MarkovCorpus`]), the
//! report also shows the perplexity floor no model can beat and each stage's distance to it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_slm::distill::{Distiller, ModelOutputs, OutputRequest};
use ember_slm::eval::{CompressionReport, EnergyModel, LatencyConfig, ModelSize, StageRow, measure};
use ember_slm::models::{CausalLm, CausalLmConfig, MarkovCorpus, lm_loss, perplexity};
use ember_slm::prune::{Criterion, CubicSchedule, MovementScores, Pruner, SparsityReport, fold_masks};
use ember_slm::quant::{
    ActivationMode, CalibrationConfig, Calibrator, ObserverConfig, QuantizeConfig, Quantizer, load_quantized,
    save_quantized, set_int8_threads,
};
use indicatif::{ProgressBar, ProgressStyle};

mod embed_mode;
mod recipe;
use recipe::{EvalRecipe, Recipe, RecipeError, TrainRecipe};

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

const HELP: &str = "\
compress: teacher → distilled ALBERT-style student → gradual pruning → int8, with a report

USAGE: cargo run --release --example compress -- [OPTIONS]

  --recipe FILE      read the recipe (JSON) instead of the default
  --print-recipe     print the recipe that would run (JSON) and exit
  --quick            tiny models and steps: the CI smoke run (seconds)
  --corpus FILE      train on a text file instead of the built-in Markov corpus
  --device NAME      flex (default), ndarray, wgpu (built with --features wgpu) or cuda (--features cuda)
  --threads N        CPU threads (default: all cores)
  --seed N           initialization and sampling seed (overrides the recipe's)
  --out DIR          where checkpoints and the report go (default target/ember-compress, with
                     --teacher target/ember-compress-embed)
  --retrain          train the teacher even when a matching checkpoint is cached
  --teacher DIR      a Hugging Face BERT-family directory (config.json, model.safetensors,
                     tokenizer.json): compress it for --task instead of the built-in LM
  --task NAME        with --teacher: embed (sentence embeddings)
  --data FILE        with --teacher: the text to distil on (plain text, split into sentences)
  --help             this text";

#[derive(Debug)]
struct Args {
    recipe: Option<PathBuf>,
    print_recipe: bool,
    quick: bool,
    corpus: Option<PathBuf>,
    device: String,
    threads: usize,
    seed: Option<u64>,
    out: PathBuf,
    retrain: bool,
    teacher: Option<PathBuf>,
    task: Option<String>,
    data: Option<PathBuf>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, RecipeError> {
    let mut a = Args {
        recipe: None,
        print_recipe: false,
        quick: false,
        corpus: None,
        device: "flex".into(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seed: None,
        out: PathBuf::from("target/ember-compress"),
        retrain: false,
        teacher: None,
        task: None,
        data: None,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = |what: &str| it.next().ok_or_else(|| RecipeError::Usage(format!("{flag} needs {what}")));
        let number = |s: String, flag: &str| {
            s.parse::<u64>().map_err(|_| RecipeError::Usage(format!("{flag} {s}: expected a non-negative integer")))
        };
        match flag.as_str() {
            "--recipe" => a.recipe = Some(value("a file")?.into()),
            "--print-recipe" => a.print_recipe = true,
            "--quick" => a.quick = true,
            "--corpus" => a.corpus = Some(value("a file")?.into()),
            "--device" => a.device = value("a device name")?,
            "--threads" => {
                let n = number(value("a count")?, "--threads")?;
                a.threads = usize::try_from(n)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| RecipeError::Usage(format!("--threads {n}: expected at least 1")))?;
            }
            "--seed" => a.seed = Some(number(value("a number")?, "--seed")?),
            "--out" => a.out = value("a directory")?.into(),
            "--retrain" => a.retrain = true,
            "--teacher" => a.teacher = Some(value("a directory")?.into()),
            "--task" => a.task = Some(value("a task name")?),
            "--data" => a.data = Some(value("a file")?.into()),
            "--help" | "-h" => {
                println!("{HELP}");
                return Ok(None);
            }
            other => return Err(RecipeError::Usage(format!("unknown argument {other}"))),
        }
    }
    if a.recipe.is_some() && a.quick {
        return Err(RecipeError::Usage("--recipe and --quick both choose the recipe: give one".into()));
    }
    if a.teacher.is_some() || a.task.is_some() || a.data.is_some() {
        if a.teacher.is_none() || a.task.is_none() {
            return Err(RecipeError::Usage("--teacher DIR and --task NAME go together (and --data FILE)".into()));
        }
        if a.corpus.is_some() {
            return Err(RecipeError::Usage("--corpus is the built-in LM run's; with --teacher give --data".into()));
        }
        match a.task.as_deref() {
            Some("embed") => {}
            Some(other) => {
                return Err(RecipeError::Usage(format!(
                    "--task {other}: expected embed (text classification is not available yet)"
                )));
            }
            None => {}
        }
        if a.data.is_none() && !a.print_recipe {
            return Err(RecipeError::Usage("--task embed needs --data FILE (plain text)".into()));
        }
    }
    Ok(Some(a))
}

fn load_recipe(args: &Args) -> Result<Recipe, RecipeError> {
    let mut recipe = match &args.recipe {
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| RecipeError::Parse { path: shown.clone(), message: e.to_string() })?;
            Recipe::parse(&text, &shown)?
        }
        None if args.quick => Recipe::quick(),
        None => Recipe::default(),
    };
    if let Some(seed) = args.seed {
        recipe.seed = seed;
    }
    recipe.validate()?;
    Ok(recipe)
}

#[allow(deprecated)] // NdArray is deprecated upstream; Ember still supports it.
fn device(name: &str) -> Result<Device, RecipeError> {
    match name {
        "flex" => Ok(Device::flex()),
        "ndarray" => Ok(Device::ndarray()),
        "wgpu" => wgpu_device(),
        "cuda" => cuda_device(),
        other => Err(RecipeError::Usage(format!("--device {other}: expected flex, ndarray, wgpu or cuda"))),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, RecipeError> {
    Ok(Device::cuda(burn::tensor::DeviceIndex::Default))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device, RecipeError> {
    Err(RecipeError::Usage(
        "--device cuda: this build has no CUDA backend; run `cargo run --release --features cuda --example compress -- --device cuda` (its build downloads a toolchain)"
            .into(),
    ))
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, RecipeError> {
    Ok(Device::wgpu(Default::default()))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, RecipeError> {
    Err(RecipeError::Usage(
        "--device wgpu: this build has no wgpu backend; run `cargo run --release --features wgpu --example compress -- --device wgpu`"
            .into(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// The byte stream, split into training and held-out parts.
#[derive(Debug)]
struct Corpus {
    name: String,
    train: Vec<u32>,
    held: Vec<u32>,
    /// The per-byte perplexity floor, when the corpus's entropy rate is known.
    floor: Option<f64>,
    /// FNV-1a of the bytes (part of the teacher checkpoint's key).
    fingerprint: u64,
}

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn load_corpus(recipe: &Recipe, path: Option<&Path>) -> Result<Corpus, RecipeError> {
    let d = &recipe.data;
    let (name, bytes, floor) = match path {
        Some(p) => {
            let shown = p.display().to_string();
            let bytes =
                std::fs::read(p).map_err(|e| RecipeError::Corpus { path: shown.clone(), message: e.to_string() })?;
            (shown, bytes, None)
        }
        None => {
            let markov = MarkovCorpus::english_like(d.markov_seed);
            let text = markov.generate(d.corpus_bytes, d.markov_seed);
            (
                format!("built-in Markov corpus (seed {}, {} bytes)", d.markov_seed, text.len()),
                text.into_bytes(),
                Some(markov.perplexity_floor()),
            )
        }
    };
    let held_len = (bytes.len() as f64 * d.held_out).round() as usize;
    let need = 4 * (d.seq_len + 1);
    if held_len < need || bytes.len() - held_len < need {
        return Err(RecipeError::Corpus {
            path: name,
            message: format!(
                "{} bytes: with held_out = {} both splits need at least {need} bytes (4 windows of seq_len + 1)",
                bytes.len(),
                d.held_out
            ),
        });
    }
    let fingerprint = fnv1a(&bytes, 0xcbf2_9ce4_8422_2325);
    let tokens: Vec<u32> = bytes.iter().map(|&b| u32::from(b)).collect();
    let (train, held) = tokens.split_at(tokens.len() - held_len);
    Ok(Corpus { name, train: train.to_vec(), held: held.to_vec(), floor, fingerprint })
}

/// SplitMix64: deterministic batch sampling without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A batch of next-byte windows: inputs and targets `[batch, seq]`.
struct Batch {
    x: Tensor<2, Int>,
    y: Tensor<2, Int>,
}

fn sample(tokens: &[u32], batch: usize, seq: usize, rng: &mut Rng, device: &Device) -> Batch {
    let (mut x, mut y) = (Vec::with_capacity(batch * seq), Vec::with_capacity(batch * seq));
    for _ in 0..batch {
        let start = rng.below(tokens.len() - seq);
        x.extend(tokens[start..start + seq].iter().map(|&t| i64::from(t)));
        y.extend(tokens[start + 1..start + seq + 1].iter().map(|&t| i64::from(t)));
    }
    Batch {
        x: Tensor::from_data(TensorData::new(x, [batch, seq]), device),
        y: Tensor::from_data(TensorData::new(y, [batch, seq]), device),
    }
}

// ---------------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------------

type BoxError = Box<dyn std::error::Error>;

fn bar(len: usize, prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>12} [{elapsed_precise}] {bar:30} {pos:>5}/{len:5} {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(prefix.to_string());
    pb
}

fn optimizer(t: &TrainRecipe) -> burn::optim::ModuleOptimizer {
    AdamConfig::new().with_grad_clipping(Some(GradientClippingConfig::Norm(t.clip_norm))).init()
}

/// Trains a language model on next-byte cross-entropy (the teacher).
fn train_lm(
    mut model: CausalLm,
    tokens: &[u32],
    t: &TrainRecipe,
    seq: usize,
    rng: &mut Rng,
) -> Result<(CausalLm, f64), BoxError> {
    let ad = model.device();
    let mut opt = optimizer(t);
    let pb = bar(t.steps, "teacher");
    let mut last = f64::NAN;
    for step in 0..t.steps {
        let b = sample(tokens, t.batch, seq, rng, &ad);
        let loss = lm_loss(model.try_forward(b.x, false)?.logits, b.y, None)?;
        if step % 10 == 0 || step + 1 == t.steps {
            last = f64::from(loss.clone().into_scalar::<f32>());
            if !last.is_finite() {
                return Err(
                    format!("teacher training diverged at step {step} (loss {last}): lower teacher.train.lr").into()
                );
            }
            pb.set_message(format!("loss {last:.3}"));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = opt.step(t.lr_at(step), model, grads);
        pb.inc(1);
    }
    pb.finish();
    Ok((model, last))
}

/// What a distillation loop reports.
struct DistillSummary {
    /// Mean of each loss term over the last 10 % of steps.
    terms: Vec<(String, f64)>,
    /// The last pruning pass's report.
    sparsity: Option<SparsityReport>,
}

/// The distillation loop, shared by the distillation and pruning stages: the teacher runs
/// without a graph on the plain device, the student on its autodiff device. With `prune`, masks
/// are recomputed on the schedule's update steps.
#[allow(clippy::too_many_arguments)]
fn distill_loop(
    stage: &str,
    teacher: &CausalLm,
    mut student: CausalLm,
    distiller: &mut Distiller,
    tokens: &[u32],
    t: &TrainRecipe,
    recipe: &Recipe,
    prune: Option<&CubicSchedule>,
    rng: &mut Rng,
) -> Result<(CausalLm, DistillSummary), BoxError> {
    let device = teacher.device();
    let ad = student.device();
    let seq = recipe.data.seq_len;
    let mut opt = optimizer(t);
    let mut movement = MovementScores::new();
    let mut sparsity = None;
    let tail = (t.steps / 10).max(1);
    let mut sums: Vec<(String, f64)> = Vec::new();
    let pb = bar(t.steps, stage);
    let teacher_fn = |b: &Batch, req: &OutputRequest| -> ModelOutputs {
        let out = teacher.try_forward(b.x.clone(), req.hidden_states).expect("teacher forward on sampled bytes");
        ModelOutputs::new().with_token_logits(out.logits).with_hidden_states(out.hidden_states)
    };
    for step in 0..t.steps {
        if let Some(schedule) = prune
            && schedule.is_update_step(step)
        {
            let target = schedule.sparsity_at(step);
            if target > 0.0 {
                let mut pruner = Pruner::new(recipe.prune_config(target))?;
                match recipe.prune.criterion {
                    Criterion::Movement if movement.steps() > 0 => pruner = pruner.with_scores(movement.scores()),
                    Criterion::Wanda => pruner = pruner.with_input_norms(wanda_norms(&student, tokens, seq, rng)?),
                    _ => {}
                }
                let (pruned, report) = pruner.prune(student)?;
                student = pruned;
                pb.set_message(format!("sparsity {:.1} %", 100.0 * report.sparsity()));
                sparsity = Some(report);
            }
        }
        let b = sample(tokens, t.batch, seq, rng, &device);
        let losses = {
            let s = &student;
            let student_fn = |b: &Batch, req: &OutputRequest| -> ModelOutputs {
                let out = s
                    .try_forward(b.x.clone().to_device(&ad), req.hidden_states)
                    .expect("student forward on sampled bytes");
                ModelOutputs::new()
                    .with_token_logits(out.logits)
                    .with_token_labels(b.y.clone().to_device(&ad))
                    .with_hidden_states(out.hidden_states)
            };
            distiller.step(&teacher_fn, &student_fn, &b, None)?
        };
        if step + tail >= t.steps || step % 10 == 0 {
            let values = losses.values();
            let total: f64 = values.iter().map(|(_, w, v)| w * v).sum();
            if !total.is_finite() {
                return Err(
                    format!("{stage}: the loss diverged at step {step} ({values:?}): lower the learning rate").into()
                );
            }
            if step % 10 == 0 && prune.is_none() {
                pb.set_message(format!("loss {total:.3}"));
            }
            if step + tail >= t.steps {
                for (name, w, v) in values {
                    match sums.iter_mut().find(|(n, _)| *n == name) {
                        Some(e) => e.1 += w * v / tail as f64,
                        None => sums.push((name, w * v / tail as f64)),
                    }
                }
            }
        }
        let lr = t.lr_at(step);
        let mut grads = losses.total.backward();
        distiller.update_projections(&mut opt, lr, &mut grads);
        if prune.is_some() && recipe.prune.criterion == Criterion::Movement {
            movement.accumulate(&student, &grads);
        }
        let grads = GradientsParams::from_grads(grads, &student);
        student = opt.step(lr, student, grads);
        pb.inc(1);
    }
    pb.finish();
    Ok((student, DistillSummary { terms: sums, sparsity }))
}

/// Wanda's input-channel norms: a few training batches through a calibration session.
fn wanda_norms(
    student: &CausalLm,
    tokens: &[u32],
    seq: usize,
    rng: &mut Rng,
) -> Result<std::collections::HashMap<String, Vec<f32>>, BoxError> {
    let model = student.valid();
    let device = model.device();
    let session = Calibrator::new(&model, &CalibrationConfig::new(ObserverConfig::MinMax))?;
    for _ in 0..4 {
        let b = sample(tokens, 8, seq, rng, &device);
        model.try_forward(b.x, false)?;
    }
    // Keyed by weight path (`attn.0.query.weight`), as the pruner expects.
    Ok(session.finish()?.input_channel_norms().into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// One evaluated stage.
struct Stage {
    name: String,
    params: u64,
    bytes: u64,
    perplexity: f64,
    energy_mj: f64,
    /// Seconds the stage took to produce (training or conversion).
    seconds: f64,
    model: CausalLm,
}

/// Held-out perplexity per byte, batch by batch with a progress bar. Consecutive windows share
/// their boundary byte (as in [`perplexity`]), so the batches' NLLs combine exactly.
fn held_out_perplexity(model: &CausalLm, held: &[u32], seq: usize, batch: usize, stage: &str) -> Result<f64, BoxError> {
    let device = model.device();
    let windows = (held.len() - 1) / seq;
    let pb = bar(windows, &format!("eval {stage}"));
    let (mut nll, mut count) = (0f64, 0usize);
    for start in (0..windows).step_by(batch) {
        let rows = batch.min(windows - start);
        let slice = &held[start * seq..(start + rows) * seq + 1];
        let p = perplexity(model, slice, seq, rows, &device)?;
        if !p.is_finite() {
            return Err(format!(
                "{stage}: held-out perplexity overflowed (mean NLL above 709 nats): the model diverged"
            )
            .into());
        }
        nll += p.ln() * (rows * seq) as f64;
        count += rows * seq;
        pb.inc(rows as u64);
    }
    pb.finish_and_clear();
    Ok((nll / count as f64).exp())
}

/// Median forward-pass latency (ms) of every stage at batch 1 and batch 32 over `seq` bytes,
/// measured round-robin: each round times every stage for a slice of `latency_min_ms`, and a
/// stage's result is the median of its round medians, so a slow minute of a noisy machine
/// weighs on every stage alike.
fn latencies(
    stages: &[Stage],
    held: &[u32],
    seq: usize,
    e: &EvalRecipe,
    threads: usize,
) -> Result<Vec<(f64, f64)>, BoxError> {
    let rounds = e.latency_rounds;
    let pb = bar(rounds * 2 * stages.len(), "latency");
    let mut samples = vec![[Vec::new(), Vec::new()]; stages.len()];
    for _ in 0..rounds {
        for (slot, batch) in [1usize, 32].into_iter().enumerate() {
            for (stage, times) in stages.iter().zip(samples.iter_mut()) {
                let device = stage.model.device();
                let ids: Vec<i64> = (0..batch * seq).map(|i| i64::from(held[i % (held.len() - 1)])).collect();
                let x = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, seq]), &device);
                let cfg = LatencyConfig {
                    warmup: e.latency_warmup,
                    min_iterations: 3,
                    min_time: Duration::from_millis((e.latency_min_ms / rounds as u64).max(1)),
                    max_iterations: 10_000,
                    items_per_call: batch,
                    tokens_per_call: batch * seq,
                    threads,
                };
                let mut failed = None;
                let r = measure(&stage.name, &cfg, || match stage.model.try_forward(x.clone(), false) {
                    Ok(o) => drop(o.logits.into_data()),
                    Err(e) => failed = Some(e),
                })?;
                if let Some(e) = failed {
                    return Err(e.into());
                }
                times[slot].push(r.p50_ms);
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
    };
    Ok(samples.iter_mut().map(|[b1, b32]| (median(b1), median(b32))).collect())
}

/// Linear-layer multiply-accumulates per token, from the configuration (a parameter walk
/// would count a shared block once).
fn macs_per_token(c: &CausalLmConfig) -> u64 {
    let (h, v) = (c.d_model as u64, c.vocab_size as u64);
    let e = c.embedding_size.map(|e| e as u64);
    let head_dim = (c.d_model / c.n_heads.max(1)) as u64;
    // Every layer's own blocks (their widths after any structural pruning).
    let blocks = c.decoder().resolved_layout().map_or(0, |l| {
        let attention: u64 = l.attention_index.iter().map(|&b| 4 * h * l.attention_heads[b] as u64 * head_dim).sum();
        let ffn: u64 = l.feed_forward_index.iter().map(|&b| 2 * h * l.ffn_widths[b] as u64).sum();
        attention + ffn
    });
    let head = match (c.tie_embeddings, e) {
        (true, Some(e)) => h * e + e * v,
        _ => h * v,
    };
    blocks + head + e.map_or(0, |e| e * h)
}

/// What every stage is evaluated against.
struct Evaluator<'a> {
    corpus: &'a Corpus,
    recipe: &'a Recipe,
    out: &'a Path,
}

impl Evaluator<'_> {
    /// Saves a stage to `<out>/<file>.safetensors`, measures its size and held-out perplexity
    /// (latency comes later, for all stages together).
    fn stage(
        &self,
        name: &str,
        model: CausalLm,
        config: &CausalLmConfig,
        file: &str,
        int8: bool,
        seconds: f64,
    ) -> Result<Stage, BoxError> {
        let (corpus, recipe) = (self.corpus, self.recipe);
        evaluate(name, model, config, &self.out.join(format!("{file}.safetensors")), int8, corpus, recipe, seconds)
    }
}

/// See [`Evaluator::stage`].
#[allow(clippy::too_many_arguments)]
fn evaluate(
    name: &str,
    model: CausalLm,
    config: &CausalLmConfig,
    file: &Path,
    int8: bool,
    corpus: &Corpus,
    recipe: &Recipe,
    seconds: f64,
) -> Result<Stage, BoxError> {
    let seq = recipe.data.seq_len;
    let bytes = save_quantized(&model, file)?;
    let params = ModelSize::of(&model).params() as u64;
    let perplexity = held_out_perplexity(&model, &corpus.held, seq, recipe.eval.batch, name)?;
    let macs = macs_per_token(config) * seq as u64;
    let (f32_macs, int8_macs) = if int8 { (0, macs) } else { (macs, 0) };
    let energy_mj = EnergyModel::horowitz_45nm().estimate_mj(f32_macs, int8_macs, bytes);
    eprintln!("{name:>16}: held-out perplexity {perplexity:.4}, {bytes} bytes on disk, made in {seconds:.0} s");
    Ok(Stage { name: name.into(), params, bytes, perplexity, energy_mj, seconds, model })
}

// ---------------------------------------------------------------------------------------------
// The pipeline
// ---------------------------------------------------------------------------------------------

/// Key of a cached teacher: its recipe, the sequence length, the corpus and the seed.
fn teacher_key(recipe: &Recipe, corpus: &Corpus) -> String {
    let text = serde_json::json!({
        "teacher": recipe.teacher,
        "seq_len": recipe.data.seq_len,
        "held_out": recipe.data.held_out,
        "corpus": format!("{:016x}", corpus.fingerprint),
        "seed": recipe.seed,
        // The model layout (parameter paths) of the cached file.
        "layout": ember_slm::models::save::LAYOUT_VERSION,
    })
    .to_string();
    format!("{:016x}", fnv1a(text.as_bytes(), 0xcbf2_9ce4_8422_2325))
}

/// The teacher from `--out` when its key matches, else trained (and cached).
fn teacher(
    recipe: &Recipe,
    corpus: &Corpus,
    device: &Device,
    out: &Path,
    retrain: bool,
    rng: &mut Rng,
) -> Result<(CausalLm, f64, bool), BoxError> {
    let key = teacher_key(recipe, corpus);
    let (ckpt, key_file) = (out.join("teacher.safetensors"), out.join("teacher.key"));
    if !retrain && std::fs::read_to_string(&key_file).is_ok_and(|k| k.trim() == key) {
        let skeleton = recipe.teacher.model.init(device)?;
        match load_quantized(skeleton, &ckpt) {
            Ok(model) => return Ok((model, 0.0, true)),
            Err(e) => eprintln!("cached teacher unusable ({e}); retraining"),
        }
    }
    let start = Instant::now();
    let ad = device.clone().autodiff();
    let model = recipe.teacher.model.init(&ad)?;
    let (model, loss) = train_lm(model, &corpus.train, &recipe.teacher.train, recipe.data.seq_len, rng)?;
    eprintln!("teacher: final training loss {loss:.4} nats/byte");
    let model = model.valid();
    save_quantized(&model, &ckpt)?;
    std::fs::write(&key_file, &key)?;
    Ok((model, start.elapsed().as_secs_f64(), false))
}

/// Runs every stage; returns the report.
fn run(recipe: &Recipe, args: &Args, device: &Device) -> Result<CompressionReport, BoxError> {
    let corpus = load_corpus(recipe, args.corpus.as_deref())?;
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("recipe.json"), serde_json::to_string_pretty(recipe)?)?;
    eprintln!(
        "corpus: {} ({} training bytes, {} held out){}",
        corpus.name,
        corpus.train.len(),
        corpus.held.len(),
        corpus.floor.map_or(String::new(), |f| format!("; entropy floor: perplexity {f:.4} per byte"))
    );
    let seq = recipe.data.seq_len;
    let mut rng = Rng(recipe.seed);
    device.seed(recipe.seed);
    let ad = device.clone().autodiff();
    let mut stages = Vec::new();
    let ev = Evaluator { corpus: &corpus, recipe, out: &args.out };

    // 1. Teacher.
    let (teacher, secs, cached) = teacher(recipe, &corpus, device, &args.out, args.retrain, &mut rng)?;
    if cached {
        eprintln!("teacher: loaded from {} (same recipe, corpus and seed)", args.out.display());
    }
    // The later stages start from the same random state whether the teacher was trained or
    // loaded from the cache, so a rerun reproduces them.
    rng = Rng(recipe.seed.wrapping_add(1));
    device.seed(recipe.seed ^ 0x5eed_0001);
    let t_cfg = &recipe.teacher.model;
    stages.push(ev.stage("teacher", teacher.clone(), t_cfg, "teacher", false, secs)?);

    // 2. Distilled ALBERT-style student.
    let start = Instant::now();
    let s_cfg = &recipe.student.model;
    let student = s_cfg.init(&ad)?;
    let mut distiller = Distiller::new(recipe.distill_config(), recipe.teacher.shape(), recipe.student.shape(), &ad)?;
    let (student, summary) = distill_loop(
        "distill",
        &teacher,
        student,
        &mut distiller,
        &corpus.train,
        &recipe.student.train,
        recipe,
        None,
        &mut rng,
    )?;
    eprintln!("distill: final losses {}", fmt_terms(&summary.terms));
    stages.push(ev.stage("distilled", student.valid(), s_cfg, "distilled", false, start.elapsed().as_secs_f64())?);

    // 3. Gradual pruning under distillation (the distiller keeps its trained projections).
    let start = Instant::now();
    let schedule = recipe.prune_schedule()?;
    let (student, summary) = distill_loop(
        "prune",
        &teacher,
        student,
        &mut distiller,
        &corpus.train,
        &recipe.prune.train,
        recipe,
        Some(&schedule),
        &mut rng,
    )?;
    let pruned = fold_masks(student.valid());
    let sparsity = summary.sparsity.as_ref().map_or(0.0, SparsityReport::sparsity);
    eprintln!(
        "prune: final losses {}; {:.1} % of the pruned layers' weights are zero",
        fmt_terms(&summary.terms),
        100.0 * sparsity
    );
    let name = format!("pruned {:.0} %", 100.0 * sparsity);
    stages.push(ev.stage(&name, pruned.clone(), s_cfg, "pruned", false, start.elapsed().as_secs_f64())?);

    // 4. int8.
    let start = Instant::now();
    let q = &recipe.quant;
    let config = QuantizeConfig::new().with_mode(q.activations).with_weight(q.weight);
    let quantizer = if q.activations == ActivationMode::Static {
        let session = Calibrator::new(&pruned, &CalibrationConfig::new(q.observer.clone()))?;
        for _ in 0..q.calibration_batches {
            let b = sample(&corpus.train, recipe.prune.train.batch, seq, &mut rng, device);
            pruned.try_forward(b.x, false)?;
        }
        Quantizer::new(config).with_calibration(session.finish()?)
    } else {
        Quantizer::new(config)
    };
    let (int8, _) = quantizer.quantize(&pruned)?;
    let name = format!("int8 ({})", if q.activations == ActivationMode::Static { "static" } else { "dynamic" });
    stages.push(ev.stage(&name, int8, s_cfg, "int8", true, start.elapsed().as_secs_f64())?);

    let total: f64 = stages.iter().map(|s| s.seconds).sum();
    eprintln!("stages took {total:.0} s in all (evaluation excluded)");
    let times = latencies(&stages, &corpus.held, seq, &recipe.eval, args.threads)?;
    let rows = stages
        .iter()
        .zip(times)
        .map(|(s, (b1, b32))| {
            StageRow::new(&s.name, s.params, s.bytes, "perplexity", s.perplexity, b1, b32).with_energy(s.energy_mj)
        })
        .collect();
    let mut report = CompressionReport::new(rows)?;
    if let Some(floor) = corpus.floor {
        report = report.with_floor("entropy floor of the corpus", floor)?;
    }
    report.write(&args.out, "report")?;
    Ok(report)
}

fn fmt_terms(terms: &[(String, f64)]) -> String {
    terms.iter().map(|(n, v)| format!("{n} {v:.4}")).collect::<Vec<_>>().join(", ")
}

/// The targets of the run, measured against the teacher (first row).
fn summary(report: &CompressionReport) -> String {
    let (t, f) = (&report.rows[0], &report.rows[report.rows.len() - 1]);
    let mut s = String::new();
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    let size = f.bytes as f64 / t.bytes as f64;
    let ppl = f.metric_value / t.metric_value;
    let _ =
        writeln!(s, "final size: {:.2} % of the teacher's bytes (target ≤ 8 %: {})", 100.0 * size, mark(size <= 0.08));
    let _ = writeln!(s, "final perplexity: {ppl:.3}× the teacher's (target ≤ 1.10×: {})", mark(ppl <= 1.10));
    let _ = writeln!(
        s,
        "batch-1 latency: {:.2}× faster than the teacher (target ≥ 3×: {})",
        f.speedup_b1,
        mark(f.speedup_b1 >= 3.0)
    );
    s
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if args.teacher.is_some() {
        std::process::exit(embed_mode::main(&args));
    }
    let recipe = match load_recipe(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if args.print_recipe {
        println!("{}", serde_json::to_string_pretty(&recipe).expect("a recipe serializes"));
        return;
    }
    let device = match device(&args.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if rayon::ThreadPoolBuilder::new().num_threads(args.threads).build_global().is_err() {
        eprintln!("warning: the thread pool was already set up; --threads {} not applied", args.threads);
    }
    set_int8_threads(args.threads);
    let start = Instant::now();
    match run(&recipe, &args, &device) {
        Ok(report) => {
            println!("{}", report.to_markdown());
            print!("{}", summary(&report));
            if args.quick {
                println!("(--quick trains tiny models as a smoke test; the targets are for the default recipe)");
            }
            println!(
                "report: {0}/report.md, {0}/report.json, {0}/report.svg ({1:.0} s on {2} threads, --device {3})",
                args.out.display(),
                start.elapsed().as_secs_f64(),
                args.threads,
                args.device
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_slm::distill::LayerMap;
    use ember_slm::layers::SharingMode;
    use ember_slm::prune::Granularity;
    use std::sync::{Mutex, MutexGuard};

    /// The Flex device's random state is process-wide: tests that build models (validation
    /// does too) take turns, so seeded runs are reproducible while tests run in parallel.
    fn serial() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn args(v: &[&str]) -> Result<Option<Args>, RecipeError> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn default_and_quick_recipes_are_valid_and_round_trip() {
        let _serial = serial();
        for r in [Recipe::default(), Recipe::quick()] {
            r.validate().unwrap();
            let back: Recipe = serde_json::from_str(&serde_json::to_string_pretty(&r).unwrap()).unwrap();
            assert_eq!(back, r);
        }
        // The default student is ALBERT-style: factorized and shared.
        let s = &Recipe::default().student.model;
        assert!(s.embedding_size.is_some() && s.sharing == SharingMode::All);
    }

    #[test]
    fn bad_recipes_name_the_field() {
        let _serial = serial();
        type Edit = Box<dyn Fn(&mut Recipe)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|r| r.data.seq_len = 500),
                "teacher.model.max_seq_len = 32: expected at least data.seq_len = 500",
            ),
            (Box::new(|r| r.data.held_out = 0.0), "data.held_out = 0"),
            (Box::new(|r| r.prune.sparsity = 1.0), "prune"),
            (Box::new(|r| r.teacher.train.lr = f64::NAN), "teacher.train.lr = NaN"),
            (Box::new(|r| r.student.train.warmup = 10_000), "student.train.warmup"),
            (Box::new(|r| r.student.model.vocab_size = 300), "student.model.vocab_size = 300"),
            (Box::new(|r| r.student.model.n_heads = 3), "student.model"),
            (Box::new(|r| r.distill.temperature = 0.0), "distill"),
            (Box::new(|r| r.distill.layers = LayerMap::Custom(vec![(9, 1)])), "distill"),
            (Box::new(|r| r.quant.calibration_batches = 0), "quant.calibration_batches"),
            (Box::new(|r| r.quant.observer = ObserverConfig::percentile(20.0)), "quant.observer"),
            (Box::new(|r| r.eval.batch = 0), "eval.batch"),
            (Box::new(|r| r.prune.ramp = 1.5), "prune.ramp"),
            (Box::new(|r| r.data.corpus_bytes = 700), "4 of them in the held-out part"),
            (Box::new(|r| r.teacher.train.batch = 1 << 40), "teacher.train.batch"),
            (Box::new(|r| r.prune.granularity = Granularity::NM { n: 3, m: 5 }), "prune (on the student)"),
            (Box::new(|r| r.prune.exclude = vec![".*".into()]), "prune (on the student)"),
            (Box::new(|r| r.prune.exclude = vec!["*".into()]), "invalid exclude = \"*\": a regular expression"),
            (
                Box::new(|r| {
                    r.prune.criterion = Criterion::Movement;
                    r.prune.ramp = 0.01;
                }),
                "Movement",
            ),
        ];
        for (edit, needle) in cases {
            let mut r = Recipe::quick();
            edit(&mut r);
            let e = r.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should mention {needle}");
        }
    }

    #[test]
    fn bad_input_recipe_not_json() {
        let e = Recipe::parse("{\"seed\": 1,", "r.json").unwrap_err();
        assert!(matches!(&e, RecipeError::Parse { path, .. } if path == "r.json"), "{e}");
        assert!(e.to_string().starts_with("recipe file r.json: EOF while parsing"), "{e}");
    }

    #[test]
    fn bad_input_recipe_unknown_key_is_named() {
        let mut v = serde_json::to_value(Recipe::quick()).unwrap();
        v["prune"]["criterion_typo"] = serde_json::json!(1);
        let e = Recipe::parse(&v.to_string(), "r.json").unwrap_err();
        assert!(matches!(e, RecipeError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("unknown field `criterion_typo`"), "{e}");
    }

    #[test]
    fn bad_input_recipe_wrong_type() {
        let mut v = serde_json::to_value(Recipe::quick()).unwrap();
        v["data"]["seq_len"] = serde_json::json!(-4);
        let e = Recipe::parse(&v.to_string(), "r.json").unwrap_err();
        assert!(matches!(e, RecipeError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("invalid value: integer `-4`, expected usize"), "{e}");
    }

    #[test]
    fn bad_input_recipe_value_out_of_range() {
        let _serial = serial();
        let mut r = Recipe::quick();
        r.prune.ramp = 0.0;
        let e = r.validate().unwrap_err();
        assert!(matches!(&e, RecipeError::Invalid { field, .. } if field == "prune.ramp"), "{e}");
        assert_eq!(e.to_string(), "recipe: prune.ramp = 0: expected a fraction in (0, 1]");
    }

    #[test]
    fn bad_input_recipe_model_too_large_is_refused_before_allocating() {
        let _serial = serial();
        let mut r = Recipe::quick();
        r.student.model.d_model = 1 << 20;
        r.student.model.n_heads = 1;
        let e = r.validate().unwrap_err();
        assert!(matches!(&e, RecipeError::Invalid { field, .. } if field == "student.model"), "{e}");
        assert!(e.to_string().contains("at most 100000000 parameters"), "{e}");
        // Sizes whose parameter count overflows are the model crate's typed error, not a panic.
        r.student.model.d_model = usize::MAX / 2;
        let e = r.validate().unwrap_err();
        assert!(matches!(&e, RecipeError::Rejected { field, .. } if field == "student.model"), "{e}");
        assert!(e.to_string().contains("a model this process can allocate"), "{e}");
    }

    #[test]
    fn recipe_files_and_arguments() {
        let _serial = serial();
        let dir = std::env::temp_dir().join(format!("ember-compress-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("r.json");
        let mut r = Recipe::quick();
        r.seed = 5;
        std::fs::write(&file, serde_json::to_string(&r).unwrap()).unwrap();
        let a = args(&["--recipe", file.to_str().unwrap(), "--seed", "9"]).unwrap().unwrap();
        assert_eq!(load_recipe(&a).unwrap(), Recipe { seed: 9, ..r.clone() });
        // Unknown keys (also inside the crates' own types) and malformed JSON are errors naming
        // the file.
        std::fs::write(&file, r#"{"seed": 1, "colour": 2}"#).unwrap();
        let e = load_recipe(&a).unwrap_err().to_string();
        assert!(e.contains("r.json") && e.contains("unknown field"), "{e}");
        let mut v = serde_json::to_value(&r).unwrap();
        v["student"]["model"]["embeding_size"] = serde_json::json!(8);
        std::fs::write(&file, v.to_string()).unwrap();
        let e = load_recipe(&a).unwrap_err().to_string();
        assert!(e.contains("unknown key student.model.embeding_size"), "{e}");
        std::fs::write(&file, "{").unwrap();
        assert!(load_recipe(&a).unwrap_err().to_string().contains("r.json"));
        assert!(args(&["--threads", "0"]).unwrap_err().to_string().contains("at least 1"));
        assert!(args(&["--seed"]).unwrap_err().to_string().contains("--seed needs a number"));
        assert!(args(&["--frobnicate"]).unwrap_err().to_string().contains("unknown argument"));
        assert!(args(&["--quick", "--recipe", "x"]).is_err());
        let e = device("tpu").unwrap_err().to_string();
        assert!(e.contains("--device tpu") && e.contains("flex, ndarray, wgpu or cuda"), "{e}");
        // A GPU backend this build lacks says which feature to build with.
        #[cfg(not(feature = "cuda"))]
        {
            let e = device("cuda").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
        #[cfg(not(feature = "wgpu"))]
        {
            let e = device("wgpu").unwrap_err().to_string();
            assert!(e.contains("--features wgpu"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lr_schedule_warms_up_and_decays() {
        let _serial = serial();
        let t = TrainRecipe { steps: 100, batch: 1, lr: 1.0, warmup: 10, min_lr_fraction: 0.1, clip_norm: 1.0 };
        assert!((t.lr_at(0) - 0.1).abs() < 1e-12 && (t.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((t.lr_at(10) - 1.0).abs() < 1e-12 && (t.lr_at(100) - 0.1).abs() < 1e-12);
        assert!((t.lr_at(55) - 0.55).abs() < 1e-12);
    }

    #[test]
    fn corpus_split_and_errors() {
        let _serial = serial();
        let r = Recipe::quick();
        let c = load_corpus(&r, None).unwrap();
        let total = c.train.len() + c.held.len();
        assert!(total >= r.data.corpus_bytes);
        assert_eq!(c.held.len(), (total as f64 * 0.1).round() as usize);
        assert!(c.floor.is_some_and(|f| f > 1.0));
        let dir = std::env::temp_dir().join(format!("ember-compress-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.txt");
        std::fs::write(&small, "too short").unwrap();
        let e = load_corpus(&r, Some(&small)).unwrap_err().to_string();
        assert!(e.contains("small.txt") && e.contains("9 bytes"), "{e}");
        assert!(load_corpus(&r, Some(&dir.join("missing.txt"))).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The whole pipeline on a micro recipe: every stage runs, the report files exist and
    /// every number in the JSON is finite; the pruned stage is as sparse as asked and the
    /// teacher is reused on a rerun.
    fn micro_recipe() -> Recipe {
        let mut r = Recipe::quick();
        r.data.corpus_bytes = 8_000;
        r.data.seq_len = 16;
        for m in [&mut r.teacher, &mut r.student] {
            m.model.max_seq_len = 16;
            m.train.steps = 6;
            m.train.batch = 4;
            m.train.warmup = 2;
        }
        r.prune.train.steps = 6;
        r.prune.train.batch = 4;
        r.prune.train.warmup = 2;
        r.prune.frequency = 2;
        r.eval = EvalRecipe { batch: 8, latency_min_ms: 1, latency_warmup: 0, latency_rounds: 1 };
        r.validate().unwrap();
        r
    }

    fn micro_args(out: &Path) -> Args {
        Args {
            recipe: None,
            print_recipe: false,
            quick: false,
            corpus: None,
            device: "flex".into(),
            threads: 1,
            seed: None,
            out: out.to_path_buf(),
            retrain: false,
            teacher: None,
            task: None,
            data: None,
        }
    }

    #[test]
    fn embed_mode_arguments_go_together() {
        let _serial = serial();
        let ok = args(&["--teacher", "m", "--task", "embed", "--data", "t.txt"]).unwrap().unwrap();
        assert_eq!((ok.task.as_deref(), ok.data.as_deref()), (Some("embed"), Some(Path::new("t.txt"))));
        assert!(args(&["--teacher", "m", "--task", "embed", "--print-recipe"]).unwrap().is_some());
        for (v, needle) in [
            (vec!["--teacher", "m"], "go together"),
            (vec!["--task", "embed", "--data", "t"], "go together"),
            (vec!["--teacher", "m", "--task", "embed"], "needs --data"),
            (vec!["--teacher", "m", "--task", "classify", "--data", "t"], "expected embed"),
            (vec!["--teacher", "m", "--task", "embed", "--data", "t", "--corpus", "c"], "--corpus"),
        ] {
            let err = args(&v).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(needle), "{v:?}: {err}");
        }
    }

    #[test]
    fn micro_pipeline_end_to_end() {
        let _serial = serial();
        let r = micro_recipe();
        let out = std::env::temp_dir().join(format!("ember-compress-micro-{}", std::process::id()));
        let a = micro_args(&out);
        let report = run(&r, &a, &Device::flex()).unwrap();
        assert_eq!(report.rows.len(), 4);
        assert!(report.rows[2].stage.starts_with("pruned 50"), "{}", report.rows[2].stage);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        fn finite(v: &serde_json::Value) -> bool {
            match v {
                serde_json::Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
                serde_json::Value::Array(a) => a.iter().all(finite),
                serde_json::Value::Object(o) => o.values().all(finite),
                // serde_json writes NaN and infinity as null.
                serde_json::Value::Null => false,
                _ => true,
            }
        }
        assert!(finite(&json) && json["floor"]["value"].as_f64().is_some());
        for ext in ["md", "svg"] {
            assert!(out.join(format!("report.{ext}")).metadata().unwrap().len() > 0);
        }
        // int8 is smaller than the float student on disk; the rerun reuses the teacher.
        assert!(report.rows[3].bytes < report.rows[1].bytes);
        let key = std::fs::read_to_string(out.join("teacher.key")).unwrap();
        let mut rng = Rng(1);
        let corpus = load_corpus(&r, None).unwrap();
        let (_, _, cached) = teacher(&r, &corpus, &Device::flex(), &out, false, &mut rng).unwrap();
        assert!(cached && key == teacher_key(&r, &corpus));
        // The rerun with the cached teacher reproduces the later stages exactly.
        let again = run(&r, &a, &Device::flex()).unwrap();
        for (x, y) in report.rows.iter().zip(&again.rows) {
            assert_eq!(x.bytes, y.bytes, "{}", x.stage);
            assert!((x.metric_value / y.metric_value - 1.0).abs() < 1e-4, "{}: {x:?} {y:?}", x.stage);
        }
        let _ = std::fs::remove_dir_all(&out);
    }

    /// Determinism of the whole pipeline: two runs from scratch (the teacher retrained, in fresh
    /// output folders) with the same seed give the same report, bit for bit, except the timing
    /// columns (latencies, speed-ups and the energy estimate derived from them).
    #[test]
    fn seeded_pipeline_reproduces_its_report() {
        let _serial = serial();
        let r = micro_recipe();
        let runs: Vec<CompressionReport> = (0..2)
            .map(|i| {
                let out = std::env::temp_dir().join(format!("ember-compress-repro-{}-{i}", std::process::id()));
                let _ = std::fs::remove_dir_all(&out);
                let report = run(&r, &micro_args(&out), &Device::flex()).unwrap();
                let _ = std::fs::remove_dir_all(&out);
                report
            })
            .collect();
        let numbers = |rep: &CompressionReport| -> Vec<(String, u64, u64, String, u64)> {
            rep.rows
                .iter()
                .map(|row| (row.stage.clone(), row.params, row.bytes, row.metric.clone(), row.metric_value.to_bits()))
                .collect()
        };
        assert_eq!(numbers(&runs[0]), numbers(&runs[1]));
        let floor = |rep: &CompressionReport| rep.floor.as_ref().map(|f| f.value.to_bits());
        assert_eq!(floor(&runs[0]), floor(&runs[1]));
    }

    /// The same micro pipeline on Burn's wgpu device (CI: Mesa's lavapipe): teacher training,
    /// distillation, gradual pruning with masks and static int8 all run there, and the report
    /// is complete and finite.
    #[cfg(feature = "wgpu")]
    #[test]
    fn micro_pipeline_on_wgpu() {
        let _serial = serial();
        let Some(gpu) = ember_testkit::wgpu() else {
            eprintln!("SKIPPED: no wgpu adapter");
            return;
        };
        ember_testkit::record("wgpu");
        let r = micro_recipe();
        let out = std::env::temp_dir().join(format!("ember-compress-wgpu-{}", std::process::id()));
        let report = run(&r, &micro_args(&out), &gpu).unwrap();
        assert_eq!(report.rows.len(), 4);
        assert!(report.rows[2].stage.starts_with("pruned 50"), "{}", report.rows[2].stage);
        assert!(report.rows.iter().all(|row| row.metric_value.is_finite() && row.metric_value > 1.0));
        assert!(report.rows[3].bytes < report.rows[1].bytes);
        let _ = std::fs::remove_dir_all(&out);
    }

    /// Wanda (input norms from a calibration pass) and movement (scores accumulated from
    /// gradients) reach the asked sparsity too, and N:M gives its fixed 50 %.
    #[test]
    fn other_pruning_criteria_run() {
        let _serial = serial();
        for (i, (criterion, granularity)) in [
            (Criterion::Wanda, Granularity::Unstructured),
            (Criterion::Movement, Granularity::Unstructured),
            (Criterion::Magnitude, Granularity::NM { n: 2, m: 4 }),
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = micro_recipe();
            r.prune.criterion = criterion.clone();
            r.prune.granularity = granularity;
            r.validate().unwrap();
            let out = std::env::temp_dir().join(format!("ember-compress-criteria-{}-{i}", std::process::id()));
            let report = run(&r, &micro_args(&out), &Device::flex()).unwrap();
            assert!(report.rows[2].stage.starts_with("pruned 50"), "{criterion:?}: {}", report.rows[2].stage);
            let _ = std::fs::remove_dir_all(&out);
        }
    }
}
