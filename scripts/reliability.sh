#!/usr/bin/env bash
# Run every reliability test family at full size and regenerate the figures
# in RELIABILITY.md. Bounded in time: each family stops by itself.
# Usage: bash scripts/reliability.sh [--fuzz-secs N]   (default 300)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
fuzz_secs=300
if [ "${1:-}" = "--fuzz-secs" ]; then fuzz_secs=$2; fi
out="$root/target/reliability"
rm -rf "$out" && mkdir -p "$out"

echo "== crash simulation (MSTATE_CRASH_LIMIT=64)"
MSTATE_CRASH_LIMIT=64 MSTATE_CRASH_REPORT="$out/crash.jsonl" \
  timeout 1800 cargo test --release -q -p mstate-store --test crash -- --nocapture

echo "== fault injection"
MSTATE_FAULT_REPORT="$out/faults.jsonl" \
  timeout 1800 cargo test --release -q -p mstate-store --test faults -- --nocapture

echo "== process kills and concurrency (MSTATE_STRESS=full)"
MSTATE_STRESS=full MSTATE_RELIABILITY_REPORT="$out/stress.jsonl" \
  timeout 3600 cargo test --release -q --test reliability -- --nocapture --test-threads 1

echo "== syscall attacks on the real binary (strace, MSTATE_STRESS=full: every invocation)"
MSTATE_STRESS=full MSTATE_RELIABILITY_REPORT="$out/attack_syscalls.jsonl" \
  timeout 5400 cargo test --release -q --test attack_syscalls -- --nocapture

for family in attack_paths attack_locks attack_revisions attack_log attack_limits; do
  echo "== $family (MSTATE_STRESS=full)"
  MSTATE_STRESS=full timeout 1800 cargo test --release -q --test "$family" -- --nocapture \
    2>&1 | tee "$out/$family.txt" | grep -E '^test result' || true
  grep -q '^test result: ok' "$out/$family.txt"
done

echo "== real faults (full disk, read-only, ulimit -f)"
timeout 600 cargo test --release -q --test real_faults -- --nocapture 2>&1 | tee "$out/real_faults.txt"

echo "== property fuzzing for ${fuzz_secs}s"
start=$(date +%s)
cases=0
round=0
while [ $(( $(date +%s) - start )) -lt "$fuzz_secs" ]; do
  round=$((round + 1))
  PROPTEST_CASES=2000 PROPTEST_RNG_SEED=$round timeout 600 cargo test --release -q -p mstate-store --test fuzz >/dev/null
  cases=$((cases + 2000 * $(grep -c '^    fn ' crates/store/tests/fuzz.rs)))
done
echo "{\"family\": \"fuzz\", \"secs\": $(( $(date +%s) - start )), \"rounds\": $round, \"cases\": $cases}" > "$out/fuzz.jsonl"

python3 - "$out" <<'PY'
import json, sys, pathlib, datetime, platform, os
out = pathlib.Path(sys.argv[1])
rows = []
for f in sorted(out.glob("*.jsonl")):
    rows += [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
doc = pathlib.Path("RELIABILITY.md").read_text()
start = doc.index("<!-- figures -->")
end = doc.index("<!-- /figures -->")
lines = ["<!-- figures -->", "", f"Last full run: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, "
         f"{os.cpu_count()} cores, kernel {platform.release()}.", ""]
crash = [r for r in rows if r["family"] == "crash"]
if crash:
    lines += ["### Crash simulation", "", "| operation | I/O calls | crash states explored |", "|---|---:|---:|"]
    lines += [f"| {r['operation']} | {r['io_calls']} | {r['crash_states']} |" for r in crash]
    lines += [f"| **all** | {sum(r['io_calls'] for r in crash)} | {sum(r['crash_states'] for r in crash)} |", ""]
faults = [r for r in rows if r["family"] == "faults"]
if faults:
    lines += ["### Fault injection", "", "| operation | faults injected | runs checked |", "|---|---:|---:|"]
    lines += [f"| {r['operation']} | {r['faults']} | {r['runs']} |" for r in faults]
    lines += [f"| **all** | {sum(r['faults'] for r in faults)} | {sum(r['runs'] for r in faults)} |", ""]
attack = [r for r in rows if r["family"] == "attack_syscalls"]
if attack:
    lines += ["### Syscall attacks on the real binary", "",
              "| command | syscall names | invocations | cases | EIO | ENOSPC | ENOSPC from N on | EINTR | SIGKILL | failures | known findings hit |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['command']} | {r['syscall_names']} | {r['syscall_invocations']} | {r['cases']} | {r['eio']} | "
              f"{r['enospc']} | {r['disk_full_from_n']} | {r['eintr']} | {r['kill']} | {r['failures']} | {r['known_failures']} |" for r in attack]
    lines += [f"| **all** | | | {sum(r['cases'] for r in attack)} | {sum(r['eio'] for r in attack)} | "
              f"{sum(r['enospc'] for r in attack)} | {sum(r['disk_full_from_n'] for r in attack)} | "
              f"{sum(r['eintr'] for r in attack)} | {sum(r['kill'] for r in attack)} | {sum(r['failures'] for r in attack)} | "
              f"{sum(r['known_failures'] for r in attack)} |", ""]
other = [r for r in rows if r["family"] not in ("crash", "faults", "attack_syscalls")]
if other:
    lines += ["### Processes, concurrency, fuzzing", ""]
    for r in other:
        fam = r.pop("family")
        lines.append(f"- **{fam}**: " + ", ".join(f"{k} = {v if not isinstance(v, float) else round(v, 2)}" for k, v in r.items()))
    lines.append("")
lines.append("<!-- /figures -->")
pathlib.Path("RELIABILITY.md").write_text(doc[:start] + "\n".join(lines) + doc[end + len("<!-- /figures -->"):])
print("RELIABILITY.md updated")
PY
