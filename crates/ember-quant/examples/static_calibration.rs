//! User story 2: calibrate activations on a few hundred batches with a percentile, MSE or
//! entropy observer and get static int8.
//!
//! `cargo run --release -p ember-quant --example static_calibration`

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use ember_quant::{
    ActivationMode, CalibrationConfig, Calibrator, Linear, LinearConfig, ObserverConfig, QuantizeConfig, Quantizer,
    compare,
};

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

fn batch(device: &Device) -> Tensor<2> {
    // Heavy-tailed inputs: a few large values, as real activations have.
    let x = Tensor::<2>::random([16, 256], Distribution::Normal(0.0, 1.0), device);
    x.clone() * x.clone().abs().powf_scalar(0.5)
}

fn main() {
    let device = Device::flex();
    let model = Mlp { fc1: LinearConfig::new(256, 512).init(&device), fc2: LinearConfig::new(512, 64).init(&device) };
    let test = batch(&device);
    let reference = model.forward(test.clone());
    println!("| observer | output cosine | output SQNR dB | worst layer SQNR dB |\n|---|---:|---:|---:|");
    for obs in
        [ObserverConfig::MinMax, ObserverConfig::percentile(99.99), ObserverConfig::mse(), ObserverConfig::entropy()]
    {
        let session = Calibrator::new(&model, &CalibrationConfig::new(obs.clone())).unwrap();
        for _ in 0..200 {
            model.forward(batch(&device));
        }
        let stats = session.finish().unwrap();
        let config = QuantizeConfig::new().with_mode(ActivationMode::Static);
        let (int8, report) = Quantizer::new(config).with_calibration(stats).quantize(&model).unwrap();
        let e = compare(reference.clone(), int8.forward(test.clone())).unwrap();
        println!(
            "| {} | {:.5} | {:.1} | {:.1} |",
            obs.name(),
            e.cosine,
            e.sqnr_db,
            report.worst_output_sqnr_db().unwrap_or(f64::NAN)
        );
    }
}
