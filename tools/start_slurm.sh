#!/usr/bin/env bash
# Usage: tools/start_slurm.sh
# A one-node Slurm cluster on this machine, for the slurm job backend (SER_BACKEND=slurm), its tests
# (pytest -m slurm) and multi-process training under Slurm (README "Scaling out").  Needs root.
#  - installs Debian's slurm-wlm and munge with apt-get when they are missing;
#  - writes /etc/slurm/slurm.conf for this machine: one node with nproc CPUs and free's memory, one
#    partition "main", controller and node on 127.0.0.1, no cgroups (proctrack/linuxproc, task/none), so it
#    runs in a container; CPUs and memory are consumable (--cpus-per-task / --mem-per-cpu are honoured);
#  - starts munged, slurmctld and slurmd and waits until sinfo shows the node idle.
# Idempotent: daemons that answer are left alone; a changed configuration restarts the Slurm daemons.
# A slurm.conf this script did not write is used as it is.  tools/stop_slurm.sh stops the cluster.
# Logs: /var/log/slurm/{slurmctld,slurmd}.log.  Nothing of this is needed for the default ./run.sh.
set -euo pipefail
me=$(basename "$0")
die() { echo "$me: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (installs packages, writes /etc/slurm, starts daemons)"

conf=/etc/slurm/slurm.conf
marker="# written by tools/start_slurm.sh"
node=$(hostname -s)
t0=$SECONDS

# 1. packages
if ! command -v slurmctld > /dev/null || ! command -v slurmd > /dev/null || ! command -v sbatch > /dev/null \
   || ! command -v munged > /dev/null; then
  echo "$me: installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -q --no-install-recommends slurm-wlm munge \
      || { apt-get update -q && apt-get install -y -q --no-install-recommends slurm-wlm munge; }; } \
    > /tmp/start_slurm.apt.log 2>&1 || { tail -n 5 /tmp/start_slurm.apt.log >&2; die "apt-get failed (log: /tmp/start_slurm.apt.log)"; }
  echo "$me: installed in $((SECONDS - t0)) s"
fi

# 2. munge: key (the package normally makes one) and daemon
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2> /dev/null | unmunge > /dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- munged || die "munged did not start (see /var/log/munge/munged.log)"
  munge -n | unmunge > /dev/null || die "munge does not work after starting munged"
fi

# 3. slurm.conf for this machine
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc honours OMP_NUM_THREADS: not the CPUs
mem=$(free -m | awk '/^Mem:/ {print $2}')
new=$(cat <<EOF
$marker: a one-node cluster on this machine, loopback only
ClusterName=ser
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no cgroups: works in a container (nothing enforces the limits; they are only scheduled)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((mem / cpus))
# the node's hardware is what this file says (a container may report other sockets/cores)
SlurmdParameters=config_overrides
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=false
if [ -f $conf ] && ! head -n 1 $conf | grep -q "^$marker"; then
  echo "$me: $conf was not written by this script; using it as it is"
elif [ ! -f $conf ] || [ "$(cat $conf)" != "$new" ]; then
  mkdir -p /etc/slurm
  printf '%s\n' "$new" > $conf.tmp && mv $conf.tmp $conf
  changed=true
fi
mkdir -p /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm

# 4. daemons (pid files name them; a changed configuration restarts them)
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2> /dev/null; }
if $changed && { alive /run/slurmctld.pid || alive /run/slurmd.pid; }; then
  echo "$me: configuration changed; restarting the Slurm daemons"
  "$(dirname "$0")/stop_slurm.sh" --keep-munge
fi
alive /run/slurmctld.pid || slurmctld || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
alive /run/slurmd.pid || slurmd -N "$node" || die "slurmd did not start (see /var/log/slurm/slurmd.log)"

# 5. wait for the node; a node left down or drained by an earlier unclean stop is resumed once
resumed=false
for _ in $(seq 60); do
  state=$(sinfo -h -N -n "$node" -o %T 2> /dev/null || true)
  case $state in
    idle|mixed|allocated|completing) echo "$me: node $node is $state ($cpus CPUs, $mem MB; partition main) after $((SECONDS - t0)) s"; exit 0 ;;
    down*|drain*) $resumed || { scontrol update nodename="$node" state=resume 2> /dev/null || true; resumed=true; } ;;
  esac
  sleep 1
done
sinfo -N -l >&2 || true
tail -n 5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
die "node $node did not become idle within 60 s (state: ${state:-no answer})"
