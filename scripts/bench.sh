#!/usr/bin/env bash
# mstate benchmarks: builds the release binaries, then runs every part of
# `mstate-bench all` (per-operation comparison with the I/O floor and
# SQLite, peak RSS, whole CLI processes, whole `save`/`load` processes
# against a C floor program, the seed and the sqlite3 CLI, system calls,
# callgrind
# instruction counts, contention, durable append rate, event queries at
# 1K / 1M / 10M events, and the file store and PostgreSQL side by side)
# and prints markdown tables, also written to target/bench-results.md.
#
# The PostgreSQL part uses a fresh schema (dropped after) of the server at
# MSTATE_BENCH_PG_URL, else MSTATE_TEST_PG_URL, else
# postgresql://postgres@127.0.0.1:5432/test; without a server it says so
# and is skipped, unless MSTATE_TEST_REQUIRE_TOOLS=1 (as in CI).
#
#   bash scripts/bench.sh           # full run (generates ~2.5 GB of logs once
#                                   # under target/bench-data/; ~10-15 min)
#   bash scripts/bench.sh --quick   # smoke run: tiny sizes, few samples
#
# Exits non-zero if any part fails to run (a store check failing counts).
# It never judges timings: budget verdicts are printed, not enforced.
# strace, valgrind, cc (builds the C floor), sqlite3 (the CLI; the library
# comparisons use a bundled SQLite) and python3 (the seed checks JSON with
# it) are optional: without them those parts or rows say so and are
# skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
case "${1:-}" in
  --quick) quick=(--quick) ;;
  "") ;;
  *) echo "usage: bash scripts/bench.sh [--quick]" >&2; exit 2 ;;
esac

echo "== building release binaries" >&2
cargo build --release --locked --quiet -p mstate -p mstate-bench

target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/release"

for tool in strace valgrind cc sqlite3 python3; do
  pkg=$tool
  [ "$tool" = cc ] && pkg=gcc
  command -v "$tool" >/dev/null 2>&1 \
    || echo "note: $tool not installed; what needs it is skipped (apt-get install -y $pkg)" >&2
done

echo "== running mstate-bench all ${quick[*]:-}" >&2
"$bin/mstate-bench" all "${quick[@]}" \
  --mstate "$bin/mstate" --cat "$bin/mstate-bench-cat" \
  --out "$target_dir/bench-results.md"
echo >&2
echo "== results written to $target_dir/bench-results.md" >&2
