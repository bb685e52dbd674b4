//! Hugging Face `tokenizer.json` files through the `tokenizers` crate, batched into padded
//! tensors.
//!
//! Some tokenizer files bake in fixed padding (all-MiniLM-L6-v2 pads every input to 128
//! tokens) and truncation; [`TextTokenizer::from_file`] removes the padding (batches are padded
//! to their longest sequence, which is what makes short inputs fast) and sets truncation to the
//! model's length limit.

use crate::error::{ModelError, Result};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use std::path::Path;

/// A tokenizer with Ember's padding and truncation. See the [module docs](self).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
    pad_id: u32,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("max_len", &self.max_len).field("pad_id", &self.pad_id).finish()
    }
}

/// A tokenized batch, padded to its longest sequence (row-major `[batch, seq]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Sequences.
    pub batch: usize,
    /// Padded length.
    pub seq: usize,
    /// Token ids.
    pub ids: Vec<i64>,
    /// Token-type (segment) ids.
    pub type_ids: Vec<i64>,
    /// `true` at padding.
    pub pad: Vec<bool>,
    /// Real tokens per sequence.
    pub lengths: Vec<usize>,
}

impl Encoded {
    /// Builds a padded batch from token-id sequences (type ids 0), padding with `pad_id`.
    ///
    /// # Errors
    /// [`ModelError::Input`] for an empty batch or an empty sequence.
    pub fn from_ids(sequences: &[Vec<u32>], pad_id: u32) -> Result<Self> {
        let types: Vec<Vec<u32>> = sequences.iter().map(|s| vec![0; s.len()]).collect();
        Self::from_parts(sequences, &types, pad_id)
    }

    fn from_parts(ids: &[Vec<u32>], types: &[Vec<u32>], pad_id: u32) -> Result<Self> {
        if ids.is_empty() {
            return Err(ModelError::Input { what: "batch".into(), message: "no sequences".into() });
        }
        if let Some(i) = ids.iter().position(Vec::is_empty) {
            return Err(ModelError::Input { what: "batch".into(), message: format!("sequence {i} has no tokens") });
        }
        let seq = ids.iter().map(Vec::len).max().unwrap_or(0);
        let batch = ids.len();
        let mut e = Encoded {
            batch,
            seq,
            ids: vec![i64::from(pad_id); batch * seq],
            type_ids: vec![0; batch * seq],
            pad: vec![true; batch * seq],
            lengths: ids.iter().map(Vec::len).collect(),
        };
        for (r, (row, trow)) in ids.iter().zip(types).enumerate() {
            for (c, (&id, &t)) in row.iter().zip(trow).enumerate() {
                e.ids[r * seq + c] = i64::from(id);
                e.type_ids[r * seq + c] = i64::from(t);
                e.pad[r * seq + c] = false;
            }
        }
        Ok(e)
    }

    /// The first `n` sequences (re-padded to their longest); `n` is clamped to `1..=batch`.
    pub fn take(&self, n: usize) -> Encoded {
        let n = n.clamp(1, self.batch.max(1));
        let seq = self.lengths[..n].iter().copied().max().unwrap_or(0);
        let mut e = Encoded {
            batch: n,
            seq,
            ids: Vec::with_capacity(n * seq),
            type_ids: Vec::with_capacity(n * seq),
            pad: Vec::with_capacity(n * seq),
            lengths: self.lengths[..n].to_vec(),
        };
        for r in 0..n {
            let base = r * self.seq;
            e.ids.extend_from_slice(&self.ids[base..base + seq]);
            e.type_ids.extend_from_slice(&self.type_ids[base..base + seq]);
            e.pad.extend_from_slice(&self.pad[base..base + seq]);
        }
        e
    }

    /// Real (non-padding) tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// `(ids, type_ids, pad_mask)` tensors on `device`.
    pub fn tensors(&self, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Bool>) {
        let shape = [self.batch, self.seq];
        (
            Tensor::from_data(TensorData::new(self.ids.clone(), shape), device),
            Tensor::from_data(TensorData::new(self.type_ids.clone(), shape), device),
            Tensor::from_data(TensorData::new(self.pad.clone(), shape), device),
        )
    }

    /// Checks every id against a vocabulary of `vocab` entries and every type id against
    /// `type_vocab`.
    ///
    /// Also checks that the fields are consistent (the fields are public, so a hand-built batch
    /// may not be).
    ///
    /// # Errors
    /// [`ModelError::Input`] naming the first offending id or field.
    pub fn check(&self, vocab: usize, type_vocab: usize) -> Result<()> {
        let n = self.batch * self.seq;
        if self.batch == 0
            || self.ids.len() != n
            || self.type_ids.len() != n
            || self.pad.len() != n
            || self.lengths.len() != self.batch
            || self.lengths.iter().any(|&l| l > self.seq)
        {
            return Err(ModelError::Input {
                what: "encoded batch".into(),
                message: format!(
                    "inconsistent fields: batch {} × seq {} but {} ids, {} type ids, {} pad flags, lengths {:?}",
                    self.batch,
                    self.seq,
                    self.ids.len(),
                    self.type_ids.len(),
                    self.pad.len(),
                    self.lengths
                ),
            });
        }
        if let Some(id) = self.ids.iter().find(|&&i| i < 0 || i as usize >= vocab) {
            return Err(ModelError::Input {
                what: "token ids".into(),
                message: format!(
                    "id {id} is outside the model's vocabulary 0..{vocab} (tokenizer and model mismatch?)"
                ),
            });
        }
        if let Some(t) = self.type_ids.iter().find(|&&i| i < 0 || i as usize >= type_vocab) {
            return Err(ModelError::Input {
                what: "token type ids".into(),
                message: format!("type id {t} is outside 0..{type_vocab}"),
            });
        }
        Ok(())
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, removes baked-in padding and truncates to `max_len` tokens
    /// (special tokens included).
    ///
    /// # Errors
    /// [`ModelError::Io`] for an unreadable file, [`ModelError::Tokenizer`] for an invalid one,
    /// [`ModelError::Config`] for `max_len = 0`.
    pub fn from_file(path: impl AsRef<Path>, max_len: usize) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| ModelError::Io { path: path.display().to_string(), message: e.to_string() })?;
        Self::from_bytes(&bytes, max_len)
    }

    /// [`TextTokenizer::from_file`] from the file's bytes.
    ///
    /// # Errors
    /// As [`TextTokenizer::from_file`].
    pub fn from_bytes(bytes: &[u8], max_len: usize) -> Result<Self> {
        if max_len == 0 {
            return Err(crate::error::config_err("max_len", 0, "at least 1"));
        }
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| ModelError::Tokenizer(format!("invalid tokenizer.json: {e}")))?;
        // The pad id the file declares (if any), before padding is switched off.
        let pad_id = inner.get_padding().map(|p| p.pad_id).unwrap_or(0);
        inner.with_padding(None);
        inner
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| ModelError::Tokenizer(format!("cannot set truncation to {max_len}: {e}")))?;
        Ok(TextTokenizer { inner, max_len, pad_id })
    }

    /// The truncation length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of one text with special tokens (`[CLS] … [SEP]` for BERT).
    ///
    /// # Errors
    /// [`ModelError::Tokenizer`] if the text cannot be encoded.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let e =
            self.inner.encode(text, true).map_err(|e| ModelError::Tokenizer(format!("cannot encode {text:?}: {e}")))?;
        Ok(e.get_ids().to_vec())
    }

    /// Tokenizes `texts` into one batch padded to its longest sequence.
    ///
    /// # Errors
    /// [`ModelError::Input`] for an empty batch, [`ModelError::Tokenizer`] for a text that
    /// cannot be encoded.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Encoded> {
        let mut ids = Vec::with_capacity(texts.len());
        let mut types = Vec::with_capacity(texts.len());
        for t in texts {
            let t = t.as_ref();
            let e =
                self.inner.encode(t, true).map_err(|e| ModelError::Tokenizer(format!("cannot encode {t:?}: {e}")))?;
            ids.push(e.get_ids().to_vec());
            types.push(e.get_type_ids().to_vec());
        }
        Encoded::from_parts(&ids, &types, self.pad_id)
    }

    /// Tokenizes sentence pairs (`[CLS] a [SEP] b [SEP]`, token types 0 then 1) or single
    /// sentences (`b = None`) into one batch padded to its longest sequence; a pair longer than
    /// the truncation length loses tokens from the longer of its two texts first (as
    /// `transformers`' `longest_first`).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use ember_models::TextTokenizer;
    /// # let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
    /// #  "normalizer":{"type":"Lowercase"},"pre_tokenizer":{"type":"Whitespace"},
    /// #  "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"[CLS]","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"[SEP]","type_id":0}}],
    /// #   "pair":[{"SpecialToken":{"id":"[CLS]","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"[SEP]","type_id":0}},{"Sequence":{"id":"B","type_id":1}},{"SpecialToken":{"id":"[SEP]","type_id":1}}],
    /// #   "special_tokens":{"[CLS]":{"id":"[CLS]","ids":[2],"tokens":["[CLS]"]},"[SEP]":{"id":"[SEP]","ids":[3],"tokens":["[SEP]"]}}},
    /// #  "decoder":null,"model":{"type":"WordLevel","vocab":{"[PAD]":0,"[UNK]":1,"[CLS]":2,"[SEP]":3,"a":4,"b":5},"unk_token":"[UNK]"}}"#;
    /// let tok = TextTokenizer::from_bytes(json.as_bytes(), 16)?;
    /// let batch = tok.encode_pairs(&[("a b", Some("b")), ("a", None)])?;
    /// assert_eq!(batch.ids[..5], [2, 4, 5, 3, 5]);
    /// assert_eq!(batch.type_ids[..6], [0, 0, 0, 0, 1, 1]);
    /// assert_eq!(batch.lengths, [6, 3]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`TextTokenizer::encode_batch`].
    pub fn encode_pairs<S: AsRef<str>>(&self, pairs: &[(S, Option<S>)]) -> Result<Encoded> {
        let mut ids = Vec::with_capacity(pairs.len());
        let mut types = Vec::with_capacity(pairs.len());
        for (a, b) in pairs {
            let a = a.as_ref();
            let e = match b {
                Some(b) => self.inner.encode((a, b.as_ref()), true),
                None => self.inner.encode(a, true),
            }
            .map_err(|e| ModelError::Tokenizer(format!("cannot encode {a:?}: {e}")))?;
            ids.push(e.get_ids().to_vec());
            types.push(e.get_type_ids().to_vec());
        }
        Encoded::from_parts(&ids, &types, self.pad_id)
    }
}
