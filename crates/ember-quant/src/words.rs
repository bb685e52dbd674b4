//! Int8 weights on devices whose kernels have no 8-bit integers.
//!
//! wgpu compiles Burn's kernels to WGSL, which has no `i8`: a kernel that reads a `DType::I8`
//! tensor (even a cast to float) fails to compile there. The tensors themselves store and read
//! back fine, so Ember keeps its canonical i8 parameters as they are and, the first time a layer
//! runs on such a device, reads its int8 table `q` (`[rows, cols]`) back once and keeps on that
//! device, per [`GpuInt8Weights`]:
//!
//! - `Words` (default): `i32` words `[rows, ceil(cols / 4)]`, value `(r, 4w + j)` in byte `j`
//!   of word `(r, w)`; every forward unpacks `q = ((word >> 8j) & 0xFF ^ 0x80) − 0x80` with
//!   Burn integer ops, then dequantizes `w = q · scale` in float. About 1 extra byte per weight.
//! - `Float`: `q` as f32 `[rows, cols]`, dequantized `w = q · scale` per forward. 4 extra bytes
//!   per weight, close to f32 speed.
//!
//! Either way the layer computes the same int8 function as on the CPU kernels (activations are
//! fake-quantized identically); only memory and speed differ. CPU devices (Flex, NdArray) never
//! use these tables. Errors reading the values back are [`QuantError::Data`] from
//! `Linear::try_forward`.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use ember_quant::{GpuInt8Weights, LinearConfig, QuantizeConfig, Quantizer, set_gpu_int8_weights};
//!
//! // On wgpu this trades memory for speed; on a CPU device it changes nothing.
//! let device = Device::flex(); // or Device::wgpu(Default::default()) with the `wgpu` feature
//! set_gpu_int8_weights(GpuInt8Weights::Float);
//! let layer = LinearConfig::new(64, 32).init(&device);
//! let (int8, _) = Quantizer::new(QuantizeConfig::new()).quantize(&layer).unwrap();
//! let x = Tensor::<2>::random([4, 64], Distribution::Default, &device);
//! assert_eq!(int8.forward(x).dims(), [4, 32]);
//! set_gpu_int8_weights(GpuInt8Weights::Words);
//! assert_eq!(ember_quant::gpu_int8_weights(), GpuInt8Weights::Words);
//! ```

use crate::error::{QuantError, Result};
use burn::module::{Param, ParamId};
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Whether Burn's kernels on `device` handle `DType::I8` tensors (the CPU backends do; CubeCL
/// devices such as wgpu may not).
pub(crate) fn i8_kernels(device: &Device) -> bool {
    #[allow(unreachable_patterns)]
    match device.clone().without_autodiff().as_dispatch() {
        #[cfg(feature = "flex")]
        burn::backend::DispatchDevice::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        burn::backend::DispatchDevice::NdArray(_) => true,
        _ => false,
    }
}

/// How int8 layers hold their weights on a device whose kernels have no i8 (wgpu), set with
/// [`set_gpu_int8_weights`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GpuInt8Weights {
    /// i32 words, four int8 values each, unpacked with integer ops in every forward: about one
    /// extra byte per weight on the device, and slower than f32 (the default: int8 is chosen
    /// for size).
    #[default]
    Words,
    /// An f32 copy of the int8 values: four extra bytes per weight, about the speed of an f32
    /// layer (the activations are still fake-quantized, so the outputs are the int8 ones).
    Float,
}

static GPU_WEIGHTS: AtomicU8 = AtomicU8::new(0);

/// Sets how int8 layers hold their weights on devices without i8 kernels (process-wide, like
/// [`set_int8_threads`](crate::set_int8_threads)). Layers check the mode at every forward: after
/// a change, each layer rebuilds its device table once (one read-back of its int8 values).
pub fn set_gpu_int8_weights(mode: GpuInt8Weights) {
    GPU_WEIGHTS.store(mode as u8, Ordering::Relaxed);
}

/// The current [`set_gpu_int8_weights`] mode.
pub fn gpu_int8_weights() -> GpuInt8Weights {
    match GPU_WEIGHTS.load(Ordering::Relaxed) {
        1 => GpuInt8Weights::Float,
        _ => GpuInt8Weights::Words,
    }
}

/// A table on a device: words, or the values as f32.
#[derive(Clone)]
enum Table {
    Words(Tensor<2, Int>),
    Float(Tensor<2>),
}

impl Table {
    fn mode(&self) -> GpuInt8Weights {
        match self {
            Table::Words(_) => GpuInt8Weights::Words,
            Table::Float(_) => GpuInt8Weights::Float,
        }
    }
}

/// One cached table: the id of the values it was built from, its device (compared together
/// with whether it is an autodiff device: Burn's device equality ignores that), the table.
type WordSlot = (ParamId, Device, Table);

/// Same device, autodiff included.
fn same_device(a: &Device, b: &Device) -> bool {
    a == b && a.is_autodiff() == b.is_autodiff()
}

/// Word tables per device, built at first use and shared by clones of a layer.
#[derive(Clone, Default)]
pub(crate) struct WordCache(Arc<Mutex<Vec<WordSlot>>>);

impl std::fmt::Debug for WordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|g| g.len()).unwrap_or(0);
        write!(f, "WordCache({n} device tables)")
    }
}

impl WordCache {
    /// The table of `values` on `device` (in the current [`GpuInt8Weights`] mode), built from
    /// the host copy at first use.
    fn table(&self, values: &Param<Tensor<2, Int>>, device: &Device) -> Result<Table> {
        let id = values.id;
        let mode = gpu_int8_weights();
        if let Ok(g) = self.0.lock()
            && let Some((_, _, t)) = g.iter().find(|(i, d, t)| *i == id && same_device(d, device) && t.mode() == mode)
        {
            return Ok(t.clone());
        }
        let [rows, cols] = values.dims();
        let host = crate::linear::host_int::<i8, 2>("quant.values", values.val())?;
        let t = match mode {
            GpuInt8Weights::Words => {
                let words = pack_words(&host, rows, cols)?;
                Table::Words(Tensor::<2, Int>::from_data(TensorData::new(words, [rows, cols.div_ceil(4)]), device))
            }
            GpuInt8Weights::Float => {
                let v: Vec<f32> = host.iter().map(|&v| v as f32).collect();
                Table::Float(Tensor::<2>::from_data(TensorData::new(v, [rows, cols]), device))
            }
        };
        if let Ok(mut g) = self.0.lock() {
            // Tables of older values (re-quantized layers) or of the other mode on this device
            // are dropped.
            g.retain(|(i, d, _)| *i == id && !same_device(d, device));
            g.push((id, device.clone(), t.clone()));
        }
        Ok(t)
    }

    /// `values` as float on `device` (`[rows, cols]`, not yet scaled).
    pub(crate) fn float_values(&self, values: &Param<Tensor<2, Int>>, device: &Device) -> Result<Tensor<2>> {
        if i8_kernels(device) {
            return Ok(values.val().to_device(device).float());
        }
        let cols = values.dims()[1];
        Ok(match self.table(values, device)? {
            Table::Words(w) => unpack_words(w, cols),
            Table::Float(f) => f,
        })
    }

    /// Rows `ids` of `values` as float on `device` (`[ids.len(), cols]`, not yet scaled).
    pub(crate) fn float_rows(
        &self,
        values: &Param<Tensor<2, Int>>,
        ids: Tensor<1, Int>,
        device: &Device,
    ) -> Result<Tensor<2>> {
        if i8_kernels(device) {
            return Ok(values.val().to_device(device).select(0, ids).float());
        }
        let cols = values.dims()[1];
        Ok(match self.table(values, device)? {
            Table::Words(w) => unpack_words(w.select(0, ids), cols),
            Table::Float(f) => f.select(0, ids),
        })
    }
}

/// Packs row-major i8 `[rows, cols]` into i32 words `[rows, ceil(cols / 4)]`: value `(r, 4w + j)`
/// is byte `j` (bits `8j..8j+8`, two's complement) of word `(r, w)`; missing tail values are 0.
pub(crate) fn pack_words(values: &[i8], rows: usize, cols: usize) -> Result<Vec<i32>> {
    if values.len() != rows * cols {
        return Err(QuantError::Data {
            what: "quant.values".into(),
            message: format!("{} values for shape [{rows}, {cols}]", values.len()),
        });
    }
    let wc = cols.div_ceil(4);
    let mut out = vec![0i32; rows * wc];
    for r in 0..rows {
        for (c, &v) in values[r * cols..(r + 1) * cols].iter().enumerate() {
            out[r * wc + c / 4] |= ((v as u8 as u32) << (8 * (c % 4))) as i32;
        }
    }
    Ok(out)
}

/// Unpacks [`pack_words`]' words `[rows, ceil(cols / 4)]` into float values `[rows, cols]` with
/// Burn integer ops (any device).
pub(crate) fn unpack_words(words: Tensor<2, Int>, cols: usize) -> Tensor<2> {
    let [rows, wc] = words.dims();
    let bytes: Vec<Tensor<2, Int>> = (0..4)
        .map(|j| {
            // Byte j, then sign extension: (b ^ 0x80) − 0x80 maps 0..=255 to −128..=127.
            words
                .clone()
                .bitwise_right_shift_scalar(8 * j)
                .bitwise_and_scalar(0xFF)
                .bitwise_xor_scalar(0x80)
                .sub_scalar(0x80)
        })
        .collect();
    Tensor::stack::<3>(bytes, 2).reshape([rows, wc * 4]).slice([0..rows, 0..cols]).float()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_every_i8_value_and_ragged_widths() {
        for (name, device) in ember_testkit::devices() {
            round_trip(name, &device);
        }
    }

    fn round_trip(name: &str, device: &Device) {
        for cols in [1usize, 3, 4, 5, 8, 130] {
            let rows = 3;
            let values: Vec<i8> = (0..rows * cols).map(|i| ((i * 37 + 11) % 256) as u8 as i8).collect();
            let words = pack_words(&values, rows, cols).unwrap();
            assert_eq!(words.len(), rows * cols.div_ceil(4));
            let t = Tensor::<2, Int>::from_data(TensorData::new(words, [rows, cols.div_ceil(4)]), device);
            let back: Vec<f32> = unpack_words(t, cols).into_data().convert::<f32>().try_into_vec().unwrap();
            let want: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            assert_eq!(back, want, "{name}: cols {cols}");
        }
        // The extremes sit in every byte position.
        let values: Vec<i8> = vec![-128, 127, -1, 0, 1, -128, 127, -127];
        let words = pack_words(&values, 1, 8).unwrap();
        let t = Tensor::<2, Int>::from_data(TensorData::new(words, [1, 2]), device);
        let back: Vec<f32> = unpack_words(t, 8).into_data().convert::<f32>().try_into_vec().unwrap();
        assert_eq!(back, values.iter().map(|&v| v as f32).collect::<Vec<_>>(), "{name}");
    }

    #[test]
    fn pack_words_rejects_a_wrong_length() {
        let err = pack_words(&[1, 2, 3], 2, 2).unwrap_err();
        assert!(err.to_string().contains("3 values for shape [2, 2]"), "{err}");
    }
}
