//! The classification pipeline end to end on a small BERT written in Hugging Face layout with a
//! word-level tokenizer that adds `[CLS]` / `[SEP]` (no download), on a labelled task a small
//! model can learn: the teacher is fine-tuned, every stage scored on the dev split, the students
//! reload from the files other tools read, and bad input is refused before any work.

use burn::tensor::Device;
use ember_slm::eval::{GlueLabel, GlueTask};
use ember_slm::models::{Bert, BertClassifier, BertConfig, TextTokenizer};
use ember_slm::pipeline::PipelineError;
use ember_slm::pipeline::classify::{ClassifyRecipe, label_loss, run};
use ember_slm::pipeline::data::{Metric, read_task, task_batches};
use std::path::{Path, PathBuf};

const SEA: [&str; 8] = ["whale", "ship", "sea", "harpoon", "boat", "captain", "crew", "deck"];
const LAND: [&str; 8] = ["farm", "field", "horse", "barn", "plough", "wheat", "fence", "hill"];
const NEUTRAL: [&str; 8] = ["the", "a", "old", "young", "saw", "quiet", "and", "night"];

/// The Flex device's random state is process-wide and `teacher` seeds it: the tests of this
/// file take turns, so a seeded pipeline run is not re-seeded by another test halfway through.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ember-classify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A 3-layer encoder (width 16, 4 heads, FFN 24) with no head, and a word-level tokenizer
/// whose post-processor adds BERT's special tokens and segment ids.
fn teacher(dir: &Path) {
    let device = Device::flex();
    device.seed(5);
    let words: Vec<&str> = SEA.iter().chain(&LAND).chain(&NEUTRAL).copied().collect();
    let model = BertConfig::new(words.len() + 4, 16, 3, 4, 24, 40).init(&device).unwrap();
    model.save_pretrained(dir, None).unwrap();
    let mut vocab = serde_json::Map::new();
    for (i, w) in ["[PAD]", "[UNK]", "[CLS]", "[SEP]"].iter().chain(&words).enumerate() {
        vocab.insert((*w).into(), i.into());
    }
    let special = |t: &str, ty: u32| serde_json::json!({"SpecialToken": {"id": t, "type_id": ty}});
    let seq = |s: &str, ty: u32| serde_json::json!({"Sequence": {"id": s, "type_id": ty}});
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 1), special("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
}

/// `n` labelled rows: `sea` sentences draw their content words from [`SEA`], `land` ones from
/// [`LAND`], both mixed with [`NEUTRAL`] words; deterministic.
fn rows(n: usize, seed: u64) -> String {
    let mut s = String::from("sentence\tlabel\n");
    let mut x = seed;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    for i in 0..n {
        let (pool, label) = if i % 2 == 0 { (&SEA, "sea") } else { (&LAND, "land") };
        let len = 4 + next() % 6;
        let words: Vec<&str> =
            (0..len).map(|k| if k % 2 == 0 { pool[next() % 8] } else { NEUTRAL[next() % 8] }).collect();
        s.push_str(&format!("{}\t{label}\n", words.join(" ")));
    }
    s
}

fn recipe() -> ClassifyRecipe {
    ClassifyRecipe {
        max_tokens: 24,
        batch: 8,
        teacher_epochs: 6,
        teacher_lr: 2e-3,
        distill_epochs: 3,
        distill_lr: 2e-3,
        prune_epochs: 1,
        prune_lr: 1e-3,
        calibration_examples: 16,
        latency_ms: 5,
        ..ClassifyRecipe::default()
    }
}

#[test]
fn the_pipeline_fine_tunes_distils_and_writes_students_other_tools_read() {
    let _serial = serial();
    let (tdir, data_dir, out) = (temp("teacher"), temp("data"), temp("out"));
    teacher(&tdir);
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("train.tsv"), rows(160, 1)).unwrap();
    std::fs::write(data_dir.join("dev.tsv"), rows(40, 2)).unwrap();
    let data = read_task(&data_dir, None, 0.1, 1).unwrap();
    assert_eq!((data.train.len(), data.dev.len(), data.labels.clone()), (160, 40, vec!["land".into(), "sea".into()]));
    let device = Device::flex();
    let mut steps = std::collections::BTreeMap::<String, usize>::new();
    let r = run(&tdir, &data, &recipe(), &out, &device, &mut |stage, _, _, _| {
        *steps.entry(stage.to_string()).or_default() += 1;
    })
    .unwrap();
    // 20 batches of 8: 6 epochs of fine-tuning, 3 of distillation, 1 after the narrowing.
    assert_eq!(steps.get("finetune"), Some(&120));
    assert_eq!(steps.get("distill"), Some(&60));
    assert_eq!(steps.get("prune"), Some(&20));
    assert!(r.teacher_finetuned);
    assert_eq!(r.teacher_epochs.len(), 6, "{:?}", r.teacher_epochs);
    let names: Vec<&str> = r.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["teacher", "distilled", "pruned", "int8"]);
    // The task is learnable: the fine-tuned teacher is far above chance, the students keep most.
    let t = &r.stages[0];
    assert!(t.metric >= 0.85, "teacher dev accuracy {} (epochs {:?})", t.metric, r.teacher_epochs);
    for s in &r.stages[1..] {
        assert!(s.metric >= 0.75, "{s:?}");
        assert!(s.b1_ms > 0.0 && s.b32_ms > 0.0);
    }
    assert!(r.stages[1].params < t.params && r.stages[2].params < r.stages[1].params);
    assert!(r.stages[3].bytes < r.stages[2].bytes);
    let finetune: Vec<f64> = r.curve.iter().filter(|(s, _, _)| s == "finetune").map(|(_, _, l)| *l).collect();
    assert!(finetune[finetune.len() - 1] < finetune[0], "{finetune:?}");

    // Report fields.
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 4, "{report}");
    for row in &rows {
        for field in [
            "stage",
            "params",
            "bytes",
            "metric",
            "metric_value",
            "latency_p50_ms_b1",
            "latency_p50_ms_b32",
            "speedup_b1",
            "speedup_b32",
            "energy_mj_est",
            "higher_is_better",
        ] {
            assert!(row.get(field).is_some(), "{field} missing in {row}");
        }
        assert_eq!(row["metric"], "accuracy");
    }
    assert!(out.join("curve.json").is_file() && out.join("recipe.json").is_file());

    // The students reload: Hugging Face layout (1 layer, FFN 18, labels) and Ember int8; the
    // reloaded models score as the report says.
    let labels = data.labels.clone();
    let hf = BertClassifier::from_pretrained(&r.hf_dir, labels.clone(), 0.0, &device).unwrap();
    assert!(hf.head_loaded && hf.pooler_loaded);
    assert_eq!(hf.checkpoint_labels, labels);
    assert_eq!((hf.model.bert.n_layers(), hf.model.bert.encoder.feed_forward[0].d_ff()), (1, 18));
    assert!(Bert::from_pretrained(&r.hf_dir, &device).is_ok(), "the encoder alone loads too");
    let (int8, int8_labels) = BertClassifier::load(&r.int8_dir, &device).unwrap();
    assert_eq!(int8_labels, labels);
    let tok = TextTokenizer::from_file(r.int8_dir.join("tokenizer.json"), 24).unwrap();
    let batches = task_batches(&tok, &data.dev, 8).unwrap();
    let mut correct = 0;
    for b in &batches {
        let logits = int8.logits(&b.encoded).unwrap().into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        for (r, &i) in b.index.iter().enumerate() {
            let pred = usize::from(logits[2 * r + 1] > logits[2 * r]);
            correct += usize::from(data.dev[i].label == Some(GlueLabel::Class(pred)));
        }
    }
    let acc = correct as f64 / data.dev.len() as f64;
    assert!((acc - r.stages[3].metric).abs() < 1e-9, "{acc} vs {}", r.stages[3].metric);
    for d in [tdir, data_dir, out] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn glue_layouts_and_single_files_are_read() {
    let _serial = serial();
    let dir = temp("glue");
    std::fs::create_dir_all(&dir).unwrap();
    // RTE's layout: index, sentence1, sentence2, label.
    let rte =
        "index\tsentence1\tsentence2\tlabel\n0\ta whale\tthe sea\tentailment\n1\ta farm\tthe sea\tnot_entailment\n";
    std::fs::write(dir.join("train.tsv"), rte).unwrap();
    std::fs::write(dir.join("dev.tsv"), rte).unwrap();
    let d = read_task(&dir, Some("RTE"), 0.1, 1).unwrap();
    assert_eq!(d.metric, Metric::Glue(GlueTask::Rte));
    assert_eq!(d.train[1].text_b.as_deref(), Some("the sea"));
    assert_eq!(d.labels, ["entailment", "not_entailment"]);
    // STS-B: regression, no labels.
    let sts = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n\
               0\tg\tf\ty\t0\ts\ts\ta whale\ta ship\t3.8\n1\tg\tf\ty\t1\ts\ts\ta farm\ta ship\t0.4\n";
    std::fs::write(dir.join("train.tsv"), sts).unwrap();
    std::fs::write(dir.join("dev.tsv"), sts).unwrap();
    let d = read_task(&dir, Some("sts-b"), 0.1, 1).unwrap();
    assert!(d.labels.is_empty());
    assert_eq!(d.train[0].label, Some(GlueLabel::Score(3.8)));
    // One plain file: a tenth becomes the dev split, with the train split's label indices.
    let file = dir.join("all.tsv");
    std::fs::write(&file, rows(50, 3)).unwrap();
    let d = read_task(&file, None, 0.1, 1).unwrap();
    assert_eq!((d.train.len(), d.dev.len()), (45, 5));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_input_is_refused_before_any_work() {
    let _serial = serial();
    let dir = temp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    // Unknown GLUE task, missing dev file, dev labels the train split lacks.
    std::fs::write(dir.join("train.tsv"), "a whale\tsea\na farm\tland\n").unwrap();
    let e = read_task(&dir, Some("imdb"), 0.1, 1).unwrap_err().to_string();
    assert!(e.contains("imdb") && e.contains("SST-2"), "{e}");
    let e = read_task(&dir, None, 0.1, 1).unwrap_err().to_string();
    assert!(e.contains("dev.tsv"), "{e}");
    std::fs::write(dir.join("dev.tsv"), "a hill\tmountain\na farm\tland\n").unwrap();
    let e = read_task(&dir, None, 0.1, 1).unwrap_err().to_string();
    assert!(e.contains("mountain"), "{e}");
    // An invalid recipe fails before the checkpoint is read (the teacher directory is missing).
    std::fs::write(dir.join("dev.tsv"), "a whale\tsea\na farm\tland\n").unwrap();
    let data = read_task(&dir, None, 0.1, 1).unwrap();
    for (bad, field) in [
        (ClassifyRecipe { temperature: 0.0, ..recipe() }, "temperature"),
        (ClassifyRecipe { soft_weight: 1.5, ..recipe() }, "soft_weight"),
        (ClassifyRecipe { teacher_epochs: 0, ..recipe() }, "teacher_epochs"),
        (ClassifyRecipe { layers: vec![2, 1], ..recipe() }, "layers"),
        (ClassifyRecipe { dropout: 1.0, ..recipe() }, "dropout"),
    ] {
        match run(&dir.join("missing"), &data, &bad, &dir.join("out"), &Device::flex(), &mut |_, _, _, _| {}) {
            Err(PipelineError::Recipe { what, .. }) => assert_eq!(what, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(!dir.join("out").exists(), "nothing written");
    // The loss of a user's own loop refuses logits that do not fit the batch.
    let tdir = temp("bad-teacher");
    teacher(&tdir);
    let tok = TextTokenizer::from_file(tdir.join("tokenizer.json"), 24).unwrap();
    let batches = task_batches(&tok, &data.train, 8).unwrap();
    let device = Device::flex();
    let one_column = burn::tensor::Tensor::<2>::zeros([batches[0].encoded.batch, 1], &device);
    let e = label_loss(one_column, &batches[0], &device).unwrap_err().to_string();
    assert!(e.contains("1 columns"), "{e}");
    let two = burn::tensor::Tensor::<2>::zeros([batches[0].encoded.batch, 2], &device);
    let loss = label_loss(two, &batches[0], &device).unwrap().into_scalar::<f32>();
    assert!((loss - std::f32::consts::LN_2).abs() < 1e-6, "uniform logits: ln 2, got {loss}");
    let _ = std::fs::remove_dir_all(tdir);
    // A recipe from JSON refuses unknown fields.
    assert!(serde_json::from_str::<ClassifyRecipe>(r#"{"epochs": 3}"#).is_err());
    let _ = std::fs::remove_dir_all(dir);
}
