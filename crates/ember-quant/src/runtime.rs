//! Run-time settings of the int8 path and the host-side int8 linear kernel call.

use crate::error::{QuantError, Result};
use crate::scheme::QuantDtype;
use crate::spec::{ActivationGranularity, ActivationMode, LinearQuantSpec};
use burn::tensor::Device;
use ember_kernels::quantize::{QuantParams, quantize, quantize_rows};
use ember_kernels::{
    Activations, DynamicOptions, Epilogue, GemmOptions, Granularity, KernelId, PackedB, RowParam, WeightScales,
    dynamic_quantized_matmul, gemm,
};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads Ember's int8 kernels use (`0`, the default, means every core the
/// process may run on). Like `torch.set_num_threads`, this is process-wide; Burn's own float
/// ops keep their own (rayon) setting: [`set_cpu_threads`] sets both.
pub fn set_int8_threads(threads: usize) {
    THREADS.store(threads, Ordering::Relaxed);
}

/// Sets the thread count of all CPU work in one call: Ember's kernels ([`set_int8_threads`])
/// and Rayon's global pool, which Burn's CPU backends (Flex, NdArray) run their float ops on.
/// `0` means every core the process may run on. Call it once, early: Rayon's global pool can
/// be sized only before its first use.
///
/// # Errors
/// [`QuantError::InvalidConfig`] when Rayon's global pool already exists with another size
/// (something used it first); Ember's kernels take `threads` even then.
///
/// ```standalone_crate
/// // (Run in its own process: the pool is process-wide.)
/// ember_quant::set_cpu_threads(1).unwrap();
/// assert_eq!(ember_quant::int8_threads(), 1);
/// // Asking again for the size it has is fine; another size is a typed error.
/// ember_quant::set_cpu_threads(1).unwrap();
/// assert!(ember_quant::set_cpu_threads(64).is_err());
/// ```
pub fn set_cpu_threads(threads: usize) -> Result<()> {
    set_int8_threads(threads);
    if rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().is_ok() {
        return Ok(());
    }
    let have = rayon::current_num_threads();
    let want = if threads == 0 { std::thread::available_parallelism().map_or(have, |n| n.get()) } else { threads };
    if have == want {
        Ok(())
    } else {
        Err(QuantError::InvalidConfig {
            what: "threads",
            value: threads.to_string(),
            expected: format!(
                "the size of Rayon's global pool, which was already built with {have} threads (call \
                 set_cpu_threads before any Burn CPU op); Ember's kernels now use {threads}"
            ),
        })
    }
}

/// The current [`set_int8_threads`] value.
pub fn int8_threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// Which path an int8 layer takes on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Route {
    /// Ember's int8 kernels through the backend extension (Flex and NdArray devices without
    /// autodiff, on a CPU with a SIMD int8 kernel).
    Kernels,
    /// Dequantize the int8 weights with Burn float ops, fake-quantize the activations the same
    /// way the kernels quantize them, and matmul in f32 (every other device, autodiff devices,
    /// CPUs with only the scalar kernel).
    FloatFallback,
}

/// The route int8 layers take on `device` (see [`Int8Route`]).
pub fn int8_route(device: &Device) -> Int8Route {
    if KernelId::best() != KernelId::Scalar && cpu_device(device) {
        Int8Route::Kernels
    } else {
        Int8Route::FloatFallback
    }
}

/// Whether float `Linear`s on `device` may run Ember's f32 GEMM (`ember_kernels::sgemm`, used
/// for inputs of at most `ember_kernels::sgemm::SMALL_M` rows): Flex and NdArray devices without
/// autodiff, on a CPU with AVX2 + FMA or AVX-512. Elsewhere (and for training) they are Burn's
/// `linear`.
pub fn f32_route(device: &Device) -> bool {
    ember_kernels::fused::RowKernel::selected() != ember_kernels::fused::RowKernel::Scalar && cpu_device(device)
}

/// Whether `device` is a CPU device whose tensors Ember's kernels can read in place: Flex or
/// NdArray without autodiff (an autodiff device is a different device kind). Ember's fused CPU
/// paths (int8 and f32 linears, ember-layers' row kernels) run only there.
pub fn cpu_device(device: &Device) -> bool {
    #[allow(unreachable_patterns)]
    match device.as_dispatch() {
        #[cfg(feature = "flex")]
        burn::backend::DispatchDevice::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        burn::backend::DispatchDevice::NdArray(_) => true,
        _ => false,
    }
}

/// Everything the kernel call needs, prepared once per layer (packing happens here).
#[derive(Debug)]
pub(crate) struct Prepared {
    pub spec: LinearQuantSpec,
    pub packed: PackedB,
    pub scales: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub act: Option<QuantParams>,
    /// `1 / smooth[k]`, multiplied into the input before quantization (SmoothQuant).
    pub smooth_inv: Option<Vec<f32>>,
}

/// The error slot of one extension call (the op itself can only return a tensor).
#[derive(Debug, Default)]
pub(crate) struct OpStatus(pub Mutex<Option<QuantError>>);

impl OpStatus {
    pub fn fail(&self, e: QuantError) {
        if let Ok(mut g) = self.0.lock() {
            g.get_or_insert(e);
        }
    }
    pub fn take(&self) -> Option<QuantError> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

impl Prepared {
    fn weight_scales(&self) -> WeightScales<'_> {
        use crate::scheme::WeightGranularity as G;
        match self.spec.weight {
            G::PerTensor => WeightScales::PerTensor(self.scales[0]),
            G::PerChannel => WeightScales::PerChannel(&self.scales),
            G::PerGroup { .. } => WeightScales::PerGroup(&self.scales),
        }
    }

    /// `y[m × N] = int8(x[m × K]) · W + b` on the host. `x` is row-major.
    pub fn run(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let (k, n) = (self.spec.d_input, self.spec.d_output);
        let smoothed: Vec<f32>;
        let x = match &self.smooth_inv {
            Some(inv) => {
                smoothed = x
                    .chunks_exact(k.max(1))
                    .flat_map(|row| row.iter().zip(inv).map(|(a, b)| a * b))
                    .collect::<Vec<f32>>();
                &smoothed
            }
            None => x,
        };
        let mut out = vec![0f32; m * n];
        let gemm_opts = GemmOptions::with_threads(int8_threads());
        let ws = self.weight_scales();
        let bias = self.bias.as_deref();
        match (self.spec.mode, self.spec.activation_dtype) {
            (ActivationMode::Dynamic, QuantDtype::U8Affine) => {
                let granularity = match self.spec.activation_granularity {
                    ActivationGranularity::PerRow => Granularity::PerRow,
                    ActivationGranularity::PerTensor => Granularity::PerTensor,
                };
                dynamic_quantized_matmul(
                    x,
                    m,
                    &self.packed,
                    ws,
                    bias,
                    &mut out,
                    &DynamicOptions { gemm: gemm_opts, granularity },
                )?;
            }
            (ActivationMode::Dynamic, QuantDtype::I8Symmetric) => {
                let granularity = match self.spec.activation_granularity {
                    ActivationGranularity::PerRow => Granularity::PerRow,
                    ActivationGranularity::PerTensor => Granularity::PerTensor,
                };
                let mut q = vec![0i8; m * k];
                let mut params = vec![QuantParams { scale: 1.0, zero_point: 0 }; m];
                quantize_rows(x, m, k, granularity, &mut q, &mut params)?;
                let scales: Vec<f32> = params.iter().map(|p| p.scale).collect();
                let a = Activations::i8(&q, m, k).with_scales(RowParam::PerRow(&scales));
                gemm(&a, &self.packed, Epilogue::F32 { weight_scales: ws, bias, out: &mut out }, &gemm_opts)?;
            }
            (ActivationMode::Static, dtype) => {
                let p = self.act.ok_or_else(|| QuantError::Data {
                    what: "activation parameters".into(),
                    message: "static mode without calibrated activation parameters".into(),
                })?;
                match dtype {
                    QuantDtype::U8Affine => {
                        let mut q = vec![0u8; m * k];
                        quantize(x, p, &mut q)?;
                        let a = Activations::u8(&q, m, k, p.zero_point).with_scales(RowParam::PerTensor(p.scale));
                        gemm(&a, &self.packed, Epilogue::F32 { weight_scales: ws, bias, out: &mut out }, &gemm_opts)?;
                    }
                    QuantDtype::I8Symmetric => {
                        let mut q = vec![0i8; m * k];
                        quantize(x, p, &mut q)?;
                        let a = Activations::i8(&q, m, k).with_scales(RowParam::PerTensor(p.scale));
                        gemm(&a, &self.packed, Epilogue::F32 { weight_scales: ws, bias, out: &mut out }, &gemm_opts)?;
                    }
                }
            }
        }
        Ok(out)
    }
}
