//! Sentence-embedding compression of a pretrained encoder: teacher → distilled student →
//! narrowed student → int8, each stage measured on held-out sentences.
//!
//! 1. **Data**: the text is split into sentences ([`super::text::sentences`]), shuffled with the
//!    recipe's seed; `held_out` of them (at most `max_held_out`) are kept aside for the report.
//!    `general_sentences` sentences of general English (the built-in [`GENERAL_ENGLISH`] sample
//!    or the recipe's `general_text`) join the training sentences, never the held-out ones: a
//!    student distilled on one kind of text alone keeps the teacher's function on that kind
//!    and loses more of it on others.
//! 2. **distilled**: the student is the teacher's layers `layers` (default every other one,
//!    1, 3, 5 of 6), initialised from the teacher's weights, trained to reproduce the teacher's
//!    L2-normalised mean-pooled embeddings (loss `1 − cos(student, teacher)`) and, with
//!    `token_weight`, every token's last hidden state (`1 − cos` per real token); the targets
//!    are computed once, without a graph. AdamW, linear warm-up and decay, gradient clipping;
//!    the embedding tables stay frozen unless `train_embeddings`.
//! 3. **pruned**: `prune_neurons` of every FFN's neurons are removed by measured importance
//!    (Wanda's structured form: `‖W₂[j,:]‖₂ · ‖X_j‖₂` on calibration sentences; ember-quant's
//!    calibrator measures, ember-prune's criteria choose, the model's blocks remove, the same
//!    number in every layer so Hugging Face's format holds the student without padding), then
//!    distilled again. Saved in Hugging Face layout (`student-hf/`) and **measured as reloaded
//!    from there**.
//! 4. **int8**: ember-quant's default conversion (per-channel int8 weights, per-row dynamic int8
//!    activations, int8 tables), saved in Ember's format (`student-int8/`, with the teacher's
//!    `tokenizer.json`) and measured as reloaded.
//!
//! Quality is the Spearman correlation between the stage's and the teacher's cosine similarities
//! over all pairs of held-out sentences (how well the student preserves the teacher's ranking of
//! neighbours, what search and clustering use), with the mean and minimum cosine between the
//! two embeddings of each sentence. Latency is the median `embed` call at batch 1 (a held-out
//! sentence of median length) and batch 32, the stages timed round-robin.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use ember_slm::pipeline::embed::{EmbedRecipe, run};
//! use std::path::Path;
//!
//! let text = std::fs::read_to_string("corpora/moby-dick.txt").unwrap(); // scripts/fetch-moby-dick.sh
//! let recipe = EmbedRecipe { distill_steps: 300, ..EmbedRecipe::default() };
//! let mut progress = |stage: &str, done: usize, total: usize, _loss: f64| eprint!("\r{stage} {done}/{total}");
//! let r = run(Path::new("models/all-minilm-l6-v2"), &text, &recipe, Path::new("out"), &Device::flex(), &mut progress)
//!     .unwrap();
//! println!("{}", r.report.to_markdown()); // students in out/student-hf and out/student-int8
//! ```

use super::text::sentences;
use super::train::{WarmupLinear, adamw};
use super::{PipelineError, Result, Rng, host, io_err, recipe_err};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use ember_eval::{CompressionReport, Correlation, EnergyModel, StageRow};
use ember_models::{Bert, Encoded, TextTokenizer, l2_normalize, mean_pool};
use ember_quant::{QuantizeConfig, Quantizer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The settings of an embedding run (JSON: every field optional, unknown fields refused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedRecipe {
    /// Teacher layers the student keeps (0-based, ascending); empty: every other layer from 1.
    pub layers: Vec<usize>,
    /// Longest tokenized sentence (longer ones are truncated; at most the teacher's positions).
    pub max_tokens: usize,
    /// Shortest sentence kept, in characters.
    pub min_chars: usize,
    /// Fraction of the sentences held out for the report.
    pub held_out: f64,
    /// At most this many held-out sentences.
    pub max_held_out: usize,
    /// At most this many training sentences (0: all).
    pub max_train: usize,
    /// Sentences per training step.
    pub batch: usize,
    /// Distillation steps of the layer-subset student.
    pub distill_steps: usize,
    /// Peak learning rate of the distillation.
    pub lr: f64,
    /// Warm-up steps (of each training stage).
    pub warmup: usize,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient norm clip.
    pub clip_norm: f64,
    /// Weight of the token-level term: `1 − cos` between the student's and the teacher's last
    /// hidden state of every real token, averaged (0: the sentence embedding alone). The
    /// teacher's states are computed once and kept in memory (`4 · tokens · width` bytes).
    pub token_weight: f64,
    /// Weight of the intermediate-layer term (TinyBERT's hidden-state transfer): the output of
    /// the student's layer `k` against the teacher's layer `layers[k]`, every real token, as a
    /// relative squared error `‖s − t‖² / ‖t‖²` averaged over tokens and layers (0: off). The
    /// teacher's states are kept in memory (`4 · tokens · width · layers` bytes).
    pub hidden_weight: f64,
    /// Weight of the attention term: the KL divergence of the student's attention
    /// probabilities from the teacher's, layer `k` against `layers[k]`, every head and real query
    /// token (0: off; needs the student to keep the teacher's heads). The teacher's maps are
    /// kept in memory (`4 · heads · tokens · seq · layers` bytes).
    pub attention_weight: f64,
    /// Weight of the relation term: `1 − r`, with `r` the Pearson correlation between the
    /// student's and the teacher's cosine similarities of every pair of sentences in the batch
    /// (what the report's Spearman measures, made differentiable; 0: off).
    pub relation_weight: f64,
    /// Also train on variants of the training sentences: a random span of half or more of each
    /// sentence's words, and each sentence joined with the next (three inputs per sentence,
    /// more varied lengths and contexts for the same text).
    pub augment: bool,
    /// Also train on a copy of every training input in which this fraction of the word pieces
    /// (never the first or last, `[CLS]` / `[SEP]`) is replaced by pieces drawn uniformly from
    /// the tokenizer's vocabulary (bracketed special and unused entries excluded), so that the
    /// student sees, in context, the vocabulary the training text lacks (0: no copy).
    pub replace_tokens: f64,
    /// Sentences of general English mixed into the training data (never into the held-out
    /// split), so that the student learns the teacher's function beyond the kind of text given
    /// (TinyBERT's general distillation in one pass): drawn evenly from `general_text`, or from
    /// the built-in sample ([`GENERAL_ENGLISH`]: 8,000 sentences of the Brown corpus's 500 texts
    /// in 15 genres) when that is unset; 0 trains on the given text alone. On all-MiniLM-L6-v2
    /// with Moby-Dick as the text, the default raised the Spearman on 300 State of the Union
    /// sentences from 0.842 to 0.875 (distilled) and 0.813 to 0.853 (final float student), on
    /// 300 e-mails from 0.669 to 0.707 (final), and left the in-domain 0.894 as it was
    /// (docs/benchmarks.md).
    pub general_sentences: usize,
    /// A text file to draw the general sentences from instead of the built-in sample (split into
    /// sentences as the main text is).
    pub general_text: Option<PathBuf>,
    /// Train the embedding tables too (default: frozen at the teacher's, so that tokens the
    /// training text never shows keep the representation the layers were trained with; the
    /// steps are about 15 % faster).
    pub train_embeddings: bool,
    /// Fraction of every FFN's neurons removed (0 skips the narrowing but keeps the stage).
    pub prune_neurons: f64,
    /// Distillation steps after the narrowing.
    pub prune_steps: usize,
    /// Peak learning rate after the narrowing.
    pub prune_lr: f64,
    /// Sentences the importance is measured on.
    pub calibration_sentences: usize,
    /// Minimum time per latency measurement, ms.
    pub latency_ms: u64,
    /// Seed of the shuffles.
    pub seed: u64,
}

impl Default for EmbedRecipe {
    fn default() -> Self {
        EmbedRecipe {
            layers: Vec::new(),
            max_tokens: 128,
            min_chars: 20,
            held_out: 0.1,
            max_held_out: 500,
            max_train: 0,
            batch: 32,
            distill_steps: 600,
            lr: 3e-4,
            warmup: 30,
            weight_decay: 0.01,
            clip_norm: 1.0,
            token_weight: 0.0,
            hidden_weight: 1.0,
            attention_weight: 0.0,
            relation_weight: 0.0,
            train_embeddings: false,
            general_sentences: 8000,
            general_text: None,
            augment: false,
            replace_tokens: 0.0,
            prune_neurons: 0.25,
            prune_steps: 300,
            prune_lr: 1e-4,
            calibration_sentences: 256,
            latency_ms: 1000,
            seed: 17,
        }
    }
}

impl EmbedRecipe {
    /// A seconds-long run for smoke tests: few steps, short measurements.
    pub fn quick() -> Self {
        EmbedRecipe {
            max_held_out: 40,
            max_train: 96,
            batch: 8,
            distill_steps: 4,
            warmup: 1,
            prune_steps: 2,
            calibration_sentences: 16,
            latency_ms: 20,
            max_tokens: 32,
            general_sentences: 24,
            ..EmbedRecipe::default()
        }
    }

    /// Checks every setting (before any work).
    ///
    /// # Errors
    /// [`PipelineError::Recipe`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("max_tokens", self.max_tokens),
            ("max_held_out", self.max_held_out),
            ("batch", self.batch),
            ("calibration_sentences", self.calibration_sentences),
        ];
        for (what, v) in positive {
            if v == 0 {
                return Err(recipe_err(what, v, "a positive number"));
            }
        }
        if self.max_tokens < 3 {
            return Err(recipe_err("max_tokens", self.max_tokens, "at least 3 ([CLS], a token, [SEP])"));
        }
        if !(self.held_out > 0.0 && self.held_out < 1.0) {
            return Err(recipe_err("held_out", self.held_out, "a fraction in (0, 1)"));
        }
        if !(0.0..=1.0).contains(&self.replace_tokens) {
            return Err(recipe_err("replace_tokens", self.replace_tokens, "a fraction in [0, 1]"));
        }
        if !(0.0..1.0).contains(&self.prune_neurons) {
            return Err(recipe_err("prune_neurons", self.prune_neurons, "a fraction in [0, 1)"));
        }
        for (what, v) in [("lr", self.lr), ("prune_lr", self.prune_lr), ("clip_norm", self.clip_norm)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(recipe_err(what, v, "a finite value > 0"));
            }
        }
        for (what, v) in [
            ("weight_decay", self.weight_decay),
            ("token_weight", self.token_weight),
            ("hidden_weight", self.hidden_weight),
            ("attention_weight", self.attention_weight),
            ("relation_weight", self.relation_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(recipe_err(what, v, "a finite value ≥ 0"));
            }
        }
        if self.layers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(recipe_err("layers", format!("{:?}", self.layers), "ascending teacher layer indices"));
        }
        Ok(())
    }

    /// The student's layers for a teacher of `n` layers.
    ///
    /// # Errors
    /// [`PipelineError::Recipe`] for a layer the teacher does not have.
    pub fn student_layers(&self, n: usize) -> Result<Vec<usize>> {
        super::student_layers(&self.layers, n)
    }
}

/// One measured stage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmbedStage {
    /// `teacher`, `distilled`, `pruned`, `int8`.
    pub name: String,
    /// Parameters.
    pub params: u64,
    /// Bytes of the saved model (the teacher's `model.safetensors`; Hugging Face export for
    /// float students, Ember's file for int8).
    pub bytes: u64,
    /// Spearman correlation of pairwise cosine similarities against the teacher's.
    pub spearman: f64,
    /// Mean cosine between the stage's and the teacher's embedding of a sentence.
    pub cos_mean: f64,
    /// Smallest such cosine.
    pub cos_min: f64,
    /// Median latency at batch 1, ms.
    pub b1_ms: f64,
    /// Median latency at batch 32, ms.
    pub b32_ms: f64,
    /// Seconds the stage took to make (training, conversion, saving).
    pub seconds: f64,
    /// Multiply-accumulates of a batch-1 call: (f32, int8).
    pub macs: (u64, u64),
}

/// What a run produced.
#[derive(Debug)]
pub struct EmbedRun {
    /// The stages, teacher first.
    pub stages: Vec<EmbedStage>,
    /// The report (also written to `report.md`, `report.json`, `report.svg`).
    pub report: CompressionReport,
    /// Training loss every 10 steps: (stage, step, loss).
    pub curve: Vec<(String, usize, f64)>,
    /// Sentences of the given text trained on and held out.
    pub sentences: (usize, usize),
    /// General sentences trained on besides them (the recipe's `general_sentences`).
    pub general_sentences: usize,
    /// The float student in Hugging Face layout.
    pub hf_dir: PathBuf,
    /// The int8 student in Ember's format.
    pub int8_dir: PathBuf,
}

/// Progress (the one [`super::Progress`] type): (stage, step done, steps, last loss). Stages: `teacher` (its embeddings of the
/// training batches, loss NaN), `distill`, `prune`.
pub use super::Progress;

/// Runs the pipeline (see the [module docs](self)) on the teacher in `teacher_dir` (a Hugging
/// Face BERT-family directory with `tokenizer.json`) and `text`, writing to `out`.
///
/// # Errors
/// [`PipelineError::Recipe`] for an invalid recipe (before any work), [`PipelineError::Data`]
/// for text with too few sentences, [`PipelineError::Diverged`], and the crates' errors for
/// unreadable checkpoints or files that cannot be written.
pub fn run(
    teacher_dir: &Path,
    text: &str,
    recipe: &EmbedRecipe,
    out: &Path,
    device: &Device,
    progress: Progress<'_>,
) -> Result<EmbedRun> {
    recipe.validate()?;
    // The data first (cheap, and a missing general-text file is named before the teacher loads).
    let (train, held) = split(text, recipe)?;
    let general = general_sentences(recipe, &held)?;
    let teacher = Bert::from_pretrained(teacher_dir, device)?;
    let layers = recipe.student_layers(teacher.n_layers())?;
    let tok =
        TextTokenizer::from_file(teacher_dir.join("tokenizer.json"), recipe.max_tokens.min(teacher.max_positions()))?;
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let write =
        |name: &str, bytes: &[u8]| std::fs::write(out.join(name), bytes).map_err(|e| io_err(&out.join(name), e));
    write("recipe.json", serde_json::to_string_pretty(recipe).unwrap_or_default().as_bytes())?;

    // Training batches of similar lengths, and the teacher's embeddings of them.
    let mut rng = Rng(recipe.seed);
    let mut inputs = if recipe.augment { augmented(&train, &mut Rng(recipe.seed ^ 0xa5a5)) } else { train.clone() };
    inputs.extend(general.iter().cloned());
    let batches = length_batches(&tok, &inputs, recipe.batch, recipe.replace_tokens, &mut Rng(recipe.seed ^ 0x7e7e))?;
    let mut targets: Vec<Targets> = Vec::with_capacity(batches.len());
    let collect = recipe.hidden_weight > 0.0 || recipe.attention_weight > 0.0;
    for (i, b) in batches.iter().enumerate() {
        let (out, pad) = forward(&teacher, b, collect)?;
        let last = out.last_hidden;
        let embedding = host(l2_normalize(mean_pool(last.clone(), pad)), "embeddings")?;
        let tokens =
            if recipe.token_weight > 0.0 { Some(host(normalize_tokens(last), "hidden states")?) } else { None };
        let mut hidden = Vec::new();
        let mut attention = Vec::new();
        for &l in &layers {
            if recipe.hidden_weight > 0.0 {
                hidden.push(host(out.hidden_states[l + 1].clone(), "hidden states")?);
            }
            if recipe.attention_weight > 0.0 {
                attention.push(host(out.attentions[l].clone(), "attention maps")?);
            }
        }
        targets.push(Targets { embedding, tokens, hidden, attention });
        progress("teacher", i + 1, batches.len(), f64::NAN);
    }
    let ad = device.clone().autodiff();
    let mut curve = Vec::new();

    let start = Instant::now();
    let student = trainable(teacher.retain_layers(&layers)?.fork(&ad).train(), recipe);
    let student = distill(
        student,
        &batches,
        &targets,
        WarmupLinear { peak: recipe.lr, warmup: recipe.warmup, total: recipe.distill_steps },
        recipe,
        "distill",
        &mut rng,
        &mut curve,
        progress,
    )?
    .valid();
    let distilled_secs = start.elapsed().as_secs_f64();
    let distilled_dir = out.join("distilled-hf");
    let distilled_bytes = student.save_pretrained(&distilled_dir, Some(teacher_dir))?.weight_bytes;

    let start = Instant::now();
    let calib = tok.encode_batch(&train[..recipe.calibration_sentences.min(train.len())])?;
    let narrowed = trainable(narrow(&student, &calib, recipe.prune_neurons)?.fork(&ad).train(), recipe);
    let pruned = distill(
        narrowed,
        &batches,
        &targets,
        WarmupLinear { peak: recipe.prune_lr, warmup: recipe.warmup, total: recipe.prune_steps },
        recipe,
        "prune",
        &mut rng,
        &mut curve,
        progress,
    )?
    .valid();
    let hf_dir = out.join("student-hf");
    let hf_bytes = pruned.save_pretrained(&hf_dir, Some(teacher_dir))?.weight_bytes;
    let pruned = Bert::from_pretrained(&hf_dir, device)?;
    let pruned_secs = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&pruned)?;
    let int8_dir = out.join("student-int8");
    let int8_bytes = int8.save(&int8_dir)?;
    let tok_src = teacher_dir.join("tokenizer.json");
    std::fs::copy(&tok_src, int8_dir.join("tokenizer.json")).map_err(|e| io_err(&tok_src, e))?;
    let int8 = Bert::load(&int8_dir, device)?;
    let int8_secs = start.elapsed().as_secs_f64();

    let teacher_bytes = std::fs::metadata(teacher_dir.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
    let mut stages = vec![
        (stage_init("teacher", &teacher, teacher_bytes, 0.0, false)?, teacher),
        (stage_init("distilled", &student, distilled_bytes, distilled_secs, false)?, student),
        (stage_init("pruned", &pruned, hf_bytes, pruned_secs, false)?, pruned),
        (stage_init("int8", &int8, int8_bytes, int8_secs, true)?, int8),
    ];

    // Quality on the held-out sentences.
    let held_batches: Vec<Encoded> =
        held.chunks(32).map(|c| tok.encode_batch(c).map_err(PipelineError::from)).collect::<Result<_>>()?;
    let embeddings: Vec<Vec<Vec<f32>>> = stages
        .iter()
        .map(|(_, m)| {
            let mut all = Vec::new();
            for b in &held_batches {
                all.extend(rows(m.embed(b)?)?);
            }
            Ok(all)
        })
        .collect::<Result<_>>()?;
    let teacher_sims = ember_eval::pair_cosines(&embeddings[0])?;
    for ((s, _), e) in stages.iter_mut().zip(&embeddings) {
        let mut c = Correlation::new();
        c.update(&ember_eval::pair_cosines(e)?, &teacher_sims)?;
        s.spearman = c.spearman()?;
        let cos = ember_eval::row_cosines(e, &embeddings[0])?;
        s.cos_mean = cos.iter().sum::<f64>() / cos.len() as f64;
        s.cos_min = cos.iter().copied().fold(f64::INFINITY, f64::min);
    }

    // Latency, round-robin.
    let mut lengths: Vec<(usize, usize)> =
        held.iter().enumerate().map(|(i, s)| Ok((tok.encode(s)?.len(), i))).collect::<Result<_>>()?;
    lengths.sort_unstable();
    let median = &held[lengths[lengths.len() / 2].1];
    let b1 = tok.encode_batch(&[median])?;
    let b32 = tok.encode_batch(&held[..held.len().min(32)])?;
    let models: Vec<&Bert> = stages.iter().map(|(_, m)| m).collect();
    let times = super::round_robin(&models, [&b1, &b32], recipe.latency_ms, |m, b| m.embed(b).map(|t| t.into_data()))?;
    let energy = EnergyModel::horowitz_45nm();
    let mut rows_out = Vec::new();
    for ((s, _), (b1_ms, b32_ms)) in stages.iter_mut().zip(times) {
        s.b1_ms = b1_ms;
        s.b32_ms = b32_ms;
        rows_out.push(
            StageRow::new(&s.name, s.params, s.bytes, "spearman", s.spearman, s.b1_ms, s.b32_ms)
                .with_energy(energy.estimate_mj(s.macs.0, s.macs.1, s.bytes))
                .with_higher_is_better(true),
        );
    }
    let report = CompressionReport::new(rows_out)?;
    super::write_report(out, &report, &curve, Vec::new())?;
    Ok(EmbedRun {
        stages: stages.into_iter().map(|(s, _)| s).collect(),
        report,
        curve,
        sentences: (train.len(), held.len()),
        general_sentences: general.len(),
        hf_dir,
        int8_dir,
    })
}

/// Training and held-out sentences.
fn split(text: &str, recipe: &EmbedRecipe) -> Result<(Vec<String>, Vec<String>)> {
    let mut all = sentences(text, recipe.min_chars);
    let needed = 2 * recipe.batch.max(8);
    if all.len() < needed {
        return Err(PipelineError::Data {
            what: "text".into(),
            message: format!(
                "{} sentences of at least {} characters, expected at least {needed} (more text, or a lower min_chars)",
                all.len(),
                recipe.min_chars
            ),
        });
    }
    Rng(recipe.seed ^ 0x5e17).shuffle(&mut all);
    let n_held =
        ((all.len() as f64 * recipe.held_out).round() as usize).clamp(2, recipe.max_held_out).min(all.len() / 2);
    let mut train = all.split_off(n_held);
    if recipe.max_train > 0 {
        train.truncate(recipe.max_train);
    }
    Ok((train, all))
}

/// The built-in general English text (one sentence a line): 8,000 sentences sampled evenly
/// from the 500 texts of the Brown corpus (Francis & Kučera, 1964/1979: news, editorials,
/// reviews, religion, hobbies, popular lore, letters, government documents, science, fiction of
/// six kinds, humour), distributed with the copyright holder's permission, redistribution
/// permitted; regenerated by `scripts/make-general-english.sh`.
pub const GENERAL_ENGLISH: &str = include_str!("data/general-english.txt");

/// Up to `general_sentences` sentences of the general text, drawn evenly, none equal to a
/// held-out sentence.
fn general_sentences(recipe: &EmbedRecipe, held: &[String]) -> Result<Vec<String>> {
    if recipe.general_sentences == 0 {
        return Ok(Vec::new());
    }
    let owned;
    let text = match &recipe.general_text {
        Some(path) => {
            owned = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
            owned.as_str()
        }
        None => GENERAL_ENGLISH,
    };
    let held: std::collections::HashSet<&str> = held.iter().map(String::as_str).collect();
    let all: Vec<String> =
        sentences(text, recipe.min_chars).into_iter().filter(|s| !held.contains(s.as_str())).collect();
    if all.is_empty() {
        return Err(PipelineError::Data {
            what: recipe.general_text.as_ref().map_or("general text".into(), |p| p.display().to_string()),
            message: format!("no sentence of at least {} characters in the general text", recipe.min_chars),
        });
    }
    let n = recipe.general_sentences.min(all.len());
    Ok((0..n).map(|i| all[i * all.len() / n].clone()).collect())
}

/// The sentences, a random span of half or more of each one's words, and each joined with the
/// next.
fn augmented(train: &[String], rng: &mut Rng) -> Vec<String> {
    let mut out = train.to_vec();
    for (i, s) in train.iter().enumerate() {
        let words: Vec<&str> = s.split_whitespace().collect();
        if words.len() >= 6 {
            let len = words.len().div_ceil(2) + rng.below(words.len() / 2);
            let start = rng.below(words.len() - len + 1);
            out.push(words[start..start + len].join(" "));
        }
        if let Some(next) = train.get(i + 1) {
            out.push(format!("{s} {next}"));
        }
    }
    out
}

/// Batches of `size` sentences of similar token counts (less padding).
/// With `replace > 0`, a copy of every sequence with that fraction of its inner pieces replaced
/// by random vocabulary pieces is added.
fn length_batches(
    tok: &TextTokenizer,
    sentences: &[String],
    size: usize,
    replace: f64,
    rng: &mut Rng,
) -> Result<Vec<Encoded>> {
    let mut seqs: Vec<Vec<u32>> = sentences.iter().map(|s| tok.encode(s)).collect::<ember_models::Result<_>>()?;
    if replace > 0.0 {
        let pool: Vec<u32> = (0..tok.vocab_size() as u32)
            .filter(|&id| {
                tok.inner().id_to_token(id).is_some_and(|t| {
                    let bracketed =
                        (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('<') && t.ends_with('>'));
                    !bracketed && !t.is_empty()
                })
            })
            .collect();
        if !pool.is_empty() {
            let copies: Vec<Vec<u32>> = seqs
                .iter()
                .map(|s| {
                    let mut c = s.clone();
                    let inner = c.len().saturating_sub(2);
                    for id in c.iter_mut().skip(1).take(inner) {
                        if (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= replace {
                            *id = pool[rng.below(pool.len())];
                        }
                    }
                    c
                })
                .collect();
            seqs.extend(copies);
        }
    }
    seqs.sort_by_key(Vec::len);
    seqs.chunks(size).map(|c| Encoded::from_ids(c, tok.pad_id()).map_err(PipelineError::from)).collect()
}

/// The distillation loop: `1 − cos` between the student's and the teacher's embeddings.
#[allow(clippy::too_many_arguments)]
fn distill(
    mut student: Bert,
    batches: &[Encoded],
    targets: &[Targets],
    schedule: WarmupLinear,
    recipe: &EmbedRecipe,
    stage: &str,
    rng: &mut Rng,
    curve: &mut Vec<(String, usize, f64)>,
    progress: Progress<'_>,
) -> Result<Bert> {
    let device = student.device();
    let mut opt = adamw(recipe.weight_decay, recipe.clip_norm);
    let mut order: Vec<usize> = (0..batches.len()).collect();
    let mut pos = order.len();
    let h = student.hidden_size();
    let mut last = f64::NAN;
    for step in 0..schedule.total {
        if pos == order.len() {
            rng.shuffle(&mut order);
            pos = 0;
        }
        let i = order[pos];
        pos += 1;
        let (b, seq) = (batches[i].batch, batches[i].seq);
        let collect = !targets[i].hidden.is_empty() || !targets[i].attention.is_empty();
        let (out, pad) = forward(&student, &batches[i], collect)?;
        let states = out.last_hidden;
        let s = l2_normalize(mean_pool(states.clone(), pad.clone()));
        let target = Tensor::<2>::from_data(TensorData::new(targets[i].embedding.clone(), [b, h]), &device);
        let mut loss = (s.clone() * target.clone()).sum_dim(1).mean().neg().add_scalar(1.0);
        if recipe.relation_weight > 0.0 && b > 2 {
            loss = loss + relation_loss(s, target).mul_scalar(recipe.relation_weight);
        }
        let real = pad.clone().bool_not().float(); // [b, t]
        let n_real = real.clone().sum().clamp_min(1.0);
        if !targets[i].hidden.is_empty() {
            let term = super::hidden_term(&out.hidden_states, &targets[i].hidden, pad.clone());
            loss = loss + term.mul_scalar(recipe.hidden_weight);
        }
        if !targets[i].attention.is_empty() {
            let mut term = Tensor::<1>::zeros([1], &device);
            for (k, t) in targets[i].attention.iter().enumerate() {
                let p = out.attentions[k].clone();
                let heads = p.dims()[1];
                if t.len() != b * heads * seq * seq {
                    return Err(PipelineError::Data {
                        what: "attention term".into(),
                        message: format!(
                            "the student's layer {k} has {heads} heads and the teacher's maps {} values, expected {}",
                            t.len(),
                            b * heads * seq * seq
                        ),
                    });
                }
                let t = Tensor::<4>::from_data(TensorData::new(t.clone(), [b, heads, seq, seq]), &device);
                // KL(t ‖ p) per query row: Σ_k t (ln t − ln p); the masked keys carry t ≈ 0.
                let kl = (t.clone() * (t.clamp_min(1e-8).log() - p.clamp_min(1e-8).log())).sum_dim(3); // [b, h, t, 1]
                let rows = kl.sum_dim(1).squeeze_dim::<3>(3).squeeze_dim::<2>(1); // [b, t]
                term = term + (rows * real.clone()).sum() / n_real.clone().mul_scalar(heads as f64);
            }
            let n = targets[i].attention.len() as f64;
            loss = loss + term.mul_scalar(recipe.attention_weight / n);
        }
        if let Some(tokens) = &targets[i].tokens {
            let target = Tensor::<3>::from_data(TensorData::new(tokens.clone(), [b, seq, h]), &device);
            let cos = (normalize_tokens(states) * target).sum_dim(2) * real.clone().unsqueeze_dim::<3>(2);
            let token_loss = (cos.sum() / n_real.clone()).neg().add_scalar(1.0);
            loss = loss + token_loss.mul_scalar(recipe.token_weight);
        }
        if step % 10 == 0 || step + 1 == schedule.total {
            last = f64::from(loss.clone().into_scalar::<f32>());
            if !last.is_finite() {
                return Err(PipelineError::Diverged { stage: stage.into(), step, loss: last });
            }
            curve.push((stage.to_string(), step, last));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &student);
        student = opt.step(schedule.lr(step), student, grads);
        progress(stage, step + 1, schedule.total, last);
    }
    Ok(student)
}

/// The student with its embedding tables frozen unless the recipe trains them.
fn trainable(mut student: Bert, recipe: &EmbedRecipe) -> Bert {
    if !recipe.train_embeddings {
        student.embeddings = student.embeddings.freeze();
    }
    student
}

/// The teacher's training targets for one batch.
struct Targets {
    /// Normalised sentence embeddings `[b, h]`.
    embedding: Vec<f32>,
    /// With a token term: normalised last hidden states `[b, t, h]`.
    tokens: Option<Vec<f32>>,
    /// With a hidden-state term: the mapped teacher layers' outputs `[b, t, h]`.
    hidden: Vec<Vec<f32>>,
    /// With an attention term: the mapped teacher layers' attention maps `[b, heads, t, t]`.
    attention: Vec<Vec<f32>>,
}

/// The model's output on `batch` (with every layer's states and maps when `collect`) and the
/// batch's padding mask.
fn forward(model: &Bert, batch: &Encoded, collect: bool) -> Result<(ember_models::BertOutput, Tensor<2, Bool>)> {
    batch.check(model.vocab_size(), model.embeddings.type_vocab_size().max(1))?;
    let (ids, types, pad) = batch.tensors(&model.device());
    let types = (model.embeddings.type_vocab_size() > 0).then_some(types);
    Ok((model.try_forward(ids, types, Some(pad.clone()), collect)?, pad))
}

/// `1 − r`: `r` the Pearson correlation between the off-diagonal entries of the students' and
/// the teacher's cosine-similarity matrices of one batch of L2-normalised embeddings `[b, h]`.
fn relation_loss(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let [b, _] = student.dims();
    let device = student.device();
    let off = Tensor::<2>::ones([b, b], &device) - Tensor::<2>::eye(b, &device);
    let n = (b * (b - 1)) as f64;
    let centred = |e: Tensor<2>| {
        let sim = e.clone().matmul(e.transpose()) * off.clone();
        let mean = sim.clone().sum().div_scalar(n);
        (sim - mean.unsqueeze_dim::<2>(1)) * off.clone()
    };
    let (s, t) = (centred(student), centred(teacher));
    let cov = (s.clone() * t.clone()).sum();
    let var = (s.powi_scalar(2).sum() * t.powi_scalar(2).sum()).sqrt().clamp_min(1e-12);
    (cov / var).neg().add_scalar(1.0)
}

/// Every token's state divided by its L2 norm (floored at 1e-12).
fn normalize_tokens(x: Tensor<3>) -> Tensor<3> {
    let norm = x.clone().powi_scalar(2).sum_dim(2).sqrt().clamp_min(1e-12);
    x / norm
}

/// Removes `fraction` of every FFN's neurons by Wanda's structured importance on `calib`.
fn narrow(model: &Bert, calib: &Encoded, fraction: f64) -> Result<Bert> {
    let ffns = &model.encoder.feed_forward;
    super::narrow_ffns(
        model,
        ffns,
        "",
        fraction,
        |m| Ok(m.embed(calib).map(|_| ())?),
        |m, block, keep| Ok(m.retain_neurons(block, keep)?),
    )
}

fn stage_init(name: &str, model: &Bert, bytes: u64, seconds: f64, int8: bool) -> Result<EmbedStage> {
    let arch = model.architecture()?;
    let params = arch.num_params()? as u64;
    let macs = batch1_macs(model, 16);
    Ok(EmbedStage {
        name: name.into(),
        params,
        bytes,
        spearman: 0.0,
        cos_mean: 0.0,
        cos_min: 0.0,
        b1_ms: 0.0,
        b32_ms: 0.0,
        seconds,
        macs: if int8 { (macs.1, macs.0) } else { (macs.0 + macs.1, 0) },
    })
}

/// (attention-score MACs, Linear MACs) of one sequence of `t` tokens.
pub(crate) fn batch1_macs(model: &Bert, t: u64) -> (u64, u64) {
    let h = model.hidden_size() as u64;
    let (mut scores, mut linear) = (0u64, 0u64);
    for l in 0..model.n_layers() {
        let a = &model.encoder.attention[model.encoder.attention_index[l]];
        let f = &model.encoder.feed_forward[model.encoder.feed_forward_index[l]];
        let inner = (a.n_heads * a.head_dim) as u64;
        linear += t * (4 * h * inner + 2 * h * f.d_ff() as u64);
        scores += 2 * t * t * inner;
    }
    (scores, linear)
}

fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, d] = t.dims();
    Ok(host(t, "embeddings")?.chunks(d).map(<[f32]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_sentences_are_drawn_evenly_and_never_held_out() {
        let text: String = (0..100).map(|i| format!("General sentence number {i} is here.\n")).collect();
        let dir = std::env::temp_dir().join(format!("ember-general-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("general.txt");
        std::fs::write(&file, &text).unwrap();
        let recipe = EmbedRecipe { general_sentences: 10, general_text: Some(file.clone()), ..EmbedRecipe::default() };
        let held = vec!["General sentence number 0 is here.".to_string()];
        let got = general_sentences(&recipe, &held).unwrap();
        assert_eq!(got.len(), 10);
        assert!(!got.contains(&held[0]), "a held-out sentence is never trained on");
        // Evenly spread over the 99 others: the first and one near the end are both drawn.
        assert_eq!(got[0], "General sentence number 1 is here.");
        assert!(got[9].contains("number 90"), "{got:?}");
        // More requested than there are: all of them, once each.
        let all = general_sentences(&EmbedRecipe { general_sentences: 1000, ..recipe.clone() }, &held).unwrap();
        assert_eq!(all.len(), 99);
        // Off.
        assert!(general_sentences(&EmbedRecipe { general_sentences: 0, ..recipe.clone() }, &held).unwrap().is_empty());
        // Text without a usable sentence: a typed error naming the file.
        std::fs::write(&file, "short\n").unwrap();
        let err = general_sentences(&recipe, &held).unwrap_err();
        assert!(matches!(err, PipelineError::Data { .. }) && err.to_string().contains("general.txt"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        // The built-in sample: 8,000 lines, each at least one sentence of 20 characters.
        assert_eq!(GENERAL_ENGLISH.lines().count(), 8000);
        let builtin = general_sentences(&EmbedRecipe::default(), &[]).unwrap();
        assert_eq!(builtin.len(), 8000);
    }
}
