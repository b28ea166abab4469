#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (needs root, Debian's slurm-wlm and munge).
# With slurmdbd and mariadb-server installed it also starts job accounting (sacct shows finished
# jobs and their dependencies), which the prepare -> array -> render chain test reads.
# Idempotent: returns at once when sinfo already answers (and sacct does, where it can).
set -euo pipefail

accounting=no
if command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null; then accounting=yes; fi

if sinfo -h >/dev/null 2>&1 && [ "$(sinfo -h -o %T | head -1)" = "idle" ]; then
    if [ "$accounting" = no ] || sacct -n -X -S now-1minute >/dev/null 2>&1; then
        echo "slurm: already running"; exit 0
    fi
    echo "slurm: running without accounting; restarting slurmctld with slurmdbd"
    pkill -x slurmctld || true
    sleep 2
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

# accounting: mariadb, a database user for slurmdbd, slurmdbd itself
storage=accounting_storage/none
if [ "$accounting" = yes ]; then
    if ! pgrep -x mariadbd >/dev/null; then
        mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
        [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
        setsid runuser -u mysql -- /usr/sbin/mariadbd --socket=/run/mysqld/mysqld.sock \
            --pid-file=/run/mysqld/mysqld.pid >/var/log/mysql-slurm.log 2>&1 &
        for _ in $(seq 1 30); do mysql -uroot -e "select 1" >/dev/null 2>&1 && break; sleep 1; done
    fi
    mysql -uroot -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdb';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
    cat > /etc/slurm/slurmdbd.conf <<DBD
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmdb
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
DBD
    chmod 600 /etc/slurm/slurmdbd.conf
    pgrep -x slurmdbd >/dev/null || slurmdbd
    for _ in $(seq 1 30); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
    sacctmgr -i add cluster local >/dev/null 2>&1 || true
    storage=accounting_storage/slurmdbd
fi

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
AccountingStorageType=${storage}
JobAcctGatherType=jobacct_gather/none
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
    if [ "$state" = "idle" ]; then echo "slurm: node ${host} idle (accounting: ${accounting})"; exit 0; fi
    sleep 1
done
echo "slurm: node did not come up idle (state: ${state:-none})" >&2
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
