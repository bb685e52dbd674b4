//! Pruning cost and payoff, measured in one run.
//!
//! `cargo run --release -p ember-prune --example prune_table -- [--json] [--threads N]`
//!
//! 1. `global_magnitude`: the time `Pruner::compute_masks` takes to choose one global
//!    magnitude threshold over every weight of a ~100M-parameter stack of BERT-base-shaped
//!    `Linear`s (read from the device, scored, threshold by radix selection), at 50 % and
//!    90 % sparsity.
//! 2. `structured_linear`: a 768 → 3072 `Linear` before and after removing half its output
//!    neurons (chosen by `channel_importance` + `keep_top`, removed by
//!    `ember_quant::Linear::retain_outputs`; the dense layer is the baseline, timed in the same
//!    run, round-robin).
//!
//! With `PRUNE_TABLE_PHASES=1` it also prints the selection alone (host scores already in
//! memory) on stderr.

use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use ember_prune::{PruneConfig, Pruner, Scope, channel_importance_of, keep_top, unit_scores};

#[derive(Module, Debug)]
struct Stack {
    layers: Vec<Linear>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut json = false;
    let mut threads = 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--threads" => {
                threads = args.next().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or_else(|| {
                    eprintln!("prune_table: --threads N: expected a count of at least 1");
                    std::process::exit(2)
                })
            }
            other => {
                eprintln!("prune_table: unknown argument {other} (--json, --threads N)");
                std::process::exit(2)
            }
        }
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("rayon pool");
    let device = Device::flex();

    // 14 BERT-base encoder layers' Linear weights: 4 × 768², 768 × 3072, 3072 × 768.
    let shapes = [(768, 768), (768, 768), (768, 768), (768, 768), (768, 3072), (3072, 768)];
    let stack = Stack {
        layers: (0..14)
            .flat_map(|_| shapes)
            .map(|(i, o)| LinearConfig::new(i, o).with_bias(false).init(&device))
            .collect(),
    };
    // Burn initializes parameters lazily: materialize them before timing.
    for l in &stack.layers {
        let _ = l.weight.val();
    }
    let params = stack.num_params();
    if !json {
        println!("global magnitude mask over {params} weights ({} Linears), {threads} thread(s)\n", stack.layers.len());
        println!("| sparsity | seconds | zeros |");
        println!("|---:|---:|---:|");
    }
    for sparsity in [0.5, 0.9] {
        let pruner = Pruner::new(PruneConfig::new(sparsity).with_scope(Scope::Global)).expect("valid config");
        let start = Instant::now();
        let masks = pruner.compute_masks(&stack).expect("masks");
        let seconds = start.elapsed().as_secs_f64();
        let zeros: usize = masks.values().map(|m| m.iter().filter(|k| !**k).count()).sum();
        if std::env::var("PRUNE_TABLE_PHASES").is_ok() {
            // The selection alone, on host scores already in memory.
            let host: Vec<Vec<f32>> = stack
                .layers
                .iter()
                .map(|l| l.weight.val().abs().into_data().convert::<f32>().try_into_vec::<f32>().unwrap())
                .collect();
            let refs: Vec<&[f32]> = host.iter().map(|v| v.as_slice()).collect();
            let t = Instant::now();
            let _ = ember_prune::mask::global(&refs, sparsity).unwrap();
            eprintln!("selection alone: {:.3} s", t.elapsed().as_secs_f64());
        }
        if json {
            println!(
                "{{\"case\": \"global_magnitude\", \"params\": {params}, \"sparsity\": {sparsity}, \"seconds\": {seconds:.3}}}"
            );
        } else {
            println!("| {:.0}% | {seconds:.3} | {zeros} |", sparsity * 100.0);
        }
    }
    drop(stack);

    let dense = ember_quant::LinearConfig::new(768, 3072).init(&device);
    let next = ember_quant::LinearConfig::new(3072, 768).init(&device);
    // The neurons whose rows of the next layer weigh most (magnitude criterion, no data).
    let scores = unit_scores(&channel_importance_of(&next.weight, None).expect("scores"), 1).expect("units");
    let keep = keep_top(&scores, 1536).expect("keep");
    let pruned = dense.retain_outputs(&keep).expect("retain");
    if !json {
        println!("\nLinear 768 → 3072, half the output neurons removed (768 → 1536), Flex f32\n");
        println!("| rows | dense (µs) | pruned (µs) | speed-up |");
        println!("|---:|---:|---:|---:|");
    }
    for rows in [1usize, 32] {
        let x = Tensor::<2>::ones([rows, 768], &device);
        let time = |l: &ember_quant::Linear| {
            let start = Instant::now();
            let y = l.forward(x.clone());
            let _ = y.into_data();
            start.elapsed().as_secs_f64() * 1e6
        };
        for _ in 0..20 {
            time(&dense);
            time(&pruned);
        }
        let (mut d, mut p) = (Vec::new(), Vec::new());
        for _ in 0..300 {
            d.push(time(&dense));
            p.push(time(&pruned));
        }
        let (d, p) = (median(&mut d), median(&mut p));
        if json {
            println!(
                "{{\"case\": \"structured_linear\", \"rows\": {rows}, \"d_in\": 768, \"d_out\": 3072, \"dense_us\": {d:.1}, \"pruned_us\": {p:.1}, \"speedup\": {:.2}}}",
                d / p
            );
        } else {
            println!("| {rows} | {d:.1} | {p:.1} | {:.2}× |", d / p);
        }
    }
}
