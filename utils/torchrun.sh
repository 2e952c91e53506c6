#!/usr/bin/env bash
# Usage: [NPROC=N] utils/torchrun.sh python -m <module> [args...]
#   e.g. NPROC=2 utils/torchrun.sh python -m ser.bin.train_chain --net mini ...   (steps/train_chain.sh)
# Starts a training program that runs under torch.distributed (DDP) in the way its environment asks:
#   by default                  python -m <module>: one process
#   NPROC=N (N > 1)             torchrun --standalone --nproc-per-node N: N ranks on this machine
#                               (gloo on CPU, nccl with one GPU per rank)
#   in an srun step of T > 1 tasks (sbatch --nodes T --ntasks-per-node 1 ... and `srun <this script or a
#   steps/ script that calls it>`): one torchrun agent per task, NPROC (default 1) ranks each, T*NPROC in
#   all, meeting at a c10d rendezvous on the job's first node:
#     torchrun --nnodes $SLURM_STEP_NUM_TASKS --nproc-per-node $NPROC --rdzv-backend c10d
#              --rdzv-endpoint $MASTER_ADDR:$MASTER_PORT --rdzv-id slurm-$SLURM_JOB_ID
#     MASTER_ADDR  default: the first host of $SLURM_JOB_NODELIST (scontrol show hostnames)
#     MASTER_PORT  default: 29500 + $SLURM_JOB_ID % 1000 (two jobs on one node do not collide)
#   torchrun numbers the agents itself (no --node-rank); SLURM_PROCID, SLURM_NODEID and SLURM_NNODES
#   are only logged.  Every task must see the same files (a shared file system), as Kaldi's jobs must.
set -euo pipefail
[ $# -ge 3 ] && [ "$1" = python ] && [ "$2" = -m ] || { sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 1; }
. "$(dirname "$0")/../path.sh"
module=$3
shift 3
nproc=${NPROC:-1}
if [ "${SLURM_STEP_NUM_TASKS:-1}" -gt 1 ]; then
  : "${MASTER_ADDR:=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)}"
  : "${MASTER_PORT:=$((29500 + SLURM_JOB_ID % 1000))}"
  echo "$0: Slurm task $SLURM_PROCID of $SLURM_STEP_NUM_TASKS on $(hostname) (node $SLURM_NODEID of" \
       "$SLURM_NNODES), $nproc rank(s); rendezvous at $MASTER_ADDR:$MASTER_PORT" >&2
  exec torchrun --nnodes "$SLURM_STEP_NUM_TASKS" --nproc-per-node "$nproc" --rdzv-backend c10d \
    --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv-id "slurm-$SLURM_JOB_ID" -m "$module" "$@"
fi
if [ "$nproc" -gt 1 ]; then
  exec torchrun --standalone --nproc-per-node "$nproc" -m "$module" "$@"
fi
exec python -m "$module" "$@"
