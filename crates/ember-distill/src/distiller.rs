//! The [`Distiller`]: a step helper for the user's own training loop.
//!
//! It validates the configuration against the two models' shapes once (layer maps, head
//! counts, widths, derived projection sizes), then on every step runs the teacher without a
//! graph, moves its outputs to the student's autodiff device, and returns the weighted sum of
//! the configured losses. The user calls `backward` and steps the optimizer on the student and
//! on [`Distiller::projections`] (see [`Distiller::update_projections`]).
//!
//! ```text
//! L = w_soft(t) · T(t)² · KL(p_T ‖ p_S) + w_hard(t) · CE(labels, p_S) + Σ_matches w_m(t) · Σ_pairs L_m
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Gradients, Tensor};
use serde::{Deserialize, Serialize};

use crate::adaptor::{Distillable, ModelOutputs, OutputRequest};
use crate::cache::{CacheStorage, TeacherCache, TopKLogits};
use crate::error::{DistillError, Result, invalid};
use crate::intermediate::{
    Projection, attention_kl_loss, attention_mse_loss, cls_states, hidden_cosine_loss, hidden_mse_loss,
    patient_kd_loss, value_relation_loss,
};
use crate::kd::{KdLossConfig, check_temperature, hard_label_loss_seq};
use crate::layer_map::{LayerMap, LayerPair};
use crate::schedule::Schedule;

/// The sizes of a teacher or student that the configuration is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Transformer blocks (`hidden_states` has `layers + 1` entries).
    pub layers: usize,
    /// Hidden width.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the concatenated value vectors (usually `width`).
    pub value_width: usize,
}

impl ModelShape {
    /// A model whose value width equals its hidden width.
    pub fn new(layers: usize, width: usize, heads: usize) -> Self {
        ModelShape { layers, width, heads, value_width: width }
    }

    /// A model without intermediate outputs (a plain classifier): only logits are distilled.
    pub fn logits_only() -> Self {
        ModelShape { layers: 0, width: 0, heads: 0, value_width: 0 }
    }
}

/// An intermediate loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchLoss {
    /// Hidden-state MSE (TinyBERT), projected when widths differ.
    HiddenMse,
    /// `1 − cos` on hidden states (DistilBERT), projected when widths differ.
    HiddenCosine,
    /// Attention-probability KL (MiniLM), same head count.
    AttentionKl,
    /// Attention-probability MSE (TinyBERT), same head count.
    AttentionMse,
    /// MiniLM value relation with this many relation heads (dividing both value widths).
    ValueRelation {
        /// Relation heads (MiniLM: the head count; MiniLM-v2: any divisor).
        relation_heads: usize,
    },
    /// Patient-KD normalized `[CLS]` (position 0) MSE, projected when widths differ.
    PatientKd,
}

impl MatchLoss {
    fn name(&self) -> &'static str {
        match self {
            MatchLoss::HiddenMse => "hidden_mse",
            MatchLoss::HiddenCosine => "hidden_cosine",
            MatchLoss::AttentionKl => "attention_kl",
            MatchLoss::AttentionMse => "attention_mse",
            MatchLoss::ValueRelation { .. } => "value_relation",
            MatchLoss::PatientKd => "patient_kd",
        }
    }

    fn uses_hidden(&self) -> bool {
        matches!(self, MatchLoss::HiddenMse | MatchLoss::HiddenCosine | MatchLoss::PatientKd)
    }
}

/// One intermediate loss over a layer map (TextBrewer's `IntermediateMatch`). The loss is
/// summed over the map's pairs (as TinyBERT sums over layers) and multiplied by `weight`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntermediateMatch {
    /// The loss.
    pub loss: MatchLoss,
    /// The layers it pairs.
    pub layers: LayerMap,
    /// Its weight.
    pub weight: Schedule,
}

impl IntermediateMatch {
    /// A match with a constant weight.
    pub fn new(loss: MatchLoss, layers: LayerMap, weight: f64) -> Self {
        IntermediateMatch { loss, layers, weight: Schedule::Constant(weight) }
    }
}

/// How hidden-state matches between different widths are bridged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectionMode {
    /// One learned projection per pair whose widths differ (TextBrewer).
    PerPair,
    /// One projection shared by all pairs (TinyBERT's single `W_h`).
    Shared,
    /// No projections: different widths are an error.
    Never,
}

/// Teacher-cache settings (see [`crate::cache`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// Logits kept per position.
    pub top_k: usize,
    /// Memory or a file.
    pub storage: CacheStorage,
}

/// Settings of a [`Distiller`].
#[derive(Config, Debug)]
pub struct DistillConfig {
    /// Temperature `T` of the soft-target loss.
    #[config(default = "Schedule::Constant(4.0)")]
    pub temperature: Schedule,
    /// Scale the soft-target loss by `T²` (see [`crate::kd`]).
    #[config(default = true)]
    pub t_squared: bool,
    /// Weight of the soft-target loss.
    #[config(default = "Schedule::Constant(1.0)")]
    pub soft_weight: Schedule,
    /// Weight of the hard-label cross-entropy (needs the student's labels).
    #[config(default = "Schedule::Constant(0.0)")]
    pub hard_weight: Schedule,
    /// Label value skipped by the hard-label loss.
    #[config(default = "Some(-100)")]
    pub ignore_index: Option<i64>,
    /// Intermediate losses.
    #[config(default = "Vec::new()")]
    pub matches: Vec<IntermediateMatch>,
    /// How hidden states of different widths are bridged.
    #[config(default = "ProjectionMode::PerPair")]
    pub projection: ProjectionMode,
    /// Cache the teacher's top-k logits by batch key (logit-only distillation).
    #[config(default = "None")]
    pub cache: Option<CacheConfig>,
    /// Check the logits for NaN and infinity (one device read per tensor); the intermediate
    /// losses and label checks always run.
    #[config(default = true)]
    pub check_finite: bool,
}

/// The learned projections of a [`Distiller`]: train them with the student, drop them at
/// export (they are not part of the student).
#[derive(Module, Debug)]
pub struct DistillProjections {
    /// One per distinct (pair or shared) projection.
    pub projections: Vec<Projection>,
}

/// One weighted term of the loss.
#[derive(Clone, Debug)]
pub struct LossTerm {
    /// `soft_kd`, `hard_ce`, or the match loss name with its index (`hidden_mse[0]`).
    pub name: String,
    /// The weight it was multiplied by.
    pub weight: f64,
    /// The unweighted value.
    pub value: Tensor<1>,
}

/// The losses of one step.
#[derive(Clone, Debug)]
pub struct DistillLosses {
    /// The weighted sum, on the student's device: call `backward` on it.
    pub total: Tensor<1>,
    /// Its terms (unweighted values), for logging.
    pub terms: Vec<LossTerm>,
    /// The temperature used.
    pub temperature: f64,
    /// Whether the teacher's logits came from the cache (the teacher did not run).
    pub from_cache: bool,
}

impl DistillLosses {
    /// `(name, weight, value)` of every term, read from the device.
    pub fn values(&self) -> Vec<(String, f64, f64)> {
        self.terms.iter().map(|t| (t.name.clone(), t.weight, t.value.clone().into_scalar::<f32>() as f64)).collect()
    }
}

/// The teacher's side of a step.
#[derive(Clone, Copy, Debug)]
pub enum TeacherSignal<'a> {
    /// Outputs of a forward pass (moved to the student's device and detached by the caller or
    /// by [`Distiller::step`]).
    Outputs(&'a ModelOutputs),
    /// Cached top-k logits.
    Cached(&'a TopKLogits),
}

#[derive(Clone, Debug)]
struct PlannedMatch {
    loss: MatchLoss,
    weight: Schedule,
    /// Pairs and the projection each uses.
    pairs: Vec<(LayerPair, Option<usize>)>,
}

/// The distillation step helper (see the module docs).
#[derive(Debug)]
pub struct Distiller {
    config: DistillConfig,
    teacher: ModelShape,
    student: ModelShape,
    plan: Vec<PlannedMatch>,
    projections: DistillProjections,
    cache: Option<TeacherCache>,
    step: usize,
    device: Device,
}

fn check_weight(what: &str, s: &Schedule) -> Result<()> {
    for v in s.extremes() {
        if !v.is_finite() || v < 0.0 {
            return Err(invalid(what, v, "a finite weight ≥ 0"));
        }
    }
    Ok(())
}

impl Distiller {
    /// Validates `config` against the teacher's and student's shapes and creates the learned
    /// projections on `device` (the student's autodiff device).
    ///
    /// # Errors
    /// [`DistillError::Temperature`] for a schedule reaching `T ≤ 0`,
    /// [`DistillError::InvalidConfig`] for negative weights, different widths with
    /// [`ProjectionMode::Never`], relation heads that do not divide a value width, or a cache
    /// combined with intermediate matches (those need the teacher every step),
    /// [`DistillError::LayerOutOfRange`] for a map outside either model, [`DistillError::Shape`]
    /// for attention matches between different head counts, and the cache's own errors.
    pub fn new(config: DistillConfig, teacher: ModelShape, student: ModelShape, device: &Device) -> Result<Self> {
        for t in config.temperature.extremes() {
            check_temperature(t)?;
        }
        check_weight("soft_weight", &config.soft_weight)?;
        check_weight("hard_weight", &config.hard_weight)?;
        let mut plan = Vec::new();
        let mut projections = Vec::new();
        let mut shared: Option<usize> = None;
        for (i, m) in config.matches.iter().enumerate() {
            check_weight(&format!("weight of match {i}"), &m.weight)?;
            let pairs = m.layers.resolve(student.layers, teacher.layers, m.loss.uses_hidden())?;
            match m.loss {
                MatchLoss::AttentionKl | MatchLoss::AttentionMse if teacher.heads != student.heads => {
                    return Err(DistillError::Shape {
                        what: format!("match {i} ({}): attention heads (teacher vs student)", m.loss.name()),
                        expected: format!("{} heads like the student", student.heads),
                        actual: format!(
                            "{} heads (use ValueRelation, which needs only a common relation-head count)",
                            teacher.heads
                        ),
                    });
                }
                MatchLoss::ValueRelation { relation_heads } => {
                    for (who, w) in [("student", student.value_width), ("teacher", teacher.value_width)] {
                        if relation_heads == 0 || !w.is_multiple_of(relation_heads) {
                            return Err(invalid(
                                format!("match {i}: relation_heads"),
                                relation_heads,
                                format!("a positive divisor of the {who}'s value width {w}"),
                            ));
                        }
                    }
                }
                _ => {}
            }
            let needs_projection = m.loss.uses_hidden() && teacher.width != student.width;
            let planned = pairs
                .into_iter()
                .map(|p| {
                    if !needs_projection {
                        return Ok((p, None));
                    }
                    match config.projection {
                        ProjectionMode::Never => Err(invalid(
                            format!("match {i} ({})", m.loss.name()),
                            format!("student width {} vs teacher width {}", student.width, teacher.width),
                            "equal widths, or a projection mode other than Never",
                        )),
                        ProjectionMode::Shared => Ok((
                            p,
                            Some(*shared.get_or_insert_with(|| {
                                projections.push(Projection::new(student.width, teacher.width, device));
                                projections.len() - 1
                            })),
                        )),
                        ProjectionMode::PerPair => {
                            projections.push(Projection::new(student.width, teacher.width, device));
                            Ok((p, Some(projections.len() - 1)))
                        }
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            plan.push(PlannedMatch { loss: m.loss, weight: m.weight, pairs: planned });
        }
        let cache = match &config.cache {
            None => None,
            Some(c) => {
                if !config.matches.is_empty() {
                    return Err(invalid(
                        "cache",
                        "a teacher cache with intermediate matches",
                        "logit-only distillation (intermediate losses need the teacher's hidden states every step)",
                    ));
                }
                Some(TeacherCache::new(c.top_k, &c.storage)?)
            }
        };
        Ok(Distiller {
            config,
            teacher,
            student,
            plan,
            projections: DistillProjections { projections },
            cache,
            step: 0,
            device: device.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DistillConfig {
        &self.config
    }

    /// The teacher's and the student's shapes.
    pub fn shapes(&self) -> (ModelShape, ModelShape) {
        (self.teacher, self.student)
    }

    /// The resolved layer pairs of each configured match, with the index of the projection each
    /// uses.
    pub fn pairs(&self) -> Vec<Vec<(LayerPair, Option<usize>)>> {
        self.plan.iter().map(|m| m.pairs.clone()).collect()
    }

    /// Steps taken (drives the schedules).
    pub fn current_step(&self) -> usize {
        self.step
    }

    /// Sets the step counter (to resume training).
    pub fn set_step(&mut self, step: usize) {
        self.step = step;
    }

    /// The temperature at the current step.
    pub fn temperature(&self) -> f64 {
        self.config.temperature.at(self.step)
    }

    /// The learned projections (empty when the widths agree).
    pub fn projections(&self) -> &DistillProjections {
        &self.projections
    }

    /// Replaces the projections (after loading them, for example).
    ///
    /// # Errors
    /// [`DistillError::Shape`] unless they have the same count and widths as the current ones.
    pub fn set_projections(&mut self, projections: DistillProjections) -> Result<()> {
        let dims =
            |p: &DistillProjections| p.projections.iter().map(|p| (p.d_student(), p.d_teacher())).collect::<Vec<_>>();
        let (want, got) = (dims(&self.projections), dims(&projections));
        if want != got {
            return Err(DistillError::Shape {
                what: "projections (d_student, d_teacher)".into(),
                expected: format!("{want:?}"),
                actual: format!("{got:?}"),
            });
        }
        self.projections = projections;
        Ok(())
    }

    /// Takes the projections' gradients out of `grads` and steps them with `optim` (the same
    /// [`ModuleOptimizer`] as the student is fine: its state is keyed by parameter id). Call it
    /// before turning the rest of `grads` into the student's `GradientsParams`.
    pub fn update_projections(&mut self, optim: &mut ModuleOptimizer, lr: f64, grads: &mut Gradients) {
        if self.projections.projections.is_empty() {
            return;
        }
        let g = GradientsParams::from_module(grads, &self.projections);
        let p = std::mem::replace(&mut self.projections, DistillProjections { projections: Vec::new() });
        self.projections = optim.step(lr, p, g);
    }

    /// The teacher cache, when configured.
    pub fn cache(&self) -> Option<&TeacherCache> {
        self.cache.as_ref()
    }

    /// What the configured losses need from the models.
    pub fn request(&self) -> OutputRequest {
        let [s0, s1] = self.config.soft_weight.extremes();
        let [h0, h1] = self.config.hard_weight.extremes();
        let mut r = OutputRequest { logits: s0 + s1 + h0 + h1 > 0.0, ..OutputRequest::default() };
        for m in &self.plan {
            match m.loss {
                MatchLoss::HiddenMse | MatchLoss::HiddenCosine | MatchLoss::PatientKd => r.hidden_states = true,
                MatchLoss::AttentionKl | MatchLoss::AttentionMse => r.attentions = true,
                MatchLoss::ValueRelation { .. } => r.values = true,
            }
        }
        r
    }

    /// One step: runs the student on `input`, takes the teacher's logits from the cache when
    /// `key` is cached (otherwise runs the teacher, moves its outputs to the student's device,
    /// and caches its top-k logits under `key` when a cache is configured; without a key the
    /// full logits are used), computes the losses and advances the schedules.
    ///
    /// # Errors
    /// As [`Distiller::losses`], and the cache's errors.
    pub fn step<I: ?Sized, T: Distillable<I> + ?Sized, S: Distillable<I> + ?Sized>(
        &mut self,
        teacher: &T,
        student: &S,
        input: &I,
        key: Option<u64>,
    ) -> Result<DistillLosses> {
        let request = self.request();
        let student_out = student.distill_outputs(input, &request);
        let cached = match (&mut self.cache, key) {
            (Some(cache), Some(key)) => cache.get(key)?,
            _ => None,
        };
        let losses = match cached {
            Some(entry) => self.losses(&student_out, TeacherSignal::Cached(&entry))?,
            None => {
                let teacher_out = teacher.distill_outputs(input, &request);
                if let (Some(cache), Some(key)) = (&mut self.cache, key) {
                    let logits = teacher_out
                        .logits
                        .clone()
                        .ok_or_else(|| DistillError::MissingOutput("teacher logits (needed by the cache)".into()))?;
                    let entry = cache.insert_logits(key, logits)?;
                    let mut l = self.losses(&student_out, TeacherSignal::Cached(&entry))?;
                    l.from_cache = false;
                    l
                } else {
                    let teacher_out = teacher_out.to_device(&self.device);
                    self.losses(&student_out, TeacherSignal::Outputs(&teacher_out))?
                }
            }
        };
        self.step += 1;
        Ok(losses)
    }

    /// The losses at the current step for outputs computed by the caller (the teacher's already
    /// on the student's device and detached, see [`ModelOutputs::to_device`]). Does not advance
    /// the step counter.
    ///
    /// # Errors
    /// [`DistillError::MissingOutput`] for an output a configured loss needs,
    /// [`DistillError::Shape`] / [`DistillError::VocabMismatch`] for teacher and student outputs
    /// that do not fit each other or the shapes given to [`Distiller::new`],
    /// [`DistillError::NonFinite`] for NaN or infinity (with `check_finite`), and label errors.
    pub fn losses(&self, student: &ModelOutputs, teacher: TeacherSignal<'_>) -> Result<DistillLosses> {
        let step = self.step;
        let temperature = self.config.temperature.at(step);
        let pad = student.pad_mask.clone();
        let mut terms: Vec<LossTerm> = Vec::new();

        // Classifier logits are `[batch, 1, classes]`: the token padding mask does not apply.
        let logit_pad = match (&student.logits, &pad) {
            (Some(l), Some(m)) if l.dims()[1] == 1 && m.dims()[1] != 1 => None,
            _ => pad.clone(),
        };
        let soft_w = self.config.soft_weight.at(step);
        if soft_w > 0.0 {
            let s_logits =
                student.logits.clone().ok_or_else(|| DistillError::MissingOutput("student logits".into()))?;
            let value = match teacher {
                TeacherSignal::Cached(entry) => {
                    entry.kd_loss(s_logits, temperature, self.config.t_squared, logit_pad.clone())?
                }
                TeacherSignal::Outputs(t) => {
                    let t_logits =
                        t.logits.clone().ok_or_else(|| DistillError::MissingOutput("teacher logits".into()))?;
                    KdLossConfig::new()
                        .with_temperature(temperature)
                        .with_t_squared(self.config.t_squared)
                        .with_check_finite(self.config.check_finite)
                        .init()?
                        .forward_seq(s_logits, t_logits, logit_pad.clone())?
                }
            };
            terms.push(LossTerm { name: "soft_kd".into(), weight: soft_w, value });
        }

        let hard_w = self.config.hard_weight.at(step);
        if hard_w > 0.0 {
            let logits = student.logits.clone().ok_or_else(|| DistillError::MissingOutput("student logits".into()))?;
            let labels = student
                .labels
                .clone()
                .ok_or_else(|| DistillError::MissingOutput("student labels (hard_weight > 0)".into()))?;
            let value = hard_label_loss_seq(logits, labels, self.config.ignore_index, logit_pad)?;
            terms.push(LossTerm { name: "hard_ce".into(), weight: hard_w, value });
        }

        if !self.plan.is_empty() {
            let TeacherSignal::Outputs(t) = teacher else {
                return Err(DistillError::MissingOutput(
                    "teacher hidden states (intermediate matches cannot use cached logits)".into(),
                ));
            };
            for (i, m) in self.plan.iter().enumerate() {
                let w = m.weight.at(step);
                if w == 0.0 {
                    continue;
                }
                let mut sum: Option<Tensor<1>> = None;
                for &(pair, proj) in &m.pairs {
                    let v = self.pair_loss(m.loss, pair, proj, student, t, pad.clone())?;
                    sum = Some(match sum {
                        None => v,
                        Some(s) => s + v,
                    });
                }
                if let Some(value) = sum {
                    terms.push(LossTerm { name: format!("{}[{i}]", m.loss.name()), weight: w, value });
                }
            }
        }

        let total = terms
            .iter()
            .map(|t| t.value.clone() * t.weight)
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| Tensor::<1>::zeros([1], &self.device));
        Ok(DistillLosses { total, terms, temperature, from_cache: matches!(teacher, TeacherSignal::Cached(_)) })
    }

    fn pair_loss(
        &self,
        loss: MatchLoss,
        pair: LayerPair,
        proj: Option<usize>,
        student: &ModelOutputs,
        teacher: &ModelOutputs,
        pad: Option<burn::tensor::Tensor<2, burn::tensor::Bool>>,
    ) -> Result<Tensor<1>> {
        if loss.uses_hidden() {
            let s = hidden(student, "student", pair.student)?;
            let t = hidden(teacher, "teacher", pair.teacher)?;
            let s = match proj {
                None => s,
                Some(p) => {
                    let p = self
                        .projections
                        .projections
                        .get(p)
                        .ok_or_else(|| DistillError::MissingOutput(format!("projection {p}")))?;
                    let [b, l, d] = s.dims();
                    if d != p.d_student() {
                        return Err(DistillError::Shape {
                            what: format!("student hidden state {}", pair.student),
                            expected: format!("width {} (the ModelShape given to Distiller::new)", p.d_student()),
                            actual: format!("{:?}", [b, l, d]),
                        });
                    }
                    p.forward(s)
                }
            };
            return match loss {
                MatchLoss::HiddenMse => hidden_mse_loss(s, t, pad),
                MatchLoss::HiddenCosine => hidden_cosine_loss(s, t, pad),
                _ => patient_kd_loss(cls_states(s)?, cls_states(t)?),
            };
        }
        match loss {
            MatchLoss::AttentionKl | MatchLoss::AttentionMse => {
                let s = block(&student.attentions, "student attention", pair.student)?;
                let t = block(&teacher.attentions, "teacher attention", pair.teacher)?;
                if loss == MatchLoss::AttentionKl {
                    attention_kl_loss(s, t, pad)
                } else {
                    attention_mse_loss(s, t, pad)
                }
            }
            MatchLoss::ValueRelation { relation_heads } => {
                let s = block(&student.values, "student values", pair.student)?;
                let t = block(&teacher.values, "teacher values", pair.teacher)?;
                value_relation_loss(s, t, relation_heads, pad)
            }
            _ => unreachable!("hidden-state losses handled above"),
        }
    }
}

fn hidden(out: &ModelOutputs, who: &str, index: usize) -> Result<Tensor<3>> {
    out.hidden_states.get(index).cloned().ok_or_else(|| {
        DistillError::MissingOutput(format!(
            "{who} hidden state {index}: the model returned {} (index 0 is the embedding output, so L blocks give L + 1)",
            out.hidden_states.len()
        ))
    })
}

fn block<const D: usize>(v: &[Tensor<D>], what: &str, layer: usize) -> Result<Tensor<D>> {
    layer.checked_sub(1).and_then(|i| v.get(i)).cloned().ok_or_else(|| {
        DistillError::MissingOutput(format!(
            "{what} of block {layer}: the model returned {} blocks (block l is index l − 1)",
            v.len()
        ))
    })
}
