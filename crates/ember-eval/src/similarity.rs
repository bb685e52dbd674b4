//! Cosine similarity of embedding vectors: how close a compressed model's outputs stay to the
//! original's, row by row.
//!
//! `cos(a, b) = Σ aᵢbᵢ / (‖a‖₂ ‖b‖₂)`, accumulated in f64. A zero vector has no direction: its
//! cosine with anything is defined here as 0 (never NaN).

use crate::error::{EvalError, Result, same_len};

/// Cosine similarity of two vectors of equal length, in `[-1, 1]` (0 when either is zero).
///
/// ```
/// use ember_eval::cosine;
/// assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]).unwrap() - 0.5f64.sqrt()).abs() < 1e-12);
/// assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]).unwrap(), 0.0);
/// assert!(cosine(&[1.0], &[1.0, 2.0]).is_err());
/// assert!(cosine(&[f32::NAN], &[1.0]).is_err());
/// ```
///
/// # Errors
/// [`EvalError::LengthMismatch`] for vectors of different lengths; [`EvalError::NonFinite`]
/// for a NaN or infinite entry.
pub fn cosine(a: &[f32], b: &[f32]) -> Result<f64> {
    same_len("cosine vectors", a.len(), b.len())?;
    let (mut dot, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            return Err(EvalError::NonFinite(format!("cosine of vectors holding {x} and {y}")));
        }
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    Ok(if aa == 0.0 || bb == 0.0 { 0.0 } else { (dot / (aa.sqrt() * bb.sqrt())).clamp(-1.0, 1.0) })
}

/// The cosine of each row of `a` with the same row of `b` (two `[n, d]` matrices as rows).
///
/// ```
/// use ember_eval::row_cosines;
/// let a = vec![vec![1.0, 0.0], vec![0.0, 2.0]];
/// let b = vec![vec![2.0, 0.0], vec![0.0, -1.0]];
/// assert_eq!(row_cosines(&a, &b).unwrap(), vec![1.0, -1.0]);
/// assert!(row_cosines(&a, &b[..1]).is_err());
/// ```
///
/// # Errors
/// [`EvalError::LengthMismatch`] for a different number of rows or a row of another length;
/// [`EvalError::NonFinite`] as [`cosine`].
pub fn row_cosines(a: &[Vec<f32>], b: &[Vec<f32>]) -> Result<Vec<f64>> {
    same_len("cosine rows", a.len(), b.len())?;
    a.iter().zip(b).map(|(x, y)| cosine(x, y)).collect()
}

/// The cosine of every pair of rows `i < j` of `rows`, in the order (0,1), (0,2), …, (1,2), …:
/// the similarity structure that a sentence-embedding student is scored on (Spearman against
/// the teacher's).
///
/// ```
/// use ember_eval::pair_cosines;
/// let rows = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 1.0]];
/// let c = pair_cosines(&rows).unwrap();
/// assert_eq!(c.len(), 3);
/// assert!(c[0].abs() < 1e-12 && (c[1] - 0.5f64.sqrt()).abs() < 1e-12);
/// ```
///
/// # Errors
/// As [`cosine`] (rows of different lengths, non-finite entries).
pub fn pair_cosines(rows: &[Vec<f32>]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(rows.len() * rows.len().saturating_sub(1) / 2);
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            out.push(cosine(&rows[i], &rows[j])?);
        }
    }
    Ok(out)
}
