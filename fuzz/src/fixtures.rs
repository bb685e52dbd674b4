//! The models the loaders fill, and the seed inputs of every target.

use burn::tensor::Device;
use ember_models::{AlbertConfig, Bert, BertConfig, CausalLm, CausalLmConfig};
use ember_quant::{ActivationGranularity, ActivationMode, QuantDtype, QuantizeConfig, Quantizer, WeightGranularity};
use std::cell::OnceCell;

/// The small BERT of ember-models' checkpoint tests (its `config.json` and HF layout).
#[path = "../../crates/ember-models/tests/common/mod.rs"]
mod bert_fixture;

/// The BERT the `checkpoint` target loads into (a Hugging Face `config.json`, so that the
/// config reader is exercised on the way).
pub use bert_fixture::CONFIG as BERT_CONFIG;

/// The small ALBERT of ember-models' tests (`scripts/albert_reference.py`).
const ALBERT_CONFIG: &str = include_str!("../../crates/ember-models/tests/data/albert_tiny/config.json");
const ALBERT_WEIGHTS: &[u8] = include_bytes!("../../crates/ember-models/tests/data/albert_tiny/model.safetensors");

thread_local! {
    static ALBERT: OnceCell<(Bert, AlbertConfig)> = const { OnceCell::new() };
    static BERT: OnceCell<Bert> = const { OnceCell::new() };
    static QUANT: OnceCell<CausalLm> = const { OnceCell::new() };
}

/// A fresh copy of the BERT skeleton (random weights the loader replaces).
pub fn bert_skeleton() -> Bert {
    BERT.with(|c| {
        c.get_or_init(|| BertConfig::from_json(BERT_CONFIG).and_then(|c| c.init(&Device::flex())).expect("fixture"))
            .clone()
    })
}

/// A fresh copy of the ALBERT skeleton and its config.
pub fn albert_skeleton() -> (Bert, AlbertConfig) {
    ALBERT.with(|c| {
        c.get_or_init(|| {
            let config = AlbertConfig::from_json(ALBERT_CONFIG).expect("fixture config");
            (config.init(&Device::flex()).expect("fixture"), config)
        })
        .clone()
    })
}

/// The causal LM whose quantized files the `quantized_model` target loads (float skeleton).
fn quant_config() -> CausalLmConfig {
    CausalLmConfig::new(32, 16, 2, 2, 32, 8)
}

/// A fresh copy of the float skeleton that quantized files are loaded into.
pub fn quant_skeleton() -> CausalLm {
    QUANT.with(|c| c.get_or_init(|| quant_config().init(&Device::flex()).expect("fixture")).clone())
}

/// A valid Hugging Face layout checkpoint for [`BERT_CONFIG`], keyed with or without the
/// `bert.` prefix, without the tensor `drop`.
fn bert_checkpoint(prefix: &str, drop: Option<&str>) -> Vec<u8> {
    let tensors = bert_fixture::hf_tensors()
        .into_iter()
        .filter(|(k, _)| Some(k.as_str()) != drop)
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect();
    bert_fixture::serialize_f32(&tensors)
}

/// Valid checkpoints (with and without the `bert.` prefix), one with a tensor missing, and the
/// config text (first byte 0).
pub fn checkpoint_seeds() -> Vec<(String, Vec<u8>)> {
    let with_tag = |tag: u8, bytes: Vec<u8>| [vec![tag], bytes].concat();
    vec![
        ("valid".into(), with_tag(1, bert_checkpoint("", None))),
        ("valid-prefixed".into(), with_tag(1, bert_checkpoint("bert.", None))),
        ("missing-bias".into(), with_tag(1, bert_checkpoint("", Some("encoder.layer.1.output.dense.bias")))),
        ("config".into(), with_tag(0, BERT_CONFIG.as_bytes().to_vec())),
        ("albert".into(), with_tag(2, ALBERT_WEIGHTS.to_vec())),
    ]
}

/// Files written by `save_quantized` for the causal LM under several quantization schemes.
pub fn quantized_seeds() -> Vec<(String, Vec<u8>)> {
    let model = quant_skeleton();
    let configs = [
        ("dynamic-per-channel", QuantizeConfig::new()),
        ("dynamic-per-group", QuantizeConfig::new().with_weight(WeightGranularity::PerGroup { group_size: 8 })),
        ("dynamic-per-tensor", QuantizeConfig::new().with_weight(WeightGranularity::PerTensor)),
        (
            "per-tensor-activations-i8",
            QuantizeConfig::new()
                .with_mode(ActivationMode::Dynamic)
                .with_activation_dtype(QuantDtype::I8Symmetric)
                .with_activation_granularity(ActivationGranularity::PerTensor)
                .with_include_embeddings(false),
        ),
    ];
    let dir = std::env::temp_dir().join(format!("ember-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut out = Vec::new();
    for (name, config) in configs {
        let (quantized, _) = Quantizer::new(config).quantize(&model).expect("quantize the fixture");
        let path = dir.join(name);
        ember_quant::save_quantized(&quantized, &path).expect("save");
        out.push((name.to_string(), std::fs::read(&path).expect("read back")));
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The default and quick recipes, and a few edits of the quick one.
pub fn recipe_seeds() -> Vec<(String, Vec<u8>)> {
    use ember_slm::pipeline::lm::Recipe;
    let json = |r: &Recipe| serde_json::to_vec_pretty(r).expect("recipe JSON");
    let quick = Recipe::quick();
    let mut nm = quick.clone();
    nm.prune.granularity = ember_slm::prune::Granularity::NM { n: 2, m: 4 };
    vec![
        ("default.json".into(), json(&Recipe::default())),
        ("quick.json".into(), json(&quick)),
        ("quick-nm.json".into(), json(&nm)),
    ]
}

/// The task files of ember-eval's tests, each behind its selector byte.
pub fn task_seeds() -> Vec<(String, Vec<u8>)> {
    macro_rules! fixture {
        ($dir:literal, $file:literal) => {
            include_bytes!(concat!("../../crates/ember-eval/tests/fixtures/", $dir, "/", $file)).as_slice()
        };
    }
    // GLUE: selector = index in GlueTask::ALL (+ 11 for train files).
    let glue: [(u8, &str, &[u8]); 15] = [
        (0, "CoLA_dev", fixture!("glue", "CoLA_dev.tsv")),
        (0, "CoLA_test", fixture!("glue", "CoLA_test.tsv")),
        (1, "SST-2_dev", fixture!("glue", "SST-2_dev.tsv")),
        (2, "MRPC_dev", fixture!("glue", "MRPC_dev.tsv")),
        (3, "STS-B_dev", fixture!("glue", "STS-B_dev.tsv")),
        (11 + 4, "QQP_train", fixture!("glue", "QQP_train.tsv")),
        (5, "MNLI_dev_matched", fixture!("glue", "MNLI_dev_matched.tsv")),
        (11 + 5, "MNLI_train", fixture!("glue", "MNLI_train.tsv")),
        (7, "QNLI_dev", fixture!("glue", "QNLI_dev.tsv")),
        (8, "RTE_dev", fixture!("glue", "RTE_dev.tsv")),
        (8, "RTE_badlabel", fixture!("glue", "RTE_badlabel.tsv")),
        (8, "RTE_malformed", fixture!("glue", "RTE_malformed.tsv")),
        (9, "WNLI_dev", fixture!("glue", "WNLI_dev.tsv")),
        (10, "AX_labelled", fixture!("glue", "AX_labelled.tsv")),
        (10, "AX_test", fixture!("glue", "AX_test.tsv")),
    ];
    // SuperGLUE: selector = 22 + index in SuperGlueTask::ALL.
    let superglue: [(u8, &str, &[u8]); 12] = [
        (22, "BoolQ", fixture!("superglue", "BoolQ.jsonl")),
        (22, "BoolQ_malformed", fixture!("superglue", "BoolQ_malformed.jsonl")),
        (23, "CB", fixture!("superglue", "CB.jsonl")),
        (23, "CB_badlabel", fixture!("superglue", "CB_badlabel.jsonl")),
        (24, "COPA", fixture!("superglue", "COPA.jsonl")),
        (25, "MultiRC", fixture!("superglue", "MultiRC.jsonl")),
        (26, "ReCoRD", fixture!("superglue", "ReCoRD.jsonl")),
        (27, "RTE", fixture!("superglue", "RTE.jsonl")),
        (28, "WiC", fixture!("superglue", "WiC.jsonl")),
        (29, "WSC", fixture!("superglue", "WSC.jsonl")),
        (30, "AX-b", fixture!("superglue", "AX-b.jsonl")),
        (31, "AX-g", fixture!("superglue", "AX-g.jsonl")),
    ];
    glue.iter()
        .chain(&superglue)
        .map(|(selector, name, text)| (name.to_string(), [&[*selector][..], text].concat()))
        .collect()
}
