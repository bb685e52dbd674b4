//! A latency harness: warm-up, then a count or time budget, percentiles (p50 / p90 / p99),
//! throughput in items and tokens per second, the thread count recorded, as JSON or markdown.
//!
//! It times any closure, so the same harness measures a Burn model on any device (make the
//! closure read its output back, e.g. `into_data()`, so asynchronous devices are timed to
//! completion).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// How long and how often to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyConfig {
    /// Untimed calls first (caches, lazy initialization, allocator).
    pub warmup: usize,
    /// Timed calls at least.
    pub min_iterations: usize,
    /// Keep timing until this much time has passed (after `min_iterations`)…
    pub min_time: Duration,
    /// …but never more calls than this.
    pub max_iterations: usize,
    /// Items (e.g. sequences) per call, for throughput.
    pub items_per_call: usize,
    /// Tokens per call, for tokens/s (0: not reported).
    pub tokens_per_call: usize,
    /// Threads the measured code uses (recorded, not enforced).
    pub threads: usize,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            warmup: 5,
            min_iterations: 20,
            min_time: Duration::from_millis(500),
            max_iterations: 10_000,
            items_per_call: 1,
            tokens_per_call: 0,
            threads: 1,
        }
    }
}

/// Timings of one measured case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// What was measured.
    pub name: String,
    /// Timed calls.
    pub iterations: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Fastest call, ms.
    pub min_ms: f64,
    /// Items per second at the median latency.
    pub items_per_s: f64,
    /// Tokens per second at the median latency (0 when not configured).
    pub tokens_per_s: f64,
    /// Threads recorded from the config.
    pub threads: usize,
}

/// The `q`-th percentile (`0 ≤ q ≤ 100`) of sorted values, linear interpolation between the
/// closest ranks (NumPy's default).
///
/// # Errors
/// [`EvalError::Empty`] for no values, [`EvalError::InvalidConfig`] for `q` outside `[0, 100]`.
pub fn percentile(sorted: &[f64], q: f64) -> Result<f64> {
    if sorted.is_empty() {
        return Err(EvalError::Empty("percentile".into()));
    }
    if !(0.0..=100.0).contains(&q) {
        return Err(EvalError::InvalidConfig {
            what: "percentile".into(),
            value: q.to_string(),
            expected: "0..=100".into(),
        });
    }
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Ok(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// Times `f` (see [`LatencyConfig`]).
///
/// # Errors
/// [`EvalError::InvalidConfig`] for `min_iterations = 0`, `max_iterations < min_iterations` or
/// zero items per call.
pub fn measure<F: FnMut()>(name: &str, config: &LatencyConfig, mut f: F) -> Result<LatencyReport> {
    if config.min_iterations == 0 || config.max_iterations < config.min_iterations || config.items_per_call == 0 {
        return Err(EvalError::InvalidConfig {
            what: "latency config".into(),
            value: format!("{config:?}"),
            expected: "1 ≤ min_iterations ≤ max_iterations and items_per_call ≥ 1".into(),
        });
    }
    for _ in 0..config.warmup {
        f();
    }
    let start = Instant::now();
    let mut samples = Vec::with_capacity(config.min_iterations);
    while samples.len() < config.min_iterations
        || (start.elapsed() < config.min_time && samples.len() < config.max_iterations)
    {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(summarize(name, samples, config))
}

/// A report from latencies already measured (milliseconds).
///
/// # Panics
/// Never for non-empty `samples`; empty samples give a report of zeros.
pub fn summarize(name: &str, mut samples: Vec<f64>, config: &LatencyConfig) -> LatencyReport {
    samples.sort_by(|a, b| a.total_cmp(b));
    let p = |q| percentile(&samples, q).unwrap_or(0.0);
    let p50 = p(50.0);
    let per_s = |n: usize| if p50 > 0.0 { n as f64 / (p50 / 1e3) } else { 0.0 };
    LatencyReport {
        name: name.to_string(),
        iterations: samples.len(),
        p50_ms: p50,
        p90_ms: p(90.0),
        p99_ms: p(99.0),
        mean_ms: if samples.is_empty() { 0.0 } else { samples.iter().sum::<f64>() / samples.len() as f64 },
        min_ms: samples.first().copied().unwrap_or(0.0),
        items_per_s: per_s(config.items_per_call),
        tokens_per_s: per_s(config.tokens_per_call),
        threads: config.threads,
    }
}

impl LatencyReport {
    /// One JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A markdown table of several reports.
    pub fn markdown(reports: &[LatencyReport]) -> String {
        let mut s = String::from(
            "| case | threads | iterations | p50 (ms) | p90 (ms) | p99 (ms) | items/s | tokens/s |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in reports {
            s += &format!(
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} |\n",
                r.name, r.threads, r.iterations, r.p50_ms, r.p90_ms, r.p99_ms, r.items_per_s, r.tokens_per_s
            );
        }
        s
    }
}
