//! Static int8 with calibrated activation ranges, for every observer, on every CPU device.

mod common;
use common::*;
use ember_quant::{
    ActivationMode, CalibrationConfig, Calibrator, ObserverConfig, QuantDtype, QuantError, QuantizeConfig, Quantizer,
    compare,
};

fn observers() -> Vec<ObserverConfig> {
    vec![
        ObserverConfig::MinMax,
        ObserverConfig::MovingAverageMinMax { momentum: 0.1 },
        ObserverConfig::percentile(99.99),
        ObserverConfig::Mse { bins: 1024, steps: 50 },
        ObserverConfig::Entropy { bins: 2048 },
    ]
}

#[test]
fn static_int8_with_each_observer_cosine_at_least_0_99() {
    for (name, device) in devices() {
        let model = TinyLm::new(&device);
        for obs in observers() {
            let session = Calibrator::new(&model, &CalibrationConfig::new(obs.clone())).unwrap();
            for b in 0..6 {
                model.forward(ids(100 + b, 4, 12, &device));
            }
            let stats = session.finish().unwrap();
            assert_eq!(stats.layers.len(), 6, "every Ember Linear recorded");
            assert_eq!(stats.layers["fc1"].rows, 6 * 4 * 12);
            for dtype in [QuantDtype::U8Affine, QuantDtype::I8Symmetric] {
                let cfg = QuantizeConfig::new().with_mode(ActivationMode::Static).with_activation_dtype(dtype);
                let (int8, report) = Quantizer::new(cfg).with_calibration(stats.clone()).quantize(&model).unwrap();
                assert!(
                    report
                        .layers
                        .iter()
                        .filter(|l| l.kind == ember_quant::report::LayerKind::Linear)
                        .all(|l| l.output_error.is_some()),
                    "report has output errors"
                );
                let test_ids = ids(7, 2, 12, &device);
                let reference = model.forward(test_ids.clone());
                let got = int8.forward(test_ids);
                let v = to_vec(got.clone());
                assert!(v.iter().all(|x| x.is_finite()), "{name} {obs:?}: non-finite output");
                let e = compare(reference, got).unwrap();
                assert!(e.cosine >= 0.99, "{name} {obs:?} {dtype:?}: cosine {}", e.cosine);
            }
        }
    }
}

#[test]
fn static_without_calibration_is_a_typed_error() {
    let device = burn::tensor::Device::flex();
    let model = Mlp::new(&device);
    let cfg = QuantizeConfig::new().with_mode(ActivationMode::Static);
    let e = Quantizer::new(cfg).quantize(&model).unwrap_err();
    assert!(matches!(e, QuantError::NotCalibrated { ref path } if path == "fc1"), "{e}");
    assert!(e.to_string().contains("`fc1` has no calibration statistics"), "{e}");
}

#[test]
fn nan_in_calibration_data_is_reported_with_the_layer() {
    let device = burn::tensor::Device::flex();
    let model = Mlp::new(&device);
    let session = Calibrator::new(&model, &CalibrationConfig::new(ObserverConfig::MinMax)).unwrap();
    let mut x = lcg(1, 4 * 48);
    x[50] = f32::NAN;
    model.forward(burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(x, [4, 48]), &device));
    let e = session.finish().unwrap_err();
    assert!(matches!(e, QuantError::NonFinite { index: 50, .. }), "{e}");
    assert!(e.to_string().contains("layer `fc1`"), "{e}");
}

#[test]
fn calibration_statistics_are_exact_for_a_hand_worked_case() {
    let device = burn::tensor::Device::flex();
    let layer = ember_quant::LinearConfig::new(2, 1).init(&device);
    let session = Calibrator::new(&layer, &CalibrationConfig::new(ObserverConfig::MinMax)).unwrap();
    let x = burn::tensor::Tensor::<2>::from_floats([[3.0, -1.0], [4.0, 2.0]], &device);
    layer.forward(x);
    let s = session.finish().unwrap();
    let l = &s.layers[""];
    assert_eq!(l.channel_l2, vec![5.0, 5f32.sqrt()]);
    assert_eq!(l.channel_min, vec![3.0, -1.0]);
    assert_eq!(l.channel_max, vec![4.0, 2.0]);
    assert_eq!(l.min_max, (-1.0, 4.0));
    assert_eq!(s.input_channel_norms()["weight"], vec![5.0, 5f32.sqrt()]);
}

#[test]
fn a_model_without_ember_linears_cannot_be_calibrated() {
    let device = burn::tensor::Device::flex();
    let burn_linear = burn::nn::LinearConfig::new(4, 4).init(&device);
    let e = Calibrator::new(&burn_linear, &CalibrationConfig::new(ObserverConfig::MinMax)).err().unwrap();
    assert!(e.to_string().contains("ember_quant::Linear"), "{e}");
}
