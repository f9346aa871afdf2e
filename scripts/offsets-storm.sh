#!/usr/bin/env bash
# The offsets commit storm (issue 9): commit records from many groups into
# __consumer_offsets, then its size on disk and the group coordinator's load
# time after a SIGTERM and a kill -9 restart; --no-cleaner for the same
# storm without compaction.
#
#   scripts/offsets-storm.sh [--commits N] [--groups G] [--partitions P]
#                            [--segment-bytes B] [--no-cleaner] [--keep]
#
# The driver is tests/python/offsets_storm.py. The broker binary is
# target/release/ringlog unless RINGLOG_BIN is set; the Python venv is
# .venv-test/ (scripts/test.sh creates it) unless RINGLOG_VENV is set.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091 # helpers only; linted on their own
source "$REPO_ROOT/scripts/lib/common.sh"
cd "$REPO_ROOT"

VENV="${RINGLOG_VENV:-$REPO_ROOT/.venv-test}"
export RINGLOG_BIN="${RINGLOG_BIN:-$REPO_ROOT/target/release/ringlog}"

[[ -x $RINGLOG_BIN ]] || die "broker binary $RINGLOG_BIN not found (cargo build --release)"
[[ -x $VENV/bin/python ]] || die "Python venv $VENV not found (scripts/test.sh creates it)"
mkdir -p target
exec "$VENV/bin/python" tests/python/offsets_storm.py "$@"
