//! Labelled task data: GLUE-format TSV files (every layout `ember_eval::GlueTask` reads: single
//! sentences, pairs, regression) or plain `text<TAB>label` / `text_a<TAB>text_b<TAB>label`
//! files, split into train and dev, and batched into tensors for a [`BertClassifier`].
//!
//! ```
//! use ember_slm::pipeline::data::{parse_plain, Metric};
//! let set = parse_plain("sentence\tlabel\ngood film\tpos\nbad film\tneg\n", "reviews.tsv").unwrap();
//! assert_eq!(set.labels, ["neg", "pos"]); // sorted; class indices follow this order
//! assert_eq!(set.examples.len(), 2);      // the header row is recognised and skipped
//! assert_eq!(set.metric, Metric::Accuracy);
//! ```
//!
//! [`BertClassifier`]: ember_models::BertClassifier

use super::{PipelineError, Result, Rng};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_eval::{Accuracy, GlueExample, GlueLabel, GluePrediction, GlueTask};
use ember_models::{Encoded, TextTokenizer};
use std::path::Path;

/// How a task is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// A GLUE task's official metrics (their mean when there are two, as the leaderboard).
    Glue(GlueTask),
    /// Accuracy (plain label files).
    Accuracy,
}

impl Metric {
    /// The metric's name in reports (`accuracy`, `mcc`, `f1/accuracy`, `pearson/spearman`).
    pub fn name(&self) -> String {
        match self {
            Metric::Accuracy => "accuracy".into(),
            Metric::Glue(GlueTask::CoLA | GlueTask::Ax) => "mcc".into(),
            Metric::Glue(GlueTask::Mrpc | GlueTask::Qqp) => "f1/accuracy".into(),
            Metric::Glue(GlueTask::StsB) => "pearson/spearman".into(),
            Metric::Glue(_) => "accuracy".into(),
        }
    }

    /// The score of `predictions` on the labelled `examples` (a fraction; higher is better).
    ///
    /// # Errors
    /// [`PipelineError::Eval`] for unlabelled examples, predictions of the wrong kind or count.
    pub fn score(&self, examples: &[GlueExample], predictions: &[GluePrediction]) -> Result<f64> {
        match self {
            Metric::Glue(task) => Ok(task.evaluate(examples, predictions)?.score),
            Metric::Accuracy => {
                let mut labels = Vec::with_capacity(examples.len());
                let mut preds = Vec::with_capacity(examples.len());
                for (e, p) in examples.iter().zip(predictions) {
                    match (e.label, p) {
                        (Some(GlueLabel::Class(l)), GluePrediction::Class(c)) => {
                            labels.push(l);
                            preds.push(*c);
                        }
                        _ => {
                            return Err(data_err(
                                "evaluation",
                                format!("example {} has no class label or its prediction is not a class", e.id),
                            ));
                        }
                    }
                }
                let mut a = Accuracy::new();
                a.update(&preds, &labels)?;
                Ok(a.value()?)
            }
        }
    }
}

fn data_err(what: &str, message: String) -> PipelineError {
    PipelineError::Data { what: what.into(), message }
}

/// The labelled examples of one file.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledSet {
    /// The examples (labels are indices into `labels`, or scores for regression).
    pub examples: Vec<GlueExample>,
    /// Label names in class-index order; empty for regression.
    pub labels: Vec<String>,
    /// How the task is scored.
    pub metric: Metric,
}

/// A task's train and dev splits.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskData {
    /// Training examples.
    pub train: Vec<GlueExample>,
    /// Dev examples (every stage is scored on them).
    pub dev: Vec<GlueExample>,
    /// Label names in class-index order; empty for regression.
    pub labels: Vec<String>,
    /// How the task is scored.
    pub metric: Metric,
}

/// Parses a plain label file: `text<TAB>label` or `text_a<TAB>text_b<TAB>label` rows (every
/// row the same width), an optional header whose last column is `label` (any case), blank
/// lines ignored. Labels are any strings; the classes are their sorted set (numerically when
/// every label is an integer).
///
/// # Errors
/// [`PipelineError::Data`] naming the file and line for a row of another width, an empty text
/// or label, a file with no rows, or fewer than two distinct labels.
pub fn parse_plain(text: &str, file: &str) -> Result<LabelledSet> {
    let err = |line: usize, m: String| data_err(file, format!("line {line}: {m}"));
    let mut rows: Vec<(usize, Vec<&str>)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r').split('\t').collect()))
        .collect();
    if let Some((_, first)) = rows.first()
        && first.last().is_some_and(|l| l.trim().eq_ignore_ascii_case("label"))
    {
        rows.remove(0);
    }
    let Some((_, first)) = rows.first() else {
        return Err(data_err(file, "no rows: expected `text<TAB>label` lines".into()));
    };
    let width = first.len();
    if !(2..=3).contains(&width) {
        return Err(err(
            rows[0].0,
            format!("{width} tab-separated columns, expected 2 (text, label) or 3 (text_a, text_b, label)"),
        ));
    }
    for (line, cols) in &rows {
        if cols.len() != width {
            return Err(err(*line, format!("{} columns, expected {width} as on the first row", cols.len())));
        }
        if let Some(c) = cols.iter().position(|c| c.trim().is_empty()) {
            return Err(err(*line, format!("column {} is empty", c + 1)));
        }
    }
    let mut labels: Vec<String> = rows.iter().map(|(_, c)| c[width - 1].trim().to_string()).collect();
    labels.sort();
    labels.dedup();
    if labels.iter().all(|l| l.parse::<i64>().is_ok()) {
        labels.sort_by_key(|l| l.parse::<i64>().unwrap_or(0));
    }
    if labels.len() < 2 {
        return Err(data_err(file, format!("one label only ({labels:?}): a classifier needs two or more")));
    }
    let examples = rows
        .iter()
        .map(|(line, c)| GlueExample {
            id: line.to_string(),
            text_a: c[0].trim().to_string(),
            text_b: (width == 3).then(|| c[1].trim().to_string()),
            label: labels.iter().position(|l| l == c[width - 1].trim()).map(GlueLabel::Class),
        })
        .collect();
    Ok(LabelledSet { examples, labels, metric: Metric::Accuracy })
}

/// Reads a GLUE file of `task`.
fn read_glue(task: GlueTask, path: &Path, is_train: bool) -> Result<LabelledSet> {
    let split = task.read(path, is_train)?;
    if let Some(e) = split.examples.iter().find(|e| e.label.is_none()) {
        return Err(data_err(
            &path.display().to_string(),
            format!("example {} has no label (a test split?): train and dev files need labels", e.id),
        ));
    }
    Ok(LabelledSet {
        examples: split.examples,
        labels: task.labels().iter().map(|s| s.to_string()).collect(),
        metric: Metric::Glue(task),
    })
}

/// Reads task data from `path`: a directory holding `train.tsv` and `dev.tsv` (MNLI:
/// `dev_matched.tsv` / `dev_mismatched.tsv`), or one file whose examples are split, `dev_fraction`
/// of them (shuffled with `seed`) becoming the dev split. With `glue` (a task name, see
/// `GlueTask::from_name`) the files are read in that task's layout; otherwise as plain label
/// files ([`parse_plain`]).
///
/// # Errors
/// [`PipelineError::Data`] / [`PipelineError::Eval`] for unreadable or malformed files, an
/// unknown task name, splits whose labels differ, and splits with fewer than 2 examples.
pub fn read_task(path: &Path, glue: Option<&str>, dev_fraction: f64, seed: u64) -> Result<TaskData> {
    let task = glue.map(GlueTask::from_name).transpose()?;
    let read = |p: &Path, is_train: bool| -> Result<LabelledSet> {
        match task {
            Some(t) => read_glue(t, p, is_train),
            None => {
                let text = std::fs::read_to_string(p).map_err(|e| super::io_err(p, e))?;
                parse_plain(&text, &p.display().to_string())
            }
        }
    };
    let (train, mut dev) = if path.is_dir() {
        let dev_name = task.map_or("dev.tsv", |t| t.dev_file());
        let (tp, dp) = (path.join("train.tsv"), path.join(dev_name));
        for p in [&tp, &dp] {
            if !p.is_file() {
                return Err(data_err(
                    &path.display().to_string(),
                    format!("no {}: a task directory holds train.tsv and {dev_name}", p.display()),
                ));
            }
        }
        (read(&tp, true)?, read(&dp, false)?)
    } else {
        let mut all = read(path, true)?;
        Rng(seed ^ 0xd0d0).shuffle(&mut all.examples);
        let n_dev = ((all.examples.len() as f64 * dev_fraction).round() as usize).max(1);
        let train = all.examples.split_off(n_dev.min(all.examples.len()));
        let dev = LabelledSet { examples: all.examples, labels: all.labels.clone(), metric: all.metric };
        (LabelledSet { examples: train, ..all }, dev)
    };
    if task.is_none() && dev.labels != train.labels {
        // Plain files: index the dev labels by the train split's classes.
        let unknown: Vec<&String> = dev.labels.iter().filter(|l| !train.labels.contains(l)).collect();
        if !unknown.is_empty() {
            return Err(data_err("dev split", format!("labels {unknown:?} never appear in the train split")));
        }
        for e in &mut dev.examples {
            if let Some(GlueLabel::Class(c)) = e.label {
                let name = &dev.labels[c];
                e.label = train.labels.iter().position(|l| l == name).map(GlueLabel::Class);
            }
        }
    }
    for (name, set) in [("train", &train), ("dev", &dev)] {
        if set.examples.len() < 2 {
            return Err(data_err(
                &format!("{name} split"),
                format!("{} examples, expected at least 2", set.examples.len()),
            ));
        }
    }
    Ok(TaskData { train: train.examples, dev: dev.examples, labels: train.labels, metric: train.metric })
}

/// The targets of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// Class indices.
    Class(Vec<usize>),
    /// Regression scores.
    Score(Vec<f32>),
}

/// A tokenized batch of examples with their targets.
#[derive(Clone, Debug)]
pub struct TaskBatch {
    /// The tokens (pairs as `[CLS] a [SEP] b [SEP]` with token types 0 / 1).
    pub encoded: Encoded,
    /// The labels.
    pub targets: Targets,
    /// Each row's index into the examples it was made from.
    pub index: Vec<usize>,
}

impl TaskBatch {
    /// Class indices as an `Int` tensor `[batch]` (`None` for regression).
    pub fn class_tensor(&self, device: &Device) -> Option<Tensor<1, Int>> {
        match &self.targets {
            Targets::Class(c) => {
                let v: Vec<i64> = c.iter().map(|&x| x as i64).collect();
                Some(Tensor::from_data(TensorData::new(v, [c.len()]), device))
            }
            Targets::Score(_) => None,
        }
    }
}

/// Tokenizes `examples` (sentence pairs with token types, truncated to the tokenizer's length)
/// into batches of `size` examples of similar token counts (less padding), in length order.
///
/// # Errors
/// [`PipelineError::Data`] for an unlabelled example or a mix of class and score labels;
/// tokenizer errors.
pub fn task_batches(tok: &TextTokenizer, examples: &[GlueExample], size: usize) -> Result<Vec<TaskBatch>> {
    if size == 0 {
        return Err(super::recipe_err("batch", 0, "a positive number"));
    }
    let mut lengths: Vec<(usize, usize)> = Vec::with_capacity(examples.len());
    for (i, e) in examples.iter().enumerate() {
        let a = tok.encode(&e.text_a)?.len();
        let b = match &e.text_b {
            Some(b) => tok.encode(b)?.len(),
            None => 0,
        };
        lengths.push((a + b, i));
    }
    lengths.sort_unstable();
    let mut out = Vec::new();
    for chunk in lengths.chunks(size) {
        let index: Vec<usize> = chunk.iter().map(|&(_, i)| i).collect();
        let pairs: Vec<(&str, Option<&str>)> =
            index.iter().map(|&i| (examples[i].text_a.as_str(), examples[i].text_b.as_deref())).collect();
        let encoded = tok.encode_pairs(&pairs)?;
        let targets = targets_of(examples, &index)?;
        out.push(TaskBatch { encoded, targets, index });
    }
    Ok(out)
}

fn targets_of(examples: &[GlueExample], index: &[usize]) -> Result<Targets> {
    let first = examples[index[0]].label;
    match first {
        Some(GlueLabel::Class(_)) => index
            .iter()
            .map(|&i| match examples[i].label {
                Some(GlueLabel::Class(c)) => Ok(c),
                _ => Err(data_err("labels", format!("example {} is not labelled with a class", examples[i].id))),
            })
            .collect::<Result<_>>()
            .map(Targets::Class),
        Some(GlueLabel::Score(_)) => index
            .iter()
            .map(|&i| match examples[i].label {
                Some(GlueLabel::Score(s)) => Ok(s as f32),
                _ => Err(data_err("labels", format!("example {} is not labelled with a score", examples[i].id))),
            })
            .collect::<Result<_>>()
            .map(Targets::Score),
        None => Err(data_err("labels", format!("example {} has no label", examples[index[0]].id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_files_parse_with_and_without_header() {
        let s = parse_plain("a b\t1\nc d\t0\n\ne f\t1\n", "f").unwrap();
        assert_eq!(s.labels, ["0", "1"]);
        assert_eq!(s.examples[0].label, Some(GlueLabel::Class(1)));
        assert_eq!(s.examples[2].id, "4");
        let p = parse_plain("s1\ts2\tLabel\nx\ty\tyes\nz\tw\tno\n", "f").unwrap();
        assert_eq!(p.examples[0].text_b.as_deref(), Some("y"));
        assert_eq!(p.labels, ["no", "yes"]);
        // Numeric labels sort as numbers.
        assert_eq!(parse_plain("a\t10\nb\t9\n", "f").unwrap().labels, ["9", "10"]);
    }

    #[test]
    fn bad_plain_files_are_refused_with_the_line() {
        for (text, needle) in [
            ("", "no rows"),
            ("a\tb\tc\td\n", "4 tab-separated columns"),
            ("a\t1\nb\t2\textra\n", "line 2"),
            ("a\t1\nb\t1\n", "one label only"),
            ("a\t1\n\t0\n", "column 1 is empty"),
        ] {
            let e = parse_plain(text, "f").unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn accuracy_metric_scores_classes() {
        let s = parse_plain("a\tx\nb\ty\nc\tx\nd\ty\n", "f").unwrap();
        let p = [0, 1, 1, 1].map(GluePrediction::Class);
        assert_eq!(Metric::Accuracy.score(&s.examples, &p).unwrap(), 0.75);
        assert!(Metric::Accuracy.score(&s.examples, &[GluePrediction::Score(1.0); 4]).is_err());
    }
}
