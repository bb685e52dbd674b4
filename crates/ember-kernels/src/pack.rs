//! Weight packing: canonical row-major i8 → the panel layout one kernel reads.
//!
//! The canonical, saved form of int8 weights is plain row-major i8 (plus scales, which this crate
//! takes at call time). Packing happens at load or first use because the layout differs per
//! kernel and so per CPU; [`PackedB::unpack`] recovers the canonical matrix exactly.

use crate::abuf::AlignedBuf;
use crate::dispatch::KernelId;
use crate::error::{KernelError, Result, check_len, mul};

/// The largest reduction length K (or weight group length) for which Ember's i32 accumulation of
/// u8·i8 products is exact, for every value of A, B and A's zero point.
///
/// Each product `(a − z_a)·b` has `|a − z_a| ≤ 255` and `|b| ≤ 128`, so `|Σ| ≤ K·32 640`, which
/// fits in i32 while `K ≤ ⌊(2³¹ − 1) / 32 640⌋ = 65 793`. The kernels accumulate `Σ a·b` and the
/// epilogue subtracts `z_a·Σ b` with wrapping i32 arithmetic, which is exact modulo 2³² and
/// therefore exact whenever the true result fits, even if the partial sums wrapped.
pub const MAX_EXACT_K: usize = 65_793;

/// Memory layout of the weight matrix handed to [`PackedB::pack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WeightLayout {
    /// `B[K × N]` row-major: K input features by N outputs (Burn's `Linear` weight,
    /// `[d_input, d_output]`).
    #[default]
    KxN,
    /// `Bᵀ[N × K]` row-major: N outputs by K inputs (PyTorch / ONNX / safetensors `nn.Linear`
    /// weight, `[out_features, in_features]`).
    NxK,
}

/// Options for [`PackedB::pack`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PackOptions {
    /// Layout of the matrix passed in.
    pub layout: WeightLayout,
    /// Per-group quantization along K: weights carry one scale per `group_size` consecutive
    /// input features and output channel. `None` means one group spanning all of K (per-tensor or
    /// per-output-channel scales).
    pub group_size: Option<usize>,
    /// Kernel to pack for; `None` uses [`KernelId::selected`].
    pub kernel: Option<KernelId>,
}

/// Where each kernel's packed layout puts things.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackSpec {
    /// Output columns per panel (a multiple of 16).
    pub nr: usize,
    /// K quads (4 bytes of K) per block; K of every group is padded to `4·qb`.
    pub qb: usize,
    /// i16 pair layout (AVX2 with weights beyond ±64) instead of i8 quads.
    pub widen: bool,
}

impl PackSpec {
    pub(crate) fn of(kernel: KernelId) -> PackSpec {
        match kernel {
            KernelId::Scalar | KernelId::AvxVnni => PackSpec { nr: 16, qb: 1, widen: false },
            KernelId::Avx2 => PackSpec { nr: 16, qb: 1, widen: true },
            KernelId::Avx512Vnni => PackSpec { nr: 64, qb: 1, widen: false },
            KernelId::Amx => PackSpec { nr: 32, qb: 16, widen: false },
        }
    }

    /// K granularity in bytes.
    pub(crate) fn kstep(&self) -> usize {
        4 * self.qb
    }
}

/// One contiguous range of K that shares a weight scale, and where it lives in packed K.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KGroup {
    /// First logical k.
    pub k0: usize,
    /// Number of logical k.
    pub len: usize,
    /// First packed K byte (a multiple of the kernel's K step).
    pub p0: usize,
    /// Packed length in bytes (`len` rounded up to the K step).
    pub plen: usize,
}

#[derive(Clone)]
pub(crate) enum PanelData {
    I8(AlignedBuf<i8>),
    I16(AlignedBuf<i16>),
}

/// Int8 weights `B[K × N]` packed once for one kernel, with the column sums the zero-point
/// correction needs.
///
/// Layout (see `KERNELS.md`): N is split into panels of `nr` columns (the last one zero-padded);
/// inside a panel, K is stored in groups of 4 bytes per column (the VNNI / AMX "quad" layout),
/// blocked so that one AMX B tile (16 quads × 16 columns) is 1 KiB contiguous. Each K group is
/// zero-padded to the kernel's K step, so padding never changes a sum.
#[derive(Clone)]
pub struct PackedB {
    kernel: KernelId,
    spec: PackSpec,
    k: usize,
    n: usize,
    group_size: Option<usize>,
    groups: Vec<KGroup>,
    kp: usize,
    npanels: usize,
    data: PanelData,
    col_sums: Vec<i32>,
    col_sums_total: Vec<i32>,
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedB")
            .field("kernel", &self.kernel.short_name())
            .field("k", &self.k)
            .field("n", &self.n)
            .field("group_size", &self.group_size)
            .field("packed_k", &self.kp)
            .finish()
    }
}

impl PackedB {
    /// Packs `b` (`K × N` or `N × K` row-major i8, see [`WeightLayout`]) for a kernel.
    ///
    /// # Errors
    /// - [`KernelError::Length`] if `b.len() != k·n`;
    /// - [`KernelError::InvalidGroupSize`] for `group_size == Some(0)`;
    /// - [`KernelError::KTooLarge`] if one group (all of K without groups) is longer than
    ///   [`MAX_EXACT_K`];
    /// - [`KernelError::KernelUnavailable`] if the requested kernel cannot run on this CPU.
    ///
    /// ```
    /// use ember_kernels::{PackedB, PackOptions};
    /// // B = [[1, 2], [3, 4], [5, 6]]: K = 3 inputs, N = 2 outputs.
    /// let b = [1i8, 2, 3, 4, 5, 6];
    /// let packed = PackedB::pack(&b, 3, 2, PackOptions::default()).unwrap();
    /// assert_eq!(packed.unpack(), b);
    /// assert_eq!(packed.col_sums(), &[9, 12]);
    /// ```
    pub fn pack(b: &[i8], k: usize, n: usize, opts: PackOptions) -> Result<PackedB> {
        let kernel = opts.kernel.unwrap_or_else(KernelId::selected).require()?;
        check_len("b", b.len(), mul(k, n)?, || format!("K = {k}, N = {n}"))?;
        let mut spec = PackSpec::of(kernel);
        // AVX2: weights within ±64 keep every `vpmaddubsw` pair sum inside i16
        // (2·255·64 = 32 640 ≤ 32 767), so the faster byte layout is exact; wider weights need
        // the i16 layout. 7-bit weights ("reduce_range" quantization) get the fast path.
        if kernel == KernelId::Avx2 && b.iter().all(|&v| (-64..=64).contains(&v)) {
            spec.widen = false;
        }
        let gs = match opts.group_size {
            Some(0) => return Err(KernelError::InvalidGroupSize(0)),
            Some(g) => g.min(k.max(1)),
            None => k.max(1),
        };
        if gs > MAX_EXACT_K {
            return Err(KernelError::KTooLarge { k: gs, max: MAX_EXACT_K });
        }
        let step = spec.kstep();
        let mut groups = Vec::new();
        let (mut k0, mut p0) = (0, 0);
        while k0 < k {
            let len = gs.min(k - k0);
            let plen = len.div_ceil(step) * step;
            groups.push(KGroup { k0, len, p0, plen });
            k0 += len;
            p0 += plen;
        }
        let kp = p0;
        let npanels = n.div_ceil(spec.nr);
        let total = mul(mul(kp, npanels)?, spec.nr)?;
        let at = |kk: usize, nn: usize| match opts.layout {
            WeightLayout::KxN => b[kk * n + nn],
            WeightLayout::NxK => b[nn * k + kk],
        };
        let mut col_sums = vec![0i32; groups.len() * n];
        for (gi, g) in groups.iter().enumerate() {
            for kk in g.k0..g.k0 + g.len {
                for nn in 0..n {
                    col_sums[gi * n + nn] += at(kk, nn) as i32;
                }
            }
        }
        let mut col_sums_total = vec![0i32; n];
        for g in 0..groups.len() {
            for nn in 0..n {
                col_sums_total[nn] = col_sums_total[nn].wrapping_add(col_sums[g * n + nn]);
            }
        }
        let data = if spec.widen {
            let mut buf = AlignedBuf::<i16>::zeroed(total);
            for g in &groups {
                for kk in 0..g.len {
                    let kpos = g.p0 + kk;
                    for nn in 0..n {
                        buf[offset_i16(&spec, kp, kpos, nn)] = at(g.k0 + kk, nn) as i16;
                    }
                }
            }
            PanelData::I16(buf)
        } else {
            let mut buf = AlignedBuf::<i8>::zeroed(total);
            for g in &groups {
                for kk in 0..g.len {
                    let kpos = g.p0 + kk;
                    for nn in 0..n {
                        buf[offset_i8(&spec, kp, kpos, nn)] = at(g.k0 + kk, nn);
                    }
                }
            }
            PanelData::I8(buf)
        };
        Ok(PackedB {
            kernel,
            spec,
            k,
            n,
            group_size: opts.group_size.map(|_| gs),
            groups,
            kp,
            npanels,
            data,
            col_sums,
            col_sums_total,
        })
    }

    /// The canonical `K × N` row-major matrix, recovered exactly from the packed panels.
    pub fn unpack(&self) -> Vec<i8> {
        let mut out = vec![0i8; self.k * self.n];
        for g in &self.groups {
            for kk in 0..g.len {
                let kpos = g.p0 + kk;
                for nn in 0..self.n {
                    out[(g.k0 + kk) * self.n + nn] = match &self.data {
                        PanelData::I8(d) => d[offset_i8(&self.spec, self.kp, kpos, nn)],
                        PanelData::I16(d) => d[offset_i16(&self.spec, self.kp, kpos, nn)] as i8,
                    };
                }
            }
        }
        out
    }

    /// Reduction length K.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of output columns N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The kernel these panels are laid out for.
    pub fn kernel(&self) -> KernelId {
        self.kernel
    }

    /// The group size along K, if the weights were packed per group.
    pub fn group_size(&self) -> Option<usize> {
        self.group_size
    }

    /// Number of K groups (1 without per-group packing, 0 when K = 0).
    pub fn num_groups(&self) -> usize {
        self.groups.len()
    }

    /// `Σ_k B[k, n]` per group and column, `[num_groups × N]` row-major.
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// Bytes of packed panel storage (including padding).
    pub fn packed_bytes(&self) -> usize {
        match &self.data {
            PanelData::I8(d) => d.len(),
            PanelData::I16(d) => d.len() * 2,
        }
    }

    /// `Σ_k B[k, n]` over all of K, per column.
    pub fn col_sums_total(&self) -> &[i32] {
        &self.col_sums_total
    }

    pub(crate) fn spec(&self) -> PackSpec {
        self.spec
    }
    pub(crate) fn groups(&self) -> &[KGroup] {
        &self.groups
    }
    /// Packed K in bytes (every group padded to the K step).
    pub(crate) fn packed_k(&self) -> usize {
        self.kp
    }
    pub(crate) fn npanels(&self) -> usize {
        self.npanels
    }
    /// Pointer to panel `p`'s data (bytes for i8 layouts, i16 elements for the widened one).
    pub(crate) fn panel_i8(&self, p: usize) -> *const i8 {
        match &self.data {
            // SAFETY: p < npanels, so the offset stays inside the buffer.
            PanelData::I8(d) => unsafe { d.as_ptr().add(p * self.kp * self.spec.nr) },
            PanelData::I16(_) => std::ptr::null(),
        }
    }
    pub(crate) fn panel_i16(&self, p: usize) -> *const i16 {
        match &self.data {
            // SAFETY: p < npanels, so the offset stays inside the buffer.
            PanelData::I16(d) => unsafe { d.as_ptr().add(p * self.kp * self.spec.nr) },
            PanelData::I8(_) => std::ptr::null(),
        }
    }
}

/// Offset of (packed k, column n) in the i8 quad layout.
#[inline]
fn offset_i8(spec: &PackSpec, kp: usize, kpos: usize, nn: usize) -> usize {
    let (p, c) = (nn / spec.nr, nn % spec.nr);
    let (q, k4) = (kpos / 4, kpos % 4);
    let (t, cc) = (c / 16, c % 16);
    p * kp * spec.nr + (q / spec.qb) * spec.nr * spec.qb * 4 + t * spec.qb * 64 + (q % spec.qb) * 64 + cc * 4 + k4
}

/// Offset of (packed k, column n) in the i16 pair layout.
#[inline]
fn offset_i16(spec: &PackSpec, kp: usize, kpos: usize, nn: usize) -> usize {
    let (p, c) = (nn / spec.nr, nn % spec.nr);
    p * kp * spec.nr + (kpos / 2) * spec.nr * 2 + c * 2 + kpos % 2
}
