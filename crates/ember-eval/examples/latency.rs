//! Latency of any closure with `ember_eval::measure`: warm-up calls, then timed calls until a
//! minimum count and time, printed as a markdown table and JSON. Here: a dot product and a sort
//! of a vector of `--len` floats (default 100 000).
//!
//! ```sh
//! cargo run --release -p ember-eval --example latency -- [--len N]
//! ```

use ember_eval::{LatencyConfig, LatencyReport, measure};
use std::hint::black_box;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut len = 100_000usize;
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next().map(|v| v.parse::<usize>())) {
            ("--len", Some(Ok(n))) if n > 0 => len = n,
            _ => {
                eprintln!("latency: usage: latency [--len N] (N a positive integer)");
                std::process::exit(2)
            }
        }
    }
    let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let config =
        LatencyConfig { min_time: Duration::from_millis(300), items_per_call: len, ..LatencyConfig::default() };
    let run = |name: &str, f: &mut dyn FnMut()| {
        measure(name, &config, f).unwrap_or_else(|e| {
            eprintln!("latency: {e}");
            std::process::exit(2)
        })
    };
    let dot = run("dot product", &mut || {
        black_box(x.iter().zip(&x).map(|(a, b)| a * b).sum::<f32>());
    });
    let sort = run("sort", &mut || {
        let mut v = x.clone();
        v.sort_by(f32::total_cmp);
        black_box(v);
    });
    let reports = [dot, sort];
    println!("{}", LatencyReport::markdown(&reports));
    for r in &reports {
        println!("{}", r.to_json());
    }
}
