//! A teacher-output cache: the top-k logits of every position, in memory or on disk, so later
//! epochs skip the teacher's forward pass (TextBrewer's `is_caching_logits`, with a bound).
//!
//! ## What is stored
//! For each position: the `k` largest teacher logits and their vocabulary indices, and the
//! log-sum-exp of the other `V − k` logits (the **tail**). That is `8·k + 4` bytes a position
//! (`4·V` for full f32 logits): for `k = 32`, 260 bytes instead of 128 KB for a 32 000-token
//! vocabulary. [`TeacherCache::bytes`] reports the total.
//!
//! ## What happens to the mass outside the top k
//! It is **kept as one bucket**, not dropped or renormalized. The loss is the KL divergence
//! between the teacher's and the student's distributions over `k + 1` outcomes (the `k` cached
//! tokens and "anything else"), where the student's tail probability is `1 − Σ_top q_i`:
//!
//! ```text
//! L_k = T² · [ Σ_{i∈top} p_i (log p_i − log q_i) + p_tail (log p_tail − log q_tail) ]
//! ```
//!
//! * `k = V`: the tail is empty and `L_k` equals the full loss.
//! * `T = 1`: the teacher's tail mass `ε` is exact, and by the chain rule of KL
//!   `L_full − L_k = ε · KL(p̃ ‖ q̃) ≥ 0` (`p̃`, `q̃`: the two distributions restricted to the
//!   tail and renormalized). Since `−Σ p̃ log p̃ ≥ 0`, this gives the stated bound
//!   `0 ≤ L_full − L_k ≤ ε · (log q_tail − min_{i∈tail} log q_i)`: the cached loss never
//!   overstates the full one and misses at most the teacher's tail mass times the student's
//!   log-probability spread in the tail. [`TopKLogits::tail_mass`] reports `ε` per position so
//!   `k` can be chosen by it (language-model teachers usually put > 90 % of the mass in the top
//!   32 tokens).
//! * `T ≠ 1`: only the tail's log-sum-exp at `T = 1` is stored, so at other temperatures the
//!   tail is taken as if its `V − k` logits were equal (`log n + (lse₁ − log n)/T`, exact for a
//!   flat tail). By the power-mean inequality this overstates the teacher's tail mass for
//!   `T > 1` and understates it for `T < 1`; the gap grows with how uneven the tail is. When
//!   exactness matters at `T ≠ 1`, use `k = V`.
//!
//! The student's tail probability is computed in log space (log-sum-exp over the non-top-k
//! logits minus the full log-sum-exp), so it stays accurate when it is tiny.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{DistillError, Result, shape};
use crate::kd::{check_finite, check_temperature, masked_mean, row_weights};

/// Stand-in for `log 0` (an empty tail): finite, so `0 · (log p − log q)` stays 0.
const EMPTY_TAIL: f32 = -1e30;
const MAGIC: &[u8; 8] = b"EMBKDC01";

/// One batch's teacher logits `[batch, seq, vocab]` reduced to the top `k` per position. Built
/// only by [`TopKLogits::from_host`] / [`TopKLogits::from_logits`] (or read back from a cache
/// file, validated), so its parts always fit together.
#[derive(Clone, Debug, PartialEq)]
pub struct TopKLogits {
    batch: usize,
    seq: usize,
    vocab: usize,
    k: usize,
    values: Vec<f32>,
    indices: Vec<u32>,
    tail_lse: Vec<f32>,
}

impl TopKLogits {
    /// Reduces host logits (`[batch, seq, vocab]` row-major) to the top `k`.
    ///
    /// # Errors
    /// [`DistillError::InvalidConfig`] for `k` outside `1..=vocab`, [`DistillError::Shape`] for
    /// a length that is not `batch·seq·vocab`, [`DistillError::NonFinite`] for NaN or infinity.
    pub fn from_host(logits: &[f32], batch: usize, seq: usize, vocab: usize, k: usize) -> Result<Self> {
        if k == 0 || k > vocab {
            return Err(crate::error::invalid("top-k", k, format!("1..={vocab} (the vocabulary)")));
        }
        if logits.len() != batch * seq * vocab {
            return Err(shape(
                "teacher logits",
                format!("{} values ([{batch}, {seq}, {vocab}])", batch * seq * vocab),
                logits.len(),
            ));
        }
        if logits.iter().any(|v| !v.is_finite()) {
            return Err(DistillError::NonFinite { what: "teacher logits".into() });
        }
        let rows = batch * seq;
        let (mut values, mut indices, mut tail_lse) =
            (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k), Vec::with_capacity(rows));
        let mut order: Vec<u32> = Vec::with_capacity(vocab);
        for row in logits.chunks_exact(vocab) {
            order.clear();
            order.extend(0..vocab as u32);
            // Ties broken by index, so the choice is deterministic.
            let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
            if k < vocab {
                order.select_nth_unstable_by(k - 1, cmp);
            }
            let top = &mut order[..k];
            top.sort_unstable_by(cmp);
            values.extend(top.iter().map(|&i| row[i as usize]));
            indices.extend_from_slice(top);
            let tail = &order[k..];
            tail_lse.push(if tail.is_empty() {
                EMPTY_TAIL
            } else {
                let max = tail.iter().map(|&i| row[i as usize]).fold(f32::NEG_INFINITY, f32::max) as f64;
                let sum: f64 = tail.iter().map(|&i| (row[i as usize] as f64 - max).exp()).sum();
                (max + sum.ln()) as f32
            });
        }
        Ok(TopKLogits { batch, seq, vocab, k, values, indices, tail_lse })
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Sequence length (1 for classifiers).
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Vocabulary (class count) `V`.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Kept logits per position.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The `k` largest logits of each position, descending, `[batch·seq, k]` row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Their vocabulary indices, `[batch·seq, k]`.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// Log-sum-exp (at `T = 1`) of each position's other `V − k` logits (`-1e30` when `k = V`).
    pub fn tail_lse(&self) -> &[f32] {
        &self.tail_lse
    }

    /// Checks that the parts fit together (used on everything read from disk).
    fn validate(&self) -> Result<()> {
        let rows =
            self.batch.checked_mul(self.seq).ok_or_else(|| DistillError::Cache("batch · seq overflows".into()))?;
        let bad = |why: String| Err(DistillError::Cache(format!("inconsistent top-k entry: {why}")));
        if self.k == 0 || self.k > self.vocab || self.vocab > u32::MAX as usize {
            return bad(format!("k = {} for a vocabulary of {}", self.k, self.vocab));
        }
        if self.values.len() != rows * self.k || self.indices.len() != rows * self.k || self.tail_lse.len() != rows {
            return bad(format!(
                "{} values, {} indices, {} tails for {rows} positions of top-{}",
                self.values.len(),
                self.indices.len(),
                self.tail_lse.len(),
                self.k
            ));
        }
        if self.values.iter().any(|v| !v.is_finite()) {
            return bad("non-finite logits".into());
        }
        let empty_tail = self.k == self.vocab;
        if self.tail_lse.iter().any(|t| if empty_tail { *t != EMPTY_TAIL } else { !t.is_finite() }) {
            return bad("tail log-sum-exp not finite (or not empty when k = V)".into());
        }
        let mut seen = vec![u32::MAX; self.vocab];
        for (r, row) in self.indices.chunks(self.k).enumerate() {
            for &i in row {
                if i as usize >= self.vocab || seen[i as usize] == r as u32 {
                    return bad(format!("index {i} out of range or repeated at position {r}"));
                }
                seen[i as usize] = r as u32;
            }
        }
        Ok(())
    }

    /// Reads `[batch, seq, vocab]` logits from the device and reduces them to the top `k`.
    ///
    /// # Errors
    /// As [`TopKLogits::from_host`].
    pub fn from_logits(logits: Tensor<3>, k: usize) -> Result<Self> {
        let [b, s, v] = logits.dims();
        let host = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| DistillError::Cache(format!("reading teacher logits: {e:?}")))?;
        Self::from_host(&host, b, s, v, k)
    }

    /// Positions (`batch·seq`).
    pub fn rows(&self) -> usize {
        self.batch * self.seq
    }

    /// Bytes held: `8·k + 4` per position.
    pub fn bytes(&self) -> usize {
        self.rows() * (8 * self.k + 4)
    }

    /// The teacher's probability mass outside the top k at temperature `t`, per position (under
    /// the flat-tail model for `t ≠ 1`, see the module docs).
    pub fn tail_mass(&self, t: f64) -> Vec<f64> {
        let n_tail = (self.vocab - self.k) as f64;
        (0..self.rows())
            .map(|r| {
                let top = &self.values[r * self.k..(r + 1) * self.k];
                let tail = self.tail_logit(r, t) as f64;
                let max = (top[0] as f64 / t).max(tail);
                let top_sum: f64 = top.iter().map(|&v| (v as f64 / t - max).exp()).sum();
                let tail_w = if n_tail == 0.0 { 0.0 } else { (tail - max).exp() };
                tail_w / (top_sum + tail_w)
            })
            .collect()
    }

    /// The tail bucket's logit in the `z/T` space: `log n + (lse₁ − log n)/T`.
    fn tail_logit(&self, r: usize, t: f64) -> f32 {
        let n = (self.vocab - self.k) as f64;
        if n == 0.0 {
            return EMPTY_TAIL;
        }
        (n.ln() + (self.tail_lse[r] as f64 - n.ln()) / t) as f32
    }

    /// The soft-target loss of student logits `[batch, seq, vocab]` against these cached teacher
    /// logits (see the module docs for the formula and its bound), averaged over the positions
    /// where `pad_mask` is `false`; scaled by `T²` when `t_squared` is set.
    ///
    /// # Errors
    /// [`DistillError::Shape`] / [`DistillError::VocabMismatch`] when the student's shape differs
    /// from the cached batch, [`DistillError::Temperature`], [`DistillError::NonFinite`].
    pub fn kd_loss(
        &self,
        student: Tensor<3>,
        temperature: f64,
        t_squared: bool,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<1>> {
        check_temperature(temperature)?;
        self.validate()?;
        let [b, s, v] = student.dims();
        if v != self.vocab {
            return Err(DistillError::VocabMismatch { teacher: self.vocab, student: v });
        }
        if [b, s] != [self.batch, self.seq] {
            return Err(shape(
                "student logits",
                format!("[{}, {}, {}] like the cached teacher batch", self.batch, self.seq, self.vocab),
                [b, s, v],
            ));
        }
        check_finite("student logits", &student)?;
        let device = student.device();
        let n = b * s;
        let weights = row_weights(pad_mask, b, s)?;
        let (top, idx) = self.device_tensors(&device);
        let tail_t: Vec<f32> = (0..n).map(|r| self.tail_logit(r, temperature)).collect();
        let tail_t = Tensor::<2>::from_data(TensorData::new(tail_t, [n, 1]), &device);
        let log_p = log_softmax(Tensor::cat(vec![top / temperature, tail_t], 1), 1); // [n, k+1]
        let z = student.reshape([n, v]) / temperature;
        let lse_all = log_sum_exp(z.clone());
        let log_q_top = z.clone().gather(1, idx) - lse_all.clone(); // [n, k]
        // The student's tail in log space: log-sum-exp over the non-top-k logits − the full one.
        let mut is_top = vec![false; n * v];
        for (r, row) in self.indices.chunks(self.k).enumerate() {
            for &i in row {
                is_top[r * v + i as usize] = true;
            }
        }
        let is_top = Tensor::<2, Bool>::from_data(TensorData::new(is_top, [n, v]), &device);
        let q_tail = log_sum_exp(z.mask_fill(is_top, EMPTY_TAIL)) - lse_all; // [n, 1]
        let log_q = Tensor::cat(vec![log_q_top, q_tail], 1);
        let kl = (log_p.clone().exp() * (log_p - log_q)).sum_dim(1).reshape([n]).clamp_min(0.0);
        let scale = if t_squared { temperature * temperature } else { 1.0 };
        Ok(masked_mean(kl, weights) * scale)
    }

    /// Values `[n, k]` and indices `[n, k]` on `device`.
    #[allow(clippy::type_complexity)]
    fn device_tensors(&self, device: &Device) -> (Tensor<2>, Tensor<2, Int>) {
        let (n, k) = (self.rows(), self.k);
        let values = Tensor::<2>::from_data(TensorData::new(self.values.clone(), [n, k]), device);
        let idx: Vec<i64> = self.indices.iter().map(|&i| i as i64).collect();
        let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [n, k]), device);
        (values, idx)
    }

    fn encode(&self, key: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&key.to_le_bytes());
        for d in [self.batch, self.seq, self.vocab, self.k] {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend(self.values.iter().flat_map(|v| v.to_le_bytes()));
        out.extend(self.indices.iter().flat_map(|v| v.to_le_bytes()));
        out.extend(self.tail_lse.iter().flat_map(|v| v.to_le_bytes()));
    }

    /// Record length in bytes after the 40-byte header.
    fn payload_len(batch: usize, seq: usize, k: usize) -> Option<usize> {
        batch.checked_mul(seq)?.checked_mul(k.checked_mul(8)?.checked_add(4)?)
    }

    fn decode(header: [u64; 5], payload: &[u8]) -> Result<(u64, Self)> {
        let [key, batch, seq, vocab, k] = header;
        let (batch, seq, vocab, k) = (batch as usize, seq as usize, vocab as usize, k as usize);
        let rows = batch * seq;
        if TopKLogits::payload_len(batch, seq, k) != Some(payload.len()) {
            return Err(DistillError::Cache(format!("corrupt record for key {key}: wrong length")));
        }
        let words =
            |bytes: &[u8]| -> Vec<[u8; 4]> { bytes.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect() };
        let values: Vec<f32> = words(&payload[..rows * k * 4]).into_iter().map(f32::from_le_bytes).collect();
        let indices: Vec<u32> =
            words(&payload[rows * k * 4..rows * k * 8]).into_iter().map(u32::from_le_bytes).collect();
        let tail_lse: Vec<f32> = words(&payload[rows * k * 8..]).into_iter().map(f32::from_le_bytes).collect();
        let entry = TopKLogits { batch, seq, vocab, k, values, indices, tail_lse };
        entry.validate().map_err(|e| DistillError::Cache(format!("corrupt record for key {key}: {e}")))?;
        Ok((key, entry))
    }
}

/// Where a [`TeacherCache`] keeps its entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheStorage {
    /// In a hash map (`8·k + 4` bytes a position).
    Memory,
    /// Appended to a file (reopened files are indexed and reused, so a second run skips the
    /// teacher too); only the index (about 60 bytes a batch) stays in memory.
    Disk(PathBuf),
}

/// Top-k teacher logits by batch key (the caller's stable id of a batch, e.g. its index in an
/// unshuffled dataset, or a hash of its example ids).
#[derive(Debug)]
pub struct TeacherCache {
    k: usize,
    memory: HashMap<u64, TopKLogits>,
    disk: Option<DiskStore>,
    bytes: usize,
}

#[derive(Debug)]
struct DiskStore {
    path: PathBuf,
    file: File,
    index: HashMap<u64, (u64, [u64; 5])>,
    end: u64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> DistillError + '_ {
    move |source| DistillError::Io { path: path.display().to_string(), source }
}

impl TeacherCache {
    /// A cache keeping the top `k` logits of each position.
    ///
    /// # Errors
    /// [`DistillError::InvalidConfig`] for `k = 0`; for disk storage, [`DistillError::Io`] when
    /// the file cannot be opened and [`DistillError::Cache`] when an existing file is not an
    /// Ember cache, is truncated or was written with another `k`.
    pub fn new(k: usize, storage: &CacheStorage) -> Result<Self> {
        if k == 0 {
            return Err(crate::error::invalid("top-k", 0, "at least 1"));
        }
        let disk = match storage {
            CacheStorage::Memory => None,
            CacheStorage::Disk(path) => Some(DiskStore::open(path, k)?),
        };
        let bytes = disk.as_ref().map_or(0, |d| d.end as usize);
        Ok(TeacherCache { k, memory: HashMap::new(), disk, bytes })
    }

    /// Kept logits per position.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Cached batches.
    pub fn len(&self) -> usize {
        self.disk.as_ref().map_or(self.memory.len(), |d| d.index.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is cached.
    pub fn contains(&self, key: u64) -> bool {
        self.disk.as_ref().map_or(self.memory.contains_key(&key), |d| d.index.contains_key(&key))
    }

    /// Bytes held in memory or written to disk.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entry for `key`, if cached.
    ///
    /// # Errors
    /// [`DistillError::Io`] / [`DistillError::Cache`] for an unreadable or corrupt record.
    pub fn get(&mut self, key: u64) -> Result<Option<TopKLogits>> {
        match &mut self.disk {
            None => Ok(self.memory.get(&key).cloned()),
            Some(d) => d.read(key),
        }
    }

    /// Reduces `logits` `[batch, seq, vocab]` to the top `k` and stores them under `key`
    /// (replacing an earlier entry).
    ///
    /// # Errors
    /// As [`TopKLogits::from_logits`], and [`DistillError::Io`] for disk storage.
    pub fn insert_logits(&mut self, key: u64, logits: Tensor<3>) -> Result<TopKLogits> {
        let k = self.k.min(logits.dims()[2].max(1));
        let entry = TopKLogits::from_logits(logits, k)?;
        self.insert(key, entry.clone())?;
        Ok(entry)
    }

    /// Stores `entry` under `key`.
    ///
    /// # Errors
    /// [`DistillError::Cache`] when `entry.k` is not this cache's `k` (or the vocabulary when it
    /// is smaller), [`DistillError::Io`] for disk storage.
    pub fn insert(&mut self, key: u64, entry: TopKLogits) -> Result<()> {
        entry.validate()?;
        if entry.k != self.k.min(entry.vocab) {
            return Err(DistillError::Cache(format!(
                "entry keeps {} logits a position, the cache {}",
                entry.k, self.k
            )));
        }
        match &mut self.disk {
            None => {
                self.bytes += entry.bytes();
                if let Some(old) = self.memory.insert(key, entry) {
                    self.bytes -= old.bytes();
                }
            }
            Some(d) => {
                d.append(key, &entry)?;
                self.bytes = d.end as usize;
            }
        }
        Ok(())
    }
}

impl DiskStore {
    fn open(path: &Path, k: usize) -> Result<Self> {
        let err = io_err(path);
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(&err)?;
        let len = file.metadata().map_err(&err)?.len();
        let mut index = HashMap::new();
        if len == 0 {
            file.write_all(MAGIC).map_err(&err)?;
            file.flush().map_err(&err)?;
            return Ok(DiskStore { path: path.to_path_buf(), file, index, end: MAGIC.len() as u64 });
        }
        file.seek(SeekFrom::Start(0)).map_err(&err)?;
        let mut reader = BufReader::new(&mut file);
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic).map_err(&err)?;
        if &magic != MAGIC {
            return Err(DistillError::Cache(format!("{} is not an Ember teacher cache (bad magic)", path.display())));
        }
        let mut pos = MAGIC.len() as u64;
        while pos < len {
            let header = read_header(&mut reader).map_err(|_| truncated(path, pos))?;
            let [key, batch, seq, vocab, rk] = header;
            if rk as usize != k.min(vocab as usize) {
                return Err(DistillError::Cache(format!(
                    "{} was written with top-{rk}, this cache keeps {k}; use another file",
                    path.display()
                )));
            }
            let payload = TopKLogits::payload_len(batch as usize, seq as usize, rk as usize)
                .ok_or_else(|| truncated(path, pos))?;
            let end = pos + 40 + payload as u64;
            if end > len {
                return Err(truncated(path, pos));
            }
            reader.seek_relative(payload as i64).map_err(&err)?;
            index.insert(key, (pos + 40, header));
            pos = end;
        }
        Ok(DiskStore { path: path.to_path_buf(), file, index, end: len })
    }

    fn append(&mut self, key: u64, entry: &TopKLogits) -> Result<()> {
        let mut buf = Vec::with_capacity(40 + entry.bytes());
        entry.encode(key, &mut buf);
        let err = io_err(&self.path);
        self.file.write_all(&buf).map_err(&err)?;
        self.file.flush().map_err(&err)?;
        let header = [key, entry.batch as u64, entry.seq as u64, entry.vocab as u64, entry.k as u64];
        self.index.insert(key, (self.end + 40, header));
        self.end += buf.len() as u64;
        Ok(())
    }

    fn read(&mut self, key: u64) -> Result<Option<TopKLogits>> {
        let Some(&(offset, header)) = self.index.get(&key) else { return Ok(None) };
        let len = TopKLogits::payload_len(header[1] as usize, header[2] as usize, header[4] as usize)
            .ok_or_else(|| truncated(&self.path, offset))?;
        let mut payload = vec![0u8; len];
        let err = io_err(&self.path);
        self.file.seek(SeekFrom::Start(offset)).map_err(&err)?;
        self.file.read_exact(&mut payload).map_err(&err)?;
        Ok(Some(TopKLogits::decode(header, &payload)?.1))
    }
}

/// `log Σ exp` along dimension 1 of `[n, v]`, `[n, 1]`, max-subtracted.
fn log_sum_exp(x: Tensor<2>) -> Tensor<2> {
    let m = x.clone().max_dim(1).detach();
    (x - m.clone()).exp().sum_dim(1).log() + m
}

fn read_header(r: &mut impl Read) -> std::io::Result<[u64; 5]> {
    let mut h = [0u64; 5];
    for v in &mut h {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        *v = u64::from_le_bytes(b);
    }
    Ok(h)
}

fn truncated(path: &Path, pos: u64) -> DistillError {
    DistillError::Cache(format!(
        "{} is truncated or corrupt at byte {pos}; delete it to rebuild the cache",
        path.display()
    ))
}
