//! Scores a predictions file against a GLUE dev file with the task's official metrics.
//!
//! ```sh
//! cargo run -p ember-eval --example glue_score -- --task MRPC --dev glue/MRPC/dev.tsv --predictions preds.tsv [--json]
//! ```
//!
//! The predictions file has one prediction per example, in the dev file's order: either the
//! GLUE submission layout (`index<TAB>prediction` lines under an `index<TAB>prediction` header) or
//! one prediction per line. A prediction is a label name (`entailment`, `not_entailment`, `0`,
//! `1`, …), a class index, or for STS-B a score. Prints each metric and the task score (the
//! mean of its metrics, as the leaderboard does); `--json` prints the `TaskScore` as JSON.
//! Bad input (unknown task, unreadable or malformed file, wrong number of predictions) is one
//! line on stderr and exit status 2.

use ember_eval::{GluePrediction, GlueTask};
use std::path::PathBuf;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("glue_score: {msg}");
    std::process::exit(2)
}

struct Args {
    task: GlueTask,
    dev: PathBuf,
    predictions: PathBuf,
    json: bool,
}

fn parse() -> Args {
    let usage = "usage: glue_score --task NAME --dev FILE --predictions FILE [--json]";
    let (mut task, mut dev, mut predictions, mut json) = (None, None, None, false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| fail(format!("{flag} needs a value ({usage})")));
        match flag.as_str() {
            "--task" => task = Some(GlueTask::from_name(&value()).unwrap_or_else(|e| fail(e))),
            "--dev" => dev = Some(PathBuf::from(value())),
            "--predictions" => predictions = Some(PathBuf::from(value())),
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0)
            }
            other => fail(format!("unknown flag {other} ({usage})")),
        }
    }
    match (task, dev, predictions) {
        (Some(task), Some(dev), Some(predictions)) => Args { task, dev, predictions, json },
        _ => fail(format!("--task, --dev and --predictions are required ({usage})")),
    }
}

/// One prediction from its text: a label name, a class index or (STS-B) a score.
fn prediction(task: GlueTask, text: &str, line: usize) -> GluePrediction {
    let labels = task.labels();
    if labels.is_empty() {
        return match text.parse::<f64>() {
            Ok(v) if v.is_finite() => GluePrediction::Score(v),
            _ => fail(format!("predictions line {line}: {text:?} is not a finite score")),
        };
    }
    if let Some(i) = labels.iter().position(|l| *l == text) {
        return GluePrediction::Class(i);
    }
    match text.parse::<usize>() {
        Ok(i) if i < labels.len() => GluePrediction::Class(i),
        _ => fail(format!(
            "predictions line {line}: {text:?} is neither a label of {task:?} ({labels:?}) nor a class index"
        )),
    }
}

fn main() {
    let args = parse();
    let split = args.task.read(&args.dev, false).unwrap_or_else(|e| fail(e));
    let text = std::fs::read_to_string(&args.predictions)
        .unwrap_or_else(|e| fail(format!("{}: {e}", args.predictions.display())));
    let mut preds = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || (i == 0 && line.starts_with("index")) {
            continue;
        }
        let value = line.rsplit('\t').next().unwrap_or(line).trim();
        preds.push(prediction(args.task, value, i + 1));
    }
    let score = args.task.evaluate(&split.examples, &preds).unwrap_or_else(|e| fail(e));
    if args.json {
        println!("{}", serde_json::to_string(&score).unwrap_or_else(|e| fail(e)));
        return;
    }
    println!("{:?}: {} examples", args.task, split.examples.len());
    for (name, value) in &score.metrics {
        println!("  {name:<10} {value:.4}");
    }
    println!("  {:<10} {:.4}", "score", score.score);
}
