#!/usr/bin/env bash
# Builds Ember's fuzz targets (fuzz/) with libFuzzer's coverage instrumentation on stable Rust
# and runs each for SECONDS (default 30) on its seed corpus; exits non-zero if any target
# crashes, hangs (10 s per input), or exceeds 2 GiB of memory. Findings are written to
# $TARGET_DIR/fuzz/artifacts/<target>/; reproduce one with
#   target/fuzz/<host>/release/<target> <file>
#
#   scripts/fuzz-smoke.sh [SECONDS] [TARGET ...]     # targets: checkpoint quantized_model recipe tasks gemm
#
# Why not `cargo fuzz`: it adds `-Zsanitizer=...`, which needs a nightly toolchain that a fresh
# machine does not have. The instrumentation libFuzzer needs (`-C passes=sancov-module` and the
# `-sanitizer-coverage-*` LLVM options) is stable, so this script passes cargo-fuzz's flags minus
# the sanitizer. Memory errors in Ember's unsafe code are covered by scripts/memcheck.sh instead.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(checkpoint quantized_model recipe tasks gemm)
fi
host=$(rustc -vV | sed -n 's/^host: //p')
root="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"

# The flags cargo-fuzz passes (without -Zsanitizer); --target keeps them off build scripts and
# proc macros, which must not link libFuzzer.
unset CARGO_ENCODED_RUSTFLAGS
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
start=$(date +%s)
cargo build --manifest-path fuzz/Cargo.toml --release --locked --target "$host" --target-dir "$root" --bins
echo "fuzz build: $(($(date +%s) - start)) s"

failed=()
for t in "${targets[@]}"; do
    bin="$root/$host/release/$t"
    seeds="$root/seeds/$t"
    work="$root/corpus/$t"
    artifacts="$root/artifacts/$t"
    rm -rf "$seeds"
    mkdir -p "$work" "$artifacts" "$root/seeds"
    # The seeds as the current harness builds them, beside the committed corpus.
    if ! EMBER_FUZZ_WRITE_SEEDS="$seeds" "$bin" 2>"$seeds.err"; then
        echo "FAILED: $t could not write its seeds"
        cat "$seeds.err"
        exit 1
    fi
    grep -v "^WARNING: Failed to find function" "$seeds.err" || true
    echo "== $t: ${seconds} s"
    # One log per run (two runs of a target may overlap, for example CI and a long campaign).
    log="$root/logs/$t.$(date +%Y%m%dT%H%M%S).$$.log"
    mkdir -p "$root/logs"
    corpora=("$work" "$seeds")
    if [ -d "fuzz/corpus/$t" ]; then corpora+=("fuzz/corpus/$t"); fi
    if "$bin" "${corpora[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
        grep -E "^stat::number_of_executed_units|^stat::new_units_added|^stat::peak_rss_mb" "$log" | tr -s ' \n' ' '
        grep -oE "cov: [0-9]+ ft: [0-9]+ corp: [0-9]+" "$log" | tail -1
        echo "   log: $log"
    else
        echo "FAILED: $t (log: $log, artifacts: $artifacts)"
        grep -v "^WARNING: Failed to find function" "$log" | tail -40
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz-smoke: ${#failed[@]} target(s) failed: ${failed[*]}"
    exit 1
fi
echo "fuzz-smoke: ${#targets[@]} target(s), ${seconds} s each, no findings"
