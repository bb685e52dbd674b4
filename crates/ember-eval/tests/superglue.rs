//! SuperGLUE readers on fixture files in the official JSONL formats, task metrics and the
//! leaderboard score.

use std::path::PathBuf;

use ember_eval::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/superglue").join(name)
}

fn examples(task: SuperGlueTask, file: &str) -> Vec<SgExample> {
    match task.read(&fixture(file)).unwrap() {
        SgSplit::Examples(e) => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_task_reader_reads_its_official_layout() {
    let boolq = examples(SuperGlueTask::BoolQ, "BoolQ.jsonl");
    assert_eq!(boolq.iter().map(|e| e.label).collect::<Vec<_>>(), [Some(1), Some(0)]);
    assert_eq!(boolq[0].texts, ["is the sky blue", "On a clear day the sky looks blue."]);
    let cb = examples(SuperGlueTask::Cb, "CB.jsonl");
    assert_eq!(cb.iter().map(|e| e.label.unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
    let copa = examples(SuperGlueTask::Copa, "COPA.jsonl");
    assert_eq!((copa[1].texts[3].as_str(), copa[1].label), ("effect", Some(1)));
    assert_eq!(examples(SuperGlueTask::Rte, "RTE.jsonl")[0].label, Some(1));
    let wic = examples(SuperGlueTask::Wic, "WiC.jsonl");
    assert_eq!((wic[0].texts[0].as_str(), wic[0].label), ("place", Some(0)));
    let wsc = examples(SuperGlueTask::Wsc, "WSC.jsonl");
    assert_eq!(wsc[0].texts[1..], ["Mark".to_string(), "himself".to_string()]);
    assert_eq!(examples(SuperGlueTask::AxB, "AX-b.jsonl").len(), 2);
    let axg = examples(SuperGlueTask::AxG, "AX-g.jsonl");
    assert_eq!(axg[0].pair.as_deref(), Some("1"));

    let SgSplit::MultiRc(q) = SuperGlueTask::MultiRc.read(&fixture("MultiRC.jsonl")).unwrap() else { panic!() };
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].idx, "0-0");
    assert_eq!(q[0].answers[2], ("A fish".to_string(), Some(false)));
    let SgSplit::Record(r) = SuperGlueTask::Record.read(&fixture("ReCoRD.jsonl")).unwrap() else { panic!() };
    assert_eq!(r[0].entities, ["Alice", "Bob", "Paris"], "end-inclusive character spans");
    assert_eq!(r[0].answers, ["Paris"]);
}

#[test]
fn malformed_lines_are_named() {
    let e = SuperGlueTask::BoolQ.read(&fixture("BoolQ_malformed.jsonl")).unwrap_err();
    assert!(matches!(e, EvalError::Parse { line: 2, .. }) && e.to_string().contains("BoolQ_malformed.jsonl:2"), "{e}");
    let e = SuperGlueTask::Cb.read(&fixture("CB_badlabel.jsonl")).unwrap_err();
    assert!(e.to_string().contains("maybe"), "{e}");
    let e = SuperGlueTask::Rte.parse("{\"premise\": \"a\", \"idx\": 0}\n", "x.jsonl").unwrap_err();
    assert!(e.to_string().contains("hypothesis"), "{e}");
}

#[test]
fn task_metrics_and_the_superglue_score() {
    let cb = examples(SuperGlueTask::Cb, "CB.jsonl");
    let s = SuperGlueTask::Cb.evaluate(&cb, &[0, 1, 0]).unwrap();
    // Accuracy 2/3; per-class F1: entailment 2/3, contradiction 1, neutral 0 → macro 5/9.
    assert!((s.metrics[0].1 - 2.0 / 3.0).abs() < 1e-12 && (s.metrics[1].1 - 5.0 / 9.0).abs() < 1e-12, "{s:?}");
    let axg = examples(SuperGlueTask::AxG, "AX-g.jsonl");
    let s = SuperGlueTask::AxG.evaluate(&axg, &[0, 1]).unwrap();
    assert_eq!(s.metrics, vec![("accuracy".to_string(), 0.5), ("gender_parity".to_string(), 0.0)]);

    let SgSplit::MultiRc(q) = SuperGlueTask::MultiRc.read(&fixture("MultiRC.jsonl")).unwrap() else { panic!() };
    let s = evaluate_multirc(&q, &[vec![true, true, false], vec![true, true]]).unwrap();
    // EM 1/2; answers tp 3, fp 1, fn 0 → F1a 6/7.
    assert!((s.metrics[0].1 - 0.5).abs() < 1e-12 && (s.metrics[1].1 - 6.0 / 7.0).abs() < 1e-12, "{s:?}");
    let SgSplit::Record(r) = SuperGlueTask::Record.read(&fixture("ReCoRD.jsonl")).unwrap() else { panic!() };
    let s = evaluate_record(&r, &["paris."]).unwrap();
    assert_eq!(s.score, 1.0, "normalized exact match");
    assert!(matches!(SuperGlueTask::MultiRc.evaluate(&[], &[]), Err(EvalError::InvalidConfig { .. })));

    let mk = |task, score| SgScore { task, metrics: vec![], score };
    let mut all: Vec<SgScore> = SuperGlueTask::ALL[..7].iter().map(|t| mk(*t, 0.5)).collect();
    assert!(matches!(superglue_score(&all), Err(EvalError::Empty(_))));
    all.push(mk(SuperGlueTask::Wsc, 0.9));
    all.push(mk(SuperGlueTask::AxB, 0.0));
    assert!((superglue_score(&all).unwrap() - (7.0 * 0.5 + 0.9) / 8.0).abs() < 1e-12);
}
