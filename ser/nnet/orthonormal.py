"""The semi-orthogonal ("orthonormal-constraint") update of TDNN-F linear factors.

Mirrors Kaldi's ``src/nnet3/nnet-utils.cc`` (``ConstrainOrthonormalInternal`` and
``ConstrainOrthonormal``) and Povey et al., "Semi-orthogonal low-rank matrix factorization
for deep neural networks", Interspeech 2018, Sec. 2.2-2.3.

After every minibatch (after the optimizer step) each constrained matrix M (rows <= cols;
a matrix with more rows than columns is transposed first) is, with probability 1/4
(Kaldi: ``RandInt(0, 3) != 0`` -> skip, one draw per component), moved towards
``scale * (a matrix with orthonormal rows)``::

    P = M M^T
    floating scale (orthonormal-constraint < 0):  scale^2 = tr(P P) / tr(P)
        (skipped when tr(P) < 1e-15); update_speed nu = 0.125, halved when
        ratio = tr(P P) * rows / tr(P)^2 > 1.02 and halved again when > 1.1
    fixed scale (orthonormal-constraint = c > 0): scale = c, nu = 0.125
    M <- M - 4 * (nu / scale^2) * (P - scale^2 I) M

A module takes part when it has a non-zero attribute ``orthonormal_constraint`` and a
method ``constrained_matrix()`` returning the 2-D view ``[rows, cols]`` of its weight
(``ser.nnet.tdnnf.TdnnComponent``: Kaldi's ``linear_params_``, output-dim rows and
input-dim x num-offsets columns; the column order does not change ``M M^T``).

Deviation: Kaldi asserts ``ratio > 0.9`` (it is >= 1 in exact arithmetic); here a ratio
below 0.99 is only logged.
"""

from __future__ import annotations

import logging
from typing import Iterator

import torch
from torch import nn

logger = logging.getLogger(__name__)

UPDATE_SPEED = 0.125


def constrain_orthonormal_internal(matrix: torch.Tensor, scale: float = -1.0,
                                   name: str = "") -> torch.Tensor:
    """One Kaldi ConstrainOrthonormalInternal step on ``matrix`` ([rows, cols], rows <= cols).

    ``scale < 0`` selects the floating scale.  Returns the updated matrix (same dtype and
    device); the input is not modified.  A matrix with ~zero energy is returned unchanged.
    """
    if scale == 0.0:
        raise ValueError("constrain_orthonormal_internal: scale must be non-zero")
    if matrix.dim() != 2 or matrix.shape[0] > matrix.shape[1]:
        raise ValueError(f"constrain_orthonormal_internal({name}): need a 2-D matrix with "
                         f"rows <= cols, got shape {tuple(matrix.shape)}")
    m = matrix
    rows = m.shape[0]
    p = m @ m.T
    update_speed = UPDATE_SPEED
    if scale < 0.0:
        trace_p = float(torch.diagonal(p).sum())
        trace_p_p = float((p * p).sum())
        if trace_p < 1.0e-15:
            return matrix.clone()
        scale = (trace_p_p / trace_p) ** 0.5
        ratio = trace_p_p * rows / (trace_p * trace_p)
        if not ratio > 0.99:
            logger.warning("orthonormal constraint: ratio is %g (should be >= 1.0); component %s",
                           ratio, name)
        if ratio > 1.02:
            update_speed *= 0.5
            if ratio > 1.1:
                update_speed *= 0.5
    q = p - (scale * scale) * torch.eye(rows, dtype=p.dtype, device=p.device)
    alpha = update_speed / (scale * scale)
    return m - (4.0 * alpha) * (q @ m)


def constrain_orthonormal(matrix: torch.Tensor, scale: float = -1.0,
                          name: str = "") -> torch.Tensor:
    """As :func:`constrain_orthonormal_internal`, transposing when rows > cols (Kaldi's
    ConstrainOrthonormal does the same)."""
    if matrix.dim() != 2:
        raise ValueError(f"constrain_orthonormal({name}): need a 2-D matrix, got "
                         f"shape {tuple(matrix.shape)}")
    if matrix.shape[0] <= matrix.shape[1]:
        return constrain_orthonormal_internal(matrix, scale, name)
    return constrain_orthonormal_internal(matrix.T, scale, name).T


def constrained_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) for every module with a non-zero ``orthonormal_constraint``, in
    ``model.named_modules()`` order (the order in which random draws are made)."""
    for name, module in model.named_modules():
        if getattr(module, "orthonormal_constraint", 0.0) != 0.0 and \
                hasattr(module, "constrained_matrix"):
            yield name, module


@torch.no_grad()
def apply_orthonormal_constraint(model: nn.Module, generator: torch.Generator | None = None,
                                 probability_inverse: int = 4) -> list[str]:
    """Kaldi's ConstrainOrthonormal(nnet): call after each optimizer step.

    For every constrained module one integer in [0, probability_inverse) is drawn from
    ``generator`` (a CPU ``torch.Generator``; None = the global RNG); the update is applied
    when it is 0, i.e. with probability 1/4 by default (``probability_inverse=1`` applies
    it always).  The weight is updated in place.  Returns the names of the modules updated.
    """
    updated: list[str] = []
    for name, module in constrained_modules(model):
        draw = int(torch.randint(0, probability_inverse, (1,), generator=generator))
        if draw != 0:
            continue
        mat = module.constrained_matrix()
        new = constrain_orthonormal(mat, float(module.orthonormal_constraint), name)
        mat.copy_(new)
        updated.append(name)
    return updated
