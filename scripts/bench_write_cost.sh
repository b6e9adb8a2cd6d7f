#!/usr/bin/env bash
# What a write costs as a whole `mstate` process, for two binaries side by
# side (say, before and after a change): save, update, and update under a
# held lock (`lock run`: each write takes the lock's exclusion), and log.
# Rounds alternate the binaries; each round times N back-to-back calls on
# a fresh store on real disk; the medians and ranges over the rounds are
# printed, with the syscalls and syncs of one call (strace -c).
#
#   bash scripts/bench_write_cost.sh OLD_MSTATE NEW_MSTATE [ROUNDS] [N]
set -euo pipefail
old=$1 new=$2 rounds=${3:-5} n=${4:-100}
work="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/bench-work/write-cost"
rm -rf "$work" && mkdir -p "$work"
state='{"phase": "build", "tasks": {"done": 3, "total": 10}, "notes": "'$(head -c 900 /dev/zero | tr '\0' x)'"}'

# time_ms BIN OP: milliseconds per call of OP, over N calls.
time_ms() {
  local bin=$1 op=$2 dir
  dir=$(mktemp -d "$work/s.XXXXXX")
  (cd "$dir" && "$bin" save m "$state" >/dev/null)
  local start end
  start=$(date +%s%N)
  case $op in
    save) (cd "$dir" && for _ in $(seq "$n"); do "$bin" save m "$state" >/dev/null; done) ;;
    update) (cd "$dir" && for _ in $(seq "$n"); do "$bin" update m --set /tasks/done=4 >/dev/null; done) ;;
    update-held) (cd "$dir" && "$bin" lock run m -- sh -c 'for _ in $(seq '"$n"'); do "$0" update m --set /tasks/done=4 >/dev/null; done' "$bin") ;;
    log) (cd "$dir" && for _ in $(seq "$n"); do "$bin" log m progress '{"p": 1}' >/dev/null; done) ;;
  esac
  end=$(date +%s%N)
  rm -rf "$dir"
  awk -v s="$start" -v e="$end" -v n="$n" 'BEGIN {printf "%.3f\n", (e - s) / 1e6 / n}'
}

# calls BIN OP: "syscalls (syncs)" of one call.
calls() {
  local bin=$1 op=$2 dir args
  dir=$(mktemp -d "$work/c.XXXXXX")
  (cd "$dir" && "$bin" save m "$state" >/dev/null && "$bin" save m "$state" >/dev/null)
  case $op in
    save) args=(save m "$state") ;;
    update) args=(update m --set /tasks/done=4) ;;
    log) args=(log m progress '{"p": 1}') ;;
  esac
  (cd "$dir" && strace -f -c -o "$dir/trace" "$bin" "${args[@]}" >/dev/null)
  awk '/^-+/ {next} $NF=="total" {t=$4} $NF ~ /^(fsync|fdatasync)$/ {s+=$4} END {printf "%d (%d)", t, s}' "$dir/trace"
  rm -rf "$dir"
}

median_range() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f ms (%.2f-%.2f)", m, a[1], a[NR]}'; }

echo "| operation | before: per call, median (range) | after | after / before | syscalls (syncs) before | after |"
echo "|---|---:|---:|---:|---:|---:|"
for op in save update update-held log; do
  o=() w=()
  for _ in $(seq "$rounds"); do
    o+=("$(time_ms "$old" "$op")")
    w+=("$(time_ms "$new" "$op")")
  done
  om=$(printf '%s\n' "${o[@]}" | median_range)
  wm=$(printf '%s\n' "${w[@]}" | median_range)
  mid=$(( (rounds + 1) / 2 ))
  ratio=$(awk -v a="$(printf '%s\n' "${w[@]}" | sort -n | sed -n "${mid}p")" \
    -v b="$(printf '%s\n' "${o[@]}" | sort -n | sed -n "${mid}p")" 'BEGIN {printf "%.2f", a / b}')
  if [ "$op" = update-held ]; then co=- cn=-; else co=$(calls "$old" "$op"); cn=$(calls "$new" "$op"); fi
  echo "| $op | $om | $wm | ${ratio}x | $co | $cn |"
done
rm -rf "$work"
