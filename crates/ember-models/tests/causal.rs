//! The causal LM: parameter counts, causality, factorization and sharing, training that lowers
//! held-out perplexity, int8 conversion, and typed errors.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ember_layers::SharingMode;
use ember_models::{ByteTokenizer, CausalLmConfig, lm_loss, perplexity};

fn ids(v: &[i64], b: usize, s: usize, d: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(v.to_vec(), [b, s]), d)
}

fn host(t: Tensor<3>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

#[test]
fn parameter_counts_follow_the_config() {
    let d = Device::flex();
    let base = CausalLmConfig::new(256, 32, 4, 4, 64, 16);
    let variants = [
        base.clone(),
        base.clone().with_embedding_size(8),
        base.clone().with_sharing(SharingMode::All, 4),
        base.clone().with_sharing(SharingMode::Attention, 2),
        base.clone().with_sharing(SharingMode::FeedForward, 4),
        CausalLmConfig { tie_embeddings: false, ..base.clone().with_embedding_size(8) },
    ];
    for c in variants {
        let m = c.init(&d).unwrap();
        assert_eq!(m.num_params(), c.num_params(), "{c:?}");
    }
    // Sharing all four layers keeps one block: 4× fewer block parameters.
    let shared = base.clone().with_sharing(SharingMode::All, 4);
    assert_eq!(shared.distinct_blocks(), (1, 1));
    let block = 4 * (32 * 32 + 32) + 2 * 32 + (32 * 64 + 64 + 64 * 32 + 32 + 2 * 32);
    assert_eq!(base.num_params() - shared.num_params(), 3 * block);
}

#[test]
fn logits_are_causal() {
    let d = Device::flex();
    let m = CausalLmConfig::new(50, 16, 2, 2, 32, 8).with_embedding_size(8).init(&d).unwrap();
    let a = host(m.forward(ids(&[1, 2, 3, 4, 5, 6], 1, 6, &d)));
    let b = host(m.forward(ids(&[1, 2, 3, 9, 9, 9], 1, 6, &d)));
    // Positions 0..3 see only tokens 0..3, which are equal.
    let err = a[..3 * 50].iter().zip(&b[..3 * 50]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(err < 1e-5, "future tokens leaked: {err}");
    assert!(a[3 * 50..].iter().zip(&b[3 * 50..]).any(|(x, y)| (x - y).abs() > 1e-4));
    let out = m.try_forward(ids(&[1, 2, 3], 1, 3, &d), true).unwrap();
    assert_eq!(out.hidden_states.len(), 3);
    assert_eq!(out.attentions[1].dims(), [1, 2, 3, 3]);
}

#[test]
fn loss_by_hand_and_ignore_index() {
    let d = Device::flex();
    // Uniform logits over 4 tokens: loss ln 4 whatever the targets; ignored positions skipped.
    let logits = Tensor::<3>::zeros([1, 3, 4], &d);
    let t = ids(&[1, -100, 3], 1, 3, &d);
    let l: f32 = lm_loss(logits.clone(), t, Some(-100)).unwrap().into_scalar();
    assert!((l - 4f32.ln()).abs() < 1e-6);
    let all = ids(&[-100, -100, -100], 1, 3, &d);
    let l: f32 = lm_loss(logits, all, Some(-100)).unwrap().into_scalar();
    assert_eq!(l, 0.0);
    // Logits [0, ln 3] over 2 tokens, target 1: −log(3/4).
    let logits = Tensor::<3>::from_data(TensorData::new(vec![0.0f32, 3f32.ln()], [1, 1, 2]), &d);
    let l: f32 = lm_loss(logits.clone(), ids(&[1], 1, 1, &d), None).unwrap().into_scalar();
    assert!((l + (0.75f32).ln()).abs() < 1e-6);
    // Targets outside the vocabulary and misshaped targets are typed errors, not panics.
    let err = lm_loss(logits.clone(), ids(&[2], 1, 1, &d), None).unwrap_err();
    assert!(err.to_string().contains("token 2 is outside the vocabulary 0..2"), "{err}");
    let err = lm_loss(logits.clone(), ids(&[-5], 1, 1, &d), Some(-100)).unwrap_err();
    assert!(err.to_string().contains("token -5"), "{err}");
    assert!(lm_loss(logits, ids(&[1, 1], 1, 2, &d), None).is_err());
}

#[test]
fn training_lowers_held_out_perplexity_and_int8_keeps_it() {
    let d = Device::flex();
    let ad = d.clone().autodiff();
    // A deterministic periodic text: learnable, so perplexity must fall well below 256.
    let text = "the cat sat on the mat. the dog sat on the log. ".repeat(40);
    let tokens = ByteTokenizer.encode(&text);
    let (train, held) = tokens.split_at(tokens.len() * 3 / 4);
    let config = CausalLmConfig::new(256, 32, 2, 2, 64, 32).with_embedding_size(16);
    let mut model = config.init(&ad).unwrap();
    let before = perplexity(&model.valid(), held, 32, 8, &d).unwrap();
    let mut opt = AdamConfig::new().init();
    let seq = 32;
    for step in 0..60 {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for r in 0..8 {
            let start = (step * 37 + r * 101) % (train.len() - seq - 1);
            x.extend(train[start..start + seq].iter().map(|&t| i64::from(t)));
            y.extend(train[start + 1..start + seq + 1].iter().map(|&t| i64::from(t)));
        }
        let logits = model.forward(ids(&x, 8, seq, &ad));
        let loss = lm_loss(logits, ids(&y, 8, seq, &ad), None).unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = opt.step(3e-3, model, grads);
    }
    let trained = model.valid();
    let after = perplexity(&trained, held, 32, 8, &d).unwrap();
    eprintln!("held-out perplexity {before:.1} → {after:.2}");
    assert!(before > 100.0 && after < 8.0, "{before} → {after}");
    let (int8, _) = ember_quant::Quantizer::new(ember_quant::QuantizeConfig::new()).quantize(&trained).unwrap();
    assert!(int8.embeddings.word.is_quantized() && int8.decoder.feed_forward[0].inner.is_quantized());
    let q = perplexity(&int8, held, 32, 8, &d).unwrap();
    eprintln!("int8 held-out perplexity {q:.2}");
    assert!(q < after * 1.05, "{after} → {q}");
}

#[test]
fn bad_input_causal_lm() {
    let d = Device::flex();
    let err = CausalLmConfig::new(10, 30, 2, 4, 8, 8).init(&d).unwrap_err();
    assert!(err.to_string().contains("n_heads = 4: a divisor of d_model = 30"), "{err}");
    let err = CausalLmConfig::new(10, 8, 2, 2, 8, 8).with_sharing(SharingMode::All, 3).init(&d).unwrap_err();
    assert!(err.to_string().contains("share_group = 3"), "{err}");
    let m = CausalLmConfig::new(10, 8, 1, 2, 8, 4).init(&d).unwrap();
    let err = m.try_forward(ids(&[1, 2, 3, 4, 5], 1, 5, &d), false).unwrap_err();
    assert!(err.to_string().contains("shape [1, 5], expected a batch ≥ 1 of 1..=4 tokens"), "{err}");
    let err = m.try_forward(ids(&[1, 10], 1, 2, &d), false).unwrap_err();
    assert!(err.to_string().contains("token 10 is outside the vocabulary 0..10"), "{err}");
    let err = perplexity(&m, &[1, 2], 4, 1, &d).unwrap_err();
    assert!(err.to_string().contains("need at least 5"), "{err}");
    let err = perplexity(&m, &[1, 2, 30, 4, 5, 6], 4, 1, &d).unwrap_err();
    assert!(err.to_string().contains("token 30 is outside the vocabulary 0..10"), "{err}");
    assert_eq!(ByteTokenizer.decode(&ByteTokenizer.encode("héllo")), "héllo");
}
