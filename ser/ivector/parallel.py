"""The per-job steps of the UBM and extractor trainers, run as Kaldi runs them or in this process.

Kaldi's ``steps/online/nnet2/train_{diag_ubm,ivector_extractor}.sh`` call one binary per step through
``$cmd`` (``$cmd JOB=1:$nj $dir/log/acc.$x.JOB.log gmm-global-acc-stats ...``).  Here a step is a
function of ``ser.ivector`` with scalar keyword arguments; :class:`Runner` runs it

- with a ``cmd`` (``$train_cmd`` of cmd.sh plus the step's resource options): as
  ``<cmd> --num-threads T JOB=1:N <log> python -m ser.bin._ivector_job <step> --key value ...``, one
  process (local pool or Slurm array task) and one log per job, ``JOB`` replaced by the job index;
- without one: in this process, job after job, through the same command-line parser (tests, nj 1).

A job never uses more threads than it asked for: ``--num-threads T`` is given both to the runner (the
Slurm allocation; the local backend's OMP_NUM_THREADS) and to the program (``torch.set_num_threads``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

# Kaldi's binary name -> the function that does its work
STEPS = {
    "gmm-global-init-from-feats": "ser.ivector.diag_ubm:ubm_init",
    "gmm-global-acc-stats": "ser.ivector.diag_ubm:ubm_acc",
    "ivector-extractor-get-stats": "ser.ivector.extractor:ie_utt_stats",
    "ivector-extractor-acc-stats": "ser.ivector.extractor:ie_acc",
}


class StepError(RuntimeError):
    pass


def _function(step: str) -> Callable:
    if step not in STEPS:
        raise StepError(f"unknown step {step!r} (known: {', '.join(STEPS)})")
    mod, name = STEPS[step].split(":")
    return getattr(importlib.import_module(mod), name)


def _to_argv(kwargs: dict[str, Any]) -> list[str]:
    out = []
    for k, v in kwargs.items():
        out += ["--" + k.replace("_", "-"), ("true" if v else "false") if isinstance(v, bool) else str(v)]
    return out


def _convert(fn: Callable, name: str, value: str) -> Any:
    """``value`` as the type of ``fn``'s parameter ``name`` (the type of its default; str without one)."""
    params = inspect.signature(fn).parameters
    if name not in params:
        raise StepError(f"{fn.__name__}: unknown option --{name.replace('_', '-')}")
    default = params[name].default
    if isinstance(default, bool):
        if value not in ("true", "false"):
            raise StepError(f"--{name.replace('_', '-')}: expected true or false, got {value!r}")
        return value == "true"
    if isinstance(default, (int, float)):
        try:
            return type(default)(value)
        except ValueError:
            raise StepError(f"--{name.replace('_', '-')}: expected {type(default).__name__}, got {value!r}") from None
    return value


def job_main(argv: list[str]) -> Any:
    """``<step> [--num-threads T] --key value ...``: runs one job of a step."""
    if not argv or argv[0] in ("-h", "--help"):
        raise StepError(f"usage: python -m ser.bin._ivector_job <step> --key value ... (steps: {', '.join(STEPS)})")
    fn = _function(argv[0])
    rest = argv[1:]
    if len(rest) % 2:
        raise StepError(f"{argv[0]}: options come in --key value pairs, got {shlex.join(rest)}")
    kwargs: dict[str, Any] = {}
    for k, v in zip(rest[::2], rest[1::2]):
        if not k.startswith("--"):
            raise StepError(f"{argv[0]}: expected an option --key, got {k!r}")
        name = k[2:].replace("-", "_")
        if name == "num_threads":
            import torch
            torch.set_num_threads(int(v))
            continue
        kwargs[name] = _convert(fn, name, v)
    return fn(**kwargs)


class Runner:
    """Runs the jobs of a step: through ``cmd`` (Kaldi's ``$cmd``) or, without one, in this process."""

    def __init__(self, cmd: str | None = None, num_threads: int = 1):
        if num_threads < 1:
            raise ValueError(f"--num-threads must be >= 1, got {num_threads}")
        self.cmd, self.num_threads = cmd, num_threads

    def run(self, step: str, log: str | os.PathLike, nj: int | None = None, **kwargs: Any) -> None:
        """One job (``nj`` None) or ``nj`` jobs; ``JOB`` in ``log`` and in string arguments is the job index."""
        args = [step, *_to_argv(kwargs)]
        if self.cmd is None:
            for j in range(1, (nj or 1) + 1):
                job_main([re.sub(r"\bJOB\b", str(j), a) for a in args])
            return
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        argv = [*shlex.split(self.cmd), "--num-threads", str(self.num_threads),
                *([f"JOB=1:{nj}"] if nj else []), str(log),
                sys.executable, "-m", "ser.bin._ivector_job", *args, "--num-threads", str(self.num_threads)]
        r = subprocess.run(argv)
        if r.returncode != 0:
            raise StepError(f"{step} failed (exit status {r.returncode}); see {log}")
