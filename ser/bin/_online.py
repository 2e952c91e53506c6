"""Options shared by the four steps/online/*.sh programs (not a program itself)."""

from __future__ import annotations

import argparse

import torch

from ser.cli import add_device_argument


def add_online_arguments(p: argparse.ArgumentParser) -> None:
    """--device, --num-threads, --batch-frames, and Kaldi's --cmd/--nj (jobs run in this process)."""
    add_device_argument(p)
    p.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--batch-frames", type=int, default=None, help="frames per batch of whole speakers")
    p.add_argument("--cmd", default=None, help="ignored (Kaldi compatibility: jobs run in this process)")
    p.add_argument("--nj", type=int, default=1,
                   help="parallel jobs: extract_ivectors_online runs N worker threads of one torch thread each; "
                        "the training steps ignore it (one process)")


def online_kwargs(a: argparse.Namespace) -> dict:
    """Applies --num-threads; returns the device / batch-frames keywords of the ser.ivector trainers."""
    if a.num_threads > 0:
        torch.set_num_threads(a.num_threads)
    return {"device": a.device, **({"batch_frames": a.batch_frames} if a.batch_frames else {})}
