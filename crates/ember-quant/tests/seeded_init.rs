//! Same seed, same weights: Ember's LinearConfig initializes exactly like Burn's. These tests
//! seed the shared device RNG, so they live alone in this binary (other tests would draw from
//! the same generator concurrently) and run one at a time.

mod common;
use burn::tensor::Device;
use common::*;
use ember_quant::{LayerQuantization, Linear, LinearConfig, compare};

static SEED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Equal up to the rounding of a different f32 summation order (on CPU devices small inputs run
/// Ember's f32 GEMM, not Burn's).
fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + x.abs().max(y.abs())))
}

#[test]
fn float_linear_equals_burn_linear_and_converts_both_ways() {
    for (_, device) in devices() {
        // Parameters initialize lazily: materialize each right after seeding.
        let _guard = SEED.lock().unwrap_or_else(|p| p.into_inner());
        device.seed(5);
        let burn_l = burn::nn::LinearConfig::new(24, 12).init(&device);
        let _ = (burn_l.weight.val(), burn_l.bias.as_ref().map(|b| b.val()));
        device.seed(5);
        let ember_l = LinearConfig::new(24, 12).init(&device);
        let _ = (ember_l.weight.val(), ember_l.bias.as_ref().map(|b| b.val()));
        let x = input(1, [3, 24], &device);
        assert!(
            same(&to_vec(burn_l.forward(x.clone())), &to_vec(ember_l.forward(x.clone()))),
            "same init, same output"
        );
        assert_eq!(to_vec(burn_l.weight.val()), to_vec(ember_l.weight.val()), "same init, same weights");
        let from: Linear = burn_l.clone().into();
        assert!(same(&to_vec(from.forward(x.clone())), &to_vec(burn_l.forward(x.clone()))));
        assert_eq!(from.weight.id, burn_l.weight.id, "parameter ids are kept");
        let back = from.to_burn().unwrap();
        assert_eq!(to_vec(back.forward(x.clone())), to_vec(burn_l.forward(x)), "back to Burn: Burn's own op");
    }
}

#[test]
fn col_layout_behaves_like_burn() {
    let device = Device::flex();
    let _guard = SEED.lock().unwrap_or_else(|p| p.into_inner());
    device.seed(9);
    let b = burn::nn::LinearConfig::new(6, 5).with_layout(burn::nn::LinearLayout::Col).init(&device);
    let _ = (b.weight.val(), b.bias.as_ref().map(|b| b.val()));
    device.seed(9);
    let e = LinearConfig::new(6, 5).with_layout(burn::nn::LinearLayout::Col).init(&device);
    let _ = (e.weight.val(), e.bias.as_ref().map(|b| b.val()));
    let x = input(3, [2, 6], &device);
    assert!(same(&to_vec(b.forward(x.clone())), &to_vec(e.forward(x.clone()))));
    assert_eq!(to_vec(b.weight.val()), to_vec(e.weight.val()));
    let q = e.quantize(&LayerQuantization::default()).unwrap();
    assert!(compare(b.forward(x.clone()), q.forward(x)).unwrap().cosine > 0.999);
}
