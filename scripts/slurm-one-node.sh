#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the sweep tests (`.ci/run` starts and stops it).
#   scripts/slurm-one-node.sh start   install slurm-wlm and munge from Debian if missing, start
#                                     munged, slurmctld and slurmd; prints the SLURM_CONF to use
#   scripts/slurm-one-node.sh stop    stop exactly the daemons `start` started
# Everything it writes lives in $UNDER8K_SLURM_DIR (default /tmp/under8k-slurm): its own
# slurm.conf (clients find it through SLURM_CONF), state, logs, pid files and munge key. Nothing
# under /etc is changed; /run/munge is created for munge's socket.
set -euo pipefail
dir=${UNDER8K_SLURM_DIR:-/tmp/under8k-slurm}
conf=$dir/slurm.conf

stop() {
    for pid in "$dir"/slurmd.pid "$dir"/slurmctld.pid "$dir"/munge/munged.pid; do
        [ -s "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
        rm -f "$pid"
    done
}

start() {
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
        echo "installing slurm-wlm and munge (apt-get)" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >&2
    fi
    stop
    mkdir -p "$dir"/state "$dir"/spool "$dir"/log "$dir"/munge
    chown munge:munge "$dir"/munge
    if [ ! -s "$dir/munge.key" ]; then
        dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$dir/munge.key"
    chmod 400 "$dir/munge.key"
    mkdir -p /run/munge
    chown munge:munge /run/munge
    chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged --key-file="$dir/munge.key" --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munge.seed" --force
    local host cpus
    host=$(hostname -s)
    cpus=$(nproc)
    cat >"$conf" <<CONF
ClusterName=under8k
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF=$conf
    slurmctld -f "$conf"
    slurmd -f "$conf"
    for _ in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "SLURM_CONF=$conf"
            return 0
        fi
        sleep 0.5
    done
    echo "slurm did not come up; logs in $dir/log" >&2
    tail -n 20 "$dir"/log/*.log >&2 || true
    return 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
