#!/usr/bin/env bash
# Times the README's two commands the way a newcomer meets them: a fresh clone of HEAD in a
# scratch directory, no build, no data, then `cargo xtask reproduce` and `cargo test --workspace`.
# Prints each command's wall time and writes them, with the CPU, to docs/first-run.json here
# (the README's quick start quotes that file; a test checks the quote).
#   scripts/time-fresh-clone.sh [SCRATCH_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=${1:-$(mktemp -d)}
clone=$scratch/under8k
rm -rf "$clone"
git clone -q "$repo" "$clone"
cd "$clone"
unset UNDER8K_DATA
# Runs a command into a log; prints its wall time in minutes, one decimal.
minutes() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$scratch/$2.log" 2>&1
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 60 }'
}
first=$(minutes cargo xtask reproduce)
second=$(minutes cargo test --workspace)
# Cargo's own "Finished ... in 4m 50s" line: the compiling part of each command.
compiled() {
    grep -m1 -o 'Finished .* in [0-9hms. ]*' "$scratch/$1.log" | sed 's/.* in //' |
        awk '{ t = 0; for (i = 1; i <= NF; i++) { v = $i + 0; if ($i ~ /m$/) t += 60 * v; else if ($i ~ /h$/) t += 3600 * v; else t += v } printf "%.1f", t / 60 }'
}
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
family=$(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
model=$(grep -m1 '^model[[:space:]]*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
avx=$(grep -qw avx512f /proc/cpuinfo && echo AVX-512 || (grep -qw avx2 /proc/cpuinfo && echo AVX2 || echo "no AVX2"))
cat >"$repo/docs/first-run.json" <<JSON
{
  "date": "$(date -u +%F)",
  "cpu": "$cpu, family $family model $model, $avx",
  "cores": $(nproc),
  "first_command": "cargo xtask reproduce",
  "first_minutes": $first,
  "first_compile_minutes": $(compiled xtask),
  "second_command": "cargo test --workspace",
  "second_minutes": $second,
  "second_compile_minutes": $(compiled test)
}
JSON
cat "$repo/docs/first-run.json"
echo "logs in $scratch"
