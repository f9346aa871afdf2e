#!/usr/bin/env bash
# tuning/check.sh - report the Linux settings a ringlog broker host wants.
# Prints current vs recommended value and why. Changes nothing, ever.
set -euo pipefail

# shellcheck source=tuning/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: ${0##*/} [--json] [--broker-cpus LIST] [--data-dir DIR] [--only ID[,ID]]

Compares this host's kernel and limit settings with what a ringlog broker
wants and prints SETTING CURRENT RECOMMENDED STATUS WHY. STATUS is
ok, differs, read-only (differs but can't be changed here, e.g. in a
container) or n/a (not present here). Nothing is changed.

  --json              machine-readable output
$(common_usage)
  -h, --help          this help

Exit status: 0 (whatever the findings), 2 on a usage error.
EOF
}

JSON=0
while [[ $# -gt 0 ]]; do
    parse_common_opt "$@"
    if (( SHIFT_BY > 0 )); then shift "$SHIFT_BY"; continue; fi
    case $1 in
        --json) JSON=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die_usage "unknown option: $1" ;;
    esac
done

load_settings
validate_only
resolve_cpus

# Evaluate every selected setting into row arrays.
R_ID=() R_CUR=() R_REC=() R_STATUS=() R_WHY=() R_NOTE=()
for i in "${!SET_IDS[@]}"; do
    selected "$i" || continue
    eval_setting "$i"
    R_ID+=("$S_ID") R_CUR+=("$S_CUR") R_REC+=("$S_REC")
    R_STATUS+=("$S_STATUS") R_WHY+=("$S_WHY") R_NOTE+=("$S_NOTE")
done
resolve_data_disks

host=$(uname -n) kernel=$(uname -r) virt=$(detect_virt)
broker_list=$(cpulist_compress "$BROKER_CPU_SET")
irq_list=$(cpulist_compress "$IRQ_CPU_SET")

if (( JSON )); then
    printf '{\n'
    printf '  "host": %s,\n' "$(json_str "$host")"
    printf '  "kernel": %s,\n' "$(json_str "$kernel")"
    printf '  "virtualization": %s,\n' "$(json_str "$virt")"
    printf '  "euid": %d,\n' "$EUID"
    printf '  "data_dir": %s,\n' "$(json_str "$DATA_DIR")"
    printf '  "data_disks": %s,\n' "$(json_str "$DATA_INFO")"
    printf '  "broker_cpus": %s,\n' "$(json_str "$broker_list")"
    printf '  "irq_cpus": %s,\n' "$(json_str "$irq_list")"
    printf '  "cpu_mode": %s,\n' "$(json_str "$CPU_MODE")"
    printf '  "settings": ['
    sep=""
    for i in "${!R_ID[@]}"; do
        printf '%s\n    {"id": %s, "current": %s, "recommended": %s, "status": %s, "why": %s, "note": %s}' \
            "$sep" "$(json_str "${R_ID[i]}")" "$(json_str "${R_CUR[i]}")" "$(json_str "${R_REC[i]}")" \
            "$(json_str "${R_STATUS[i]}")" "$(json_str "${R_WHY[i]}")" "$(json_str "${R_NOTE[i]}")"
        sep=","
    done
    printf '\n  ]\n}\n'
    exit 0
fi

who="as root"; [[ $EUID -eq 0 ]] || who="as uid $EUID (not root: read-only detection is approximate)"
printf 'ringlog host check: %s, kernel %s, virtualization: %s, %s\n' "$host" "$kernel" "$virt" "$who"
if [[ $CPU_MODE == report-only ]]; then
    printf '%s; broker cpus: all %s (<= 2 CPUs: IRQ affinity report-only; pass --broker-cpus)\n\n' "$DATA_INFO" "$broker_list"
else
    printf '%s; broker cpus: %s (%s), irq cpus: %s\n\n' "$DATA_INFO" "${broker_list:--}" "$CPU_MODE" "${irq_list:--}"
fi

# Column widths from the data; WHY is last and not padded.
w1=7 w2=7 w3=11 w4=6
for i in "${!R_ID[@]}"; do
    (( ${#R_ID[i]} > w1 )) && w1=${#R_ID[i]}
    (( ${#R_CUR[i]} > w2 )) && w2=${#R_CUR[i]}
    (( ${#R_REC[i]} > w3 )) && w3=${#R_REC[i]}
    (( ${#R_STATUS[i]} > w4 )) && w4=${#R_STATUS[i]}
done
fmt="%-${w1}s  %-${w2}s  %-${w3}s  %-${w4}s  %s\n"
# shellcheck disable=SC2059  # the format is built above from numbers only
printf "$fmt" SETTING CURRENT RECOMMENDED STATUS WHY
declare -A tally=([ok]=0 [differs]=0 [read-only]=0 [n/a]=0)
notes=()
for i in "${!R_ID[@]}"; do
    why=${R_WHY[i]}
    # For n/a rows the interesting "why" is why it isn't there.
    [[ ${R_STATUS[i]} == n/a && -n ${R_NOTE[i]} ]] && why=${R_NOTE[i]}
    # shellcheck disable=SC2059
    printf "$fmt" "${R_ID[i]}" "${R_CUR[i]}" "${R_REC[i]}" "${R_STATUS[i]}" "$why"
    tally[${R_STATUS[i]}]=$(( ${tally[${R_STATUS[i]}]:-0} + 1 ))
    [[ ${R_STATUS[i]} != n/a && -n ${R_NOTE[i]} ]] && notes+=("${R_ID[i]}: ${R_NOTE[i]}")
done
if (( ${#notes[@]} > 0 )); then
    printf '\nNotes:\n'
    printf '  %s\n' "${notes[@]}"
fi
printf '\n%d ok, %d differ, %d read-only, %d n/a. Nothing was changed.\n' \
    "${tally[ok]}" "${tally[differs]}" "${tally[read-only]}" "${tally[n/a]}"
if (( tally[differs] > 0 )); then
    printf 'Preview fixes with: %s/apply.sh --dry-run (same --broker-cpus/--data-dir)\n' "$TUNING_DIR"
fi
exit 0
