//! Structure of the one layer family: causal and padding masks, removing heads, neurons and
//! layers, sharing blocks (students from teachers), configs that rebuild a shrunk encoder, and
//! the same blocks converted to int8 by ember-quant.

use burn::module::{Module, Param};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use ember_layers::*;
use ember_quant::{QuantizeConfig, Quantizer};

fn devices() -> Vec<Device> {
    ember_testkit::device_list()
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn input(seed: usize, dims: [usize; 3], d: &Device) -> Tensor<3> {
    let n = dims.iter().product::<usize>();
    let v: Vec<f32> = (0..n).map(|i| ((i * 7919 + seed * 104_729) % 997) as f32 / 498.0 - 1.0).collect();
    Tensor::from_data(TensorData::new(v, dims), d)
}

#[test]
fn a_causal_encoder_never_looks_ahead() {
    for d in devices() {
        let enc = EncoderConfig::new(8, 2, 16, 2).with_causal(true).with_norm_first(true).init(&d).unwrap();
        let x = input(1, [1, 6, 8], &d);
        // Change the last two positions only: the first four outputs must not move.
        let mut v = to_vec(x.clone());
        for x in v[4 * 8..].iter_mut() {
            *x += 3.0;
        }
        let y = Tensor::<3>::from_data(TensorData::new(v, [1, 6, 8]), &d);
        let (a, b) = (enc.forward(x, None, true), enc.forward(y, None, false));
        let head = |t: Tensor<3>| to_vec(t.slice([0..1, 0..4, 0..8]));
        assert!(max_diff(&head(a.hidden.clone()), &head(b.hidden.clone())) < 1e-5, "{d:?}");
        assert!(max_diff(&to_vec(a.hidden), &to_vec(b.hidden)) > 1e-3, "the later positions do change");
        // Every attention row puts zero weight above the diagonal.
        let p = to_vec(a.attentions[1].clone()); // [1, 2, 6, 6]
        for (i, w) in p.iter().enumerate() {
            let (row, col) = ((i / 6) % 6, i % 6);
            if col > row {
                assert_eq!(*w, 0.0, "{d:?}: query {row} sees key {col}");
            }
        }
    }
}

#[test]
fn a_fully_padded_row_attends_uniformly_instead_of_nan() {
    for d in devices() {
        let att = AttentionConfig::new(8, 2).init(&d).unwrap();
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(vec![true; 3], [1, 3]), &d);
        let o = att.forward(input(2, [1, 3, 8], &d), &AttentionMask::new(Some(pad), true, 1, 3, &d).unwrap());
        let p = to_vec(o.probs);
        assert!(p.iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-6), "{d:?}: {p:?}");
        assert!(to_vec(o.context).iter().all(|v| v.is_finite()));
    }
    // The constant is exact in f16 (10⁴ = 1.220703125 · 2¹³ needs 9 of its 10 mantissa bits; max
    // 65 504) and rounds to −9 984 in bf16 (7 mantissa bits): finite in both.
    assert_eq!(MASKED_SCORE, -10_000.0);
    assert_eq!((10_000.0f32 / 8192.0 * 1024.0).fract(), 0.0, "exact in f16");
    let bf16 = f32::from_bits((MASKED_SCORE.to_bits() + 0x7fff + ((MASKED_SCORE.to_bits() >> 16) & 1)) & 0xffff_0000);
    assert_eq!(bf16, -9_984.0, "bf16 rounds it to a nearby finite value");
}

#[test]
fn retained_layers_equal_the_full_models_hidden_states() {
    for d in devices() {
        for sharing in [SharingMode::None, SharingMode::All] {
            let enc = EncoderConfig::new(8, 2, 16, 4).with_sharing(sharing).init(&d).unwrap();
            let x = input(3, [2, 5, 8], &d);
            let full = enc.forward(x.clone(), None, true);
            for keep in [vec![0], vec![0, 1], vec![0, 1, 2]] {
                let part = enc.retain_layers(&keep).unwrap();
                assert_eq!(part.n_layers(), keep.len());
                let got = to_vec(part.forward(x.clone(), None, false).hidden);
                let want = to_vec(full.hidden_states[keep.len()].clone());
                assert!(max_diff(&got, &want) < 1e-5, "{d:?} {sharing:?} {keep:?}");
            }
            // DistilBERT-style: every other layer; unused blocks are dropped.
            let odd = enc.retain_layers(&[1, 3]).unwrap();
            let expect_blocks = if sharing == SharingMode::None { 2 } else { 1 };
            assert_eq!(odd.attention.len(), expect_blocks);
            assert_eq!(odd.attention[0].query.weight.id, enc.attention[enc.attention_index[1]].query.weight.id);
        }
    }
}

#[test]
fn a_shrunk_encoders_config_rebuilds_it_and_its_saved_weights_load() {
    let d = Device::flex();
    let enc = EncoderConfig::new(16, 4, 32, 3).init(&d).unwrap();
    let small = enc
        .retain_heads(0, &[1, 3])
        .unwrap()
        .retain_neurons(2, &(0..32).step_by(3).collect::<Vec<_>>())
        .unwrap()
        .retain_layers(&[0, 2])
        .unwrap();
    let config = small.config().unwrap();
    let layout = config.layout.clone().expect("non-uniform widths need a layout");
    assert_eq!(layout.attention_heads, vec![2, 4]);
    assert_eq!(layout.ffn_widths, vec![32, 11]);
    assert_eq!(config.head_dim().unwrap(), 4);
    let (a, f, n) = config.num_params().unwrap();
    assert_eq!(a + f + n, small.num_params());
    // The config is serde data: through JSON, a skeleton, and the saved weights back.
    let json = serde_json::to_string(&config).unwrap();
    let back: EncoderConfig = serde_json::from_str(&json).unwrap();
    let file = std::env::temp_dir().join(format!("ember-layers-shrunk-{}.safetensors", std::process::id()));
    ember_quant::save_quantized(&small, &file).unwrap();
    let loaded = ember_quant::load_quantized(back.init(&d).unwrap(), &file).unwrap();
    let _ = std::fs::remove_file(&file);
    let x = input(4, [1, 4, 16], &d);
    assert_eq!(to_vec(loaded.forward(x.clone(), None, false).hidden), to_vec(small.forward(x, None, false).hidden));
    // An unshrunk encoder keeps the short, uniform config.
    let uniform = EncoderConfig::new(16, 4, 32, 6).with_sharing(SharingMode::All).with_n_groups(2);
    let rebuilt = uniform.init(&d).unwrap().config().unwrap();
    assert_eq!((rebuilt.layout, rebuilt.sharing, rebuilt.n_groups), (None, SharingMode::All, 2));
}

#[test]
fn to_shared_initialises_each_group_from_its_layers() {
    let d = Device::flex();
    let enc = EncoderConfig::new(8, 2, 16, 4).init(&d).unwrap();
    let w = |e: &Encoder, i: usize| to_vec(e.attention[i].query.weight.val());
    let mean = enc.to_shared(SharingMode::All, 2, SharedInit::Mean).unwrap();
    assert_eq!((mean.attention.len(), mean.feed_forward.len()), (2, 2));
    assert_eq!(mean.attention_index, vec![0, 0, 1, 1]);
    let want: Vec<f32> = w(&enc, 2).iter().zip(w(&enc, 3)).map(|(a, b)| (a + b) / 2.0).collect();
    assert!(max_diff(&w(&mean, 1), &want) < 1e-6);
    let g0 = to_vec(enc.feed_forward_norm[0].gamma.val().add(enc.feed_forward_norm[1].gamma.val()).div_scalar(2.0));
    assert!(max_diff(&to_vec(mean.feed_forward_norm[0].gamma.val()), &g0) < 1e-6);
    let first = enc.to_shared(SharingMode::All, 1, SharedInit::First).unwrap();
    assert_eq!(w(&first, 0), w(&enc, 0));
    assert_ne!(first.attention[0].query.weight.id, enc.attention[0].query.weight.id, "fresh parameters");
    assert_eq!(first.num_params() * 4, enc.num_params(), "one layer's parameters instead of four");
    // Attention-only sharing keeps one feed-forward block per layer.
    let att = enc.to_shared(SharingMode::Attention, 1, SharedInit::Mean).unwrap();
    assert_eq!((att.attention.len(), att.feed_forward.len()), (1, 4));
    assert_eq!(to_vec(att.feed_forward[3].inner.weight.val()), to_vec(enc.feed_forward[3].inner.weight.val()));
    // The result is an ordinary encoder: its config says what it is.
    let c = mean.config().unwrap();
    assert_eq!((c.sharing, c.n_groups, c.layout), (SharingMode::All, 2, None));
}

#[test]
fn bad_input_structural_edits() {
    let d = Device::flex();
    let enc = EncoderConfig::new(8, 2, 16, 4).init(&d).unwrap();
    let err = |r: Result<Encoder>| r.expect_err("an error").to_string();
    assert!(err(enc.retain_heads(0, &[])).contains("nothing would be kept"));
    assert!(err(enc.retain_heads(0, &[1, 0])).contains("ascending without repeats"));
    assert!(err(enc.retain_heads(0, &[2])).contains("index 2 is out of range (there are 2)"));
    assert!(err(enc.retain_heads(4, &[0])).contains("the encoder has 4 attention blocks"));
    assert!(err(enc.retain_neurons(0, &[16])).contains("index 16 is out of range"));
    assert!(err(enc.retain_layers(&[4])).contains("index 4 is out of range (there are 4)"));
    assert!(err(enc.to_shared(SharingMode::None, 1, SharedInit::Mean)).contains("nothing would be shared"));
    assert!(err(enc.to_shared(SharingMode::All, 3, SharedInit::Mean)).contains("must divide the 4 layers"));
    let uneven = enc.retain_heads(1, &[0]).unwrap();
    assert!(err(uneven.to_shared(SharingMode::All, 1, SharedInit::Mean)).contains("their shapes differ"));
    // Structure is removed while float.
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&enc).unwrap();
    assert!(err(int8.retain_heads(0, &[0])).contains("a float layer"));
    assert!(err(int8.to_shared(SharingMode::All, 1, SharedInit::Mean)).contains("convert to int8 after sharing"));
    // A layout that contradicts itself.
    let bad = EncoderLayout {
        attention_heads: vec![2, 2],
        ffn_widths: vec![16],
        attention_index: vec![0],
        feed_forward_index: vec![0],
    };
    let e = EncoderConfig::new(8, 2, 16, 1).with_layout(Some(bad)).init(&d).unwrap_err();
    assert!(e.to_string().contains("block 1 used by no layer"), "{e}");
    let mask = AttentionMask::none(1, 5);
    let e = enc.attention[0].try_forward(input(5, [1, 4, 8], &d), &mask).unwrap_err();
    assert!(e.to_string().contains("one built for [1, 4]"), "{e}");
}

/// A user's own model: an ember-layers encoder next to a plain Burn `Linear` and a struct of
/// their own that happens to be called `Linear` with a `quant` field.
mod user {
    use burn::module::{Module, Param};
    use burn::tensor::Tensor;

    #[derive(Module, Debug)]
    pub struct Linear {
        pub weight: Param<Tensor<2>>,
        pub quant: burn::nn::LayerNorm,
    }

    #[derive(Module, Debug)]
    pub struct Model {
        pub encoder: ember_layers::Encoder,
        pub head: burn::nn::Linear,
        pub mine: Linear,
    }
}

#[test]
fn the_quantizer_finds_the_blocks_linears_by_type_inside_any_model() {
    let d = Device::flex();
    let model = user::Model {
        encoder: EncoderConfig::new(16, 4, 32, 2).with_sharing(SharingMode::All).init(&d).unwrap(),
        head: burn::nn::LinearConfig::new(16, 3).init(&d),
        mine: user::Linear {
            weight: Param::from_tensor(Tensor::zeros([4, 4], &d)),
            quant: burn::nn::LayerNormConfig::new(4).init(&d),
        },
    };
    let (int8, report) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
    let mut paths: Vec<&str> = report.layers.iter().map(|l| l.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "encoder.attention.0.key",
            "encoder.attention.0.output",
            "encoder.attention.0.query",
            "encoder.attention.0.value",
            "encoder.feed_forward.0.inner",
            "encoder.feed_forward.0.outer",
        ],
        "Ember's Linears only: not Burn's, not the user's own `Linear`"
    );
    let x = input(6, [2, 5, 16], &d);
    let (f, q) = (model.encoder.forward(x.clone(), None, false).hidden, int8.encoder.forward(x, None, false).hidden);
    let err = ember_quant::compare(f, q).unwrap();
    assert!(err.cosine > 0.999, "shared encoder in int8: cosine {}", err.cosine);
    let ids = Tensor::<2, Int>::from_ints([[1, 2]], &d);
    let emb = FactorizedEmbeddingConfig::new(20, 8, 16).init(&d).unwrap();
    let (emb8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&emb).unwrap();
    assert!(emb8.word.is_quantized() && emb8.projection.as_ref().unwrap().is_quantized());
    assert!(to_vec(emb8.forward(ids, None).unwrap()).iter().all(|v| v.is_finite()));
}
