//! Bad-input catalogue: one malformed checkpoint, config or input per test (truncated files,
//! corrupt or lying safetensors headers, weights that do not fit the config, head counts that do
//! not divide the width, empty corpora), each rejected with the exact [`ModelError`] variant and
//! a message that says what was wrong and what was expected. (More checkpoint cases live in
//! `bert.rs` and `causal.rs`.)

use burn::tensor::Device;
use ember_models::{Bert, BertConfig, CausalLmConfig, Encoded, ModelError, load_bert_bytes, perplexity};
use std::collections::BTreeMap;

mod common;
use common::CONFIG;

fn model() -> Bert {
    BertConfig::from_json(&CONFIG.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1"))
        .unwrap()
        .init(&Device::flex())
        .unwrap()
}

/// A Hugging Face layout checkpoint for a one-layer `CONFIG`: key → shape (values are all 0.01).
fn hf_shapes() -> BTreeMap<String, Vec<usize>> {
    common::hf_shapes(1, false).into_iter().collect()
}

fn serialize(shapes: &BTreeMap<String, Vec<usize>>) -> Vec<u8> {
    let tensors = shapes.iter().map(|(k, s)| (k.clone(), (s.clone(), vec![0.01f32; s.iter().product()]))).collect();
    common::serialize_f32(&tensors)
}

fn load_error(bytes: Vec<u8>) -> ModelError {
    load_bert_bytes(model(), bytes, "m.safetensors").unwrap_err()
}

/// The 8-byte little-endian header length at the start of a safetensors file.
fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

#[test]
fn well_formed_checkpoint_loads() {
    // The baseline the malformed variants below start from.
    let (_, report) = load_bert_bytes(model(), serialize(&hf_shapes()), "m.safetensors").unwrap();
    assert_eq!(report.applied, hf_shapes().len());
}

#[test]
fn bad_input_checkpoint_truncated() {
    let bytes = serialize(&hf_shapes());
    let e = load_error(bytes[..bytes.len() - 100].to_vec());
    assert!(matches!(&e, ModelError::Checkpoint { file, .. } if file == "m.safetensors"), "{e}");
    let m = e.to_string();
    assert!(m.contains("checkpoint m.safetensors is malformed") && m.contains("truncated"), "{m}");
}

#[test]
fn bad_input_checkpoint_shorter_than_its_header_length() {
    let e = load_error(vec![1, 2, 3]);
    assert!(matches!(e, ModelError::Checkpoint { .. }), "{e}");
    assert!(e.to_string().contains("3 bytes, fewer than the 8-byte header length"), "{e}");
}

#[test]
fn bad_input_checkpoint_header_is_not_json() {
    let mut bytes = serialize(&hf_shapes());
    bytes[8] = b'#'; // the header's opening `{`
    let e = load_error(bytes);
    assert!(matches!(e, ModelError::Checkpoint { .. }), "{e}");
    assert!(e.to_string().contains("the header is not valid JSON"), "{e}");
}

#[test]
fn bad_input_checkpoint_header_length_beyond_the_file() {
    let mut bytes = serialize(&hf_shapes());
    let claimed = bytes.len() as u64 * 2;
    bytes[..8].copy_from_slice(&claimed.to_le_bytes());
    let e = load_error(bytes.clone());
    assert!(matches!(e, ModelError::Checkpoint { .. }), "{e}");
    let m = e.to_string();
    assert!(
        m.contains(&format!("the header length is {claimed} bytes but only {} bytes follow", bytes.len() - 8)),
        "{m}"
    );
}

/// `bytes` with its JSON header replaced by `edit(header)`.
fn with_header(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let n = header_len(bytes);
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// The name of the tensor whose data comes last in the file.
fn last_tensor(header: &serde_json::Value) -> String {
    let end = |v: &serde_json::Value| v["data_offsets"][1].as_u64().unwrap_or(0);
    header.as_object().unwrap().iter().max_by_key(|(_, v)| end(v)).unwrap().0.clone()
}

#[test]
fn bad_input_checkpoint_tensor_sizes_beyond_the_file() {
    // The header says the last tensor is 1000 values longer than the data the file holds.
    let bytes = with_header(&serialize(&hf_shapes()), |h| {
        let name = last_tensor(h);
        let t = &mut h[&name];
        let n: u64 = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product();
        t["shape"] = serde_json::json!([n + 1000]);
        t["data_offsets"][1] = serde_json::json!(t["data_offsets"][1].as_u64().unwrap() + 4000);
    });
    let e = load_error(bytes);
    assert!(matches!(e, ModelError::Checkpoint { .. }), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("the header's tensors need")
            && m.contains("bytes of data but only")
            && m.contains("(truncated file)"),
        "{m}"
    );
}

#[test]
fn bad_input_checkpoint_tensor_offsets_disagree_with_its_shape() {
    let bytes = with_header(&serialize(&hf_shapes()), |h| {
        let name = last_tensor(h);
        let end = h[&name]["data_offsets"][1].as_u64().unwrap();
        h[&name]["data_offsets"][1] = serde_json::json!(end - 4);
    });
    let e = load_error(bytes);
    assert!(matches!(e, ModelError::Checkpoint { .. }), "{e}");
    assert!(e.to_string().contains("do not match the size of its data_offsets"), "{e}");
}

#[test]
fn bad_input_checkpoint_weight_shape_does_not_match_the_config() {
    // A checkpoint for hidden_size 8 but intermediate_size 32, loaded into a config with 16.
    let mut shapes = hf_shapes();
    shapes.insert("encoder.layer.0.intermediate.dense.weight".into(), vec![32, 8]);
    let e = load_error(serialize(&shapes));
    assert!(
        matches!(&e, ModelError::TensorMismatch { tensor, .. } if tensor == "encoder.layer.0.intermediate.dense.weight"),
        "{e}"
    );
    assert!(
        e.to_string().contains("has shape [32, 8], the model expects [16, 8] (config and checkpoint disagree)"),
        "{e}"
    );
}

#[test]
fn bad_input_checkpoint_missing_a_layer_norm() {
    let mut shapes = hf_shapes();
    shapes.remove("encoder.layer.0.output.LayerNorm.bias");
    let e = load_error(serialize(&shapes));
    assert!(
        matches!(&e, ModelError::MissingTensor { tensor, .. } if tensor == "encoder.layer.0.output.LayerNorm.bias"),
        "{e}"
    );
    assert!(e.to_string().contains("is missing (the model's `encoder.feed_forward_norm.0.bias` needs it)"), "{e}");
}

#[test]
fn bad_input_checkpoint_layer_beyond_the_config() {
    let mut shapes = hf_shapes();
    shapes.insert("encoder.layer.1.output.dense.bias".into(), vec![8]);
    let e = load_error(serialize(&shapes));
    assert!(
        matches!(&e, ModelError::UnexpectedTensor { tensor, .. } if tensor == "encoder.layer.1.output.dense.bias"),
        "{e}"
    );
    assert!(e.to_string().contains("not part of this model; wrong architecture or config?"), "{e}");
}

#[test]
fn bad_input_config_heads_do_not_divide_the_width() {
    let e =
        BertConfig::from_json(&CONFIG.replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 3")).unwrap_err();
    assert!(matches!(&e, ModelError::Config { what, .. } if what == "num_attention_heads"), "{e}");
    assert!(e.to_string().contains("num_attention_heads = 3: a divisor of hidden_size = 8"), "{e}");
}

#[test]
fn bad_input_config_is_not_json() {
    let e = BertConfig::from_json("{\"hidden_size\": 8,").unwrap_err();
    assert!(matches!(&e, ModelError::Config { what, .. } if what == "config.json"), "{e}");
    assert!(e.to_string().contains("a Hugging Face BERT config with the size fields"), "{e}");
}

#[test]
fn bad_input_causal_lm_heads_do_not_divide_the_width() {
    let e = CausalLmConfig::new(10, 30, 2, 4, 8, 8).init(&Device::flex()).unwrap_err();
    assert!(matches!(&e, ModelError::Config { what, .. } if what == "n_heads"), "{e}");
    assert!(e.to_string().contains("n_heads = 4: a divisor of d_model = 30"), "{e}");
}

#[test]
fn bad_input_token_id_outside_the_vocabulary() {
    let e = model().embed(&Encoded::from_ids(&[vec![1, 25, 2]], 0).unwrap()).unwrap_err();
    assert!(matches!(e, ModelError::Input { .. }), "{e}");
    assert!(e.to_string().contains("id 25 is outside the model's vocabulary 0..20"), "{e}");
}

#[test]
fn bad_input_perplexity_of_an_empty_corpus() {
    let d = Device::flex();
    let m = CausalLmConfig::new(10, 8, 1, 2, 8, 4).init(&d).unwrap();
    let e = perplexity(&m, &[], 4, 1, &d).unwrap_err();
    assert!(matches!(&e, ModelError::Input { what, .. } if what == "perplexity"), "{e}");
    assert!(e.to_string().contains("0 tokens, need at least 5"), "{e}");
}
