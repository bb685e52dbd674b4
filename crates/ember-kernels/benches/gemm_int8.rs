//! Criterion benchmarks: Ember's int8 GEMM (raw i32 and fused dynamic f32 paths) beside the
//! `gemm` crate's f32 GEMM that Burn's Flex backend runs, in the same run, plus every kernel
//! this CPU supports on one shape and the row quantizer.
//!
//! `cargo bench -p ember-kernels --bench gemm_int8`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ember_kernels::quantize::quantize_row_u8;
use ember_kernels::{
    Activations, DynamicOptions, Epilogue, GemmOptions, KernelId, PackOptions, PackedB, WeightScales,
    dynamic_quantized_matmul, gemm,
};
use std::hint::black_box;

#[path = "support/f32_baseline.rs"]
mod f32_baseline;
use f32_baseline::f32_gemm;

const SHAPES: &[(usize, usize, usize)] = &[(1, 384, 384), (32, 384, 384), (128, 384, 1536), (32, 768, 768)];

fn data(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<i8>, Vec<u8>) {
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
    let w: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 2001) as f32 / 10_000.0 - 0.1).collect();
    let wq: Vec<i8> = w.iter().map(|v| (v / 0.1 * 127.0).round() as i8).collect();
    let a: Vec<u8> = (0..m * k).map(|i| (i * 31 % 256) as u8).collect();
    (x, w, wq, a)
}

fn bench_gemm(c: &mut Criterion) {
    let opts = GemmOptions::single_thread();
    let dopts = DynamicOptions { gemm: opts, ..Default::default() };
    for &(m, k, n) in SHAPES {
        let (x, w, wq, a) = data(m, k, n);
        let scales = vec![0.1 / 127.0; n];
        let packed = PackedB::pack(&wq, k, n, PackOptions::default()).unwrap();
        let mut ci = vec![0i32; m * n];
        let mut cf = vec![0f32; m * n];
        let mut g = c.benchmark_group(format!("gemm_{m}x{k}x{n}"));
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_function("f32_gemm_crate", |b| b.iter(|| f32_gemm(black_box(&x), &w, &mut cf, m, k, n, 1)));
        g.bench_function("int8_i32", |b| {
            b.iter(|| {
                gemm(&Activations::u8(black_box(&a), m, k, 128), &packed, Epilogue::I32 { out: &mut ci }, &opts)
                    .unwrap()
            })
        });
        g.bench_function("int8_dynamic_f32", |b| {
            b.iter(|| {
                dynamic_quantized_matmul(
                    black_box(&x),
                    m,
                    &packed,
                    WeightScales::PerChannel(&scales),
                    None,
                    &mut cf,
                    &dopts,
                )
                .unwrap()
            })
        });
        g.finish();
    }
}

fn bench_kernels(c: &mut Criterion) {
    let (m, k, n) = (32, 768, 768);
    let (_, _, wq, a) = data(m, k, n);
    let mut ci = vec![0i32; m * n];
    let mut g = c.benchmark_group(format!("kernels_{m}x{k}x{n}"));
    g.throughput(Throughput::Elements((2 * m * k * n) as u64));
    for kernel in KernelId::supported() {
        let packed = PackedB::pack(&wq, k, n, PackOptions { kernel: Some(kernel), ..Default::default() }).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(kernel.short_name()), &packed, |b, packed| {
            b.iter(|| {
                gemm(
                    &Activations::u8(black_box(&a), m, k, 128),
                    packed,
                    Epilogue::I32 { out: &mut ci },
                    &GemmOptions::single_thread(),
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

fn bench_quantize(c: &mut Criterion) {
    let x: Vec<f32> = (0..768).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut q = vec![0u8; 768];
    let mut g = c.benchmark_group("quantize_row_u8");
    g.throughput(Throughput::Elements(768));
    g.bench_function("768", |b| b.iter(|| quantize_row_u8(black_box(&x), &mut q).unwrap()));
    g.finish();
}

criterion_group!(benches, bench_gemm, bench_kernels, bench_quantize);
criterion_main!(benches);
