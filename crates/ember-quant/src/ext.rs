//! The Burn backend extension that runs Ember's int8 kernels on CPU devices.
//!
//! The op takes the input's float primitive and reads its storage in place where the backend
//! allows (Flex: a contiguous typed slice; NdArray: a standard-layout view), runs the prepared
//! kernel on the host and wraps the output vector as a tensor without another copy. Only the
//! selectors listed below are routed; callers check [`crate::runtime::int8_route`] first, so no
//! other device ever reaches it (an unlisted backend would panic inside Burn).

// NdArray is deprecated upstream but still supported by Ember for users on it.
#![allow(deprecated)]

use crate::error::QuantError;
use crate::runtime::{OpStatus, Prepared};
#[allow(unused_imports)]
use burn::backend::{Backend, backend_extension, tensor::FloatTensor};
#[allow(unused_imports)]
use burn::tensor::TensorData;

/// The int8 linear op (crate-internal: users call `Linear::forward`).
#[backend_extension(Flex: cfg(feature = "flex"), NdArray: cfg(feature = "ndarray"))]
pub(crate) trait EmberInt8Ops: Backend {
    /// `y = int8(x) · W + b` over the last dimension of `x`.
    fn ember_int8_linear(x: FloatTensor<Self>, layer: &Prepared, status: &OpStatus) -> FloatTensor<Self>;

    /// `y = x · W + b` in f32 with `ember_kernels::sgemm` (W `[K, N]` read in place).
    fn ember_f32_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: Option<&[f32]>,
        status: &OpStatus,
    ) -> FloatTensor<Self>;
}

/// `x · w + b` on the host: `x` is `[..., K]` (`dims`), `w` `[K, N]`.
#[allow(dead_code)]
fn run_f32(x: &[f32], dims: &[usize], w: &[f32], wdims: &[usize], b: Option<&[f32]>, status: &OpStatus) -> TensorData {
    let (k, n) = match wdims {
        [k, n] => (*k, *n),
        _ => (0, 0),
    };
    let m: usize = dims[..dims.len().saturating_sub(1)].iter().product();
    let mut out_dims = dims.to_vec();
    if let Some(last) = out_dims.last_mut() {
        *last = n;
    }
    let mut out = vec![0f32; m * n];
    if wdims.len() != 2 || dims.last().copied() != Some(k) {
        status.fail(QuantError::Shape {
            what: "input".into(),
            expected: format!("last dimension {k} (weight {wdims:?})"),
            actual: format!("{dims:?}"),
        });
    } else {
        let opts = ember_kernels::fused::RowOptions::with_threads(crate::runtime::int8_threads());
        if let Err(e) = ember_kernels::sgemm::sgemm(x, w, b, m, k, n, &mut out, &opts) {
            status.fail(e.into());
        }
    }
    TensorData::new(out, out_dims)
}

/// Runs `layer` over `x` (`dims` its shape, last dim = K) and returns the output data, or records
/// an error in `status` and returns an empty output of the right shape.
#[allow(dead_code)]
fn run_host(x: &[f32], dims: &[usize], layer: &Prepared, status: &OpStatus) -> TensorData {
    let k = layer.spec.d_input;
    let mut out_dims = dims.to_vec();
    let m: usize = dims[..dims.len().saturating_sub(1)].iter().product();
    if let Some(last) = out_dims.last_mut() {
        *last = layer.spec.d_output;
    }
    if dims.last().copied() != Some(k) {
        status.fail(QuantError::Shape {
            what: "input".into(),
            expected: format!("last dimension {k}"),
            actual: format!("{dims:?}"),
        });
        return TensorData::new(vec![0f32; m * layer.spec.d_output], out_dims);
    }
    match layer.run(x, m) {
        Ok(y) => TensorData::new(y, out_dims),
        Err(e) => {
            status.fail(e);
            TensorData::new(vec![0f32; m * layer.spec.d_output], out_dims)
        }
    }
}

#[cfg(feature = "flex")]
impl EmberInt8Ops for burn::backend::Flex {
    fn ember_int8_linear(x: FloatTensor<Self>, layer: &Prepared, status: &OpStatus) -> FloatTensor<Self> {
        use burn::backend::flex::FlexTensor;
        let dims = x.layout().shape().to_vec();
        if x.dtype() != burn::tensor::DType::F32 {
            status.fail(QuantError::Data {
                what: "input".into(),
                message: format!("dtype {:?}, expected F32", x.dtype()),
            });
            return x;
        }
        let data = match x.as_slice::<f32>() {
            Some(s) => run_host(s, &dims, layer, status),
            None => {
                let c = x.to_contiguous();
                let s = c.as_slice::<f32>().unwrap_or(&[]);
                run_host(s, &dims, layer, status)
            }
        };
        FlexTensor::from_data(data)
    }

    fn ember_f32_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: Option<&[f32]>,
        status: &OpStatus,
    ) -> FloatTensor<Self> {
        use burn::backend::flex::FlexTensor;
        let (dims, wdims) = (x.layout().shape().to_vec(), w.layout().shape().to_vec());
        let data = match (flex_f32(&x), flex_f32(&w)) {
            (Some(xs), Some(ws)) => run_f32(&xs, &dims, &ws, &wdims, b, status),
            _ => {
                status.fail(QuantError::Data { what: "input".into(), message: "expected F32 tensors".into() });
                return x;
            }
        };
        FlexTensor::from_data(data)
    }
}

/// The f32 values of a Flex tensor, in place when contiguous.
#[cfg(feature = "flex")]
fn flex_f32(t: &burn::backend::flex::FlexTensor) -> Option<std::borrow::Cow<'_, [f32]>> {
    if t.dtype() != burn::tensor::DType::F32 {
        return None;
    }
    match t.as_slice::<f32>() {
        Some(s) => Some(std::borrow::Cow::Borrowed(s)),
        None => t.to_contiguous().as_slice::<f32>().map(|s| std::borrow::Cow::Owned(s.to_vec())),
    }
}

#[cfg(feature = "ndarray")]
impl EmberInt8Ops for burn::backend::NdArray {
    fn ember_int8_linear(x: FloatTensor<Self>, layer: &Prepared, status: &OpStatus) -> FloatTensor<Self> {
        use burn::backend::TensorMetadata;
        use burn::backend::ndarray::NdArrayTensor;
        let data = match &x {
            NdArrayTensor::F32(s) => {
                let v = s.view();
                let dims = v.shape().to_vec();
                match v.as_slice() {
                    Some(sl) => run_host(sl, &dims, layer, status),
                    None => {
                        let owned: Vec<f32> = v.iter().copied().collect();
                        run_host(&owned, &dims, layer, status)
                    }
                }
            }
            other => {
                status.fail(QuantError::Data {
                    what: "input".into(),
                    message: format!("dtype {:?}, expected F32", other.dtype()),
                });
                return x;
            }
        };
        NdArrayTensor::from_data(data)
    }

    fn ember_f32_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: Option<&[f32]>,
        status: &OpStatus,
    ) -> FloatTensor<Self> {
        use burn::backend::ndarray::NdArrayTensor;
        fn host(t: &NdArrayTensor) -> Option<(std::borrow::Cow<'_, [f32]>, Vec<usize>)> {
            match t {
                NdArrayTensor::F32(s) => {
                    let v = s.view();
                    let dims = v.shape().to_vec();
                    let data = match v.to_slice() {
                        Some(sl) => std::borrow::Cow::Borrowed(sl),
                        None => std::borrow::Cow::Owned(v.iter().copied().collect()),
                    };
                    Some((data, dims))
                }
                _ => None,
            }
        }
        let data = match (host(&x), host(&w)) {
            (Some((xs, dims)), Some((ws, wdims))) => run_f32(&xs, &dims, &ws, &wdims, b, status),
            _ => {
                status.fail(QuantError::Data { what: "input".into(), message: "expected F32 tensors".into() });
                return x;
            }
        };
        NdArrayTensor::from_data(data)
    }
}
