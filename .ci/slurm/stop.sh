#!/usr/bin/env bash
# Stop the single-node SLURM cluster that .ci/slurm/start.sh started.
#
# Usage:  .ci/slurm/stop.sh [STATE_DIR]
#   STATE_DIR  the directory given to start.sh; default $CLIPMECH_SLURM_DIR,
#              else /tmp/clipmech-slurm.
#
# Ends exactly the daemons whose PIDs start.sh recorded in STATE_DIR (slurmd,
# slurmctld, and munged only if start.sh started it), checking each PID still
# belongs to a process of the expected name, and waits for them to exit.
# First it cancels the cluster's unfinished jobs and waits for them to end:
# their slurmstepd processes would outlive slurmd. Afterwards STATE_DIR can be
# removed (rm -rf). Stopping a cluster that is not running succeeds.
#
# Also removes the /etc/slurm/slurm.conf link to STATE_DIR/slurm.conf.
#
# Exit status: 0 all recorded daemons are gone; 1 one survived SIGKILL.
set -euo pipefail

# Absolute, as it is written into slurm.conf and the /etc/slurm link.
STATE_DIR="$(realpath -m "${1:-${CLIPMECH_SLURM_DIR:-/tmp/clipmech-slurm}}")"
GRACE_S=10   # seconds between SIGTERM and SIGKILL

say() { echo "clipmech-slurm: $*"; }

# recorded_pid PIDFILE NAME: print the PID in PIDFILE if it is a running NAME.
recorded_pid() {
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(<"$1")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] || return 1
    echo "$pid"
}

# cancel_jobs: cancel all unfinished jobs, wait up to GRACE_S for them to end.
cancel_jobs() {
    local ids deadline
    local -x SLURM_CONF="$STATE_DIR/slurm.conf"
    recorded_pid "$STATE_DIR/slurmctld.pid" slurmctld >/dev/null || return 0
    if ! ids="$(squeue -h -o %A)"; then
        say "squeue failed; cannot cancel jobs, stopping the daemons anyway"
        return 0
    fi
    [[ -n "$ids" ]] || return 0
    say "cancelling jobs ${ids//$'\n'/ }"
    # shellcheck disable=SC2086  # one argument per job ID
    scancel $ids
    deadline=$((SECONDS + GRACE_S))
    while [[ -n "$(squeue -h -o %A)" ]] && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if [[ -n "$(squeue -h -o %A)" ]]; then
        say "jobs $(squeue -h -o %A | tr '\n' ' ')did not end in ${GRACE_S}s"
    fi
}

# running PID: the process exists and is not a zombie waiting to be reaped.
running() {
    local stat
    stat="$(ps -o stat= -p "$1")" || return 1
    [[ "$stat" != Z* ]]
}

# stop_daemon NAME: SIGTERM the recorded NAME, SIGKILL it after GRACE_S.
stop_daemon() {
    local name="$1" pidfile="$STATE_DIR/$1.pid" pid deadline
    if ! pid="$(recorded_pid "$pidfile" "$name")"; then
        rm -f "$pidfile"
        return 0
    fi
    say "stopping $name (PID $pid)"
    kill -TERM "$pid"
    deadline=$((SECONDS + GRACE_S))
    while running "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if running "$pid"; then
        say "$name (PID $pid) ignored SIGTERM for ${GRACE_S}s; sending SIGKILL"
        kill -KILL "$pid"
        sleep 0.5
        if running "$pid"; then
            echo "clipmech-slurm: ERROR: $name (PID $pid) is still running" >&2
            exit 1
        fi
    fi
    rm -f "$pidfile"
}

if [[ ! -d "$STATE_DIR" ]]; then
    say "nothing to stop ($STATE_DIR does not exist)"
    exit 0
fi

# Jobs, then the compute node, the controller, and authentication.
cancel_jobs
stop_daemon slurmd
stop_daemon slurmctld
stop_daemon munged
# The link start.sh made; a link elsewhere or a real file is not ours.
if [[ -L /etc/slurm/slurm.conf && "$(readlink /etc/slurm/slurm.conf)" == "$STATE_DIR/slurm.conf" ]]; then
    rm /etc/slurm/slurm.conf
fi
say "stopped; $STATE_DIR can be removed"
