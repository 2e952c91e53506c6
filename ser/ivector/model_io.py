"""Model files of the i-vector pipeline: dicts of tensors written with ``torch.save``.

Every file is written atomically (``ser.io.atomic``) and read with ``torch.load(weights_only=True)``,
so a killed stage never leaves a half-written model, and loading never runs pickled code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ser.io.atomic import atomic_open


def save_tensors(path: str | os.PathLike, obj: dict) -> None:
    """``torch.save`` a dict of tensors / plain values through an atomic temp file."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def load_tensors(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"expected model file {p} (did the previous stage finish?)")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise RuntimeError(f"cannot load {p}: {e}") from e
