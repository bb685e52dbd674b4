//! The small BERT of the checkpoint tests, in Hugging Face's layout. Shared by `bert.rs`,
//! `bad_input.rs` and the `checkpoint` fuzz target (`fuzz/src/fixtures.rs` includes this file).
#![allow(dead_code)]

use std::collections::BTreeMap;

/// `config.json` of the model: hidden 8, 2 layers, 2 heads, FFN 16, 10 positions, vocab 20.
pub const CONFIG: &str = r#"{"architectures": ["BertModel"], "hidden_size": 8, "num_hidden_layers": 2,
  "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 10, "vocab_size": 20,
  "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "model_type": "bert"}"#;

/// Checkpoint key → shape for [`CONFIG`] with `layers` encoder layers (the config says 2), in
/// the order Hugging Face writes them, with or without the pooler.
pub fn hf_shapes(layers: usize, pooler: bool) -> Vec<(String, Vec<usize>)> {
    hf_shapes_of(8, 16, 20, 10, layers, pooler)
}

/// The `BertModel` checkpoint keys and shapes of width `h`, FFN `f`, vocabulary `v`, `p`
/// positions and `layers` layers.
pub fn hf_shapes_of(h: usize, f: usize, v: usize, p: usize, layers: usize, pooler: bool) -> Vec<(String, Vec<usize>)> {
    let mut m: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![v, h]),
        ("embeddings.position_embeddings.weight".into(), vec![p, h]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, h]),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for l in 0..layers {
        for (name, o, i) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", f, h),
            ("output.dense", h, f),
        ] {
            m.push((format!("encoder.layer.{l}.{name}.weight"), vec![o, i]));
            m.push((format!("encoder.layer.{l}.{name}.bias"), vec![o]));
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            m.push((format!("encoder.layer.{l}.{name}.weight"), vec![h]));
            m.push((format!("encoder.layer.{l}.{name}.bias"), vec![h]));
        }
    }
    if pooler {
        m.push(("pooler.dense.weight".into(), vec![h, h]));
    }
    m
}

/// Deterministic values for a tensor.
pub fn values(seed: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 1000.0 - 0.5) * 0.2).collect()
}

/// [`hf_shapes`] (2 layers, pooler) with deterministic values: key → (shape, values).
pub fn hf_tensors() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    hf_shapes(2, true)
        .into_iter()
        .enumerate()
        .map(|(i, (k, shape))| {
            let n = shape.iter().product();
            (k, (shape, values(i + 1, n)))
        })
        .collect()
}

/// A safetensors file of f32 tensors.
pub fn serialize_f32(tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (shape, v))| (k.clone(), shape.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, s, b)| {
            (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}
