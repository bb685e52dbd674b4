//! Structured pruning of an encoder: score each attention head and feed-forward neuron, keep the
//! best half, remove the rest physically (the weights really shrink), then check the result:
//! parameters, the forward time before and after on the same batch, and how far the output
//! moved. Magnitude scores here; ember-models' `shrink` example uses Wanda's form (calibration
//! norms) on all-MiniLM-L6-v2. Weights are random, so the output change says nothing about a
//! trained model's quality: it shows what the calls do.
//!
//! ```sh
//! cargo run --release -p ember-prune --example structured -- [--remove 0.5]
//! ```

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use ember_layers::{Encoder, EncoderConfig};
use ember_prune::{channel_importance_of, keep_top, unit_scores, units_to_keep};
use std::time::Instant;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("structured: {msg}");
    std::process::exit(2)
}

/// The median forward time in ms over a few runs.
fn time_ms(encoder: &Encoder, x: &Tensor<3>) -> f64 {
    let mut t: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            let y = encoder.forward(x.clone(), None, false).hidden;
            std::hint::black_box(y.into_data());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut remove = 0.5f64;
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next().map(|v| v.parse::<f64>())) {
            ("--remove", Some(Ok(r))) if (0.0..1.0).contains(&r) => remove = r,
            _ => fail("usage: structured [--remove FRACTION] (a fraction in [0, 1))"),
        }
    }
    let device = Device::default();
    // A MiniLM-sized encoder: 6 layers of width 384, 12 heads, 1536 inner units.
    let encoder = EncoderConfig::new(384, 12, 1536, 6).init(&device)?;
    let mut small = encoder.clone();
    for (block, att) in encoder.attention.iter().enumerate() {
        // A head's score: its output-projection rows' magnitudes, summed in quadrature.
        let scores = unit_scores(&channel_importance_of(&att.output.weight, None)?, att.head_dim)?;
        let keep = keep_top(&scores, units_to_keep(att.n_heads, remove)?)?;
        small = small.retain_heads(block, &keep)?;
    }
    for (block, ffn) in encoder.feed_forward.iter().enumerate() {
        let scores = channel_importance_of(&ffn.outer.weight, None)?;
        let keep = keep_top(&scores, units_to_keep(ffn.d_ff(), remove)?)?;
        small = small.retain_neurons(block, &keep)?;
    }

    let x = Tensor::<3>::random([8, 32, 384], Distribution::Normal(0.0, 1.0), &device);
    let (y, y_small) = (encoder.forward(x.clone(), None, false).hidden, small.forward(x.clone(), None, false).hidden);
    let diff = (y.clone() - y_small).powi_scalar(2).sum().sqrt().into_scalar::<f32>();
    let norm = y.powi_scalar(2).sum().sqrt().into_scalar::<f32>();
    let (before, after) = (time_ms(&encoder, &x), time_ms(&small, &x));
    println!("remove {:.0} % of heads and neurons (magnitude scores)", remove * 100.0);
    println!(
        "heads per layer {} → {}, inner units {} → {}",
        encoder.attention[0].n_heads,
        small.attention[0].n_heads,
        encoder.feed_forward[0].d_ff(),
        small.feed_forward[0].d_ff()
    );
    println!("parameters {} → {}", encoder.num_params(), small.num_params());
    println!("forward, 8 × 32 tokens: {before:.2} ms → {after:.2} ms ({:.2}× faster)", before / after);
    println!("relative change of the output: {:.3}", diff / norm);
    Ok(())
}
