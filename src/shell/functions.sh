# The seed's milestone state functions, backed by mstate.
# Load with:  eval "$(mstate shell-init bash)"   (or zsh)
#
# Same names, positional arguments, defaults and return status as the seed;
# the same stdout where scripts consume it. Differences, all deliberate:
# - acquire_state_lock holds the lock for this shell ($$) across commands;
#   save_milestone_state and the others reuse it instead of deadlocking.
#   It also keeps a descriptor of the lock's info.json open and pins the
#   lock with it (mstate lock pin): background jobs inherit the descriptor,
#   so the lock stays held while any of them runs, even after this shell
#   died, and their mstate commands use it. release_state_lock closes it.
# - a stale lock is broken only when its holder is gone, never by age.
# - release_state_lock ID force releases this shell's own lock, or one whose
#   holder is gone or past its TTL; a live holder's lock stays (a warning on
#   stderr, status 0), so `trap 'release_state_lock ID force' EXIT` in
#   every worker no longer breaks the lock of a worker still running.
#   `mstate lock release ID --force` still breaks any lock, explicitly.
# - event data that is not valid JSON is kept as a JSON string, with a
#   warning on stderr, instead of writing a broken line.
# - detailed errors go to stderr; the seed's one-line ERROR stays on stdout.
# MSTATE_BIN overrides the binary these functions run.

__mstate_bin='@MSTATE_BIN@'
__mstate() { command "${MSTATE_BIN:-$__mstate_bin}" "$@"; }

# The descriptors pinning locks this shell holds, one "FD ID" a line; kept
# when the functions are loaded again.
__mstate_pins=${__mstate_pins:-}

# Open the pin file $2 of the lock of $1 and pin the lock with it.
__mstate_pin() {
    local __mstate_fd
    { exec {__mstate_fd}<"$2"; } 2>/dev/null || return 0
    if __mstate lock pin "$1" --fd "$__mstate_fd" >/dev/null; then
        __mstate_pins="$__mstate_pins$__mstate_fd $1
"
    else
        exec {__mstate_fd}<&-
        echo "WARNING: lock of milestone $1 is not pinned; background jobs keep it only while this shell lives" >&2
    fi
}

# Close this shell's descriptors pinning the lock of $1.
__mstate_unpin() {
    local __mstate_line __mstate_fd __mstate_rest=''
    while IFS= read -r __mstate_line; do
        [ -n "$__mstate_line" ] || continue
        if [ "${__mstate_line#* }" = "$1" ]; then
            __mstate_fd=${__mstate_line%% *}
            exec {__mstate_fd}<&-
        else
            __mstate_rest="$__mstate_rest$__mstate_line
"
        fi
    done <<__MSTATE_PINS__
$__mstate_pins
__MSTATE_PINS__
    __mstate_pins=$__mstate_rest
}

init_milestone_state() {
    __mstate init "$1"
}

acquire_state_lock() {
    local milestone_id=$1
    local timeout=${2:-30}
    local pin
    if pin=$(__mstate lock acquire "$milestone_id" --timeout "$timeout" --owner-pid "$$" --pin-path); then
        echo "State lock acquired for milestone: $milestone_id"
        __mstate_pin "$milestone_id" "$pin"
        return 0
    fi
    echo "ERROR: Could not acquire state lock for milestone: $milestone_id"
    return 1
}

release_state_lock() {
    local milestone_id=$1
    local force=${2:-false}
    if [ "$force" = "force" ]; then
        local out rc=0
        out=$(__mstate lock release "$milestone_id" --if-stale 2>&1) || rc=$?
        if [ "$rc" -eq 5 ]; then
            __mstate_unpin "$milestone_id"
            echo "WARNING: lock of milestone $milestone_id is held by a live process; left in place (break it with: mstate lock release $milestone_id --force)" >&2
            return 0
        fi
        if [ "$rc" -ne 0 ]; then
            printf '%s\n' "$out" >&2
            return "$rc"
        fi
        printf '%s\n' "$out"
    fi
    local rc=0
    __mstate lock release "$milestone_id" || rc=$?
    # Released, or not this shell's: its pin protects nothing any more.
    if [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ]; then
        __mstate_unpin "$milestone_id"
    fi
    if [ "$rc" -ne 0 ]; then
        echo "WARNING: Cannot release lock not owned by this process"
        return 1
    fi
}

save_milestone_state() {
    local milestone_id=$1
    local state_data=$2
    local rc=0
    printf '%s' "$state_data" | __mstate save "$milestone_id" - >/dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "ERROR: Could not save milestone state: $milestone_id"
        return "$rc"
    fi
    echo "Milestone state saved: .milestones/state/active/$milestone_id.json"
}

load_milestone_state() {
    local milestone_id=$1
    local rc=0
    __mstate load "$milestone_id" --log-access || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "ERROR: Could not load milestone state: $milestone_id"
        return "$rc"
    fi
}

log_milestone_event() {
    local milestone_id=$1
    local event_type=$2
    local event_data=$3
    local session_id=${4:-}
    if [ -n "$session_id" ]; then
        printf '%s' "$event_data" | __mstate log "$milestone_id" "$event_type" - --raw-fallback --session "$session_id"
    else
        printf '%s' "$event_data" | __mstate log "$milestone_id" "$event_type" - --raw-fallback
    fi
}

query_milestone_events() {
    local milestone_id=$1
    local event_type=${2:-}
    local since=${3:-}
    local limit=${4:-50}
    local rc=0
    set -- events "$milestone_id" --limit "$limit"
    if [ -n "$event_type" ]; then set -- "$@" --type "$event_type"; fi
    if [ -n "$since" ]; then set -- "$@" --since "$since"; fi
    __mstate "$@" || rc=$?
    if [ "$rc" -eq 3 ]; then
        echo "No events found for milestone: $milestone_id"
        return 0
    fi
    return "$rc"
}

generate_event_timeline() {
    local milestone_id=$1
    local output_format=${2:-text}
    local rc=0
    case "$output_format" in
        text|json|markdown) ;;
        *)
            echo "ERROR: Unsupported output format: $output_format"
            return 1
            ;;
    esac
    __mstate timeline "$milestone_id" --format "$output_format" --no-sessions || rc=$?
    if [ "$rc" -eq 3 ]; then
        echo "No events found for milestone: $milestone_id"
        return 0
    fi
    return "$rc"
}

recover_milestone_state() {
    local milestone_id=$1
    local rc=0
    echo "Attempting to recover milestone state for: $milestone_id"
    __mstate recover "$milestone_id" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "ERROR: Could not recover milestone state: $milestone_id"
        return "$rc"
    fi
}

create_state_checkpoint() {
    local milestone_id=$1
    local checkpoint_name=${2:-}
    local rc=0
    if [ -n "$checkpoint_name" ]; then
        __mstate checkpoint create "$milestone_id" "$checkpoint_name" --force || rc=$?
    else
        __mstate checkpoint create "$milestone_id" || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        echo "ERROR: No active state file found for milestone: $milestone_id"
        return "$rc"
    fi
}

restore_from_checkpoint() {
    local milestone_id=$1
    local checkpoint_name=$2
    local rc=0
    __mstate checkpoint restore "$milestone_id" "$checkpoint_name" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "ERROR: Checkpoint not restored: $checkpoint_name"
        return "$rc"
    fi
}

create_milestone_session() {
    __mstate session start "$1" --owner-pid "$$"
}

get_current_session_id() {
    __mstate session current
}

end_milestone_session() {
    local session_id=${1:-}
    if [ -n "$session_id" ]; then
        __mstate session end "$session_id" --missing-ok
    else
        __mstate session end --missing-ok
    fi
}

cleanup_milestone_state() {
    local milestone_id=$1
    local retention_days=${2:-7}
    local rc=0
    echo "Cleaning up milestone state older than $retention_days days..."
    __mstate cleanup "$milestone_id" --retention-days "$retention_days" || rc=$?
    if [ "$rc" -ne 0 ]; then
        return "$rc"
    fi
    echo "State cleanup completed"
}
