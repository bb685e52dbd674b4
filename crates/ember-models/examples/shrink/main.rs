//! A real checkpoint made smaller and faster with the crates composed: all-MiniLM-L6-v2 loaded
//! from its Hugging Face directory, narrowed by measured importance (ember-prune's criteria on
//! ember-quant's calibration norms, removed by the model's ember-layers blocks), reduced to a
//! subset of its layers, converted to int8, each stage saved and timed.
//!
//! ```text
//! scripts/fetch-minilm.sh
//! cargo run --release -p ember-models --example shrink -- --model-dir models/all-minilm-l6-v2 --json
//!     [--sentences FILE] [--out DIR] [--threads N] [--min-ms MS] [--albert]
//! ```
//!
//! Stages: `f32` (the checkpoint), `int8` (ember-quant's default: dynamic per-row u8
//! activations, per-channel i8 weights, int8 tables), `shrunk` (a third of every layer's heads
//! and half of its FFN neurons removed by importance `‖W[j,:]‖₂ · ‖X_j‖₂` measured on the
//! sentences, then layers 1, 3, 5 kept), `shrunk_int8`. One JSON line per stage: `params`,
//! `encoder_params` (all but the token, position and token-type tables), `file_bytes` (the
//! stage saved by `Bert::save`: f32, or int8 with int8 tables), `cos_mean` / `cos_min` (sentence
//! embeddings against `f32`), `b1_ms` / `b32_ms` (median `embed` call at batch 1 and 32, one
//! thread, the stages timed round-robin). No retraining: quality after shrinking is what the
//! removal alone leaves (distillation recovers it; see ember-distill).
//!
//! `--albert` adds one line: ALBERT-base's configuration (the shared encoder from ember-layers,
//! seeded random weights, MiniLM's vocabulary) in int8 against float on the same sentences.
//! `--students` adds one line per student built from the checkpoint without training: the layer
//! subset alone, and ALBERT-style shared encoders (1 or 3 groups, each group's block the mean of
//! its layers or a copy of its first layer), with their parameters and embedding cosine.

mod stages;

use burn::tensor::Device;
use ember_eval::{LatencyConfig, measure};
use ember_models::{AlbertConfig, Bert, Encoded, TextTokenizer};
use ember_quant::set_cpu_threads;
use stages::{BoxError, Plan, rows};
use std::path::PathBuf;
use std::time::Duration;

/// The built-in sentences (40, varied; also the tests').
const SENTENCES: &str = include_str!("../../tests/data/sentences.txt");

struct Args {
    model_dir: PathBuf,
    json: bool,
    sentences: Option<PathBuf>,
    out: PathBuf,
    threads: usize,
    min_ms: u64,
    albert: bool,
    students: bool,
}

const USAGE: &str = "shrink [--model-dir DIR] [--json] [--sentences FILE] [--out DIR] [--threads N] [--min-ms MS] [--albert] [--students]";

fn parse() -> Result<Args, BoxError> {
    let mut a = Args {
        model_dir: PathBuf::from("models/all-minilm-l6-v2"),
        json: false,
        sentences: None,
        out: PathBuf::from("target/shrink"),
        threads: 1,
        min_ms: 1000,
        albert: false,
        students: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value ({USAGE})"));
        let number = |v: String, what: &str| v.parse::<u64>().map_err(|_| format!("{what} {v}: expected a number"));
        match flag.as_str() {
            "--model-dir" => a.model_dir = val()?.into(),
            "--json" => a.json = true,
            "--sentences" => a.sentences = Some(val()?.into()),
            "--out" => a.out = val()?.into(),
            "--threads" => a.threads = (number(val()?, "--threads")? as usize).max(1),
            "--min-ms" => a.min_ms = number(val()?, "--min-ms")?,
            "--albert" => a.albert = true,
            "--students" => a.students = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other} ({USAGE})").into()),
        }
    }
    Ok(a)
}

struct Measured {
    name: &'static str,
    params: usize,
    encoder_params: usize,
    file_bytes: u64,
    cos_mean: f64,
    cos_min: f64,
    b1: Vec<f64>,
    b32: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run() -> Result<(), BoxError> {
    let args = parse()?;
    set_cpu_threads(args.threads)?;
    let device = Device::flex();
    let sentences: Vec<String> = match &args.sentences {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        None => SENTENCES.to_string(),
    }
    .lines()
    .map(str::trim)
    .filter(|l| !l.is_empty())
    .map(String::from)
    .collect();
    if sentences.len() < 32 {
        return Err(format!("{} sentences: the batch-32 timing needs at least 32", sentences.len()).into());
    }
    eprintln!(
        "CPU: {}; int8 kernel: {}; {} thread(s); {} sentences",
        ember_kernels::cpu_model(),
        ember_kernels::KernelId::selected().name(),
        args.threads,
        sentences.len()
    );
    let model = Bert::from_pretrained(&args.model_dir, &device)?;
    let tok = TextTokenizer::from_file(args.model_dir.join("tokenizer.json"), model.max_positions())?;
    let all = tok.encode_batch(&sentences)?;
    let plan = Plan::default_for(model.n_layers());
    let students = if args.students { Some(students(&model, &all, &plan)?) } else { None };
    let stages = stages::stages(model, &all, &plan)?;

    let reference = rows(stages[0].1.embed(&all)?)?;
    let mut measured = Vec::new();
    for (name, m) in &stages {
        let (params, encoder_params) = stages::params(m)?;
        let file_bytes = m.save(args.out.join(name))?;
        let emb = rows(m.embed(&all)?)?;
        let cos = ember_eval::row_cosines(&emb, &reference)?;
        measured.push(Measured {
            name,
            params,
            encoder_params,
            file_bytes,
            cos_mean: cos.iter().sum::<f64>() / cos.len() as f64,
            cos_min: cos.iter().copied().fold(f64::INFINITY, f64::min),
            b1: Vec::new(),
            b32: Vec::new(),
        });
    }

    // Latency, round-robin over the stages so that a noisy machine's phases hit all of them.
    let batches: Vec<(usize, Encoded)> = [1usize, 32].iter().map(|&b| (b, all.take(b))).collect();
    for _round in 0..3 {
        for ((_, m), out) in stages.iter().zip(measured.iter_mut()) {
            for (b, batch) in &batches {
                let cfg = LatencyConfig {
                    warmup: 2,
                    min_iterations: 5,
                    min_time: Duration::from_millis(args.min_ms),
                    max_iterations: 10_000,
                    items_per_call: *b,
                    tokens_per_call: batch.tokens(),
                    threads: args.threads,
                };
                let mut failed = None;
                let ms = measure(out.name, &cfg, || {
                    if let Err(e) = m.embed(batch).map(|t| t.into_data()) {
                        failed = Some(e);
                    }
                })?
                .p50_ms;
                if let Some(e) = failed {
                    return Err(e.into());
                }
                if *b == 1 { out.b1.push(ms) } else { out.b32.push(ms) }
            }
        }
    }

    let f32_row = (measured[0].params, measured[0].encoder_params, measured[0].file_bytes);
    if !args.json {
        println!(
            "| stage | params | encoder params | file (bytes) | cos mean | cos min | batch 1 (ms) | batch 32 (ms) |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    }
    for s in &measured {
        let (b1, b32) = (median(&s.b1), median(&s.b32));
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "stage": s.name, "params": s.params, "encoder_params": s.encoder_params,
                    "file_bytes": s.file_bytes, "cos_mean": s.cos_mean, "cos_min": s.cos_min,
                    "b1_ms": b1, "b32_ms": b32,
                })
            );
        } else {
            println!(
                "| {} | {} | {} ({:.3}×) | {} ({:.3}×) | {:.4} | {:.4} | {b1:.2} | {b32:.2} |",
                s.name,
                s.params,
                s.encoder_params,
                s.encoder_params as f64 / f32_row.1 as f64,
                s.file_bytes,
                s.file_bytes as f64 / f32_row.2 as f64,
                s.cos_mean,
                s.cos_min,
            );
        }
    }
    for (name, params, encoder_params, cos_mean, cos_min) in students.into_iter().flatten() {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"student": name, "params": params, "encoder_params": encoder_params, "cos_mean": cos_mean, "cos_min": cos_min})
            );
        } else {
            println!(
                "student {name}: {params} params ({encoder_params} encoder), cos mean {cos_mean:.4}, min {cos_min:.4}"
            );
        }
    }
    if args.albert {
        albert_check(&all, args.json)?;
    }
    Ok(())
}

/// Students straight from the teacher, without training: (name, params, encoder params, cosine
/// mean, cosine min) against the teacher's embeddings.
#[allow(clippy::type_complexity)]
fn students(teacher: &Bert, batch: &Encoded, plan: &Plan) -> Result<Vec<(String, usize, usize, f64, f64)>, BoxError> {
    use ember_models::{SharedInit, SharingMode};
    let reference = rows(teacher.embed(batch)?)?;
    let mut out = Vec::new();
    let mut candidates = vec![(format!("layers {:?}", plan.layers), teacher.retain_layers(&plan.layers)?)];
    for groups in [1, 3] {
        for init in [SharedInit::Mean, SharedInit::First] {
            let name = format!("shared, {groups} group(s), {init:?}");
            candidates.push((name, teacher.to_shared(SharingMode::All, groups, init)?));
        }
    }
    for (name, m) in candidates {
        let (params, encoder_params) = stages::params(&m)?;
        let cos = ember_eval::row_cosines(&rows(m.embed(batch)?)?, &reference)?;
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        out.push((name, params, encoder_params, mean, cos.iter().copied().fold(f64::INFINITY, f64::min)));
    }
    Ok(out)
}

/// ALBERT-base's shared encoder in int8 against float on the sentences.
fn albert_check(batch: &Encoded, json: bool) -> Result<(), BoxError> {
    let device = Device::flex();
    device.seed(7);
    let mut config = AlbertConfig::base();
    config.vocab_size = 30522; // MiniLM's vocabulary
    let model = config.init(&device)?;
    let int8 = stages::int8(&model)?;
    let (f, q) = (rows(model.embed(batch)?)?, rows(int8.embed(batch)?)?);
    let cos = ember_eval::row_cosines(&f, &q)?;
    let (mean, min) = (cos.iter().sum::<f64>() / cos.len() as f64, cos.iter().copied().fold(f64::INFINITY, f64::min));
    let h = config.hidden_size;
    let params = model.architecture()?.num_params()? + h * h + h;
    let published = AlbertConfig::base().architecture()?.num_params()? + h * h + h; // vocabulary 30 000
    if json {
        println!(
            "{}",
            serde_json::json!({"check": "albert_base_int8", "params_with_pooler": params, "albert_base_params": published, "cos_mean": mean, "cos_min": min})
        );
    } else {
        println!(
            "\nALBERT-base (shared encoder, random weights; {published} parameters with the pooler, {params} with MiniLM's \
             vocabulary): int8 vs f32 cosine mean {mean:.5}, min {min:.5}"
        );
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("shrink: {e}");
        std::process::exit(1);
    }
}
