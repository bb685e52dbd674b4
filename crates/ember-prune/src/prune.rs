//! Masks on a Burn model: select weights, score them, choose what to remove, and attach masks
//! that stay applied during fine-tuning.
//!
//! Masks are Burn [`Reparameterization`]s ([`PruneMask`]): `param.val()` is the masked weight,
//! masked entries get zero gradient, the optimizer keeps working on the same parameter ids, and
//! [`fold_masks`] (Burn's `materialize`) writes the zeros into plain weights.

use std::collections::HashMap;

use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId, Reparameterization, Reparameterizer};
use burn::tensor::{Bool, Gradients, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{PruneError, Result, check_sparsity};
use crate::mask::{self, Axis};
use crate::report::{LayerSparsity, SparsityReport};

/// A keep-mask attached to one weight (`true` = keep), stored flattened.
#[derive(Module, Debug)]
pub struct PruneMask {
    /// Flattened keep-mask (Bool parameters are never trained).
    pub keep: Param<Tensor<1, Bool>>,
}

impl Reparameterization for PruneMask {
    const NAME: &'static str = "ember_prune_mask";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let keep: Tensor<D, Bool> = self.keep.val().reshape(base.shape());
        base.mask_fill(keep.bool_not(), 0.0)
    }
}

/// How weights are scored (higher = more important).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Criterion {
    /// `|w|` (L1 magnitude).
    Magnitude,
    /// Uniform random scores from a seed (a baseline).
    Random {
        /// Seed of the scores.
        seed: u64,
    },
    /// Wanda (Sun et al. 2023): `|w_ij| · ‖X_i‖₂`, with the input-channel norms of each layer
    /// given to [`Pruner::with_input_norms`] (for example `ember-quant`'s calibration capture).
    Wanda,
    /// Movement (Sanh et al. 2020): scores accumulated with [`MovementScores`] during
    /// fine-tuning and given to [`Pruner::with_scores`].
    Movement,
}

/// What one mask entry removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Granularity {
    /// Single weights.
    Unstructured,
    /// `n` kept of every `m` consecutive input features of each output (2:4, 4:8); the
    /// configured sparsity and scope are ignored (it is `1 − n/m` in every layer).
    NM {
        /// Kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
    /// Whole output neurons or input features of each weight, scored by the L2 norm of their
    /// scores (the sum, for movement scores); the sparsity counts neurons.
    Neurons(Axis),
}

/// Per layer, or one threshold across every selected weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Every layer reaches the target sparsity.
    PerLayer,
    /// One threshold across the selection: layers end up with different sparsities.
    Global,
}

/// Settings of a pruning pass.
#[derive(Config, Debug)]
pub struct PruneConfig {
    /// Fraction of the selected weights to remove, in `[0, 1)`.
    pub sparsity: f64,
    /// Scoring.
    #[config(default = "Criterion::Magnitude")]
    pub criterion: Criterion,
    /// Mask structure.
    #[config(default = "Granularity::Unstructured")]
    pub granularity: Granularity,
    /// Per layer or global.
    #[config(default = "Scope::PerLayer")]
    pub scope: Scope,
    /// Weights to prune: regular expressions searched in each weight's parameter path
    /// (`encoder.attention.0.query.weight`), matched by Burn's
    /// `ParamGroup::from_any_regexes`: the same selection as ember-quant's `QuantizeConfig`
    /// (see [`selection`]). Empty: every rank-2 `weight` that is not an embedding.
    #[config(default = "Vec::new()")]
    pub include: Vec<String>,
    /// Weights left dense (same syntax), applied after `include`.
    #[config(default = "Vec::new()")]
    pub exclude: Vec<String>,
    /// Also prune embedding tables (excluded by default, as in most recipes).
    #[config(default = false)]
    pub include_embeddings: bool,
}

/// The [`ParamGroup`] of `include` minus `exclude`: regular expressions searched in parameter
/// paths, combined as `ParamGroup::from_any_regexes(include).exclude(..(exclude))`; an empty
/// `include` selects everything. ember-quant selects layers the same way, so one pattern means
/// the same weights to both crates.
///
/// ```
/// use burn::module::ParamId;
/// let group = ember_prune::selection(&["attention".into()], &[r"\.output\.".into()]).unwrap();
/// let id = ParamId::new();
/// assert!(group.matches(&id, Some("encoder.attention.0.query.weight")));
/// assert!(!group.matches(&id, Some("encoder.attention.0.output.weight")));
/// assert!(!group.matches(&id, Some("encoder.feed_forward.0.inner.weight")));
/// ```
///
/// # Errors
/// [`PruneError::InvalidConfig`] naming the first pattern that is not a regular expression.
pub fn selection(include: &[String], exclude: &[String]) -> Result<ParamGroup> {
    let group = |what: &str, patterns: &[String]| -> Result<ParamGroup> {
        let bad = |p: String, e: String| PruneError::InvalidConfig {
            what: what.into(),
            value: p,
            expected: format!(
                "a regular expression searched in weight paths such as `encoder.attention.0.query.weight` ({e}); \
                 `*` alone is not a pattern, `.*` or an empty list selects everything"
            ),
        };
        for p in patterns {
            ParamGroup::from_regex(p).map_err(|e| bad(format!("{p:?}"), format!("{e:?}")))?;
        }
        ParamGroup::from_any_regexes(patterns.to_vec()).map_err(|e| bad(format!("{patterns:?}"), format!("{e:?}")))
    };
    let base = if include.is_empty() { ParamGroup::all() } else { group("include", include)? };
    Ok(if exclude.is_empty() { base } else { base.exclude(group("exclude", exclude)?) })
}

/// A selected weight, read to the host.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub path: String,
    pub dims: [usize; 2],
    pub values: Vec<f32>,
    pub masked: bool,
}

/// Module visitor methods that keep `path` and `container` (the parent's type) stacks.
macro_rules! track_path {
    () => {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.push(name.to_string());
            self.container.push(container_type.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
            self.container.pop();
        }
    };
}

/// Collects the prunable rank-2 weights of a model.
struct Collector<'a> {
    path: Vec<String>,
    container: Vec<String>,
    config: &'a PruneConfig,
    selection: &'a ParamGroup,
    group: Option<&'a ParamGroup>,
    found: Vec<Candidate>,
    error: Option<PruneError>,
}

impl ModuleVisitor for Collector<'_> {
    track_path!();
    /// Burn visits a reparameterized weight's base first, then its reparameterization as a
    /// module: an Ember mask's `keep` flags are applied to the values just read.
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        let n = self.path.len();
        if n < 3 || self.path[n - 2] != PruneMask::NAME || self.container[n - 2] != "Reparameterization" {
            return;
        }
        let weight = self.path[..n - 2].join(".");
        let Some(c) = self.found.last_mut().filter(|c| c.path == weight) else { return };
        match param.val().into_data().convert::<bool>().try_into_vec::<bool>() {
            Ok(keep) if keep.len() == c.values.len() => {
                for (v, k) in c.values.iter_mut().zip(keep) {
                    if !k {
                        *v = 0.0;
                    }
                }
                c.masked = true;
            }
            _ => {
                self.error = Some(PruneError::Shape {
                    what: format!("mask of {weight}"),
                    expected: c.values.len().to_string(),
                    actual: "unreadable or another length".into(),
                })
            }
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D != 2 || self.path.last().map(String::as_str) != Some("weight") {
            return;
        }
        let is_embedding = self.container.last().is_some_and(|c| c.ends_with("Embedding"));
        if is_embedding && !self.config.include_embeddings {
            return;
        }
        let path = self.path.join(".");
        let selected = self.selection.matches(&param.id, Some(&path))
            && self.group.is_none_or(|g| g.matches(&param.id, Some(&path)));
        if !selected {
            return;
        }
        let w = param.val();
        let dims = w.dims();
        match w.into_data().convert::<f32>().try_into_vec::<f32>() {
            Ok(values) => self.found.push(Candidate { path, dims: [dims[0], dims[1]], values, masked: false }),
            Err(e) => self.error = Some(PruneError::NonFinite(format!("{path} could not be read: {e:?}"))),
        }
    }
}

/// Attaches the computed masks by path.
pub(crate) struct Attach {
    pub(crate) masks: HashMap<String, Vec<bool>>,
    pub(crate) errors: Vec<String>,
}

impl Attach {
    pub(crate) fn new(masks: HashMap<String, Vec<bool>>) -> Self {
        Attach { masks, errors: Vec::new() }
    }
}

impl Reparameterizer for Attach {
    type Reparam = PruneMask;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<PruneMask>) {
        // Fresh leaves (same ids): weights kept from an earlier point of training (rewinding)
        // may belong to a graph whose tape a `backward` already consumed.
        let param = param.map(|t| {
            let grad = t.is_require_grad();
            let t = t.detach();
            if grad { t.require_grad() } else { t }
        });
        match self.masks.remove(path) {
            Some(keep) if D == 2 => {
                let device = param.val().device();
                let n = keep.len();
                let numel = param.lazy_shape().iter().product::<usize>();
                if n != numel {
                    self.errors.push(format!("{path}: mask of {n} entries for a weight of {numel}"));
                    return (param, None);
                }
                let keep = Tensor::<1, Bool>::from_data(TensorData::new(keep, [n]), &device);
                (param, Some(PruneMask { keep: Param::initialized(ParamId::new(), keep) }))
            }
            Some(_) => {
                self.errors.push(format!("{path}: not a rank-2 weight"));
                (param, None)
            }
            None => (param, None),
        }
    }
}

/// Every reparameterized parameter of a model: (parameter path, reparameterization name).
fn reparameterized<M: Module>(model: &M) -> Vec<(String, String)> {
    #[derive(Default)]
    struct Finder {
        path: Vec<String>,
        found: Vec<(String, String)>,
    }
    impl ModuleVisitor for Finder {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            if container_type == "Reparameterization" {
                self.found.push((self.path.join("."), name.to_string()));
            }
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
    }
    let mut f = Finder::default();
    model.visit(&mut f);
    f.found
}

fn foreign_reparam(path: &str, name: &str) -> PruneError {
    PruneError::InvalidConfig {
        what: format!("parameter {path}"),
        value: format!("already reparameterized ({name})"),
        expected:
            "a plain weight: fold it first (fold_masks / Module::materialize); Burn does not nest reparameterizations"
                .into(),
    }
}

/// Reads the Ember masks attached to a model's weights.
#[derive(Default)]
struct MaskReader {
    path: Vec<String>,
    container: Vec<String>,
    found: HashMap<String, Vec<bool>>,
}

impl ModuleVisitor for MaskReader {
    track_path!();
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        let n = self.path.len();
        if n >= 3
            && self.path[n - 2] == PruneMask::NAME
            && self.container[n - 2] == "Reparameterization"
            && let Ok(keep) = param.val().into_data().convert::<bool>().try_into_vec::<bool>()
        {
            self.found.insert(self.path[..n - 2].join("."), keep);
        }
    }
}

/// The keep-masks currently attached to `model`, by weight path (what [`apply_masks`] and
/// [`save_masks`] take).
pub fn current_masks<M: Module>(model: &M) -> HashMap<String, Vec<bool>> {
    let mut r = MaskReader::default();
    model.visit(&mut r);
    r.found
}

const MASKS_MAGIC: &[u8; 8] = b"EMBMASK1";

/// Writes keep-masks (one bit per entry) by weight path to a file; returns the bytes written.
///
/// # Errors
/// [`PruneError::InvalidConfig`] wrapping the I/O error.
pub fn save_masks(path: &std::path::Path, masks: &HashMap<String, Vec<bool>>) -> Result<usize> {
    let mut names: Vec<&String> = masks.keys().collect();
    names.sort();
    let mut out = MASKS_MAGIC.to_vec();
    for name in names {
        let keep = &masks[name];
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(keep.len() as u64).to_le_bytes());
        let mut bits = vec![0u8; keep.len().div_ceil(8)];
        for (i, k) in keep.iter().enumerate() {
            if *k {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        out.extend_from_slice(&bits);
    }
    std::fs::write(path, &out).map_err(|e| io_error(path, e))?;
    Ok(out.len())
}

fn io_error(path: &std::path::Path, e: impl ToString) -> PruneError {
    PruneError::InvalidConfig { what: "mask file".into(), value: path.display().to_string(), expected: e.to_string() }
}

/// Reads a file written by [`save_masks`].
///
/// # Errors
/// [`PruneError::InvalidConfig`] for I/O errors and files that are not Ember masks or are
/// truncated.
pub fn load_masks(path: &std::path::Path) -> Result<HashMap<String, Vec<bool>>> {
    let b = std::fs::read(path).map_err(|e| io_error(path, e))?;
    if b.get(..8) != Some(MASKS_MAGIC.as_slice()) {
        return Err(io_error(path, "not an Ember mask file"));
    }
    let truncated = || io_error(path, "truncated mask file");
    let mut at = 8;
    let mut out = HashMap::new();
    while at < b.len() {
        let len =
            u32::from_le_bytes(b.get(at..at + 4).ok_or_else(truncated)?.try_into().map_err(|_| truncated())?) as usize;
        at += 4;
        let name = String::from_utf8(b.get(at..at + len).ok_or_else(truncated)?.to_vec()).map_err(|_| truncated())?;
        at += len;
        let n =
            u64::from_le_bytes(b.get(at..at + 8).ok_or_else(truncated)?.try_into().map_err(|_| truncated())?) as usize;
        at += 8;
        let bits = b.get(at..at.checked_add(n.div_ceil(8)).ok_or_else(truncated)?).ok_or_else(truncated)?;
        out.insert(name, (0..n).map(|i| bits[i / 8] >> (i % 8) & 1 == 1).collect());
        at += n.div_ceil(8);
    }
    Ok(out)
}

/// Lets [`apply_masks`] read the leftovers and errors after the pass.
impl Reparameterizer for &mut Attach {
    type Reparam = PruneMask;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<PruneMask>) {
        (**self).reparameterize(path, param)
    }
}

/// Attaches keep-masks (by weight path, as [`Pruner::compute_masks`] returns them) to a model
/// without masks. With the model's weights from an earlier point of training this is
/// lottery-ticket rewinding (Frankle & Carbin 2019; Frankle et al. 2020 rewind to an early
/// iteration instead of initialization):
///
/// ```text
/// let rewind = model.clone();                         // weights at iteration k
/// for round in 1..=rounds {
///     model = train(model);
///     let s = 1.0 - (1.0 - p).powi(round);             // p of the remaining weights per round
///     let masks = Pruner::new(PruneConfig::new(s))?.compute_masks(&model)?;
///     model = apply_masks(rewind.clone(), masks)?;     // surviving weights back to iteration k
/// }
/// ```
///
/// Masks only grow across rounds: weights that are zero in the trained model rank lowest.
///
/// # Errors
/// [`PruneError::Shape`] when a mask's length differs from its weight or a path is not a
/// rank-2 weight of `model`, [`PruneError::EmptySelection`] when a path is not found.
pub fn apply_masks<M: Module>(model: M, masks: HashMap<String, Vec<bool>>) -> Result<M> {
    // Burn keeps an existing reparameterization over a new one: refuse instead of ignoring.
    if let Some((path, name)) = reparameterized(&model).iter().find(|(p, _)| masks.contains_key(p)) {
        return Err(foreign_reparam(path, name));
    }
    let mut attach = Attach::new(masks);
    let model = model.apply_reparameterization(&mut attach);
    if let Some(e) = attach.errors.first() {
        return Err(PruneError::Shape {
            what: "mask".into(),
            expected: "one keep flag per weight entry".into(),
            actual: e.clone(),
        });
    }
    if !attach.masks.is_empty() {
        let mut missing: Vec<&String> = attach.masks.keys().collect();
        missing.sort();
        return Err(PruneError::EmptySelection(format!("no weight at {missing:?}")));
    }
    Ok(model)
}

/// Folds every mask into plain weights (zeros written, masks removed; parameter ids kept).
/// This is Burn's `materialize`, so it also folds any other reparameterization (LoRA, QAT).
pub fn fold_masks<M: Module>(model: M) -> M {
    model.materialize()
}

/// Deterministic uniform score in `[0, 1)` for entry `i` of `path` (SplitMix64 of a hash).
fn random_score(seed: u64, path: &str, i: usize) -> f32 {
    let mut z = seed ^ path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    z = z.wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
}

/// One pruning pass over a model (see the [module docs](self)).
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::Device;
/// use ember_prune::{PruneConfig, Pruner};
///
/// let device = Device::flex();
/// let layer: Linear = LinearConfig::new(64, 32).init(&device);
/// let (pruned, report) = Pruner::new(PruneConfig::new(0.75)).unwrap().prune(layer).unwrap();
/// assert_eq!(report.layers[0].zeros, 64 * 32 * 3 / 4);
/// let zeros = pruned.weight.val().equal_elem(0.0).int().sum().into_scalar::<i64>();
/// assert_eq!(zeros, 1536);
/// ```
#[derive(Clone, Debug)]
pub struct Pruner {
    config: PruneConfig,
    selection: ParamGroup,
    group: Option<ParamGroup>,
    input_norms: HashMap<String, Vec<f32>>,
    scores: HashMap<String, Vec<f32>>,
}

impl Pruner {
    /// A pruner with validated settings.
    ///
    /// # Errors
    /// [`PruneError::Sparsity`] outside `[0, 1)`, [`PruneError::NM`] for `n = 0` or `n ≥ m`,
    /// [`PruneError::InvalidConfig`] for an include / exclude pattern that is not a regular
    /// expression.
    pub fn new(config: PruneConfig) -> Result<Self> {
        check_sparsity(config.sparsity)?;
        if let Granularity::NM { n, m } = config.granularity {
            mask::check_n_m(n, m, m)?;
        }
        let selection = selection(&config.include, &config.exclude)?;
        Ok(Pruner { config, selection, group: None, input_norms: HashMap::new(), scores: HashMap::new() })
    }

    /// Also require parameters to be in a Burn [`ParamGroup`].
    pub fn with_group(mut self, group: ParamGroup) -> Self {
        self.group = Some(group);
        self
    }

    /// Input-channel L2 norms `‖X_i‖₂` (length `d_in`) by weight path (`"<layer>.weight"`), for
    /// [`Criterion::Wanda`]; `ember-quant`'s `CalibrationData::input_channel_norms()` has this
    /// form.
    pub fn with_input_norms(mut self, norms: HashMap<String, Vec<f32>>) -> Self {
        self.input_norms = norms;
        self
    }

    /// Scores by weight path (length `d_in · d_out`, row-major), for [`Criterion::Movement`]
    /// (see [`MovementScores::scores`]).
    pub fn with_scores(mut self, scores: HashMap<String, Vec<f32>>) -> Self {
        self.scores = scores;
        self
    }

    /// The settings.
    pub fn config(&self) -> &PruneConfig {
        &self.config
    }

    /// Returns `model` with a mask on every selected weight, and the sparsity report. A model
    /// that already carries Ember masks is folded first: the selected weights get new masks
    /// (weights already zero rank lowest, so unstructured and neuron masks only grow; N:M may
    /// have to keep a zero in a group with more than `m − n` zeros), the others keep theirs.
    ///
    /// # Errors
    /// [`PruneError::EmptySelection`] when nothing matches; [`PruneError::NM`] when `m` does not
    /// divide a selected weight's input dimension; [`PruneError::InvalidConfig`] /
    /// [`PruneError::Shape`] for missing or mis-sized Wanda norms or movement scores;
    /// [`PruneError::NonFinite`] for NaN weights; [`PruneError::InvalidConfig`] when a weight
    /// carries another reparameterization (LoRA, QAT fake-quant): fold it first.
    pub fn prune<M: Module>(&self, model: M) -> Result<(M, SparsityReport)> {
        let candidates = self.collect(&model)?;
        let existing = reparameterized(&model);
        if let Some((path, name)) = existing.iter().find(|(_, n)| n.as_str() != PruneMask::NAME) {
            return Err(foreign_reparam(path, name));
        }
        // Masks of weights outside this pass's selection survive the fold and are re-attached.
        let mut kept_masks = current_masks(&model);
        let model = if existing.is_empty() { model } else { model.materialize() };
        let masks = self.masks(&candidates)?;
        let report = SparsityReport::new(
            candidates
                .iter()
                .zip(&masks)
                .map(|(c, m)| LayerSparsity::from_mask(&c.path, c.dims, &c.values, m))
                .collect(),
        );
        for c in &candidates {
            kept_masks.remove(&c.path);
        }
        kept_masks.extend(candidates.iter().map(|c| c.path.clone()).zip(masks));
        Ok((model.apply_reparameterization(Attach::new(kept_masks)), report))
    }

    /// The keep-masks the pass would attach, by weight path, without changing the model.
    ///
    /// # Errors
    /// As [`Pruner::prune`].
    pub fn compute_masks<M: Module>(&self, model: &M) -> Result<HashMap<String, Vec<bool>>> {
        let candidates = self.collect(model)?;
        let masks = self.masks(&candidates)?;
        Ok(candidates.into_iter().map(|c| c.path).zip(masks).collect())
    }

    fn collect<M: Module>(&self, model: &M) -> Result<Vec<Candidate>> {
        let mut v = Collector {
            path: Vec::new(),
            container: Vec::new(),
            config: &self.config,
            selection: &self.selection,
            group: self.group.as_ref(),
            found: Vec::new(),
            error: None,
        };
        model.visit(&mut v);
        if let Some(e) = v.error {
            return Err(e);
        }
        if v.found.is_empty() {
            return Err(PruneError::EmptySelection(format!(
                "include {:?}, exclude {:?}; only rank-2 `weight` parameters{} are prunable",
                self.config.include,
                self.config.exclude,
                if self.config.include_embeddings { "" } else { " outside embeddings" }
            )));
        }
        for c in &v.found {
            if c.values.iter().any(|x| !x.is_finite()) {
                return Err(PruneError::NonFinite(format!("weight {}", c.path)));
            }
        }
        Ok(v.found)
    }

    fn scores(&self, c: &Candidate) -> Result<Vec<f32>> {
        let [d_in, d_out] = c.dims;
        let mut s: Vec<f32> = match &self.config.criterion {
            Criterion::Magnitude => c.values.iter().map(|w| w.abs()).collect(),
            Criterion::Random { seed } => (0..c.values.len()).map(|i| random_score(*seed, &c.path, i)).collect(),
            Criterion::Wanda => {
                let norms = self.input_norms.get(&c.path).ok_or_else(|| PruneError::InvalidConfig {
                    what: "Wanda input norms".into(),
                    value: format!("none for {}", c.path),
                    expected: "with_input_norms() with an entry per selected weight path".into(),
                })?;
                if norms.len() != d_in {
                    return Err(PruneError::Shape {
                        what: format!("Wanda input norms of {}", c.path),
                        expected: format!("{d_in} (the weight's input dimension)"),
                        actual: norms.len().to_string(),
                    });
                }
                if norms.iter().any(|v| !v.is_finite() || *v < 0.0) {
                    return Err(PruneError::NonFinite(format!("Wanda input norms of {} (or negative norms)", c.path)));
                }
                c.values.iter().enumerate().map(|(idx, w)| w.abs() * norms[idx / d_out]).collect()
            }
            Criterion::Movement => {
                let s = self.scores.get(&c.path).ok_or_else(|| PruneError::InvalidConfig {
                    what: "movement scores".into(),
                    value: format!("none for {}", c.path),
                    expected: "with_scores() with an entry per selected weight path".into(),
                })?;
                if s.len() != c.values.len() {
                    return Err(PruneError::Shape {
                        what: format!("movement scores of {}", c.path),
                        expected: format!("{} ([{d_in}, {d_out}])", c.values.len()),
                        actual: s.len().to_string(),
                    });
                }
                s.clone()
            }
        };
        // Weights that are already zero stay pruned (masks only grow).
        for (score, w) in s.iter_mut().zip(&c.values) {
            if *w == 0.0 {
                *score = f32::NEG_INFINITY;
            }
        }
        Ok(s)
    }

    fn masks(&self, candidates: &[Candidate]) -> Result<Vec<Vec<bool>>> {
        let scores = candidates.iter().map(|c| self.scores(c)).collect::<Result<Vec<_>>>()?;
        let s = self.config.sparsity;
        match (self.config.granularity, self.config.scope) {
            (Granularity::NM { n, m }, _) => candidates
                .iter()
                .zip(&scores)
                .map(|(c, sc)| {
                    mask::n_m(sc, c.dims[0], c.dims[1], n, m).map_err(|e| match e {
                        PruneError::NM { n, m, dim, expected } => {
                            PruneError::NM { n, m, dim, expected: format!("{expected} (weight {})", c.path) }
                        }
                        e => e,
                    })
                })
                .collect(),
            (Granularity::Unstructured, Scope::PerLayer) => scores.iter().map(|sc| mask::unstructured(sc, s)).collect(),
            (Granularity::Unstructured, Scope::Global) => {
                let refs: Vec<&[f32]> = scores.iter().map(|v| v.as_slice()).collect();
                mask::global(&refs, s)
            }
            (Granularity::Neurons(axis), scope) => {
                let norms: Vec<Vec<f32>> = candidates
                    .iter()
                    .zip(&scores)
                    .map(|(c, sc)| {
                        let finite: Vec<f32> = sc.iter().map(|v| if v.is_finite() { *v } else { 0.0 }).collect();
                        if self.config.criterion == Criterion::Movement {
                            // Signed: neurons whose weights move towards zero rank lowest.
                            mask::neuron_sums(&finite, c.dims[0], c.dims[1], axis)
                        } else {
                            mask::neuron_norms(&finite, c.dims[0], c.dims[1], axis)
                        }
                    })
                    .collect();
                let neuron_masks = match scope {
                    Scope::PerLayer => norms.iter().map(|n| mask::unstructured(n, s)).collect::<Result<Vec<_>>>()?,
                    Scope::Global => mask::global(&norms.iter().map(|v| v.as_slice()).collect::<Vec<_>>(), s)?,
                };
                Ok(candidates
                    .iter()
                    .zip(neuron_masks)
                    .map(|(c, nm)| mask::expand_neurons(&nm, c.dims[0], c.dims[1], axis))
                    .collect())
            }
        }
    }
}

/// Movement-pruning scores (Sanh et al. 2020, first-order): `S ← S − W ⊙ ∂L/∂W`, accumulated
/// over fine-tuning steps for every rank-2 weight (weights moving away from zero score high).
#[derive(Clone, Debug, Default)]
pub struct MovementScores {
    scores: HashMap<String, Vec<f32>>,
    steps: usize,
}

struct MovementVisitor<'a> {
    path: Vec<String>,
    grads: &'a Gradients,
    scores: &'a mut HashMap<String, Vec<f32>>,
}

impl ModuleVisitor for MovementVisitor<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D != 2 || self.path.last().map(String::as_str) != Some("weight") {
            return;
        }
        // The stored base and its gradient (masked entries have zero gradient, so zero score).
        let w = param.val();
        let Some(g) = w.grad(self.grads) else { return };
        let (Ok(w), Ok(g)) = (
            w.inner().into_data().convert::<f32>().try_into_vec::<f32>(),
            g.into_data().convert::<f32>().try_into_vec::<f32>(),
        ) else {
            return;
        };
        let s = self.scores.entry(self.path.join(".")).or_insert_with(|| vec![0.0; w.len()]);
        if s.len() == w.len() {
            for ((s, w), g) in s.iter_mut().zip(&w).zip(&g) {
                *s -= w * g;
            }
        }
    }
}

impl MovementScores {
    /// Empty scores.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `−W ⊙ ∂L/∂W` for every rank-2 weight of `model` that has a gradient in `grads`
    /// (call after `backward`, before the optimizer step consumes the gradients).
    pub fn accumulate<M: Module>(&mut self, model: &M, grads: &Gradients) {
        model.visit(&mut MovementVisitor { path: Vec::new(), grads, scores: &mut self.scores });
        self.steps += 1;
    }

    /// Steps accumulated.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The scores by weight path, for [`Pruner::with_scores`].
    pub fn scores(&self) -> HashMap<String, Vec<f32>> {
        self.scores.clone()
    }
}
