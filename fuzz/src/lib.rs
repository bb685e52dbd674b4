//! # Ember's fuzz harnesses
//!
//! One function per target, each taking arbitrary bytes. A target **fails** (libFuzzer records a
//! crash) when Ember panics, hangs, allocates without bound, or breaks the property the target
//! checks; a typed error is the correct answer to bad input and passes.
//!
//! | target | input | property |
//! |---|---|---|
//! | [`checkpoint`] | a Hugging Face BERT `model.safetensors` (or, first byte 0, a `config.json`) | loads or gives a typed error; a loaded model runs (or returns a typed error) |
//! | [`quantized_model`] | a file for `ember_quant::load_quantized_bytes` | loads or gives a typed error; a loaded model's forward does not panic |
//! | [`recipe`] | `ember compress`'s recipe JSON | parses and validates or gives a typed error; a valid recipe round-trips |
//! | [`tasks`] | a GLUE TSV or SuperGLUE JSONL file (first byte picks the task) | parses or gives a typed error; scoring parsed gold labels gives finite metrics or a typed error |
//! | [`gemm`] | shapes, zero points, scales and values | every kernel this CPU runs equals the i64 reference exactly (i32 output) and within rounding (f32 output) |
//!
//! The targets are plain functions so that `scripts/fuzz-smoke.sh` can build them with
//! libFuzzer's coverage instrumentation on stable Rust; `init` writes each target's seed
//! corpus when `EMBER_FUZZ_WRITE_SEEDS` names a folder.

#![allow(clippy::missing_panics_doc)]

use std::path::Path;

mod fixtures;
mod gemm_target;

pub use gemm_target::gemm;

/// Every target's name.
pub const TARGETS: [&str; 5] = ["checkpoint", "quantized_model", "recipe", "tasks", "gemm"];

/// Called once by libFuzzer before the first input. With `EMBER_FUZZ_WRITE_SEEDS=DIR`, writes
/// `target`'s seed inputs into `DIR` and exits.
pub fn init(target: &str) {
    if let Some(dir) = std::env::var_os("EMBER_FUZZ_WRITE_SEEDS") {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).expect("create the seed folder");
        let seeds = seeds(target);
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).expect("write a seed");
        }
        eprintln!("{target}: wrote {} seeds to {}", seeds.len(), dir.display());
        std::process::exit(0);
    }
    // Build the fixtures before the clock starts.
    match target {
        "checkpoint" => drop(fixtures::bert_skeleton()),
        "quantized_model" => drop(fixtures::quant_skeleton()),
        _ => {}
    }
}

/// The seed inputs of `target`: valid files (and a few near misses) for the fuzzer to mutate.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "checkpoint" => fixtures::checkpoint_seeds(),
        "quantized_model" => fixtures::quantized_seeds(),
        "recipe" => fixtures::recipe_seeds(),
        "tasks" => fixtures::task_seeds(),
        "gemm" => gemm_target::seeds(),
        other => panic!("unknown target {other}; targets: {TARGETS:?}"),
    }
}

/// A BERT checkpoint (safetensors bytes) into a small model built from a fixed config; when the
/// first byte is 0, the rest as a `config.json` for `BertConfig::from_json`; when it is 2, an
/// ALBERT checkpoint into the small ALBERT of ember-models' tests (2 groups of 2 inner layers).
///
/// Property: no panic. A config that parses must validate (a parsed config is a valid one) and
/// report its parameter count; a checkpoint that loads gives a model that embeds a sequence or
/// returns a typed error.
pub fn checkpoint(data: &[u8]) {
    use ember_models::{BertConfig, Encoded, load_albert_bytes, load_bert_bytes};
    match data.split_first() {
        None => {}
        Some((2, rest)) => {
            let (skeleton, config) = fixtures::albert_skeleton();
            if let Ok((model, _report)) = load_albert_bytes(skeleton, rest.to_vec(), "fuzz.safetensors", &config) {
                let batch = Encoded::from_ids(&[vec![1, 2, 3, 4]], 0).expect("fixed ids");
                let _ = model.embed(&batch);
            }
        }
        Some((0, rest)) => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            if let Ok(config) = BertConfig::from_json(text) {
                config.validate().expect("from_json returned a config that does not validate");
                let _ = config.num_params();
            }
        }
        Some((_, rest)) => {
            let skeleton = fixtures::bert_skeleton();
            if let Ok((model, _report)) = load_bert_bytes(skeleton, rest.to_vec(), "fuzz.safetensors") {
                let batch = Encoded::from_ids(&[vec![1, 2, 3, 4]], 0).expect("fixed ids");
                let _ = model.embed(&batch);
            }
        }
    }
}

/// A quantized-model file into the skeleton of a small causal LM (int8 linear layers and an
/// int8 token table when it was saved).
///
/// Property: no panic. A file that loads gives a model whose forward pass on fixed tokens runs
/// (`try_forward`: a typed error is allowed, a panic is not).
pub fn quantized_model(data: &[u8]) {
    use burn::tensor::{Int, Tensor, TensorData};
    let skeleton = fixtures::quant_skeleton();
    let device = burn::tensor::Device::flex();
    if let Ok(model) = ember_quant::io::load_quantized_bytes(skeleton, data) {
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4, 5, 6], [2, 3]), &device);
        let _ = model.try_forward(ids, false);
    }
}

/// `ember compress`'s recipe parser and validation (`ember_slm::pipeline::lm::Recipe`).
///
/// Property: no panic and no unbounded allocation (validation builds the student: the recipe
/// must bound model sizes first). A recipe that validates round-trips through JSON unchanged.
pub fn recipe(data: &[u8]) {
    use ember_slm::pipeline::lm::Recipe;
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(recipe) = Recipe::parse(text, "fuzz.json") else { return };
    // Validation builds the student and computes pruning masks over it: a valid recipe near the
    // example's 100 M-parameter bound legitimately takes gigabytes and seconds, which libFuzzer
    // would report as an out-of-memory or a timeout. Sizes are bounded by validation itself,
    // which the smaller recipes exercise.
    let small = |m: &ember_slm::models::CausalLmConfig| m.validate().is_err() || m.num_params() <= 2_000_000;
    if !(small(&recipe.teacher.model) && small(&recipe.student.model)) {
        return;
    }
    if recipe.validate().is_ok() {
        let json = serde_json::to_string(&recipe).expect("a valid recipe serializes");
        let back = Recipe::parse(&json, "round-trip").expect("a valid recipe parses back");
        let (a, b) = (serde_json::to_value(&recipe).expect("JSON"), serde_json::to_value(&back).expect("JSON"));
        // Exact: serde_json reads back the shortest decimal form of every f64 exactly with its
        // `float_roundtrip` feature, which the workspace enables (found by this target without it:
        // `lr = 9.999999999999901e97` came back as `9.9999999999999e97`).
        assert_eq!(a, b, "recipe round trip");
    }
}

/// A GLUE TSV or SuperGLUE JSONL file. The first byte picks the reader: `b % 32` below 11 is
/// a GLUE dev/test file of `GlueTask::ALL[b % 32]`, 11..22 a GLUE train file, 22..32 a SuperGLUE
/// task; the rest is the file's text (invalid UTF-8 replaced, as a lossy reader would).
///
/// Property: no panic. A file that parses is scored with its own gold labels as predictions:
/// the score is finite (or a typed error, for example a split without labels).
pub fn tasks(data: &[u8]) {
    use ember_eval::{GlueLabel, GluePrediction, GlueTask, SgSplit, SuperGlueTask};
    let Some((&selector, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let pick = (selector % 32) as usize;
    if pick < 22 {
        let task = GlueTask::ALL[pick % 11];
        let Ok(split) = task.parse(&text, "fuzz.tsv", pick >= 11) else { return };
        let predictions: Vec<GluePrediction> = split
            .examples
            .iter()
            .map(|e| match e.label {
                Some(GlueLabel::Class(c)) => GluePrediction::Class(c),
                Some(GlueLabel::Score(s)) => GluePrediction::Score(s),
                None => GluePrediction::Class(0),
            })
            .collect();
        if let Ok(score) = task.evaluate(&split.examples, &predictions) {
            assert!(score.score.is_finite(), "{task:?}: score {}", score.score);
            assert!(score.metrics.iter().all(|(_, v)| v.is_finite()), "{task:?}: {:?}", score.metrics);
        }
    } else {
        let task = SuperGlueTask::ALL[(pick - 22) % 10];
        let Ok(split) = task.parse(&text, "fuzz.jsonl") else { return };
        let score = match &split {
            SgSplit::Examples(examples) => {
                let predictions: Vec<usize> = examples.iter().map(|e| e.label.unwrap_or(0)).collect();
                task.evaluate(examples, &predictions)
            }
            SgSplit::MultiRc(questions) => {
                let predictions: Vec<Vec<bool>> =
                    questions.iter().map(|q| q.answers.iter().map(|a| a.1.unwrap_or(false)).collect()).collect();
                ember_eval::evaluate_multirc(questions, &predictions)
            }
            SgSplit::Record(queries) => {
                let predictions: Vec<&str> =
                    queries.iter().map(|q| q.answers.first().map_or("", String::as_str)).collect();
                ember_eval::evaluate_record(queries, &predictions)
            }
        };
        if let Ok(score) = score {
            assert!(score.score.is_finite(), "{task:?}: score {}", score.score);
            assert!(score.metrics.iter().all(|(_, v)| v.is_finite()), "{task:?}: {:?}", score.metrics);
        }
    }
}
