//! Int8 GEMM throughput table: Ember's raw u8·i8→i32 GEMM, its fused dynamic-quantization path
//! (f32 in, f32 out) and the `gemm` crate's f32 GEMM (what Burn's Flex CPU backend runs), in the
//! same process and thread count.
//!
//! ```text
//! cargo run --release -p ember-kernels --example gemm_table -- [--threads N] [--json]
//!     [--shapes M:K:N,...] [--kernel NAME] [--min-ms MS] [--scaling]
//! ```
//!
//! GOP/s = 2·M·K·N / median seconds per call. `ratio = dyn_gops / f32_gops`. The first line
//! names the CPU, the kernel and the register-only peaks this machine reaches (independent
//! `vpdpbusd` chains on AVX-512 VNNI, independent f32 FMA chains), and `int8 %pk` is the int8
//! GEMM's fraction of the VNNI peak per thread count (on other kernels there is no peak
//! printed: an AMX tile peak is not measured here). With `--scaling`
//! (and N > 1 threads) the int8 and dynamic paths are also timed on one thread, interleaved with
//! the N-thread runs, and the speed-ups are printed (`int8_speedup`, `dyn_speedup`).

use ember_kernels::{
    Activations, DynamicOptions, Epilogue, GemmOptions, KernelId, PackOptions, PackedB, WeightScales,
    dynamic_quantized_matmul, gemm,
};
use std::hint::black_box;

#[path = "../benches/support/f32_baseline.rs"]
mod f32_baseline;
use f32_baseline::f32_gemm;
use std::time::Instant;

fn default_shapes() -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for &(k, n) in &[(384, 384), (384, 1536), (1536, 384), (768, 768), (768, 3072)] {
        for &m in &[1, 8, 32, 128, 512] {
            v.push((m, k, n));
        }
    }
    v
}

/// Median seconds per call of each closure. The closures are sampled round-robin (one sample
/// of ≥ 1 ms each in turn) for at least `min_ms` per closure, so a shared machine's slow and
/// fast phases hit all of them alike and their ratios stay meaningful.
fn median_secs(fs: &mut [&mut dyn FnMut()], min_ms: f64) -> Vec<f64> {
    let inner: Vec<usize> = fs
        .iter_mut()
        .map(|f| {
            let t = Instant::now();
            let mut calls = 0usize;
            while t.elapsed().as_secs_f64() < 0.02 || calls < 3 {
                f();
                calls += 1;
            }
            let per = t.elapsed().as_secs_f64() / calls as f64;
            ((1e-3 / per).ceil() as usize).max(1)
        })
        .collect();
    let mut samples = vec![Vec::new(); fs.len()];
    let start = Instant::now();
    while start.elapsed().as_secs_f64() * 1e3 < min_ms * fs.len() as f64 || samples[0].len() < 11 {
        for (i, f) in fs.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..inner[i] {
                f();
            }
            samples[i].push(t.elapsed().as_secs_f64() / inner[i] as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn f32(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32 - 1.0
    }
}

/// A bad flag: one line on stderr, exit status 2.
fn fail(msg: &str) -> ! {
    eprintln!("gemm_table: {msg}");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let threads: usize =
        arg("--threads").map_or(1, |v| v.parse().unwrap_or_else(|_| fail("--threads N: expected a count")));
    let json = args.iter().any(|a| a == "--json");
    let scaling = args.iter().any(|a| a == "--scaling") && threads > 1;
    let min_ms: f64 = arg("--min-ms").map_or(200.0, |v| {
        v.parse().ok().filter(|m: &f64| *m > 0.0).unwrap_or_else(|| fail("--min-ms MS: expected a positive number"))
    });
    let kernel = match arg("--kernel") {
        Some(name) => match KernelId::from_name(&name).and_then(|k| {
            if k.is_supported() {
                Ok(k)
            } else {
                Err(ember_kernels::KernelError::KernelUnavailable { name, available: String::new() })
            }
        }) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
        None => KernelId::selected(),
    };
    let shapes = match arg("--shapes") {
        Some(s) => s
            .split(',')
            .map(|t| {
                let d: Vec<usize> = t
                    .split(':')
                    .map(|x| x.parse().ok().filter(|&n: &usize| n > 0))
                    .collect::<Option<_>>()
                    .filter(|d: &Vec<usize>| d.len() == 3)
                    .unwrap_or_else(|| fail(&format!("--shapes {t}: expected M:K:N,... with positive sizes")));
                (d[0], d[1], d[2])
            })
            .collect(),
        None => default_shapes(),
    };
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build_global();
    let opts = GemmOptions::with_threads(threads);
    let dopts = DynamicOptions { gemm: opts, ..Default::default() };
    let (vnni_peak, fma_peak) =
        (ember_kernels::machine::vnni_peak_gops(), ember_kernels::machine::f32_fma_peak_gflops());
    // The int8 GEMM's peak for this run: VNNI's, times the threads, for the VNNI kernel only.
    let int8_peak = vnni_peak.filter(|_| kernel == KernelId::Avx512Vnni).map(|p| p * threads as f64);
    let show = |p: Option<f64>| p.map_or("n/a".to_string(), |v| format!("{v:.0} GOP/s"));
    if json {
        println!(
            "{{\"cpu\":{:?},\"kernel\":\"{}\",\"threads\":{threads},\"vnni_peak_gops_1t\":{},\"f32_fma_peak_gflops_1t\":{}}}",
            ember_kernels::cpu_model(),
            kernel.short_name(),
            vnni_peak.map_or("null".into(), |v| format!("{v:.1}")),
            fma_peak.map_or("null".into(), |v| format!("{v:.1}"))
        );
    } else {
        println!(
            "{} · register-only peaks per thread: AVX-512 VNNI {}, f32 FMA {}",
            ember_kernels::cpu_model(),
            show(vnni_peak),
            show(fma_peak)
        );
    }
    if !json {
        println!("kernel {} ({} thread{})", kernel.name(), threads, if threads == 1 { "" } else { "s" });
        println!(
            "{:>5} {:>5} {:>5}  {:>10} {:>7} {:>10} {:>10} {:>7} {:>10}",
            "M", "K", "N", "int8 GOP/s", "int8 %pk", "dyn GOP/s", "f32 GOP/s", "ratio", "dyn µs"
        );
    }
    let mut rng = Lcg(42);
    for (m, k, n) in shapes {
        let x: Vec<f32> = (0..m * k).map(|_| rng.f32()).collect();
        let wf: Vec<f32> = (0..k * n).map(|_| rng.f32() * 0.1).collect();
        let wq: Vec<i8> = wf.iter().map(|w| (w / 0.1 * 127.0).round() as i8).collect();
        let scales = vec![0.1f32 / 127.0; n];
        let a: Vec<u8> = (0..m * k).map(|_| rng.next() as u8).collect();
        let packed =
            PackedB::pack(&wq, k, n, PackOptions { kernel: Some(kernel), ..Default::default() }).expect("pack");
        let mut ci = vec![0i32; m * n];
        let mut ci1 = ci.clone();
        let mut cf = vec![0f32; m * n];
        let ops = 2.0 * (m * k * n) as f64;

        let one = GemmOptions::single_thread();
        let done = DynamicOptions { gemm: one, ..Default::default() };
        let int8 = |o: &GemmOptions, c: &mut [i32]| {
            let act = Activations::u8(black_box(&a), m, k, 128);
            gemm(&act, &packed, Epilogue::I32 { out: c }, o).expect("gemm");
        };
        let dynq = |o: &DynamicOptions, y: &mut [f32]| {
            dynamic_quantized_matmul(black_box(&x), m, &packed, WeightScales::PerChannel(&scales), None, y, o)
                .expect("dynamic");
        };
        let (mut cf1, mut cf2) = (cf.clone(), cf.clone());
        let mut f_int8 = || int8(&opts, &mut ci);
        let mut f_dyn = || dynq(&dopts, &mut cf);
        let mut f_f32 = || f32_gemm(black_box(&x), &wf, &mut cf2, m, k, n, threads);
        let mut f_int8_1 = || int8(&one, &mut ci1);
        let mut f_dyn_1 = || dynq(&done, &mut cf1);
        let t = if scaling {
            median_secs(&mut [&mut f_int8, &mut f_dyn, &mut f_f32, &mut f_int8_1, &mut f_dyn_1], min_ms)
        } else {
            median_secs(&mut [&mut f_int8, &mut f_dyn, &mut f_f32], min_ms)
        };
        let (t_int8, t_dyn, t_f32) = (t[0], t[1], t[2]);
        let (gi, gd, gf) = (ops / t_int8 / 1e9, ops / t_dyn / 1e9, ops / t_f32 / 1e9);
        let pk = int8_peak.map_or("n/a".to_string(), |p| format!("{:.0} %", 100.0 * gi / p));
        let pk_json = int8_peak.map_or(String::new(), |p| format!(",\"int8_fraction_of_peak\":{:.3}", gi / p));
        let scaling_json = if scaling {
            format!(
                ",\"int8_1t_us\":{:.2},\"int8_speedup\":{:.2},\"dyn_1t_us\":{:.2},\"dyn_speedup\":{:.2}",
                t[3] * 1e6,
                t[3] / t_int8,
                t[4] * 1e6,
                t[4] / t_dyn
            )
        } else {
            String::new()
        };
        if json {
            println!(
                "{{\"m\":{m},\"k\":{k},\"n\":{n},\"threads\":{threads},\"kernel\":\"{}\",\"int8_gops\":{gi:.1},\"dyn_gops\":{gd:.1},\"f32_gops\":{gf:.1},\"ratio\":{:.2},\"dyn_us\":{:.2}{pk_json}{scaling_json}}}",
                kernel.short_name(),
                gd / gf,
                t_dyn * 1e6
            );
        } else if scaling {
            println!(
                "{m:>5} {k:>5} {n:>5}  {gi:>10.1} {pk:>7} {gd:>10.1} {gf:>10.1} {:>7.2} {:>10.2}   vs 1 thread: int8 {:.2}x, dyn {:.2}x",
                gd / gf,
                t_dyn * 1e6,
                t[3] / t_int8,
                t[4] / t_dyn
            );
        } else {
            println!(
                "{m:>5} {k:>5} {n:>5}  {gi:>10.1} {pk:>7} {gd:>10.1} {gf:>10.1} {:>7.2} {:>10.2}",
                gd / gf,
                t_dyn * 1e6
            );
        }
    }
}
