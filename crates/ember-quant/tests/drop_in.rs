//! Ember's Linear as a drop-in for burn::nn::Linear, Burn QFloat interop, bad inputs.

mod common;
use burn::module::Module;
use burn::tensor::quantization::{Calibration, QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{Device, Tensor};
use common::*;
use ember_quant::burn_compat::{burn_scheme, linear_from_burn_quantized, to_burn_qfloat};
use ember_quant::{
    ActivationMode, LayerQuantization, LinearConfig, QuantError, QuantizeConfig, Quantizer, WeightGranularity, compare,
};

#[test]
fn burn_record_of_a_burn_linear_loads_into_an_ember_linear() {
    let device = Device::flex();
    let burn_l = burn::nn::LinearConfig::new(8, 4).init(&device);
    let record = burn_l.clone().into_record();
    // The int8 state is empty in a float model and absent from Burn's record: allow_partial.
    let ember_l = LinearConfig::new(8, 4).init(&device).load_record(record.allow_partial(true));
    let x = input(2, [2, 8], &device);
    assert_eq!(to_vec(ember_l.forward(x.clone())), to_vec(burn_l.forward(x)));
}

#[test]
fn burn_qfloat_round_trip_where_burn_can_express_it() {
    let device = Device::flex();
    let layer = LinearConfig::new(64, 16).init(&device);
    for w in
        [WeightGranularity::PerTensor, WeightGranularity::PerChannel, WeightGranularity::PerGroup { group_size: 16 }]
    {
        let q = layer.clone().quantize(&LayerQuantization { weight: w, ..Default::default() }).unwrap();
        let qf = to_burn_qfloat(&q).unwrap();
        // Burn's dequantization of our int8 weight equals ours.
        let a = to_vec(qf.clone().dequantize());
        let b = to_vec(q.effective_weight().unwrap());
        assert_eq!(a, b, "{w:?}");
        let back = linear_from_burn_quantized(
            burn::nn::Linear { weight: burn::module::Param::from_tensor(qf), bias: None },
            ActivationMode::Dynamic,
        )
        .unwrap();
        let x = input(4, [5, 64], &device);
        let q_nobias = q.clone().to_float().unwrap();
        let _ = q_nobias;
        assert_eq!(back.quant_spec().unwrap().weight, w);
        let _ = back.forward(x);
    }
    // Per-channel over more than 255 inputs is not expressible in Burn 0.22.
    let e = burn_scheme(WeightGranularity::PerChannel, 768).unwrap_err();
    assert!(matches!(e, QuantError::UnsupportedScheme(_)) && e.to_string().contains("768"), "{e}");
}

#[test]
fn a_model_quantized_by_burn_runs_on_ember_kernels() {
    let device = Device::flex();
    let l = burn::nn::LinearConfig::new(128, 32).with_bias(false).init(&device);
    let scheme =
        QuantScheme::default().with_value(QuantValue::Q8S).with_store(QuantStore::Native).per_tensor(ScaleDtype::F32);
    let mut quantizer = burn::module::Quantizer::new(Calibration::MinMax, scheme);
    let ql = l.clone().quantize_weights(&mut quantizer);
    let x = input(6, [8, 128], &device);
    let reference = ql.forward(x.clone());
    let ember = linear_from_burn_quantized(ql, ActivationMode::Dynamic).unwrap();
    let before = kernel_calls();
    let got = ember.forward(x);
    assert!(kernel_calls() > before || ember_quant::int8_route(&device) != ember_quant::Int8Route::Kernels);
    assert!(compare(reference, got).unwrap().cosine > 0.999);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let device = Device::flex();
    let layer = LinearConfig::new(8, 4).init(&device);
    // Wrong input width.
    let e = layer.try_forward(Tensor::<2>::zeros([2, 7], &device)).unwrap_err();
    assert!(matches!(e, QuantError::Shape { .. }) && e.to_string().contains("[..., 8]"), "{e}");
    // NaN weights.
    let mut bad = layer.clone();
    bad.weight = burn::module::Param::from_tensor(
        bad.weight.val().mask_fill(Tensor::<2>::zeros([8, 4], &device).equal_elem(0.0), f32::NAN),
    );
    let e = bad.quantize(&LayerQuantization::default()).unwrap_err();
    assert!(matches!(e, QuantError::NonFinite { .. }), "{e}");
    // Zero weights get a valid scale (no division by zero) and compute zeros.
    let mut zero = layer.clone();
    zero.weight = burn::module::Param::from_tensor(Tensor::<2>::zeros([8, 4], &device));
    zero.bias = None;
    let q = zero.quantize(&LayerQuantization::default()).unwrap();
    assert_eq!(to_vec(q.forward(input(1, [2, 8], &device))), vec![0.0; 8]);
    // NaN activations into an int8 layer: try_forward reports it, forward propagates NaN like f32.
    let q = layer.quantize(&LayerQuantization::default()).unwrap();
    let mut v = lcg(2, 16);
    v[3] = f32::NAN;
    let x = Tensor::<2>::from_data(burn::tensor::TensorData::new(v, [2, 8]), &device);
    if ember_quant::int8_route(&device) == ember_quant::Int8Route::Kernels {
        assert!(q.try_forward(x.clone()).is_err());
    }
    assert!(to_vec(q.forward(x)).iter().any(|v| v.is_nan()));
    // Quantizing twice, bad group size, nothing selected.
    assert!(q.clone().quantize(&LayerQuantization::default()).unwrap_err().to_string().contains("already int8"));
    let e = Quantizer::new(QuantizeConfig::new().with_weight(WeightGranularity::PerGroup { group_size: 6 }))
        .quantize(&LinearConfig::new(8, 4).init(&device))
        .unwrap_err();
    assert!(e.to_string().contains("multiple of 4"), "{e}");
    let e = Quantizer::new(QuantizeConfig::new()).quantize(&q).unwrap_err();
    assert!(matches!(e, QuantError::Empty { .. }), "{e}");
}

#[test]
fn static_mode_without_activation_parameters_says_what_is_missing() {
    let device = Device::flex();
    let q = LayerQuantization { mode: ActivationMode::Static, ..Default::default() };
    let e = LinearConfig::new(8, 4).init(&device).quantize(&q).unwrap_err();
    assert!(matches!(e, QuantError::InvalidConfig { what: "activation_params", .. }), "{e}");
    assert!(e.to_string().contains("Calibrator"), "{e}");
    let l = burn::nn::LinearConfig::new(8, 4).init(&device);
    let e = linear_from_burn_quantized(l, ActivationMode::Static).unwrap_err();
    assert!(matches!(e, QuantError::UnsupportedScheme(_)) && e.to_string().contains("static mode"), "{e}");
}
