//! # Compress a language model end to end
//!
//! ```text
//! cargo run --release --example compress                       # built-in corpus, default recipe
//! cargo run --release --example compress -- --corpus corpora/moby-dick.txt
//! cargo run --release --example compress -- --quick            # the CI smoke run (seconds)
//! cargo run --release --example compress -- --print-recipe > my.json   # edit, then --recipe my.json
//! # a real checkpoint: sentence embeddings of all-MiniLM-L6-v2 distilled, narrowed, int8
//! cargo run --release --example compress -- --teacher models/all-minilm-l6-v2 --task embed --data corpora/moby-dick.txt
//! # the same checkpoint fine-tuned on a labelled task, then distilled, narrowed, int8
//! cargo run --release --example compress -- --teacher models/all-minilm-l6-v2 --task classify --data corpora/brown-genre
//! ```
//!
//! With `--teacher DIR --task embed --data FILE` the run is `ember_slm::pipeline::embed` on a
//! Hugging Face encoder (see its docs; the recipe flags read and print its `EmbedRecipe`); with
//! `--task classify --data DIR_OR_TSV [--glue-task NAME]` it is `ember_slm::pipeline::classify`
//! (`ClassifyRecipe`).
//!
//! Without `--teacher` the run is `ember_slm::pipeline::lm` (see its docs), every technique of
//! Ember in one ordinary Burn training program:
//!
//! 1. **teacher**: a byte-level causal LM trained on the corpus (cached in `--out`: a rerun with
//!    the same teacher recipe and corpus skips it);
//! 2. **distilled**: an ALBERT-style student (factorized embedding, one block shared by every
//!    layer, narrower) trained by the `Distiller` with soft-target KD, the hard labels and a
//!    hidden-state MSE through learned projections;
//! 3. **pruned**: the student fine-tuned further under the same distillation while the `Pruner`
//!    raises its sparsity on a cubic schedule;
//! 4. **int8**: the `Quantizer` converts every linear layer and the token table (static
//!    calibration by default).
//!
//! Each stage is evaluated on the held-out split (perplexity per byte, size on disk, latency p50
//! at batch 1 and 32) and the report is printed and written to `--out` as markdown, JSON and
//! SVG. On the built-in corpus, whose entropy rate is known exactly, the report also shows the
//! perplexity floor no model can beat and each stage's distance to it. This file is the command
//! line: arguments, device, threads, progress bars and printing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use ember_slm::eval::CompressionReport;
use ember_slm::pipeline::lm::{self, Corpus, LmError, LmRun, LmStage, Recipe, RecipeError, TeacherSource};
use indicatif::{ProgressBar, ProgressStyle};

mod classify_mode;
mod embed_mode;

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

const HELP: &str = "\
compress: teacher → distilled ALBERT-style student → gradual pruning → int8, with a report

USAGE: cargo run --release --example compress -- [OPTIONS]

  --recipe FILE      read the recipe (JSON) instead of the default
  --print-recipe     print the recipe that would run (JSON) and exit
  --quick            tiny models and steps: the CI smoke run (seconds)
  --corpus FILE      train on a text file instead of the built-in Markov corpus
  --device NAME      flex (default), ndarray, wgpu (built with --features wgpu) or cuda (--features cuda)
  --threads N        CPU threads (default: all cores)
  --seed N           initialization and sampling seed (overrides the recipe's)
  --out DIR          where checkpoints and the report go (default target/ember-compress, with
                     --teacher target/ember-compress-embed)
  --retrain          train the teacher even when a matching checkpoint is cached
  --teacher DIR      a Hugging Face BERT-family directory (config.json, model.safetensors,
                     tokenizer.json): compress it for --task instead of the built-in LM
  --task NAME        with --teacher: embed (sentence embeddings) or classify (text classification)
  --data PATH        with --teacher: embed: the text to distil on (plain text, split into
                     sentences); classify: a directory with train.tsv and dev.tsv, or one TSV
                     file (`text<TAB>label` rows, or GLUE's layout with --glue-task) split by the recipe
  --glue-task NAME   with --task classify: read --data in a GLUE task's layout (SST-2, MRPC,
                     STS-B, QQP, MNLI, QNLI, RTE, WNLI, CoLA) and score with its official metric
  --help             this text";

#[derive(Debug)]
struct Args {
    recipe: Option<PathBuf>,
    print_recipe: bool,
    quick: bool,
    corpus: Option<PathBuf>,
    device: String,
    threads: usize,
    seed: Option<u64>,
    out: PathBuf,
    retrain: bool,
    teacher: Option<PathBuf>,
    task: Option<String>,
    data: Option<PathBuf>,
    glue_task: Option<String>,
}

/// A command-line mistake.
#[derive(Debug, thiserror::Error)]
#[error("{0} (see --help)")]
struct Usage(String);

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, Usage> {
    let mut a = Args {
        recipe: None,
        print_recipe: false,
        quick: false,
        corpus: None,
        device: "flex".into(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seed: None,
        out: PathBuf::from("target/ember-compress"),
        retrain: false,
        teacher: None,
        task: None,
        data: None,
        glue_task: None,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = |what: &str| it.next().ok_or_else(|| Usage(format!("{flag} needs {what}")));
        let number = |s: String, flag: &str| {
            s.parse::<u64>().map_err(|_| Usage(format!("{flag} {s}: expected a non-negative integer")))
        };
        match flag.as_str() {
            "--recipe" => a.recipe = Some(value("a file")?.into()),
            "--print-recipe" => a.print_recipe = true,
            "--quick" => a.quick = true,
            "--corpus" => a.corpus = Some(value("a file")?.into()),
            "--device" => a.device = value("a device name")?,
            "--threads" => {
                let n = number(value("a count")?, "--threads")?;
                a.threads = usize::try_from(n)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| Usage(format!("--threads {n}: expected at least 1")))?;
            }
            "--seed" => a.seed = Some(number(value("a number")?, "--seed")?),
            "--out" => a.out = value("a directory")?.into(),
            "--retrain" => a.retrain = true,
            "--teacher" => a.teacher = Some(value("a directory")?.into()),
            "--task" => a.task = Some(value("a task name")?),
            "--data" => a.data = Some(value("a file or directory")?.into()),
            "--glue-task" => a.glue_task = Some(value("a GLUE task name")?),
            "--help" | "-h" => {
                println!("{HELP}");
                return Ok(None);
            }
            other => return Err(Usage(format!("unknown argument {other}"))),
        }
    }
    if a.recipe.is_some() && a.quick {
        return Err(Usage("--recipe and --quick both choose the recipe: give one".into()));
    }
    if a.teacher.is_some() || a.task.is_some() || a.data.is_some() {
        if a.teacher.is_none() || a.task.is_none() {
            return Err(Usage("--teacher DIR and --task NAME go together (and --data FILE)".into()));
        }
        if a.corpus.is_some() {
            return Err(Usage("--corpus is the built-in LM run's; with --teacher give --data".into()));
        }
        match a.task.as_deref() {
            Some("embed") => {
                if a.glue_task.is_some() {
                    return Err(Usage("--glue-task goes with --task classify".into()));
                }
                if a.data.is_none() && !a.print_recipe {
                    return Err(Usage("--task embed needs --data FILE (plain text)".into()));
                }
            }
            Some("classify") if a.data.is_none() && !a.print_recipe => {
                return Err(Usage(
                    "--task classify needs --data DIR_OR_TSV (train.tsv and dev.tsv, or one labelled TSV)".into(),
                ));
            }
            Some("classify") => {}
            Some(other) => {
                return Err(Usage(format!("--task {other}: expected embed or classify")));
            }
            None => {}
        }
    } else if a.glue_task.is_some() {
        return Err(Usage("--glue-task goes with --teacher DIR --task classify".into()));
    }
    Ok(Some(a))
}

fn load_recipe(args: &Args) -> Result<Recipe, RecipeError> {
    let mut recipe = match &args.recipe {
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| RecipeError::Parse { path: shown.clone(), message: e.to_string() })?;
            Recipe::parse(&text, &shown)?
        }
        None if args.quick => Recipe::quick(),
        None => Recipe::default(),
    };
    if let Some(seed) = args.seed {
        recipe.seed = seed;
    }
    recipe.validate()?;
    Ok(recipe)
}

#[allow(deprecated)] // NdArray is deprecated upstream; Ember still supports it.
fn device(name: &str) -> Result<Device, Usage> {
    match name {
        "flex" => Ok(Device::flex()),
        "ndarray" => Ok(Device::ndarray()),
        "wgpu" => wgpu_device(),
        "cuda" => cuda_device(),
        other => Err(Usage(format!("--device {other}: expected flex, ndarray, wgpu or cuda"))),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, Usage> {
    Ok(Device::cuda(burn::tensor::DeviceIndex::Default))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device, Usage> {
    Err(Usage(
        "--device cuda: this build has no CUDA backend; run `cargo run --release --features cuda --example compress -- --device cuda` (its build downloads a toolchain)"
            .into(),
    ))
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, Usage> {
    Ok(Device::wgpu(Default::default()))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, Usage> {
    Err(Usage(
        "--device wgpu: this build has no wgpu backend; run `cargo run --release --features wgpu --example compress -- --device wgpu`"
            .into(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Progress bars and threads (every mode)
// ---------------------------------------------------------------------------------------------

/// Progress bars for a pipeline run: one per stage, the last loss (named `loss_name`) shown.
fn stage_bars(loss_name: &'static str) -> impl FnMut(&str, usize, usize, f64) {
    let mut bars: Vec<(String, ProgressBar)> = Vec::new();
    move |stage: &str, done: usize, total: usize, loss: f64| {
        if bars.last().is_none_or(|(s, _)| s != stage) {
            if let Some((_, b)) = bars.last() {
                b.finish();
            }
            bars.push((stage.to_string(), bar(total, stage)));
        }
        if let Some((_, b)) = bars.last() {
            b.set_position(done as u64);
            if loss.is_finite() {
                b.set_message(format!("{loss_name} {loss:.4}"));
            }
            if done == total {
                b.finish();
            }
        }
    }
}

/// Sets the Rayon pool and the int8 kernels' threads.
fn set_threads(threads: usize) {
    if rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().is_err() {
        eprintln!("warning: the thread pool was already set up; --threads {threads} not applied");
    }
    ember_slm::quant::set_int8_threads(threads);
}

fn bar(len: usize, prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>12} [{elapsed_precise}] {bar:30} {pos:>5}/{len:5} {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(prefix.to_string());
    pb
}

// ---------------------------------------------------------------------------------------------
// The built-in LM run
// ---------------------------------------------------------------------------------------------

/// The LM run's bars: its training stages as [`stage_bars`] shows them, its evaluation passes
/// (`eval …`, `latency`) cleared when done (their results are printed after the run).
fn lm_bars() -> impl FnMut(&str, usize, usize, f64) {
    let mut training = stage_bars("loss");
    let mut pass: Option<ProgressBar> = None;
    move |stage: &str, done: usize, total: usize, loss: f64| {
        if !(stage.starts_with("eval ") || stage == "latency") {
            return training(stage, done, total, loss);
        }
        pass.get_or_insert_with(|| bar(total, stage)).set_position(done as u64);
        if done == total
            && let Some(b) = pass.take()
        {
            b.finish_and_clear();
        }
    }
}

/// The built-in LM run (`ember_slm::pipeline::lm`) on `--corpus` or the built-in corpus, with
/// progress bars.
fn run(args: &Args, recipe: &Recipe, device: &Device) -> Result<LmRun, LmError> {
    let corpus = args.corpus.as_deref().map_or(Corpus::BuiltIn, Corpus::File);
    lm::run(recipe, corpus, &args.out, args.retrain, device, &mut lm_bars())
}

/// What the run did, a line per step: the corpus, the teacher, each stage's losses and held-out
/// perplexity, the time taken.
fn log(r: &LmRun, out: &Path) -> String {
    let mut s = String::new();
    let floor = r.floor.map_or(String::new(), |f| format!("; entropy floor: perplexity {f:.4} per byte"));
    let _ = writeln!(s, "corpus: {} ({} training bytes, {} held out){floor}", r.corpus, r.bytes.0, r.bytes.1);
    match &r.teacher {
        TeacherSource::Trained { final_loss, cache_error } => {
            if let Some(e) = cache_error {
                let _ = writeln!(s, "cached teacher unusable ({e}); retraining");
            }
            let _ = writeln!(s, "teacher: final training loss {final_loss:.4} nats/byte");
        }
        TeacherSource::Cached => {
            let _ = writeln!(s, "teacher: loaded from {} (same recipe, corpus and seed)", out.display());
        }
    }
    let stage = |s: &mut String, st: &LmStage| {
        let _ = writeln!(
            s,
            "{:>16}: held-out perplexity {:.4}, {} bytes on disk, made in {:.0} s",
            st.name, st.perplexity, st.bytes, st.seconds
        );
    };
    let mut stages = r.stages.iter();
    if let Some(t) = stages.next() {
        stage(&mut s, t);
    }
    let _ = writeln!(s, "distill: final losses {}", fmt_terms(&r.distill_losses));
    if let Some(t) = stages.next() {
        stage(&mut s, t);
    }
    let _ = writeln!(
        s,
        "prune: final losses {}; {:.1} % of the pruned layers' weights are zero",
        fmt_terms(&r.prune_losses),
        100.0 * r.sparsity
    );
    stages.for_each(|t| stage(&mut s, t));
    let total: f64 = r.stages.iter().map(|t| t.seconds).sum();
    let _ = writeln!(s, "stages took {total:.0} s in all (evaluation excluded)");
    s
}

fn fmt_terms(terms: &[(String, f64)]) -> String {
    terms.iter().map(|(n, v)| format!("{n} {v:.4}")).collect::<Vec<_>>().join(", ")
}

/// The targets of the run, measured against the teacher (first row).
fn summary(report: &CompressionReport) -> String {
    let (t, f) = (&report.rows[0], &report.rows[report.rows.len() - 1]);
    let mut s = String::new();
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    let size = f.bytes as f64 / t.bytes as f64;
    let ppl = f.metric_value / t.metric_value;
    let _ =
        writeln!(s, "final size: {:.2} % of the teacher's bytes (target ≤ 8 %: {})", 100.0 * size, mark(size <= 0.08));
    let _ = writeln!(s, "final perplexity: {ppl:.3}× the teacher's (target ≤ 1.10×: {})", mark(ppl <= 1.10));
    let _ = writeln!(
        s,
        "batch-1 latency: {:.2}× faster than the teacher (target ≥ 3×: {})",
        f.speedup_b1,
        mark(f.speedup_b1 >= 3.0)
    );
    s
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if args.teacher.is_some() {
        if args.task.as_deref() == Some("classify") {
            std::process::exit(classify_mode::main(&args));
        }
        std::process::exit(embed_mode::main(&args));
    }
    let recipe = match load_recipe(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if args.print_recipe {
        println!("{}", serde_json::to_string_pretty(&recipe).expect("a recipe serializes"));
        return;
    }
    let device = match device(&args.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    set_threads(args.threads);
    let start = Instant::now();
    match run(&args, &recipe, &device) {
        Ok(r) => {
            eprint!("{}", log(&r, &args.out));
            let report = &r.report;
            println!("{}", report.to_markdown());
            print!("{}", summary(report));
            if args.quick {
                println!("(--quick trains tiny models as a smoke test; the targets are for the default recipe)");
            }
            println!(
                "report: {0}/report.md, {0}/report.json, {0}/report.svg ({1:.0} s on {2} threads, --device {3})",
                args.out.display(),
                start.elapsed().as_secs_f64(),
                args.threads,
                args.device
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    /// The Flex device's random state is process-wide: tests that build models (validation
    /// does too) take turns, so seeded runs are reproducible while tests run in parallel.
    fn serial() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn args(v: &[&str]) -> Result<Option<Args>, Usage> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn recipe_files_and_arguments() {
        let _serial = serial();
        let dir = std::env::temp_dir().join(format!("ember-compress-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("r.json");
        let mut r = Recipe::quick();
        r.seed = 5;
        std::fs::write(&file, serde_json::to_string(&r).unwrap()).unwrap();
        let a = args(&["--recipe", file.to_str().unwrap(), "--seed", "9"]).unwrap().unwrap();
        assert_eq!(load_recipe(&a).unwrap(), Recipe { seed: 9, ..r.clone() });
        // --quick and the default recipe; invalid settings are refused before the run.
        assert_eq!(load_recipe(&args(&["--quick"]).unwrap().unwrap()).unwrap(), Recipe::quick());
        assert_eq!(load_recipe(&args(&[]).unwrap().unwrap()).unwrap(), Recipe::default());
        let mut bad = r.clone();
        bad.prune.ramp = 0.0;
        std::fs::write(&file, serde_json::to_string(&bad).unwrap()).unwrap();
        let e = load_recipe(&a).unwrap_err();
        assert!(matches!(e, RecipeError::Invalid { .. }), "{e}");
        // Unknown keys (also inside the crates' own types) and malformed JSON are errors naming
        // the file.
        std::fs::write(&file, r#"{"seed": 1, "colour": 2}"#).unwrap();
        let e = load_recipe(&a).unwrap_err().to_string();
        assert!(e.contains("r.json") && e.contains("unknown field"), "{e}");
        let mut v = serde_json::to_value(&r).unwrap();
        v["student"]["model"]["embeding_size"] = serde_json::json!(8);
        std::fs::write(&file, v.to_string()).unwrap();
        let e = load_recipe(&a).unwrap_err().to_string();
        assert!(e.contains("unknown key student.model.embeding_size"), "{e}");
        std::fs::write(&file, "{").unwrap();
        assert!(load_recipe(&a).unwrap_err().to_string().contains("r.json"));
        let missing = args(&["--recipe", dir.join("missing.json").to_str().unwrap()]).unwrap().unwrap();
        assert!(load_recipe(&missing).unwrap_err().to_string().starts_with("recipe file "));
        assert_eq!(args(&["--threads", "0"]).unwrap_err().to_string(), "--threads 0: expected at least 1 (see --help)");
        assert!(args(&["--seed"]).unwrap_err().to_string().contains("--seed needs a number"));
        assert!(args(&["--frobnicate"]).unwrap_err().to_string().contains("unknown argument"));
        assert!(args(&["--quick", "--recipe", "x"]).is_err());
        let e = device("tpu").unwrap_err().to_string();
        assert!(e.contains("--device tpu") && e.contains("flex, ndarray, wgpu or cuda"), "{e}");
        // A GPU backend this build lacks says which feature to build with.
        #[cfg(not(feature = "cuda"))]
        {
            let e = device("cuda").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
        #[cfg(not(feature = "wgpu"))]
        {
            let e = device("wgpu").unwrap_err().to_string();
            assert!(e.contains("--features wgpu"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn embed_mode_arguments_go_together() {
        let _serial = serial();
        let ok = args(&["--teacher", "m", "--task", "embed", "--data", "t.txt"]).unwrap().unwrap();
        assert_eq!((ok.task.as_deref(), ok.data.as_deref()), (Some("embed"), Some(Path::new("t.txt"))));
        assert!(args(&["--teacher", "m", "--task", "embed", "--print-recipe"]).unwrap().is_some());
        let c = args(&["--teacher", "m", "--task", "classify", "--data", "d", "--glue-task", "rte"]).unwrap().unwrap();
        assert_eq!(c.glue_task.as_deref(), Some("rte"));
        for (v, needle) in [
            (vec!["--teacher", "m"], "go together"),
            (vec!["--task", "embed", "--data", "t"], "go together"),
            (vec!["--teacher", "m", "--task", "embed"], "needs --data"),
            (vec!["--teacher", "m", "--task", "translate", "--data", "t"], "expected embed or classify"),
            (vec!["--teacher", "m", "--task", "classify"], "needs --data DIR_OR_TSV"),
            (
                vec!["--teacher", "m", "--task", "embed", "--data", "t", "--glue-task", "sst-2"],
                "goes with --task classify",
            ),
            (vec!["--glue-task", "sst-2"], "goes with --teacher"),
            (vec!["--teacher", "m", "--task", "embed", "--data", "t", "--corpus", "c"], "--corpus"),
        ] {
            let err = args(&v).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(needle), "{v:?}: {err}");
        }
    }

    /// A recipe whose whole run takes a second or two (the library's tests check the run
    /// itself; these check the command line around it).
    fn micro_recipe() -> Recipe {
        let r = Recipe::micro();
        r.validate().unwrap();
        r
    }

    fn micro_args(out: &Path) -> Args {
        Args {
            recipe: None,
            print_recipe: false,
            quick: false,
            corpus: None,
            device: "flex".into(),
            threads: 1,
            seed: None,
            out: out.to_path_buf(),
            retrain: false,
            teacher: None,
            task: None,
            data: None,
            glue_task: None,
        }
    }

    /// The micro pipeline end to end as `main` runs it: the report and its files, the log of
    /// what was done (teacher trained, then loaded from the cache on a rerun; `--retrain`
    /// trains it again) and the summary against the targets; `--corpus` reads a file.
    #[test]
    fn micro_pipeline_end_to_end() {
        let _serial = serial();
        let r = micro_recipe();
        let out = std::env::temp_dir().join(format!("ember-compress-micro-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut a = micro_args(&out);
        let first = run(&a, &r, &Device::flex()).unwrap();
        assert_eq!(first.report.rows.len(), 4);
        for ext in ["md", "json", "svg"] {
            assert!(out.join(format!("report.{ext}")).metadata().unwrap().len() > 0);
        }
        let text = log(&first, &out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 9, "{text}");
        assert!(lines[0].starts_with("corpus: built-in Markov corpus (seed 7, "), "{text}");
        assert!(lines[0].contains("; entropy floor: perplexity "), "{text}");
        assert!(lines[1].starts_with("teacher: final training loss ") && lines[1].ends_with(" nats/byte"), "{text}");
        assert!(lines[2].starts_with("         teacher: held-out perplexity "), "{text}");
        assert!(lines[3].starts_with("distill: final losses "), "{text}");
        assert!(lines[4].starts_with("       distilled: held-out perplexity "), "{text}");
        assert!(lines[5].starts_with("prune: final losses ") && lines[5].ends_with("weights are zero"), "{text}");
        assert!(lines[6].starts_with("     pruned 50 %: held-out perplexity "), "{text}");
        assert!(lines[7].starts_with("   int8 (static): held-out perplexity ") && lines[7].ends_with(" s"), "{text}");
        assert!(lines[8].starts_with("stages took "), "{text}");
        let summary = summary(&first.report);
        assert!(summary.starts_with("final size: ") && summary.contains("batch-1 latency: "), "{summary}");
        let again = run(&a, &r, &Device::flex()).unwrap();
        let text = log(&again, &out);
        let loaded = format!("teacher: loaded from {} (same recipe, corpus and seed)", out.display());
        assert_eq!(text.lines().nth(1), Some(loaded.as_str()), "{text}");
        a.retrain = true;
        let corpus = out.join("corpus.txt");
        std::fs::write(&corpus, "the cat sat on the mat; the dog ate the log. ".repeat(200)).unwrap();
        a.corpus = Some(corpus.clone());
        let other = run(&a, &r, &Device::flex()).unwrap();
        let text = log(&other, &out);
        assert!(text.starts_with(&format!("corpus: {} (", corpus.display())) && !text.contains("floor"), "{text}");
        assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("teacher: final training loss")), "{text}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
