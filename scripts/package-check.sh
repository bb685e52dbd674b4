#!/usr/bin/env bash
# Packages every publishable crate (`cargo package --workspace`, ember-testkit excluded: it is
# `publish = false`) and checks that what a user would download builds: the `.crate` files are
# unpacked into one scratch workspace whose `[patch.crates-io]` points the crates at each other
# (none is on the registry yet), then `cargo check` and `cargo doc` run on the packaged sources
# alone. That catches files a crate needs but does not ship (a guide included from outside the
# crate, a test data file, a license) and broken intra-doc links.
#
# Why not `cargo package`'s own verify build: it builds Burn afresh for each of the 8 crates
# (measured: over 4 minutes a crate on 2 cores), about half of CI's time limit. This check
# shares the main target directory and the root's dev profile, so Burn's artefacts from the
# earlier steps are reused and only the Ember crates are compiled again.
#
# Usage: scripts/package-check.sh [extra `cargo package` flags, e.g. --allow-dirty]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo package --workspace --exclude ember-testkit --no-verify --offline "$@"

target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
version=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ember-slm"))')
scratch="$target_dir/package-check"
rm -rf "$scratch"
mkdir -p "$scratch"
crates=(ember-kernels ember-quant ember-layers ember-distill ember-prune ember-eval ember-models ember-slm)
members=()
for c in "${crates[@]}"; do
    tar -xzf "$target_dir/package/$c-$version.crate" -C "$scratch"
    members+=("\"$c-$version\"")
done
{
    echo "[workspace]"
    echo "members = [$(IFS=,; echo "${members[*]}")]"
    echo 'resolver = "3"'
    echo
    echo "[patch.crates-io]"
    for c in "${crates[@]}"; do
        [ "$c" = ember-slm ] && continue
        echo "$c = { path = \"$c-$version\" }"
    done
    echo
    # The root's profiles, so the dependencies built by the earlier steps are reused.
    sed -n '/^\[profile/,$p' Cargo.toml
} >"$scratch/Cargo.toml"
# The root lock file pins the same dependency versions as the test build.
cp Cargo.lock "$scratch/Cargo.lock"

# Features cost only what is used: ember-eval alone (default features) builds neither plotters
# nor Burn's optimizers or autodiff.
heavy=$(cargo tree -p ember-eval -e normal --offline --prefix none | grep -oE "^(plotters|burn-optim|burn-autodiff) " | sort -u || true)
if [ -n "$heavy" ]; then
    echo "ember-eval with default features depends on: $heavy" >&2
    exit 1
fi

cd "$scratch"
export CARGO_TARGET_DIR="$target_dir"
cargo check --offline --workspace --lib --bins
RUSTDOCFLAGS="-D warnings" cargo doc --offline --workspace --no-deps --lib
echo "package check: ${#crates[@]} packaged crates build and document from their own sources"
