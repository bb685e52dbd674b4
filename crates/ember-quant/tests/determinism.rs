//! Determinism of int8 models: quantizing (weights, calibration) gives bit-identical parameters
//! every time, and a quantized model's outputs are bit-identical for 1, 2 and all int8 threads
//! and across repeated runs, in dynamic and static mode, on every CPU device. (The thread
//! count is process-wide, so this file holds one test.)

mod common;

use burn::tensor::Device;
use common::{TinyLm, ids, to_vec};
use ember_quant::{
    ActivationMode, CalibrationConfig, Calibrator, ObserverConfig, QuantizeConfig, Quantizer, set_int8_threads,
};

fn bits(v: Vec<f32>) -> Vec<u32> {
    v.into_iter().map(f32::to_bits).collect()
}

/// Every parameter of a module as raw bytes (int8 values, scales, zero points, floats).
fn param_bytes(m: &TinyLm) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("ember-determinism-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    ember_quant::save_quantized(m, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

fn quantize(model: &TinyLm, mode: ActivationMode, device: &Device) -> TinyLm {
    let cfg = QuantizeConfig::new().with_mode(mode);
    let quantizer = Quantizer::new(cfg);
    let quantizer = if mode == ActivationMode::Static {
        let session = Calibrator::new(model, &CalibrationConfig::new(ObserverConfig::MinMax)).unwrap();
        for b in 0..3 {
            model.forward(ids(100 + b, 4, 12, device));
        }
        quantizer.with_calibration(session.finish().unwrap())
    } else {
        quantizer
    };
    quantizer.quantize(model).unwrap().0
}

#[test]
fn int8_outputs_do_not_depend_on_threads_or_runs() {
    // Threads matter only where Ember's CPU kernels run.
    for (_, device) in ember_testkit::cpu_devices() {
        let model = TinyLm::new(&device);
        for mode in [ActivationMode::Dynamic, ActivationMode::Static] {
            let int8 = quantize(&model, mode, &device);
            // Quantizing again (and calibrating again) gives the same file byte for byte.
            assert!(param_bytes(&int8) == param_bytes(&quantize(&model, mode, &device)), "{mode:?}: requantized");
            let x = ids(5, 8, 16, &device);
            set_int8_threads(1);
            let reference = bits(to_vec(int8.forward(x.clone())));
            for threads in [2, 0, 1, 2] {
                set_int8_threads(threads);
                for _ in 0..2 {
                    let got = bits(to_vec(int8.forward(x.clone())));
                    assert!(got == reference, "{mode:?}: {threads} int8 threads differ from 1");
                }
            }
            // Saved and loaded into a fresh skeleton (as in a deployment), it gives the same bits.
            let dir = std::env::temp_dir().join(format!("ember-determinism-load-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("m.safetensors");
            ember_quant::save_quantized(&int8, &path).unwrap();
            let loaded = ember_quant::load_quantized(TinyLm::new(&device), &path).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            assert!(bits(to_vec(loaded.forward(x))) == reference, "{mode:?}: loaded model");
        }
    }
    set_int8_threads(0);
}
