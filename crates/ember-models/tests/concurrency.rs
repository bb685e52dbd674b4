//! Concurrency: models (float and int8) are `Send + Sync`, and one int8 model shared by several
//! threads at once (`&model` from `std::thread::scope`) gives every thread the bits a lone
//! caller gets — the int8 weight packing done on first use, the kernels' thread pool and the
//! per-layer caches are safe under concurrent calls.
//!
//! On the CPU devices only: on wgpu, Burn 0.22.1's fusion runtime can panic when one model's
//! tensors are used from several threads at once ("Should have handle for tensor", on its device
//! thread; tracel-ai/burn#4328 and #4347, reproduced by this test in a CI simulation), a Burn
//! bug outside Ember. docs/reliability.md tells users to call a GPU model from one thread.

use burn::tensor::{Int, Tensor, TensorData};
use ember_models::{Bert, CausalLm, CausalLmConfig};
use ember_quant::{ActivationMode, QuantizeConfig, Quantizer};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn models_and_int8_layers_are_send_and_sync() {
    assert_send_sync::<CausalLm>();
    assert_send_sync::<Bert>();
    assert_send_sync::<ember_quant::Linear>();
    assert_send_sync::<ember_quant::Embedding>();
    assert_send_sync::<ember_quant::LinearQuantState>();
}

fn bits(t: Tensor<3>) -> Vec<u32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
}

#[test]
fn one_int8_model_serves_many_threads_with_identical_outputs() {
    for (_, device) in ember_testkit::cpu_devices() {
        device.seed(3);
        let model = CausalLmConfig::new(256, 64, 2, 4, 128, 32).init(&device).unwrap();
        for mode in [ActivationMode::Dynamic, ActivationMode::Static] {
            let quantizer = Quantizer::new(QuantizeConfig::new().with_mode(mode));
            let quantizer = if mode == ActivationMode::Static {
                let session = ember_quant::Calibrator::new(
                    &model,
                    &ember_quant::CalibrationConfig::new(ember_quant::ObserverConfig::MinMax),
                )
                .unwrap();
                model.forward(ids(1, 4, 32, &device));
                quantizer.with_calibration(session.finish().unwrap())
            } else {
                quantizer
            };
            let int8 = quantizer.quantize(&model).unwrap().0;
            let inputs: Vec<Tensor<2, Int>> = (0..4).map(|t| ids(10 + t, 1 + t as usize, 32, &device)).collect();
            // Each thread starts on a fresh clone, so the first calls (which pack the int8
            // weights) race with each other too.
            let fresh = int8.clone();
            let outputs: Vec<Vec<Vec<u32>>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|t| {
                        let (model, inputs) = (&fresh, &inputs);
                        s.spawn(move || {
                            (0..6).map(|i| bits(model.forward(inputs[(t + i) % inputs.len()].clone()))).collect()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("a thread panicked")).collect()
            });
            let lone: Vec<Vec<u32>> = inputs.iter().map(|x| bits(int8.forward(x.clone()))).collect();
            for (t, per_thread) in outputs.iter().enumerate() {
                for (i, got) in per_thread.iter().enumerate() {
                    assert!(*got == lone[(t + i) % inputs.len()], "{mode:?}: thread {t} call {i} differs");
                }
            }
        }
    }
}

fn ids(seed: u64, b: usize, s: usize, device: &burn::tensor::Device) -> Tensor<2, Int> {
    let v: Vec<i64> = (0..b * s).map(|i| ((i as u64 * 7919 + seed * 104_729) % 256) as i64).collect();
    Tensor::from_data(TensorData::new(v, [b, s]), device)
}
