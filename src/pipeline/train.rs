//! Pieces of a fine-tuning or distillation loop that every task needs: the learning-rate
//! schedule of BERT fine-tuning (linear warm-up, then linear decay to zero) and AdamW with
//! gradient clipping, as `transformers`' `Trainer` defaults.
//!
//! ```
//! use ember_slm::pipeline::train::WarmupLinear;
//! let s = WarmupLinear { peak: 1e-4, warmup: 10, total: 110 };
//! let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
//! assert!(close(s.lr(0), 1e-5));  // rises over the warm-up
//! assert!(close(s.lr(9), 1e-4));  // reaches the peak at its end
//! assert!(close(s.lr(60), 5e-5)); // then falls linearly
//! assert_eq!(s.lr(110), 0.0);
//! ```

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer};

/// Linear warm-up over `warmup` steps to `peak`, then linear decay to 0 at `total`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupLinear {
    /// The learning rate at the end of the warm-up.
    pub peak: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Steps in all.
    pub total: usize,
}

impl WarmupLinear {
    /// The learning rate at `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let rest = self.total.saturating_sub(self.warmup).max(1);
        let done = (step - self.warmup).min(rest);
        self.peak * (rest - done) as f64 / rest as f64
    }
}

/// AdamW (β = 0.9, 0.999, ε = 1e-8 as `transformers`) with decoupled weight decay and the
/// gradients' global norm clipped to `clip_norm`.
pub fn adamw(weight_decay: f64, clip_norm: f64) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay as f32)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(clip_norm as f32)))
        .init()
}
