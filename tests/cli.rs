//! The `ember` command as a user runs it: the built binary on a small BERT checkpoint written
//! in Hugging Face's layout with a word-level tokenizer (no download). Each subcommand's files
//! are checked against the library called directly; bad input must give one line on standard
//! error, exit status 1 and no panic, and must leave the user's files as they were.

use burn::tensor::Device;
use ember_slm::models::{Bert, BertClassifier, BertConfig, TextTokenizer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WORDS: [&str; 24] = [
    "the", "a", "whale", "ship", "sea", "captain", "crew", "storm", "wind", "deck", "sailed", "saw", "white", "old",
    "quiet", "loud", "night", "day", "and", "under", "over", "good", "bad", "film",
];

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ember-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[PAD]".into(), 0.into());
    vocab.insert("[UNK]".into(), 1.into());
    for (i, w) in WORDS.iter().enumerate() {
        vocab.insert((*w).into(), (i + 2).into());
    }
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
    .to_string()
}

/// A 3-layer encoder (width 16, 4 heads, FFN 32) in Hugging Face's layout.
fn checkpoint(dir: &Path) -> Bert {
    let device = Device::flex();
    device.seed(11);
    let model = BertConfig::new(WORDS.len() + 2, 16, 3, 4, 32, 32).init(&device).unwrap();
    model.save_pretrained(dir, None).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).unwrap();
    model
}

fn sentences(dir: &Path) -> PathBuf {
    let text = "the whale saw the ship\nA quiet night under the sea\nthe old captain and the crew sailed\nloud storm over the deck\nwhite wind\n";
    let p = dir.join("sentences.txt");
    std::fs::write(&p, text).unwrap();
    p
}

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = ember(args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ember {args:?} failed:\n{stderr}\n{stdout}");
    stdout.into_owned()
}

/// Runs a bad invocation: exit status 1, one line on stderr naming `needle`, no panic.
fn refused(args: &[&str], needle: &str) {
    let out = ember(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "ember {args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "ember {args:?}: not one line:\n{stderr}");
    assert!(stderr.starts_with("ember: error: "), "ember {args:?}: {stderr}");
    assert!(stderr.contains(needle), "ember {args:?}: {stderr:?} lacks {needle:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_and_version() {
    let help = ok(&["--help"]);
    for sub in ["compress", "quantize", "prune", "embed", "eval", "bench"] {
        assert!(help.contains(sub), "--help lacks {sub}:\n{help}");
        let sub_help = ok(&[sub, "--help"]);
        assert!(sub_help.contains("Usage: ember") && sub_help.contains("--help"), "{sub_help}");
    }
    assert_eq!(ok(&["--version"]).trim(), format!("ember {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(ok(&["quantize", "--version"]).trim(), format!("ember-quantize {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_input_is_one_line_and_exit_status_1() {
    let dir = temp("bad");
    let model = dir.join("model");
    checkpoint(&model);
    let text = sentences(&dir);
    let missing = dir.join("missing");
    refused(&[], "a subcommand is needed");
    refused(&["shrinkify"], "shrinkify");
    refused(&["quantize"], "--model");
    refused(&["quantize", "--model", s(&missing), "--out", s(&dir.join("o"))], "not a directory");
    refused(&["quantize", "--model", s(&dir), "--out", s(&dir.join("o"))], "neither config.json");
    refused(&["quantize", "--model", s(&model), "--out", s(&dir.join("o")), "--threads", "0"], "--threads");
    refused(&["quantize", "--model", s(&model), "--out", s(&dir.join("o")), "--device", "tpu"], "--device tpu");
    refused(&["quantize", "--model", s(&model), "--out", s(&dir.join("o")), "--mode", "fast"], "fast");
    refused(&["quantize", "--model", s(&model), "--out", s(&dir.join("o")), "--sentences", s(&missing)], "missing");
    refused(
        &["quantize", "--model", s(&model), "--out", s(&dir.join("o")), "--exclude", "."],
        "include/exclude patterns",
    );
    refused(&["prune", "--model", s(&model), "--out", s(&dir.join("p"))], "nothing to remove");
    refused(&["prune", "--model", s(&model), "--out", s(&dir.join("p")), "--heads", "1.5"], "--heads 1.5");
    refused(&["prune", "--model", s(&model), "--out", s(&dir.join("p")), "--layers", "0,7"], "layer 7");
    refused(&["embed", "--model", s(&model), "--input", s(&missing), "--out", s(&dir.join("e.jsonl"))], "missing");
    refused(&["embed", "--model", s(&model), "--input", s(&text), "--out", s(&dir)], "is a directory");
    // This tokenizer adds no [CLS] / [SEP]: an empty line has nothing to embed, and the error
    // names its line.
    let gap = dir.join("gap.txt");
    std::fs::write(&gap, "the whale\n\nthe ship\n").unwrap();
    refused(&["embed", "--model", s(&model), "--input", s(&gap), "--out", s(&dir.join("g.npy"))], "line 2: no token");
    assert!(!dir.join("g.npy").exists());
    refused(&["bench", "--model", s(&model), "--batch", "0"], "--batch");
    refused(&["bench", "--model", s(&model), "--batch", "x"], "x");
    refused(&["eval", "--task", "imdb", "--dev", s(&missing), "--predictions", s(&missing)], "imdb");
    refused(&["eval", "--task", "sst-2", "--dev", s(&missing), "--predictions", s(&missing)], "missing");
    refused(&["eval", "--task", "sst-2", "--dev", s(&missing)], "--predictions");
    refused(&["eval", "--task", "cb", "--dev", "val.jsonl", "--model", s(&model)], "--model runs GLUE tasks");
    refused(&["compress", "--teacher", s(&model)], "--task");
    refused(&["compress", "--teacher", s(&model), "--task", "embed"], "needs --data");
    refused(&["compress", "--quick", "--recipe", s(&missing)], "cannot be used with");
    // A checkpoint whose weights are not safetensors: the loader's error, on one line.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("model.safetensors"), b"not a safetensors file").unwrap();
    refused(&["quantize", "--model", s(&broken), "--out", s(&dir.join("o"))], "model.safetensors");
    // No refusal above left an output directory behind (the model is converted before anything
    // is written).
    assert!(!dir.join("o").exists());
    // The user's files are never overwritten without --force.
    let busy = dir.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    refused(&["quantize", "--model", s(&model), "--out", s(&busy), "--latency-ms", "0"], "not empty");
    assert_eq!(std::fs::read_to_string(busy.join("notes.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    let taken = dir.join("taken.jsonl");
    std::fs::write(&taken, "mine").unwrap();
    refused(&["embed", "--model", s(&model), "--input", s(&text), "--out", s(&taken)], "--force");
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "mine");
    let _ = std::fs::remove_dir_all(&dir);
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// quantize → embed (float and int8, three formats) → bench → prune, each checked against the
/// library.
#[test]
fn model_commands_on_a_generated_checkpoint() {
    let dir = temp("models");
    let model_dir = dir.join("model");
    let model = checkpoint(&model_dir);
    let text = sentences(&dir);
    let content = std::fs::read_to_string(&text).unwrap();
    let lines: Vec<&str> = content.lines().collect();

    // quantize: Ember's int8 layout with the tokenizer and a report; reloads as int8.
    let int8_dir = dir.join("int8");
    let stdout = ok(&[
        "quantize",
        "--model",
        s(&model_dir),
        "--out",
        s(&int8_dir),
        "--sentences",
        s(&text),
        "--latency-ms",
        "5",
        "--threads",
        "1",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for f in ["ember.json", "model.ember.safetensors", "tokenizer.json", "quantize.json"] {
        assert!(int8_dir.join(f).is_file(), "{f} missing");
    }
    // Six linear layers per block and the three embedding tables.
    assert_eq!(report["layers_converted"], 3 * 6 + 3, "{report}");
    assert_eq!(report["params"].as_u64().unwrap(), model.architecture().unwrap().num_params().unwrap() as u64);
    // (At width 16 the scales and the file's header are a large share; MiniLM's ratio is 0.25.)
    assert!(report["int8_bytes"].as_u64().unwrap() < report["float_bytes"].as_u64().unwrap(), "{report}");
    assert_eq!(
        report["float_bytes"].as_u64().unwrap(),
        std::fs::metadata(model_dir.join("model.safetensors")).unwrap().len()
    );
    assert_eq!(
        report["int8_bytes"].as_u64().unwrap(),
        std::fs::metadata(int8_dir.join("model.ember.safetensors")).unwrap().len()
    );
    assert!(report["output_cosine_mean"].as_f64().unwrap() > 0.99, "{report}");
    assert!(report["latency_p50_ms"]["int8"]["batch_32"].as_f64().unwrap() > 0.0);
    let device = Device::flex();
    let int8 = Bert::load(&int8_dir, &device).unwrap();
    assert!(int8.encoder.attention[0].query.is_quantized());
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(int8_dir.join("quantize.json")).unwrap()).unwrap();
    assert_eq!(written, report);
    // Static mode with an MSE observer converts too.
    let static_dir = dir.join("int8-static");
    ok(&[
        "quantize",
        "--model",
        s(&model_dir),
        "--out",
        s(&static_dir),
        "--mode",
        "static",
        "--observer",
        "mse",
        "--latency-ms",
        "0",
    ]);
    assert!(Bert::load(&static_dir, &device).unwrap().encoder.feed_forward[0].inner.is_quantized());

    // embed: every input line gets a row equal to the library's embedding.
    let tok = TextTokenizer::from_file(model_dir.join("tokenizer.json"), 32).unwrap();
    let expect = |m: &Bert| -> Vec<Vec<f32>> {
        let e = m.embed(&tok.encode_batch(&lines).unwrap()).unwrap();
        e.into_data().try_to_vec::<f32>().unwrap().chunks(16).map(<[f32]>::to_vec).collect()
    };
    let (float_ref, int8_ref) = (expect(&model), expect(&int8));
    let jsonl = dir.join("e.jsonl");
    ok(&["embed", "--model", s(&model_dir), "--input", s(&text), "--out", s(&jsonl), "--batch", "2"]);
    let rows: Vec<Vec<f32>> =
        std::fs::read_to_string(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), lines.len());
    for (r, e) in rows.iter().zip(&float_ref) {
        assert!((norm(r) - 1.0).abs() < 1e-4, "{r:?}");
        assert!(r.iter().zip(e).all(|(a, b)| (a - b).abs() < 1e-4), "{r:?} vs {e:?}");
    }
    let npy = dir.join("e.npy");
    ok(&["embed", "--model", s(&int8_dir), "--input", s(&text), "--out", s(&npy)]);
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains(&format!("'shape': ({}, 16)", lines.len())), "{header}");
    let values: Vec<f32> =
        bytes[10 + header_len..].chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(values.len(), lines.len() * 16);
    for (r, e) in values.chunks(16).zip(&int8_ref) {
        assert!(r.iter().zip(e).all(|(a, b)| (a - b).abs() < 1e-4), "{r:?} vs {e:?}");
    }
    let tsv = dir.join("e.tsv");
    ok(&["embed", "--model", s(&model_dir), "--input", s(&text), "--out", s(&tsv)]);
    let t = std::fs::read_to_string(&tsv).unwrap();
    assert_eq!(t.lines().count(), lines.len());
    assert!(t.lines().all(|l| l.split('\t').count() == 16));
    // --force replaces an earlier file.
    ok(&["embed", "--model", s(&model_dir), "--input", s(&text), "--out", s(&tsv), "--force", "--format", "jsonl"]);
    assert!(std::fs::read_to_string(&tsv).unwrap().starts_with('['));

    // bench: one case per batch size, the comparison as a ratio.
    let stdout = ok(&[
        "bench",
        "--model",
        s(&int8_dir),
        "--compare",
        s(&model_dir),
        "--batch",
        "1,4",
        "--min-ms",
        "5",
        "--threads",
        "1",
        "--json",
    ]);
    let b: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let cases = b["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!((cases[0]["batch"].as_u64(), cases[1]["batch"].as_u64()), (Some(1), Some(4)));
    for c in cases {
        let (p50, cmp, ratio) =
            (c["p50_ms"].as_f64().unwrap(), c["compare_p50_ms"].as_f64().unwrap(), c["ratio"].as_f64().unwrap());
        assert!(p50 > 0.0 && (ratio - p50 / cmp).abs() < 1e-9, "{c}");
    }
    assert_eq!(b["int8"], true);
    assert!(b["machine"]["cpu"].as_str().is_some_and(|c| !c.is_empty()));
    let table = ok(&["bench", "--model", s(&model_dir), "--batch", "2", "--min-ms", "5"]);
    assert!(table.contains("| 2 |") && table.contains("int8 kernel"), "{table}");

    // prune: half the heads and neurons, layers 0 and 2, in Hugging Face's layout.
    let pruned_dir = dir.join("pruned");
    let stdout = ok(&[
        "prune",
        "--model",
        s(&model_dir),
        "--out",
        s(&pruned_dir),
        "--heads",
        "0.5",
        "--neurons",
        "0.5",
        "--layers",
        "0,2",
        "--sentences",
        s(&text),
        "--latency-ms",
        "0",
        "--json",
    ]);
    let p: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let pruned = Bert::from_pretrained(&pruned_dir, &device).unwrap();
    assert_eq!(pruned.n_layers(), 2);
    assert!(pruned.encoder.attention.iter().all(|a| a.n_heads == 2));
    assert!(pruned.encoder.feed_forward.iter().all(|f| f.d_ff() == 16));
    assert_eq!(p["params"]["after"].as_u64().unwrap(), pruned.architecture().unwrap().num_params().unwrap() as u64);
    assert_eq!(p["params"]["before"].as_u64().unwrap(), model.architecture().unwrap().num_params().unwrap() as u64);
    assert_eq!(p["architecture"]["after"]["heads"], serde_json::json!([2, 2]));
    assert!(pruned_dir.join("tokenizer.json").is_file() && pruned_dir.join("prune.json").is_file());
    // The same pruning by hand through the library gives the same weights' embeddings.
    let c = p["output_cosine_mean"].as_f64().unwrap();
    assert!(c > -1.0 && c <= 1.0 + 1e-9, "{p}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// eval: GLUE predictions (one per line and the submission layout), SuperGLUE JSONL, and a
/// classifier run on a dev file, each against a score worked by hand or by the library.
#[test]
fn eval_scores_against_hand_worked_metrics() {
    let dir = temp("eval");
    let dev = dir.join("dev.tsv");
    std::fs::write(
        &dev,
        "sentence\tlabel\ngood film\t1\nbad film\t0\na good day\t1\nthe quiet night\t0\nbad storm\t0\n",
    )
    .unwrap();
    // 4 of 5 right.
    let preds = dir.join("preds.txt");
    std::fs::write(&preds, "1\n0\n1\n1\n0\n").unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--task", "SST-2", "--dev", s(&dev), "--predictions", s(&preds), "--json"]))
            .unwrap();
    assert_eq!(v["examples"], 5);
    assert!((v["metrics"]["accuracy"].as_f64().unwrap() - 0.8).abs() < 1e-12, "{v}");
    let sub = dir.join("SST-2.tsv");
    std::fs::write(&sub, "index\tprediction\n0\t1\n1\t0\n2\t1\n3\t1\n4\t0\n").unwrap();
    let text = ok(&["eval", "--task", "sst2", "--dev", s(&dev), "--predictions", s(&sub)]);
    assert!(text.contains("accuracy") && text.contains("0.8000"), "{text}");
    // Too few predictions, or a label the task lacks, are refused.
    std::fs::write(&preds, "1\n0\n").unwrap();
    refused(&["eval", "--task", "SST-2", "--dev", s(&dev), "--predictions", s(&preds)], "2");
    std::fs::write(&preds, "1\n0\nmaybe\n1\n0\n").unwrap();
    refused(&["eval", "--task", "SST-2", "--dev", s(&dev), "--predictions", s(&preds)], "maybe");

    // SuperGLUE CB: 3 of 4 right; macro-F1 over 3 classes by hand.
    let val = dir.join("val.jsonl");
    let rows = [("entailment", 0), ("contradiction", 1), ("neutral", 2), ("entailment", 3)];
    let mut t = String::new();
    for (label, i) in rows {
        t.push_str(&format!(
            "{{\"premise\": \"p{i}\", \"hypothesis\": \"h{i}\", \"label\": \"{label}\", \"idx\": {i}}}\n"
        ));
    }
    std::fs::write(&val, t).unwrap();
    let sg = dir.join("CB.jsonl");
    std::fs::write(
        &sg,
        "{\"idx\": 0, \"label\": \"entailment\"}\n{\"idx\": 1, \"label\": \"contradiction\"}\n{\"idx\": 2, \"label\": \"entailment\"}\n{\"idx\": 3, \"label\": \"entailment\"}\n",
    )
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--task", "CB", "--dev", s(&val), "--predictions", s(&sg), "--json"]))
            .unwrap();
    assert_eq!(v["suite"], "superglue");
    assert!((v["metrics"]["accuracy"].as_f64().unwrap() - 0.75).abs() < 1e-12, "{v}");
    // F1: entailment 2·(2/3·1)/(2/3+1) = 0.8, contradiction 1, neutral 0 → mean 0.6.
    let f1 = v["metrics"].as_object().unwrap().iter().find(|(k, _)| k.contains("f1")).unwrap().1.as_f64().unwrap();
    assert!((f1 - 0.6).abs() < 1e-9, "{v}");

    // A classifier in Ember's layout on the dev file: the command's accuracy is the library's.
    let device = Device::flex();
    device.seed(3);
    let bert = BertConfig::new(WORDS.len() + 2, 16, 2, 4, 32, 32).init(&device).unwrap();
    let labels = vec!["0".to_string(), "1".to_string()];
    let clf = BertClassifier::new(bert, labels.clone(), 0.0).unwrap();
    let model_dir = dir.join("clf");
    clf.save(&model_dir, &labels).unwrap();
    std::fs::write(model_dir.join("tokenizer.json"), tokenizer_json()).unwrap();
    let tok = TextTokenizer::from_file(model_dir.join("tokenizer.json"), 32).unwrap();
    let texts = ["good film", "bad film", "a good day", "the quiet night", "bad storm"];
    let gold = [1usize, 0, 1, 0, 0];
    let logits = clf.logits(&tok.encode_batch(&texts).unwrap()).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let right = logits.chunks(2).zip(gold).filter(|(l, g)| usize::from(l[1] > l[0]) == *g).count();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--task", "SST-2", "--dev", s(&dev), "--model", s(&model_dir), "--json"]))
            .unwrap();
    assert!((v["metrics"]["accuracy"].as_f64().unwrap() - right as f64 / 5.0).abs() < 1e-12, "{v} vs {right}/5");
    // An encoder has no head; a classifier for other labels does not fit the task.
    let enc = dir.join("enc");
    checkpoint(&enc);
    refused(&["eval", "--task", "SST-2", "--dev", s(&dev), "--model", s(&enc)], "no task head");
    let other = dir.join("clf-other-labels");
    let named = vec!["neg".to_string(), "pos".to_string()];
    BertClassifier::new(clf.bert.clone(), named.clone(), 0.0).unwrap().save(&other, &named).unwrap();
    std::fs::write(other.join("tokenizer.json"), tokenizer_json()).unwrap();
    refused(&["eval", "--task", "SST-2", "--dev", s(&dev), "--model", s(&other)], "labels [\"neg\", \"pos\"] are not");
    let _ = std::fs::remove_dir_all(&dir);
}

/// compress: the recipe a run would use prints as JSON and reads back unchanged.
#[test]
fn compress_recipes_round_trip() {
    let dir = temp("recipe");
    for mode in [&[][..], &["--teacher", "m", "--task", "embed"][..], &["--teacher", "m", "--task", "classify"][..]] {
        let mut a = vec!["compress", "--print-recipe", "--quick"];
        a.extend_from_slice(mode);
        let printed = ok(&a);
        let file = dir.join("r.json");
        std::fs::write(&file, &printed).unwrap();
        let mut b = vec!["compress", "--print-recipe", "--recipe", s(&file)];
        b.extend_from_slice(mode);
        assert_eq!(ok(&b), printed, "{mode:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
