//! Layer maps, the Distiller on real encoders (ember-layers), schedules and the teacher cache.

mod common;

use std::cell::Cell;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use common::*;
use ember_distill::*;
use ember_layers::{Encoder, EncoderConfig};

#[test]
fn layer_maps_resolve_and_validate() {
    let pairs = |m: &LayerMap, s, t, e| {
        m.resolve(s, t, e).map(|v| v.iter().map(|p| (p.student, p.teacher)).collect::<Vec<_>>())
    };
    // TinyBERT 4 of 12: g(m) = 3m.
    assert_eq!(
        pairs(&LayerMap::Uniform { include_embeddings: true }, 4, 12, true).unwrap(),
        vec![(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]
    );
    // Not divisible: rounded down, still monotone and inside the teacher.
    assert_eq!(
        pairs(&LayerMap::Uniform { include_embeddings: false }, 3, 8, true).unwrap(),
        vec![(1, 2), (2, 5), (3, 8)]
    );
    assert_eq!(pairs(&LayerMap::LastK(2), 4, 12, false).unwrap(), vec![(3, 11), (4, 12)]);
    assert_eq!(
        pairs(&LayerMap::Skip { stride: 2 }, 6, 12, false).unwrap(),
        vec![(1, 2), (2, 4), (3, 6), (4, 8), (5, 10), (6, 12)]
    );
    assert_eq!(pairs(&LayerMap::Custom(vec![(0, 0), (2, 7)]), 2, 8, true).unwrap(), vec![(0, 0), (2, 7)]);
    // Out of range, with the reason in the message.
    let e = LayerMap::Skip { stride: 3 }.resolve(6, 12, false).unwrap_err();
    assert!(
        matches!(e, DistillError::LayerOutOfRange { student: 5, teacher: 15, .. }) && e.to_string().contains("1..=12"),
        "{e}"
    );
    assert!(matches!(LayerMap::Custom(vec![(3, 1)]).resolve(2, 8, true), Err(DistillError::LayerOutOfRange { .. })));
    // Embeddings have no attention maps.
    let e = LayerMap::Uniform { include_embeddings: true }.resolve(2, 4, false).unwrap_err();
    assert!(e.to_string().contains("embeddings"), "{e}");
    for bad in [LayerMap::LastK(0), LayerMap::LastK(5), LayerMap::Skip { stride: 0 }, LayerMap::Custom(vec![])] {
        assert!(matches!(bad.resolve(4, 12, true), Err(DistillError::InvalidConfig { .. })), "{bad:?}");
    }
    assert!(matches!(
        LayerMap::Uniform { include_embeddings: false }.resolve(6, 4, true),
        Err(DistillError::InvalidConfig { .. })
    ));
}

#[test]
fn schedules_interpolate() {
    let s = Schedule::Linear { start: 1.0, end: 0.0, steps: 4 };
    assert_eq!((0..6).map(|i| s.at(i)).collect::<Vec<_>>(), vec![1.0, 0.75, 0.5, 0.25, 0.0, 0.0]);
    assert_eq!(Schedule::Linear { start: 3.0, end: 5.0, steps: 0 }.at(0), 5.0);
    assert_eq!(Schedule::from(2.0).at(100), 2.0);
}

/// A tiny BERT-like classifier on ember-layers' encoder.
#[derive(Module, Debug)]
struct TinyEncoder {
    emb: Embedding,
    enc: Encoder,
    head: Linear,
}

const VOCAB: usize = 20;
const CLASSES: usize = 3;

impl TinyEncoder {
    fn new(d: usize, heads: usize, layers: usize, device: &Device) -> Self {
        TinyEncoder {
            emb: EmbeddingConfig::new(VOCAB, d).init(device),
            enc: EncoderConfig::new(d, heads, 2 * d, layers).with_dropout(0.0).init(device).unwrap(),
            head: LinearConfig::new(d, CLASSES).init(device),
        }
    }

    fn outputs(&self, batch: &Batch, request: &OutputRequest) -> ModelOutputs {
        let device = self.head.weight.device();
        let ids = batch.ids.clone().to_device(&device);
        let mask = batch.mask.clone().to_device(&device);
        let collect = request.hidden_states || request.attentions;
        let out = self.enc.forward(self.emb.forward(ids), Some(mask.clone()), collect);
        let cls = cls_states(out.hidden).unwrap();
        ModelOutputs::new()
            .with_class_logits(self.head.forward(cls))
            .with_class_labels(batch.labels.clone().to_device(&device))
            .with_pad_mask(mask)
            .with_hidden_states(out.hidden_states)
            .with_attentions(out.attentions)
            .with_values(out.values)
    }
}

struct Batch {
    ids: Tensor<2, Int>,
    mask: Tensor<2, Bool>,
    labels: Tensor<1, Int>,
}

fn batch(device: &Device) -> Batch {
    let ids: Vec<i64> = (0..4 * 6).map(|i| (i * 7 % VOCAB) as i64).collect();
    let mut mask = vec![false; 24];
    mask[10] = true;
    mask[11] = true;
    Batch {
        ids: Tensor::from_data(TensorData::new(ids, [4, 6]), device),
        mask: Tensor::from_data(TensorData::new(mask, [4, 6]), device),
        labels: Tensor::from_ints([0, 2, 1, 2], device),
    }
}

fn tinybert_config() -> DistillConfig {
    DistillConfig::new()
        .with_temperature(Schedule::Constant(2.0))
        .with_hard_weight(Schedule::Constant(0.5))
        .with_matches(vec![
            IntermediateMatch::new(MatchLoss::HiddenMse, LayerMap::Uniform { include_embeddings: true }, 1.0),
            IntermediateMatch::new(MatchLoss::AttentionKl, LayerMap::LastK(1), 1.0),
            IntermediateMatch::new(MatchLoss::PatientKd, LayerMap::Skip { stride: 2 }, 0.5),
            IntermediateMatch::new(MatchLoss::ValueRelation { relation_heads: 4 }, LayerMap::LastK(1), 1.0),
        ])
}

#[test]
fn distiller_trains_an_encoder_student_with_projections() {
    for (name, d) in devices() {
        let ad = d.clone().autodiff();
        d.seed(7);
        let teacher = TinyEncoder::new(32, 4, 4, &d);
        let mut student = TinyEncoder::new(16, 4, 2, &ad);
        let mut distiller =
            Distiller::new(tinybert_config(), ModelShape::new(4, 32, 4), ModelShape::new(2, 16, 4), &ad).unwrap();
        // Uniform with embeddings gives 3 pairs (0→0, 1→2, 2→4), PKD skip 2 (1→2, 2→4): 5
        // projections 16 → 32, none for attention.
        let pairs = distiller.pairs();
        assert_eq!(
            pairs[0].iter().map(|(p, _)| (p.student, p.teacher)).collect::<Vec<_>>(),
            vec![(0, 0), (1, 2), (2, 4)]
        );
        assert_eq!(
            pairs[1].iter().map(|(p, proj)| (p.student, p.teacher, *proj)).collect::<Vec<_>>(),
            vec![(2, 4, None)]
        );
        assert_eq!(distiller.projections().projections.len(), 5);
        assert_eq!(
            distiller.request(),
            OutputRequest { logits: true, hidden_states: true, attentions: true, values: true }
        );
        let before = to_vec(distiller.projections().projections[0].linear.weight.val());
        let b = batch(&d);
        let mut opt = AdamConfig::new().init();
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..25 {
            let losses = {
                let s = &student;
                let t = &teacher;
                distiller
                    .step(
                        &|b: &Batch, r: &OutputRequest| t.outputs(b, r),
                        &|b: &Batch, r: &OutputRequest| s.outputs(b, r),
                        &b,
                        None,
                    )
                    .unwrap()
            };
            let names: Vec<String> = losses.terms.iter().map(|t| t.name.clone()).collect();
            assert_eq!(
                names,
                ["soft_kd", "hard_ce", "hidden_mse[0]", "attention_kl[1]", "patient_kd[2]", "value_relation[3]"]
            );
            let total = scalar(losses.total.clone());
            assert!(total.is_finite());
            first.get_or_insert(total);
            last = total;
            let mut grads = losses.total.backward();
            distiller.update_projections(&mut opt, 1e-2, &mut grads);
            let grads = GradientsParams::from_grads(grads, &student);
            student = opt.step(1e-2, student, grads);
        }
        let first = first.unwrap();
        assert!(last < 0.7 * first, "{name}: loss {first} → {last}");
        assert_eq!(distiller.current_step(), 25);
        let after = to_vec(distiller.projections().projections[0].linear.weight.val());
        assert!(before.iter().zip(&after).any(|(a, b)| (a - b).abs() > 1e-4), "{name}: projections were not trained");
        // Projections of another shape are refused.
        let wrong = DistillProjections { projections: vec![Projection::new(16, 32, &ad)] };
        assert!(matches!(distiller.set_projections(wrong), Err(DistillError::Shape { .. })));
    }
}

#[test]
fn distiller_total_is_the_weighted_sum_of_the_free_losses() {
    let d = ember_testkit::first_device().1;
    let ad = d.clone().autodiff();
    d.seed(3);
    let teacher = TinyEncoder::new(16, 2, 4, &d);
    let student = TinyEncoder::new(16, 2, 2, &ad);
    let config = DistillConfig::new()
        .with_temperature(Schedule::Linear { start: 4.0, end: 1.0, steps: 3 })
        .with_soft_weight(Schedule::Constant(0.7))
        .with_hard_weight(Schedule::Constant(0.3))
        .with_matches(vec![IntermediateMatch::new(MatchLoss::HiddenCosine, LayerMap::LastK(1), 2.0)]);
    let mut distiller = Distiller::new(config, ModelShape::new(4, 16, 2), ModelShape::new(2, 16, 2), &ad).unwrap();
    assert!(distiller.projections().projections.is_empty(), "equal widths need no projection");
    distiller.set_step(1);
    let b = batch(&d);
    let r = distiller.request();
    let s_out = student.outputs(&b, &r);
    let t_out = teacher.outputs(&b, &r).to_device(&ad);
    let losses = distiller.losses(&s_out, TeacherSignal::Outputs(&t_out)).unwrap();
    assert_eq!(losses.temperature, 3.0);
    let mask = b.mask.clone().to_device(&ad);
    let soft =
        soft_target_kd_loss_seq(s_out.logits.clone().unwrap(), t_out.logits.clone().unwrap(), 3.0, None).unwrap();
    let hard =
        hard_label_loss(s_out.logits.clone().unwrap().reshape([4, CLASSES]), b.labels.clone().to_device(&ad)).unwrap();
    let cos = hidden_cosine_loss(s_out.hidden_states[2].clone(), t_out.hidden_states[4].clone(), Some(mask)).unwrap();
    let want = 0.7 * scalar(soft) + 0.3 * scalar(hard) + 2.0 * scalar(cos);
    let got = scalar(losses.total);
    assert!((got - want).abs() < 1e-5 * (1.0 + want.abs()), "{got} vs {want}");
}

#[test]
fn distiller_rejects_bad_configurations_and_outputs() {
    let d = ember_testkit::first_device().1;
    let (t, s) = (ModelShape::new(4, 32, 4), ModelShape::new(2, 16, 2));
    let new = |c: DistillConfig, t: ModelShape, s: ModelShape| Distiller::new(c, t, s, &d);
    let att =
        |l: LayerMap| DistillConfig::new().with_matches(vec![IntermediateMatch::new(MatchLoss::AttentionMse, l, 1.0)]);
    let e = new(att(LayerMap::LastK(1)), t, s).unwrap_err();
    assert!(matches!(e, DistillError::Shape { .. }) && e.to_string().contains("heads"), "{e}");
    assert!(matches!(
        new(att(LayerMap::Custom(vec![(3, 4)])), t, ModelShape::new(2, 16, 4)),
        Err(DistillError::LayerOutOfRange { .. })
    ));
    let never = DistillConfig::new().with_projection(ProjectionMode::Never).with_matches(vec![IntermediateMatch::new(
        MatchLoss::HiddenMse,
        LayerMap::LastK(1),
        1.0,
    )]);
    assert!(matches!(new(never, t, s), Err(DistillError::InvalidConfig { .. })));
    let vr = DistillConfig::new().with_matches(vec![IntermediateMatch::new(
        MatchLoss::ValueRelation { relation_heads: 3 },
        LayerMap::LastK(1),
        1.0,
    )]);
    assert!(matches!(new(vr, t, s), Err(DistillError::InvalidConfig { .. })));
    assert!(matches!(
        new(DistillConfig::new().with_temperature(Schedule::Linear { start: 4.0, end: 0.0, steps: 9 }), t, s),
        Err(DistillError::Temperature(_))
    ));
    assert!(matches!(
        new(DistillConfig::new().with_hard_weight(Schedule::Constant(-1.0)), t, s),
        Err(DistillError::InvalidConfig { .. })
    ));
    let cached = DistillConfig::new()
        .with_cache(Some(CacheConfig { top_k: 4, storage: CacheStorage::Memory }))
        .with_matches(vec![IntermediateMatch::new(MatchLoss::HiddenMse, LayerMap::LastK(1), 1.0)]);
    assert!(matches!(new(cached, t, s), Err(DistillError::InvalidConfig { .. })));

    // Missing outputs and mismatched widths at run time are errors, not panics.
    let ad = d.clone().autodiff();
    let mut distiller = Distiller::new(
        DistillConfig::new().with_matches(vec![IntermediateMatch::new(MatchLoss::HiddenMse, LayerMap::LastK(1), 1.0)]),
        t,
        s,
        &ad,
    )
    .unwrap();
    let logits = |seed| ModelOutputs::new().with_class_logits(rand::<2>(seed, [2, 3], 1.0, &ad));
    let teacher_out = logits(1).with_hidden_states(vec![rand::<3>(2, [2, 5, 32], 1.0, &ad); 5]);
    let e = distiller
        .step(&|_: &(), _: &OutputRequest| teacher_out.clone(), &|_: &(), _: &OutputRequest| logits(3), &(), None)
        .unwrap_err();
    assert!(matches!(e, DistillError::MissingOutput(_)) && e.to_string().contains("hidden state 2"), "{e}");
    let wrong = logits(3).with_hidden_states(vec![rand::<3>(2, [2, 5, 8], 1.0, &ad); 3]);
    let e = distiller
        .step(&|_: &(), _: &OutputRequest| teacher_out.clone(), &|_: &(), _: &OutputRequest| wrong.clone(), &(), None)
        .unwrap_err();
    assert!(matches!(e, DistillError::Shape { .. }), "{e}");
    let bigger = ModelOutputs::new().with_class_logits(rand::<2>(4, [2, 5], 1.0, &ad)).with_hidden_states(vec![
        rand::<3>(
            2,
            [2, 5, 32],
            1.0,
            &ad
        );
        5
    ]);
    let ok_student = logits(3).with_hidden_states(vec![rand::<3>(2, [2, 5, 16], 1.0, &ad); 3]);
    let e = distiller
        .step(&|_: &(), _: &OutputRequest| bigger.clone(), &|_: &(), _: &OutputRequest| ok_student.clone(), &(), None)
        .unwrap_err();
    assert!(matches!(e, DistillError::VocabMismatch { teacher: 5, student: 3 }), "{e}");
}

/// Host reference of the full-logit loss and of the bound for the cached one at T = 1.
fn full_and_bound(s: &[f32], t: &[f32], v: usize, k: usize) -> (f64, f64) {
    let (mut full, mut bound) = (0.0, 0.0);
    let rows = s.len() / v;
    for r in 0..rows {
        let sr: Vec<f64> = s[r * v..(r + 1) * v].iter().map(|&x| x as f64).collect();
        let tr: Vec<f64> = t[r * v..(r + 1) * v].iter().map(|&x| x as f64).collect();
        let q = softmax_rows(&sr, v, 1.0);
        let p = softmax_rows(&tr, v, 1.0);
        full += p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>();
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|a, b| tr[*b].total_cmp(&tr[*a]));
        let tail = &order[k..];
        let eps: f64 = tail.iter().map(|&i| p[i]).sum();
        let q_tail: f64 = tail.iter().map(|&i| q[i]).sum();
        let min_log_q = tail.iter().map(|&i| q[i].ln()).fold(f64::MAX, f64::min);
        bound += eps * (q_tail.ln() - min_log_q);
    }
    (full / rows as f64, bound / rows as f64)
}

#[test]
fn cached_top_k_loss_equals_full_at_k_v_and_stays_within_the_bound_at_k_32() {
    for (name, d) in devices() {
        let (b, s, v) = (2, 3, 512);
        let student: Vec<f32> = lcg(61, b * s * v).iter().map(|x| x * 3.0).collect();
        // An LM-like teacher: Zipf-shaped logits (log-rank decay) plus noise, shuffled per row.
        let mut teacher = vec![0f32; b * s * v];
        let noise = lcg(62, b * s * v);
        for r in 0..b * s {
            for j in 0..v {
                let slot = (j * 97 + r * 13) % v;
                teacher[r * v + slot] = -1.5 * ((j + 1) as f32).ln() * 2.0 + 0.3 * noise[r * v + j];
            }
        }
        let st = tensor(student.clone(), [b, s, v], &d);
        let tt = tensor(teacher.clone(), [b, s, v], &d);
        for temp in [1.0, 4.0] {
            let full = scalar(soft_target_kd_loss_seq(st.clone(), tt.clone(), temp, None).unwrap());
            let all = TopKLogits::from_logits(tt.clone(), v).unwrap();
            let got = scalar(all.kd_loss(st.clone(), temp, true, None).unwrap());
            assert!((got - full).abs() <= 1e-4 * full.abs().max(1.0), "{name}: k = V at T = {temp}: {got} vs {full}");
        }
        let top = TopKLogits::from_logits(tt.clone(), 32).unwrap();
        let eps = top.tail_mass(1.0);
        assert!(eps.iter().all(|e| *e > 0.0 && *e < 0.2), "{name}: tail masses {eps:?}");
        let cached = scalar(top.kd_loss(st.clone(), 1.0, true, None).unwrap());
        let (full_ref, bound) = full_and_bound(&student, &teacher, v, 32);
        let full = scalar(soft_target_kd_loss_seq(st, tt, 1.0, None).unwrap());
        assert!((full - full_ref).abs() < 1e-3 * full_ref, "{name}: {full} vs reference {full_ref}");
        let gap = full - cached;
        assert!(gap >= -1e-4 && gap <= bound + 1e-4, "{name}: full {full}, cached {cached}, gap {gap}, bound {bound}");
        assert!(top.bytes() == b * s * (8 * 32 + 4));
    }
}

#[test]
fn distiller_cache_skips_the_teacher_on_later_epochs() {
    for storage in ["memory", "disk"] {
        let d = ember_testkit::first_device().1;
        let ad = d.clone().autodiff();
        let path = std::env::temp_dir().join(format!("ember-distill-cache-{}-{storage}.bin", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = if storage == "memory" { CacheStorage::Memory } else { CacheStorage::Disk(path.clone()) };
        let config = DistillConfig::new()
            .with_temperature(Schedule::Constant(2.0))
            .with_cache(Some(CacheConfig { top_k: 3, storage: store }));
        let mut distiller = Distiller::new(config, ModelShape::logits_only(), ModelShape::logits_only(), &ad).unwrap();
        let calls = Cell::new(0);
        let t_logits = rand::<2>(71, [4, 6], 3.0, &d);
        let s_logits = rand::<2>(72, [4, 6], 3.0, &ad);
        let teacher = |_: &(), _: &OutputRequest| {
            calls.set(calls.get() + 1);
            ModelOutputs::new().with_class_logits(t_logits.clone())
        };
        let student = |_: &(), _: &OutputRequest| ModelOutputs::new().with_class_logits(s_logits.clone());
        let first = distiller.step(&teacher, &student, &(), Some(5)).unwrap();
        let second = distiller.step(&teacher, &student, &(), Some(5)).unwrap();
        assert_eq!(calls.get(), 1, "{storage}: the teacher ran again for a cached batch");
        assert!(!first.from_cache && second.from_cache);
        // Top 3 of 6 classes: the loss is the cached one (k + 1 buckets), the same both times.
        let entry = TopKLogits::from_logits(t_logits.clone().reshape([4, 1, 6]), 3).unwrap();
        let want = scalar(entry.kd_loss(s_logits.clone().reshape([4, 1, 6]), 2.0, true, None).unwrap());
        for l in [first, second] {
            let got = scalar(l.total);
            assert!((got - want).abs() < 1e-6, "{storage}: got {got}, want {want}");
        }
        // Another key runs the teacher; no key never caches.
        distiller.step(&teacher, &student, &(), Some(6)).unwrap();
        distiller.step(&teacher, &student, &(), None).unwrap();
        assert_eq!(calls.get(), 3);
        assert_eq!(distiller.cache().unwrap().len(), 2);
        if storage == "disk" {
            // A new run reopens the file and reuses it; the wrong k is refused.
            let mut reopened = TeacherCache::new(3, &CacheStorage::Disk(path.clone())).unwrap();
            assert_eq!(reopened.len(), 2);
            let e = reopened.get(5).unwrap().unwrap();
            assert_eq!(e, entry, "values, indices and tail log-sum-exp survive the round trip");
            assert!(e.tail_lse().iter().all(|t| t.is_finite()));
            assert!(matches!(TeacherCache::new(4, &CacheStorage::Disk(path.clone())), Err(DistillError::Cache(_))));
            // A flipped byte in a tail value is caught when read.
            let mut bytes = std::fs::read(&path).unwrap();
            let first_tail = 8 + 40 + 4 * 3 * 8; // magic, header, values + indices of 4 rows × 3
            bytes[first_tail..first_tail + 4].copy_from_slice(&f32::NAN.to_le_bytes());
            std::fs::write(&path, &bytes).unwrap();
            let mut corrupt = TeacherCache::new(3, &CacheStorage::Disk(path.clone())).unwrap();
            let r = corrupt.get(5);
            assert!(matches!(r, Err(DistillError::Cache(_))), "{r:?}");
            // Truncation and foreign files are detected.
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
            let e = TeacherCache::new(3, &CacheStorage::Disk(path.clone())).unwrap_err();
            assert!(e.to_string().contains("truncated"), "{e}");
            std::fs::write(&path, b"not a cache file").unwrap();
            assert!(matches!(TeacherCache::new(3, &CacheStorage::Disk(path.clone())), Err(DistillError::Cache(_))));
            let _ = std::fs::remove_file(&path);
        }
    }
}
