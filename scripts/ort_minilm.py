#!/usr/bin/env python3
"""ONNX Runtime on a BERT sentence-embedding model (all-MiniLM-L6-v2 by default), so Ember's
whole-model latency can be compared with ORT on the same machine.

Builds the BertModel f32 ONNX graph by hand (onnx.helper) from the checkpoint's
model.safetensors and config.json (every size is read from config.json, so other BERT
checkpoints work) with the op structure of Hugging Face's PyTorch export: Gather embeddings,
LayerNormalization (opset 17), MatMul+Add projections, Reshape/Transpose to heads, Div by
sqrt(head), (1 - mask) * -10000 added to the scores, Softmax, erf GELU as Div/Erf/Add/Mul/Mul;
then sentence-transformers' mean pooling over real tokens and L2 normalisation
(inputs input_ids, attention_mask, token_type_ids int64 [batch, seq]; output
embeddings [batch, hidden]). Candidates:

  f32  raw  the hand-built graph, ORT's own graph optimizations (ORT_ENABLE_ALL)
  f32  opt  the graph after onnxruntime.transformers.optimizer.optimize_model(model_type="bert")
  int8 raw/opt  quantize_dynamic(weight_type=QInt8, per_channel=True, reduce_range as --reduce-range)
             of either f32 graph

It prints the fusions (the optimizer's get_fused_operator_statistics() and, per candidate, the
fused op types left after ORT's own ORT_ENABLE_ALL optimizations), checks every candidate against
the unoptimized f32 graph (f32: cosine >= 0.9999 per sentence; int8: >= 0.95, a sanity bound) and
keeps the fastest valid f32 and int8 graphs (geometric mean of quick p50s over the batches). Sentences are tokenized with
`tokenizers` as Ember does (tokenizer.json, [CLS] ... [SEP], baked-in padding removed, each batch
padded to its longest, truncation at --max-len, default max_position_embeddings as Ember);
batch 1 is the first sentence, batch 32 the first 32. Latency is the p50 of one
session.run (tokenized batch in, pooled embeddings out) over at least --min-ms after warm-up, f32
and int8 alternated twice (min of the two p50s, as Ember's example does), printed as JSON lines
{"source":"ort","batch":..,"seq":..,"threads":..,"f32_ms":..,"int8_ms":..}.

With --ember BIN (Ember's `minilm` example binary) it first runs Ember once for its embeddings
(--embeddings-out) and checks ORT f32 against Ember f32 (cosine >= 0.9999 per sentence, max abs
diff printed), then alternates Ember and ORT for --rounds rounds and prints per batch the medians
of both and the ratios ember/ort, plus one final JSON line {"source":"compare",...}.
--ember-embeddings FILE checks against an existing Ember embeddings file instead.

    /tmp/ortvenv/bin/python scripts/ort_minilm.py --model-dir models/all-minilm-l6-v2 \
        --ember target/release/examples/minilm --threads 1 --rounds 2

needs: pip install onnxruntime onnx numpy safetensors tokenizers (no torch). The .onnx files
are cached under --work (default /tmp/ember-ort-minilm), keyed by the checkpoint.
Nothing in the build or the tests depends on this script or on ONNX Runtime.
"""
import argparse
import collections
import hashlib
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time

BUILD_VERSION = "1"  # bump when the graph construction changes (invalidates the cache)
INT8_MIN_COS = 0.95


def die(msg):
    print(f"ort_minilm.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
except ImportError as e:  # pragma: no cover
    die(f"{e} (needs onnxruntime onnx numpy safetensors tokenizers)")


# ---------------------------------------------------------------------------------------------
# Graph construction
# ---------------------------------------------------------------------------------------------

class G:
    """A tiny graph builder: nodes, initializers, unique names."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], collections.Counter()

    def name(self, base):
        self.n[base] += 1
        return f"{base}_{self.n[base]}"

    def const(self, base, arr):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type, inputs, base=None, **attrs):
        out = self.name(base or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name("n_" + op_type), **attrs))
        return out


def build_f32(cfg, w, prefix):
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    if hidden % heads:
        die(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    head = hidden // heads
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    act = cfg.get("hidden_act", "gelu")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        die(f"position_embedding_type {cfg['position_embedding_type']!r} is not supported (absolute only)")
    f32 = np.float32

    def W(k):
        key = prefix + k
        if key not in w:
            die(f"model.safetensors has no tensor {key!r}")
        return w[key].astype(f32)

    g = G()
    ids, mask, tt = "input_ids", "attention_mask", "token_type_ids"

    # Embeddings: (word + token_type) + position, as transformers' BertEmbeddings.
    x = g.op("Gather", [g.const("word_embeddings", W("embeddings.word_embeddings.weight")), ids], "word_emb")
    tkey = prefix + "embeddings.token_type_embeddings.weight"
    if tkey in w:
        t = g.op("Gather", [g.const("token_type_embeddings", W("embeddings.token_type_embeddings.weight")), tt], "tt_emb")
        x = g.op("Add", [x, t], "emb_add")
    max_pos = W("embeddings.position_embeddings.weight").shape[0]
    shape = g.op("Shape", [ids], "ids_shape")
    seq = g.op("Gather", [shape, g.const("one", np.array(1, np.int64))], "seq_len", axis=0)
    seq1 = g.op("Unsqueeze", [seq, g.const("axes0", np.array([0], np.int64))], "seq_len_1d")
    pos_ids = g.op("Slice", [g.const("position_ids", np.arange(max_pos, dtype=np.int64)[None, :]),
                             g.const("starts", np.array([0], np.int64)), seq1,
                             g.const("slice_axes", np.array([1], np.int64)),
                             g.const("steps", np.array([1], np.int64))], "position_ids_s")
    p = g.op("Gather", [g.const("position_embeddings", W("embeddings.position_embeddings.weight")), pos_ids], "pos_emb")
    x = g.op("Add", [x, p], "emb_sum")
    x = g.op("LayerNormalization", [x, g.const("emb_ln_g", W("embeddings.LayerNorm.weight")),
                                    g.const("emb_ln_b", W("embeddings.LayerNorm.bias"))], "emb_ln", axis=-1, epsilon=eps)

    # Extended attention mask, shared by the layers: (1 - mask[:, None, None, :]) * -10000.
    m = g.op("Unsqueeze", [mask, g.const("axes1", np.array([1], np.int64))], "mask_u1")
    m = g.op("Unsqueeze", [m, g.const("axes2", np.array([2], np.int64))], "mask_u2")
    m = g.op("Cast", [m], "mask_f", to=TensorProto.FLOAT)
    m = g.op("Sub", [g.const("one_f", np.array(1.0, f32)), m], "mask_inv")
    ext_mask = g.op("Mul", [m, g.const("neg", np.array(-10000.0, f32))], "ext_mask")

    def linear(inp, k):
        y = g.op("MatMul", [inp, g.const(k + ".wT", np.ascontiguousarray(W(k + ".weight").T))], "mm")
        return g.op("Add", [y, g.const(k + ".b", W(k + ".bias"))], "lin")

    heads_shape = None
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"encoder.layer.{layer}."
        if heads_shape is None:
            heads_shape = g.const("heads_shape", np.array([0, 0, heads, head], np.int64))
            merge_shape = g.const("merge_shape", np.array([0, 0, hidden], np.int64))
            sqrt_d = g.const("sqrt_d", np.array(math.sqrt(head), f32))
        qkv = {}
        for n in ("query", "key", "value"):
            qh = g.op("Reshape", [linear(x, pre + "attention.self." + n), heads_shape], n + "_heads")
            perm = [0, 2, 3, 1] if n == "key" else [0, 2, 1, 3]
            qkv[n] = g.op("Transpose", [qh], n + "_t", perm=perm)
        s = g.op("MatMul", [qkv["query"], qkv["key"]], "scores")
        s = g.op("Div", [s, sqrt_d], "scores_scaled")
        s = g.op("Add", [s, ext_mask], "scores_masked")
        s = g.op("Softmax", [s], "probs", axis=-1)
        c = g.op("MatMul", [s, qkv["value"]], "context")
        c = g.op("Transpose", [c], "context_t", perm=[0, 2, 1, 3])
        c = g.op("Reshape", [c, merge_shape], "context_merged")
        a = linear(c, pre + "attention.output.dense")
        a = g.op("Add", [a, x], "attn_residual")
        x = g.op("LayerNormalization", [a, g.const("ln_g", W(pre + "attention.output.LayerNorm.weight")),
                                        g.const("ln_b", W(pre + "attention.output.LayerNorm.bias"))],
                 "attn_ln", axis=-1, epsilon=eps)
        h = linear(x, pre + "intermediate.dense")
        if act == "gelu":  # x * 0.5 * (1 + erf(x / sqrt(2))), as exported from PyTorch
            e = g.op("Div", [h, g.const("sqrt2", np.array(math.sqrt(2.0), f32))], "gelu_div")
            e = g.op("Erf", [e], "gelu_erf")
            e = g.op("Add", [e, g.const("one_g", np.array(1.0, f32))], "gelu_add")
            e = g.op("Mul", [h, e], "gelu_mul")
            h = g.op("Mul", [e, g.const("half", np.array(0.5, f32))], "gelu")
        elif act in ("gelu_new", "gelu_pytorch_tanh"):
            c3 = g.op("Mul", [g.op("Pow", [h, g.const("three", np.array(3.0, f32))]), g.const("k", np.array(0.044715, f32))])
            inner = g.op("Mul", [g.op("Add", [h, c3]), g.const("s2pi", np.array(math.sqrt(2 / math.pi), f32))])
            e = g.op("Add", [g.op("Tanh", [inner]), g.const("one_g", np.array(1.0, f32))])
            h = g.op("Mul", [g.op("Mul", [h, g.const("half", np.array(0.5, f32))]), e], "gelu")
        elif act == "relu":
            h = g.op("Relu", [h], "relu")
        else:
            die(f"hidden_act {act!r} is not supported (gelu, gelu_new, relu)")
        f = linear(h, pre + "output.dense")
        f = g.op("Add", [f, x], "ffn_residual")
        x = g.op("LayerNormalization", [f, g.const("ln_g", W(pre + "output.LayerNorm.weight")),
                                        g.const("ln_b", W(pre + "output.LayerNorm.bias"))],
                 "out_ln", axis=-1, epsilon=eps)

    # Mean over real tokens, then L2 normalisation (sentence-transformers).
    pm = g.op("Cast", [g.op("Unsqueeze", [mask, g.const("axes_last", np.array([2], np.int64))], "pool_mask_u")],
              "pool_mask", to=TensorProto.FLOAT)
    summed = g.op("ReduceSum", [g.op("Mul", [x, pm], "masked"), g.const("axis1", np.array([1], np.int64))], "sum", keepdims=0)
    count = g.op("ReduceSum", [pm, g.const("axis1", np.array([1], np.int64))], "count", keepdims=0)
    count = g.op("Max", [count, g.const("tiny", np.array(1e-9, f32))], "count_c")
    mean = g.op("Div", [summed, count], "mean")
    norm = g.op("ReduceL2", [mean], "norm", axes=[1], keepdims=1)  # axes an attribute until opset 18
    norm = g.op("Max", [norm, g.const("eps_n", np.array(1e-12, f32))], "norm_c")
    g.nodes.append(helper.make_node("Div", [mean, norm], ["embeddings"], name="n_l2"))

    dims = ["batch", "seq"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in (ids, mask, tt)]
    outputs = [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])]
    graph = helper.make_graph(g.nodes, "bert_mean_pool", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ember ort_minilm.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------------------------------------
# Tokenization (as Ember's TextTokenizer)
# ---------------------------------------------------------------------------------------------

class Tok:
    def __init__(self, path, max_len):
        try:
            self.t = Tokenizer.from_file(path)
        except Exception as e:
            die(f"cannot load {path}: {e}")
        pad = self.t.padding
        self.pad_id = pad["pad_id"] if pad else 0
        self.t.no_padding()
        self.t.enable_truncation(max_length=max_len)

    def batch(self, texts):
        encs = [self.t.encode(s) for s in texts]
        seq = max(len(e.ids) for e in encs)
        b = len(encs)
        ids = np.full((b, seq), self.pad_id, np.int64)
        tt = np.zeros((b, seq), np.int64)
        mask = np.zeros((b, seq), np.int64)
        for r, e in enumerate(encs):
            n = len(e.ids)
            ids[r, :n], tt[r, :n], mask[r, :n] = e.ids, e.type_ids, 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}


# ---------------------------------------------------------------------------------------------
# Sessions, checks, timing
# ---------------------------------------------------------------------------------------------

def session(path, threads, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, save_optimized=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = level
    so.log_severity_level = 3
    if save_optimized:
        so.optimized_model_filepath = save_optimized
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def embed_all(sess, tok, sentences):
    """Each sentence embedded in chunks of 32 padded to the chunk's longest (as Ember's example)."""
    rows = [sess.run(["embeddings"], tok.batch(sentences[i:i + 32]))[0] for i in range(0, len(sentences), 32)]
    return np.concatenate(rows, 0).astype(np.float64)


def cosines(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def p50_ms(sess, feed, min_ms, warmup=3, min_iter=10):
    for _ in range(warmup):
        sess.run(["embeddings"], feed)
    times, start = [], time.perf_counter()
    while len(times) < min_iter or (time.perf_counter() - start) * 1e3 < min_ms:
        t0 = time.perf_counter()
        sess.run(["embeddings"], feed)
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 100_000:
            break
    return statistics.median(times)


def op_counts(path):
    m = onnx.load(path, load_external_data=False)
    return dict(sorted(collections.Counter(n.op_type for n in m.graph.node).items()))


FUSED = ("Attention", "QAttention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization",
         "LayerNormalization", "Gelu", "BiasGelu", "FastGelu", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
         "MatMulInteger", "DynamicQuantizeLinear", "FusedMatMul", "Softmax", "Erf", "MatMul", "Gemm")


def interesting(counts):
    return {k: v for k, v in counts.items() if k in FUSED}


# ---------------------------------------------------------------------------------------------

def read_sentences(path):
    try:
        with open(path, encoding="utf-8") as f:
            s = [l.strip() for l in f if l.strip()]
    except OSError as e:
        die(f"cannot read --sentences {path}: {e.strerror}")
    if not s:
        die(f"--sentences {path} has no non-empty lines")
    return s


def run_ember(a, extra):
    cmd = [a.ember, "--model-dir", a.model_dir, "--threads", str(a.threads), "--json", "--min-ms", str(a.min_ms)]
    if a.sentences:
        cmd += ["--sentences", a.sentences]
    cmd += extra
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        die(f"{' '.join(cmd)} exited {r.returncode}: {tail}")
    rows = {}
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            if "batch" in d:
                rows[d["batch"]] = d
    return rows


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_sentences = os.path.join(here, "..", "crates", "ember-models", "tests", "data", "sentences.txt")
    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, not usage + error
            die(f"{message} (try --help)")

    ap = Parser(description="ONNX Runtime latency of a BERT sentence-embedding model vs Ember "
                                 "(see the module docstring).")
    ap.add_argument("--model-dir", default="models/all-minilm-l6-v2")
    ap.add_argument("--sentences", help="one sentence a line (default: Ember's tests/data/sentences.txt)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-ms", type=float, default=1500)
    ap.add_argument("--select-ms", type=float, default=400, help="timing per candidate when choosing graphs")
    ap.add_argument("--max-len", type=int, help="truncation length (default: max_position_embeddings, as Ember)")
    ap.add_argument("--reduce-range", action="store_true", help="quantize_dynamic reduce_range=True (default False)")
    ap.add_argument("--work", default="/tmp/ember-ort-minilm")
    ap.add_argument("--ember", help="Ember's minilm example binary: check against it and alternate with it")
    ap.add_argument("--ember-embeddings", help="Ember --embeddings-out JSON to check f32 against (without --ember)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", default="1,32")
    a = ap.parse_args()

    if a.threads < 1:
        die("--threads must be at least 1")
    if a.rounds < 1:
        die("--rounds must be at least 1")
    if a.min_ms <= 0 or a.select_ms <= 0:
        die("--min-ms and --select-ms must be positive")
    try:
        batches = [int(b) for b in a.batches.split(",")]
        assert batches and all(b > 0 for b in batches)
    except (ValueError, AssertionError):
        die(f"--batches {a.batches!r}: expected positive integers separated by commas")
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        if not os.path.isfile(os.path.join(a.model_dir, f)):
            die(f"--model-dir {a.model_dir}: no {f}")
    if a.ember and not (os.path.isfile(a.ember) and os.access(a.ember, os.X_OK)):
        die(f"--ember {a.ember}: not an executable file")
    if a.ember_embeddings and not os.path.isfile(a.ember_embeddings):
        die(f"--ember-embeddings {a.ember_embeddings}: no such file")
    sentences = read_sentences(a.sentences or default_sentences)
    batches = [b for b in batches if b <= len(sentences)]

    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    st = os.path.join(a.model_dir, "model.safetensors")
    max_len = a.max_len or cfg.get("max_position_embeddings", 512)
    tok = Tok(os.path.join(a.model_dir, "tokenizer.json"), max_len)

    # ---- build (cached) -------------------------------------------------------------------
    s = os.stat(st)
    key = hashlib.sha1(json.dumps([os.path.abspath(st), s.st_size, s.st_mtime_ns, cfg, BUILD_VERSION, a.reduce_range,
                                   ort.__version__]).encode()).hexdigest()[:12]
    work = os.path.join(a.work, key)
    os.makedirs(work, exist_ok=True)
    paths = {n: os.path.join(work, n + ".onnx") for n in ("f32_raw", "f32_opt", "int8_raw", "int8_opt")}
    fusion_stats = {}
    stats_path = os.path.join(work, "fusion_stats.json")
    if not os.path.exists(paths["f32_raw"]):
        w = load_file(st)
        ends = [k for k in w if k.endswith("embeddings.word_embeddings.weight")]
        if not ends:
            die(f"{st}: no embeddings.word_embeddings.weight (not a BERT checkpoint?)")
        prefix = ends[0][: -len("embeddings.word_embeddings.weight")]
        onnx.save(build_f32(cfg, w, prefix), paths["f32_raw"])
        del w
    if not os.path.exists(paths["f32_opt"]) or not os.path.exists(stats_path):
        try:
            from onnxruntime.transformers.optimizer import optimize_model
            logging.disable(logging.WARNING)  # "producer not matched: expected pytorch" noise
            try:
                m = optimize_model(paths["f32_raw"], model_type="bert", num_heads=cfg["num_attention_heads"],
                                   hidden_size=cfg["hidden_size"], opt_level=0)
            finally:
                logging.disable(logging.NOTSET)
            fusion_stats = m.get_fused_operator_statistics()
            m.save_model_to_file(paths["f32_opt"])
            json.dump(fusion_stats, open(stats_path, "w"))
        except ImportError as e:  # the optimizer needs sympy; ORT's own fusions still apply to f32_raw
            print(f"# onnxruntime.transformers.optimizer unavailable ({e}); only the raw graph", file=sys.stderr)
            del paths["f32_opt"], paths["int8_opt"]
    if os.path.exists(stats_path):
        fusion_stats = json.load(open(stats_path))
    from onnxruntime.quantization import QuantType, quantize_dynamic
    for src, dst in (("f32_raw", "int8_raw"), ("f32_opt", "int8_opt")):
        if src not in paths:
            continue
        if not os.path.exists(paths[dst]):
            logging.disable(logging.WARNING)  # "consider pre-processing" noise
            try:
                # DefaultTensorType: onnx shape inference gives no types past com.microsoft ops.
                quantize_dynamic(paths[src], paths[dst], weight_type=QuantType.QInt8, per_channel=True,
                                 reduce_range=a.reduce_range, extra_options={"DefaultTensorType": TensorProto.FLOAT})
            finally:
                logging.disable(logging.NOTSET)

    print(f"# onnxruntime {ort.__version__}, {len(sentences)} sentences, threads {a.threads}, work {work}")
    print("# optimize_model(model_type='bert') fused operators: "
          + json.dumps({k: v for k, v in fusion_stats.items() if v}))

    # ---- candidates: fusions after ORT's own optimizations, validity, quick timing -----------
    ref = embed_all(session(paths["f32_raw"], a.threads, ort.GraphOptimizationLevel.ORT_DISABLE_ALL), tok, sentences)
    feeds = {b: tok.batch(sentences[:b]) for b in batches}
    cand, sessions = {}, {}
    for name, path in paths.items():
        opt_path = os.path.join(work, name + ".ort_optimized.onnx")
        sessions[name] = session(path, a.threads, save_optimized=opt_path)
        emb = embed_all(sessions[name], tok, sentences)
        cos = cosines(emb, ref)
        # int8: a sanity bound only (ORT's per-tensor activation scales cost some accuracy).
        ok = cos.min() >= (0.9999 if name.startswith("f32") else INT8_MIN_COS)
        cand[name] = {"path": path, "ok": bool(ok), "emb": emb, "cos_mean": float(cos.mean()),
                      "cos_min": float(cos.min()), "ops": interesting(op_counts(opt_path)),
                      "ms": {b: math.inf for b in batches}}
    for _ in range(2):  # two alternating passes, min of the p50s: a noisy phase hits all candidates
        for name, sess in sessions.items():
            for b in batches:
                cand[name]["ms"][b] = min(cand[name]["ms"][b], p50_ms(sess, feeds[b], a.select_ms, 2, 5))
    sessions.clear()
    for name, c in cand.items():
        print(f"# {name}: valid {c['ok']} (cos vs unoptimized f32 mean {c['cos_mean']:.6f} min {c['cos_min']:.6f});"
              " quick p50 " + ", ".join(f"b{b} {c['ms'][b]:.2f} ms" for b in batches)
              + f"; ops after ORT's optimizations {json.dumps(c['ops'])}")

    def pick(prec):
        ok = {n: c for n, c in cand.items() if n.startswith(prec) and c["ok"]}
        if not ok:
            die(f"no valid {prec} graph (see the candidate lines above)")
        # geometric mean over the batches
        return min(ok, key=lambda n: sum(math.log(ok[n]["ms"][b]) for b in batches))

    best_f, best_q = pick("f32"), pick("int8")
    print(f"# using f32 {best_f} ({paths[best_f]}), int8 {best_q} ({paths[best_q]})")

    # ---- correctness ---------------------------------------------------------------------
    ortf, ortq = cand[best_f]["emb"], cand[best_q]["emb"]
    cq = cosines(ortq, ortf)
    check = {"ort_int8_vs_ort_f32_cos_mean": float(cq.mean()), "ort_int8_vs_ort_f32_cos_min": float(cq.min())}
    ember_file = a.ember_embeddings
    if a.ember:
        ember_file = os.path.join(work, "ember_embeddings.json")
        run_ember(a, ["--skip-latency", "--embeddings-out", ember_file])
    if ember_file:
        try:
            ej = json.load(open(ember_file))
            ef, eq = np.asarray(ej["f32"], np.float64), np.asarray(ej["int8"], np.float64)
        except (OSError, ValueError, KeyError) as e:
            die(f"cannot read Ember embeddings {ember_file}: {e}")
        if ef.shape != ortf.shape:
            die(f"Ember embeddings are {ef.shape}, ORT's {ortf.shape}: different sentences or model?")
        cf = cosines(ortf, ef)
        check.update({"ort_f32_vs_ember_f32_cos_min": float(cf.min()),
                      "ort_f32_vs_ember_f32_max_abs_diff": float(np.abs(ortf - ef).max()),
                      "ember_int8_vs_ember_f32_cos_mean": float(cosines(eq, ef).mean()),
                      "ember_int8_vs_ember_f32_cos_min": float(cosines(eq, ef).min()),
                      "ort_int8_vs_ember_int8_cos_min": float(cosines(ortq, eq).min())})
        check["f32_match"] = bool(cf.min() >= 0.9999)
    print(json.dumps({"source": "check", **check}))
    if ember_file and not check["f32_match"]:
        die(f"ORT f32 and Ember f32 disagree: min cosine {check['ort_f32_vs_ember_f32_cos_min']:.6f} < 0.9999")

    # ---- latency -------------------------------------------------------------------------
    sf, sq = session(paths[best_f], a.threads), session(paths[best_q], a.threads)

    def ort_round():
        rows = {}
        for b in batches:
            f, q = [], []
            for _ in range(2):  # alternate, min of the p50s (as Ember's example)
                f.append(p50_ms(sf, feeds[b], a.min_ms))
                q.append(p50_ms(sq, feeds[b], a.min_ms))
            rows[b] = {"source": "ort", "batch": b, "seq": int(feeds[b]["input_ids"].shape[1]), "threads": a.threads,
                       "f32_ms": min(f), "int8_ms": min(q)}
            print(json.dumps(rows[b]), flush=True)
        return rows

    if not a.ember:
        ort_round()
        return

    ember_rows, ort_rows = collections.defaultdict(list), collections.defaultdict(list)
    for r in range(a.rounds):
        for b, d in run_ember(a, []).items():
            ember_rows[b].append(d)
            print(json.dumps({"source": "ember", "round": r, **d}), flush=True)
        for b, d in ort_round().items():
            ort_rows[b].append(d)

    med = lambda rows, k: statistics.median(d[k] for d in rows)
    summary = []
    print(f"\n| batch | seq | Ember f32 ms | ORT f32 ms | Ember/ORT f32 | Ember int8 ms | ORT int8 ms | Ember/ORT int8 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in batches:
        if b not in ember_rows:
            continue
        ef, of = med(ember_rows[b], "f32_ms"), med(ort_rows[b], "f32_ms")
        eq, oq = med(ember_rows[b], "int8_ms"), med(ort_rows[b], "int8_ms")
        es, os_ = ember_rows[b][0]["seq"], ort_rows[b][0]["seq"]
        if es != os_:
            print(f"# warning: batch {b}: Ember seq {es} != ORT seq {os_}", file=sys.stderr)
        print(f"| {b} | {os_} | {ef:.2f} | {of:.2f} | {ef / of:.2f} | {eq:.2f} | {oq:.2f} | {eq / oq:.2f} |")
        summary.append({"batch": b, "seq": os_, "ember_f32_ms": ef, "ort_f32_ms": of, "ember_int8_ms": eq,
                        "ort_int8_ms": oq, "ember_f32_over_ort_f32": ef / of, "ember_int8_over_ort_int8": eq / oq})
    print(json.dumps({"source": "compare", "threads": a.threads, "rounds": a.rounds, "min_ms": a.min_ms,
                      "onnxruntime": ort.__version__, "f32_graph": best_f, "int8_graph": best_q,
                      "fusions": {k: v for k, v in fusion_stats.items() if v}, "check": check, "batches": summary}))


if __name__ == "__main__":
    main()
