//! Bad-input catalogue: one malformed argument per test, each rejected with the exact
//! [`KernelError`] variant and a message that says what was wrong and what was expected.
//! (`EMBER_KERNEL` itself is tested in `bad_input_env.rs`, its own process.)

use ember_kernels::quantize::{QuantParams, quantize};
use ember_kernels::{
    Activations, DynamicOptions, Epilogue, GemmOptions, KernelError, KernelId, PackOptions, PackedB, QuantizedOutput,
    RowParam, WeightScales, dynamic_quantized_matmul, gemm,
};

/// Weights `B[K = 3, N = 4]`, packed for the default kernel.
fn weights() -> PackedB {
    PackedB::pack(&[1i8; 12], 3, 4, PackOptions::default()).unwrap()
}

/// Activations `A[M = 2, K = 3]`.
const A: [u8; 6] = [0; 6];

fn message(e: &KernelError) -> String {
    e.to_string()
}

#[test]
fn bad_input_unknown_kernel_name() {
    let e = KernelId::from_name("bogus").unwrap_err();
    assert!(matches!(&e, KernelError::KernelUnavailable { name, .. } if name == "bogus"), "{e}");
    let m = message(&e);
    assert!(m.contains("kernel `bogus`") && m.contains("available: scalar"), "{m}");
}

#[test]
fn bad_input_gemm_reduction_length_mismatch() {
    // A is 3×2 but B is 3×4: K differs (2 vs 3).
    let e =
        gemm(&Activations::u8(&A, 3, 2, 0), &weights(), Epilogue::I32 { out: &mut [0; 12] }, &GemmOptions::default())
            .unwrap_err();
    assert!(matches!(e, KernelError::Shape(_)), "{e}");
    assert!(message(&e).contains("A is 3×2 but B is 3×4: K must match"), "{e}");
}

#[test]
fn bad_input_gemm_activation_buffer_too_short() {
    let mut c = [0i32; 8];
    let e =
        gemm(&Activations::u8(&A[..5], 2, 3, 0), &weights(), Epilogue::I32 { out: &mut c }, &GemmOptions::default())
            .unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "a", expected: 6, actual: 5, .. }), "{e}");
    assert_eq!(message(&e), "`a` has 5 elements, expected 6 (M = 2, K = 3)");
}

#[test]
fn bad_input_gemm_output_buffer_too_short() {
    let mut c = [0i32; 7];
    let e = gemm(&Activations::u8(&A, 2, 3, 0), &weights(), Epilogue::I32 { out: &mut c }, &GemmOptions::default())
        .unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "out", expected: 8, actual: 7, .. }), "{e}");
    assert!(message(&e).contains("`out` has 7 elements, expected 8"), "{e}");
}

#[test]
fn bad_input_gemm_zero_point_outside_u8() {
    let mut c = [0i32; 8];
    let e = gemm(&Activations::u8(&A, 2, 3, 256), &weights(), Epilogue::I32 { out: &mut c }, &GemmOptions::default())
        .unwrap_err();
    assert!(matches!(e, KernelError::InvalidZeroPoint { value: 256, min: 0, max: 255, .. }), "{e}");
    assert!(message(&e).contains("zero point 256 at index 0 is outside [0, 255]"), "{e}");
}

#[test]
fn bad_input_gemm_zero_weight_scale() {
    let mut c = [0f32; 8];
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerChannel(&[1.0, 0.0, 1.0, 1.0]), bias: None, out: &mut c };
    let e = gemm(&Activations::u8(&A, 2, 3, 0), &weights(), epi, &GemmOptions::default()).unwrap_err();
    assert!(matches!(e, KernelError::InvalidScale { what: "weight_scales", index: 1, .. }), "{e}");
    assert!(message(&e).contains("scales must be finite and > 0"), "{e}");
}

#[test]
fn bad_input_gemm_nan_weight_scale() {
    let mut c = [0f32; 8];
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerTensor(f32::NAN), bias: None, out: &mut c };
    let e = gemm(&Activations::u8(&A, 2, 3, 0), &weights(), epi, &GemmOptions::default()).unwrap_err();
    assert!(matches!(e, KernelError::InvalidScale { what: "weight_scales", index: 0, value } if value.is_nan()), "{e}");
    assert!(message(&e).contains("invalid scale NaN") && message(&e).contains("finite and > 0"), "{e}");
}

#[test]
fn bad_input_gemm_weight_scales_wrong_count() {
    let mut c = [0f32; 8];
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerChannel(&[1.0; 3]), bias: None, out: &mut c };
    let e = gemm(&Activations::u8(&A, 2, 3, 0), &weights(), epi, &GemmOptions::default()).unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "weight_scales", expected: 4, actual: 3, .. }), "{e}");
    assert!(message(&e).contains("per output channel, N = 4"), "{e}");
}

#[test]
fn bad_input_gemm_bias_wrong_length() {
    let mut c = [0f32; 8];
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerTensor(1.0), bias: Some(&[0.0; 3]), out: &mut c };
    let e = gemm(&Activations::u8(&A, 2, 3, 0), &weights(), epi, &GemmOptions::default()).unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "bias", expected: 4, actual: 3, .. }), "{e}");
    assert!(message(&e).contains("`bias` has 3 elements, expected 4"), "{e}");
}

#[test]
fn bad_input_gemm_nan_bias() {
    let mut c = [0f32; 8];
    let epi = Epilogue::F32 {
        weight_scales: WeightScales::PerTensor(1.0),
        bias: Some(&[0.0, 1.0, f32::NAN, 0.0]),
        out: &mut c,
    };
    let e = gemm(&Activations::u8(&A, 2, 3, 0), &weights(), epi, &GemmOptions::default()).unwrap_err();
    assert!(matches!(e, KernelError::NonFinite { what: "bias", index: 2, .. }), "{e}");
    assert!(message(&e).contains("`bias` contains a non-finite value") && message(&e).contains("needs finite"), "{e}");
}

#[test]
fn bad_input_gemm_per_group_scales_on_ungrouped_weights() {
    let mut c = [0f32; 8];
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerGroup(&[1.0; 4]), bias: None, out: &mut c };
    let e = gemm(&Activations::u8(&A, 2, 3, 0), &weights(), epi, &GemmOptions::default()).unwrap_err();
    assert!(matches!(e, KernelError::Shape(_)), "{e}");
    assert!(message(&e).contains("need weights packed with PackOptions::group_size"), "{e}");
}

#[test]
fn bad_input_gemm_activation_scales_wrong_count() {
    let mut c = [0f32; 8];
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerTensor(1.0), bias: None, out: &mut c };
    let act = Activations::u8(&A, 2, 3, 0).with_scales(RowParam::PerRow(&[1.0]));
    let e = gemm(&act, &weights(), epi, &GemmOptions::default()).unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "scales", expected: 2, actual: 1, .. }), "{e}");
    assert!(message(&e).contains("`scales` has 1 elements, expected 2"), "{e}");
}

#[test]
fn bad_input_requantize_zero_point_outside_output_type() {
    let mut q = [0u8; 8];
    let epi = Epilogue::Requantize {
        weight_scales: WeightScales::PerTensor(1.0),
        bias: None,
        output: QuantParams { scale: 1.0, zero_point: -1 },
        out: QuantizedOutput::U8(&mut q),
    };
    let e = gemm(&Activations::u8(&A, 2, 3, 0), &weights(), epi, &GemmOptions::default()).unwrap_err();
    assert!(matches!(e, KernelError::InvalidZeroPoint { value: -1, min: 0, max: 255, .. }), "{e}");
    assert!(message(&e).contains("zero point -1 at index 0 is outside [0, 255]"), "{e}");
}

#[test]
fn bad_input_requantize_scale_with_infinite_reciprocal() {
    let mut q = [0u8; 8];
    let epi = Epilogue::Requantize {
        weight_scales: WeightScales::PerTensor(1.0),
        bias: None,
        output: QuantParams { scale: 1e-45, zero_point: 0 },
        out: QuantizedOutput::U8(&mut q),
    };
    let e = gemm(&Activations::u8(&A, 2, 3, 0), &weights(), epi, &GemmOptions::default()).unwrap_err();
    assert!(matches!(e, KernelError::InvalidScale { .. }), "{e}");
    assert!(message(&e).contains("scales must be finite and > 0"), "{e}");
}

#[test]
fn bad_input_pack_weight_buffer_wrong_length() {
    let e = PackedB::pack(&[0i8; 5], 2, 3, PackOptions::default()).unwrap_err();
    assert!(matches!(e, KernelError::Length { expected: 6, actual: 5, .. }), "{e}");
    assert!(message(&e).contains("has 5 elements, expected 6"), "{e}");
}

#[test]
fn bad_input_pack_zero_group_size() {
    let e = PackedB::pack(&[0i8; 6], 2, 3, PackOptions { group_size: Some(0), ..Default::default() }).unwrap_err();
    assert!(matches!(e, KernelError::InvalidGroupSize(0)), "{e}");
    assert!(message(&e).contains("invalid group size 0: must be at least 1"), "{e}");
}

#[test]
fn bad_input_dynamic_matmul_nan_activation() {
    let b = PackedB::pack(&[1i8; 6], 3, 2, PackOptions::default()).unwrap();
    let mut y = [7.0f32; 4];
    let x = [1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0];
    let e = dynamic_quantized_matmul(&x, 2, &b, WeightScales::PerTensor(1.0), None, &mut y, &DynamicOptions::default())
        .unwrap_err();
    assert!(matches!(e, KernelError::NonFinite { what: "x", index: 4, .. }), "{e}");
    assert!(message(&e).contains("at index 4; quantization needs finite inputs"), "{e}");
    assert_eq!(y, [7.0; 4], "nothing written on error");
}

#[test]
fn bad_input_dynamic_matmul_input_wrong_length() {
    let b = PackedB::pack(&[1i8; 6], 3, 2, PackOptions::default()).unwrap();
    let mut y = [0f32; 4];
    let e = dynamic_quantized_matmul(&[1.0; 5], 2, &b, WeightScales::PerTensor(1.0), None, &mut y, &Default::default())
        .unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "x", expected: 6, actual: 5, .. }), "{e}");
    assert!(message(&e).contains("`x` has 5 elements, expected 6"), "{e}");
}

#[test]
fn bad_input_quantize_infinite_value() {
    let mut q = [0u8; 3];
    let e = quantize(&[0.0, f32::INFINITY, 1.0], QuantParams { scale: 0.5, zero_point: 0 }, &mut q).unwrap_err();
    assert!(matches!(e, KernelError::NonFinite { index: 1, value, .. } if value == f32::INFINITY), "{e}");
    assert!(message(&e).contains("non-finite value (inf) at index 1"), "{e}");
}

#[test]
fn bad_input_quantize_zero_scale() {
    let mut q = [0i8; 2];
    let e = quantize(&[0.0, 1.0], QuantParams { scale: 0.0, zero_point: 0 }, &mut q).unwrap_err();
    assert!(matches!(e, KernelError::InvalidScale { value: 0.0, .. }), "{e}");
    assert!(message(&e).contains("scales must be finite and > 0"), "{e}");
}
