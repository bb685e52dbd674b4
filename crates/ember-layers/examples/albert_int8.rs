//! An ALBERT-style encoder from ember-layers: one attention and one feed-forward block shared
//! by every layer. Counts its parameters against the unshared encoder of the same shape
//! (without allocating either), builds a small one, converts it to int8 with ember-quant and
//! compares the int8 output with the float one on the same padded batch.
//!
//! ```sh
//! cargo run --release -p ember-layers --example albert_int8
//! ```

use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};
use ember_layers::{EncoderConfig, SharingMode};
use ember_quant::{QuantizeConfig, Quantizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ALBERT-base's encoder: 12 layers of width 768, 12 heads, 3072 inner units.
    let albert = EncoderConfig::new(768, 12, 3072, 12).with_sharing(SharingMode::All);
    let bert = EncoderConfig::new(768, 12, 3072, 12);
    let total = |c: &EncoderConfig| -> Result<usize, ember_layers::LayerError> {
        let (a, f, n) = c.num_params()?;
        Ok(a + f + n)
    };
    println!(
        "12 layers × 768: unshared {:.1} M parameters, ALBERT-shared {:.1} M ({} attention / {} feed-forward blocks)",
        total(&bert)? as f64 / 1e6,
        total(&albert)? as f64 / 1e6,
        albert.distinct_blocks().0,
        albert.distinct_blocks().1,
    );

    // A small shared encoder, allocated and run on the CPU.
    let device = Device::default();
    let config = EncoderConfig::new(128, 4, 512, 6).with_sharing(SharingMode::All);
    let encoder = config.init(&device)?;
    let (b, t) = (4, 16);
    let x = Tensor::<3>::random([b, t, 128], Distribution::Normal(0.0, 1.0), &device);
    // Sentence i has 16 − 3·i real tokens, the rest is padding.
    let pad: Vec<bool> = (0..b * t).map(|k| k % t >= t - 3 * (k / t)).collect();
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, t]), &device);

    let (int8, report) = Quantizer::new(QuantizeConfig::new()).quantize(&encoder)?;
    let float_bytes: usize = report.layers.iter().map(|l| l.float_bytes).sum();
    let int8_bytes: usize = report.layers.iter().map(|l| l.int8_bytes).sum();
    println!(
        "small shared encoder: {} parameters; {} int8 Linear layers, {:.1} KB → {:.1} KB",
        total(&config)?,
        report.layers.len(),
        float_bytes as f64 / 1e3,
        int8_bytes as f64 / 1e3,
    );

    // Only real tokens are computed on CPU devices; padded positions come back as zeros.
    let y = encoder.forward_real_tokens(x.clone(), Some(pad.clone()))?;
    let y8 = int8.forward_real_tokens(x, Some(pad))?;
    let (f, q): (Vec<f32>, Vec<f32>) = (y.into_data().try_to_vec()?, y8.into_data().try_to_vec()?);
    let dot: f64 = f.iter().zip(&q).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
    let norm = |v: &[f32]| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
    println!("int8 against float output, cosine over the batch: {:.5}", dot / (norm(&f) * norm(&q)));
    Ok(())
}
