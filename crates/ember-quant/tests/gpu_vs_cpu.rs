//! Int8 layers on wgpu against the CPU: every int8 `Linear` of a transformer, for every weight
//! granularity, activation type and granularity, dynamic and static activations and SmoothQuant,
//! quantized on the CPU (Ember's kernels compute the reference there), moved to the wgpu device,
//! and run there through the float path: each layer's output must have cosine ≥ 0.9999 with the
//! CPU's. Quantizing directly on wgpu must give bit-identical int8 state.
//!
//! Runs with `--features wgpu` (CI: on Mesa's lavapipe); without an adapter it prints SKIPPED
//! unless `EMBER_REQUIRE_WGPU=1`.
#![cfg(feature = "wgpu")]

mod common;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use common::*;
use ember_quant::smooth::smoothing_factors_for;
use ember_quant::{
    ActivationGranularity, ActivationMode, CalibrationConfig, CalibrationData, Calibrator, Int8Route, Linear,
    ObserverConfig, QuantDtype, QuantizeConfig, Quantizer, WeightGranularity, int8_route,
};
use std::collections::BTreeMap;

fn gpu() -> Option<Device> {
    let d = ember_testkit::wgpu();
    match &d {
        Some(_) => ember_testkit::record("wgpu"),
        None => eprintln!("SKIPPED: no wgpu adapter"),
    }
    d
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        assert!(x.is_finite() && y.is_finite(), "non-finite output");
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

/// The six linears of [`TinyLm`], by name.
fn linears(m: &TinyLm) -> [(&'static str, &Linear); 6] {
    [("query", &m.query), ("key", &m.key), ("value", &m.value), ("output", &m.output), ("fc1", &m.fc1), ("fc2", &m.fc2)]
}

fn calibrate(model: &TinyLm, cpu: &Device) -> CalibrationData {
    let session = Calibrator::new(model, &CalibrationConfig::new(ObserverConfig::MinMax)).unwrap();
    for b in 0..4 {
        model.forward(ids(200 + b, 4, 12, cpu));
    }
    session.finish().unwrap()
}

/// Every configuration worth telling apart on the float path.
fn configs(stats: &CalibrationData) -> Vec<(String, Quantizer)> {
    let mut out = Vec::new();
    for weight in
        [WeightGranularity::PerChannel, WeightGranularity::PerTensor, WeightGranularity::PerGroup { group_size: 32 }]
    {
        for dtype in [QuantDtype::U8Affine, QuantDtype::I8Symmetric] {
            for gran in [ActivationGranularity::PerRow, ActivationGranularity::PerTensor] {
                let cfg = QuantizeConfig::new()
                    .with_weight(weight)
                    .with_activation_dtype(dtype)
                    .with_activation_granularity(gran);
                out.push((format!("dynamic {weight:?} {dtype:?} {gran:?}"), Quantizer::new(cfg)));
            }
            let cfg = QuantizeConfig::new()
                .with_mode(ActivationMode::Static)
                .with_weight(weight)
                .with_activation_dtype(dtype);
            out.push((format!("static {weight:?} {dtype:?}"), Quantizer::new(cfg).with_calibration(stats.clone())));
        }
    }
    out
}

#[test]
fn every_int8_linear_on_wgpu_matches_the_cpu_kernels() {
    let Some(gpu) = gpu() else { return };
    let cpu = Device::flex();
    assert_eq!(int8_route(&gpu), Int8Route::FloatFallback);
    let model = TinyLm::new(&cpu);
    let stats = calibrate(&model, &cpu);
    let mut checked = 0;
    for (what, quantizer) in configs(&stats) {
        let (int8_cpu, _) = quantizer.quantize(&model).unwrap();
        let int8_gpu = int8_cpu.clone().to_device(&gpu);
        for ((name, on_cpu), (_, on_gpu)) in linears(&int8_cpu).into_iter().zip(linears(&int8_gpu)) {
            assert!(on_cpu.is_quantized(), "{what}: {name} not quantized");
            let x = input(17, [2, 12, on_cpu.d_input()], &cpu);
            let want = to_vec(on_cpu.try_forward(x.clone()).unwrap());
            let got = to_vec(on_gpu.try_forward(x.to_device(&gpu)).unwrap());
            let c = cosine(&want, &got);
            assert!(c >= 0.9999, "{what}: {name} cosine {c} (wgpu vs CPU)");
            checked += 1;
        }
        let ids_cpu = ids(5, 2, 12, &cpu);
        let want = to_vec(int8_cpu.forward(ids_cpu.clone()));
        let got = to_vec(int8_gpu.forward(ids_cpu.to_device(&gpu)));
        let c = cosine(&want, &got);
        assert!(c >= 0.9999, "{what}: whole model cosine {c} (wgpu vs CPU)");
    }
    assert_eq!(checked, 6 * 18);
}

#[test]
fn smoothquant_int8_linear_on_wgpu_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = Device::flex();
    let model = TinyLm::new(&cpu);
    let stats = calibrate(&model, &cpu);
    let mut factors = BTreeMap::new();
    for name in ["query", "key", "value", "output", "fc1", "fc2"] {
        let layer = linears(&model).into_iter().find(|(n, _)| *n == name).unwrap().1;
        let f = smoothing_factors_for(&[layer], &stats.layers[name].channel_abs_max(), 0.5).unwrap();
        factors.insert(name.to_string(), f);
    }
    for mode in [ActivationMode::Dynamic, ActivationMode::Static] {
        let q = Quantizer::new(QuantizeConfig::new().with_mode(mode))
            .with_calibration(stats.clone())
            .with_smoothing(factors.clone());
        let (int8_cpu, _) = q.quantize(&model).unwrap();
        let int8_gpu = int8_cpu.clone().to_device(&gpu);
        for ((name, on_cpu), (_, on_gpu)) in linears(&int8_cpu).into_iter().zip(linears(&int8_gpu)) {
            let x = input(23, [3, 7, on_cpu.d_input()], &cpu);
            let want = to_vec(on_cpu.forward(x.clone()));
            let got = to_vec(on_gpu.forward(x.to_device(&gpu)));
            let c = cosine(&want, &got);
            assert!(c >= 0.9999, "SmoothQuant {mode:?}: {name} cosine {c}");
        }
    }
}

#[test]
fn quantizing_on_wgpu_gives_the_same_int8_state_as_on_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = Device::flex();
    let model = TinyLm::new(&cpu);
    let on_gpu = model.clone().to_device(&gpu);
    for weight in [WeightGranularity::PerChannel, WeightGranularity::PerGroup { group_size: 32 }] {
        let q = Quantizer::new(QuantizeConfig::new().with_weight(weight));
        let (a, _) = q.quantize(&model).unwrap();
        let (b, _) = q.quantize(&on_gpu).unwrap();
        for ((name, x), (_, y)) in linears(&a).into_iter().zip(linears(&b)) {
            let vx: Vec<i64> = x.quant.values.val().into_data().convert::<i64>().try_to_vec().unwrap();
            let vy: Vec<i64> = y.quant.values.val().into_data().convert::<i64>().try_to_vec().unwrap();
            assert_eq!(vx, vy, "{weight:?}: {name} int8 values differ");
            assert_eq!(to_vec(x.quant.scales.val()), to_vec(y.quant.scales.val()), "{weight:?}: {name} scales");
        }
        let ids_gpu = ids(9, 2, 12, &gpu);
        let want = to_vec(a.forward(ids_gpu.clone().to_device(&cpu)));
        let got = to_vec(b.forward(ids_gpu));
        let c = cosine(&want, &got);
        assert!(c >= 0.9999, "{weight:?}: whole model quantized on wgpu, cosine {c}");
    }
}

#[test]
fn int8_output_on_wgpu_is_a_float_tensor_of_the_right_shape() {
    let Some(gpu) = gpu() else { return };
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&Mlp::new(&gpu)).unwrap();
    let y: Tensor<2> = int8.forward(input(3, [5, 48], &gpu));
    assert_eq!(y.dims(), [5, 10]);
    assert!(to_vec(y).iter().all(|v| v.is_finite()));
}

#[test]
fn float_gpu_weights_give_the_same_outputs_as_words() {
    let Some(gpu) = gpu() else { return };
    let cpu = Device::flex();
    let model = TinyLm::new(&cpu);
    let (int8_cpu, _) =
        Quantizer::new(QuantizeConfig::new().with_weight(WeightGranularity::PerGroup { group_size: 32 }))
            .quantize(&model)
            .unwrap();
    let ids_cpu = ids(13, 2, 12, &cpu);
    let want = to_vec(int8_cpu.forward(ids_cpu.clone()));
    let on_gpu = int8_cpu.to_device(&gpu);
    // The mode is process-wide; other tests of this binary are correct in either mode.
    ember_quant::set_gpu_int8_weights(ember_quant::GpuInt8Weights::Float);
    let float_mode = to_vec(on_gpu.forward(ids_cpu.clone().to_device(&gpu)));
    ember_quant::set_gpu_int8_weights(ember_quant::GpuInt8Weights::Words);
    let words_mode = to_vec(on_gpu.forward(ids_cpu.to_device(&gpu)));
    for (what, got) in [("float", float_mode), ("words", words_mode)] {
        let c = cosine(&want, &got);
        assert!(c >= 0.9999, "{what} GPU weights: cosine {c}");
    }
}
