//! Dynamic int8 on a small MLP and a small transformer, on every CPU device.

mod common;
use burn::module::Module;
use common::*;
use ember_quant::{
    ActivationGranularity, Int8Route, QuantDtype, QuantizeConfig, Quantizer, WeightGranularity, compare, int8_route,
};

#[test]
fn mlp_dynamic_int8_cosine_at_least_0_999_on_every_device() {
    for (name, device) in devices() {
        let model = Mlp::new(&device);
        let x = input(1, [32, 48], &device);
        let reference = model.forward(x.clone());
        for weight in [
            WeightGranularity::PerChannel,
            WeightGranularity::PerTensor,
            WeightGranularity::PerGroup { group_size: 16 },
        ] {
            let (int8, report) = Quantizer::new(QuantizeConfig::new().with_weight(weight)).quantize(&model).unwrap();
            assert_eq!(report.layers.len(), 3);
            assert!(int8.fc1.is_quantized() && int8.fc3.is_quantized());
            let before = kernel_calls();
            let got = int8.forward(x.clone());
            if int8_route(&device) == Int8Route::Kernels {
                assert!(kernel_calls() > before, "{name}: the int8 kernels did not run");
            }
            let e = compare(reference.clone(), got).unwrap();
            assert!(e.cosine >= 0.999, "{name} {weight:?}: cosine {}", e.cosine);
            assert!(e.max_abs.is_finite());
        }
    }
}

#[test]
fn transformer_dynamic_int8_with_int8_embedding_and_tied_head() {
    for (name, device) in devices() {
        let model = TinyLm::new(&device);
        let ids = ids(3, 2, 12, &device);
        let reference = model.forward(ids.clone());
        for (dtype, gran) in [
            (QuantDtype::U8Affine, ActivationGranularity::PerRow),
            (QuantDtype::U8Affine, ActivationGranularity::PerTensor),
            (QuantDtype::I8Symmetric, ActivationGranularity::PerRow),
        ] {
            let cfg = QuantizeConfig::new().with_activation_dtype(dtype).with_activation_granularity(gran);
            let (int8, report) = Quantizer::new(cfg).quantize(&model).unwrap();
            assert!(int8.emb.is_quantized(), "embedding converted");
            assert_eq!(report.layers.len(), 7, "6 linears and the embedding");
            let e = compare(reference.clone(), int8.forward(ids.clone())).unwrap();
            assert!(e.cosine >= 0.999, "{name} {dtype:?} {gran:?}: cosine {}", e.cosine);
        }
    }
}

#[test]
fn exclude_patterns_keep_layers_float() {
    let device = burn::tensor::Device::flex();
    let model = TinyLm::new(&device);
    // Regular expressions over weight paths (`fc1.weight`, `emb.weight`, …).
    let cfg = QuantizeConfig::new().with_exclude(vec![r"^fc\d".into(), "^emb".into()]);
    let (int8, report) = Quantizer::new(cfg).quantize(&model).unwrap();
    assert!(!int8.fc1.is_quantized() && !int8.fc2.is_quantized() && !int8.emb.is_quantized());
    assert!(int8.query.is_quantized() && int8.output.is_quantized());
    assert_eq!(report.layers.len(), 4);
    let group = burn::module::ParamGroup::from_path("query.weight");
    let (only_q, _) = Quantizer::new(QuantizeConfig::new()).with_group(group).quantize(&model).unwrap();
    assert!(only_q.query.is_quantized() && !only_q.key.is_quantized());
    // An include pattern selects by the same paths; a glob is not a regular expression.
    let cfg = QuantizeConfig::new().with_include(vec!["query|key".into()]).with_include_embeddings(false);
    let (qk, report) = Quantizer::new(cfg).quantize(&model).unwrap();
    assert!(qk.query.is_quantized() && qk.key.is_quantized() && !qk.fc1.is_quantized() && !qk.emb.is_quantized());
    assert_eq!(report.layers.len(), 2);
    let err = Quantizer::new(QuantizeConfig::new().with_exclude(vec!["*".into()])).quantize(&model).unwrap_err();
    assert!(err.to_string().contains("a regular expression searched in weight paths"), "{err}");
}

#[test]
fn fallback_route_matches_kernel_route() {
    // The autodiff device takes the float fallback: same quantized math with Burn ops.
    let device = burn::tensor::Device::flex();
    let model = Mlp::new(&device);
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
    let x = input(5, [16, 48], &device);
    let kernel = int8.forward(x.clone());
    let ad = device.clone().autodiff();
    assert_eq!(int8_route(&ad), Int8Route::FloatFallback);
    let fallback = int8.clone().fork(&ad).forward(x.to_device(&ad)).inner();
    let e = compare(kernel, fallback).unwrap();
    assert!(e.cosine >= 0.99999, "cosine {}", e.cosine);
}

#[test]
fn rank_3_and_rank_1_inputs() {
    let device = burn::tensor::Device::flex();
    let model = Mlp::new(&device);
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
    let x3 = input(9, [2, 5, 48], &device);
    let y3 = int8.fc1.forward(x3.clone());
    assert_eq!(y3.dims(), [2, 5, 96]);
    let y2 = int8.fc1.forward(x3.reshape([10, 48]));
    assert_eq!(to_vec(y3), to_vec(y2));
    let x1 = input(9, [48], &device);
    assert_eq!(int8.fc1.forward(x1).dims(), [96]);
}

#[test]
fn an_mse_weight_observer_beats_max_scaling_on_heavy_tailed_weights() {
    use burn::tensor::{Tensor, TensorData};
    let device = burn::tensor::Device::flex();
    let (k, n) = (256, 64);
    let mut layer = ember_quant::LinearConfig::new(k, n).init(&device);
    // Heavy-tailed weights (a Laplacian scaled by a second exponential, as trained weights with
    // rare large entries): clipping the rare large ones lowers the total error.
    let w: Vec<f32> = lcg(77, k * n)
        .iter()
        .zip(lcg(78, k * n))
        .zip(lcg(79, k * n))
        .map(|((s, u), v)| {
            let e = |x: f32| -(((x + 1.0) * 0.5).max(1e-7)).ln();
            s.signum() * e(u) * e(v) * 0.01
        })
        .collect();
    layer.weight = burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(w, [k, n]), &device));
    let weight_mse = |obs: Option<ember_quant::ObserverConfig>| {
        let cfg = QuantizeConfig::new().with_weight(WeightGranularity::PerTensor).with_weight_observer(obs);
        let (_, report) = Quantizer::new(cfg).quantize(&layer).unwrap();
        report.layers[0].weight_error.mse
    };
    let max_scaled = weight_mse(None);
    let mse = weight_mse(Some(ember_quant::ObserverConfig::mse()));
    // Measured 0.92×: at 8 bits clipping gains are modest, but without the observer the two are equal.
    assert!(mse < 0.97 * max_scaled, "MSE observer {mse:e} vs max |w| {max_scaled:e}");
    let e = Quantizer::new(
        QuantizeConfig::new()
            .with_weight(WeightGranularity::PerGroup { group_size: 16 })
            .with_weight_observer(Some(ember_quant::ObserverConfig::mse())),
    )
    .quantize(&layer)
    .unwrap_err();
    assert!(e.to_string().contains("per-group"), "{e}");
}
