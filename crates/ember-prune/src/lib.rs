//! # ember-prune: pruning masks for Burn models
//!
//! Score the weights of any Burn model (magnitude, random, Wanda, movement), choose what to
//! remove (unstructured, N:M, whole neurons; per layer or one global threshold), and attach
//! masks that stay applied while you fine-tune: masked entries read as zero and get zero
//! gradient, because masks are Burn reparameterizations.
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::tensor::Device;
//! use ember_prune::{Granularity, PruneConfig, Pruner, mask::is_n_m};
//!
//! let device = Device::flex();
//! let layer: Linear = LinearConfig::new(16, 8).init(&device);
//! // 2:4 along the input dimension (NVIDIA's sparse tensor-core pattern).
//! let config = PruneConfig::new(0.0).with_granularity(Granularity::NM { n: 2, m: 4 });
//! let (layer, report) = Pruner::new(config).unwrap().prune(layer).unwrap();
//! let w = layer.weight.val().into_data().convert::<f32>().to_vec::<f32>().unwrap();
//! assert!(is_n_m(&w, 16, 8, 2, 4));
//! assert_eq!(report.sparsity(), 0.5);
//! ```
//!
//! ## Modules
//! - [`mask`] — mask selection on host scores (exact counts, global threshold, N:M, neurons).
//! - [`prune`] — [`Pruner`], [`PruneMask`], [`MovementScores`], [`apply_masks`], [`fold_masks`],
//!   [`current_masks`], [`save_masks`] / [`load_masks`].
//! - [`schedule`] — [`CubicSchedule`] (Zhu & Gupta 2017).
//! - [`report`] — [`SparsityReport`].
//! - [`storage`] — [`SparseWeight`] (bitmask, CSR, N:M with index metadata), [`save_sparse`].
//! - [`structured`] — which neurons and heads to remove ([`channel_importance`], Wanda's
//!   structured form with calibration norms; [`TaylorImportance`], Michel et al. 2019;
//!   [`keep_top`]) and the masked twin of a removal ([`removal_masks`]). The layers remove
//!   them (ember-layers' `retain_heads` / `retain_neurons`), so this crate needs no layer type.
//!
//! ## Measured
//! `cargo run --release -p ember-prune --example prune_table -- --json`: a global magnitude
//! mask over 99 M weights in about 1.4 s on one thread; half the output neurons of a
//! 768 → 3072 `Linear` removed, 2.3× faster forward (numbers in the README).
//!
//! ## Feature flags
//! - `flex` (default), `ndarray` (default): the CPU backends the tests run on.

pub mod error;
pub mod mask;
pub mod prune;
pub mod report;
pub mod schedule;
pub mod storage;
pub mod structured;

pub use error::{PruneError, Result};
pub use mask::Axis;
pub use prune::{
    Criterion, Granularity, MovementScores, PruneConfig, PruneMask, Pruner, Scope, apply_masks, current_masks,
    fold_masks, load_masks, save_masks, selection,
};
pub use report::{LayerSparsity, SparsityReport};
pub use schedule::CubicSchedule;
pub use storage::{SparseFormat, SparseWeight, load_sparse, save_sparse};
pub use structured::{
    Removal, TaylorImportance, channel_importance, channel_importance_of, keep_top, removal_masks, unit_scores,
    units_to_keep,
};

// The guide's code blocks are compiled and run as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../GUIDE.md")]
struct GuideDoctests;
