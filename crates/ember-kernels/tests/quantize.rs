//! Quantizer tests: hand-worked cases, error bounds (proptest), saturation, rounding ties,
//! non-finite input and zero-range rows.

use ember_kernels::quantize::{
    dequantize, params_i8_affine, params_i8_symmetric, params_u8, quantize, quantize_row_i8_symmetric, quantize_row_u8,
    quantize_rows,
};
use ember_kernels::{Granularity, KernelError, QuantParams};
use proptest::prelude::*;

#[test]
fn hand_worked_affine_u8() {
    // Range [-1, 3] → scale 4/255, zero point round(1 / (4/255)) = round(63.75) = 64.
    let p = params_u8(-1.0, 3.0).unwrap();
    assert!((p.scale - 4.0 / 255.0).abs() < 1e-9);
    assert_eq!(p.zero_point, 64);
    let mut q = [0u8; 4];
    quantize(&[-1.0, 0.0, 3.0, 1.0], p, &mut q).unwrap();
    // -1/s + 64 = -63.75 + 64 = 0.25 → 0; 0 → 64; 3/s + 64 = 191.25 + 64 = 255.25 → 255;
    // 1/s = 63.75 → 64 + 64 = 128.
    assert_eq!(q, [0, 64, 255, 128]);
}

#[test]
fn affine_i8_matches_u8_shifted() {
    let x = [-1.0f32, -0.3, 0.0, 0.7, 3.0];
    let pu = params_u8(-1.0, 3.0).unwrap();
    let pi = params_i8_affine(-1.0, 3.0).unwrap();
    let (mut qu, mut qi) = ([0u8; 5], [0i8; 5]);
    quantize(&x, pu, &mut qu).unwrap();
    quantize(&x, pi, &mut qi).unwrap();
    for (u, i) in qu.iter().zip(&qi) {
        assert_eq!(*u as i32 - 128, *i as i32);
    }
}

#[test]
fn ties_round_to_even() {
    let p = QuantParams { scale: 1.0, zero_point: 0 };
    let mut q = [0i8; 6];
    quantize(&[0.5, 1.5, 2.5, -0.5, -1.5, -2.5], p, &mut q).unwrap();
    assert_eq!(q, [0, 2, 2, 0, -2, -2]);
    let mut u = [0u8; 3];
    quantize(&[0.5, 1.5, 254.5], p, &mut u).unwrap();
    assert_eq!(u, [0, 2, 254]);
}

#[test]
fn saturates_out_of_range() {
    let p = QuantParams { scale: 0.1, zero_point: 0 };
    let mut q = [0i8; 4];
    quantize(&[1e30, -1e30, 12.7, -12.9], p, &mut q).unwrap();
    assert_eq!(q, [127, -128, 127, -128]);
    let mut u = [0u8; 3];
    quantize(&[-5.0, 1e30, 25.5], QuantParams { scale: 0.1, zero_point: 0 }, &mut u).unwrap();
    assert_eq!(u, [0, 255, 255]);
}

#[test]
fn non_finite_input_is_an_error_with_its_index() {
    let mut q = vec![0u8; 40];
    let mut x = vec![0.5f32; 40];
    for (i, bad) in [(3, f32::NAN), (17, f32::INFINITY), (39, f32::NEG_INFINITY)] {
        x.fill(0.5);
        x[i] = bad;
        let e = quantize_row_u8(&x, &mut q).unwrap_err();
        assert!(matches!(e, KernelError::NonFinite { index, .. } if index == i), "{e}");
        let e = quantize(&x, QuantParams { scale: 1.0, zero_point: 0 }, &mut q).unwrap_err();
        assert!(matches!(e, KernelError::NonFinite { index, .. } if index == i), "{e}");
    }
    let mut params = vec![QuantParams { scale: 1.0, zero_point: 0 }; 4];
    x.fill(0.5);
    x[25] = f32::NAN;
    let e = quantize_rows(&x, 4, 10, Granularity::PerRow, &mut q, &mut params).unwrap_err();
    assert!(matches!(e, KernelError::NonFinite { index: 25, .. }), "{e}");
    assert!(params_u8(f32::NAN, 1.0).is_err());
    assert!(params_i8_symmetric(f32::INFINITY).is_err());
}

#[test]
fn zero_range_rows_get_a_valid_scale() {
    let mut q = [9u8; 5];
    let p = quantize_row_u8(&[0.0; 5], &mut q).unwrap();
    assert!(p.scale > 0.0 && p.scale.is_finite());
    assert_eq!(q, [p.zero_point as u8; 5]);
    // A constant non-zero row is exact: the range includes 0.
    let p = quantize_row_u8(&[2.5; 5], &mut q).unwrap();
    let mut back = [0f32; 5];
    dequantize(&q, p, &mut back).unwrap();
    assert!(back.iter().all(|v| (v - 2.5).abs() <= p.scale / 2.0));
    let mut qi = [0i8; 3];
    let p = quantize_row_i8_symmetric(&[0.0; 3], &mut qi).unwrap();
    assert!(p.scale > 0.0 && qi == [0; 3]);
    // Tiny ranges keep a finite inverse.
    let p = quantize_row_u8(&[1e-44, -1e-44], &mut q[..2]).unwrap();
    assert!((1.0 / p.scale).is_finite());
}

#[test]
fn invalid_parameters_and_lengths_are_errors() {
    let mut q = [0u8; 2];
    let e = quantize(&[0.0, 1.0], QuantParams { scale: 0.0, zero_point: 0 }, &mut q).unwrap_err();
    assert!(matches!(e, KernelError::InvalidScale { .. }));
    let e = quantize(&[0.0, 1.0], QuantParams { scale: 1e-45, zero_point: 0 }, &mut q).unwrap_err();
    assert!(matches!(e, KernelError::InvalidScale { .. }), "1/scale overflows: {e}");
    let e = quantize(&[0.0, 1.0], QuantParams { scale: 1.0, zero_point: 300 }, &mut q).unwrap_err();
    assert!(matches!(e, KernelError::InvalidZeroPoint { .. }));
    let e = quantize(&[0.0], QuantParams { scale: 1.0, zero_point: 0 }, &mut q).unwrap_err();
    assert!(matches!(e, KernelError::Length { .. }));
    let mut qi = [0i8; 2];
    let e = quantize(&[0.0, 1.0], QuantParams { scale: 1.0, zero_point: 128 }, &mut qi).unwrap_err();
    assert!(matches!(e, KernelError::InvalidZeroPoint { .. }));
    // Huge but finite ranges do not overflow the scale.
    let p = params_u8(-3e38, 3e38).unwrap();
    assert!(p.scale.is_finite());
}

#[test]
fn per_tensor_rows_share_parameters() {
    let x: Vec<f32> = (0..30).map(|i| i as f32 - 10.0).collect();
    let mut q = vec![0u8; 30];
    let mut params = vec![QuantParams { scale: 1.0, zero_point: 0 }; 3];
    quantize_rows(&x, 3, 10, Granularity::PerTensor, &mut q, &mut params).unwrap();
    assert!(params.iter().all(|p| *p == params[0]));
    assert_eq!(params[0], params_u8(-10.0, 19.0).unwrap());
    quantize_rows(&x, 3, 10, Granularity::PerRow, &mut q, &mut params).unwrap();
    assert_eq!(params[2], params_u8(10.0, 19.0).unwrap());
}

fn scalar_reference_u8(x: f32, p: QuantParams) -> u8 {
    ((x * (1.0 / p.scale)).round_ties_even() + p.zero_point as f32).clamp(0.0, 255.0) as u8
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every value inside the observed range comes back within scale/2, and the vector paths
    /// agree bit for bit with a scalar formula.
    #[test]
    fn u8_roundtrip_error_at_most_half_a_step(x in proptest::collection::vec(-1e4f32..1e4, 1..300)) {
        let mut q = vec![0u8; x.len()];
        let p = quantize_row_u8(&x, &mut q).unwrap();
        let mut back = vec![0f32; x.len()];
        dequantize(&q, p, &mut back).unwrap();
        for ((v, b), qv) in x.iter().zip(&back).zip(&q) {
            prop_assert!((v - b).abs() <= p.scale / 2.0 * (1.0 + 1e-4), "{v} → {b}, scale {}", p.scale);
            prop_assert_eq!(*qv, scalar_reference_u8(*v, p));
        }
    }

    #[test]
    fn i8_symmetric_roundtrip(x in proptest::collection::vec(-50f32..50.0, 1..200)) {
        let mut q = vec![0i8; x.len()];
        let p = quantize_row_i8_symmetric(&x, &mut q).unwrap();
        prop_assert_eq!(p.zero_point, 0);
        let mut back = vec![0f32; x.len()];
        dequantize(&q, p, &mut back).unwrap();
        for ((v, b), qv) in x.iter().zip(&back).zip(&q) {
            prop_assert!((v - b).abs() <= p.scale / 2.0 * (1.0 + 1e-4));
            prop_assert!(*qv >= -127);
        }
    }

    /// Static quantization saturates exactly at the ends of the representable range.
    #[test]
    fn static_u8_saturates(x in proptest::collection::vec(-1e3f32..1e3, 1..100), scale in 0.01f32..2.0, zp in 0i32..=255) {
        let p = QuantParams { scale, zero_point: zp };
        let mut q = vec![0u8; x.len()];
        quantize(&x, p, &mut q).unwrap();
        for (v, qv) in x.iter().zip(&q) {
            prop_assert_eq!(*qv, scalar_reference_u8(*v, p));
        }
    }
}
