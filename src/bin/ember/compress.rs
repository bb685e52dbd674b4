//! `ember compress`: the compression pipelines with progress bars and a printed report.
//!
//! Without `--teacher` the run is `ember_slm::pipeline::lm`, every technique of Ember in one
//! ordinary Burn training program on a byte-level LM it first trains on the built-in corpus
//! (or `--corpus`):
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
//! With `--teacher DIR --task embed --data FILE` the run is `ember_slm::pipeline::embed` on a
//! Hugging Face encoder; with `--task classify --data DIR_OR_TSV [--glue-task NAME]` it is
//! `ember_slm::pipeline::classify`. Each stage is evaluated on held-out data and the report is
//! printed and written to `--out` as markdown, JSON and SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use clap::{Args, ValueEnum};
use ember_slm::eval::CompressionReport;
use ember_slm::pipeline::classify::ClassifyRecipe;
use ember_slm::pipeline::data::read_task;
use ember_slm::pipeline::embed::EmbedRecipe;
use ember_slm::pipeline::lm::{self, Corpus, LmRun, LmStage, Recipe, RecipeError, TeacherSource};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;

use crate::common::{Result, RunOpts, io_err, usage};

/// The task of a real-model run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Sentence embeddings (distilled on the teacher's embeddings, hidden states, attention).
    Embed,
    /// Text classification or regression on a labelled file (the teacher fine-tuned first).
    Classify,
}

/// `ember compress`.
#[derive(Args, Debug, Clone)]
pub struct CompressArgs {
    /// Read the recipe (JSON) instead of the default one (print one with --print-recipe)
    #[arg(long, value_name = "FILE", conflicts_with = "quick")]
    pub recipe: Option<PathBuf>,
    /// Print the recipe that would run (JSON) and exit
    #[arg(long)]
    pub print_recipe: bool,
    /// Tiny models and few steps: a smoke run of seconds (the numbers mean nothing)
    #[arg(long)]
    pub quick: bool,
    /// Built-in LM run: train on this text file instead of the built-in Markov corpus
    #[arg(long, value_name = "FILE", conflicts_with = "teacher")]
    pub corpus: Option<PathBuf>,
    /// Initialization and sampling seed (overrides the recipe's)
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Where checkpoints and the report go [default: target/ember-compress, with --teacher
    /// target/ember-compress-embed or target/ember-compress-classify]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Built-in LM run: train the teacher even when a matching checkpoint is cached
    #[arg(long)]
    pub retrain: bool,
    /// A Hugging Face BERT-family directory (config.json, model.safetensors, tokenizer.json) to
    /// compress for --task instead of the built-in LM
    #[arg(long, value_name = "DIR", requires = "task")]
    pub teacher: Option<PathBuf>,
    /// With --teacher: what the student is for
    #[arg(long, value_enum, requires = "teacher")]
    pub task: Option<Task>,
    /// With --teacher: embed: text to distil on (plain text, split into sentences); classify: a
    /// directory with train.tsv and dev.tsv, or one TSV file (`text<TAB>label` rows, or GLUE's
    /// layout with --glue-task) split by the recipe
    #[arg(long, value_name = "PATH", requires = "teacher")]
    pub data: Option<PathBuf>,
    /// With --task classify: read --data in a GLUE task's layout (SST-2, MRPC, STS-B, QQP,
    /// MNLI, QNLI, RTE, WNLI, CoLA) and score with its official metric
    #[arg(long, value_name = "NAME")]
    pub glue_task: Option<String>,
    #[command(flatten)]
    pub run: RunOpts,
}

impl CompressArgs {
    /// Cross-flag rules clap's attributes do not express.
    fn check(&self) -> Result<()> {
        match (self.task, &self.data, &self.glue_task) {
            (Some(Task::Embed), _, Some(_)) => Err(usage("--glue-task goes with --task classify")),
            (None, _, Some(_)) => Err(usage("--glue-task goes with --teacher DIR --task classify")),
            (Some(Task::Embed), None, _) if !self.print_recipe => {
                Err(usage("--task embed needs --data FILE (plain text)"))
            }
            (Some(Task::Classify), None, _) if !self.print_recipe => {
                Err(usage("--task classify needs --data DIR_OR_TSV (train.tsv and dev.tsv, or one labelled TSV)"))
            }
            _ => Ok(()),
        }
    }

    fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            PathBuf::from(match self.task {
                None => "target/ember-compress",
                Some(Task::Embed) => "target/ember-compress-embed",
                Some(Task::Classify) => "target/ember-compress-classify",
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Recipes and progress bars (every mode)
// ---------------------------------------------------------------------------------------------

/// A real-model recipe: `--recipe FILE`, `--quick` or the default, with `--seed`, validated.
fn real_recipe<R: DeserializeOwned + Default>(
    a: &CompressArgs,
    quick: fn() -> R,
    seed: impl FnOnce(&mut R, u64),
    validate: impl FnOnce(&R) -> std::result::Result<(), ember_slm::pipeline::PipelineError>,
) -> Result<R> {
    let mut r = match &a.recipe {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
            serde_json::from_str::<R>(&text).map_err(|e| io_err(path, format!("not a valid recipe: {e}")))?
        }
        None if a.quick => quick(),
        None => R::default(),
    };
    if let Some(s) = a.seed {
        seed(&mut r, s);
    }
    validate(&r)?;
    Ok(r)
}

/// The built-in LM run's recipe.
fn load_recipe(a: &CompressArgs) -> std::result::Result<Recipe, RecipeError> {
    let mut recipe = match &a.recipe {
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| RecipeError::Parse { path: shown.clone(), message: e.to_string() })?;
            Recipe::parse(&text, &shown)?
        }
        None if a.quick => Recipe::quick(),
        None => Recipe::default(),
    };
    if let Some(seed) = a.seed {
        recipe.seed = seed;
    }
    recipe.validate()?;
    Ok(recipe)
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

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| usage(format!("the recipe does not serialize: {e}")))?;
    println!("{text}");
    Ok(())
}

/// `ember compress`.
pub fn compress(a: &CompressArgs) -> Result<()> {
    a.check()?;
    match a.task {
        Some(Task::Embed) => embed_mode(a),
        Some(Task::Classify) => classify_mode(a),
        None => lm_mode(a),
    }
}

// ---------------------------------------------------------------------------------------------
// The built-in LM run
// ---------------------------------------------------------------------------------------------

/// The built-in LM run on `--corpus` or the built-in corpus, with progress bars.
fn run_lm(a: &CompressArgs, recipe: &Recipe, device: &Device) -> Result<LmRun> {
    let corpus = a.corpus.as_deref().map_or(Corpus::BuiltIn, Corpus::File);
    Ok(lm::run(recipe, corpus, &a.out_dir(), a.retrain, device, &mut lm_bars())?)
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

fn lm_mode(a: &CompressArgs) -> Result<()> {
    let recipe = load_recipe(a)?;
    if a.print_recipe {
        return print_json(&recipe);
    }
    let device = a.run.setup()?;
    let start = Instant::now();
    let out = a.out_dir();
    let r = run_lm(a, &recipe, &device)?;
    eprint!("{}", log(&r, &out));
    println!("{}", r.report.to_markdown());
    print!("{}", summary(&r.report));
    if a.quick {
        println!("(--quick trains tiny models as a smoke test; the targets are for the default recipe)");
    }
    println!(
        "report: {0}/report.md, {0}/report.json, {0}/report.svg ({1:.0} s on {2} threads, --device {3})",
        out.display(),
        start.elapsed().as_secs_f64(),
        a.run.threads_used(),
        a.run.device
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Real models
// ---------------------------------------------------------------------------------------------

fn embed_mode(a: &CompressArgs) -> Result<()> {
    let recipe = real_recipe(a, EmbedRecipe::quick, |r, s| r.seed = s, EmbedRecipe::validate)?;
    if a.print_recipe {
        return print_json(&recipe);
    }
    let (Some(teacher), Some(data)) = (&a.teacher, &a.data) else {
        return Err(usage("--teacher DIR and --data FILE are needed"));
    };
    let bytes = std::fs::read(data).map_err(|e| io_err(data, e))?;
    let text = String::from_utf8(bytes).map_err(|_| io_err(data, "not UTF-8 text"))?;
    let device = a.run.setup()?;
    let start = Instant::now();
    let out = a.out_dir();
    let r = ember_slm::pipeline::embed::run(teacher, &text, &recipe, &out, &device, &mut stage_bars("1 − cos"))?;
    println!("{}", r.report.to_markdown());
    println!("| stage | cos mean | cos min | made in (s) |\n|---|---:|---:|---:|");
    for s in &r.stages {
        println!("| {} | {:.4} | {:.4} | {:.0} |", s.name, s.cos_mean, s.cos_min, s.seconds);
    }
    let (t, last) = (&r.stages[0], &r.stages[r.stages.len() - 1]);
    println!(
        "\n{} training sentences (+ {} general), {} held out; final: {:.1} % of the teacher's bytes, Spearman {:.4}, {:.2}× faster at batch 32, {:.2}× at batch 1",
        r.sentences.0,
        r.general_sentences,
        r.sentences.1,
        100.0 * last.bytes as f64 / t.bytes.max(1) as f64,
        last.spearman,
        t.b32_ms / last.b32_ms,
        t.b1_ms / last.b1_ms
    );
    students_line(a, &r.hf_dir, &r.int8_dir, &out, start);
    Ok(())
}

fn classify_mode(a: &CompressArgs) -> Result<()> {
    let recipe = real_recipe(a, ClassifyRecipe::quick, |r, s| r.seed = s, ClassifyRecipe::validate)?;
    if a.print_recipe {
        return print_json(&recipe);
    }
    let (Some(teacher), Some(path)) = (&a.teacher, &a.data) else {
        return Err(usage("--teacher DIR and --data DIR_OR_TSV are needed"));
    };
    let data = read_task(path, a.glue_task.as_deref(), recipe.dev_fraction, recipe.seed)?;
    let device = a.run.setup()?;
    let start = Instant::now();
    let out = a.out_dir();
    let r = ember_slm::pipeline::classify::run(teacher, &data, &recipe, &out, &device, &mut stage_bars("loss"))?;
    println!("{}", r.report.to_markdown());
    if r.teacher_finetuned {
        let epochs: Vec<String> = r.teacher_epochs.iter().map(|m| format!("{m:.4}")).collect();
        println!("teacher fine-tuned here: dev {} after each epoch: {}", r.metric, epochs.join(", "));
    } else {
        println!("teacher: the checkpoint's own head (not fine-tuned)");
    }
    println!("| stage | dev {} | made in (s) |\n|---|---:|---:|", r.metric);
    for s in &r.stages {
        println!("| {} | {:.4} | {:.0} |", s.name, s.metric, s.seconds);
    }
    let (t, last) = (&r.stages[0], &r.stages[r.stages.len() - 1]);
    println!(
        "\n{} training examples, {} dev; final: {:.1} % of the teacher's bytes, dev {} {:.4} ({:.3}× the teacher's), {:.2}× faster at batch 32, {:.2}× at batch 1",
        r.examples.0,
        r.examples.1,
        100.0 * last.bytes as f64 / t.bytes.max(1) as f64,
        r.metric,
        last.metric,
        last.metric / t.metric,
        t.b32_ms / last.b32_ms,
        t.b1_ms / last.b1_ms
    );
    students_line(a, &r.hf_dir, &r.int8_dir, &out, start);
    Ok(())
}

fn students_line(a: &CompressArgs, hf: &Path, int8: &Path, out: &Path, start: Instant) {
    if a.quick {
        println!("(--quick trains for a few steps as a smoke test; the numbers mean nothing)");
    }
    println!(
        "students: {} (Hugging Face layout), {} (Ember int8); report: {out}/report.md, {out}/report.json, {out}/report.svg ({:.0} s on {} threads, --device {})",
        hf.display(),
        int8.display(),
        start.elapsed().as_secs_f64(),
        a.run.threads_used(),
        a.run.device,
        out = out.display(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::sync::{Mutex, MutexGuard};

    /// The Flex device's random state is process-wide: tests that build models (validation
    /// does too) take turns, so seeded runs are reproducible while tests run in parallel.
    fn serial() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[derive(Parser, Debug)]
    struct Wrap {
        #[command(flatten)]
        args: CompressArgs,
    }

    fn args(v: &[&str]) -> std::result::Result<CompressArgs, String> {
        let wrap =
            Wrap::try_parse_from(std::iter::once("compress").chain(v.iter().copied())).map_err(|e| e.to_string())?;
        wrap.args.check().map_err(|e| e.to_string())?;
        Ok(wrap.args)
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
        let a = args(&["--recipe", file.to_str().unwrap(), "--seed", "9"]).unwrap();
        assert_eq!(load_recipe(&a).unwrap(), Recipe { seed: 9, ..r.clone() });
        // --quick and the default recipe; invalid settings are refused before the run.
        assert_eq!(load_recipe(&args(&["--quick"]).unwrap()).unwrap(), Recipe::quick());
        assert_eq!(load_recipe(&args(&[]).unwrap()).unwrap(), Recipe::default());
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
        let missing = args(&["--recipe", dir.join("missing.json").to_str().unwrap()]).unwrap();
        assert!(load_recipe(&missing).unwrap_err().to_string().starts_with("recipe file "));
        assert!(args(&["--threads", "0"]).unwrap_err().contains("--threads"));
        assert!(args(&["--seed"]).unwrap_err().contains("--seed"));
        assert!(args(&["--frobnicate"]).unwrap_err().contains("--frobnicate"));
        assert!(args(&["--quick", "--recipe", "x"]).unwrap_err().contains("cannot be used with"));
        let e = crate::common::device("tpu").err().unwrap().to_string();
        assert!(e.contains("--device tpu") && e.contains("flex, ndarray, wgpu or cuda"), "{e}");
        // A GPU backend this build lacks says which feature to build with.
        #[cfg(not(feature = "cuda"))]
        {
            let e = crate::common::device("cuda").err().unwrap().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
        #[cfg(not(feature = "wgpu"))]
        {
            let e = crate::common::device("wgpu").err().unwrap().to_string();
            assert!(e.contains("--features wgpu"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn real_model_arguments_go_together() {
        let ok = args(&["--teacher", "m", "--task", "embed", "--data", "t.txt"]).unwrap();
        assert_eq!((ok.task, ok.data.as_deref()), (Some(Task::Embed), Some(Path::new("t.txt"))));
        assert_eq!(ok.out_dir(), Path::new("target/ember-compress-embed"));
        assert!(args(&["--teacher", "m", "--task", "embed", "--print-recipe"]).is_ok());
        let c = args(&["--teacher", "m", "--task", "classify", "--data", "d", "--glue-task", "rte"]).unwrap();
        assert_eq!(c.glue_task.as_deref(), Some("rte"));
        assert_eq!(c.out_dir(), Path::new("target/ember-compress-classify"));
        for (v, needle) in [
            (vec!["--teacher", "m"], "--task"),
            (vec!["--task", "embed", "--data", "t"], "--teacher"),
            (vec!["--teacher", "m", "--task", "embed"], "needs --data"),
            (vec!["--teacher", "m", "--task", "translate", "--data", "t"], "translate"),
            (vec!["--teacher", "m", "--task", "classify"], "needs --data DIR_OR_TSV"),
            (
                vec!["--teacher", "m", "--task", "embed", "--data", "t", "--glue-task", "sst-2"],
                "goes with --task classify",
            ),
            (vec!["--glue-task", "sst-2"], "goes with --teacher"),
            (vec!["--teacher", "m", "--task", "embed", "--data", "t", "--corpus", "c"], "--corpus"),
        ] {
            let err = args(&v).err().unwrap_or_default();
            assert!(err.contains(needle), "{v:?}: {err}");
        }
    }

    /// The micro pipeline end to end as the command runs it: the report and its files, the log
    /// of what was done (teacher trained, then loaded from the cache on a rerun; `--retrain`
    /// trains it again) and the summary against the targets; `--corpus` reads a file.
    #[test]
    fn micro_pipeline_end_to_end() {
        let _serial = serial();
        let r = Recipe::micro();
        r.validate().unwrap();
        let out = std::env::temp_dir().join(format!("ember-compress-micro-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut a = args(&["--out", out.to_str().unwrap(), "--threads", "1"]).unwrap();
        let first = run_lm(&a, &r, &Device::flex()).unwrap();
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
        let again = run_lm(&a, &r, &Device::flex()).unwrap();
        let text = log(&again, &out);
        let loaded = format!("teacher: loaded from {} (same recipe, corpus and seed)", out.display());
        assert_eq!(text.lines().nth(1), Some(loaded.as_str()), "{text}");
        a.retrain = true;
        let corpus = out.join("corpus.txt");
        std::fs::write(&corpus, "the cat sat on the mat; the dog ate the log. ".repeat(200)).unwrap();
        a.corpus = Some(corpus.clone());
        let other = run_lm(&a, &r, &Device::flex()).unwrap();
        let text = log(&other, &out);
        assert!(text.starts_with(&format!("corpus: {} (", corpus.display())) && !text.contains("floor"), "{text}");
        assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("teacher: final training loss")), "{text}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
