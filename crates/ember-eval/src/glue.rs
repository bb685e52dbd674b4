//! GLUE (Wang et al. 2019): readers for the official TSV files, label maps, each task's official
//! metrics and the leaderboard's aggregate score.
//!
//! Files are read as the GLUE distribution ships them (`CoLA/train.tsv`, `MNLI/dev_matched.tsv`,
//! …): tab-separated, **no quoting** (quotes are literal text, as in the reference `csv.QUOTE_NONE`
//! readers), a header row on every file except CoLA's train/dev. Columns are found by header
//! name where there is one, so MNLI's different train/dev layouts (one or five annotator
//! labels before `gold_label`) both work. A row with too few columns is an error naming the
//! file and line, except in QQP's train split, whose known malformed rows are skipped (as the
//! reference processors do) and counted in [`GlueSplit::skipped`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::classification::{Accuracy, Average, ConfusionMatrix};
use crate::error::{EvalError, Result, same_len};
use crate::regression::Correlation;

/// A GLUE task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GlueTask {
    /// Corpus of Linguistic Acceptability (MCC).
    CoLA,
    /// Stanford Sentiment Treebank (accuracy).
    Sst2,
    /// Microsoft Research Paraphrase Corpus (F1 and accuracy).
    Mrpc,
    /// Semantic Textual Similarity Benchmark (Pearson and Spearman).
    StsB,
    /// Quora Question Pairs (F1 and accuracy).
    Qqp,
    /// MultiNLI, matched dev/test (accuracy).
    MnliMatched,
    /// MultiNLI, mismatched dev/test (accuracy).
    MnliMismatched,
    /// Question NLI (accuracy).
    Qnli,
    /// Recognizing Textual Entailment (accuracy).
    Rte,
    /// Winograd NLI (accuracy).
    Wnli,
    /// The diagnostic set, evaluated with an MNLI model (R3 = 3-class MCC).
    Ax,
}

/// An example: one or two texts and, outside test splits, a label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlueExample {
    /// The `index`/`id` column, or the line number when the file has none.
    pub id: String,
    /// First sentence (or question).
    pub text_a: String,
    /// Second sentence, for pair tasks.
    pub text_b: Option<String>,
    /// Class index (see [`GlueTask::labels`]) or STS-B score; `None` in test files.
    pub label: Option<GlueLabel>,
}

/// A gold label.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum GlueLabel {
    /// Class index into [`GlueTask::labels`].
    Class(usize),
    /// STS-B similarity in `[0, 5]`.
    Score(f64),
}

/// A prediction for one example.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum GluePrediction {
    /// Class index.
    Class(usize),
    /// STS-B score.
    Score(f64),
}

/// The examples of one file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlueSplit {
    /// The task.
    pub task: GlueTask,
    /// The examples in file order.
    pub examples: Vec<GlueExample>,
    /// Malformed rows skipped (QQP train only).
    pub skipped: usize,
}

/// A task's official metrics and its score (the mean of its metrics, as the leaderboard does).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    /// The task.
    pub task: GlueTask,
    /// `(name, value)` pairs, as fractions (`mcc`, `accuracy`, `f1`, `pearson`, `spearman`).
    pub metrics: Vec<(String, f64)>,
    /// Mean of the metrics.
    pub score: f64,
}

impl GlueTask {
    /// Every task, leaderboard order.
    pub const ALL: [GlueTask; 11] = [
        GlueTask::CoLA,
        GlueTask::Sst2,
        GlueTask::Mrpc,
        GlueTask::StsB,
        GlueTask::Qqp,
        GlueTask::MnliMatched,
        GlueTask::MnliMismatched,
        GlueTask::Qnli,
        GlueTask::Rte,
        GlueTask::Wnli,
        GlueTask::Ax,
    ];

    /// The task named `name`, as the GLUE distribution's directories and the leaderboard spell
    /// it, in any case and with or without `-` / `_` (`SST-2`, `sst2`, `STS-B`, `MNLI` (matched),
    /// `MNLI-mm`, `AX`, …).
    ///
    /// ```
    /// use ember_eval::GlueTask;
    /// assert_eq!(GlueTask::from_name("sst-2").unwrap(), GlueTask::Sst2);
    /// assert_eq!(GlueTask::from_name("STS_B").unwrap(), GlueTask::StsB);
    /// assert!(GlueTask::from_name("imdb").is_err());
    /// ```
    ///
    /// # Errors
    /// [`EvalError::InvalidConfig`] listing the names known.
    pub fn from_name(name: &str) -> Result<GlueTask> {
        let key: String = name.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).collect::<String>().to_lowercase();
        Ok(match key.as_str() {
            "cola" => GlueTask::CoLA,
            "sst2" | "sst" => GlueTask::Sst2,
            "mrpc" => GlueTask::Mrpc,
            "stsb" | "sts" => GlueTask::StsB,
            "qqp" => GlueTask::Qqp,
            "mnli" | "mnlim" | "mnlimatched" => GlueTask::MnliMatched,
            "mnlimm" | "mnlimismatched" => GlueTask::MnliMismatched,
            "qnli" => GlueTask::Qnli,
            "rte" => GlueTask::Rte,
            "wnli" => GlueTask::Wnli,
            "ax" | "diagnostic" => GlueTask::Ax,
            _ => {
                return Err(EvalError::InvalidConfig {
                    what: "GLUE task".into(),
                    value: name.into(),
                    expected: "one of CoLA, SST-2, MRPC, STS-B, QQP, MNLI, MNLI-mm, QNLI, RTE, WNLI, AX".into(),
                });
            }
        })
    }

    /// The dev split's file name in the GLUE distribution (`dev.tsv`; MNLI's
    /// `dev_matched.tsv` / `dev_mismatched.tsv`).
    pub fn dev_file(&self) -> &'static str {
        match self {
            GlueTask::MnliMatched => "dev_matched.tsv",
            GlueTask::MnliMismatched => "dev_mismatched.tsv",
            _ => "dev.tsv",
        }
    }

    /// Label names, in class-index order (empty for STS-B's regression).
    pub fn labels(&self) -> &'static [&'static str] {
        match self {
            GlueTask::CoLA | GlueTask::Sst2 | GlueTask::Mrpc | GlueTask::Qqp | GlueTask::Wnli => &["0", "1"],
            GlueTask::StsB => &[],
            GlueTask::MnliMatched | GlueTask::MnliMismatched | GlueTask::Ax => {
                &["contradiction", "entailment", "neutral"]
            }
            GlueTask::Qnli | GlueTask::Rte => &["entailment", "not_entailment"],
        }
    }

    /// Header names of `(text_a, text_b, label, id)`, each a list of accepted names (the first
    /// present wins); `None` for a column the task lacks.
    #[allow(clippy::type_complexity)]
    fn columns(
        &self,
    ) -> (&'static [&'static str], Option<&'static [&'static str]>, &'static [&'static str], Option<&'static str>) {
        match self {
            GlueTask::CoLA | GlueTask::Sst2 => (&["sentence"], None, &["label"], Some("index")),
            GlueTask::Mrpc => (&["#1 String"], Some(&["#2 String"]), &["Quality"], Some("index")),
            GlueTask::StsB => (&["sentence1"], Some(&["sentence2"]), &["score"], Some("index")),
            GlueTask::Qqp => (&["question1"], Some(&["question2"]), &["is_duplicate"], Some("id")),
            GlueTask::MnliMatched | GlueTask::MnliMismatched => {
                (&["sentence1"], Some(&["sentence2"]), &["gold_label"], Some("index"))
            }
            // `diagnostic.tsv` (index, sentence1, sentence2) or the labelled `diagnostic-full.tsv`
            // (…, Premise, Hypothesis, Label).
            GlueTask::Ax => (
                &["sentence1", "Premise"],
                Some(&["sentence2", "Hypothesis"]),
                &["Label", "gold_label", "label"],
                Some("index"),
            ),
            GlueTask::Qnli => (&["question"], Some(&["sentence"]), &["label"], Some("index")),
            GlueTask::Rte | GlueTask::Wnli => (&["sentence1"], Some(&["sentence2"]), &["label"], Some("index")),
        }
    }

    /// Reads one official TSV file. `is_train` marks QQP's train split (whose malformed rows are
    /// skipped).
    ///
    /// # Errors
    /// [`EvalError::Parse`] naming the file and line for a missing header column, a short row or
    /// an unknown label; [`EvalError::Io`] when the file cannot be read.
    pub fn read(&self, path: &Path, is_train: bool) -> Result<GlueSplit> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EvalError::Io { path: path.display().to_string(), message: e.to_string() })?;
        self.parse(&text, &path.display().to_string(), is_train)
    }

    /// [`GlueTask::read`] on text already in memory; `file` names it in errors.
    ///
    /// # Errors
    /// As [`GlueTask::read`].
    pub fn parse(&self, text: &str, file: &str, is_train: bool) -> Result<GlueSplit> {
        let parse_err = |line: usize, message: String| EvalError::Parse { file: file.to_string(), line, message };
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).peekable();
        // CoLA's train/dev files have no header: source, label, original label, sentence.
        let headerless = *self == GlueTask::CoLA && lines.peek().is_some_and(|(_, l)| !l.starts_with("index\t"));
        let (a_col, b_col, label_col, id_col, width) = if headerless {
            (3, None, Some(1), None, 4)
        } else {
            let Some((_, header)) = lines.next() else {
                return Ok(GlueSplit { task: *self, examples: Vec::new(), skipped: 0 });
            };
            let names: Vec<&str> = header.split('\t').collect();
            let find = |name: &str| names.iter().position(|n| n.trim() == name);
            // The last column of that name (MNLI's `gold_label` follows the annotator labels).
            let find_any = |list: &[&str]| list.iter().find_map(|n| names.iter().rposition(|c| c.trim() == *n));
            let (a, b, label, id) = self.columns();
            let missing =
                |list: &[&str]| parse_err(1, format!("no `{}` column in the header {names:?}", list.join("` or `")));
            let a_col = find_any(a).ok_or_else(|| missing(a))?;
            let b_col = match b {
                Some(b) => Some(find_any(b).ok_or_else(|| missing(b))?),
                None => None,
            };
            // Test files have no label column.
            (a_col, b_col, find_any(label), id.and_then(find), names.len())
        };
        let mut examples = Vec::new();
        let mut skipped = 0;
        for (i, line) in lines {
            let line_no = i + 1;
            let cols: Vec<&str> = line.split('\t').collect();
            let needed = [Some(a_col), b_col, label_col].into_iter().flatten().max().unwrap_or(0) + 1;
            if cols.len() < needed {
                if *self == GlueTask::Qqp && is_train {
                    skipped += 1;
                    continue;
                }
                return Err(parse_err(
                    line_no,
                    format!("{} columns, expected {} (the header has {width})", cols.len(), needed),
                ));
            }
            let label = match label_col {
                None => None,
                Some(c) => Some(self.parse_label(cols[c].trim()).map_err(|m| parse_err(line_no, m))?),
            };
            examples.push(GlueExample {
                id: id_col.map_or_else(
                    || line_no.to_string(),
                    |c| cols.get(c).map_or_else(|| line_no.to_string(), |s| s.to_string()),
                ),
                text_a: cols[a_col].to_string(),
                text_b: b_col.map(|c| cols[c].to_string()),
                label,
            });
        }
        Ok(GlueSplit { task: *self, examples, skipped })
    }

    fn parse_label(&self, raw: &str) -> std::result::Result<GlueLabel, String> {
        if *self == GlueTask::StsB {
            return match raw.parse::<f64>() {
                Ok(v) if (0.0..=5.0).contains(&v) => Ok(GlueLabel::Score(v)),
                Ok(v) if v.is_finite() => Err(format!("score {raw:?} is outside STS-B's similarity range [0, 5]")),
                _ => Err(format!("score {raw:?} is not a number")),
            };
        }
        self.labels()
            .iter()
            .position(|l| *l == raw)
            .map(GlueLabel::Class)
            .ok_or_else(|| format!("label {raw:?} is not one of {:?}", self.labels()))
    }

    /// The task's official metrics on `predictions` for the labelled `examples`.
    ///
    /// # Errors
    /// [`EvalError::LengthMismatch`], [`EvalError::Empty`], [`EvalError::InvalidConfig`] for an
    /// unlabelled example or a prediction of the wrong kind, and the metrics' own errors.
    pub fn evaluate(&self, examples: &[GlueExample], predictions: &[GluePrediction]) -> Result<TaskScore> {
        same_len("predictions vs examples", predictions.len(), examples.len())?;
        if examples.is_empty() {
            return Err(EvalError::Empty(format!("{self:?} evaluation")));
        }
        let kind = |what: &str| EvalError::InvalidConfig {
            what: what.into(),
            value: format!("{self:?}"),
            expected: "labelled examples and predictions of the task's kind (class or score)".into(),
        };
        let metrics: Vec<(String, f64)> = if *self == GlueTask::StsB {
            let mut c = Correlation::new();
            let mut p = Vec::new();
            let mut l = Vec::new();
            for (e, pr) in examples.iter().zip(predictions) {
                match (e.label, pr) {
                    (Some(GlueLabel::Score(y)), GluePrediction::Score(x)) => {
                        p.push(*x);
                        l.push(y);
                    }
                    _ => return Err(kind("STS-B example or prediction")),
                }
            }
            c.update(&p, &l)?;
            vec![("pearson".into(), c.pearson()?), ("spearman".into(), c.spearman()?)]
        } else {
            let mut p = Vec::new();
            let mut l = Vec::new();
            for (e, pr) in examples.iter().zip(predictions) {
                match (e.label, pr) {
                    (Some(GlueLabel::Class(y)), GluePrediction::Class(x)) => {
                        p.push(*x);
                        l.push(y);
                    }
                    _ => return Err(kind("classification example or prediction")),
                }
            }
            let mut cm = ConfusionMatrix::new(self.labels().len())?;
            cm.update(&p, &l)?;
            let mut acc = Accuracy::new();
            acc.update(&p, &l)?;
            match self {
                GlueTask::CoLA | GlueTask::Ax => vec![("mcc".into(), cm.mcc()?)],
                GlueTask::Mrpc | GlueTask::Qqp => {
                    vec![("f1".into(), cm.prf(Average::Binary { positive: 1 })?.f1), ("accuracy".into(), acc.value()?)]
                }
                _ => vec![("accuracy".into(), acc.value()?)],
            }
        };
        let score = metrics.iter().map(|(_, v)| v).sum::<f64>() / metrics.len() as f64;
        Ok(TaskScore { task: *self, metrics, score })
    }
}

/// The GLUE leaderboard score: the mean over CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE and
/// WNLI of each task's score, where MNLI's is the mean of matched and mismatched. AX is a
/// diagnostic and not part of it.
///
/// # Errors
/// [`EvalError::Empty`] naming the first missing task.
pub fn glue_score(scores: &[TaskScore]) -> Result<f64> {
    let get = |t: GlueTask| {
        scores
            .iter()
            .find(|s| s.task == t)
            .map(|s| s.score)
            .ok_or_else(|| EvalError::Empty(format!("the GLUE score needs {t:?}")))
    };
    let mnli = (get(GlueTask::MnliMatched)? + get(GlueTask::MnliMismatched)?) / 2.0;
    let rest = [
        GlueTask::CoLA,
        GlueTask::Sst2,
        GlueTask::Mrpc,
        GlueTask::StsB,
        GlueTask::Qqp,
        GlueTask::Qnli,
        GlueTask::Rte,
        GlueTask::Wnli,
    ]
    .into_iter()
    .map(get)
    .collect::<Result<Vec<_>>>()?;
    Ok((rest.iter().sum::<f64>() + mnli) / 9.0)
}

impl GlueSplit {
    /// Runs `predict` over the examples in batches of `batch` and scores the predictions with
    /// the task's official metrics (the runner for any model: `predict` gets a slice of examples
    /// and returns one prediction each).
    ///
    /// # Errors
    /// [`EvalError::InvalidConfig`] for `batch = 0`, [`EvalError::LengthMismatch`] when
    /// `predict` returns the wrong number of predictions, and [`GlueTask::evaluate`]'s errors.
    pub fn evaluate_with<F: FnMut(&[GlueExample]) -> Vec<GluePrediction>>(
        &self,
        batch: usize,
        mut predict: F,
    ) -> Result<TaskScore> {
        if batch == 0 {
            return Err(EvalError::InvalidConfig {
                what: "batch".into(),
                value: "0".into(),
                expected: "at least 1".into(),
            });
        }
        let mut predictions = Vec::with_capacity(self.examples.len());
        for chunk in self.examples.chunks(batch) {
            let p = predict(chunk);
            same_len("predictions returned for a batch", p.len(), chunk.len())?;
            predictions.extend(p);
        }
        self.task.evaluate(&self.examples, &predictions)
    }
}
