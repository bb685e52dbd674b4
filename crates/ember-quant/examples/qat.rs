//! User story 3: fine-tune with fake quantization (QAT) on any device with straight-through
//! gradients, then convert to real int8.
//!
//! `cargo run --release -p ember-quant --example qat`

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use ember_quant::qat::{QatConfig, QatMethod, prepare_qat};
use ember_quant::{Linear, LinearConfig, QuantizeConfig, Quantizer, compare};

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}

fn main() {
    let device = Device::flex().autodiff();
    let model = Mlp { fc1: LinearConfig::new(32, 64).init(&device), fc2: LinearConfig::new(64, 1).init(&device) };
    // Learn y = sum(sin(x)) from random inputs.
    let x = Tensor::<2>::random([256, 32], Distribution::Uniform(-2.0, 2.0), &device);
    let y = x.clone().sin().sum_dim(1);
    let mut model = prepare_qat(model, &QatConfig::new().with_method(QatMethod::Lsq)).unwrap();
    let mut opt = AdamConfig::new().init();
    for step in 0..=200 {
        let loss = (model.forward(x.clone()) - y.clone()).powf_scalar(2.0).mean();
        if step % 50 == 0 {
            println!("step {step:3}: QAT loss {:.4}", loss.clone().into_scalar::<f32>());
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = opt.step(3e-3, model, grads);
    }
    let qat = model.valid();
    let (int8, report) = Quantizer::new(QuantizeConfig::new()).quantize(&qat).unwrap();
    println!("{}", report.to_markdown());
    let plain = Device::flex();
    let xp = x.inner();
    let e = compare(qat.fork(&plain).forward(xp.clone()), int8.fork(&plain).forward(xp)).unwrap();
    println!("int8 vs fake-quantized model: cosine {:.6}", e.cosine);
}
