//! The compress example's recipe: every setting of a run as JSON, parsed strictly and validated
//! before any work starts. Its own module so the fuzz harness (`fuzz/`) can run the very parser and
//! validation the example uses on arbitrary input.

use burn::tensor::Device;
use ember_slm::distill::{DistillConfig, Distiller, IntermediateMatch, LayerMap, MatchLoss, ModelShape, Schedule};
use ember_slm::layers::SharingMode;
use ember_slm::models::{ByteTokenizer, CausalLmConfig};
use ember_slm::prune::{Criterion, CubicSchedule, Granularity, PruneConfig, Pruner, Scope};
use ember_slm::quant::{ActivationMode, ObserverConfig, WeightGranularity};
use serde::{Deserialize, Serialize};

/// The largest teacher or student a recipe may ask for (400 MB of f32 weights).
pub const MAX_PARAMS: usize = 100_000_000;

/// Every setting of a run. `--print-recipe` writes it as JSON, `--recipe FILE` reads it back
/// (unknown keys are errors); it is validated before any work starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Seed of initialization and batch sampling (`--seed` overrides it).
    pub seed: u64,
    pub data: DataRecipe,
    pub teacher: ModelRecipe,
    pub student: ModelRecipe,
    pub distill: DistillRecipe,
    pub prune: PruneRecipe,
    pub quant: QuantRecipe,
    pub eval: EvalRecipe,
}

/// The corpus and its split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRecipe {
    /// Seed of the built-in Markov grammar and its text (ignored with `--corpus`).
    pub markov_seed: u64,
    /// Bytes of built-in text to generate (ignored with `--corpus`).
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
    pub model: CausalLmConfig,
    pub train: TrainRecipe,
}

/// An Adam run with linear warm-up and cosine decay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRecipe {
    pub steps: usize,
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
    pub criterion: Criterion,
    pub granularity: Granularity,
    pub scope: Scope,
    /// Weights left dense: regular expressions over weight paths (see `ember_prune::selection`).
    pub exclude: Vec<String>,
    /// Fraction of the fine-tuning steps over which sparsity ramps up (the rest recovers).
    pub ramp: f64,
    /// Steps between mask updates.
    pub frequency: usize,
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

    /// Checks every setting, naming the first that is wrong and what was expected.
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
            m.model.validate().map_err(|e| RecipeError::invalid(&format!("{name}.model"), e))?;
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
            .map_err(|e| RecipeError::invalid("distill", e))?;
        check(
            q.soft_weight + q.hard_weight + q.hidden_mse_weight > 0.0,
            "distill",
            "all weights 0",
            "at least one loss with a weight > 0",
        )?;
        let p = &self.prune;
        Pruner::new(self.prune_config(p.sparsity)).map_err(|e| RecipeError::invalid("prune", e))?;
        check(p.ramp > 0.0 && p.ramp <= 1.0, "prune.ramp", p.ramp, "a fraction in (0, 1]")?;
        p.train.validate("prune.train")?;
        let schedule = self.prune_schedule().map_err(|e| RecipeError::invalid("prune", e))?;
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
        let student = self.student.model.init(&Device::flex()).map_err(|e| RecipeError::invalid("student.model", e))?;
        let dry = self.prune_config(p.sparsity).with_criterion(Criterion::Magnitude);
        Pruner::new(dry)
            .and_then(|pruner| pruner.compute_masks(&student))
            .map_err(|e| RecipeError::invalid("prune (on the student)", e))?;
        let q = &self.quant;
        q.observer.validate().map_err(|e| RecipeError::invalid("quant.observer", e))?;
        q.weight.validate().map_err(|e| RecipeError::invalid("quant.weight", e))?;
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
    pub fn prune_schedule(&self) -> Result<CubicSchedule, ember_slm::prune::PruneError> {
        let p = &self.prune;
        let end = ((p.train.steps as f64 * p.ramp).round() as usize).clamp(1, p.train.steps.max(1)) - 1;
        CubicSchedule::new(0.0, p.sparsity, 0, end, p.frequency)
    }
}

impl ModelRecipe {
    pub fn shape(&self) -> ModelShape {
        ModelShape::new(self.model.n_layers, self.model.d_model, self.model.n_heads)
    }
}

impl TrainRecipe {
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

    /// Linear warm-up to `lr`, then cosine decay to `lr · min_lr_fraction`.
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

/// What is wrong with a recipe or the run's inputs.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// A setting outside its range.
    #[error("recipe: {field} = {value}: expected {expected}")]
    Invalid { field: String, value: String, expected: String },
    /// A group of settings that a crate's own validation rejected.
    #[error("recipe: {field}: {message}")]
    Rejected { field: String, message: String },
    /// A recipe file that is not valid JSON for a recipe.
    #[error("recipe file {path}: {message}")]
    Parse { path: String, message: String },
    /// A corpus that cannot be used.
    #[error("corpus {path}: {message}")]
    Corpus { path: String, message: String },
    /// A command-line argument.
    #[error("{0} (see --help)")]
    Usage(String),
}

impl RecipeError {
    pub fn invalid(field: &str, e: impl std::fmt::Display) -> Self {
        RecipeError::Rejected { field: field.into(), message: e.to_string() }
    }
}

pub fn check(ok: bool, field: &str, value: impl std::fmt::Display, expected: &str) -> Result<(), RecipeError> {
    if ok {
        Ok(())
    } else {
        Err(RecipeError::Invalid { field: field.into(), value: value.to_string(), expected: expected.into() })
    }
}

/// The first key of `input` (a path like `student.model.embeding_size`) that the parsed recipe
/// does not have.
pub fn unknown_key(input: &serde_json::Value, known: &serde_json::Value, path: &str) -> Option<String> {
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

impl Recipe {
    /// Parses a recipe file's text (`shown` names it in errors): JSON with exactly the recipe's
    /// keys (an unknown key anywhere is an error naming its path). Does not validate.
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
