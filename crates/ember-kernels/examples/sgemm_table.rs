//! `ember_kernels::sgemm` at the row counts of inference, against this machine's register-only
//! f32 FMA peak and its memory bandwidth.
//!
//! ```text
//! cargo run --release -p ember-kernels --example sgemm_table -- [--rows 1,12,19,32,48] [--json]
//! ```
//!
//! The weights are all-MiniLM-L6-v2's shapes (per layer 4 × 384×384, 384×1536, 1536×384; six
//! layers, 42.5 MB of f32). "cold" multiplies the six layers' distinct weights, so they stream
//! from memory (more than this machine's caches, on most), "hot" repeats one layer's weights
//! six times (7 MB: from L2/L3). One thread. Printed with each run: the CPU model, the kernel,
//! the register-only peak (independent FMAs on the kernel's widest vectors) and the bandwidth
//! of a plain sum over 42.5 MB, so a result reads as a fraction of what the machine can do.

use ember_kernels::fused::RowOptions;
use ember_kernels::sgemm::sgemm;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let json = args.iter().any(|a| a == "--json");
    let rows: Vec<usize> = match arg("--rows")
        .unwrap_or_else(|| "1,12,19,32,48".into())
        .split(',')
        .map(|x| x.trim().parse::<usize>().ok().filter(|&m| m > 0))
        .collect::<Option<Vec<usize>>>()
    {
        Some(v) => v,
        None => {
            eprintln!("sgemm_table: --rows takes positive row counts separated by commas, e.g. 1,12,48");
            std::process::exit(2);
        }
    };
    let opts = RowOptions::with_threads(1);
    let kernel = opts.kernel;
    let peak = ember_kernels::machine::f32_fma_peak_gflops().unwrap_or(f64::NAN);
    let shapes: Vec<(usize, usize)> =
        (0..6).flat_map(|_| [(384, 384), (384, 384), (384, 384), (384, 384), (384, 1536), (1536, 384)]).collect();
    let weights: Vec<Vec<f32>> =
        shapes.iter().map(|&(k, n)| (0..k * n).map(|i| ((i * 7919) % 101) as f32 * 1e-3 - 0.05).collect()).collect();
    let bytes: usize = weights.iter().map(|w| w.len() * 4).sum();
    let flat: Vec<f32> = weights.concat();
    let mut bw = 0f64;
    for _ in 0..5 {
        let t = Instant::now();
        // 16 independent sums, so the loop is vector loads, not one add chain.
        let lanes = flat.chunks_exact(16).fold([0f32; 16], |mut s, c| {
            s.iter_mut().zip(c).for_each(|(s, &x)| *s += x);
            s
        });
        std::hint::black_box(lanes);
        bw = bw.max(bytes as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    drop(flat);
    if json {
        println!(
            "{}",
            serde_json::json!({"cpu": ember_kernels::cpu_model(), "kernel": kernel.to_string(), "fma_peak_gflops": peak, "sum_gbps": bw})
        );
    } else {
        println!(
            "{} · kernel {kernel} · register-only FMA peak {peak:.1} GFLOP/s · sum over {:.1} MB {bw:.1} GB/s · 1 thread",
            ember_kernels::cpu_model(),
            bytes as f64 / 1e6
        );
        println!(
            "| rows | cold ms | cold GFLOP/s | cold % peak | cold GB/s | hot ms | hot GFLOP/s | hot % peak |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
    }
    for &m in &rows {
        let a: Vec<f32> = (0..m * 1536).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
        let mut c = vec![0f32; m * 1536];
        let flops = shapes.iter().map(|&(k, n)| 2 * m * k * n).sum::<usize>() as f64;
        let mut ms = [f64::INFINITY; 2];
        for (slot, hot) in [(0, false), (1, true)] {
            for _ in 0..15 {
                let t = Instant::now();
                for (i, &(k, n)) in shapes.iter().enumerate() {
                    let w = if hot { &weights[i % 6] } else { &weights[i] };
                    if let Err(e) = sgemm(&a[..m * k], w, None, m, k, n, &mut c[..m * n], &opts) {
                        eprintln!("{e}");
                        std::process::exit(1);
                    }
                }
                ms[slot] = ms[slot].min(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let gf = |t: f64| flops / t / 1e6;
        if json {
            println!(
                "{}",
                serde_json::json!({"rows": m, "cold_ms": ms[0], "cold_gflops": gf(ms[0]), "cold_gbps": bytes as f64 / ms[0] / 1e6,
                    "hot_ms": ms[1], "hot_gflops": gf(ms[1]), "fraction_of_peak_hot": gf(ms[1]) / peak})
            );
        } else {
            println!(
                "| {m} | {:.2} | {:.1} | {:.0} % | {:.1} | {:.2} | {:.1} | {:.0} % |",
                ms[0],
                gf(ms[0]),
                100.0 * gf(ms[0]) / peak,
                bytes as f64 / ms[0] / 1e6,
                ms[1],
                gf(ms[1]),
                100.0 * gf(ms[1]) / peak
            );
        }
    }
}
