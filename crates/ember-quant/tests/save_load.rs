//! Saving an int8 model and loading it into a model built from its config (a fresh process
//! needs only the config and the file), sizes, and malformed files.

mod common;
use common::*;
use ember_quant::{QuantError, QuantizeConfig, Quantizer, load_quantized, save_quantized};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-quant-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn save_load_identical_outputs_and_about_a_quarter_of_the_size() {
    for (name, device) in devices() {
        let model = TinyLm::new(&device);
        let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
        let f32_path = tmp(&format!("f32-{name}.safetensors"));
        let int8_path = tmp(&format!("int8-{name}.safetensors"));
        let f32_bytes = save_quantized(&model, &f32_path).unwrap();
        let int8_bytes = save_quantized(&int8, &int8_path).unwrap();
        let ratio = int8_bytes as f64 / f32_bytes as f64;
        assert!(ratio <= 0.27, "{name}: int8 file is {ratio:.3}× the f32 file ({int8_bytes} / {f32_bytes})");
        assert_eq!(std::fs::metadata(&int8_path).unwrap().len(), int8_bytes);

        // A model built from the config with other random weights: the file replaces them.
        device.seed(999);
        let skeleton = TinyLm::new(&device);
        let loaded = load_quantized(skeleton, &int8_path).unwrap();
        assert!(loaded.fc1.is_quantized() && loaded.emb.is_quantized());
        let x = ids(4, 2, 9, &device);
        assert_eq!(to_vec(int8.forward(x.clone())), to_vec(loaded.forward(x)), "{name}: outputs differ after load");
    }
}

#[test]
fn malformed_files_are_typed_errors() {
    let device = burn::tensor::Device::flex();
    let model = Mlp::new(&device);
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
    let path = tmp("mlp.safetensors");
    save_quantized(&int8, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    // Truncated.
    let e = ember_quant::io::load_quantized_bytes(Mlp::new(&device), &bytes[..bytes.len() - 100]).unwrap_err();
    assert!(matches!(e, QuantError::File { .. }) && e.to_string().contains("not a valid safetensors"), "{e}");
    // Garbage header length.
    let mut bad = bytes.clone();
    bad[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = ember_quant::io::load_quantized_bytes(Mlp::new(&device), &bad).unwrap_err();
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    // A model with different layers: missing and extra tensors are named.
    let e = load_quantized(TinyLm::new(&device), &path).unwrap_err();
    assert!(e.to_string().contains("fc3"), "{e}");
    // A plain safetensors file from elsewhere.
    let other = tmp("foreign.safetensors");
    let data = vec![0u8; 16];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    safetensors::serialize_to_file(vec![("w", view)], None, &other).unwrap();
    let e = load_quantized(Mlp::new(&device), &other).unwrap_err();
    assert!(e.to_string().contains("no `format` metadata"), "{e}");
    // Missing file.
    let e = load_quantized(Mlp::new(&device), tmp("nope.safetensors")).unwrap_err();
    assert!(matches!(e, QuantError::Io { .. }), "{e}");
}

#[test]
fn a_spec_from_another_version_is_refused() {
    let device = burn::tensor::Device::flex();
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&Mlp::new(&device)).unwrap();
    let path = tmp("mlp-v.safetensors");
    save_quantized(&int8, &path).unwrap();
    let out = rewrite(&std::fs::read(&path).unwrap(), |k, _, _, b| {
        if k == "fc2.quant.spec" {
            b[4..8].copy_from_slice(&7i32.to_le_bytes()); // version 7
        }
    });
    let e = ember_quant::io::load_quantized_bytes(Mlp::new(&device), &out).unwrap_err();
    assert!(e.to_string().contains("version 7"), "{e}");
}

/// An Ember file with its tensors rewritten by `edit(name, dtype, shape, bytes)` (the format
/// metadata kept), as a corrupted or foreign file would arrive.
fn rewrite(bytes: &[u8], edit: impl Fn(&str, &mut safetensors::Dtype, &mut Vec<usize>, &mut Vec<u8>)) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> =
        st.tensors().into_iter().map(|(k, v)| (k, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    for (k, d, s, b) in &mut tensors {
        edit(k, d, s, b);
    }
    let views: Vec<_> = tensors
        .iter()
        .map(|(k, d, s, b)| (k.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta = std::collections::HashMap::from([
        ("format".to_string(), "ember-quant".to_string()),
        ("version".to_string(), "1".to_string()),
    ]);
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// The int8 TinyLm file with its tensors rewritten by `edit`.
fn edited_file(edit: impl Fn(&str, &mut safetensors::Dtype, &mut Vec<usize>, &mut Vec<u8>)) -> Vec<u8> {
    let device = burn::tensor::Device::flex();
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&TinyLm::new(&device)).unwrap();
    let path = tmp(&format!("edit-{:?}.safetensors", std::thread::current().id()));
    save_quantized(&int8, &path).unwrap();
    rewrite(&std::fs::read(&path).unwrap(), edit)
}

fn load_edited(edit: impl Fn(&str, &mut safetensors::Dtype, &mut Vec<usize>, &mut Vec<u8>)) -> QuantError {
    let device = burn::tensor::Device::flex();
    ember_quant::io::load_quantized_bytes(TinyLm::new(&device), &edited_file(edit)).unwrap_err()
}

#[test]
fn bad_input_quantized_file_misshaped_float_tensor() {
    // A LayerNorm of the wrong width would otherwise load and panic inside Burn's forward.
    let e = load_edited(|k, _, s, b| {
        if k == "norm1.gamma" {
            s[0] -= 1;
            b.truncate(b.len() - 4);
        }
    });
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    assert!(e.to_string().contains("`norm1.gamma` has shape [127] in the file, the model expects [128]"), "{e}");
}

#[test]
fn bad_input_quantized_file_values_of_another_layer_shape() {
    let e = load_edited(|k, _, s, b| {
        if k == "fc1.quant.values" {
            s.swap(0, 1);
            let _ = b;
        }
    });
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    assert!(
        e.to_string().contains("`fc1.quant.values` has shape [512, 128] in the file, the model expects [128, 512]"),
        "{e}"
    );
}

#[test]
fn bad_input_quantized_file_nan_scale() {
    let e = load_edited(|k, _, _, b| {
        if k == "query.quant.scales" {
            b[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
        }
    });
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    assert!(e.to_string().contains("`query.quant.scales`: scale NaN at 2 is not finite and positive"), "{e}");
}

#[test]
fn bad_input_quantized_file_infinite_float_weight() {
    let e = load_edited(|k, _, _, b| {
        if k == "fc2.bias" {
            b[0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        }
    });
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    assert!(e.to_string().contains("`fc2.bias` holds a non-finite value (inf) at flat index 0"), "{e}");
}

#[test]
fn bad_input_quantized_file_spec_of_another_layer() {
    // fc2's spec in fc1's place: a 512 × 128 layer described where the model has 128 × 512.
    let device = burn::tensor::Device::flex();
    let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&TinyLm::new(&device)).unwrap();
    let spec = int8.fc2.quant.spec.val().into_data().as_bytes().to_vec();
    let e = load_edited(move |k, _, _, b| {
        if k == "fc1.quant.spec" {
            *b = spec.clone();
        }
    });
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    assert!(e.to_string().contains("`fc1.quant.spec` describes a 512 × 128 layer, the model's is 128 × 512"), "{e}");
}

#[test]
fn bad_input_quantized_file_with_an_unknown_scheme() {
    // A spec whose weight-granularity code no Ember build writes (7): a file from another
    // scheme is refused, naming the layer, rather than read as a known one.
    let e = load_edited(|k, d, _, b| {
        if k == "fc2.quant.spec" {
            assert_eq!(*d, safetensors::Dtype::I32, "specs are saved as i32");
            b[20..24].copy_from_slice(&7i32.to_le_bytes());
        }
    });
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    assert!(e.to_string().contains("fc2.quant.spec") && e.to_string().contains("weight granularity code 7"), "{e}");
}

#[test]
fn bad_input_quantized_file_static_scale_without_a_finite_reciprocal() {
    // A subnormal activation scale passes "finite and > 0" but its reciprocal overflows: the
    // kernels would refuse it at the first forward (and `forward` would panic), so loading does.
    use ember_quant::{ActivationMode, LayerQuantization, LinearConfig, QuantParams};
    let device = burn::tensor::Device::flex();
    let layer = LinearConfig::new(8, 4).init(&device);
    let q = LayerQuantization {
        mode: ActivationMode::Static,
        activation_params: Some(QuantParams { scale: 0.05, zero_point: 128 }),
        ..Default::default()
    };
    let int8 = layer.quantize(&q).unwrap();
    let path = tmp("static-subnormal.safetensors");
    save_quantized(&int8, &path).unwrap();
    let out = rewrite(&std::fs::read(&path).unwrap(), |k, _, _, b| {
        if k == "quant.activation" {
            b[0..4].copy_from_slice(&1e-39f32.to_le_bytes());
        }
    });
    let e = ember_quant::io::load_quantized_bytes(LinearConfig::new(8, 4).init(&device), &out).unwrap_err();
    assert!(matches!(e, QuantError::File { .. }), "{e}");
    assert!(e.to_string().contains("`quant.activation`: static activation parameters"), "{e}");
    assert!(e.to_string().contains("finite reciprocal"), "{e}");
}
