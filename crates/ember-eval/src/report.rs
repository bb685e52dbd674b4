//! The compression report: one row per stage (dense, distilled, pruned, quantized, …) with
//! size, quality, latency and an energy estimate, written as markdown, JSON and an SVG plot of
//! quality against size.

use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// One stage of a compression pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRow {
    /// Stage name (`dense`, `distilled`, `pruned 50 %`, `int8`, …).
    pub stage: String,
    /// Parameters.
    pub params: u64,
    /// Bytes of the stored model.
    pub bytes: u64,
    /// Quality metric name (`accuracy`, `perplexity`, …).
    pub metric: String,
    /// Its value.
    pub metric_value: f64,
    /// Median latency at batch 1, ms.
    pub latency_p50_ms_b1: f64,
    /// Median latency at batch 32, ms.
    pub latency_p50_ms_b32: f64,
    /// Batch-1 speed-up over the first row (filled by [`CompressionReport::new`]).
    pub speedup_b1: f64,
    /// Batch-32 speed-up over the first row.
    pub speedup_b32: f64,
    /// Estimated energy per batch-1 inference, mJ (see [`EnergyModel`]); an estimate, not a
    /// measurement.
    pub energy_mj_est: Option<f64>,
    /// Whether a higher `metric_value` is better (accuracy, Spearman) or lower (perplexity);
    /// `None` when the writer did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub higher_is_better: Option<bool>,
}

impl StageRow {
    /// A row without speed-ups (computed by the report) or energy.
    pub fn new(
        stage: &str,
        params: u64,
        bytes: u64,
        metric: &str,
        metric_value: f64,
        latency_p50_ms_b1: f64,
        latency_p50_ms_b32: f64,
    ) -> Self {
        StageRow {
            stage: stage.into(),
            params,
            bytes,
            metric: metric.into(),
            metric_value,
            latency_p50_ms_b1,
            latency_p50_ms_b32,
            speedup_b1: 1.0,
            speedup_b32: 1.0,
            energy_mj_est: None,
            higher_is_better: None,
        }
    }

    /// Saying whether a higher metric value is better.
    pub fn with_higher_is_better(mut self, higher: bool) -> Self {
        self.higher_is_better = Some(higher);
        self
    }

    /// With an energy estimate.
    pub fn with_energy(mut self, mj: f64) -> Self {
        self.energy_mj_est = Some(mj);
        self
    }
}

/// Per-operation energies (picojoules) for an estimate from operation counts and bytes moved.
/// [`EnergyModel::horowitz_45nm`] gives M. Horowitz, "Computing's energy problem (and what we
/// can do about it)", ISSCC 2014, 45 nm, 0.9 V: f32 multiply 3.7 pJ and add 0.9 pJ, int8
/// multiply 0.2 pJ, int32 add 0.1 pJ, DRAM 1.3–2.6 nJ per 64-bit access (the midpoint, 1.95 nJ,
/// is used: 243.75 pJ a byte). Compute on today's CPUs costs more than these circuit-level
/// figures; use the estimate to compare stages, not as a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnergyModel {
    /// One f32 multiply-accumulate, pJ.
    pub f32_mac_pj: f64,
    /// One int8 multiply with int32 accumulation, pJ.
    pub int8_mac_pj: f64,
    /// One byte from DRAM, pJ.
    pub dram_byte_pj: f64,
}

impl EnergyModel {
    /// Horowitz (ISSCC 2014) 45 nm figures, see the type docs.
    pub fn horowitz_45nm() -> Self {
        EnergyModel { f32_mac_pj: 3.7 + 0.9, int8_mac_pj: 0.2 + 0.1, dram_byte_pj: 1950.0 / 8.0 }
    }

    /// Millijoules for `f32_macs` and `int8_macs` multiply-accumulates and `dram_bytes` read.
    pub fn estimate_mj(&self, f32_macs: u64, int8_macs: u64, dram_bytes: u64) -> f64 {
        (f32_macs as f64 * self.f32_mac_pj
            + int8_macs as f64 * self.int8_mac_pj
            + dram_bytes as f64 * self.dram_byte_pj)
            * 1e-9
    }

    /// Millijoules for one inference over `tokens` tokens of a model of size `size`: the
    /// linear layers' multiply-accumulates by dtype ([`crate::ModelSize::linear_macs_per_token`]
    /// times `tokens`) and every stored byte read once from DRAM (batch 1: weights are not
    /// reused across examples). Attention products are left out, so transformer estimates are
    /// low for long sequences.
    pub fn estimate_module(&self, size: &crate::ModelSize, tokens: u64) -> f64 {
        let (float, int8) = size.linear_macs_per_token();
        self.estimate_mj(float.saturating_mul(tokens), int8.saturating_mul(tokens), size.total_bytes() as u64)
    }
}

/// A reference value of the report's metric that no model should pass, for example the
/// entropy floor of a corpus whose entropy rate is known (the lowest reachable perplexity).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricFloor {
    /// What the floor is (`entropy floor`, `human agreement`, …).
    pub label: String,
    /// Its value, in the rows' metric.
    pub value: f64,
}

/// The rows of a compression run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompressionReport {
    /// Stages, the baseline first.
    pub rows: Vec<StageRow>,
    /// The metric's floor, when one is known: the markdown table then shows every stage's
    /// ratio to it and the plot draws it as a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<MetricFloor>,
}

impl CompressionReport {
    /// A report; speed-ups are computed against the first row (the baseline).
    ///
    /// # Errors
    /// [`EvalError::Empty`] for no rows, [`EvalError::NonFinite`] for a non-finite or
    /// non-positive latency or a non-finite metric.
    pub fn new(mut rows: Vec<StageRow>) -> Result<Self> {
        let Some(base) = rows.first().cloned() else { return Err(EvalError::Empty("compression report".into())) };
        for r in &rows {
            let bad = |v: f64| !v.is_finite() || v <= 0.0;
            if bad(r.latency_p50_ms_b1) || bad(r.latency_p50_ms_b32) || !r.metric_value.is_finite() {
                return Err(EvalError::NonFinite(format!("latency or metric of stage {}", r.stage)));
            }
        }
        for r in &mut rows {
            r.speedup_b1 = base.latency_p50_ms_b1 / r.latency_p50_ms_b1;
            r.speedup_b32 = base.latency_p50_ms_b32 / r.latency_p50_ms_b32;
        }
        Ok(CompressionReport { rows, floor: None })
    }

    /// With the metric's floor (see [`MetricFloor`]).
    ///
    /// ```
    /// use ember_eval::{CompressionReport, StageRow};
    /// let rows = vec![
    ///     StageRow::new("teacher", 1_000, 4_000, "perplexity", 1.50, 2.0, 20.0),
    ///     StageRow::new("int8", 1_000, 1_000, "perplexity", 1.53, 0.5, 5.0),
    /// ];
    /// let report = CompressionReport::new(rows).unwrap().with_floor("entropy floor", 1.45).unwrap();
    /// assert!(report.to_markdown().contains("| 1.055× |")); // 1.53 / 1.45
    /// assert!(report.with_floor("bad", f64::NAN).is_err());
    /// ```
    ///
    /// # Errors
    /// [`EvalError::NonFinite`] for a floor that is not a finite number.
    pub fn with_floor(mut self, label: &str, value: f64) -> Result<Self> {
        if !value.is_finite() {
            return Err(EvalError::NonFinite(format!("metric floor {label} = {value}")));
        }
        self.floor = Some(MetricFloor { label: label.into(), value });
        Ok(self)
    }

    /// A markdown table (with a `× floor` column and a closing line when a floor is set).
    pub fn to_markdown(&self) -> String {
        let floor = self.floor.as_ref().filter(|f| f.value != 0.0);
        let mut s = String::from(
            "| stage | params | size (MB) | metric | value | p50 b1 (ms) | p50 b32 (ms) | speed-up b1 | speed-up b32 | energy (mJ, est.) |",
        );
        s += if floor.is_some() { " × floor |\n" } else { "\n" };
        s += "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|";
        s += if floor.is_some() { "---:|\n" } else { "\n" };
        for r in &self.rows {
            s += &format!(
                "| {} | {} | {:.2} | {} | {:.4} | {:.3} | {:.3} | {:.2}× | {:.2}× | {} |",
                r.stage,
                r.params,
                r.bytes as f64 / 1e6,
                r.metric,
                r.metric_value,
                r.latency_p50_ms_b1,
                r.latency_p50_ms_b32,
                r.speedup_b1,
                r.speedup_b32,
                r.energy_mj_est.map_or("–".to_string(), |e| format!("{e:.3}"))
            );
            s += &match floor {
                Some(f) => format!(" {:.3}× |\n", r.metric_value / f.value),
                None => "\n".into(),
            };
        }
        if let (Some(f), Some(first)) = (&self.floor, self.rows.first()) {
            s += &format!("\n{}: {} = {:.4}\n", f.label, first.metric, f.value);
        }
        s
    }

    /// The report as JSON: `{"rows": [...], "floor": {...}}` (no `floor` key without one).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// An SVG scatter plot of the metric against size (MB), one labelled point per stage.
    ///
    /// # Errors
    /// [`EvalError::InvalidConfig`] if plotting fails.
    pub fn to_svg(&self) -> Result<String> {
        let mut svg = String::new();
        let err = |e: String| EvalError::InvalidConfig {
            what: "SVG plot".into(),
            value: e,
            expected: "a drawable report".into(),
        };
        {
            let root = SVGBackend::with_string(&mut svg, (720, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
            let mb: Vec<f64> = self.rows.iter().map(|r| r.bytes as f64 / 1e6).collect();
            let mut q: Vec<f64> = self.rows.iter().map(|r| r.metric_value).collect();
            let floor = self.floor.as_ref().map(|f| f.value);
            let points = q.len();
            q.extend(floor);
            let span = |v: &[f64]| {
                let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
                let pad = ((hi - lo).abs() * 0.15).max(hi.abs() * 0.05).max(1e-6);
                (lo - pad)..(hi + pad)
            };
            let metric = self.rows.first().map_or_else(|| "metric".to_string(), |r| r.metric.clone());
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{metric} against model size"), ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(span(&mb), span(&q))
                .map_err(|e| err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("size (MB)")
                .y_desc(metric.as_str())
                .draw()
                .map_err(|e| err(e.to_string()))?;
            let x_range = span(&mb);
            if let (Some(f), Some(label)) = (floor, self.floor.as_ref().map(|f| f.label.clone())) {
                chart
                    .draw_series(LineSeries::new([(x_range.start, f), (x_range.end, f)], RED.stroke_width(1)))
                    .map_err(|e| err(e.to_string()))?
                    .label(label)
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
            }
            chart
                .draw_series(self.rows.iter().zip(mb.iter().zip(&q[..points])).map(|(r, (x, y))| {
                    EmptyElement::at((*x, *y))
                        + Circle::new((0, 0), 5, BLUE.filled())
                        + Text::new(r.stage.clone(), (8, -8), ("sans-serif", 14))
                }))
                .map_err(|e| err(e.to_string()))?;
            if floor.is_some() {
                // Drawn last, in a corner, so the points do not cover it.
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE)
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
            }
            root.present().map_err(|e| err(e.to_string()))?;
        }
        Ok(svg)
    }

    /// Writes `<stem>.md`, `<stem>.json` and `<stem>.svg` into `dir`.
    ///
    /// # Errors
    /// [`EvalError::Io`] for write failures, and [`CompressionReport::to_svg`]'s errors.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<()> {
        let svg = self.to_svg()?;
        for (ext, body) in [("md", self.to_markdown()), ("json", self.to_json()), ("svg", svg)] {
            let path = dir.join(format!("{stem}.{ext}"));
            std::fs::write(&path, body)
                .map_err(|e| EvalError::Io { path: path.display().to_string(), message: e.to_string() })?;
        }
        Ok(())
    }
}
