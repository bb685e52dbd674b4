//! Calibration observers: they watch the values of one tensor (or one channel) over calibration
//! batches and pick the clipping range `[lo, hi]` that the quantization scheme turns into a scale
//! and zero point (see [`crate::scheme::QuantDtype::params`]).
//!
//! | observer | range it picks | origin |
//! |---|---|---|
//! | [`MinMax`] | running min / max | `torch.ao` `MinMaxObserver` |
//! | [`MovingAverageMinMax`] | exponential moving average of batch min / max | `torch.ao` `MovingAverageMinMaxObserver` |
//! | [`Percentile`] | percentiles of the value histogram | ONNX Runtime / NNCF percentile calibration |
//! | [`MseObserver`] | the clip that minimizes the expected quantization MSE | ONNX Runtime / NNCF MSE, ACIQ (Banner et al. 2019) |
//! | [`EntropyObserver`] | the clip that minimizes KL(P‖Q) | TensorRT (Migacz 2017) |
//!
//! All observers reject NaN / ±Inf (leaving their state unchanged), treat an empty batch as a
//! no-op, never divide by zero, and are deterministic. The histogram-based ones share
//! [`Histogram`], which grows without losing counts. [`PerChannel`] runs one observer per channel
//! of row-major `[rows, channels]` data, and [`ObserverConfig`] is the serde-able choice users put
//! in their configs.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{QuantError, Result, check_finite};
use crate::scheme::QuantDtype;

/// Default number of histogram bins of the histogram-based observers (as in `torch.ao`'s
/// `HistogramObserver` and TensorRT's entropy calibrator).
pub const DEFAULT_BINS: usize = 2048;
/// Smallest number of bins accepted by [`Percentile`] and [`MseObserver`].
pub const MIN_BINS: usize = 16;
/// Smallest number of bins accepted by [`EntropyObserver`]: the data occupies at least half of
/// the bins, and the KL search needs more than 128 of them to have a threshold to choose.
pub const MIN_ENTROPY_BINS: usize = 256;
/// Largest number of bins accepted by any histogram-based observer.
pub const MAX_BINS: usize = 1 << 20;
/// Default percentile of [`Percentile`].
pub const DEFAULT_PERCENTILE: f64 = 99.99;
/// Default number of candidate clipping ranges per search direction of [`MseObserver`].
pub const DEFAULT_MSE_STEPS: usize = 100;
/// Largest number of search steps accepted by [`MseObserver`].
pub const MAX_MSE_STEPS: usize = 100_000;
/// Default averaging constant of [`MovingAverageMinMax`] (`torch.ao`'s `averaging_constant`).
pub const DEFAULT_MOMENTUM: f32 = 0.01;

/// A calibration observer: sees batches of values of one tensor (or one channel) and picks a clipping range.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Short name ("minmax", "percentile", ...), for reports.
    fn name(&self) -> &'static str;

    /// Feeds one batch.
    ///
    /// # Errors
    /// [`QuantError::NonFinite`] (naming the observer and the flat index within `values`) for
    /// NaN / ±Inf, leaving the observer unchanged. An empty slice is a no-op (`Ok`).
    fn observe(&mut self, values: &[f32]) -> Result<()>;

    /// Number of values seen so far.
    fn count(&self) -> u64;

    /// Observed min and max (not clipped).
    ///
    /// # Errors
    /// [`QuantError::Empty`] if nothing was observed.
    fn min_max(&self) -> Result<(f32, f32)>;

    /// The clipping range `[lo, hi]` this observer picks for quantizing to `dtype`.
    ///
    /// `lo <= 0 <= hi` is *not* guaranteed: the scheme widens the range to include 0. The range is
    /// always finite with `lo <= hi`; zero-range data gives a zero-width range (which the scheme
    /// turns into scale 1), and all-equal data gives a range that contains the value.
    ///
    /// # Errors
    /// [`QuantError::Empty`] if nothing was observed.
    fn range(&self, dtype: QuantDtype) -> Result<(f32, f32)>;

    /// A fresh observer with the same settings and no data (used to make one per channel).
    fn fresh(&self) -> Box<dyn Observer>;
}

// ------------------------------------------------------------------------------------------
// Shared helpers.

fn empty_error(name: &str) -> QuantError {
    QuantError::Empty {
        what: format!("{name} observer"),
        expected: "at least one observed value (feed calibration batches before asking for a range)".into(),
    }
}

fn invalid_bins(bins: usize, min: usize) -> Result<()> {
    if (min..=MAX_BINS).contains(&bins) {
        Ok(())
    } else {
        Err(QuantError::InvalidConfig {
            what: "bins",
            value: bins.to_string(),
            expected: format!("an integer in {min}..={MAX_BINS}"),
        })
    }
}

const LANES: usize = 8;
const EXP_MASK: u32 = 0x7f80_0000;

/// `(min, max)` of `f(v)` over `values` in one pass (lane arrays so that it vectorizes), or the
/// first non-finite value as an error naming `what`. `None` for an empty slice.
#[inline(always)]
fn scan_by(values: &[f32], f: impl Fn(f32) -> f32, what: impl FnOnce() -> String) -> Result<Option<(f32, f32)>> {
    if values.is_empty() {
        return Ok(None);
    }
    let (mut lo, mut hi, mut bad) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES], [0u32; LANES]);
    let mut chunks = values.chunks_exact(LANES);
    for ch in &mut chunks {
        for i in 0..LANES {
            let v = f(ch[i]);
            lo[i] = if v < lo[i] { v } else { lo[i] };
            hi[i] = if v > hi[i] { v } else { hi[i] };
            bad[i] |= ((ch[i].to_bits() & EXP_MASK) == EXP_MASK) as u32;
        }
    }
    let (mut l, mut h, mut b) = (f32::INFINITY, f32::NEG_INFINITY, 0u32);
    for &x in chunks.remainder() {
        let v = f(x);
        l = if v < l { v } else { l };
        h = if v > h { v } else { h };
        b |= ((x.to_bits() & EXP_MASK) == EXP_MASK) as u32;
    }
    for i in 0..LANES {
        l = l.min(lo[i]);
        h = h.max(hi[i]);
        b |= bad[i];
    }
    if b != 0 {
        check_finite(what, values)?;
    }
    Ok(Some((l, h)))
}

fn scan(values: &[f32], what: impl FnOnce() -> String) -> Result<Option<(f32, f32)>> {
    scan_by(values, |v| v, what)
}

/// `2^e` for `e` in the normal f64 exponent range.
fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `floor(y)` as i64 for `|y| < 2^62` without a libm call.
#[inline(always)]
fn floor_i64(y: f64) -> i64 {
    let t = y as i64;
    // Branch-free: signed data would mispredict a branch on every other value.
    t - i64::from((t as f64) > y)
}

// ------------------------------------------------------------------------------------------
// MinMax.

/// Running minimum and maximum over all batches; the range is exactly `[min, max]`.
///
/// The default observer: cheap and never clips, but one outlier stretches the scale for everything.
// Method: torch.ao.quantization.MinMaxObserver.
#[derive(Clone, Debug, Default)]
pub struct MinMax {
    state: Option<(f32, f32)>,
    count: u64,
}

impl MinMax {
    /// A new observer with no data.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Observer for MinMax {
    fn name(&self) -> &'static str {
        "minmax"
    }

    fn observe(&mut self, values: &[f32]) -> Result<()> {
        let Some((lo, hi)) = scan(values, || "minmax observer".into())? else { return Ok(()) };
        self.state = Some(match self.state {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
        self.count += values.len() as u64;
        Ok(())
    }

    fn count(&self) -> u64 {
        self.count
    }

    fn min_max(&self) -> Result<(f32, f32)> {
        self.state.ok_or_else(|| empty_error(self.name()))
    }

    fn range(&self, _dtype: QuantDtype) -> Result<(f32, f32)> {
        self.min_max()
    }

    fn fresh(&self) -> Box<dyn Observer> {
        Box::new(Self::new())
    }
}

// ------------------------------------------------------------------------------------------
// Moving-average MinMax.

/// Exponential moving average of the per-batch min and max: the first batch sets them, then
/// `min ← min + c·(batch_min − min)` (and likewise for max) with `c = momentum`.
///
/// Smooths out the occasional extreme batch; the default `c` is 0.01, as in `torch.ao`. The range
/// is the averaged `[min, max]`; [`Observer::min_max`] still reports the exact observed extremes.
// Method: torch.ao.quantization.MovingAverageMinMaxObserver (averaging_constant = 0.01).
#[derive(Clone, Debug)]
pub struct MovingAverageMinMax {
    momentum: f32,
    avg: Option<(f32, f32)>,
    exact: Option<(f32, f32)>,
    count: u64,
}

impl MovingAverageMinMax {
    /// A new observer with averaging constant `momentum` (default [`DEFAULT_MOMENTUM`] = 0.01).
    ///
    /// # Errors
    /// [`QuantError::InvalidConfig`] unless `0 < momentum <= 1`.
    pub fn new(momentum: f32) -> Result<Self> {
        if !(momentum > 0.0 && momentum <= 1.0) {
            return Err(QuantError::InvalidConfig {
                what: "momentum",
                value: momentum.to_string(),
                expected: "a number in (0, 1] (the weight of each new batch; torch's default is 0.01)".into(),
            });
        }
        Ok(Self { momentum, avg: None, exact: None, count: 0 })
    }

    /// The averaging constant.
    pub fn momentum(&self) -> f32 {
        self.momentum
    }
}

impl Default for MovingAverageMinMax {
    /// `momentum` = [`DEFAULT_MOMENTUM`].
    fn default() -> Self {
        Self { momentum: DEFAULT_MOMENTUM, avg: None, exact: None, count: 0 }
    }
}

impl Observer for MovingAverageMinMax {
    fn name(&self) -> &'static str {
        "moving_average_minmax"
    }

    fn observe(&mut self, values: &[f32]) -> Result<()> {
        let Some((lo, hi)) = scan(values, || "moving_average_minmax observer".into())? else { return Ok(()) };
        // A convex combination in f64 cannot overflow, unlike `min + c·(lo − min)` in f32.
        let c = f64::from(self.momentum);
        let ema = |old: f32, new: f32| ((1.0 - c) * f64::from(old) + c * f64::from(new)) as f32;
        self.avg = Some(match self.avg {
            None => (lo, hi),
            Some((a, b)) => {
                let (a, b) = (ema(a, lo), ema(b, hi));
                (a.min(b), b.max(a))
            }
        });
        self.exact = Some(match self.exact {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
        self.count += values.len() as u64;
        Ok(())
    }

    fn count(&self) -> u64 {
        self.count
    }

    fn min_max(&self) -> Result<(f32, f32)> {
        self.exact.ok_or_else(|| empty_error(self.name()))
    }

    fn range(&self, _dtype: QuantDtype) -> Result<(f32, f32)> {
        self.avg.ok_or_else(|| empty_error(self.name()))
    }

    fn fresh(&self) -> Box<dyn Observer> {
        Box::new(Self { momentum: self.momentum, avg: None, exact: None, count: 0 })
    }
}

// ------------------------------------------------------------------------------------------
// Histogram.

/// Smallest bin-width exponent: 2^−149 is the smallest positive f32.
const E_MIN: i32 = -149;

/// A histogram with a fixed number of equal-width bins over a range that grows, without losing or
/// moving counts, when new data falls outside it.
///
/// **Layout.** Bin widths are powers of two, `w = 2^e`, and bins sit on the global grid
/// `[g·w, (g+1)·w)` for integer `g`; the histogram keeps `bins` consecutive grid cells starting
/// at cell `base`. The covered range always includes 0 (quantization ranges do too, so this
/// costs no useful resolution) and the exact minimum and maximum are recorded separately.
///
/// **Growth is exact.** When new data does not fit, the width is doubled (as many times as needed:
/// cells `2g` and `2g+1` merge into cell `g` of the coarser grid) and the window is moved; since
/// every old cell lies entirely inside one new cell, no count is split or approximated, and feeding
/// data in several batches gives exactly the histogram of feeding it all at once. This replaces
/// `torch.ao` `HistogramObserver`'s proportional re-binning, which smears counts on every growth.
///
/// **The price** is resolution: the data (plus 0) occupies between about half and all of the bins,
/// so the effective resolution is `range / bins` to `2·range / bins`. The only approximation
/// is the usual one of any histogram: values are known to within their bin, and the range
/// searches assume they are spread uniformly over it.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    /// Bin width is `2^exp`.
    exp: i32,
    /// Global grid index of `counts[0]`.
    base: i64,
    total: u64,
    min: f32,
    max: f32,
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("bins", &self.counts.len())
            .field("total", &self.total)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("bin_width", &self.bin_width())
            .field("first_edge", &self.first_edge())
            .finish()
    }
}

impl Histogram {
    /// An empty histogram with `bins` bins.
    ///
    /// # Errors
    /// [`QuantError::InvalidConfig`] unless `2 <= bins <=` [`MAX_BINS`] (observers ask for more).
    pub fn new(bins: usize) -> Result<Self> {
        invalid_bins(bins, 2)?;
        Ok(Self::new_unchecked(bins))
    }

    fn new_unchecked(bins: usize) -> Self {
        Self { counts: vec![0; bins], exp: E_MIN, base: 0, total: 0, min: f32::INFINITY, max: f32::NEG_INFINITY }
    }

    /// Adds `values`.
    ///
    /// # Errors
    /// [`QuantError::NonFinite`] for NaN / ±Inf (nothing is added).
    pub fn add(&mut self, values: &[f32]) -> Result<()> {
        self.add_named::<false>(values, || "histogram".into())
    }

    /// Adds `|v|` for every `v` in `values` (a histogram of magnitudes, as the entropy method uses).
    ///
    /// # Errors
    /// [`QuantError::NonFinite`] for NaN / ±Inf (nothing is added).
    pub fn add_abs(&mut self, values: &[f32]) -> Result<()> {
        self.add_named::<true>(values, || "histogram".into())
    }

    /// Forgets all data (keeps the number of bins).
    pub fn clear(&mut self) {
        *self = Self::new_unchecked(self.counts.len());
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.counts.len()
    }

    /// Number of values added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The counts; bin `i` covers `[first_edge() + i·bin_width(), first_edge() + (i+1)·bin_width())`.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Width of every bin (a power of two).
    pub fn bin_width(&self) -> f64 {
        pow2(self.exp)
    }

    /// Lower edge of bin 0 (`<= 0`).
    pub fn first_edge(&self) -> f64 {
        self.base as f64 * self.bin_width()
    }

    /// Lower edge of bin `i`.
    pub fn bin_lower(&self, i: usize) -> f64 {
        (self.base + i as i64) as f64 * self.bin_width()
    }

    /// Exact minimum and maximum of the added values, `None` if empty.
    pub fn min_max(&self) -> Option<(f32, f32)> {
        (self.total > 0).then_some((self.min, self.max))
    }

    /// The `q`-quantile (`q` in `[0, 1]`, clamped) of the added values, interpolating linearly
    /// inside the bin and clamped to the exact `[min, max]`; `None` if empty.
    pub fn quantile(&self, q: f64) -> Option<f32> {
        let (min, max) = self.min_max()?;
        let x = quantile_of(&self.counts, self.total, q, |i| self.bin_lower(i), self.bin_width());
        Some((x as f32).clamp(min, max))
    }

    /// The `q`-quantile of `|x|` over the added values (the histogram folded at 0, which is a bin
    /// edge), clamped to the exact range of `|x|`; `None` if empty.
    pub fn abs_quantile(&self, q: f64) -> Option<f32> {
        let (min, max) = self.min_max()?;
        let (abs_lo, abs_hi) = abs_range(min, max);
        let folded = self.folded();
        let w = self.bin_width();
        let x = quantile_of(&folded, self.total, q, |k| k as f64 * w, w);
        Some((x as f32).clamp(abs_lo, abs_hi))
    }

    /// Counts of `|x|`: entry `k` covers `[k·w, (k+1)·w)` (cells `k` and `−k−1` of the grid).
    fn folded(&self) -> Vec<u64> {
        let n = self.counts.len() as i64;
        let len = (-self.base).max(self.base + n).max(1) as usize;
        let mut out = vec![0u64; len];
        for (j, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                let g = self.base + j as i64;
                let k = if g >= 0 { g } else { -g - 1 };
                out[k as usize] += c;
            }
        }
        out
    }

    /// `floor(hi/2^e) − floor(lo/2^e) < bins`: does `[lo, hi]` fit `bins` cells of width `2^e`?
    fn fits(&self, lo: f64, hi: f64, e: i32) -> bool {
        let inv = pow2(-e);
        (hi * inv).floor() - (lo * inv).floor() < self.counts.len() as f64
    }

    /// The smallest exponent `>= e_min` whose grid fits `[lo, hi]` (`lo <= 0 <= hi`) in the bins.
    fn fit_exp(&self, lo: f64, hi: f64, e_min: i32) -> i32 {
        let mut e = e_min.max(E_MIN);
        let range = hi - lo;
        if range > 0.0 {
            // Widths `<= range / (bins + 1)` never fit, so start just below that.
            let guess = (range / (self.counts.len() as f64 + 1.0)).log2().floor() as i32 - 1;
            e = e.max(guess);
        }
        while !self.fits(lo, hi, e) {
            e += 1;
        }
        e
    }

    /// Checks `values` (errors name `what`), grows the grid if needed and counts them (their
    /// magnitudes if `ABS`). Nothing changes on error.
    fn add_named<const ABS: bool>(&mut self, values: &[f32], what: impl FnOnce() -> String) -> Result<()> {
        let f = |v: f32| if ABS { v.abs() } else { v };
        let Some((bmin, bmax)) = scan_by(values, f, what)? else { return Ok(()) };
        let (nmin, nmax) = if self.total == 0 { (bmin, bmax) } else { (self.min.min(bmin), self.max.max(bmax)) };
        let (lo, hi) = (f64::from(nmin.min(0.0)), f64::from(nmax.max(0.0)));
        if self.total == 0 {
            self.exp = self.fit_exp(lo, hi, E_MIN);
            self.base = floor_i64(lo * pow2(-self.exp));
        } else {
            let e = self.fit_exp(lo, hi, self.exp);
            let base = floor_i64(lo * pow2(-e));
            if e != self.exp || base != self.base {
                self.regrid(e, base);
            }
        }
        let inv = pow2(-self.exp);
        let base = self.base;
        let last = self.counts.len() - 1;
        for &v in values {
            let g = floor_i64(f64::from(f(v)) * inv);
            let j = ((g - base).max(0) as usize).min(last);
            self.counts[j] += 1;
        }
        self.total += values.len() as u64;
        self.min = nmin;
        self.max = nmax;
        Ok(())
    }

    /// Moves the counts to the grid of width `2^e` (`e >= self.exp`) starting at cell `base`.
    fn regrid(&mut self, e: i32, base: i64) {
        let shift = (e - self.exp) as u32;
        let last = self.counts.len() as i64 - 1;
        let mut out = vec![0u64; self.counts.len()];
        for (j, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                let g = self.base + j as i64;
                // Arithmetic shift = floor division by 2^shift, also for negative cells.
                let g2 = if shift >= 63 { if g < 0 { -1 } else { 0 } } else { g >> shift };
                debug_assert!((0..=last).contains(&(g2 - base)), "regrid out of window");
                out[(g2 - base).clamp(0, last) as usize] += c;
            }
        }
        self.counts = out;
        self.exp = e;
        self.base = base;
    }

    /// Non-empty bins as `(lo, hi, count)` segments with the edges clamped to the exact data range.
    fn segments(&self) -> Vec<(f64, f64, f64)> {
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        let w = self.bin_width();
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(|(j, &c)| {
                let a = self.bin_lower(j);
                ((a.max(min)).min(max), (a + w).min(max).max(min), c as f64)
            })
            .collect()
    }
}

/// Range of `|x|` for `x` in `[min, max]`.
fn abs_range(min: f32, max: f32) -> (f32, f32) {
    let hi = min.abs().max(max.abs());
    let lo = if min <= 0.0 && max >= 0.0 { 0.0 } else { min.abs().min(max.abs()) };
    (lo, hi)
}

/// Quantile of a histogram with bin lower edges `lower(i)` and width `w`.
fn quantile_of(counts: &[u64], total: u64, q: f64, lower: impl Fn(usize) -> f64, w: f64) -> f64 {
    let target = q.clamp(0.0, 1.0) * total as f64;
    let mut cum = 0f64;
    let mut last_nonzero = 0;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        last_nonzero = i;
        let c = c as f64;
        if cum + c >= target {
            return lower(i) + w * ((target - cum) / c).clamp(0.0, 1.0);
        }
        cum += c;
    }
    lower(last_nonzero) + w
}

// ------------------------------------------------------------------------------------------
// Percentile.

/// Clips to percentiles of the observed values: `[q(1 − p), q(p)]` for [`QuantDtype::U8Affine`]
/// and `[−t, t]` with `t` the `p`-th percentile of `|x|` for [`QuantDtype::I8Symmetric`].
///
/// Defaults: `percentile` = [`DEFAULT_PERCENTILE`] (99.99), `bins` = [`DEFAULT_BINS`] (2048).
/// The percentiles are read from a [`Histogram`] (linear interpolation inside a bin), so they are
/// accurate to about one bin width; `percentile = 100` gives the exact min / max.
// Method: percentile calibration as in ONNX Runtime (CalibrationMethod.Percentile, on |x|
// for symmetric) and NNCF; Wu et al. 2020, "Integer Quantization for Deep Learning Inference".
#[derive(Clone, Debug)]
pub struct Percentile {
    percentile: f64,
    hist: Histogram,
}

impl Percentile {
    /// A new observer clipping at the `percentile`-th percentile (in `(50, 100]`), with a
    /// histogram of `bins` bins (in [`MIN_BINS`]`..=`[`MAX_BINS`]).
    ///
    /// # Errors
    /// [`QuantError::InvalidConfig`] for a percentile or bin count out of range.
    pub fn new(percentile: f64, bins: usize) -> Result<Self> {
        if !(percentile > 50.0 && percentile <= 100.0) {
            return Err(QuantError::InvalidConfig {
                what: "percentile",
                value: percentile.to_string(),
                expected: "a number in (50, 100], e.g. 99.99".into(),
            });
        }
        invalid_bins(bins, MIN_BINS)?;
        Ok(Self { percentile, hist: Histogram::new_unchecked(bins) })
    }

    /// The percentile.
    pub fn percentile(&self) -> f64 {
        self.percentile
    }

    /// The histogram of observed values.
    pub fn histogram(&self) -> &Histogram {
        &self.hist
    }
}

impl Default for Percentile {
    /// `percentile` = [`DEFAULT_PERCENTILE`], `bins` = [`DEFAULT_BINS`].
    fn default() -> Self {
        Self { percentile: DEFAULT_PERCENTILE, hist: Histogram::new_unchecked(DEFAULT_BINS) }
    }
}

impl Observer for Percentile {
    fn name(&self) -> &'static str {
        "percentile"
    }

    fn observe(&mut self, values: &[f32]) -> Result<()> {
        self.hist.add_named::<false>(values, || "percentile observer".into())
    }

    fn count(&self) -> u64 {
        self.hist.total()
    }

    fn min_max(&self) -> Result<(f32, f32)> {
        self.hist.min_max().ok_or_else(|| empty_error(self.name()))
    }

    fn range(&self, dtype: QuantDtype) -> Result<(f32, f32)> {
        let (min, max) = self.min_max()?;
        let q = self.percentile / 100.0;
        match dtype {
            QuantDtype::I8Symmetric => {
                let t = if self.percentile >= 100.0 {
                    abs_range(min, max).1
                } else {
                    self.hist.abs_quantile(q).ok_or_else(|| empty_error(self.name()))?
                };
                Ok((-t, t))
            }
            QuantDtype::U8Affine => {
                if self.percentile >= 100.0 {
                    return Ok((min, max));
                }
                let lo = self.hist.quantile(1.0 - q).ok_or_else(|| empty_error(self.name()))?;
                let hi = self.hist.quantile(q).ok_or_else(|| empty_error(self.name()))?;
                Ok((lo.min(hi), hi.max(lo)))
            }
        }
    }

    fn fresh(&self) -> Box<dyn Observer> {
        Box::new(Self { percentile: self.percentile, hist: Histogram::new_unchecked(self.hist.bins()) })
    }
}

// ------------------------------------------------------------------------------------------
// MSE.

/// Picks the clipping range that minimizes the expected squared quantize→dequantize error of the
/// observed distribution.
///
/// The error of a candidate is computed from the [`Histogram`], treating each bin's count as
/// spread uniformly over the bin (clamped to the exact data range) and integrating `(x − fq(x))²`
/// exactly over the quantization cells of the real dtype grid: the scale and zero point come from
/// [`QuantDtype::params`] (the same functions the kernels use) and saturation is the kernels'
/// (`[−128, 127]` for symmetric i8, `[0, 255]` for u8), so clipped values cost their distance to
/// the edge level. This is the bin-integrated version of "bin centers weighted by counts", and
/// unlike it does not alias when bins and quantization steps have similar widths.
///
/// Search: symmetric tries `t = amax·k/steps`, `k = 1..=steps`; affine does a coordinate search
/// (alternately `hi = max·k/steps` with `lo` fixed and `lo = min·k/steps` with `hi` fixed, up
/// to 4 rounds, starting from the full range). Ties keep the wider range.
/// Defaults: `bins` = [`DEFAULT_BINS`], `steps` = [`DEFAULT_MSE_STEPS`] (100). Cost per range
/// query: `O(steps · (bins + 256))`.
// Method: MSE calibration as in ONNX Runtime / NNCF (minimize ‖x − Q(x)‖² over the clip), with
// the analytic per-bin error in the spirit of ACIQ (Banner et al. 2019, "Post training 4-bit
// quantization of convolutional networks for rapid-deployment") and torch.ao HistogramObserver.
#[derive(Clone, Debug)]
pub struct MseObserver {
    steps: usize,
    hist: Histogram,
}

impl MseObserver {
    /// A new observer with a histogram of `bins` bins (in [`MIN_BINS`]`..=`[`MAX_BINS`]) and
    /// `steps` candidates per search direction (in `1..=`[`MAX_MSE_STEPS`]).
    ///
    /// # Errors
    /// [`QuantError::InvalidConfig`] for a bin or step count out of range.
    pub fn new(bins: usize, steps: usize) -> Result<Self> {
        invalid_bins(bins, MIN_BINS)?;
        if !(1..=MAX_MSE_STEPS).contains(&steps) {
            return Err(QuantError::InvalidConfig {
                what: "steps",
                value: steps.to_string(),
                expected: format!("an integer in 1..={MAX_MSE_STEPS}"),
            });
        }
        Ok(Self { steps, hist: Histogram::new_unchecked(bins) })
    }

    /// Number of candidates per search direction.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The histogram of observed values.
    pub fn histogram(&self) -> &Histogram {
        &self.hist
    }

    /// Expected squared error (sum over the observed values) of quantizing the histogram with the
    /// clipping range `[lo, hi]` in `dtype`.
    ///
    /// # Errors
    /// [`QuantError::Empty`] if nothing was observed; [`QuantError::NonFinite`] for a non-finite
    /// range.
    pub fn expected_error(&self, lo: f32, hi: f32, dtype: QuantDtype) -> Result<f64> {
        if self.hist.total() == 0 {
            return Err(empty_error(self.name()));
        }
        expected_sq_error(&self.hist.segments(), lo, hi, dtype)
    }
}

impl Default for MseObserver {
    /// `bins` = [`DEFAULT_BINS`], `steps` = [`DEFAULT_MSE_STEPS`].
    fn default() -> Self {
        Self { steps: DEFAULT_MSE_STEPS, hist: Histogram::new_unchecked(DEFAULT_BINS) }
    }
}

/// `∫_l^h (x − r)² dx`, in a form without cancellation.
fn sq_integral(l: f64, h: f64, r: f64) -> f64 {
    let (a, b) = (l - r, h - r);
    (h - l) * (a * a + a * b + b * b) / 3.0
}

/// Sum over `segments` (`(lo, hi, count)`, count spread uniformly) of the squared error of
/// fake-quantizing with the parameters of `[lo, hi]` in `dtype`.
fn expected_sq_error(segments: &[(f64, f64, f64)], lo: f32, hi: f32, dtype: QuantDtype) -> Result<f64> {
    let p = dtype.params(lo, hi)?;
    let (cmin, cmax) = match dtype {
        QuantDtype::I8Symmetric => (-128i64, 127i64),
        QuantDtype::U8Affine => (0, 255),
    };
    let s = f64::from(p.scale);
    let inv = 1.0 / s;
    let zp = i64::from(p.zero_point);
    // Clamp before the integer conversion so that huge ratios cannot overflow.
    let code = |x: f64| ((x * inv).round().clamp(-1e12, 1e12) as i64 + zp).clamp(cmin, cmax);
    let level = |c: i64| s * (c - zp) as f64;
    let mut err = 0.0;
    for &(a, b, n) in segments {
        let (ca, cb) = (code(a), code(b));
        if b <= a || ca == cb {
            // One quantization cell (or a point): the error of a uniform segment about one level.
            let r = level(ca);
            err += if b > a { n * sq_integral(a, b, r) / (b - a) } else { n * (a - r) * (a - r) };
            continue;
        }
        let mut seg = 0.0;
        for c in ca..=cb {
            let l = if c == ca { a } else { s * (c as f64 - 0.5 - zp as f64) };
            let h = if c == cb { b } else { s * (c as f64 + 0.5 - zp as f64) };
            if h > l {
                seg += sq_integral(l, h, level(c));
            }
        }
        err += n * seg / (b - a);
    }
    Ok(err)
}

impl Observer for MseObserver {
    fn name(&self) -> &'static str {
        "mse"
    }

    fn observe(&mut self, values: &[f32]) -> Result<()> {
        self.hist.add_named::<false>(values, || "mse observer".into())
    }

    fn count(&self) -> u64 {
        self.hist.total()
    }

    fn min_max(&self) -> Result<(f32, f32)> {
        self.hist.min_max().ok_or_else(|| empty_error(self.name()))
    }

    fn range(&self, dtype: QuantDtype) -> Result<(f32, f32)> {
        let (min, max) = self.min_max()?;
        let segs = self.hist.segments();
        let steps = self.steps;
        // Better than `best` by more than rounding noise (ties keep the wider range).
        let better = |e: f64, best: f64| e < best - 1e-12 * best.abs();
        match dtype {
            QuantDtype::I8Symmetric => {
                let amax = abs_range(min, max).1;
                if amax == 0.0 {
                    return Ok((0.0, 0.0));
                }
                let mut best = (amax, expected_sq_error(&segs, -amax, amax, dtype)?);
                for k in (1..steps).rev() {
                    let t = (f64::from(amax) * k as f64 / steps as f64) as f32;
                    let e = expected_sq_error(&segs, -t, t, dtype)?;
                    if better(e, best.1) {
                        best = (t, e);
                    }
                }
                Ok((-best.0, best.0))
            }
            QuantDtype::U8Affine => {
                let (mut lo, mut hi) = (min, max);
                let mut best = expected_sq_error(&segs, lo, hi, dtype)?;
                let cand = |end: f32, k: usize| (f64::from(end) * k as f64 / steps as f64) as f32;
                for _round in 0..4 {
                    let before = (lo, hi);
                    // Only an end on the far side of 0 can be clipped: the scheme widens to 0.
                    if max > 0.0 {
                        for k in (1..=steps).rev() {
                            let h = cand(max, k).max(lo);
                            let e = expected_sq_error(&segs, lo, h, dtype)?;
                            if better(e, best) {
                                (hi, best) = (h, e);
                            }
                        }
                    }
                    if min < 0.0 {
                        for k in (1..=steps).rev() {
                            let l = cand(min, k).min(hi);
                            let e = expected_sq_error(&segs, l, hi, dtype)?;
                            if better(e, best) {
                                (lo, best) = (l, e);
                            }
                        }
                    }
                    if (lo, hi) == before {
                        break;
                    }
                }
                Ok((lo, hi))
            }
        }
    }

    fn fresh(&self) -> Box<dyn Observer> {
        Box::new(Self { steps: self.steps, hist: Histogram::new_unchecked(self.hist.bins()) })
    }
}

// ------------------------------------------------------------------------------------------
// Entropy (KL divergence).

/// Largest number of |x| bins the KL search runs on; finer histograms are merged (exactly, by an
/// integer factor) down to at most this many, as TensorRT's calibrator uses 2048.
const MAX_ENTROPY_SEARCH_BINS: usize = 2048;
/// Smoothing of empty quantized bins under P's support: `q = ε·p` (see [`EntropyObserver`]).
const KL_EPS: f64 = 1e-4;

/// TensorRT-style entropy calibration: picks the threshold `t` on `|x|` that minimizes the KL
/// divergence between the observed distribution and its quantized version.
///
/// For each candidate `i` (from the number of quantized levels `L` up to the number of used |x|
/// bins): `P` = the first `i` bins with all counts beyond folded into bin `i − 1`, `Q` = the first
/// `i` bins merged into `L` levels (bin `j` goes to level `⌊j·L/i⌋`) and spread back evenly over the
/// bins where `P` is non-zero (zero bins stay zero); the candidate costs `KL(P‖Q)`. Where `Q` is
/// empty under `P`'s support (outliers folded into an empty last level, which the reference code
/// scores as infinite or smooths), `q` is taken as `ε·p` with `ε = 1e-4`, so the candidate pays
/// `p·ln(1/ε)` for the mass it cannot represent. The threshold is the upper edge
/// `i·w` of the best candidate (the largest among ties), capped at `max|x|`. Prefix sums make each
/// candidate `O(L)`.
///
/// `L = 128` (the levels of one sign of int8) except for [`QuantDtype::U8Affine`] with data of one
/// sign, where u8 spends all 256 levels on `[0, t]`. Ranges: `(−t, t)` for
/// [`QuantDtype::I8Symmetric`]; `(max(min, −t), min(max, t))` for [`QuantDtype::U8Affine`], i.e.
/// the same magnitude threshold applied to both sides but never extending past the observed data
/// (for non-negative data the lower end is the data's min, which the scheme widens to 0).
///
/// Default `bins` = [`DEFAULT_BINS`] (2048) bins of `|x|`; at least [`MIN_ENTROPY_BINS`].
/// Histograms with more than 2048 used bins are merged down to at most 2048 for the search.
/// If at most `L` bins are used, the histogram is coarser than the int8 grid and the
/// threshold is `max|x|` (no clipping).
// Method: S. Migacz, "8-bit Inference with TensorRT" (GTC 2017); the KL search as in the
// MXNet / TVM calibration scripts and NVIDIA pytorch-quantization's `_compute_amax_entropy`.
#[derive(Clone, Debug)]
pub struct EntropyObserver {
    hist: Histogram,
    min_max: Option<(f32, f32)>,
}

impl EntropyObserver {
    /// A new observer with a histogram of `bins` bins of `|x|` (in
    /// [`MIN_ENTROPY_BINS`]`..=`[`MAX_BINS`]).
    ///
    /// # Errors
    /// [`QuantError::InvalidConfig`] for a bin count out of range.
    pub fn new(bins: usize) -> Result<Self> {
        invalid_bins(bins, MIN_ENTROPY_BINS)?;
        Ok(Self { hist: Histogram::new_unchecked(bins), min_max: None })
    }

    /// The histogram of observed magnitudes `|x|`.
    pub fn histogram(&self) -> &Histogram {
        &self.hist
    }

    /// The KL-optimal magnitude threshold `t` (in `(0, max|x|]`, or 0 for all-zero data) for
    /// `levels` quantized levels.
    fn threshold(&self, levels: usize) -> Result<f32> {
        let (_, amax) = self.hist.min_max().ok_or_else(|| empty_error(self.name()))?;
        if amax == 0.0 {
            return Ok(0.0);
        }
        // |x| >= 0 and the window includes 0, so bin 0 starts at 0.
        debug_assert_eq!(self.hist.base, 0);
        let counts = self.hist.counts();
        let used = counts.iter().rposition(|&c| c > 0).map_or(1, |i| i + 1);
        let factor = used.div_ceil(MAX_ENTROPY_SEARCH_BINS);
        let hist: Vec<f64> = counts[..used].chunks(factor).map(|c| c.iter().sum::<u64>() as f64).collect();
        let w = self.hist.bin_width() * factor as f64;
        let n = hist.len();
        if n <= levels {
            return Ok(amax);
        }
        Ok(kl_best_index(&hist, levels).map_or(amax, |i| ((i as f64 * w) as f32).min(amax)))
    }
}

/// The candidate bin count `i` in `levels..=hist.len()` with the smallest KL(P‖Q) (largest among
/// ties); `None` if `hist` is shorter than `levels` or empty.
fn kl_best_index(hist: &[f64], levels: usize) -> Option<usize> {
    let n = hist.len();
    let total: f64 = hist.iter().sum();
    if n < levels || levels == 0 || total <= 0.0 {
        return None;
    }
    // Prefix sums: mass, number of non-zero bins, and Σ p·ln p with p = count / total.
    let mut mass = vec![0f64; n + 1];
    let mut nonzero = vec![0usize; n + 1];
    let mut plogp = vec![0f64; n + 1];
    for (j, &c) in hist.iter().enumerate() {
        mass[j + 1] = mass[j] + c;
        nonzero[j + 1] = nonzero[j] + usize::from(c > 0.0);
        let p = c / total;
        plogp[j + 1] = plogp[j] + if c > 0.0 { p * p.ln() } else { 0.0 };
    }
    let ln_eps = KL_EPS.ln();
    let mut best: Option<(usize, f64)> = None;
    for i in levels..=n {
        let tail = total - mass[i];
        let last = hist[i - 1] + tail; // P[i − 1], outliers folded in.
        let q_total = mass[i]; // Q is built from the unfolded bins.
        // Σ p ln p over P.
        let mut kl = plogp[i - 1] + if last > 0.0 { (last / total) * (last / total).ln() } else { 0.0 };
        // − Σ p ln q, level by level; level l covers bins [ceil(l·i/L), ceil((l+1)·i/L)).
        let start = |l: usize| (l * i).div_ceil(levels);
        for l in 0..levels {
            let (a, b) = (start(l), start(l + 1));
            let is_last = l == levels - 1;
            let s = mass[b] - mass[a];
            let (p_mass, support) = if is_last {
                // Bin i − 1 belongs to the last level; use P's value and non-zero mask for it.
                let inner = mass[i - 1] - mass[a];
                let nz = nonzero[i - 1] - nonzero[a] + usize::from(last > 0.0);
                (inner + last, nz)
            } else {
                (s, nonzero[b] - nonzero[a])
            };
            if p_mass <= 0.0 {
                continue;
            }
            let p = p_mass / total;
            if s > 0.0 && q_total > 0.0 {
                kl -= p * (s / (support as f64 * q_total)).ln();
            } else {
                // Q is empty where P has mass (outliers folded into an empty last level): smooth
                // q to ε·p, so the candidate pays p·ln(1/ε) for the mass it cannot represent.
                kl -= p * (ln_eps + p.ln());
            }
        }
        if best.is_none_or(|(_, b)| kl <= b + 1e-12 * (1.0 + b.abs())) {
            best = Some((i, kl));
        }
    }
    best.map(|(i, _)| i)
}

impl Default for EntropyObserver {
    /// `bins` = [`DEFAULT_BINS`].
    fn default() -> Self {
        Self { hist: Histogram::new_unchecked(DEFAULT_BINS), min_max: None }
    }
}

impl Observer for EntropyObserver {
    fn name(&self) -> &'static str {
        "entropy"
    }

    fn observe(&mut self, values: &[f32]) -> Result<()> {
        let Some((lo, hi)) = scan(values, || "entropy observer".into())? else { return Ok(()) };
        self.hist.add_named::<true>(values, || "entropy observer".into())?;
        self.min_max = Some(match self.min_max {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
        Ok(())
    }

    fn count(&self) -> u64 {
        self.hist.total()
    }

    fn min_max(&self) -> Result<(f32, f32)> {
        self.min_max.ok_or_else(|| empty_error(self.name()))
    }

    fn range(&self, dtype: QuantDtype) -> Result<(f32, f32)> {
        let (min, max) = self.min_max()?;
        match dtype {
            QuantDtype::I8Symmetric => {
                let t = self.threshold(128)?;
                Ok((-t, t))
            }
            QuantDtype::U8Affine => {
                let levels = if min >= 0.0 || max <= 0.0 { 256 } else { 128 };
                let t = self.threshold(levels)?;
                Ok((min.max(-t), max.min(t)))
            }
        }
    }

    fn fresh(&self) -> Box<dyn Observer> {
        Box::new(Self { hist: Histogram::new_unchecked(self.hist.bins()), min_max: None })
    }
}

// ------------------------------------------------------------------------------------------
// Per channel.

/// One observer per channel of row-major `[rows, channels]` data (per-channel activation or
/// weight ranges), all made from one prototype's settings.
#[derive(Debug)]
pub struct PerChannel {
    observers: Vec<Box<dyn Observer>>,
    /// Reused column-major copy of the last batch (no per-batch allocation once grown).
    scratch: Vec<f32>,
}

impl PerChannel {
    /// `channels` fresh observers with `proto`'s settings (`proto`'s data is not copied).
    pub fn new(proto: &dyn Observer, channels: usize) -> Self {
        Self { observers: (0..channels).map(|_| proto.fresh()).collect(), scratch: Vec::new() }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.observers.len()
    }

    /// The observer of channel `c`, if any.
    pub fn channel(&self, c: usize) -> Option<&dyn Observer> {
        self.observers.get(c).map(|o| o.as_ref())
    }

    /// All channel observers, in channel order.
    pub fn observers(&self) -> &[Box<dyn Observer>] {
        &self.observers
    }

    /// Number of values each channel has seen (the same for all channels).
    pub fn count(&self) -> u64 {
        self.observers.first().map_or(0, |o| o.count())
    }

    /// Feeds row-major `[rows, channels]` data: column `c` goes to channel `c`'s observer.
    ///
    /// # Errors
    /// [`QuantError::Shape`] if `channels` differs from [`Self::channels`], is 0, or does not
    /// divide `values.len()`; [`QuantError::NonFinite`] (flat index into `values`) for NaN / ±Inf.
    /// On error no channel is changed. Empty `values` is a no-op.
    pub fn observe_rows(&mut self, values: &[f32], channels: usize) -> Result<()> {
        if channels != self.observers.len() || channels == 0 {
            return Err(QuantError::Shape {
                what: "per-channel observer input".into(),
                expected: format!("{} channels (the observer's channel count, > 0)", self.observers.len()),
                actual: format!("{channels} channels"),
            });
        }
        if !values.len().is_multiple_of(channels) {
            return Err(QuantError::Shape {
                what: "per-channel observer input".into(),
                expected: format!("[rows, {channels}] row-major data (a multiple of {channels} values)"),
                actual: format!("{} values", values.len()),
            });
        }
        if values.is_empty() {
            return Ok(());
        }
        let name = self.observers[0].name();
        check_finite(|| format!("per-channel {name} observer"), values)?;
        let rows = values.len() / channels;
        self.scratch.clear();
        self.scratch.resize(values.len(), 0.0);
        for (r, row) in values.chunks_exact(channels).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                self.scratch[c * rows + r] = v;
            }
        }
        for (obs, col) in self.observers.iter_mut().zip(self.scratch.chunks_exact(rows)) {
            obs.observe(col)?;
        }
        Ok(())
    }

    /// Each channel's clipping range for `dtype`, in channel order.
    ///
    /// # Errors
    /// [`QuantError::Empty`] if nothing was observed (or there are no channels).
    pub fn ranges(&self, dtype: QuantDtype) -> Result<Vec<(f32, f32)>> {
        if self.observers.is_empty() {
            return Err(QuantError::Empty {
                what: "per-channel observer".into(),
                expected: "at least one channel".into(),
            });
        }
        self.observers.iter().map(|o| o.range(dtype)).collect()
    }
}

// ------------------------------------------------------------------------------------------
// Config.

/// Which observer to calibrate with, and its settings: the serde-able form users put in their
/// configs. [`ObserverConfig::build`] validates it and makes the observer.
///
/// Default: [`ObserverConfig::MinMax`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub enum ObserverConfig {
    /// [`MinMax`].
    #[default]
    MinMax,
    /// [`MovingAverageMinMax`].
    MovingAverageMinMax {
        /// Weight of each new batch, in `(0, 1]` (torch: 0.01).
        momentum: f32,
    },
    /// [`Percentile`].
    Percentile {
        /// Percentile in `(50, 100]` (default 99.99).
        percentile: f64,
        /// Histogram bins, in `16..=1048576` (default 2048).
        bins: usize,
    },
    /// [`MseObserver`].
    Mse {
        /// Histogram bins, in `16..=1048576` (default 2048).
        bins: usize,
        /// Candidates per search direction, in `1..=100000` (default 100).
        steps: usize,
    },
    /// [`EntropyObserver`].
    Entropy {
        /// Histogram bins of |x|, in `256..=1048576` (default 2048).
        bins: usize,
    },
}

impl ObserverConfig {
    /// [`ObserverConfig::MinMax`].
    pub fn min_max() -> Self {
        Self::MinMax
    }

    /// [`ObserverConfig::MovingAverageMinMax`] with the given momentum.
    pub fn moving_average(momentum: f32) -> Self {
        Self::MovingAverageMinMax { momentum }
    }

    /// [`ObserverConfig::Percentile`] with the given percentile and [`DEFAULT_BINS`] bins.
    pub fn percentile(percentile: f64) -> Self {
        Self::Percentile { percentile, bins: DEFAULT_BINS }
    }

    /// [`ObserverConfig::Mse`] with [`DEFAULT_BINS`] bins and [`DEFAULT_MSE_STEPS`] steps.
    pub fn mse() -> Self {
        Self::Mse { bins: DEFAULT_BINS, steps: DEFAULT_MSE_STEPS }
    }

    /// [`ObserverConfig::Entropy`] with [`DEFAULT_BINS`] bins.
    pub fn entropy() -> Self {
        Self::Entropy { bins: DEFAULT_BINS }
    }

    /// The observer's short name (as [`Observer::name`]).
    pub fn name(&self) -> &'static str {
        match self {
            Self::MinMax => "minmax",
            Self::MovingAverageMinMax { .. } => "moving_average_minmax",
            Self::Percentile { .. } => "percentile",
            Self::Mse { .. } => "mse",
            Self::Entropy { .. } => "entropy",
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`QuantError::InvalidConfig`] naming the setting and its valid range.
    pub fn validate(&self) -> Result<()> {
        self.build().map(|_| ())
    }

    /// A fresh observer with these settings.
    ///
    /// # Errors
    /// [`QuantError::InvalidConfig`] naming the setting and its valid range.
    pub fn build(&self) -> Result<Box<dyn Observer>> {
        Ok(match *self {
            Self::MinMax => Box::new(MinMax::new()),
            Self::MovingAverageMinMax { momentum } => Box::new(MovingAverageMinMax::new(momentum)?),
            Self::Percentile { percentile, bins } => Box::new(Percentile::new(percentile, bins)?),
            Self::Mse { bins, steps } => Box::new(MseObserver::new(bins, steps)?),
            Self::Entropy { bins } => Box::new(EntropyObserver::new(bins)?),
        })
    }
}

// ------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::fake_quantize_value;
    use proptest::prelude::*;

    /// Tiny deterministic generator (Numerical Recipes LCG), uniform in [0, 1).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn laplace(&mut self) -> f32 {
            let u = self.next() - 0.5;
            (-u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()) as f32
        }
        fn gauss(&mut self) -> f32 {
            let (u, v) = (self.next().max(1e-300), self.next());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        }
    }

    fn all_configs() -> Vec<ObserverConfig> {
        vec![
            ObserverConfig::min_max(),
            ObserverConfig::moving_average(0.1),
            ObserverConfig::percentile(99.9),
            ObserverConfig::Percentile { percentile: 100.0, bins: 64 },
            ObserverConfig::Mse { bins: 256, steps: 20 },
            ObserverConfig::mse(),
            ObserverConfig::Entropy { bins: 256 },
            ObserverConfig::entropy(),
        ]
    }

    const DTYPES: [QuantDtype; 2] = [QuantDtype::I8Symmetric, QuantDtype::U8Affine];

    fn raw_mse(data: &[f32], (lo, hi): (f32, f32), dtype: QuantDtype) -> f64 {
        let p = dtype.params(lo, hi).unwrap();
        data.iter().map(|&x| f64::from(x - fake_quantize_value(x, p, dtype)).powi(2)).sum::<f64>() / data.len() as f64
    }

    #[test]
    fn minmax_hand_worked() {
        let mut o = MinMax::new();
        o.observe(&[1.0, -2.0, 0.5]).unwrap();
        o.observe(&[]).unwrap();
        o.observe(&[3.0, 0.0]).unwrap();
        assert_eq!(o.count(), 5);
        assert_eq!(o.min_max().unwrap(), (-2.0, 3.0));
        assert_eq!(o.range(QuantDtype::I8Symmetric).unwrap(), (-2.0, 3.0));
        assert_eq!(o.range(QuantDtype::U8Affine).unwrap(), (-2.0, 3.0));
        // Longer than one lane chunk, extremes in the remainder.
        let mut v: Vec<f32> = (0..37).map(|i| i as f32 * 0.25).collect();
        v[36] = -7.0;
        let mut o = MinMax::new();
        o.observe(&v).unwrap();
        assert_eq!(o.min_max().unwrap(), (-7.0, 8.75));
    }

    #[test]
    fn moving_average_hand_worked() {
        let mut o = MovingAverageMinMax::new(0.5).unwrap();
        o.observe(&[1.0, 2.0]).unwrap();
        assert_eq!(o.range(QuantDtype::U8Affine).unwrap(), (1.0, 2.0));
        o.observe(&[-3.0, 6.0]).unwrap();
        // min = 1 + 0.5·(−3 − 1) = −1; max = 2 + 0.5·(6 − 2) = 4.
        assert_eq!(o.range(QuantDtype::U8Affine).unwrap(), (-1.0, 4.0));
        assert_eq!(o.min_max().unwrap(), (-3.0, 6.0));
        o.observe(&[0.0, 0.0, 0.0]).unwrap();
        // min = −1 + 0.5·(0 + 1) = −0.5; max = 4 + 0.5·(0 − 4) = 2.
        assert_eq!(o.range(QuantDtype::I8Symmetric).unwrap(), (-0.5, 2.0));
        assert_eq!(o.count(), 7);

        let mut d = MovingAverageMinMax::default();
        assert_eq!(d.momentum(), 0.01);
        d.observe(&[0.0, 10.0]).unwrap();
        d.observe(&[0.0, 110.0]).unwrap();
        assert!((d.range(QuantDtype::U8Affine).unwrap().1 - 11.0).abs() < 1e-5);

        for bad in [0.0, -0.1, 1.5, f32::NAN, f32::INFINITY] {
            let e = MovingAverageMinMax::new(bad).unwrap_err();
            assert!(matches!(e, QuantError::InvalidConfig { what: "momentum", .. }), "{e}");
            assert!(e.to_string().contains("(0, 1]"), "{e}");
        }
        assert!(MovingAverageMinMax::new(1.0).is_ok());
    }

    #[test]
    fn moving_average_extreme_values_do_not_overflow() {
        let mut o = MovingAverageMinMax::new(0.5).unwrap();
        o.observe(&[-f32::MAX]).unwrap();
        o.observe(&[f32::MAX]).unwrap();
        let (lo, hi) = o.range(QuantDtype::U8Affine).unwrap();
        assert!(lo.is_finite() && hi.is_finite() && lo <= hi);
    }

    #[test]
    fn percentile_excludes_outliers() {
        let mut data: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        data.extend([1e6, 2e6, -3e6]);
        for bins in [2048, 1 << 16] {
            let mut o = Percentile::new(99.9, bins).unwrap();
            for chunk in data.chunks(999) {
                o.observe(chunk).unwrap();
            }
            assert_eq!(o.count(), 10_003);
            assert_eq!(o.min_max().unwrap(), (-3e6, 2e6));
            let (lo, hi) = o.range(QuantDtype::U8Affine).unwrap();
            // Accuracy: one bin width (range 5e6 over at least bins/2 bins).
            let tol = 2.0 * 5e6 / bins as f32 + 1.0;
            assert!((lo - 10.0).abs() <= tol, "lo {lo} (bins {bins})");
            assert!((hi - 9990.0).abs() <= tol, "hi {hi} (bins {bins})");
            assert!(hi < 1e5 && lo > -1e5);
            let (a, b) = o.range(QuantDtype::I8Symmetric).unwrap();
            assert_eq!(a, -b);
            assert!((b - 9990.0).abs() <= tol, "t {b} (bins {bins})");
        }
        // p = 100 is exact.
        let mut o = Percentile::new(100.0, 64).unwrap();
        o.observe(&data).unwrap();
        assert_eq!(o.range(QuantDtype::U8Affine).unwrap(), (-3e6, 2e6));
        assert_eq!(o.range(QuantDtype::I8Symmetric).unwrap(), (-3e6, 3e6));
    }

    #[test]
    fn percentile_validation() {
        for p in [50.0, 10.0, 100.1, f64::NAN] {
            let e = Percentile::new(p, 2048).unwrap_err();
            assert!(e.to_string().contains("(50, 100]"), "{e}");
        }
        for bins in [0, 15, (1 << 20) + 1] {
            let e = Percentile::new(99.0, bins).unwrap_err();
            assert!(e.to_string().contains("16..=1048576"), "{e}");
        }
        assert!(Percentile::new(50.001, 16).is_ok());
    }

    #[test]
    fn mse_clips_laplacian_outlier_and_beats_minmax() {
        let mut rng = Lcg(7);
        let mut data: Vec<f32> = (0..1_000_000).map(|_| rng.laplace()).collect();
        data[12_345] = 40.0;
        let amax = data.iter().fold(0f32, |a, &b| a.max(b.abs()));
        assert_eq!(amax, 40.0);
        let mut o = MseObserver::default();
        let mut mm = MinMax::new();
        for chunk in data.chunks(65_536) {
            o.observe(chunk).unwrap();
            mm.observe(chunk).unwrap();
        }
        for dtype in DTYPES {
            let r = o.range(dtype).unwrap();
            let r_mm = mm.range(dtype).unwrap();
            assert!(r.1 < 0.5 * amax, "{dtype:?}: clip {r:?} should be well below amax {amax}");
            assert!(r.1 > 5.0, "{dtype:?}: clip {r:?} is implausibly small");
            let (e, e_mm) = (raw_mse(&data, r, dtype), raw_mse(&data, r_mm, dtype));
            assert!(e < 0.8 * e_mm, "{dtype:?}: mse {e} vs minmax {e_mm}");
            // The histogram estimate tracks the real error.
            let est = o.expected_error(r.0, r.1, dtype).unwrap() / data.len() as f64;
            assert!((est - e).abs() < 0.2 * e, "{dtype:?}: estimate {est} vs {e}");
        }
        let (lo, hi) = o.range(QuantDtype::I8Symmetric).unwrap();
        assert_eq!(lo, -hi);
    }

    #[test]
    fn mse_keeps_uniform_range() {
        // Uniform data: clipping only hurts, so the search keeps (nearly) the full range.
        let data: Vec<f32> = (0..20_001).map(|i| i as f32 / 10_000.0 - 1.0).collect();
        let mut o = MseObserver::default();
        o.observe(&data).unwrap();
        let (_, t) = o.range(QuantDtype::I8Symmetric).unwrap();
        assert!(t >= 0.98, "{t}");
        let (lo, hi) = o.range(QuantDtype::U8Affine).unwrap();
        assert!(lo <= -0.98 && hi >= 0.98, "{lo} {hi}");
    }

    #[test]
    fn mse_validation() {
        assert!(MseObserver::new(2048, 0).unwrap_err().to_string().contains("1..=100000"));
        assert!(MseObserver::new(8, 10).unwrap_err().to_string().contains("16..=1048576"));
    }

    #[test]
    fn entropy_threshold_gaussian() {
        let mut rng = Lcg(11);
        let data: Vec<f32> = (0..200_000).map(|_| rng.gauss()).collect();
        let amax = data.iter().fold(0f32, |a, &b| a.max(b.abs()));
        let mut o = EntropyObserver::default();
        for chunk in data.chunks(10_000) {
            o.observe(chunk).unwrap();
        }
        let (lo, t) = o.range(QuantDtype::I8Symmetric).unwrap();
        assert_eq!(lo, -t);
        assert!(t > 0.0 && t <= amax, "t {t} amax {amax}");
        // Gaussian: the KL threshold clips the tails but keeps the bulk.
        assert!(t > 2.0 && t < amax, "t {t} amax {amax}");
        let (a, b) = o.range(QuantDtype::U8Affine).unwrap();
        assert!(a < 0.0 && b > 0.0 && -a <= amax && b <= amax, "{a} {b}");

        // With outliers the threshold stays near the bulk.
        let mut o2 = EntropyObserver::default();
        o2.observe(&data).unwrap();
        o2.observe(&[100.0, -80.0]).unwrap();
        let (_, t2) = o2.range(QuantDtype::I8Symmetric).unwrap();
        assert!(t2 < 10.0 && t2 > 1.0, "{t2}");

        // Non-negative data (ReLU-like): u8 range starts at the data's min, capped at max.
        let relu: Vec<f32> = data.iter().map(|v| v.max(0.0) + 0.5).collect();
        let mut o3 = EntropyObserver::default();
        o3.observe(&relu).unwrap();
        let (a, b) = o3.range(QuantDtype::U8Affine).unwrap();
        assert_eq!(a, 0.5);
        assert!(b > 2.0 && b <= amax + 0.5, "{b}");
    }

    #[test]
    fn entropy_kl_index_exact_on_fitting_data() {
        // Flat mass within the first 128 bins: merging equal bins loses nothing, so every
        // candidate has KL 0 and ties pick the largest threshold.
        let flat: Vec<f64> = (0..300).map(|j| if j < 128 { 5.0 } else { 0.0 }).collect();
        assert_eq!(kl_best_index(&flat, 128), Some(300));
        // Uneven mass within the first 128 bins: any merging loses information, so i = 128.
        let uneven: Vec<f64> = (0..300).map(|j| if j < 128 { 1.0 + (j % 3) as f64 } else { 0.0 }).collect();
        assert_eq!(kl_best_index(&uneven, 128), Some(128));
        // A structured bulk and one far outlier: clipping the outlier (a tiny penalty) beats
        // merging the bulk's bins 8:1 to reach it.
        let mut h = vec![0f64; 1024];
        for (j, c) in h.iter_mut().enumerate().take(100) {
            *c = if j % 2 == 0 { 1000.0 } else { 10.0 };
        }
        h[1023] = 1.0;
        assert_eq!(kl_best_index(&h, 128), Some(128));
        // A smooth bulk and a heavy tail just past a gap: KL keeps the tail.
        let mut h = vec![0f64; 400];
        for (j, c) in h.iter_mut().enumerate().take(120) {
            *c = 1000.0 - j as f64;
        }
        h[399] = 20_000.0;
        assert_eq!(kl_best_index(&h, 128), Some(400));
        assert_eq!(kl_best_index(&[0.0; 200], 128), None);
        assert_eq!(kl_best_index(&[1.0; 100], 128), None);
        assert!(EntropyObserver::new(255).unwrap_err().to_string().contains("256..=1048576"));
    }

    #[test]
    fn nan_and_inf_rejected_with_index_and_observer_unchanged() {
        for cfg in all_configs() {
            let mut o = cfg.build().unwrap();
            o.observe(&[1.0, -2.0]).unwrap();
            let before: Vec<_> = DTYPES.iter().map(|&d| o.range(d).unwrap()).collect();
            for (bad, idx) in [(f32::NAN, 3), (f32::INFINITY, 9), (f32::NEG_INFINITY, 0)] {
                let mut v = vec![5.0f32; 10];
                v[idx] = bad;
                let e = o.observe(&v).unwrap_err();
                match &e {
                    QuantError::NonFinite { what, index, .. } => {
                        assert_eq!(*index, idx, "{cfg:?}");
                        assert!(what.contains(o.name()), "{what}");
                    }
                    other => panic!("{cfg:?}: {other}"),
                }
            }
            assert_eq!(o.count(), 2, "{cfg:?}");
            assert_eq!(o.min_max().unwrap(), (-2.0, 1.0), "{cfg:?}");
            let after: Vec<_> = DTYPES.iter().map(|&d| o.range(d).unwrap()).collect();
            assert_eq!(before, after, "{cfg:?}");
        }
    }

    #[test]
    fn empty_observer_errors() {
        for cfg in all_configs() {
            let mut o = cfg.build().unwrap();
            o.observe(&[]).unwrap();
            assert_eq!(o.count(), 0);
            assert!(matches!(o.min_max(), Err(QuantError::Empty { .. })), "{cfg:?}");
            for d in DTYPES {
                let e = o.range(d).unwrap_err();
                assert!(matches!(e, QuantError::Empty { .. }), "{cfg:?}");
                assert!(e.to_string().contains(o.name()), "{e}");
            }
        }
        let h = Histogram::new(16).unwrap();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.min_max(), None);
    }

    #[test]
    fn zero_range_and_constant_data() {
        for cfg in all_configs() {
            for d in DTYPES {
                let mut o = cfg.build().unwrap();
                o.observe(&[0.0; 100]).unwrap();
                let (lo, hi) = o.range(d).unwrap();
                assert!(lo.is_finite() && hi.is_finite() && lo <= 0.0 && hi >= 0.0, "{cfg:?} {d:?}");
                assert!(d.params(lo, hi).is_ok());

                for c in [3.0f32, -3.0, 1e-30, 7e30] {
                    let mut o = cfg.build().unwrap();
                    o.observe(&[c; 50]).unwrap();
                    o.observe(&[c; 7]).unwrap();
                    let (lo, hi) = o.range(d).unwrap();
                    assert!(lo <= hi && lo.is_finite() && hi.is_finite(), "{cfg:?} {d:?} {c}: {lo} {hi}");
                    let p = d.params(lo, hi).unwrap();
                    let fq = fake_quantize_value(c, p, d);
                    // The value is inside the range (after the scheme's widening to 0) and
                    // quantizes to within half a step.
                    match d {
                        QuantDtype::U8Affine => assert!(lo <= c && c <= hi, "{cfg:?} {c}: {lo} {hi}"),
                        QuantDtype::I8Symmetric => assert!(c.abs() <= hi.abs().max(lo.abs()), "{cfg:?} {c}"),
                    }
                    assert!((fq - c).abs() <= p.scale * 0.5 + c.abs() * 1e-6, "{cfg:?} {d:?} {c}: {fq}");
                }
            }
        }
    }

    #[test]
    fn histogram_growth_keeps_counts_and_is_exact() {
        let mut rng = Lcg(3);
        let batches: Vec<Vec<f32>> = vec![
            vec![0.0; 10],
            (0..1000).map(|_| rng.next() as f32 * 0.01).collect(),
            (0..1000).map(|_| rng.gauss()).collect(),
            (0..1000).map(|_| rng.gauss() * 100.0 - 300.0).collect(),
            vec![1e5, -2.5e4],
            (0..1000).map(|_| rng.gauss() * 1e-3).collect(),
        ];
        let mut h = Histogram::new(512).unwrap();
        let mut all = Vec::new();
        for b in &batches {
            h.add(b).unwrap();
            all.extend_from_slice(b);
            assert_eq!(h.total(), all.len() as u64);
            assert_eq!(h.counts().iter().sum::<u64>(), all.len() as u64);
            // Every value sits in the bin that covers it.
            let mut once = Histogram::new(512).unwrap();
            once.add(&all).unwrap();
            assert_eq!(once.counts(), h.counts(), "sequential growth differs from one-shot");
            assert_eq!(once.bin_width(), h.bin_width());
            assert_eq!(once.first_edge(), h.first_edge());
        }
        assert_eq!(h.min_max(), Some((-2.5e4, 1e5)));
        assert!(h.first_edge() <= -2.5e4);
        assert!(h.first_edge() + h.bin_width() * 512.0 > 1e5);
        // At least half the bins are in use.
        assert!(h.bin_width() * 256.0 <= 1.25e5, "{}", h.bin_width());
        for (j, &c) in h.counts().iter().enumerate() {
            if c > 0 {
                let (a, b) = (h.bin_lower(j), h.bin_lower(j) + h.bin_width());
                let n = all.iter().filter(|&&v| f64::from(v) >= a && f64::from(v) < b).count() as u64;
                assert_eq!(n, c, "bin {j}");
            }
        }
        // Quantiles: median of the first batch's zeros etc.
        let mut q = Histogram::new(1024).unwrap();
        q.add(&(0..=1000).map(|i| i as f32).collect::<Vec<_>>()).unwrap();
        assert!((q.quantile(0.5).unwrap() - 500.0).abs() <= 1.5);
        assert_eq!(q.quantile(0.0).unwrap(), 0.0);
        assert_eq!(q.quantile(1.0).unwrap(), 1000.0);
        let mut s = Histogram::new(1024).unwrap();
        s.add(&(-1000..=1000).map(|i| i as f32).collect::<Vec<_>>()).unwrap();
        assert!((s.abs_quantile(0.5).unwrap() - 500.0).abs() <= 2.5);
        s.add_abs(&[-5000.0]).unwrap();
        assert_eq!(s.min_max(), Some((-1000.0, 5000.0)));
        assert!(s.add(&[1.0, f32::NAN]).is_err());
        assert_eq!(s.total(), 2002);
        s.clear();
        assert_eq!((s.total(), s.bins()), (0, 1024));
        assert!(Histogram::new(1).is_err());
        assert!(format!("{s:?}").contains("bins: 1024"));
    }

    #[test]
    fn histogram_extreme_magnitudes() {
        let mut h = Histogram::new(16).unwrap();
        h.add(&[f32::from_bits(1)]).unwrap(); // smallest subnormal
        h.add(&[-f32::MAX, f32::MAX]).unwrap();
        assert_eq!(h.total(), 3);
        assert_eq!(h.counts().iter().sum::<u64>(), 3);
        assert_eq!(h.quantile(1.0), Some(f32::MAX));
        assert_eq!(h.quantile(0.0), Some(-f32::MAX));
    }

    #[test]
    fn per_channel() {
        let proto = MinMax::new();
        let mut pc = PerChannel::new(&proto, 3);
        assert_eq!(pc.channels(), 3);
        // [rows = 2, channels = 3]
        pc.observe_rows(&[1.0, -2.0, 0.0, 4.0, 5.0, -6.0], 3).unwrap();
        pc.observe_rows(&[0.5, 9.0, 0.0], 3).unwrap();
        pc.observe_rows(&[], 3).unwrap();
        assert_eq!(pc.count(), 3);
        assert_eq!(pc.ranges(QuantDtype::U8Affine).unwrap(), vec![(0.5, 4.0), (-2.0, 9.0), (-6.0, 0.0)]);
        assert_eq!(pc.channel(1).unwrap().name(), "minmax");
        assert!(pc.channel(3).is_none());

        let e = pc.observe_rows(&[1.0; 6], 2).unwrap_err();
        assert!(matches!(e, QuantError::Shape { .. }), "{e}");
        let e = pc.observe_rows(&[1.0; 7], 3).unwrap_err();
        assert!(matches!(e, QuantError::Shape { .. }), "{e}");
        assert!(e.to_string().contains("7 values"), "{e}");
        let e = pc.observe_rows(&[1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0], 3).unwrap_err();
        assert!(matches!(e, QuantError::NonFinite { index: 4, .. }), "{e}");
        // Nothing changed (channel 0 would have seen 1.0 and 4.0 before the NaN of channel 1).
        assert_eq!(pc.count(), 3);
        assert_eq!(pc.ranges(QuantDtype::U8Affine).unwrap()[0], (0.5, 4.0));

        let mut empty = PerChannel::new(&proto, 0);
        assert!(matches!(empty.observe_rows(&[], 0), Err(QuantError::Shape { .. })));
        assert!(matches!(empty.ranges(QuantDtype::I8Symmetric), Err(QuantError::Empty { .. })));
        let fresh = PerChannel::new(&proto, 2);
        assert!(matches!(fresh.ranges(QuantDtype::I8Symmetric), Err(QuantError::Empty { .. })));

        // A prototype's data is not copied, its settings are.
        let mut p = Percentile::new(99.0, 64).unwrap();
        p.observe(&[1.0, 2.0]).unwrap();
        let pc = PerChannel::new(&p, 2);
        assert_eq!(pc.count(), 0);
        assert_eq!(format!("{:?}", pc.channel(0).unwrap()), format!("{:?}", Percentile::new(99.0, 64).unwrap()));
    }

    #[test]
    fn fresh_keeps_settings_and_drops_data() {
        for cfg in all_configs() {
            let mut o = cfg.build().unwrap();
            o.observe(&[1.0, 2.0, 3.0]).unwrap();
            let f = o.fresh();
            assert_eq!(f.name(), o.name());
            assert_eq!(f.name(), cfg.name());
            assert_eq!(f.count(), 0);
            assert_eq!(format!("{f:?}"), format!("{:?}", cfg.build().unwrap()));
        }
    }

    #[test]
    fn config_serde_defaults_and_validation() {
        assert_eq!(ObserverConfig::default(), ObserverConfig::MinMax);
        assert_eq!(ObserverConfig::percentile(99.99), ObserverConfig::Percentile { percentile: 99.99, bins: 2048 });
        assert_eq!(ObserverConfig::mse(), ObserverConfig::Mse { bins: 2048, steps: 100 });
        assert_eq!(ObserverConfig::entropy(), ObserverConfig::Entropy { bins: 2048 });
        for cfg in all_configs() {
            let s = serde_json::to_string(&cfg).unwrap();
            let back: ObserverConfig = serde_json::from_str(&s).unwrap();
            assert_eq!(back, cfg, "{s}");
            cfg.validate().unwrap();
        }
        let cfg: ObserverConfig = serde_json::from_str(r#"{"Percentile":{"percentile":99.5,"bins":512}}"#).unwrap();
        assert_eq!(cfg.build().unwrap().name(), "percentile");
        let bad = [
            (ObserverConfig::moving_average(0.0), "momentum"),
            (ObserverConfig::percentile(40.0), "percentile"),
            (ObserverConfig::Percentile { percentile: 99.0, bins: 4 }, "bins"),
            (ObserverConfig::Mse { bins: 1 << 21, steps: 10 }, "bins"),
            (ObserverConfig::Mse { bins: 64, steps: 0 }, "steps"),
            (ObserverConfig::Entropy { bins: 128 }, "bins"),
        ];
        for (cfg, what) in bad {
            match cfg.build().unwrap_err() {
                QuantError::InvalidConfig { what: w, expected, .. } => {
                    assert_eq!(w, what);
                    assert!(expected.contains("..=") || expected.contains(']'), "{expected}");
                }
                e => panic!("{e}"),
            }
        }
    }

    fn finite_data() -> impl Strategy<Value = Vec<Vec<f32>>> {
        let value = prop_oneof![
            -1e3f32..1e3,
            -1e30f32..1e30,
            -1e-30f32..1e-30,
            Just(0.0f32),
            Just(f32::MAX),
            Just(-f32::MAX),
            Just(f32::MIN_POSITIVE),
        ];
        prop::collection::vec(prop::collection::vec(value, 0..40), 1..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn ranges_are_finite_and_minmax_contains_data(batches in finite_data()) {
            let n: usize = batches.iter().map(Vec::len).sum();
            let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
            for b in &batches {
                for &v in b {
                    min = min.min(v);
                    max = max.max(v);
                }
            }
            for cfg in all_configs() {
                let mut o = cfg.build().unwrap();
                for b in &batches {
                    o.observe(b).unwrap();
                }
                prop_assert_eq!(o.count(), n as u64);
                for d in DTYPES {
                    if n == 0 {
                        prop_assert!(o.range(d).is_err());
                        continue;
                    }
                    let (lo, hi) = o.range(d).unwrap();
                    prop_assert!(lo.is_finite() && hi.is_finite() && lo <= hi, "{:?} {:?}: {} {}", cfg, d, lo, hi);
                    prop_assert!(d.params(lo, hi).is_ok());
                    prop_assert_eq!(o.min_max().unwrap(), (min, max));
                    if matches!(cfg, ObserverConfig::MinMax) {
                        prop_assert!(lo <= min && max <= hi);
                    }
                    if !matches!(cfg, ObserverConfig::MovingAverageMinMax { .. }) {
                        // Clipping observers never go beyond the observed magnitude.
                        let amax = min.abs().max(max.abs());
                        prop_assert!(lo >= -amax && hi <= amax, "{:?} {:?}: {} {} amax {}", cfg, d, lo, hi, amax);
                    }
                }
            }
        }
    }
}
