//! Sparsity accounting: per layer and global, with dense and compressed byte counts.

use serde::{Deserialize, Serialize};

/// One weight's sparsity after a pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    /// Weight path.
    pub path: String,
    /// `[d_in, d_out]`.
    pub dims: [usize; 2],
    /// Entries.
    pub total: usize,
    /// Entries that are zero after masking (masked, or already zero).
    pub zeros: usize,
    /// Bytes as dense f32.
    pub dense_bytes: usize,
    /// Bytes as a bitmask plus the nonzero f32 values (`⌈n/8⌉ + 4·nnz`).
    pub bitmask_bytes: usize,
    /// Bytes as CSR over `[d_in, d_out]` rows (`4·nnz` values + `4·nnz` column indices +
    /// `4·(d_in + 1)` row offsets).
    pub csr_bytes: usize,
}

impl LayerSparsity {
    /// Counts for a weight with `values` and keep-mask `keep`.
    pub fn from_mask(path: &str, dims: [usize; 2], values: &[f32], keep: &[bool]) -> Self {
        let total = values.len();
        let nnz = values.iter().zip(keep).filter(|(v, k)| **k && **v != 0.0).count();
        LayerSparsity {
            path: path.to_string(),
            dims,
            total,
            zeros: total - nnz,
            dense_bytes: 4 * total,
            bitmask_bytes: total.div_ceil(8) + 4 * nnz,
            csr_bytes: 8 * nnz + 4 * (dims[0] + 1),
        }
    }

    /// Fraction of zeros.
    pub fn sparsity(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.zeros as f64 / self.total as f64 }
    }

    /// Nonzero entries.
    pub fn nonzeros(&self) -> usize {
        self.total - self.zeros
    }
}

/// The sparsity of every pruned weight and of the selection as a whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SparsityReport {
    /// Per weight, in model order.
    pub layers: Vec<LayerSparsity>,
}

impl SparsityReport {
    /// A report over `layers`.
    pub fn new(layers: Vec<LayerSparsity>) -> Self {
        SparsityReport { layers }
    }

    /// Entries over all layers.
    pub fn total(&self) -> usize {
        self.layers.iter().map(|l| l.total).sum()
    }

    /// Zeros over all layers.
    pub fn zeros(&self) -> usize {
        self.layers.iter().map(|l| l.zeros).sum()
    }

    /// Global sparsity of the selection.
    pub fn sparsity(&self) -> f64 {
        let t = self.total();
        if t == 0 { 0.0 } else { self.zeros() as f64 / t as f64 }
    }

    /// A markdown table (one row per weight and a total).
    pub fn to_markdown(&self) -> String {
        let mut s = String::from(
            "| weight | shape | sparsity | nonzeros | dense bytes | bitmask bytes | CSR bytes |\n|---|---|---:|---:|---:|---:|---:|\n",
        );
        for l in &self.layers {
            s += &format!(
                "| {} | {}×{} | {:.2}% | {} | {} | {} | {} |\n",
                l.path,
                l.dims[0],
                l.dims[1],
                100.0 * l.sparsity(),
                l.nonzeros(),
                l.dense_bytes,
                l.bitmask_bytes,
                l.csr_bytes
            );
        }
        let sum = |f: fn(&LayerSparsity) -> usize| self.layers.iter().map(f).sum::<usize>();
        s += &format!(
            "| **total** | | {:.2}% | {} | {} | {} | {} |\n",
            100.0 * self.sparsity(),
            self.total() - self.zeros(),
            sum(|l| l.dense_bytes),
            sum(|l| l.bitmask_bytes),
            sum(|l| l.csr_bytes)
        );
        s
    }
}
