# Job backends (as Kaldi's cmd.sh).  Stages run  $train_cmd JOB=1:N <log> <command>.
#   local: a process pool on this machine, at most --max-jobs-run at once
#   slurm: one sbatch job array per call, e.g. --slurm-opts "-p cpu --mem 4G"
backend=${SER_BACKEND:-local}
export train_cmd="python -m ser.jobs --backend $backend"
export decode_cmd="python -m ser.jobs --backend $backend"
export cuda_cmd="python -m ser.jobs --backend $backend --max-jobs-run 1"
