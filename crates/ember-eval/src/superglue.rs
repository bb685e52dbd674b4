//! SuperGLUE (Wang et al. 2019b): readers for the official JSONL files, label maps, each task's
//! official metrics and the leaderboard's aggregate score.
//!
//! Every line of a split (`BoolQ/val.jsonl`, …) is one JSON record; a line that is not valid
//! JSON or lacks a field the task needs is an error naming the file and line. Test files have
//! no labels. MultiRC records expand into one [`MultiRcQuestion`] per question and ReCoRD
//! records into one [`RecordQuery`] per query (entity spans are character offsets into the
//! passage, end inclusive, as in the official files).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::classification::{Accuracy, Average, ConfusionMatrix};
use crate::error::{EvalError, Result, same_len};
use crate::language::{MultiRc, SquadMetric};

/// A SuperGLUE task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SuperGlueTask {
    /// Yes/no questions (accuracy).
    BoolQ,
    /// CommitmentBank (accuracy and macro-F1 over 3 classes).
    Cb,
    /// Choice of Plausible Alternatives (accuracy).
    Copa,
    /// Multi-sentence reading comprehension (EM and F1a).
    MultiRc,
    /// Reading comprehension with commonsense (max-over-answers EM and F1).
    Record,
    /// Recognizing Textual Entailment (accuracy).
    Rte,
    /// Words in Context (accuracy).
    Wic,
    /// Winograd Schema Challenge (accuracy).
    Wsc,
    /// Broad-coverage diagnostic (Matthews correlation).
    AxB,
    /// Winogender diagnostic (accuracy and gender parity).
    AxG,
}

/// An example of a classification task (all but MultiRC and ReCoRD).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgExample {
    /// The record's `idx`.
    pub idx: String,
    /// The texts in task order (see [`SuperGlueTask::text_fields`]).
    pub texts: Vec<String>,
    /// Class index into [`SuperGlueTask::labels`]; `None` in test files.
    pub label: Option<usize>,
    /// AX-g's `pair_id` (for gender parity).
    pub pair: Option<String>,
}

/// One MultiRC question with its answer options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiRcQuestion {
    /// `<passage idx>-<question idx>`.
    pub idx: String,
    /// The passage.
    pub passage: String,
    /// The question.
    pub question: String,
    /// Answer texts with their labels (`None` in test files).
    pub answers: Vec<(String, Option<bool>)>,
}

/// One ReCoRD cloze query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordQuery {
    /// The query's `idx`.
    pub idx: String,
    /// The passage.
    pub passage: String,
    /// The query with its `@placeholder`.
    pub query: String,
    /// Candidate entities (passage spans).
    pub entities: Vec<String>,
    /// Gold answers (empty in test files).
    pub answers: Vec<String>,
}

/// A parsed split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SgSplit {
    /// Classification tasks.
    Examples(Vec<SgExample>),
    /// MultiRC.
    MultiRc(Vec<MultiRcQuestion>),
    /// ReCoRD.
    Record(Vec<RecordQuery>),
}

/// A task's official metrics and score (their mean).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgScore {
    /// The task.
    pub task: SuperGlueTask,
    /// `(name, value)` as fractions.
    pub metrics: Vec<(String, f64)>,
    /// Mean of the metrics.
    pub score: f64,
}

fn text(v: &Value, path: &[&str]) -> std::result::Result<String, String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p).ok_or_else(|| format!("missing field `{}`", path.join(".")))?;
    }
    match cur {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("field `{}` is {other}, expected text", path.join("."))),
    }
}

fn id(v: &Value) -> String {
    v.get("idx").map_or_else(String::new, |i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
}

/// Characters `start..=end` of `s`.
fn span(s: &str, start: usize, end: usize) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    (start <= end && end < chars.len()).then(|| chars[start..=end].iter().collect())
}

impl SuperGlueTask {
    /// Every task.
    pub const ALL: [SuperGlueTask; 10] = [
        SuperGlueTask::BoolQ,
        SuperGlueTask::Cb,
        SuperGlueTask::Copa,
        SuperGlueTask::MultiRc,
        SuperGlueTask::Record,
        SuperGlueTask::Rte,
        SuperGlueTask::Wic,
        SuperGlueTask::Wsc,
        SuperGlueTask::AxB,
        SuperGlueTask::AxG,
    ];

    /// The task of a name as people write it: case, `-`, `_` and spaces ignored (`BoolQ`,
    /// `cb`, `AX-b`, `axg`, `MultiRC`, `ReCoRD`, …).
    ///
    /// ```
    /// use ember_eval::SuperGlueTask;
    /// assert_eq!(SuperGlueTask::from_name("BoolQ").unwrap(), SuperGlueTask::BoolQ);
    /// assert_eq!(SuperGlueTask::from_name("AX-b").unwrap(), SuperGlueTask::AxB);
    /// assert!(SuperGlueTask::from_name("sst-2").is_err());
    /// ```
    ///
    /// # Errors
    /// [`EvalError::InvalidConfig`] listing the names known.
    pub fn from_name(name: &str) -> Result<SuperGlueTask> {
        let key: String = name.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).collect::<String>().to_lowercase();
        Ok(match key.as_str() {
            "boolq" => SuperGlueTask::BoolQ,
            "cb" | "commitmentbank" => SuperGlueTask::Cb,
            "copa" => SuperGlueTask::Copa,
            "multirc" => SuperGlueTask::MultiRc,
            "record" => SuperGlueTask::Record,
            "rte" => SuperGlueTask::Rte,
            "wic" => SuperGlueTask::Wic,
            "wsc" => SuperGlueTask::Wsc,
            "axb" => SuperGlueTask::AxB,
            "axg" => SuperGlueTask::AxG,
            _ => {
                return Err(EvalError::InvalidConfig {
                    what: "SuperGLUE task".into(),
                    value: name.into(),
                    expected: "one of BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC, AX-b, AX-g".into(),
                });
            }
        })
    }

    /// Label names in class-index order (MultiRC: per answer option; ReCoRD: none).
    pub fn labels(&self) -> &'static [&'static str] {
        match self {
            SuperGlueTask::BoolQ | SuperGlueTask::Wic | SuperGlueTask::Wsc | SuperGlueTask::MultiRc => {
                &["false", "true"]
            }
            SuperGlueTask::Cb => &["entailment", "contradiction", "neutral"],
            SuperGlueTask::Copa => &["choice1", "choice2"],
            SuperGlueTask::Rte | SuperGlueTask::AxB | SuperGlueTask::AxG => &["entailment", "not_entailment"],
            SuperGlueTask::Record => &[],
        }
    }

    /// The record fields that become [`SgExample::texts`], in order.
    pub fn text_fields(&self) -> &'static [&'static [&'static str]] {
        match self {
            SuperGlueTask::BoolQ => &[&["question"], &["passage"]],
            SuperGlueTask::Cb | SuperGlueTask::Rte | SuperGlueTask::AxG => &[&["premise"], &["hypothesis"]],
            SuperGlueTask::AxB => &[&["sentence1"], &["sentence2"]],
            SuperGlueTask::Copa => &[&["premise"], &["choice1"], &["choice2"], &["question"]],
            SuperGlueTask::Wic => &[&["word"], &["sentence1"], &["sentence2"]],
            SuperGlueTask::Wsc => &[&["text"], &["target", "span1_text"], &["target", "span2_text"]],
            SuperGlueTask::MultiRc | SuperGlueTask::Record => &[],
        }
    }

    fn label(&self, v: &Value) -> std::result::Result<Option<usize>, String> {
        let Some(l) = v.get("label") else { return Ok(None) };
        let found = match l {
            Value::Bool(b) => Some(usize::from(*b)),
            Value::Number(n) => n.as_u64().map(|n| n as usize).filter(|n| *n < self.labels().len()),
            Value::String(s) => self.labels().iter().position(|x| x == s),
            _ => None,
        };
        found.map(Some).ok_or_else(|| format!("label {l} is not one of {:?}", self.labels()))
    }

    /// Reads one official JSONL file.
    ///
    /// # Errors
    /// [`EvalError::Parse`] naming the file and line for invalid JSON, a missing field or an
    /// unknown label; [`EvalError::Io`].
    pub fn read(&self, path: &Path) -> Result<SgSplit> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EvalError::Io { path: path.display().to_string(), message: e.to_string() })?;
        self.parse(&text, &path.display().to_string())
    }

    /// [`SuperGlueTask::read`] on text in memory; `file` names it in errors.
    ///
    /// # Errors
    /// As [`SuperGlueTask::read`].
    pub fn parse(&self, jsonl: &str, file: &str) -> Result<SgSplit> {
        let mut examples = Vec::new();
        let mut questions = Vec::new();
        let mut queries = Vec::new();
        for (i, line) in jsonl.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let err = |message: String| EvalError::Parse { file: file.to_string(), line: i + 1, message };
            let v: Value = serde_json::from_str(line).map_err(|e| err(format!("not a JSON record: {e}")))?;
            match self {
                SuperGlueTask::MultiRc => {
                    let passage = text(&v, &["passage", "text"]).map_err(err)?;
                    let qs = v
                        .pointer("/passage/questions")
                        .and_then(Value::as_array)
                        .ok_or_else(|| err("missing `passage.questions`".into()))?;
                    for q in qs {
                        let answers = q
                            .get("answers")
                            .and_then(Value::as_array)
                            .ok_or_else(|| err("missing `answers`".into()))?;
                        let answers = answers
                            .iter()
                            .map(|a| Ok((text(a, &["text"])?, self.label(a)?.map(|l| l == 1))))
                            .collect::<std::result::Result<Vec<_>, String>>()
                            .map_err(err)?;
                        questions.push(MultiRcQuestion {
                            idx: format!("{}-{}", id(&v), id(q)),
                            passage: passage.clone(),
                            question: text(q, &["question"]).map_err(err)?,
                            answers,
                        });
                    }
                }
                SuperGlueTask::Record => {
                    let passage = text(&v, &["passage", "text"]).map_err(err)?;
                    let spans = |list: Option<&Value>| -> std::result::Result<Vec<String>, String> {
                        list.and_then(Value::as_array)
                            .map(|a| a.as_slice())
                            .unwrap_or_default()
                            .iter()
                            .map(|e| {
                                if let Some(t) = e.get("text").and_then(Value::as_str) {
                                    return Ok(t.to_string());
                                }
                                let (s, t) =
                                    (e.get("start").and_then(Value::as_u64), e.get("end").and_then(Value::as_u64));
                                match (s, t) {
                                    (Some(s), Some(t)) => span(&passage, s as usize, t as usize)
                                        .ok_or_else(|| format!("span {s}..={t} outside the passage")),
                                    _ => Err("an entity without `start`/`end`".into()),
                                }
                            })
                            .collect()
                    };
                    let entities = spans(v.pointer("/passage/entities")).map_err(err)?;
                    let qas = v.get("qas").and_then(Value::as_array).ok_or_else(|| err("missing `qas`".into()))?;
                    for q in qas {
                        queries.push(RecordQuery {
                            idx: id(q),
                            passage: passage.clone(),
                            query: text(q, &["query"]).map_err(err)?,
                            entities: entities.clone(),
                            answers: spans(q.get("answers")).map_err(err)?,
                        });
                    }
                }
                _ => {
                    let texts = self
                        .text_fields()
                        .iter()
                        .map(|f| text(&v, f))
                        .collect::<std::result::Result<Vec<_>, String>>()
                        .map_err(err)?;
                    let pair = v.get("pair_id").map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string));
                    examples.push(SgExample { idx: id(&v), texts, label: self.label(&v).map_err(err)?, pair });
                }
            }
        }
        Ok(match self {
            SuperGlueTask::MultiRc => SgSplit::MultiRc(questions),
            SuperGlueTask::Record => SgSplit::Record(queries),
            _ => SgSplit::Examples(examples),
        })
    }

    /// Official metrics of a classification task for class `predictions`.
    ///
    /// # Errors
    /// [`EvalError::LengthMismatch`], [`EvalError::Empty`], [`EvalError::InvalidConfig`] for an
    /// unlabelled example or MultiRC / ReCoRD (use [`evaluate_multirc`] / [`evaluate_record`]).
    pub fn evaluate(&self, examples: &[SgExample], predictions: &[usize]) -> Result<SgScore> {
        if matches!(self, SuperGlueTask::MultiRc | SuperGlueTask::Record) {
            return Err(EvalError::InvalidConfig {
                what: "task".into(),
                value: format!("{self:?}"),
                expected: "evaluate_multirc / evaluate_record".into(),
            });
        }
        same_len("predictions vs examples", predictions.len(), examples.len())?;
        if examples.is_empty() {
            return Err(EvalError::Empty(format!("{self:?} evaluation")));
        }
        let labels = examples
            .iter()
            .map(|e| {
                e.label.ok_or_else(|| EvalError::InvalidConfig {
                    what: "example".into(),
                    value: e.idx.clone(),
                    expected: "a labelled example".into(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut cm = ConfusionMatrix::new(self.labels().len())?;
        cm.update(predictions, &labels)?;
        let mut acc = Accuracy::new();
        acc.update(predictions, &labels)?;
        let metrics = match self {
            SuperGlueTask::Cb => {
                vec![("accuracy".to_string(), acc.value()?), ("f1_macro".to_string(), cm.prf(Average::Macro)?.f1)]
            }
            SuperGlueTask::AxB => vec![("mcc".to_string(), cm.mcc()?)],
            SuperGlueTask::AxG => {
                // Gender parity: fraction of pairs whose two examples get the same prediction.
                let mut by_pair: HashMap<&str, Vec<usize>> = HashMap::new();
                for (e, p) in examples.iter().zip(predictions) {
                    by_pair.entry(e.pair.as_deref().unwrap_or(&e.idx)).or_default().push(*p);
                }
                let pairs: Vec<&Vec<usize>> = by_pair.values().filter(|v| v.len() == 2).collect();
                let parity = if pairs.is_empty() {
                    0.0
                } else {
                    pairs.iter().filter(|v| v[0] == v[1]).count() as f64 / pairs.len() as f64
                };
                vec![("accuracy".to_string(), acc.value()?), ("gender_parity".to_string(), parity)]
            }
            _ => vec![("accuracy".to_string(), acc.value()?)],
        };
        let score = metrics.iter().map(|(_, v)| v).sum::<f64>() / metrics.len() as f64;
        Ok(SgScore { task: *self, metrics, score })
    }
}

/// MultiRC's EM and F1a for per-answer predictions (one `Vec<bool>` per question).
///
/// # Errors
/// [`EvalError::LengthMismatch`] when counts differ, [`EvalError::InvalidConfig`] for an
/// unlabelled answer, [`EvalError::Empty`].
pub fn evaluate_multirc(questions: &[MultiRcQuestion], predictions: &[Vec<bool>]) -> Result<SgScore> {
    same_len("predictions vs questions", predictions.len(), questions.len())?;
    let mut m = MultiRc::new();
    for (q, p) in questions.iter().zip(predictions) {
        let labels = q
            .answers
            .iter()
            .map(|(_, l)| {
                l.ok_or_else(|| EvalError::InvalidConfig {
                    what: "answer".into(),
                    value: q.idx.clone(),
                    expected: "labelled answers".into(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        m.update(p, &labels)?;
    }
    let (em, f1a) = m.value()?;
    Ok(SgScore {
        task: SuperGlueTask::MultiRc,
        metrics: vec![("em".into(), em), ("f1a".into(), f1a)],
        score: (em + f1a) / 2.0,
    })
}

/// ReCoRD's max-over-answers EM and F1 for one predicted entity per query.
///
/// # Errors
/// [`EvalError::LengthMismatch`], [`EvalError::Empty`] for a query without gold answers.
pub fn evaluate_record(queries: &[RecordQuery], predictions: &[&str]) -> Result<SgScore> {
    same_len("predictions vs queries", predictions.len(), queries.len())?;
    let mut m = SquadMetric::new();
    for (q, p) in queries.iter().zip(predictions) {
        let answers: Vec<&str> = q.answers.iter().map(String::as_str).collect();
        m.update(p, &answers)?;
    }
    let (em, f1) = m.value()?;
    Ok(SgScore {
        task: SuperGlueTask::Record,
        metrics: vec![("em".into(), em), ("f1".into(), f1)],
        score: (em + f1) / 2.0,
    })
}

/// The SuperGLUE leaderboard score: the mean of the task scores of BoolQ, CB, COPA, MultiRC,
/// ReCoRD, RTE, WiC and WSC (AX-b and AX-g are diagnostics, not part of it).
///
/// # Errors
/// [`EvalError::Empty`] naming the first missing task.
pub fn superglue_score(scores: &[SgScore]) -> Result<f64> {
    use SuperGlueTask::*;
    let tasks = [BoolQ, Cb, Copa, MultiRc, Record, Rte, Wic, Wsc];
    let mut total = 0.0;
    for t in tasks {
        total += scores
            .iter()
            .find(|s| s.task == t)
            .map(|s| s.score)
            .ok_or_else(|| EvalError::Empty(format!("the SuperGLUE score needs {t:?}")))?;
    }
    Ok(total / tasks.len() as f64)
}
