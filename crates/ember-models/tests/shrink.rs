//! The `shrink` example's recipe (examples/shrink/stages.rs): measured importance, narrowed
//! layers, a layer subset, int8. Every stage is saved by `Bert::save` and reloaded by
//! `Bert::load` in a fresh process (this test binary, running `reload_child`) to the same
//! embeddings, bit for bit. On a generated checkpoint in Hugging Face's layout always, and on
//! all-MiniLM-L6-v2 when scripts/fetch-minilm.sh has fetched it.

#[path = "../examples/shrink/stages.rs"]
mod stages;

mod common;

use burn::module::Module;
use burn::tensor::Device;
use ember_models::{Bert, Encoded, TextTokenizer, load_bert_bytes};
use stages::{Plan, rows};
use std::path::{Path, PathBuf};

const CHILD_DIRS: &str = "EMBER_SHRINK_RELOAD_DIRS";
const CHILD_BATCH: &str = "EMBER_SHRINK_RELOAD_BATCH";
const CHILD_OUT: &str = "EMBER_SHRINK_RELOAD_OUT";

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-shrink-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves every stage, reloads them in a child process and compares the embeddings exactly.
fn save_and_reload_in_a_fresh_process(stages: &[(&'static str, Bert)], batch: &Encoded, dir: &Path) -> Vec<u64> {
    let mut bytes = Vec::new();
    let mut dirs = Vec::new();
    for (name, m) in stages {
        let d = dir.join(name);
        bytes.push(m.save(&d).unwrap());
        dirs.push(d.display().to_string());
    }
    let batch_file = dir.join("batch.json");
    std::fs::write(&batch_file, serde_json::to_string(&to_json(batch)).unwrap()).unwrap();
    let out = dir.join("child.json");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "reload_child", "--ignored", "--nocapture"])
        .env(CHILD_DIRS, dirs.join("\n"))
        .env(CHILD_BATCH, &batch_file)
        .env(CHILD_OUT, &out)
        .status()
        .unwrap();
    assert!(status.success(), "the child process failed");
    let child: Vec<Vec<Vec<f32>>> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for ((name, m), got) in stages.iter().zip(child) {
        assert_eq!(got, rows(m.embed(batch).unwrap()).unwrap(), "{name}: the reloaded model computes otherwise");
    }
    bytes
}

type BatchJson = (usize, usize, Vec<i64>, Vec<i64>, Vec<bool>, Vec<usize>);

fn to_json(e: &Encoded) -> BatchJson {
    (e.batch, e.seq, e.ids.clone(), e.type_ids.clone(), e.pad.clone(), e.lengths.clone())
}

fn from_json((batch, seq, ids, type_ids, pad, lengths): BatchJson) -> Encoded {
    Encoded { batch, seq, ids, type_ids, pad, lengths }
}

/// The fresh process of the save tests (does nothing alone).
#[test]
#[ignore = "run by the save tests in a child process"]
fn reload_child() {
    let (Some(dirs), Some(batch), Some(out)) =
        (std::env::var_os(CHILD_DIRS), std::env::var_os(CHILD_BATCH), std::env::var_os(CHILD_OUT))
    else {
        return;
    };
    let batch = from_json(serde_json::from_str(&std::fs::read_to_string(batch).unwrap()).unwrap());
    let device = Device::flex();
    let embeddings: Vec<Vec<Vec<f32>>> = dirs
        .to_string_lossy()
        .lines()
        .map(|d| rows(Bert::load(d, &device).unwrap().embed(&batch).unwrap()).unwrap())
        .collect();
    std::fs::write(out, serde_json::to_string(&embeddings).unwrap()).unwrap();
}

#[test]
fn shrink_recipe_on_a_generated_checkpoint_saves_and_reloads() {
    let device = Device::flex();
    let config = ember_models::BertConfig::from_json(common::CONFIG).unwrap();
    let bytes = common::serialize_f32(&common::hf_tensors());
    let (model, _) = load_bert_bytes(config.init(&device).unwrap(), bytes, "tiny").unwrap();
    let batch = Encoded::from_ids(&[vec![1, 5, 7, 2], vec![1, 3, 4, 9, 11, 12, 2], vec![2, 19, 3]], 0).unwrap();
    // 2 heads less a third keep 1; 16 neurons less half keep 8; layer 1 of 2 stays.
    let plan = Plan::default_for(2);
    assert_eq!(plan.layers, vec![1]);
    let stages = stages::stages(model, &batch, &plan).unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s.0).collect();
    assert_eq!(names, ["f32", "int8", "shrunk", "shrunk_int8"]);
    let shrunk = &stages[2].1;
    assert_eq!(shrunk.n_layers(), 1);
    assert_eq!((shrunk.encoder.attention[0].n_heads, shrunk.encoder.feed_forward[0].d_ff()), (1, 8));
    // The architecture records the narrowed widths; a model built from it has the same shapes.
    let arch = shrunk.architecture().unwrap();
    assert_eq!(arch.num_params().unwrap(), ember_models::BertArchitecture::init(&arch, &device).unwrap().num_params());
    let (p, enc) = stages::params(shrunk).unwrap();
    let (p0, enc0) = stages::params(&stages[0].1).unwrap();
    assert!(p < p0 && enc < enc0 / 3, "{p}/{p0}, {enc}/{enc0}");
    assert_eq!(stages::params(&stages[3].1).unwrap(), (p, enc), "int8 keeps the parameter count");
    let dir = tmp("generated");
    let bytes = save_and_reload_in_a_fresh_process(&stages, &batch, &dir);
    assert!(bytes[2] < bytes[0] && bytes[3] < bytes[2] && bytes[1] < bytes[0], "{bytes:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shrink_recipe_on_minilm_saves_and_reloads() {
    let dir = std::env::var_os("EMBER_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-minilm-l6-v2"));
    if !dir.join("model.safetensors").is_file() {
        eprintln!("SKIPPED: all-MiniLM-L6-v2 not found at {} (run scripts/fetch-minilm.sh)", dir.display());
        return;
    }
    let device = Device::flex();
    let model = Bert::from_pretrained(&dir, &device).unwrap();
    let tok = TextTokenizer::from_file(dir.join("tokenizer.json"), model.max_positions()).unwrap();
    let sentences: Vec<&str> = include_str!("data/sentences.txt").lines().filter(|l| !l.is_empty()).collect();
    let batch = tok.encode_batch(&sentences).unwrap();
    let stages = stages::stages(model, &batch, &Plan::default_for(6)).unwrap();
    let shrunk = &stages[2].1;
    assert_eq!(shrunk.n_layers(), 3);
    assert!(shrunk.encoder.attention.iter().all(|a| a.n_heads == 8), "12 heads less a third");
    assert!(shrunk.encoder.feed_forward.iter().all(|f| f.d_ff() == 768), "1536 neurons less half");
    let (_, enc0) = stages::params(&stages[0].1).unwrap();
    let (_, enc) = stages::params(shrunk).unwrap();
    let out = tmp("minilm");
    let bytes = save_and_reload_in_a_fresh_process(&stages, &batch.take(8), &out);
    eprintln!(
        "MiniLM shrunk: encoder params {enc} / {enc0} = {:.3}; files {bytes:?}, shrunk_int8 / f32 = {:.3}",
        enc as f64 / enc0 as f64,
        bytes[3] as f64 / bytes[0] as f64
    );
    let _ = std::fs::remove_dir_all(&out);
}
