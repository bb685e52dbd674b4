#!/usr/bin/env python3
"""Independent reference for ember-layers' MobileBERT: small random weights and the numpy
float64 forward pass of Hugging Face's MobileBertModel definition (transformers
`modeling_mobilebert.py`, written out here from the paper and that definition; no code shared
with the Rust crate), every layer's hidden state and attention probabilities on a padded batch.

  embeddings: e = word[ids]                                         (size E)
              trigram: e = [e shifted left (next token), e, e shifted right (previous)], zero
              padded at the ends; e = transformation(e)             (3E or E -> H)
              x = norm(e + position + token_type)
  layer:      (q_in, k_in, v_in, residual):
                use_bottleneck_attention: all four = norm(dense_in(x))             (H -> B)
                else (key_query_shared_bottleneck): q_in = k_in = norm(dense_att(x)),
                     v_in = x, residual = norm(dense_in(x))
              a = norm(dense(softmax(q k^T / sqrt(d) + mask) v) + residual)         (B)
              for each of the num_feedforward_networks - 1 extra FFNs:
                  a = norm(out(relu(inter(a))) + a)
              y = norm(out(relu(inter(a))) + a)                     (the layer's main FFN)
              x = norm(bottleneck_out(y) + x)                       (B -> H)
  norm:       NoNorm (x * gamma + beta) or LayerNorm (eps 1e-12)
  mask:       (1 - attention_mask) * float64 min, added to every head's scores
  outputs:    hidden_states = [embedding output, each layer's output], attentions per layer

Two cases: the released structure (NoNorm, trigram input, shared query/key bottleneck) and its
other options (LayerNorm, no trigram, attention over the input bottleneck). Weights are written
under ember-layers' module paths (linear weights `[in, out]`), with the inputs and the outputs,
to one JSON file.

usage: python3 scripts/mobilebert_reference.py [OUT_FILE]
       (default crates/ember-layers/tests/data/mobilebert_reference.json)
needs: pip install numpy
"""
import json
import math
import os
import sys

import numpy as np

IDS = [[2, 17, 5, 23, 9, 3, 0], [2, 7, 29, 1, 12, 25, 3]]
TYPES = [[0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1, 1]]
MASK = [[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]]

BASE = {
    "vocab_size": 30,
    "embedding_size": 6,
    "hidden_size": 16,
    "intra_bottleneck_size": 8,
    "intermediate_size": 12,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_feedforward_networks": 3,
    "max_position_embeddings": 10,
    "type_vocab_size": 2,
}
CASES = [
    dict(BASE, name="released", normalization="no_norm", trigram_input=True, use_bottleneck_attention=False),
    dict(BASE, name="options", normalization="layer_norm", trigram_input=False, use_bottleneck_attention=True,
         num_feedforward_networks=2),
]


def weights(rng, c):
    """Hugging Face's parameter names (linear weights [out, in], as torch stores them)."""
    v, e, h, b, f = (c["vocab_size"], c["embedding_size"], c["hidden_size"], c["intra_bottleneck_size"],
                     c["intermediate_size"])
    w = {}

    def lin(name, out, inp, gain=0.6):
        # Scaled by fan-in so that NoNorm's unnormalised sums stay of order one.
        w[name + ".weight"] = rng.normal(0.0, gain / math.sqrt(inp), (out, inp))
        w[name + ".bias"] = rng.normal(0.0, 0.1, (out,))

    def norm(name, d):
        w[name + ".weight"] = 1.0 + rng.normal(0.0, 0.2, (d,))
        w[name + ".bias"] = rng.normal(0.0, 0.1, (d,))

    w["embeddings.word_embeddings.weight"] = rng.normal(0.0, 1.0, (v, e))
    w["embeddings.position_embeddings.weight"] = rng.normal(0.0, 0.5, (c["max_position_embeddings"], h))
    w["embeddings.token_type_embeddings.weight"] = rng.normal(0.0, 0.5, (c["type_vocab_size"], h))
    lin("embeddings.embedding_transformation", h, (3 if c["trigram_input"] else 1) * e)
    norm("embeddings.LayerNorm", h)
    for i in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        # Larger query and key weights: peaked attention, not near-uniform.
        lin(f"{p}.attention.self.query", b, b, 2.5)
        lin(f"{p}.attention.self.key", b, b, 2.5)
        lin(f"{p}.attention.self.value", b, b if c["use_bottleneck_attention"] else h)
        lin(f"{p}.attention.output.dense", b, b)
        norm(f"{p}.attention.output.LayerNorm", b)
        lin(f"{p}.intermediate.dense", f, b)
        lin(f"{p}.output.dense", b, f)
        norm(f"{p}.output.LayerNorm", b)
        lin(f"{p}.output.bottleneck.dense", h, b)
        norm(f"{p}.output.bottleneck.LayerNorm", h)
        lin(f"{p}.bottleneck.input.dense", b, h)
        norm(f"{p}.bottleneck.input.LayerNorm", b)
        lin(f"{p}.bottleneck.attention.dense", b, h)
        norm(f"{p}.bottleneck.attention.LayerNorm", b)
        for k in range(c["num_feedforward_networks"] - 1):
            lin(f"{p}.ffn.{k}.intermediate.dense", f, b)
            lin(f"{p}.ffn.{k}.output.dense", b, f)
            norm(f"{p}.ffn.{k}.output.LayerNorm", b)
    return w


def forward(c, w, ids, types, mask):
    ids, types, mask = np.array(ids), np.array(types), np.array(mask, dtype=np.float64)
    bsz, t = ids.shape
    heads = c["num_attention_heads"]
    d = c["intra_bottleneck_size"] // heads

    def linear(name, x):
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    def norm(name, x):
        g, beta = w[name + ".weight"], w[name + ".bias"]
        if c["normalization"] == "no_norm":
            return x * g + beta
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * g + beta

    e = w["embeddings.word_embeddings.weight"][ids]
    if c["trigram_input"]:
        zero = np.zeros((bsz, 1, e.shape[2]))
        nxt = np.concatenate([e[:, 1:], zero], axis=1)
        prv = np.concatenate([zero, e[:, :-1]], axis=1)
        e = np.concatenate([nxt, e, prv], axis=2)
    e = linear("embeddings.embedding_transformation", e)
    pos = w["embeddings.position_embeddings.weight"][np.arange(t)][None]
    typ = w["embeddings.token_type_embeddings.weight"][types]
    x = norm("embeddings.LayerNorm", e + pos + typ)
    add = (1.0 - mask)[:, None, None, :] * np.finfo(np.float64).min
    hidden, attentions = [x], []
    for i in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        residual = norm(f"{p}.bottleneck.input.LayerNorm", linear(f"{p}.bottleneck.input.dense", x))
        if c["use_bottleneck_attention"]:
            q_in = k_in = v_in = residual
        else:
            shared = norm(f"{p}.bottleneck.attention.LayerNorm", linear(f"{p}.bottleneck.attention.dense", x))
            q_in, k_in, v_in = shared, shared, x

        def split(z):
            return z.reshape(bsz, t, heads, d).transpose(0, 2, 1, 3)

        q = split(linear(f"{p}.attention.self.query", q_in))
        k = split(linear(f"{p}.attention.self.key", k_in))
        v = split(linear(f"{p}.attention.self.value", v_in))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + add
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(bsz, t, heads * d)
        a = norm(f"{p}.attention.output.LayerNorm", linear(f"{p}.attention.output.dense", ctx) + residual)
        for k_ in range(c["num_feedforward_networks"] - 1):
            inner = np.maximum(linear(f"{p}.ffn.{k_}.intermediate.dense", a), 0.0)
            a = norm(f"{p}.ffn.{k_}.output.LayerNorm", linear(f"{p}.ffn.{k_}.output.dense", inner) + a)
        inner = np.maximum(linear(f"{p}.intermediate.dense", a), 0.0)
        y = norm(f"{p}.output.LayerNorm", linear(f"{p}.output.dense", inner) + a)
        x = norm(f"{p}.output.bottleneck.LayerNorm", linear(f"{p}.output.bottleneck.dense", y) + x)
        hidden.append(x)
        attentions.append(probs)
    return hidden, attentions


def ember_paths(c, w):
    """The same weights under ember-layers' module paths (linear weights [in, out])."""
    n = c["num_feedforward_networks"]
    norm_leaf = "no_norm" if c["normalization"] == "no_norm" else "layer_norm"

    def norm_keys(hf, ember):
        if norm_leaf == "no_norm":
            return {f"{ember}.no_norm.weight": w[hf + ".weight"], f"{ember}.no_norm.bias": w[hf + ".bias"]}
        return {f"{ember}.layer_norm.gamma": w[hf + ".weight"], f"{ember}.layer_norm.beta": w[hf + ".bias"]}

    def lin_keys(hf, ember):
        return {f"{ember}.weight": w[hf + ".weight"].T, f"{ember}.bias": w[hf + ".bias"]}

    out = {
        "embedding.word.weight": w["embeddings.word_embeddings.weight"],
        "embedding.position.weight": w["embeddings.position_embeddings.weight"],
        "embedding.token_type.weight": w["embeddings.token_type_embeddings.weight"],
    }
    out.update(lin_keys("embeddings.embedding_transformation", "embedding.transformation"))
    out.update(norm_keys("embeddings.LayerNorm", "embedding.norm"))
    for i in range(c["num_hidden_layers"]):
        p, q = f"encoder.layer.{i}", f"layers.{i}"
        out.update(lin_keys(f"{p}.bottleneck.input.dense", f"{q}.bottleneck_input.dense"))
        out.update(norm_keys(f"{p}.bottleneck.input.LayerNorm", f"{q}.bottleneck_input.norm"))
        out.update(lin_keys(f"{p}.bottleneck.attention.dense", f"{q}.bottleneck_attention.dense"))
        out.update(norm_keys(f"{p}.bottleneck.attention.LayerNorm", f"{q}.bottleneck_attention.norm"))
        for m in ("query", "key", "value"):
            out.update(lin_keys(f"{p}.attention.self.{m}", f"{q}.attention.{m}"))
        out.update(lin_keys(f"{p}.attention.output.dense", f"{q}.attention.output"))
        out.update(norm_keys(f"{p}.attention.output.LayerNorm", f"{q}.attention_norm"))
        for k in range(n - 1):
            out.update(lin_keys(f"{p}.ffn.{k}.intermediate.dense", f"{q}.ffn.{k}.ffn.inner"))
            out.update(lin_keys(f"{p}.ffn.{k}.output.dense", f"{q}.ffn.{k}.ffn.outer"))
            out.update(norm_keys(f"{p}.ffn.{k}.output.LayerNorm", f"{q}.ffn.{k}.norm"))
        out.update(lin_keys(f"{p}.intermediate.dense", f"{q}.ffn.{n - 1}.ffn.inner"))
        out.update(lin_keys(f"{p}.output.dense", f"{q}.ffn.{n - 1}.ffn.outer"))
        out.update(norm_keys(f"{p}.output.LayerNorm", f"{q}.ffn.{n - 1}.norm"))
        out.update(lin_keys(f"{p}.output.bottleneck.dense", f"{q}.output_bottleneck.dense"))
        out.update(norm_keys(f"{p}.output.bottleneck.LayerNorm", f"{q}.output_bottleneck.norm"))
    return out


def rounded(a):
    return np.round(np.asarray(a, dtype=np.float64), 9).tolist()


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "crates/ember-layers/tests/data/mobilebert_reference.json"
    rng = np.random.default_rng(20261204)
    cases = []
    for c in CASES:
        # Weights rounded to float32 first, so that both sides start from the same values.
        w = {k: v.astype(np.float32).astype(np.float64) for k, v in weights(rng, c).items()}
        hidden, attentions = forward(c, w, IDS, TYPES, MASK)
        params = {k: {"shape": list(v.shape), "data": v.reshape(-1).tolist()} for k, v in ember_paths(c, w).items()}
        cases.append({
            "config": c,
            "params": params,
            "ids": IDS,
            "token_types": TYPES,
            "attention_mask": MASK,
            "hidden_states": [rounded(h) for h in hidden],
            "attentions": [rounded(a) for a in attentions],
        })
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"generator": "scripts/mobilebert_reference.py", "cases": cases}, f, separators=(",", ":"))
    print(f"wrote {path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
