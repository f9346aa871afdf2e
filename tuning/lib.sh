# shellcheck shell=bash
# tuning/lib.sh - shared settings table and helpers for check.sh and apply.sh.
#
# Sourced, never executed. check.sh and apply.sh both evaluate settings with
# eval_setting(), so what check reports and what apply writes can't drift apart.
#
# Test hooks (not for production use): RINGLOG_TUNING_SYSFS and
# RINGLOG_TUNING_PROCFS replace the /sys and /proc roots, so tests can run the
# scripts against a fake tree.

# Globals set here are read by check.sh and apply.sh.
# shellcheck disable=SC2034

export LC_ALL=C

TUNING_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SYSFS=${RINGLOG_TUNING_SYSFS:-/sys}
PROCFS=${RINGLOG_TUNING_PROCFS:-/proc}

# Options shared by check.sh and apply.sh (the scripts parse them).
BROKER_CPUS=""          # --broker-cpus LIST; empty = default policy
DATA_DIR="./data"       # --data-dir DIR
ONLY=""                 # --only ID[,ID] (ids or glob patterns such as 'net.*')
LIMITS_FILE="/etc/security/limits.d/90-ringlog.conf"   # apply --limits-file
LIMITS_USER="*"                                          # apply --limits-user
SYSCTL_CONF="/etc/sysctl.d/90-ringlog.conf"              # apply --sysctl-conf

# ---------------------------------------------------------------------------
# The settings table: one line per setting.
#
#   id | type | arg | recommendation | why (one line)
#
# type selects how the setting is read and written (eval_<type> below):
#   sysctl    /proc/sys/<id with dots as slashes>; written with echo
#   governor  /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor, every CPU
#   thp       /sys/kernel/mm/transparent_hugepage/<arg> ("[selected]" format)
#   irq       /proc/irq/N/smp_affinity_list of NIC/virtio IRQs
#   blksched  queue/scheduler of the disk(s) holding --data-dir
#   blkra     queue/read_ahead_kb of the disk(s) holding --data-dir
#   rlimit    ulimit of this shell; written as <arg> lines in the limits.d file
#
# recommendation is KIND:SPEC[@TARGET]; TARGET is the value apply writes
# (default: SPEC, or for oneof its first element):
#   eq:V          exactly V
#   min:N         >= N ("unlimited" counts as infinite)
#   max:N         <= N
#   range:LO-HI   LO <= value <= HI
#   vecmin:A B C  every field >= the matching field (apply raises only
#                 the fields that are too low)
#   oneof:A,B     one of the listed words
#   cpus:irq      IRQ affinity within the CPUs not used by broker shards
# ---------------------------------------------------------------------------
RINGLOG_SETTINGS_TABLE='
cpu.governor|governor|-|oneof:performance|full clock on every core: frequency ramp-up adds latency to each poll loop, request batch and fdatasync completion
thp.enabled|thp|enabled|oneof:madvise,never|always makes ordinary faults allocate/zero 2 MiB pages (latency spikes, RSS bloat); madvise lets code opt in
thp.defrag|thp|defrag|oneof:madvise,never|defrag=always/defer+madvise can stall a faulting executor in direct compaction for milliseconds
irq.affinity|irq|-|cpus:irq|NIC/virtio interrupts and their softirq work on a shard core steal time from its executor; steer them to spare CPUs
blk.scheduler|blksched|-|oneof:none,mq-deadline|NVMe/virtio queue internally; none or mq-deadline add the least latency to O_DIRECT writes and fdatasync
blk.read_ahead_kb|blkra|-|range:16-1024@128|O_DIRECT log I/O skips readahead; a huge value only wastes bandwidth and cache on buffered reads
net.core.somaxconn|sysctl|-|min:4096|accept() backlog cap: thousands of clients reconnecting after a broker restart overflow a small queue
net.core.rmem_max|sysctl|-|min:16777216|ceiling for socket receive buffers: producers pushing large batches need big TCP windows
net.core.wmem_max|sysctl|-|min:16777216|ceiling for socket send buffers: large fetch responses to consumers stream without stalling
net.ipv4.tcp_rmem|sysctl|-|vecmin:4096 87380 16777216|TCP receive buffer autotuning min/default/max; max >= 16 MiB keeps 10G+ links full at higher RTT
net.ipv4.tcp_wmem|sysctl|-|vecmin:4096 65536 16777216|TCP send buffer autotuning min/default/max; a larger max keeps big fetch responses in flight
net.core.netdev_max_backlog|sysctl|-|min:16384|per-CPU queue of received packets awaiting softirq; the 1000 default drops packets in 10G+ bursts
net.ipv4.tcp_slow_start_after_idle|sysctl|-|eq:0|0 keeps the congestion window across idle gaps, so bursty producers/consumers resume at full speed
vm.swappiness|sysctl|-|eq:1|swap only under real memory pressure; a swapped-out page stalls a whole executor (and every partition it owns)
vm.dirty_ratio|sysctl|-|max:10|logs use O_DIRECT, so this only caps dirty page cache from buffered mode and other files; lower keeps fdatasync short
vm.dirty_background_ratio|sysctl|-|max:5|start background writeback early so an fdatasync of a buffered file has little left to flush
vm.max_map_count|sysctl|-|min:262144|every mmapped index/segment is a mapping; 10k partitions with a few segments each exceed the 65530 default
fs.file-max|sysctl|-|min:2097152|system-wide open file cap; must exceed the broker fds (partitions x 3 files + sockets) plus the rest of the host
fs.nr_open|sysctl|-|min:1048576|upper bound for any process nofile limit; limit.nofile cannot be raised past it
fs.aio-max-nr|sysctl|-|min:1048576|system-wide Linux AIO request limit; io_uring does not use it, but AIO fallbacks and tools (fio libaio) on the host do
kernel.io_uring_disabled|sysctl|-|eq:0|1 restricts io_uring to privileged/io_uring_group users, 2 disables it; glommio executors cannot start without it
limit.nofile|rlimit|nofile|min:262144|open fds per broker process: 10k partitions x 3 files (log, index, timeindex) = 30k before any client socket
limit.memlock|rlimit|memlock|min:524288@unlimited|locked memory in KiB: io_uring rings and registered buffers of each per-core glommio executor count against it
'

# Loaded table, parallel arrays indexed by position.
SET_IDS=() SET_TYPES=() SET_ARGS=() SET_SPECS=() SET_WHYS=()
load_settings() {
    local line id type arg spec why
    SET_IDS=() SET_TYPES=() SET_ARGS=() SET_SPECS=() SET_WHYS=()
    while IFS= read -r line; do
        [[ -z $line ]] && continue
        IFS='|' read -r id type arg spec why <<<"$line"
        SET_IDS+=("$id") SET_TYPES+=("$type") SET_ARGS+=("$arg")
        SET_SPECS+=("$spec") SET_WHYS+=("$why")
    done <<<"$RINGLOG_SETTINGS_TABLE"
}

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
die_usage() { printf '%s: %s\n' "${0##*/}" "$1" >&2; printf 'Try %s --help\n' "${0##*/}" >&2; exit 2; }

# Quote a word for the shell only when it needs it.
shq() {
    if [[ $1 =~ ^[A-Za-z0-9_./:+,=@%-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\t'/\\t}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//[$'\001'-$'\037']/}
    printf '"%s"' "$s"
}

# Read a kernel tunable and normalise it: "[selected]" lists give the selected
# word, runs of whitespace become one space. Fails if unreadable.
read_norm() {
    local raw
    raw=$(cat -- "$1" 2>/dev/null) || return 1
    norm_value "$raw"
}
norm_value() {
    local raw=$1 words
    if [[ $raw =~ \[([^]]*)\] ]]; then
        printf '%s' "${BASH_REMATCH[1]}"
        return 0
    fi
    read -r -a words <<<"${raw//$'\n'/ }" || true
    printf '%s' "${words[*]-}"
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# a >= b with "unlimited" as infinity; non-numbers compare false.
num_ge() {
    [[ $1 == unlimited ]] && return 0
    [[ $2 == unlimited ]] && return 1
    is_uint "$1" && is_uint "$2" || return 1
    (( 10#$1 >= 10#$2 ))
}

# Does writing PATH look impossible here (read-only mount, no write bits,
# or root but access(W_OK) fails)? For a file to be created, PATH's nearest
# existing parent is checked. Never writes anything.
path_readonly() {
    local p=$1 opts mode
    while [[ ! -e $p && $p == */* ]]; do p=${p%/*}; [[ -z $p ]] && p=/; done
    [[ -e $p ]] || return 1
    if [[ $EUID -eq 0 ]]; then
        [[ -w $p ]] || return 0
    else
        mode=$(stat -c %a -- "$p" 2>/dev/null) || mode=644
        (( (8#$mode & 8#222) == 0 )) && return 0
    fi
    opts=$(findmnt -n -o OPTIONS -T "$p" 2>/dev/null | head -n1) || opts=""
    [[ ,$opts, == *,ro,* ]] && return 0
    return 1
}

# --- CPU lists ("0-3,8") ----------------------------------------------------
valid_cpulist() { [[ $1 =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]]; }
# Expand a cpulist into space-separated numbers.
cpulist_expand() {
    local part a b out=() parts
    IFS=',' read -r -a parts <<<"$1"
    for part in "${parts[@]}"; do
        [[ -z $part ]] && continue
        if [[ $part == *-* ]]; then
            a=${part%-*} b=${part#*-}
            while (( a <= b )); do out+=("$a"); a=$((a + 1)); done
        else
            out+=("$part")
        fi
    done
    printf '%s' "${out[*]-}"
}
# Compress space-separated sorted numbers back into a cpulist.
cpulist_compress() {
    local n start=-1 prev=-1 res=""
    for n in $1; do
        if (( start < 0 )); then start=$n prev=$n; continue; fi
        if (( n == prev + 1 )); then prev=$n; continue; fi
        res+="${res:+,}$start"; (( prev > start )) && res+="-$prev"
        start=$n prev=$n
    done
    if (( start >= 0 )); then res+="${res:+,}$start"; (( prev > start )) && res+="-$prev"; fi
    printf '%s' "$res"
}
in_words() { local w; for w in $2; do [[ $w == "$1" ]] && return 0; done; return 1; }

# ---------------------------------------------------------------------------
# Recommendation specs
# ---------------------------------------------------------------------------
spec_kind() { printf '%s' "${1%%:*}"; }
spec_body() { local b=${1#*:}; printf '%s' "${b%%@*}"; }
spec_target_override() { [[ $1 == *@* ]] && printf '%s' "${1##*@}"; return 0; }

spec_display() {
    local kind body tgt
    kind=$(spec_kind "$1") body=$(spec_body "$1") tgt=$(spec_target_override "$1")
    case $kind in
        eq) printf '%s' "$body" ;;
        min) if [[ -n $tgt ]]; then printf '%s (>=%s)' "$tgt" "$body"; else printf '>=%s' "$body"; fi ;;
        max) printf '<=%s' "$body" ;;
        range) printf '%s..%s' "${body%-*}" "${body#*-}"; [[ -n $tgt ]] && printf ' (%s)' "$tgt" ;;
        vecmin) printf '>=%s' "$body" ;;
        oneof) printf '%s' "${body//,/|}" ;;
        *) printf '%s' "$body" ;;
    esac
}

spec_ok() { # spec value
    local kind body v=$2 lo hi i
    kind=$(spec_kind "$1") body=$(spec_body "$1")
    case $kind in
        eq) [[ $v == "$body" ]] ;;
        min) num_ge "$v" "$body" ;;
        max) is_uint "$v" && (( 10#$v <= 10#$body )) ;;
        range) lo=${body%-*} hi=${body#*-}
               is_uint "$v" && (( 10#$v >= 10#$lo && 10#$v <= 10#$hi )) ;;
        vecmin)
            local -a want have
            read -r -a want <<<"$body"; read -r -a have <<<"$v"
            (( ${#want[@]} == ${#have[@]} )) || return 1
            for i in "${!want[@]}"; do num_ge "${have[i]}" "${want[i]}" || return 1; done ;;
        oneof) in_words "$v" "${body//,/ }" ;;
        *) return 1 ;;
    esac
}

spec_target() { # spec current -> value apply should write
    local kind body tgt i
    kind=$(spec_kind "$1") body=$(spec_body "$1") tgt=$(spec_target_override "$1")
    if [[ -n $tgt ]]; then printf '%s' "$tgt"; return; fi
    case $kind in
        oneof) printf '%s' "${body%%,*}" ;;
        vecmin)
            local -a want have out=()
            read -r -a want <<<"$body"; read -r -a have <<<"$2"
            for i in "${!want[@]}"; do
                if [[ -n ${have[i]-} ]] && num_ge "${have[i]}" "${want[i]}"; then out+=("${have[i]}"); else out+=("${want[i]}"); fi
            done
            printf '%s' "${out[*]}" ;;
        *) printf '%s' "$body" ;;
    esac
}

# ---------------------------------------------------------------------------
# Evaluation. eval_setting INDEX fills:
#   S_ID S_CUR S_REC S_STATUS(ok|differs|read-only|n/a) S_WHY S_NOTE
#   OP_KIND[] OP_PATH[] OP_OLD[] OP_NEW[] OP_LABEL[]  - writes that would fix it
# OP_KIND is "val" (echo NEW > PATH) or "file" (replace PATH's content by NEW).
# ---------------------------------------------------------------------------
declare -A FILE_OVERLAY=()   # planned file contents (so later plans see earlier ones)

reset_eval() {
    S_ID="" S_CUR="-" S_REC="-" S_STATUS="" S_WHY="" S_NOTE=""
    OP_KIND=() OP_PATH=() OP_OLD=() OP_NEW=() OP_LABEL=()
}
add_op() { OP_KIND+=("$1") OP_PATH+=("$2") OP_OLD+=("$3") OP_NEW+=("$4") OP_LABEL+=("${5:-$2}"); }
add_note() { S_NOTE+="${S_NOTE:+; }$1"; }
set_na() { S_STATUS="n/a"; add_note "$1"; }

eval_setting() {
    local i=$1 type spec
    reset_eval
    S_ID=${SET_IDS[i]} S_WHY=${SET_WHYS[i]}
    type=${SET_TYPES[i]} spec=${SET_SPECS[i]}
    S_REC=$(spec_display "$spec")
    "eval_${type}" "${SET_ARGS[i]}" "$spec"
    # A difference that can't be written here is reported as read-only.
    if [[ $S_STATUS == differs && ${#OP_PATH[@]} -gt 0 ]]; then
        local p ro=0
        for p in "${OP_PATH[@]}"; do path_readonly "$p" && ro=$((ro + 1)); done
        if (( ro == ${#OP_PATH[@]} )); then
            S_STATUS="read-only"
            add_note "read-only here (container/VM?): change it on the host or hypervisor"
        elif (( ro > 0 )); then
            add_note "$ro of ${#OP_PATH[@]} targets are read-only here"
        fi
    fi
}

# Single value against a spec; adds one op when it differs.
judge_value() { # spec current path label
    if spec_ok "$1" "$2"; then
        S_STATUS=ok
    else
        S_STATUS=differs
        add_op val "$3" "$2" "$(spec_target "$1" "$2")" "${4:-$3}"
    fi
}

eval_sysctl() {
    local spec=$2 path cur bytes
    path="$PROCFS/sys/${S_ID//.//}"
    if [[ ! -e $path ]]; then
        if [[ $S_ID == kernel.io_uring_disabled ]]; then
            set_na "not available: kernel older than 6.6 has no io_uring_disabled switch (io_uring is enabled)"
        else
            set_na "not available: $path does not exist here"
        fi
        return
    fi
    if ! cur=$(read_norm "$path"); then set_na "not readable: $path"; return; fi
    S_CUR=$cur
    judge_value "$spec" "$cur" "$path"
    if [[ $S_ID == vm.dirty_ratio || $S_ID == vm.dirty_background_ratio ]]; then
        local bfile="$PROCFS/sys/vm/${S_ID#vm.}"; bfile=${bfile/_ratio/_bytes}
        bytes=$(read_norm "$bfile" 2>/dev/null) || bytes=0
        if is_uint "$bytes" && (( bytes > 0 )); then
            add_note "${bfile##*/} is set to $bytes, so the ratio is unused"
        fi
    fi
}

eval_governor() {
    local spec=$2 f cur v bad=0 n=0
    local -A count=()
    shopt -s nullglob
    local files=("$SYSFS"/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor)
    shopt -u nullglob
    if (( ${#files[@]} == 0 )); then
        set_na "not available: no cpufreq driver (usual in VMs and containers; the hypervisor/host controls CPU frequency)"
        return
    fi
    for f in "${files[@]}"; do
        cur=$(read_norm "$f") || cur="?"
        n=$((n + 1))
        count[$cur]=$(( ${count[$cur]:-0} + 1 ))
        if ! spec_ok "$spec" "$cur"; then
            bad=$((bad + 1))
            local cpu=${f%/cpufreq/*}; cpu=${cpu##*/}
            add_op val "$f" "$cur" "$(spec_target "$spec" "$cur")" "$cpu"
        fi
    done
    if (( ${#count[@]} == 1 )); then
        S_CUR=$cur
    else
        S_CUR=""
        for v in $(printf '%s\n' "${!count[@]}" | sort); do S_CUR+="${S_CUR:+ }$v(${count[$v]})"; done
    fi
    add_note "$n CPUs with cpufreq"
    if (( bad == 0 )); then S_STATUS=ok; else S_STATUS=differs; fi
}

eval_thp() {
    local which=$1 spec=$2 path cur
    path="$SYSFS/kernel/mm/transparent_hugepage/$which"
    if [[ ! -e $path ]]; then set_na "not available: kernel built without transparent hugepages"; return; fi
    if ! cur=$(read_norm "$path"); then set_na "not readable: $path"; return; fi
    S_CUR=$cur
    judge_value "$spec" "$cur" "$path"
}

# --- CPUs and IRQs -----------------------------------------------------------
# resolve_cpus sets ONLINE_CPUS, BROKER_CPU_SET, IRQ_CPU_SET (space separated)
# and CPU_MODE: explicit | default | report-only.
resolve_cpus() {
    local online c
    online=$(cat "$SYSFS/devices/system/cpu/online" 2>/dev/null) || online=""
    if [[ -z $online ]]; then
        online="0"; c=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
        (( c > 1 )) && online="0-$((c - 1))"
    fi
    ONLINE_CPUS=$(cpulist_expand "$online")
    local -a cpus; read -r -a cpus <<<"$ONLINE_CPUS"
    IRQ_CPU_SET="" BROKER_CPU_SET=""
    if [[ -n $BROKER_CPUS ]]; then
        CPU_MODE=explicit
        BROKER_CPU_SET=$(cpulist_expand "$BROKER_CPUS")
    elif (( ${#cpus[@]} > 2 )); then
        CPU_MODE=default
        BROKER_CPU_SET="${cpus[*]:1}"
    else
        CPU_MODE=report-only
        BROKER_CPU_SET="${cpus[*]}"
    fi
    for c in "${cpus[@]}"; do
        in_words "$c" "$BROKER_CPU_SET" || IRQ_CPU_SET+="${IRQ_CPU_SET:+ }$c"
    done
}

# Is this IRQ (by its action names) a NIC or virtio net/block queue?
is_device_irq() {
    local names=$1 name n drv
    local IFS=','
    for name in $names; do
        name=${name# }
        if [[ $name =~ ^virtio([0-9]+)-(.+)$ ]]; then
            n=${BASH_REMATCH[1]}
            [[ ${BASH_REMATCH[2]} == config ]] && continue
            drv=$(readlink -f "$SYSFS/bus/virtio/devices/virtio$n/driver" 2>/dev/null) || drv=""
            drv=${drv##*/}
            if [[ -n $drv ]]; then
                [[ $drv == virtio_net || $drv == virtio_blk || $drv == virtio_scsi ]] && return 0
            else
                [[ ${BASH_REMATCH[2]} =~ ^(input|output|req|request)[.]?[0-9]* ]] && return 0
            fi
            continue
        fi
        [[ $name =~ ^(mlx4-|mlx5_comp|i40e-|ice-|ixgbe|iavf-|igb|ena-|gve-|bnxt|qede|hinic|nfp|efa) ]] && return 0
        for n in $NET_IFACES; do
            [[ $name == "$n" || $name == "$n"-* || $name == "$n"@* ]] && return 0
        done
    done
    return 1
}

list_net_ifaces() {
    local d res=""
    for d in "$SYSFS"/class/net/*; do
        [[ -e $d/device ]] || continue   # physical / paravirtual NICs only
        res+="${res:+ }${d##*/}"
    done
    printf '%s' "$res"
}

irq_name() { # irq number -> action names
    local n=$1 line
    if [[ -r $SYSFS/kernel/irq/$n/actions ]]; then
        cat "$SYSFS/kernel/irq/$n/actions" 2>/dev/null && return 0
    fi
    line=$(grep -E "^ *$n:" "$PROCFS/interrupts" 2>/dev/null) || return 0
    printf '%s' "${line##* }"
}

irqbalance_running() {
    local f
    for f in "$PROCFS"/[0-9]*/comm; do
        [[ $(cat "$f" 2>/dev/null) == irqbalance ]] && return 0
    done 2>/dev/null
    return 1
}

eval_irq() {
    local d n name aff c total=0 onb=0 irq_list
    NET_IFACES=$(list_net_ifaces)
    irq_list=$(cpulist_compress "$IRQ_CPU_SET")
    local -a bad_irqs=() bad_affs=() bad_names=()
    for d in "$PROCFS"/irq/[0-9]*; do
        [[ -e $d/smp_affinity_list ]] || continue
        n=${d##*/}
        name=$(irq_name "$n")
        is_device_irq "$name" || continue
        aff=$(read_norm "$d/smp_affinity_list") || continue
        total=$((total + 1))
        for c in $(cpulist_expand "$aff"); do
            if in_words "$c" "$BROKER_CPU_SET"; then
                onb=$((onb + 1)); bad_irqs+=("$n") bad_affs+=("$aff") bad_names+=("$name")
                break
            fi
        done
    done
    if (( total == 0 )); then set_na "no NIC/virtio IRQs found in $PROCFS/irq"; return; fi
    S_CUR="$total irqs, $onb on broker cpus"
    if [[ $CPU_MODE == report-only ]]; then
        S_REC="-"
        set_na "report only: $(wc -w <<<"$ONLINE_CPUS") CPUs leave no spare core for IRQs; pass --broker-cpus LIST to choose shard cores"
        return
    fi
    if [[ -z $IRQ_CPU_SET ]]; then
        S_REC="-"
        set_na "broker cpus cover every online CPU; nothing to steer IRQs to"
        return
    fi
    S_REC="cpus $irq_list"
    if irqbalance_running; then
        add_note "irqbalance is running and will move IRQs back: set IRQBALANCE_BANNED_CPULIST=$(cpulist_compress "$BROKER_CPU_SET") or stop it"
    fi
    if (( onb == 0 )); then S_STATUS=ok; return; fi
    S_STATUS=differs
    local i
    for i in "${!bad_irqs[@]}"; do
        add_op val "$PROCFS/irq/${bad_irqs[i]}/smp_affinity_list" "${bad_affs[i]}" "$irq_list" "irq ${bad_irqs[i]} (${bad_names[i]})"
    done
}

# --- data disk ---------------------------------------------------------------
# resolve_data_disks sets DATA_DISKS (array of sysfs dirs of whole disks) and
# DATA_INFO (human description). Reads only.
DATA_DISKS=() DATA_INFO="" DATA_RESOLVED=0
_collect_disk() {
    local d=$1 s
    d=$(readlink -f "$d") || return 0
    [[ -f $d/partition ]] && d=${d%/*}
    shopt -s nullglob
    local slaves=("$d"/slaves/*)
    shopt -u nullglob
    if (( ${#slaves[@]} > 0 )); then
        for s in "${slaves[@]}"; do _collect_disk "$s"; done
        return 0
    fi
    [[ -e $d/queue/scheduler ]] || return 0
    in_words "$d" "${DATA_DISKS[*]-}" || DATA_DISKS+=("$d")
}
resolve_data_disks() {
    (( DATA_RESOLVED )) && return 0
    DATA_RESOLVED=1
    local dir=$DATA_DIR majmin="" src sysdev note=""
    if [[ ! -e $dir ]]; then
        while [[ ! -e $dir ]]; do dir=$(dirname -- "$dir"); done
        dir=$(cd -- "$dir" && pwd)
        note=" (does not exist yet; using $dir)"
    fi
    majmin=$(findmnt -n -o MAJ:MIN -T "$dir" 2>/dev/null | head -n1 | tr -d ' ') || majmin=""
    sysdev="$SYSFS/dev/block/$majmin"
    if [[ -z $majmin || ! -e $sysdev ]]; then
        src=$(df -P -- "$dir" 2>/dev/null | awk 'NR==2 {print $1}') || src=""
        if [[ -b $src ]]; then
            majmin=$(printf '%d:%d' "0x$(stat -L -c %t -- "$src")" "0x$(stat -L -c %T -- "$src")")
            sysdev="$SYSFS/dev/block/$majmin"
        fi
    fi
    if [[ -n $majmin && -e $sysdev ]]; then _collect_disk "$sysdev"; fi
    local names="" d
    for d in "${DATA_DISKS[@]}"; do names+="${names:+,}${d##*/}($(disk_kind "$d"))"; done
    if (( ${#DATA_DISKS[@]} == 0 )); then
        DATA_INFO="data dir $DATA_DIR$note is not on a local block device (overlay/tmpfs/network fs?)"
    else
        DATA_INFO="data dir $DATA_DIR$note is on $names"
    fi
}
disk_kind() {
    local d=$1 name=${1##*/} rot
    rot=$(cat "$d/queue/rotational" 2>/dev/null) || rot=0
    case $name in
        nvme*) printf nvme ;;
        vd*) printf virtio ;;
        xvd*) printf xen ;;
        *) if [[ $rot == 1 ]]; then printf rotational; else printf ssd; fi ;;
    esac
}

eval_blksched() {
    local spec=$2 d cur avail tgt parts=() bad=0 want w
    resolve_data_disks
    if (( ${#DATA_DISKS[@]} == 0 )); then set_na "$DATA_INFO"; return; fi
    for d in "${DATA_DISKS[@]}"; do
        cur=$(read_norm "$d/queue/scheduler") || cur="?"
        parts+=("${d##*/}=$cur")
        spec_ok "$spec" "$cur" && continue
        bad=$((bad + 1))
        avail=$(sed 's/[][]//g' "$d/queue/scheduler" 2>/dev/null) || avail=""
        case $(disk_kind "$d") in
            rotational|ssd) want="mq-deadline none" ;;
            *) want="none mq-deadline" ;;
        esac
        tgt=""
        for w in $want; do in_words "$w" "$avail" && { tgt=$w; break; }; done
        if [[ -z $tgt ]]; then add_note "${d##*/}: neither none nor mq-deadline is available ($avail)"; continue; fi
        add_op val "$d/queue/scheduler" "$cur" "$tgt" "${d##*/}"
    done
    S_CUR="${parts[*]}"
    if (( bad == 0 )); then S_STATUS=ok; else S_STATUS=differs; fi
}

eval_blkra() {
    local spec=$2 d cur parts=() bad=0
    resolve_data_disks
    if (( ${#DATA_DISKS[@]} == 0 )); then set_na "$DATA_INFO"; return; fi
    for d in "${DATA_DISKS[@]}"; do
        cur=$(read_norm "$d/queue/read_ahead_kb") || cur="?"
        parts+=("${d##*/}=$cur")
        spec_ok "$spec" "$cur" && continue
        bad=$((bad + 1))
        add_op val "$d/queue/read_ahead_kb" "$cur" "$(spec_target "$spec" "$cur")" "${d##*/}"
    done
    S_CUR="${parts[*]}"
    if (( bad == 0 )); then S_STATUS=ok; else S_STATUS=differs; fi
}

# --- resource limits -----------------------------------------------------------
file_content() { # path -> current (or planned) content, no trailing newline
    if [[ -v FILE_OVERLAY[$1] ]]; then printf '%s' "${FILE_OVERLAY[$1]}"; return 0; fi
    [[ -f $1 ]] && cat -- "$1" 2>/dev/null
    return 0
}

# Content of the limits file with USER soft/hard ITEM set to VALUE.
limits_with() { # item soft-value hard-value
    local item=$1 soft=$2 hard=$3 line f1 f3 res="" u=$LIMITS_USER old
    old=$(file_content "$LIMITS_FILE")
    if [[ -z $old ]]; then
        res="# Written by ringlog tuning/apply.sh (see tuning/README.md)."$'\n'
        res+="# Applies to new PAM login sessions; systemd services need LimitNOFILE=/LimitMEMLOCK=."
    else
        while IFS= read -r line; do
            read -r f1 _ f3 _ <<<"$line" || true
            [[ $f1 == "$u" && $f3 == "$item" ]] && continue
            res+="${res:+$'\n'}$line"
        done <<<"$old"
    fi
    res+=$'\n'"$u soft $item $soft"$'\n'"$u hard $item $hard"
    printf '%s' "$res"
}

eval_rlimit() {
    local item=$1 spec=$2 flag soft hard tgt new old
    case $item in memlock) flag=-l ;; nofile) flag=-n ;; *) set_na "unknown limit $item"; return ;; esac
    soft=$(ulimit -S "$flag") hard=$(ulimit -H "$flag")
    S_CUR=$soft
    local unit=""; [[ $item == memlock ]] && unit=" KiB"
    add_note "this shell: soft $soft$unit, hard $hard$unit"
    add_note "the broker gets its service manager's limit (systemd: Limit${item^^}=)"
    if spec_ok "$spec" "$soft"; then S_STATUS=ok; return; fi
    S_STATUS=differs
    tgt=$(spec_target "$spec" "$soft")
    # Never lower a hard limit that is already higher than the target.
    local htgt=$tgt
    num_ge "$hard" "$tgt" && htgt=$hard
    old=$(file_content "$LIMITS_FILE")
    new=$(limits_with "$item" "$tgt" "$htgt")
    if [[ $new == "$old" ]]; then
        add_note "already set in $LIMITS_FILE; takes effect at the next login"
        return
    fi
    add_op file "$LIMITS_FILE" "$old" "$new" "$LIMITS_FILE ($LIMITS_USER $item $tgt)"
}

# ---------------------------------------------------------------------------
# Selection (--only) and environment description
# ---------------------------------------------------------------------------
# selected INDEX -> true if the setting is in --only (or --only is empty).
selected() {
    [[ -z $ONLY ]] && return 0
    local pat pats
    IFS=',' read -r -a pats <<<"$ONLY"
    for pat in "${pats[@]}"; do
        # shellcheck disable=SC2053  # pattern match is intended ('net.*')
        [[ ${SET_IDS[$1]} == $pat ]] && return 0
    done
    return 1
}
validate_only() {
    [[ -z $ONLY ]] && return 0
    local pat pats i hit
    IFS=',' read -r -a pats <<<"$ONLY"
    for pat in "${pats[@]}"; do
        hit=0
        for i in "${!SET_IDS[@]}"; do
            # shellcheck disable=SC2053
            [[ ${SET_IDS[i]} == $pat ]] && hit=1
        done
        (( hit )) || die_usage "--only: no setting matches '$pat' (ids: ${SET_IDS[*]})"
    done
}

detect_virt() {
    local v=""
    if command -v systemd-detect-virt >/dev/null 2>&1; then
        v=$(systemd-detect-virt 2>/dev/null) || v=""
    fi
    if [[ -z $v || $v == none ]]; then
        if [[ -e /.dockerenv || -e /run/.containerenv ]]; then v=container
        elif grep -qw hypervisor /proc/cpuinfo 2>/dev/null; then v=vm
        else v=none
        fi
    fi
    printf '%s' "$v"
}

common_usage() {
    cat <<'EOF'
  --broker-cpus LIST  CPUs running broker shards, e.g. 1-7 (default: all but
                      CPU 0 when there are more than 2 CPUs, else IRQ affinity
                      is only reported)
  --data-dir DIR      broker data directory (default ./data); its disk is
                      checked for I/O scheduler and read-ahead
  --only ID[,ID]      only these settings (ids as printed, globs like 'net.*')
EOF
}

# Parse one common option. Sets SHIFT_BY (0 = not a common option).
parse_common_opt() {
    SHIFT_BY=0
    case $1 in
        --broker-cpus|--data-dir|--only)
            [[ $# -ge 2 ]] || die_usage "$1 needs a value"
            case $1 in
                --broker-cpus) valid_cpulist "$2" || die_usage "--broker-cpus: bad CPU list '$2' (e.g. 1-7,9)"
                               BROKER_CPUS=$2 ;;
                --data-dir) [[ -n $2 ]] || die_usage "--data-dir: empty"; DATA_DIR=$2 ;;
                --only) [[ -n $2 ]] || die_usage "--only: empty"; ONLY=$2 ;;
            esac
            SHIFT_BY=2 ;;
    esac
}
