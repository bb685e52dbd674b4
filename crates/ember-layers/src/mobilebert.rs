//! MobileBERT (Sun et al. 2020): a 512-wide body whose layers run attention and stacked
//! feed-forward networks in a 128-wide bottleneck, with NoNorm, and an embedding that projects
//! the concatenated trigram of 128-wide token embeddings. Built from a [`MobileBertSpec`];
//! `num_params()` of the built model equals [`MobileBertSpec::count`] (24.58M for the released
//! configuration, published as 25.3M).

use crate::activation::Activation;
use crate::attention::{AttentionMask, MultiHeadAttention};
use crate::embedding::{check_ids, check_positions, check_types_shape, positions};
use crate::error::{Result, invalid};
use crate::feedforward::FeedForward;
use crate::params::MobileBertSpec;
use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Bool, Device, Int, Tensor};
use ember_quant::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use serde::{Deserialize, Serialize};

/// The normalisation MobileBERT uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Normalization {
    /// `x ⊙ γ + β` without statistics (MobileBERT's choice, cheaper on device).
    #[default]
    NoNorm,
    /// LayerNorm (eps 1e-12).
    LayerNorm,
}

/// `x ⊙ γ + β`, MobileBERT's NoNorm.
#[derive(Module, Debug)]
pub struct NoNorm {
    /// Scale γ (initialised to 1).
    pub weight: Param<Tensor<1>>,
    /// Shift β (initialised to 0).
    pub bias: Param<Tensor<1>>,
}

/// A NoNorm or LayerNorm.
#[derive(Module, Debug)]
pub struct Norm {
    /// Set for [`Normalization::NoNorm`].
    pub no_norm: Option<NoNorm>,
    /// Set for [`Normalization::LayerNorm`].
    pub layer_norm: Option<LayerNorm>,
}

impl Norm {
    fn new(kind: Normalization, d: usize, device: &Device) -> Self {
        match kind {
            Normalization::NoNorm => Norm {
                no_norm: Some(NoNorm {
                    weight: Param::from_tensor(Tensor::ones([d], device)),
                    bias: Param::from_tensor(Tensor::zeros([d], device)),
                }),
                layer_norm: None,
            },
            Normalization::LayerNorm => {
                Norm { no_norm: None, layer_norm: Some(LayerNormConfig::new(d).with_epsilon(1e-12).init(device)) }
            }
        }
    }

    /// Applies the normalisation over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match (&self.no_norm, &self.layer_norm) {
            (Some(n), _) => x * n.weight.val().unsqueeze::<D>() + n.bias.val().unsqueeze::<D>(),
            (None, Some(l)) => l.forward(x),
            (None, None) => x,
        }
    }
}

/// A linear layer followed by a normalisation.
#[derive(Module, Debug)]
pub struct DenseNorm {
    /// The projection.
    pub dense: Linear,
    /// The normalisation.
    pub norm: Norm,
}

/// One feed-forward block of the stack: `norm(ffn(x) + x)` with a ReLU [`FeedForward`]
/// (`[bottleneck, intermediate]` then `[intermediate, bottleneck]`).
#[derive(Module, Debug)]
pub struct FfnBlock {
    /// The two projections.
    pub ffn: FeedForward,
    /// Normalisation of the residual sum.
    pub norm: Norm,
}

impl FfnBlock {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.norm.forward(self.ffn.forward(x.clone()) + x)
    }
}

/// One MobileBERT layer.
#[derive(Module, Debug)]
pub struct MobileBertLayer {
    /// Body → bottleneck for the layer input (the residual of the attention block).
    pub bottleneck_input: DenseNorm,
    /// Body → bottleneck read by query and key (`key_query_shared_bottleneck`).
    pub bottleneck_attention: DenseNorm,
    /// The attention: query and key `[B, B]` on the shared bottleneck, value `[H, B]` on the
    /// body (`[B, B]` on the layer input's bottleneck with `use_bottleneck_attention`), output
    /// `[B, B]`.
    pub attention: MultiHeadAttention,
    /// Normalisation of the attention output plus the bottlenecked layer input.
    pub attention_norm: Norm,
    /// The feed-forward stack (the last block is the layer's main FFN).
    pub ffn: Vec<FfnBlock>,
    /// Bottleneck → body and the final normalisation (with the layer input as residual).
    pub output_bottleneck: DenseNorm,
    /// Whether the value reads the bottleneck.
    pub value_from_bottleneck: bool,
}

impl MobileBertLayer {
    /// Runs the layer over `x` (`[batch, seq, H]`); returns the output and the attention
    /// probabilities.
    pub fn forward(&self, x: Tensor<3>, mask: &AttentionMask) -> (Tensor<3>, Tensor<4>) {
        let layer_input = self.bottleneck_input.norm.forward(self.bottleneck_input.dense.forward(x.clone()));
        // With `use_bottleneck_attention` query, key and value all read the input bottleneck;
        // otherwise query and key read the shared attention bottleneck and the value the body.
        let o = if self.value_from_bottleneck {
            self.attention.forward_qkv(layer_input.clone(), layer_input.clone(), layer_input.clone(), mask)
        } else {
            let shared = self.bottleneck_attention.norm.forward(self.bottleneck_attention.dense.forward(x.clone()));
            self.attention.forward_qkv(shared.clone(), shared, x.clone(), mask)
        };
        let mut y = self.attention_norm.forward(o.context + layer_input);
        for block in &self.ffn {
            y = block.forward(y);
        }
        let out = self.output_bottleneck.norm.forward(self.output_bottleneck.dense.forward(y) + x);
        (out, o.probs)
    }
}

/// MobileBERT's embedding: trigram of `E`-wide token embeddings projected to `H`, plus
/// position and token-type embeddings, then the normalisation.
#[derive(Module, Debug)]
pub struct MobileBertEmbedding {
    /// Token table `[V, E]`.
    pub word: Embedding,
    /// Position table `[P, H]`.
    pub position: Embedding,
    /// Token-type table `[T, H]`.
    pub token_type: Embedding,
    /// `[3E (or E), H]` projection.
    pub transformation: Linear,
    /// Normalisation over `H`.
    pub norm: Norm,
    /// Whether the input is the trigram concatenation.
    pub trigram: bool,
}

impl MobileBertEmbedding {
    /// Embeds `ids` (`[batch, seq]`).
    ///
    /// # Errors
    /// [`crate::LayerError::Shape`] for sequences longer than the position table or token
    /// types of another shape; [`crate::LayerError::Input`] for ids or token types outside their
    /// tables.
    pub fn forward(&self, ids: Tensor<2, Int>, token_types: Option<Tensor<2, Int>>) -> Result<Tensor<3>> {
        let [b, t] = ids.dims();
        check_positions(t, self.position.n_embedding())?;
        check_ids("ids", &ids, self.word.n_embedding())?;
        if let Some(types) = &token_types {
            check_types_shape(types, b, t)?;
            check_ids("token_types", types, self.token_type.n_embedding())?;
        }
        let device = ids.device();
        let types = token_types.unwrap_or_else(|| Tensor::zeros([b, t], &device));
        let e = self.word.forward(ids);
        let e = if self.trigram {
            let d = e.dims()[2];
            let zero = Tensor::<3>::zeros([b, 1, d], &device);
            // [next token, token, previous token], zero-padded at the ends (as the reference).
            let next = if t > 1 {
                Tensor::cat(vec![e.clone().slice([0..b, 1..t, 0..d]), zero.clone()], 1)
            } else {
                zero.clone()
            };
            let prev = if t > 1 { Tensor::cat(vec![zero, e.clone().slice([0..b, 0..t - 1, 0..d])], 1) } else { zero };
            Tensor::cat(vec![next, e, prev], 2)
        } else {
            e
        };
        let x = self.transformation.forward(e);
        Ok(self.norm.forward(x + self.position.forward(positions(b, t, &device)) + self.token_type.forward(types)))
    }
}

/// The MobileBERT encoder stack (embedding and layers; no pooler, as released).
#[derive(Module, Debug)]
pub struct MobileBert {
    /// The embedding.
    pub embedding: MobileBertEmbedding,
    /// The layers.
    pub layers: Vec<MobileBertLayer>,
}

/// What [`MobileBert::try_forward`] returns.
#[derive(Debug, Clone)]
pub struct MobileBertOutput {
    /// The last layer's output `[batch, seq, H]`.
    pub last_hidden: Tensor<3>,
    /// With `collect`: the embedding output, then every layer's output (`n_layers + 1` tensors
    /// `[batch, seq, H]`, as Hugging Face's `output_hidden_states`); empty otherwise.
    pub hidden_states: Vec<Tensor<3>>,
    /// With `collect`: every layer's attention probabilities `[batch, heads, seq, seq]`; empty
    /// otherwise.
    pub attentions: Vec<Tensor<4>>,
}

impl MobileBert {
    /// Runs the model on `ids` (`[batch, seq]`) with optional token types and padding mask
    /// (`true` at padding); with `collect`, keeps every layer's hidden state and attention
    /// probabilities (the feature maps MobileBERT's layer-wise transfer matches).
    ///
    /// ```
    /// use burn::tensor::{Device, Int, Tensor};
    /// use ember_layers::{MobileBertSpec, Normalization};
    ///
    /// let device = Device::flex();
    /// let mut spec = MobileBertSpec::mobilebert();
    /// (spec.vocab_size, spec.embedding_size, spec.hidden_size) = (50, 8, 32);
    /// (spec.intra_bottleneck_size, spec.intermediate_size, spec.num_hidden_layers) = (16, 32, 2);
    /// let model = spec.init(4, Normalization::NoNorm, &device).unwrap();
    /// let ids = Tensor::<2, Int>::from_ints([[1, 2, 3], [4, 5, 6]], &device);
    /// let out = model.try_forward(ids, None, None, true).unwrap();
    /// assert_eq!(out.hidden_states.len(), 3); // embedding output + 2 layers
    /// assert_eq!(out.attentions[1].dims(), [2, 4, 3, 3]);
    /// ```
    ///
    /// # Errors
    /// As [`MobileBertEmbedding::forward`]; [`crate::LayerError::Shape`] for a padding mask of
    /// another shape or an empty batch.
    pub fn try_forward(
        &self,
        ids: Tensor<2, Int>,
        token_types: Option<Tensor<2, Int>>,
        pad_mask: Option<Tensor<2, Bool>>,
        collect: bool,
    ) -> Result<MobileBertOutput> {
        let [b, t] = ids.dims();
        if b == 0 || t == 0 {
            return Err(crate::error::LayerError::Shape {
                what: "ids".into(),
                expected: "at least one sequence of at least one token".into(),
                actual: format!("[{b}, {t}]"),
            });
        }
        let device = ids.device();
        let mut x = self.embedding.forward(ids, token_types)?;
        let mask = AttentionMask::new(pad_mask, false, b, t, &device)?;
        let (mut hidden_states, mut attentions) = (Vec::new(), Vec::new());
        for l in &self.layers {
            if collect {
                hidden_states.push(x.clone());
            }
            let (y, p) = l.forward(x, &mask);
            x = y;
            if collect {
                attentions.push(p);
            }
        }
        if collect {
            hidden_states.push(x.clone());
        }
        Ok(MobileBertOutput { last_hidden: x, hidden_states, attentions })
    }

    /// Runs the model; returns the final hidden states and every layer's attention
    /// probabilities ([`MobileBert::try_forward`] without token types, collecting).
    ///
    /// # Errors
    /// As [`MobileBert::try_forward`].
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Result<(Tensor<3>, Vec<Tensor<4>>)> {
        let out = self.try_forward(ids, None, pad_mask, true)?;
        Ok((out.last_hidden, out.attentions))
    }
}

impl MobileBertSpec {
    /// Builds the model (the count of the result equals [`MobileBertSpec::count`] without the
    /// pooler).
    ///
    /// # Errors
    /// [`crate::LayerError::InvalidConfig`] for zero sizes, heads not dividing the bottleneck, an
    /// unshared query/key bottleneck (not implemented: the released model shares it), or a
    /// pooler dense layer (not part of this module).
    pub fn init(&self, n_heads: usize, normalization: Normalization, device: &Device) -> Result<MobileBert> {
        let (h, bn, f, e) = (self.hidden_size, self.intra_bottleneck_size, self.intermediate_size, self.embedding_size);
        if [
            h,
            bn,
            f,
            e,
            self.vocab_size,
            self.num_hidden_layers,
            self.num_feedforward_networks,
            self.type_vocab_size,
            self.max_position_embeddings,
        ]
        .contains(&0)
        {
            return Err(invalid("sizes", format!("{self:?}"), "positive sizes, layers and feed-forward networks"));
        }
        if n_heads == 0 || !bn.is_multiple_of(n_heads) {
            return Err(invalid("n_heads", n_heads, format!("a divisor of intra_bottleneck_size = {bn}")));
        }
        if !self.key_query_shared_bottleneck || self.pooler_dense {
            return Err(invalid(
                "key_query_shared_bottleneck / pooler_dense",
                format!("{} / {}", self.key_query_shared_bottleneck, self.pooler_dense),
                "true / false (the released MobileBERT configuration)",
            ));
        }
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let dn = |i, o| DenseNorm { dense: lin(i, o), norm: Norm::new(normalization, o, device) };
        let layers = (0..self.num_hidden_layers)
            .map(|_| {
                Ok(MobileBertLayer {
                    bottleneck_input: dn(h, bn),
                    bottleneck_attention: dn(h, bn),
                    attention: MultiHeadAttention::from_parts(
                        lin(bn, bn),
                        lin(bn, bn),
                        lin(if self.use_bottleneck_attention { bn } else { h }, bn),
                        lin(bn, bn),
                        n_heads,
                        bn / n_heads,
                        0.0,
                    )?,
                    attention_norm: Norm::new(normalization, bn, device),
                    ffn: (0..self.num_feedforward_networks)
                        .map(|_| {
                            Ok(FfnBlock {
                                ffn: FeedForward::from_parts(lin(bn, f), lin(f, bn), Activation::Relu, 0.0)?,
                                norm: Norm::new(normalization, bn, device),
                            })
                        })
                        .collect::<Result<_>>()?,
                    output_bottleneck: dn(bn, h),
                    value_from_bottleneck: self.use_bottleneck_attention,
                })
            })
            .collect::<Result<_>>()?;
        let trigram = if self.trigram_input { 3 } else { 1 };
        Ok(MobileBert {
            embedding: MobileBertEmbedding {
                word: EmbeddingConfig::new(self.vocab_size, e).init(device),
                position: EmbeddingConfig::new(self.max_position_embeddings, h).init(device),
                token_type: EmbeddingConfig::new(self.type_vocab_size, h).init(device),
                transformation: lin(trigram * e, h),
                norm: Norm::new(normalization, h, device),
                trigram: self.trigram_input,
            },
            layers,
        })
    }
}
