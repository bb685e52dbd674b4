//! Hugging Face export of students (`Bert::save_pretrained`): a narrowed, cut student of a
//! checkpoint written in the `BertModel` layout, read back by `Bert::from_pretrained`, and
//! checked against an independent numpy reader of the exported files
//! (`scripts/export_reference.py`, its output in tests/data/export_reference.json).

use burn::tensor::{Device, Tensor};
use ember_models::{Bert, BertConfig, Encoded, ModelError, SharedInit, SharingMode, load_bert_bytes};
use ember_quant::{QuantizeConfig, Quantizer};
use std::collections::BTreeMap;
use std::path::PathBuf;

mod common;
use common::{hf_shapes_of, serialize_f32, values};

/// The teacher: vocab 30, width 16, 3 layers, 4 heads, FFN 24, 12 positions.
const TEACHER: &str = r#"{"hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 4,
  "intermediate_size": 24, "max_position_embeddings": 12, "vocab_size": 30, "model_type": "bert"}"#;

/// The id sequences of the reference (as in scripts/export_reference.py).
const IDS: [&[u32]; 3] = [&[2, 7, 11, 5, 3], &[2, 29, 3], &[2, 4, 4, 8, 17, 21, 9, 3]];

fn teacher(device: &Device) -> Bert {
    let config = BertConfig::from_json(TEACHER).unwrap();
    let shapes = hf_shapes_of(16, 24, 30, 12, 3, false);
    let tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = shapes
        .into_iter()
        .enumerate()
        .map(|(i, (k, shape))| {
            let n: usize = shape.iter().product();
            // LayerNorm scales near 1, everything else spread over ±0.5.
            let v = values(i + 3, n)
                .into_iter()
                .map(|x| if k.ends_with("LayerNorm.weight") { 1.0 + x } else { x * 5.0 })
                .collect();
            (k, (shape, v))
        })
        .collect();
    load_bert_bytes(config.init(device).unwrap(), serialize_f32(&tensors), "teacher.safetensors").unwrap().0
}

/// Layers 0 and 2 of the teacher; layer 0 without head 1, layer 2 with heads 1 and 3 and 10 of
/// its 24 neurons.
fn student(device: &Device) -> Bert {
    teacher(device)
        .retain_heads(0, &[0, 2, 3])
        .unwrap()
        .retain_heads(2, &[1, 3])
        .unwrap()
        .retain_neurons(2, &[0, 3, 5, 6, 9, 12, 15, 18, 20, 23])
        .unwrap()
        .retain_layers(&[0, 2])
        .unwrap()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-export-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn batch() -> Encoded {
    Encoded::from_ids(&IDS.iter().map(|s| s.to_vec()).collect::<Vec<_>>(), 0).unwrap()
}

#[test]
fn an_exported_student_matches_an_independent_reader_and_reloads() {
    let device = Device::flex();
    let student = student(&device);
    let dir = temp_dir("reference");
    let export = student.save_pretrained(&dir, None).unwrap();
    assert_eq!(export.config.num_hidden_layers, 2);
    assert_eq!(export.config.num_attention_heads, 4);
    assert_eq!(export.config.intermediate_size, 24);
    assert_eq!(export.config.pruned_heads, BTreeMap::from([("0".into(), vec![3]), ("1".into(), vec![2, 3])]));
    assert_eq!(export.padded_neurons, 14);

    // The files against the numpy reader's record of them (names, shapes, sums) and its forward
    // pass (last hidden state per token, the normalised mean-pooled embedding).
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("data/export_reference.json")).expect("reference JSON");
    let file = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&file).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&file).unwrap();
    assert_eq!(meta.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));
    let tensors = reference["tensors"].as_object().unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut expected: Vec<String> = tensors.keys().cloned().collect();
    expected.sort();
    assert_eq!(names, expected, "tensor names");
    for (name, rec) in tensors {
        let view = st.tensor(name).unwrap();
        let shape: Vec<usize> = rec["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(view.shape(), shape.as_slice(), "{name}");
        let v: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let (sum, abs) =
            (v.iter().map(|&x| f64::from(x)).sum::<f64>(), v.iter().map(|&x| f64::from(x).abs()).sum::<f64>());
        assert!((sum - rec["sum"].as_f64().unwrap()).abs() < 1e-4, "{name}: sum {sum}");
        assert!((abs - rec["abs_sum"].as_f64().unwrap()).abs() < 1e-4, "{name}: abs sum {abs}");
    }
    let back = Bert::from_pretrained(&dir, &device).unwrap();
    let b = batch();
    let (ids, types, pad) = b.tensors(&device);
    for (which, model) in [("student", &student), ("reloaded", &back)] {
        let emb = host(model.embed(&b).unwrap());
        let hidden = host(model.forward(ids.clone(), Some(types.clone()), Some(pad.clone())));
        let t = b.seq;
        for (s, rec) in reference["sequences"].as_array().unwrap().iter().enumerate() {
            let want: Vec<f64> = rec["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            for (j, w) in want.iter().enumerate() {
                let got = f64::from(emb[s * 16 + j]);
                assert!((got - w).abs() < 1e-4, "{which} sequence {s} embedding[{j}]: {got} vs {w}");
            }
            for (i, row) in rec["last_hidden"].as_array().unwrap().iter().enumerate() {
                for (j, w) in row.as_array().unwrap().iter().enumerate() {
                    let got = f64::from(hidden[(s * t + i) * 16 + j]);
                    let w = w.as_f64().unwrap();
                    assert!((got - w).abs() < 1e-4, "{which} sequence {s} token {i} dim {j}: {got} vs {w}");
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tokenizer_and_sentence_transformers_files_are_written() {
    let device = Device::flex();
    let src = temp_dir("tok-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("tokenizer.json"), b"{\"fake\": true}").unwrap();
    std::fs::write(src.join("vocab.txt"), b"[PAD]\n").unwrap();
    let dir = temp_dir("tok");
    let export = teacher(&device).save_pretrained(&dir, Some(&src)).unwrap();
    assert_eq!(export.tokenizer_files, vec!["tokenizer.json".to_string(), "vocab.txt".to_string()]);
    assert_eq!(export.padded_neurons, 0);
    assert!(export.config.pruned_heads.is_empty());
    assert_eq!(std::fs::read(dir.join("tokenizer.json")).unwrap(), b"{\"fake\": true}");
    let pooling: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("1_Pooling/config.json")).unwrap()).unwrap();
    assert_eq!(pooling["pooling_mode_mean_tokens"], true);
    assert_eq!(pooling["word_embedding_dimension"], 16);
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "bert");
    assert!(config.get("pruned_heads").is_none(), "no pruned_heads key for an unpruned model");
    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
}

#[test]
fn bad_input_what_the_format_cannot_hold_is_refused_and_nothing_is_replaced() {
    let device = Device::flex();
    let dir = temp_dir("bad");
    let model = teacher(&device);
    model.save_pretrained(&dir, None).unwrap();
    let before = std::fs::read(dir.join("model.safetensors")).unwrap();

    let shared = model.to_shared(SharingMode::All, 1, SharedInit::Mean).unwrap();
    let err = shared.save_pretrained(&dir, None).unwrap_err();
    assert!(matches!(err, ModelError::Config { .. }) && err.to_string().contains("shared"), "{err}");

    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
    let err = int8.save_pretrained(&dir, None).unwrap_err();
    assert!(err.to_string().contains("int8"), "{err}");

    let empty = temp_dir("no-tokenizer");
    std::fs::create_dir_all(&empty).unwrap();
    let err = student(&device).save_pretrained(&dir, Some(&empty)).unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }) && err.to_string().contains("no tokenizer file"), "{err}");

    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), before, "the earlier export is intact");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn bad_input_pruned_heads_in_a_config() {
    let with = |pruned: &str| {
        let text = TEACHER.replace("\"model_type\"", &format!("\"pruned_heads\": {pruned}, \"model_type\""));
        BertConfig::from_json(&text)
    };
    let ok = with(r#"{"1": [0, 2], "2": []}"#).unwrap();
    let layout = ok.architecture().unwrap().encoder.layout.unwrap();
    assert_eq!(layout.attention_heads, vec![4, 2, 4]);
    for (pruned, needle) in [
        (r#"{"3": [0]}"#, "a layer index in 0..3"),
        (r#"{"x": [0]}"#, "a layer index in 0..3"),
        (r#"{"0": [4]}"#, "a head index in 0..4"),
        (r#"{"0": [0, 1, 2, 3]}"#, "at least one head kept"),
    ] {
        let err = with(pruned).unwrap_err();
        assert!(matches!(err, ModelError::Config { .. }) && err.to_string().contains(needle), "{pruned}: {err}");
    }
}
