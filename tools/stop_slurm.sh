#!/usr/bin/env bash
# Usage: tools/stop_slurm.sh [--keep-munge]
# Stops the one-node cluster of tools/start_slurm.sh: cancels its jobs, then stops slurmd, slurmctld and
# (unless --keep-munge) munged, each by the pid in its pid file.  A no-op when nothing runs.
set -euo pipefail
keep_munge=false
[ "${1:-}" = --keep-munge ] && keep_munge=true
me=$(basename "$0")

if head -n 1 /etc/slurm/slurm.conf 2> /dev/null | grep -q "^# written by tools/start_slurm.sh" \
   && [ -n "$(squeue -h -o %i 2> /dev/null)" ]; then
  # our own cluster: nothing else runs on it
  scancel --partition=main 2> /dev/null || true
  for _ in $(seq 15); do [ -z "$(squeue -h -o %i 2> /dev/null)" ] && break; sleep 1; done
fi

stop() {  # <name> <pid file>
  [ -f "$2" ] || return 0
  local pid; pid=$(cat "$2")
  if kill -0 "$pid" 2> /dev/null; then
    kill "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2> /dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2> /dev/null && { echo "$me: $1 ($pid) did not stop" >&2; return 1; }
    echo "$me: stopped $1 ($pid)"
  fi
  rm -f "$2"
}
stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
$keep_munge || stop munged /run/munge/munged.pid
