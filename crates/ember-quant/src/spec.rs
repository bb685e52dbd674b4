//! What a quantized `Linear` holds: its activation mode and weight granularity, encoded into a
//! small `Int` tensor so that it travels with the module's parameters (Burn records and Ember's
//! quantized-model files alike).

use crate::error::{QuantError, Result};
use crate::scheme::{QuantDtype, WeightGranularity};
use serde::{Deserialize, Serialize};

/// How a quantized layer quantizes its input activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ActivationMode {
    /// Parameters computed from each input at run time (per row or per tensor): no calibration,
    /// the most accurate choice, the standard CPU recipe for transformers.
    #[default]
    Dynamic,
    /// Fixed parameters from calibration (one scale and zero point for the layer input).
    Static,
}

/// Per row (token) or per tensor activation parameters in dynamic mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ActivationGranularity {
    /// One scale and zero point per row (token).
    #[default]
    PerRow,
    /// One for the whole input (ONNX Runtime's dynamic quantization).
    PerTensor,
}

/// The quantization of one int8 `Linear`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearQuantSpec {
    /// Dynamic or static activations.
    pub mode: ActivationMode,
    /// Activation integer type (u8 affine or i8 symmetric).
    pub activation_dtype: QuantDtype,
    /// Dynamic-mode granularity (ignored in static mode, which is per tensor).
    pub activation_granularity: ActivationGranularity,
    /// Weight scale granularity (weights are always symmetric i8).
    pub weight: WeightGranularity,
    /// Input features (K).
    pub d_input: usize,
    /// Output features (N).
    pub d_output: usize,
}

/// Marks an encoded spec ("EMBQ").
const MAGIC: i32 = 0x454D_4251;
/// Version of the encoding.
pub(crate) const SPEC_VERSION: i32 = 1;
/// Length of the encoding.
pub(crate) const SPEC_LEN: usize = 9;

impl LinearQuantSpec {
    /// Encodes the spec as `SPEC_LEN` i32 values.
    pub(crate) fn encode(&self) -> Vec<i32> {
        let (wg, g) = match self.weight {
            WeightGranularity::PerTensor => (0, 0),
            WeightGranularity::PerChannel => (1, 0),
            WeightGranularity::PerGroup { group_size } => (2, group_size as i32),
        };
        vec![
            MAGIC,
            SPEC_VERSION,
            match self.mode {
                ActivationMode::Dynamic => 1,
                ActivationMode::Static => 2,
            },
            match self.activation_dtype {
                QuantDtype::U8Affine => 0,
                QuantDtype::I8Symmetric => 1,
            },
            match self.activation_granularity {
                ActivationGranularity::PerRow => 0,
                ActivationGranularity::PerTensor => 1,
            },
            wg,
            g,
            self.d_input as i32,
            self.d_output as i32,
        ]
    }

    /// Decodes and validates an encoded spec.
    ///
    /// # Errors
    /// [`QuantError::Data`] naming `what` for a wrong length, magic, version or field value.
    pub(crate) fn decode(what: &str, v: &[i64]) -> Result<Self> {
        let bad = |message: String| QuantError::Data { what: what.to_string(), message };
        if v.len() != SPEC_LEN {
            return Err(bad(format!("quantization spec has {} values, expected {SPEC_LEN}", v.len())));
        }
        if v[0] != MAGIC as i64 {
            return Err(bad(format!("not an Ember quantization spec (magic {:#x})", v[0])));
        }
        if v[1] != SPEC_VERSION as i64 {
            return Err(bad(format!("spec version {} is not supported (this build reads {SPEC_VERSION})", v[1])));
        }
        let mode = match v[2] {
            1 => ActivationMode::Dynamic,
            2 => ActivationMode::Static,
            x => return Err(bad(format!("activation mode code {x}, expected 1 (dynamic) or 2 (static)"))),
        };
        let activation_dtype = match v[3] {
            0 => QuantDtype::U8Affine,
            1 => QuantDtype::I8Symmetric,
            x => return Err(bad(format!("activation dtype code {x}, expected 0 (u8) or 1 (i8)"))),
        };
        let activation_granularity = match v[4] {
            0 => ActivationGranularity::PerRow,
            1 => ActivationGranularity::PerTensor,
            x => return Err(bad(format!("activation granularity code {x}, expected 0 or 1"))),
        };
        let weight = match (v[5], v[6]) {
            (0, _) => WeightGranularity::PerTensor,
            (1, _) => WeightGranularity::PerChannel,
            (2, g) if g > 0 && g % 4 == 0 => WeightGranularity::PerGroup { group_size: g as usize },
            (w, g) => return Err(bad(format!("weight granularity code {w} (group size {g}) is invalid"))),
        };
        if v[7] < 0 || v[8] < 0 {
            return Err(bad(format!("negative dimensions {} × {}", v[7], v[8])));
        }
        Ok(LinearQuantSpec {
            mode,
            activation_dtype,
            activation_granularity,
            weight,
            d_input: v[7] as usize,
            d_output: v[8] as usize,
        })
    }

    /// Number of weight scales this spec implies.
    pub fn num_weight_scales(&self) -> usize {
        self.weight.num_scales(self.d_input, self.d_output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let s = LinearQuantSpec {
            mode: ActivationMode::Static,
            activation_dtype: QuantDtype::I8Symmetric,
            activation_granularity: ActivationGranularity::PerTensor,
            weight: WeightGranularity::PerGroup { group_size: 32 },
            d_input: 64,
            d_output: 7,
        };
        let e: Vec<i64> = s.encode().into_iter().map(i64::from).collect();
        assert_eq!(LinearQuantSpec::decode("x", &e).unwrap(), s);
        let mut bad = e.clone();
        bad[1] = 99;
        assert!(LinearQuantSpec::decode("x", &bad).unwrap_err().to_string().contains("version 99"));
        bad = e.clone();
        bad[6] = 3;
        assert!(LinearQuantSpec::decode("x", &bad).unwrap_err().to_string().contains("group size 3"));
        assert!(LinearQuantSpec::decode("x", &e[..4]).unwrap_err().to_string().contains("expected 9"));
    }
}
