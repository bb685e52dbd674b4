//! ALBERT from a Hugging Face `AlbertModel` checkpoint against an independent numpy reference
//! (scripts/albert_reference.py wrote the small random checkpoint in tests/data/albert_tiny and
//! the float64 forward pass in tests/data/albert_reference.json); ALBERT-base's published size;
//! ALBERT-base's shared encoder in int8.

use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use ember_models::{AlbertConfig, Bert, HfLayout, KeyMapping, ModelError, TextTokenizer};
use ember_quant::{QuantizeConfig, Quantizer};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn int2(rows: &serde_json::Value, device: &Device) -> Tensor<2, Int> {
    let v: Vec<Vec<i64>> = serde_json::from_value(rows.clone()).unwrap();
    let (b, s) = (v.len(), v[0].len());
    Tensor::from_data(TensorData::new(v.concat(), [b, s]), device)
}

#[test]
fn albert_checkpoint_matches_the_numpy_reference() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("albert_reference.json")).unwrap()).unwrap();
    let want: Vec<Vec<Vec<f64>>> = serde_json::from_value(reference["last_hidden"].clone()).unwrap();
    for device in ember_testkit::device_list() {
        let model = Bert::from_pretrained(data("albert_tiny"), &device).unwrap();
        // 2 groups × 2 inner layers = 4 blocks; 4 layer applications × 2 inner layers = 8 layers.
        assert_eq!(model.encoder.attention.len(), 4);
        assert_eq!(model.encoder.attention_index, vec![0, 1, 0, 1, 2, 3, 2, 3]);
        assert_eq!(model.embeddings.embedding_size(), 8);
        assert_eq!(model.hidden_size(), 16);
        let ids = int2(&reference["ids"], &device);
        let types = int2(&reference["token_types"], &device);
        let pad = int2(&reference["attention_mask"], &device).equal_elem(0);
        let out = model.try_forward(ids, Some(types), Some(pad), false).unwrap();
        let got = host(out.last_hidden);
        let want: Vec<f64> = want.iter().flatten().flatten().copied().collect();
        assert_eq!(got.len(), want.len());
        let worst = got.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{device:?}: max-abs error {worst} against the numpy reference");
    }
}

#[test]
fn albert_key_map_numbers_blocks_by_group_and_inner_layer() {
    let map = |k: &str| HfLayout::ALBERT.map(k, 2);
    assert_eq!(
        map("albert.encoder.albert_layer_groups.1.albert_layers.1.attention.dense.weight"),
        KeyMapping::Param("encoder.attention.3.output.weight".into())
    );
    assert_eq!(
        map("encoder.albert_layer_groups.0.albert_layers.1.full_layer_layer_norm.bias"),
        KeyMapping::Param("encoder.feed_forward_norm.1.bias".into())
    );
    assert_eq!(
        map("encoder.embedding_hidden_mapping_in.weight"),
        KeyMapping::Param("embeddings.projection.weight".into())
    );
    // An inner index beyond inner_group_num, and BERT's keys, are not ALBERT tensors.
    assert_eq!(map("encoder.albert_layer_groups.0.albert_layers.2.ffn.weight"), KeyMapping::Unknown);
    assert_eq!(map("encoder.layer.0.output.dense.weight"), KeyMapping::Unknown);
    for k in
        ["pooler.weight", "predictions.decoder.weight", "sop_classifier.classifier.bias", "embeddings.position_ids"]
    {
        assert_eq!(map(k), KeyMapping::Ignored, "{k}");
    }
    // The reverse map names the checkpoint key in messages.
    assert_eq!(
        HfLayout::ALBERT.hf_key("encoder.feed_forward.3.outer.weight", 2).as_deref(),
        Some("encoder.albert_layer_groups.1.albert_layers.1.ffn_output.weight")
    );
    assert_eq!(
        HfLayout::BERT.hf_key("encoder.attention_norm.4.bias", 1).as_deref(),
        Some("encoder.layer.4.attention.output.LayerNorm.bias")
    );
}

#[test]
fn bad_input_albert_checkpoint_and_config() {
    let dir = std::env::temp_dir().join(format!("ember-albert-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = std::fs::read_to_string(data("albert_tiny/config.json")).unwrap();
    let weights = std::fs::read(data("albert_tiny/model.safetensors")).unwrap();
    let write = |config: &str| {
        std::fs::write(dir.join("config.json"), config).unwrap();
        std::fs::write(dir.join("model.safetensors"), &weights).unwrap();
    };
    // A config with one group fewer than the checkpoint holds: its second group is unexpected.
    write(&config.replace("\"num_hidden_groups\": 2", "\"num_hidden_groups\": 1"));
    let e = Bert::from_pretrained(&dir, &Device::flex()).unwrap_err();
    assert!(
        matches!(&e, ModelError::UnexpectedTensor { tensor, .. } if tensor.contains("albert_layer_groups.1")),
        "{e}"
    );
    // Groups that do not divide the layers.
    write(&config.replace("\"num_hidden_groups\": 2", "\"num_hidden_groups\": 3"));
    let e = Bert::from_pretrained(&dir, &Device::flex()).unwrap_err();
    assert!(e.to_string().contains("num_hidden_groups = 3: a divisor of num_hidden_layers = 4"), "{e}");
    // Another architecture.
    write(&config.replace("\"albert\"", "\"distilbert\""));
    let e = Bert::from_pretrained(&dir, &Device::flex()).unwrap_err();
    assert!(e.to_string().contains("model_type = distilbert"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn albert_base_has_the_published_parameter_count() {
    // 11,683,584 with the pooler (Lan et al. 2020, Table 1: 12M; Hugging Face's AlbertModel).
    let base = AlbertConfig::base();
    let model = base.init(&Device::flex()).unwrap();
    let h = base.hidden_size;
    assert_eq!(model.num_params() + h * h + h, 11_683_584);
    assert_eq!(base.architecture().unwrap().num_params().unwrap(), model.num_params());
    assert_eq!(model.encoder.attention.len(), 1, "one shared layer for all 12");
}

/// ALBERT-base's shared encoder (seeded random weights) in int8 against float, on sentences
/// tokenized with MiniLM's tokenizer when it is there (scripts/fetch-minilm.sh), else on
/// deterministic ids. The shrink example reports the same on all of its sentences.
#[test]
fn albert_base_in_int8_agrees_with_float() {
    let device = Device::flex();
    device.seed(7);
    let tokenizer = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-minilm-l6-v2/tokenizer.json");
    let mut config = AlbertConfig::base();
    config.vocab_size = 30522; // MiniLM's (BERT's uncased) vocabulary
    let model = config.init(&device).unwrap();
    let sentences: Vec<&str> = include_str!("data/sentences.txt").lines().filter(|l| !l.is_empty()).take(8).collect();
    let batch = if Path::new(&tokenizer).is_file() {
        TextTokenizer::from_file(&tokenizer, 512).unwrap().encode_batch(&sentences).unwrap()
    } else {
        eprintln!("MiniLM tokenizer not found: deterministic ids instead");
        let ids: Vec<Vec<u32>> =
            (0..8).map(|s| (0..12 + s).map(|i| ((i * 7919 + s * 104_729) % 30522) as u32).collect()).collect();
        ember_models::Encoded::from_ids(&ids, 0).unwrap()
    };
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
    let (f, q) = (host(model.embed(&batch).unwrap()), host(int8.embed(&batch).unwrap()));
    let d = model.hidden_size();
    let mut worst = 1.0f64;
    for (a, b) in f.chunks(d).zip(q.chunks(d)) {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        worst = worst.min(dot); // rows are L2-normalised
    }
    eprintln!("ALBERT-base int8 vs f32: min cosine {worst:.5}");
    assert!(worst >= 0.999, "min cosine {worst}");
    let pad: Tensor<2, Bool> = Tensor::from_data(TensorData::new(vec![false; 3], [1, 3]), &device);
    assert!(int8.try_forward(Tensor::from_ints([[1, 2, 3]], &device), None, Some(pad), false).is_ok());
}
