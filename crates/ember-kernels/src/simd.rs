//! f32 vector registers for the register tiles of [`crate::sgemm`] and the attention kernel:
//! one trait over AVX-512, AVX2 + FMA and plain Rust, so a tile is written once with explicit
//! vectors (LLVM's auto-vectorizer does not keep tiles of more than a few vectors in
//! registers: it fell back to scalar code with spills) and compiled per instruction set.

/// One vector register's worth of f32 lanes, for the register tiles.
pub(crate) trait Lanes: Copy {
    /// Lanes per vector.
    const N: usize;
    /// Whether the instruction set has fused multiply-adds (for the scalar parts of a kernel
    /// compiled with this type: see `fused::madd`).
    const FMA: bool;
    /// # Safety
    /// The CPU has the type's features.
    unsafe fn zero() -> Self;
    /// # Safety
    /// As for [`Lanes::zero`].
    unsafe fn splat(x: f32) -> Self;
    /// # Safety
    /// `p` is valid for reads of `N` values, and as for [`Lanes::zero`].
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `p` is valid for writes of `N` values, and as for [`Lanes::zero`].
    unsafe fn store(self, p: *mut f32);
    /// `a·b + c`.
    /// # Safety
    /// As for [`Lanes::zero`].
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
}

/// Eight lanes in plain Rust (any CPU).
#[derive(Clone, Copy)]
pub(crate) struct Scalar8([f32; 8]);

impl Lanes for Scalar8 {
    const N: usize = 8;
    const FMA: bool = false;
    unsafe fn zero() -> Self {
        Scalar8([0.0; 8])
    }
    unsafe fn splat(x: f32) -> Self {
        Scalar8([x; 8])
    }
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's contract.
        Scalar8(unsafe { p.cast::<[f32; 8]>().read_unaligned() })
    }
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        let mut r = c.0;
        for ((r, &x), &y) in r.iter_mut().zip(&a.0).zip(&b.0) {
            *r += x * y;
        }
        Scalar8(r)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lanes;
    use std::arch::x86_64::*;

    /// `Lanes` for one x86 vector type: its lane count, features and intrinsics.
    macro_rules! lanes {
        ($t:ty, $n:literal, $feat:literal, $zero:ident, $set1:ident, $load:ident, $store:ident, $fma:ident) => {
            impl Lanes for $t {
                const N: usize = $n;
                const FMA: bool = true;
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn zero() -> Self {
                    $zero()
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn splat(x: f32) -> Self {
                    $set1(x)
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn load(p: *const f32) -> Self {
                    // SAFETY: the caller's contract.
                    unsafe { $load(p) }
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn store(self, p: *mut f32) {
                    // SAFETY: the caller's contract.
                    unsafe { $store(p, self) }
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
                    $fma(a, b, c)
                }
            }
        };
    }
    lanes!(
        __m256,
        8,
        "avx2,fma",
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_fmadd_ps
    );
    lanes!(
        __m512,
        16,
        "avx512f",
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_fmadd_ps
    );
}
