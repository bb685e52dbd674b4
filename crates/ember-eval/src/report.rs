//! The compression report: one row per stage (dense, distilled, pruned, quantized, …) with
//! size, quality, latency and an energy estimate, written as markdown, JSON and (with the `plot`
//! feature) an SVG figure of quality against size and against latency at batch 1 and 32.

use std::path::Path;

#[cfg(feature = "plot")]
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

    /// An SVG figure of three panels: the quality metric against size (MB), against batch-1
    /// latency and against batch-32 latency (ms), one labelled point per stage joined in stage
    /// order, the floor (if any) as a dashed line (feature `plot`, which brings in `plotters`).
    /// Sizes and latencies start at zero; labels are placed beside their points where they
    /// cover no other point or label.
    ///
    /// # Errors
    /// [`EvalError::InvalidConfig`] if plotting fails.
    #[cfg(feature = "plot")]
    pub fn to_svg(&self) -> Result<String> {
        let err = |e: String| EvalError::InvalidConfig {
            what: "SVG plot".into(),
            value: e,
            expected: "a drawable report".into(),
        };
        let mut svg = String::new();
        let metric = self.rows.first().map_or_else(|| "metric".to_string(), |r| r.metric.clone());
        let better = match self.rows.first().and_then(|r| r.higher_is_better) {
            Some(true) => " (higher is better)",
            Some(false) => " (lower is better)",
            None => "",
        };
        let q: Vec<f64> = self.rows.iter().map(|r| r.metric_value).collect();
        let floor = self.floor.as_ref().map(|f| (f.label.clone(), f.value));
        let y_range = {
            let all: Vec<f64> = q.iter().copied().chain(floor.as_ref().map(|f| f.1)).collect();
            let (lo, hi) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
            let pad = ((hi - lo).abs() * 0.12).max(hi.abs() * 0.01).max(1e-6);
            (lo - pad)..(hi + pad)
        };
        let panels: [(&str, Vec<f64>); 3] = [
            ("size (MB)", self.rows.iter().map(|r| r.bytes as f64 / 1e6).collect()),
            ("latency p50, batch 1 (ms)", self.rows.iter().map(|r| r.latency_p50_ms_b1).collect()),
            ("latency p50, batch 32 (ms)", self.rows.iter().map(|r| r.latency_p50_ms_b32).collect()),
        ];
        const PALETTE: [RGBColor; 6] = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(44, 160, 44),
            RGBColor(214, 39, 40),
            RGBColor(148, 103, 189),
            RGBColor(140, 86, 75),
        ];
        let grid = RGBColor(228, 228, 228);
        let path = RGBColor(170, 170, 170);
        {
            let root = SVGBackend::with_string(&mut svg, (1260, 440)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
            let body = root
                .titled(&format!("{metric}{better} against size and latency, per stage"), ("sans-serif", 20))
                .map_err(|e| err(e.to_string()))?;
            for (k, (panel, (x_desc, xs))) in body.split_evenly((1, 3)).iter().zip(&panels).enumerate() {
                let x_max = xs.iter().copied().fold(0.0f64, f64::max).max(1e-9) * 1.15;
                let mut chart = ChartBuilder::on(panel)
                    .margin(14)
                    .x_label_area_size(44)
                    .y_label_area_size(64)
                    .build_cartesian_2d(0.0..x_max, y_range.clone())
                    .map_err(|e| err(e.to_string()))?;
                chart
                    .configure_mesh()
                    .light_line_style(TRANSPARENT)
                    .bold_line_style(grid)
                    .x_labels(6)
                    .y_labels(6)
                    .x_desc(*x_desc)
                    .y_desc(metric.as_str())
                    .axis_desc_style(("sans-serif", 14))
                    .label_style(("sans-serif", 12))
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
                if let Some((label, f)) = &floor {
                    chart
                        .draw_series(DashedLineSeries::new([(0.0, *f), (x_max, *f)], 6, 4, RED.stroke_width(1)))
                        .map_err(|e| err(e.to_string()))?;
                    if k == 0 {
                        // Named once, at the right end of the first panel's line.
                        let (fx, fy) = chart.backend_coord(&(x_max, *f));
                        root.draw(&Text::new(
                            label.clone(),
                            (fx - 7 * label.len() as i32 - 4, fy - 16),
                            ("sans-serif", 12).into_font().color(&RED),
                        ))
                        .map_err(|e| err(e.to_string()))?;
                    }
                }
                let points: Vec<(f64, f64)> = xs.iter().copied().zip(q.iter().copied()).collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), path.stroke_width(1)))
                    .map_err(|e| err(e.to_string()))?;
                chart
                    .draw_series(
                        points.iter().enumerate().map(|(i, p)| Circle::new(*p, 5, PALETTE[i % PALETTE.len()].filled())),
                    )
                    .map_err(|e| err(e.to_string()))?;
                // Labels in pixels: beside the point, where they cover no marker or earlier label.
                let (xr, yr) = chart.plotting_area().get_pixel_range();
                let px: Vec<(i32, i32)> = points.iter().map(|p| chart.backend_coord(p)).collect();
                let mut taken: Vec<[i32; 4]> = px.iter().map(|&(x, y)| [x - 6, y - 6, x + 6, y + 6]).collect();
                let overlaps = |a: &[i32; 4], b: &[i32; 4]| a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
                for (i, (r, &(x, y))) in self.rows.iter().zip(&px).enumerate() {
                    let w = 7 * r.stage.chars().count() as i32;
                    let h = 14;
                    // Beside the point first, then further above and below; each kept inside the
                    // plotting area.
                    let clamp = |(cx, cy): (i32, i32)| {
                        (cx.clamp(xr.start, (xr.end - w).max(xr.start)), cy.clamp(yr.start, (yr.end - h).max(yr.start)))
                    };
                    let mut candidates = Vec::new();
                    for dy in [-18, 4, -30, 16, -42, 28, -54, 40] {
                        for cx in [x + 9, x - 9 - w, x - w / 2] {
                            candidates.push(clamp((cx, y + dy)));
                        }
                    }
                    let free = |&(cx, cy): &(i32, i32)| !taken.iter().any(|t| overlaps(&[cx, cy, cx + w, cy + h], t));
                    let (cx, cy) = candidates.iter().find(|c| free(c)).copied().unwrap_or(candidates[0]);
                    taken.push([cx, cy, cx + w, cy + h]);
                    let style = ("sans-serif", 13).into_font().color(&PALETTE[i % PALETTE.len()].mix(0.95));
                    root.draw(&Text::new(r.stage.clone(), (cx, cy), style)).map_err(|e| err(e.to_string()))?;
                }
            }
            root.present().map_err(|e| err(e.to_string()))?;
        }
        Ok(svg)
    }

    /// Writes `<stem>.md`, `<stem>.json` and, with the `plot` feature, `<stem>.svg` into `dir`.
    /// The plot is drawn before anything is written, so a plotting error writes no file.
    ///
    /// # Errors
    /// [`EvalError::Io`] for write failures, and `CompressionReport::to_svg`'s errors.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<()> {
        let files = [("md", self.to_markdown()), ("json", self.to_json())].into_iter();
        #[cfg(feature = "plot")]
        let files = files.chain([("svg", self.to_svg()?)]);
        for (ext, body) in files {
            let path = dir.join(format!("{stem}.{ext}"));
            std::fs::write(&path, body)
                .map_err(|e| EvalError::Io { path: path.display().to_string(), message: e.to_string() })?;
        }
        Ok(())
    }
}
