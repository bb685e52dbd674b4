//! all-MiniLM-L6-v2 sentence embeddings in f32 and int8: agreement (cosine) and encode latency.
//!
//! ```text
//! scripts/fetch-minilm.sh
//! cargo run --release -p ember-models --example minilm -- --model-dir models/all-minilm-l6-v2 [--json]
//!     [--sentences FILE] [--embeddings-out FILE] [--threads N] [--min-ms MS] [--device flex|ndarray]
//!     [--save-dir DIR] [--int8-file DIR_OR_FILE] [--skip-latency] [--only f32|int8] [--batches 1,32]
//! ```
//!
//! Any saved model works: `--model-dir` is any Hugging Face BERT-family directory (a teacher,
//! or a float student written by `Bert::save_pretrained`), and `--int8-file` an int8 model saved
//! by `Bert::save` (its directory or the `model.ember.safetensors` in it) used instead of
//! quantizing the float model. `--embeddings-out FILE` writes `{"f32": [[…], …], "int8": [[…],
//! …]}`, one row per sentence (one per line of `--sentences`), so results can be checked
//! outside Ember. The tokenizer is `--model-dir`'s `tokenizer.json`.
//!
//! int8: per-output-channel symmetric weights (ember-quant's default), per-row dynamic affine
//! u8 activations, int8 word/position/type tables with per-row scales. Latency is the median
//! `embed` call (tokenized batch in, pooled embeddings out) at batch 1 and batch 32 (the first
//! 32 sentences; `--batches` picks other sizes, a size larger than the sentence count is
//! skipped), `--threads` threads (1 by default) for both Burn and Ember's kernels. `--only`
//! times one of the two models (for profiling).

use burn::tensor::{Device, Tensor};
use ember_eval::{LatencyConfig, measure};
use ember_models::{Bert, TextTokenizer};
use ember_quant::{QuantizeConfig, Quantizer, set_cpu_threads};
use std::path::PathBuf;
use std::time::Duration;

/// The built-in set: 40 varied sentences (also used by the tests).
const SENTENCES: &str = include_str!("../tests/data/sentences.txt");

/// Bad input: one line on stderr, exit status 2.
macro_rules! fail {
    ($($t:tt)*) => {{
        eprintln!("minilm: {}", format!($($t)*));
        std::process::exit(2)
    }};
}

struct Args {
    model_dir: PathBuf,
    json: bool,
    sentences: Option<PathBuf>,
    embeddings_out: Option<PathBuf>,
    save_dir: Option<PathBuf>,
    int8_file: Option<PathBuf>,
    skip_latency: bool,
    threads: usize,
    min_ms: u64,
    device: String,
    only: Option<String>,
    batches: Vec<usize>,
}

fn parse() -> Args {
    let mut a = Args {
        model_dir: PathBuf::from("models/all-minilm-l6-v2"),
        json: false,
        sentences: None,
        embeddings_out: None,
        save_dir: None,
        int8_file: None,
        skip_latency: false,
        threads: 1,
        min_ms: 1500,
        device: "flex".into(),
        only: None,
        batches: vec![1, 32],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| fail!("{flag} needs a value"));
        match flag.as_str() {
            "--model-dir" => a.model_dir = val().into(),
            "--json" => a.json = true,
            "--sentences" => a.sentences = Some(val().into()),
            "--embeddings-out" => a.embeddings_out = Some(val().into()),
            "--save-dir" => a.save_dir = Some(val().into()),
            "--int8-file" => a.int8_file = Some(val().into()),
            "--skip-latency" => a.skip_latency = true,
            "--threads" => {
                a.threads =
                    val().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| fail!("--threads takes a positive count"))
            }
            "--min-ms" => {
                a.min_ms = val().parse().unwrap_or_else(|_| fail!("--min-ms takes milliseconds (an integer)"))
            }
            "--device" => a.device = val(),
            "--only" => {
                let v = val();
                if v != "f32" && v != "int8" {
                    fail!("--only takes f32 or int8 (got {v:?})");
                }
                a.only = Some(v);
            }
            "--batches" => {
                let v = val();
                a.batches = v
                    .split(',')
                    .map(|x| x.trim().parse().ok().filter(|&n: &usize| n > 0))
                    .collect::<Option<_>>()
                    .unwrap_or_else(|| fail!("--batches takes positive batch sizes separated by commas (got {v:?})"));
            }
            "-h" | "--help" => {
                println!(
                    "minilm --model-dir DIR [--json] [--sentences FILE] [--embeddings-out FILE] [--save-dir DIR] \
                     [--int8-file DIR_OR_FILE] [--skip-latency] [--threads N] [--min-ms MS] [--device flex|ndarray] [--only f32|int8] [--batches 1,32]"
                );
                std::process::exit(0);
            }
            other => fail!("unknown flag {other} (try --help)"),
        }
    }
    a
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, d] = t.dims();
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 embeddings")
        .chunks(d)
        .map(<[f32]>::to_vec)
        .collect()
}

#[allow(deprecated)] // NdArray is deprecated upstream; Ember still supports it.
fn device(name: &str) -> Device {
    match name {
        "flex" => Device::flex(),
        #[cfg(feature = "ndarray")]
        "ndarray" => Device::ndarray(),
        other => fail!("--device {other}: expected flex or ndarray (ndarray needs --features ndarray)"),
    }
}

fn main() {
    let args = parse();
    // Burn's CPU ops (Rayon's pool) and Ember's kernels, in one setting.
    if let Err(e) = set_cpu_threads(args.threads) {
        fail!("--threads {}: {e}", args.threads);
    }
    let device = device(&args.device);

    let sentences: Vec<String> = match &args.sentences {
        Some(p) => std::fs::read_to_string(p)
            .unwrap_or_else(|e| fail!("cannot read {}: {e}", p.display()))
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => SENTENCES.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect(),
    };
    assert!(!sentences.is_empty(), "no sentences");

    let model = Bert::from_pretrained(&args.model_dir, &device).unwrap_or_else(|e| fail!("{e}"));
    let tok = TextTokenizer::from_file(args.model_dir.join("tokenizer.json"), model.max_positions())
        .unwrap_or_else(|e| fail!("{e}"));
    let (int8, int8_layers) = match &args.int8_file {
        Some(p) => {
            let dir = if p.is_file() { p.parent().map(PathBuf::from).unwrap_or_default() } else { p.clone() };
            let m = Bert::load(&dir, &device).unwrap_or_else(|e| fail!("{e}"));
            (m, None)
        }
        None => {
            let (m, report) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap_or_else(|e| fail!("{e}"));
            (m, Some(report.layers.len()))
        }
    };

    let all = tok.encode_batch(&sentences).unwrap_or_else(|e| fail!("{e}"));
    // Each sentence alone (no padding), so batching cannot hide a difference.
    let mut f32_rows = Vec::new();
    let mut int8_rows = Vec::new();
    for chunk in 0..sentences.len().div_ceil(32) {
        let part: Vec<&String> = sentences.iter().skip(chunk * 32).take(32).collect();
        let b = tok.encode_batch(&part).unwrap();
        f32_rows.extend(rows(model.embed(&b).unwrap()));
        int8_rows.extend(rows(int8.embed(&b).unwrap()));
    }
    let cos = ember_eval::row_cosines(&f32_rows, &int8_rows).unwrap_or_else(|e| fail!("{e}"));
    let cos_mean = cos.iter().sum::<f64>() / cos.len() as f64;
    let cos_min = cos.iter().copied().fold(f64::INFINITY, f64::min);

    if let Some(p) = &args.embeddings_out {
        let j = serde_json::json!({ "f32": f32_rows, "int8": int8_rows });
        std::fs::write(p, j.to_string()).unwrap_or_else(|e| fail!("cannot write {}: {e}", p.display()));
    }

    if args.json {
        println!(
            "{}",
            serde_json::json!({"sentences": sentences.len(), "cos_mean": cos_mean, "cos_min": cos_min,
                "cpu": ember_kernels::cpu_model(), "int8_kernel": ember_kernels::KernelId::selected().short_name(),
                "row_kernel": ember_kernels::fused::RowKernel::selected().to_string()})
        );
    } else {
        println!(
            "{}, {} sentences: int8 vs f32 embedding cosine mean {cos_mean:.5}, min {cos_min:.5}",
            args.model_dir.display(),
            sentences.len()
        );
        println!(
            "{}; int8 GEMM kernel {}, row kernels {} (peaks: `gemm_table`, `sgemm_table`)",
            ember_kernels::cpu_model(),
            ember_kernels::KernelId::selected().name(),
            ember_kernels::fused::RowKernel::selected()
        );
        match int8_layers {
            Some(n) => println!("int8 layers: {n}"),
            None => {
                println!("int8 model: {}", args.int8_file.as_ref().map_or(String::new(), |p| p.display().to_string()))
            }
        }
        println!("\n| batch | seq | threads | f32 ms | int8 ms | speedup |\n|---:|---:|---:|---:|---:|---:|");
    }

    for &batch in &args.batches {
        if batch > sentences.len() || args.skip_latency {
            continue;
        }
        let b = all.take(batch);
        let cfg = LatencyConfig {
            warmup: 3,
            min_iterations: 10,
            min_time: Duration::from_millis(args.min_ms),
            max_iterations: 10_000,
            items_per_call: batch,
            tokens_per_call: b.tokens(),
            threads: args.threads,
        };
        // Alternate the two so drift on a noisy machine hits both.
        let mut f = Vec::new();
        let mut q = Vec::new();
        for _ in 0..2 {
            if args.only.as_deref() != Some("int8") {
                f.push(measure("f32", &cfg, || drop(model.embed(&b).unwrap().into_data())).unwrap().p50_ms);
            }
            if args.only.as_deref() != Some("f32") {
                q.push(measure("int8", &cfg, || drop(int8.embed(&b).unwrap().into_data())).unwrap().p50_ms);
            }
        }
        let f_ms = f.iter().copied().fold(f64::INFINITY, f64::min);
        let q_ms = q.iter().copied().fold(f64::INFINITY, f64::min);
        if args.json {
            println!(
                "{}",
                serde_json::json!({"batch": batch, "seq": b.seq, "threads": args.threads, "f32_ms": f_ms, "int8_ms": q_ms, "speedup": f_ms / q_ms})
            );
        } else {
            // `--only` leaves one column unmeasured: "–", not "inf".
            let ms = |t: f64| if t.is_finite() { format!("{t:.2}") } else { "–".into() };
            let ratio = if (f_ms / q_ms).is_finite() { format!("{:.2}×", f_ms / q_ms) } else { "–".into() };
            println!("| {batch} | {} | {} | {} | {} | {ratio} |", b.seq, args.threads, ms(f_ms), ms(q_ms));
        }
    }

    if let Some(dir) = &args.save_dir {
        let (f32_dir, int8_dir) = (dir.join("minilm-f32"), dir.join("minilm-int8"));
        let fb = model.save(&f32_dir).unwrap_or_else(|e| fail!("{e}"));
        let qb = int8.save(&int8_dir).unwrap_or_else(|e| fail!("{e}"));
        let reloaded = Bert::load(&int8_dir, &device).unwrap_or_else(|e| fail!("{e}"));
        let same = rows(reloaded.embed(&all.take(4)).unwrap()) == rows(int8.embed(&all.take(4)).unwrap());
        if args.json {
            println!(
                "{}",
                serde_json::json!({"f32_bytes": fb, "int8_bytes": qb, "ratio": qb as f64 / fb as f64, "reload_identical": same})
            );
        } else {
            println!(
                "\nsaved: f32 {fb} bytes, int8 {qb} bytes ({:.3}×); reloaded int8 identical: {same}",
                qb as f64 / fb as f64
            );
        }
    }
}
