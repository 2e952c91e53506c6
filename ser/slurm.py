"""The slurm job backend: one job array per ``$cmd JOB=1:N <log> <command>`` call.

Kaldi's egs/wsj/s5/utils/parallel/slurm.pl, in its essentials:

- **Cluster config** (``conf/slurm.conf``, Kaldi's format): ``command sbatch ...`` gives the submit
  command; ``option mem=* --mem-per-cpu=$0`` maps a call's ``--mem 4G`` onto sbatch options
  (``$0`` is the value); ``option gpu=0`` (nothing) gives a value its own rule; ``default gpu=0``
  applies when a call does not give the option.  An option the config does not describe is an error.
  ``--max-jobs-run N`` is built in (``--array=1-M%N``).
- **Job script** ``<logdir>/q/<log name>.sh``: cd to the submit directory, run the command with the
  job variable set to ``$SLURM_ARRAY_TASK_ID``, write one log per task (command line, host, start,
  output, ``# Ended (code N)``), Slurm's own messages to ``q/<log name>.log``.

Deviations: jobs are submitted with ``sbatch --parsable`` and waited for by polling ``squeue`` (1 s
at first, slower for long jobs), not ``sbatch --wait`` (which polls after 2, 8, then every 32 s with
Slurm's default MinJobAge, and whose exit status cannot tell a cancelled task from a failed one);
every task's final Slurm state is read, so a task cancelled with ``scancel`` is reported as cancelled.
Interrupting the waiting runner cancels the job.  Kaldi exports only PATH and sources path.sh; the
config here exports the whole environment (``--export=ALL``).
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Slurm job states after which a task will not run again (squeue %T names)
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE"}
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "slurm.conf"


class SlurmError(RuntimeError):
    """Submission or bookkeeping failed (not a task: a failing task is a result, not an error)."""


@dataclass
class ClusterConfig:
    """Kaldi's conf/slurm.conf: the submit command and how call options become its options."""

    command: list[str]
    star: dict[str, str] = field(default_factory=dict)  # option name -> options with $0
    exact: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, value) -> options
    defaults: dict[str, str] = field(default_factory=dict)
    path: str = ""

    @classmethod
    def load(cls, path: str | Path) -> "ClusterConfig":
        cfg = cls(command=[], path=str(path))
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            s = re.sub(r"\s*#.*", "", line).strip()
            if not s:
                continue
            if m := re.fullmatch(r"command\s+(.+)", s):
                cfg.command = shlex.split(m.group(1))
            elif m := re.fullmatch(r"option\s+([\w-]+)=\*\s+(.+)", s):
                cfg.star[m.group(1)] = m.group(2)
            elif m := re.fullmatch(r"option\s+([\w-]+)=(\S+)\s*(.*)", s):
                cfg.exact[(m.group(1), m.group(2))] = m.group(3)
            elif m := re.fullmatch(r"default\s+([\w-]+)=(\S+)", s):
                cfg.defaults[m.group(1)] = m.group(2)
            else:
                raise SlurmError(f"{path}:{n}: cannot parse line {line!r}")
        if not cfg.command:
            raise SlurmError(f"{path}: no 'command sbatch ...' line")
        return cfg

    def sbatch_options(self, options: dict[str, str]) -> list[str]:
        """The submit options for a call's ``--name value`` options (names with ``_``), defaults added."""
        out: list[str] = []
        for name, value in {**self.defaults, **options}.items():
            if (name, value) in self.exact:
                out += shlex.split(self.exact[(name, value)])
            elif name in self.star:
                out += shlex.split(self.star[name].replace("$0", value))
            else:
                raise SlurmError(f"option --{name.replace('_', '-')} {value} is not described in {self.path}")
        return out


def _with_task_id(s: str, var: str) -> str:
    """``s`` as one bash word in which each whole-word ``var`` becomes ``${SLURM_ARRAY_TASK_ID}``."""
    parts = re.split(rf"\b{var}\b", s)
    return "${SLURM_ARRAY_TASK_ID}".join(shlex.quote(p) if p else "" for p in parts) or "''"


def job_script(var: str, log: str, cmd: list[str], threads: int) -> str:
    """The bash script every array task runs (the command, its log header and footer, a SIGTERM note);
    OpenMP/MKL/OpenBLAS get the ``threads`` the job asked for (--num-threads, its --cpus-per-task)."""
    if len(cmd) == 1:  # one argument is a shell command line (as run.pl and slurm.pl take it)
        body = re.sub(rf"\b{var}\b", "${SLURM_ARRAY_TASK_ID}", cmd[0])
    else:
        body = " ".join(_with_task_id(a, var) for a in cmd)
    return f"""#!/bin/bash
cd {shlex.quote(str(Path.cwd()))}
export {var}=$SLURM_ARRAY_TASK_ID
export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads}
log={_with_task_id(log, var)}
trap 'echo "# Killed by SIGTERM (cancelled, or past its time limit) at $(date)" >> "$log"; exit 143' TERM
printf '%s\n' {shlex.quote(body)} | sed -e "s/[$]{{SLURM_ARRAY_TASK_ID}}/$SLURM_ARRAY_TASK_ID/g" -e 's/^/# /' > "$log"
echo "# Running on $(hostname) as Slurm job ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}" >> "$log"
echo "# Started at $(date)" >> "$log"
echo "#" >> "$log"
t0=$(date +%s)
( {body} ) >> "$log" 2>&1 &
wait $!
rc=$?
t=$(( $(date +%s) - t0 ))
echo "# Accounting: time=$t threads={threads}" >> "$log"
echo "# Ended (code $rc) at $(date), elapsed time $t seconds" >> "$log"
exit $rc
"""


def _task_states(job_id: str) -> dict[int, str] | None:
    """Array task -> Slurm state, or None once slurmctld has forgotten the job (after MinJobAge)."""
    r = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "all", "-r", "-o", "%K %T"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if "Invalid job id" in r.stderr:
            return None
        raise SlurmError(f"squeue -j {job_id} failed: {r.stderr.strip()}")
    states = {}
    for line in r.stdout.splitlines():
        k, st = line.split()
        if k.isdigit():
            states[int(k)] = st
    return states


def submit(cfg: ClusterConfig, var: str, lo: int, hi: int, log: str, cmd: list[str],
           options: dict[str, str], max_jobs: int | None, raw: list[str]) -> tuple[str, Path]:
    """Writes the job script and submits it as one array; returns (job id, script path)."""
    logdir = Path(re.sub(rf"\b{var}\b", str(lo), log)).parent
    qdir = logdir.parent / "q" if logdir.name == "log" else logdir / "q"  # Kaldi: .../log/q -> .../q
    logdir.mkdir(parents=True, exist_ok=True)
    qdir.mkdir(parents=True, exist_ok=True)
    name = re.sub(rf"\.?\b{var}\b", "", Path(log).name)
    script = qdir / (re.sub(r"\.[A-Za-z]{1,5}$", "", name) + ".sh")
    array = f"{lo}-{hi}" + (f"%{max_jobs}" if max_jobs else "")
    argv = [*cfg.command, *cfg.sbatch_options(options), *raw, "--parsable", f"--array={array}",
            f"--job-name={script.stem}", "--open-mode=append", "-o", str(script.with_suffix(".log")),
            str(script)]
    text = job_script(var, log, cmd, int(options.get("num_threads", "1")))
    script.write_text(f"{text}## submitted with:\n# {shlex.join(argv)}\n")  # as slurm.pl records it
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        raise SlurmError(f"{shlex.join(argv)} failed: {(r.stderr or r.stdout).strip()}")
    return r.stdout.strip().split(";")[0], script


def wait(job_id: str, lo: int, hi: int) -> dict[int, str]:
    """Polls until every task of the array is in a final state; returns task -> state
    ({} when slurmctld forgot the job before the last poll saw it finish: the logs must tell)."""
    t0 = time.time()
    states: dict[int, str] = {}
    while True:
        now = _task_states(job_id)
        if now is None:
            return states
        states = now
        if len(states) == hi - lo + 1 and all(s in FINAL_STATES for s in states.values()):
            return states
        time.sleep(min(10.0, 1.0 + (time.time() - t0) / 10))


def _raise_exit(signum, frame) -> None:
    raise SystemExit(128 + signum)


def run_slurm(var: str, lo: int, hi: int, log: str, cmd: list[str], *, config: str | Path | None = None,
              options: dict[str, str] | None = None, max_jobs: int | None = None,
              raw: list[str] = ()) -> tuple[str, list[tuple[int, str]]]:
    """Runs the tasks lo..hi as one job array; returns the job id and (exit code, Slurm state) per task.
    The code is the one in the task's log (``# Ended (code N)``), 1 when the log has none."""
    cfg = ClusterConfig.load(config or ("conf/slurm.conf" if Path("conf/slurm.conf").exists() else DEFAULT_CONFIG))
    job_id, _ = submit(cfg, var, lo, hi, log, cmd, options or {}, max_jobs, list(raw))
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _raise_exit) if main else None
    try:
        states = wait(job_id, lo, hi)
    except BaseException:  # interrupted (Ctrl-C, kill): do not leave the array running
        subprocess.run(["scancel", job_id], capture_output=True)
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, old)
    out = []
    for i in range(lo, hi + 1):
        p = Path(re.sub(rf"\b{var}\b", str(i), log))
        m = re.search(r"# Ended \(code (\d+)\)", p.read_text(errors="replace")) if p.exists() else None
        code = int(m.group(1)) if m else 1
        out.append((code, states.get(i, "COMPLETED" if code == 0 else "UNKNOWN")))
    return job_id, out
