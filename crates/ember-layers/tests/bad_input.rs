//! Bad-input catalogue: one malformed configuration or input per test (head counts that do not
//! divide the width, impossible factorizations and sharing groups, inputs that do not fit the
//! layer), each rejected with the exact [`LayerError`] variant and a message that says what was
//! wrong and what was expected.

use burn::tensor::{Bool, Device, Int, Tensor};
use ember_layers::*;

#[test]
fn bad_input_head_count_does_not_divide_the_width() {
    let e = AttentionConfig::new(30, 4).init(&Device::flex()).unwrap_err();
    assert!(matches!(e, LayerError::InvalidConfig { what: "n_heads", .. }), "{e}");
    assert!(e.to_string().contains("invalid `n_heads` = 4: a divisor of d_model = 30"), "{e}");
}

#[test]
fn bad_input_zero_heads() {
    let e = AttentionConfig::new(32, 0).head_dim().unwrap_err();
    assert!(matches!(e, LayerError::InvalidConfig { what: "n_heads", .. }), "{e}");
    assert!(e.to_string().contains("invalid `n_heads` = 0: at least one head"), "{e}");
}

#[test]
fn bad_input_encoder_heads_do_not_divide_the_width() {
    let e = EncoderConfig::new(32, 5, 64, 2).init(&Device::flex()).unwrap_err();
    assert!(matches!(e, LayerError::InvalidConfig { what: "n_heads", .. }), "{e}");
    assert!(e.to_string().contains("a divisor of d_model = 32"), "{e}");
}

#[test]
fn bad_input_sharing_groups_do_not_divide_the_layers() {
    let e = EncoderConfig::new(32, 4, 64, 6).with_sharing(SharingMode::All).with_n_groups(4).validate().unwrap_err();
    assert!(matches!(e, LayerError::InvalidConfig { what: "n_groups", .. }), "{e}");
    assert!(e.to_string().contains("invalid `n_groups` = 4: a positive divisor of n_layers = 6"), "{e}");
}

#[test]
fn bad_input_embedding_size_larger_than_the_vocabulary() {
    let e = FactorizedEmbeddingConfig::new(100, 128, 256).init(&Device::flex()).unwrap_err();
    assert!(matches!(e, LayerError::InvalidConfig { what: "embedding_size", .. }), "{e}");
    assert!(e.to_string().contains("at most vocab_size = 100"), "{e}");
}

#[test]
fn bad_input_factorization_without_projection() {
    let e = FactorizedEmbeddingConfig::new(100, 16, 32).with_projection(false).validate().unwrap_err();
    assert!(matches!(e, LayerError::InvalidConfig { what: "projection", .. }), "{e}");
    assert!(e.to_string().contains("a projection when embedding_size 16 ≠ hidden_size 32"), "{e}");
}

#[test]
fn bad_input_attention_input_of_the_wrong_width() {
    let d = Device::flex();
    let att = AttentionConfig::new(8, 2).init(&d).unwrap();
    let e = att.try_forward(Tensor::<3>::zeros([1, 3, 6], &d), &AttentionMask::none(1, 3)).unwrap_err();
    assert!(matches!(&e, LayerError::Shape { what, .. } if what == "input"), "{e}");
    assert!(e.to_string().contains("expected [batch, seq, 8], got [1, 3, 6]"), "{e}");
}

#[test]
fn bad_input_padding_mask_of_the_wrong_shape() {
    let d = Device::flex();
    let enc = EncoderConfig::new(8, 2, 16, 1).init(&d).unwrap();
    let mask = Tensor::<2, Bool>::full([1, 4], false, &d);
    let e = enc.try_forward(Tensor::<3>::zeros([1, 3, 8], &d), Some(mask), false).unwrap_err();
    assert!(matches!(&e, LayerError::Shape { what, .. } if what == "pad_mask"), "{e}");
    assert!(e.to_string().contains("expected [1, 3] (true = padding), got [1, 4]"), "{e}");
}

#[test]
fn bad_input_sequence_longer_than_the_position_table() {
    let d = Device::flex();
    let emb = FactorizedEmbeddingConfig::new(20, 4, 8).with_max_positions(3).init(&d).unwrap();
    let e = emb.forward(Tensor::<2, Int>::zeros([1, 5], &d), None).unwrap_err();
    assert!(matches!(&e, LayerError::Shape { what, .. } if what == "ids"), "{e}");
    assert!(e.to_string().contains("expected at most 3 positions, got 5"), "{e}");
}

#[test]
fn bad_input_token_types_of_the_wrong_shape() {
    let d = Device::flex();
    let emb = FactorizedEmbeddingConfig::new(20, 4, 8).init(&d).unwrap();
    let e = emb.forward(Tensor::<2, Int>::zeros([1, 3], &d), Some(Tensor::<2, Int>::zeros([1, 2], &d))).unwrap_err();
    assert!(matches!(&e, LayerError::Shape { what, .. } if what == "token_types"), "{e}");
    assert!(e.to_string().contains("expected [1, 3], got [1, 2]"), "{e}");
}

#[test]
fn bad_input_token_id_outside_the_vocabulary() {
    let d = Device::flex();
    let emb = FactorizedEmbeddingConfig::new(20, 4, 8).init(&d).unwrap();
    let e = emb.forward(Tensor::<2, Int>::from_ints([[1, 25]], &d), None).unwrap_err();
    assert!(matches!(&e, LayerError::Input { what, .. } if what == "ids"), "{e}");
    assert!(e.to_string().contains("id 25 is outside the embedding table's range 0..20"), "{e}");
}

#[test]
fn bad_input_negative_token_type() {
    let d = Device::flex();
    let emb = FactorizedEmbeddingConfig::new(20, 4, 8).init(&d).unwrap();
    let types = Tensor::<2, Int>::from_ints([[0, -1]], &d);
    let e = emb.forward(Tensor::<2, Int>::from_ints([[1, 2]], &d), Some(types)).unwrap_err();
    assert!(matches!(&e, LayerError::Input { what, .. } if what == "token_types"), "{e}");
    assert!(e.to_string().contains("id -1 is outside the embedding table's range 0..2"), "{e}");
}
