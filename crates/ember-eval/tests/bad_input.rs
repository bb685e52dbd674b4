//! Bad-input catalogue: one malformed input per test (GLUE TSV rows, SuperGLUE JSONL records,
//! empty or mismatched metric inputs, perplexity of nothing), each rejected with the exact
//! [`EvalError`] variant and a message that says what was wrong and what was expected.

use ember_eval::*;

const RTE_HEADER: &str = "index\tsentence1\tsentence2\tlabel\n";

fn glue_error(task: GlueTask, text: &str) -> EvalError {
    task.parse(text, "dev.tsv", false).unwrap_err()
}

fn superglue_error(task: SuperGlueTask, jsonl: &str) -> EvalError {
    task.parse(jsonl, "val.jsonl").unwrap_err()
}

#[test]
fn bad_input_glue_row_with_too_few_columns() {
    let e = glue_error(GlueTask::Rte, &format!("{RTE_HEADER}0\tA premise.\tentailment\n"));
    assert!(matches!(&e, EvalError::Parse { file, line: 2, .. } if file == "dev.tsv"), "{e}");
    assert_eq!(e.to_string(), "dev.tsv:2: 3 columns, expected 4 (the header has 4)");
}

#[test]
fn bad_input_glue_unknown_label() {
    let e = glue_error(GlueTask::Rte, &format!("{RTE_HEADER}0\tA premise.\tA hypothesis.\tmaybe\n"));
    assert!(matches!(e, EvalError::Parse { line: 2, .. }), "{e}");
    assert!(e.to_string().contains(r#"label "maybe" is not one of ["entailment", "not_entailment"]"#), "{e}");
}

#[test]
fn bad_input_glue_class_index_as_label_text() {
    let e = glue_error(GlueTask::Sst2, "sentence\tlabel\nfine film\t2\n");
    assert!(matches!(e, EvalError::Parse { line: 2, .. }), "{e}");
    assert!(e.to_string().contains(r#"label "2" is not one of ["0", "1"]"#), "{e}");
}

#[test]
fn bad_input_glue_regression_score_not_a_number() {
    let e = glue_error(GlueTask::StsB, "index\tsentence1\tsentence2\tscore\n0\tA.\tB.\thigh\n");
    assert!(matches!(e, EvalError::Parse { line: 2, .. }), "{e}");
    assert!(e.to_string().contains(r#"score "high" is not a number"#), "{e}");
}

#[test]
fn bad_input_glue_header_without_the_text_column() {
    let e = glue_error(GlueTask::StsB, "index\tsentence1\tscore\n");
    assert!(matches!(e, EvalError::Parse { line: 1, .. }), "{e}");
    assert!(e.to_string().contains("no `sentence2` column in the header"), "{e}");
}

#[test]
fn bad_input_superglue_line_is_not_json() {
    let e = superglue_error(SuperGlueTask::BoolQ, "{\"question\": \"is it\", \"passage\": \n");
    assert!(matches!(&e, EvalError::Parse { file, line: 1, .. } if file == "val.jsonl"), "{e}");
    assert!(e.to_string().contains("val.jsonl:1: not a JSON record"), "{e}");
}

#[test]
fn bad_input_superglue_record_missing_a_field() {
    let jsonl = concat!(
        r#"{"question": "is ice cold", "passage": "Ice is frozen water.", "idx": 0, "label": true}"#,
        "\n",
        r#"{"question": "is it", "idx": 1, "label": false}"#,
    );
    let e = superglue_error(SuperGlueTask::BoolQ, jsonl);
    assert!(matches!(e, EvalError::Parse { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("missing field `passage`"), "{e}");
}

#[test]
fn bad_input_superglue_unknown_label() {
    let e = superglue_error(SuperGlueTask::Cb, r#"{"premise": "p", "hypothesis": "h", "idx": 0, "label": "maybe"}"#);
    assert!(matches!(e, EvalError::Parse { line: 1, .. }), "{e}");
    assert!(e.to_string().contains(r#"label "maybe" is not one of ["entailment", "contradiction", "neutral"]"#), "{e}");
}

#[test]
fn bad_input_superglue_label_index_out_of_range() {
    let e = superglue_error(SuperGlueTask::Rte, r#"{"premise": "p", "hypothesis": "h", "idx": 0, "label": 7}"#);
    assert!(matches!(e, EvalError::Parse { line: 1, .. }), "{e}");
    assert!(e.to_string().contains("label 7 is not one of"), "{e}");
}

#[test]
fn bad_input_superglue_text_field_of_the_wrong_type() {
    let e = superglue_error(SuperGlueTask::BoolQ, r#"{"question": ["a"], "passage": "p", "idx": 0, "label": true}"#);
    assert!(matches!(e, EvalError::Parse { line: 1, .. }), "{e}");
    assert!(e.to_string().contains(r#"field `question` is ["a"], expected text"#), "{e}");
}

#[test]
fn bad_input_perplexity_of_an_empty_corpus() {
    let e = Perplexity::new().value().unwrap_err();
    assert_eq!(e, EvalError::Empty("perplexity".into()));
    assert_eq!(e.to_string(), "no examples: perplexity needs at least one");
}

#[test]
fn bad_input_perplexity_of_logits_with_nan() {
    let e = Perplexity::new().update_logits(&[0.0, f32::NAN, 1.0], 3, &[0], None).unwrap_err();
    assert_eq!(e, EvalError::NonFinite("logits".into()));
    assert!(e.to_string().contains("logits contains NaN or infinite values; metrics need finite numbers"), "{e}");
}

#[test]
fn bad_input_perplexity_target_outside_the_vocabulary() {
    let e = Perplexity::new().update_logits(&[0.0; 6], 3, &[1, 3], None).unwrap_err();
    assert!(matches!(e, EvalError::InvalidClass { class: 3, classes: 3, .. }), "{e}");
    assert!(e.to_string().contains("class 3 is outside 0..3 in targets"), "{e}");
}

#[test]
fn bad_input_perplexity_logits_and_targets_of_different_lengths() {
    let e = Perplexity::new().update_logits(&[0.0; 5], 3, &[1, 2], None).unwrap_err();
    assert!(matches!(e, EvalError::LengthMismatch { left: 5, right: 6, .. }), "{e}");
    assert!(e.to_string().contains("length mismatch in logits vs targets × vocab: 5 vs 6"), "{e}");
}

#[test]
fn bad_input_perplexity_with_an_empty_vocabulary() {
    let e = Perplexity::new().update_logits(&[], 0, &[0, 1], None).unwrap_err();
    assert!(matches!(&e, EvalError::InvalidConfig { what, .. } if what == "vocab"), "{e}");
    assert!(e.to_string().contains("invalid vocab = 0: at least 1"), "{e}");
}

#[test]
fn bad_input_accuracy_of_no_examples() {
    let e = Accuracy::new().value().unwrap_err();
    assert_eq!(e, EvalError::Empty("accuracy".into()));
    assert!(e.to_string().contains("accuracy needs at least one"), "{e}");
}

#[test]
fn bad_input_accuracy_predictions_and_labels_of_different_lengths() {
    let e = Accuracy::new().update(&[0, 1, 1], &[0, 1]).unwrap_err();
    assert!(matches!(e, EvalError::LengthMismatch { left: 3, right: 2, .. }), "{e}");
    assert_eq!(e.to_string(), "length mismatch in predictions vs labels: 3 vs 2");
}

#[test]
fn bad_input_confusion_matrix_class_out_of_range() {
    let mut cm = ConfusionMatrix::new(2).unwrap();
    let e = cm.update(&[0, 2], &[0, 1]).unwrap_err();
    assert!(matches!(e, EvalError::InvalidClass { class: 2, classes: 2, .. }), "{e}");
    assert!(e.to_string().contains("class 2 is outside 0..2 in predictions"), "{e}");
}

#[test]
fn bad_input_correlation_of_a_constant_series() {
    let mut r = Correlation::new();
    r.update(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).unwrap();
    let e = r.pearson().unwrap_err();
    assert!(matches!(e, EvalError::Constant(_)), "{e}");
    assert!(e.to_string().contains("is constant: the correlation is undefined"), "{e}");
}

#[test]
fn bad_input_correlation_of_a_single_pair() {
    let mut r = Correlation::new();
    r.update(&[1.0], &[2.0]).unwrap();
    let e = r.spearman().unwrap_err();
    assert!(matches!(e, EvalError::Empty(_)), "{e}");
    assert!(e.to_string().contains("Spearman correlation (at least two pairs)"), "{e}");
}

#[test]
fn bad_input_glue_evaluation_with_too_few_predictions() {
    let split = GlueTask::Rte.parse(&format!("{RTE_HEADER}0\tA.\tB.\tentailment\n"), "dev.tsv", false).unwrap();
    let e = GlueTask::Rte.evaluate(&split.examples, &[]).unwrap_err();
    assert!(matches!(e, EvalError::LengthMismatch { left: 0, right: 1, .. }), "{e}");
    assert!(e.to_string().contains("predictions vs examples: 0 vs 1"), "{e}");
}

#[test]
fn bad_input_glue_similarity_outside_its_range() {
    let e = glue_error(GlueTask::StsB, "index\tsentence1\tsentence2\tscore\n0\tA.\tB.\t1e300\n");
    assert!(matches!(e, EvalError::Parse { line: 2, .. }), "{e}");
    assert!(e.to_string().contains(r#"score "1e300" is outside STS-B's similarity range [0, 5]"#), "{e}");
}

#[test]
fn bad_input_correlation_of_huge_values_stays_finite() {
    // Not an error: Pearson's r is scale-invariant, so magnitudes near f64's limit (whose sums
    // of squares overflow) still give the exact answer instead of NaN.
    let mut c = Correlation::new();
    c.update(&[1e300, 0.0, -1e300], &[2.0, 1.0, 0.0]).unwrap();
    let r = c.pearson().unwrap();
    assert!((r - 1.0).abs() < 1e-12, "{r}");
}
