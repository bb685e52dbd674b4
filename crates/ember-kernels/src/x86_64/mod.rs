//! x86-64 micro-kernels, one file per ISA.

pub(crate) mod amx;
pub(crate) mod avx2;
pub(crate) mod avx512_vnni;
pub(crate) mod avx_vnni;
