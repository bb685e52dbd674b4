//! Bad-input catalogue: one malformed input per test (calibration data, observers, weights,
//! configs, quantized-model files), each rejected with the exact [`QuantError`] variant and a
//! message that says what was wrong and what was expected. Zero-range (constant) data is not an
//! error: it gets a valid scale, asserted here too.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use ember_kernels::KernelError;
use ember_quant::io::load_quantized_bytes;
use ember_quant::observer::{MinMax, MovingAverageMinMax, Percentile};
use ember_quant::scheme::quantize_weight;
use ember_quant::{
    ActivationMode, CalibrationConfig, Calibrator, Int8Route, LayerQuantization, Linear, LinearConfig, Observer,
    ObserverConfig, QuantDtype, QuantError, QuantizeConfig, Quantizer, WeightGranularity, int8_route, save_quantized,
};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-quant-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn tensor<const D: usize>(values: Vec<f32>, dims: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, dims), device)
}

/// Two layers, so that a file can miss one or carry one too many.
#[derive(Module, Debug)]
struct Pair {
    fc1: Linear,
    fc2: Linear,
}

fn pair(device: &Device) -> Pair {
    device.seed(3);
    Pair { fc1: LinearConfig::new(16, 8).init(device), fc2: LinearConfig::new(8, 4).init(device) }
}

fn saved_bytes<M: Module>(model: &M, name: &str) -> Vec<u8> {
    let path = tmp(name);
    save_quantized(model, &path).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn bad_input_calibration_batch_with_nan() {
    let device = Device::flex();
    let layer = LinearConfig::new(4, 2).init(&device);
    let session = Calibrator::new(&layer, &CalibrationConfig::new(ObserverConfig::min_max())).unwrap();
    layer.forward(tensor(vec![0.5, f32::NAN, 1.0, 2.0], [1, 4], &device));
    let e = session.finish().unwrap_err();
    assert!(matches!(&e, QuantError::NonFinite { index: 1, value, .. } if value.is_nan()), "{e}");
    let m = e.to_string();
    assert!(m.contains("calibration input of layer") && m.contains("quantization needs finite inputs"), "{m}");
}

#[test]
fn bad_input_calibration_batch_with_infinity() {
    let device = Device::flex();
    let layer = LinearConfig::new(4, 2).init(&device);
    let session = Calibrator::new(&layer, &CalibrationConfig::new(ObserverConfig::percentile(99.9))).unwrap();
    layer.forward(tensor(vec![0.5, 1.0, 1.0, 2.0], [1, 4], &device));
    layer.forward(tensor(vec![0.5, 1.0, f32::NEG_INFINITY, 2.0], [1, 4], &device));
    let e = session.finish().unwrap_err();
    assert!(matches!(&e, QuantError::NonFinite { index: 2, value, .. } if *value == f32::NEG_INFINITY), "{e}");
    assert!(e.to_string().contains("(batch 1)") && e.to_string().contains("non-finite value (-inf)"), "{e}");
}

#[test]
fn bad_input_observer_infinity() {
    let mut o = MinMax::new();
    o.observe(&[1.0, 2.0]).unwrap();
    let e = o.observe(&[0.0, f32::INFINITY]).unwrap_err();
    assert!(matches!(&e, QuantError::NonFinite { what, index: 1, .. } if what == "minmax observer"), "{e}");
    assert!(e.to_string().contains("quantization needs finite inputs"), "{e}");
    assert_eq!(o.min_max().unwrap(), (1.0, 2.0), "the bad batch left the observer unchanged");
}

#[test]
fn bad_input_percentile_observer_nan() {
    let mut o = Percentile::new(99.0, 64).unwrap();
    let e = o.observe(&[0.0, 1.0, f32::NAN]).unwrap_err();
    assert!(matches!(&e, QuantError::NonFinite { index: 2, .. }), "{e}");
    assert!(e.to_string().contains("percentile") && e.to_string().contains("at flat index 2"), "{e}");
}

#[test]
fn bad_input_observer_without_data() {
    let o = MinMax::new();
    let e = o.range(QuantDtype::U8Affine).unwrap_err();
    assert!(matches!(&e, QuantError::Empty { what, .. } if what == "minmax observer"), "{e}");
    assert!(e.to_string().contains("at least one observed value"), "{e}");
}

#[test]
fn bad_input_calibrator_on_a_model_without_ember_linears() {
    let device = Device::flex();
    let burn_only = burn::nn::LinearConfig::new(4, 2).init(&device);
    let e = Calibrator::new(&burn_only, &CalibrationConfig::new(ObserverConfig::min_max())).err().unwrap();
    assert!(matches!(&e, QuantError::Empty { what, .. } if what == "model"), "{e}");
    assert!(e.to_string().contains("at least one float `ember_quant::Linear`"), "{e}");
}

#[test]
fn bad_input_moving_average_momentum_out_of_range() {
    let e = MovingAverageMinMax::new(1.5).unwrap_err();
    assert!(matches!(e, QuantError::InvalidConfig { what: "momentum", .. }), "{e}");
    assert!(e.to_string().contains("a number in (0, 1]"), "{e}");
}

#[test]
fn bad_input_percentile_out_of_range() {
    let e = ObserverConfig::percentile(120.0).validate().unwrap_err();
    assert!(matches!(e, QuantError::InvalidConfig { what: "percentile", .. }), "{e}");
    assert!(e.to_string().contains("invalid `percentile` = 120"), "{e}");
}

#[test]
fn bad_input_zero_range_tensor_gets_a_valid_scale() {
    // A constant zero tensor: scale 1 (represents it exactly), never a division by zero.
    let mut o = MinMax::new();
    o.observe(&[0.0; 8]).unwrap();
    let (lo, hi) = o.range(QuantDtype::U8Affine).unwrap();
    for dtype in [QuantDtype::U8Affine, QuantDtype::I8Symmetric] {
        let p = dtype.params(lo, hi).unwrap();
        assert_eq!((p.scale, p.zero_point), (1.0, 0), "{dtype:?}");
    }
    // A constant non-zero tensor: the range is widened to include 0, a finite positive scale.
    let (q, scales) = quantize_weight(&[3.0; 6], 3, 2, WeightGranularity::PerChannel).unwrap();
    assert!(scales.iter().all(|s| s.is_finite() && *s > 0.0), "{scales:?}");
    assert_eq!(q, vec![127i8; 6]);
}

#[test]
fn bad_input_quantization_range_not_finite() {
    let e = QuantDtype::U8Affine.params(0.0, f32::INFINITY).unwrap_err();
    assert!(matches!(&e, QuantError::NonFinite { what, index: 1, .. } if what == "range"), "{e}");
    assert!(e.to_string().contains("quantization needs finite inputs"), "{e}");
}

#[test]
fn bad_input_weight_buffer_does_not_match_shape() {
    let e = quantize_weight(&[1.0; 5], 2, 3, WeightGranularity::PerTensor).unwrap_err();
    assert!(matches!(&e, QuantError::Shape { what, .. } if what == "weight"), "{e}");
    assert!(e.to_string().contains("expected 2×3 = 6 values, got 5 values"), "{e}");
}

#[test]
fn bad_input_nan_weight_refused_by_quantize() {
    let device = Device::flex();
    let mut layer = LinearConfig::new(4, 2).init(&device);
    layer.weight = Param::from_tensor(tensor(vec![0.1, 0.2, f32::NAN, 0.4, 0.5, 0.6, 0.7, 0.8], [4, 2], &device));
    let e = layer.quantize(&LayerQuantization::default()).unwrap_err();
    assert!(matches!(&e, QuantError::NonFinite { index: 2, .. }), "{e}");
    assert!(e.to_string().contains("quantization needs finite inputs"), "{e}");
}

#[test]
fn bad_input_linear_input_of_the_wrong_width() {
    let device = Device::flex();
    let layer = LinearConfig::new(8, 4).init(&device);
    let e = layer.try_forward(Tensor::<2>::zeros([2, 7], &device)).unwrap_err();
    assert!(matches!(&e, QuantError::Shape { what, .. } if what == "Linear input"), "{e}");
    assert!(e.to_string().contains("expected [..., 8], got [2, 7]"), "{e}");
}

#[test]
fn bad_input_nan_activation_into_an_int8_layer() {
    let device = Device::flex();
    let q = LinearConfig::new(4, 2).init(&device).quantize(&LayerQuantization::default()).unwrap();
    let x = tensor(vec![0.1, 0.2, 0.3, f32::NAN, 0.5, 0.6, 0.7, 0.8], [2, 4], &device);
    if int8_route(&device) != Int8Route::Kernels {
        // The float fallback (scalar-only CPUs) propagates NaN like f32 instead (documented).
        return;
    }
    let e = q.try_forward(x).unwrap_err();
    assert!(matches!(e, QuantError::Kernel(KernelError::NonFinite { what: "x", index: 3, .. })), "{e}");
    assert!(e.to_string().contains("at index 3; quantization needs finite inputs"), "{e}");
}

#[test]
fn bad_input_group_size_not_a_multiple_of_four() {
    let device = Device::flex();
    let config = QuantizeConfig::new().with_weight(WeightGranularity::PerGroup { group_size: 6 });
    let e = Quantizer::new(config).quantize(&LinearConfig::new(8, 4).init(&device)).unwrap_err();
    assert!(matches!(e, QuantError::InvalidConfig { what: "group_size", .. }), "{e}");
    assert!(e.to_string().contains("invalid `group_size` = 6: a positive multiple of 4"), "{e}");
}

#[test]
fn bad_input_quantizing_an_int8_layer_again() {
    let device = Device::flex();
    let q = LinearConfig::new(8, 4).init(&device).quantize(&LayerQuantization::default()).unwrap();
    let e = q.quantize(&LayerQuantization::default()).unwrap_err();
    assert!(matches!(e, QuantError::InvalidConfig { what: "layer", .. }), "{e}");
    assert!(e.to_string().contains("already int8") && e.to_string().contains("a float layer"), "{e}");
}

#[test]
fn bad_input_static_mode_without_calibration() {
    let device = Device::flex();
    let config = QuantizeConfig::new().with_mode(ActivationMode::Static);
    let e = Quantizer::new(config).quantize(&pair(&device)).unwrap_err();
    assert!(matches!(&e, QuantError::NotCalibrated { path } if path == "fc1"), "{e}");
    assert!(e.to_string().contains("run batches through the model inside a `Calibrator` session"), "{e}");
}

#[test]
fn bad_input_quantized_file_is_garbage() {
    let e = load_quantized_bytes(pair(&Device::flex()), b"definitely not a model file").unwrap_err();
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    assert!(e.to_string().contains("not a valid safetensors file"), "{e}");
}

#[test]
fn bad_input_quantized_file_truncated() {
    let device = Device::flex();
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&pair(&device)).unwrap();
    let bytes = saved_bytes(&int8, "truncated.safetensors");
    let e = load_quantized_bytes(pair(&device), &bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    assert!(e.to_string().contains("not a valid safetensors file"), "{e}");
}

#[test]
fn bad_input_quantized_file_from_another_format() {
    let data = [0u8; 16];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(vec![("fc1.weight", view)], Some(meta)).unwrap();
    let e = load_quantized_bytes(pair(&Device::flex()), &bytes).unwrap_err();
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    assert!(e.to_string().contains("format `pt`, expected `ember-quant`"), "{e}");
}

#[test]
fn bad_input_quantized_file_of_another_model() {
    let device = Device::flex();
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&LinearConfig::new(16, 8).init(&device)).unwrap();
    let bytes = saved_bytes(&int8, "single.safetensors");
    let e = load_quantized_bytes(pair(&device), &bytes).unwrap_err();
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    let m = e.to_string();
    assert!(m.contains("tensors missing from the file: fc1.") && m.contains("from another model or config"), "{m}");
}

#[test]
fn bad_input_empty_layer_has_nothing_to_quantize() {
    // A layer with zero inputs has no weights to quantize: the selection is reported empty.
    let device = Device::flex();
    let e = Quantizer::new(QuantizeConfig::new()).quantize(&LinearConfig::new(0, 4).init(&device)).unwrap_err();
    assert!(matches!(&e, QuantError::Empty { what, .. } if what == "selection"), "{e}");
    assert!(e.to_string().contains("`selection` is empty: at least one float `ember_quant::Linear`"), "{e}");
}

#[test]
fn bad_input_selection_pattern_that_is_not_a_regular_expression() {
    let d = Device::flex();
    let e = Quantizer::new(QuantizeConfig::new().with_include(vec!["fc(".into()])).quantize(&pair(&d)).unwrap_err();
    assert!(matches!(&e, QuantError::InvalidConfig { what: "include", .. }), "{e}");
    assert!(
        e.to_string().contains("invalid `include` = \"fc(\": a regular expression searched in weight paths"),
        "{e}"
    );
    let e = ember_quant::qat::prepare_qat(pair(&d), &ember_quant::qat::QatConfig::new().with_exclude(vec!["*".into()]))
        .unwrap_err();
    assert!(matches!(&e, QuantError::InvalidConfig { what: "exclude", .. }), "{e}");
}

#[test]
fn bad_input_metadata_with_a_reserved_key_and_no_file_left_behind() {
    let path = tmp("reserved.safetensors");
    std::fs::write(&path, b"the user's file").unwrap();
    let meta = std::collections::BTreeMap::from([("version".to_string(), "9".to_string())]);
    let e = ember_quant::save_quantized_with(&pair(&Device::flex()), &path, &meta).unwrap_err();
    assert!(matches!(&e, QuantError::InvalidConfig { what: "metadata", .. }), "{e}");
    assert!(e.to_string().contains("keys other than `format` and `version`"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"the user's file", "the existing file is untouched");
    // An unwritable destination is an Io error, and the existing file is kept.
    let e = save_quantized(&pair(&Device::flex()), path.join("not-a-dir/x.safetensors")).unwrap_err();
    assert!(matches!(e, QuantError::Io { .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"the user's file");
}
