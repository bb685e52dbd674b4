//! Physical removal: the shrunken modules equal the masked ones (to 1e-5) and are smaller;
//! head importance against a finite difference of a head gate.

mod common;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use common::{devices, host};
use ember_layers::{AttentionConfig, FeedForwardConfig};
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
fn shrunk_feed_forward_equals_masked_and_is_smaller() {
    for (name, d) in devices() {
        let ffn = FeedForwardConfig::new(16, 64).init(&d).unwrap();
        let scores = ffn_neuron_scores(&ffn);
        let keep = ember_prune::mask::unstructured(&scores, 0.5).unwrap();
        let x = input(1, [2, 5, 16], &d);
        let small = shrink_feed_forward(&ffn, &keep).unwrap();
        let masked = mask_feed_forward(ffn.clone(), &keep).unwrap();
        assert_close(host(small.forward(x.clone())), host(masked.forward(x.clone())), name);
        assert_eq!(small.d_ff(), 32);
        assert_eq!(small.num_params(), 16 * 32 + 32 + 32 * 16 + 16);
        assert!(small.num_params() < ffn.num_params());
        // The neuron score is ‖inner[:, j]‖ · ‖outer[j, :]‖.
        let (w1, w2) = (host(ffn.inner.weight.val()), host(ffn.outer.weight.val()));
        for j in [0, 17, 63] {
            let a: f32 = (0..16).map(|i| w1[i * 64 + j].powi(2)).sum::<f32>().sqrt();
            let b: f32 = (0..16).map(|k| w2[j * 16 + k].powi(2)).sum::<f32>().sqrt();
            assert!((scores[j] - a * b).abs() <= 1e-5 * (a * b).max(1.0), "{name}: neuron {j}");
        }
    }
}

#[test]
fn shrunk_linear_pair_equals_masked() {
    for (name, d) in devices() {
        let (a, b): (Linear, Linear) = (LinearConfig::new(8, 12).init(&d), LinearConfig::new(12, 4).init(&d));
        let keep: Vec<bool> = (0..12).map(|i| i % 3 != 0).collect();
        let (a2, b2) = shrink_linear_pair(&a, &b, &keep).unwrap();
        assert_eq!(a2.weight.dims(), [8, 8]);
        assert_eq!(b2.weight.dims(), [8, 4]);
        let x = input(2, [1, 3, 8], &d);
        // Masked reference by hand: zero the removed rows of the second layer.
        let rows = Tensor::<2>::from_data(
            TensorData::new(keep.iter().flat_map(|k| [if *k { 1.0f32 } else { 0.0 }; 4]).collect::<Vec<_>>(), [12, 4]),
            &d,
        );
        let b_masked = Linear { weight: Param::from_tensor(b.weight.val() * rows), bias: b.bias.clone() };
        let want = host(b_masked.forward(relu(a.forward(x.clone()))));
        assert_close(host(b2.forward(relu(a2.forward(x)))), want, name);
    }
}

#[test]
fn shrunk_attention_equals_masked_with_padding() {
    for (name, d) in devices() {
        let att = AttentionConfig::new(16, 4).init(&d).unwrap();
        let keep = [true, false, true, false];
        let x = input(3, [2, 5, 16], &d);
        let pad = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![false, false, false, true, true, false, false, false, false, false], [2, 5]),
            &d,
        );
        let small = shrink_attention(&att, &keep).unwrap();
        let masked = mask_attention(att.clone(), &keep).unwrap();
        let (s, m) = (small.forward(x.clone(), Some(pad.clone())), masked.forward(x, Some(pad)));
        assert_close(host(s.context), host(m.context), name);
        assert_eq!(small.n_heads, 2);
        assert_eq!(s.probs.dims(), [2, 2, 5, 5]);
        assert_eq!(small.num_params(), 3 * (16 * 8 + 8) + 8 * 16 + 16);
    }
}

#[test]
fn bad_keep_masks_are_errors() {
    let d = Device::flex();
    let ffn = FeedForwardConfig::new(4, 8).init(&d).unwrap();
    assert!(matches!(shrink_feed_forward(&ffn, &[true; 7]), Err(PruneError::Shape { .. })));
    assert!(matches!(shrink_feed_forward(&ffn, &[false; 8]), Err(PruneError::InvalidConfig { .. })));
    let att = AttentionConfig::new(8, 2).init(&d).unwrap();
    assert!(matches!(shrink_attention(&att, &[true, true, true]), Err(PruneError::Shape { .. })));
    let (a, b): (Linear, Linear) = (LinearConfig::new(4, 6).init(&d), LinearConfig::new(5, 2).init(&d));
    assert!(matches!(shrink_linear_pair(&a, &b, &[true; 6]), Err(PruneError::Shape { .. })));
}

#[test]
fn head_importance_is_the_gate_derivative() {
    let d = Device::flex();
    let ad = d.clone().autodiff();
    let att = AttentionConfig::new(8, 4).init(&ad).unwrap();
    let x = input(4, [2, 3, 8], &ad);
    let target = input(5, [2, 3, 8], &ad);
    let loss_of = |a: &ember_layers::MultiHeadAttention, x: Tensor<3>, t: Tensor<3>| {
        (a.forward(x, None).context - t).powi_scalar(2).sum()
    };
    let mut imp = HeadImportance::new();
    let grads = loss_of(&att, x.clone(), target.clone()).backward();
    imp.accumulate("att", &att, &grads);
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
}

#[test]
fn head_importance_works_on_a_masked_block_and_zeroes_pruned_heads() {
    let d = Device::flex().autodiff();
    let att = mask_attention(AttentionConfig::new(8, 4).init(&d).unwrap(), &[true, false, true, true]).unwrap();
    let x = input(6, [2, 3, 8], &d);
    let grads = att.forward(x, None).context.powi_scalar(2).sum().backward();
    let mut imp = HeadImportance::new();
    imp.accumulate("att", &att, &grads);
    let s = &imp.scores()["att"];
    assert_eq!(s[1], 0.0);
    assert!(s[0] > 0.0 && s[2] > 0.0 && s[3] > 0.0, "{s:?}");
}
