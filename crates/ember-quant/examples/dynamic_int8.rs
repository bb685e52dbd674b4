//! User story 1: a model of `burn::nn`-style layers whose linear fields are Ember's `Linear`,
//! converted to dynamic int8 in one call, with a per-layer report and a speed comparison.
//!
//! `cargo run --release -p ember-quant --example dynamic_int8`

use burn::module::Module;
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Distribution, Tensor};
use ember_quant::{
    CalibrationConfig, Calibrator, Linear, LinearConfig, ObserverConfig, QuantizeConfig, Quantizer, compare,
};
use std::time::Instant;

/// A BERT-base-sized feed-forward block (768 → 3072 → 768). Only the field types changed.
#[derive(Module, Debug)]
struct FeedForward {
    fc1: Linear, // was burn::nn::Linear
    fc2: Linear,
}

impl FeedForward {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

fn time(f: &mut dyn FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..20 {
        f();
    }
    t.elapsed().as_secs_f64() / 20.0 * 1e3
}

fn main() {
    let device = Device::flex();
    let model = FeedForward {
        fc1: LinearConfig::new(768, 3072).init(&device),
        fc2: LinearConfig::new(3072, 768).init(&device),
    };
    let x = Tensor::<2>::random([128, 768], Distribution::Normal(0.0, 1.0), &device);

    // Optional: a short calibration run gives the report per-layer output errors on real inputs.
    let session = Calibrator::new(&model, &CalibrationConfig::new(ObserverConfig::MinMax)).unwrap();
    model.forward(x.clone());
    let samples = session.finish().unwrap();

    let (int8, report) = Quantizer::new(QuantizeConfig::new()).with_calibration(samples).quantize(&model).unwrap();
    println!("{}", report.to_markdown());
    let e = compare(model.forward(x.clone()), int8.forward(x.clone())).unwrap();
    println!("block output vs f32: cosine {:.6}, SQNR {:.1} dB", e.cosine, e.sqnr_db);
    let f = time(&mut || drop(model.forward(x.clone())));
    let q = time(&mut || drop(int8.forward(x.clone())));
    println!(
        "128 tokens: f32 {f:.2} ms, int8 {q:.2} ms ({:.1}× faster), route {:?}",
        f / q,
        ember_quant::int8_route(&device)
    );
}
