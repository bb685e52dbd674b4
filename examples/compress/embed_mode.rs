//! `compress --teacher DIR --task embed --data FILE`: `ember_slm::pipeline::embed` with progress
//! bars, the recipe flags and a printed report.

use super::{Args, device, set_threads, stage_bars};
use ember_slm::pipeline::embed::{EmbedRecipe, run};
use std::time::Instant;

fn recipe(args: &Args) -> Result<EmbedRecipe, String> {
    let mut r = match &args.recipe {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str::<EmbedRecipe>(&text).map_err(|e| format!("recipe {}: {e}", path.display()))?
        }
        None if args.quick => EmbedRecipe::quick(),
        None => EmbedRecipe::default(),
    };
    if let Some(seed) = args.seed {
        r.seed = seed;
    }
    r.validate().map_err(|e| e.to_string())?;
    Ok(r)
}

/// Runs the embed mode; returns the exit code.
pub fn main(args: &Args) -> i32 {
    let fail = |code: i32, msg: String| {
        eprintln!("error: {msg}");
        code
    };
    let recipe = match recipe(args) {
        Ok(r) => r,
        Err(e) => return fail(2, e),
    };
    if args.print_recipe {
        println!("{}", serde_json::to_string_pretty(&recipe).expect("a recipe serializes"));
        return 0;
    }
    let (Some(teacher), Some(data)) = (&args.teacher, &args.data) else {
        return fail(2, "--teacher DIR and --data FILE are needed".into());
    };
    let text = match std::fs::read(data) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => return fail(2, format!("--data {}: not UTF-8 text", data.display())),
        },
        Err(e) => return fail(2, format!("--data {}: {e}", data.display())),
    };
    let device = match device(&args.device) {
        Ok(d) => d,
        Err(e) => return fail(2, e.to_string()),
    };
    set_threads(args.threads);
    let start = Instant::now();
    let mut progress = stage_bars("1 − cos");
    // The built-in LM run's default output directory is not shared.
    let out = if args.out == std::path::Path::new("target/ember-compress") {
        std::path::PathBuf::from("target/ember-compress-embed")
    } else {
        args.out.clone()
    };
    match run(teacher, &text, &recipe, &out, &device, &mut progress) {
        Ok(r) => {
            println!("{}", r.report.to_markdown());
            println!("| stage | cos mean | cos min | made in (s) |\n|---|---:|---:|---:|");
            for s in &r.stages {
                println!("| {} | {:.4} | {:.4} | {:.0} |", s.name, s.cos_mean, s.cos_min, s.seconds);
            }
            let (t, last) = (&r.stages[0], &r.stages[r.stages.len() - 1]);
            println!(
                "\n{} training sentences, {} held out; final: {:.1} % of the teacher's bytes, Spearman {:.4}, {:.2}× faster at batch 32, {:.2}× at batch 1",
                r.sentences.0,
                r.sentences.1,
                100.0 * last.bytes as f64 / t.bytes.max(1) as f64,
                last.spearman,
                t.b32_ms / last.b32_ms,
                t.b1_ms / last.b1_ms
            );
            if args.quick {
                println!("(--quick trains for a few steps as a smoke test; the numbers mean nothing)");
            }
            println!(
                "students: {} (Hugging Face layout), {} (Ember int8); report: {out}/report.md, {out}/report.json, {out}/report.svg ({:.0} s on {} threads, --device {})",
                r.hf_dir.display(),
                r.int8_dir.display(),
                start.elapsed().as_secs_f64(),
                args.threads,
                args.device,
                out = out.display(),
            );
            0
        }
        Err(e) => fail(1, e.to_string()),
    }
}
