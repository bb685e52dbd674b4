//! Shared test helpers.
#![allow(dead_code, unused_imports)]

use burn::tensor::Tensor;

/// Every device the suite runs on: Flex, NdArray, and wgpu with the `wgpu` feature (ember-testkit).
pub use ember_testkit::devices;

/// A tensor's values on the host.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}
