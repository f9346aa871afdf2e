# shellcheck shell=bash
# Helpers shared by scripts/test.sh and scripts/compat-librdkafka.sh.
# Source this file; it defines functions only (and REPO_ROOT).

REPO_ROOT="${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export REPO_ROOT

log() {
    printf '==> %s\n' "$*" >&2
}

warn() {
    printf 'WARNING: %s\n' "$*" >&2
}

die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}

# Print a TCP port on 127.0.0.1 that is free right now.
free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# wait_port HOST PORT TIMEOUT_SECONDS [PID]: wait until HOST:PORT accepts a
# TCP connection. Fails early if PID (when given) has exited.
wait_port() {
    local host=$1 port=$2 timeout=$3 pid=${4:-}
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# stop_pid PID [GRACE_SECONDS]: SIGTERM, then SIGKILL after the grace period.
# Prints the number of seconds the process took to exit.
stop_pid() {
    local pid=$1 grace=${2:-5}
    local start=$SECONDS
    kill -TERM "$pid" 2>/dev/null || { echo 0; return 0; }
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    echo $((SECONDS - start))
}

# apt_ensure PKG...: install the Debian packages that are missing.
apt_ensure() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing Debian packages: ${missing[*]}"
    local sudo=()
    if ((EUID != 0)); then
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# on_ci: true on CI (CI=true), where a missing tool is an error, not a skip.
on_ci() {
    [[ ${CI:-} == true ]]
}

# need_tool TOOL: true when TOOL is on PATH; otherwise a warning (an error
# on CI) and false. The caller counts a skip, or a failure on CI.
need_tool() {
    if command -v "$1" >/dev/null 2>&1; then
        return 0
    fi
    if on_ci; then
        printf 'ERROR: %s is not installed; on CI a missing tool fails the run\n' "$1" >&2
    else
        warn "$1 is not installed: what needs it is skipped"
    fi
    return 1
}
