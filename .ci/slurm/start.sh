#!/usr/bin/env bash
# Start a throwaway single-node SLURM cluster on this machine.
#
# CI and the SLURM integration test use it to run the workflow through
# snakemake-executor-plugin-slurm against real slurmctld/slurmd daemons.
# It targets Debian 12 (SLURM 22.05) run as root without systemd: the daemons
# are started directly and stopped again by .ci/slurm/stop.sh.
#
# Usage:  .ci/slurm/start.sh [STATE_DIR]
#   STATE_DIR  scratch directory for slurm.conf, daemon state, logs and PIDs;
#              default $CLIPMECH_SLURM_DIR, else /tmp/clipmech-slurm.
# Environment (all optional):
#   CLIPMECH_SLURM_TIMEOUT        seconds to wait for the node to be idle [60]
#   CLIPMECH_SLURM_MEM_MARGIN_MB  memory (MB) of MemTotal not given to SLURM [1024]
#   CLIPMECH_SLURM_GPUS           placeholder "gpu" GRES the node advertises [1],
#                                 so that jobs asking for `--gpus=1` (rule
#                                 resource gpu=1) are accepted and scheduled.
#                                 No device is bound: a job still sees whatever
#                                 GPUs the machine has (none in CI). slurmd.log
#                                 says the placeholder file "is not a valid
#                                 character or block device"; that is expected.
#
# The generated STATE_DIR/slurm.conf is linked to /etc/slurm/slurm.conf, where
# SLURM's client commands look for it by default: sbatch, squeue and
# Snakemake need no environment. (SLURM_CONF alone is not enough: the
# plugin's job step runs srun inside the job with SLURM_* variables removed.)
# start.sh refuses (exit 77) to replace an /etc/slurm/slurm.conf it did not
# write; stop.sh removes the link.
#
# Exit status: 0 cluster up (or already up); 1 something failed (the message
# and the relevant daemon log tail are on stderr); 77 SLURM cannot be started
# on this machine at all; the last line on stdout is then "SKIP: <reason>".
set -euo pipefail

# Absolute, as it is written into slurm.conf and the /etc/slurm link.
STATE_DIR="$(realpath -m "${1:-${CLIPMECH_SLURM_DIR:-/tmp/clipmech-slurm}}")"
TIMEOUT="${CLIPMECH_SLURM_TIMEOUT:-60}"
MEM_MARGIN_MB="${CLIPMECH_SLURM_MEM_MARGIN_MB:-1024}"
GPUS="${CLIPMECH_SLURM_GPUS:-1}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

PACKAGES=(slurmctld slurmd slurm-client munge)
CONF="$STATE_DIR/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf       # where SLURM's commands look
MARKER="# Written by .ci/slurm/start.sh"  # first line of every conf we write
LOG_DIR="$STATE_DIR/log"
MUNGE_LOG=/var/log/munge/munged.log     # munged's default log file
MUNGE_PIDFILE=/run/munge/munged.pid     # munged's default PID file

say() { echo "clipmech-slurm: $*"; }
skip() { echo "SKIP: $*"; exit 77; }

# fail MESSAGE [LOGFILE...]: report, show the tail of each log, exit 1.
fail() {
    local msg="$1" log
    shift
    echo "clipmech-slurm: ERROR: $msg" >&2
    for log in "$@"; do
        if [[ -r "$log" ]]; then
            echo "----- last lines of $log -----" >&2
            tail -n 30 "$log" >&2
        fi
    done
    exit 1
}

# alive PIDFILE NAME: the PID recorded in PIDFILE is a running NAME process.
# (Checking the command name guards against a recycled PID.)
alive() {
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(<"$1")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]]
}

# node_state: the node's state as sinfo reports it (empty if unreachable).
node_state() {
    SLURM_CONF="$CONF" sinfo -h -o %T 2>/dev/null | head -n 1
}

# wait_idle: poll until the node is idle, at most $TIMEOUT seconds.
wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) state=""
    while ((SECONDS < deadline)); do
        state="$(node_state)"
        [[ "$state" == idle ]] && return 0
        sleep 0.5
    done
    echo "clipmech-slurm: node state after ${TIMEOUT}s: '${state:-unreachable}'" >&2
    SLURM_CONF="$CONF" scontrol show node >&2 || echo "(scontrol show node failed)" >&2
    return 1
}

finish() {
    say "node $(hostname -s) is idle; config $SYSTEM_CONF -> $CONF"
    exit 0
}

# ours_or_absent: SYSTEM_CONF is missing, or a link we made (possibly to a
# state directory since deleted), never a real cluster's configuration.
ours_or_absent() {
    [[ -e "$SYSTEM_CONF" || -L "$SYSTEM_CONF" ]] || return 0
    [[ -L "$SYSTEM_CONF" ]] || return 1
    [[ -e "$SYSTEM_CONF" ]] || return 0
    [[ "$(head -n 1 "$SYSTEM_CONF")" == "$MARKER"* ]]
}

# --- can SLURM run here at all? -------------------------------------------
[[ "$(uname -s)" == Linux ]] || skip "SLURM test cluster needs Linux (this is $(uname -s))"
((EUID == 0)) || skip "SLURM test cluster needs root (to install packages and run munged/slurmd)"
ours_or_absent || skip "$SYSTEM_CONF belongs to another SLURM installation; not replacing it"

# --- already running? -------------------------------------------------------
if alive "$STATE_DIR/slurmctld.pid" slurmctld && alive "$STATE_DIR/slurmd.pid" slurmd; then
    say "already running (PIDs $(<"$STATE_DIR/slurmctld.pid"), $(<"$STATE_DIR/slurmd.pid"))"
    wait_idle || fail "daemons are running but the node is not idle" \
        "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"
    finish
fi
# Left-overs of an earlier, partly dead cluster: end what is left of it.
if compgen -G "$STATE_DIR/*.pid" >/dev/null; then
    say "stopping the rest of an earlier cluster in $STATE_DIR"
    "$HERE/stop.sh" "$STATE_DIR"
fi

# --- packages ----------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
mkdir -p "$LOG_DIR"
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || skip "SLURM is not installed and there is no apt-get to install ${missing[*]}"
    say "installing ${missing[*]} (log: $LOG_DIR/apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$LOG_DIR/apt.log" 2>&1 \
        || fail "apt-get update failed" "$LOG_DIR/apt.log"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1 \
        || fail "apt-get install ${missing[*]} failed" "$LOG_DIR/apt.log"
fi

# --- slurm.conf for this machine ---------------------------------------------
host="$(hostname -s)"
# nproc honours OMP_NUM_THREADS / OMP_THREAD_LIMIT (`make test` sets OMP_NUM_THREADS=1), which
# would give the node 1 CPU and leave every 2-thread job pending forever (PartitionConfig).
cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
mem_total_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
real_mem_mb=$((mem_total_mb - MEM_MARGIN_MB))
((real_mem_mb >= 1024)) || fail "only ${mem_total_mb} MB of memory; need margin ${MEM_MARGIN_MB} MB + 1024 MB"

# Fresh daemon state every start: this cluster is disposable.
rm -rf "$STATE_DIR/ctld" "$STATE_DIR/spool"
mkdir -p "$STATE_DIR/ctld" "$STATE_DIR/spool"

gres_node="" gres_types=""
if ((GPUS > 0)); then
    gres_types="GresTypes=gpu"
    gres_node="Gres=gpu:$GPUS"
    # SLURM drops a gres/gpu without a device File; give it placeholder
    # files (nothing opens them: without cgroups no device is bound).
    mkdir -p "$STATE_DIR/fake-gpu"
    for ((i = 0; i < GPUS; i++)); do : >"$STATE_DIR/fake-gpu/gpu$i"; done
    echo "NodeName=$host Name=gpu File=$STATE_DIR/fake-gpu/gpu[0-$((GPUS - 1))]" >"$STATE_DIR/gres.conf"
else
    rm -f "$STATE_DIR/gres.conf"
fi

cat >"$CONF" <<EOF
$MARKER for a disposable single-node test cluster.
ClusterName=clipmech-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups (no systemd here): track processes by PID, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct does not work; profiles/slurm-ci makes the plugin use squeue.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Cores and memory are consumable, so small jobs share the node; without a
# memory default each job would take all of the node's memory.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
# Finished jobs stay visible to squeue for an hour: longer than the whole
# tiny run may take (test_slurm.py allows 45 min), so the test sees every job,
# and the plugin's squeue status checks need MinJobAge >= 3 x
# slurm-init-seconds-before-status-checks.
MinJobAge=3600
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
$gres_types
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem_mb $gres_node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p "$(dirname "$SYSTEM_CONF")"
ln -sfn "$CONF" "$SYSTEM_CONF"
say "wrote $CONF ($cpus CPUs, $real_mem_mb MB, $GPUS placeholder GPUs), linked from $SYSTEM_CONF"

# --- munge -------------------------------------------------------------------
# munge_works: a credential can be created and decoded via /run/munge.
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

rm -f "$STATE_DIR/munged.pid"
if munge_works; then
    # Somebody else's munged (e.g. the system's): use it, but never stop it.
    say "using the munged that is already running"
else
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    # munged forks into the background and writes its PID file itself.
    rm -f "$MUNGE_PIDFILE"
    runuser -u munge -- munged </dev/null >>"$LOG_DIR/munged.out" 2>&1 \
        || fail "munged did not start" "$LOG_DIR/munged.out" "$MUNGE_LOG"
    deadline=$((SECONDS + 10))
    until munge_works && [[ -s "$MUNGE_PIDFILE" ]]; do
        ((SECONDS < deadline)) || fail "munged does not answer" "$LOG_DIR/munged.out" "$MUNGE_LOG"
        sleep 0.2
    done
    cp "$MUNGE_PIDFILE" "$STATE_DIR/munged.pid"
    alive "$STATE_DIR/munged.pid" munged || fail "munged PID file does not name a munged" "$MUNGE_LOG"
fi

# --- slurmctld, then slurmd ------------------------------------------------------
# Both fork into the background and write the PID files named in slurm.conf.
# start_daemon NAME ARGS...: start it and wait for its PID file.
start_daemon() {
    local name="$1" deadline
    shift
    "$@" </dev/null >>"$LOG_DIR/$name.out" 2>&1 \
        || fail "$name did not start" "$LOG_DIR/$name.out" "$LOG_DIR/$name.log"
    deadline=$((SECONDS + 15))
    until alive "$STATE_DIR/$name.pid" "$name"; do
        ((SECONDS < deadline)) || fail "$name is not running" "$LOG_DIR/$name.out" "$LOG_DIR/$name.log"
        sleep 0.2
    done
}
start_daemon slurmctld slurmctld -f "$CONF"
start_daemon slurmd slurmd -f "$CONF"
say "started slurmctld (PID $(<"$STATE_DIR/slurmctld.pid")), slurmd (PID $(<"$STATE_DIR/slurmd.pid"))"

wait_idle || fail "node did not become idle within ${TIMEOUT}s" \
    "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"
finish
