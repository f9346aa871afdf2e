#!/usr/bin/env bash
# tests/tuning_test.sh - tests for tuning/check.sh and tuning/apply.sh.
#
# Run from anywhere: bash tests/tuning_test.sh
# Needs root for the real-apply tests (they are skipped otherwise). The only
# live settings it changes are net.core.somaxconn and
# net.ipv4.tcp_slow_start_after_idle, and it puts both back on exit.
# Ends with exactly one line "N passed, N failed, N skipped"; exit status 1
# on failure. On CI (CI=true) a missing tool (shellcheck) is a failure, not a
# skip.
# The bash -c '...' snippets below take their input as "$1".. on purpose.
# shellcheck disable=SC2016
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHECK="$ROOT/tuning/check.sh"
APPLY="$ROOT/tuning/apply.sh"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tuning_test.XXXXXX")
cd "$ROOT"

PASSED=0 FAILED=0 SKIPPED=0
pass() { PASSED=$((PASSED + 1)); printf 'ok     %s\n' "$1"; }
fail() {
    FAILED=$((FAILED + 1)); printf 'FAIL   %s\n' "$1"
    if [[ -n ${2-} ]]; then printf '%s\n' "$2" | head -n 40 | sed 's/^/       | /'; fi
}
skip() { SKIPPED=$((SKIPPED + 1)); printf 'skip   %s\n' "$1"; }
# missing_tool DESCRIPTION: a test that needs a tool that is not installed.
missing_tool() { if [[ ${CI:-} == true ]]; then fail "$1 (required on CI)"; else skip "$1"; fi; }
# expect DESCRIPTION COMMAND...: pass when the command succeeds.
expect() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
# run_cmd: run a command, capture stdout+stderr in OUT and status in RC.
run_cmd() { RC=0; OUT=$("$@" 2>&1) || RC=$?; }
contains() { [[ $1 == *"$2"* ]]; }

SOMAXCONN=/proc/sys/net/core/somaxconn
SSAI=/proc/sys/net/ipv4/tcp_slow_start_after_idle
ORIG_SOMAXCONN=$(cat "$SOMAXCONN" 2>/dev/null || true)
ORIG_SSAI=$(cat "$SSAI" 2>/dev/null || true)
cleanup() {
    local rc=$?
    if [[ $EUID -eq 0 ]]; then
        [[ -n $ORIG_SOMAXCONN && $(cat "$SOMAXCONN" 2>/dev/null) != "$ORIG_SOMAXCONN" ]] &&
            { echo "$ORIG_SOMAXCONN" > "$SOMAXCONN"; } 2>/dev/null
        [[ -n $ORIG_SSAI && $(cat "$SSAI" 2>/dev/null) != "$ORIG_SSAI" ]] &&
            { echo "$ORIG_SSAI" > "$SSAI"; } 2>/dev/null
    fi
    rm -rf -- "$TMP"
    exit "$rc"
}
trap cleanup EXIT

# Can we really write this file here (as root, same value back)?
writable() {
    local v
    [[ $EUID -eq 0 && -w $1 ]] && v=$(cat "$1") && { printf '%s\n' "$v" > "$1"; } 2>/dev/null
}

# Raw state of everything the scripts could touch, read directly (not via
# check.sh), to prove that check.sh and --dry-run change nothing.
snapshot() {
    local f k
    for k in net/core/somaxconn net/core/rmem_max net/core/wmem_max net/ipv4/tcp_rmem \
             net/ipv4/tcp_wmem net/core/netdev_max_backlog net/ipv4/tcp_slow_start_after_idle \
             vm/swappiness vm/dirty_ratio vm/dirty_background_ratio vm/max_map_count \
             fs/file-max fs/nr_open fs/aio-max-nr kernel/io_uring_disabled; do
        printf '%s=%s\n' "$k" "$(cat "/proc/sys/$k" 2>/dev/null || echo absent)"
    done
    for f in /sys/kernel/mm/transparent_hugepage/{enabled,defrag} \
             /sys/block/*/queue/scheduler /sys/block/*/queue/read_ahead_kb \
             /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor \
             /proc/irq/[0-9]*/smp_affinity_list; do
        [[ -e $f ]] && printf '%s=%s\n' "$f" "$(cat "$f" 2>/dev/null)"
    done
    printf 'ulimit=%s/%s\n' "$(ulimit -l)" "$(ulimit -n)"
    for f in /etc/sysctl.d/* /etc/security/limits.d/* "$ROOT"/tuning/undo-*; do
        [[ -e $f ]] && printf '%s %s\n' "$f" "$(cksum < "$f")"
    done
    return 0
}

REQUIRED_IDS="cpu.governor thp.enabled thp.defrag irq.affinity blk.scheduler blk.read_ahead_kb
net.core.somaxconn net.core.rmem_max net.core.wmem_max net.ipv4.tcp_rmem net.ipv4.tcp_wmem
net.core.netdev_max_backlog net.ipv4.tcp_slow_start_after_idle vm.swappiness vm.dirty_ratio
vm.dirty_background_ratio vm.max_map_count fs.file-max fs.nr_open fs.aio-max-nr
kernel.io_uring_disabled limit.nofile limit.memlock"

# json_field FILE ID FIELD -> value from check.sh --json output
json_field() {
    python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for s in doc["settings"]:
    if s["id"] == sys.argv[2]:
        print(s[sys.argv[3]])
        break
else:
    print("<missing>")
EOF
}

echo "== environment"
echo "uid $EUID, $(nproc) CPUs, kernel $(uname -r), virt: $(systemd-detect-virt 2>/dev/null || echo unknown)"

# ---------------------------------------------------------------------------
echo "== static checks"
if command -v shellcheck >/dev/null 2>&1; then
    run_cmd shellcheck -x tuning/lib.sh tuning/check.sh tuning/apply.sh tests/tuning_test.sh
    if [[ $RC -eq 0 ]]; then pass "shellcheck clean"; else fail "shellcheck clean" "$OUT"; fi
else
    missing_tool "shellcheck not installed"
fi
run_cmd grep -L 'set -euo pipefail' tuning/check.sh tuning/apply.sh
expect "check.sh and apply.sh use set -euo pipefail" test -z "$OUT"
expect "README.md documents every setting" bash -c '
    for id in $1; do grep -qF -- "$id" tuning/README.md || { echo "missing $id"; exit 1; }; done' _ "$REQUIRED_IDS"

# ---------------------------------------------------------------------------
echo "== usage errors"
run_cmd "$CHECK" --help;                  expect "check --help exits 0" test "$RC" -eq 0
run_cmd "$CHECK" --bogus;                 expect "check unknown option exits 2" test "$RC" -eq 2
run_cmd "$CHECK" --only no.such.setting;  expect "check --only unknown id exits 2" test "$RC" -eq 2
run_cmd "$CHECK" --broker-cpus 1-x;       expect "check bad --broker-cpus exits 2" test "$RC" -eq 2
run_cmd "$CHECK" --data-dir;              expect "check --data-dir without value exits 2" test "$RC" -eq 2
run_cmd "$APPLY" --help;                  expect "apply --help exits 0" test "$RC" -eq 0
run_cmd "$APPLY" --dry-run --bogus;       expect "apply unknown option exits 2" test "$RC" -eq 2
run_cmd "$APPLY" --dry-run --only nope;   expect "apply --only unknown id exits 2" test "$RC" -eq 2

# ---------------------------------------------------------------------------
echo "== check.sh"
snapshot > "$TMP/snap.before"
run_cmd "$CHECK"
TEXT_OUT=$OUT
expect "check (text) exits 0" test "$RC" -eq 0
expect "check prints the table header" grep -qE '^SETTING +CURRENT +RECOMMENDED +STATUS +WHY$' <<<"$TEXT_OUT"
missing=""
for id in $REQUIRED_IDS; do
    grep -qE "^${id//./\\.} +.* (ok|differs|read-only|n/a) +[^ ]" <<<"$TEXT_OUT" || missing+=" $id"
done
if [[ -z $missing ]]; then pass "text table has a row with a valid status for every setting"
else fail "text table has a row with a valid status for every setting" "missing:$missing"; fi

RC=0; "$CHECK" --json > "$TMP/check.json" 2>"$TMP/check.err" || RC=$?
expect "check --json exits 0" test "$RC" -eq 0
run_cmd python3 -m json.tool "$TMP/check.json"
if [[ $RC -eq 0 ]]; then pass "check --json is valid JSON (python3 -m json.tool)"
else fail "check --json is valid JSON (python3 -m json.tool)" "$OUT"; fi
run_cmd python3 - "$TMP/check.json" "$REQUIRED_IDS" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
ids = [s["id"] for s in doc["settings"]]
missing = set(sys.argv[2].split()) - set(ids)
assert not missing, f"missing ids {missing}"
assert len(ids) == len(set(ids)), "duplicate ids"
for s in doc["settings"]:
    assert set(s) >= {"id", "current", "recommended", "status", "why", "note"}, s
    assert s["status"] in ("ok", "differs", "read-only", "n/a"), s
    assert s["why"], s
for k in ("host", "kernel", "virtualization", "data_dir", "broker_cpus", "settings"):
    assert k in doc, k
EOF
if [[ $RC -eq 0 ]]; then pass "JSON has every setting with id/current/recommended/status/why"
else fail "JSON has every setting with id/current/recommended/status/why" "$OUT"; fi
# text and JSON agree on every status
agree=1
while IFS=$'\t' read -r id status; do
    grep -qE "^${id//./\\.} +.* ${status} +[^ ]" <<<"$TEXT_OUT" || { agree=0; echo "  $id: json says $status"; }
done < <(python3 -c 'import json,sys; [print(s["id"]+"\t"+s["status"]) for s in json.load(open(sys.argv[1]))["settings"]]' "$TMP/check.json")
expect "text and JSON report the same status for every setting" test "$agree" -eq 1

run_cmd "$CHECK" --json --only 'vm.*'
expect "--only glob selects just those settings" python3 -c '
import json, sys
ids = [s["id"] for s in json.loads(sys.argv[1])["settings"]]
assert ids and all(i.startswith("vm.") for i in ids), ids' "$OUT"

snapshot > "$TMP/snap.after"
run_cmd diff "$TMP/snap.before" "$TMP/snap.after"
if [[ $RC -eq 0 ]]; then pass "check.sh changed nothing (raw state identical before/after)"
else fail "check.sh changed nothing (raw state identical before/after)" "$OUT"; fi

# 2 CPUs and no --broker-cpus: IRQ affinity is only reported.
if (( $(nproc) <= 2 )); then
    expect "<=2 CPUs without --broker-cpus: irq.affinity is report-only (n/a)" \
        test "$(json_field "$TMP/check.json" irq.affinity status)" = "n/a"
fi
if [[ ! -d /sys/devices/system/cpu/cpu0/cpufreq ]]; then
    expect "no cpufreq here: cpu.governor is n/a, 'not available'" bash -c '
        [[ $(python3 -c "import json,sys; d={s[\"id\"]:s for s in json.load(open(sys.argv[1]))[\"settings\"]}; g=d[\"cpu.governor\"]; print(g[\"status\"], g[\"note\"])" "$1") == "n/a not available"* ]]' _ "$TMP/check.json"
fi

# ---------------------------------------------------------------------------
echo "== apply.sh --dry-run"
snapshot > "$TMP/snap.before"
cp "$TMP/check.json" "$TMP/json.before"
run_cmd "$APPLY" --dry-run --broker-cpus 1 --persist --undo-file "$TMP/dry-undo.sh"
DRY_OUT=$OUT
expect "apply --dry-run exits 0" test "$RC" -eq 0
expect "dry-run output is a valid shell script (bash -n)" bash -n <<<"$DRY_OUT"
expect "dry-run says nothing was changed" contains "$DRY_OUT" "Nothing was changed"
expect "dry-run does not create an undo file" test ! -e "$TMP/dry-undo.sh"
n_differs=$(python3 -c 'import json,sys; print(sum(s["status"] in ("differs","read-only") for s in json.load(open(sys.argv[1]))["settings"] if s["id"]!="irq.affinity"))' "$TMP/check.json")
n_cmds=$(grep -cE '^(echo|mkdir) ' <<<"$DRY_OUT" || true)
expect "dry-run prints a command for each differing setting ($n_differs <= $n_cmds)" test "$n_cmds" -ge "$n_differs"
snapshot > "$TMP/snap.after"
run_cmd diff "$TMP/snap.before" "$TMP/snap.after"
if [[ $RC -eq 0 ]]; then pass "dry-run changed nothing (raw state identical before/after)"
else fail "dry-run changed nothing (raw state identical before/after)" "$OUT"; fi
"$CHECK" --json > "$TMP/json.after"
run_cmd diff "$TMP/json.before" "$TMP/json.after"
if [[ $RC -eq 0 ]]; then pass "dry-run changed nothing (check --json identical before/after)"
else fail "dry-run changed nothing (check --json identical before/after)" "$OUT"; fi

# ---------------------------------------------------------------------------
echo "== apply.sh without root"
if [[ $EUID -eq 0 ]] && command -v setpriv >/dev/null 2>&1 &&
   setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$APPLY" 2>/dev/null; then
    before=$(cat "$SOMAXCONN")
    run_cmd setpriv --reuid=65534 --regid=65534 --clear-groups "$APPLY" --only net.core.somaxconn
    expect "non-root real apply exits 1" test "$RC" -eq 1
    expect "non-root real apply explains that root is needed" contains "$OUT" "needs root"
    expect "non-root real apply changed nothing" test "$(cat "$SOMAXCONN")" = "$before"
    run_cmd setpriv --reuid=65534 --regid=65534 --clear-groups "$CHECK" --json
    expect "non-root check --json exits 0 with valid JSON" python3 -c 'import json,sys; json.loads(sys.argv[1])' "$OUT"
    run_cmd setpriv --reuid=65534 --regid=65534 --clear-groups "$APPLY" --dry-run --only 'net.*'
    expect "non-root dry-run works (exit 0)" test "$RC" -eq 0
elif [[ $EUID -ne 0 ]]; then
    run_cmd "$APPLY" --only net.core.somaxconn
    expect "non-root real apply exits 1" test "$RC" -eq 1
    expect "non-root real apply explains that root is needed" contains "$OUT" "needs root"
else
    skip "setpriv unavailable: non-root behaviour not tested"
fi

# ---------------------------------------------------------------------------
echo "== apply.sh for real on a harmless subset, then undo"
SUBSET="net.core.somaxconn,net.ipv4.tcp_slow_start_after_idle"
if writable "$SOMAXCONN" && writable "$SSAI"; then
    echo 1024 > "$SOMAXCONN"     # known below the recommendation, so apply must act
    pre_ssai=$(cat "$SSAI")
    run_cmd "$APPLY" --dry-run --only net.core.somaxconn
    expect "dry-run prints the exact write command" grep -qx 'echo 4096 > /proc/sys/net/core/somaxconn' <<<"$OUT"
    expect "dry-run left somaxconn at 1024" test "$(cat "$SOMAXCONN")" = 1024

    UNDO="$TMP/undo-real.sh"
    run_cmd "$APPLY" --only "$SUBSET" --undo-file "$UNDO"
    expect "real apply exits 0" test "$RC" -eq 0
    expect "real apply reports 'applied 1024 -> 4096'" contains "$OUT" "net.core.somaxconn: applied 1024 -> 4096"
    expect "somaxconn now 4096" test "$(cat "$SOMAXCONN")" = 4096
    expect "tcp_slow_start_after_idle now 0" test "$(cat "$SSAI")" = 0
    "$CHECK" --json --only "$SUBSET" > "$TMP/after-apply.json"
    expect "check agrees both are ok after apply" test \
        "$(json_field "$TMP/after-apply.json" net.core.somaxconn status)$(json_field "$TMP/after-apply.json" net.ipv4.tcp_slow_start_after_idle status)" = okok
    expect "undo file exists and is executable" test -x "$UNDO"
    expect "undo file records the old somaxconn" grep -qx 'restore /proc/sys/net/core/somaxconn 1024' "$UNDO"
    expect "undo file is valid bash" bash -n "$UNDO"
    if command -v shellcheck >/dev/null 2>&1; then
        run_cmd shellcheck "$UNDO"
        if [[ $RC -eq 0 ]]; then pass "undo file is shellcheck-clean"; else fail "undo file is shellcheck-clean" "$OUT"; fi
    fi
    run_cmd bash "$UNDO"
    expect "undo file runs successfully" test "$RC" -eq 0
    expect "undo restored somaxconn to 1024" test "$(cat "$SOMAXCONN")" = 1024
    expect "undo restored tcp_slow_start_after_idle to $pre_ssai" test "$(cat "$SSAI")" = "$pre_ssai"
    run_cmd bash "$UNDO"
    expect "running the undo file twice is harmless" test "$RC" -eq 0 -a "$(cat "$SOMAXCONN")" = 1024

    run_cmd "$APPLY" --only net.core.somaxconn --undo-file "$UNDO"
    expect "apply refuses to overwrite an existing undo file" test "$RC" -eq 1 -a "$(cat "$SOMAXCONN")" = 1024

    # Settings already ok: nothing written, no undo file left behind.
    echo 4096 > "$SOMAXCONN"
    run_cmd "$APPLY" --only net.core.somaxconn --undo-file "$TMP/undo-noop.sh"
    expect "already-ok setting: exit 0, 'nothing to do', no undo file" \
        bash -c '[[ $1 -eq 0 && $2 == *"nothing to do"* && ! -e $3 ]]' _ "$RC" "$OUT" "$TMP/undo-noop.sh"

    # --persist and the limits file, pointed at temp paths; undo restores both.
    echo 1024 > "$SOMAXCONN"
    mkdir -p "$TMP/etc/limits.d"
    printf '# pre-existing\nkafka soft nofile 4096\n* soft memlock 64\n* hard memlock 64\n' > "$TMP/etc/limits.d/90.conf"
    cp "$TMP/etc/limits.d/90.conf" "$TMP/limits.orig"
    UNDO2="$TMP/undo-persist.sh"
    run_cmd bash -c 'ulimit -S -l 64 && exec "$@"' _ "$APPLY" --only net.core.somaxconn,limit.memlock --persist \
        --sysctl-conf "$TMP/etc/sysctl.d/90-ringlog.conf" --limits-file "$TMP/etc/limits.d/90.conf" --undo-file "$UNDO2"
    expect "apply --persist with temp conf paths exits 0" test "$RC" -eq 0
    expect "--persist wrote the sysctl conf" grep -qx 'net.core.somaxconn = 4096' "$TMP/etc/sysctl.d/90-ringlog.conf"
    expect "limits file sets memlock unlimited" grep -qx '\* soft memlock unlimited' "$TMP/etc/limits.d/90.conf"
    expect "limits file keeps unrelated lines and drops the old memlock lines" bash -c '
        grep -qx "kafka soft nofile 4096" "$1" && ! grep -q "memlock 64" "$1"' _ "$TMP/etc/limits.d/90.conf"
    run_cmd bash "$UNDO2"
    expect "undo restores the limits file byte for byte" cmp -s "$TMP/limits.orig" "$TMP/etc/limits.d/90.conf"
    expect "undo removes the sysctl conf it created" test ! -e "$TMP/etc/sysctl.d/90-ringlog.conf"
    expect "undo restores somaxconn again" test "$(cat "$SOMAXCONN")" = 1024
else
    skip "somaxconn/tcp_slow_start_after_idle not writable here: expecting read-only handling instead"
    if [[ $EUID -eq 0 ]]; then
        run_cmd "$APPLY" --only "$SUBSET" --undo-file "$TMP/undo-ro.sh"
        expect "apply on read-only settings exits 0" test "$RC" -eq 0
        expect "apply says read-only, skipped (or nothing to do)" bash -c \
            '[[ $1 == *"read-only, skipped"* || $1 == *"nothing to do"* ]]' _ "$OUT"
    fi
fi
if writable "$SOMAXCONN"; then
    echo "$ORIG_SOMAXCONN" > "$SOMAXCONN"
    expect "somaxconn back to its original value ($ORIG_SOMAXCONN)" test "$(cat "$SOMAXCONN")" = "$ORIG_SOMAXCONN"
fi

# ---------------------------------------------------------------------------
echo "== container simulation: /proc/sys and /sys mounted read-only"
if [[ $EUID -eq 0 ]] && unshare -m true 2>/dev/null; then
    writable "$SOMAXCONN" && echo 1024 > "$SOMAXCONN"
    cur=$(cat "$SOMAXCONN")
    cat > "$TMP/ro.sh" <<'EOF'
set -u
mount --bind -o ro /proc/sys /proc/sys && mount --bind -o ro /sys /sys || exit 99
echo "--- check"; "$1" --json --only 'net.core.somaxconn,blk.read_ahead_kb' ; echo "check-rc=$?"
echo "--- apply"; "$2" --only 'net.core.somaxconn,blk.read_ahead_kb' --undo-file "$3"; echo "apply-rc=$?"
EOF
    run_cmd unshare -m bash "$TMP/ro.sh" "$CHECK" "$APPLY" "$TMP/undo-ro.sh"
    if [[ $RC -eq 99 ]]; then
        skip "cannot bind-mount read-only here"
    else
        RO_OUT=$OUT
        ro_json=$(sed -n '/^--- check/,/^check-rc=/p' <<<"$RO_OUT" | sed '1d;$d')
        expect "read-only host: check exits 0" contains "$RO_OUT" "check-rc=0"
        if [[ $cur != 4096 ]] && (( cur < 4096 )); then
            expect "read-only host: check says somaxconn is read-only" python3 -c '
import json, sys
d = {s["id"]: s for s in json.loads(sys.argv[1])["settings"]}
assert d["net.core.somaxconn"]["status"] == "read-only", d' "$ro_json"
            expect "read-only host: apply reports 'read-only, skipped'" contains "$RO_OUT" "net.core.somaxconn: read-only, skipped"
        fi
        expect "read-only host: apply exits 0" contains "$RO_OUT" "apply-rc=0"
        expect "read-only host: nothing applied, no undo file left" test ! -e "$TMP/undo-ro.sh"
        expect "read-only host: value unchanged" test "$(cat "$SOMAXCONN")" = "$cur"
    fi
    writable "$SOMAXCONN" && echo "$ORIG_SOMAXCONN" > "$SOMAXCONN"
else
    skip "unshare -m unavailable: container simulation not run"
fi

# ---------------------------------------------------------------------------
echo "== fake sysfs/procfs tree: cpufreq governor, THP, IRQ affinity"
make_fake() { # dir
    local f=$1 c
    mkdir -p "$f/sys/devices/system/cpu" "$f/sys/kernel/mm/transparent_hugepage" "$f/proc/sys"
    echo 0-3 > "$f/sys/devices/system/cpu/online"
    for c in 0 1 2 3; do
        mkdir -p "$f/sys/devices/system/cpu/cpu$c/cpufreq"
        echo powersave > "$f/sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor"
    done
    echo 'always madvise [never]' > "$f/sys/kernel/mm/transparent_hugepage/enabled"
    echo '[always] defer defer+madvise madvise never' > "$f/sys/kernel/mm/transparent_hugepage/defrag"
    mkdir -p "$f/sys/class/net/eth0/device" "$f/sys/class/net/lo" "$f/sys/bus/virtio/drivers/virtio_net" \
             "$f/sys/bus/virtio/devices/virtio2" "$f/sys/bus/virtio/devices/virtio4" "$f/sys/bus/virtio/drivers/virtio_rng"
    ln -s ../../drivers/virtio_net "$f/sys/bus/virtio/devices/virtio2/driver"
    ln -s ../../drivers/virtio_rng "$f/sys/bus/virtio/devices/virtio4/driver"
    # 40 NIC queue, 41 NVMe (managed; not steered), 42 virtio-net, 43 virtio-rng, 44 virtio config
    local -A names=([40]=eth0-TxRx-0 [41]=nvme0q1 [42]=virtio2-input.0 [43]=virtio4-input [44]=virtio2-config)
    for c in "${!names[@]}"; do
        mkdir -p "$f/proc/irq/$c" "$f/sys/kernel/irq/$c"
        echo 0-3 > "$f/proc/irq/$c/smp_affinity_list"
        echo "${names[$c]}" > "$f/sys/kernel/irq/$c/actions"
    done
    echo 2-3 > "$f/proc/irq/42/smp_affinity_list"
}
FAKE="$TMP/fake"
make_fake "$FAKE"
fake() { RINGLOG_TUNING_SYSFS="$FAKE/sys" RINGLOG_TUNING_PROCFS="$FAKE/proc" "$@"; }
IDS='cpu.governor,thp.*,irq.affinity'
fake "$CHECK" --json --only "$IDS" > "$TMP/fake.before"
st() { json_field "$1" "$2" status; }
expect "fake: governor powersave differs" test "$(st "$TMP/fake.before" cpu.governor)" = differs
expect "fake: thp.enabled=never is ok" test "$(st "$TMP/fake.before" thp.enabled)" = ok
expect "fake: thp.defrag=always differs" test "$(st "$TMP/fake.before" thp.defrag)" = differs
expect "fake: 4 CPUs, default broker cpus 1-3, IRQs go to cpu 0" test \
    "$(json_field "$TMP/fake.before" irq.affinity recommended)" = "cpus 0"
expect "fake: NIC + virtio-net IRQs counted, NVMe/rng/config ignored" test \
    "$(json_field "$TMP/fake.before" irq.affinity current)" = "2 irqs, 2 on broker cpus"
run_cmd fake "$APPLY" --dry-run --only "$IDS"
expect "fake dry-run shows governor write for each CPU" test "$(grep -c '^echo performance > .*scaling_governor$' <<<"$OUT")" -eq 4
expect "fake dry-run shows IRQ writes" grep -q '^echo 0 > .*/proc/irq/40/smp_affinity_list$' <<<"$OUT"
if [[ $EUID -eq 0 ]]; then
    run_cmd fake "$APPLY" --only "$IDS" --undo-file "$TMP/fake-undo.sh"
    expect "fake apply exits 0" test "$RC" -eq 0
    expect "fake apply set every governor to performance" test \
        "$(cat "$FAKE"/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor | sort -u)" = performance
    expect "fake apply set thp.defrag to madvise" test "$(cat "$FAKE/sys/kernel/mm/transparent_hugepage/defrag")" = madvise
    expect "fake apply steered IRQs 40 and 42 to cpu 0 and left NVMe alone" test \
        "$(cat "$FAKE"/proc/irq/{40,41,42}/smp_affinity_list | tr '\n' ' ')" = "0 0-3 0 "
    fake "$CHECK" --json --only "$IDS" > "$TMP/fake.mid"
    expect "fake: check is all ok after apply" test "$(python3 -c 'import json,sys; print(sorted({s["status"] for s in json.load(open(sys.argv[1]))["settings"]}))' "$TMP/fake.mid")" = "['ok']"
    run_cmd bash "$TMP/fake-undo.sh"
    expect "fake undo exits 0" test "$RC" -eq 0
    fake "$CHECK" --json --only "$IDS" > "$TMP/fake.after"
    run_cmd diff "$TMP/fake.before" "$TMP/fake.after"
    if [[ $RC -eq 0 ]]; then pass "fake: check --json identical before apply and after undo"
    else fail "fake: check --json identical before apply and after undo" "$OUT"; fi

    # A write failing for a reason other than read-only fails the run (exit 1)
    # but the other settings are still applied.
    rm -rf "$FAKE"; make_fake "$FAKE"
    rm "$FAKE/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"
    mkdir "$FAKE/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"
    run_cmd fake "$APPLY" --only 'cpu.governor,thp.defrag' --undo-file "$TMP/fake-undo2.sh"
    expect "unexpected write error: exit 1 with FAILED" bash -c '[[ $1 -eq 1 && $2 == *FAILED* ]]' _ "$RC" "$OUT"
    expect "unexpected write error: other settings still applied" test \
        "$(cat "$FAKE/sys/kernel/mm/transparent_hugepage/defrag")" = madvise
fi
run_cmd fake "$CHECK" --json --only irq.affinity --broker-cpus 0-3
expect "broker on every CPU: irq.affinity n/a" test "$(json_field <(printf '%s' "$OUT") irq.affinity status)" = "n/a"

# ---------------------------------------------------------------------------
printf '%d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
(( FAILED == 0 ))
