//! Exact sparsity, global thresholds against a sorting reference, N:M validity (proptest),
//! structured masks, Wanda and movement scores, persistent masks under fine-tuning, the cubic
//! schedule against the paper's formula, and typed errors. Every tensor test runs on flex and
//! ndarray.

mod common;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use common::{devices, host};
use ember_prune::mask::{self, is_n_m};
use ember_prune::*;
use proptest::prelude::*;

fn zeros(t: Tensor<2>) -> usize {
    host(t).iter().filter(|v| **v == 0.0).count()
}

#[derive(Module, Debug)]
struct Net {
    emb: Embedding,
    fc1: Linear,
    fc2: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        let mut net = Net {
            emb: EmbeddingConfig::new(10, 16).init(device),
            fc1: LinearConfig::new(16, 32).init(device),
            fc2: LinearConfig::new(32, 8).init(device),
        };
        // fc2 a hundred times larger than fc1, so a global threshold treats them differently.
        // (A fresh leaf: a non-leaf parameter would break the second backward.)
        net.fc2.weight = net.fc2.weight.map(|w| {
            let grad = w.is_require_grad();
            (w * 100.0).detach().set_require_grad(grad)
        });
        net
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}

#[test]
fn per_layer_sparsity_is_exact_and_embeddings_are_left_alone() {
    for (name, d) in devices() {
        for s in [0.0, 0.3, 0.5, 0.9] {
            let net = Net::new(&d);
            let emb_before = host(net.emb.weight.val());
            let (net, report) = Pruner::new(PruneConfig::new(s)).unwrap().prune(net).unwrap();
            assert_eq!(zeros(net.fc1.weight.val()), mask::pruned_count(512, s), "{name} s={s}");
            assert_eq!(zeros(net.fc2.weight.val()), mask::pruned_count(256, s), "{name} s={s}");
            assert_eq!(report.layers.len(), 2, "embeddings are excluded by default");
            assert_eq!(host(net.emb.weight.val()), emb_before);
            // The smallest magnitudes went: every kept |w| ≥ every removed |w| (base values).
            let base = host(net.fc1.weight.base());
            let eff = host(net.fc1.weight.val());
            let kept_min = eff.iter().filter(|v| **v != 0.0).map(|v| v.abs()).fold(f32::MAX, f32::min);
            let removed_max =
                base.iter().zip(&eff).filter(|(_, e)| **e == 0.0).map(|(b, _)| b.abs()).fold(0.0, f32::max);
            assert!(s == 0.0 || removed_max <= kept_min, "{name}: removed {removed_max} > kept {kept_min}");
        }
        let config = PruneConfig::new(0.5).with_include_embeddings(true);
        let (_, report) = Pruner::new(config).unwrap().prune(Net::new(&d)).unwrap();
        assert_eq!(
            report.layers.iter().map(|l| l.path.as_str()).collect::<Vec<_>>(),
            ["emb.weight", "fc1.weight", "fc2.weight"]
        );
    }
}

#[test]
fn global_scope_uses_one_threshold() {
    for (name, d) in devices() {
        let net = Net::new(&d);
        let w1 = host(net.fc1.weight.val());
        let w2 = host(net.fc2.weight.val());
        let config = PruneConfig::new(0.6).with_scope(Scope::Global);
        let (net, report) = Pruner::new(config).unwrap().prune(net).unwrap();
        // Reference: sort all |w| and cut at the 60 % point.
        let mut all: Vec<f32> = w1.iter().chain(&w2).map(|v| v.abs()).collect();
        all.sort_by(|a, b| a.total_cmp(b));
        let k = mask::pruned_count(768, 0.6);
        let thr = all[k - 1];
        let expect = |w: &[f32]| w.iter().filter(|v| v.abs() <= thr).count();
        assert_eq!(zeros(net.fc1.weight.val()), expect(&w1), "{name}");
        assert_eq!(zeros(net.fc2.weight.val()), expect(&w2), "{name}");
        assert_eq!(report.zeros(), k);
        // The small-scale layer loses far more than the large one.
        assert!(report.layers[0].sparsity() > 0.85 && report.layers[1].sparsity() < 0.05, "{}", report.to_markdown());
    }
}

#[test]
fn global_handles_ties_exactly() {
    let a = [1.0f32, 1.0, 1.0, 2.0];
    let b = [1.0f32, 3.0];
    let m = mask::global(&[&a, &b], 0.5).unwrap();
    assert_eq!(m.iter().flatten().filter(|k| !**k).count(), 3);
    assert_eq!(m[0], [false, false, false, true]);
    assert_eq!(m[1], [true, true]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn n_m_masks_are_valid(
        groups in 1usize..6, d_out in 1usize..7, seed in 0u64..1000,
        pattern in prop::sample::select(vec![(1usize, 2usize), (2, 4), (4, 8), (1, 4), (3, 8)]),
    ) {
        let (n, m) = pattern;
        let d_in = groups * m;
        let scores: Vec<f32> = (0..d_in * d_out).map(|i| ((i as u64 * 2654435761 + seed * 97) % 1009) as f32 - 500.0).collect();
        let keep = mask::n_m(&scores, d_in, d_out, n, m).unwrap();
        let masked: Vec<f32> = scores.iter().zip(&keep).map(|(s, k)| if *k { s.abs() + 1.0 } else { 0.0 }).collect();
        prop_assert!(is_n_m(&masked, d_in, d_out, n, m));
        prop_assert_eq!(keep.iter().filter(|k| **k).count(), d_in * d_out * n / m);
        // In every group, each kept score is ≥ each dropped one.
        for j in 0..d_out {
            for g in (0..d_in).step_by(m) {
                let idx: Vec<usize> = (g..g + m).map(|i| i * d_out + j).collect();
                let kept_min = idx.iter().filter(|i| keep[**i]).map(|i| scores[*i]).fold(f32::MAX, f32::min);
                let drop_max = idx.iter().filter(|i| !keep[**i]).map(|i| scores[*i]).fold(f32::MIN, f32::max);
                prop_assert!(kept_min >= drop_max);
            }
        }
    }

    #[test]
    fn unstructured_and_global_counts_are_exact(
        scores in proptest::collection::vec(-100.0f32..100.0, 1..300),
        split in 0usize..300,
        s in 0.0f64..0.99,
    ) {
        let keep = mask::unstructured(&scores, s).unwrap();
        prop_assert_eq!(keep.iter().filter(|k| !**k).count(), mask::pruned_count(scores.len(), s));
        let cut = split.min(scores.len());
        let g = mask::global(&[&scores[..cut], &scores[cut..]], s).unwrap();
        prop_assert_eq!(g.iter().flatten().filter(|k| !**k).count(), mask::pruned_count(scores.len(), s));
    }
}

#[test]
fn n_m_and_neuron_pruning_on_a_model() {
    for (name, d) in devices() {
        let config = PruneConfig::new(0.0).with_granularity(Granularity::NM { n: 2, m: 4 });
        let (net, report) = Pruner::new(config).unwrap().prune(Net::new(&d)).unwrap();
        assert!(is_n_m(&host(net.fc1.weight.val()), 16, 32, 2, 4), "{name}");
        assert!(is_n_m(&host(net.fc2.weight.val()), 32, 8, 2, 4), "{name}");
        assert_eq!(report.sparsity(), 0.5);

        // Output neurons: whole columns of [d_in, d_out].
        let config = PruneConfig::new(0.25).with_granularity(Granularity::Neurons(Axis::Output));
        let (net, _) = Pruner::new(config).unwrap().prune(Net::new(&d)).unwrap();
        let w = host(net.fc1.weight.val());
        let dead: Vec<usize> = (0..32).filter(|j| (0..16).all(|i| w[i * 32 + j] == 0.0)).collect();
        assert_eq!(dead.len(), 8, "{name}");
        assert_eq!(zeros(net.fc1.weight.val()), 8 * 16);
        // Input features: whole rows.
        let config =
            PruneConfig::new(0.5).with_granularity(Granularity::Neurons(Axis::Input)).with_include(vec!["fc2".into()]);
        let (net, report) = Pruner::new(config).unwrap().prune(Net::new(&d)).unwrap();
        let w = host(net.fc2.weight.val());
        assert_eq!((0..32).filter(|i| w[i * 8..(i + 1) * 8].iter().all(|v| *v == 0.0)).count(), 16);
        assert_eq!(report.layers.len(), 1);
    }
}

#[test]
fn masks_persist_through_fine_tuning_and_fold() {
    for (name, d) in devices() {
        let ad = d.clone().autodiff();
        let (mut net, _) = Pruner::new(PruneConfig::new(0.5)).unwrap().prune(Net::new(&ad)).unwrap();
        let pruned = host(net.fc1.weight.val()).iter().map(|v| *v == 0.0).collect::<Vec<_>>();
        let x = Tensor::<2>::from_data(
            TensorData::new((0..64).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(), [4, 16]),
            &ad,
        );
        let mut opt = AdamConfig::new().init();
        for _ in 0..5 {
            let loss = net.forward(x.clone()).powi_scalar(2).mean();
            let grads = loss.backward();
            let g = net.fc1.weight.base().grad(&grads).unwrap();
            // Masked entries get exactly zero gradient.
            assert!(host(g).iter().zip(&pruned).all(|(g, p)| !*p || *g == 0.0), "{name}");
            let grads = GradientsParams::from_grads(grads, &net);
            net = opt.step(1e-2, net, grads);
        }
        let after = host(net.fc1.weight.val());
        assert!(after.iter().zip(&pruned).all(|(v, p)| !*p || *v == 0.0), "{name}: a masked weight moved");
        assert!(after.iter().zip(&pruned).any(|(v, p)| !*p && *v != 0.0));
        let folded = fold_masks(net.valid());
        assert!(folded.fc1.weight.reparameterization::<PruneMask>().is_none());
        assert_eq!(host(folded.fc1.weight.val()), after);
    }
}

#[test]
fn repeated_pruning_only_grows_masks() {
    let d = Device::flex();
    let (net, _) = Pruner::new(PruneConfig::new(0.3)).unwrap().prune(Net::new(&d)).unwrap();
    let first: Vec<bool> = host(net.fc1.weight.val()).iter().map(|v| *v == 0.0).collect();
    // Random scores would pick other weights; already-zero weights must stay pruned anyway.
    let config = PruneConfig::new(0.6).with_criterion(Criterion::Random { seed: 9 });
    let (net, report) = Pruner::new(config).unwrap().prune(net).unwrap();
    let second: Vec<bool> = host(net.fc1.weight.val()).iter().map(|v| *v == 0.0).collect();
    assert!(first.iter().zip(&second).all(|(a, b)| !a || *b));
    assert_eq!(report.layers[0].zeros, mask::pruned_count(512, 0.6));
}

#[test]
fn wanda_weights_by_input_norms() {
    for (name, d) in devices() {
        let mut layer: Linear = LinearConfig::new(2, 2).init(&d);
        layer.weight = layer.weight.map(|w| w.ones_like());
        // Row 0 (input feature 0) has a small activation norm: Wanda removes it, magnitude ties.
        let norms = [("weight".to_string(), vec![1.0f32, 10.0])].into_iter().collect();
        let pruner =
            Pruner::new(PruneConfig::new(0.5).with_criterion(Criterion::Wanda)).unwrap().with_input_norms(norms);
        let (layer, _) = pruner.prune(layer).unwrap();
        assert_eq!(host(layer.weight.val()), vec![0.0, 0.0, 1.0, 1.0], "{name}");

        let fresh = || LinearConfig::new(2, 2).init(&d);
        let wanda = || Pruner::new(PruneConfig::new(0.5).with_criterion(Criterion::Wanda)).unwrap();
        assert!(matches!(wanda().prune(fresh()), Err(PruneError::InvalidConfig { .. })));
        let short = [("weight".to_string(), vec![1.0f32])].into_iter().collect();
        assert!(matches!(wanda().with_input_norms(short).prune(fresh()), Err(PruneError::Shape { .. })));
    }
}

#[test]
fn movement_scores_are_minus_w_times_grad() {
    let d = Device::flex().autodiff();
    let layer: Linear = LinearConfig::new(3, 2).init(&d);
    let c = Tensor::<2>::from_floats([[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]], &d);
    let mut movement = MovementScores::new();
    for _ in 0..2 {
        let loss = (layer.weight.val() * c.clone()).sum();
        movement.accumulate(&layer, &loss.backward());
    }
    let w = host(layer.weight.val());
    let cv = host(c);
    let s = movement.scores()["weight"].clone();
    for i in 0..6 {
        assert!((s[i] - (-2.0 * w[i] * cv[i])).abs() < 1e-5, "{i}: {} vs {}", s[i], -2.0 * w[i] * cv[i]);
    }
    assert_eq!(movement.steps(), 2);
    let pruner =
        Pruner::new(PruneConfig::new(0.5).with_criterion(Criterion::Movement)).unwrap().with_scores(movement.scores());
    let masks = pruner.compute_masks(&layer.valid()).unwrap();
    let keep = &masks["weight"];
    let kept_min = (0..6).filter(|i| keep[*i]).map(|i| s[i]).fold(f32::MAX, f32::min);
    let dropped_max = (0..6).filter(|i| !keep[*i]).map(|i| s[i]).fold(f32::MIN, f32::max);
    assert!(kept_min >= dropped_max);
}

#[test]
fn cubic_schedule_follows_zhu_and_gupta() {
    let s = CubicSchedule::new(0.1, 0.8, 100, 1100, 50).unwrap();
    for step in 0..1300 {
        let want = if step < 100 {
            0.0
        } else if step >= 1100 {
            0.8
        } else {
            let t = 100 + (step - 100) / 50 * 50;
            0.8 + (0.1 - 0.8) * (1.0 - (t as f64 - 100.0) / 1000.0).powi(3)
        };
        assert!((s.sparsity_at(step) - want).abs() < 1e-12, "step {step}");
    }
    assert_eq!(s.sparsity_at(100), 0.1);
    assert!(s.is_update_step(150) && !s.is_update_step(151) && !s.is_update_step(1150));
    // Monotone non-decreasing from t0.
    assert!((100..1200).all(|t| s.sparsity_at(t + 1) >= s.sparsity_at(t)));
    assert!(matches!(CubicSchedule::new(0.0, 1.0, 0, 10, 1), Err(PruneError::Sparsity(_))));
    assert!(matches!(CubicSchedule::new(0.0, 0.5, 10, 0, 1), Err(PruneError::InvalidConfig { .. })));
}

#[test]
fn bad_settings_are_typed_errors() {
    let d = Device::flex();
    for s in [1.0, -0.1, f64::NAN] {
        assert!(matches!(Pruner::new(PruneConfig::new(s)), Err(PruneError::Sparsity(_))), "{s}");
    }
    for (n, m) in [(4, 4), (0, 4), (5, 4)] {
        assert!(matches!(
            Pruner::new(PruneConfig::new(0.0).with_granularity(Granularity::NM { n, m })),
            Err(PruneError::NM { .. })
        ));
    }
    // 3:8 on a 16 × 32 weight is fine, on an input dimension of 12 it is not.
    let layer: Linear = LinearConfig::new(12, 4).init(&d);
    let e = Pruner::new(PruneConfig::new(0.0).with_granularity(Granularity::NM { n: 3, m: 8 }))
        .unwrap()
        .prune(layer)
        .unwrap_err();
    assert!(e.to_string().contains("divide"), "{e}");
    let e =
        Pruner::new(PruneConfig::new(0.5).with_exclude(vec!["^fc".into()])).unwrap().prune(Net::new(&d)).unwrap_err();
    assert!(matches!(e, PruneError::EmptySelection(_)), "{e}");
    let mut layer: Linear = LinearConfig::new(2, 2).init(&d);
    layer.weight = layer.weight.map(|w| w.mul_scalar(f32::NAN));
    assert!(matches!(Pruner::new(PruneConfig::new(0.5)).unwrap().prune(layer), Err(PruneError::NonFinite(_))));
}

#[test]
fn path_patterns_are_regular_expressions_over_weight_paths() {
    let id = burn::module::ParamId::new();
    let m = |include: &[&str], exclude: &[&str], path: &str| {
        let inc: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        let exc: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
        selection(&inc, &exc).unwrap().matches(&id, Some(path))
    };
    assert!(m(&["encoder"], &[], "encoder.layers.0.weight"));
    assert!(m(&[r"^encoder\."], &[], "encoder.layers.0.weight"));
    assert!(!m(&[r"^encoder\."], &[], "encoder2.weight"));
    assert!(m(&[r"\.fc1\."], &[], "blocks.3.fc1.weight"));
    assert!(!m(&[r"\.fc1\."], &[], "blocks.3.fc2.weight"));
    assert!(m(&["fc1", "fc2"], &[], "fc2.weight"), "any include pattern");
    assert!(!m(&[], &["fc"], "fc2.weight"), "exclude wins");
    assert!(m(&[], &[], "anything.weight"), "empty include selects everything");
}

#[test]
fn lottery_ticket_rewinding_keeps_survivors_at_their_rewind_values() {
    let d = Device::flex();
    let ad = d.clone().autodiff();
    let rewind = Net::new(&ad);
    let start = host(rewind.fc1.weight.val());
    let mut model = rewind.clone();
    let x = Tensor::<2>::from_data(
        TensorData::new((0..64).map(|i| (i as f32 * 0.61).cos()).collect::<Vec<_>>(), [4, 16]),
        &ad,
    );
    let mut previous = vec![true; 512];
    for round in 1..=3 {
        let mut opt = AdamConfig::new().init();
        for _ in 0..3 {
            let grads = model.forward(x.clone()).powi_scalar(2).mean().backward();
            let grads = GradientsParams::from_grads(grads, &model);
            model = opt.step(1e-2, model, grads);
        }
        assert_ne!(host(model.fc1.weight.val()), start, "training moved the weights");
        let s = 1.0 - 0.5f64.powi(round);
        let masks = Pruner::new(PruneConfig::new(s)).unwrap().compute_masks(&model).unwrap();
        let keep = masks["fc1.weight"].clone();
        model = apply_masks(rewind.clone(), masks).unwrap();
        let w = host(model.fc1.weight.val());
        for i in 0..512 {
            assert_eq!(w[i], if keep[i] { start[i] } else { 0.0 }, "round {round}, entry {i}");
            assert!(previous[i] || !keep[i], "round {round}: entry {i} came back");
        }
        assert_eq!(keep.iter().filter(|k| !**k).count(), mask::pruned_count(512, s));
        previous = keep;
    }
    let bad = [("nope.weight".to_string(), vec![true; 4])].into_iter().collect();
    assert!(matches!(apply_masks(Net::new(&d), bad), Err(PruneError::EmptySelection(_))));
    let short = [("fc1.weight".to_string(), vec![true; 4])].into_iter().collect();
    assert!(matches!(apply_masks(Net::new(&d), short), Err(PruneError::Shape { .. })));
}

#[test]
fn masks_save_load_and_reapply() {
    for (name, d) in devices() {
        let original = Net::new(&d);
        let (pruned, _) =
            Pruner::new(PruneConfig::new(0.7).with_scope(Scope::Global)).unwrap().prune(original.clone()).unwrap();
        let masks = current_masks(&pruned);
        assert_eq!(masks.len(), 2, "{name}");
        let path = std::env::temp_dir().join(format!("ember-prune-masks-{}-{name}.bin", std::process::id()));
        let bytes = save_masks(&path, &masks).unwrap();
        assert!(bytes < 8 + 2 * (4 + 10 + 8) + 768 / 8 + 2, "{bytes} bytes: one bit per entry");
        let loaded = load_masks(&path).unwrap();
        assert_eq!(loaded, masks);
        let again = apply_masks(original, loaded).unwrap();
        assert_eq!(host(again.fc1.weight.val()), host(pruned.fc1.weight.val()));
        assert_eq!(host(again.fc2.weight.val()), host(pruned.fc2.weight.val()));
        std::fs::write(&path, b"EMBMASK1\x05\x00").unwrap();
        assert!(load_masks(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn a_narrower_second_pass_keeps_the_other_masks_and_reparameterized_targets_are_refused() {
    let d = Device::flex();
    let (net, _) = Pruner::new(PruneConfig::new(0.5)).unwrap().prune(Net::new(&d)).unwrap();
    let fc2_before = host(net.fc2.weight.val());
    let config = PruneConfig::new(0.8).with_include(vec!["fc1".into()]);
    let (net, report) = Pruner::new(config).unwrap().prune(net).unwrap();
    assert_eq!(report.layers.len(), 1);
    let masks = current_masks(&net);
    assert_eq!(masks.len(), 2, "fc2 keeps its mask");
    assert_eq!(masks["fc2.weight"].iter().filter(|k| !**k).count(), 128);
    assert_eq!(host(net.fc2.weight.val()), fc2_before);
    assert_eq!(masks["fc1.weight"].iter().filter(|k| !**k).count(), mask::pruned_count(512, 0.8));
    // Burn would keep the old mask over a new one: refused instead.
    let again = apply_masks(net, masks);
    assert!(matches!(again, Err(PruneError::InvalidConfig { .. })));
}

#[test]
fn the_schedule_reaches_its_final_sparsity_on_an_update_step() {
    let s = CubicSchedule::new(0.0, 0.5, 0, 10, 4).unwrap();
    assert!(s.is_update_step(8) && s.is_update_step(10) && !s.is_update_step(9));
    assert_eq!(s.sparsity_at(10), 0.5);
}
