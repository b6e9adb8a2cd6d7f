#!/usr/bin/env python3
"""Event-log scale benchmark for mstate (the events issue's figures).

Generates logs of 1M and 10M events in mstate's on-disk format (once, under
target/bench-data/), then measures through the real CLI:
  - durable append rate from 1 and from 8 processes (`mstate log`),
  - full filtered scan rate (`events --type` matching nothing),
  - `--since` (recent end), `--until` (recent end) and `--tail 50` latency,
  - peak RSS of each query process.
Each latency is the median of several runs of the whole process.

Usage: python3 scripts/bench_events.py [--quick] [--out FILE]
  --quick: logs of 1K and 100K events, few runs (a smoke test).
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK = "--quick" in sys.argv
OUT = None
if "--out" in sys.argv:
    OUT = Path(sys.argv[sys.argv.index("--out") + 1])
BIN = ROOT / "target" / "release" / "mstate"
DATA = ROOT / "target" / "bench-data"
SIZES = [1_000, 100_000] if QUICK else [1_000_000, 10_000_000]
RUNS = 3 if QUICK else 7
APPENDS = 50 if QUICK else 1000


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", str(ROOT / "Cargo.toml")], check=True)


def generate(n):
    """A store whose milestone `m` has n events, one per millisecond, ending now."""
    store = DATA / f"log-{n}"
    log = store / ".milestones" / "state" / "events" / "milestone-m.jsonl"
    if log.exists():
        return store
    log.parent.mkdir(parents=True, exist_ok=True)
    end_us = int(time.time() * 1_000_000)
    start_us = end_us - n * 1000
    tmp = log.with_suffix(".tmp")
    types = ["task_started", "progress", "task_completed", "state_saved"]
    with open(tmp, "w", buffering=1 << 20) as f:
        for i in range(n):
            t = start_us + i * 1000
            secs, us = divmod(t, 1_000_000)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{us:06d}Z"
            f.write(
                '{"timestamp":"%s","milestone_id":"m","session_id":"session-20261124-120000-%d","event_type":"%s",'
                '"data":{"task":"step-%d","percentage":%d},"pid":4121,"user":"ci","seq":%d,"host":"runner-3"}\n'
                % (ts, i // 100_000, types[i % 4], i, i % 100, i + 1)
            )
    tmp.rename(log)
    return store


def last_timestamp(log):
    """Seconds since the epoch of the log's last line (read from its tail)."""
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - 4096))
        last = f.read().splitlines()[-1]
    ts = json.loads(last)["timestamp"]
    whole, frac = ts.rstrip("Z").split(".")
    return time.mktime(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) - time.timezone + int(frac) / 1e6


def rfc3339(t):
    secs = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int(round((t - secs) * 1e6)):06d}Z"


def timed(args, cwd):
    """Run mstate; return (seconds, peak RSS of that child in KiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    p = subprocess.run([str(BIN)] + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"mstate {args} failed: {p.stderr.decode()}")
    # ru_maxrss of children is the max over all waited children; measure in a
    # fresh python child so each figure is its own.
    return dt, before


def rss_of(args, cwd):
    code = (
        "import resource,subprocess,sys;"
        "subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL,check=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(BIN)] + args, cwd=cwd, capture_output=True, check=True)
    return int(out.stdout)


def median_ms(args, cwd):
    times = [timed(args, cwd)[0] for _ in range(RUNS)]
    return statistics.median(times) * 1000


def appends(procs, cwd):
    """Aggregate durable appends per second from `procs` processes."""
    script = f'i=0; while [ $i -lt {APPENDS} ]; do "$M" log a tick "{{\\"i\\": $i}}" || exit 1; i=$((i+1)); done'
    t0 = time.perf_counter()
    ps = [subprocess.Popen(["sh", "-c", script], cwd=cwd, env={**os.environ, "M": str(BIN)}) for _ in range(procs)]
    for p in ps:
        if p.wait() != 0:
            raise SystemExit("append worker failed")
    return procs * APPENDS / (time.perf_counter() - t0)


def main():
    build()
    DATA.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in SIZES:
        t0 = time.perf_counter()
        store = generate(n)
        gen = time.perf_counter() - t0
        log = store / ".milestones" / "state" / "events" / "milestone-m.jsonl"
        size = log.stat().st_size
        # Warm the page cache once, as a running system would have it.
        subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)
        end = last_timestamp(log)
        since = rfc3339(end - 0.0495)  # the last 50 events
        until = rfc3339(end - 1.0)
        scan_t = min(timed(["events", "m", "--type", "no_such_type"], store)[0] for _ in range(3))
        row = {
            "events": n,
            "bytes": size,
            "generated_s": round(gen, 1),
            "scan_MBps": round(size / scan_t / 1e6),
            "scan_rss_KiB": rss_of(["events", "m", "--type", "no_such_type"], store),
            "tail50_ms": round(median_ms(["events", "m", "--tail", "50"], store), 2),
            "tail50_rss_KiB": rss_of(["events", "m", "--tail", "50"], store),
            "since_ms": round(median_ms(["events", "m", "--since", since], store), 2),
            "since_rss_KiB": rss_of(["events", "m", "--since", since], store),
            "until_ms": round(median_ms(["events", "m", "--until", until, "--tail", "50"], store), 2),
            "reverse50_ms": round(median_ms(["events", "m", "--reverse", "--limit", "50"], store), 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    work = DATA / "appends"
    if work.exists():
        subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    one = appends(1, work)
    eight = appends(8, work)
    # The log must hold every append exactly once, seq 1..N.
    out = subprocess.run([str(BIN), "events", "a"], cwd=work, capture_output=True, check=True).stdout.decode().splitlines()
    seqs = [json.loads(l)["seq"] for l in out]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 9 * APPENDS, "append check failed"
    # The same query at the recent end of the two sizes.
    lines = []
    lines.append(f"Machine: {os.cpu_count()} cores, {os.uname().release}; logs on {subprocess.run(['stat', '-f', '-c', '%T', str(DATA)], capture_output=True, text=True).stdout.strip()}, in the page cache.")
    lines.append("")
    lines.append("| events | log size | full filtered scan | scan peak RSS | `--tail 50` | `--since` (last 50) | `--until` (end - 1 s) `--tail 50` | `--reverse --limit 50` | query peak RSS |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lines.append(
            f"| {r['events']:,} | {r['bytes'] / 1e6:,.0f} MB | {r['scan_MBps']:,} MB/s | {r['scan_rss_KiB'] / 1024:.1f} MiB | "
            f"{r['tail50_ms']} ms | {r['since_ms']} ms | {r['until_ms']} ms | {r['reverse50_ms']} ms | "
            f"{max(r['tail50_rss_KiB'], r['since_rss_KiB']) / 1024:.1f} MiB |"
        )
    if len(rows) == 2:
        a, b = rows
        lines.append("")
        lines.append(
            f"10x the log: `--tail 50` costs {b['tail50_ms'] / a['tail50_ms']:.2f}x, `--since` {b['since_ms'] / a['since_ms']:.2f}x "
            f"(whole process each time, median of {RUNS})."
        )
    lines.append("")
    lines.append(f"Durable appends through `mstate log` (a process per event, fsync before it returns): "
                 f"{one:,.0f}/s from 1 process, {eight:,.0f}/s aggregate from 8 processes "
                 f"({eight / one:.2f}x); the resulting log held every event once, seq 1..{len(seqs)}.")
    text = "\n".join(lines)
    print(text)
    if OUT:
        OUT.write_text(text + "\n")


if __name__ == "__main__":
    main()
