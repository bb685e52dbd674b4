//! Text-classification (or regression) compression of a pretrained encoder: teacher (fine-tuned
//! on the task) → distilled student → narrowed student → int8, every stage scored with the
//! task's metric on the dev split.
//!
//! 1. **Data** ([`super::data`]): GLUE-format TSV or plain `text<TAB>label` files; a directory
//!    with `train.tsv` and `dev.tsv`, or one file split by the recipe.
//! 2. **teacher**: the checkpoint with `BertForSequenceClassification`'s pooler and head. When
//!    the checkpoint has no head for these labels (a `BertModel` such as all-MiniLM-L6-v2) it is
//!    fine-tuned the standard way: cross-entropy (MSE for regression), AdamW at
//!    `teacher_lr` with linear warm-up over `warmup` of the steps and linear decay, gradient
//!    clipping, dropout, `teacher_epochs` passes; the dev metric after every epoch is in the
//!    curve. Saved in Hugging Face layout (`teacher-hf/`).
//! 3. **distilled**: the student keeps the teacher's layers `layers` (default every other one)
//!    with its pooler and head, trained on `soft_weight · T² · KL(teacher ‖ student at
//!    temperature T) + (1 − soft_weight) · CE(labels)` (MSE to the teacher's score for
//!    regression) plus, with `hidden_weight`, the relative squared error between the student's
//!    layer `k` and the teacher's layer `layers[k]` (TinyBERT's hidden-state transfer). The
//!    teacher's logits and states are computed once.
//! 4. **pruned**: `prune_neurons` of every FFN's neurons removed by measured importance (as in
//!    [`super::embed`]), distilled again; saved in Hugging Face layout (`student-hf/`) and
//!    **measured as reloaded from there**.
//! 5. **int8**: ember-quant's default conversion of every `Linear` (pooler and head included),
//!    saved in Ember's format (`student-int8/`, with the tokenizer) and measured as reloaded.
//!
//! **In your own loop** the same pieces are public: [`super::data::task_batches`] (GLUE or
//! labelled examples to padded tensors, pairs with token types), [`super::train::WarmupLinear`]
//! and [`super::train::adamw`] (the schedule and optimizer of BERT fine-tuning), [`label_loss`]
//! and [`evaluate`] (the task's official metric on a dev split), and
//! `ember_models::BertClassifier` (heads, dropout, saving).
//!
//! ```no_run
//! use burn::tensor::Device;
//! use ember_slm::pipeline::classify::{ClassifyRecipe, run};
//! use ember_slm::pipeline::data::read_task;
//! use std::path::Path;
//!
//! let recipe = ClassifyRecipe::default();
//! let data = read_task(Path::new("corpora/brown-genre"), None, recipe.dev_fraction, recipe.seed).unwrap();
//! let mut progress = |stage: &str, done: usize, total: usize, _loss: f64| eprint!("\r{stage} {done}/{total}");
//! let r = run(Path::new("models/all-minilm-l6-v2"), &data, &recipe, Path::new("out"), &Device::flex(), &mut progress)
//!     .unwrap();
//! println!("{}", r.report.to_markdown());
//! ```

use super::data::{Metric, Targets, TaskBatch, TaskData, task_batches};
use super::embed::batch1_macs;
use super::train::{WarmupLinear, adamw};
use super::{PipelineError, Result, Rng, host, io_err, recipe_err};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use ember_eval::{CompressionReport, EnergyModel, GlueExample, GluePrediction, StageRow};
use ember_models::{Bert, BertClassifier, Encoded, TextTokenizer};
use ember_quant::{QuantizeConfig, Quantizer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The settings of a classification run (JSON: every field optional, unknown fields refused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifyRecipe {
    /// Teacher layers the student keeps (0-based, ascending); empty: every other layer from 1.
    pub layers: Vec<usize>,
    /// Longest tokenized example (pairs included; longer ones are truncated).
    pub max_tokens: usize,
    /// Fraction of a single data file held out as the dev split.
    pub dev_fraction: f64,
    /// At most this many training examples (0: all).
    pub max_train: usize,
    /// Examples per step.
    pub batch: usize,
    /// Fine-tune the teacher even when its checkpoint has a head for the labels.
    pub always_finetune: bool,
    /// Passes over the training split when fine-tuning the teacher.
    pub teacher_epochs: usize,
    /// Peak learning rate of the teacher's fine-tuning.
    pub teacher_lr: f64,
    /// Fraction of each training stage's steps spent warming up.
    pub warmup: f64,
    /// Dropout (encoder embeddings and attention, before the head) while training.
    pub dropout: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient norm clip.
    pub clip_norm: f64,
    /// Passes over the training split when distilling the layer-subset student.
    pub distill_epochs: usize,
    /// Peak learning rate of the distillation.
    pub distill_lr: f64,
    /// Softmax temperature of the soft targets.
    pub temperature: f64,
    /// Weight of the soft-target term (the rest goes to the labels).
    pub soft_weight: f64,
    /// Weight of the hidden-state term (0: off).
    pub hidden_weight: f64,
    /// Fraction of every FFN's neurons removed (0 skips the narrowing but keeps the stage).
    pub prune_neurons: f64,
    /// Passes over the training split after the narrowing.
    pub prune_epochs: usize,
    /// Peak learning rate after the narrowing.
    pub prune_lr: f64,
    /// Examples the neurons' importance is measured on.
    pub calibration_examples: usize,
    /// Minimum time per latency measurement, ms.
    pub latency_ms: u64,
    /// Seed of the shuffles, the split and the new head.
    pub seed: u64,
}

impl Default for ClassifyRecipe {
    fn default() -> Self {
        ClassifyRecipe {
            layers: Vec::new(),
            max_tokens: 128,
            dev_fraction: 0.1,
            max_train: 0,
            batch: 32,
            always_finetune: false,
            teacher_epochs: 2,
            teacher_lr: 5e-5,
            warmup: 0.1,
            dropout: 0.1,
            weight_decay: 0.01,
            clip_norm: 1.0,
            distill_epochs: 2,
            distill_lr: 1e-4,
            temperature: 2.0,
            soft_weight: 0.7,
            hidden_weight: 1.0,
            prune_neurons: 0.25,
            prune_epochs: 1,
            prune_lr: 5e-5,
            calibration_examples: 256,
            latency_ms: 1000,
            seed: 17,
        }
    }
}

impl ClassifyRecipe {
    /// A seconds-long run for smoke tests: few examples and steps, short measurements.
    pub fn quick() -> Self {
        ClassifyRecipe {
            max_train: 64,
            max_tokens: 48,
            batch: 8,
            teacher_epochs: 1,
            distill_epochs: 1,
            prune_epochs: 1,
            calibration_examples: 16,
            latency_ms: 20,
            ..ClassifyRecipe::default()
        }
    }

    /// Checks every setting (before any work).
    ///
    /// # Errors
    /// [`PipelineError::Recipe`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [
            ("max_tokens", self.max_tokens),
            ("batch", self.batch),
            ("teacher_epochs", self.teacher_epochs),
            ("distill_epochs", self.distill_epochs),
            ("calibration_examples", self.calibration_examples),
        ] {
            if v == 0 {
                return Err(recipe_err(what, v, "a positive number"));
            }
        }
        if self.max_tokens < 3 {
            return Err(recipe_err("max_tokens", self.max_tokens, "at least 3 ([CLS], a token, [SEP])"));
        }
        if !(self.dev_fraction > 0.0 && self.dev_fraction < 1.0) {
            return Err(recipe_err("dev_fraction", self.dev_fraction, "a fraction in (0, 1)"));
        }
        for (what, v) in [("warmup", self.warmup), ("soft_weight", self.soft_weight)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(recipe_err(what, v, "a fraction in [0, 1]"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(recipe_err("dropout", self.dropout, "a probability in [0, 1)"));
        }
        if !(0.0..1.0).contains(&self.prune_neurons) {
            return Err(recipe_err("prune_neurons", self.prune_neurons, "a fraction in [0, 1)"));
        }
        for (what, v) in [
            ("teacher_lr", self.teacher_lr),
            ("distill_lr", self.distill_lr),
            ("prune_lr", self.prune_lr),
            ("clip_norm", self.clip_norm),
            ("temperature", self.temperature),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(recipe_err(what, v, "a finite value > 0"));
            }
        }
        for (what, v) in [("weight_decay", self.weight_decay), ("hidden_weight", self.hidden_weight)] {
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
pub struct ClassifyStage {
    /// `teacher`, `distilled`, `pruned`, `int8`.
    pub name: String,
    /// Parameters (encoder, pooler and head).
    pub params: u64,
    /// Bytes of the saved model (Hugging Face export for float models, Ember's file for int8).
    pub bytes: u64,
    /// The task metric on the dev split.
    pub metric: f64,
    /// Median latency at batch 1, ms.
    pub b1_ms: f64,
    /// Median latency at batch 32, ms.
    pub b32_ms: f64,
    /// Seconds the stage took to make (training, conversion, saving).
    pub seconds: f64,
}

/// What a run produced.
#[derive(Debug)]
pub struct ClassifyRun {
    /// The stages, teacher first.
    pub stages: Vec<ClassifyStage>,
    /// The report (also written to `report.md`, `report.json`, `report.svg`).
    pub report: CompressionReport,
    /// The metric's name.
    pub metric: String,
    /// Training loss every 10 steps: (stage, step, loss).
    pub curve: Vec<(String, usize, f64)>,
    /// The teacher's dev metric after each fine-tuning epoch (empty when its head was loaded).
    pub teacher_epochs: Vec<f64>,
    /// Whether the teacher was fine-tuned here.
    pub teacher_finetuned: bool,
    /// Training and dev examples.
    pub examples: (usize, usize),
    /// The float student in Hugging Face layout.
    pub hf_dir: PathBuf,
    /// The int8 student in Ember's format.
    pub int8_dir: PathBuf,
}

/// Progress (the one [`super::Progress`] type): (stage, step done, steps, last loss). Stages: `finetune`, `teacher` (its targets,
/// loss NaN), `distill`, `prune`.
pub use super::Progress;

/// Runs the pipeline (see the [module docs](self)) on the checkpoint in `teacher_dir` (a
/// Hugging Face BERT-family directory with `tokenizer.json`) and `data`, writing to `out`.
///
/// # Errors
/// [`PipelineError::Recipe`] for an invalid recipe (before any work), [`PipelineError::Data`]
/// for unusable data, [`PipelineError::Diverged`], and the crates' errors for unreadable
/// checkpoints or files that cannot be written.
pub fn run(
    teacher_dir: &Path,
    data: &TaskData,
    recipe: &ClassifyRecipe,
    out: &Path,
    device: &Device,
    progress: Progress<'_>,
) -> Result<ClassifyRun> {
    recipe.validate()?;
    let labels = data.labels.clone();
    let regression = labels.is_empty();
    device.seed(recipe.seed);
    let loaded = BertClassifier::from_pretrained(teacher_dir, labels.clone(), recipe.dropout, device)?;
    let layers = loaded.model.bert.n_layers();
    let layers = recipe.student_layers(layers)?;
    let tok = TextTokenizer::from_file(
        teacher_dir.join("tokenizer.json"),
        recipe.max_tokens.min(loaded.model.bert.max_positions()),
    )?;
    let mut train = data.train.clone();
    if recipe.max_train > 0 && train.len() > recipe.max_train {
        Rng(recipe.seed ^ 0x7a7a).shuffle(&mut train);
        train.truncate(recipe.max_train);
    }
    let batches = task_batches(&tok, &train, recipe.batch)?;
    let dev_batches = task_batches(&tok, &data.dev, 32)?;
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let write =
        |name: &str, bytes: &[u8]| std::fs::write(out.join(name), bytes).map_err(|e| io_err(&out.join(name), e));
    write("recipe.json", serde_json::to_string_pretty(recipe).unwrap_or_default().as_bytes())?;
    let score = |m: &BertClassifier| evaluate(m, &dev_batches, &data.dev, data.metric);
    let ad = device.clone().autodiff();
    let mut rng = Rng(recipe.seed);
    let mut curve = Vec::new();

    // The teacher.
    let start = Instant::now();
    let finetune = !loaded.head_loaded || recipe.always_finetune;
    let mut teacher_epochs = Vec::new();
    let teacher = if finetune {
        let steps = recipe.teacher_epochs * batches.len();
        let schedule = WarmupLinear {
            peak: recipe.teacher_lr,
            warmup: ((steps as f64 * recipe.warmup).round() as usize).max(1),
            total: steps,
        };
        let mut model = loaded.model.fork(&ad).train();
        let mut opt = adamw(recipe.weight_decay, recipe.clip_norm);
        let mut step = 0;
        for _epoch in 0..recipe.teacher_epochs {
            let mut order: Vec<usize> = (0..batches.len()).collect();
            rng.shuffle(&mut order);
            for &i in &order {
                let (_, logits) = model.forward_batch(&batches[i].encoded, false)?;
                let loss = label_loss(logits, &batches[i], &ad)?;
                record(&loss, "finetune", step, &mut curve)?;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = opt.step(schedule.lr(step), model, grads);
                step += 1;
                progress("finetune", step, steps, curve.last().map_or(f64::NAN, |c| c.2));
            }
            teacher_epochs.push(score(&model.valid())?);
        }
        model.valid()
    } else {
        loaded.model
    };
    let teacher_dir_out = out.join("teacher-hf");
    let teacher_bytes = teacher.save_pretrained(&teacher_dir_out, &labels, Some(teacher_dir))?.weight_bytes;
    let teacher_secs = start.elapsed().as_secs_f64();

    // The teacher's targets.
    let mut targets = Vec::with_capacity(batches.len());
    for (i, b) in batches.iter().enumerate() {
        let (out, logits) = teacher.forward_batch(&b.encoded, recipe.hidden_weight > 0.0)?;
        let n = logits.dims()[1];
        let hidden: Vec<Vec<f32>> = if recipe.hidden_weight > 0.0 {
            layers.iter().map(|&l| host(out.hidden_states[l + 1].clone(), "hidden states")).collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        targets.push(TeacherTargets { logits: host(logits, "logits")?, n, hidden });
        progress("teacher", i + 1, batches.len(), f64::NAN);
    }

    // The layer-subset student.
    let start = Instant::now();
    let student = teacher.map_encoder(|b| b.retain_layers(&layers))?;
    let steps = recipe.distill_epochs * batches.len();
    let student = distill(
        student.fork(&ad).train(),
        &batches,
        &targets,
        schedule(recipe.distill_lr, steps, recipe.warmup),
        recipe,
        regression,
        "distill",
        &mut rng,
        &mut curve,
        progress,
    )?
    .valid();
    let distilled_secs = start.elapsed().as_secs_f64();
    let distilled_bytes = student.save_pretrained(out.join("distilled-hf"), &labels, Some(teacher_dir))?.weight_bytes;

    // Narrowed, distilled again, saved and reloaded.
    let start = Instant::now();
    let calib_n = recipe.calibration_examples.min(train.len());
    let calib_pairs: Vec<(&str, Option<&str>)> =
        train[..calib_n].iter().map(|e| (e.text_a.as_str(), e.text_b.as_deref())).collect();
    let calib = tok.encode_pairs(&calib_pairs)?;
    let narrowed = narrow(&student, &calib, recipe.prune_neurons)?;
    let steps = recipe.prune_epochs * batches.len();
    let pruned = distill(
        narrowed.fork(&ad).train(),
        &batches,
        &targets,
        schedule(recipe.prune_lr, steps, recipe.warmup),
        recipe,
        regression,
        "prune",
        &mut rng,
        &mut curve,
        progress,
    )?
    .valid();
    let hf_dir = out.join("student-hf");
    let hf_bytes = pruned.save_pretrained(&hf_dir, &labels, Some(teacher_dir))?.weight_bytes;
    let reloaded = BertClassifier::from_pretrained(&hf_dir, labels.clone(), recipe.dropout, device)?;
    if !reloaded.head_loaded {
        return Err(PipelineError::Data {
            what: hf_dir.display().to_string(),
            message: "the saved student's head did not reload".into(),
        });
    }
    let pruned = reloaded.model;
    let pruned_secs = start.elapsed().as_secs_f64();

    // int8.
    let start = Instant::now();
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&pruned)?;
    let int8_dir = out.join("student-int8");
    let int8_bytes = int8.save(&int8_dir, &labels)?;
    let tok_src = teacher_dir.join("tokenizer.json");
    std::fs::copy(&tok_src, int8_dir.join("tokenizer.json")).map_err(|e| io_err(&tok_src, e))?;
    let (int8, _) = BertClassifier::load(&int8_dir, device)?;
    let int8_secs = start.elapsed().as_secs_f64();

    let models = [
        ("teacher", teacher, teacher_bytes, teacher_secs, false),
        ("distilled", student, distilled_bytes, distilled_secs, false),
        ("pruned", pruned, hf_bytes, pruned_secs, false),
        ("int8", int8, int8_bytes, int8_secs, true),
    ];
    let mut stages = Vec::new();
    for (name, m, bytes, seconds, _) in &models {
        stages.push(ClassifyStage {
            name: name.to_string(),
            params: params_of(m)?,
            bytes: *bytes,
            metric: score(m)?,
            b1_ms: 0.0,
            b32_ms: 0.0,
            seconds: *seconds,
        });
    }

    // Latency, round-robin: a dev example of median length, and 32 examples.
    let median = &dev_batches[dev_batches.len() / 2];
    let b1 = median.encoded.take(1);
    let all_dev: Vec<(&str, Option<&str>)> =
        data.dev.iter().take(32).map(|e| (e.text_a.as_str(), e.text_b.as_deref())).collect();
    let b32 = tok.encode_pairs(&all_dev)?;
    let refs: Vec<&BertClassifier> = models.iter().map(|m| &m.1).collect();
    let times = super::round_robin(&refs, [&b1, &b32], recipe.latency_ms, |m, b| m.logits(b).map(|t| t.into_data()))?;
    let energy = EnergyModel::horowitz_45nm();
    let metric_name = data.metric.name();
    let mut rows = Vec::new();
    for ((s, (b1_ms, b32_ms)), m) in stages.iter_mut().zip(times).zip(&models) {
        s.b1_ms = b1_ms;
        s.b32_ms = b32_ms;
        let (scores, linear) = batch1_macs(&m.1.bert, 16);
        let macs = if m.4 { (scores, linear) } else { (scores + linear, 0) };
        rows.push(
            StageRow::new(&s.name, s.params, s.bytes, &metric_name, s.metric, s.b1_ms, s.b32_ms)
                .with_energy(energy.estimate_mj(macs.0, macs.1, s.bytes))
                .with_higher_is_better(true),
        );
    }
    let report = CompressionReport::new(rows)?;
    let epochs = teacher_epochs
        .iter()
        .enumerate()
        .map(|(e, m)| serde_json::json!({"stage": "finetune", "epoch": e + 1, "dev_metric": m}))
        .collect();
    super::write_report(out, &report, &curve, epochs)?;
    Ok(ClassifyRun {
        stages,
        report,
        metric: metric_name,
        curve,
        teacher_epochs,
        teacher_finetuned: finetune,
        examples: (train.len(), data.dev.len()),
        hf_dir,
        int8_dir,
    })
}

fn schedule(peak: f64, steps: usize, warmup: f64) -> WarmupLinear {
    WarmupLinear { peak, warmup: ((steps as f64 * warmup).round() as usize).max(1), total: steps }
}

/// The teacher's targets for one training batch.
struct TeacherTargets {
    /// Logits `[b, n]`.
    logits: Vec<f32>,
    /// Outputs per example.
    n: usize,
    /// Mapped layers' outputs `[b, t, h]` (with a hidden-state term).
    hidden: Vec<Vec<f32>>,
}

/// Records the loss every 10 steps; refuses a non-finite one.
fn record(loss: &Tensor<1>, stage: &str, step: usize, curve: &mut Vec<(String, usize, f64)>) -> Result<()> {
    if step.is_multiple_of(10) {
        let v = f64::from(loss.clone().into_scalar::<f32>());
        if !v.is_finite() {
            return Err(PipelineError::Diverged { stage: stage.into(), step, loss: v });
        }
        curve.push((stage.to_string(), step, v));
    }
    Ok(())
}

/// The task loss of a batch for your own fine-tuning loop: the mean cross-entropy
/// `−(1/b) Σ_r log softmax(logits_r)[y_r]` of `logits` `[batch, classes]` against the batch's
/// classes, or the mean squared error `(1/b) Σ_r (logits_r − y_r)²` of `logits` `[batch, 1]`
/// against its scores (targets built on `device`, where the logits are).
///
/// # Errors
/// [`PipelineError::Data`] when the logits' shape does not fit the batch: another row count, a
/// class index ≥ the number of columns, or scores with more than one column.
pub fn label_loss(logits: Tensor<2>, batch: &TaskBatch, device: &Device) -> Result<Tensor<1>> {
    let [b, n] = logits.dims();
    let bad = |m: String| Err(PipelineError::Data { what: "label loss".into(), message: m });
    match &batch.targets {
        Targets::Class(c) => {
            if c.len() != b {
                return bad(format!("logits for {b} rows, the batch has {} labels", c.len()));
            }
            let mut onehot = vec![0.0f32; b * n];
            for (r, &k) in c.iter().enumerate() {
                if k >= n {
                    return bad(format!("row {r} has class {k}, the logits have {n} columns"));
                }
                onehot[r * n + k] = 1.0;
            }
            let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, n]), device);
            Ok((log_softmax(logits, 1) * onehot).sum().div_scalar(b as f64).neg())
        }
        Targets::Score(s) => {
            if s.len() != b || n != 1 {
                return bad(format!("logits [{b}, {n}] for {} scores, expected [{}, 1]", s.len(), s.len()));
            }
            let t = Tensor::<2>::from_data(TensorData::new(s.clone(), [b, 1]), device);
            Ok((logits - t).powi_scalar(2).mean())
        }
    }
}

/// The distillation loop (see the [module docs](self)).
#[allow(clippy::too_many_arguments)]
fn distill(
    mut student: BertClassifier,
    batches: &[TaskBatch],
    targets: &[TeacherTargets],
    schedule: WarmupLinear,
    recipe: &ClassifyRecipe,
    regression: bool,
    stage: &str,
    rng: &mut Rng,
    curve: &mut Vec<(String, usize, f64)>,
    progress: Progress<'_>,
) -> Result<BertClassifier> {
    let device = student.device();
    let mut opt = adamw(recipe.weight_decay, recipe.clip_norm);
    let mut order: Vec<usize> = (0..batches.len()).collect();
    let mut pos = order.len();
    let t2 = recipe.temperature * recipe.temperature;
    for step in 0..schedule.total {
        if pos == order.len() {
            rng.shuffle(&mut order);
            pos = 0;
        }
        let i = order[pos];
        pos += 1;
        let batch = &batches[i];
        let (b, seq) = (batch.encoded.batch, batch.encoded.seq);
        let tt = &targets[i];
        let (out, logits) = student.forward_batch(&batch.encoded, !tt.hidden.is_empty())?;
        let teacher = Tensor::<2>::from_data(TensorData::new(tt.logits.clone(), [b, tt.n]), &device);
        let soft = if regression {
            (logits.clone() - teacher).powi_scalar(2).mean()
        } else {
            let temp = recipe.temperature;
            let p = softmax(teacher.clone().div_scalar(temp), 1);
            let log_p = log_softmax(teacher.div_scalar(temp), 1);
            let log_q = log_softmax(logits.clone().div_scalar(temp), 1);
            (p * (log_p - log_q)).sum().div_scalar(b as f64).mul_scalar(t2)
        };
        let mut loss = soft.mul_scalar(recipe.soft_weight);
        if recipe.soft_weight < 1.0 {
            loss = loss + label_loss(logits, batch, &device)?.mul_scalar(1.0 - recipe.soft_weight);
        }
        if !tt.hidden.is_empty() {
            let pad = Tensor::from_data(TensorData::new(batch.encoded.pad.clone(), [b, seq]), &device);
            loss = loss + super::hidden_term(&out.hidden_states, &tt.hidden, pad).mul_scalar(recipe.hidden_weight);
        }
        record(&loss, stage, step, curve)?;
        let grads = GradientsParams::from_grads(loss.backward(), &student);
        student = opt.step(schedule.lr(step), student, grads);
        progress(stage, step + 1, schedule.total, curve.last().map_or(f64::NAN, |c| c.2));
    }
    Ok(student)
}

/// The task metric of `model` on `examples`, tokenized into `batches` by
/// [`task_batches`] (predictions are the arg-max class, or the output itself for regression).
///
/// # Errors
/// The model's errors on a batch; [`PipelineError::Eval`] / [`PipelineError::Data`] for
/// unlabelled examples or batches that do not index `examples`.
pub fn evaluate(
    model: &BertClassifier,
    batches: &[TaskBatch],
    examples: &[GlueExample],
    metric: Metric,
) -> Result<f64> {
    let regression = model.n_outputs() == 1;
    let mut preds = vec![GluePrediction::Class(0); examples.len()];
    for b in batches {
        let logits = host(model.logits(&b.encoded)?, "logits")?;
        let n = model.n_outputs();
        for (r, &i) in b.index.iter().enumerate() {
            let (Some(row), Some(slot)) = (logits.get(r * n..(r + 1) * n), preds.get_mut(i)) else {
                return Err(PipelineError::Data {
                    what: "evaluation".into(),
                    message: format!("batch row {r} indexes example {i} of {}", examples.len()),
                });
            };
            *slot = if regression {
                GluePrediction::Score(f64::from(row[0]))
            } else {
                let best = (0..n).max_by(|&a, &c| row[a].total_cmp(&row[c])).unwrap_or(0);
                GluePrediction::Class(best)
            };
        }
    }
    metric.score(examples, &preds)
}

/// Removes `fraction` of every FFN's neurons by Wanda's structured importance on `calib`.
fn narrow(model: &BertClassifier, calib: &Encoded, fraction: f64) -> Result<BertClassifier> {
    let ffns = &model.bert.encoder.feed_forward;
    super::narrow_ffns(
        model,
        ffns,
        "bert.",
        fraction,
        |m| Ok(m.logits(calib).map(|_| ())?),
        |m, block, keep| Ok(m.map_encoder(|b: &Bert| b.retain_neurons(block, keep))?),
    )
}

fn params_of(m: &BertClassifier) -> Result<u64> {
    let encoder = m.bert.architecture()?.num_params()? as u64;
    let h = m.bert.hidden_size() as u64;
    Ok(encoder + h * h + h + (h + 1) * m.n_outputs() as u64)
}
