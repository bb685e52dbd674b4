//! Ember's own save layout: a shrunk or shared model saves with its architecture and loads back
//! to the same outputs; files of the previous model layout, of another kind or of Hugging Face
//! are refused with errors that say which and what to do.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_models::save::{CONFIG_FILE, WEIGHTS_FILE};
use ember_models::{Bert, BertConfig, CausalLm, CausalLmConfig, Encoded, ModelError, SharedInit, SharingMode};
use ember_quant::{QuantizeConfig, Quantizer};
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-save-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn bert(device: &Device) -> Bert {
    let config = BertConfig::from_json(common::CONFIG).unwrap();
    let bytes = common::serialize_f32(&common::hf_tensors());
    ember_models::load_bert_bytes(config.init(device).unwrap(), bytes, "tiny").unwrap().0
}

#[test]
fn a_shrunk_causal_lm_saves_its_widths_and_loads_back() {
    let d = Device::flex();
    let config =
        CausalLmConfig::new(40, 16, 4, 4, 32, 12).with_embedding_size(8).with_sharing(SharingMode::FeedForward, 2);
    let model = config.init(&d).unwrap();
    assert_eq!(model.config().unwrap(), config, "an unshrunk model's config is its own");
    let small = model.retain_heads(1, &[0, 3]).unwrap().retain_neurons(0, &(0..16).collect::<Vec<_>>()).unwrap();
    let small = small.retain_layers(&[0, 1, 3]).unwrap();
    let c = small.config().unwrap();
    let layout = c.layout.clone().expect("per-block widths");
    assert_eq!(layout.attention_heads, vec![4, 2, 4]);
    assert_eq!(layout.ffn_widths, vec![16, 32]);
    assert_eq!(layout.feed_forward_index, vec![0, 0, 1]);
    assert_eq!(c.num_params(), small.num_params());
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 9, 30, 2, 7], [1, 6]), &d);
    for (name, m) in
        [("float", small.clone()), ("int8", Quantizer::new(QuantizeConfig::new()).quantize(&small).unwrap().0)]
    {
        let dir = tmp(&format!("causal-{name}"));
        m.save(&dir).unwrap();
        let back = CausalLm::load(&dir, &d).unwrap();
        assert_eq!(host(back.forward(ids.clone())), host(m.forward(ids.clone())), "{name}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(json["kind"], "causal_lm");
        assert_eq!(json["layout_version"], 2);
        assert_eq!(json["config"]["layout"]["attention_heads"], serde_json::json!([4, 2, 4]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn models_whose_blocks_all_lost_the_same_heads_rebuild_from_their_configs() {
    // Every block narrowed alike: the uniform config must keep the head width, not derive a new
    // one from the model width.
    let d = Device::flex();
    let lm = CausalLmConfig::new(40, 16, 2, 4, 32, 12).init(&d).unwrap();
    let lm = lm.retain_heads(0, &[0, 1]).unwrap().retain_heads(1, &[2, 3]).unwrap();
    let c = lm.config().unwrap();
    assert_eq!(c.num_params(), lm.num_params());
    assert_eq!(c.init(&d).unwrap().decoder.layout(), lm.decoder.layout());
    assert_eq!(c.init(&d).unwrap().decoder.attention[0].head_dim, 4);
    let dir = tmp("uniform-lm");
    lm.save(&dir).unwrap();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 9], [1, 3]), &d);
    assert_eq!(host(CausalLm::load(&dir, &d).unwrap().forward(ids.clone())), host(lm.forward(ids)));
    let bert = bert(&d).retain_heads(0, &[1]).unwrap().retain_heads(1, &[0]).unwrap();
    let arch = bert.architecture().unwrap();
    assert_eq!((arch.encoder.n_heads, arch.encoder.head_dim, arch.encoder.layout.is_none()), (1, Some(4), true));
    assert_eq!(arch.num_params().unwrap(), bert.num_params());
    bert.save(&dir).unwrap();
    let batch = Encoded::from_ids(&[vec![1, 5, 7, 2]], 0).unwrap();
    assert_eq!(host(Bert::load(&dir, &d).unwrap().embed(&batch).unwrap()), host(bert.embed(&batch).unwrap()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_shared_bert_student_saves_and_loads_back() {
    let d = Device::flex();
    let teacher = bert(&d);
    let batch = Encoded::from_ids(&[vec![1, 5, 7, 2], vec![2, 9, 3]], 0).unwrap();
    for init in [SharedInit::Mean, SharedInit::First] {
        let student = teacher.to_shared(SharingMode::All, 1, init).unwrap();
        assert_eq!(student.encoder.attention.len(), 1);
        let arch = student.architecture().unwrap();
        assert_eq!((arch.encoder.sharing, arch.encoder.layout.is_none()), (SharingMode::All, true));
        assert!(student.num_params() < teacher.num_params());
        let dir = tmp(&format!("shared-{init:?}"));
        student.save(&dir).unwrap();
        let back = Bert::load(&dir, &d).unwrap();
        assert_eq!(back.encoder.attention.len(), 1);
        assert_eq!(host(back.embed(&batch).unwrap()), host(student.embed(&batch).unwrap()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn bad_input_files_of_the_previous_layout_another_kind_or_hugging_face() {
    let d = Device::flex();
    let model = bert(&d);
    let dir = tmp("layouts");
    model.save(&dir).unwrap();
    let load_err = |dir: &std::path::Path| Bert::load(dir, &d).expect_err("an error").to_string();

    // Weights written by `ember_quant::save_quantized` alone (how ember-models 0.1 saved).
    ember_quant::save_quantized(&model, dir.join(WEIGHTS_FILE)).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("no model layout version: saved by ember-models 0.1 (layout 1"), "{e}");

    // An ember.json of another layout version.
    model.save(&dir).unwrap();
    let text = std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap();
    std::fs::write(dir.join(CONFIG_FILE), text.replace("\"layout_version\": 2", "\"layout_version\": 1")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model layout version 1, this build reads version 2"), "{e}");

    // Another kind of model.
    model.save(&dir).unwrap();
    let e = CausalLm::load(&dir, &d).expect_err("an error").to_string();
    assert!(e.contains("holds a `bert` model, expected `causal_lm`"), "{e}");

    // A single file (the old way) and a Hugging Face directory.
    let e = load_err(&dir.join(WEIGHTS_FILE));
    assert!(e.contains("layout 1"), "{e}");
    let hf = tmp("hf");
    std::fs::create_dir_all(&hf).unwrap();
    std::fs::write(hf.join("config.json"), common::CONFIG).unwrap();
    let e = load_err(&hf);
    assert!(e.contains("Bert::from_pretrained"), "{e}");
    // And the other way round.
    let e = Bert::from_pretrained(&dir, &d).expect_err("an error").to_string();
    assert!(e.contains("saved by Ember: load it with Bert::load"), "{e}");

    // Files of two different saves (a save interrupted between its two renames).
    let other_dir = tmp("other-save");
    model.save(&other_dir).unwrap();
    model.save(&dir).unwrap();
    std::fs::copy(other_dir.join(CONFIG_FILE), dir.join(CONFIG_FILE)).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("come from different saves (an interrupted save?)"), "{e}");
    let _ = std::fs::remove_dir_all(&other_dir);

    // Weights that do not fit the architecture (a model of other sizes saved over the weights).
    let other = BertConfig::new(20, 8, 1, 2, 16, 10).init(&d).unwrap();
    ember_quant::save_quantized_with(
        &other,
        dir.join(WEIGHTS_FILE),
        &[
            ("ember_models.layout".to_string(), "2".to_string()),
            ("ember_models.kind".to_string(), "bert".to_string()),
            ("ember_models.save_id".to_string(), "forged".to_string()),
        ]
        .into_iter()
        .collect(),
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = json["save_id"].as_str().unwrap().to_string();
    std::fs::write(dir.join(CONFIG_FILE), text.replace(&id, "forged")).unwrap();
    let e = Bert::load(&dir, &d).expect_err("an error");
    assert!(matches!(e, ModelError::Quant(_)) && e.to_string().contains("tensors missing from the file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&hf);
}
