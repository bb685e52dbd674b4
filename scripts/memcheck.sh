#!/usr/bin/env bash
# Runs every test binary of ember-kernels — packing and unpacking, every kernel against the i64
# reference on the shape table (degenerate, ragged, multi-panel), the epilogues, the
# quantize/dequantize row kernels, the property tests and thread-count determinism — under
# valgrind's memcheck, once with EMBER_KERNEL=avx2 and once with EMBER_KERNEL=scalar. Exits
# non-zero on any memcheck error (invalid read/write, use of uninitialised memory, definite
# leak) or test failure.
#
#   scripts/memcheck.sh [TEST-FILTER]
#
# valgrind does not model AVX-512 or AMX: under it the CPU reports neither (CPUID is valgrind's),
# so `KernelId::supported()` is scalar and AVX2 (plus AVX-VNNI where valgrind models it), and
# every test that loops over the supported kernels runs exactly those. The AVX-512 VNNI and AMX
# kernels are covered by the differential and fuzz tests natively. Miri cannot run them either
# (SIMD intrinsics, inline assembly, no nightly here).
set -euo pipefail
cd "$(dirname "$0")/.."
filter="${1:-}"

if ! command -v valgrind >/dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
valgrind --version

# The test executables: the library's test binary and every integration test of the kernel crate.
build_log="${CARGO_TARGET_DIR:-$PWD/target}/memcheck-build.log"
mkdir -p "$(dirname "$build_log")"
mapfile -t bins < <(cargo test -p ember-kernels --lib --tests --no-run --message-format=json 2>"$build_log" |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])
')
[ ${#bins[@]} -gt 0 ] || { echo "memcheck: no test executables built"; tail -40 "$build_log"; exit 1; }

log_dir="${CARGO_TARGET_DIR:-$PWD/target}/memcheck"
mkdir -p "$log_dir"
failed=0
for kernel in avx2 scalar; do
    for bin in "${bins[@]}"; do
        name=$(basename "$bin")
        log="$log_dir/$kernel-$name.log"
        start=$(date +%s)
        # Few property cases (each is a full differential check); the fixed tables run whole.
        # --fair-sched: the kernels' pool spins while waiting, which starves valgrind's
        # default scheduler.
        if EMBER_KERNEL=$kernel PROPTEST_CASES=8 valgrind --tool=memcheck --error-exitcode=99 --fair-sched=yes \
            --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
            --log-file="$log" "$bin" --test-threads=1 $filter >"$log.out" 2>&1; then
            summary=$(grep -h "ERROR SUMMARY" "$log" | tail -1 | sed 's/==[0-9]*== //')
            tests=$(grep -hE "^test result:" "$log.out" | tail -1)
            echo "ok   $kernel $name ($(($(date +%s) - start)) s): $tests; $summary"
        else
            echo "FAIL $kernel $name (exit $?): see $log and $log.out"
            grep -hE "ERROR SUMMARY|Invalid|uninitialised|definitely lost" "$log" | head -20 || true
            tail -20 "$log.out"
            failed=1
        fi
    done
done
exit $failed
