# The seed's milestone state functions, backed by mstate.
# Load with:  eval "$(mstate shell-init bash)"   (or zsh)
#
# Same names, positional arguments, defaults and return status (0 or 1) as
# the seed; the same stdout, line for line, where scripts consume it (its
# messages, the state, the events), times, pids and ids aside. Differences,
# all deliberate:
# - acquire_state_lock holds the lock for this shell ($$) across commands;
#   acquiring it again succeeds, and save_milestone_state,
#   restore_from_checkpoint and recover_milestone_state use it instead of
#   waiting for it (and print no lock lines).
#   It also keeps a descriptor of the lock's info.json open and pins the
#   lock with it (mstate lock pin): background jobs inherit the descriptor,
#   so the lock stays held while any of them runs, even after this shell
#   died, and their mstate commands use it. release_state_lock closes it.
# - a lock whose holder is gone is broken at once; a live holder's lock is
#   never broken by age.
# - release_state_lock ID force: the seed's `A || B && C` made force a no-op
#   (it released only this shell's lock, else warned and returned 1). Here
#   it releases this shell's own lock, or one whose holder is gone or past
#   its TTL, and succeeds when there is none; a live holder's lock stays (a
#   warning on stderr, status 0), so `trap 'release_state_lock ID force'
#   EXIT` in every worker never breaks the lock of a worker still running.
#   `mstate lock release ID --force` still breaks any lock, explicitly.
# - event data that is not valid JSON (or empty) is kept as a JSON string,
#   with a warning on stderr, instead of writing a broken line.
# - events also carry `seq`, `host` and microseconds, and some event data
#   more keys (`revision`, `state_file`); init_milestone_state's first line
#   has the fields of every other event (`event_type`, not `event`).
# - query_milestone_events applies its type and since filters (the seed's
#   eval pipeline applied neither: it printed the log's first LIMIT lines).
# - generate_event_timeline text shows event data as JSON (the seed printed
#   Python's repr of it) and reads the seed's own first line (where the
#   seed's text timeline crashed); it also accepts `markdown`.
# - load_milestone_state of a corrupt state file recovers it and prints the
#   recovered state (the seed printed the recovery's messages instead).
#   Recovery takes the newest valid backup, never a checkpoint (the seed's
#   `ls -t` took the newest of either, and gave up if it was corrupt).
# - end_milestone_session ID of a session that is not the current one
#   leaves the current one current (the seed forgot it), and ending an
#   ended session again logs nothing.
# - detailed errors go to stderr; the seed's one-line ERROR and WARNING
#   messages stay on stdout.
# cleanup_milestone_state (mstate cleanup) replaces the live event log with
# a new file when it removes old events, as the seed's own cleanup did with
# mv: follow the log with `tail -F` or `mstate events ID --follow`, not
# `tail -f`, which stays on the replaced file.
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

# Whether this shell (or an ancestor) holds the lock of $1.
__mstate_held() {
    local __mstate_st
    __mstate_st=$(__mstate lock status "$1" 2>/dev/null) || return 1
    case $__mstate_st in
        *", by this shell]") return 0 ;;
    esac
    return 1
}

init_milestone_state() {
    __mstate init "$1" || return 1
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
    local out rc=0
    if [ "$force" = "force" ]; then
        out=$(__mstate lock release "$milestone_id" --if-stale) || rc=$?
        case $rc in
            0)
                __mstate_unpin "$milestone_id"
                echo "State lock released for milestone: $milestone_id"
                return 0
                ;;
            5)
                __mstate_unpin "$milestone_id"
                echo "WARNING: lock of milestone $milestone_id is held by a live process; left in place (break it with: mstate lock release $milestone_id --force)" >&2
                return 0
                ;;
        esac
        return 1
    fi
    out=$(__mstate lock release "$milestone_id") || rc=$?
    case $rc in
        0)
            # Released, or there was none: either way no pin is needed.
            __mstate_unpin "$milestone_id"
            if [ -n "$out" ]; then
                echo "State lock released for milestone: $milestone_id"
                return 0
            fi
            ;;
        5) ;;
        *) return 1 ;;
    esac
    echo "WARNING: Cannot release lock not owned by this process"
    return 1
}

save_milestone_state() {
    local milestone_id=$1
    local state_data=$2
    local held=false rc=0
    if __mstate_held "$milestone_id"; then held=true; fi
    printf '%s' "$state_data" | __mstate save "$milestone_id" - >/dev/null || rc=$?
    case $rc in
        0) ;;
        5)
            echo "ERROR: Could not acquire state lock for milestone: $milestone_id"
            return 1
            ;;
        6)
            [ "$held" = true ] || echo "State lock acquired for milestone: $milestone_id"
            echo "ERROR: Invalid JSON state data"
            [ "$held" = true ] || echo "State lock released for milestone: $milestone_id"
            return 1
            ;;
        *) return 1 ;;
    esac
    if [ "$held" != true ]; then
        echo "State lock acquired for milestone: $milestone_id"
        echo "State lock released for milestone: $milestone_id"
    fi
    echo "Milestone state saved: .milestones/state/active/$milestone_id.json"
}

load_milestone_state() {
    local milestone_id=$1
    local rc=0
    __mstate load "$milestone_id" --log-access || rc=$?
    case $rc in
        0) return 0 ;;
        3)
            echo "ERROR: State file not found: .milestones/state/active/$milestone_id.json"
            return 1
            ;;
        7)
            echo "ERROR: Corrupted state file, attempting recovery..."
            recover_milestone_state "$milestone_id"
            return 1
            ;;
    esac
    return 1
}

log_milestone_event() {
    local milestone_id=$1
    local event_type=$2
    local event_data=$3
    local session_id=${4:-}
    if [ -n "$session_id" ]; then
        printf '%s' "$event_data" | __mstate log "$milestone_id" "$event_type" - --raw-fallback --create --session "$session_id" || return 1
    else
        printf '%s' "$event_data" | __mstate log "$milestone_id" "$event_type" - --raw-fallback --create || return 1
    fi
}

# Run mstate "$@" for a report whose milestone may have no events: stdout
# passes through; on exit 3 (no such milestone) the seed's line replaces
# mstate's error.
__mstate_report() {
    local __mstate_id=$1 __mstate_err __mstate_rc=0
    shift
    { __mstate_err=$(__mstate "$@" 2>&1 >&3 3>&-) || __mstate_rc=$?; } 3>&1
    if [ "$__mstate_rc" -eq 3 ]; then
        echo "No events found for milestone: $__mstate_id"
        return 0
    fi
    if [ -n "$__mstate_err" ]; then printf '%s\n' "$__mstate_err" >&2; fi
    [ "$__mstate_rc" -eq 0 ] || return 1
}

query_milestone_events() {
    local milestone_id=$1
    local event_type=${2:-}
    local since=${3:-}
    local limit=${4:-50}
    set -- events "$milestone_id" --limit "$limit"
    if [ -n "$event_type" ]; then set -- "$@" --type "$event_type"; fi
    if [ -n "$since" ]; then set -- "$@" --since "$since"; fi
    __mstate_report "$milestone_id" "$@"
}

generate_event_timeline() {
    local milestone_id=$1
    local output_format=${2:-text}
    case "$output_format" in
        text|json|markdown) ;;
        *)
            # The seed looks for the log first.
            local rc=0
            __mstate events "$milestone_id" --limit 1 >/dev/null 2>&1 || rc=$?
            if [ "$rc" -eq 3 ]; then
                echo "No events found for milestone: $milestone_id"
                return 0
            fi
            echo "ERROR: Unsupported output format: $output_format"
            return 1
            ;;
    esac
    __mstate_report "$milestone_id" timeline "$milestone_id" --format "$output_format" --no-sessions
}

recover_milestone_state() {
    local milestone_id=$1
    local held=false out backup= rc=0
    echo "Attempting to recover milestone state for: $milestone_id"
    # Like the seed: restore the newest backup, whether or not the state is
    # valid (`mstate recover` alone leaves a valid state as it is).
    out=$(__mstate backups "$milestone_id" 2>/dev/null) || out=
    # The first line is the header; the second names the newest backup.
    { IFS= read -r backup && IFS= read -r backup; } <<__MSTATE_BACKUPS__ || backup=
$out
__MSTATE_BACKUPS__
    backup=${backup%%[[:space:]]*}
    if [ -z "$backup" ]; then
        echo "ERROR: No backup found for milestone: $milestone_id"
        return 1
    fi
    echo "Using backup: .milestones/state/backups/$backup"
    if __mstate_held "$milestone_id"; then held=true; fi
    __mstate recover "$milestone_id" --from "$backup" >/dev/null || rc=$?
    case $rc in
        0) ;;
        7)
            echo "ERROR: Backup file is also corrupted"
            return 1
            ;;
        5)
            echo "ERROR: Could not acquire state lock for milestone: $milestone_id"
            return 1
            ;;
        *) return 1 ;;
    esac
    if [ "$held" != true ]; then
        echo "State lock acquired for milestone: $milestone_id"
        echo "State lock released for milestone: $milestone_id"
    fi
    echo "State recovered successfully from: .milestones/state/backups/$backup"
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
    case $rc in
        0) return 0 ;;
        3) echo "ERROR: No active state file found for milestone: $milestone_id" ;;
    esac
    return 1
}

restore_from_checkpoint() {
    local milestone_id=$1
    local checkpoint_name=$2
    local held=false out pre rc=0
    if __mstate_held "$milestone_id"; then held=true; fi
    out=$(__mstate checkpoint restore "$milestone_id" "$checkpoint_name") || rc=$?
    case $rc in
        0) ;;
        3)
            echo "ERROR: Checkpoint not found: $checkpoint_name"
            return 1
            ;;
        5)
            echo "ERROR: Could not acquire state lock for milestone: $milestone_id"
            return 1
            ;;
        *) return 1 ;;
    esac
    [ "$held" = true ] || echo "State lock acquired for milestone: $milestone_id"
    case $out in
        "Checkpoint created: "*)
            pre=${out%%"
"*}
            printf '%s\n' "$pre"
            ;;
        *) echo "ERROR: No active state file found for milestone: $milestone_id" ;;
    esac
    [ "$held" = true ] || echo "State lock released for milestone: $milestone_id"
    echo "State restored from checkpoint: $checkpoint_name"
}

create_milestone_session() {
    __mstate session start "$1" --owner-pid "$$" --create || return 1
}

get_current_session_id() {
    __mstate session current || return 1
}

end_milestone_session() {
    local session_id=${1:-}
    if [ -n "$session_id" ]; then
        __mstate session end "$session_id" --missing-ok || return 1
    else
        __mstate session end --missing-ok || return 1
    fi
}

cleanup_milestone_state() {
    local milestone_id=$1
    local retention_days=${2:-7}
    local out line in_sessions=false rc=0
    echo "Cleaning up milestone state older than $retention_days days..."
    out=$(__mstate --json cleanup "$milestone_id" --retention-days "$retention_days" --create) || rc=$?
    if [ "$rc" -ne 0 ]; then
        return 1
    fi
    # The removed sessions, one quoted id a line in mstate's pretty JSON.
    while IFS= read -r line; do
        case $line in
            *'"sessions_removed": ['*']'*) ;;
            *'"sessions_removed": ['*) in_sessions=true ;;
            *']'*) in_sessions=false ;;
            *)
                if [ "$in_sessions" = true ]; then
                    line=${line#*\"}
                    echo "Removed old session: ${line%%\"*}"
                fi
                ;;
        esac
    done <<__MSTATE_CLEANUP__
$out
__MSTATE_CLEANUP__
    echo "State cleanup completed"
}
