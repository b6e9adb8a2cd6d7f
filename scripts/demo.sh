#!/usr/bin/env bash
# Build mstate and run one milestone end to end in a scratch directory:
# init, session, lock, saves and updates, events, checkpoint, a corrupted
# state recovered from its backup, timeline, doctor, completion.
# Usage: bash scripts/demo.sh [DIR]   (DIR defaults to a new temp directory)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# Wherever cargo puts its output: CARGO_TARGET_DIR (relative to where cargo
# runs, here) or the workspace's target/.
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in
  /*) ;;
  *) target_dir="$PWD/$target_dir" ;;
esac
echo "== building mstate (release; the first build takes a minute or two)" >&2
cargo build --release --manifest-path "$root/Cargo.toml" -p mstate --target-dir "$target_dir"
mstate="$target_dir/release/mstate"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
cd "$work"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

m=demo-milestone
step "$mstate" init "$m"
export MSTATE_SESSION="$("$mstate" session start "$m")"
echo "session: $MSTATE_SESSION"
step "$mstate" save "$m" '{"phase": "plan", "tasks": {"done": 0, "total": 3}}'
step "$mstate" lock run "$m" -- "$mstate" update "$m" --set /phase='"build"' --set /tasks/done=1
step "$mstate" update "$m" --merge '{"tasks": {"done": 2}, "notes": "halfway"}'
step "$mstate" log "$m" task_completed '{"task": "compile", "percentage": 66}'
step "$mstate" checkpoint create "$m" before-release
step "$mstate" load "$m"
echo '{"phase": "rel' > .milestones/state/active/$m.json   # simulate a torn write by hand
step "$mstate" load "$m"
step "$mstate" events "$m" --tail 3 --format text
step "$mstate" checkpoint restore "$m" before-release
step "$mstate" session end
step "$mstate" complete "$m"
step "$mstate" list
step "$mstate" timeline "$m"
step "$mstate" doctor
echo
echo "store left in $work/.milestones/state"
