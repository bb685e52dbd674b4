//! Soft-target knowledge distillation (Hinton et al. 2015) and hard-label cross-entropy.
//!
//! The soft-target loss at temperature `T` is
//!
//! ```text
//! L_KD = T² · KL(softmax(t/T) ‖ softmax(s/T))
//!      = T² · Σ_c p_c · (log p_c − log q_c),   p = softmax(t/T), q = softmax(s/T)
//! ```
//!
//! averaged over the rows that count (classifier: the batch; sequence model: the positions
//! that are not padding). Both log-probabilities come from a max-subtracted `log_softmax`, so
//! large logits do not overflow, and rows whose KL rounds below zero are clamped to 0.
//!
//! **Why T².** The gradient of `KL(p‖q)` with respect to the student logits is `(q − p)/T`,
//! and for large `T` `q − p ≈ (s − t)/(T·C)` (centred), so the unscaled gradient shrinks like
//! `1/T²`. Multiplying by `T²` keeps the soft loss's gradient magnitude roughly independent of
//! the temperature, so changing `T` does not silently re-weight it against the hard-label loss
//! (Hinton et al. 2015, §2; Hugging Face's DistilBERT distiller does the same). TextBrewer's
//! `kd_ce_loss` omits the factor: to reproduce its numbers, set
//! [`KdLossConfig::t_squared`] to `false`.

use burn::config::Config;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor};

use crate::error::{DistillError, Result, shape};

/// Checks that a temperature is usable.
///
/// # Errors
/// [`DistillError::Temperature`] unless `t` is finite and > 0.
pub fn check_temperature(t: f64) -> Result<()> {
    if t.is_finite() && t > 0.0 { Ok(()) } else { Err(DistillError::Temperature(t)) }
}

/// Checks that a tensor has no NaN or infinity (one device read).
///
/// # Errors
/// [`DistillError::NonFinite`] naming `what`.
pub fn check_finite<const D: usize>(what: &str, t: &Tensor<D>) -> Result<()> {
    if t.dims().contains(&0) {
        return Ok(());
    }
    if t.clone().is_finite().all().into_scalar::<bool>() {
        Ok(())
    } else {
        Err(DistillError::NonFinite { what: what.into() })
    }
}

/// Row weights `[n]` (1 = counts, 0 = padding) from a `[batch, seq]` padding mask (`true` =
/// padding), checked against the expected `[batch, seq]`.
pub(crate) fn row_weights(pad_mask: Option<Tensor<2, Bool>>, batch: usize, seq: usize) -> Result<Option<Tensor<1>>> {
    match pad_mask {
        None => Ok(None),
        Some(m) => {
            if m.dims() != [batch, seq] {
                return Err(shape("pad_mask", format!("[{batch}, {seq}] (true = padding)"), m.dims()));
            }
            Ok(Some(m.bool_not().float().reshape([batch * seq])))
        }
    }
}

/// Mean of every element; 0 (not NaN) for an empty tensor.
pub(crate) fn safe_mean<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    if t.dims().contains(&0) { zero_loss(&t.device()) } else { t.mean() }
}

/// A loss of exactly 0, written from the host: with Burn's kernel fusion (wgpu), a `zeros`
/// fill queued behind ops on empty tensors was seen to come back as uninitialized memory.
pub(crate) fn zero_loss(device: &burn::tensor::Device) -> Tensor<1> {
    Tensor::from_data(burn::tensor::TensorData::new(vec![0f32], [1]), device)
}

/// Mean of `values` (`[n]`) over the rows with weight 1; 0 when no row counts. Rows with weight
/// 0 are replaced by 0 before summing, so NaN or infinity there cannot leak into the mean.
pub(crate) fn masked_mean(values: Tensor<1>, weights: Option<Tensor<1>>) -> Tensor<1> {
    match weights {
        None => safe_mean(values),
        Some(_) if values.dims()[0] == 0 => zero_loss(&values.device()),
        Some(w) => {
            let count = w.clone().sum().clamp_min(1.0);
            values.mask_fill(w.equal_elem(0.0), 0.0).sum() / count
        }
    }
}

/// Per-row `KL(softmax(t/T) ‖ softmax(s/T))` of `[n, c]` logits, `[n]`, clamped at 0.
pub(crate) fn kl_rows(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Tensor<1> {
    let n = student.dims()[0];
    let log_q = log_softmax(student / temperature, 1);
    let log_p = log_softmax(teacher / temperature, 1);
    let p = log_p.clone().exp();
    (p * (log_p - log_q)).sum_dim(1).reshape([n]).clamp_min(0.0)
}

fn check_pair(student: &[usize], teacher: &[usize]) -> Result<()> {
    let (s_last, t_last) = (student[student.len() - 1], teacher[teacher.len() - 1]);
    if s_last != t_last {
        return Err(DistillError::VocabMismatch { teacher: t_last, student: s_last });
    }
    if student != teacher {
        return Err(shape("teacher logits", format!("the student's shape {student:?}"), teacher));
    }
    if s_last == 0 {
        return Err(shape("logits", "at least one class", student));
    }
    Ok(())
}

/// Settings of the soft-target loss and its mix with the hard-label loss.
#[derive(Config, Debug)]
pub struct KdLossConfig {
    /// Softmax temperature `T` (> 0). Hinton et al. use 1–20; DistilBERT 2; TextBrewer's
    /// examples 4–8.
    #[config(default = 1.0)]
    pub temperature: f64,
    /// Multiply the KL term by `T²` (default; see the module docs).
    #[config(default = true)]
    pub t_squared: bool,
    /// Weight `α` of the soft loss in [`KdLoss::forward_mixed`]: `α·L_KD + (1 − α)·L_CE`.
    #[config(default = 0.5)]
    pub alpha: f64,
    /// Label value that [`KdLoss::forward_mixed_seq`] skips (Hugging Face's `-100`).
    #[config(default = "Some(-100)")]
    pub ignore_index: Option<i64>,
    /// Check the logits given to [`KdLoss`] for NaN and infinity (one device read each). The
    /// free functions and the hard-label loss always check.
    #[config(default = true)]
    pub check_finite: bool,
}

impl KdLossConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`DistillError::Temperature`] for `T ≤ 0`, [`DistillError::InvalidConfig`] for `α`
    /// outside `[0, 1]`.
    pub fn init(&self) -> Result<KdLoss> {
        check_temperature(self.temperature)?;
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(crate::error::invalid("alpha", self.alpha, "a weight in [0, 1]"));
        }
        Ok(KdLoss {
            temperature: self.temperature,
            scale: if self.t_squared { self.temperature * self.temperature } else { 1.0 },
            alpha: self.alpha,
            ignore_index: self.ignore_index,
            check_finite: self.check_finite,
        })
    }
}

/// The soft-target loss (see the module docs) with validated settings.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use ember_distill::KdLossConfig;
///
/// let device = Device::flex();
/// let kd = KdLossConfig::new().with_temperature(2.0).init().unwrap();
/// let teacher = Tensor::<2>::from_floats([[2.0, 0.0, -1.0]], &device);
/// let loss = kd.forward(teacher.clone(), teacher).unwrap();
/// assert_eq!(loss.into_scalar::<f32>(), 0.0);
/// ```
#[derive(Clone, Debug)]
pub struct KdLoss {
    temperature: f64,
    scale: f64,
    alpha: f64,
    ignore_index: Option<i64>,
    check_finite: bool,
}

impl KdLoss {
    /// The temperature.
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// Soft-target loss of classifier logits `[batch, classes]`, averaged over the batch.
    ///
    /// # Errors
    /// [`DistillError::VocabMismatch`] / [`DistillError::Shape`] when the shapes differ,
    /// [`DistillError::NonFinite`] for NaN or infinity in either input.
    pub fn forward(&self, student: Tensor<2>, teacher: Tensor<2>) -> Result<Tensor<1>> {
        check_pair(&student.dims(), &teacher.dims())?;
        if self.check_finite {
            check_finite("student logits", &student)?;
            check_finite("teacher logits", &teacher)?;
        }
        if student.dims()[0] == 0 {
            return Ok(zero_loss(&student.device()));
        }
        Ok(kl_rows(student, teacher.detach(), self.temperature).mean() * self.scale)
    }

    /// Soft-target loss of sequence logits `[batch, seq, vocab]`, averaged over the positions
    /// where `pad_mask` (`[batch, seq]`, `true` = padding) is `false`; 0 if there are none.
    ///
    /// # Errors
    /// As [`KdLoss::forward`], and [`DistillError::Shape`] for a mask of the wrong shape.
    pub fn forward_seq(
        &self,
        student: Tensor<3>,
        teacher: Tensor<3>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<1>> {
        check_pair(&student.dims(), &teacher.dims())?;
        if self.check_finite {
            check_finite("student logits", &student)?;
            check_finite("teacher logits", &teacher)?;
        }
        let [b, s, v] = student.dims();
        let weights = row_weights(pad_mask, b, s)?;
        let kl = kl_rows(student.reshape([b * s, v]), teacher.detach().reshape([b * s, v]), self.temperature);
        Ok(masked_mean(kl, weights) * self.scale)
    }

    /// `α · L_KD + (1 − α) · L_CE` for a classifier, with `labels` `[batch]`.
    ///
    /// # Errors
    /// As [`KdLoss::forward`] and [`hard_label_loss`].
    pub fn forward_mixed(&self, student: Tensor<2>, teacher: Tensor<2>, labels: Tensor<1, Int>) -> Result<Tensor<1>> {
        let soft = self.forward(student.clone(), teacher)?;
        if self.alpha == 1.0 {
            return Ok(soft);
        }
        let hard = hard_label_loss(student, labels)?;
        Ok(soft * self.alpha + hard * (1.0 - self.alpha))
    }

    /// `α · L_KD + (1 − α) · L_CE` for sequence logits, with `labels` `[batch, seq]`. The soft
    /// term covers every position that is not padding; the hard term also skips positions whose
    /// label is the ignore index (the teacher still has a distribution there).
    ///
    /// # Errors
    /// As [`KdLoss::forward_seq`] and [`hard_label_loss_seq`].
    pub fn forward_mixed_seq(
        &self,
        student: Tensor<3>,
        teacher: Tensor<3>,
        labels: Tensor<2, Int>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<1>> {
        let [b, s, _] = student.dims();
        if labels.dims() != [b, s] {
            return Err(shape("labels", format!("[{b}, {s}] like the logits"), labels.dims()));
        }
        let soft = self.forward_seq(student.clone(), teacher, pad_mask.clone())?;
        if self.alpha == 1.0 {
            return Ok(soft);
        }
        let hard = hard_label_loss_seq(student, labels, self.ignore_index, pad_mask)?;
        Ok(soft * self.alpha + hard * (1.0 - self.alpha))
    }
}

/// `pad_mask` or-ed with `labels == ignore_index` (`true` = skip).
pub(crate) fn combine_masks(
    pad_mask: Option<Tensor<2, Bool>>,
    labels: &Tensor<2, Int>,
    ignore_index: Option<i64>,
) -> Result<Tensor<2, Bool>> {
    let dims = labels.dims();
    let mut mask = match ignore_index {
        Some(i) => labels.clone().equal_elem(i),
        None => Tensor::<2, Bool>::full(dims, false, &labels.device()),
    };
    if let Some(p) = pad_mask {
        if p.dims() != dims {
            return Err(shape("pad_mask", format!("the labels' shape {dims:?}"), p.dims()));
        }
        mask = mask.bool_or(p);
    }
    Ok(mask)
}

/// Soft-target loss `T² · KL(softmax(t/T) ‖ softmax(s/T))` of classifier logits
/// `[batch, classes]`, averaged over the batch.
///
/// # Errors
/// As [`KdLoss::forward`], and [`DistillError::Temperature`].
pub fn soft_target_kd_loss(student: Tensor<2>, teacher: Tensor<2>, temperature: f64) -> Result<Tensor<1>> {
    KdLossConfig::new().with_temperature(temperature).init()?.forward(student, teacher)
}

/// [`soft_target_kd_loss`] for `[batch, seq, vocab]` logits with a padding mask.
///
/// # Errors
/// As [`KdLoss::forward_seq`], and [`DistillError::Temperature`].
pub fn soft_target_kd_loss_seq(
    student: Tensor<3>,
    teacher: Tensor<3>,
    temperature: f64,
    pad_mask: Option<Tensor<2, Bool>>,
) -> Result<Tensor<1>> {
    KdLossConfig::new().with_temperature(temperature).init()?.forward_seq(student, teacher, pad_mask)
}

/// Checks class labels against `classes` (one device read), skipping `ignore`.
fn check_labels<const D: usize>(labels: &Tensor<D, Int>, classes: usize, ignore: Option<i64>) -> Result<()> {
    if labels.dims().contains(&0) {
        return Ok(());
    }
    let bad = labels.clone().lower_elem(0).bool_or(labels.clone().greater_equal_elem(classes as i64));
    let bad = match ignore {
        Some(i) => bad.bool_and(labels.clone().not_equal_elem(i)),
        None => bad,
    };
    if bad.any().into_scalar::<bool>() {
        return Err(crate::error::invalid(
            "labels",
            "a value outside the class range",
            format!(
                "class indices in [0, {classes}){}",
                ignore.map(|i| format!(" or the ignore index {i}")).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// Per-row cross-entropy `−log softmax(logits)[label]` of `[n, c]` logits, `[n]`.
pub(crate) fn ce_rows(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let n = logits.dims()[0];
    let log_q = log_softmax(logits, 1);
    log_q.gather(1, labels.reshape([n, 1])).reshape([n]).neg()
}

/// Hard-label cross-entropy of classifier logits `[batch, classes]` against `labels`
/// `[batch]`, averaged over the batch.
///
/// # Errors
/// [`DistillError::Shape`] for mismatched batch sizes, [`DistillError::InvalidConfig`] for
/// labels outside `[0, classes)`, [`DistillError::NonFinite`] for NaN or infinite logits.
pub fn hard_label_loss(logits: Tensor<2>, labels: Tensor<1, Int>) -> Result<Tensor<1>> {
    let [n, c] = logits.dims();
    if labels.dims() != [n] {
        return Err(shape("labels", format!("[{n}] (one class per row)"), labels.dims()));
    }
    check_labels(&labels, c, None)?;
    check_finite("student logits", &logits)?;
    if n == 0 {
        return Ok(zero_loss(&logits.device()));
    }
    Ok(ce_rows(logits, labels).mean())
}

/// Hard-label cross-entropy of `[batch, seq, vocab]` logits against `labels` `[batch, seq]`,
/// averaged over the positions that are not padding and whose label is not `ignore_index`.
///
/// # Errors
/// As [`hard_label_loss`].
pub fn hard_label_loss_seq(
    logits: Tensor<3>,
    labels: Tensor<2, Int>,
    ignore_index: Option<i64>,
    pad_mask: Option<Tensor<2, Bool>>,
) -> Result<Tensor<1>> {
    let [b, s, v] = logits.dims();
    if labels.dims() != [b, s] {
        return Err(shape("labels", format!("[{b}, {s}]"), labels.dims()));
    }
    check_labels(&labels, v, ignore_index)?;
    check_finite("student logits", &logits)?;
    let skip = combine_masks(pad_mask, &labels, ignore_index)?;
    let safe = labels.mask_fill(skip.clone(), 0).reshape([b * s]);
    let ce = ce_rows(logits.reshape([b * s, v]), safe);
    Ok(masked_mean(ce, Some(skip.bool_not().float().reshape([b * s]))))
}
