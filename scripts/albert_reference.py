#!/usr/bin/env python3
"""Independent reference for ember-models' ALBERT loading: writes a small random Hugging Face
`AlbertModel` checkpoint (config.json + model.safetensors in Hugging Face's key layout, with the
pooler, a masked-LM head and the position_ids buffer that a loader must skip) and the numpy
float64 forward pass of Hugging Face's AlbertModel definition on a padded batch:

  embeddings: LayerNorm(word + position + token_type)            (size E)
  encoder:    h = embedding_hidden_mapping_in(e)                   (E -> H)
              for i in range(N): group g = int(i / (N / G))
                  for each of the group's inner_group_num layers:
                      a = LayerNorm(h + dense(softmax(q k^T / sqrt(d) + mask) v))
                      h = full_layer_layer_norm(ffn_output(gelu_new(ffn(a))) + a)
  mask:       (1 - attention_mask) * float64 min, added to every head's scores

The shape is deliberately not the released one (2 groups of 2 inner layers, E != H, 4 heads) so
that the key map's general case is tested. Shares no code with the Rust crate.

usage: python3 scripts/albert_reference.py [OUT_DIR]   (default crates/ember-models/tests/data)
needs: pip install numpy safetensors
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import save_file

CONFIG = {
    "architectures": ["AlbertModel"],
    "model_type": "albert",
    "vocab_size": 40,
    "embedding_size": 8,
    "hidden_size": 16,
    "num_hidden_layers": 4,
    "num_hidden_groups": 2,
    "inner_group_num": 2,
    "num_attention_heads": 4,
    "intermediate_size": 24,
    "hidden_act": "gelu_new",
    "max_position_embeddings": 12,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}

IDS = [[2, 17, 5, 33, 9, 3, 0, 0], [2, 7, 39, 1, 12, 25, 8, 3]]
TYPES = [[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1]]
MASK = [[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]]


def weights(rng, c):
    v, e, h, f = c["vocab_size"], c["embedding_size"], c["hidden_size"], c["intermediate_size"]
    w = {}

    def lin(name, out, inp):
        w[name + ".weight"] = rng.normal(0.0, 0.3, (out, inp)).astype(np.float32)
        w[name + ".bias"] = rng.normal(0.0, 0.1, (out,)).astype(np.float32)

    def norm(name, d):
        w[name + ".weight"] = (1.0 + rng.normal(0.0, 0.1, (d,))).astype(np.float32)
        w[name + ".bias"] = rng.normal(0.0, 0.1, (d,)).astype(np.float32)

    w["embeddings.word_embeddings.weight"] = rng.normal(0.0, 1.0, (v, e)).astype(np.float32)
    w["embeddings.position_embeddings.weight"] = rng.normal(0.0, 0.5, (c["max_position_embeddings"], e)).astype(np.float32)
    w["embeddings.token_type_embeddings.weight"] = rng.normal(0.0, 0.5, (c["type_vocab_size"], e)).astype(np.float32)
    norm("embeddings.LayerNorm", e)
    w["embeddings.position_ids"] = np.arange(c["max_position_embeddings"], dtype=np.int64)[None, :]
    lin("encoder.embedding_hidden_mapping_in", h, e)
    for g in range(c["num_hidden_groups"]):
        for j in range(c["inner_group_num"]):
            p = f"encoder.albert_layer_groups.{g}.albert_layers.{j}"
            for m in ("query", "key", "value", "dense"):
                lin(f"{p}.attention.{m}", h, h)
            norm(f"{p}.attention.LayerNorm", h)
            lin(f"{p}.ffn", f, h)
            lin(f"{p}.ffn_output", h, f)
            norm(f"{p}.full_layer_layer_norm", h)
    lin("pooler", h, h)
    # AlbertForMaskedLM's head: not part of the encoder, a loader skips it.
    w["predictions.bias"] = np.zeros((v,), dtype=np.float32)
    lin("predictions.dense", e, h)
    norm("predictions.LayerNorm", e)
    w["predictions.decoder.weight"] = w["embeddings.word_embeddings.weight"].copy()
    w["predictions.decoder.bias"] = np.zeros((v,), dtype=np.float32)
    return w


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def forward(w, c, ids, types, mask):
    eps, heads = c["layer_norm_eps"], c["num_attention_heads"]
    f64 = {k: v.astype(np.float64) for k, v in w.items()}
    ids, types, mask = np.array(ids), np.array(types), np.array(mask, dtype=np.float64)
    b, s = ids.shape
    e = f64["embeddings.word_embeddings.weight"][ids] + f64["embeddings.position_embeddings.weight"][np.arange(s)][None]
    e = e + f64["embeddings.token_type_embeddings.weight"][types]
    e = layer_norm(e, f64["embeddings.LayerNorm.weight"], f64["embeddings.LayerNorm.bias"], eps)

    def lin(x, name):
        return x @ f64[name + ".weight"].T + f64[name + ".bias"]

    h = lin(e, "encoder.embedding_hidden_mapping_in")
    hid = h.shape[-1]
    d = hid // heads
    bias = ((1.0 - mask) * np.finfo(np.float64).min)[:, None, None, :]
    n, groups, inner = c["num_hidden_layers"], c["num_hidden_groups"], c["inner_group_num"]
    for i in range(n):
        g = int(i / (n / groups))
        for j in range(inner):
            p = f"encoder.albert_layer_groups.{g}.albert_layers.{j}"

            def split(t):
                return t.reshape(b, s, heads, d).transpose(0, 2, 1, 3)

            q, k, v = (split(lin(h, f"{p}.attention.{m}")) for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
            scores = scores - scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs = probs / probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, hid)
            a = layer_norm(h + lin(ctx, f"{p}.attention.dense"), f64[f"{p}.attention.LayerNorm.weight"],
                           f64[f"{p}.attention.LayerNorm.bias"], eps)
            ffn = lin(gelu_new(lin(a, f"{p}.ffn")), f"{p}.ffn_output")
            h = layer_norm(ffn + a, f64[f"{p}.full_layer_layer_norm.weight"], f64[f"{p}.full_layer_layer_norm.bias"], eps)
    return h


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "crates/ember-models/tests/data"
    ckpt = os.path.join(out, "albert_tiny")
    os.makedirs(ckpt, exist_ok=True)
    rng = np.random.default_rng(20261202)
    w = weights(rng, CONFIG)
    save_file(w, os.path.join(ckpt, "model.safetensors"))
    with open(os.path.join(ckpt, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")
    h = forward(w, CONFIG, IDS, TYPES, MASK)
    ref = {
        "source": "scripts/albert_reference.py (numpy float64 forward of Hugging Face's AlbertModel definition)",
        "ids": IDS,
        "token_types": TYPES,
        "attention_mask": MASK,
        "last_hidden": [[[float(x) for x in tok] for tok in seq] for seq in h],
    }
    with open(os.path.join(out, "albert_reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    print(f"wrote {ckpt} and {out}/albert_reference.json")


if __name__ == "__main__":
    main()
