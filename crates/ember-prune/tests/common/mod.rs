//! Shared test helpers.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor};

/// Every CPU device the suite runs on.
pub fn devices() -> Vec<(&'static str, Device)> {
    #[allow(deprecated)]
    let nd = Device::ndarray();
    vec![("flex", Device::flex()), ("ndarray", nd)]
}

/// A tensor's values on the host.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}
