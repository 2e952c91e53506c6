"""Tensor and model files: the one place that calls ``torch.load`` / ``torch.save``.

Every ``.pt`` file of the recipe (den/num graphs, pdf map, alignments, i-vector models, chain
models and trainer checkpoints) is a dict of tensors and plain values, so it is read with
``weights_only=True`` (loading never runs pickled code) and written through an atomic temp
file (``ser.io.atomic``: a killed stage never leaves a half-written file).  A missing,
truncated or foreign file is a :class:`TorchFileError` (a ``ValueError``) whose one-line
message names the file and what was expected, e.g.::

    exp/chain/den.pt: cannot read den graph (truncated or not a torch file: ...)
    exp/chain/tdnn/final.pt: not a chain model: no key 'config'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

import torch

from ser.io.atomic import atomic_open

__all__ = ["TorchFileError", "load_torch", "save_torch"]


class TorchFileError(ValueError):
    """A tensor/model file that is missing, unreadable, or not what the caller expected."""


def _reason(e: BaseException) -> str:
    """Why torch.load failed, in one line (torch's weights_only refusal is several coloured
    lines; what matters in it is the object that is not a tensor)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return f"it holds a {m.group(1)} object, not only tensors"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def load_torch(path: str | os.PathLike, *, what: str, expect_keys: Iterable[str] = (),
               map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming ``path`` and ``what``
    (e.g. ``"den graph"``).  With ``expect_keys`` the file must hold a dict with those keys.
    ``mmap``: the tensors are memory-mapped from the file (pages are read when touched and are
    the kernel's to drop), not read into memory."""
    p = Path(path)
    if not p.is_file():
        raise TorchFileError(f"{p}: no such file (expected the {what}; did the stage that makes it finish?)")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - truncated zip, foreign pickle, non-tensor objects
        raise TorchFileError(f"{p}: cannot read {what} (truncated or not a torch file of tensors: "
                             f"{_reason(e)})") from e
    keys = list(expect_keys)
    if keys:
        if not isinstance(obj, dict):
            raise TorchFileError(f"{p}: not a {what}: holds a {type(obj).__name__}, expected a dict")
        missing = [k for k in keys if k not in obj]
        if missing:
            raise TorchFileError(f"{p}: not a {what}: no key {missing[0]!r}")
    return obj


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (a temp sibling renamed into place)."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
