//! Correlations (STS-B): Pearson and Spearman (ties get their average rank), accumulated over
//! batches.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result, same_len};

/// Pairs `(prediction, label)` accumulated for correlations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    x: Vec<f64>,
    y: Vec<f64>,
}

/// Average ranks (1-based), ties sharing the mean of the ranks they span.
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = rank;
        }
        i = j + 1;
    }
    ranks
}

fn pearson_of(x: &[f64], y: &[f64], what: &str) -> Result<f64> {
    // Pearson's r is scale-invariant: dividing each series by its largest magnitude keeps every
    // sum of squares finite for any finite input (1e300 would otherwise overflow to inf/inf).
    let unit = |v: &[f64]| -> Vec<f64> {
        let m = v.iter().fold(0f64, |m, a| m.max(a.abs()));
        if m > 0.0 { v.iter().map(|a| a / m).collect() } else { v.to_vec() }
    };
    let (x, y) = (&unit(x)[..], &unit(y)[..]);
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return Err(EvalError::Constant(format!("the predictions of {what}")));
    }
    if syy == 0.0 {
        return Err(EvalError::Constant(format!("the labels of {what}")));
    }
    let r = sxy / (sxx.sqrt() * syy.sqrt());
    if !r.is_finite() {
        return Err(EvalError::NonFinite(format!("the correlation of {what}")));
    }
    Ok(r.clamp(-1.0, 1.0))
}

impl Correlation {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch of predictions and labels.
    ///
    /// # Errors
    /// [`EvalError::LengthMismatch`], [`EvalError::NonFinite`].
    pub fn update(&mut self, predictions: &[f64], labels: &[f64]) -> Result<()> {
        same_len("predictions vs labels", predictions.len(), labels.len())?;
        if predictions.iter().chain(labels).any(|v| !v.is_finite()) {
            return Err(EvalError::NonFinite("predictions or labels".into()));
        }
        self.x.extend_from_slice(predictions);
        self.y.extend_from_slice(labels);
        Ok(())
    }

    fn check(&self, what: &str) -> Result<()> {
        if self.x.len() < 2 {
            return Err(EvalError::Empty(format!("{what} (at least two pairs)")));
        }
        Ok(())
    }

    /// Pearson's r.
    ///
    /// # Errors
    /// [`EvalError::Empty`] for fewer than two pairs, [`EvalError::Constant`] when either series
    /// is constant (undefined; scipy returns NaN).
    pub fn pearson(&self) -> Result<f64> {
        self.check("Pearson correlation")?;
        pearson_of(&self.x, &self.y, "Pearson correlation")
    }

    /// Spearman's ρ: Pearson's r of the average ranks (ties averaged, as scipy does).
    ///
    /// # Errors
    /// As [`Correlation::pearson`].
    pub fn spearman(&self) -> Result<f64> {
        self.check("Spearman correlation")?;
        pearson_of(&average_ranks(&self.x), &average_ranks(&self.y), "Spearman correlation")
    }
}
