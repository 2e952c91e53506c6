"""Options shared by the four steps/online/*.sh programs (not a program itself)."""

from __future__ import annotations

import argparse

import torch

from ser.cli import add_device_argument


def add_online_arguments(p: argparse.ArgumentParser) -> None:
    """--device, --num-threads, --batch-frames, and Kaldi's --cmd/--nj (jobs run in this process)."""
    add_device_argument(p)
    p.add_argument("--num-threads", type=int, default=0,
                   help="torch CPU threads of this process and (training) of each job (0: torch default; 1 per job)")
    p.add_argument("--batch-frames", type=int, default=None, help="frames per batch of whole speakers")
    p.add_argument("--cmd", default=None,
                   help="training: the job runner of the jobs ($train_cmd with resource options; default: the "
                        "jobs run in this process, one after another); extraction: ignored")
    p.add_argument("--nj", type=int, default=1,
                   help="parallel jobs: training: N jobs over data/split<N> (Kaldi's shape); "
                        "extract_ivectors_online: N worker threads of one torch thread each")


def training_runner(a: argparse.Namespace, threads_factor: int = 1):
    """The trainers' job runner: ``--cmd`` with ``threads_factor`` x ``--num-threads`` per job, or in this
    process."""
    from ser.ivector.parallel import Runner
    if a.nj < 1:
        raise ValueError(f"--nj must be >= 1, got {a.nj}")
    return Runner(a.cmd, threads_factor * max(1, a.num_threads)) if a.cmd else Runner()


def online_kwargs(a: argparse.Namespace) -> dict:
    """Applies --num-threads; returns the device / batch-frames keywords of the ser.ivector trainers."""
    if a.num_threads > 0:
        torch.set_num_threads(a.num_threads)
    return {"device": a.device, **({"batch_frames": a.batch_frames} if a.batch_frames else {})}
