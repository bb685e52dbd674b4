//! Determinism: every kernel's results are bit-identical for 1, 2 and all threads and across
//! repeated calls, for every epilogue and for the dynamic (f32 in, f32 out) entry point.
//!
//! Threads split the output into panels and rows, never K, and every element's epilogue runs
//! the same instructions whichever thread computes it, so nothing depends on scheduling. These
//! shapes are large enough that the pool really splits them (more than ~30 µs of work).

mod common;

use common::Rng;
use ember_kernels::{
    Activations, DynamicOptions, Epilogue, GemmOptions, Granularity, KernelId, PackOptions, PackedB, QuantParams,
    QuantizedOutput, RowParam, WeightScales, dynamic_quantized_matmul, gemm,
};

const SHAPES: &[(usize, usize, usize)] = &[(1, 768, 1536), (37, 300, 257), (96, 512, 384)];
const THREADS: [usize; 4] = [1, 2, 0, 1];

/// All outputs of one run, as bits.
#[derive(Debug, PartialEq)]
struct Outputs {
    i32: Vec<i32>,
    f32: Vec<u32>,
    f32_grouped: Vec<u32>,
    u8: Vec<u8>,
    dynamic: Vec<u32>,
    dynamic_per_tensor: Vec<u32>,
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[allow(clippy::too_many_arguments)]
fn run(kernel: KernelId, (m, k, n): (usize, usize, usize), threads: usize, data: &Data) -> Outputs {
    let opts = GemmOptions::with_threads(threads);
    let pack = |group_size| {
        PackedB::pack(&data.b, k, n, PackOptions { kernel: Some(kernel), group_size, ..Default::default() }).unwrap()
    };
    let packed = pack(None);
    let grouped = pack(Some(64));
    let act = || {
        Activations::u8(&data.a, m, k, 0)
            .with_zero_points(RowParam::PerRow(&data.zp))
            .with_scales(RowParam::PerRow(&data.sa))
    };
    let mut i32_out = vec![0; m * n];
    gemm(&act(), &packed, Epilogue::I32 { out: &mut i32_out }, &opts).unwrap();
    let mut f32_out = vec![0f32; m * n];
    let epi =
        Epilogue::F32 { weight_scales: WeightScales::PerChannel(&data.sb), bias: Some(&data.bias), out: &mut f32_out };
    gemm(&act(), &packed, epi, &opts).unwrap();
    let mut f32_grouped = vec![0f32; m * n];
    let epi = Epilogue::F32 { weight_scales: WeightScales::PerGroup(&data.sg), bias: None, out: &mut f32_grouped };
    gemm(&act(), &grouped, epi, &opts).unwrap();
    let mut u8_out = vec![0u8; m * n];
    let epi = Epilogue::Requantize {
        weight_scales: WeightScales::PerChannel(&data.sb),
        bias: Some(&data.bias),
        output: QuantParams { scale: 0.05, zero_point: 120 },
        out: QuantizedOutput::U8(&mut u8_out),
    };
    gemm(&act(), &packed, epi, &opts).unwrap();
    let dynamic = |granularity| {
        let mut y = vec![0f32; m * n];
        let o = DynamicOptions { gemm: GemmOptions::with_threads(threads), granularity };
        dynamic_quantized_matmul(&data.x, m, &packed, WeightScales::PerChannel(&data.sb), Some(&data.bias), &mut y, &o)
            .unwrap();
        bits(&y)
    };
    Outputs {
        i32: i32_out,
        f32: bits(&f32_out),
        f32_grouped: bits(&f32_grouped),
        u8: u8_out,
        dynamic: dynamic(Granularity::PerRow),
        dynamic_per_tensor: dynamic(Granularity::PerTensor),
    }
}

struct Data {
    a: Vec<u8>,
    b: Vec<i8>,
    zp: Vec<i32>,
    sa: Vec<f32>,
    sb: Vec<f32>,
    sg: Vec<f32>,
    bias: Vec<f32>,
    x: Vec<f32>,
}

fn data((m, k, n): (usize, usize, usize), rng: &mut Rng) -> Data {
    Data {
        a: (0..m * k).map(|_| rng.u8()).collect(),
        b: (0..k * n).map(|_| rng.i8()).collect(),
        zp: (0..m).map(|_| rng.u8() as i32).collect(),
        sa: (0..m).map(|_| 0.01 + rng.f32().abs() * 0.01).collect(),
        sb: (0..n).map(|_| 0.001 + rng.f32().abs() * 0.004).collect(),
        sg: (0..k.div_ceil(64) * n).map(|_| 0.001 + rng.f32().abs() * 0.004).collect(),
        bias: (0..n).map(|_| rng.f32()).collect(),
        x: (0..m * k).map(|_| rng.f32() * 3.0).collect(),
    }
}

#[test]
fn every_kernel_is_bit_identical_across_thread_counts_and_runs() {
    let mut rng = Rng(42);
    for &shape in SHAPES {
        let d = data(shape, &mut rng);
        for kernel in KernelId::supported() {
            let first = run(kernel, shape, THREADS[0], &d);
            for &threads in &THREADS[1..] {
                let again = run(kernel, shape, threads, &d);
                assert!(first == again, "{} {shape:?}: threads {threads} differ from 1 thread", kernel.short_name());
            }
        }
    }
}

#[test]
fn kernels_agree_bit_for_bit_on_exact_outputs() {
    // The i32 accumulators (and so the requantized u8, which rounds them the same way) are the
    // same on every kernel; f32 epilogues may differ in the last bit between SIMD widths, so
    // they are compared per kernel above, not across kernels.
    let mut rng = Rng(7);
    let shape = (37, 300, 257);
    let d = data(shape, &mut rng);
    let reference = run(KernelId::Scalar, shape, 1, &d);
    for kernel in KernelId::supported() {
        let o = run(kernel, shape, 2, &d);
        assert_eq!(o.i32, reference.i32, "{}", kernel.short_name());
    }
}
