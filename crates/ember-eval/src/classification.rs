//! Classification metrics as accumulators over batches: accuracy, top-k accuracy, and a
//! confusion matrix giving precision / recall / F1 (binary, macro, micro, weighted, per class)
//! and the Matthews correlation coefficient.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result, same_len};

fn check_classes(what: &str, v: &[usize], classes: usize) -> Result<()> {
    match v.iter().find(|c| **c >= classes) {
        Some(&class) => Err(EvalError::InvalidClass { what: what.into(), class, classes }),
        None => Ok(()),
    }
}

/// Fraction of predictions equal to the labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    correct: u64,
    total: u64,
}

impl Accuracy {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch.
    ///
    /// # Errors
    /// [`EvalError::LengthMismatch`] when the lengths differ.
    pub fn update(&mut self, predictions: &[usize], labels: &[usize]) -> Result<()> {
        same_len("predictions vs labels", predictions.len(), labels.len())?;
        self.correct += predictions.iter().zip(labels).filter(|(p, l)| p == l).count() as u64;
        self.total += labels.len() as u64;
        Ok(())
    }

    /// The accuracy so far.
    ///
    /// # Errors
    /// [`EvalError::Empty`] before any example.
    pub fn value(&self) -> Result<f64> {
        if self.total == 0 {
            return Err(EvalError::Empty("accuracy".into()));
        }
        Ok(self.correct as f64 / self.total as f64)
    }
}

/// Fraction of examples whose label is among the `k` highest scores (ties broken towards the
/// lower class index, as a stable sort would).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopKAccuracy {
    k: usize,
    hits: u64,
    total: u64,
}

impl TopKAccuracy {
    /// An accumulator for top-`k`.
    ///
    /// # Errors
    /// [`EvalError::InvalidConfig`] for `k = 0`.
    pub fn new(k: usize) -> Result<Self> {
        if k == 0 {
            return Err(EvalError::InvalidConfig { what: "k".into(), value: "0".into(), expected: "k ≥ 1".into() });
        }
        Ok(TopKAccuracy { k, hits: 0, total: 0 })
    }

    /// Adds a batch of `scores` (`[n, classes]` row-major) and `labels` (`[n]`).
    ///
    /// # Errors
    /// [`EvalError::LengthMismatch`] when `scores` is not `n · classes` long,
    /// [`EvalError::InvalidClass`] for a label outside the classes, [`EvalError::NonFinite`].
    pub fn update(&mut self, scores: &[f32], classes: usize, labels: &[usize]) -> Result<()> {
        same_len("scores vs labels × classes", scores.len(), labels.len() * classes)?;
        check_classes("labels", labels, classes)?;
        if scores.iter().any(|v| !v.is_finite()) {
            return Err(EvalError::NonFinite("scores".into()));
        }
        for (row, &label) in scores.chunks(classes.max(1)).zip(labels) {
            let target = row[label];
            // Rank of the label: classes scoring higher, or equal with a lower index.
            let rank = row.iter().enumerate().filter(|(c, s)| **s > target || (**s == target && *c < label)).count();
            if rank < self.k {
                self.hits += 1;
            }
        }
        self.total += labels.len() as u64;
        Ok(())
    }

    /// The top-k accuracy so far.
    ///
    /// # Errors
    /// [`EvalError::Empty`] before any example.
    pub fn value(&self) -> Result<f64> {
        if self.total == 0 {
            return Err(EvalError::Empty("top-k accuracy".into()));
        }
        Ok(self.hits as f64 / self.total as f64)
    }
}

/// How per-class scores are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Average {
    /// The score of one positive class (GLUE's MRPC/QQP F1: class 1).
    Binary {
        /// The positive class.
        positive: usize,
    },
    /// Unweighted mean over classes.
    Macro,
    /// From the pooled counts (equals accuracy for single-label classification).
    Micro,
    /// Mean over classes weighted by their support (true count).
    Weighted,
}

/// Precision, recall and F1 of one class or an average.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// A confusion matrix over `classes` classes, accumulated over batches
/// (`counts[label][prediction]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

/// `a / b`, 0 when `b = 0` (scikit-learn's `zero_division=0`).
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

impl ConfusionMatrix {
    /// An empty matrix.
    ///
    /// # Errors
    /// [`EvalError::InvalidConfig`] for fewer than 2 classes.
    pub fn new(classes: usize) -> Result<Self> {
        if classes < 2 {
            return Err(EvalError::InvalidConfig {
                what: "classes".into(),
                value: classes.to_string(),
                expected: "at least 2".into(),
            });
        }
        Ok(ConfusionMatrix { classes, counts: vec![0; classes * classes] })
    }

    /// Adds a batch.
    ///
    /// # Errors
    /// [`EvalError::LengthMismatch`], [`EvalError::InvalidClass`].
    pub fn update(&mut self, predictions: &[usize], labels: &[usize]) -> Result<()> {
        same_len("predictions vs labels", predictions.len(), labels.len())?;
        check_classes("predictions", predictions, self.classes)?;
        check_classes("labels", labels, self.classes)?;
        for (&p, &l) in predictions.iter().zip(labels) {
            self.counts[l * self.classes + p] += 1;
        }
        Ok(())
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// How often `label` was predicted as `prediction` (0 outside the classes).
    pub fn count(&self, label: usize, prediction: usize) -> u64 {
        if label >= self.classes || prediction >= self.classes {
            return 0;
        }
        self.counts[label * self.classes + prediction]
    }

    /// Examples accumulated.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn tp_fp_fn(&self, c: usize) -> (f64, f64, f64) {
        let tp = self.count(c, c) as f64;
        let predicted: u64 = (0..self.classes).map(|l| self.count(l, c)).sum();
        let actual: u64 = (0..self.classes).map(|p| self.count(c, p)).sum();
        (tp, predicted as f64 - tp, actual as f64 - tp)
    }

    /// Precision, recall and F1 of class `c` (0 where undefined, like scikit-learn's
    /// `zero_division=0`).
    pub fn class(&self, c: usize) -> Prf {
        let (tp, fp, fn_) = self.tp_fp_fn(c);
        let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
        Prf { precision: p, recall: r, f1: ratio(2.0 * tp, 2.0 * tp + fp + fn_) }
    }

    /// Averaged precision, recall and F1.
    ///
    /// # Errors
    /// [`EvalError::Empty`] before any example, [`EvalError::InvalidConfig`] for a positive
    /// class outside the classes.
    pub fn prf(&self, average: Average) -> Result<Prf> {
        if self.total() == 0 {
            return Err(EvalError::Empty("precision / recall / F1".into()));
        }
        let all = 0..self.classes;
        Ok(match average {
            Average::Binary { positive } => {
                if positive >= self.classes {
                    return Err(EvalError::InvalidConfig {
                        what: "positive class".into(),
                        value: positive.to_string(),
                        expected: format!("0..{}", self.classes),
                    });
                }
                self.class(positive)
            }
            Average::Macro => {
                let n = self.classes as f64;
                let s = all
                    .map(|c| self.class(c))
                    .fold((0.0, 0.0, 0.0), |a, m| (a.0 + m.precision, a.1 + m.recall, a.2 + m.f1));
                Prf { precision: s.0 / n, recall: s.1 / n, f1: s.2 / n }
            }
            Average::Micro => {
                let (tp, fp, fn_) =
                    all.map(|c| self.tp_fp_fn(c)).fold((0.0, 0.0, 0.0), |a, m| (a.0 + m.0, a.1 + m.1, a.2 + m.2));
                Prf {
                    precision: ratio(tp, tp + fp),
                    recall: ratio(tp, tp + fn_),
                    f1: ratio(2.0 * tp, 2.0 * tp + fp + fn_),
                }
            }
            Average::Weighted => {
                let total = self.total() as f64;
                let s = all
                    .map(|c| (self.class(c), (self.tp_fp_fn(c).0 + self.tp_fp_fn(c).2) / total))
                    .fold((0.0, 0.0, 0.0), |a, (m, w)| (a.0 + w * m.precision, a.1 + w * m.recall, a.2 + w * m.f1));
                Prf { precision: s.0, recall: s.1, f1: s.2 }
            }
        })
    }

    /// Matthews correlation coefficient, multi-class form (Gorodkin 2004; scikit-learn's
    /// `matthews_corrcoef`): `(c·s − Σ p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²))` with `c` correct,
    /// `s` total, `p_k` predicted and `t_k` true counts. Equals the binary formula for two
    /// classes. Defined as 0 when a denominator factor is 0 (all predictions or all labels in
    /// one class), as scikit-learn does.
    ///
    /// # Errors
    /// [`EvalError::Empty`] before any example.
    pub fn mcc(&self) -> Result<f64> {
        let s = self.total() as f64;
        if s == 0.0 {
            return Err(EvalError::Empty("Matthews correlation".into()));
        }
        let c: f64 = (0..self.classes).map(|k| self.count(k, k) as f64).sum();
        let p: Vec<f64> = (0..self.classes).map(|k| (0..self.classes).map(|l| self.count(l, k) as f64).sum()).collect();
        let t: Vec<f64> = (0..self.classes).map(|k| (0..self.classes).map(|q| self.count(k, q) as f64).sum()).collect();
        let pt: f64 = p.iter().zip(&t).map(|(a, b)| a * b).sum();
        let pp: f64 = p.iter().map(|a| a * a).sum();
        let tt: f64 = t.iter().map(|a| a * a).sum();
        let denom = ((s * s - pp) * (s * s - tt)).sqrt();
        Ok(if denom == 0.0 { 0.0 } else { (c * s - pt) / denom })
    }
}
