//! ALBERT's factorized embedding (Lan et al. 2020, §3.1): tokens are embedded in a small space
//! of size `E` and projected to the hidden size `H`, so the table costs `V·E + E·H` parameters
//! instead of `V·H`.

use crate::error::{LayerError, Result, invalid};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

/// Configuration of [`FactorizedEmbedding`].
#[derive(Config, Debug)]
pub struct FactorizedEmbeddingConfig {
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Embedding size `E` (ALBERT: 128).
    pub embedding_size: usize,
    /// Hidden size `H` of the encoder.
    pub hidden_size: usize,
    /// Maximum sequence length (position embeddings).
    #[config(default = 512)]
    pub max_positions: usize,
    /// Token-type (segment) vocabulary; 0 for none.
    #[config(default = 2)]
    pub type_vocab_size: usize,
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
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`LayerError::InvalidConfig`] for zero sizes, `E > V` (a factorization larger than the
    /// vocabulary saves nothing and is almost certainly a swapped argument), or `E ≠ H` without
    /// a projection.
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size == 0 || self.embedding_size == 0 || self.hidden_size == 0 || self.max_positions == 0 {
            return Err(invalid(
                "sizes",
                format!(
                    "V={} E={} H={} P={}",
                    self.vocab_size, self.embedding_size, self.hidden_size, self.max_positions
                ),
                "positive vocabulary, embedding, hidden and position sizes",
            ));
        }
        if self.embedding_size > self.vocab_size {
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
        Ok(())
    }

    /// Parameters without allocating: `(V + P + T)·E + 2E` (+ `E·H + H` with the projection).
    pub fn num_params(&self) -> usize {
        let e = self.embedding_size;
        (self.vocab_size + self.max_positions + self.type_vocab_size) * e
            + 2 * e
            + if self.projection { e * self.hidden_size + self.hidden_size } else { 0 }
    }

    /// Builds the layer.
    ///
    /// # Errors
    /// As [`FactorizedEmbeddingConfig::validate`].
    pub fn init(&self, device: &Device) -> Result<FactorizedEmbedding> {
        self.validate()?;
        let e = self.embedding_size;
        Ok(FactorizedEmbedding {
            word: EmbeddingConfig::new(self.vocab_size, e).init(device),
            position: EmbeddingConfig::new(self.max_positions, e).init(device),
            token_type: (self.type_vocab_size > 0).then(|| EmbeddingConfig::new(self.type_vocab_size, e).init(device)),
            norm: LayerNormConfig::new(e).with_epsilon(self.layer_norm_eps).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            projection: self.projection.then(|| LinearConfig::new(e, self.hidden_size).init(device)),
        })
    }
}

/// `project(dropout(LayerNorm(word[ids] + position[0..T] + token_type[types])))`, output
/// `[batch, seq, H]`.
#[derive(Module, Debug)]
pub struct FactorizedEmbedding {
    /// Token table `[V, E]`.
    pub word: Embedding,
    /// Position table `[P, E]`.
    pub position: Embedding,
    /// Token-type table `[T, E]`, if any.
    pub token_type: Option<Embedding>,
    /// LayerNorm over `E`.
    pub norm: LayerNorm,
    /// Dropout.
    pub dropout: Dropout,
    /// `E → H` projection (ALBERT's `embedding_hidden_mapping_in`).
    pub projection: Option<Linear>,
}

impl FactorizedEmbedding {
    /// Embeds `ids` (`[batch, seq]`) with optional token types of the same shape.
    ///
    /// # Errors
    /// [`LayerError::Shape`] if the sequence is longer than the position table or the token
    /// types' shape differs from `ids`'; [`LayerError::Input`] for an id outside the token table
    /// or a token type outside the token-type table (checked with one read from the device each).
    pub fn forward(&self, ids: Tensor<2, Int>, token_types: Option<Tensor<2, Int>>) -> Result<Tensor<3>> {
        let [b, t] = ids.dims();
        check_positions(t, self.position.weight.dims()[0])?;
        check_ids("ids", &ids, self.word.weight.dims()[0])?;
        if let (Some(types), Some(table)) = (&token_types, &self.token_type) {
            check_ids("token_types", types, table.weight.dims()[0])?;
        }
        let device = ids.device();
        let types = token_types_or_zeros(token_types, b, t, &device)?;
        let mut x = self.word.forward(ids);
        x = x + self.position.forward(positions(b, t, &device));
        if let Some(tt) = &self.token_type {
            x = x + tt.forward(types);
        }
        let x = self.dropout.forward(self.norm.forward(x));
        Ok(match &self.projection {
            Some(p) => p.forward(x),
            None => x,
        })
    }

    /// Logits of a masked-LM head tied to the token table: `h · wordᵀ`, `h` is `[..., E]` (the
    /// head maps `H → E` first, as ALBERT's `predictions.dense`), the result `[..., V]`.
    pub fn tied_logits<const D: usize>(&self, h: Tensor<D>) -> Tensor<D> {
        h.matmul(self.word.weight.val().transpose().unsqueeze::<D>())
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

/// The given token types (checked to be `[b, t]`) or zeros.
pub(crate) fn token_types_or_zeros(
    token_types: Option<Tensor<2, Int>>,
    b: usize,
    t: usize,
    device: &Device,
) -> Result<Tensor<2, Int>> {
    match token_types {
        Some(types) if types.dims() != [b, t] => Err(LayerError::Shape {
            what: "token_types".into(),
            expected: format!("[{b}, {t}]"),
            actual: format!("{:?}", types.dims()),
        }),
        Some(types) => Ok(types),
        None => Ok(Tensor::<2, Int>::zeros([b, t], device)),
    }
}
