//! Language-model and reading-comprehension metrics: perplexity, SQuAD-style exact match and
//! F1 with the official answer normalization, MultiRC (EM and F1a) and ReCoRD (max over
//! answers).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result, same_len};

/// Perplexity `exp(Σ NLL / tokens)`, accumulated from logits or from summed NLL.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    nll: f64,
    tokens: u64,
}

impl Perplexity {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a summed negative log-likelihood (natural log) over `tokens` tokens.
    ///
    /// # Errors
    /// [`EvalError::NonFinite`] for a NaN, infinite or negative sum.
    pub fn add_nll(&mut self, sum_nll: f64, tokens: u64) -> Result<()> {
        if !sum_nll.is_finite() || sum_nll < 0.0 {
            return Err(EvalError::NonFinite(format!("summed NLL {sum_nll}")));
        }
        self.nll += sum_nll;
        self.tokens += tokens;
        Ok(())
    }

    /// Adds `logits` (`[n, vocab]` row-major) against `targets` (`[n]`); positions whose target
    /// is `ignore_index` are skipped. Uses a max-subtracted log-sum-exp in f64.
    ///
    /// # Errors
    /// [`EvalError::LengthMismatch`], [`EvalError::InvalidClass`] for a target outside the
    /// vocabulary, [`EvalError::NonFinite`], [`EvalError::InvalidConfig`] for `vocab = 0` with
    /// targets to score.
    pub fn update_logits(
        &mut self,
        logits: &[f32],
        vocab: usize,
        targets: &[i64],
        ignore_index: Option<i64>,
    ) -> Result<()> {
        if vocab == 0 && !targets.is_empty() {
            return Err(EvalError::InvalidConfig {
                what: "vocab".into(),
                value: "0".into(),
                expected: "at least 1 (the width of each logits row)".into(),
            });
        }
        same_len("logits vs targets × vocab", logits.len(), targets.len() * vocab)?;
        if logits.iter().any(|v| !v.is_finite()) {
            return Err(EvalError::NonFinite("logits".into()));
        }
        for (row, &t) in logits.chunks(vocab.max(1)).zip(targets) {
            if Some(t) == ignore_index {
                continue;
            }
            if t < 0 || t as usize >= vocab {
                return Err(EvalError::InvalidClass {
                    what: "targets".into(),
                    class: t.max(0) as usize,
                    classes: vocab,
                });
            }
            let max = row.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b)) as f64;
            let lse = max + row.iter().map(|v| (*v as f64 - max).exp()).sum::<f64>().ln();
            self.nll += lse - row[t as usize] as f64;
            self.tokens += 1;
        }
        Ok(())
    }

    /// Tokens counted.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Mean NLL per token (nats).
    ///
    /// # Errors
    /// [`EvalError::Empty`] before any token.
    pub fn mean_nll(&self) -> Result<f64> {
        if self.tokens == 0 {
            return Err(EvalError::Empty("perplexity".into()));
        }
        Ok(self.nll / self.tokens as f64)
    }

    /// The perplexity.
    ///
    /// # Errors
    /// [`EvalError::Empty`] before any token.
    pub fn value(&self) -> Result<f64> {
        Ok(self.mean_nll()?.exp())
    }
}

/// The official SQuAD answer normalization (`normalize_answer` of the v1.1 evaluation script):
/// lower-case, remove ASCII punctuation, remove the articles `a`, `an`, `the` as whole words,
/// and collapse whitespace.
pub fn normalize_answer(s: &str) -> String {
    const PUNCT: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    let lowered = s.to_lowercase();
    let no_punct: String = lowered.chars().filter(|c| !PUNCT.contains(*c)).collect();
    // Articles as whole words (`\b(a|an|the)\b`, with Python's Unicode `\w` = alphanumeric or _).
    let mut out = String::with_capacity(no_punct.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in no_punct.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Exact match after [`normalize_answer`] (1 or 0).
pub fn exact_match(prediction: &str, truth: &str) -> f64 {
    f64::from(normalize_answer(prediction) == normalize_answer(truth))
}

/// Token-overlap F1 after [`normalize_answer`] (SQuAD v1.1: 0 when either side is empty).
pub fn token_f1(prediction: &str, truth: &str) -> f64 {
    let (p, t) = (normalize_answer(prediction), normalize_answer(truth));
    let (p, t): (Vec<&str>, Vec<&str>) =
        (p.split(' ').filter(|w| !w.is_empty()).collect(), t.split(' ').filter(|w| !w.is_empty()).collect());
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for w in &t {
        *counts.entry(w).or_default() += 1;
    }
    let mut same = 0;
    for w in &p {
        if let Some(c) = counts.get_mut(w)
            && *c > 0
        {
            *c -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let (precision, recall) = (same as f64 / p.len() as f64, same as f64 / t.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

/// SQuAD-style EM and F1 over examples, each the maximum over its gold answers (ReCoRD uses the
/// same rule), as percentages or fractions (fractions here).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SquadMetric {
    em: f64,
    f1: f64,
    n: u64,
}

impl SquadMetric {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one example.
    ///
    /// # Errors
    /// [`EvalError::Empty`] when `truths` is empty.
    pub fn update(&mut self, prediction: &str, truths: &[&str]) -> Result<()> {
        if truths.is_empty() {
            return Err(EvalError::Empty("gold answers of an example".into()));
        }
        self.em += truths.iter().map(|t| exact_match(prediction, t)).fold(0.0, f64::max);
        self.f1 += truths.iter().map(|t| token_f1(prediction, t)).fold(0.0, f64::max);
        self.n += 1;
        Ok(())
    }

    /// `(exact match, F1)` as fractions.
    ///
    /// # Errors
    /// [`EvalError::Empty`] before any example.
    pub fn value(&self) -> Result<(f64, f64)> {
        if self.n == 0 {
            return Err(EvalError::Empty("exact match / F1".into()));
        }
        Ok((self.em / self.n as f64, self.f1 / self.n as f64))
    }
}

/// MultiRC's metrics (SuperGLUE): `EM` = fraction of questions whose answer options are all
/// labelled correctly; `F1a` = binary F1 (positive = true answer) over all answer options.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MultiRc {
    questions: u64,
    exact: u64,
    tp: u64,
    fp: u64,
    fn_: u64,
}

impl MultiRc {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one question's answer options.
    ///
    /// # Errors
    /// [`EvalError::LengthMismatch`], [`EvalError::Empty`] for a question without options.
    pub fn update(&mut self, predictions: &[bool], labels: &[bool]) -> Result<()> {
        same_len("answer options", predictions.len(), labels.len())?;
        if labels.is_empty() {
            return Err(EvalError::Empty("answer options of a question".into()));
        }
        self.questions += 1;
        self.exact += u64::from(predictions == labels);
        for (&p, &l) in predictions.iter().zip(labels) {
            match (p, l) {
                (true, true) => self.tp += 1,
                (true, false) => self.fp += 1,
                (false, true) => self.fn_ += 1,
                _ => {}
            }
        }
        Ok(())
    }

    /// `(EM, F1a)`.
    ///
    /// # Errors
    /// [`EvalError::Empty`] before any question.
    pub fn value(&self) -> Result<(f64, f64)> {
        if self.questions == 0 {
            return Err(EvalError::Empty("MultiRC".into()));
        }
        let (tp, fp, fn_) = (self.tp as f64, self.fp as f64, self.fn_ as f64);
        let f1a = if tp == 0.0 { 0.0 } else { 2.0 * tp / (2.0 * tp + fp + fn_) };
        Ok((self.exact as f64 / self.questions as f64, f1a))
    }
}
