//! Bad-input catalogue: one malformed setting or input per test (sparsity outside `[0, 1)`,
//! impossible N:M patterns, non-finite weights, mis-sized criteria data and keep-masks), each
//! rejected with the exact [`PruneError`] variant and a message that says what was wrong and what
//! was expected.

use std::collections::HashMap;

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use ember_prune::mask::{n_m, unstructured};
use ember_prune::{
    Criterion, CubicSchedule, Granularity, PruneConfig, PruneError, Pruner, Removal, channel_importance, keep_top,
    removal_masks, unit_scores,
};

fn linear(d_in: usize, d_out: usize) -> Linear {
    let device = Device::flex();
    device.seed(5);
    LinearConfig::new(d_in, d_out).init(&device)
}

fn pruner_error(config: PruneConfig) -> PruneError {
    Pruner::new(config).unwrap_err()
}

#[test]
fn bad_input_sparsity_of_one() {
    let e = pruner_error(PruneConfig::new(1.0));
    assert_eq!(e, PruneError::Sparsity(1.0));
    assert!(e.to_string().contains("sparsity must be in [0, 1) (the fraction of weights removed), got 1"), "{e}");
}

#[test]
fn bad_input_sparsity_negative() {
    let e = unstructured(&[1.0, 2.0], -0.1).unwrap_err();
    assert_eq!(e, PruneError::Sparsity(-0.1));
    assert!(e.to_string().contains("must be in [0, 1)") && e.to_string().contains("got -0.1"), "{e}");
}

#[test]
fn bad_input_sparsity_nan() {
    let e = pruner_error(PruneConfig::new(f64::NAN));
    assert!(matches!(e, PruneError::Sparsity(s) if s.is_nan()), "{e}");
    assert!(e.to_string().contains("must be in [0, 1)") && e.to_string().contains("got NaN"), "{e}");
}

#[test]
fn bad_input_schedule_final_sparsity_above_one() {
    let e = CubicSchedule::new(0.0, 1.2, 0, 100, 10).unwrap_err();
    assert_eq!(e, PruneError::Sparsity(1.2));
    assert!(e.to_string().contains("must be in [0, 1)"), "{e}");
}

#[test]
fn bad_input_n_equal_to_m() {
    let e = pruner_error(PruneConfig::new(0.0).with_granularity(Granularity::NM { n: 4, m: 4 }));
    assert!(matches!(e, PruneError::NM { n: 4, m: 4, .. }), "{e}");
    assert!(e.to_string().contains("invalid 4:4 sparsity") && e.to_string().contains("keep 0 < N < M"), "{e}");
}

#[test]
fn bad_input_n_greater_than_m() {
    let e = n_m(&[1.0; 16], 8, 2, 5, 4).unwrap_err();
    assert!(matches!(e, PruneError::NM { n: 5, m: 4, dim: 8, .. }), "{e}");
    assert!(e.to_string().contains("invalid 5:4 sparsity for a dimension of 8: keep 0 < N < M"), "{e}");
}

#[test]
fn bad_input_n_zero() {
    let e = pruner_error(PruneConfig::new(0.0).with_granularity(Granularity::NM { n: 0, m: 4 }));
    assert!(matches!(e, PruneError::NM { n: 0, m: 4, .. }), "{e}");
    assert!(e.to_string().contains("keep 0 < N < M weights of every group of M"), "{e}");
}

#[test]
fn bad_input_m_does_not_divide_the_input_dimension() {
    let pruner = Pruner::new(PruneConfig::new(0.0).with_granularity(Granularity::NM { n: 2, m: 4 })).unwrap();
    let e = pruner.prune(linear(6, 4)).unwrap_err();
    assert!(matches!(e, PruneError::NM { n: 2, m: 4, dim: 6, .. }), "{e}");
    assert!(e.to_string().contains("M must divide the input dimension (weight weight)"), "{e}");
}

#[test]
fn bad_input_nan_weight() {
    let mut l = linear(4, 2);
    let device = Device::flex();
    l.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![0.1, 0.2, f32::NAN, 0.4, 0.5, 0.6, 0.7, 0.8], [4, 2]),
        &device,
    ));
    let e = Pruner::new(PruneConfig::new(0.5)).unwrap().prune(l).unwrap_err();
    assert_eq!(e, PruneError::NonFinite("weight weight".into()));
    assert!(e.to_string().contains("weight weight contains NaN or infinite values; pruning needs finite"), "{e}");
}

#[test]
fn bad_input_nan_scores() {
    let e = unstructured(&[1.0, f32::NAN, 0.5], 0.5).unwrap_err();
    assert_eq!(e, PruneError::NonFinite("scores".into()));
    assert!(e.to_string().contains("scores contains NaN"), "{e}");
}

#[test]
fn bad_input_selection_matches_nothing() {
    let pruner = Pruner::new(PruneConfig::new(0.5).with_include(vec!["encoder.*".into()])).unwrap();
    let e = pruner.prune(linear(4, 2)).unwrap_err();
    assert!(matches!(e, PruneError::EmptySelection(_)), "{e}");
    assert!(e.to_string().contains("matched no prunable parameter") && e.to_string().contains("encoder.*"), "{e}");
}

#[test]
fn bad_input_wanda_norms_of_the_wrong_length() {
    let norms = HashMap::from([("weight".to_string(), vec![1.0; 3])]);
    let pruner = Pruner::new(PruneConfig::new(0.5).with_criterion(Criterion::Wanda)).unwrap().with_input_norms(norms);
    let e = pruner.prune(linear(4, 2)).unwrap_err();
    assert!(matches!(&e, PruneError::Shape { what, .. } if what == "Wanda input norms of weight"), "{e}");
    assert!(e.to_string().contains("expected 4 (the weight's input dimension), got 3"), "{e}");
}

#[test]
fn bad_input_wanda_without_norms() {
    let pruner = Pruner::new(PruneConfig::new(0.5).with_criterion(Criterion::Wanda)).unwrap();
    let e = pruner.prune(linear(4, 2)).unwrap_err();
    assert!(matches!(&e, PruneError::InvalidConfig { what, .. } if what == "Wanda input norms"), "{e}");
    assert!(e.to_string().contains("with_input_norms() with an entry per selected weight path"), "{e}");
}

#[test]
fn bad_input_keep_nothing_or_more_than_there_is() {
    let e = keep_top(&[1.0, 2.0, 3.0], 0).unwrap_err();
    assert!(matches!(&e, PruneError::InvalidConfig { what, .. } if what == "units to keep"), "{e}");
    assert!(e.to_string().contains("1..=3"), "{e}");
    let e = keep_top(&[1.0, 2.0, 3.0], 4).unwrap_err();
    assert!(e.to_string().contains("invalid units to keep = 4"), "{e}");
    assert_eq!(keep_top(&[1.0, f32::NAN], 1).unwrap_err(), PruneError::NonFinite("scores".into()));
}

#[test]
fn bad_input_channel_norms_of_the_wrong_length() {
    let e = channel_importance(&[1.0; 6], 3, 2, Some(&[1.0, 1.0])).unwrap_err();
    assert!(matches!(&e, PruneError::Shape { what, .. } if what == "input-channel norms"), "{e}");
    assert!(e.to_string().contains("expected 3 (the weight's input features), got 2"), "{e}");
    let e = channel_importance(&[1.0; 5], 3, 2, None).unwrap_err();
    assert!(e.to_string().contains("expected 6 values ([3, 2]), got 5"), "{e}");
    let e = channel_importance(&[1.0, f32::INFINITY, 0.0, 0.0, 0.0, 0.0], 3, 2, None).unwrap_err();
    assert_eq!(e, PruneError::NonFinite("weight".into()));
}

#[test]
fn bad_input_unit_width_that_does_not_divide_the_channels() {
    let e = unit_scores(&[1.0; 6], 4).unwrap_err();
    assert!(e.to_string().contains("a positive divisor of the 6 channels, got 4"), "{e}");
    assert!(unit_scores(&[1.0; 6], 0).is_err());
}

#[test]
fn bad_input_removal_of_weights_that_do_not_exist_or_do_not_chain() {
    #[derive(burn::module::Module, Debug)]
    struct Pair {
        a: Linear,
        b: Linear,
    }
    let pair = Pair { a: linear(4, 6), b: linear(6, 2) };
    let removal = |outputs: &str, inputs: &str, keep: Vec<usize>| Removal {
        outputs_of: vec![outputs.into()],
        inputs_of: vec![inputs.into()],
        unit_width: 1,
        keep,
    };
    let e = removal_masks(&pair, &[removal("c.weight", "b.weight", vec![0])]).unwrap_err();
    assert!(e.to_string().contains("removal weight path = c.weight"), "{e}");
    // `a` outputs 6 channels, `a` read as the next layer has 4 inputs.
    let e = removal_masks(&pair, &[removal("a.weight", "a.weight", vec![0])]).unwrap_err();
    assert!(matches!(&e, PruneError::Shape { .. }) && e.to_string().contains("expected 6, got 4"), "{e}");
    let e = removal_masks(&pair, &[removal("a.weight", "b.weight", vec![2, 1])]).unwrap_err();
    assert!(e.to_string().contains("ascending, unique indices below 6"), "{e}");
    let e = removal_masks(&pair, &[removal("a.weight", "b.weight", vec![6])]).unwrap_err();
    assert!(e.to_string().contains("units to keep = [6]"), "{e}");
}

#[test]
fn bad_input_selection_pattern_that_is_not_a_regular_expression() {
    let e = pruner_error(PruneConfig::new(0.5).with_exclude(vec!["*".into()]));
    assert!(matches!(&e, PruneError::InvalidConfig { what, .. } if what == "exclude"), "{e}");
    assert!(e.to_string().contains("a regular expression searched in weight paths"), "{e}");
}
