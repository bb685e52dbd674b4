//! Loss values against hand-worked cases and f64 references, invariants (proptest), gradients
//! against finite differences, the T² convention and typed errors.

mod common;

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use common::*;
use ember_distill::*;
use proptest::prelude::*;

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: got {a}, expected {b}");
}

#[test]
fn kd_matches_hand_worked_values() {
    for (name, d) in devices() {
        // Teacher [0, ln 3] → p = [1/4, 3/4]; student [0, 0] → q = [1/2, 1/2].
        let t = tensor(vec![0.0, 3f32.ln()], [1, 2], &d);
        let s = tensor(vec![0.0, 0.0], [1, 2], &d);
        let want_t1 = 0.25 * (0.25f64 / 0.5).ln() + 0.75 * (0.75f64 / 0.5).ln(); // 0.130812
        close(scalar(soft_target_kd_loss(s.clone(), t.clone(), 1.0).unwrap()), want_t1, 1e-5, name);
        assert!((want_t1 - 0.130812).abs() < 1e-6);
        // T = 2: p = softmax([0, ln3/2]) = [1/(1+√3), √3/(1+√3)], and the T² = 4 factor.
        let p0 = 1.0 / (1.0 + 3f64.sqrt());
        let want_t2 = 4.0 * (p0 * (p0 / 0.5).ln() + (1.0 - p0) * ((1.0 - p0) / 0.5).ln());
        close(scalar(soft_target_kd_loss(s.clone(), t.clone(), 2.0).unwrap()), want_t2, 1e-5, name);
        // Without T²: a quarter of it.
        let kd = KdLossConfig::new().with_temperature(2.0).with_t_squared(false).init().unwrap();
        close(scalar(kd.forward(s.clone(), t.clone()).unwrap()), want_t2 / 4.0, 1e-5, name);
        // Mixed with cross-entropy: label 1 → −ln(1/2).
        let kd = KdLossConfig::new().with_temperature(1.0).with_alpha(0.25).init().unwrap();
        let labels = Tensor::<1, Int>::from_ints([1], &d);
        let want = 0.25 * want_t1 + 0.75 * 2f64.ln();
        close(scalar(kd.forward_mixed(s, t, labels).unwrap()), want, 1e-5, name);
    }
}

#[test]
fn kd_matches_f64_reference_on_random_logits() {
    for (name, d) in devices() {
        for (seed, temp) in [(1, 1.0), (2, 3.0), (3, 0.5)] {
            let (s, t) = (
                lcg(seed, 6 * 7).iter().map(|v| v * 5.0).collect::<Vec<_>>(),
                lcg(seed + 9, 6 * 7).iter().map(|v| v * 5.0).collect::<Vec<_>>(),
            );
            let want: f64 = kl_ref(&s, &t, 7, temp).iter().sum::<f64>() / 6.0 * temp * temp;
            let got = scalar(soft_target_kd_loss(tensor(s, [6, 7], &d), tensor(t, [6, 7], &d), temp).unwrap());
            close(got, want, 1e-4, name);
        }
    }
}

#[test]
fn kd_is_stable_for_huge_logits() {
    let d = ember_testkit::first_device().1;
    let s = tensor(vec![1e4, -1e4, 0.0, 5e3], [2, 2], &d);
    let t = tensor(vec![-1e4, 1e4, 0.0, 5e3], [2, 2], &d);
    let l = scalar(soft_target_kd_loss(s, t, 1.0).unwrap());
    assert!(l.is_finite() && l > 1e3, "{l}");
}

#[test]
fn sequence_kd_and_ce_skip_padding_and_ignored_labels() {
    for (name, d) in devices() {
        let (b, s, v) = (2, 3, 5);
        let sl = lcg(11, b * s * v);
        let tl = lcg(12, b * s * v);
        let mask =
            Tensor::<2, Bool>::from_data(TensorData::new(vec![false, false, true, false, true, true], [b, s]), &d);
        let kl = kl_ref(&sl, &tl, v, 2.0);
        let valid = [0, 1, 3];
        let want = valid.iter().map(|&i| kl[i]).sum::<f64>() / 3.0 * 4.0;
        let got = scalar(
            soft_target_kd_loss_seq(
                tensor(sl.clone(), [b, s, v], &d),
                tensor(tl.clone(), [b, s, v], &d),
                2.0,
                Some(mask.clone()),
            )
            .unwrap(),
        );
        close(got, want, 1e-4, name);

        // CE: position 1 carries the ignore index, positions 2, 4, 5 are padding.
        let labels = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, -100, 0, 4, 2, 2], [b, s]), &d);
        let logp: Vec<f64> = sl
            .chunks(v)
            .map(|r| {
                let m = r.iter().cloned().fold(f32::MIN, f32::max) as f64;
                m + r.iter().map(|x| (*x as f64 - m).exp()).sum::<f64>().ln()
            })
            .collect();
        let ce = |row: usize, c: usize| logp[row] - sl[row * v + c] as f64;
        let want_ce = (ce(0, 3) + ce(3, 4)) / 2.0;
        let got = scalar(
            hard_label_loss_seq(tensor(sl.clone(), [b, s, v], &d), labels.clone(), Some(-100), Some(mask.clone()))
                .unwrap(),
        );
        close(got, want_ce, 1e-5, name);

        // Mixed: the soft term covers every non-padded position (the teacher has a distribution
        // at the ignored label too); the hard term also skips the ignored label.
        let kd = KdLossConfig::new().with_temperature(2.0).with_alpha(0.5).init().unwrap();
        let got = scalar(
            kd.forward_mixed_seq(
                tensor(sl.clone(), [b, s, v], &d),
                tensor(tl.clone(), [b, s, v], &d),
                labels,
                Some(mask),
            )
            .unwrap(),
        );
        close(got, 0.5 * want + 0.5 * want_ce, 1e-4, name);

        // Every position padded: 0, not NaN.
        let all = Tensor::<2, Bool>::full([b, s], true, &d);
        let got = scalar(
            soft_target_kd_loss_seq(tensor(sl, [b, s, v], &d), tensor(tl, [b, s, v], &d), 2.0, Some(all)).unwrap(),
        );
        assert_eq!(got, 0.0);
    }
}

#[test]
fn intermediate_losses_match_hand_worked_values() {
    for (name, d) in devices() {
        // MSE: second position padded; first differs by (0, 2) → (0 + 4)/2.
        let s = tensor(vec![1.0, 2.0, 3.0, 4.0], [1, 2, 2], &d);
        let t = tensor(vec![1.0, 0.0, 0.0, 4.0], [1, 2, 2], &d);
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(vec![false, true], [1, 2]), &d);
        close(scalar(hidden_mse_loss(s.clone(), t.clone(), Some(mask)).unwrap()), 2.0, 1e-6, name);
        close(scalar(hidden_mse_loss(s, t, None).unwrap()), (4.0 + 9.0) / 4.0, 1e-6, name);
        // Cosine: orthogonal → 1, parallel → 0.
        let s = tensor(vec![1.0, 0.0, 1.0, 1.0], [1, 2, 2], &d);
        let t = tensor(vec![0.0, 1.0, 2.0, 2.0], [1, 2, 2], &d);
        close(scalar(hidden_cosine_loss(s, t, None).unwrap()), 0.5, 1e-6, name);
        // PKD: [3,4]/5 vs [4,3]/5 → 0.04 + 0.04.
        let s = tensor(vec![3.0, 4.0], [1, 2], &d);
        let t = tensor(vec![4.0, 3.0], [1, 2], &d);
        close(scalar(patient_kd_loss(s, t).unwrap()), 0.08, 1e-6, name);
        // Attention: one head, two queries.
        let ta = tensor(vec![0.5, 0.5, 1.0, 0.0], [1, 1, 2, 2], &d);
        let sa = tensor(vec![0.25, 0.75, 0.5, 0.5], [1, 1, 2, 2], &d);
        let row1 = 0.5 * (2f64).ln() + 0.5 * (0.5f64 / 0.75).ln();
        let row2 = (2f64).ln();
        close(scalar(attention_kl_loss(sa.clone(), ta.clone(), None).unwrap()), (row1 + row2) / 2.0, 1e-5, name);
        close(scalar(attention_mse_loss(sa.clone(), ta.clone(), None).unwrap()), (0.125 + 0.5) / 4.0, 1e-6, name);
        // Query 2 padded: only row 1, and only key 1 of it for KL (key 2 padded).
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(vec![false, true], [1, 2]), &d);
        close(
            scalar(attention_kl_loss(sa.clone(), ta.clone(), Some(mask.clone())).unwrap()),
            0.5 * 2f64.ln(),
            1e-5,
            name,
        );
        close(scalar(attention_mse_loss(sa, ta, Some(mask)).unwrap()), 0.0625, 1e-6, name);
    }
}

/// f64 reference of MiniLM's value relation: KL(softmax(VtVtᵀ/√dt) ‖ softmax(VsVsᵀ/√ds)).
fn value_relation_ref(vs: &[f32], vt: &[f32], seq: usize, ds: usize, dt: usize, heads: usize) -> f64 {
    let rel = |v: &[f32], d: usize, h: usize| -> Vec<f64> {
        let dh = d / heads;
        let mut scores = Vec::new();
        for i in 0..seq {
            for j in 0..seq {
                let dot: f64 = (0..dh).map(|k| v[i * d + h * dh + k] as f64 * v[j * d + h * dh + k] as f64).sum();
                scores.push(dot / (dh as f64).sqrt());
            }
        }
        softmax_rows(&scores, seq, 1.0)
    };
    let mut total = 0.0;
    for h in 0..heads {
        let (p, q) = (rel(vt, dt, h), rel(vs, ds, h));
        total += p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>();
    }
    total / (heads * seq) as f64
}

#[test]
fn value_relation_matches_reference_with_different_widths() {
    for (name, d) in devices() {
        let (seq, ds, dt, heads) = (4, 8, 12, 2);
        let vs: Vec<f32> = lcg(21, seq * ds);
        let vt: Vec<f32> = lcg(22, seq * dt).iter().map(|v| v * 2.0).collect();
        let want = value_relation_ref(&vs, &vt, seq, ds, dt, heads);
        let got = scalar(
            value_relation_loss(tensor(vs, [1, seq, ds], &d), tensor(vt, [1, seq, dt], &d), heads, None).unwrap(),
        );
        close(got, want, 1e-4, name);
    }
}

#[test]
fn gradients_match_finite_differences() {
    for (name, d) in devices() {
        let dn = |s: &str| format!("{name}: {s}");
        let t2 = lcg(31, 3 * 5).iter().map(|v| v * 3.0).collect::<Vec<_>>();
        check_grad(&dn("soft KD"), &d, [3, 5], lcg(32, 15).iter().map(|v| v * 3.0).collect(), 1e-2, |x, dev| {
            soft_target_kd_loss(x, tensor(t2.clone(), [3, 5], dev), 2.5).unwrap()
        });
        let labels = vec![4i64, 0, 2];
        check_grad(&dn("mixed KD + CE"), &d, [3, 5], lcg(33, 15), 1e-2, |x, dev| {
            let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [3]), dev);
            KdLossConfig::new()
                .with_temperature(3.0)
                .with_alpha(0.3)
                .init()
                .unwrap()
                .forward_mixed(x, tensor(t2.clone(), [3, 5], dev), y)
                .unwrap()
        });
        let t3 = lcg(34, 2 * 3 * 4);
        let mask = vec![false, false, true, false, false, false];
        check_grad(&dn("sequence KD + CE with padding"), &d, [2, 3, 4], lcg(35, 24), 1e-2, |x, dev| {
            let m = Tensor::<2, Bool>::from_data(TensorData::new(mask.clone(), [2, 3]), dev);
            let y = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, -100, 2, 3, 0, 1], [2, 3]), dev);
            KdLossConfig::new()
                .with_temperature(2.0)
                .init()
                .unwrap()
                .forward_mixed_seq(x, tensor(t3.clone(), [2, 3, 4], dev), y, Some(m))
                .unwrap()
        });
        let th = lcg(36, 2 * 3 * 4);
        check_grad(&dn("hidden MSE"), &d, [2, 3, 4], lcg(37, 24), 1e-2, |x, dev| {
            let m = Tensor::<2, Bool>::from_data(TensorData::new(mask.clone(), [2, 3]), dev);
            hidden_mse_loss(x, tensor(th.clone(), [2, 3, 4], dev), Some(m)).unwrap()
        });
        check_grad(&dn("hidden cosine"), &d, [2, 3, 4], lcg(38, 24), 1e-2, |x, dev| {
            let m = Tensor::<2, Bool>::from_data(TensorData::new(mask.clone(), [2, 3]), dev);
            hidden_cosine_loss(x, tensor(th.clone(), [2, 3, 4], dev), Some(m)).unwrap()
        });
        let tc = lcg(39, 3 * 4);
        check_grad(&dn("Patient-KD"), &d, [3, 4], lcg(40, 12), 1e-2, |x, dev| {
            patient_kd_loss(x, tensor(tc.clone(), [3, 4], dev)).unwrap()
        });
        // Attention losses on probabilities: perturb around a softmax output (all entries well
        // above the 1e-12 floor).
        let probs = |seed: u64| to_vec(softmax(rand::<4>(seed, [1, 2, 3, 3], 1.0, &d), 3));
        let ta = probs(41);
        let m1 = vec![false, false, true];
        check_grad(&dn("attention KL"), &d, [1, 2, 3, 3], probs(42), 1e-3, |x, dev| {
            let m = Tensor::<2, Bool>::from_data(TensorData::new(m1.clone(), [1, 3]), dev);
            attention_kl_loss(x, tensor(ta.clone(), [1, 2, 3, 3], dev), Some(m)).unwrap()
        });
        check_grad(&dn("attention MSE"), &d, [1, 2, 3, 3], probs(43), 1e-3, |x, dev| {
            let m = Tensor::<2, Bool>::from_data(TensorData::new(m1.clone(), [1, 3]), dev);
            attention_mse_loss(x, tensor(ta.clone(), [1, 2, 3, 3], dev), Some(m)).unwrap()
        });
        let tv = lcg(44, 3 * 6);
        check_grad(&dn("value relation"), &d, [1, 3, 4], lcg(45, 12), 1e-2, |x, dev| {
            let m = Tensor::<2, Bool>::from_data(TensorData::new(m1.clone(), [1, 3]), dev);
            value_relation_loss(x, tensor(tv.clone(), [1, 3, 6], dev), 2, Some(m)).unwrap()
        });
        // Cached top-k loss (k < V: the tail bucket's gradient included).
        let tl: Vec<f32> = lcg(46, 2 * 6).iter().map(|v| v * 4.0).collect();
        let cached = TopKLogits::from_host(&tl, 1, 2, 6, 3).unwrap();
        check_grad(&dn("cached top-k KD"), &d, [1, 2, 6], lcg(47, 12), 1e-2, |x, _| {
            cached.kd_loss(x, 2.0, true, None).unwrap()
        });
    }
}

#[test]
fn zero_vectors_give_finite_gradients() {
    for (name, d) in devices() {
        let ad = d.clone().autodiff();
        let x = Tensor::<3>::zeros([1, 2, 3], &ad).require_grad();
        let t = rand::<3>(5, [1, 2, 3], 1.0, &ad);
        let g = x.grad(&hidden_cosine_loss(x.clone(), t, None).unwrap().backward()).unwrap();
        assert!(to_vec(g).iter().all(|v| v.is_finite()), "{name}: cosine");
        let c = Tensor::<2>::zeros([2, 3], &ad).require_grad();
        let g = c.grad(&patient_kd_loss(c.clone(), rand::<2>(6, [2, 3], 1.0, &ad)).unwrap().backward()).unwrap();
        assert!(to_vec(g).iter().all(|v| v.is_finite()), "{name}: PKD");
        // Empty batches give 0, not NaN.
        let e = Tensor::<2>::zeros([0, 4], &d);
        assert_eq!(scalar(soft_target_kd_loss(e.clone(), e.clone(), 2.0).unwrap()), 0.0);
        assert_eq!(scalar(hard_label_loss(e, Tensor::<1, Int>::zeros([0], &d)).unwrap()), 0.0);
        // Empty sequence batches, with and without a padding mask (masked means).
        let e3 = Tensor::<3>::zeros([0, 3, 4], &d);
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(Vec::<bool>::new(), [0, 3]), &d);
        assert_eq!(
            scalar(soft_target_kd_loss_seq(e3.clone(), e3.clone(), 2.0, Some(pad.clone())).unwrap()),
            0.0,
            "{name}"
        );
        assert_eq!(scalar(soft_target_kd_loss_seq(e3.clone(), e3.clone(), 2.0, None).unwrap()), 0.0, "{name}");
        let labels = Tensor::<2, Int>::zeros([0, 3], &d);
        assert_eq!(scalar(hard_label_loss_seq(e3.clone(), labels.clone(), None, Some(pad)).unwrap()), 0.0, "{name}");
        assert_eq!(scalar(hard_label_loss_seq(e3, labels, Some(-100), None).unwrap()), 0.0, "{name}");
    }
}

#[test]
fn cached_tail_stays_accurate_when_the_student_is_confident() {
    let d = ember_testkit::first_device().1;
    let v = 64;
    // The student puts ~all its mass on the teacher's top 4 tokens: q_tail ≈ 1e-13, below f32
    // resolution of 1 − Σ q_top. The log-space tail keeps the cached loss ≤ the full loss.
    let teacher: Vec<f32> = (0..v).map(|i| if i < 4 { 5.0 } else { -(i as f32) * 0.01 }).collect();
    let student: Vec<f32> = (0..v).map(|i| if i < 4 { 30.0 } else { 0.0 }).collect();
    let top = TopKLogits::from_host(&teacher, 1, 1, v, 4).unwrap();
    let cached = scalar(top.kd_loss(tensor(student.clone(), [1, 1, v], &d), 1.0, true, None).unwrap());
    let full = scalar(
        soft_target_kd_loss_seq(tensor(student, [1, 1, v], &d), tensor(teacher, [1, 1, v], &d), 1.0, None).unwrap(),
    );
    assert!(cached <= full * (1.0 + 1e-4) && cached > 0.9 * full, "cached {cached} vs full {full}");
}

/// Pins the T² convention: with it, the student-logit gradient norm barely depends on T.
#[test]
fn t_squared_keeps_gradient_scale_across_temperatures() {
    let d = ember_testkit::first_device().1;
    let ad = d.clone().autodiff();
    let s = lcg(51, 8 * 10).iter().map(|v| v * 2.0).collect::<Vec<_>>();
    let t = lcg(52, 8 * 10).iter().map(|v| v * 2.0).collect::<Vec<_>>();
    let norm = |temp: f64, t_squared: bool| {
        let x = tensor(s.clone(), [8, 10], &ad).require_grad();
        let kd = KdLossConfig::new().with_temperature(temp).with_t_squared(t_squared).init().unwrap();
        let g = x.grad(&kd.forward(x.clone(), tensor(t.clone(), [8, 10], &ad)).unwrap().backward()).unwrap();
        g.powi_scalar(2).sum().sqrt().into_scalar::<f32>() as f64
    };
    let ratio = norm(16.0, true) / norm(4.0, true);
    assert!((0.8..=1.25).contains(&ratio), "grad-norm ratio T=16 / T=4 with T²: {ratio}");
    // Without the factor the ratio collapses towards 1/16: the test would catch a missing T².
    let unscaled = norm(16.0, false) / norm(4.0, false);
    assert!(unscaled < 0.1, "without T² the ratio is {unscaled}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn kd_is_nonnegative_and_zero_on_equal_logits(
        s in proptest::collection::vec(-30.0f32..30.0, 12),
        t in proptest::collection::vec(-30.0f32..30.0, 12),
        temp in 0.25f64..20.0,
    ) {
        let d = burn::tensor::Device::flex();
        let l = scalar(soft_target_kd_loss(tensor(s.clone(), [3, 4], &d), tensor(t.clone(), [3, 4], &d), temp).unwrap());
        prop_assert!(l >= 0.0 && l.is_finite(), "KD = {}", l);
        // Not merely clamped: it is the KL divergence (f64 reference, unclamped).
        let want = kl_ref(&s, &t, 4, temp).iter().sum::<f64>() / 3.0 * temp * temp;
        prop_assert!(want >= -1e-9 && (l - want).abs() <= 1e-3 * (1.0 + want), "KD {} vs reference {}", l, want);
        let same = scalar(soft_target_kd_loss(tensor(s.clone(), [3, 4], &d), tensor(s, [3, 4], &d), temp).unwrap());
        prop_assert_eq!(same, 0.0);
    }

    #[test]
    fn cached_loss_never_exceeds_full_at_t1_and_tail_mass_is_a_probability(
        s in proptest::collection::vec(-5.0f32..5.0, 16),
        t in proptest::collection::vec(-5.0f32..5.0, 16),
        k in 1usize..=8,
    ) {
        let d = burn::tensor::Device::flex();
        let cached = TopKLogits::from_host(&t, 1, 2, 8, k).unwrap();
        for m in cached.tail_mass(1.0) {
            prop_assert!((0.0..=1.0).contains(&m));
        }
        let part = scalar(cached.kd_loss(tensor(s.clone(), [1, 2, 8], &d), 1.0, true, None).unwrap());
        let full = scalar(soft_target_kd_loss_seq(tensor(s, [1, 2, 8], &d), tensor(t, [1, 2, 8], &d), 1.0, None).unwrap());
        prop_assert!(part <= full + 1e-5, "cached {} vs full {}", part, full);
        if k == 8 {
            prop_assert!((part - full).abs() <= 1e-5 * (1.0 + full));
        }
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let d = ember_testkit::first_device().1;
    let a = rand::<2>(1, [2, 3], 1.0, &d);
    assert!(matches!(
        soft_target_kd_loss(a.clone(), rand::<2>(2, [2, 4], 1.0, &d), 1.0),
        Err(DistillError::VocabMismatch { teacher: 4, student: 3 })
    ));
    assert!(matches!(
        soft_target_kd_loss(a.clone(), rand::<2>(2, [3, 3], 1.0, &d), 1.0),
        Err(DistillError::Shape { .. })
    ));
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(soft_target_kd_loss(a.clone(), a.clone(), t), Err(DistillError::Temperature(_))), "T = {t}");
    }
    let nan = tensor(vec![0.0, f32::NAN, 1.0, 0.0, 0.0, 0.0], [2, 3], &d);
    let e = soft_target_kd_loss(a.clone(), nan.clone(), 1.0).unwrap_err();
    assert!(matches!(e, DistillError::NonFinite { .. }) && e.to_string().contains("teacher logits"), "{e}");
    assert!(matches!(
        hidden_mse_loss(rand::<3>(1, [1, 2, 3], 1.0, &d), rand::<3>(1, [1, 2, 4], 1.0, &d), None),
        Err(DistillError::Shape { .. })
    ));
    let bad_mask = Tensor::<2, Bool>::full([1, 3], false, &d);
    assert!(matches!(
        hidden_mse_loss(rand::<3>(1, [1, 2, 3], 1.0, &d), rand::<3>(1, [1, 2, 3], 1.0, &d), Some(bad_mask)),
        Err(DistillError::Shape { .. })
    ));
    let e =
        attention_kl_loss(rand::<4>(1, [1, 2, 3, 3], 1.0, &d), rand::<4>(1, [1, 4, 3, 3], 1.0, &d), None).unwrap_err();
    assert!(e.to_string().contains("heads"), "{e}");
    assert!(matches!(
        value_relation_loss(rand::<3>(1, [1, 2, 6], 1.0, &d), rand::<3>(1, [1, 2, 8], 1.0, &d), 4, None),
        Err(DistillError::InvalidConfig { .. })
    ));
    let labels = Tensor::<1, Int>::from_ints([0, 3], &d);
    let e = hard_label_loss(a.clone(), labels).unwrap_err();
    assert!(e.to_string().contains("[0, 3)"), "{e}");
    assert!(matches!(KdLossConfig::new().with_alpha(1.5).init(), Err(DistillError::InvalidConfig { .. })));
    assert!(matches!(TopKLogits::from_host(&[0.0; 6], 1, 2, 3, 4), Err(DistillError::InvalidConfig { .. })));
    assert!(matches!(
        TopKLogits::from_host(&[0.0, f32::INFINITY, 0.0], 1, 1, 3, 2),
        Err(DistillError::NonFinite { .. })
    ));
}
