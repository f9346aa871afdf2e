#!/usr/bin/env bash
# A soak run against one broker (issue 8): mixed produce / consume /
# consumer-group / topic churn load with periodic kill -9 and SIGTERM
# restarts, every acknowledgement checked, the broker's RSS and open files
# sampled (CSV under target/soak/), a fresh client every minute.
#
#   scripts/soak.sh [--minutes N] [--restart-every SECONDS] [--seed S]
#
# For a long soak (2 hours and more) a restart every 10-20 minutes keeps
# slow RSS or file growth visible within each broker run.
#
# The driver is tests/python/soak.py (its docstring says what is checked).
# The broker binary is target/release/ringlog unless RINGLOG_BIN is set;
# the Python venv is .venv-test/ (scripts/test.sh creates it) unless
# RINGLOG_VENV is set. The last line is "soak: N passed, N failed"; the exit
# status is 0 only if every check held.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091 # helpers only; linted on their own
source "$REPO_ROOT/scripts/lib/common.sh"
cd "$REPO_ROOT"

VENV="${RINGLOG_VENV:-$REPO_ROOT/.venv-test}"
export RINGLOG_BIN="${RINGLOG_BIN:-$REPO_ROOT/target/release/ringlog}"

[[ -x $RINGLOG_BIN ]] || die "broker binary $RINGLOG_BIN not found (cargo build --release)"
[[ -x $VENV/bin/python ]] || die "Python venv $VENV not found (scripts/test.sh creates it)"

for arg in "$@"; do
    case $arg in
    -h | --help)
        sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    esac
done

mkdir -p target/soak
log "soak: $* (broker $RINGLOG_BIN)"
exec "$VENV/bin/python" tests/python/soak.py "$@"
