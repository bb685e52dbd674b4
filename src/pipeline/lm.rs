//! Byte-level language-model compression from scratch, the `compress` example's default run:
//! teacher → distilled ALBERT-style student → gradual pruning → int8, each stage measured on
//! held-out text. Every technique of Ember in one ordinary Burn training program, each through
//! the public crate APIs exactly as a user would call them; every setting is one typed,
//! JSON-serializable [`Recipe`], validated before any work starts.
//!
//! 1. **teacher**: a byte-level causal LM ([`CausalLm`]) trained on next-byte cross-entropy
//!    (Adam, linear warm-up and cosine decay, gradient clipping). Cached in `out`: a rerun with
//!    the same teacher recipe, corpus and seed loads it instead (see [`TeacherSource`]).
//! 2. **distilled**: an ALBERT-style student (factorized embedding, one block shared by every
//!    layer, narrower) trained by [`Distiller`] on
//!    `soft · T² · KL(softmax(t/T) ‖ softmax(s/T)) + hard · CE(next byte) + hidden · MSE(W·h_s, h_t)`,
//!    the last through learned projections (TinyBERT's loss, one projection per layer pair as in
//!    TextBrewer).
//! 3. **pruned**: the student fine-tuned further under the same distillation while [`Pruner`]
//!    raises its sparsity on a cubic schedule ([`CubicSchedule`], Zhu & Gupta 2017); masks stay
//!    applied between updates and are folded at the end.
//! 4. **int8**: [`Quantizer`] converts every linear layer and the token table (static
//!    calibration on training batches by default); pruned zeros stay exactly zero.
//!
//! The corpus's last `data.held_out` fraction is held out. Every stage is saved to
//! `out/<stage>.safetensors` and evaluated on the held-out bytes: perplexity per byte
//! (`exp(mean NLL)` over consecutive `seq_len` windows), size on disk, an energy estimate
//! (Horowitz's 45 nm figures) and the median forward latency at batch 1 and 32, the stages
//! timed round-robin so that a noisy machine weighs on all of them alike. The report is written
//! to `out` as markdown, JSON and SVG. On the built-in corpus, whose entropy rate is known
//! exactly ([`MarkovCorpus`]), the report also shows the perplexity floor no model can beat.
//!
//! Known limits: the models read bytes (vocabulary 256) and a recipe may ask for at most
//! [`MAX_PARAMS`] parameters per model; the run trains on the given device but validation
//! builds the student on the Flex CPU device.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use ember_slm::pipeline::lm::{Corpus, Recipe, run};
//! use std::path::Path;
//!
//! let recipe = Recipe::quick(); // seconds; `Recipe::default()` is the full run
//! let mut progress = |stage: &str, done: usize, total: usize, _loss: f64| eprint!("\r{stage} {done}/{total}");
//! let r = run(&recipe, Corpus::BuiltIn, Path::new("target/lm"), false, &Device::flex(), &mut progress).unwrap();
//! println!("{}", r.report.to_markdown()); // also in target/lm/report.{md,json,svg}
//! ```

use super::Rng;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_distill::{
    DistillConfig, DistillError, Distiller, IntermediateMatch, LayerMap, MatchLoss, ModelOutputs, ModelShape,
    OutputRequest, Schedule,
};
use ember_eval::{CompressionReport, EnergyModel, EvalError, LatencyConfig, ModelSize, StageRow, measure};
use ember_layers::SharingMode;
use ember_models::{ByteTokenizer, CausalLm, CausalLmConfig, MarkovCorpus, ModelError, lm_loss, perplexity};
use ember_prune::{
    Criterion, CubicSchedule, Granularity, MovementScores, PruneConfig, PruneError, Pruner, Scope, SparsityReport,
    fold_masks,
};
use ember_quant::{
    ActivationMode, CalibrationConfig, Calibrator, ObserverConfig, QuantError, QuantizeConfig, Quantizer,
    WeightGranularity, load_quantized, save_quantized,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Recipe
// ---------------------------------------------------------------------------------------------

/// The largest teacher or student a recipe may ask for (400 MB of f32 weights).
pub const MAX_PARAMS: usize = 100_000_000;

/// Every setting of a run. The `compress` example's `--print-recipe` writes it as JSON and
/// `--recipe FILE` reads it back ([`Recipe::parse`]: unknown keys are errors); [`run`] validates
/// it ([`Recipe::validate`]) before any work starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Seed of initialization and batch sampling (`--seed` overrides it).
    pub seed: u64,
    /// The corpus and its split.
    pub data: DataRecipe,
    /// The teacher and its training.
    pub teacher: ModelRecipe,
    /// The student and its distillation.
    pub student: ModelRecipe,
    /// The distillation losses.
    pub distill: DistillRecipe,
    /// Gradual pruning.
    pub prune: PruneRecipe,
    /// The int8 conversion.
    pub quant: QuantRecipe,
    /// Evaluation settings.
    pub eval: EvalRecipe,
}

/// The corpus and its split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRecipe {
    /// Seed of the built-in Markov grammar and its text (ignored for other corpora).
    pub markov_seed: u64,
    /// Bytes of built-in text to generate (ignored for other corpora).
    pub corpus_bytes: usize,
    /// Fraction of the corpus, taken from its end, held out for evaluation.
    pub held_out: f64,
    /// Context length of training windows, evaluation windows and latency inputs.
    pub seq_len: usize,
}

/// A model and how it is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRecipe {
    /// The model (vocabulary 256: the models read bytes).
    pub model: CausalLmConfig,
    /// Its training (the teacher's on the corpus, the student's under distillation).
    pub train: TrainRecipe,
}

/// An Adam run with linear warm-up and cosine decay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRecipe {
    /// Optimizer steps.
    pub steps: usize,
    /// Windows of `seq_len` bytes per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup: usize,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_fraction: f64,
    /// Gradient clipping: each parameter's gradient is scaled down to at most this L2 norm
    /// (Burn's `GradientClippingConfig::Norm`).
    pub clip_norm: f32,
}

/// The distillation losses (student ← teacher).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillRecipe {
    /// Soft-target temperature (the KD loss is scaled by T²).
    pub temperature: f64,
    /// Weight of the soft-target KD loss.
    pub soft_weight: f64,
    /// Cross-entropy on the next byte.
    pub hard_weight: f64,
    /// Hidden-state MSE through learned projections (0: off).
    pub hidden_mse_weight: f64,
    /// Which student layer matches which teacher layer.
    pub layers: LayerMap,
}

/// Gradual pruning while fine-tuning under distillation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRecipe {
    /// Final sparsity of the selected weights, in `[0, 1)`.
    pub sparsity: f64,
    /// What scores a weight (magnitude, Wanda's `|W| · ‖X‖` from a calibration pass, movement).
    pub criterion: Criterion,
    /// Which weights go together (unstructured, N:M, rows, …).
    pub granularity: Granularity,
    /// Per layer or across all selected layers.
    pub scope: Scope,
    /// Weights left dense: regular expressions over weight paths (see `ember_prune::selection`).
    pub exclude: Vec<String>,
    /// Fraction of the fine-tuning steps over which sparsity ramps up (the rest recovers).
    pub ramp: f64,
    /// Steps between mask updates.
    pub frequency: usize,
    /// The fine-tuning under distillation.
    pub train: TrainRecipe,
}

/// The int8 conversion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantRecipe {
    /// `Static` (calibrated) or `Dynamic` activation parameters.
    pub activations: ActivationMode,
    /// Calibration observer (static mode).
    pub observer: ObserverConfig,
    /// Training batches run through the model for calibration (static mode).
    pub calibration_batches: usize,
    /// Per-tensor, per-channel or grouped weight scales.
    pub weight: WeightGranularity,
}

/// Evaluation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRecipe {
    /// Windows per forward pass when computing held-out perplexity.
    pub batch: usize,
    /// Keep timing each latency case at least this long.
    pub latency_min_ms: u64,
    /// Untimed calls before each latency case.
    pub latency_warmup: usize,
    /// Round-robin rounds over the stages (each gets `latency_min_ms / rounds` per round).
    pub latency_rounds: usize,
}

impl Default for Recipe {
    fn default() -> Self {
        let seq = 64;
        Recipe {
            seed: 42,
            data: DataRecipe { markov_seed: 7, corpus_bytes: 600_000, held_out: 0.1, seq_len: seq },
            teacher: ModelRecipe {
                model: CausalLmConfig::new(ByteTokenizer::VOCAB, 192, 4, 4, 768, seq),
                train: TrainRecipe {
                    steps: 400,
                    batch: 16,
                    lr: 2e-3,
                    warmup: 30,
                    min_lr_fraction: 0.1,
                    clip_norm: 1.0,
                },
            },
            student: ModelRecipe {
                model: CausalLmConfig::new(ByteTokenizer::VOCAB, 128, 4, 4, 512, seq)
                    .with_embedding_size(64)
                    .with_sharing(SharingMode::All, 4),
                train: TrainRecipe {
                    steps: 400,
                    batch: 16,
                    lr: 3e-3,
                    warmup: 30,
                    min_lr_fraction: 0.1,
                    clip_norm: 1.0,
                },
            },
            distill: DistillRecipe {
                temperature: 2.0,
                soft_weight: 1.0,
                hard_weight: 0.5,
                hidden_mse_weight: 0.5,
                layers: LayerMap::Uniform { include_embeddings: false },
            },
            prune: PruneRecipe {
                sparsity: 0.5,
                criterion: Criterion::Magnitude,
                granularity: Granularity::Unstructured,
                scope: Scope::Global,
                exclude: Vec::new(),
                ramp: 0.6,
                frequency: 10,
                train: TrainRecipe {
                    steps: 150,
                    batch: 16,
                    lr: 1e-3,
                    warmup: 10,
                    min_lr_fraction: 0.1,
                    clip_norm: 1.0,
                },
            },
            quant: QuantRecipe {
                activations: ActivationMode::Static,
                observer: ObserverConfig::mse(),
                calibration_batches: 8,
                weight: WeightGranularity::PerChannel,
            },
            eval: EvalRecipe { batch: 32, latency_min_ms: 1500, latency_warmup: 3, latency_rounds: 5 },
        }
    }
}

impl Recipe {
    /// A recipe whose whole run takes a second or two on a CPU (8 kB corpus, 16-byte windows,
    /// 6 steps per stage): for tests of code around the run; the numbers mean nothing.
    pub fn micro() -> Self {
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
        r
    }

    /// The CI smoke recipe: the same stages on tiny models, in seconds.
    pub fn quick() -> Self {
        let seq = 32;
        let mut r = Recipe::default();
        r.data = DataRecipe { corpus_bytes: 40_000, seq_len: seq, ..r.data };
        let train = TrainRecipe { steps: 150, batch: 8, lr: 3e-3, warmup: 10, min_lr_fraction: 0.1, clip_norm: 1.0 };
        r.teacher = ModelRecipe { model: CausalLmConfig::new(256, 64, 2, 2, 128, seq), train: train.clone() };
        r.student = ModelRecipe {
            model: CausalLmConfig::new(256, 32, 2, 2, 64, seq)
                .with_embedding_size(16)
                .with_sharing(SharingMode::All, 2),
            train: train.clone(),
        };
        r.prune.train = TrainRecipe { steps: 60, lr: 1e-3, ..train };
        r.prune.frequency = 4;
        r.quant.calibration_batches = 2;
        r.eval = EvalRecipe { batch: 16, latency_min_ms: 100, latency_warmup: 1, latency_rounds: 2 };
        r
    }

    /// Checks every setting, naming the first that is wrong and what was expected. Builds the
    /// student once on the Flex CPU device (after checking its size) to dry-run the pruning
    /// selection.
    ///
    /// # Errors
    /// [`RecipeError::Invalid`] for a setting out of its range, [`RecipeError::Rejected`] for a
    /// group of settings a crate's own validation refuses.
    pub fn validate(&self) -> Result<(), RecipeError> {
        let d = &self.data;
        check(d.held_out > 0.0 && d.held_out <= 0.5, "data.held_out", d.held_out, "a fraction in (0, 0.5]")?;
        check(d.seq_len >= 2, "data.seq_len", d.seq_len, "at least 2 bytes")?;
        check(d.seq_len <= 1 << 16, "data.seq_len", d.seq_len, "at most 65536 bytes")?;
        check(d.corpus_bytes <= 1 << 30, "data.corpus_bytes", d.corpus_bytes, "at most 2^30 bytes of built-in text")?;
        let window = d.seq_len + 1;
        check(
            d.corpus_bytes >= 20 * window && (d.corpus_bytes as f64 * d.held_out).round() as usize >= 4 * window,
            "data.corpus_bytes",
            d.corpus_bytes,
            &format!(
                "at least 20 windows of seq_len + 1 = {window} bytes, 4 of them in the held-out part \
                 (held_out = {})",
                d.held_out
            ),
        )?;
        for (name, m) in [("teacher", &self.teacher), ("student", &self.student)] {
            m.model.validate().map_err(|e| RecipeError::rejected(&format!("{name}.model"), e))?;
            // Validation builds the student below and the run trains both in this process.
            check(
                m.model.num_params() <= MAX_PARAMS,
                &format!("{name}.model"),
                format!("{} parameters", m.model.num_params()),
                &format!(
                    "at most {MAX_PARAMS} parameters (this example trains on the CPU; compress larger models from \
                     your own program with the same crate APIs)"
                ),
            )?;
            check(
                m.model.vocab_size == ByteTokenizer::VOCAB,
                &format!("{name}.model.vocab_size"),
                m.model.vocab_size,
                "256 (the models read bytes)",
            )?;
            check(
                m.model.max_seq_len >= d.seq_len,
                &format!("{name}.model.max_seq_len"),
                m.model.max_seq_len,
                &format!("at least data.seq_len = {}", d.seq_len),
            )?;
            m.train.validate(&format!("{name}.train"))?;
        }
        let q = &self.distill;
        check(
            q.hidden_mse_weight.is_finite() && q.hidden_mse_weight >= 0.0,
            "distill.hidden_mse_weight",
            q.hidden_mse_weight,
            "a finite weight ≥ 0",
        )?;
        // The Distiller checks temperature, weights (finite, ≥ 0) and the layer map against both
        // models.
        Distiller::new(self.distill_config(), self.teacher.shape(), self.student.shape(), &Device::flex())
            .map_err(|e| RecipeError::rejected("distill", e))?;
        check(
            q.soft_weight + q.hard_weight + q.hidden_mse_weight > 0.0,
            "distill",
            "all weights 0",
            "at least one loss with a weight > 0",
        )?;
        let p = &self.prune;
        Pruner::new(self.prune_config(p.sparsity)).map_err(|e| RecipeError::rejected("prune", e))?;
        check(p.ramp > 0.0 && p.ramp <= 1.0, "prune.ramp", p.ramp, "a fraction in (0, 1]")?;
        p.train.validate("prune.train")?;
        let schedule = self.prune_schedule().map_err(|e| RecipeError::rejected("prune", e))?;
        if p.criterion == Criterion::Movement {
            // Movement scores accumulate over training steps: the first pruning pass needs some.
            check(
                schedule.end_step >= 1,
                "prune.ramp",
                p.ramp,
                "a ramp of at least 2 steps with the Movement criterion (scores accumulate while training)",
            )?;
        }
        // A dry run on a freshly built student catches N:M groups that do not divide a layer and
        // patterns that exclude every weight, before any training.
        let student =
            self.student.model.init(&Device::flex()).map_err(|e| RecipeError::rejected("student.model", e))?;
        let dry = self.prune_config(p.sparsity).with_criterion(Criterion::Magnitude);
        Pruner::new(dry)
            .and_then(|pruner| pruner.compute_masks(&student))
            .map_err(|e| RecipeError::rejected("prune (on the student)", e))?;
        let q = &self.quant;
        q.observer.validate().map_err(|e| RecipeError::rejected("quant.observer", e))?;
        q.weight.validate().map_err(|e| RecipeError::rejected("quant.weight", e))?;
        if q.activations == ActivationMode::Static {
            check(q.calibration_batches >= 1, "quant.calibration_batches", 0, "at least 1 in static mode")?;
        }
        let e = &self.eval;
        check((1..=4096).contains(&e.batch), "eval.batch", e.batch, "1..=4096 windows")?;
        check(
            (1..=600_000).contains(&e.latency_min_ms),
            "eval.latency_min_ms",
            e.latency_min_ms,
            "1..=600000 (ten minutes per case at most)",
        )?;
        check((1..=1000).contains(&e.latency_rounds), "eval.latency_rounds", e.latency_rounds, "1..=1000")?;
        check(e.latency_warmup <= 10_000, "eval.latency_warmup", e.latency_warmup, "at most 10000 calls")?;
        Ok(())
    }

    /// The [`Distiller`]'s configuration: constant temperature and weights, and a hidden-state
    /// MSE match over `distill.layers` when `hidden_mse_weight > 0`.
    pub fn distill_config(&self) -> DistillConfig {
        let d = &self.distill;
        let mut matches = Vec::new();
        if d.hidden_mse_weight > 0.0 {
            matches.push(IntermediateMatch::new(MatchLoss::HiddenMse, d.layers.clone(), d.hidden_mse_weight));
        }
        DistillConfig::new()
            .with_temperature(Schedule::Constant(d.temperature))
            .with_soft_weight(Schedule::Constant(d.soft_weight))
            .with_hard_weight(Schedule::Constant(d.hard_weight))
            .with_matches(matches)
    }

    /// The [`Pruner`]'s configuration at `sparsity` (the schedule's current target).
    pub fn prune_config(&self, sparsity: f64) -> PruneConfig {
        let p = &self.prune;
        PruneConfig::new(sparsity)
            .with_criterion(p.criterion.clone())
            .with_granularity(p.granularity)
            .with_scope(p.scope)
            .with_exclude(p.exclude.clone())
    }

    /// Sparsity ramps from 0 at step 0 to `sparsity` at step `round(ramp · steps) − 1`, then
    /// holds.
    ///
    /// # Errors
    /// [`PruneError`] for a sparsity outside `[0, 1)` or a frequency of 0.
    pub fn prune_schedule(&self) -> Result<CubicSchedule, PruneError> {
        let p = &self.prune;
        let end = ((p.train.steps as f64 * p.ramp).round() as usize).clamp(1, p.train.steps.max(1)) - 1;
        CubicSchedule::new(0.0, p.sparsity, 0, end, p.frequency)
    }

    /// Parses a recipe file's text (`shown` names it in errors): JSON with exactly the recipe's
    /// keys (an unknown key anywhere is an error naming its path). Does not validate.
    ///
    /// # Errors
    /// [`RecipeError::Parse`] for text that is not JSON, does not fit the recipe's types, or has
    /// a key the recipe lacks.
    pub fn parse(text: &str, shown: &str) -> Result<Recipe, RecipeError> {
        let parse = |message: String| RecipeError::Parse { path: shown.to_string(), message };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| parse(e.to_string()))?;
        let recipe: Recipe = serde_json::from_value(value.clone()).map_err(|e| parse(e.to_string()))?;
        // Types from the crates accept unknown keys; a typo there must not pass silently.
        let known = serde_json::to_value(&recipe).map_err(|e| parse(e.to_string()))?;
        if let Some(key) = unknown_key(&value, &known, "") {
            return Err(parse(format!("unknown key {key}")));
        }
        Ok(recipe)
    }
}

impl ModelRecipe {
    /// The model's shape as the [`Distiller`] sees it (layers, width, heads).
    pub fn shape(&self) -> ModelShape {
        ModelShape::new(self.model.n_layers, self.model.d_model, self.model.n_heads)
    }
}

impl TrainRecipe {
    /// Checks the settings; `name` prefixes the field in errors (`teacher.train`).
    ///
    /// # Errors
    /// [`RecipeError::Invalid`] naming the first setting out of range.
    pub fn validate(&self, name: &str) -> Result<(), RecipeError> {
        check(self.steps >= 1, &format!("{name}.steps"), self.steps, "at least 1")?;
        check((1..=4096).contains(&self.batch), &format!("{name}.batch"), self.batch, "1..=4096 windows")?;
        check(self.lr.is_finite() && self.lr > 0.0, &format!("{name}.lr"), self.lr, "a finite rate > 0")?;
        check(self.warmup <= self.steps, &format!("{name}.warmup"), self.warmup, "at most steps")?;
        let f = self.min_lr_fraction;
        check((0.0..=1.0).contains(&f), &format!("{name}.min_lr_fraction"), f, "a fraction in [0, 1]")?;
        let c = self.clip_norm;
        check(c.is_finite() && c > 0.0, &format!("{name}.clip_norm"), c, "a finite norm > 0")
    }

    /// Linear warm-up to `lr`, then cosine decay to `lr · min_lr_fraction`:
    /// `lr_t = floor + (lr − floor) · ½ (1 + cos(π · (t − warmup) / (steps − warmup)))`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = (self.steps - self.warmup).max(1) as f64;
        let t = ((step - self.warmup) as f64 / span).min(1.0);
        let floor = self.lr * self.min_lr_fraction;
        floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// What is wrong with a recipe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecipeError {
    /// A setting outside its range.
    #[error("recipe: {field} = {value}: expected {expected}")]
    Invalid {
        /// The setting's path (`prune.ramp`).
        field: String,
        /// Its value.
        value: String,
        /// What would be valid.
        expected: String,
    },
    /// A group of settings that a crate's own validation rejected.
    #[error("recipe: {field}: {message}")]
    Rejected {
        /// The group's path (`distill`, `student.model`).
        field: String,
        /// The crate's error.
        message: String,
    },
    /// A recipe file that is not valid JSON for a recipe.
    #[error("recipe file {path}: {message}")]
    Parse {
        /// The file, as shown to the user.
        path: String,
        /// What is wrong (serde's message, or the unknown key).
        message: String,
    },
}

impl RecipeError {
    fn rejected(field: &str, e: impl std::fmt::Display) -> Self {
        RecipeError::Rejected { field: field.into(), message: e.to_string() }
    }
}

fn check(ok: bool, field: &str, value: impl std::fmt::Display, expected: &str) -> Result<(), RecipeError> {
    if ok {
        Ok(())
    } else {
        Err(RecipeError::Invalid { field: field.into(), value: value.to_string(), expected: expected.into() })
    }
}

/// The first key of `input` (a path like `student.model.embeding_size`) that the parsed recipe
/// does not have.
fn unknown_key(input: &serde_json::Value, known: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match (input, known) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            match b.get(k) {
                Some(w) => unknown_key(v, w, &p),
                None => Some(p),
            }
        }),
        (Value::Array(a), Value::Array(b)) => {
            a.iter().zip(b).enumerate().find_map(|(i, (v, w))| unknown_key(v, w, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Run: inputs, results, errors
// ---------------------------------------------------------------------------------------------

/// The text a run trains on (its last `data.held_out` fraction held out). The models read
/// bytes, so any file will do.
#[derive(Clone, Copy, Debug)]
pub enum Corpus<'a> {
    /// The built-in Markov corpus: `data.corpus_bytes` of English-like text from the grammar
    /// seeded by `data.markov_seed`. Its entropy rate is known exactly, so the report shows the
    /// perplexity floor.
    BuiltIn,
    /// A file's bytes.
    File(&'a Path),
    /// Bytes in memory; `name` stands for them in the report and in errors.
    Bytes {
        /// What the bytes are.
        name: &'a str,
        /// The text.
        bytes: &'a [u8],
    },
}

/// How the run got its teacher.
#[derive(Debug)]
pub enum TeacherSource {
    /// Trained in this run and cached in `out` (`teacher.safetensors` and `teacher.key`).
    Trained {
        /// The last measured training loss, nats per byte (measured every 10 steps).
        final_loss: f64,
        /// Why a cached teacher whose key matched could not be loaded (it was retrained).
        cache_error: Option<QuantError>,
    },
    /// Loaded from `out`: its key (teacher recipe, sequence length, split, corpus fingerprint,
    /// seed and model layout version) matched.
    Cached,
}

/// One evaluated stage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LmStage {
    /// `teacher`, `distilled`, `pruned 50 %`, `int8 (static)` or `int8 (dynamic)`.
    pub name: String,
    /// Parameters (a shared block counted once).
    pub params: u64,
    /// Bytes of the saved model (`out/<stage>.safetensors`).
    pub bytes: u64,
    /// Held-out perplexity per byte.
    pub perplexity: f64,
    /// Energy estimate of a forward pass over `seq_len` bytes, mJ (Horowitz's 45 nm figures).
    pub energy_mj: f64,
    /// Seconds the stage took to make (training or conversion; 0 for a cached teacher).
    pub seconds: f64,
    /// Median forward latency at batch 1, ms.
    pub b1_ms: f64,
    /// Median forward latency at batch 32, ms.
    pub b32_ms: f64,
}

/// What a run produced (the models are in `out`).
#[derive(Debug)]
pub struct LmRun {
    /// The report (also written to `out/report.md`, `report.json`, `report.svg`).
    pub report: CompressionReport,
    /// The stages, teacher first.
    pub stages: Vec<LmStage>,
    /// The corpus as named in the report: the file, or the built-in corpus with its seed and size.
    pub corpus: String,
    /// Bytes trained on and held out.
    pub bytes: (usize, usize),
    /// The per-byte perplexity floor, when the corpus's entropy rate is known (built-in corpus).
    pub floor: Option<f64>,
    /// Whether the teacher was trained or loaded.
    pub teacher: TeacherSource,
    /// Each distillation loss term (weighted), averaged over the last 10 % of the distillation.
    pub distill_losses: Vec<(String, f64)>,
    /// The same for the fine-tuning under pruning.
    pub prune_losses: Vec<(String, f64)>,
    /// Fraction of the pruned layers' weights that are zero at the end of pruning.
    pub sparsity: f64,
}

/// Progress (the one [`super::Progress`] type): (stage, done, total, last loss). Stages: `teacher`, `distill`, `prune` (steps,
/// last total loss, measured every 10 steps), `eval <stage>` (held-out windows, loss NaN) and
/// `latency` (measurements, loss NaN).
pub use super::Progress;

/// What went wrong in a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LmError {
    /// An invalid recipe (found before any work).
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// A corpus that cannot be read or is too small for the recipe.
    #[error("corpus {path}: {message}")]
    Corpus {
        /// The corpus, as shown to the user.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The teacher's training loss stopped being finite.
    #[error("teacher training diverged at step {step} (loss {loss}): lower teacher.train.lr")]
    TeacherDiverged {
        /// The step.
        step: usize,
        /// The loss seen.
        loss: f64,
    },
    /// A distillation loss stopped being finite.
    #[error("{stage}: the loss diverged at step {step} ({losses:?}): lower the learning rate")]
    Diverged {
        /// `distill` or `prune`.
        stage: String,
        /// The step.
        step: usize,
        /// Every term: (name, weight, value).
        losses: Vec<(String, f64, f64)>,
    },
    /// A stage's held-out perplexity overflowed.
    #[error("{stage}: held-out perplexity overflowed (mean NLL above 709 nats): the model diverged")]
    PerplexityOverflow {
        /// The stage.
        stage: String,
    },
    /// A model error (building, forward, loss).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A distillation error.
    #[error(transparent)]
    Distill(#[from] DistillError),
    /// A pruning error.
    #[error(transparent)]
    Prune(#[from] PruneError),
    /// A quantization, calibration or checkpoint error.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// An evaluation or report error.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// A file that cannot be written.
    #[error("cannot write {path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        message: String,
    },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> LmError {
    LmError::Io { path: path.display().to_string(), message: e.to_string() }
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// The byte stream, split into training and held-out parts.
#[derive(Debug)]
struct Split {
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

fn load_corpus(recipe: &Recipe, corpus: Corpus<'_>) -> Result<Split, LmError> {
    let d = &recipe.data;
    let (name, bytes, floor) = match corpus {
        Corpus::File(p) => {
            let shown = p.display().to_string();
            let bytes =
                std::fs::read(p).map_err(|e| LmError::Corpus { path: shown.clone(), message: e.to_string() })?;
            (shown, bytes, None)
        }
        Corpus::Bytes { name, bytes } => (name.to_string(), bytes.to_vec(), None),
        Corpus::BuiltIn => {
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
        return Err(LmError::Corpus {
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
    Ok(Split { name, train: train.to_vec(), held: held.to_vec(), floor, fingerprint })
}

/// A batch of next-byte windows: inputs and targets `[batch, seq]`.
struct Batch {
    x: Tensor<2, Int>,
    y: Tensor<2, Int>,
}

/// `batch` windows at uniform random offsets (`tokens.len() > seq`, which the corpus check
/// guarantees).
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

fn optimizer(t: &TrainRecipe) -> burn::optim::ModuleOptimizer {
    AdamConfig::new().with_grad_clipping(Some(GradientClippingConfig::Norm(t.clip_norm))).init()
}

/// Trains a language model on next-byte cross-entropy (the teacher); returns it and the last
/// measured loss.
fn train_lm(
    mut model: CausalLm,
    tokens: &[u32],
    t: &TrainRecipe,
    seq: usize,
    rng: &mut Rng,
    progress: Progress<'_>,
) -> Result<(CausalLm, f64), LmError> {
    let ad = model.device();
    let mut opt = optimizer(t);
    let mut last = f64::NAN;
    for step in 0..t.steps {
        let b = sample(tokens, t.batch, seq, rng, &ad);
        let loss = lm_loss(model.try_forward(b.x, false)?.logits, b.y, None)?;
        // Reading the loss syncs the device: every 10 steps only.
        if step % 10 == 0 || step + 1 == t.steps {
            last = f64::from(loss.clone().into_scalar::<f32>());
            if !last.is_finite() {
                return Err(LmError::TeacherDiverged { step, loss: last });
            }
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = opt.step(t.lr_at(step), model, grads);
        progress("teacher", step + 1, t.steps, last);
    }
    Ok((model, last))
}

/// What a distillation loop reports.
struct DistillSummary {
    /// Mean of each weighted loss term over the last 10 % of steps.
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
    progress: Progress<'_>,
) -> Result<(CausalLm, DistillSummary), LmError> {
    let device = teacher.device();
    let ad = student.device();
    let seq = recipe.data.seq_len;
    let mut opt = optimizer(t);
    let mut movement = MovementScores::new();
    let mut sparsity = None;
    let tail = (t.steps / 10).max(1);
    let mut sums: Vec<(String, f64)> = Vec::new();
    let mut last = f64::NAN;
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
        // Reading the losses syncs the device: every 10 steps, and every step of the tail.
        if step + tail >= t.steps || step % 10 == 0 {
            let values = losses.values();
            let total: f64 = values.iter().map(|(_, w, v)| w * v).sum();
            if !total.is_finite() {
                return Err(LmError::Diverged { stage: stage.into(), step, losses: values });
            }
            last = total;
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
        progress(stage, step + 1, t.steps, last);
    }
    Ok((student, DistillSummary { terms: sums, sparsity }))
}

/// Wanda's input-channel norms: a few training batches through a calibration session.
fn wanda_norms(
    student: &CausalLm,
    tokens: &[u32],
    seq: usize,
    rng: &mut Rng,
) -> Result<HashMap<String, Vec<f32>>, LmError> {
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

/// A stage and its model (latency is measured for all stages together at the end).
struct Evaluated {
    stage: LmStage,
    model: CausalLm,
}

/// Held-out perplexity per byte, batch by batch. Consecutive windows share their boundary byte
/// (as in [`perplexity`]), so the batches' NLLs combine exactly.
fn held_out_perplexity(
    model: &CausalLm,
    held: &[u32],
    seq: usize,
    batch: usize,
    stage: &str,
    progress: Progress<'_>,
) -> Result<f64, LmError> {
    let device = model.device();
    let windows = (held.len() - 1) / seq;
    let label = format!("eval {stage}");
    let (mut nll, mut count) = (0f64, 0usize);
    for start in (0..windows).step_by(batch) {
        let rows = batch.min(windows - start);
        let slice = &held[start * seq..(start + rows) * seq + 1];
        let p = perplexity(model, slice, seq, rows, &device)?;
        if !p.is_finite() {
            return Err(LmError::PerplexityOverflow { stage: stage.into() });
        }
        nll += p.ln() * (rows * seq) as f64;
        count += rows * seq;
        progress(&label, start + rows, windows, f64::NAN);
    }
    Ok((nll / count as f64).exp())
}

/// Median forward-pass latency (ms) of every stage at batch 1 and batch 32 over `seq` bytes,
/// measured round-robin: each round times every stage for a slice of `latency_min_ms`, and a
/// stage's result is the median of its round medians, so a slow minute of a noisy machine
/// weighs on every stage alike.
fn latencies(
    stages: &[Evaluated],
    held: &[u32],
    seq: usize,
    e: &EvalRecipe,
    progress: Progress<'_>,
) -> Result<Vec<(f64, f64)>, LmError> {
    let rounds = e.latency_rounds;
    let total = rounds * 2 * stages.len();
    let mut done = 0;
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
                    // Recorded only, and the report keeps just the median.
                    threads: 0,
                };
                let mut failed = None;
                let r = measure(&stage.stage.name, &cfg, || match stage.model.try_forward(x.clone(), false) {
                    Ok(o) => drop(o.logits.into_data()),
                    Err(e) => failed = Some(e),
                })?;
                if let Some(e) = failed {
                    return Err(e.into());
                }
                times[slot].push(r.p50_ms);
                done += 1;
                progress("latency", done, total, f64::NAN);
            }
        }
    }
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
    corpus: &'a Split,
    recipe: &'a Recipe,
    out: &'a Path,
}

impl Evaluator<'_> {
    /// Saves a stage to `<out>/<file>.safetensors`, measures its size and held-out perplexity
    /// (latency comes later, for all stages together).
    #[allow(clippy::too_many_arguments)]
    fn stage(
        &self,
        name: &str,
        model: CausalLm,
        config: &CausalLmConfig,
        file: &str,
        int8: bool,
        seconds: f64,
        progress: Progress<'_>,
    ) -> Result<Evaluated, LmError> {
        let seq = self.recipe.data.seq_len;
        let bytes = save_quantized(&model, self.out.join(format!("{file}.safetensors")))?;
        let params = ModelSize::of(&model).params() as u64;
        let perplexity = held_out_perplexity(&model, &self.corpus.held, seq, self.recipe.eval.batch, name, progress)?;
        let macs = macs_per_token(config) * seq as u64;
        let (f32_macs, int8_macs) = if int8 { (0, macs) } else { (macs, 0) };
        let energy_mj = EnergyModel::horowitz_45nm().estimate_mj(f32_macs, int8_macs, bytes);
        let stage = LmStage {
            name: name.into(),
            params,
            bytes,
            perplexity,
            energy_mj,
            seconds,
            b1_ms: f64::NAN,
            b32_ms: f64::NAN,
        };
        Ok(Evaluated { stage, model })
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline
// ---------------------------------------------------------------------------------------------

/// Key of a cached teacher: its recipe, the sequence length, the split, the corpus and the seed.
fn teacher_key(recipe: &Recipe, corpus: &Split) -> String {
    let text = serde_json::json!({
        "teacher": recipe.teacher,
        "seq_len": recipe.data.seq_len,
        "held_out": recipe.data.held_out,
        "corpus": format!("{:016x}", corpus.fingerprint),
        "seed": recipe.seed,
        // The model layout (parameter paths) of the cached file.
        "layout": ember_models::save::LAYOUT_VERSION,
    })
    .to_string();
    format!("{:016x}", fnv1a(text.as_bytes(), 0xcbf2_9ce4_8422_2325))
}

/// The teacher from `out` when its key matches, else trained (and cached); with the seconds it
/// took.
fn teacher(
    recipe: &Recipe,
    corpus: &Split,
    device: &Device,
    out: &Path,
    retrain: bool,
    rng: &mut Rng,
    progress: Progress<'_>,
) -> Result<(CausalLm, f64, TeacherSource), LmError> {
    let key = teacher_key(recipe, corpus);
    let (ckpt, key_file) = (out.join("teacher.safetensors"), out.join("teacher.key"));
    let mut cache_error = None;
    if !retrain && std::fs::read_to_string(&key_file).is_ok_and(|k| k.trim() == key) {
        let skeleton = recipe.teacher.model.init(device)?;
        match load_quantized(skeleton, &ckpt) {
            Ok(model) => return Ok((model, 0.0, TeacherSource::Cached)),
            Err(e) => cache_error = Some(e),
        }
    }
    let start = Instant::now();
    let ad = device.clone().autodiff();
    let model = recipe.teacher.model.init(&ad)?;
    let (model, final_loss) =
        train_lm(model, &corpus.train, &recipe.teacher.train, recipe.data.seq_len, rng, progress)?;
    let model = model.valid();
    save_quantized(&model, &ckpt)?;
    std::fs::write(&key_file, &key).map_err(|e| io_err(&key_file, e))?;
    Ok((model, start.elapsed().as_secs_f64(), TeacherSource::Trained { final_loss, cache_error }))
}

/// Runs every stage (see the [module docs](self)) on `corpus`, writing the recipe
/// (`recipe.json`), the teacher cache, every stage's model and the report into `out` (created
/// if missing). `retrain` trains the teacher even when a matching one is cached.
///
/// Reproducible: the same recipe (seed included) on the same device gives the same report,
/// latencies aside, whether the teacher was trained or loaded from the cache. The device's
/// random state is seeded from the recipe, so other work on the same device at the same time
/// (Flex's state is process-wide) breaks this.
///
/// # Errors
/// [`LmError::Recipe`] for an invalid recipe and [`LmError::Corpus`] for an unreadable or too
/// small corpus (both before any training), [`LmError::TeacherDiverged`],
/// [`LmError::Diverged`] and [`LmError::PerplexityOverflow`] when training diverges,
/// [`LmError::Io`] and the crates' errors for files that cannot be written.
pub fn run(
    recipe: &Recipe,
    corpus: Corpus<'_>,
    out: &Path,
    retrain: bool,
    device: &Device,
    progress: Progress<'_>,
) -> Result<LmRun, LmError> {
    recipe.validate()?;
    let corpus = load_corpus(recipe, corpus)?;
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let recipe_file = out.join("recipe.json");
    let json = serde_json::to_string_pretty(recipe).map_err(|e| io_err(&recipe_file, e))?;
    std::fs::write(&recipe_file, json).map_err(|e| io_err(&recipe_file, e))?;
    let seq = recipe.data.seq_len;
    let mut rng = Rng(recipe.seed);
    device.seed(recipe.seed);
    let ad = device.clone().autodiff();
    let mut stages = Vec::new();
    let ev = Evaluator { corpus: &corpus, recipe, out };

    // 1. Teacher.
    let (teacher, secs, source) = teacher(recipe, &corpus, device, out, retrain, &mut rng, progress)?;
    // The later stages start from the same random state whether the teacher was trained or
    // loaded from the cache, so a rerun reproduces them.
    rng = Rng(recipe.seed.wrapping_add(1));
    device.seed(recipe.seed ^ 0x5eed_0001);
    let t_cfg = &recipe.teacher.model;
    stages.push(ev.stage("teacher", teacher.clone(), t_cfg, "teacher", false, secs, progress)?);

    // 2. Distilled ALBERT-style student.
    let start = Instant::now();
    let s_cfg = &recipe.student.model;
    let student = s_cfg.init(&ad)?;
    let mut distiller = Distiller::new(recipe.distill_config(), recipe.teacher.shape(), recipe.student.shape(), &ad)?;
    let (student, distilled) = distill_loop(
        "distill",
        &teacher,
        student,
        &mut distiller,
        &corpus.train,
        &recipe.student.train,
        recipe,
        None,
        &mut rng,
        progress,
    )?;
    let secs = start.elapsed().as_secs_f64();
    stages.push(ev.stage("distilled", student.valid(), s_cfg, "distilled", false, secs, progress)?);

    // 3. Gradual pruning under distillation (the distiller keeps its trained projections).
    let start = Instant::now();
    let schedule = recipe.prune_schedule()?;
    let (student, pruning) = distill_loop(
        "prune",
        &teacher,
        student,
        &mut distiller,
        &corpus.train,
        &recipe.prune.train,
        recipe,
        Some(&schedule),
        &mut rng,
        progress,
    )?;
    let pruned = fold_masks(student.valid());
    let sparsity = pruning.sparsity.as_ref().map_or(0.0, SparsityReport::sparsity);
    let name = format!("pruned {:.0} %", 100.0 * sparsity);
    let secs = start.elapsed().as_secs_f64();
    stages.push(ev.stage(&name, pruned.clone(), s_cfg, "pruned", false, secs, progress)?);

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
    let secs = start.elapsed().as_secs_f64();
    stages.push(ev.stage(&name, int8, s_cfg, "int8", true, secs, progress)?);

    let times = latencies(&stages, &corpus.held, seq, &recipe.eval, progress)?;
    let stages: Vec<LmStage> =
        stages.into_iter().zip(times).map(|(e, (b1_ms, b32_ms))| LmStage { b1_ms, b32_ms, ..e.stage }).collect();
    let rows = stages
        .iter()
        .map(|s| {
            StageRow::new(&s.name, s.params, s.bytes, "perplexity", s.perplexity, s.b1_ms, s.b32_ms)
                .with_energy(s.energy_mj)
        })
        .collect();
    let mut report = CompressionReport::new(rows)?;
    if let Some(floor) = corpus.floor {
        report = report.with_floor("entropy floor of the corpus", floor)?;
    }
    report.write(out, "report")?;
    Ok(LmRun {
        report,
        stages,
        corpus: corpus.name,
        bytes: (corpus.train.len(), corpus.held.len()),
        floor: corpus.floor,
        teacher: source,
        distill_losses: distilled.terms,
        prune_losses: pruning.terms,
        sparsity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::{Mutex, MutexGuard};

    /// The Flex device's random state is process-wide: tests that build models (validation
    /// does too) take turns, so seeded runs are reproducible while tests run in parallel.
    /// (No other unit test of this crate builds models; one that does must take this lock.)
    fn serial() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn quiet() -> impl FnMut(&str, usize, usize, f64) {
        |_: &str, _: usize, _: usize, _: f64| {}
    }

    fn temp(what: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ember-lm-{what}-{}", std::process::id()))
    }

    #[test]
    fn default_and_quick_recipes_are_valid_and_round_trip() {
        let _serial = serial();
        for r in [Recipe::default(), Recipe::quick()] {
            r.validate().unwrap();
            let back: Recipe = serde_json::from_str(&serde_json::to_string_pretty(&r).unwrap()).unwrap();
            assert_eq!(back, r);
            assert_eq!(Recipe::parse(&serde_json::to_string(&r).unwrap(), "r.json").unwrap(), r);
        }
        // Every f64 reads back exactly (serde_json's `float_roundtrip`): without it the fuzz
        // target found `9.999999999999901e97` coming back as its neighbour.
        let mut r = Recipe::quick();
        r.teacher.train.lr = 9.999999999999901e97;
        r.student.train.lr = 0.1 + 0.2;
        let back: Recipe = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
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
        // Inside the crates' own types (which accept unknown keys) the path is named.
        let mut v = serde_json::to_value(Recipe::quick()).unwrap();
        v["student"]["model"]["embeding_size"] = serde_json::json!(8);
        let e = Recipe::parse(&v.to_string(), "r.json").unwrap_err();
        assert!(e.to_string().contains("unknown key student.model.embeding_size"), "{e}");
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
    fn lr_schedule_warms_up_and_decays() {
        let t = TrainRecipe { steps: 100, batch: 1, lr: 1.0, warmup: 10, min_lr_fraction: 0.1, clip_norm: 1.0 };
        assert!((t.lr_at(0) - 0.1).abs() < 1e-12 && (t.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((t.lr_at(10) - 1.0).abs() < 1e-12 && (t.lr_at(100) - 0.1).abs() < 1e-12);
        assert!((t.lr_at(55) - 0.55).abs() < 1e-12);
    }

    #[test]
    fn corpus_split_and_errors() {
        let r = Recipe::quick();
        let c = load_corpus(&r, Corpus::BuiltIn).unwrap();
        let total = c.train.len() + c.held.len();
        assert!(total >= r.data.corpus_bytes);
        assert_eq!(c.held.len(), (total as f64 * 0.1).round() as usize);
        assert!(c.floor.is_some_and(|f| f > 1.0));
        let dir = temp("corpus");
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.txt");
        std::fs::write(&small, "too short").unwrap();
        let e = load_corpus(&r, Corpus::File(&small)).unwrap_err();
        assert!(matches!(e, LmError::Corpus { .. }), "{e}");
        let e = e.to_string();
        assert!(e.contains("small.txt") && e.contains("9 bytes"), "{e}");
        assert!(load_corpus(&r, Corpus::File(&dir.join("missing.txt"))).is_err());
        let _ = std::fs::remove_dir_all(&dir);
        // Bytes in memory split like a file with the same bytes, under their name.
        let text = "the cat sat on the mat. ".repeat(100);
        let c = load_corpus(&r, Corpus::Bytes { name: "cats", bytes: text.as_bytes() }).unwrap();
        assert_eq!((c.name.as_str(), c.train.len() + c.held.len(), c.floor), ("cats", text.len(), None));
        let e = load_corpus(&r, Corpus::Bytes { name: "tiny", bytes: b"abc" }).unwrap_err().to_string();
        assert!(e.starts_with("corpus tiny: 3 bytes"), "{e}");
    }

    /// The whole pipeline on a micro recipe: every stage runs, the report files exist and
    /// every number in the JSON is finite; the pruned stage is as sparse as asked and the
    /// teacher is reused on a rerun.
    fn micro_recipe() -> Recipe {
        let r = Recipe::micro();
        r.validate().unwrap();
        r
    }

    #[test]
    fn micro_pipeline_end_to_end() {
        let _serial = serial();
        let r = micro_recipe();
        let out = temp("micro");
        let _ = std::fs::remove_dir_all(&out);
        let mut seen: Vec<(String, usize, usize)> = Vec::new();
        let mut progress = |stage: &str, done: usize, total: usize, _loss: f64| {
            match seen.last_mut() {
                Some((s, d, _)) if s == stage => *d = done,
                _ => seen.push((stage.to_string(), done, total)),
            };
        };
        let first = run(&r, Corpus::BuiltIn, &out, false, &Device::flex(), &mut progress).unwrap();
        // Every stage's progress runs to its end, in order.
        let names: Vec<&str> = seen.iter().map(|(s, _, _)| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "teacher",
                "eval teacher",
                "distill",
                "eval distilled",
                "prune",
                "eval pruned 50 %",
                "eval int8 (static)",
                "latency"
            ]
        );
        assert!(seen.iter().all(|(_, d, t)| d == t && *t > 0), "{seen:?}");
        let report = &first.report;
        assert_eq!(report.rows.len(), 4);
        assert!(report.rows[2].stage.starts_with("pruned 50"), "{}", report.rows[2].stage);
        assert!(matches!(first.teacher, TeacherSource::Trained { cache_error: None, .. }));
        assert!((first.sparsity - 0.5).abs() < 0.01, "{}", first.sparsity);
        assert!(first.stages.iter().all(|s| s.b1_ms > 0.0 && s.b32_ms > 0.0 && s.perplexity > 1.0));
        assert!(!first.distill_losses.is_empty() && !first.prune_losses.is_empty());
        assert!(first.bytes.0 + first.bytes.1 >= r.data.corpus_bytes && first.floor.is_some());
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
        assert_eq!(Recipe::parse(&std::fs::read_to_string(out.join("recipe.json")).unwrap(), "r").unwrap(), r);
        // int8 is smaller than the float student on disk; the rerun reuses the teacher.
        assert!(report.rows[3].bytes < report.rows[1].bytes);
        let key = std::fs::read_to_string(out.join("teacher.key")).unwrap();
        let mut rng = Rng(1);
        let corpus = load_corpus(&r, Corpus::BuiltIn).unwrap();
        let (_, _, source) = teacher(&r, &corpus, &Device::flex(), &out, false, &mut rng, &mut quiet()).unwrap();
        assert!(matches!(source, TeacherSource::Cached) && key == teacher_key(&r, &corpus));
        // The rerun with the cached teacher reproduces the later stages exactly.
        let again = run(&r, Corpus::BuiltIn, &out, false, &Device::flex(), &mut quiet()).unwrap();
        assert!(matches!(again.teacher, TeacherSource::Cached));
        for (x, y) in report.rows.iter().zip(&again.report.rows) {
            assert_eq!(x.bytes, y.bytes, "{}", x.stage);
            assert!((x.metric_value / y.metric_value - 1.0).abs() < 1e-4, "{}: {x:?} {y:?}", x.stage);
        }
        let _ = std::fs::remove_dir_all(&out);
    }

    /// An invalid recipe or a corpus too small for it fails before anything is written.
    #[test]
    fn bad_inputs_fail_before_any_work() {
        let _serial = serial();
        let out = temp("bad");
        let _ = std::fs::remove_dir_all(&out);
        let mut r = micro_recipe();
        r.prune.ramp = 0.0;
        let e = run(&r, Corpus::BuiltIn, &out, false, &Device::flex(), &mut quiet()).unwrap_err();
        assert!(matches!(e, LmError::Recipe(RecipeError::Invalid { .. })), "{e}");
        let r = micro_recipe();
        let e = run(&r, Corpus::Bytes { name: "tiny", bytes: b"abc" }, &out, false, &Device::flex(), &mut quiet())
            .unwrap_err();
        assert!(matches!(e, LmError::Corpus { .. }), "{e}");
        assert!(!out.exists());
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
                let out = temp(&format!("repro-{i}"));
                let _ = std::fs::remove_dir_all(&out);
                let report = run(&r, Corpus::BuiltIn, &out, false, &Device::flex(), &mut quiet()).unwrap().report;
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
        let out = temp("wgpu");
        let report = run(&r, Corpus::BuiltIn, &out, false, &gpu, &mut quiet()).unwrap().report;
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
            let out = temp(&format!("criteria-{i}"));
            let report = run(&r, Corpus::BuiltIn, &out, false, &Device::flex(), &mut quiet()).unwrap().report;
            assert!(report.rows[2].stage.starts_with("pruned 50"), "{criterion:?}: {}", report.rows[2].stage);
            let _ = std::fs::remove_dir_all(&out);
        }
    }
}
