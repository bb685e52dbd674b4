//! `ember eval`: a GLUE or SuperGLUE task's official metrics, from a predictions file or from a
//! classifier run on the task's dev file.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use ember_slm::eval::{GluePrediction, GlueTask, SgSplit, SuperGlueTask};
use ember_slm::pipeline::data::task_batches;

use crate::common::{Model, Net, Result, RunOpts, io_err, rows, usage};

/// `ember eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The task: GLUE's CoLA, SST-2, MRPC, STS-B, QQP, MNLI, MNLI-mm, QNLI, RTE, WNLI, AX, or
    /// SuperGLUE's BoolQ, CB, COPA, RTE, WiC, WSC, AX-b, AX-g (a .jsonl --dev file means
    /// SuperGLUE)
    #[arg(long, value_name = "NAME")]
    pub task: String,
    /// The labelled file: GLUE's TSV (dev.tsv, dev_matched.tsv, …) or SuperGLUE's JSONL
    /// (val.jsonl)
    #[arg(long, value_name = "FILE")]
    pub dev: PathBuf,
    /// Predictions, one per example in --dev's order: a label name, a class index or (STS-B) a
    /// score per line, GLUE's submission TSV (`index<TAB>prediction` under a header), or
    /// SuperGLUE's submission JSONL (`{"idx": …, "label": …}`)
    #[arg(long, value_name = "FILE", required_unless_present = "model", conflicts_with = "model")]
    pub predictions: Option<PathBuf>,
    /// Run this sequence classifier (Hugging Face or Ember layout, float or int8) on --dev
    /// instead (GLUE tasks); its labels must be the task's
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Examples per forward pass (with --model)
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Print the score as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

/// The prediction texts of a file: the last tab-separated field of each non-empty line (a
/// header starting with `index` skipped), or the `label` field of JSON lines.
fn prediction_texts(path: &std::path::Path) -> Result<Vec<(usize, String)>> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| io_err(path, "not UTF-8 text"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() || (i == 0 && line.starts_with("index")) {
            continue;
        }
        let value = if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| usage(format!("{} line {}: not valid JSON ({e})", path.display(), i + 1)))?;
            match v.get("label") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Bool(b)) => b.to_string(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(usage(format!(
                        "{} line {}: no \"label\" field of text, number or bool",
                        path.display(),
                        i + 1
                    )));
                }
            }
        } else {
            line.rsplit('\t').next().unwrap_or(line).trim().to_string()
        };
        out.push((i + 1, value));
    }
    Ok(out)
}

/// A class index from a label name (case-insensitive) or an index.
fn class_of(labels: &[&str], text: &str, file: &str, line: usize, task: &str) -> Result<usize> {
    if let Some(i) = labels.iter().position(|l| l.eq_ignore_ascii_case(text)) {
        return Ok(i);
    }
    match text.parse::<usize>() {
        Ok(i) if i < labels.len() => Ok(i),
        _ => Err(usage(format!(
            "{file} line {line}: {text:?} is neither a label of {task} ({}) nor a class index below {}",
            labels.join(", "),
            labels.len()
        ))),
    }
}

fn glue_predictions(task: GlueTask, path: &std::path::Path) -> Result<Vec<GluePrediction>> {
    let file = path.display().to_string();
    let task_name = format!("{task:?}");
    prediction_texts(path)?
        .into_iter()
        .map(|(line, text)| {
            if task.labels().is_empty() {
                match text.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(GluePrediction::Score(v)),
                    _ => Err(usage(format!("{file} line {line}: {text:?} is not a finite score"))),
                }
            } else {
                class_of(task.labels(), &text, &file, line, &task_name).map(GluePrediction::Class)
            }
        })
        .collect()
}

/// GLUE predictions of a classifier on `examples`, its labels mapped to the task's.
fn model_predictions(
    task: GlueTask,
    model: &Model,
    examples: &[ember_slm::eval::GlueExample],
    batch: usize,
) -> Result<Vec<GluePrediction>> {
    let Net::Classifier(c, labels) = &model.net else {
        return Err(usage(format!(
            "--model {}: a sentence encoder has no task head; give a sequence classifier (fine-tune one with `ember compress --task classify`)",
            model.dir.display()
        )));
    };
    let task_labels = task.labels();
    // The model's class k → the task's class: by name, or in order for Hugging Face's default
    // names (LABEL_0, …) when the counts agree.
    let map: Vec<usize> = if task_labels.is_empty() {
        if !labels.is_empty() {
            return Err(usage(format!("--model: {task:?} is a regression task but the model has labels {labels:?}")));
        }
        Vec::new()
    } else if labels.iter().all(|l| task_labels.iter().any(|t| t.eq_ignore_ascii_case(l))) && !labels.is_empty() {
        labels.iter().map(|l| task_labels.iter().position(|t| t.eq_ignore_ascii_case(l)).unwrap_or(0)).collect()
    } else if labels.len() == task_labels.len() && labels.iter().enumerate().all(|(i, l)| *l == format!("LABEL_{i}")) {
        (0..labels.len()).collect()
    } else {
        return Err(usage(format!("--model: its labels {labels:?} are not {task:?}'s ({})", task_labels.join(", "))));
    };
    let mut preds = vec![GluePrediction::Class(0); examples.len()];
    for b in task_batches(&model.tokenizer, examples, batch)? {
        let logits = rows(c.logits(&b.encoded)?)?;
        for (row, &i) in logits.iter().zip(&b.index) {
            preds[i] = if map.is_empty() {
                GluePrediction::Score(f64::from(row[0]))
            } else {
                let best = (0..row.len()).max_by(|&x, &y| row[x].total_cmp(&row[y])).unwrap_or(0);
                GluePrediction::Class(map[best])
            };
        }
    }
    Ok(preds)
}

/// `ember eval`.
pub fn eval(a: &EvalArgs) -> Result<()> {
    let superglue = a.dev.extension().is_some_and(|e| e == "jsonl");
    let (task_name, n, metrics, score) = if superglue {
        let task = SuperGlueTask::from_name(&a.task)?;
        if a.model.is_some() {
            return Err(usage("--model runs GLUE tasks (TSV); for SuperGLUE give --predictions"));
        }
        let split = task.read(&a.dev)?;
        let SgSplit::Examples(examples) = split else {
            return Err(usage(format!(
                "{task:?}: predictions are per answer or per entity; score them with ember_eval::evaluate_multirc / evaluate_record"
            )));
        };
        let path = a.predictions.as_ref().ok_or_else(|| usage("--predictions FILE is needed"))?;
        let file = path.display().to_string();
        let preds = prediction_texts(path)?
            .into_iter()
            .map(|(line, text)| class_of(task.labels(), &text, &file, line, &format!("{task:?}")))
            .collect::<Result<Vec<_>>>()?;
        let s = task.evaluate(&examples, &preds)?;
        (format!("{task:?}"), examples.len(), s.metrics, s.score)
    } else {
        let task = ember_slm::eval::GlueTask::from_name(&a.task)?;
        let split = task.read(&a.dev, false)?;
        let preds = match (&a.predictions, &a.model) {
            (Some(p), _) => glue_predictions(task, p)?,
            (None, Some(dir)) => {
                let device = a.run.setup()?;
                let model = Model::load(dir, &device, None)?;
                model_predictions(task, &model, &split.examples, a.batch as usize)?
            }
            (None, None) => return Err(usage("give --predictions FILE or --model DIR")),
        };
        let s = task.evaluate(&split.examples, &preds)?;
        (format!("{task:?}"), split.examples.len(), s.metrics, s.score)
    };
    if a.json {
        let metrics: serde_json::Map<String, serde_json::Value> =
            metrics.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
        println!(
            "{}",
            serde_json::json!({"task": task_name, "suite": if superglue { "superglue" } else { "glue" },
                "examples": n, "metrics": metrics, "score": score})
        );
    } else {
        let mut s = format!("{task_name}: {n} examples\n");
        for (name, value) in &metrics {
            let _ = writeln!(s, "  {name:<12} {value:.4}");
        }
        let _ = writeln!(s, "  {:<12} {score:.4}", "score");
        print!("{s}");
    }
    Ok(())
}
