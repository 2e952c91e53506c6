"""Kaldi's dropout schedule and its GeneralDropoutComponent (per-dim continuous dropout).

Mirrors ``egs/wsj/s5/steps/libs/nnet3/train/dropout_schedule.py`` (``--trainer.dropout-schedule``
parsing and the piecewise-linear value at a data fraction) and ``GeneralDropoutComponent``
of ``src/nnet3/nnet-general-component.{h,cc}``.

Schedule syntax: ``'[pattern=]v0,v1@f1,...,vN'``, space-separated items, each a
piecewise-linear function of the fraction of training data seen: v0 at fraction 0, vN at 1,
``v@f`` a point in between (a point without ``@f`` is at 0.5); fractions must not decrease.
The pattern (default ``*``) is matched (fnmatch) against Kaldi component names such as
``tdnnf7.dropout``.  The run_tdnn_1g value ``'0,0@0.20,0.5@0.50,0'`` gives 0 until 20% of
the data, rises linearly to 0.5 at 50% and falls back to 0 at 100%.  Kaldi evaluates it at
the start of each iteration with ``data_fraction = num_archives_processed /
num_archives_to_process``.

GeneralDropout (input [B, C, T], time-period 0): in training mode with proportion p > 0
every sequence b and dimension c gets one scale, shared by all frames t:

* continuous=true:  ``1 + 2 p U[-1, 1]`` (p = 0.5 gives U[0, 2]; mean 1);
* continuous=false: ``(U[0,1] > p) / (1 - p)``.

In eval mode (Kaldi test mode) or with p = 0 the input passes unchanged.
Deviations: ``time-period > 0``, ``block-dim`` and the SpecAugment options are not implemented.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DropoutSchedule:
    """A parsed ``--trainer.dropout-schedule``: per pattern, points (fraction, proportion)
    in increasing order of fraction (first at 0.0, last at 1.0)."""

    items: tuple[tuple[str, tuple[tuple[float, float], ...]], ...]

    @classmethod
    def parse(cls, option: str) -> "DropoutSchedule":
        if not option or not option.strip():
            raise ValueError("empty dropout schedule")
        items = []
        for component in option.strip().split():
            parts = component.split("=")
            if len(parts) == 2:
                pattern, func = parts
            elif len(parts) == 1:
                pattern, func = "*", parts[0]
            else:
                raise ValueError(f"dropout schedule item {component!r} of {option!r} must be "
                                 "'pattern=func' or 'func'")
            items.append((pattern, _parse_dropout_string(func)))
        return cls(tuple(items))

    def proportions(self, data_fraction: float) -> list[tuple[str, float]]:
        """[(pattern, proportion)] at this fraction of data (Kaldi _get_dropout_proportions)."""
        if not 0.0 <= data_fraction <= 1.0:
            raise ValueError(f"data fraction {data_fraction} outside [0, 1]")
        return [(pattern, _value_at(points, data_fraction)) for pattern, points in self.items]

    def value(self, data_fraction: float, component_name: str = "") -> float:
        """Proportion for one component: the last item whose pattern matches it (Kaldi applies
        the edits in order, so later ones win); 0.0 when none match."""
        value = 0.0
        for pattern, proportion in self.proportions(data_fraction):
            if fnmatch.fnmatchcase(component_name, pattern):
                value = proportion
        return value


def _parse_dropout_string(text: str) -> tuple[tuple[float, float], ...]:
    parts = text.strip().split(",")
    if len(parts) < 2:
        raise ValueError(f"dropout schedule {text!r} must give at least the start and end "
                         "proportions")
    try:
        points = [(0.0, float(parts[0]))]
        for part in parts[1:-1]:
            pair = part.split("@")
            if len(pair) == 1:
                proportion, fraction = float(pair[0]), 0.5
            elif len(pair) == 2:
                proportion, fraction = float(pair[0]), float(pair[1])
            else:
                raise ValueError(f"bad point {part!r}")
            if fraction < points[-1][0] or fraction > 1.0:
                raise ValueError(f"data fractions must be increasing and <= 1 (at {part!r})")
            points.append((fraction, proportion))
        points.append((1.0, float(parts[-1])))
    except ValueError as err:
        raise ValueError(f"cannot parse dropout schedule {text!r}: {err}") from None
    for fraction, proportion in points:
        if not (0.0 <= fraction <= 1.0 and 0.0 <= proportion <= 1.0):
            raise ValueError(f"dropout schedule {text!r}: values must lie in [0, 1]")
    return tuple(points)


def _value_at(points: tuple[tuple[float, float], ...], fraction: float) -> float:
    """Kaldi _get_component_dropout: the segment whose lower end is the last point with
    point.fraction <= fraction, linear interpolation to the next point."""
    if fraction == 0.0:
        return points[0][1]
    lower = max(i for i, (f, _) in enumerate(points) if f <= fraction)
    if lower == len(points) - 1:
        return points[-1][1]
    (f0, v0), (f1, v1) = points[lower], points[lower + 1]
    if f1 == f0:
        return v0
    return (fraction - f0) * (v1 - v0) / (f1 - f0) + v0


class GeneralDropout(nn.Module):
    """Kaldi GeneralDropoutComponent (time-period 0) on [B, C, T] tensors.

    ``dropout_proportion`` is a plain attribute (set it with the model's ``set_dropout``);
    ``component_name`` is the Kaldi name (e.g. ``tdnnf7.dropout``) used for pattern matching.
    """

    def __init__(self, dim: int, dropout_proportion: float = 0.0, continuous: bool = True,
                 component_name: str = "") -> None:
        super().__init__()
        if not 0.0 <= dropout_proportion <= 1.0:
            raise ValueError(f"dropout-proportion {dropout_proportion} outside [0, 1]")
        self.dim = dim
        self.dropout_proportion = float(dropout_proportion)
        self.continuous = continuous
        self.component_name = component_name

    def mask(self, batch: int, dtype: torch.dtype, device: torch.device,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The [batch, dim, 1] scale for the current proportion (training mode)."""
        p = self.dropout_proportion
        u = torch.rand(batch, self.dim, 1, dtype=dtype, device=device, generator=generator)
        if self.continuous:
            return u.mul_(4.0 * p).add_(1.0 - 2.0 * p)
        if p >= 1.0:
            raise ValueError(f"{self.component_name}: non-continuous dropout needs p < 1")
        return (u > p).to(dtype).div_(1.0 - p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropout_proportion == 0.0:
            return x
        if x.dim() != 3 or x.shape[1] != self.dim:
            raise ValueError(f"{self.component_name}: expected [B, {self.dim}, T], got "
                             f"{tuple(x.shape)}")
        return x * self.mask(x.shape[0], x.dtype, x.device)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, dropout_proportion={self.dropout_proportion}, "
                f"continuous={self.continuous}")
