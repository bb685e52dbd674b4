//! Intermediate-representation losses: hidden states (TinyBERT MSE, DistilBERT cosine,
//! Patient-KD), attention distributions (TinyBERT MSE, MiniLM KL) and self-attention relations
//! (MiniLM value relation).
//!
//! All losses take plain tensors: the models return the hidden states, attention probabilities
//! and value vectors (Burn has no forward hooks), and the teacher's side is detached. Widths
//! must match; when the student is narrower, pass its hidden states through a learned
//! [`Projection`] first (TinyBERT's `W_h`). A padding mask `[batch, seq]` (`true` = padding)
//! removes padded positions from every average; when no position counts the loss is 0.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Tensor};

use crate::error::{DistillError, Result, shape};
use crate::kd::{check_finite, masked_mean, row_weights, safe_mean};

/// Smallest probability used inside a logarithm (keeps `0 · log 0` at 0, never NaN).
const PROB_FLOOR: f64 = 1e-12;
/// Smallest norm used in a division.
const NORM_FLOOR: f64 = 1e-8;
/// Score given to padded keys before a softmax: −10⁴, the value of ember-layers'
/// `MASKED_SCORE` (this crate does not depend on ember-layers), finite in f16 and bf16 (−1e9
/// would overflow to −inf there), and far below any real relation score.
const MASKED_SCORE: f64 = -1e4;

/// A learned linear map from the student's width to the teacher's (TinyBERT's `W_h`, Eq. 7):
/// `H_S · W_h` is compared with `H_T`. It is trained with the student and is not part of it, so
/// exporting the student drops it.
#[derive(Module, Debug)]
pub struct Projection {
    /// The map `d_student → d_teacher` (with bias, as TextBrewer's `linear` projection).
    pub linear: Linear,
}

impl Projection {
    /// A projection `d_student → d_teacher` on `device` (the student's autodiff device).
    pub fn new(d_student: usize, d_teacher: usize, device: &Device) -> Self {
        Projection { linear: LinearConfig::new(d_student, d_teacher).init(device) }
    }

    /// Input width.
    pub fn d_student(&self) -> usize {
        self.linear.weight.dims()[0]
    }

    /// Output width.
    pub fn d_teacher(&self) -> usize {
        self.linear.weight.dims()[1]
    }

    /// Projects `[.., d_student]` to `[.., d_teacher]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.linear.forward(x)
    }
}

fn check_same<const D: usize>(what: &str, student: &Tensor<D>, teacher: &Tensor<D>) -> Result<()> {
    let (s, t) = (student.dims(), teacher.dims());
    if s != t {
        return Err(DistillError::Shape {
            what: format!("{what} (teacher vs student)"),
            expected: format!("the student's shape {s:?} (use a Projection when only the widths differ)"),
            actual: format!("{t:?}"),
        });
    }
    check_finite(&format!("student {what}"), student)?;
    check_finite(&format!("teacher {what}"), teacher)
}

/// Hidden-state MSE (TinyBERT): mean of `(h_S − h_T)²` over the non-padded positions of
/// `[batch, seq, width]` and the width.
///
/// # Errors
/// [`DistillError::Shape`] when the shapes (or the mask) differ, [`DistillError::NonFinite`].
pub fn hidden_mse_loss(student: Tensor<3>, teacher: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>) -> Result<Tensor<1>> {
    check_same("hidden states", &student, &teacher)?;
    let [b, s, _] = student.dims();
    let w = row_weights(pad_mask, b, s)?;
    let per_row = (student - teacher.detach()).powi_scalar(2).mean_dim(2).reshape([b * s]);
    Ok(masked_mean(per_row, w))
}

/// Cosine loss on hidden states (DistilBERT's `alpha_cos` term): mean of
/// `1 − cos(h_S, h_T)` over the non-padded positions of `[batch, seq, width]`.
///
/// # Errors
/// As [`hidden_mse_loss`].
pub fn hidden_cosine_loss(
    student: Tensor<3>,
    teacher: Tensor<3>,
    pad_mask: Option<Tensor<2, Bool>>,
) -> Result<Tensor<1>> {
    check_same("hidden states", &student, &teacher)?;
    let [b, s, _] = student.dims();
    let w = row_weights(pad_mask, b, s)?;
    let cos = cosine_rows(student, teacher.detach()).reshape([b * s]);
    Ok(masked_mean(cos.neg() + 1.0, w))
}

/// `‖x‖` along the last dimension, `[.., 1]`, floored **before** the square root so that a zero
/// vector has a finite gradient (the square root's derivative is infinite at 0).
fn norm<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.powi_scalar(2).sum_dim(D - 1).clamp_min(NORM_FLOOR * NORM_FLOOR).sqrt()
}

/// Cosine similarity along the last dimension, `[.., 1]` (0 for a zero vector).
fn cosine_rows<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    let dot = (a.clone() * b.clone()).sum_dim(D - 1);
    dot / (norm(a) * norm(b))
}

/// `x / ‖x‖` along the last dimension.
fn normalize<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let n = norm(x.clone());
    x / n
}

/// Patient-KD loss (Sun et al. 2019, Eq. 3) on `[batch, width]` `[CLS]` vectors:
/// mean over the batch of `‖h_S/‖h_S‖ − h_T/‖h_T‖‖²`.
///
/// # Errors
/// As [`hidden_mse_loss`].
pub fn patient_kd_loss(student: Tensor<2>, teacher: Tensor<2>) -> Result<Tensor<1>> {
    check_same("[CLS] states", &student, &teacher)?;
    let diff = normalize(student) - normalize(teacher.detach());
    Ok(safe_mean(diff.powi_scalar(2).sum_dim(1)))
}

/// The first position's vectors `[batch, width]` of `[batch, seq, width]` hidden states.
///
/// # Errors
/// [`DistillError::Shape`] for an empty sequence.
pub fn cls_states(hidden: Tensor<3>) -> Result<Tensor<2>> {
    let [b, s, d] = hidden.dims();
    if s == 0 {
        return Err(shape("hidden states", "a sequence of at least one position", [b, s, d]));
    }
    Ok(hidden.narrow(1, 0, 1).reshape([b, d]))
}

/// Weights of `[batch, 1, seq, 1]` query rows and `[batch, 1, 1, seq]` keys (1 = counts).
fn query_key_weights(pad_mask: Option<Tensor<2, Bool>>, b: usize, s: usize) -> Result<Option<(Tensor<4>, Tensor<4>)>> {
    Ok(row_weights(pad_mask, b, s)?.map(|w| (w.clone().reshape([b, 1, s, 1]), w.reshape([b, 1, 1, s]))))
}

fn check_attention(student: &Tensor<4>, teacher: &Tensor<4>) -> Result<()> {
    let [b, h, q, k] = student.dims();
    if q != k {
        return Err(shape("student attention", "[batch, heads, seq, seq]", [b, h, q, k]));
    }
    let th = teacher.dims()[1];
    if th != h && teacher.dims()[0] == b && teacher.dims()[2..] == [q, k] {
        return Err(DistillError::Shape {
            what: "attention heads (teacher vs student)".into(),
            expected: format!(
                "{h} heads like the student (attention losses compare head by head; MiniLM's value relation needs only the same relation-head count)"
            ),
            actual: format!("{th} heads"),
        });
    }
    check_same("attention probabilities", student, teacher)
}

/// Attention-distribution KL (MiniLM, Eq. 1): `KL(A_T ‖ A_S)` of each query row of
/// `[batch, heads, seq, seq]` attention probabilities, averaged over heads and non-padded
/// query rows; padded keys are left out. Probabilities are floored at 1e-12 inside the
/// logarithms.
///
/// # Errors
/// [`DistillError::Shape`] for different head counts or shapes, [`DistillError::NonFinite`].
pub fn attention_kl_loss(
    student: Tensor<4>,
    teacher: Tensor<4>,
    pad_mask: Option<Tensor<2, Bool>>,
) -> Result<Tensor<1>> {
    check_attention(&student, &teacher)?;
    let [b, h, s, _] = student.dims();
    let weights = query_key_weights(pad_mask, b, s)?;
    let p = teacher.detach();
    let log_p = p.clone().clamp_min(PROB_FLOOR).log();
    let log_q = student.clamp_min(PROB_FLOOR).log();
    let mut terms = p * (log_p - log_q);
    if let Some((_, keys)) = &weights {
        terms = terms * keys.clone();
    }
    Ok(mean_over_rows(terms.sum_dim(3), weights.map(|(rows, _)| rows), h))
}

/// Mean of per-row values `[batch, heads, seq, 1]` over heads and the query rows with weight 1.
fn mean_over_rows(per_row: Tensor<4>, rows: Option<Tensor<4>>, heads: usize) -> Tensor<1> {
    match rows {
        None => safe_mean(per_row),
        Some(_) if per_row.dims().contains(&0) => crate::kd::zero_loss(&per_row.device()),
        Some(rows) => (per_row * rows.clone()).sum() / (rows.sum() * heads as f64).clamp_min(1.0),
    }
}

/// Attention MSE (TinyBERT, Eq. 3, on probabilities): mean of `(A_S − A_T)²` over heads and
/// the (query, key) pairs where neither position is padding.
///
/// # Errors
/// As [`attention_kl_loss`].
pub fn attention_mse_loss(
    student: Tensor<4>,
    teacher: Tensor<4>,
    pad_mask: Option<Tensor<2, Bool>>,
) -> Result<Tensor<1>> {
    check_attention(&student, &teacher)?;
    let [b, h, s, _] = student.dims();
    let weights = query_key_weights(pad_mask, b, s)?;
    let sq = (student - teacher.detach()).powi_scalar(2);
    Ok(match weights {
        None => safe_mean(sq),
        Some(_) if sq.dims().contains(&0) => crate::kd::zero_loss(&sq.device()),
        Some((rows, keys)) => {
            let pair = rows * keys; // [b, 1, s, s]
            (sq * pair.clone()).sum() / (pair.sum() * h as f64).clamp_min(1.0)
        }
    })
}

/// Splits `[batch, seq, width]` vectors into `relation_heads` heads, `[batch, r, seq, width/r]`
/// (MiniLM-v2's relation heads; with the model's own head count this is the usual head split).
///
/// # Errors
/// [`DistillError::InvalidConfig`] when `relation_heads` is 0 or does not divide the width.
pub fn split_heads(x: Tensor<3>, relation_heads: usize) -> Result<Tensor<4>> {
    let [b, s, d] = x.dims();
    if relation_heads == 0 || !d.is_multiple_of(relation_heads) {
        return Err(crate::error::invalid(
            "relation_heads",
            relation_heads,
            format!("a positive divisor of the width {d}"),
        ));
    }
    Ok(x.reshape([b, s, relation_heads, d / relation_heads]).swap_dims(1, 2))
}

/// Log of the scaled dot-product relation `softmax(X·Xᵀ/√d)` of `[batch, r, seq, d]` vectors,
/// `[batch, r, seq, seq]`, with padded keys masked out.
///
/// # Errors
/// [`DistillError::Shape`] for a mask that is not `[batch, seq]`.
pub fn log_relation(x: Tensor<4>, pad_mask: Option<Tensor<2, Bool>>) -> Result<Tensor<4>> {
    let [b, _, s, d] = x.dims();
    let scores = x.clone().matmul(x.swap_dims(2, 3)) / (d.max(1) as f64).sqrt();
    let scores = match pad_mask {
        None => scores,
        Some(m) => {
            if m.dims() != [b, s] {
                return Err(shape("pad_mask", format!("[{b}, {s}] (true = padding)"), m.dims()));
            }
            scores.mask_fill(m.reshape([b, 1, 1, s]), MASKED_SCORE)
        }
    };
    Ok(log_softmax(scores, 3))
}

/// MiniLM's value-relation loss (Wang et al. 2020, Eq. 4–5): `KL(VR_T ‖ VR_S)` with
/// `VR = softmax(V·Vᵀ/√d_r)` per relation head, averaged over heads and non-padded query rows.
/// `student` and `teacher` are the value vectors `[batch, seq, width]` of one layer (widths may
/// differ; both are split into `relation_heads` heads, which must divide both widths).
///
/// The same loss on queries or keys gives MiniLM-v2's Q-Q and K-K relations.
///
/// # Errors
/// [`DistillError::Shape`] for different batch or sequence sizes, [`DistillError::InvalidConfig`]
/// for a head count that does not divide a width, [`DistillError::NonFinite`].
pub fn value_relation_loss(
    student: Tensor<3>,
    teacher: Tensor<3>,
    relation_heads: usize,
    pad_mask: Option<Tensor<2, Bool>>,
) -> Result<Tensor<1>> {
    let (sd, td) = (student.dims(), teacher.dims());
    if sd[..2] != td[..2] {
        return Err(shape("teacher values", format!("[{}, {}, _] like the student", sd[0], sd[1]), td));
    }
    check_finite("student values", &student)?;
    check_finite("teacher values", &teacher)?;
    let [b, s, _] = sd;
    let log_q = log_relation(split_heads(student, relation_heads)?, pad_mask.clone())?;
    let log_p = log_relation(split_heads(teacher.detach(), relation_heads)?, pad_mask.clone())?;
    let per_row = (log_p.clone().exp() * (log_p - log_q)).sum_dim(3); // [b, r, s, 1]
    let rows = query_key_weights(pad_mask, b, s)?.map(|(rows, _)| rows);
    Ok(mean_over_rows(per_row, rows, relation_heads))
}
