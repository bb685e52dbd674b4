//! Ember's [`Embedding`]: a drop-in for `burn::nn::Embedding` with int8 storage (one symmetric
//! scale per row) and a tied output head that runs on the int8 kernels.
//!
//! Embedding tables are often the largest tensor of a small language model (BERT-base: 23 M of
//! 110 M parameters); quantizing only the Linear layers leaves them in f32. An int8 `Embedding`
//! stores `[n_embedding, d_model]` i8 values and `n_embedding` f32 scales (about 4× smaller);
//! lookups dequantize just the gathered rows. [`Embedding::tied_logits`] computes
//! `h · Eᵀ` for a language-model head that shares the table, with the int8 GEMM (the table is
//! exactly the `N×K` weight layout the kernels pack).

use crate::error::{QuantError, Result};
use crate::linear::{PreparedCache, host_f32};
use crate::runtime::{Int8Route, OpStatus, Prepared, int8_route};
use crate::scheme::{QuantDtype, WeightGranularity};
use crate::spec::{ActivationGranularity, ActivationMode, LinearQuantSpec};
use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::Initializer;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use ember_kernels::quantize::params_i8_symmetric;
use ember_kernels::{PackOptions, PackedB, WeightLayout};
use std::sync::Arc;

/// Configuration of an [`Embedding`]: the same fields and defaults as
/// `burn::nn::EmbeddingConfig`.
#[derive(Config, Debug)]
pub struct EmbeddingConfig {
    /// Number of embedding vectors (vocabulary size).
    pub n_embedding: usize,
    /// Size of each vector.
    pub d_model: usize,
    /// Initializer (Burn's default, standard normal).
    #[config(default = "Initializer::Normal{mean:0.0, std:1.0}")]
    pub initializer: Initializer,
}

impl EmbeddingConfig {
    /// Initializes a float table exactly as `burn::nn::EmbeddingConfig::init` does.
    pub fn init(&self, device: &Device) -> Embedding {
        let cfg =
            burn::nn::EmbeddingConfig::new(self.n_embedding, self.d_model).with_initializer(self.initializer.clone());
        Embedding::from(cfg.init(device))
    }
}

/// The int8 state of an [`Embedding`] (empty while float).
#[derive(Module, Debug)]
pub struct EmbeddingQuantState {
    /// Symmetric i8 rows `[n_embedding, d_model]` (`DType::I8`); `[0, 0]` while float.
    pub values: Param<Tensor<2, Int>>,
    /// One scale per row `[n_embedding]`; empty while float.
    pub scales: Param<Tensor<1>>,
}

/// An embedding table, float or int8 (see the [module docs](self)).
#[derive(Module, Debug)]
pub struct Embedding {
    /// Float table `[n_embedding, d_model]`; `[0, d_model]` once quantized.
    pub weight: Param<Tensor<2>>,
    /// Int8 rows and scales (empty while float).
    pub quant: EmbeddingQuantState,
    /// Marks this module as Ember's `Embedding` for whole-model passes ([`crate::tag`]).
    tag: crate::tag::LayerTag<Embedding>,
    #[module(skip)]
    head: PreparedCache,
    #[module(skip)]
    words: crate::words::WordCache,
}

impl From<burn::nn::Embedding> for Embedding {
    fn from(e: burn::nn::Embedding) -> Self {
        let device = e.weight.device();
        Embedding {
            weight: e.weight,
            quant: EmbeddingQuantState::empty(&device),
            tag: Default::default(),
            head: PreparedCache::default(),
            words: Default::default(),
        }
    }
}

impl EmbeddingQuantState {
    /// Empty state on `device`.
    pub fn empty(device: &Device) -> Self {
        EmbeddingQuantState {
            values: Param::initialized(
                ParamId::new(),
                Tensor::from_data(TensorData::new(Vec::<i8>::new(), [0, 0]), (device, DType::I8)),
            ),
            scales: Param::initialized(
                ParamId::new(),
                Tensor::from_data(TensorData::new(Vec::<f32>::new(), [0]), device),
            )
            .set_require_grad(false),
        }
    }
}

/// Per-row symmetric i8 quantization of a row-major `[rows, cols]` table.
///
/// # Errors
/// [`QuantError::NonFinite`] for NaN/Inf values.
pub fn quantize_rows_symmetric(w: &[f32], rows: usize, cols: usize) -> Result<(Vec<i8>, Vec<f32>)> {
    crate::error::check_finite(|| "embedding table".into(), w)?;
    let mut q = vec![0i8; rows * cols];
    let mut scales = Vec::with_capacity(rows);
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let p = params_i8_symmetric(row.iter().fold(0f32, |a, v| a.max(v.abs())))?;
        scales.push(p.scale);
        for (o, &v) in q[r * cols..(r + 1) * cols].iter_mut().zip(row) {
            *o = crate::scheme::quantize_value(v, p, QuantDtype::I8Symmetric) as i8;
        }
    }
    Ok((q, scales))
}

impl Embedding {
    /// Whether the table is int8.
    pub fn is_quantized(&self) -> bool {
        self.quant.values.dims()[0] != 0
    }

    /// Number of rows.
    pub fn n_embedding(&self) -> usize {
        if self.is_quantized() { self.quant.values.dims()[0] } else { self.weight.dims()[0] }
    }

    /// Row size.
    pub fn d_model(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Converts the table to int8 with one symmetric scale per row.
    ///
    /// # Errors
    /// [`QuantError::NonFinite`] for NaN/Inf values; [`QuantError::InvalidConfig`] if already int8.
    pub fn quantize(self) -> Result<Embedding> {
        if self.is_quantized() {
            return Err(QuantError::InvalidConfig {
                what: "embedding",
                value: "already int8".into(),
                expected: "a float table".into(),
            });
        }
        let [n, d] = self.weight.dims();
        let device = self.weight.device();
        let (q, scales) = quantize_rows_symmetric(&host_f32("embedding weight", self.weight.val())?, n, d)?;
        Ok(Embedding {
            weight: Param::initialized(self.weight.id, Tensor::zeros([0, d], &device)),
            quant: EmbeddingQuantState {
                values: Param::initialized(
                    ParamId::new(),
                    Tensor::from_data(TensorData::new(q, [n, d]), (&device, DType::I8)),
                ),
                scales: Param::initialized(
                    self.quant.scales.id,
                    Tensor::from_data(TensorData::new(scales, [n]), &device),
                )
                .set_require_grad(false),
            },
            tag: Default::default(),
            head: PreparedCache::default(),
            words: Default::default(),
        })
    }

    /// The effective float table `[n_embedding, d_model]` (dequantized when int8).
    ///
    /// # Panics
    /// If a GPU device fails to read the int8 table back once to re-lay it for its kernels (see
    /// docs/gpu.md).
    pub fn effective_weight(&self) -> Tensor<2> {
        if !self.is_quantized() {
            return self.weight.val();
        }
        let device = self.quant.values.device();
        let values = self
            .words
            .float_values(&self.quant.values, &device)
            .unwrap_or_else(|e| panic!("ember_quant::Embedding: reading the int8 table failed: {e}"));
        values * self.quant.scales.val().unsqueeze_dim::<2>(1)
    }

    /// Looks up `ids` (`[batch, seq]`) and returns `[batch, seq, d_model]`, as
    /// `burn::nn::Embedding::forward`. An int8 table dequantizes only the gathered rows.
    ///
    /// # Panics
    /// For ids outside `0..n_embedding`, as Burn's `Embedding` (ids are indices, not data Ember
    /// validates on every call); if a GPU device fails to read the int8 table back once to
    /// re-lay it for its kernels (see docs/gpu.md).
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        if !self.is_quantized() {
            return burn::tensor::module::embedding(self.weight.val(), ids);
        }
        let [b, s] = ids.dims();
        let d = self.d_model();
        let flat = ids.reshape([b * s]);
        let rows = self
            .words
            .float_rows(&self.quant.values, flat.clone(), &flat.device())
            .unwrap_or_else(|e| panic!("ember_quant::Embedding: reading the int8 table failed: {e}"));
        let scales = self.quant.scales.val().select(0, flat).unsqueeze_dim::<2>(1);
        (rows * scales).reshape([b, s, d])
    }

    /// Logits of a language-model head tied to this table: `hidden · Eᵀ`, `hidden` is
    /// `[..., d_model]`, the result `[..., n_embedding]`. With an int8 table on a CPU device this
    /// runs the int8 GEMM with dynamic per-row activation quantization.
    ///
    /// # Panics
    /// If the last dimension of `hidden` is not `d_model` (use [`Embedding::try_tied_logits`]).
    pub fn tied_logits<const D: usize>(&self, hidden: Tensor<D>) -> Tensor<D> {
        match self.try_tied_logits(hidden.clone()) {
            Ok(y) => y,
            Err(QuantError::Kernel(ember_kernels::KernelError::NonFinite { .. })) => {
                hidden.matmul(self.effective_weight().transpose().unsqueeze::<D>())
            }
            Err(e) => panic!("ember_quant::Embedding::tied_logits: {e}"),
        }
    }

    /// [`Embedding::tied_logits`] with errors instead of panics.
    ///
    /// # Errors
    /// [`QuantError::Shape`] for a wrong last dimension; kernel errors (NaN/Inf input) on the
    /// int8 path.
    pub fn try_tied_logits<const D: usize>(&self, hidden: Tensor<D>) -> Result<Tensor<D>> {
        let d = self.d_model();
        let dims = hidden.dims();
        if dims[D - 1] != d {
            return Err(QuantError::Shape {
                what: "tied head input".into(),
                expected: format!("[..., {d}]"),
                actual: format!("{dims:?}"),
            });
        }
        if !self.is_quantized() {
            return Ok(hidden.matmul(self.weight.val().transpose().unsqueeze::<D>()));
        }
        match int8_route(&hidden.device()) {
            Int8Route::Kernels if hidden.dtype() == DType::F32 => {
                let p = self.prepared_head()?;
                let status = OpStatus::default();
                use crate::ext::EmberInt8Ops;
                let out = burn::backend::Dispatch::ember_int8_linear(hidden.into_dispatch(), &p, &status);
                match status.take() {
                    Some(e) => Err(e),
                    None => Ok(Tensor::from_dispatch(out)),
                }
            }
            _ => Ok(hidden.matmul(self.effective_weight().transpose().unsqueeze::<D>())),
        }
    }

    fn prepared_head(&self) -> Result<Arc<Prepared>> {
        let id = self.quant.values.id;
        if let Ok(g) = self.head.lock()
            && let Some((cid, p)) = g.as_ref()
            && *cid == id
        {
            return Ok(p.clone());
        }
        let [n, d] = self.quant.values.dims();
        let values = crate::linear::host_int::<i8, 2>("quant.values", self.quant.values.val())?;
        let scales = host_f32("quant.scales", self.quant.scales.val())?;
        if scales.len() != n {
            return Err(QuantError::Data {
                what: "quant.scales".into(),
                message: format!("{} scales for {n} rows", scales.len()),
            });
        }
        let packed = PackedB::pack(&values, d, n, PackOptions { layout: WeightLayout::NxK, ..PackOptions::default() })?;
        let spec = LinearQuantSpec {
            mode: ActivationMode::Dynamic,
            activation_dtype: QuantDtype::U8Affine,
            activation_granularity: ActivationGranularity::PerRow,
            weight: WeightGranularity::PerChannel,
            d_input: d,
            d_output: n,
        };
        let p = Arc::new(Prepared { spec, packed, scales, bias: None, act: None, smooth_inv: None });
        if let Ok(mut g) = self.head.lock() {
            *g = Some((id, p.clone()));
        }
        Ok(p)
    }
}
