//! BERT config, key mapping and checkpoint loading on small synthetic checkpoints written in
//! the Hugging Face layout; bad checkpoints and inputs give typed errors naming the tensor.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use ember_models::{Bert, BertConfig, Encoded, KeyMapping, ModelError, bert_param_path, load_bert_bytes};
use safetensors::Dtype;
use std::collections::BTreeMap;

mod common;
use common::{CONFIG, hf_tensors, values};

fn serialize(tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, dtype: Dtype) -> Vec<u8> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, (shape, v))| {
            let b = match dtype {
                Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                Dtype::F16 => v.iter().flat_map(|x| half_bits(*x).to_le_bytes()).collect(),
                Dtype::I64 => v.iter().flat_map(|x| (*x as i64).to_le_bytes()).collect(),
                _ => unreachable!(),
            };
            (k.clone(), b, shape.clone())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, b, s)| (k.clone(), safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// f32 → IEEE half bits (round to nearest even; values here are small and normal).
fn half_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = b & 0x7f_ffff;
    if x == 0.0 {
        return sign;
    }
    if exp <= 0 {
        return sign; // flush tiny values (none in these tests' significant range)
    }
    if exp >= 31 {
        return sign | 0x7c00; // infinity (and NaN, which these tests do not write as f16)
    }
    let m = mant >> 13;
    let rest = mant & 0x1fff;
    let mut h = sign as u32 | ((exp as u32) << 10) | m;
    if rest > 0x1000 || (rest == 0x1000 && (m & 1) == 1) {
        h += 1;
    }
    h as u16
}

fn model(device: &Device) -> Bert {
    BertConfig::from_json(CONFIG).unwrap().init(device).unwrap()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| v[r * cols + c])).collect()
}

#[test]
fn checkpoint_tensors_land_in_the_right_places() {
    let d = Device::flex();
    let t = hf_tensors();
    let (m, report) = load_bert_bytes(model(&d), serialize(&t, Dtype::F32), "tiny.safetensors").unwrap();
    assert_eq!(report.applied, t.len() - 1);
    assert_eq!(report.ignored, vec!["pooler.dense.weight".to_string()]);
    // Linear weights transposed to [in, out].
    let (shape, q) = &t["encoder.layer.1.attention.self.query.weight"];
    assert_eq!(host(m.encoder.attention[1].query.weight.val()), transpose(q, shape[0], shape[1]));
    let (shape, up) = &t["encoder.layer.0.intermediate.dense.weight"];
    assert_eq!(m.encoder.feed_forward[0].inner.weight.val().dims(), [8, 16]);
    assert_eq!(host(m.encoder.feed_forward[0].inner.weight.val()), transpose(up, shape[0], shape[1]));
    assert_eq!(
        host(m.encoder.feed_forward[0].inner.bias.as_ref().unwrap().val()),
        t["encoder.layer.0.intermediate.dense.bias"].1
    );
    // LayerNorm weight/bias → gamma/beta; embeddings as stored.
    assert_eq!(host(m.encoder.feed_forward_norm[1].gamma.val()), t["encoder.layer.1.output.LayerNorm.weight"].1);
    assert_eq!(
        host(m.encoder.feed_forward_norm[1].beta.as_ref().unwrap().val()),
        t["encoder.layer.1.output.LayerNorm.bias"].1
    );
    assert_eq!(host(m.embeddings.word.weight.val()), t["embeddings.word_embeddings.weight"].1);
    assert_eq!(host(m.embeddings.norm.as_ref().unwrap().gamma.val()), t["embeddings.LayerNorm.weight"].1);
}

#[test]
fn task_model_prefix_and_half_precision_load() {
    let d = Device::flex();
    let t: BTreeMap<_, _> = hf_tensors().into_iter().map(|(k, v)| (format!("bert.{k}"), v)).collect();
    let (m, _) = load_bert_bytes(model(&d), serialize(&t, Dtype::F16), "tiny-f16.safetensors").unwrap();
    let got = host(m.embeddings.position.as_ref().unwrap().weight.val());
    let want = &t["bert.embeddings.position_embeddings.weight"].1;
    let err = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(err < 1e-3, "f16 → f32 error {err}");
}

#[test]
fn key_mapping() {
    assert_eq!(
        bert_param_path("encoder.layer.11.output.LayerNorm.gamma"),
        KeyMapping::Param("encoder.feed_forward_norm.11.gamma".into())
    );
    assert_eq!(bert_param_path("bert.embeddings.position_ids"), KeyMapping::Ignored);
    assert_eq!(bert_param_path("cls.predictions.bias"), KeyMapping::Ignored);
    assert_eq!(bert_param_path("encoder.layer.x.output.dense.weight"), KeyMapping::Unknown);
    assert_eq!(bert_param_path("encoder.layer.0.attention.self.query.scale"), KeyMapping::Unknown);
    assert_eq!(bert_param_path("decoder.weight"), KeyMapping::Unknown);
}

#[test]
fn bad_input_checkpoint_missing_tensor_is_named() {
    let mut t = hf_tensors();
    t.remove("encoder.layer.1.attention.self.key.bias");
    let err = load_bert_bytes(model(&Device::flex()), serialize(&t, Dtype::F32), "m.safetensors").unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingTensor { tensor, param, .. }
        if tensor == "encoder.layer.1.attention.self.key.bias" && param == "encoder.attention.1.key.bias"),
        "{err}"
    );
    assert!(err.to_string().contains("is missing"), "{err}");
}

#[test]
fn bad_input_checkpoint_extra_tensor_is_named() {
    let mut t = hf_tensors();
    t.insert("encoder.layer.2.output.dense.weight".into(), (vec![8, 16], values(1, 128)));
    let err = load_bert_bytes(model(&Device::flex()), serialize(&t, Dtype::F32), "m.safetensors").unwrap_err();
    assert!(
        matches!(&err, ModelError::UnexpectedTensor { tensor, .. } if tensor == "encoder.layer.2.output.dense.weight"),
        "{err}"
    );
    let mut t = hf_tensors();
    t.insert("encoder.layer.0.attention.self.rotary.weight".into(), (vec![8], values(1, 8)));
    let err = load_bert_bytes(model(&Device::flex()), serialize(&t, Dtype::F32), "m.safetensors").unwrap_err();
    assert!(err.to_string().contains("unexpected tensor `encoder.layer.0.attention.self.rotary.weight`"), "{err}");
}

#[test]
fn bad_input_checkpoint_misshaped_tensor_is_named() {
    let mut t = hf_tensors();
    // Not transposed: a [in, out] weight for intermediate.dense.
    t.insert("encoder.layer.0.intermediate.dense.weight".into(), (vec![8, 16], values(3, 128)));
    let err = load_bert_bytes(model(&Device::flex()), serialize(&t, Dtype::F32), "m.safetensors").unwrap_err();
    assert!(
        matches!(&err, ModelError::TensorMismatch { tensor, .. } if tensor == "encoder.layer.0.intermediate.dense.weight"),
        "{err}"
    );
    assert!(err.to_string().contains("[8, 16]") && err.to_string().contains("[16, 8]"), "{err}");
}

#[test]
fn bad_input_checkpoint_integer_weights_refused() {
    let t = hf_tensors();
    let err = load_bert_bytes(model(&Device::flex()), serialize(&t, Dtype::I64), "m.safetensors").unwrap_err();
    assert!(err.to_string().contains("expected a float dtype"), "{err}");
}

#[test]
fn bad_input_checkpoint_truncated_or_lying_header() {
    let bytes = serialize(&hf_tensors(), Dtype::F32);
    let cut = bytes[..bytes.len() - 100].to_vec();
    let err = load_bert_bytes(model(&Device::flex()), cut, "cut.safetensors").unwrap_err();
    assert!(matches!(err, ModelError::Checkpoint { .. }), "{err}");
    // Header length claiming more bytes than the file has.
    let mut lying = bytes.clone();
    lying[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let err = load_bert_bytes(model(&Device::flex()), lying, "lying.safetensors").unwrap_err();
    assert!(matches!(err, ModelError::Checkpoint { .. }), "{err}");
    let err = load_bert_bytes(model(&Device::flex()), b"not a checkpoint".to_vec(), "junk").unwrap_err();
    assert!(err.to_string().starts_with("checkpoint junk is malformed"), "{err}");
}

#[test]
fn bad_input_config_values() {
    let bad = CONFIG.replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 3");
    let err = BertConfig::from_json(&bad).unwrap_err();
    assert!(err.to_string().contains("a divisor of hidden_size = 8"), "{err}");
    let bad = CONFIG.replace("\"gelu\"", "\"mish\"");
    assert!(BertConfig::from_json(&bad).unwrap_err().to_string().contains("hidden_act = mish"));
    let bad = CONFIG.replace("\"vocab_size\": 20,", "");
    assert!(BertConfig::from_json(&bad).unwrap_err().to_string().contains("vocab_size"));
    let bad = CONFIG.replace("\"layer_norm_eps\": 1e-12", "\"layer_norm_eps\": 0");
    assert!(BertConfig::from_json(&bad).unwrap_err().to_string().contains("layer_norm_eps"));
    let rel = CONFIG.replace("\"model_type\"", "\"position_embedding_type\": \"relative_key\", \"model_type\"");
    assert!(BertConfig::from_json(&rel).unwrap_err().to_string().contains("relative"));
}

#[test]
fn bad_input_sequences_and_ids() {
    let d = Device::flex();
    let m = model(&d);
    let long = Encoded::from_ids(&[vec![1; 11]], 0).unwrap();
    let err = m.embed(&long).unwrap_err();
    assert!(err.to_string().contains("exceeds max_position_embeddings = 10"), "{err}");
    let oov = Encoded::from_ids(&[vec![1, 25, 2]], 0).unwrap();
    let err = m.embed(&oov).unwrap_err();
    assert!(err.to_string().contains("id 25 is outside the model's vocabulary 0..20"), "{err}");
    assert!(Encoded::from_ids(&[], 0).is_err());
    let mut broken = Encoded::from_ids(&[vec![1, 2, 3]], 0).unwrap();
    broken.ids.pop();
    let err = m.embed(&broken).unwrap_err();
    assert!(err.to_string().contains("inconsistent fields"), "{err}");
    // Loading into an int8 model is refused with a clear message.
    let (q, _) = ember_quant::Quantizer::new(ember_quant::QuantizeConfig::new()).quantize(&m).unwrap();
    let err = load_bert_bytes(q, serialize(&hf_tensors(), Dtype::F32), "m").unwrap_err();
    assert!(err.to_string().contains("target model = int8"), "{err}");
    assert!(Encoded::from_ids(&[vec![1], vec![]], 0).unwrap_err().to_string().contains("sequence 1 has no tokens"));
}

#[test]
fn padding_does_not_change_embeddings_and_params_are_counted() {
    let d = Device::flex();
    let t = hf_tensors();
    let (m, _) = load_bert_bytes(model(&d), serialize(&t, Dtype::F32), "tiny").unwrap();
    let alone = Encoded::from_ids(&[vec![1, 5, 7, 2]], 0).unwrap();
    let padded = Encoded::from_ids(&[vec![1, 5, 7, 2], vec![1, 3, 4, 9, 11, 12, 2]], 0).unwrap();
    let a = host(m.embed(&alone).unwrap());
    let b = host(m.embed(&padded).unwrap());
    let err = a.iter().zip(&b[..8]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(err < 1e-5, "padding changed the embedding by {err}");
    let norm: f32 = b[8..].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    let config = BertConfig::from_json(CONFIG).unwrap();
    assert_eq!(m.num_params(), config.num_params());
    // Published: BERT-base 109.48 M parameters with the pooler (0.59 M), so 108.89 M without.
    let base = BertConfig::new(30522, 768, 12, 12, 3072, 512);
    assert_eq!(base.num_params(), 108_891_648);
}

#[test]
fn collected_outputs_have_the_distillation_shapes() {
    let d = Device::flex();
    let m = model(&d);
    let e = Encoded::from_ids(&[vec![1, 5, 7, 2], vec![1, 3, 2]], 0).unwrap();
    let (ids, types, pad) = e.tensors(&d);
    let out = m.try_forward(ids, Some(types), Some(pad), true).unwrap();
    assert_eq!(out.hidden_states.len(), 3);
    assert_eq!(out.attentions.len(), 2);
    assert_eq!(out.attentions[0].dims(), [2, 2, 4, 4]);
    assert_eq!(out.values[1].dims(), [2, 4, 8]);
    // Padded keys get no attention.
    let probs = host(out.attentions[1].clone().slice([1..2, 0..2, 0..4, 3..4]));
    assert!(probs.iter().all(|p| *p < 1e-6), "{probs:?}");
}

#[test]
fn bert_prunes_then_quantizes_with_the_other_crates() {
    let d = Device::flex();
    let (m, _) = load_bert_bytes(model(&d), serialize(&hf_tensors(), Dtype::F32), "tiny").unwrap();
    let (pruned, report) = ember_prune::Pruner::new(ember_prune::PruneConfig::new(0.5)).unwrap().prune(m).unwrap();
    // Every linear weight of both layers is pruned (embeddings are excluded by default).
    assert_eq!(report.layers.len(), 12, "{:?}", report.layers.iter().map(|l| &l.path).collect::<Vec<_>>());
    assert!(report.layers.iter().all(|l| l.path.starts_with("encoder.")));
    assert!((report.sparsity() - 0.5).abs() < 0.01, "{}", report.sparsity());
    let folded = ember_prune::fold_masks(pruned);
    let w = host(folded.encoder.feed_forward[0].inner.weight.val());
    assert_eq!(w.iter().filter(|v| **v == 0.0).count(), 64);
    let (q, _) = ember_quant::Quantizer::new(ember_quant::QuantizeConfig::new()).quantize(&folded).unwrap();
    assert!(q.encoder.feed_forward[1].outer.is_quantized());
    // The pruned zeros stay zeros in int8.
    let values: Vec<i64> =
        q.encoder.feed_forward[0].inner.quant.values.val().into_data().convert::<i64>().try_into_vec::<i64>().unwrap();
    assert!(values.iter().filter(|v| **v == 0).count() >= 64);
    let e = Encoded::from_ids(&[vec![1, 5, 7, 2]], 0).unwrap();
    assert!(host(q.embed(&e).unwrap()).iter().all(|v| v.is_finite()));
}

#[test]
fn bad_input_checkpoint_nan_weight_is_named() {
    let mut t = hf_tensors();
    t.get_mut("encoder.layer.1.output.dense.weight").unwrap().1[5] = f32::NAN;
    let err = load_bert_bytes(model(&Device::flex()), serialize(&t, Dtype::F32), "m.safetensors").unwrap_err();
    assert!(
        matches!(&err, ModelError::TensorMismatch { tensor, .. } if tensor == "encoder.layer.1.output.dense.weight"),
        "{err}"
    );
    assert!(err.to_string().contains("holds NaN or infinity at flat index 5 (as f32)"), "{err}");
    // Half precision too (by the bit pattern): infinity in f16.
    let mut t = hf_tensors();
    t.get_mut("embeddings.LayerNorm.bias").unwrap().1[0] = f32::INFINITY;
    let err = load_bert_bytes(model(&Device::flex()), serialize(&t, Dtype::F16), "m.safetensors").unwrap_err();
    assert!(err.to_string().contains("`embeddings.LayerNorm.bias` holds NaN or infinity at flat index 0"), "{err}");
}

#[test]
fn bad_input_config_sizes_beyond_memory() {
    // Sizes whose parameter count no process can allocate are refused by validation, not an
    // arithmetic overflow or an aborted allocation in `init`.
    let huge = CONFIG.replace("\"hidden_size\": 8", &format!("\"hidden_size\": {}", 1u64 << 40));
    let huge = huge.replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 1");
    let err = BertConfig::from_json(&huge).unwrap_err();
    assert!(matches!(err, ModelError::Config { .. }), "{err}");
    assert!(err.to_string().contains("a model this process can allocate"), "{err}");
}

#[test]
fn bad_input_pretrained_config_far_larger_than_the_checkpoint() {
    // A config.json describing a model many times the checkpoint's size is refused before the
    // model is allocated.
    let dir = std::env::temp_dir().join(format!("ember-bert-lying-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = CONFIG.replace("\"hidden_size\": 8", "\"hidden_size\": 4096");
    let big = big.replace("\"intermediate_size\": 16", "\"intermediate_size\": 16384");
    std::fs::write(dir.join("config.json"), big).unwrap();
    std::fs::write(dir.join("model.safetensors"), serialize(&hf_tensors(), Dtype::F32)).unwrap();
    let err = Bert::from_pretrained(&dir, &Device::flex()).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(err, ModelError::Config { .. }), "{err}");
    let m = err.to_string();
    assert!(m.contains("a model the checkpoint") && m.contains("can fill (it holds 1472 values"), "{m}");
}
