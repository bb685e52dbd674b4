//! Differential tests: every kernel this CPU supports, selected explicitly, against the naive
//! i64 reference, over a table of shapes (degenerate, odd, GEMV, larger than one block) and
//! value patterns (extremes, all-equal, zero ranges), for every epilogue.

mod common;

use common::{Fill, Rng, fill};
use ember_kernels::reference::gemm_u8i8_i64;
use ember_kernels::{
    Activations, Epilogue, GemmOptions, KernelError, KernelId, MAX_EXACT_K, PackOptions, PackedB, QuantParams,
    QuantizedOutput, RowParam, WeightLayout, WeightScales, gemm, kernel_invocations,
};

/// (M, K, N): zeros, 1×1×1, K not a multiple of 4/16/64, N not a multiple of 16/32/64, GEMV,
/// M not a multiple of 6 or 32, and shapes spanning several panels and AMX row blocks.
const SHAPES: &[(usize, usize, usize)] = &[
    (0, 5, 7),
    (5, 0, 7),
    (5, 7, 0),
    (1, 1, 1),
    (1, 3, 5),
    (2, 4, 16),
    (3, 17, 19),
    (1, 384, 384),
    (4, 63, 33),
    (5, 65, 64),
    (6, 64, 65),
    (7, 100, 70),
    (13, 129, 97),
    (16, 64, 32),
    (17, 191, 31),
    (31, 257, 129),
    (32, 64, 32),
    (33, 128, 64),
    (48, 70, 40),
    (64, 320, 96),
    (71, 200, 130),
    (100, 67, 3),
];

fn kernels() -> Vec<KernelId> {
    let ks = KernelId::supported();
    assert!(ks.contains(&KernelId::Scalar));
    ks
}

fn pack(b: &[i8], k: usize, n: usize, kernel: KernelId, group: Option<usize>) -> PackedB {
    PackedB::pack(b, k, n, PackOptions { kernel: Some(kernel), group_size: group, ..Default::default() }).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn check_i32(kernel: KernelId, m: usize, k: usize, n: usize, f: Fill, zp: &[i32], threads: usize, rng: &mut Rng) {
    let (a, b) = fill(f, m, k, n, rng);
    let want = gemm_u8i8_i64(&a, zp, &b, m, k, n);
    let packed = pack(&b, k, n, kernel, None);
    let mut c = vec![i32::MIN; m * n];
    // A zero point shared by every row goes through the per-tensor path (which lets the AMX
    // kernel store straight into C); distinct ones through the per-row epilogue.
    let act = match zp {
        [z, rest @ ..] if rest.iter().all(|v| v == z) => Activations::u8(&a, m, k, *z),
        _ => Activations::u8(&a, m, k, 0).with_zero_points(RowParam::PerRow(zp)),
    };
    gemm(&act, &packed, Epilogue::I32 { out: &mut c }, &GemmOptions::with_threads(threads)).unwrap();
    for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
        assert_eq!(
            got as i64,
            w,
            "{} {m}×{k}×{n} {f:?} threads {threads}: C[{}, {}]",
            kernel.short_name(),
            i / n,
            i % n
        );
    }
}

#[test]
fn every_supported_kernel_matches_reference_on_shape_table() {
    let mut rng = Rng(1);
    let mut exercised = Vec::new();
    for kernel in kernels() {
        let before = kernel_invocations(kernel);
        for &(m, k, n) in SHAPES {
            let zp: Vec<i32> = (0..m).map(|_| rng.u8() as i32).collect();
            for f in [
                Fill::Random,
                Fill::MaxNegative,
                Fill::MaxPositive,
                Fill::ZeroA,
                Fill::Checker,
                Fill::SevenBitExtremes,
                Fill::SevenBitRandom,
            ] {
                check_i32(kernel, m, k, n, f, &zp, 1, &mut rng);
            }
            check_i32(kernel, m, k, n, Fill::AllEqual(7, -3), &vec![7; m], 1, &mut rng);
            for z in [0, 128, 255] {
                for f in [Fill::Random, Fill::MaxNegative, Fill::ZeroA, Fill::SevenBitExtremes] {
                    check_i32(kernel, m, k, n, f, &vec![z; m], 1, &mut rng);
                }
            }
        }
        assert!(kernel_invocations(kernel) > before, "kernel {} was never run", kernel.name());
        exercised.push(kernel.name());
    }
    // Every kernel the CPU reports as supported must be in the list (none silently skipped).
    assert_eq!(exercised.len(), KernelId::supported().len());
    // Written to the stderr handle directly (not `eprintln!`), so the list shows in the
    // test output even though libtest captures the test's prints.
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "ember-kernels: kernels exercised: {}", exercised.join(", "));
}

#[test]
fn amx_row_tails_and_vnni_fallback_rows() {
    // Every row count 1..=70 goes through a different mix of 32-row blocks, short second tiles,
    // single tiles and the VNNI fallback in the AMX kernel; check them all on every kernel.
    let mut rng = Rng(2);
    for kernel in kernels() {
        for m in 1..=70 {
            let zp: Vec<i32> = (0..m).map(|_| rng.u8() as i32).collect();
            check_i32(kernel, m, 130, 40, Fill::Random, &zp, 1, &mut rng);
            check_i32(kernel, m, 130, 40, Fill::SevenBitRandom, &zp, 1, &mut rng);
            check_i32(kernel, m, 130, 96, Fill::Random, &vec![zp[0]; m], 1, &mut rng);
        }
    }
}

#[test]
fn multithreaded_matches_single_threaded() {
    let mut rng = Rng(3);
    for kernel in kernels() {
        // Big enough to cross the threading threshold for the fast kernels, and split both by
        // panels (wide N) and by rows (narrow N).
        for &(m, k, n) in &[(96, 512, 512), (256, 256, 16), (200, 384, 40)] {
            if kernel == KernelId::Scalar && m * k * n > 5_000_000 {
                continue;
            }
            let zp: Vec<i32> = (0..m).map(|_| rng.u8() as i32).collect();
            for threads in [2, 3, 0] {
                check_i32(kernel, m, k, n, Fill::Random, &zp, threads, &mut rng);
                check_i32(kernel, m, k, n, Fill::Random, &vec![zp[0]; m], threads, &mut rng);
            }
        }
    }
}

#[test]
fn k_at_the_exactness_bound_is_exact_and_beyond_is_an_error() {
    let k = MAX_EXACT_K;
    for kernel in kernels() {
        // Row 0: (255 − 0)·(−128)·K, the most negative sum; row 1: (0 − 255)·(−128)·K, the most
        // positive one. Both fit in i32 exactly at K = MAX_EXACT_K.
        let m = 2;
        let n = 3;
        let mut a = vec![255u8; k];
        a.extend(std::iter::repeat_n(0u8, k));
        let b = vec![-128i8; k * n];
        let zp = [0, 255];
        let packed = pack(&b, k, n, kernel, None);
        let mut c = vec![0i32; m * n];
        let act = Activations::u8(&a, m, k, 0).with_zero_points(RowParam::PerRow(&zp));
        gemm(&act, &packed, Epilogue::I32 { out: &mut c }, &GemmOptions::single_thread()).unwrap();
        let want = gemm_u8i8_i64(&a, &zp, &b, m, k, n);
        assert_eq!(want[0], -(k as i64) * 32_640);
        assert!(want[0] >= i32::MIN as i64 && want[3] <= i32::MAX as i64);
        assert_eq!(c.iter().map(|&v| v as i64).collect::<Vec<_>>(), want, "{}", kernel.short_name());
    }
    let err = PackedB::pack(&vec![0i8; MAX_EXACT_K + 1], MAX_EXACT_K + 1, 1, PackOptions::default()).unwrap_err();
    assert!(matches!(err, KernelError::KTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("65793"), "{err}");
}

#[test]
fn i8_activations_match_reference() {
    let mut rng = Rng(4);
    for kernel in kernels() {
        for &(m, k, n) in &[(1, 1, 1), (5, 67, 33), (40, 128, 64)] {
            let a: Vec<i8> = (0..m * k).map(|_| rng.i8()).collect();
            let b: Vec<i8> = (0..k * n).map(|_| rng.i8()).collect();
            let zp: Vec<i32> = (0..m).map(|i| [0, -128, 127, 5][i % 4]).collect();
            // Reference on the shifted (u8) representation: a + 128, zero point + 128.
            let a_u8: Vec<u8> = a.iter().map(|&v| (v as i32 + 128) as u8).collect();
            let zp_u8: Vec<i32> = zp.iter().map(|z| z + 128).collect();
            let want = gemm_u8i8_i64(&a_u8, &zp_u8, &b, m, k, n);
            let packed = pack(&b, k, n, kernel, None);
            let mut c = vec![0i32; m * n];
            let act = Activations::i8(&a, m, k).with_zero_points(RowParam::PerRow(&zp));
            gemm(&act, &packed, Epilogue::I32 { out: &mut c }, &GemmOptions::single_thread()).unwrap();
            assert_eq!(c.iter().map(|&v| v as i64).collect::<Vec<_>>(), want, "{}", kernel.short_name());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn f32_reference(
    a: &[u8],
    zp: &[i32],
    sa: &[f32],
    b: &[i8],
    sb: &[f32],
    group: usize,
    bias: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
) -> Vec<f64> {
    let mut c = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f64;
            for kk in 0..k {
                let g = kk / group;
                acc +=
                    (a[i * k + kk] as f64 - zp[i] as f64) * b[kk * n + j] as f64 * sa[i] as f64 * sb[g * n + j] as f64;
            }
            c[i * n + j] = acc + bias.map_or(0.0, |b| b[j] as f64);
        }
    }
    c
}

#[test]
fn f32_epilogue_per_channel_per_tensor_and_per_group() {
    let mut rng = Rng(5);
    for kernel in kernels() {
        for &(m, k, n, group) in &[(1, 64, 16, 64), (7, 100, 33, 32), (33, 256, 70, 128), (40, 130, 65, 13)] {
            let (a, b) = fill(Fill::Random, m, k, n, &mut rng);
            let zp: Vec<i32> = (0..m).map(|_| rng.u8() as i32).collect();
            let sa: Vec<f32> = (0..m).map(|_| 0.01 + rng.f32().abs() * 0.1).collect();
            let groups = k.div_ceil(group);
            let sb: Vec<f32> = (0..groups * n).map(|_| 0.001 + rng.f32().abs() * 0.02).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            let act =
                Activations::u8(&a, m, k, 0).with_zero_points(RowParam::PerRow(&zp)).with_scales(RowParam::PerRow(&sa));
            let tol = |w: f64| 1e-5 * (1.0 + w.abs()) + 1e-4;

            // Per channel, with bias.
            let packed = pack(&b, k, n, kernel, None);
            let mut c = vec![f32::NAN; m * n];
            let epi =
                Epilogue::F32 { weight_scales: WeightScales::PerChannel(&sb[..n]), bias: Some(&bias), out: &mut c };
            gemm(&act, &packed, epi, &GemmOptions::single_thread()).unwrap();
            let want = f32_reference(&a, &zp, &sa, &b, &sb[..n], k.max(1), Some(&bias), (m, k, n));
            for (g, w) in c.iter().zip(&want) {
                assert!((*g as f64 - w).abs() <= tol(*w), "{} per-channel {g} vs {w}", kernel.short_name());
            }

            // Per tensor, no bias.
            let mut c = vec![f32::NAN; m * n];
            let epi = Epilogue::F32 { weight_scales: WeightScales::PerTensor(sb[0]), bias: None, out: &mut c };
            gemm(&act, &packed, epi, &GemmOptions::single_thread()).unwrap();
            let want = f32_reference(&a, &zp, &sa, &b, &vec![sb[0]; n], k.max(1), None, (m, k, n));
            for (g, w) in c.iter().zip(&want) {
                assert!((*g as f64 - w).abs() <= tol(*w), "{} per-tensor {g} vs {w}", kernel.short_name());
            }

            // Per group along K.
            let packed = pack(&b, k, n, kernel, Some(group));
            assert_eq!(packed.num_groups(), groups);
            assert_eq!(packed.unpack(), b);
            let mut c = vec![f32::NAN; m * n];
            let epi = Epilogue::F32 { weight_scales: WeightScales::PerGroup(&sb), bias: Some(&bias), out: &mut c };
            gemm(&act, &packed, epi, &GemmOptions::with_threads(2)).unwrap();
            let want = f32_reference(&a, &zp, &sa, &b, &sb, group, Some(&bias), (m, k, n));
            for (g, w) in c.iter().zip(&want) {
                assert!((*g as f64 - w).abs() <= tol(*w), "{} per-group {g} vs {w}", kernel.short_name());
            }

            // Grouped packing still gives exact i32 over all of K.
            let mut ci = vec![0i32; m * n];
            gemm(&act, &packed, Epilogue::I32 { out: &mut ci }, &GemmOptions::single_thread()).unwrap();
            assert_eq!(ci.iter().map(|&v| v as i64).collect::<Vec<_>>(), gemm_u8i8_i64(&a, &zp, &b, m, k, n));
        }
    }
}

#[test]
fn requantized_outputs_match_reference_rounding() {
    let mut rng = Rng(6);
    for kernel in kernels() {
        for group in [None, Some(32)] {
            let (m, k, n) = (9, 96, 37);
            let (a, b) = fill(Fill::Random, m, k, n, &mut rng);
            let zp: Vec<i32> = (0..m).map(|_| rng.u8() as i32).collect();
            let sa = vec![0.02f32; m];
            let groups = group.map_or(1, |g| k.div_ceil(g));
            let sb: Vec<f32> = (0..groups * n).map(|_| 0.001 + rng.f32().abs() * 0.004).collect();
            let ws = if group.is_some() { WeightScales::PerGroup(&sb) } else { WeightScales::PerChannel(&sb) };
            let want = f32_reference(&a, &zp, &sa, &b, &sb, group.unwrap_or(k), None, (m, k, n));
            let act =
                Activations::u8(&a, m, k, 0).with_zero_points(RowParam::PerRow(&zp)).with_scales(RowParam::PerRow(&sa));
            let packed = pack(&b, k, n, kernel, group);
            let out_p = QuantParams { scale: 0.05, zero_point: 100 };
            let mut q = vec![0u8; m * n];
            let epi =
                Epilogue::Requantize { weight_scales: ws, bias: None, output: out_p, out: QuantizedOutput::U8(&mut q) };
            gemm(&act, &packed, epi, &GemmOptions::single_thread()).unwrap();
            let mut saturated = 0;
            for (g, w) in q.iter().zip(&want) {
                let exact = w / 0.05 + 100.0;
                // Within one step of the exact value, and exactly saturated outside the range.
                if exact <= 0.0 {
                    assert_eq!(*g, 0);
                    saturated += 1;
                } else if exact >= 255.0 {
                    assert_eq!(*g, 255);
                    saturated += 1;
                } else {
                    assert!((*g as f64 - exact).abs() <= 0.5 + 1e-3, "{} {g} vs {exact}", kernel.short_name());
                }
            }
            let _ = saturated;
            let out_p = QuantParams { scale: 0.01, zero_point: -3 };
            let mut q = vec![0i8; m * n];
            let epi =
                Epilogue::Requantize { weight_scales: ws, bias: None, output: out_p, out: QuantizedOutput::I8(&mut q) };
            gemm(&act, &packed, epi, &GemmOptions::single_thread()).unwrap();
            for (g, w) in q.iter().zip(&want) {
                let exact = (w / 0.01 - 3.0).clamp(-128.0, 127.0);
                assert!((*g as f64 - exact).abs() <= 0.5 + 1e-3, "{} {g} vs {exact}", kernel.short_name());
            }
        }
    }
}

#[test]
fn transposed_weights_pack_to_the_same_matrix() {
    let mut rng = Rng(7);
    let (k, n) = (70, 45);
    let b: Vec<i8> = (0..k * n).map(|_| rng.i8()).collect();
    let bt: Vec<i8> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
    for kernel in kernels() {
        let p1 = pack(&b, k, n, kernel, None);
        let p2 =
            PackedB::pack(&bt, k, n, PackOptions { layout: WeightLayout::NxK, kernel: Some(kernel), group_size: None })
                .unwrap();
        assert_eq!(p1.unpack(), b);
        assert_eq!(p2.unpack(), b);
        assert_eq!(p1.col_sums(), p2.col_sums());
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let b = PackedB::pack(&[1i8; 12], 3, 4, PackOptions::default()).unwrap();
    let a = [0u8; 6];
    let opts = GemmOptions::default();
    let mut c = [0i32; 8];
    // K mismatch.
    let e = gemm(&Activations::u8(&a, 3, 2, 0), &b, Epilogue::I32 { out: &mut [0; 12] }, &opts).unwrap_err();
    assert!(matches!(e, KernelError::Shape(_)), "{e}");
    // Wrong A length.
    let e = gemm(&Activations::u8(&a[..5], 2, 3, 0), &b, Epilogue::I32 { out: &mut c }, &opts).unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "a", .. }), "{e}");
    // Wrong output length.
    let e = gemm(&Activations::u8(&a, 2, 3, 0), &b, Epilogue::I32 { out: &mut c[..7] }, &opts).unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "out", .. }), "{e}");
    // Zero point out of range.
    let e = gemm(&Activations::u8(&a, 2, 3, 256), &b, Epilogue::I32 { out: &mut c }, &opts).unwrap_err();
    assert!(matches!(e, KernelError::InvalidZeroPoint { .. }), "{e}");
    // Bad scales.
    let mut cf = [0f32; 8];
    let epi =
        Epilogue::F32 { weight_scales: WeightScales::PerChannel(&[1.0, 0.0, 1.0, 1.0]), bias: None, out: &mut cf };
    let e = gemm(&Activations::u8(&a, 2, 3, 0), &b, epi, &opts).unwrap_err();
    assert!(matches!(e, KernelError::InvalidScale { index: 1, .. }), "{e}");
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerTensor(f32::NAN), bias: None, out: &mut cf };
    assert!(gemm(&Activations::u8(&a, 2, 3, 0), &b, epi, &opts).is_err());
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerTensor(1.0), bias: Some(&[0.0; 3]), out: &mut cf };
    let e = gemm(&Activations::u8(&a, 2, 3, 0), &b, epi, &opts).unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "bias", .. }), "{e}");
    // A NaN bias is rejected (it would otherwise reach every output row), with its index.
    let epi = Epilogue::F32 {
        weight_scales: WeightScales::PerTensor(1.0),
        bias: Some(&[0.0, 1.0, f32::NAN, 0.0]),
        out: &mut cf,
    };
    let e = gemm(&Activations::u8(&a, 2, 3, 0), &b, epi, &opts).unwrap_err();
    assert!(matches!(e, KernelError::NonFinite { what: "bias", index: 2, .. }), "{e}");
    assert!(e.to_string().contains("bias"), "{e}");
    // Per-group scales on weights packed without groups.
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerGroup(&[1.0; 4]), bias: None, out: &mut cf };
    assert!(matches!(gemm(&Activations::u8(&a, 2, 3, 0), &b, epi, &opts), Err(KernelError::Shape(_))));
    // Activation scales needed for f32 output.
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerTensor(1.0), bias: None, out: &mut cf };
    let act = Activations::u8(&a, 2, 3, 0).with_scales(RowParam::PerRow(&[1.0]));
    assert!(matches!(gemm(&act, &b, epi, &opts), Err(KernelError::Length { what: "scales", .. })));
    // Packing errors.
    assert!(matches!(PackedB::pack(&[0i8; 5], 2, 3, PackOptions::default()), Err(KernelError::Length { .. })));
    let e = PackedB::pack(&[0i8; 6], 2, 3, PackOptions { group_size: Some(0), ..Default::default() }).unwrap_err();
    assert!(matches!(e, KernelError::InvalidGroupSize(0)));
    // Requantize with a zero point outside the output type.
    let mut q = [0u8; 8];
    let epi = Epilogue::Requantize {
        weight_scales: WeightScales::PerTensor(1.0),
        bias: None,
        output: QuantParams { scale: 1.0, zero_point: -1 },
        out: QuantizedOutput::U8(&mut q),
    };
    assert!(matches!(gemm(&Activations::u8(&a, 2, 3, 0), &b, epi, &opts), Err(KernelError::InvalidZeroPoint { .. })));
    // An output scale whose reciprocal overflows.
    let epi = Epilogue::Requantize {
        weight_scales: WeightScales::PerTensor(1.0),
        bias: None,
        output: QuantParams { scale: 1e-45, zero_point: 0 },
        out: QuantizedOutput::U8(&mut q),
    };
    assert!(matches!(gemm(&Activations::u8(&a, 2, 3, 0), &b, epi, &opts), Err(KernelError::InvalidScale { .. })));
    // Messages say what was expected.
    let e = gemm(&Activations::u8(&a[..5], 2, 3, 0), &b, Epilogue::I32 { out: &mut c }, &opts).unwrap_err();
    assert_eq!(e.to_string(), "`a` has 5 elements, expected 6 (M = 2, K = 3)");
}

#[test]
fn dynamic_path_edge_shapes_and_bad_input() {
    use ember_kernels::{DynamicOptions, dynamic_quantized_matmul};
    let b = PackedB::pack(&[1i8; 6], 3, 2, PackOptions::default()).unwrap();
    let opts = DynamicOptions::default();
    // M = 0 writes nothing and succeeds.
    dynamic_quantized_matmul(&[], 0, &b, WeightScales::PerTensor(1.0), None, &mut [], &opts).unwrap();
    // NaN in x is an error naming its index, and the output is left untouched.
    let mut y = [7.0f32; 4];
    let e = dynamic_quantized_matmul(
        &[1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0],
        2,
        &b,
        WeightScales::PerTensor(1.0),
        None,
        &mut y,
        &opts,
    )
    .unwrap_err();
    assert!(matches!(e, KernelError::NonFinite { index: 4, .. }), "{e}");
    assert_eq!(y, [7.0; 4]);
    // Length errors.
    let e = dynamic_quantized_matmul(&[1.0; 5], 2, &b, WeightScales::PerTensor(1.0), None, &mut y, &opts).unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "x", .. }), "{e}");
    let e = dynamic_quantized_matmul(&[1.0; 6], 2, &b, WeightScales::PerTensor(1.0), Some(&[0.0]), &mut y, &opts)
        .unwrap_err();
    assert!(matches!(e, KernelError::Length { what: "bias", .. }), "{e}");
    // A GEMV large enough to be split across threads matches the single-threaded result.
    let (k, n) = (256, 4096);
    let mut rng = Rng(9);
    let w: Vec<i8> = (0..k * n).map(|_| rng.i8()).collect();
    let b = PackedB::pack(&w, k, n, PackOptions::default()).unwrap();
    let x: Vec<f32> = (0..k).map(|_| rng.f32()).collect();
    let (mut y1, mut y2) = (vec![0f32; n], vec![0f32; n]);
    let single = DynamicOptions { gemm: GemmOptions::single_thread(), ..Default::default() };
    let multi = DynamicOptions { gemm: GemmOptions::with_threads(2), ..Default::default() };
    dynamic_quantized_matmul(&x, 1, &b, WeightScales::PerTensor(0.01), None, &mut y1, &single).unwrap();
    dynamic_quantized_matmul(&x, 1, &b, WeightScales::PerTensor(0.01), None, &mut y2, &multi).unwrap();
    assert_eq!(y1, y2);
}

#[test]
fn k_zero_gives_bias_only() {
    for kernel in kernels() {
        let b = pack(&[], 0, 3, kernel, None);
        let mut c = [f32::NAN; 6];
        let epi =
            Epilogue::F32 { weight_scales: WeightScales::PerTensor(1.0), bias: Some(&[1.0, 2.0, 3.0]), out: &mut c };
        gemm(&Activations::u8(&[], 2, 0, 0), &b, epi, &GemmOptions::default()).unwrap();
        assert_eq!(c, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    }
}

#[test]
fn kernel_names_and_lookup() {
    for k in KernelId::ALL {
        assert_eq!(KernelId::from_name(k.short_name()).unwrap(), k);
        assert_eq!(KernelId::from_name(k.name()).unwrap(), k);
        assert!(!k.may_saturate());
    }
    assert!(matches!(KernelId::from_name("sse9"), Err(KernelError::KernelUnavailable { .. })));
    assert!(KernelId::best().is_supported());
    println!("supported: {:?}; selected: {}", KernelId::supported(), KernelId::selected());
}

#[test]
fn concurrent_callers_share_the_pool_safely() {
    // Several threads calling multi-threaded GEMMs at once: one gets the pool, the others run
    // their parts inline; all results must be exact.
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = Rng(100 + t);
                for _ in 0..5 {
                    let (m, k, n) = (64, 256, 256);
                    let zp: Vec<i32> = (0..m).map(|_| rng.u8() as i32).collect();
                    check_i32(KernelId::best(), m, k, n, Fill::Random, &zp, 2, &mut rng);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn dynamic_path_equals_quantize_then_gemm() {
    // The fused path must give bit for bit what a user gets from quantizing the rows and
    // calling the f32 epilogue: every kernel, row counts on both sides of the AMX thresholds,
    // per-channel and per-group weights, one and two threads.
    use ember_kernels::quantize::quantize_rows;
    use ember_kernels::{DynamicOptions, Granularity, QuantParams, dynamic_quantized_matmul};
    let mut rng = Rng(11);
    for kernel in kernels() {
        // The last two are large enough to be split across two threads by row bands (the AMX
        // kernel then quantizes each band's rows inside the GEMM), with and without groups.
        let cases: [(usize, usize, usize, Option<usize>); 6] = [
            (1, 70, 33, None),
            (7, 64, 32, None),
            (9, 130, 65, Some(32)),
            (45, 200, 96, None),
            (300, 512, 256, None),
            (300, 512, 256, Some(128)),
        ];
        for &(m, k, n, group) in &cases {
            let x: Vec<f32> = (0..m * k).map(|_| rng.f32() * 3.0).collect();
            let w: Vec<i8> = (0..k * n).map(|_| rng.i8()).collect();
            let groups = group.map_or(1, |g| k.div_ceil(g));
            let sb: Vec<f32> = (0..groups * n).map(|_| 0.001 + rng.f32().abs() * 0.01).collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            let ws = if group.is_some() { WeightScales::PerGroup(&sb) } else { WeightScales::PerChannel(&sb) };
            let b = pack(&w, k, n, kernel, group);
            let mut q = vec![0u8; m * k];
            let mut p = vec![QuantParams { scale: 1.0, zero_point: 0 }; m];
            quantize_rows(&x, m, k, Granularity::PerRow, &mut q, &mut p).unwrap();
            let zp: Vec<i32> = p.iter().map(|p| p.zero_point).collect();
            let sa: Vec<f32> = p.iter().map(|p| p.scale).collect();
            let act =
                Activations::u8(&q, m, k, 0).with_zero_points(RowParam::PerRow(&zp)).with_scales(RowParam::PerRow(&sa));
            let mut want = vec![0f32; m * n];
            let epi = Epilogue::F32 { weight_scales: ws, bias: Some(&bias), out: &mut want };
            gemm(&act, &b, epi, &GemmOptions::single_thread()).unwrap();
            for threads in [1, 2] {
                let mut got = vec![f32::NAN; m * n];
                let opts = DynamicOptions { gemm: GemmOptions::with_threads(threads), ..Default::default() };
                dynamic_quantized_matmul(&x, m, &b, ws, Some(&bias), &mut got, &opts).unwrap();
                assert_eq!(got, want, "{} {m}×{k}×{n} group {group:?} threads {threads}", kernel.short_name());
            }
        }
    }
}

#[test]
fn avx2_picks_the_maddubs_form_only_for_seven_bit_weights() {
    if !KernelId::Avx2.is_supported() {
        return;
    }
    // The byte layout needs half the memory of the i16 one; that is how the form shows.
    let wide = pack(&[100i8; 64 * 16], 64, 16, KernelId::Avx2, None);
    let narrow = pack(&[64i8; 64 * 16], 64, 16, KernelId::Avx2, None);
    let narrow_neg = pack(&[-64i8; 64 * 16], 64, 16, KernelId::Avx2, None);
    let just_over = {
        let mut w = vec![0i8; 64 * 16];
        w[17] = -65;
        pack(&w, 64, 16, KernelId::Avx2, None)
    };
    assert_eq!(wide.packed_bytes(), 2 * narrow.packed_bytes());
    assert_eq!(narrow.packed_bytes(), narrow_neg.packed_bytes());
    assert_eq!(just_over.packed_bytes(), wide.packed_bytes());
    // The worst case of the byte form: A = 255 against ±64 pairs, per-tensor and per-row zero
    // points, both exact.
    let mut rng = Rng(13);
    for &(m, k, n) in &[(1, 4, 16), (7, 260, 33), (13, 1000, 17)] {
        check_i32(KernelId::Avx2, m, k, n, Fill::SevenBitExtremes, &vec![0; m], 1, &mut rng);
        let zp: Vec<i32> = (0..m).map(|_| rng.u8() as i32).collect();
        check_i32(KernelId::Avx2, m, k, n, Fill::SevenBitRandom, &zp, 1, &mut rng);
    }
}

#[test]
fn packed_weights_are_clone_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PackedB>();
    let mut rng = Rng(12);
    let w: Vec<i8> = (0..100 * 40).map(|_| rng.i8()).collect();
    for kernel in kernels() {
        let b = pack(&w, 100, 40, kernel, Some(32));
        let c = b.clone();
        assert_eq!(c.unpack(), w);
        assert_eq!(c.col_sums(), b.col_sums());
        assert_eq!(c.kernel(), kernel);
        // Shared across threads.
        let b = std::sync::Arc::new(b);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || b.unpack())
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), w);
        }
    }
}

/// The F32 epilogue overwrites every output (nothing of the caller's buffer survives): an
/// output pre-filled with NaN must come back with no NaN left, on every kernel, ragged shapes
/// (partial panels and row tiles), K groups (later groups accumulate), K = 0, 1 and 2 threads,
/// per-row and per-tensor activations.
#[test]
fn every_output_is_written() {
    use ember_kernels::{
        DynamicOptions, GemmOptions, Granularity, PackOptions, PackedB, WeightScales, dynamic_quantized_matmul,
    };
    let mut rng = Rng(11);
    for kernel in KernelId::supported() {
        for &(m, k, n, group) in
            &[(1, 8, 1, None), (7, 33, 70, None), (37, 64, 100, Some(32)), (5, 0, 17, None), (64, 96, 48, Some(32))]
        {
            let w: Vec<i8> = (0..k * n).map(|_| rng.i8().max(-127)).collect();
            let packed =
                PackedB::pack(&w, k, n, PackOptions { group_size: group, kernel: Some(kernel), ..Default::default() })
                    .expect("pack");
            let groups = group.map_or(1, |g| k.div_ceil(g));
            let scales: Vec<f32> = (0..groups * n).map(|i| 0.01 + (i % 7) as f32 * 1e-3).collect();
            let ws =
                if group.is_some() { WeightScales::PerGroup(&scales) } else { WeightScales::PerChannel(&scales[..n]) };
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 37) % 23) as f32 * 0.1 - 1.1).collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
            for threads in [1, 2] {
                for granularity in [Granularity::PerRow, Granularity::PerTensor] {
                    let o = DynamicOptions { gemm: GemmOptions::with_threads(threads), granularity };
                    let mut y = vec![f32::NAN; m * n];
                    dynamic_quantized_matmul(&x, m, &packed, ws, Some(&bias), &mut y, &o).expect("dynamic");
                    assert!(
                        y.iter().all(|v| v.is_finite()),
                        "{kernel:?} {m}×{k}×{n} group {group:?}: an output was not written"
                    );
                }
            }
        }
    }
}
