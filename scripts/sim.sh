#!/usr/bin/env bash
# Run many seeds of the deterministic simulation (tests/sim.rs,
# docs/design/simulation.md) beyond what CI runs.
#
#   scripts/sim.sh [--seeds N | --minutes M] [--start S]
#
# --seeds N     run N seeds (default 2000)
# --minutes M   run chunks of seeds until M minutes have passed
# --start S     first seed (default: a random one, so that long runs explore
#               new seeds; CI runs seeds 1..)
# Seeds run in the test binary's threads (one per core). Failing seeds are
# printed with the command that replays each; the exit status is non-zero
# if any failed. Output of every chunk goes to target/sim-logs/.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091 # helpers only; linted on their own
source "$REPO_ROOT/scripts/lib/common.sh"
cd "$REPO_ROOT"

seeds=2000
minutes=0
start=$(( (RANDOM << 15 | RANDOM) + 1000000 ))
while (($#)); do
    case $1 in
        --seeds) seeds=${2:?--seeds needs a number}; shift 2 ;;
        --minutes) minutes=${2:?--minutes needs a number}; shift 2 ;;
        --start) start=${2:?--start needs a number}; shift 2 ;;
        *) die "usage: scripts/sim.sh [--seeds N | --minutes M] [--start S]" ;;
    esac
done
[[ $seeds =~ ^[0-9]+$ && $minutes =~ ^[0-9]+$ && $start =~ ^[0-9]+$ ]] || die "numbers expected"

log "building the simulation (release)"
cargo test --release --test sim --no-run

logs="$REPO_ROOT/target/sim-logs"
mkdir -p "$logs"
chunk=$seeds
if ((minutes > 0)); then
    chunk=500
fi
deadline=$((SECONDS + minutes * 60))
failed=()
ran=0
while :; do
    log "seeds $start..$((start + chunk - 1))"
    out="$logs/seeds-$start.log"
    if RINGLOG_SIM_START=$start RINGLOG_SIM_SEEDS=$chunk \
        cargo test --release --test sim -- --exact seeds --nocapture >"$out" 2>&1; then
        :
    fi
    grep -E '^simulation: ' "$out" >&2 || warn "no summary in $out (see it)"
    while read -r s; do
        failed+=("$s")
    done < <(grep -oE '^simulation seed [0-9]+ failed' "$out" | awk '{print $3}')
    ran=$((ran + chunk))
    start=$((start + chunk))
    if ((minutes == 0 || SECONDS >= deadline)); then
        break
    fi
done
log "$ran seeds run, ${#failed[@]} failed"
if ((${#failed[@]})); then
    for s in "${failed[@]}"; do
        printf 'failed: seed %s  replay: RINGLOG_SIM_SEED=%s cargo test --release --test sim -- --nocapture seeds\n' "$s" "$s"
    done
    exit 1
fi
