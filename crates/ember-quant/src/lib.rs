//! # ember-quant: int8 quantization of Burn models, running on Ember's int8 kernels
//!
//! The core pattern: change the type of a model's linear fields from `burn::nn::Linear` to
//! [`ember_quant::Linear`](Linear) (same config fields, same `weight`/`bias` parameters and
//! paths, same `forward`), then convert the whole model in one call:
//!
//! ```
//! use burn::module::Module;
//! use burn::tensor::{Device, Tensor, activation::relu};
//! use ember_quant::{Linear, LinearConfig, QuantizeConfig, Quantizer};
//!
//! #[derive(Module, Debug)]
//! struct Mlp { fc1: Linear, fc2: Linear }            // was: burn::nn::Linear
//! impl Mlp {
//!     fn forward(&self, x: Tensor<2>) -> Tensor<2> { self.fc2.forward(relu(self.fc1.forward(x))) }
//! }
//!
//! let device = Device::flex();
//! let model = Mlp { fc1: LinearConfig::new(64, 256).init(&device), fc2: LinearConfig::new(256, 10).init(&device) };
//! let (int8, report) = Quantizer::new(QuantizeConfig::new()).quantize(&model).unwrap();
//! println!("{}", report.to_markdown());               // per-layer SQNR, sizes
//! let x = Tensor::<2>::random([8, 64], burn::tensor::Distribution::Default, &device);
//! let err = ember_quant::compare(model.forward(x.clone()), int8.forward(x)).unwrap();
//! assert!(err.cosine > 0.999);
//! ```
//!
//! On Flex and NdArray devices an int8 layer's `forward` quantizes its input (dynamically per
//! row, or with calibrated static parameters) and runs `ember-kernels` (AMX / AVX-512 VNNI /
//! AVX-VNNI / AVX2) through a Burn backend extension; elsewhere (GPU, autodiff devices) it
//! computes the same quantized math with Burn float ops ([`runtime::Int8Route`]). A *float*
//! layer on those devices (without autodiff) runs `ember_kernels::sgemm` for inputs of at most
//! `ember_kernels::sgemm::SMALL_M` rows, which streams the f32 weights in order (an f32 MiniLM
//! sentence runs 1.4-1.6× faster than on Burn's GEMM); larger inputs and training use Burn's `linear`
//! ([`runtime::f32_route`]).
//!
//! **Two routes, honestly.** A `ModuleMapper` cannot change a field's type, and Burn's own
//! quantized matmul dequantizes to f32. So a model that keeps `burn::nn::Linear` can still be
//! fake-quantized for QAT ([`qat`]) and quantized for size with Burn's `Quantizer` (or
//! [`burn_compat`]), but it computes in f32; integer speed needs Ember's `Linear`.
//!
//! ## Modules
//! - [`scheme`]: symmetric i8 / affine u8, per-tensor / per-channel / per-group weights.
//! - [`observer`]: MinMax, MovingAverageMinMax, Percentile, MSE and Entropy (KL) observers.
//! - [`calibrate`]: recording layer inputs ([`Calibrator`]) into plain [`CalibrationData`]
//!   (activation ranges, per-channel L2 norms for Wanda pruning, samples for the report).
//! - [`linear`], [`embedding`]: the drop-in layers; [`convert`]: whole-model conversion.
//! - [`select`]: which layers a pass covers (regular expressions over weight paths, Burn's
//!   `ParamGroup`); [`tag`]: how passes recognise Ember's layers by type.
//! - [`fake`], [`qat`]: fake quantization with straight-through and LSQ gradients.
//! - [`smooth`]: SmoothQuant rewrites; [`report`]: the numeric suite; [`io`]: saving and
//!   loading quantized models; [`burn_compat`]: Burn `QFloat` tensors.
//!
//! ## Feature flags
//! - `flex` (default): Burn's Flex CPU backend (with SIMD and rayon), int8 kernels on it.
//! - `ndarray` (default): Burn's NdArray backend (deprecated upstream), int8 kernels on it.
#![doc = include_str!("../GUIDE.md")]

/// Implements `enter_module` / `exit_module` for a visitor or mapper that keeps the current
/// module path in `self.$field` (a `Vec<String>`).
macro_rules! track_path {
    ($field:tt) => {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.$field.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.$field.pop();
        }
    };
}

pub mod burn_compat;
pub mod calibrate;
pub mod convert;
pub mod embedding;
pub mod error;
mod ext;
pub mod fake;
pub mod io;
pub mod linear;
pub mod observer;
pub mod qat;
pub mod report;
pub mod runtime;
pub mod scheme;
pub mod select;
pub mod smooth;
pub mod spec;
pub mod tag;
pub mod words;

pub use calibrate::{CalibrationConfig, CalibrationData, Calibrator, LayerStats};
pub use convert::{QuantizeConfig, Quantizer};
pub use embedding::{Embedding, EmbeddingConfig};
pub use ember_kernels::QuantParams;
pub use error::{QuantError, Result};
pub use io::{file_metadata, load_quantized, save_quantized, save_quantized_with};
pub use linear::{LayerQuantization, Linear, LinearConfig, LinearQuantState};
pub use observer::{Observer, ObserverConfig};
pub use report::{ErrorStats, LayerReport, QuantReport, compare};
pub use runtime::{Int8Route, cpu_device, int8_route, int8_threads, set_cpu_threads, set_int8_threads};
pub use scheme::{QuantDtype, WeightGranularity};
pub use select::selection;
pub use spec::{ActivationGranularity, ActivationMode, LinearQuantSpec};
pub use tag::LayerTag;
pub use words::{GpuInt8Weights, gpu_int8_weights, set_gpu_int8_weights};
