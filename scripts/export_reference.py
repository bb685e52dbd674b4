#!/usr/bin/env python3
"""Independent reader of a Hugging Face-layout BERT directory written by Ember's
`Bert::save_pretrained`: reads config.json (including transformers' `pruned_heads`) and
model.safetensors with numpy, records every tensor's name, shape, sum and absolute sum, and runs
the BertModel forward (float64; embeddings + LayerNorm, post-LN layers, erf GELU, heads of width
hidden_size / num_attention_heads, as many per layer as its query weight holds) on fixed id
sequences, one at a time without padding, giving the last hidden state per token and the
mean-pooled, L2-normalised embedding (sentence-transformers). Shares no code with the crate.

usage: python3 scripts/export_reference.py EXPORT_DIR OUT.json
needs: pip install numpy safetensors
"""
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file

# The id sequences of crates/ember-models/tests/export.rs.
IDS = [[2, 7, 11, 5, 3], [2, 29, 3], [2, 4, 4, 8, 17, 21, 9, 3]]


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def act(name, x):
    if name == "gelu":
        erf = np.vectorize(math.erf)
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if name == "relu":
        return np.maximum(x, 0.0)
    if name in ("silu", "swish"):
        return x / (1.0 + np.exp(-x))
    raise ValueError(name)


def main():
    d, out = sys.argv[1], sys.argv[2]
    cfg = json.load(open(f"{d}/config.json"))
    raw = load_file(f"{d}/model.safetensors")
    w = {k: v.astype(np.float64) for k, v in raw.items()}
    eps = cfg.get("layer_norm_eps", 1e-12)
    hidden = cfg["hidden_size"]
    head = hidden // cfg["num_attention_heads"]
    fn = cfg.get("hidden_act", "gelu")
    records = []
    for ids in IDS:
        t = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:t]
            + w["embeddings.token_type_embeddings.weight"][[0] * t]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for l in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{l}."
            lin = lambda n, v: v @ w[p + n + ".weight"].T + w[p + n + ".bias"]
            q, k, v = (lin(f"attention.self.{n}", x) for n in ("query", "key", "value"))
            heads = q.shape[1] // head
            ctx = []
            for h in range(heads):
                s = slice(h * head, (h + 1) * head)
                scores = q[:, s] @ k[:, s].T / math.sqrt(head)
                scores = np.exp(scores - scores.max(-1, keepdims=True))
                ctx.append((scores / scores.sum(-1, keepdims=True)) @ v[:, s])
            a = lin("attention.output.dense", np.concatenate(ctx, -1))
            x = layer_norm(a + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            f = lin("output.dense", act(fn, lin("intermediate.dense", x)))
            x = layer_norm(f + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        mean = x.mean(0)
        records.append({"ids": ids, "last_hidden": x.tolist(), "embedding": (mean / np.linalg.norm(mean)).tolist()})
    tensors = {
        k: {"shape": list(v.shape), "sum": float(v.astype(np.float64).sum()), "abs_sum": float(np.abs(v.astype(np.float64)).sum())}
        for k, v in raw.items()
    }
    json.dump({"source": "scripts/export_reference.py", "tensors": tensors, "sequences": records}, open(out, "w"), indent=1)
    print(f"wrote {out}: {len(tensors)} tensors, {len(records)} sequences")


if __name__ == "__main__":
    main()
