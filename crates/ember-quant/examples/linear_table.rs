//! `burn::nn::Linear` (f32) against Ember's int8 `Linear` (dynamic mode) on the same device and
//! input, plus (on the CPU) the raw `ember-kernels` call for the same shape, so the cost of the
//! Burn integration is visible.
//!
//! ```text
//! cargo run --release -p ember-quant --example linear_table -- [--json] [--threads N] [--min-ms MS] [--device flex|ndarray|wgpu]
//! ```
//!
//! `--device wgpu` needs `--features wgpu`; there int8 layers take the float path (the int8
//! weights are dequantized with Burn ops and the activations fake-quantized; `--gpu-weights
//! words|float` picks how the device holds them, see `ember_quant::GpuInt8Weights`), every call
//! is followed by `Device::sync`, and the raw kernel column is empty.
//!
//! Each configuration alternates the measurements round-robin in batches of about 3 ms (the
//! machines are noisy) and reports the median time per call.

use burn::tensor::{Device, Distribution, Tensor};
use ember_kernels::{DynamicOptions, GemmOptions, PackOptions, PackedB, WeightScales, dynamic_quantized_matmul};
use ember_quant::{LayerQuantization, Linear, set_int8_threads};
use std::hint::black_box;
use std::time::{Duration, Instant};

struct Args {
    json: bool,
    threads: usize,
    min_ms: u64,
    device: String,
    gpu_weights: ember_quant::GpuInt8Weights,
}

/// A bad flag: one line on stderr, exit status 2.
fn fail(usage: &str) -> ! {
    eprintln!("linear_table: expected {usage}");
    std::process::exit(2)
}

fn parse() -> Args {
    let mut a = Args { json: false, threads: 1, min_ms: 600, device: "flex".into(), gpu_weights: Default::default() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => a.json = true,
            "--threads" => a.threads = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| fail("--threads N")),
            "--min-ms" => a.min_ms = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| fail("--min-ms MS")),
            "--device" => a.device = it.next().unwrap_or_else(|| fail("--device flex|ndarray|wgpu")),
            "--gpu-weights" => {
                a.gpu_weights = match it.next().as_deref() {
                    Some("words") => ember_quant::GpuInt8Weights::Words,
                    Some("float") => ember_quant::GpuInt8Weights::Float,
                    _ => {
                        eprintln!("--gpu-weights words|float");
                        std::process::exit(2);
                    }
                }
            }
            "-h" | "--help" => {
                println!(
                    "linear_table [--json] [--threads N] [--min-ms MS] [--device flex|ndarray|wgpu] [--gpu-weights words|float]"
                );
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    a
}

/// Seconds per call of `f` over one batch of about 3 ms (the batch size adapts to `f`).
fn batch(f: &mut dyn FnMut(), calls: &mut usize) -> f64 {
    loop {
        let t = Instant::now();
        for _ in 0..*calls {
            f();
        }
        let dt = t.elapsed().as_secs_f64();
        if dt >= 0.003 || *calls >= 1 << 20 {
            return dt / *calls as f64;
        }
        *calls *= 2;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args = parse();
    rayon::ThreadPoolBuilder::new().num_threads(args.threads).build_global().expect("rayon pool");
    set_int8_threads(args.threads);
    ember_quant::set_gpu_int8_weights(args.gpu_weights);
    #[allow(deprecated)]
    let device = match args.device.as_str() {
        "flex" => Device::flex(),
        #[cfg(feature = "ndarray")]
        "ndarray" => Device::ndarray(),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(Default::default()),
        other => {
            eprintln!("unknown device {other} (ndarray needs --features ndarray, wgpu --features wgpu)");
            std::process::exit(2);
        }
    };
    let gpu = !matches!(args.device.as_str(), "flex" | "ndarray");
    // GPU work is queued: wait for it, so a call's time is its execution.
    let sync = |d: &Device| {
        if gpu {
            d.sync().expect("device sync");
        }
    };
    let kernel = ember_kernels::KernelId::selected();
    if !args.json {
        println!(
            "burn::nn::Linear f32 vs ember_quant::Linear int8 (dynamic, per-row u8 activations, per-channel i8 weights)"
        );
        let route = match ember_quant::int8_route(&device) {
            ember_quant::Int8Route::Kernels => format!("int8 kernel {}", kernel.name()),
            ember_quant::Int8Route::FloatFallback => {
                format!("int8 float path (dequantize + f32 matmul), GPU weights as {:?}", args.gpu_weights)
            }
        };
        println!("device {}, {} thread(s), {route}, median per call\n", args.device, args.threads);
        println!(
            "| rows | d_in | d_out | f32 µs | int8 µs | speedup | raw kernel µs | Burn overhead µs | GOP/s int8 |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    for (d_in, d_out) in [(384usize, 1536usize), (1536, 384), (768, 3072)] {
        device.seed(1);
        let float = burn::nn::LinearConfig::new(d_in, d_out).init(&device);
        let int8 = Linear::from(float.clone()).quantize(&LayerQuantization::default()).expect("quantize");
        // Raw kernel inputs: the same int8 weights and scales, on the host.
        let values: Vec<i8> = int8.quant.values.val().into_data().convert::<i8>().try_into_vec().unwrap();
        let scales: Vec<f32> = int8.quant.scales.val().into_data().try_into_vec().unwrap();
        let bias: Vec<f32> = float.bias.as_ref().unwrap().val().into_data().try_into_vec().unwrap();
        let packed = PackedB::pack(&values, d_in, d_out, PackOptions::default()).unwrap();
        for rows in [1usize, 32, 128] {
            let x = Tensor::<2>::random([rows, d_in], Distribution::Normal(0.0, 1.0), &device);
            let xh: Vec<f32> = x.clone().into_data().try_into_vec().unwrap();
            let mut out = vec![0f32; rows * d_out];
            let opts = DynamicOptions { gemm: GemmOptions::with_threads(args.threads), ..Default::default() };
            // Warm up (packing happens at first use).
            black_box(int8.forward(x.clone()));
            black_box(float.forward(x.clone()));
            sync(&device);
            // Round-robin in ~3 ms batches, so that all three see the same machine state.
            let (mut f32_t, mut int8_t, mut raw_t) = (Vec::new(), Vec::new(), Vec::new());
            let (mut nf, mut nq, mut nr) = (1usize, 1usize, 1usize);
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(args.min_ms) || f32_t.len() < 7 {
                f32_t.push(batch(
                    &mut || {
                        drop(black_box(float.forward(x.clone())));
                        sync(&device);
                    },
                    &mut nf,
                ));
                int8_t.push(batch(
                    &mut || {
                        drop(black_box(int8.forward(x.clone())));
                        sync(&device);
                    },
                    &mut nq,
                ));
                if gpu {
                    continue;
                }
                raw_t.push(batch(
                    &mut || {
                        dynamic_quantized_matmul(
                            &xh,
                            rows,
                            &packed,
                            WeightScales::PerChannel(&scales),
                            Some(&bias),
                            &mut out,
                            &opts,
                        )
                        .unwrap();
                        black_box(&out);
                    },
                    &mut nr,
                ));
            }
            let r = (!gpu).then(|| median(raw_t) * 1e6);
            let (f, q) = (median(f32_t) * 1e6, median(int8_t) * 1e6);
            let gops = 2.0 * (rows * d_in * d_out) as f64 / (q * 1e-6) / 1e9;
            if args.json {
                let kernel_name = if gpu { "float-path" } else { kernel.name() };
                let num = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.2}"));
                println!(
                    "{{\"rows\":{rows},\"d_in\":{d_in},\"d_out\":{d_out},\"threads\":{},\"f32_us\":{f:.2},\"int8_us\":{q:.2},\"speedup\":{:.2},\"kernel_us\":{},\"overhead_us\":{},\"kernel\":\"{kernel_name}\",\"device\":\"{}\"}}",
                    args.threads,
                    f / q,
                    num(r),
                    num(r.map(|r| q - r)),
                    args.device
                );
            } else {
                let cell = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.1}"));
                println!(
                    "| {rows} | {d_in} | {d_out} | {f:.1} | {q:.1} | {:.2}× | {} | {} | {gops:.0} |",
                    f / q,
                    cell(r),
                    cell(r.map(|r| q - r))
                );
            }
        }
    }
}
