//! Metric updates straight from Burn tensors, on any device.
//!
//! Every accumulator has an `update_tensor` method taking what a model returns: class logits
//! `[batch, classes]` and `Int` labels for [`Accuracy`], [`TopKAccuracy`] and
//! [`ConfusionMatrix`]; `[n]` predictions for [`Correlation`]; LM logits `[.., vocab]` and
//! `Int` targets for [`Perplexity`]. Classification scores are small and are read to the host;
//! perplexity computes the log-softmax and picks the target's log-probability on the device, so
//! only one float per token leaves it.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use ember_eval::{Accuracy, Perplexity};
//!
//! let device = Device::default();
//! let logits = Tensor::<2>::from_floats([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]], &device);
//! let labels = Tensor::<1, Int>::from_ints([0, 1, 1], &device);
//! let mut acc = Accuracy::new();
//! acc.update_tensor(logits, labels).unwrap();
//! assert!((acc.value().unwrap() - 2.0 / 3.0).abs() < 1e-12);
//!
//! // Uniform logits over 4 tokens: perplexity 4; the -100 target is ignored.
//! let lm = Tensor::<3>::zeros([1, 3, 4], &device);
//! let targets = Tensor::<2, Int>::from_ints([[1, 3, -100]], &device);
//! let mut ppl = Perplexity::new();
//! ppl.update_tensor(lm, targets, Some(-100)).unwrap();
//! assert!((ppl.value().unwrap() - 4.0).abs() < 1e-5);
//! assert_eq!(ppl.tokens(), 2);
//! ```

use crate::classification::{Accuracy, ConfusionMatrix, TopKAccuracy};
use crate::error::{EvalError, Result, same_len};
use crate::language::Perplexity;
use crate::regression::Correlation;
use burn::tensor::{Int, Tensor};

fn host_f32<const D: usize>(what: &str, t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| EvalError::Data { what: what.into(), message: format!("{e:?}") })
}

fn host_i64<const D: usize>(what: &str, t: Tensor<D, Int>) -> Result<Vec<i64>> {
    t.into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| EvalError::Data { what: what.into(), message: format!("{e:?}") })
}

/// Reads `[batch, classes]` scores and `[batch]` labels (labels checked to be ≥ 0).
fn scores_and_labels(scores: Tensor<2>, labels: Tensor<1, Int>) -> Result<(Vec<f32>, usize, Vec<usize>)> {
    let [batch, classes] = scores.dims();
    same_len("scores rows vs labels", batch, labels.dims()[0])?;
    let s = host_f32("scores", scores)?;
    if s.iter().any(|v| !v.is_finite()) {
        return Err(EvalError::NonFinite("scores".into()));
    }
    let labels = host_i64("labels", labels)?
        .into_iter()
        .map(|l| {
            usize::try_from(l).map_err(|_| EvalError::InvalidConfig {
                what: "label".into(),
                value: l.to_string(),
                expected: format!("a class index in 0..{classes}"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((s, classes, labels))
}

/// Index of the highest score in each row (ties go to the lower index).
fn argmax_rows(scores: &[f32], classes: usize) -> Vec<usize> {
    scores
        .chunks(classes.max(1))
        .map(|row| row.iter().enumerate().fold(0, |best, (i, v)| if *v > row[best] { i } else { best }))
        .collect()
}

impl Accuracy {
    /// Adds a batch of class scores `[batch, classes]` (logits or probabilities; the argmax is
    /// the prediction, ties to the lower index) and labels `[batch]`.
    ///
    /// # Errors
    /// [`EvalError::LengthMismatch`], [`EvalError::NonFinite`] for NaN/Inf scores,
    /// [`EvalError::InvalidConfig`] for a negative label, [`EvalError::InvalidClass`] for a label
    /// ≥ `classes`.
    pub fn update_tensor(&mut self, scores: Tensor<2>, labels: Tensor<1, Int>) -> Result<()> {
        let (s, classes, labels) = scores_and_labels(scores, labels)?;
        if let Some(&class) = labels.iter().find(|l| **l >= classes) {
            return Err(EvalError::InvalidClass { what: "labels".into(), class, classes });
        }
        self.update(&argmax_rows(&s, classes), &labels)
    }
}

impl TopKAccuracy {
    /// Adds a batch of class scores `[batch, classes]` and labels `[batch]`.
    ///
    /// # Errors
    /// As [`TopKAccuracy::update`], and [`EvalError::InvalidConfig`] for a negative label.
    pub fn update_tensor(&mut self, scores: Tensor<2>, labels: Tensor<1, Int>) -> Result<()> {
        let (s, classes, labels) = scores_and_labels(scores, labels)?;
        self.update(&s, classes, &labels)
    }
}

impl ConfusionMatrix {
    /// Adds a batch of class scores `[batch, classes]` (argmax prediction) and labels `[batch]`.
    ///
    /// # Errors
    /// As [`ConfusionMatrix::update`]; [`EvalError::LengthMismatch`] when the score width is not
    /// the matrix's class count.
    pub fn update_tensor(&mut self, scores: Tensor<2>, labels: Tensor<1, Int>) -> Result<()> {
        let (s, classes, labels) = scores_and_labels(scores, labels)?;
        same_len("score columns vs confusion-matrix classes", classes, self.classes())?;
        self.update(&argmax_rows(&s, classes), &labels)
    }
}

impl Correlation {
    /// Adds `[n]` predictions and `[n]` labels (regression outputs such as STS-B scores).
    ///
    /// # Errors
    /// As [`Correlation::update`].
    pub fn update_tensor(&mut self, predictions: Tensor<1>, labels: Tensor<1>) -> Result<()> {
        same_len("predictions vs labels", predictions.dims()[0], labels.dims()[0])?;
        let p: Vec<f64> = host_f32("predictions", predictions)?.into_iter().map(f64::from).collect();
        let l: Vec<f64> = host_f32("labels", labels)?.into_iter().map(f64::from).collect();
        self.update(&p, &l)
    }
}

impl Perplexity {
    /// Adds LM `logits` `[.., vocab]` (rank `D` ≥ 2) and `targets` with the leading dims
    /// (rank `E = D − 1`); positions whose target equals `ignore_index` (for example −100 for
    /// padding) are skipped. The log-softmax runs on the logits' device in f32 and the
    /// per-token negative log-likelihoods are summed on the host in f64.
    ///
    /// # Errors
    /// [`EvalError::LengthMismatch`] when the leading dims differ (or `E ≠ D − 1`),
    /// [`EvalError::InvalidClass`] for a target ≥ vocab, [`EvalError::InvalidConfig`] for a
    /// negative target other than the ignore index, [`EvalError::NonFinite`] when a kept
    /// position's NLL is not finite (NaN/+Inf logits, or −Inf at its target).
    pub fn update_tensor<const D: usize, const E: usize>(
        &mut self,
        logits: Tensor<D>,
        targets: Tensor<E, Int>,
        ignore_index: Option<i64>,
    ) -> Result<()> {
        same_len("logits rank − 1 vs targets rank", D.saturating_sub(1), E)?;
        let dims = logits.dims();
        let vocab = dims[D - 1];
        let lead: usize = dims[..D - 1].iter().product();
        let tdims = targets.dims();
        if dims[..D - 1] != tdims[..] {
            return Err(EvalError::LengthMismatch {
                what: format!("logits leading dims {:?} vs targets dims {:?}", &dims[..D - 1], tdims),
                left: lead,
                right: tdims.iter().product(),
            });
        }
        if lead == 0 {
            return Ok(());
        }
        let t = host_i64("targets", targets.clone())?;
        for &v in &t {
            if Some(v) == ignore_index {
                continue;
            }
            if v < 0 {
                return Err(EvalError::InvalidConfig {
                    what: "target".into(),
                    value: v.to_string(),
                    expected: format!("a token index in 0..{vocab} or the ignore index {ignore_index:?}"),
                });
            }
            if v as usize >= vocab {
                return Err(EvalError::InvalidClass { what: "targets".into(), class: v as usize, classes: vocab });
            }
        }
        let device = logits.device();
        let x: Tensor<2> = logits.reshape([lead, vocab]);
        let index: Vec<i64> = t.iter().map(|v| if Some(*v) == ignore_index { 0 } else { *v }).collect();
        let index =
            Tensor::<1, Int>::from_data(burn::tensor::TensorData::new(index, [lead]), &device).reshape([lead, 1]);
        let max = x.clone().max_dim(1);
        let lse = (x.clone() - max.clone()).exp().sum_dim(1).log() + max;
        let nll = host_f32("negative log-likelihoods", (lse - x.gather(1, index)).reshape([lead]))?;
        let (mut sum, mut n) = (0f64, 0u64);
        for (l, v) in nll.iter().zip(&t) {
            if Some(*v) != ignore_index {
                // NaN/Inf logits in a kept row make its NLL non-finite (−inf at other entries,
                // a legitimate vocabulary mask, does not); ignored rows are not looked at.
                if !l.is_finite() {
                    return Err(EvalError::NonFinite(format!(
                        "logits (negative log-likelihood {l} at a kept position)"
                    )));
                }
                sum += f64::from(l.max(0.0)); // f32 rounding can give −1e−7
                n += 1;
            }
        }
        if n == 0 {
            return Ok(());
        }
        self.add_nll(sum, n)
    }
}
