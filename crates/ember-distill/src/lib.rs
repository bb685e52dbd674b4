#![doc = include_str!("../GUIDE.md")]

pub mod adaptor;
pub mod cache;
pub mod distiller;
pub mod error;
pub mod intermediate;
pub mod kd;
pub mod layer_map;
pub mod schedule;

pub use adaptor::{Distillable, ModelOutputs, OutputRequest};
pub use cache::{CacheStorage, TeacherCache, TopKLogits};
pub use distiller::{
    CacheConfig, DistillConfig, DistillLosses, DistillProjections, Distiller, IntermediateMatch, LossTerm, MatchLoss,
    ModelShape, ProjectionMode, TeacherSignal,
};
pub use error::{DistillError, Result};
pub use intermediate::{
    Projection, attention_kl_loss, attention_mse_loss, cls_states, hidden_cosine_loss, hidden_mse_loss, log_relation,
    patient_kd_loss, split_heads, value_relation_loss,
};
pub use kd::{
    KdLoss, KdLossConfig, check_finite, check_temperature, hard_label_loss, hard_label_loss_seq, soft_target_kd_loss,
    soft_target_kd_loss_seq,
};
pub use layer_map::{LayerMap, LayerPair};
pub use schedule::Schedule;
