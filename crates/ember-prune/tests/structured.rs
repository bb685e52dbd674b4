//! Structured pruning: ember-prune chooses (channel importance, Taylor importance, `keep_top`),
//! ember-layers removes (`retain_heads`, `retain_neurons`). The removed modules equal their
//! masked twins from `removal_masks` (to 1e-5) and are smaller; the Taylor importance equals a
//! finite difference of a gate; a shared block's calibration norms sum its uses.

mod common;

use burn::module::{Module, Param};
use burn::tensor::{Bool, Device, Tensor, TensorData};
use common::{devices, host};
use ember_layers::{AttentionConfig, AttentionMask, EncoderConfig, FeedForwardConfig, SharingMode};
use ember_prune::*;

fn input(seed: u64, dims: [usize; 3], d: &Device) -> Tensor<3> {
    let n = dims.iter().product::<usize>();
    Tensor::from_data(
        TensorData::new((0..n).map(|i| ((i as u64 * 7919 + seed) % 101) as f32 / 50.0 - 1.0).collect::<Vec<_>>(), dims),
        d,
    )
}

fn assert_close(a: Vec<f32>, b: Vec<f32>, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(worst <= 1e-5, "{what}: max difference {worst}");
}

#[test]
fn retained_feed_forward_equals_masked_and_is_smaller() {
    for (name, d) in devices() {
        let ffn = FeedForwardConfig::new(16, 64).init(&d).unwrap();
        let channels = channel_importance_of(&ffn.outer.weight, None).unwrap();
        // The magnitude score of neuron j is ‖outer[j, :]‖₂.
        let w2 = host(ffn.outer.weight.val());
        for j in [0, 17, 63] {
            let want: f32 = (0..16).map(|k| w2[j * 16 + k].powi(2)).sum::<f32>().sqrt();
            assert!((channels[j] - want).abs() <= 1e-5 * want.max(1.0), "{name}: neuron {j}");
        }
        let keep = keep_top(&unit_scores(&channels, 1).unwrap(), 32).unwrap();
        // Every kept neuron scores at least as high as every removed one.
        let lowest_kept = keep.iter().map(|&j| channels[j]).fold(f32::MAX, f32::min);
        let highest_removed = (0..64).filter(|j| !keep.contains(j)).map(|j| channels[j]).fold(f32::MIN, f32::max);
        assert!(lowest_kept >= highest_removed, "{name}: {lowest_kept} < {highest_removed}");
        let small = ffn.retain_neurons(&keep).unwrap();
        let removal = Removal {
            outputs_of: vec!["inner.weight".into()],
            inputs_of: vec!["outer.weight".into()],
            unit_width: 1,
            keep: keep.clone(),
        };
        let masked = apply_masks(ffn.clone(), removal_masks(&ffn, &[removal]).unwrap()).unwrap();
        let x = input(1, [2, 5, 16], &d);
        assert_close(host(small.forward(x.clone())), host(masked.forward(x)), name);
        assert_eq!(small.d_ff(), 32);
        assert_eq!(small.num_params(), 16 * 32 + 32 + 32 * 16 + 16);
    }
}

#[test]
fn keep_top_keeps_the_highest_scores_in_order_and_breaks_ties_by_position() {
    assert_eq!(keep_top(&[0.1, 5.0, 3.0, 5.0, 0.2], 3).unwrap(), vec![1, 2, 3]);
    assert_eq!(keep_top(&[1.0, 1.0, 1.0], 2).unwrap(), vec![0, 1]);
    assert_eq!(units_to_keep(12, 1.0 / 3.0).unwrap(), 8);
    assert_eq!(units_to_keep(1536, 0.5).unwrap(), 768);
    assert_eq!(units_to_keep(2, 0.9).unwrap(), 1, "at least one unit stays");
    // Wanda's structured form weighs each channel by its input norm; heads sum in quadrature.
    let w = [3.0, 4.0, 0.0, 1.0, 1.0, 0.0];
    let c = channel_importance(&w, 3, 2, Some(&[1.0, 10.0, 2.0])).unwrap();
    assert_eq!(c, vec![5.0, 10.0, 2.0]);
    assert_eq!(unit_scores(&[3.0, 4.0, 1.0, 0.0], 2).unwrap(), vec![5.0, 1.0]);
}

#[test]
fn retained_attention_equals_masked_with_padding() {
    for (name, d) in devices() {
        let att = AttentionConfig::new(16, 4).init(&d).unwrap();
        let keep = vec![0, 2];
        let x = input(3, [2, 5, 16], &d);
        let pad = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![false, false, false, true, true, false, false, false, false, false], [2, 5]),
            &d,
        );
        let mask = AttentionMask::new(Some(pad), false, 2, 5, &d).unwrap();
        let small = att.retain_heads(&keep).unwrap();
        let removal = Removal {
            outputs_of: vec!["query.weight".into(), "key.weight".into(), "value.weight".into()],
            inputs_of: vec!["output.weight".into()],
            unit_width: 4,
            keep,
        };
        let masked = apply_masks(att.clone(), removal_masks(&att, &[removal]).unwrap()).unwrap();
        let (s, m) = (small.forward(x.clone(), &mask), masked.forward(x, &mask));
        assert_close(host(s.context), host(m.context), name);
        assert_eq!(small.n_heads, 2);
        assert_eq!(s.probs.dims(), [2, 2, 5, 5]);
        assert_eq!(small.num_params(), 3 * (16 * 8 + 8) + 8 * 16 + 16);
    }
}

#[test]
fn taylor_importance_is_the_gate_derivative() {
    let d = Device::flex();
    let ad = d.clone().autodiff();
    let att = AttentionConfig::new(8, 4).init(&ad).unwrap();
    let x = input(4, [2, 3, 8], &ad);
    let target = input(5, [2, 3, 8], &ad);
    let loss_of = |a: &ember_layers::MultiHeadAttention, x: Tensor<3>, t: Tensor<3>| {
        (a.forward(x, &AttentionMask::none(2, 3)).context - t).powi_scalar(2).sum()
    };
    let mut imp = TaylorImportance::new();
    let grads = loss_of(&att, x.clone(), target.clone()).backward();
    imp.accumulate("att", &att.output.weight, att.head_dim, &grads).unwrap();
    let got = imp.scores()["att"].clone();
    // Reference: a gate ξ_h on head h is the same as scaling its output rows by ξ_h.
    let plain = att.valid().fork(&d);
    let (xp, tp) = (x.inner(), target.inner());
    for (h, got_h) in got.iter().enumerate() {
        let gate = |xi: f32| {
            let scale: Vec<f32> = (0..8).flat_map(|r| [if r / 2 == h { xi } else { 1.0 }; 8]).collect();
            let s = Tensor::<2>::from_data(TensorData::new(scale, [8, 8]), &d);
            let mut a = plain.clone();
            a.output.weight = Param::from_tensor(plain.output.weight.val() * s);
            loss_of(&a, xp.clone(), tp.clone()).into_scalar::<f32>() as f64
        };
        let eps = 1e-2;
        let fd = ((gate(1.0 + eps) - gate(1.0 - eps)) / (2.0 * eps as f64)).abs();
        assert!((got_h - fd).abs() <= 2e-2 * (1.0 + fd), "head {h}: {got_h} vs finite difference {fd}");
    }
    assert!(got.iter().any(|v| *v > 1e-4));
    // A second batch adds; another unit count under the same name is refused.
    imp.accumulate("att", &att.output.weight, att.head_dim, &grads).unwrap();
    assert!((imp.scores()["att"][0] - 2.0 * got[0]).abs() <= 1e-9 * got[0].max(1.0));
    assert!(imp.accumulate("att", &att.output.weight, 1, &grads).is_err());
}

#[test]
fn taylor_importance_works_on_a_masked_block_and_zeroes_removed_heads() {
    let d = Device::flex().autodiff();
    let att = AttentionConfig::new(8, 4).init(&d).unwrap();
    let removal = Removal {
        outputs_of: vec!["query.weight".into(), "key.weight".into(), "value.weight".into()],
        inputs_of: vec!["output.weight".into()],
        unit_width: 2,
        keep: vec![0, 2, 3],
    };
    let att = apply_masks(att.clone(), removal_masks(&att, &[removal]).unwrap()).unwrap();
    let x = input(6, [2, 3, 8], &d);
    let grads = att.forward(x, &AttentionMask::none(2, 3)).context.powi_scalar(2).sum().backward();
    let mut imp = TaylorImportance::new();
    imp.accumulate("att", &att.output.weight, 2, &grads).unwrap();
    let s = &imp.scores()["att"];
    assert_eq!(s[1], 0.0);
    assert!(s[0] > 0.0 && s[2] > 0.0 && s[3] > 0.0, "{s:?}");
}

#[test]
fn a_shared_blocks_calibration_norms_sum_its_uses() {
    // A shared 2-layer encoder and an unshared copy with the same block twice: the shared
    // block's input norm² over its two uses equals the sum of the copies' norms².
    let d = Device::flex();
    let shared = EncoderConfig::new(8, 2, 12, 2).with_sharing(SharingMode::All).init(&d).unwrap();
    let mut unshared = EncoderConfig::new(8, 2, 12, 2).init(&d).unwrap();
    for i in 0..2 {
        unshared.attention[i] = shared.attention[0].clone().map(&mut Fresh);
        unshared.feed_forward[i] = shared.feed_forward[0].clone().map(&mut Fresh);
        unshared.attention_norm[i] = shared.attention_norm[0].clone().map(&mut Fresh);
        unshared.feed_forward_norm[i] = shared.feed_forward_norm[0].clone().map(&mut Fresh);
    }
    let x = input(7, [2, 4, 8], &d);
    let norms = |enc: &ember_layers::Encoder| {
        let config = ember_quant::CalibrationConfig::new(ember_quant::ObserverConfig::MinMax);
        let cal = ember_quant::Calibrator::new(enc, &config).unwrap();
        enc.forward(x.clone(), None, false);
        cal.finish().unwrap().input_channel_norms()
    };
    let (s, u) = (norms(&shared), norms(&unshared));
    for (block, path) in [("attention", "output"), ("feed_forward", "outer")] {
        let one = &s[&format!("{block}.0.{path}.weight")];
        let (a, b) = (&u[&format!("{block}.0.{path}.weight")], &u[&format!("{block}.1.{path}.weight")]);
        for j in 0..one.len() {
            let want = (a[j].powi(2) + b[j].powi(2)).sqrt();
            assert!((one[j] - want).abs() <= 1e-4 * want.max(1.0), "{block} channel {j}: {} vs {want}", one[j]);
        }
    }
}

/// New parameter ids, same values (so the unshared copies are distinct parameters).
struct Fresh;
impl burn::module::ModuleMapper for Fresh {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        Param::initialized(burn::module::ParamId::new(), p.val())
    }
}
