//! Property tests: random shapes, values, zero points and kernels against the i64 reference,
//! and the fused dynamic path against f32 math within the quantization error bound.

mod common;

use ember_kernels::reference::{gemm_f32_f64, gemm_u8i8_i64};
use ember_kernels::{
    Activations, DynamicOptions, Epilogue, GemmOptions, Granularity, KernelId, PackOptions, PackedB, RowParam,
    WeightScales, dynamic_quantized_matmul, gemm,
};
use proptest::prelude::*;

fn shape() -> impl Strategy<Value = (usize, usize, usize)> {
    (0usize..80, 0usize..200, 0usize..100)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_gemm_is_exact((m, k, n) in shape(), seed in any::<u64>(), kernel_pick in any::<usize>(), threads in 1usize..3, per_tensor_zp in any::<bool>(), seven_bit in any::<bool>()) {
        let kernels = KernelId::supported();
        let kernel = kernels[kernel_pick % kernels.len()];
        let mut rng = common::Rng(seed);
        let a: Vec<u8> = (0..m * k).map(|_| rng.u8()).collect();
        // Half the cases use 7-bit weights (AVX2's `vpmaddubsw` form), half the full i8 range.
        let b: Vec<i8> =
            (0..k * n).map(|_| if seven_bit { (rng.below(129) as i32 - 64) as i8 } else { rng.i8() }).collect();
        let zp: Vec<i32> = (0..m).map(|_| rng.u8() as i32).collect();
        let packed = PackedB::pack(&b, k, n, PackOptions { kernel: Some(kernel), ..Default::default() }).unwrap();
        let mut c = vec![0i32; m * n];
        let act = if per_tensor_zp {
            Activations::u8(&a, m, k, zp.first().copied().unwrap_or(0))
        } else {
            Activations::u8(&a, m, k, 0).with_zero_points(RowParam::PerRow(&zp))
        };
        gemm(&act, &packed, Epilogue::I32 { out: &mut c }, &GemmOptions::with_threads(threads)).unwrap();
        let zp = if per_tensor_zp { vec![zp.first().copied().unwrap_or(0); m] } else { zp };
        let want = gemm_u8i8_i64(&a, &zp, &b, m, k, n);
        prop_assert_eq!(c.iter().map(|&v| v as i64).collect::<Vec<_>>(), want, "kernel {}", kernel.short_name());
    }

    /// |y − x·W_q| is bounded by the activation rounding error: per element
    /// Σ_k |s_a/2 · W_q[k, n]| (weights exact in the reference, activations off by ≤ s_a/2).
    #[test]
    fn dynamic_path_error_is_bounded((m, k, n) in (1usize..20, 1usize..150, 1usize..50), seed in any::<u64>(), per_tensor in any::<bool>()) {
        let mut rng = common::Rng(seed);
        let x: Vec<f32> = (0..m * k).map(|_| rng.f32() * 4.0).collect();
        let wq: Vec<i8> = (0..k * n).map(|_| rng.i8().max(-127)).collect();
        let sb: Vec<f32> = (0..n).map(|_| 0.001 + rng.f32().abs() * 0.01).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
        let packed = PackedB::pack(&wq, k, n, PackOptions::default()).unwrap();
        let mut y = vec![0f32; m * n];
        let granularity = if per_tensor { Granularity::PerTensor } else { Granularity::PerRow };
        let opts = DynamicOptions { granularity, ..Default::default() };
        dynamic_quantized_matmul(&x, m, &packed, WeightScales::PerChannel(&sb), Some(&bias), &mut y, &opts).unwrap();
        let w: Vec<f32> = wq.iter().enumerate().map(|(i, &q)| q as f32 * sb[i % n]).collect();
        let exact = gemm_f32_f64(&x, &w, m, k, n);
        for i in 0..m {
            let row = &x[if per_tensor { 0..m * k } else { i * k..(i + 1) * k }];
            let lo = row.iter().fold(0f32, |a, &b| a.min(b));
            let hi = row.iter().fold(0f32, |a, &b| a.max(b));
            let sa = ((hi - lo) / 255.0).max(f32::MIN_POSITIVE) as f64;
            for j in 0..n {
                let bound: f64 = (0..k).map(|kk| (w[kk * n + j] as f64).abs()).sum::<f64>() * sa / 2.0;
                let got = y[i * n + j] as f64;
                let want = exact[i * n + j] + bias[j] as f64;
                prop_assert!((got - want).abs() <= bound * 1.01 + 1e-4, "[{i},{j}] {got} vs {want} (bound {bound})");
            }
        }
    }
}
