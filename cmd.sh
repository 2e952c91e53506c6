# Job backends (as Kaldi's cmd.sh).  Steps run  $train_cmd JOB=1:N <log> <command>  (N jobs, a log each)
# or  $train_cmd <log> <command>  (one job); a failure names the log and prints its last lines.
#   local: a process pool on this machine, at most --max-jobs-run at once
#   slurm: one sbatch job array per call, e.g. --slurm-opts=--mem=4G
# train_cmd: data prep, features, i-vectors, graphs; cuda_cmd: LF-MMI training and alignment (on slurm add
# e.g. --slurm-opts=--gres=gpu:1); decode_cmd: phone decoding.
backend=${SER_BACKEND:-local}
export train_cmd="python -m ser.jobs --backend $backend"
export decode_cmd="python -m ser.jobs --backend $backend"
export cuda_cmd="python -m ser.jobs --backend $backend --max-jobs-run 1"
