//! Which student layer learns from which teacher layer.
//!
//! Layer indices follow the encoders' `hidden_states`: `0` is the embedding output and `l`
//! (1-based) the output of block `l`, so a model with `L` blocks has indices `0..=L`. Attention
//! maps and value vectors exist only for blocks, `1..=L`.

use serde::{Deserialize, Serialize};

use crate::error::{DistillError, Result, invalid};

/// One student → teacher layer pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerPair {
    /// Student layer index.
    pub student: usize,
    /// Teacher layer index.
    pub teacher: usize,
}

/// A layer mapping, resolved against the two models' depths by [`LayerMap::resolve`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LayerMap {
    /// TinyBERT's uniform map `g(m) = m·N/M` (rounded down) for student blocks `m = 1..=M` of
    /// a teacher with `N ≥ M` blocks, plus `0 → 0` (the embedding layers) when
    /// `include_embeddings` is set. For `N = 12, M = 4`: `1→3, 2→6, 3→9, 4→12`.
    Uniform {
        /// Also pair the embedding outputs (index 0), as TinyBERT's embedding loss does.
        include_embeddings: bool,
    },
    /// The last `k` student blocks to the last `k` teacher blocks, in order (PKD-Last with
    /// `k = M`; MiniLM's last-layer attention transfer with `k = 1`).
    LastK(usize),
    /// Student block `m` to teacher block `m·stride`, `m = 1..=M` (PKD-Skip: `12 → 6` with
    /// stride 2 gives `1→2, …, 6→12`).
    Skip {
        /// Teacher blocks per student block (≥ 1).
        stride: usize,
    },
    /// Explicit pairs `(student, teacher)`.
    Custom(Vec<(usize, usize)>),
}

impl LayerMap {
    /// The pairs for a student with `student_layers` blocks and a teacher with `teacher_layers`
    /// blocks. `with_embeddings` says whether index 0 (the embedding output) is a valid layer for
    /// the feature being matched (hidden states: yes; attentions and values: no).
    ///
    /// # Errors
    /// [`DistillError::LayerOutOfRange`] for a pair outside either model,
    /// [`DistillError::InvalidConfig`] for an empty map, `k = 0`, a zero stride or a uniform map
    /// from a deeper student to a shallower teacher.
    pub fn resolve(
        &self,
        student_layers: usize,
        teacher_layers: usize,
        with_embeddings: bool,
    ) -> Result<Vec<LayerPair>> {
        let (m, n) = (student_layers, teacher_layers);
        let pairs: Vec<LayerPair> = match self {
            LayerMap::Uniform { include_embeddings } => {
                if m == 0 || m > n {
                    return Err(invalid(
                        "uniform layer map",
                        format!("{m} student blocks, {n} teacher blocks"),
                        "a student with 1..=N blocks for a teacher with N blocks",
                    ));
                }
                let first = if *include_embeddings { 0 } else { 1 };
                (first..=m)
                    .map(|l| LayerPair { student: l, teacher: (l as u128 * n as u128 / m as u128) as usize })
                    .collect()
            }
            LayerMap::LastK(k) => {
                if *k == 0 || *k > m.min(n) {
                    return Err(invalid(
                        "last-k layer map k",
                        k,
                        format!("1..={} (the shallower model's block count)", m.min(n)),
                    ));
                }
                (1..=*k).map(|i| LayerPair { student: m - k + i, teacher: n - k + i }).collect()
            }
            LayerMap::Skip { stride } => {
                if *stride == 0 {
                    return Err(invalid("skip layer map stride", 0, "at least 1"));
                }
                // Saturating: an overflowing product is out of range and reported below.
                (1..=m).map(|l| LayerPair { student: l, teacher: l.saturating_mul(*stride) }).collect()
            }
            LayerMap::Custom(p) => p.iter().map(|&(s, t)| LayerPair { student: s, teacher: t }).collect(),
        };
        if pairs.is_empty() {
            return Err(invalid("layer map", "no pairs", "at least one (student, teacher) pair"));
        }
        let lowest = if with_embeddings { 0 } else { 1 };
        for p in &pairs {
            let reason = if p.student > m {
                Some(format!("the student has blocks 1..={m}"))
            } else if p.teacher > n {
                Some(format!("the teacher has blocks 1..={n}"))
            } else if p.student < lowest || p.teacher < lowest {
                Some("index 0 (embeddings) has no attention maps or values".to_string())
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(DistillError::LayerOutOfRange { student: p.student, teacher: p.teacher, reason });
            }
        }
        Ok(pairs)
    }
}
