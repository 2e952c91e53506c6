"""Chain trainer checkpoints (``<exp>/checkpoint.pt``) and the RNG state they carry, all in
``weights_only``-loadable form (tensors and plain values), for exact resumption.

A checkpoint holds the model (and its configuration), the optimizer state (Adam's moments),
the trainer's progress and history, its configuration, the world size, every rank's RNG
states (torch, Python, NumPy, CUDA, the out-of-range penalty's generator) and egs position,
and the orthonormal-constraint generator.  Kaldi resumes from ``<iter>.mdl`` at iteration
boundaries only; here any minibatch is a resumption point.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from ser.io.torch_io import TorchFileError, load_torch
from ser.nnet.model_io import CHECKPOINT_FORMAT

__all__ = ["CHECKPOINT_FORMAT", "rng_state", "set_rng_state", "read_checkpoint"]


def rng_state() -> dict[str, Any]:
    """This process's torch / Python / NumPy (/ CUDA) RNG states as tensors and numbers."""
    py = random.getstate()
    np_state = np.random.get_state()
    d = {"torch": torch.get_rng_state(),
         "python_version": int(py[0]), "python_state": torch.tensor(py[1], dtype=torch.int64),
         "python_gauss": py[2],
         "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
         "numpy_pos": int(np_state[2]), "numpy_has_gauss": int(np_state[3]),
         "numpy_gauss": float(np_state[4])}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        d["cuda"] = torch.cuda.get_rng_state_all()
    return d


def set_rng_state(d: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(d["torch"])
    random.setstate((d["python_version"], tuple(int(x) for x in d["python_state"].tolist()),
                     d["python_gauss"]))
    np.random.set_state(("MT19937", d["numpy_keys"].numpy().astype(np.uint32), d["numpy_pos"],
                         d["numpy_has_gauss"], d["numpy_gauss"]))
    if "cuda" in d and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(d["cuda"])


def read_checkpoint(path: str | os.PathLike, model_config: dict, optimizer: str) -> dict[str, Any]:
    """A checkpoint for a run with this model configuration and ``--optimizer``; a file of
    another run is a one-line error."""
    d = load_torch(path, what="chain trainer checkpoint",
                   expect_keys=("format", "model_config", "model", "optimizer", "trainer"))
    if d["format"] != CHECKPOINT_FORMAT:
        raise TorchFileError(f"{path}: not a chain trainer checkpoint (format {d['format']!r})")
    if d["model_config"] != model_config:
        raise RuntimeError(f"{path}: model configuration differs from this run's")
    saved_opt = d.get("trainer_config", {}).get("optimizer", "kaldi-sgd")
    if saved_opt != optimizer:
        raise RuntimeError(f"{path}: saved with --optimizer {saved_opt}, this run uses --optimizer {optimizer}")
    return d
