//! Bad-input catalogue: one malformed input per test (non-finite logits, teacher/student shape
//! mismatches, invalid temperatures and weights, layer maps outside the models), each rejected
//! with the exact [`DistillError`] variant and a message that says what was wrong and what was
//! expected.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use ember_distill::{
    DistillConfig, DistillError, Distiller, IntermediateMatch, KdLossConfig, LayerMap, MatchLoss, ModelShape,
    ProjectionMode, TopKLogits, attention_kl_loss, hard_label_loss, hidden_mse_loss, soft_target_kd_loss,
    soft_target_kd_loss_seq, value_relation_loss,
};

fn tensor<const D: usize>(values: Vec<f32>, dims: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, dims), &Device::flex())
}

/// Deterministic values in [-1, 1).
fn rand<const D: usize>(seed: u64, dims: [usize; D]) -> Tensor<D> {
    let n: usize = dims.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    tensor(v, dims)
}

fn distiller(config: DistillConfig, teacher: ModelShape, student: ModelShape) -> DistillError {
    Distiller::new(config, teacher, student, &Device::flex()).unwrap_err()
}

#[test]
fn bad_input_kd_teacher_logits_with_nan() {
    let teacher = tensor(vec![0.0, f32::NAN, 1.0, 0.0, 0.0, 0.0], [2, 3]);
    let e = soft_target_kd_loss(rand(1, [2, 3]), teacher, 2.0).unwrap_err();
    assert!(matches!(&e, DistillError::NonFinite { what } if what == "teacher logits"), "{e}");
    assert!(
        e.to_string().contains("teacher logits contains NaN or infinite values; distillation needs finite numbers"),
        "{e}"
    );
}

#[test]
fn bad_input_kd_student_logits_with_infinity() {
    let student = tensor(vec![0.0, 1.0, f32::INFINITY, 0.0, 0.0, 0.0], [2, 3]);
    let e = soft_target_kd_loss(student, rand(2, [2, 3]), 1.0).unwrap_err();
    assert!(matches!(&e, DistillError::NonFinite { what } if what == "student logits"), "{e}");
    assert!(e.to_string().contains("student logits contains NaN or infinite values"), "{e}");
}

#[test]
fn bad_input_kd_sequence_logits_with_nan() {
    let mut v = vec![0.5f32; 2 * 3 * 4];
    v[17] = f32::NAN;
    let e = soft_target_kd_loss_seq(rand(3, [2, 3, 4]), tensor(v, [2, 3, 4]), 1.0, None).unwrap_err();
    assert!(matches!(&e, DistillError::NonFinite { what } if what == "teacher logits"), "{e}");
    assert!(e.to_string().contains("NaN or infinite"), "{e}");
}

#[test]
fn bad_input_kd_teacher_and_student_vocabularies_differ() {
    let e = soft_target_kd_loss(rand(1, [2, 3]), rand(2, [2, 4]), 1.0).unwrap_err();
    assert!(matches!(e, DistillError::VocabMismatch { teacher: 4, student: 3 }), "{e}");
    assert!(e.to_string().contains("the teacher has 4 classes, the student 3"), "{e}");
}

#[test]
fn bad_input_kd_teacher_and_student_batches_differ() {
    let e = soft_target_kd_loss(rand(1, [2, 3]), rand(2, [3, 3]), 1.0).unwrap_err();
    assert!(matches!(&e, DistillError::Shape { what, .. } if what == "teacher logits"), "{e}");
    assert!(e.to_string().contains("expected the student's shape [2, 3], got [3, 3]"), "{e}");
}

#[test]
fn bad_input_kd_logits_without_classes() {
    let e =
        soft_target_kd_loss(Tensor::<2>::zeros([2, 0], &Device::flex()), Tensor::zeros([2, 0], &Device::flex()), 1.0)
            .unwrap_err();
    assert!(matches!(&e, DistillError::Shape { what, .. } if what == "logits"), "{e}");
    assert!(e.to_string().contains("expected at least one class"), "{e}");
}

#[test]
fn bad_input_hidden_states_teacher_and_student_widths_differ() {
    let e = hidden_mse_loss(rand(1, [1, 2, 3]), rand(2, [1, 2, 4]), None).unwrap_err();
    assert!(matches!(e, DistillError::Shape { .. }), "{e}");
    assert!(e.to_string().contains("[1, 2, 4]") && e.to_string().contains("expected"), "{e}");
}

#[test]
fn bad_input_attention_maps_with_different_head_counts() {
    let e = attention_kl_loss(rand(1, [1, 2, 3, 3]), rand(2, [1, 4, 3, 3]), None).unwrap_err();
    assert!(matches!(e, DistillError::Shape { .. }), "{e}");
    assert!(e.to_string().contains("heads"), "{e}");
}

#[test]
fn bad_input_padding_mask_of_the_wrong_shape() {
    let mask = Tensor::<2, Bool>::full([1, 3], false, &Device::flex());
    let e = hidden_mse_loss(rand(1, [1, 2, 3]), rand(2, [1, 2, 3]), Some(mask)).unwrap_err();
    assert!(matches!(&e, DistillError::Shape { what, .. } if what == "pad_mask"), "{e}");
    assert!(e.to_string().contains("expected [1, 2]") && e.to_string().contains("got [1, 3]"), "{e}");
}

#[test]
fn bad_input_temperature_zero() {
    let e = soft_target_kd_loss(rand(1, [2, 3]), rand(2, [2, 3]), 0.0).unwrap_err();
    assert!(matches!(e, DistillError::Temperature(t) if t == 0.0), "{e}");
    assert_eq!(e.to_string(), "temperature must be finite and > 0, got 0");
}

#[test]
fn bad_input_temperature_negative() {
    let e = KdLossConfig::new().with_temperature(-2.0).init().unwrap_err();
    assert!(matches!(e, DistillError::Temperature(t) if t == -2.0), "{e}");
    assert!(e.to_string().contains("finite and > 0, got -2"), "{e}");
}

#[test]
fn bad_input_temperature_nan() {
    let e = soft_target_kd_loss(rand(1, [2, 3]), rand(2, [2, 3]), f64::NAN).unwrap_err();
    assert!(matches!(e, DistillError::Temperature(t) if t.is_nan()), "{e}");
    assert!(e.to_string().contains("finite and > 0, got NaN"), "{e}");
}

#[test]
fn bad_input_alpha_outside_zero_one() {
    let e = KdLossConfig::new().with_alpha(1.5).init().unwrap_err();
    assert!(matches!(&e, DistillError::InvalidConfig { what, .. } if what == "alpha"), "{e}");
    assert!(e.to_string().contains("invalid alpha = 1.5: a weight in [0, 1]"), "{e}");
}

#[test]
fn bad_input_hard_label_outside_the_classes() {
    let labels = Tensor::<1, Int>::from_ints([0, 3], &Device::flex());
    let e = hard_label_loss(rand(1, [2, 3]), labels).unwrap_err();
    assert!(matches!(&e, DistillError::InvalidConfig { what, .. } if what == "labels"), "{e}");
    assert!(e.to_string().contains("class indices in [0, 3)"), "{e}");
}

#[test]
fn bad_input_layer_map_student_layer_out_of_range() {
    let config = DistillConfig::new().with_matches(vec![IntermediateMatch::new(
        MatchLoss::HiddenMse,
        LayerMap::Custom(vec![(5, 2)]),
        1.0,
    )]);
    let e = distiller(config, ModelShape::new(4, 8, 2), ModelShape::new(2, 8, 2));
    assert!(matches!(e, DistillError::LayerOutOfRange { student: 5, teacher: 2, .. }), "{e}");
    assert!(e.to_string().contains("out of range: the student has blocks 1..=2"), "{e}");
}

#[test]
fn bad_input_layer_map_teacher_layer_out_of_range() {
    let e = LayerMap::Skip { stride: 3 }.resolve(2, 4, true).unwrap_err();
    assert!(matches!(e, DistillError::LayerOutOfRange { student: 2, teacher: 6, .. }), "{e}");
    assert!(e.to_string().contains("the teacher has blocks 1..=4"), "{e}");
}

#[test]
fn bad_input_layer_map_embeddings_for_attention() {
    let e = LayerMap::Custom(vec![(0, 0)]).resolve(2, 4, false).unwrap_err();
    assert!(matches!(e, DistillError::LayerOutOfRange { student: 0, teacher: 0, .. }), "{e}");
    assert!(e.to_string().contains("index 0 (embeddings) has no attention maps"), "{e}");
}

#[test]
fn bad_input_attention_match_between_different_head_counts() {
    let config = DistillConfig::new().with_matches(vec![IntermediateMatch::new(
        MatchLoss::AttentionKl,
        LayerMap::LastK(1),
        1.0,
    )]);
    let e = distiller(config, ModelShape::new(4, 8, 4), ModelShape::new(2, 8, 2));
    assert!(matches!(e, DistillError::Shape { .. }), "{e}");
    assert!(e.to_string().contains("expected 2 heads like the student, got 4 heads"), "{e}");
}

#[test]
fn bad_input_widths_differ_without_projection() {
    let config = DistillConfig::new()
        .with_projection(ProjectionMode::Never)
        .with_matches(vec![IntermediateMatch::new(MatchLoss::HiddenMse, LayerMap::LastK(1), 1.0)]);
    let e = distiller(config, ModelShape::new(4, 16, 2), ModelShape::new(2, 8, 2));
    assert!(matches!(e, DistillError::InvalidConfig { .. }), "{e}");
    assert!(e.to_string().contains("student width 8 vs teacher width 16: equal widths"), "{e}");
}

#[test]
fn bad_input_relation_heads_do_not_divide_the_width() {
    let config = DistillConfig::new().with_matches(vec![IntermediateMatch::new(
        MatchLoss::ValueRelation { relation_heads: 3 },
        LayerMap::LastK(1),
        1.0,
    )]);
    let e = distiller(config, ModelShape::new(4, 8, 2), ModelShape::new(2, 8, 2));
    assert!(matches!(&e, DistillError::InvalidConfig { what, .. } if what.contains("relation_heads")), "{e}");
    assert!(e.to_string().contains("a positive divisor of the student's value width 8"), "{e}");
}

#[test]
fn bad_input_cached_teacher_logits_with_infinity() {
    let e = TopKLogits::from_host(&[0.0, f32::INFINITY, 0.0], 1, 1, 3, 2).unwrap_err();
    assert!(matches!(e, DistillError::NonFinite { .. }), "{e}");
    assert!(e.to_string().contains("NaN or infinite"), "{e}");
}

#[test]
fn bad_input_value_relation_heads_do_not_divide_the_value_width() {
    let e = value_relation_loss(rand(1, [1, 2, 6]), rand(2, [1, 2, 8]), 4, None).unwrap_err();
    assert!(matches!(&e, DistillError::InvalidConfig { what, .. } if what == "relation_heads"), "{e}");
    assert!(e.to_string().contains("invalid relation_heads = 4: a positive divisor of the width 6"), "{e}");
}

#[test]
fn bad_input_cache_top_k_larger_than_the_vocabulary() {
    let e = TopKLogits::from_host(&[0.0; 6], 1, 2, 3, 4).unwrap_err();
    assert!(matches!(&e, DistillError::InvalidConfig { what, .. } if what == "top-k"), "{e}");
    assert!(e.to_string().contains("invalid top-k = 4: 1..=3 (the vocabulary)"), "{e}");
}
