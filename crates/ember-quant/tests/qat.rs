//! QAT: straight-through and LSQ gradients through autodiff, training, conversion, pruned zeros.

mod common;
use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use ember_quant::fake::{fake_quantize, fake_quantize_per_channel, lsq_fake_quantize};
use ember_quant::qat::{QatConfig, QatMethod, prepare_qat};
use ember_quant::{QuantDtype, QuantParams, QuantizeConfig, Quantizer, compare};

fn grad_of(x: &Tensor<1>, loss: Tensor<1>) -> Vec<f32> {
    let g = loss.backward();
    to_vec(x.grad(&g).unwrap())
}

#[test]
fn ste_gradient_is_one_inside_the_clip_range_and_zero_outside() {
    for (_, device) in devices() {
        let ad = device.autodiff();
        // scale 0.5, i8: clip range [−128·0.5, 127·0.5] = [−64, 63.5].
        let pts = [0.3f32, -0.8, 63.4, 64.0, -64.5, -63.9, 200.0];
        let expect = [1.0f32, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0];
        let x = Tensor::<1>::from_data(TensorData::new(pts.to_vec(), [pts.len()]), &ad).require_grad();
        let y = fake_quantize(x.clone(), QuantParams { scale: 0.5, zero_point: 0 }, QuantDtype::I8Symmetric);
        assert_eq!(to_vec(y.clone().inner()), vec![0.5, -1.0, 63.5, 63.5, -64.0, -64.0, 63.5]);
        assert_eq!(grad_of(&x, y.sum()), expect);

        // Affine u8, scale 0.1, zero point 10: range [−1.0, 24.5].
        let pts = [-1.2f32, -0.95, 0.0, 24.4, 24.6];
        let x = Tensor::<1>::from_data(TensorData::new(pts.to_vec(), [5]), &ad).require_grad();
        let y = fake_quantize(x.clone(), QuantParams { scale: 0.1, zero_point: 10 }, QuantDtype::U8Affine);
        assert_eq!(grad_of(&x, y.sum()), vec![0.0, 1.0, 1.0, 1.0, 0.0]);

        // Per channel: channel scales [0.5, 0.01] on a [2, 2] tensor.
        let x2 = Tensor::<2>::from_floats([[10.0, 1.0], [70.0, 1.3]], &ad).require_grad();
        let s = Tensor::<1>::from_floats([0.5, 0.01], &ad);
        let y = fake_quantize_per_channel(x2.clone(), s, QuantDtype::I8Symmetric);
        let g = y.sum().backward();
        assert_eq!(to_vec(x2.grad(&g).unwrap()), vec![1.0, 1.0, 0.0, 0.0]);
    }
}

#[test]
fn lsq_scale_gradient_matches_the_paper() {
    for (_, device) in devices() {
        let ad = device.autodiff();
        let pts = [0.3f32, -0.8, 70.0, -100.0];
        let c = [1.0f32, 2.0, 3.0, 4.0];
        for g in [1.0f32, 0.1] {
            let x = Tensor::<1>::from_data(TensorData::new(pts.to_vec(), [4]), &ad).require_grad();
            let s = Tensor::<1>::from_floats([0.5], &ad).require_grad();
            let y = lsq_fake_quantize(x.clone(), s.clone(), QuantDtype::I8Symmetric, g);
            let weights = Tensor::<1>::from_data(TensorData::new(c.to_vec(), [4]), &ad);
            let grads = (y * weights).sum().backward();
            // Esser et al. 2020 eq. 3: ∂x̂/∂s = round(x/s) − x/s inside, −Q_N or Q_P outside; × g.
            let expect: f32 = pts
                .iter()
                .zip(c)
                .map(|(&x, c)| {
                    let v = x / 0.5;
                    let d = if v <= -127.0 {
                        -127.0
                    } else if v >= 127.0 {
                        127.0
                    } else {
                        v.round() - v
                    };
                    c * d
                })
                .sum::<f32>()
                * g;
            let gs = to_vec(s.grad(&grads).unwrap())[0];
            assert!((gs - expect).abs() < 1e-3, "g = {g}: LSQ scale gradient {gs}, paper {expect}");
            assert_eq!(to_vec(x.grad(&grads).unwrap()), vec![1.0, 2.0, 0.0, 0.0]);
        }
    }
}

fn prune_half(model: Mlp) -> Mlp {
    let mut m = model;
    let w = m.fc1.weight.val();
    let keep = w.clone().abs().greater_elem(0.05);
    m.fc1.weight = Param::initialized(m.fc1.weight.id, w.mask_fill(keep.bool_not(), 0.0).detach().require_grad());
    m
}

#[test]
fn qat_training_then_int8_keeps_pruned_zeros_and_the_learned_grid() {
    for method in [QatMethod::Ste, QatMethod::Lsq] {
        let device = Device::flex().autodiff();
        let model = prune_half(Mlp::new(&device));
        let zeros_before = to_vec(model.fc1.weight.val().inner()).iter().filter(|v| **v == 0.0).count();
        assert!(zeros_before > 100);
        let mut model = prepare_qat(model, &QatConfig::new().with_method(method)).unwrap();
        let mut opt = AdamConfig::new().init();
        let x = input(2, [16, 48], &device);
        let target = input(3, [16, 10], &device);
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..15 {
            let loss = (model.forward(x.clone()) - target.clone()).powf_scalar(2.0).mean();
            last = to_vec(loss.clone().inner())[0];
            first.get_or_insert(last);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = opt.step(1e-2, model, grads);
        }
        assert!(last < first.unwrap(), "{method:?}: QAT loss did not decrease");
        let qat = model.valid();
        let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&qat).unwrap();
        // Pruned weights stay exactly zero through QAT and conversion.
        let v: Vec<i64> = int8.fc1.quant.values.val().into_data().convert::<i64>().try_into_vec().unwrap();
        let zeros_after = v.iter().filter(|q| **q == 0).count();
        assert!(zeros_after >= zeros_before, "{method:?}: {zeros_after} int8 zeros < {zeros_before} pruned");
        // The int8 weights are the fake-quantized ones.
        let fq = to_vec(qat.fc1.weight.val());
        let deq = to_vec(int8.fc1.effective_weight().unwrap());
        let max = fq.iter().zip(&deq).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < 1e-5, "{method:?}: int8 weights differ from the QAT grid by {max}");
        let plain = Device::flex();
        let xp = x.clone().inner();
        let e = compare(qat.clone().fork(&plain).forward(xp.clone()), int8.fork(&plain).forward(xp)).unwrap();
        assert!(e.cosine > 0.999, "{method:?}: cosine {}", e.cosine);
    }
}

#[test]
fn qat_selects_linear_weights_only_and_per_group_is_rejected() {
    let device = Device::flex().autodiff();
    let model = TinyLm::new(&device);
    let q = prepare_qat(model, &QatConfig::new().with_exclude(vec!["fc2".into()])).unwrap();
    // The embedding table is not a Linear weight; fc2 is excluded.
    let mut names = Vec::new();
    struct V<'a>(&'a mut Vec<String>, Vec<String>);
    impl burn::module::ModuleVisitor for V<'_> {
        fn enter_module(&mut self, n: &str, _: &str) {
            self.1.push(n.into());
            if n == ember_quant::qat::FAKE_QUANT_NAME {
                self.0.push(self.1.join("."));
            }
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
    }
    q.visit(&mut V(&mut names, vec![]));
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("emb") || n.starts_with("fc2")), "{names:?}");
    let e = prepare_qat(
        Mlp::new(&Device::flex()),
        &QatConfig::new().with_weight(ember_quant::WeightGranularity::PerGroup { group_size: 8 }),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("per-group"), "{e}");
}

/// A user's own struct that happens to be called `Linear`.
mod user {
    use burn::module::{Module, Param};
    use burn::tensor::Tensor;

    #[derive(Module, Debug)]
    pub struct Linear {
        pub weight: Param<Tensor<2>>,
        pub scale: Param<Tensor<1>>,
    }
}

#[derive(burn::module::Module, Debug)]
struct Mixed {
    ember: ember_quant::Linear,
    burn: burn::nn::Linear,
    mine: user::Linear,
}

#[test]
fn qat_recognises_ember_linears_by_type_and_burns_by_shape_not_any_struct_called_linear() {
    let d = Device::flex();
    let model = Mixed {
        ember: ember_quant::LinearConfig::new(4, 3).init(&d),
        burn: burn::nn::LinearConfig::new(4, 3).init(&d),
        mine: user::Linear {
            weight: burn::module::Param::from_tensor(burn::tensor::Tensor::ones([4, 3], &d)),
            scale: burn::module::Param::from_tensor(burn::tensor::Tensor::ones([3], &d)),
        },
    };
    let q = prepare_qat(model, &QatConfig::new()).unwrap();
    let mut names = Vec::new();
    struct V<'a>(&'a mut Vec<String>, Vec<String>);
    impl burn::module::ModuleVisitor for V<'_> {
        fn enter_module(&mut self, n: &str, _: &str) {
            self.1.push(n.into());
            if n == ember_quant::qat::FAKE_QUANT_NAME {
                self.0.push(self.1.join("."));
            }
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
    }
    q.visit(&mut V(&mut names, vec![]));
    names.sort();
    let want: Vec<String> =
        ["burn", "ember"].iter().map(|l| format!("{l}.weight.{}", ember_quant::qat::FAKE_QUANT_NAME)).collect();
    assert_eq!(names, want);
}
