#!/usr/bin/env python3
"""Ember's int8 GEMM table beside ONNX Runtime's int8 anchors, measured in alternating rounds.

Runs `gemm_table --json` and an ONNX Runtime benchmark script (for example the team's
`ort_bench.py`, which prints CSV `source,impl,threads,M,K,N,median_us,...,gops`) in turn,
`--rounds` times per shape, then prints per-shape medians over the rounds and the ratios the
kernel targets are stated in. Alternating shape by shape makes the slow phases of a shared,
noisy machine hit both sides alike.

    python3 scripts/compare_ort.py --ort-python /tmp/ortvenv/bin/python \
        --ort-bench ../shared/tools/ort_bench.py --threads 1 --rounds 3

Nothing in the build or the tests depends on this script or on ONNX Runtime.
"""
import argparse
import csv
import io
import json
import statistics
import subprocess
import sys

SHAPES = [(m, k, n) for (k, n) in [(384, 384), (384, 1536), (1536, 384), (768, 768), (768, 3072)]
          for m in [1, 8, 32, 128, 512]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ort-python", required=True)
    ap.add_argument("--ort-bench", required=True)
    ap.add_argument("--table", default="target/release/examples/gemm_table")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-ms", type=float, default=100)
    ap.add_argument("--shapes", default=",".join(f"{m}:{k}:{n}" for m, k, n in SHAPES))
    ap.add_argument("--json-out", help="write the merged rows here as JSON lines")
    ap.add_argument("--whole-table", action="store_true",
                    help="alternate whole tables instead of one shape at a time (faster, noisier)")
    a = ap.parse_args()
    ember, ort = {}, {}
    machine = {}
    # Per shape, alternate the two programs `rounds` times: a slow phase of a shared machine
    # (they last seconds) then hits both sides of the same shape alike.
    groups = [a.shapes] if a.whole_table else a.shapes.split(",")
    for shapes in groups:
        for r in range(a.rounds):
            out = subprocess.run([a.table, "--threads", str(a.threads), "--json", "--shapes", shapes,
                                  "--min-ms", str(a.min_ms)], check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                if line.startswith("{"):
                    d = json.loads(line)
                    if "m" not in d:
                        machine = d  # the header line: CPU, kernel, register-only peaks
                        continue
                    ember.setdefault((d["m"], d["k"], d["n"]), []).append(d)
            out = subprocess.run([a.ort_python, a.ort_bench, "--threads", str(a.threads), "--shapes", shapes,
                                  "--impls", "ort_matmulinteger,ort_dqmatmul", "--min-ms", str(a.min_ms)],
                                 check=True, capture_output=True, text=True).stdout
            for row in csv.DictReader(io.StringIO("\n".join(l for l in out.splitlines() if not l.startswith("#")))):
                try:
                    key = (row["impl"], int(row["M"]), int(row["K"]), int(row["N"]))
                    ort.setdefault(key, []).append(float(row["gops"]))
                except (KeyError, ValueError):
                    pass
        print(f"{shapes} done", file=sys.stderr)
    med = statistics.median
    print(f"{machine.get('cpu', 'unknown CPU')}, kernel {machine.get('kernel', '?')}, register-only peaks per thread: "
          f"VNNI {machine.get('vnni_peak_gops_1t')} GOP/s, f32 FMA {machine.get('f32_fma_peak_gflops_1t')} GFLOP/s")
    print(f"threads {a.threads}, medians of {a.rounds} alternating rounds, GOP/s")
    print(f"| M×K×N | ember int8 | ORT MatMulInteger | ×  | ember dyn | ORT DynQuantMatMul | × | gemm f32 | dyn/f32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for (m, k, n), ds in sorted(ember.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        i8 = med(d["int8_gops"] for d in ds)
        dy = med(d["dyn_gops"] for d in ds)
        f = med(d["f32_gops"] for d in ds)
        mi = med(ort.get(("ort_matmulinteger", m, k, n), [float("nan")]))
        dq = med(ort.get(("ort_dqmatmul", m, k, n), [float("nan")]))
        print(f"| {m}×{k}×{n} | {i8:.0f} | {mi:.0f} | {i8 / mi:.2f} | {dy:.0f} | {dq:.0f} | {dy / dq:.2f} | {f:.0f} | {dy / f:.1f} |")
        rows.append(dict(m=m, k=k, n=n, threads=a.threads, kernel=ds[0]["kernel"], int8_gops=i8, dyn_gops=dy,
                         f32_gops=f, ratio=dy / f, ort_matmulinteger_gops=mi, ort_dqmatmul_gops=dq))
    if a.json_out:
        with open(a.json_out, "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
