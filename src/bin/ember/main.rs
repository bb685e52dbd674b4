//! `ember`: Ember's command line. Install from a clone with `cargo install --path .`.
//!
//! ```text
//! ember compress                      # the built-in run: teacher → distilled → pruned → int8
//! ember compress --teacher models/all-minilm-l6-v2 --task embed --data corpus.txt
//! ember quantize --model models/all-minilm-l6-v2 --out minilm-int8
//! ember prune    --model models/all-minilm-l6-v2 --out minilm-small --heads 0.33 --neurons 0.5
//! ember embed    --model minilm-int8 --input sentences.txt --out embeddings.npy
//! ember eval     --task SST-2 --dev glue/SST-2/dev.tsv --predictions preds.tsv
//! ember bench    --model minilm-int8 --compare models/all-minilm-l6-v2 --batch 1,8,32
//! ```
//!
//! Every subcommand has `--help`. Bad input is one line on standard error and exit status 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod common;
mod compress;
mod eval;
mod tools;

/// Model compression for small language models: distil, prune and quantize to int8 on Burn.
#[derive(Parser, Debug)]
#[command(name = "ember", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Distil, prune and quantize a model end to end with a measured report: the built-in
    /// byte-level LM run, or a Hugging Face encoder for sentence embeddings or classification
    Compress(compress::CompressArgs),
    /// Convert a model to int8 (dynamic or calibrated static activations), written in Ember's
    /// layout and checked against the float model
    Quantize(tools::QuantizeArgs),
    /// Remove attention heads, feed-forward neurons and layers by measured importance,
    /// written in Hugging Face's layout
    Prune(tools::PruneArgs),
    /// Sentences to embeddings (JSONL, NumPy .npy or TSV) with a float or int8 model
    Embed(tools::EmbedArgs),
    /// GLUE / SuperGLUE official metrics from a predictions file, or of a classifier on a dev file
    Eval(eval::EvalArgs),
    /// Latency (p50, p90) and throughput at the batch sizes asked for, optionally beside a
    /// second model
    Bench(tools::BenchArgs),
}

/// `text` on one line (library errors are one line already; this is a guarantee).
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// The first block of a clap error on one line, without its `error: ` prefix:
/// `the following required arguments were not provided: --model <DIR>, --out <DIR>`.
fn clap_message(rendered: &str) -> String {
    let block: Vec<&str> = rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let Some((first, rest)) = block.split_first() else { return "invalid arguments".into() };
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if rest.is_empty() { first.to_string() } else { format!("{first} {}", rest.join(", ")) }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                eprintln!(
                    "ember: error: a subcommand is needed: compress, quantize, prune, embed, eval or bench (see `ember --help`)"
                );
                return ExitCode::from(1);
            }
            // clap's message is several blocks (the error, a tip, the usage); keep the first, whose
            // later lines list what it names (the missing arguments).
            let rendered = e.render().to_string();
            let first = clap_message(&rendered);
            let sub = std::env::args().nth(1).filter(|s| !s.starts_with('-'));
            let help = sub.map_or_else(|| "ember --help".to_string(), |s| format!("ember {s} --help"));
            eprintln!("ember: error: {first} (see `{help}`)");
            return ExitCode::from(1);
        }
    };
    let result = match &cli.command {
        Command::Compress(a) => compress::compress(a),
        Command::Quantize(a) => tools::quantize(a),
        Command::Prune(a) => tools::prune(a),
        Command::Embed(a) => tools::embed(a),
        Command::Eval(a) => eval::eval(a),
        Command::Bench(a) => tools::bench(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ember: error: {}", one_line(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn clap_errors_keep_what_they_name() {
        let e = Cli::try_parse_from(["ember", "quantize"]).unwrap_err();
        let m = clap_message(&e.render().to_string());
        assert!(m.starts_with("the following required arguments were not provided: --model <DIR>, --out <DIR>"), "{m}");
        let e = Cli::try_parse_from(["ember", "bench", "--model", "m", "--frobnicate"]).unwrap_err();
        assert_eq!(clap_message(&e.render().to_string()), "unexpected argument '--frobnicate' found");
        assert_eq!(clap_message(""), "invalid arguments");
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(one_line("a\n\n  b \nc"), "a; b; c");
        assert_eq!(one_line("single"), "single");
    }
}
