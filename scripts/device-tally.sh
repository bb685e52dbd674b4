#!/usr/bin/env bash
# Prints how many tests ran on each device, from the log that ember-testkit appends to when
# EMBER_DEVICE_LOG is set (one `device<TAB>binary::test` line per test and device).
#   EMBER_DEVICE_LOG=target/devices.tsv cargo test --workspace --features wgpu,ndarray
#   scripts/device-tally.sh target/devices.tsv
set -euo pipefail
log="${1:?usage: device-tally.sh LOG}"
if [ ! -s "$log" ]; then
    echo "device-tally: $log is empty or missing (was EMBER_DEVICE_LOG set?)" >&2
    exit 1
fi
echo "tests run per device (unique tests; a test that loops over devices counts once on each):"
sort -u "$log" | cut -f1 | sort | uniq -c | awk '{printf "  %-8s %5d\n", $2, $1}'
