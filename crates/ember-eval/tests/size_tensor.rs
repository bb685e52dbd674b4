//! Size accounting on real Burn / Ember modules and metric updates from tensors, on Flex and
//! NdArray devices, against hand counts and the slice-based accumulators.

use burn::module::{Module, Param};
use burn::nn::{EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use ember_eval::{
    Accuracy, Component, ConfusionMatrix, Correlation, EvalError, ModelSize, Perplexity, TopKAccuracy, file_size,
};

/// Flex, NdArray, and wgpu with the `wgpu` feature (ember-testkit).
fn devices() -> Vec<burn::tensor::Device> {
    ember_testkit::device_list()
}

#[derive(Module, Debug)]
struct Tiny {
    tok: ember_quant::Embedding,
    pos: burn::nn::Embedding,
    norm: LayerNorm,
    up: ember_quant::Linear,
    down: ember_quant::Linear,
    free: Param<Tensor<1>>,
}

const V: usize = 50;
const H: usize = 8;
const F: usize = 24;

fn tiny(device: &burn::tensor::Device) -> Tiny {
    Tiny {
        tok: ember_quant::EmbeddingConfig::new(V, H).init(device),
        pos: EmbeddingConfig::new(16, H).init(device),
        norm: LayerNormConfig::new(H).init(device),
        up: ember_quant::LinearConfig::new(H, F).init(device),
        down: ember_quant::LinearConfig::new(F, H).init(device),
        free: Param::from_tensor(Tensor::zeros([3], device)),
    }
}

#[test]
fn float_model_components_by_hand() {
    for d in devices() {
        let s = ModelSize::of(&tiny(&d));
        assert_eq!(s.bytes(Component::Embeddings), (V * H + 16 * H) * 4);
        assert_eq!(s.bytes(Component::Linear), (H * F + F + F * H + H) * 4);
        assert_eq!(s.bytes(Component::Other), (2 * H + 3) * 4, "layer norm gamma/beta + free");
        assert_eq!(s.bytes(Component::Masks), 0);
        // Empty int8 slots of float layers cost nothing.
        assert_eq!(s.bytes(Component::QuantParams), 0);
        let params = V * H + 16 * H + H * F + F + F * H + H + 2 * H + 3;
        assert_eq!(s.params(), params);
        assert_eq!(s.total_bytes(), params * 4);
        assert_eq!(s.by_dtype().get("f32"), Some(&(params * 4)));
        let up = s.tensors.iter().find(|t| t.path == "up.weight").expect("up.weight listed");
        assert_eq!((up.component, up.shape.clone(), up.dtype.as_str()), (Component::Linear, vec![H, F], "f32"));
    }
}

#[test]
fn int8_model_counts_values_and_scales() {
    for d in devices() {
        let model = tiny(&d);
        let config = ember_quant::QuantizeConfig::new().with_include_embeddings(true);
        let (q, _) = ember_quant::Quantizer::new(config).quantize(&model).unwrap();
        let s = ModelSize::of(&q);
        // Token table: i8 rows; position table stays a Burn float embedding.
        assert_eq!(s.bytes(Component::Embeddings), V * H + 16 * H * 4);
        // Linear: i8 weights + f32 biases.
        assert_eq!(s.bytes(Component::Linear), H * F + F * H + (F + H) * 4);
        // Per-channel weight scales (one per output), 9-value i32 specs, per-row embedding scales.
        assert_eq!(s.bytes(Component::QuantParams), (F + H) * 4 + 2 * 9 * 4 + V * 4);
        assert_eq!(s.params(), V * H + 16 * H + H * F + F + F * H + H + 2 * H + 3, "int8 weights counted once");
        assert_eq!(s.by_dtype().get("i8"), Some(&(V * H + H * F + F * H)));
        let float = ModelSize::of(&model).total_bytes() as f64;
        assert!((s.total_bytes() as f64) < 0.5 * float, "{} vs {float}", s.total_bytes());
    }
}

#[test]
fn macs_and_energy_follow_the_dtypes() {
    let d = burn::tensor::Device::flex();
    let model = tiny(&d);
    let (f, i) = ModelSize::of(&model).linear_macs_per_token();
    assert_eq!((f, i), ((H * F + F * H) as u64, 0));
    let config = ember_quant::QuantizeConfig::new().with_include_embeddings(true);
    let (q, _) = ember_quant::Quantizer::new(config).quantize(&model).unwrap();
    let qs = ModelSize::of(&q);
    assert_eq!(qs.linear_macs_per_token(), (0, (H * F + F * H) as u64));
    let e = ember_eval::EnergyModel::horowitz_45nm();
    let float_mj = e.estimate_module(&ModelSize::of(&model), 10);
    let int8_mj = e.estimate_module(&qs, 10);
    // By hand: 10 tokens × 384 MACs × 4.6 pJ + 3852 bytes × 243.75 pJ.
    let by_hand = (10.0 * 384.0 * 4.6 + 3852.0 * 243.75) * 1e-9;
    assert!((float_mj - by_hand).abs() < 1e-12, "{float_mj} vs {by_hand}");
    assert!(int8_mj < 0.55 * float_mj, "{int8_mj} vs {float_mj}");
}

#[derive(Module, Debug)]
struct Pair {
    a: burn::nn::Linear,
    b: burn::nn::Linear,
}

#[test]
fn pruning_masks_are_counted_as_masks() {
    let d = burn::tensor::Device::flex();
    let net = Pair { a: burn::nn::LinearConfig::new(16, 32).init(&d), b: burn::nn::LinearConfig::new(32, 4).init(&d) };
    let dense = ModelSize::of(&net);
    let (pruned, _) = ember_prune::Pruner::new(ember_prune::PruneConfig::new(0.5)).unwrap().prune(net).unwrap();
    let s = ModelSize::of(&pruned);
    assert_eq!(s.bytes(Component::Linear), dense.bytes(Component::Linear), "the masked base weights stay");
    let bool_size = s.tensors.iter().find(|t| t.component == Component::Masks).map(|t| t.bytes / t.elements).unwrap();
    assert!(bool_size == 1 || bool_size == 4, "{bool_size}");
    assert_eq!(s.bytes(Component::Masks), (16 * 32 + 32 * 4) * bool_size);
    assert_eq!(s.params(), dense.params());
    // Folding the masks removes them.
    let folded = ember_prune::fold_masks(pruned);
    assert_eq!(ModelSize::of(&folded).bytes(Component::Masks), 0);
}

#[test]
fn burn_qfloat_weights_split_into_values_and_scales() {
    let d = burn::tensor::Device::flex();
    let layer = ember_quant::LinearConfig::new(32, 16).init(&d);
    #[derive(Module, Debug)]
    struct One {
        fc: ember_quant::Linear,
    }
    let (q, _) = ember_quant::Quantizer::new(ember_quant::QuantizeConfig::new()).quantize(&One { fc: layer }).unwrap();
    let qfloat = ember_quant::burn_compat::to_burn_qfloat(&q.fc).unwrap();
    let mut burn_linear = burn::nn::LinearConfig::new(32, 16).init(&d);
    burn_linear.weight = Param::from_tensor(qfloat);
    let s = ModelSize::of(&burn_linear);
    assert_eq!(s.bytes(Component::Linear), 32 * 16 + 16 * 4, "i8 values + f32 bias");
    assert_eq!(s.bytes(Component::QuantParams), 16 * 4, "one f32 scale per output channel");
    assert_eq!(s.params(), 32 * 16 + 16);
}

#[test]
fn reports_and_file_size() {
    let d = burn::tensor::Device::flex();
    let s = ModelSize::of(&tiny(&d));
    let md = s.to_markdown();
    assert!(md.contains("| embeddings | 2112 |"), "{md}");
    let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    assert_eq!(json["total_bytes"].as_u64(), Some(s.total_bytes() as u64));
    assert_eq!(json["by_component"]["linear"].as_u64(), Some(s.bytes(Component::Linear) as u64));
    assert_eq!(json["tensors"].as_array().unwrap().len(), s.tensors.len());

    let dir = std::env::temp_dir().join(format!("ember-eval-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("blob.bin");
    std::fs::write(&f, vec![7u8; 1234]).unwrap();
    assert_eq!(file_size(&f).unwrap(), 1234);
    assert!(matches!(file_size(dir.join("missing")), Err(EvalError::Io { .. })));
    let err = file_size(&dir).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn host(t: &Tensor<2>) -> Vec<f32> {
    t.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn classification_from_tensors_matches_slices() {
    for d in devices() {
        let scores = Tensor::<2>::random([40, 5], Distribution::Normal(0.0, 1.0), &d);
        let labels: Vec<i64> = (0..40).map(|i| (i * 7 % 5) as i64).collect();
        let lab_t = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [40]), &d);
        let lab: Vec<usize> = labels.iter().map(|l| *l as usize).collect();
        let s = host(&scores);
        let argmax: Vec<usize> = s.chunks(5).map(|r| (0..5).fold(0, |b, i| if r[i] > r[b] { i } else { b })).collect();

        let (mut a, mut b) = (Accuracy::new(), Accuracy::new());
        a.update_tensor(scores.clone(), lab_t.clone()).unwrap();
        b.update(&argmax, &lab).unwrap();
        assert_eq!(a.value().unwrap(), b.value().unwrap());

        let (mut a, mut b) = (TopKAccuracy::new(2).unwrap(), TopKAccuracy::new(2).unwrap());
        a.update_tensor(scores.clone(), lab_t.clone()).unwrap();
        b.update(&s, 5, &lab).unwrap();
        assert_eq!(a.value().unwrap(), b.value().unwrap());

        let (mut a, mut b) = (ConfusionMatrix::new(5).unwrap(), ConfusionMatrix::new(5).unwrap());
        a.update_tensor(scores.clone(), lab_t.clone()).unwrap();
        b.update(&argmax, &lab).unwrap();
        assert_eq!(a, b);

        // Wrong width, negative label, label out of range, NaN scores.
        let mut c3 = ConfusionMatrix::new(3).unwrap();
        assert!(matches!(c3.update_tensor(scores.clone(), lab_t.clone()), Err(EvalError::LengthMismatch { .. })));
        let neg = Tensor::<1, Int>::from_ints([0, -1], &d);
        let two = Tensor::<2>::zeros([2, 5], &d);
        let err = Accuracy::new().update_tensor(two.clone(), neg).unwrap_err();
        assert!(err.to_string().contains("label = -1"), "{err}");
        let big = Tensor::<1, Int>::from_ints([0, 5], &d);
        assert!(matches!(
            Accuracy::new().update_tensor(two.clone(), big),
            Err(EvalError::InvalidClass { class: 5, classes: 5, .. })
        ));
        let nan = Tensor::<2>::from_floats([[0.0, f32::NAN]], &d);
        assert!(matches!(
            Accuracy::new().update_tensor(nan, Tensor::<1, Int>::from_ints([0], &d)),
            Err(EvalError::NonFinite(_))
        ));
        let short = Tensor::<1, Int>::from_ints([0], &d);
        assert!(matches!(Accuracy::new().update_tensor(two, short), Err(EvalError::LengthMismatch { .. })));
    }
}

#[test]
fn correlation_from_tensors() {
    let d = burn::tensor::Device::flex();
    let p = Tensor::<1>::from_floats([1.0, 2.0, 3.0, 4.0], &d);
    let l = Tensor::<1>::from_floats([1.0, 3.0, 2.0, 4.0], &d);
    let mut c = Correlation::new();
    c.update_tensor(p.clone(), l).unwrap();
    assert!((c.pearson().unwrap() - 0.8).abs() < 1e-6);
    assert!((c.spearman().unwrap() - 0.8).abs() < 1e-6);
    let short = Tensor::<1>::from_floats([1.0], &d);
    assert!(matches!(c.update_tensor(p, short), Err(EvalError::LengthMismatch { .. })));
}

#[test]
fn perplexity_from_tensors_matches_the_f64_slice_path() {
    for d in devices() {
        let (b, s, v) = (3, 7, 11);
        let logits = Tensor::<3>::random([b, s, v], Distribution::Normal(0.0, 3.0), &d);
        let mut targets: Vec<i64> = (0..b * s).map(|i| (i * 5 % v) as i64).collect();
        targets[4] = -100;
        targets[20] = -100;
        let t = Tensor::<2, Int>::from_data(TensorData::new(targets.clone(), [b, s]), &d);
        let host: Vec<f32> = logits.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let (mut a, mut r) = (Perplexity::new(), Perplexity::new());
        a.update_tensor(logits.clone(), t.clone(), Some(-100)).unwrap();
        r.update_logits(&host, v, &targets, Some(-100)).unwrap();
        assert_eq!(a.tokens(), (b * s - 2) as u64);
        let (x, y) = (a.value().unwrap(), r.value().unwrap());
        assert!((x - y).abs() < 1e-5 * y, "{x} vs {y}");

        // A 2-D call accumulates on top.
        a.update_tensor(logits.clone().reshape([b * s, v]), t.clone().reshape([b * s]), Some(-100)).unwrap();
        assert_eq!(a.tokens(), 2 * (b * s - 2) as u64);
        assert!((a.value().unwrap() - y).abs() < 1e-5 * y);

        // Errors: shape, rank, target range, NaN.
        let wrong = Tensor::<2, Int>::zeros([b, s + 1], &d);
        assert!(matches!(
            Perplexity::new().update_tensor(logits.clone(), wrong, None),
            Err(EvalError::LengthMismatch { .. })
        ));
        let rank = Tensor::<1, Int>::zeros([b * s], &d);
        assert!(matches!(
            Perplexity::new().update_tensor(logits.clone(), rank, None),
            Err(EvalError::LengthMismatch { .. })
        ));
        let out = Tensor::<2, Int>::full([b, s], v as i64, &d);
        assert!(matches!(
            Perplexity::new().update_tensor(logits.clone(), out, None),
            Err(EvalError::InvalidClass { .. })
        ));
        let nan = logits.clone().slice_assign([0..1, 0..1, 0..1], Tensor::<3>::full([1, 1, 1], f32::NAN, &d));
        assert!(matches!(Perplexity::new().update_tensor(nan, t.clone(), Some(-100)), Err(EvalError::NonFinite(_))));
        // All ignored: nothing added, still empty.
        let ignored = Tensor::<2, Int>::full([b, s], -100, &d);
        let mut e = Perplexity::new();
        e.update_tensor(logits, ignored, Some(-100)).unwrap();
        assert!(matches!(e.value(), Err(EvalError::Empty(_))));
    }
}
