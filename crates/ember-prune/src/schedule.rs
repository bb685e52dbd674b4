//! Sparsity schedules.

use serde::{Deserialize, Serialize};

use crate::error::{PruneError, Result, check_sparsity};

/// Gradual magnitude pruning's cubic schedule (Zhu & Gupta 2017, Eq. 1):
///
/// ```text
/// s_t = s_f + (s_i − s_f) · (1 − (t − t₀) / (n·Δt))³,   t ∈ {t₀, t₀ + Δt, …, t₀ + n·Δt}
/// ```
///
/// with `t₀ = start_step`, `t₀ + n·Δt = end_step`, `Δt = frequency`. Sparsity changes only on
/// update steps (between them it holds the last value); before `start_step` the model is dense,
/// from `end_step` on it is `s_f`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CubicSchedule {
    /// `s_i`, the sparsity at `start_step`.
    pub initial: f64,
    /// `s_f`, the final sparsity.
    pub final_sparsity: f64,
    /// `t₀`.
    pub start_step: usize,
    /// `t₀ + n·Δt`.
    pub end_step: usize,
    /// `Δt`, steps between mask updates.
    pub frequency: usize,
}

impl CubicSchedule {
    /// A validated schedule.
    ///
    /// # Errors
    /// [`PruneError::Sparsity`] for sparsities outside `[0, 1)`, [`PruneError::InvalidConfig`]
    /// for `end_step < start_step` or a zero frequency.
    pub fn new(
        initial: f64,
        final_sparsity: f64,
        start_step: usize,
        end_step: usize,
        frequency: usize,
    ) -> Result<Self> {
        check_sparsity(initial)?;
        check_sparsity(final_sparsity)?;
        if end_step < start_step || frequency == 0 {
            return Err(PruneError::InvalidConfig {
                what: "cubic schedule".into(),
                value: format!("start {start_step}, end {end_step}, frequency {frequency}"),
                expected: "start ≤ end and a frequency ≥ 1".into(),
            });
        }
        Ok(CubicSchedule { initial, final_sparsity, start_step, end_step, frequency })
    }

    /// Whether masks are recomputed at `step`: `t₀, t₀ + Δt, …`, and `end_step` itself (so the
    /// final sparsity is applied even when the span is not a multiple of `Δt`).
    pub fn is_update_step(&self, step: usize) -> bool {
        step >= self.start_step
            && step <= self.end_step
            && ((step - self.start_step).is_multiple_of(self.frequency) || step == self.end_step)
    }

    /// The target sparsity at `step`.
    ///
    /// ```
    /// use ember_prune::CubicSchedule;
    /// let s = CubicSchedule::new(0.0, 0.9, 0, 100, 10).unwrap();
    /// assert_eq!(s.sparsity_at(0), 0.0);
    /// assert!((s.sparsity_at(50) - 0.9 * (1.0 - 0.5f64.powi(3))).abs() < 1e-12);
    /// assert_eq!(s.sparsity_at(55), s.sparsity_at(50)); // held between updates
    /// assert_eq!(s.sparsity_at(100), 0.9);
    /// ```
    pub fn sparsity_at(&self, step: usize) -> f64 {
        if step < self.start_step {
            return 0.0;
        }
        if step >= self.end_step {
            return self.final_sparsity;
        }
        let t = self.start_step + (step - self.start_step) / self.frequency * self.frequency;
        if t == self.start_step {
            return self.initial;
        }
        let frac = (t - self.start_step) as f64 / (self.end_step - self.start_step) as f64;
        self.final_sparsity + (self.initial - self.final_sparsity) * (1.0 - frac).powi(3)
    }
}
