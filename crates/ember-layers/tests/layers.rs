//! ember-layers: published counts, sharing gradients, hand-worked outputs, typed errors; on
//! flex and ndarray.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use ember_layers::*;
use std::collections::HashMap;

/// Flex, NdArray, and wgpu with the `wgpu` feature (ember-testkit).
fn devices() -> Vec<burn::tensor::Device> {
    ember_testkit::device_list()
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())))
}

#[test]
fn published_parameter_counts_within_5_percent() {
    let cases: [(TransformerSpec, f64); 5] = [
        (TransformerSpec::bert_base(), 110e6),
        (TransformerSpec::albert_base(), 12e6),
        (TransformerSpec::albert_large(), 18e6),
        (TransformerSpec::albert_xlarge(), 60e6),
        (TransformerSpec::tiny_bert_4(), 14.5e6),
    ];
    for (spec, published) in cases {
        let n = spec.count().unwrap().total() as f64;
        let err = (n - published).abs() / published;
        println!("{}: {n} vs published {published} ({:.1} %)", spec.name, err * 100.0);
        assert!(err <= 0.05, "{}: {n} is {:.1} % from {published}", spec.name, err * 100.0);
    }
    let bert = TransformerSpec::bert_base().count().unwrap().total();
    assert!((108_000_000..=110_000_000).contains(&bert), "BERT-base {bert}");
    assert_eq!(bert, 109_482_240, "BERT-base with pooler, as Hugging Face's BertModel");
    assert_eq!(TransformerSpec::albert_base().count().unwrap().total(), 11_683_584);
    let mobile = MobileBertSpec::mobilebert().count().total() as f64;
    assert!((mobile - 25.3e6).abs() / 25.3e6 <= 0.05, "MobileBERT {mobile}");
    assert_eq!(mobile as usize, 24_581_888);
    // ALBERT-xxlarge: the faithful config gives 222.6M against the paper's 235M (see params docs).
    let xx = TransformerSpec::albert_xxlarge().count().unwrap();
    println!("ALBERT-xxlarge: {} ({xx:?}) vs published 235M", xx.total());
    assert_eq!(xx.total(), 222_595_584);
}

#[test]
fn allocated_modules_match_the_accounting() {
    let device = Device::flex();
    let emb_cfg = FactorizedEmbeddingConfig::new(50, 8, 16).with_max_positions(20);
    let emb = emb_cfg.init(&device).unwrap();
    assert_eq!(emb.num_params(), emb_cfg.num_params().unwrap());
    for sharing in [SharingMode::None, SharingMode::All, SharingMode::Attention, SharingMode::FeedForward] {
        let groups = if sharing == SharingMode::None { 1 } else { 2 };
        let cfg = EncoderConfig::new(16, 4, 24, 4).with_sharing(sharing).with_n_groups(groups);
        let enc = cfg.init(&device).unwrap();
        let (a, f, n) = cfg.num_params().unwrap();
        assert_eq!(enc.num_params(), a + f + n, "{sharing:?}");
    }
    // Free head width: 3 heads of 5 on a width of 16.
    let att = AttentionConfig::new(16, 3).with_head_dim(Some(5));
    assert_eq!(att.init(&device).unwrap().num_params(), att.num_params().unwrap());
}

/// Copies every float parameter value of `from` into `to` by path, keeping `to`'s own ids.
fn copy_values<M: Module>(from: &M, to: M) -> M {
    #[derive(Default)]
    struct Get(Vec<String>, HashMap<String, TensorData>);
    impl ModuleVisitor for Get {
        fn enter_module(&mut self, n: &str, _: &str) {
            self.0.push(n.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.1.insert(self.0.join("."), p.val().into_data());
        }
    }
    struct Set(Vec<String>, HashMap<String, TensorData>);
    impl ModuleMapper for Set {
        fn enter_module(&mut self, n: &str, _: &str) {
            self.0.push(n.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let data = self.1[&self.0.join(".")].clone();
            Param::initialized(p.id, Tensor::from_data(data, &p.device()).require_grad())
        }
    }
    let mut g = Get::default();
    from.visit(&mut g);
    to.map(&mut Set(vec![], g.1))
}

#[test]
fn a_shared_layer_gets_the_sum_of_the_gradients_of_its_unshared_copies() {
    for device in devices() {
        let ad = device.autodiff();
        let n = 3;
        let shared = EncoderConfig::new(8, 2, 12, n).with_sharing(SharingMode::All).init(&ad).unwrap();
        let mut unshared = EncoderConfig::new(8, 2, 12, n).init(&ad).unwrap();
        for i in 0..n {
            unshared.attention[i] = copy_values(&shared.attention[0], unshared.attention[i].clone());
            unshared.feed_forward[i] = copy_values(&shared.feed_forward[0], unshared.feed_forward[i].clone());
            unshared.attention_norm[i] = copy_values(&shared.attention_norm[0], unshared.attention_norm[i].clone());
            unshared.feed_forward_norm[i] =
                copy_values(&shared.feed_forward_norm[0], unshared.feed_forward_norm[i].clone());
        }
        let x = Tensor::<3>::from_data(
            TensorData::new((0..2 * 5 * 8).map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.1).collect::<Vec<_>>(), [2, 5, 8]),
            &ad,
        );
        let ys = shared.forward(x.clone(), None, false).hidden;
        let yu = unshared.forward(x, None, false).hidden;
        assert!(close(&to_vec(ys.clone().inner()), &to_vec(yu.clone().inner()), 1e-5), "same function");
        let gs = ys.powf_scalar(2.0).sum().backward();
        let gu = yu.powf_scalar(2.0).sum().backward();
        let check = |s: &Param<Tensor<2>>, u: Vec<&Param<Tensor<2>>>, name: &str| {
            let want = to_vec(s.val().grad(&gs).unwrap());
            let mut sum = vec![0f32; want.len()];
            for p in u {
                for (a, b) in sum.iter_mut().zip(to_vec(p.val().grad(&gu).unwrap())) {
                    *a += b;
                }
            }
            assert!(close(&want, &sum, 1e-5), "{name}: shared gradient != sum of copies");
        };
        check(&shared.attention[0].query.weight, unshared.attention.iter().map(|a| &a.query.weight).collect(), "query");
        check(
            &shared.attention[0].output.weight,
            unshared.attention.iter().map(|a| &a.output.weight).collect(),
            "output",
        );
        check(
            &shared.feed_forward[0].inner.weight,
            unshared.feed_forward.iter().map(|f| &f.inner.weight).collect(),
            "ffn inner",
        );
    }
}

#[test]
fn factorized_embedding_with_identity_projection_equals_a_plain_embedding() {
    for device in devices() {
        let emb = FactorizedEmbeddingConfig::new(30, 6, 6).init(&device).unwrap();
        let mut plain = emb.clone();
        plain.projection = None;
        let mut ident = emb.clone();
        let p = ident.projection.as_mut().unwrap();
        let eye: Vec<f32> = (0..36).map(|i| if i % 7 == 0 { 1.0 } else { 0.0 }).collect();
        p.weight = Param::from_tensor(Tensor::from_data(TensorData::new(eye, [6, 6]), &device));
        p.bias = Some(Param::from_tensor(Tensor::zeros([6], &device)));
        let ids = Tensor::<2, Int>::from_ints([[1, 29, 4], [0, 7, 7]], &device);
        let a = to_vec(ident.forward(ids.clone(), None).unwrap());
        let b = to_vec(plain.forward(ids.clone(), None).unwrap());
        assert!(close(&a, &b, 1e-6));
        // The plain path is word + position + type(0), then LayerNorm (γ = 1, β = 0 at init).
        let w = to_vec(emb.word.weight.val());
        let pos = to_vec(emb.position.as_ref().unwrap().weight.val());
        let tt = to_vec(emb.token_type.as_ref().unwrap().weight.val());
        let raw: Vec<f32> = (0..6).map(|j| w[29 * 6 + j] + pos[6 + j] + tt[j]).collect();
        let mean = raw.iter().sum::<f32>() / 6.0;
        let var = raw.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 6.0;
        let want: Vec<f32> = raw.iter().map(|v| (v - mean) / (var + 1e-12).sqrt()).collect();
        assert!(close(&b[6..12], &want, 1e-4), "{:?} vs {want:?}", &b[6..12]);
    }
}

#[test]
fn attention_matches_a_hand_worked_case_and_masks_padding() {
    for device in devices() {
        let mut att = AttentionConfig::new(2, 1).init(&device).unwrap();
        let eye = || Param::from_tensor(Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device));
        let zero = || Some(Param::from_tensor(Tensor::<1>::zeros([2], &device)));
        for l in [&mut att.query, &mut att.key, &mut att.value, &mut att.output] {
            l.weight = eye();
            l.bias = zero();
        }
        let x = Tensor::<3>::from_floats([[[1.0, 0.0], [0.0, 1.0]]], &device);
        let o = att.forward(x.clone(), &AttentionMask::none(1, 2));
        // scores = x·xᵀ/√2 → row 0 = softmax([1/√2, 0]).
        let p0 = 1.0 / (1.0 + (-(0.5f32).sqrt()).exp());
        assert!(close(&to_vec(o.probs.clone()), &[p0, 1.0 - p0, 1.0 - p0, p0], 1e-5));
        assert!(close(&to_vec(o.context), &[p0, 1.0 - p0, 1.0 - p0, p0], 1e-5));
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(vec![false, true], [1, 2]), &device);
        let m = att.forward(x, &AttentionMask::new(Some(mask), false, 1, 2, &device).unwrap());
        assert!(close(&to_vec(m.probs), &[1.0, 0.0, 1.0, 0.0], 1e-6), "padded key gets no attention");
    }
}

#[test]
fn encoder_returns_every_hidden_state_and_attention_map_pre_and_post_norm() {
    for device in devices() {
        for norm_first in [false, true] {
            let enc = EncoderConfig::new(8, 2, 16, 3).with_norm_first(norm_first).init(&device).unwrap();
            let x = Tensor::<3>::ones([2, 4, 8], &device);
            let out = enc.forward(x, None, true);
            assert_eq!(out.hidden_states.len(), 4);
            assert_eq!(out.attentions.len(), 3);
            assert_eq!(out.attentions[0].dims(), [2, 2, 4, 4]);
            // Values are the value projection of each layer's attention input.
            assert_eq!(out.values.len(), 3);
            let first_input = if norm_first {
                enc.attention_norm[0].forward(out.hidden_states[0].clone())
            } else {
                out.hidden_states[0].clone()
            };
            let v1 = to_vec(enc.attention[0].value.forward(first_input));
            assert!(to_vec(out.values[0].clone()).iter().zip(&v1).all(|(a, b)| (a - b).abs() < 1e-6));
            assert_eq!(to_vec(out.hidden_states[3].clone()), to_vec(out.hidden.clone()));
            assert!(to_vec(out.hidden).iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn impossible_configs_are_typed_errors() {
    let device = Device::flex();
    let e = FactorizedEmbeddingConfig::new(100, 128, 768).init(&device).unwrap_err();
    assert!(matches!(e, LayerError::InvalidConfig { what: "embedding_size", .. }), "{e}");
    assert!(e.to_string().contains("at most vocab_size = 100"), "{e}");
    let e = EncoderConfig::new(768, 5, 3072, 12).init(&device).unwrap_err();
    assert!(e.to_string().contains("a divisor of d_model = 768"), "{e}");
    let e =
        EncoderConfig::new(64, 4, 128, 12).with_sharing(SharingMode::All).with_n_groups(5).init(&device).unwrap_err();
    assert!(e.to_string().contains("divisor of n_layers = 12"), "{e}");
    let e = FactorizedEmbeddingConfig::new(100, 16, 32).with_projection(false).init(&device).unwrap_err();
    assert!(e.to_string().contains("embedding_size 16 ≠ hidden_size 32"), "{e}");
    let emb = FactorizedEmbeddingConfig::new(100, 16, 32).with_max_positions(4).init(&device).unwrap();
    let e = emb.forward(Tensor::<2, Int>::zeros([1, 5], &device), None).unwrap_err();
    assert!(matches!(e, LayerError::Shape { .. }), "{e}");
}

#[test]
fn the_mlm_head_is_its_own_component() {
    let mut spec = TransformerSpec::albert_base();
    let without = spec.count().unwrap();
    spec.mlm_head = true;
    let with = spec.count().unwrap();
    // dense 768→128 (+128 bias), LayerNorm(128), decoder bias (30000), tied decoder weights.
    assert_eq!(with.heads, 768 * 128 + 128 + 256 + 30000);
    assert_eq!(with.total() - without.total(), with.heads);
}

#[test]
fn mobilebert_module_matches_the_accounting_and_runs() {
    for device in devices() {
        let mut spec = MobileBertSpec::mobilebert();
        spec.vocab_size = 100;
        spec.embedding_size = 8;
        spec.hidden_size = 32;
        spec.intra_bottleneck_size = 16;
        spec.intermediate_size = 32;
        spec.num_hidden_layers = 2;
        spec.max_position_embeddings = 16;
        for norm in [Normalization::NoNorm, Normalization::LayerNorm] {
            let m = spec.init(4, norm, &device).unwrap();
            assert_eq!(m.num_params(), spec.count().total(), "{norm:?}: module vs accounting");
            let ids = Tensor::<2, Int>::from_ints([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], &device);
            let (h, probs) = m.forward(ids, None).unwrap();
            assert_eq!(h.dims(), [2, 5, 32]);
            assert_eq!(probs.len(), 2);
            assert_eq!(probs[0].dims(), [2, 4, 5, 5]);
            assert!(to_vec(h).iter().all(|v| v.is_finite()));
        }
        let e = spec.init(5, Normalization::NoNorm, &device).err().unwrap();
        assert!(e.to_string().contains("divisor of intra_bottleneck_size = 16"), "{e}");
    }
}

#[test]
fn wrong_input_shapes_are_typed_errors_with_try_forward() {
    let device = Device::flex();
    let enc = EncoderConfig::new(8, 2, 16, 2).init(&device).unwrap();
    let e = enc.try_forward(Tensor::<3>::zeros([1, 3, 7], &device), None, false).unwrap_err();
    assert!(e.to_string().contains("[batch, seq, 8]"), "{e}");
    let mask = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 4], [1, 4]), &device);
    let e = enc.try_forward(Tensor::<3>::zeros([1, 3, 8], &device), Some(mask), false).unwrap_err();
    assert!(matches!(e, LayerError::Shape { .. }) && e.to_string().contains("[1, 3]"), "{e}");
    let ok = enc.try_forward(Tensor::<3>::zeros([1, 3, 8], &device), None, true).unwrap();
    assert_eq!(ok.hidden_states.len(), 3);
    let e =
        enc.attention[0].try_forward(Tensor::<3>::zeros([2, 2, 9], &device), &AttentionMask::none(2, 2)).unwrap_err();
    assert!(e.to_string().contains("input"), "{e}");
}

/// Inference on a CPU device takes the fused kernels (attention without probabilities,
/// LayerNorm with the residual add, GELU on the host); `collect = true` and autodiff devices
/// take Burn's ops. Both must agree: post- and pre-norm, padding, causal, both GELU forms,
/// float and int8, every device.
#[test]
fn the_fused_cpu_path_equals_burns_ops() {
    use ember_quant::{QuantizeConfig, Quantizer};
    for device in devices() {
        for (norm_first, causal, act) in [
            (false, false, Activation::Gelu),
            (true, false, Activation::GeluTanh),
            (false, true, Activation::Relu),
            (true, true, Activation::Gelu),
        ] {
            let cfg = EncoderConfig::new(32, 4, 48, 2)
                .with_norm_first(norm_first)
                .with_causal(causal)
                .with_activation(act)
                .with_layer_norm_eps(1e-6);
            let enc = cfg.init(&device).unwrap();
            let (b, t) = (3, 7);
            let x = Tensor::<3>::random([b, t, 32], burn::tensor::Distribution::Normal(0.0, 2.0), &device);
            // Sequence 1 has 3 padded tokens, sequence 2 is all padding but one token.
            let pad: Vec<bool> = (0..b * t).map(|i| (i / t == 1 && i % t >= 4) || (i / t == 2 && i % t >= 1)).collect();
            let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, t]), &device);
            let int8 = Quantizer::new(QuantizeConfig::new()).quantize(&enc).unwrap().0;
            for (name, e) in [("f32", &enc), ("int8", &int8)] {
                let burn = e.forward(x.clone(), Some(pad.clone()), true).hidden;
                // Other tests may run kernels concurrently, so only "it ran" is checked.
                let cpu = ["Flex", "NdArray"].iter().any(|k| format!("{device:?}").contains(k));
                let before = ember_kernels::fused::calls();
                let fused = e.forward(x.clone(), Some(pad.clone()), false).hidden;
                if cpu {
                    // Per layer: the attention kernel and two LayerNorms at least.
                    let n = ember_kernels::fused::calls() - before;
                    assert!(n >= 2 * 3, "{device:?} {name}: the fused kernels did not run ({n} calls)");
                }
                let (a, r) = (to_vec(fused), to_vec(burn));
                assert!(a.iter().all(|v| v.is_finite()));
                let err = a.iter().zip(&r).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
                // int8: the fused and Burn paths quantize identical activations up to float
                // rounding, which can move a value across a rounding boundary.
                let tol = if name == "int8" { 2e-2 } else { 2e-5 };
                assert!(err < tol, "{device:?} {name} norm_first {norm_first} causal {causal} {act:?}: {err}");
            }
        }
    }
}

/// An empty batch (or empty sequences) runs on every path without panicking.
#[test]
fn empty_batches_run_on_the_fused_path() {
    for device in devices() {
        let enc = EncoderConfig::new(8, 2, 16, 2).init(&device).unwrap();
        for dims in [[0, 5, 8], [2, 0, 8]] {
            let out = enc.try_forward(Tensor::zeros(dims, &device), None, false).unwrap();
            assert_eq!(out.hidden.dims(), dims, "{device:?}");
        }
    }
}

/// On CPU devices a feed-forward block runs inputs of more than 256 rows in blocks of rows;
/// the result must equal the block applied to smaller pieces that take the whole-input path
/// (here sequences of 150 rows, so the 256-row blocks cut across them), float and int8 with
/// per-row dynamic activations, every device.
#[test]
fn feed_forward_row_blocks_equal_the_whole_input() {
    use ember_quant::{QuantizeConfig, Quantizer};
    for device in devices() {
        let ff = FeedForwardConfig::new(24, 40).init(&device).unwrap();
        let int8 = Quantizer::new(QuantizeConfig::new()).quantize(&ff).unwrap().0;
        let (b, t) = (4, 150);
        let x = Tensor::<3>::random([b, t, 24], burn::tensor::Distribution::Normal(0.0, 1.5), &device);
        for (name, f) in [("f32", &ff), ("int8", &int8)] {
            let whole = to_vec(f.forward(x.clone()));
            let pieces: Vec<f32> =
                (0..b).flat_map(|i| to_vec(f.forward(x.clone().slice([i..i + 1, 0..t, 0..24])))).collect();
            assert_eq!(whole.len(), b * t * 24);
            assert!(close(&whole, &pieces, 1e-5), "{device:?} {name}: row blocks changed the result");
        }
    }
}

/// `forward_real_tokens` drops the padding before the first layer on CPU devices (packed
/// sequences) and zeroes it elsewhere: real tokens' outputs must equal the full forward's
/// (Burn's ops, every position computed) and padded ones must be exactly zero. Padding at the
/// end, at the start and in the middle of a sequence, a sequence with one real token, one with
/// none; post- and pre-norm, causal, shared layers, float and int8, every device and autodiff.
#[test]
fn real_token_inference_equals_the_full_forward_at_real_tokens() {
    use ember_quant::{QuantizeConfig, Quantizer};
    let (b, t, d) = (5, 9, 32);
    let pad: Vec<bool> = (0..b * t)
        .map(|i| match (i / t, i % t) {
            (0, _) => false,
            (1, j) => j >= 6,
            (2, j) => j < 3,
            (3, j) => (2..5).contains(&j) || j >= 8,
            _ => true,
        })
        .collect();
    for device in devices() {
        for (norm_first, causal, shared) in [(false, false, false), (true, true, false), (false, true, true)] {
            let sharing = if shared { SharingMode::All } else { SharingMode::None };
            let cfg =
                EncoderConfig::new(d, 4, 48, 3).with_norm_first(norm_first).with_causal(causal).with_sharing(sharing);
            let enc = cfg.init(&device).unwrap();
            let int8 = Quantizer::new(QuantizeConfig::new()).quantize(&enc).unwrap().0;
            let x = Tensor::<3>::random([b, t, d], burn::tensor::Distribution::Normal(0.0, 2.0), &device);
            let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [b, t]), &device);
            for (name, e) in [("f32", &enc), ("int8", &int8)] {
                let full = to_vec(e.forward(x.clone(), Some(mask.clone()), true).hidden);
                let real = to_vec(e.forward_real_tokens(x.clone(), Some(mask.clone())).unwrap());
                let tol = if name == "int8" { 2e-2 } else { 2e-5 };
                for (i, &hidden) in pad.iter().enumerate() {
                    let (r, f) = (&real[i * d..(i + 1) * d], &full[i * d..(i + 1) * d]);
                    let what =
                        format!("{device:?} {name} norm_first {norm_first} causal {causal} shared {shared} token {i}");
                    if hidden {
                        assert!(r.iter().all(|&v| v == 0.0), "{what}: padded output not zero");
                    } else {
                        let err = r.iter().zip(f).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
                        assert!(err < tol, "{what}: {err}");
                    }
                }
                // No padding at all, and no mask: the plain forward.
                let none = to_vec(e.forward_real_tokens(x.clone(), None).unwrap());
                let plain = to_vec(e.forward(x.clone(), None, true).hidden);
                assert!(close(&none, &plain, tol), "{device:?} {name}: unmasked");
            }
            // Autodiff devices take Burn's ops and zero the padding.
            let ad = device.clone().autodiff();
            let enc_ad = enc.clone().to_device(&ad);
            let y = to_vec(
                enc_ad.forward_real_tokens(x.clone().to_device(&ad), Some(mask.clone().to_device(&ad))).unwrap(),
            );
            let want = to_vec(enc.forward_real_tokens(x.clone(), Some(mask.clone())).unwrap());
            assert!(close(&y, &want, 2e-5), "{device:?} autodiff");
        }
        // Wrong shapes are typed errors.
        let enc = EncoderConfig::new(d, 4, 48, 1).init(&device).unwrap();
        let bad = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 6], [2, 3]), &device);
        assert!(enc.forward_real_tokens(Tensor::zeros([2, 4, d], &device), Some(bad)).is_err());
        assert!(enc.forward_real_tokens(Tensor::zeros([2, 4, d + 1], &device), None).is_err());
    }
}

/// A packed mask read by Burn's ops (the block-diagonal mask it builds) and by the fused
/// kernel (per-sequence attention) gives the same context, and each sequence's context equals
/// attention over that sequence alone.
#[test]
fn packed_masks_agree_on_every_path() {
    for device in devices() {
        let att = AttentionConfig::new(16, 2).init(&device).unwrap();
        let lengths = vec![3, 1, 4];
        let n: usize = lengths.iter().sum();
        let x = Tensor::<3>::random([1, n, 16], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        for causal in [false, true] {
            let mask = AttentionMask::packed(lengths.clone(), causal, &device);
            assert_eq!(mask.dims(), [1, n]);
            assert_eq!(mask.packed_lengths(), Some(&lengths[..]));
            let burn = to_vec(att.forward(x.clone(), &mask).context);
            let fused = to_vec(att.context(x.clone(), &mask));
            assert!(close(&burn, &fused, 2e-5), "{device:?} causal {causal}");
            let mut start = 0;
            for &l in &lengths {
                let xs = x.clone().slice([0..1, start..start + l, 0..16]);
                let own = AttentionMask::new(None, causal, 1, l, &device).unwrap();
                let alone = to_vec(att.forward(xs, &own).context);
                assert!(close(&alone, &fused[start * 16..(start + l) * 16], 2e-5), "{device:?} causal {causal}");
                start += l;
            }
        }
    }
}
