//! Shared test models and devices.
#![allow(dead_code, unused_imports)]

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::activation::{gelu, relu, softmax};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use ember_quant::{Embedding, EmbeddingConfig, Linear, LinearConfig};

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

pub fn input<const D: usize>(seed: u64, dims: [usize; D], device: &Device) -> Tensor<D> {
    let n = dims.iter().product();
    Tensor::from_data(TensorData::new(lcg(seed, n), dims), device)
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub fc3: Linear,
}

impl Mlp {
    pub fn new(device: &Device) -> Self {
        device.seed(7);
        Mlp {
            fc1: LinearConfig::new(48, 96).init(device),
            fc2: LinearConfig::new(96, 64).init(device),
            fc3: LinearConfig::new(64, 10).init(device),
        }
    }
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc3.forward(relu(self.fc2.forward(relu(self.fc1.forward(x)))))
    }
}

/// A pre-norm transformer block plus embedding and tied LM head, built from Ember layers.
#[derive(Module, Debug)]
pub struct TinyLm {
    pub emb: Embedding,
    pub norm1: LayerNorm,
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub output: Linear,
    pub norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub n_heads: usize,
}

pub const VOCAB: usize = 512;
pub const D_MODEL: usize = 128;

impl TinyLm {
    pub fn new(device: &Device) -> Self {
        device.seed(11);
        let d = D_MODEL;
        TinyLm {
            emb: EmbeddingConfig::new(VOCAB, d).init(device),
            norm1: LayerNormConfig::new(d).init(device),
            query: LinearConfig::new(d, d).init(device),
            key: LinearConfig::new(d, d).init(device),
            value: LinearConfig::new(d, d).init(device),
            output: LinearConfig::new(d, d).init(device),
            norm2: LayerNormConfig::new(d).init(device),
            fc1: LinearConfig::new(d, 4 * d).init(device),
            fc2: LinearConfig::new(4 * d, d).init(device),
            n_heads: 4,
        }
    }

    /// Input of the attention block's linears and of the FFN, for calibration-style checks.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let x = self.emb.forward(ids);
        let [b, t, d] = x.dims();
        let h = self.n_heads;
        let dk = d / h;
        let n = self.norm1.forward(x.clone());
        let split = |y: Tensor<3>| y.reshape([b, t, h, dk]).swap_dims(1, 2);
        let q = split(self.query.forward(n.clone()));
        let k = split(self.key.forward(n.clone()));
        let v = split(self.value.forward(n));
        let att = softmax(q.matmul(k.swap_dims(2, 3)).div_scalar((dk as f32).sqrt()), 3);
        let ctx = att.matmul(v).swap_dims(1, 2).reshape([b, t, d]);
        let x = x + self.output.forward(ctx);
        let x = x.clone() + self.fc2.forward(gelu(self.fc1.forward(self.norm2.forward(x))));
        self.emb.tied_logits(x)
    }
}

pub fn ids(seed: u64, b: usize, t: usize, device: &Device) -> Tensor<2, Int> {
    let v: Vec<i32> = lcg(seed, b * t).iter().map(|x| ((x + 1.0) * 0.5 * VOCAB as f32) as i32 % VOCAB as i32).collect();
    Tensor::from_data(TensorData::new(v, [b, t]), device)
}

pub fn random<const D: usize>(dims: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(dims, Distribution::Default, device)
}

/// Calls of the selected int8 kernel so far (to check the kernel route really ran).
pub fn kernel_calls() -> u64 {
    ember_kernels::kernel_invocations(ember_kernels::KernelId::selected())
}
