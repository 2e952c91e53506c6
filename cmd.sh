# Job backends (as Kaldi's cmd.sh).  Steps run  $train_cmd JOB=1:N <log> <command>  (N jobs, a log each)
# or  $train_cmd <log> <command>  (one job); a failure names the log and prints its last lines.
#   local: a process pool on this machine, at most --max-jobs-run at once; resource options are ignored
#          (as run.pl ignores them)
#   slurm: one job array per call (sbatch --array), SER_BACKEND=slurm ./run.sh
# Resource options of a call, as in Kaldi: --mem 2G  --num-threads N  --gpu N  --time T  --max-jobs-run N.
# On slurm, conf/slurm.conf (Kaldi's format) maps them onto sbatch options: --mem -> --mem-per-cpu,
# --num-threads -> --cpus-per-task, --gpu -> --gres=gpu:N, --time -> --time; --max-jobs-run N -> --array=1-M%N.
# Edit conf/slurm.conf for your cluster (partitions, accounts); options it does not describe are refused.
# train_cmd: data prep, features, i-vectors, graphs; decode_cmd: phone decoding;
# cuda_cmd: the GPU stages (LF-MMI training and alignment, emotion training), one job at a time with
#   SER_GPUS GPUs each (default 1; SER_GPUS=0 on a cluster without GPUs, e.g. tools/start_slurm.sh's).
#   A job of NPROC=N steps/train_chain.sh runs N DDP ranks: give it SER_GPUS=N (README "Scaling out").
backend=${SER_BACKEND:-local}
export train_cmd="python -m ser.jobs --backend $backend --mem 2G"
export decode_cmd="python -m ser.jobs --backend $backend --mem 4G"
export cuda_cmd="python -m ser.jobs --backend $backend --max-jobs-run 1 --gpu ${SER_GPUS:-1}"
