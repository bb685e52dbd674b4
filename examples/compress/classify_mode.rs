//! `compress --teacher DIR --task classify --data DIR_OR_TSV [--glue-task NAME]`:
//! `ember_slm::pipeline::classify` with progress bars, the recipe flags and a printed report.

use super::{Args, device, set_threads, stage_bars};
use ember_slm::pipeline::classify::{ClassifyRecipe, run};
use ember_slm::pipeline::data::read_task;
use std::time::Instant;

fn recipe(args: &Args) -> Result<ClassifyRecipe, String> {
    let mut r = match &args.recipe {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str::<ClassifyRecipe>(&text).map_err(|e| format!("recipe {}: {e}", path.display()))?
        }
        None if args.quick => ClassifyRecipe::quick(),
        None => ClassifyRecipe::default(),
    };
    if let Some(seed) = args.seed {
        r.seed = seed;
    }
    r.validate().map_err(|e| e.to_string())?;
    Ok(r)
}

/// Runs the classify mode; returns the exit code.
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
    let (Some(teacher), Some(path)) = (&args.teacher, &args.data) else {
        return fail(2, "--teacher DIR and --data DIR_OR_TSV are needed".into());
    };
    let data = match read_task(path, args.glue_task.as_deref(), recipe.dev_fraction, recipe.seed) {
        Ok(d) => d,
        Err(e) => return fail(2, format!("--data {}: {e}", path.display())),
    };
    let device = match device(&args.device) {
        Ok(d) => d,
        Err(e) => return fail(2, e.to_string()),
    };
    set_threads(args.threads);
    let start = Instant::now();
    let mut progress = stage_bars("loss");
    // The built-in LM run's default output directory is not shared.
    let out = if args.out == std::path::Path::new("target/ember-compress") {
        std::path::PathBuf::from("target/ember-compress-classify")
    } else {
        args.out.clone()
    };
    match run(teacher, &data, &recipe, &out, &device, &mut progress) {
        Ok(r) => {
            println!("{}", r.report.to_markdown());
            if r.teacher_finetuned {
                let epochs: Vec<String> = r.teacher_epochs.iter().map(|m| format!("{m:.4}")).collect();
                println!("teacher fine-tuned here: dev {} after each epoch: {}", r.metric, epochs.join(", "));
            } else {
                println!("teacher: the checkpoint's own head (not fine-tuned)");
            }
            println!("| stage | dev {} | made in (s) |\n|---|---:|---:|", r.metric);
            for s in &r.stages {
                println!("| {} | {:.4} | {:.0} |", s.name, s.metric, s.seconds);
            }
            let (t, last) = (&r.stages[0], &r.stages[r.stages.len() - 1]);
            println!(
                "\n{} training examples, {} dev; final: {:.1} % of the teacher's bytes, dev {} {:.4} ({:.3}× the teacher's), {:.2}× faster at batch 32, {:.2}× at batch 1",
                r.examples.0,
                r.examples.1,
                100.0 * last.bytes as f64 / t.bytes.max(1) as f64,
                r.metric,
                last.metric,
                last.metric / t.metric,
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
