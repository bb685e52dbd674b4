//! What models hand to the distiller, and the trait that maps a model's own outputs to it
//! (TextBrewer's adaptor, as a Rust trait).

use burn::tensor::{Bool, Device, Int, Tensor};

/// Which outputs the configured losses need, so a model can skip collecting the rest
/// (for example `Encoder::forward(x, mask, collect)` in `ember-layers`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputRequest {
    /// Logits (soft-target and hard-label losses).
    pub logits: bool,
    /// Hidden states (index 0 = embedding output, `l` = block `l`).
    pub hidden_states: bool,
    /// Attention probabilities of every block.
    pub attentions: bool,
    /// Value vectors of every block (MiniLM value relation).
    pub values: bool,
}

/// A model's outputs as the losses consume them. Build with the `with_*` methods; tensors the
/// configured losses do not use may be left out.
#[derive(Clone, Debug, Default)]
pub struct ModelOutputs {
    /// Logits `[batch, seq, vocab]`; classifiers store `[batch, 1, classes]`
    /// (see [`ModelOutputs::with_class_logits`]).
    pub logits: Option<Tensor<3>>,
    /// Hard labels `[batch, seq]` (classifiers: `[batch, 1]`), from the batch; only the
    /// student's are used.
    pub labels: Option<Tensor<2, Int>>,
    /// Padding mask `[batch, seq]`, `true` = padding; only the student's is used.
    pub pad_mask: Option<Tensor<2, Bool>>,
    /// Hidden states `[batch, seq, width]`: index 0 the embedding output, `l` block `l`.
    pub hidden_states: Vec<Tensor<3>>,
    /// Attention probabilities `[batch, heads, seq, seq]`: index `l − 1` is block `l`.
    pub attentions: Vec<Tensor<4>>,
    /// Value vectors `[batch, seq, value_width]` (the value projection's output, heads
    /// concatenated): index `l − 1` is block `l`.
    pub values: Vec<Tensor<3>>,
}

impl ModelOutputs {
    /// Empty outputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifier logits `[batch, classes]` (stored as `[batch, 1, classes]`).
    pub fn with_class_logits(mut self, logits: Tensor<2>) -> Self {
        let [b, c] = logits.dims();
        self.logits = Some(logits.reshape([b, 1, c]));
        self
    }

    /// Sequence logits `[batch, seq, vocab]`.
    pub fn with_token_logits(mut self, logits: Tensor<3>) -> Self {
        self.logits = Some(logits);
        self
    }

    /// Class labels `[batch]` (stored as `[batch, 1]`).
    pub fn with_class_labels(mut self, labels: Tensor<1, Int>) -> Self {
        let [b] = labels.dims();
        self.labels = Some(labels.reshape([b, 1]));
        self
    }

    /// Token labels `[batch, seq]`; the configured ignore index (default −100) is skipped.
    pub fn with_token_labels(mut self, labels: Tensor<2, Int>) -> Self {
        self.labels = Some(labels);
        self
    }

    /// Padding mask `[batch, seq]` (`true` = padding).
    pub fn with_pad_mask(mut self, mask: Tensor<2, Bool>) -> Self {
        self.pad_mask = Some(mask);
        self
    }

    /// Hidden states, embedding output first.
    pub fn with_hidden_states(mut self, hidden: Vec<Tensor<3>>) -> Self {
        self.hidden_states = hidden;
        self
    }

    /// Attention probabilities, block 1 first.
    pub fn with_attentions(mut self, attentions: Vec<Tensor<4>>) -> Self {
        self.attentions = attentions;
        self
    }

    /// Value vectors, block 1 first.
    pub fn with_values(mut self, values: Vec<Tensor<3>>) -> Self {
        self.values = values;
        self
    }

    /// The same outputs on `device`, detached from any graph (how teacher outputs reach the
    /// student's autodiff device).
    pub fn to_device(self, device: &Device) -> Self {
        let f3 = |t: Tensor<3>| t.to_device(device).detach();
        ModelOutputs {
            logits: self.logits.map(f3),
            labels: self.labels.map(|t| t.to_device(device)),
            pad_mask: self.pad_mask.map(|t| t.to_device(device)),
            hidden_states: self.hidden_states.into_iter().map(f3).collect(),
            attentions: self.attentions.into_iter().map(|t| t.to_device(device).detach()).collect(),
            values: self.values.into_iter().map(f3).collect(),
        }
    }
}

/// Maps a model's forward pass on a batch of type `I` to [`ModelOutputs`]. Implement it for
/// the teacher and the student (or pass closures: every `Fn(&I, &OutputRequest) -> ModelOutputs`
/// implements it). Implementations move the batch to the model's device themselves
/// (`to_device` is free when it is already there): the teacher typically lives on a plain
/// device, the student on an autodiff one.
pub trait Distillable<I: ?Sized> {
    /// Runs the model on `input`, returning at least what `request` asks for.
    fn distill_outputs(&self, input: &I, request: &OutputRequest) -> ModelOutputs;
}

impl<I: ?Sized, F: Fn(&I, &OutputRequest) -> ModelOutputs> Distillable<I> for F {
    fn distill_outputs(&self, input: &I, request: &OutputRequest) -> ModelOutputs {
        self(input, request)
    }
}
