#!/usr/bin/env python3
"""Independent check of a sentence-embedding student: a numpy forward pass of Hugging Face
BERT-family directories (the teacher and a float student written by Ember's
`Bert::save_pretrained`; `pruned_heads` and narrowed FFNs read from the tensors' shapes),
tokenized by the Python `tokenizers` package, mean-pooled over real tokens and L2-normalised as
sentence-transformers does. Prints the Spearman correlation of the student's pairwise cosine
similarities with the teacher's, and the cosine between the two embeddings of each sentence.
Shares no code with Ember.

usage: python3 scripts/embed_eval.py TEACHER_DIR STUDENT_DIR SENTENCES_FILE [EMBEDDINGS_JSON KEY]
  SENTENCES_FILE: one sentence per line.
  EMBEDDINGS_JSON KEY: also score embeddings computed elsewhere, e.g. the `int8` rows written by
  `cargo run --release -p ember-models --example minilm -- --model-dir STUDENT_DIR
  --int8-file INT8_DIR --sentences SENTENCES_FILE --embeddings-out FILE --skip-latency`.
needs: pip install numpy safetensors tokenizers
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def erf(x):
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-a * a)
    return s * y


def act(name, x):
    if name == "gelu":
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    if name == "relu":
        return np.maximum(x, 0.0)
    return x / (1.0 + np.exp(-x))


def ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


class Encoder:
    def __init__(self, d):
        self.cfg = json.load(open(f"{d}/config.json"))
        w = load_file(f"{d}/model.safetensors")
        self.w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in w.items()}
        self.tok = Tokenizer.from_file(f"{d}/tokenizer.json")
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=min(128, self.cfg["max_position_embeddings"]))

    def embed(self, sentence):
        c, w = self.cfg, self.w
        ids = self.tok.encode(sentence).ids
        t = len(ids)
        eps = c.get("layer_norm_eps", 1e-12)
        head = c["hidden_size"] // c["num_attention_heads"]
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
        x = x + w["embeddings.token_type_embeddings.weight"][[0] * t]
        x = ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for l in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{l}."
            lin = lambda n, v: v @ w[p + n + ".weight"].T + w[p + n + ".bias"]
            q, k, v = (lin(f"attention.self.{n}", x) for n in ("query", "key", "value"))
            ctx = []
            for h in range(q.shape[1] // head):
                s = slice(h * head, (h + 1) * head)
                sc = q[:, s] @ k[:, s].T / np.sqrt(head)
                sc = np.exp(sc - sc.max(-1, keepdims=True))
                ctx.append(sc / sc.sum(-1, keepdims=True) @ v[:, s])
            x = ln(lin("attention.output.dense", np.concatenate(ctx, -1)) + x,
                   w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            f = lin("output.dense", act(c.get("hidden_act", "gelu"), lin("intermediate.dense", x)))
            x = ln(f + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        m = x.mean(0)
        return m / np.linalg.norm(m)


def ranks(v):
    order = np.argsort(v, kind="mergesort")
    r = np.empty(len(v))
    r[order] = np.arange(len(v))
    # average ties
    sv = v[order]
    i = 0
    while i < len(sv):
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        if j > i:
            r[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def pairs(e):
    s = e @ e.T
    iu = np.triu_indices(len(e), 1)
    return s[iu]


def score(name, teacher, e):
    cos = np.sum(teacher * e, 1) / (np.linalg.norm(teacher, axis=1) * np.linalg.norm(e, axis=1))
    rho = spearman(pairs(e / np.linalg.norm(e, axis=1, keepdims=True)), pairs(teacher))
    print(json.dumps({"model": name, "spearman": round(rho, 5), "cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5)}))


def main():
    tdir, sdir, sfile = sys.argv[1:4]
    sentences = [l.strip() for l in open(sfile, encoding="utf-8") if l.strip()]
    teacher, student = Encoder(tdir), Encoder(sdir)
    te = np.stack([teacher.embed(s) for s in sentences])
    se = np.stack([student.embed(s) for s in sentences])
    print(json.dumps({"sentences": len(sentences), "pairs": len(sentences) * (len(sentences) - 1) // 2}))
    score(sdir, te, se)
    if len(sys.argv) >= 6:
        rows = np.array(json.load(open(sys.argv[4]))[sys.argv[5]], dtype=np.float64)
        score(f"{sys.argv[4]}:{sys.argv[5]}", te, rows)


if __name__ == "__main__":
    main()
