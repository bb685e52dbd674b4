//! The token embedding of every Ember model, with ALBERT's factorization as an option (Lan et
//! al. 2020, §3.1): tokens are embedded in a small space of size `E` and projected to the
//! hidden size `H`, so the table costs `V·E + E·H` parameters instead of `V·H`.
//!
//! `project(dropout(norm(word[ids] + position[0..T] + token_type[types])))`, each part optional:
//! BERT is `E = H` without projection; ALBERT adds the projection; a GPT-style decoder has no
//! token types and no normalization. The tables are Ember's int8-ready [`Embedding`]s and the
//! projection an int8-ready [`Linear`].

use crate::error::{LayerError, Result, invalid};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor};
use ember_quant::{Embedding, EmbeddingConfig, Linear, LinearConfig};

/// Configuration of [`FactorizedEmbedding`].
#[derive(Config, Debug)]
pub struct FactorizedEmbeddingConfig {
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Embedding size `E` (ALBERT: 128; BERT: `H`).
    pub embedding_size: usize,
    /// Hidden size `H` of the encoder.
    pub hidden_size: usize,
    /// Rows of the position table (longest sequence); 0 for no position embedding.
    #[config(default = 512)]
    pub max_positions: usize,
    /// Token-type (segment) vocabulary; 0 for none.
    #[config(default = 2)]
    pub type_vocab_size: usize,
    /// A LayerNorm over `E` after the sum (BERT, ALBERT); `false` for GPT-style decoders.
    #[config(default = true)]
    pub layer_norm: bool,
    /// LayerNorm epsilon (BERT / ALBERT: 1e-12).
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
    /// Dropout after the LayerNorm.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Whether to project `E → H`. Must be true when `E ≠ H`; with `E = H` and `false` this is
    /// BERT's embedding.
    #[config(default = true)]
    pub projection: bool,
}

impl FactorizedEmbeddingConfig {
    /// BERT's embedding: `E = H`, no projection, positions and token types, LayerNorm.
    pub fn bert(vocab_size: usize, hidden_size: usize, max_positions: usize, type_vocab_size: usize) -> Self {
        FactorizedEmbeddingConfig::new(vocab_size, hidden_size, hidden_size)
            .with_max_positions(max_positions)
            .with_type_vocab_size(type_vocab_size)
            .with_projection(false)
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// [`LayerError::InvalidConfig`] for zero sizes, a factorization with `E > V` (larger than
    /// the vocabulary: it saves nothing and is almost certainly a swapped argument), `E ≠ H`
    /// without a projection, or sizes no process could allocate.
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size == 0 || self.embedding_size == 0 || self.hidden_size == 0 {
            return Err(invalid(
                "sizes",
                format!("V={} E={} H={}", self.vocab_size, self.embedding_size, self.hidden_size),
                "positive vocabulary, embedding and hidden sizes",
            ));
        }
        if self.projection && self.embedding_size > self.vocab_size {
            return Err(invalid(
                "embedding_size",
                self.embedding_size,
                format!("at most vocab_size = {} (E > V factorizes nothing)", self.vocab_size),
            ));
        }
        if !self.projection && self.embedding_size != self.hidden_size {
            return Err(invalid(
                "projection",
                false,
                format!("a projection when embedding_size {} ≠ hidden_size {}", self.embedding_size, self.hidden_size),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(invalid("layer_norm_eps", self.layer_norm_eps, "a finite value > 0"));
        }
        self.count().checked().map(|_| ())
    }

    /// Parameters without allocating: `(V + P + T)·E` (+ `2E` with the LayerNorm, + `E·H + H`
    /// with the projection).
    ///
    /// # Errors
    /// As [`FactorizedEmbeddingConfig::validate`].
    pub fn num_params(&self) -> Result<usize> {
        self.validate()?;
        self.count().checked()
    }

    pub(crate) fn count(&self) -> crate::error::Count {
        use crate::error::Count as C;
        let e = C::from(self.embedding_size);
        (C::from(self.vocab_size) + C::from(self.max_positions) + C::from(self.type_vocab_size)) * e
            + if self.layer_norm { C::from(2) * e } else { C(0) }
            + if self.projection { e * C::from(self.hidden_size) + C::from(self.hidden_size) } else { C(0) }
    }

    /// Builds the layer.
    ///
    /// # Errors
    /// As [`FactorizedEmbeddingConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<FactorizedEmbedding> {
        self.validate()?;
        let e = self.embedding_size;
        let table = |n| (n > 0).then(|| EmbeddingConfig::new(n, e).init(device));
        Ok(FactorizedEmbedding {
            word: EmbeddingConfig::new(self.vocab_size, e).init(device),
            position: table(self.max_positions),
            token_type: table(self.type_vocab_size),
            norm: self.layer_norm.then(|| LayerNormConfig::new(e).with_epsilon(self.layer_norm_eps).init(device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            projection: self.projection.then(|| LinearConfig::new(e, self.hidden_size).init(device)),
            layer_norm_eps: self.layer_norm_eps,
        })
    }
}

/// Token embedding, optionally factorized. See the [module docs](self).
#[derive(Module, Debug)]
pub struct FactorizedEmbedding {
    /// Token table `[V, E]`.
    pub word: Embedding,
    /// Position table `[P, E]`, if any.
    pub position: Option<Embedding>,
    /// Token-type table `[T, E]`, if any.
    pub token_type: Option<Embedding>,
    /// LayerNorm over `E`, if any.
    pub norm: Option<LayerNorm>,
    /// Dropout.
    pub dropout: Dropout,
    /// `E → H` projection (ALBERT's `embedding_hidden_mapping_in`), if any.
    pub projection: Option<Linear>,
    /// The LayerNorm's epsilon (Burn's `LayerNorm` keeps it private; kept for
    /// [`FactorizedEmbedding::config`]). It must be the norm's own: the fused CPU path reads it
    /// from here.
    pub layer_norm_eps: f64,
}

impl FactorizedEmbedding {
    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.word.n_embedding()
    }

    /// Embedding size `E`.
    pub fn embedding_size(&self) -> usize {
        self.word.d_model()
    }

    /// Output width `H`.
    pub fn hidden_size(&self) -> usize {
        self.projection.as_ref().map_or(self.embedding_size(), Linear::d_output)
    }

    /// Rows of the position table (0 without one).
    pub fn max_positions(&self) -> usize {
        self.position.as_ref().map_or(0, Embedding::n_embedding)
    }

    /// Token types (0 without a table).
    pub fn type_vocab_size(&self) -> usize {
        self.token_type.as_ref().map_or(0, Embedding::n_embedding)
    }

    /// The config that builds a layer of this shape.
    pub fn config(&self) -> FactorizedEmbeddingConfig {
        FactorizedEmbeddingConfig::new(self.vocab_size(), self.embedding_size(), self.hidden_size())
            .with_max_positions(self.max_positions())
            .with_type_vocab_size(self.type_vocab_size())
            .with_layer_norm(self.norm.is_some())
            .with_layer_norm_eps(self.layer_norm_eps)
            .with_dropout(self.dropout.prob)
            .with_projection(self.projection.is_some())
    }

    /// Embeds `ids` (`[batch, seq]`) with optional token types of the same shape (zeros when
    /// `None`); output `[batch, seq, H]`.
    ///
    /// # Errors
    /// [`LayerError::Shape`] if the sequence is longer than the position table or the token
    /// types' shape differs from `ids`'; [`LayerError::Input`] for an id outside the token table
    /// or a token type outside the token-type table (checked with one read from the device
    /// each), or token types given to a layer without a token-type table.
    pub fn forward(&self, ids: Tensor<2, Int>, token_types: Option<Tensor<2, Int>>) -> Result<Tensor<3>> {
        let [b, t] = ids.dims();
        if let Some(p) = &self.position {
            check_positions(t, p.n_embedding())?;
        }
        check_ids("ids", &ids, self.vocab_size())?;
        let device = ids.device();
        if let Some(types) = &token_types {
            check_types_shape(types, b, t)?;
            match &self.token_type {
                Some(table) => check_ids("token_types", types, table.n_embedding())?,
                None => {
                    return Err(LayerError::Input {
                        what: "token_types".into(),
                        message: "given to an embedding without a token-type table".into(),
                    });
                }
            }
        }
        let mut x = self.word.forward(ids);
        let mut last = None;
        if let Some(p) = &self.position {
            last = Some(p.forward(positions(b, t, &device)));
        }
        if let Some(tt) = &self.token_type {
            let y = tt.forward(token_types.unwrap_or_else(|| Tensor::zeros([b, t], &device)));
            if let Some(prev) = last.replace(y) {
                x = x + prev;
            }
        }
        x = match &self.norm {
            // The last addition is fused into the LayerNorm on CPU devices.
            Some(n) => crate::host::add_layer_norm(n, self.layer_norm_eps, x, last),
            None => match last {
                Some(y) => x + y,
                None => x,
            },
        };
        let x = self.dropout.forward(x);
        Ok(match &self.projection {
            Some(p) => p.forward(x),
            None => x,
        })
    }

    /// Logits of a language-model head tied to the token table: `h · wordᵀ`, `h` is `[..., E]`
    /// (a factorized model maps `H → E` first, as ALBERT's `predictions.dense`), the result
    /// `[..., V]`. An int8 table runs Ember's int8 GEMM on CPU devices.
    ///
    /// # Errors
    /// [`LayerError::Quant`] if the last dimension of `h` is not `E`, or for NaN input on the
    /// int8 kernel path.
    pub fn tied_logits<const D: usize>(&self, h: Tensor<D>) -> Result<Tensor<D>> {
        Ok(self.word.try_tied_logits(h)?)
    }
}

/// Errors unless `t` positions fit a table of `max`.
pub(crate) fn check_positions(t: usize, max: usize) -> Result<()> {
    if t > max {
        return Err(LayerError::Shape {
            what: "ids".into(),
            expected: format!("at most {max} positions"),
            actual: format!("{t}"),
        });
    }
    Ok(())
}

/// Errors unless every value of `ids` is in `0..table` (one read from the device; an empty
/// tensor passes). Burn's embedding lookup would otherwise index out of bounds and panic (CPU)
/// or read garbage (GPU).
pub(crate) fn check_ids(what: &str, ids: &Tensor<2, Int>, table: usize) -> Result<()> {
    if ids.dims().contains(&0) {
        return Ok(());
    }
    let flat = ids.clone().reshape([-1]);
    let bounds = Tensor::cat(vec![flat.clone().min(), flat.max()], 0);
    let input = |message: String| LayerError::Input { what: what.into(), message };
    let v = bounds
        .try_into_data()
        .map_err(|e| input(format!("could not be read from the device: {e:?}")))?
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| input(format!("could not be read from the device: {e:?}")))?;
    let (lo, hi) = (v[0], v[1]);
    if lo < 0 || hi >= table as i64 {
        let bad = if lo < 0 { lo } else { hi };
        return Err(input(format!("id {bad} is outside the embedding table's range 0..{table}")));
    }
    Ok(())
}

/// Position ids `0..t` for every row, `[b, t]`.
pub(crate) fn positions(b: usize, t: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<1, Int>::arange(0..t as i64, device).reshape([1, t]).expand([b, t])
}

/// Errors unless `types` is `[b, t]` (the ids' shape).
pub(crate) fn check_types_shape(types: &Tensor<2, Int>, b: usize, t: usize) -> Result<()> {
    if types.dims() != [b, t] {
        return Err(LayerError::Shape {
            what: "token_types".into(),
            expected: format!("[{b}, {t}]"),
            actual: format!("{:?}", types.dims()),
        });
    }
    Ok(())
}
