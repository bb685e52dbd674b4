//! Which kernels exist, which this CPU can run, and which one a call uses.
//!
//! Dispatch is decided once per process: [`KernelId::selected`] is the kernel named by the
//! `EMBER_KERNEL` environment variable if it is set (for A/B checks and for testing every kernel
//! on one machine), otherwise [`KernelId::best`], the fastest kernel the CPU supports, in the
//! order AMX-INT8 > AVX-512 VNNI > AVX-VNNI > AVX2 > scalar.

use crate::error::{KernelError, Result};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static INVOCATIONS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// How many times `kernel`'s micro-kernel loop has been entered in this process (one count per
/// block of work handed to it). Tests use it to prove that a kernel really ran.
pub fn kernel_invocations(kernel: KernelId) -> u64 {
    INVOCATIONS[kernel as usize].load(Ordering::Relaxed)
}

pub(crate) fn count_invocation(kernel: KernelId) {
    INVOCATIONS[kernel as usize].fetch_add(1, Ordering::Relaxed);
}

/// The environment variable that forces a kernel, by [`KernelId::short_name`] or
/// [`KernelId::name`] (for example `EMBER_KERNEL=scalar`).
pub const KERNEL_ENV: &str = "EMBER_KERNEL";

/// One int8 GEMM micro-kernel implementation.
///
/// Every kernel computes the same exact result (i32 accumulation, wrapping arithmetic that is
/// exact whenever the true sum fits in i32, see [`crate::MAX_EXACT_K`]); they differ in speed and
/// in the packed weight layout they read, so weights are packed for one kernel
/// ([`crate::PackedB::pack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelId {
    /// Portable scalar reference kernel; runs everywhere.
    Scalar,
    /// x86-64 AVX2. Exact in both forms: with 7-bit weights (within ±64) `vpmaddubsw`, whose
    /// i16 pair sums cannot saturate then; with wider weights u8 and i8 widened to i16 and
    /// `vpmaddwd` (half the throughput).
    Avx2,
    /// x86-64 AVX-VNNI (VEX-encoded 256-bit `vpdpbusd`), for CPUs without AVX-512.
    AvxVnni,
    /// x86-64 AVX-512 VNNI (512-bit `vpdpbusd`), 6×64 register tile.
    Avx512Vnni,
    /// x86-64 AMX-INT8 (`tdpbusd` on 16×64-byte tiles), 32×32 output blocks; rows that do not
    /// fill a tile worth using run an AVX-512 VNNI tile over the same packed layout.
    Amx,
}

impl KernelId {
    /// Every kernel this crate has, fastest last.
    pub const ALL: [KernelId; 5] =
        [KernelId::Scalar, KernelId::Avx2, KernelId::AvxVnni, KernelId::Avx512Vnni, KernelId::Amx];

    /// Full descriptive name: architecture, operand types, ISA and register tile.
    pub fn name(self) -> &'static str {
        match self {
            KernelId::Scalar => "generic-u8i8i32-scalar-1x16",
            KernelId::Avx2 => "x86_64-u8i8i32-avx2-6x16",
            KernelId::AvxVnni => "x86_64-u8i8i32-avxvnni-6x16",
            KernelId::Avx512Vnni => "x86_64-u8i8i32-avx512vnni-6x64",
            KernelId::Amx => "x86_64-u8i8i32-amx-32x32",
        }
    }

    /// Short name, as accepted by `EMBER_KERNEL` and printed in benchmark tables.
    pub fn short_name(self) -> &'static str {
        match self {
            KernelId::Scalar => "scalar",
            KernelId::Avx2 => "avx2",
            KernelId::AvxVnni => "avx-vnni",
            KernelId::Avx512Vnni => "avx512-vnni",
            KernelId::Amx => "amx",
        }
    }

    /// Whether this kernel can saturate intermediate sums. None of Ember's kernels do: the AVX2
    /// kernel uses `vpmaddubsw` (whose i16 pair sums saturate for u8 × full-range i8) only when
    /// every weight is within ±64, and i16 `vpmaddwd` otherwise.
    pub fn may_saturate(self) -> bool {
        false
    }

    /// Looks a kernel up by [`short_name`](Self::short_name) or [`name`](Self::name)
    /// (case-insensitive, surrounding spaces ignored). It does not check that this CPU can run
    /// it: see [`is_supported`](Self::is_supported).
    ///
    /// # Errors
    /// [`KernelError::KernelUnavailable`] for an unknown name; the message lists the kernels
    /// this CPU supports.
    ///
    /// ```
    /// use ember_kernels::KernelId;
    /// assert_eq!(KernelId::from_name("AVX2").unwrap(), KernelId::Avx2);
    /// assert!(KernelId::from_name("sse9").is_err());
    /// ```
    pub fn from_name(name: &str) -> Result<KernelId> {
        let wanted = name.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| k.short_name() == wanted || k.name() == wanted)
            .ok_or_else(|| KernelError::KernelUnavailable { name: name.to_string(), available: available_names() })
    }

    /// Whether this CPU (and OS) can run the kernel. For AMX this also asks Linux for permission
    /// to use tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), once.
    pub fn is_supported(self) -> bool {
        match self {
            KernelId::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            KernelId::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            KernelId::AvxVnni => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("avxvnni")
            }
            #[cfg(target_arch = "x86_64")]
            KernelId::Avx512Vnni => avx512_vnni_detected(),
            #[cfg(target_arch = "x86_64")]
            KernelId::Amx => avx512_vnni_detected() && crate::x86_64::amx::amx_available(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The kernels this CPU can run, slowest first.
    pub fn supported() -> Vec<KernelId> {
        Self::ALL.into_iter().filter(|k| k.is_supported()).collect()
    }

    /// The fastest kernel this CPU can run.
    pub fn best() -> KernelId {
        static BEST: OnceLock<KernelId> = OnceLock::new();
        *BEST.get_or_init(|| Self::supported().pop().unwrap_or(KernelId::Scalar))
    }

    /// The kernel named by `EMBER_KERNEL`, if the variable is set.
    ///
    /// # Errors
    /// [`KernelError::KernelUnavailable`] if the name is unknown or the CPU cannot run it.
    pub fn from_env() -> Result<Option<KernelId>> {
        match std::env::var(KERNEL_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                let k = Self::from_name(&v)?;
                if k.is_supported() {
                    Ok(Some(k))
                } else {
                    Err(KernelError::KernelUnavailable { name: v, available: available_names() })
                }
            }
            _ => Ok(None),
        }
    }

    /// The kernel calls use when none is given: `EMBER_KERNEL` if set and valid, else
    /// [`best`](Self::best). Decided once per process. An invalid `EMBER_KERNEL` is reported once
    /// on stderr and ignored (use [`from_env`](Self::from_env) to treat it as an error).
    pub fn selected() -> KernelId {
        static SELECTED: OnceLock<KernelId> = OnceLock::new();
        *SELECTED.get_or_init(|| match Self::from_env() {
            Ok(Some(k)) => k,
            Ok(None) => Self::best(),
            Err(e) => {
                eprintln!("ember-kernels: ignoring {KERNEL_ENV}: {e}");
                Self::best()
            }
        })
    }

    /// Like [`is_supported`](Self::is_supported) but as a `Result` naming the alternatives.
    pub(crate) fn require(self) -> Result<KernelId> {
        if self.is_supported() {
            Ok(self)
        } else {
            Err(KernelError::KernelUnavailable { name: self.short_name().to_string(), available: available_names() })
        }
    }
}

impl std::fmt::Display for KernelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn available_names() -> String {
    KernelId::supported().iter().map(|k| k.short_name()).collect::<Vec<_>>().join(", ")
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512_vnni_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}
