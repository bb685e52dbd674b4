//! The embedding pipeline end to end on a small BERT written in Hugging Face layout with a
//! word-level tokenizer (no download): stages, files other tools read, the report's fields,
//! training that lowers the loss, and bad input refused before any work.

use burn::tensor::Device;
use ember_slm::models::{Bert, BertConfig, TextTokenizer};
use ember_slm::pipeline::PipelineError;
use ember_slm::pipeline::embed::{EmbedRecipe, run};
use std::path::{Path, PathBuf};

const WORDS: [&str; 30] = [
    "the", "a", "whale", "ship", "sea", "captain", "crew", "harpoon", "storm", "wind", "deck", "sailed", "saw",
    "hunted", "white", "grey", "old", "young", "quiet", "loud", "night", "day", "north", "south", "and", "under",
    "over", "boat", "line", "rope",
];

/// The Flex device's random state is process-wide and `teacher` seeds it: the tests of this
/// file take turns, so a seeded pipeline run is not re-seeded by another test halfway through.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ember-pipeline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A 3-layer teacher (width 16, 4 heads, FFN 24) with a word-level tokenizer over [`WORDS`].
fn teacher(dir: &Path) {
    let device = Device::flex();
    device.seed(5);
    let model = BertConfig::new(WORDS.len() + 2, 16, 3, 4, 24, 32).init(&device).unwrap();
    model.save_pretrained(dir, None).unwrap();
    let mut vocab = serde_json::Map::new();
    vocab.insert("[PAD]".into(), 0.into());
    vocab.insert("[UNK]".into(), 1.into());
    for (i, w) in WORDS.iter().enumerate() {
        vocab.insert((*w).into(), (i + 2).into());
    }
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
}

/// `n` sentences of 5–12 words, deterministic.
fn text(n: usize) -> String {
    let mut s = String::new();
    let mut x = 12345u64;
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let len = 5 + (x >> 33) as usize % 8;
        let words: Vec<&str> = (0..len)
            .map(|k| {
                let y = x.rotate_left(7 * k as u32 + 3) ^ (k as u64 * 0x9e37);
                WORDS[(y % WORDS.len() as u64) as usize]
            })
            .collect();
        let mut sentence = words.join(" ");
        sentence[..1].make_ascii_uppercase();
        s.push_str(&sentence);
        s.push_str(". ");
    }
    s
}

fn recipe() -> EmbedRecipe {
    EmbedRecipe {
        max_held_out: 24,
        batch: 8,
        distill_steps: 30,
        lr: 2e-3,
        warmup: 2,
        prune_steps: 6,
        prune_lr: 1e-3,
        calibration_sentences: 16,
        latency_ms: 5,
        max_tokens: 16,
        min_chars: 5,
        general_sentences: 0,
        ..EmbedRecipe::default()
    }
}

#[test]
fn the_pipeline_runs_and_writes_students_other_tools_read() {
    let _serial = serial();
    let (tdir, out) = (temp("teacher"), temp("out"));
    teacher(&tdir);
    let device = Device::flex();
    let mut calls = 0;
    let r = run(&tdir, &text(160), &recipe(), &out, &device, &mut |stage, _, _, _| {
        if stage != "teacher" {
            calls += 1;
        }
    })
    .unwrap();
    assert_eq!(calls, 36, "one progress call per training step");
    let names: Vec<&str> = r.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["teacher", "distilled", "pruned", "int8"]);
    let t = &r.stages[0];
    assert!((t.spearman - 1.0).abs() < 1e-9 && (t.cos_mean - 1.0).abs() < 1e-6, "{t:?}");
    for s in &r.stages {
        assert!(s.spearman.is_finite() && s.spearman <= 1.0 && s.b1_ms > 0.0 && s.b32_ms > 0.0, "{s:?}");
    }
    // Layer 1 of 3, FFN narrowed by a quarter; fewer parameters at every stage.
    assert!(r.stages[1].params < t.params && r.stages[2].params < r.stages[1].params);
    assert_eq!(r.stages[3].params, r.stages[2].params);
    assert!(r.stages[3].bytes < r.stages[2].bytes);
    // Training lowered the loss.
    let distill: Vec<f64> = r.curve.iter().filter(|(s, _, _)| s == "distill").map(|(_, _, l)| *l).collect();
    assert!(distill.len() >= 3 && distill[distill.len() - 1] < distill[0], "{distill:?}");
    assert_eq!(r.sentences.1, 16); // 10 % of 160
    assert_eq!(r.sentences.0, 144);

    // The students reload: Hugging Face layout (one layer, FFN 18) and Ember int8.
    let hf = Bert::from_pretrained(&r.hf_dir, &device).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.hf_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!((config["num_hidden_layers"].as_u64(), config["intermediate_size"].as_u64()), (Some(1), Some(18)));
    assert!(r.hf_dir.join("tokenizer.json").is_file() && r.hf_dir.join("modules.json").is_file());
    let int8 = Bert::load(&r.int8_dir, &device).unwrap();
    let tok = TextTokenizer::from_file(r.hf_dir.join("tokenizer.json"), 16).unwrap();
    let batch = tok.encode_batch(&["The whale sailed under the ship."]).unwrap();
    let (a, b) = (hf.embed(&batch).unwrap(), int8.embed(&batch).unwrap());
    let cos = f64::from((a * b).sum().into_scalar::<f32>());
    assert!(cos > 0.9, "int8 against float student: cosine {cos}");

    // The report: the fields other tools read, Spearman saying higher is better.
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
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
        ] {
            assert!(!row[field].is_null(), "{field} in {row}");
        }
        assert_eq!(row["metric"], "spearman");
        assert_eq!(row["higher_is_better"], true);
    }
    for f in ["report.md", "report.svg", "recipe.json", "curve.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&tdir).unwrap();
}

#[test]
fn bad_input_is_refused_before_any_work() {
    let _serial = serial();
    let (tdir, out) = (temp("bad-teacher"), temp("bad-out"));
    teacher(&tdir);
    let device = Device::flex();
    let mut none = |_: &str, _: usize, _: usize, _: f64| {};
    let cases: Vec<(EmbedRecipe, &str)> = vec![
        (EmbedRecipe { held_out: 1.5, ..recipe() }, "held_out"),
        (EmbedRecipe { batch: 0, ..recipe() }, "batch"),
        (EmbedRecipe { lr: f64::NAN, ..recipe() }, "lr"),
        (EmbedRecipe { prune_neurons: 1.0, ..recipe() }, "prune_neurons"),
        (EmbedRecipe { layers: vec![2, 1], ..recipe() }, "ascending"),
        (EmbedRecipe { layers: vec![0, 3], ..recipe() }, "a teacher layer in 0..3"),
    ];
    for (r, needle) in cases {
        let err = run(&tdir, &text(160), &r, &out, &device, &mut none).unwrap_err();
        assert!(matches!(err, PipelineError::Recipe { .. }) && err.to_string().contains(needle), "{needle}: {err}");
        assert!(!out.exists(), "nothing written for a bad recipe ({needle})");
    }
    let err = run(&tdir, &text(5), &recipe(), &out, &device, &mut none).unwrap_err();
    assert!(matches!(err, PipelineError::Data { .. }) && err.to_string().contains("5 sentences"), "{err}");
    let missing = tdir.join("no-such-general.txt");
    let r = EmbedRecipe { general_sentences: 10, general_text: Some(missing.clone()), ..recipe() };
    // Named before the teacher loads (here the teacher directory does not exist either).
    let err = run(&out, &text(160), &r, &out, &device, &mut none).unwrap_err();
    assert!(err.to_string().contains("no-such-general.txt"), "the general text's path is named: {err}");
    let err = run(&out, &text(160), &recipe(), &out, &device, &mut none).unwrap_err();
    assert!(matches!(err, PipelineError::Model(_)), "{err}");
    assert!(serde_json::from_str::<EmbedRecipe>(r#"{"stepz": 3}"#).is_err(), "unknown fields refused");
    assert!(!out.exists());
    std::fs::remove_dir_all(&tdir).unwrap();
}

#[test]
fn every_recipe_option_runs_and_frozen_tables_stay_the_teachers() {
    let _serial = serial();
    let (tdir, out) = (temp("options-teacher"), temp("options-out"));
    teacher(&tdir);
    let general = tdir.join("general.txt");
    std::fs::write(&general, text(240)).unwrap();
    let device = Device::flex();
    let recipe = EmbedRecipe {
        token_weight: 1.0,
        hidden_weight: 1.0,
        attention_weight: 1.0,
        relation_weight: 1.0,
        train_embeddings: false,
        replace_tokens: 0.3,
        augment: true,
        prune_neurons: 0.0,
        distill_steps: 8,
        prune_steps: 2,
        general_sentences: 30,
        general_text: Some(general.clone()),
        ..recipe()
    };
    let r = run(&tdir, &text(160), &recipe, &out, &device, &mut |_, _, _, _| {}).unwrap();
    assert_eq!(r.general_sentences, 30);
    assert!(r.stages.iter().all(|s| s.spearman.is_finite() && s.cos_mean.is_finite()));
    // No narrowing: the pruned stage keeps the distilled width.
    assert_eq!(r.stages[2].params, r.stages[1].params);
    // Frozen tables: the student's token table is the teacher's.
    let teacher = Bert::from_pretrained(&tdir, &device).unwrap();
    let student = Bert::from_pretrained(&r.hf_dir, &device).unwrap();
    let (a, b) = (teacher.embeddings.word.weight.val(), student.embeddings.word.weight.val());
    assert_eq!(a.sub(b).abs().max().into_scalar::<f32>(), 0.0);
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&tdir).unwrap();
}

#[test]
fn a_student_with_every_teacher_layer_starts_at_zero_loss_on_every_term() {
    let _serial = serial();
    // The student keeps all three layers: it is the teacher, so the sentence, token,
    // hidden-state (layer k against teacher layer k), attention and relation terms are all 0 at
    // the first step. A wrong layer map or a mis-shaped target would show here.
    let (tdir, out) = (temp("zero-teacher"), temp("zero-out"));
    teacher(&tdir);
    let recipe = EmbedRecipe {
        layers: vec![0, 1, 2],
        token_weight: 1.0,
        hidden_weight: 1.0,
        attention_weight: 1.0,
        relation_weight: 1.0,
        distill_steps: 1,
        prune_neurons: 0.0,
        prune_steps: 1,
        ..recipe()
    };
    let r = run(&tdir, &text(160), &recipe, &out, &Device::flex(), &mut |_, _, _, _| {}).unwrap();
    let first = r.curve.iter().find(|(s, _, _)| s == "distill").map(|(_, _, l)| *l).unwrap();
    assert!(first.abs() < 1e-4, "loss of the teacher against itself: {first}");
    // With the default layer subset the same terms are clearly positive.
    let r = run(
        &tdir,
        &text(160),
        &EmbedRecipe { layers: Vec::new(), ..recipe },
        &out,
        &Device::flex(),
        &mut |_, _, _, _| {},
    )
    .unwrap();
    let first = r.curve.iter().find(|(s, _, _)| s == "distill").map(|(_, _, l)| *l).unwrap();
    assert!(first > 1e-2, "{first}");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&tdir).unwrap();
}
