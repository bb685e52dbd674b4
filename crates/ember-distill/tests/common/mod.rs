//! Shared test helpers.
#![allow(dead_code, unused_imports)]

use burn::tensor::{Device, Tensor, TensorData};

/// Every device the suite runs on: Flex, NdArray, and wgpu with the `wgpu` feature (ember-testkit).
pub use ember_testkit::devices;

/// Deterministic pseudo-random values in [-1, 1).
pub fn lcg(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn tensor<const D: usize>(values: Vec<f32>, dims: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, dims), device)
}

pub fn rand<const D: usize>(seed: u64, dims: [usize; D], scale: f32, device: &Device) -> Tensor<D> {
    let n = dims.iter().product();
    tensor(lcg(seed, n).into_iter().map(|v| v * scale).collect(), dims, device)
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

pub fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// Row-wise softmax of `[rows, cols]` host values (f64).
pub fn softmax_rows(x: &[f64], cols: usize, t: f64) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|r| {
            let m = r.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = r.iter().map(|v| ((v - m) / t).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect()
}

/// Reference `KL(softmax(t/T) ‖ softmax(s/T))` per row, in f64.
pub fn kl_ref(student: &[f32], teacher: &[f32], cols: usize, t: f64) -> Vec<f64> {
    let s: Vec<f64> = student.iter().map(|&v| v as f64).collect();
    let te: Vec<f64> = teacher.iter().map(|&v| v as f64).collect();
    let q = softmax_rows(&s, cols, t);
    let p = softmax_rows(&te, cols, t);
    p.chunks(cols)
        .zip(q.chunks(cols))
        .map(|(p, q)| p.iter().zip(q).map(|(p, q)| if *p > 0.0 { p * (p / q).ln() } else { 0.0 }).sum())
        .collect()
}

/// Checks the autodiff gradient of `f` at `x` against central finite differences on the plain
/// device.
pub fn check_grad<const D: usize>(
    name: &str,
    device: &Device,
    dims: [usize; D],
    x: Vec<f32>,
    eps: f32,
    f: impl Fn(Tensor<D>, &Device) -> Tensor<1>,
) {
    let ad = device.clone().autodiff();
    let xt = tensor(x.clone(), dims, &ad).require_grad();
    let loss = f(xt.clone(), &ad);
    let grads = loss.backward();
    let g = to_vec(xt.grad(&grads).expect("gradient"));
    let mut worst = 0.0f64;
    for i in 0..x.len() {
        let mut xp = x.clone();
        xp[i] += eps;
        let mut xm = x.clone();
        xm[i] -= eps;
        let lp = scalar(f(tensor(xp, dims, device), device));
        let lm = scalar(f(tensor(xm, dims, device), device));
        let fd = (lp - lm) / (2.0 * eps as f64);
        let err = (g[i] as f64 - fd).abs() / (1e-2 + fd.abs());
        worst = worst.max(err);
        assert!(err < 3e-2, "{name}: d/dx[{i}] autodiff {} vs finite difference {fd} (relative error {err})", g[i]);
    }
    assert!(g.iter().any(|v| v.abs() > 1e-6), "{name}: gradient is identically zero, the check would be vacuous");
    let _ = worst;
}
