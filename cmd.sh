# Job backends (as Kaldi's cmd.sh).  Steps run  $train_cmd JOB=1:N <log> <command>  (N jobs, a log each)
# or  $train_cmd <log> <command>  (one job); a failure names the log and prints its last lines.
#   local: a process pool on this machine, at most --max-jobs-run at once; --num-threads sets the jobs'
#          thread counts, --gpu gives each running job its own GPUs; --mem is ignored (as run.pl ignores it)
#   slurm: one job array per call (sbatch --array), SER_BACKEND=slurm ./run.sh
# Resource options of a call, as in Kaldi: --mem 2G  --num-threads N  --gpu N  --time T  --max-jobs-run N.
# On slurm, conf/slurm.conf (Kaldi's format) maps them onto sbatch options: --mem -> --mem-per-cpu,
# --num-threads -> --cpus-per-task, --gpu -> --gres=gpu:N, --time -> --time; --max-jobs-run N -> --array=1-M%N.
# Edit conf/slurm.conf for your cluster (partitions, accounts); options it does not describe are refused.
# train_cmd: data prep, features, i-vectors, graphs; decode_cmd: phone decoding;
# cuda_cmd: the GPU stages (LF-MMI training and alignment, emotion training), one job at a time with
#   SER_GPUS GPUs each (default 1; SER_GPUS=0 on a cluster without GPUs, e.g. tools/start_slurm.sh's).
#   A job of NPROC=N steps/train_chain.sh runs N DDP ranks: give it SER_GPUS=N (README "Scaling out").
# Resources of a step (Kaldi passes them per call, e.g. $train_cmd --mem 4G --num-threads 8): the recipe config's
# jobs.<step> section (conf/*.yaml, measured peaks in conf/README.jobs.md) as options, after the command:
#   $train_cmd $(job_opts ubm) JOB=1:$nj <log> <command>      (a later option overrides cmd.sh's)
# A job's threads never exceed its --num-threads: the backends set OMP/MKL/OPENBLAS_NUM_THREADS to it and the
# programs get the same --num-threads.  --gpu N: on slurm --gres=gpu:N; locally each running job gets N GPUs of
# its own (CUDA_VISIBLE_DEVICES) and waits for a free set.  SER_GPUS, when set, replaces the GPU steps' count.
job_opts() {
  local m=jobs_$1_mem t=jobs_$1_num_threads g=jobs_$1_gpu
  [ -n "${!m:-}" ] || { echo "job_opts: no jobs.$1 in the recipe config" >&2; return 1; }
  local gpus=${!g}
  [ "$gpus" -gt 0 ] && [ -n "${SER_GPUS:-}" ] && gpus=$SER_GPUS
  echo "--mem ${!m} --num-threads ${!t} --gpu $gpus"
}
backend=${SER_BACKEND:-local}
export local_cmd="python -m ser.jobs --backend local"   # run.pl: drivers that submit jobs themselves
export train_cmd="python -m ser.jobs --backend $backend --mem 2G"
export decode_cmd="python -m ser.jobs --backend $backend --mem 4G"
export cuda_cmd="python -m ser.jobs --backend $backend --max-jobs-run 1 --gpu ${SER_GPUS:-1}"
