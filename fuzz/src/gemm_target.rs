//! Differential fuzzing of the int8 GEMM: every kernel this CPU runs against the i64 reference.

use ember_kernels::reference::gemm_u8i8_i64;
use ember_kernels::{
    Activations, Epilogue, GemmOptions, KernelId, PackOptions, PackedB, RowParam, WeightLayout, WeightScales,
};

/// Reads bytes in order, then zeros once the input is used up.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    /// The remaining input, cycled to `n` values (zeros for an empty tail).
    fn fill(&mut self, n: usize) -> Vec<u8> {
        let tail = &self.data[self.at.min(self.data.len())..];
        self.at = self.data.len();
        if tail.is_empty() { vec![0; n] } else { tail.iter().copied().cycle().take(n).collect() }
    }
}

/// The input layout: `m k n flags group zp0`, then values. `m < 24`, `k < 160`, `n < 48`
/// (enough for several panels, K blocks, groups and ragged edges; the reference is O(M·K·N)).
/// Flags: bit 0 i8 activations, bit 1 per-row zero points, bit 2 grouped weights, bit 3
/// two threads, bit 4 weights given `[N × K]`, bit 5 values saturate to the extremes.
///
/// Checks, for every supported kernel: packing round-trips (`unpack` gives the weights back),
/// the i32 output equals the reference exactly, and the f32 output (per-channel or per-group
/// scales, bias) is within rounding of the reference computed in f64.
pub fn gemm(data: &[u8]) {
    let mut r = Bytes { data, at: 0 };
    let m = (r.u8() % 24) as usize;
    let k = (r.u8() % 160) as usize;
    let n = (r.u8() % 48) as usize;
    let flags = r.u8();
    let group = (r.u8() as usize % 64) + 1;
    let zp0 = r.u8() as i32;
    let (i8_act, per_row, grouped, threads, nxk, extremes) = (
        flags & 1 != 0,
        flags & 2 != 0,
        flags & 4 != 0,
        if flags & 8 != 0 { 2 } else { 1 },
        flags & 16 != 0,
        flags & 32 != 0,
    );
    let raw = r.fill(m * k + k * n);
    let squash = |v: u8| if extremes { if v & 1 == 0 { 0 } else { 255 } } else { v };
    let a_u8: Vec<u8> = raw[..m * k].iter().map(|&v| squash(v)).collect();
    let b: Vec<i8> = raw[m * k..].iter().map(|&v| squash(v) as i8).collect();
    // i8 activations are u8 bytes reinterpreted; the reference sees them shifted by 128 with a
    // zero point of 128, which is the same product.
    let a_i8: Vec<i8> = a_u8.iter().map(|&v| v as i8).collect();
    let zps: Vec<i32> = if i8_act {
        vec![0; m]
    } else if per_row {
        (0..m).map(|i| (zp0 + 37 * i as i32) % 256).collect()
    } else {
        vec![zp0; m]
    };
    let (ref_a, ref_zp): (Vec<u8>, Vec<i32>) = if i8_act {
        (a_i8.iter().map(|&v| (v as i16 + 128) as u8).collect(), vec![128; m])
    } else {
        (a_u8.clone(), zps.clone())
    };
    let want = gemm_u8i8_i64(&ref_a, &ref_zp, &b, m, k, n);

    // Grouped weights need K ≥ 1 (one scale per group and column).
    let grouped = grouped && k > 0;
    let group_size = grouped.then_some(group);
    let groups = group_size.map_or(1, |g| k.div_ceil(g));
    let sa: Vec<f32> = (0..m).map(|i| 0.01 + 0.001 * i as f32).collect();
    let sb: Vec<f32> = (0..groups * n).map(|j| 0.002 + 0.0005 * (j % 7) as f32).collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 1.0).collect();
    let want_f32: Vec<f64> = (0..m * n)
        .map(|idx| {
            let (i, j) = (idx / n, idx % n);
            let g_of = |kk: usize| group_size.map_or(0, |g| kk / g);
            let acc: f64 = (0..k)
                .map(|kk| {
                    (ref_a[i * k + kk] as f64 - ref_zp[i] as f64) * b[kk * n + j] as f64 * sb[g_of(kk) * n + j] as f64
                })
                .sum();
            acc * sa[i] as f64 + bias[j] as f64
        })
        .collect();
    let bt: Vec<i8> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();

    for kernel in KernelId::supported() {
        let opts = PackOptions {
            layout: if nxk { WeightLayout::NxK } else { WeightLayout::KxN },
            group_size,
            kernel: Some(kernel),
        };
        let packed = PackedB::pack(if nxk { &bt } else { &b }, k, n, opts).expect("valid shapes pack");
        assert_eq!(packed.unpack(), b, "{}: unpack", kernel.short_name());
        let act = || {
            let a = if i8_act { Activations::i8(&a_i8, m, k) } else { Activations::u8(&a_u8, m, k, zp0) };
            if per_row && !i8_act { a.with_zero_points(RowParam::PerRow(&zps)) } else { a }
        };
        let run = GemmOptions::with_threads(threads);
        let mut c = vec![i32::MIN; m * n];
        ember_kernels::gemm(&act(), &packed, Epilogue::I32 { out: &mut c }, &run).expect("valid i32 GEMM");
        for (idx, (&got, &w)) in c.iter().zip(&want).enumerate() {
            assert_eq!(
                got as i64,
                w,
                "{} {m}×{k}×{n} flags {flags:#x}: C[{}, {}]",
                kernel.short_name(),
                idx / n,
                idx % n
            );
        }
        let scales = if grouped { WeightScales::PerGroup(&sb) } else { WeightScales::PerChannel(&sb) };
        let mut cf = vec![f32::NAN; m * n];
        let epi = Epilogue::F32 { weight_scales: scales, bias: Some(&bias), out: &mut cf };
        ember_kernels::gemm(&act().with_scales(RowParam::PerRow(&sa)), &packed, epi, &run).expect("valid f32 GEMM");
        for (idx, (&got, &w)) in cf.iter().zip(&want_f32).enumerate() {
            let tol = 1e-4 * w.abs().max(1.0);
            assert!(
                (got as f64 - w).abs() <= tol,
                "{} f32 C[{}, {}] = {got}, want {w}",
                kernel.short_name(),
                idx / n,
                idx % n
            );
        }
    }
}

/// A few shapes across the kernels' edges.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let seed = |m: u8, k: u8, n: u8, flags: u8, group: u8, zp: u8| {
        let mut v = vec![m, k, n, flags, group, zp];
        v.extend((0..m as usize * k as usize + k as usize * n as usize).map(|i| (i * 37 + 11) as u8));
        v
    };
    vec![
        ("gemv".into(), seed(1, 64, 32, 0, 0, 128)),
        ("ragged".into(), seed(7, 67, 33, 2, 0, 3)),
        ("i8-two-threads".into(), seed(17, 130, 40, 1 | 8, 0, 0)),
        ("grouped".into(), seed(5, 96, 20, 4, 31, 200)),
        ("nxk-extremes".into(), seed(9, 20, 17, 16 | 32 | 2, 0, 255)),
        ("empty".into(), seed(0, 5, 7, 0, 0, 0)),
    ]
}
