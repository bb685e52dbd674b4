//! Values that change over training steps (temperatures and loss weights).

use serde::{Deserialize, Serialize};

/// A value as a function of the training step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The same value at every step.
    Constant(f64),
    /// Linear from `start` (step 0) to `end` (step `steps` and after); TextBrewer's
    /// `linear_decay` / `linear_growth` weight schedulers.
    Linear {
        /// Value at step 0.
        start: f64,
        /// Value from step `steps` on.
        end: f64,
        /// Length of the ramp (0: `end` from the start).
        steps: usize,
    },
}

impl Schedule {
    /// The value at `step`.
    ///
    /// ```
    /// use ember_distill::Schedule;
    /// let s = Schedule::Linear { start: 8.0, end: 2.0, steps: 3 };
    /// assert_eq!([s.at(0), s.at(1), s.at(3), s.at(10)], [8.0, 6.0, 2.0, 2.0]);
    /// ```
    pub fn at(&self, step: usize) -> f64 {
        match *self {
            Schedule::Constant(v) => v,
            Schedule::Linear { start, end, steps } => {
                if step >= steps {
                    end
                } else {
                    start + (end - start) * step as f64 / steps as f64
                }
            }
        }
    }

    /// The values the schedule takes (start and end), for validation.
    pub(crate) fn extremes(&self) -> [f64; 2] {
        match *self {
            Schedule::Constant(v) => [v, v],
            Schedule::Linear { start, end, .. } => [start, end],
        }
    }
}

impl From<f64> for Schedule {
    fn from(v: f64) -> Self {
        Schedule::Constant(v)
    }
}
