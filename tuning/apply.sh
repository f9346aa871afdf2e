#!/usr/bin/env bash
# tuning/apply.sh - apply the settings check.sh recommends for a ringlog broker.
# Records every previous value in a runnable undo file before writing it.
set -euo pipefail

# shellcheck source=tuning/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: ${0##*/} [--dry-run] [--undo-file PATH] [--only ID[,ID]] [--persist]
                [--broker-cpus LIST] [--data-dir DIR] [more options below]

Applies what check.sh reports as "differs" (settings already ok are left
alone). Writes that the kernel refuses because the setting is read-only here
(container/VM: EROFS, EPERM, EACCES; EIO for kernel-managed IRQs) are
reported as "read-only, skipped" and do not fail the run.

  --dry-run           print the exact commands that would run; change nothing
                      (the output is itself a shell script)
  --undo-file PATH    where to record previous values (default
                      tuning/undo-<timestamp>.sh); run it with bash to undo
  --persist           also write the resulting sysctls to --sysctl-conf so
                      they survive a reboot
  --sysctl-conf PATH  default /etc/sysctl.d/90-ringlog.conf
  --limits-file PATH  where limit.* settings go (default
                      /etc/security/limits.d/90-ringlog.conf)
  --limits-user USER  user (or @group) for the limits lines (default '*';
                      note pam_limits' '*' does not match root)
$(common_usage)
  -h, --help          this help

A real run needs root. Exit status: 0 when everything was applied, already ok,
n/a or read-only; 1 when a write failed for another reason or not root;
2 on a usage error.
EOF
}

APPLY_CMDLINE="tuning/apply.sh${*:+ $*}"
DRY_RUN=0 PERSIST=0 UNDO_FILE=""
while [[ $# -gt 0 ]]; do
    parse_common_opt "$@"
    if (( SHIFT_BY > 0 )); then shift "$SHIFT_BY"; continue; fi
    case $1 in
        --dry-run) DRY_RUN=1; shift ;;
        --persist) PERSIST=1; shift ;;
        --undo-file|--sysctl-conf|--limits-file|--limits-user)
            [[ $# -ge 2 && -n $2 ]] || die_usage "$1 needs a value"
            case $1 in
                --undo-file) UNDO_FILE=$2 ;;
                --sysctl-conf) SYSCTL_CONF=$2 ;;
                --limits-file) LIMITS_FILE=$2 ;;
                --limits-user) [[ $2 =~ ^[@%A-Za-z0-9_.*-]+$ ]] || die_usage "--limits-user: bad user '$2'"
                               LIMITS_USER=$2 ;;
            esac
            shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die_usage "unknown option: $1" ;;
    esac
done

load_settings
validate_only
resolve_cpus

if (( ! DRY_RUN )) && [[ $EUID -ne 0 ]]; then
    printf '%s: changing kernel settings needs root (running as uid %d).\n' "${0##*/}" "$EUID" >&2
    printf 'Re-run with sudo, or use --dry-run to see what would change.\n' >&2
    exit 1
fi

if (( ! DRY_RUN )); then
    if [[ -z $UNDO_FILE ]]; then
        UNDO_FILE="$TUNING_DIR/undo-$(date +%Y%m%d-%H%M%S).sh"
        [[ -e $UNDO_FILE ]] && UNDO_FILE="${UNDO_FILE%.sh}-$$.sh"
    elif [[ -e $UNDO_FILE ]]; then
        printf '%s: undo file %s already exists; refusing to overwrite it (pick another --undo-file)\n' \
            "${0##*/}" "$UNDO_FILE" >&2
        exit 1
    fi
fi

# ---------------------------------------------------------------------------
UNDO_READY=0
declare -A UNDO_FILES_SEEN=()

# shellcheck disable=SC2094  # the file name is only printed, never read
undo_init() {
    (( UNDO_READY )) && return 0
    mkdir -p -- "$(dirname -- "$UNDO_FILE")"
    {
        printf '#!/usr/bin/env bash\n'
        printf '# ringlog tuning undo file: restores what tuning/apply.sh changed.\n'
        printf '# Written on %s at %s by: %s\n' "$(uname -n)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$APPLY_CMDLINE"
        printf '# Run as root: bash %s   (values that already match are left alone,\n' "$(shq "$UNDO_FILE")"
        printf '# so running it twice is harmless)\n'
        cat <<'EOF'
set -uo pipefail
export LC_ALL=C
fail=0
trap 'exit "$fail"' EXIT
_norm() {
    local raw words
    raw=$(cat -- "$1" 2>/dev/null) || return 1
    if [[ $raw =~ \[([^]]*)\] ]]; then printf '%s' "${BASH_REMATCH[1]}"; return 0; fi
    read -r -a words <<<"${raw//$'\n'/ }" || true
    printf '%s' "${words[*]-}"
}
restore() { # PATH OLD-VALUE
    local cur
    if ! cur=$(_norm "$1"); then echo "skip $1: not readable" >&2; fail=1; return; fi
    if [[ $cur == "$2" ]]; then echo "unchanged $1 = $2"; return; fi
    if (printf '%s\n' "$2" > "$1") 2>/dev/null; then echo "restored $1 = $2"
    else echo "FAILED to restore $1 = $2" >&2; fail=1; fi
}
restore_file() { # PATH BASE64-OF-OLD-CONTENT
    if printf '%s' "$2" | base64 -d > "$1"; then echo "restored $1"
    else echo "FAILED to restore $1" >&2; fail=1; fi
}
remove_file() { # PATH that did not exist before apply.sh
    if [[ ! -e $1 ]]; then echo "absent $1"; return; fi
    if rm -f -- "$1"; then echo "removed $1"; else echo "FAILED to remove $1" >&2; fail=1; fi
}
EOF
    } > "$UNDO_FILE"
    chmod 0700 "$UNDO_FILE"
    UNDO_READY=1
}

# Record how to restore PATH before it is written.
undo_record() { # kind path old label
    undo_init
    if [[ $1 == val ]]; then
        printf '# %s %s\nrestore %s %s\n' "$S_ID" "$4" "$(shq "$2")" "$(shq "$3")" >> "$UNDO_FILE"
    else
        [[ -v UNDO_FILES_SEEN[$2] ]] && return 0
        UNDO_FILES_SEEN[$2]=1
        if [[ -e $2 ]]; then
            printf '# %s\nrestore_file %s %s\n' "$S_ID" "$(shq "$2")" "$(base64 -w0 < "$2")" >> "$UNDO_FILE"
        else
            printf '# %s\nremove_file %s\n' "$S_ID" "$(shq "$2")" >> "$UNDO_FILE"
        fi
    fi
}

# The command that performs one op. Dry-run prints it, a real run evals it.
op_command() { # kind path new
    if [[ $1 == val ]]; then
        printf 'echo %s > %s' "$(shq "$3")" "$(shq "$2")"
    else
        local eof=RINGLOG_EOF
        while grep -qx "$eof" <<<"$3"; do eof+=_; done
        printf 'mkdir -p %s && cat > %s <<'\''%s'\''\n%s\n%s' \
            "$(shq "$(dirname -- "$2")")" "$(shq "$2")" "$eof" "$3" "$eof"
    fi
}

N_APPLIED=0 N_OK=0 N_RO=0 N_NA=0 N_FAILED=0 N_PLANNED=0
say() { if (( DRY_RUN )); then printf '# %s\n' "$*"; else printf '%s\n' "$*"; fi; }

# Run (or, in dry-run, print) op J of the current setting.
# Sets OP_RESULT: applied | planned | read-only | failed
do_op() {
    local j=$1 kind=${OP_KIND[$1]} path=${OP_PATH[$1]} old=${OP_OLD[$1]} new=${OP_NEW[$1]} label=${OP_LABEL[$1]}
    local what cmd err back
    what=$S_ID; [[ $label != "$path" ]] && what+=" [$label]"
    cmd=$(op_command "$kind" "$path" "$new")
    if (( DRY_RUN )); then
        if [[ $kind == val ]]; then say "$what: $old -> $new"; else say "$what: rewrite $path"; FILE_OVERLAY[$path]=$new; fi
        path_readonly "$path" && say "(read-only here: a real run would report 'read-only, skipped')"
        printf '%s\n' "$cmd"
        N_PLANNED=$((N_PLANNED + 1))
        OP_RESULT=planned
        return 0
    fi
    undo_record "$kind" "$path" "$old" "$label"
    if err=$( { eval "$cmd"; } 2>&1 >/dev/null ); then
        if [[ $kind == val ]]; then
            back=$(read_norm "$path") || back="?"
            if [[ $back != "$(norm_value "$new")" ]]; then
                say "$what: FAILED: wrote '$new' but it reads back '$back'"
                N_FAILED=$((N_FAILED + 1)); OP_RESULT=failed; return 0
            fi
            say "$what: applied $old -> $new"
        else
            say "$what: wrote $path"
        fi
        N_APPLIED=$((N_APPLIED + 1)); OP_RESULT=applied
        return 0
    fi
    err=${err//$'\n'/ }
    [[ $err =~ ^.*line\ [0-9]+:\ (.*)$ ]] && err=${BASH_REMATCH[1]}   # drop "apply.sh: line N: "
    case $err in
        *"Read-only file system"*|*"Operation not permitted"*|*"Permission denied"*)
            say "$what: read-only, skipped ($err)"
            N_RO=$((N_RO + 1)); OP_RESULT=read-only ;;
        *"Input/output error"*)
            # The kernel manages this IRQ's affinity (e.g. NVMe queues).
            say "$what: read-only (kernel-managed), skipped ($err)"
            N_RO=$((N_RO + 1)); OP_RESULT=read-only ;;
        *)
            say "$what: FAILED ($err)"
            N_FAILED=$((N_FAILED + 1)); OP_RESULT=failed ;;
    esac
    return 0
}

# ---------------------------------------------------------------------------
PERSIST_KEYS=() PERSIST_VALS=()
host=$(uname -n)
if (( DRY_RUN )); then
    printf '#!/usr/bin/env bash\n'
    printf '# ringlog tuning apply.sh --dry-run on %s (virtualization: %s): the commands a\n' "$host" "$(detect_virt)"
    printf '# real run would execute, in order. Nothing has been changed.\n'
else
    printf 'ringlog tuning apply on %s (virtualization: %s); undo file: %s\n' "$host" "$(detect_virt)" "$UNDO_FILE"
fi
resolve_data_disks
say "$DATA_INFO; broker cpus: $(cpulist_compress "$BROKER_CPU_SET") ($CPU_MODE)"

for i in "${!SET_IDS[@]}"; do
    selected "$i" || continue
    eval_setting "$i"
    final=""
    case $S_STATUS in
        ok)
            say "$S_ID: ok ($S_CUR), nothing to do"
            N_OK=$((N_OK + 1)); final=$S_CUR ;;
        n/a)
            say "$S_ID: n/a ($S_NOTE)"
            N_NA=$((N_NA + 1)) ;;
        differs|read-only)
            if (( ${#OP_KIND[@]} == 0 )); then
                say "$S_ID: differs ($S_CUR), nothing to write: $S_NOTE"
                N_OK=$((N_OK + 1))
            fi
            all_ok=1
            for j in "${!OP_KIND[@]}"; do
                do_op "$j"
                [[ $OP_RESULT == applied || $OP_RESULT == planned ]] || all_ok=0
            done
            if (( all_ok && ${#OP_KIND[@]} == 1 )); then final=${OP_NEW[0]}; fi ;;
    esac
    if (( PERSIST )) && [[ ${SET_TYPES[i]} == sysctl && -n $final ]]; then
        PERSIST_KEYS+=("$S_ID") PERSIST_VALS+=("$final")
    fi
done

if (( PERSIST )); then
    reset_eval
    S_ID=sysctl.persist
    if (( ${#PERSIST_KEYS[@]} == 0 )); then
        say "$S_ID: no sysctl to persist"
    else
        old=$(file_content "$SYSCTL_CONF")
        declare -A pend=()
        for k in "${!PERSIST_KEYS[@]}"; do pend[${PERSIST_KEYS[k]}]=${PERSIST_VALS[k]}; done
        new=""
        if [[ -n $old ]]; then
            while IFS= read -r line; do
                key=${line%%=*}; key=${key//[[:space:]]/}
                if [[ $line != \#* && $line == *=* && -v pend[$key] ]]; then
                    line="$key = ${pend[$key]}"; unset "pend[$key]"
                fi
                new+="${new:+$'\n'}$line"
            done <<<"$old"
        else
            new="# Written by ringlog tuning/apply.sh --persist (see tuning/README.md)."
        fi
        for k in "${PERSIST_KEYS[@]}"; do
            [[ -v pend[$k] ]] && new+=$'\n'"$k = ${pend[$k]}"
        done
        if [[ $new == "$old" ]]; then
            say "$S_ID: $SYSCTL_CONF already up to date"
        else
            add_op file "$SYSCTL_CONF" "$old" "$new" "$SYSCTL_CONF"
            do_op 0
        fi
    fi
fi

if (( DRY_RUN )); then
    say "dry-run: $N_PLANNED command(s) shown; $N_OK already ok, $N_NA n/a. Nothing was changed."
    exit 0
fi
say "done: $N_APPLIED applied, $N_OK already ok, $N_RO read-only skipped, $N_NA n/a, $N_FAILED failed"
if (( UNDO_READY && N_APPLIED > 0 )); then
    say "undo with: bash $UNDO_FILE"
elif (( UNDO_READY )); then
    rm -f -- "$UNDO_FILE"
    say "nothing was changed, so the undo file was removed"
else
    say "nothing was written, so no undo file was created"
fi
(( N_FAILED == 0 )) || exit 1
exit 0
