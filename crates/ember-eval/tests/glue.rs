//! GLUE readers on fixture files in the official formats (one per task, plus malformed ones),
//! task metrics and the leaderboard score.

use std::path::PathBuf;

use ember_eval::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glue").join(name)
}

fn classes(split: &GlueSplit) -> Vec<usize> {
    split
        .examples
        .iter()
        .map(|e| match e.label {
            Some(GlueLabel::Class(c)) => c,
            other => panic!("{:?}: {other:?}", split.task),
        })
        .collect()
}

#[test]
fn every_task_reader_reads_its_official_layout() {
    let cola = GlueTask::CoLA.read(&fixture("CoLA_dev.tsv"), false).unwrap();
    assert_eq!(classes(&cola), [1, 0, 1]);
    assert_eq!(cola.examples[2].text_a, "The \"quoted\" sentence stays literal.", "quotes are text, not CSV quoting");
    let cola_test = GlueTask::CoLA.read(&fixture("CoLA_test.tsv"), false).unwrap();
    assert_eq!((cola_test.examples[0].id.as_str(), cola_test.examples[0].label), ("0", None));

    let sst = GlueTask::Sst2.read(&fixture("SST-2_dev.tsv"), false).unwrap();
    assert_eq!(classes(&sst), [1, 0]);

    let mrpc = GlueTask::Mrpc.read(&fixture("MRPC_dev.tsv"), false).unwrap();
    assert_eq!(classes(&mrpc), [1, 0]);
    assert_eq!(mrpc.examples[1].text_b.as_deref(), Some("His wife said he was \"100 percent behind George Bush\"."));

    let sts = GlueTask::StsB.read(&fixture("STS-B_dev.tsv"), false).unwrap();
    assert_eq!(
        sts.examples.iter().map(|e| e.label).collect::<Vec<_>>(),
        [Some(GlueLabel::Score(5.0)), Some(GlueLabel::Score(4.75)), Some(GlueLabel::Score(0.5))]
    );
    assert_eq!(sts.examples[1].text_b.as_deref(), Some("A child is riding a horse."));

    // QQP's train split has known malformed rows: skipped and counted; elsewhere they are errors.
    let qqp = GlueTask::Qqp.read(&fixture("QQP_train.tsv"), true).unwrap();
    assert_eq!((classes(&qqp), qqp.skipped), (vec![0, 1], 1));
    assert!(matches!(GlueTask::Qqp.read(&fixture("QQP_train.tsv"), false), Err(EvalError::Parse { line: 4, .. })));

    // MNLI dev (five annotator labels) and train (one) both find `gold_label`.
    let mnli = GlueTask::MnliMatched.read(&fixture("MNLI_dev_matched.tsv"), false).unwrap();
    assert_eq!(classes(&mnli), [2, 0]);
    assert_eq!(mnli.examples[0].text_a, "The new rights are nice enough");
    let mnli_train = GlueTask::MnliMatched.read(&fixture("MNLI_train.tsv"), true).unwrap();
    assert_eq!(classes(&mnli_train), [2]);

    let qnli = GlueTask::Qnli.read(&fixture("QNLI_dev.tsv"), false).unwrap();
    assert_eq!(classes(&qnli), [0, 1]);
    let rte = GlueTask::Rte.read(&fixture("RTE_dev.tsv"), false).unwrap();
    assert_eq!(classes(&rte), [1, 0]);
    let wnli = GlueTask::Wnli.read(&fixture("WNLI_dev.tsv"), false).unwrap();
    assert_eq!(classes(&wnli), [0]);
    // AX: the labelled diagnostic-full layout and the unlabelled diagnostic layout.
    let ax = GlueTask::Ax.read(&fixture("AX_labelled.tsv"), false).unwrap();
    assert_eq!(classes(&ax), [0, 1]);
    assert_eq!(ax.examples[1].text_b.as_deref(), Some("The cat sat."));
    let ax_test = GlueTask::Ax.read(&fixture("AX_test.tsv"), false).unwrap();
    assert_eq!(ax_test.examples[0].label, None);
}

#[test]
fn malformed_files_name_the_line() {
    let e = GlueTask::Rte.read(&fixture("RTE_malformed.tsv"), false).unwrap_err();
    assert!(matches!(e, EvalError::Parse { line: 3, .. }), "{e}");
    assert!(e.to_string().contains("RTE_malformed.tsv:3"), "{e}");
    let e = GlueTask::Rte.read(&fixture("RTE_badlabel.tsv"), false).unwrap_err();
    assert!(matches!(e, EvalError::Parse { line: 2, .. }) && e.to_string().contains("maybe"), "{e}");
    let e = GlueTask::StsB.parse("index\tsentence1\tscore\n", "x.tsv", false).unwrap_err();
    assert!(e.to_string().contains("sentence2"), "{e}");
    assert!(matches!(GlueTask::Rte.read(&fixture("missing.tsv"), false), Err(EvalError::Io { .. })));
}

#[test]
fn task_metrics_and_the_glue_score() {
    let mrpc = GlueTask::Mrpc.read(&fixture("MRPC_dev.tsv"), false).unwrap();
    let s = GlueTask::Mrpc.evaluate(&mrpc.examples, &[GluePrediction::Class(1), GluePrediction::Class(1)]).unwrap();
    // One true positive, one false positive: F1 = 2/3, accuracy 1/2, score = their mean.
    assert_eq!(s.metrics, vec![("f1".to_string(), 2.0 / 3.0), ("accuracy".to_string(), 0.5)]);
    assert!((s.score - 7.0 / 12.0).abs() < 1e-12);
    let sts = GlueTask::StsB.read(&fixture("STS-B_dev.tsv"), false).unwrap();
    let s = GlueTask::StsB
        .evaluate(&sts.examples, &[GluePrediction::Score(4.0), GluePrediction::Score(3.0), GluePrediction::Score(1.0)])
        .unwrap();
    assert!((s.metrics[1].1 - 1.0).abs() < 1e-12, "Spearman of a monotone prediction is 1");
    let cola = GlueTask::CoLA.read(&fixture("CoLA_dev.tsv"), false).unwrap();
    let s = GlueTask::CoLA.evaluate(&cola.examples, &[GluePrediction::Class(1); 3]).unwrap();
    assert_eq!(s.metrics, vec![("mcc".to_string(), 0.0)]);
    assert!(matches!(
        GlueTask::CoLA.evaluate(&cola.examples, &[GluePrediction::Class(1)]),
        Err(EvalError::LengthMismatch { .. })
    ));
    assert!(matches!(
        GlueTask::CoLA.evaluate(&cola.examples, &[GluePrediction::Score(1.0); 3]),
        Err(EvalError::InvalidConfig { .. })
    ));

    // The runner: any prediction function over the split, in batches.
    let rte = GlueTask::Rte.read(&fixture("RTE_dev.tsv"), false).unwrap();
    let mut calls = 0;
    let s = rte
        .evaluate_with(1, |batch| {
            calls += 1;
            batch.iter().map(|e| GluePrediction::Class(usize::from(e.text_a.starts_with("Yet")))).collect()
        })
        .unwrap();
    assert_eq!((calls, s.score), (2, 0.0));
    assert!(matches!(rte.evaluate_with(2, |_| vec![]), Err(EvalError::LengthMismatch { .. })));

    // The aggregate: 9 task scores, MNLI as the mean of matched and mismatched.
    let mk = |task, score| TaskScore { task, metrics: vec![], score };
    let mut all: Vec<TaskScore> = [
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
    .map(|t| mk(t, 0.8))
    .collect();
    assert!(matches!(glue_score(&all), Err(EvalError::Empty(_))));
    all.push(mk(GlueTask::MnliMatched, 0.7));
    all.push(mk(GlueTask::MnliMismatched, 0.5));
    all.push(mk(GlueTask::Ax, 0.0));
    assert!((glue_score(&all).unwrap() - (8.0 * 0.8 + 0.6) / 9.0).abs() < 1e-12);
}
