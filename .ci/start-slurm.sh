#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (needs root, Debian's slurm-wlm and munge).
# Idempotent: returns at once when sinfo already answers.
set -euo pipefail

if sinfo -h >/dev/null 2>&1 && [ "$(sinfo -h -o %T | head -1)" = "idle" ]; then
    echo "slurm: already running"; exit 0
fi

host=$(hostname -s)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge /etc/munge

# munge: a key and the daemon
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged --force

# slurm.conf from what slurmd -C sees on this host
node_line=$(slurmd -C | head -1)
cpus=$(echo "$node_line" | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')
mem=$(echo "$node_line" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=${host}
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
InactiveLimit=0
KillWait=10
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
DefMemPerCPU=$((mem * 9 / 10 / cpus))
NodeName=${host} CPUs=${cpus} RealMemory=$((mem * 9 / 10)) State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 1 30); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
    if [ "$state" = "idle" ]; then echo "slurm: node ${host} idle"; exit 0; fi
    sleep 1
done
echo "slurm: node did not come up idle (state: ${state:-none})" >&2
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
