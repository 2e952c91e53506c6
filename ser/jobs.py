"""Kaldi-style parallel jobs: ``<cmd> JOB=1:N <log> <command...>``.

Mirrors egs/wsj/s5/utils/parallel/{run.pl, slurm.pl}: every occurrence of the
job variable in the log path and the command is replaced by the job index, each
job writes one log (command line, start time, output, exit status), and the
runner fails with the path of a failing log and its last lines.  ``cmd.sh`` picks the
backend; the stages only ever see the ``$train_cmd`` string, so a new backend never touches them.
A single step runs the same way with one log: ``$train_cmd exp/log/step.log <command...>``.

Backends: ``local`` (a pool of subprocesses, at most ``--max-jobs-run`` at once,
default the number of CPUs) and ``slurm`` (one ``sbatch --wait --array`` job array).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_RANGE = re.compile(r"^([A-Za-z_]+)=(\d+)(?::(\d+))?$")


class JobError(RuntimeError):
    pass


def _subst(s: str, var: str, i: int) -> str:
    return re.sub(rf"\b{var}\b", str(i), s)


def log_tail(path: str | Path, n: int = 4) -> list[str]:
    """The last ``n`` lines a job wrote to its log: without this runner's header and footer lines,
    and with progress bars (carriage returns) reduced to their last state."""
    try:
        lines = Path(path).read_bytes().decode(errors="replace").split("\n")  # keeps \r (tqdm)
    except OSError:
        return []
    while lines and lines[0].startswith("#"):  # the header: command line, start time
        lines.pop(0)
    lines = [ln.rsplit("\r", 1)[-1] for ln in lines if not ln.startswith(("# Accounting:", "# Ended (code"))]
    return [ln for ln in lines if ln.strip()][-n:]


def _header(cmd: list[str]) -> str:
    return f"# {shlex.join(cmd)}\n# Started at {time.ctime()}\n#\n"


def run_local(var: str, lo: int, hi: int, log: str, cmd: list[str], max_jobs: int) -> list[int]:
    def one(i: int) -> int:
        c = [_subst(a, var, i) for a in cmd]
        lp = Path(_subst(log, var, i))
        lp.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        with open(lp, "w") as f:
            f.write(_header(c))
            f.flush()
            # a single argument is a shell command line (as run.pl treats it)
            argv = ["bash", "-c", c[0]] if len(c) == 1 else c
            rc = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, var: str(i)})
            f.write(f"# Accounting: time={int(time.time() - t0)} threads=1\n# Ended (code {rc}) at {time.ctime()}, elapsed time {int(time.time() - t0)} seconds\n")
        return rc

    with ThreadPoolExecutor(max_workers=max(1, max_jobs)) as ex:
        return list(ex.map(one, range(lo, hi + 1)))


def run_slurm(var: str, lo: int, hi: int, log: str, cmd: list[str], extra: list[str]) -> list[int]:
    """One job array; each task runs the command with $SLURM_ARRAY_TASK_ID as the job index."""
    logdir = Path(_subst(log, var, lo)).parent
    logdir.mkdir(parents=True, exist_ok=True)
    script = logdir / f"q_{Path(log).name.replace(var, 'array')}.sh"
    body = shlex.join(cmd) if len(cmd) > 1 else cmd[0]
    body = re.sub(rf"\b{var}\b", "${SLURM_ARRAY_TASK_ID}", body)
    logt = re.sub(rf"\b{var}\b", "${SLURM_ARRAY_TASK_ID}", log)
    script.write_text(
        "#!/bin/bash\n"
        f"cd {shlex.quote(os.getcwd())}\n"
        f"export {var}=${{SLURM_ARRAY_TASK_ID}}\n"
        f'( echo "# {body}"; echo "# Started at $(date)"; {body}; rc=$?; echo "# Ended (code $rc) at $(date)"; exit $rc ) > "{logt}" 2>&1\n'
    )
    # sbatch --wait exits non-zero when any task failed: the task logs tell which
    rc = subprocess.call(["sbatch", "--wait", f"--array={lo}-{hi}", "-o", "/dev/null", *extra, str(script)])
    codes = []
    for i in range(lo, hi + 1):
        text = Path(_subst(log, var, i)).read_text() if Path(_subst(log, var, i)).exists() else ""
        m = re.search(r"# Ended \(code (\d+)\)", text)
        codes.append(int(m.group(1)) if m else 1)
    if rc != 0 and not any(codes):
        raise JobError(f"sbatch failed with code {rc} although every task log reports success; see {logdir}")
    return codes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ser.jobs", description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=["local", "slurm"], default="local")
    p.add_argument("--max-jobs-run", type=int, default=os.cpu_count() or 1)
    p.add_argument("--slurm-opts", default="", help="extra sbatch options, e.g. '-p cpu --mem 4G'")
    p.add_argument("spec", help="JOB=1:N (or a log file for a single job)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    m = _RANGE.match(a.spec)
    if m:
        var, lo, hi = m.group(1), int(m.group(2)), int(m.group(3) or m.group(2))
        if not a.rest:
            p.error("missing log file")
        log, cmd = a.rest[0], a.rest[1:]
    else:
        var, lo, hi, log, cmd = "JOB", 1, 1, a.spec, a.rest
    if not cmd:
        p.error("missing command")
    if a.backend == "local":
        codes = run_local(var, lo, hi, log, cmd, a.max_jobs_run)
    else:
        try:
            codes = run_slurm(var, lo, hi, log, cmd, shlex.split(a.slurm_opts))
        except (JobError, OSError) as e:
            print(f"ser.jobs: {e}", file=sys.stderr)
            return 1
    failed = [i for i, c in zip(range(lo, hi + 1), codes) if c != 0]
    if failed:
        n = hi - lo + 1
        first = _subst(log, var, failed[0])
        print(f"ser.jobs: {len(failed)} / {n} failed, log is in {first}", file=sys.stderr)
        for line in log_tail(first):
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
