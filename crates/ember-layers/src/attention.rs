//! The one multi-head attention of Ember's models: padding and causal masks, a free head width
//! (`n_heads × head_dim` may differ from the model width, so heads can be removed physically),
//! projections that are Ember's int8-ready [`Linear`]s.
//!
//! `softmax(Q·Kᵀ/√d_h + mask)·V` per head, then the output projection. Weights are Burn's
//! `[d_in, d_out]` layout: `query`, `key`, `value` are `[d_model, n_heads·head_dim]`, `output` is
//! `[n_heads·head_dim, d_out]`; head `h` owns columns `h·head_dim..(h+1)·head_dim` of the first
//! three and the same rows of `output` ([`MultiHeadAttention::retain_heads`] keeps a subset).

use crate::error::{LayerError, Result, edit, invalid};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor};
use ember_quant::{Linear, LinearConfig};

/// The score given to hidden keys before the softmax: `−10⁴`.
///
/// Finite in every float type Burn computes in: exact in f32 and f16 (max 65 504), −9 984 in bf16,
/// so it neither overflows nor turns into `−inf` (and NaN) in half precision; next to any real score (|s| ≪ 10⁴) its
/// `exp` underflows to exactly 0, so hidden keys get no weight. A query whose keys are all
/// hidden (a fully padded row) gets a uniform distribution instead of NaN. Hugging Face adds
/// the dtype's minimum instead; the probabilities agree to the last bit in f32 whenever a row
/// has one visible key.
pub const MASKED_SCORE: f32 = ember_kernels::fused::MASKED_SCORE;

/// Configuration of [`MultiHeadAttention`].
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Model width (input and output features).
    pub d_model: usize,
    /// Number of heads (≥ 1).
    pub n_heads: usize,
    /// Width of each head; `None` means `d_model / n_heads` (which must then divide evenly).
    #[config(default = "None")]
    pub head_dim: Option<usize>,
    /// Biases on the four projections (BERT: yes).
    #[config(default = true)]
    pub bias: bool,
    /// Dropout on the attention probabilities.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl AttentionConfig {
    /// The head width this config gives.
    ///
    /// # Errors
    /// [`LayerError::InvalidConfig`] for zero sizes or heads that do not divide `d_model` when
    /// `head_dim` is not given.
    pub fn head_dim(&self) -> Result<usize> {
        if self.d_model == 0 {
            return Err(invalid("d_model", 0, "a positive width"));
        }
        if self.n_heads == 0 {
            return Err(invalid("n_heads", 0, "at least one head"));
        }
        match self.head_dim {
            Some(0) => Err(invalid("head_dim", 0, "a positive head width")),
            Some(d) => Ok(d),
            None if !self.d_model.is_multiple_of(self.n_heads) => Err(invalid(
                "n_heads",
                self.n_heads,
                format!("a divisor of d_model = {} (or give head_dim explicitly)", self.d_model),
            )),
            None => Ok(self.d_model / self.n_heads),
        }
    }

    /// Parameters of the layer, without allocating it: `4·D·I` weights (+ `3·I + D` biases),
    /// with `I = n_heads · head_dim`.
    ///
    /// # Errors
    /// As [`AttentionConfig::head_dim`]; sizes no process could allocate.
    pub fn num_params(&self) -> Result<usize> {
        self.count()?.checked()
    }

    pub(crate) fn count(&self) -> Result<crate::error::Count> {
        use crate::error::Count as C;
        let (d, inner) = (C::from(self.d_model), C::from(self.n_heads) * C::from(self.head_dim()?));
        let bias = if self.bias { C::from(3) * inner + d } else { C(0) };
        Ok(C::from(4) * d * inner + bias)
    }

    /// Builds the layer (float; convert it with `ember_quant::Quantizer`).
    ///
    /// # Errors
    /// As [`AttentionConfig::num_params`].
    pub fn init(&self, device: &Device) -> Result<MultiHeadAttention> {
        let head_dim = self.head_dim()?;
        self.num_params()?;
        let inner = self.n_heads * head_dim;
        let lin = |i, o| LinearConfig::new(i, o).with_bias(self.bias).init(device);
        Ok(MultiHeadAttention {
            query: lin(self.d_model, inner),
            key: lin(self.d_model, inner),
            value: lin(self.d_model, inner),
            output: lin(inner, self.d_model),
            dropout: DropoutConfig::new(self.dropout).init(),
            n_heads: self.n_heads,
            head_dim,
        })
    }
}

/// Which keys each query may not see, built once per forward pass and shared by every layer:
/// padding (`true` at padded positions of `[batch, seq]`) and, for decoders, the future.
#[derive(Clone, Debug)]
pub struct AttentionMask {
    /// `true` = hidden; `[batch or 1, 1, seq or 1, seq]`, broadcast over heads (and queries).
    hidden: Option<Tensor<4, Bool>>,
    /// The padding alone, `[batch, seq]` (for the fused CPU kernel).
    pad: Option<Tensor<2, Bool>>,
    causal: bool,
    /// The padding read to the host once per batch, shared by every layer (and clone).
    host_pad: std::sync::Arc<std::sync::OnceLock<Option<Vec<bool>>>>,
    /// Packed sequences (see [`AttentionMask::packed`]): their lengths and device.
    packed: Option<(std::sync::Arc<[usize]>, Device)>,
    batch: usize,
    seq: usize,
}

/// The mask as the fused CPU kernels read it.
pub(crate) enum HostMask<'a> {
    /// `[batch · seq]` padding (`true` = hidden), or `None` when nothing is padded.
    Padded(Option<&'a [bool]>),
    /// Packed sequences of these lengths.
    Packed(&'a [usize]),
}

impl AttentionMask {
    /// The mask for a batch of `[batch, seq]` tokens: padded keys hidden where `pad_mask` is
    /// `true`, and with `causal`, every key after its query.
    ///
    /// # Errors
    /// [`LayerError::Shape`] if `pad_mask` is not `[batch, seq]`.
    pub fn new(
        pad_mask: Option<Tensor<2, Bool>>,
        causal: bool,
        batch: usize,
        seq: usize,
        device: &Device,
    ) -> Result<Self> {
        if let Some(m) = &pad_mask
            && m.dims() != [batch, seq]
        {
            return Err(LayerError::Shape {
                what: "pad_mask".into(),
                expected: format!("[{batch}, {seq}] (true = padding)"),
                actual: format!("{:?}", m.dims()),
            });
        }
        let pad = pad_mask.clone().map(|m| m.reshape([batch, 1, 1, seq]));
        let future = causal.then(|| {
            let rows = Tensor::<1, Int>::arange(0..seq as i64, device).reshape([seq, 1]);
            let cols = Tensor::<1, Int>::arange(0..seq as i64, device).reshape([1, seq]);
            cols.greater(rows).reshape([1, 1, seq, seq])
        });
        let hidden = match (pad, future) {
            (Some(p), Some(f)) => Some(p.expand([batch, 1, seq, seq]).bool_or(f.expand([batch, 1, seq, seq]))),
            (p, f) => p.or(f),
        };
        Ok(AttentionMask { hidden, pad: pad_mask, causal, host_pad: Default::default(), packed: None, batch, seq })
    }

    /// No mask (every query sees every key).
    pub fn none(batch: usize, seq: usize) -> Self {
        AttentionMask { hidden: None, pad: None, causal: false, host_pad: Default::default(), packed: None, batch, seq }
    }

    /// The mask of packed sequences: one row of `Σ lengths` tokens (`[1, Σ lengths]`) in which
    /// each token attends only to the tokens of its own sequence (with `causal`, to those up
    /// to itself); sequence `s` is the `lengths[s]` tokens after sequence `s − 1`'s. This is
    /// how [`crate::Encoder::forward_real_tokens`] runs a padded batch without its padding.
    pub fn packed(lengths: Vec<usize>, causal: bool, device: &Device) -> Self {
        let seq = lengths.iter().sum();
        AttentionMask {
            hidden: None,
            pad: None,
            causal,
            host_pad: Default::default(),
            packed: Some((lengths.into(), device.clone())),
            batch: 1,
            seq,
        }
    }

    /// The lengths of packed sequences, for a mask made by [`AttentionMask::packed`].
    pub fn packed_lengths(&self) -> Option<&[usize]> {
        self.packed.as_ref().map(|(l, _)| &l[..])
    }

    /// The mask as the fused kernels read it, or `None` when the padding could not be read.
    pub(crate) fn host_mask(&self) -> Option<HostMask<'_>> {
        match &self.packed {
            Some((lengths, _)) => Some(HostMask::Packed(lengths)),
            None => self.host_padding().map(HostMask::Padded),
        }
    }

    /// Whether future keys are hidden.
    pub fn is_causal(&self) -> bool {
        self.causal
    }

    /// The padding as host booleans (`[batch · seq]`, `true` = hidden), read once per mask and
    /// shared by every layer: `Some(None)` when nothing is padded, `None` when the padding could
    /// not be read (the caller then uses Burn's ops). A packed mask has no padding.
    pub(crate) fn host_padding(&self) -> Option<Option<&[bool]>> {
        let Some(pad) = &self.pad else { return Some(None) };
        self.host_pad
            .get_or_init(|| {
                let data = pad.clone().into_data();
                let v: Vec<bool> = data.iter::<bool>().collect();
                (v.len() == self.batch * self.seq).then_some(v)
            })
            .as_deref()
            .map(Some)
    }

    /// `[batch, seq]` the mask was built for.
    pub fn dims(&self) -> [usize; 2] {
        [self.batch, self.seq]
    }

    /// The mask broadcast to `[batch, heads, seq, seq]`, if any key is hidden (for packed
    /// sequences, built here: every key of another sequence is hidden).
    pub fn expanded(&self, heads: usize) -> Option<Tensor<4, Bool>> {
        if let Some((lengths, device)) = &self.packed {
            let n = self.seq;
            let owner: Vec<usize> = lengths.iter().enumerate().flat_map(|(s, &l)| std::iter::repeat_n(s, l)).collect();
            let hidden: Vec<bool> = (0..n * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    owner[i] != owner[j] || (self.causal && j > i)
                })
                .collect();
            let m = Tensor::<1, Bool>::from_data(burn::tensor::TensorData::new(hidden, [n * n]), device);
            return Some(m.reshape([1, 1, n, n]).expand([1, heads, n, n]));
        }
        self.hidden.clone().map(|m| m.expand([self.batch, heads, self.seq, self.seq]))
    }
}

/// Multi-head attention. See the [module docs](self).
#[derive(Module, Debug)]
pub struct MultiHeadAttention {
    /// Query projection `[d_in, n_heads·head_dim]`.
    pub query: Linear,
    /// Key projection `[d_in, n_heads·head_dim]`.
    pub key: Linear,
    /// Value projection `[d_value_in, n_heads·head_dim]`.
    pub value: Linear,
    /// Output projection `[n_heads·head_dim, d_out]`.
    pub output: Linear,
    /// Dropout on the attention probabilities.
    pub dropout: Dropout,
    /// Heads.
    pub n_heads: usize,
    /// Width of each head.
    pub head_dim: usize,
}

/// What attention returns: the projected context, the attention probabilities and the value
/// vectors (for MiniLM's value-relation distillation).
#[derive(Debug, Clone)]
pub struct AttentionOutput {
    /// `[batch, seq, d_out]`.
    pub context: Tensor<3>,
    /// `[batch, n_heads, seq, seq]` (rows sum to 1 over visible keys).
    pub probs: Tensor<4>,
    /// The value projection's output `[batch, seq, n_heads · head_dim]` (heads concatenated).
    pub values: Tensor<3>,
}

fn shape_err(what: &str, expected: String, actual: &[usize]) -> LayerError {
    LayerError::Shape { what: what.into(), expected, actual: format!("{actual:?}") }
}

/// Checks `x` (`[batch, seq, width]`) and `pad_mask` (`[batch, seq]`).
pub(crate) fn check_input(x: &Tensor<3>, width: usize, pad_mask: Option<&Tensor<2, Bool>>) -> Result<()> {
    let [b, t, d] = x.dims();
    if d != width {
        return Err(shape_err("input", format!("[batch, seq, {width}]"), &x.dims()));
    }
    if let Some(m) = pad_mask
        && m.dims() != [b, t]
    {
        return Err(shape_err("pad_mask", format!("[{b}, {t}] (true = padding)"), &m.dims()));
    }
    Ok(())
}

impl MultiHeadAttention {
    /// Assembles a layer from its projections (MobileBERT's attention reads queries and keys
    /// from a bottleneck and values from the body, so the input widths may differ).
    ///
    /// # Errors
    /// [`LayerError::Shape`] unless `query`, `key` and `value` output `n_heads · head_dim`
    /// features, `query` and `key` read the same width, and `output` reads `n_heads · head_dim`.
    pub fn from_parts(
        query: Linear,
        key: Linear,
        value: Linear,
        output: Linear,
        n_heads: usize,
        head_dim: usize,
        dropout: f64,
    ) -> Result<Self> {
        let inner = n_heads.checked_mul(head_dim).filter(|&i| i > 0).ok_or_else(|| {
            invalid("n_heads / head_dim", format!("{n_heads} / {head_dim}"), "positive values whose product fits")
        })?;
        for (what, got) in [
            ("query outputs", query.d_output()),
            ("key outputs", key.d_output()),
            ("value outputs", value.d_output()),
            ("output inputs", output.d_input()),
        ] {
            if got != inner {
                return Err(shape_err(what, format!("{inner} (n_heads · head_dim)"), &[got]));
            }
        }
        if key.d_input() != query.d_input() {
            return Err(shape_err("key inputs", format!("{} (the query's)", query.d_input()), &[key.d_input()]));
        }
        Ok(MultiHeadAttention {
            query,
            key,
            value,
            output,
            dropout: DropoutConfig::new(dropout).init(),
            n_heads,
            head_dim,
        })
    }

    /// Input width of queries and keys.
    pub fn d_model(&self) -> usize {
        self.query.d_input()
    }

    /// Output width.
    pub fn d_output(&self) -> usize {
        self.output.d_output()
    }

    /// `n_heads · head_dim`.
    pub fn inner_width(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// The config that builds a layer of this shape (for a self-attention layer whose
    /// projections all read and write `d_model`).
    pub fn config(&self) -> AttentionConfig {
        AttentionConfig::new(self.d_model(), self.n_heads)
            .with_head_dim(Some(self.head_dim))
            .with_bias(self.query.bias.is_some())
            .with_dropout(self.dropout.prob)
    }

    /// [`MultiHeadAttention::forward`] with typed errors for inputs of the wrong shape.
    ///
    /// # Errors
    /// [`LayerError::Shape`] if `x` is not `[batch, seq, d_model]` or the mask was built for
    /// another `[batch, seq]`.
    pub fn try_forward(&self, x: Tensor<3>, mask: &AttentionMask) -> Result<AttentionOutput> {
        check_input(&x, self.d_model(), None)?;
        check_input(&x, self.value.d_input(), None)?;
        let [b, t, _] = x.dims();
        if mask.dims() != [b, t] {
            return Err(shape_err("attention mask", format!("one built for [{b}, {t}]"), &mask.dims()));
        }
        Ok(self.forward(x, mask))
    }

    /// Self-attention over `x` (`[batch, seq, d_model]`) with `mask`.
    ///
    /// # Panics
    /// On inputs of the wrong shape, like Burn's layers; [`MultiHeadAttention::try_forward`]
    /// returns an error instead.
    pub fn forward(&self, x: Tensor<3>, mask: &AttentionMask) -> AttentionOutput {
        self.forward_qkv(x.clone(), x.clone(), x, mask)
    }

    /// Attention with separate query, key and value inputs of the same `[batch, seq]`
    /// (MobileBERT's bottlenecked attention): `softmax(q(xq)·k(xk)ᵀ/√d_h + mask)·v(xv)`.
    ///
    /// # Panics
    /// On inputs of the wrong shape.
    pub fn forward_qkv(&self, xq: Tensor<3>, xk: Tensor<3>, xv: Tensor<3>, mask: &AttentionMask) -> AttentionOutput {
        let [b, t, _] = xq.dims();
        let (h, dh) = (self.n_heads, self.head_dim);
        let split = |y: Tensor<3>| y.reshape([b, t, h, dh]).swap_dims(1, 2);
        // Scaling the queries (b·t·h·d_h values) instead of the scores (b·h·t·t).
        let q = split(self.query.forward(xq).mul_scalar(1.0 / (dh as f64).sqrt()));
        let k = split(self.key.forward(xk));
        let values = self.value.forward(xv);
        let v = split(values.clone());
        let mut scores = q.matmul(k.swap_dims(2, 3));
        if let Some(m) = mask.expanded(h) {
            scores = scores.mask_fill(m, MASKED_SCORE);
        }
        let probs = softmax(scores, 3);
        let ctx = self.dropout.forward(probs.clone()).matmul(v).swap_dims(1, 2).reshape([b, t, h * dh]);
        AttentionOutput { context: self.output.forward(ctx), probs, values }
    }

    /// The projected context of self-attention over `x` alone, without the probabilities:
    /// what inference needs. On CPU devices without autodiff (Flex, NdArray) the scores,
    /// mask, softmax and product with V run in one fused kernel per (sequence, head)
    /// (`ember_kernels::fused::attention`, no `[batch, heads, seq, seq]` tensor); elsewhere it is
    /// [`MultiHeadAttention::forward`]'s context. Both agree to float rounding (tested).
    ///
    /// # Panics
    /// On inputs of the wrong shape, like [`MultiHeadAttention::forward`].
    pub fn context(&self, x: Tensor<3>, mask: &AttentionMask) -> Tensor<3> {
        self.context_qkv(x.clone(), x.clone(), x, mask)
    }

    /// [`MultiHeadAttention::context`] with separate query, key and value inputs (see
    /// [`MultiHeadAttention::forward_qkv`]).
    ///
    /// # Panics
    /// On inputs of the wrong shape.
    pub fn context_qkv(&self, xq: Tensor<3>, xk: Tensor<3>, xv: Tensor<3>, mask: &AttentionMask) -> Tensor<3> {
        let [b, t, _] = xq.dims();
        // Autodiff devices never take the fused path, so dropout (a no-op without autodiff) is
        // never skipped.
        if b * t == 0 {
            // No queries: nothing to attend (Burn's CPU matmuls fail on empty operands).
            return Tensor::zeros([b, t, self.d_output()], &xq.device());
        }
        let fused_ok = crate::host::fused(&xq) && mask.dims() == [b, t];
        let host_mask = if fused_ok { mask.host_mask() } else { None };
        let Some(host_mask) = host_mask else { return self.forward_qkv(xq, xk, xv, mask).context };
        let device = xq.device();
        let (h, dh) = (self.n_heads, self.head_dim);
        let q = crate::host::to_host(self.query.forward(xq));
        let k = crate::host::to_host(self.key.forward(xk));
        let v = crate::host::to_host(self.value.forward(xv));
        let (Some((q, _)), Some((k, _)), Some((v, _))) = (q, k, v) else {
            unreachable!("the projections of an f32 input on a CPU device are f32")
        };
        let mut out = vec![0f32; q.len()];
        let scale = 1.0 / (dh as f32).sqrt();
        let opts = crate::host::options();
        let done = match host_mask {
            HostMask::Padded(pad) => {
                let dims = ember_kernels::fused::AttentionDims { batch: b, seq: t, heads: h, head_dim: dh };
                let m = ember_kernels::fused::AttentionMask { key_padding: pad, causal: mask.causal };
                ember_kernels::fused::attention(&q, &k, &v, dims, m, scale, &mut out, &opts)
            }
            HostMask::Packed(lengths) => {
                ember_kernels::fused::attention_packed(&q, &k, &v, lengths, h, dh, mask.causal, scale, &mut out, &opts)
            }
        };
        if let Err(e) = done {
            panic!("MultiHeadAttention::context: {e}");
        }
        let ctx = crate::host::from_host(out, burn::tensor::Shape::new([b, t, h * dh]), &device);
        self.output.forward(ctx)
    }

    /// The layer with only the heads in `keep` (ascending, unique), in that order: their
    /// query, key and value columns and their output-projection rows. Outputs equal the full
    /// layer's with the other heads' contributions removed (tested). New parameter ids for the
    /// narrowed weights.
    ///
    /// # Errors
    /// [`LayerError::Edit`] for an empty, unsorted or out-of-range `keep`, or an int8 layer
    /// (remove heads while float, then convert).
    pub fn retain_heads(&self, keep: &[usize]) -> Result<Self> {
        let action = format!("keep heads {keep:?} of {}", self.n_heads);
        check_keep(keep, self.n_heads).map_err(|r| edit(&action, r))?;
        let cols: Vec<usize> = keep.iter().flat_map(|&h| h * self.head_dim..(h + 1) * self.head_dim).collect();
        let wrap = |e: ember_quant::QuantError| edit(&action, e.to_string());
        Ok(MultiHeadAttention {
            query: self.query.retain_outputs(&cols).map_err(wrap)?,
            key: self.key.retain_outputs(&cols).map_err(wrap)?,
            value: self.value.retain_outputs(&cols).map_err(wrap)?,
            output: self.output.retain_inputs(&cols).map_err(wrap)?,
            dropout: self.dropout.clone(),
            n_heads: keep.len(),
            head_dim: self.head_dim,
        })
    }
}

/// `keep` must be non-empty, ascending, unique and below `n`; the reason otherwise.
pub(crate) fn check_keep(keep: &[usize], n: usize) -> std::result::Result<(), String> {
    if keep.is_empty() {
        return Err("nothing would be kept (remove the whole block or layer instead)".into());
    }
    if keep.windows(2).any(|w| w[0] >= w[1]) {
        return Err("the indices must be ascending without repeats".into());
    }
    if let Some(&i) = keep.iter().find(|&&i| i >= n) {
        return Err(format!("index {i} is out of range (there are {n})"));
    }
    Ok(())
}
