//! SmoothQuant rewrites are exact in f32 and help int8 on outlier channels.

mod common;
use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use ember_quant::smooth::{smooth_layer_norm, smooth_linear_pair, smoothing_factors, smoothing_factors_for};
use ember_quant::{CalibrationConfig, Calibrator, ObserverConfig, QuantizeConfig, Quantizer, compare};

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>().sqrt();
    let den: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    num / den
}

/// Statistics of each smoothed input: per-channel abs-max from a calibration run.
fn stats(model: &TinyLm, device: &Device) -> ember_quant::CalibrationData {
    let s = Calibrator::new(model, &CalibrationConfig::new(ObserverConfig::MinMax)).unwrap();
    for b in 0..3 {
        model.forward(ids(b, 2, 10, device));
    }
    s.finish().unwrap()
}

#[test]
fn folding_into_layer_norm_and_value_output_pair_keeps_f32_outputs() {
    for (name, device) in devices() {
        let model = TinyLm::new(&device);
        let st = stats(&model, &device);
        let x = ids(42, 2, 10, &device);
        let before = to_vec(model.forward(x.clone()));
        let mut m = model.clone();
        let act = st.layers["query"].channel_abs_max();
        let s1 = {
            let TinyLm { norm1, query, key, value, .. } = &mut m;
            smooth_layer_norm(norm1, &mut [query, key, value], &act, 0.5).unwrap()
        };
        assert!(s1.iter().any(|v| (v - 1.0).abs() > 1e-3), "factors are not trivial");
        let act_ffn = st.layers["fc1"].channel_abs_max();
        {
            let TinyLm { norm2, fc1, .. } = &mut m;
            smooth_layer_norm(norm2, &mut [fc1], &act_ffn, 0.5).unwrap();
        }
        let act_o = st.layers["output"].channel_abs_max();
        {
            let TinyLm { value, output, .. } = &mut m;
            smooth_linear_pair(value, output, &act_o, 0.5).unwrap();
        }
        let after = to_vec(m.forward(x));
        let e = rel_err(&before, &after);
        assert!(e <= 1e-5, "{name}: relative error {e} after the rewrite");
    }
}

#[test]
fn smoothing_inside_the_quantizer_is_exact_in_f32_and_helps_outlier_channels() {
    let device = Device::flex();
    device.seed(3);
    let layer = ember_quant::LinearConfig::new(64, 32).init(&device);
    // Activations with three outlier channels (×60), as in LLM activations.
    let mut v = lcg(8, 256 * 64);
    for r in 0..256 {
        for c in [3usize, 17, 40] {
            v[r * 64 + c] *= 60.0;
        }
    }
    let x = Tensor::<2>::from_data(TensorData::new(v, [256, 64]), &device);
    let session = Calibrator::new(&layer, &CalibrationConfig::new(ObserverConfig::MinMax)).unwrap();
    layer.forward(x.clone());
    let st = session.finish().unwrap();
    let factors = smoothing_factors_for(&[&layer], &st.layers[""].channel_abs_max(), 0.5).unwrap();
    let reference = layer.forward(x.clone());
    let cfg = QuantizeConfig::new().with_activation_granularity(ember_quant::ActivationGranularity::PerTensor);
    let (plain, _) = Quantizer::new(cfg.clone()).quantize(&layer).unwrap();
    let smoothed_map = std::collections::BTreeMap::from([(String::new(), factors.clone())]);
    let (smoothed, _) = Quantizer::new(cfg).with_smoothing(smoothed_map).quantize(&layer).unwrap();
    // The smoothed int8 layer's float weights (÷ s back) are the original ones up to int8 error.
    let e_plain = compare(reference.clone(), plain.forward(x.clone())).unwrap();
    let e_smooth = compare(reference, smoothed.forward(x)).unwrap();
    assert!(
        e_smooth.sqnr_db > e_plain.sqnr_db + 3.0,
        "smoothing should help: {:.1} dB vs {:.1} dB",
        e_smooth.sqnr_db,
        e_plain.sqnr_db
    );
    assert!(smoothing_factors(&[1.0], &[1.0], 1.5).unwrap_err().to_string().contains("[0, 1]"));
    assert_eq!(smoothing_factors(&[0.0, 4.0], &[1.0, 1.0], 0.5).unwrap(), vec![1.0, 2.0]);
}
