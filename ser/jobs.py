"""Kaldi-style parallel jobs: ``<cmd> JOB=1:N <log> <command...>``.

Mirrors egs/wsj/s5/utils/parallel/{run.pl, slurm.pl}: every occurrence of the
job variable in the log path and the command is replaced by the job index, each
job writes one log (command line, start time, output, exit status), and the
runner fails with the path of a failing log and its last lines.  ``cmd.sh`` picks the
backend; the stages only ever see the ``$train_cmd`` string, so a new backend never touches them.
A single step runs the same way with one log: ``$train_cmd exp/log/step.log <command...>``.

Console: a job still running after $SER_PROGRESS_INTERVAL seconds (default 60) gets one line on stderr per
interval (its log, the elapsed time, the log's last line), and from then on every finished job one line
(:class:`ConsoleProgress`); quick steps print nothing.  Logs a program writes itself start with the same
header as a job log (:func:`open_log`, :func:`log_header`).

Backends: ``local`` (a pool of subprocesses, at most ``--max-jobs-run`` at once,
default the number of CPUs; ``--num-threads N`` sets the jobs' OpenMP/MKL thread counts to N, ``--gpu N``
gives every running job N distinct GPUs through CUDA_VISIBLE_DEVICES, a job waiting for a free set; the
log's Accounting line records the job's peak RSS) and ``slurm`` (one job array, see ``ser.slurm``; resource
options such as ``--mem 4G --num-threads 2 --gpu 1`` are mapped onto sbatch options by a
cluster config in the format of Kaldi's conf/slurm.conf).
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from ser.progress import fmt_elapsed

from ser.slurm import SlurmError, run_slurm

_RANGE = re.compile(r"^([A-Za-z_]+)=(\d+)(?::(\d+))?$")


class JobError(RuntimeError):
    pass


def _subst(s: str, var: str, i: int) -> str:
    return re.sub(rf"\b{var}\b", str(i), s)


def log_tail(path: str | Path, n: int = 4, max_bytes: int | None = None) -> list[str]:
    """The last ``n`` lines a job wrote to its log: without this runner's header and footer lines,
    and with progress bars (carriage returns) reduced to their last state; ``max_bytes``: read only the
    log's end (a long training log, read once a minute by :class:`ConsoleProgress`)."""
    try:
        with open(path, "rb") as f:
            if max_bytes is not None and f.seek(0, os.SEEK_END) > max_bytes:
                f.seek(-max_bytes, os.SEEK_END)
            else:
                f.seek(0)
            lines = f.read().decode(errors="replace").split("\n")  # keeps \r (tqdm)
    except OSError:
        return []
    while lines and lines[0].startswith("#"):  # the header: command line, start time
        lines.pop(0)
    lines = [ln.rsplit("\r", 1)[-1] for ln in lines if not ln.startswith(("# Accounting:", "# Ended (code"))]
    return [ln for ln in lines if ln.strip()][-n:]


def log_header(cmd: list[str] | None = None) -> str:
    """The lines every log starts with, as run.pl's: ``# <command line>``, ``# Started at <date>``, ``#``
    (``cmd``: this process's command line by default)."""
    return f"# {shlex.join(cmd if cmd is not None else [sys.executable, *sys.argv])}\n# Started at {time.ctime()}\n#\n"


def open_log(path: str | Path, cmd: list[str] | None = None) -> TextIO:
    """``path`` opened for appending, with the header every job log starts with (``# <command line>``,
    ``# Started at <date>``, as run.pl's): for the logs a program writes itself (a trainer's train.N.log).
    ``cmd`` defaults to this process's command line; a resumed run appends a second header."""
    f = open(path, "a", encoding="utf-8")
    f.write(log_header(cmd))
    f.flush()
    return f


def progress_interval() -> float:
    """Seconds between the console's progress lines of running jobs ($SER_PROGRESS_INTERVAL, default 60;
    0: none)."""
    try:
        return float(os.environ.get("SER_PROGRESS_INTERVAL", "60"))
    except ValueError:
        return 60.0


class ConsoleProgress:
    """One line on stderr (the console of run.sh) per running job every ``interval`` seconds: its log,
    the elapsed time and the log's last line (the trainer's minibatch or iteration line); once the first such
    line has been printed, also one line per finished job.  Kaldi's drivers print a line per iteration
    (steps/nnet3/chain/train.py); here a single job may train for an hour, so its log's own lines are shown.
    Quick steps print nothing."""

    def __init__(self, n: int, interval: float, stream: TextIO | None = None):
        self.n, self.interval, self.stream = n, interval, stream   # None: sys.stderr when printing
        self.running: dict[int, tuple[Path, float]] = {}
        self.lock = threading.Lock()
        self.done = 0
        self.spoke = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True) if interval > 0 else None

    def __enter__(self) -> ConsoleProgress:
        if self.thread:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join()

    def started(self, i: int, log: Path) -> None:
        with self.lock:
            self.running[i] = (log, time.time())

    def ended(self, i: int, rc: int) -> None:
        with self.lock:
            log, t0 = self.running.pop(i)
            self.done += 1
            if self.spoke:
                how = "done" if rc == 0 else f"failed (code {rc})"
                job = f" [{self.done}/{self.n}]" if self.n > 1 else ""
                self._print(f"{log}: {how} in {fmt_elapsed(time.time() - t0)}{job}")

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                for log, t0 in self.running.values():
                    last = log_tail(log, 1, max_bytes=16384)
                    self._print(f"{log}: {fmt_elapsed(time.time() - t0)}" + (f": {last[0][:160]}" if last else ""))
                    self.spoke = True

    def _print(self, line: str) -> None:
        print(f"  {line}", file=self.stream or sys.stderr, flush=True)


def visible_gpus() -> list[str]:
    """The GPUs the local backend hands out: ``$CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``'s."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(r.stdout.splitlines()) if line.startswith("GPU ")] if r.returncode == 0 else []


class GpuPool:
    """Sets of ``per_job`` distinct GPUs for the running jobs (run.pl has none; Kaldi's GPU jobs on one
    machine rely on compute-exclusive mode): a job takes a free set when it starts, or waits for one."""

    def __init__(self, gpus: list[str], per_job: int):
        if per_job > len(gpus):
            raise JobError(f"--gpu {per_job}: only {len(gpus)} GPUs visible ({','.join(gpus) or 'none'})")
        self.free: queue.Queue[list[str]] = queue.Queue()
        for k in range(len(gpus) // per_job):
            self.free.put(gpus[k * per_job:(k + 1) * per_job])


def job_env(var: str, i: int, num_threads: int | None, gpus: list[str] | None) -> dict[str, str]:
    """A job's environment: the job variable; with --num-threads N, N threads for OpenMP/MKL/BLAS (so
    torch's default is N, as Slurm's --cpus-per-task); with --gpu, the job's own GPUs."""
    env = {**os.environ, var: str(i)}
    if num_threads is not None:
        for v in THREAD_VARS:
            env[v] = str(num_threads)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def run_local(var: str, lo: int, hi: int, log: str, cmd: list[str], max_jobs: int, num_threads: int | None = None,
              gpus_per_job: int = 0) -> list[int]:
    gpus = visible_gpus() if gpus_per_job > 0 else []
    pool = GpuPool(gpus, gpus_per_job) if gpus else None  # no GPU here: the jobs run on the CPU
    console = ConsoleProgress(hi - lo + 1, progress_interval())

    def one(i: int) -> int:
        c = [_subst(a, var, i) for a in cmd]
        lp = Path(_subst(log, var, i))
        lp.parent.mkdir(parents=True, exist_ok=True)
        gpus = pool.free.get() if pool else None
        t0 = time.time()
        try:
            with open(lp, "w") as f:
                f.write(log_header(c))
                if gpus is not None:
                    f.write(f"# CUDA_VISIBLE_DEVICES={','.join(gpus)}\n")
                f.flush()
                console.started(i, lp)
                # a single argument is a shell command line (as run.pl treats it)
                argv = ["bash", "-c", c[0]] if len(c) == 1 else c
                p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=job_env(var, i, num_threads, gpus))
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = rc = os.waitstatus_to_exitcode(status)
                dt = int(time.time() - t0)
                # maxrss: the peak resident memory of the job's largest process (KiB); cpu: user + system
                # seconds of the job's processes (getrusage; on a shared machine the wall time is not the work)
                f.write(f"# Accounting: time={dt} threads={num_threads or 1} maxrss={ru.ru_maxrss}KB "
                        f"cpu={ru.ru_utime + ru.ru_stime:.1f}s\n"
                        f"# Ended (code {rc}) at {time.ctime()}, elapsed time {dt} seconds\n")
            console.ended(i, rc)
        finally:
            if pool and gpus is not None:
                pool.free.put(gpus)
        return rc

    with console, ThreadPoolExecutor(max_workers=max(1, max_jobs)) as ex:
        return list(ex.map(one, range(lo, hi + 1)))


USAGE = """Usage: python -m ser.jobs [options] JOB=1:N <log> <command...>
   or: python -m ser.jobs [options] <log> <command...>
 e.g.: python -m ser.jobs --backend slurm --mem 2G JOB=1:4 exp/log/x.JOB.log echo JOB
Options:
  --backend local|slurm      local: a process pool; slurm: one sbatch job array (default local)
  --max-jobs-run N           at most N jobs at once (local default: the CPUs; slurm: --array=1-M%N)
  --config FILE              slurm: cluster config in Kaldi's format (default conf/slurm.conf)
  --mem M, --num-threads N, --gpu N, --time T, or any option the cluster config describes:
                             slurm: mapped onto sbatch options by the config; local: --num-threads N sets
                             OMP/MKL/OPENBLAS_NUM_THREADS=N, --gpu N gives each running job N GPUs of its
                             own (CUDA_VISIBLE_DEVICES), the others are ignored (as run.pl)
  -x VALUE                   slurm: passed to sbatch as it is (e.g. -p gpu)"""


def parse_args(argv: list[str]) -> tuple[dict, list[str], str, int, int, str, list[str]]:
    """Kaldi's option loop: ``--name value`` pairs and ``-x value`` pairs before the job spec.
    Returns (options by name with '_', raw sbatch options, var, lo, hi, log, command)."""
    if not argv or argv[0] in ("-h", "--help"):
        raise JobError(USAGE)
    opts: dict[str, str] = {}
    raw: list[str] = []
    while len(argv) >= 2 and argv[0].startswith("-") and not _RANGE.match(argv[0]):
        if argv[0].startswith("--"):
            opts[argv[0][2:].replace("-", "_")] = argv[1]
        else:
            raw += argv[:2]
        argv = argv[2:]
    m = _RANGE.match(argv[0]) if argv else None
    var, lo, hi = (m.group(1), int(m.group(2)), int(m.group(3) or m.group(2))) if m else ("JOB", 1, 1)
    rest = argv[1:] if m else argv
    if len(rest) < 2:
        raise JobError(f"missing {'log file' if not rest else 'command'}\n{USAGE}")
    if lo < 1 or hi < lo:
        raise JobError(f"invalid job range {argv[0]} (first job must be >= 1 and <= last)")
    if hi > lo and not re.search(rf"\b{var}\b", rest[0]):
        raise JobError(f"{hi - lo + 1} jobs would write to one log file {rest[0]} (put {var} in its name)")
    return opts, raw, var, lo, hi, rest[0], rest[1:]


def main(argv: list[str] | None = None) -> int:
    try:
        opts, raw, var, lo, hi, log, cmd = parse_args(list(sys.argv[1:] if argv is None else argv))
        backend = opts.pop("backend", "local")
        max_jobs = int(opts.pop("max_jobs_run")) if "max_jobs_run" in opts else None
        if backend == "local":
            threads = int(opts["num_threads"]) if "num_threads" in opts else None
            codes = run_local(var, lo, hi, log, cmd, max_jobs or os.cpu_count() or 1, threads,
                              int(opts.get("gpu", "0")))
            results = [(c, "COMPLETED" if c == 0 else "FAILED") for c in codes]
        elif backend == "slurm":
            config = opts.pop("config", None)
            job_id, results = run_slurm(var, lo, hi, log, cmd, config=config, options=opts, max_jobs=max_jobs,
                                        raw=raw)
        else:
            raise JobError(f"unknown --backend {backend} (local or slurm)")
    except (JobError, SlurmError, OSError, ValueError) as e:
        print(f"ser.jobs: {e}", file=sys.stderr)
        return 1
    n = hi - lo + 1
    bad = [(i, c, st) for i, (c, st) in zip(range(lo, hi + 1), results) if c != 0 or st != "COMPLETED"]
    cancelled = [i for i, _, st in bad if st == "CANCELLED"]
    failed = [(i, st) for i, _, st in bad if st != "CANCELLED"]
    if cancelled:
        print(f"ser.jobs: slurm job {job_id} was cancelled: {len(cancelled)} / {n} cancelled, "
              f"log is in {_subst(log, var, cancelled[0])}", file=sys.stderr)
    if failed:
        how = "" if failed[0][1] == "FAILED" else f" ({failed[0][1]})"
        first = _subst(log, var, failed[0][0])
        print(f"ser.jobs: {len(failed)} / {n} failed{how}, log is in {first}", file=sys.stderr)
        for line in log_tail(first):
            print(f"  {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
