"""Kaldi's chain update around an optimizer direction: learning-rate schedule semantics,
per-component learning-rate factor, l2, max-change and max-param-change.

Mirrors ``src/nnet3/nnet-chain-training.cc`` (TrainInternal: ApplyL2Regularization, then
UpdateNnetWithMaxChange) and ``src/nnet3/nnet-utils.cc`` (UpdateNnetWithMaxChange).  For one
minibatch of ``B`` sequences (all ranks), effective learning rate ``eta`` and Kaldi's ``nj``
at the current data fraction, component c with learning-rate factor ``lrf_c``, l2 ``l2_c``,
max-change ``mc_c`` and direction ``D_c``::

    U_c   = -(nj * eta * lrf_c) * (D_c + 2 * l2_c * (B / nj) * theta_c)   # a Kaldi job's delta
    s_c   = min(1, mc_c / |U_c|)                                          # per-component max-change
    s     = min(1, max_param_change / sqrt(sum_c s_c^2 |U_c|^2))          # global max-param-change
    theta_c += s * s_c * U_c / nj                                         # averaging over nj jobs

(see ser.train.chain_trainer for why a sequential run applies ``U / nj``).  The two optimizers
differ only in the direction:

* :class:`KaldiSgd` (``--optimizer kaldi-sgd``): ``D_c = G_c``, the gradient of the loss summed
  over the minibatch's frames -- Kaldi's update without the natural gradient;
* :class:`KaldiAdam` (``--optimizer adam``): ``D_c`` = Adam's bias-corrected direction
  ``m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps)`` (Kingma & Ba 2015), the stand-in for Kaldi's
  natural-gradient SGD.  The l2 term is then *decoupled* weight decay (AdamW) of exactly
  Kaldi's strength (``2 l2 eta B / nj`` per sequential update); the moments are updated with
  the raw gradient whether or not the update is then clipped (clipping acts on the final
  update, as in Kaldi).

A non-finite update is skipped (nothing changes, Adam's moments included) and reported.

**Kaldi's constants under Adam** (:func:`adam_component_groups`).  Two of Kaldi's per-component
values assume a step proportional to the gradient and are translated for Adam:

* *learning-rate factors that compensate a gradient scale.*  Kaldi's ``output-xent`` factor 5 is
  ``0.5 / xent_regularize``: the xent objective is scaled by ``xent_regularize`` (0.1) and
  NG-SGD keeps that scale, so the xent branch steps ``0.1 * 5 = 0.5`` times the chain
  output's relative rate (``prefinal-xent``, factor 1: ``0.1``).  Adam's direction does not
  change when a gradient is multiplied by a constant, so the factor becomes
  ``lrf * xent_regularize`` (0.5 and 0.1) and the relative rates are Kaldi's again.
  ``kaldi-sgd`` keeps Kaldi's factors (its step scales with the gradient).
* *max-change.*  Kaldi's thresholds (0.75 per hidden component, 1.5 per output layer, 2.0
  global) are set for NG-SGD deltas; an Adam delta is ``nj * eta * lrf * |D|`` with the RMS of
  ``D`` about 0.2 per element once the moments have settled (measured on the mini recipe:
  0.12-0.37 per component) and 1 at the first update.  Under Adam every threshold is
  multiplied by ``ADAM_MAX_CHANGE_SCALE`` (2), chosen so that the schedule sets the step on
  most updates and max-change acts as Kaldi intends it, against the outsized first updates
  (README, "Max-change under Adam", has the measured fractions).
"""


from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch

logger = logging.getLogger(__name__)

__all__ = ["MaxChangeStats", "apply_with_max_change", "KaldiOptimizer", "KaldiSgd", "KaldiAdam", "OPTIMIZERS",
           "make_optimizer", "adam_component_groups", "MAX_PARAM_CHANGE", "ADAM_BETAS", "ADAM_EPSILON",
           "ADAM_MAX_CHANGE_SCALE"]

MAX_PARAM_CHANGE = 2.0  # Kaldi's --max-param-change (steps/nnet3/chain/train.py)
ADAM_BETAS = (0.9, 0.999)  # Kingma & Ba's defaults
ADAM_EPSILON = 1e-8
ADAM_MAX_CHANGE_SCALE = 2.0  # Kaldi's max-change thresholds x this under Adam (module docstring)


@dataclass
class MaxChangeStats:
    """What UpdateNnetWithMaxChange reports for one update."""

    num_components: int
    num_limited: int  # components whose max-change was active
    min_scale: float  # smallest per-component scale
    min_scale_component: str
    global_scale: float  # max-param-change scale
    applied: bool  # False when the update norm was not finite (update skipped)

    def __str__(self) -> str:
        s = f"max-change active on {self.num_limited}/{self.num_components} components"
        if self.num_limited:
            s += f" (smallest factor {self.min_scale:.3g} on {self.min_scale_component})"
        if self.global_scale < 1.0:
            s += f", global factor {self.global_scale:.3g}"
        return s


def apply_with_max_change(param_groups, deltas, norm_t: torch.Tensor, mc: torch.Tensor, mpc: float,
                          num_jobs: int, names: list[str]) -> MaxChangeStats:
    """Kaldi's UpdateNnetWithMaxChange: scale each component's job delta down to its max-change,
    then the whole update to max-param-change, and add ``delta / num_jobs`` (the model average
    of num_jobs such jobs, to first order)."""
    scale = torch.ones_like(norm_t)
    limit = (mc > 0) & (norm_t > mc)
    scale[limit] = mc[limit] / norm_t[limit]
    total = float(torch.sqrt(((scale * norm_t) ** 2).sum()))
    global_scale = 1.0
    if mpc > 0 and total > mpc:
        global_scale = mpc / total
    for group, ds, sc in zip(param_groups, deltas, scale.tolist()):
        factor = global_scale * sc / num_jobs
        for p, d in zip(group["params"], ds):
            p.add_(d, alpha=factor)
    imin = int(torch.argmin(scale))
    return MaxChangeStats(len(names), int(limit.sum()), float(scale[imin]), names[imin], global_scale, True)


class KaldiOptimizer(torch.optim.Optimizer):
    """The update of the module docstring for a direction given by :meth:`_direction`.

    Param groups are ``TdnnfModel.component_groups()`` (one per Kaldi component: params, name,
    learning_rate_factor, l2_regularize, max_change); ``step`` takes the schedule's values."""

    def __init__(self, groups: Sequence[dict[str, Any]], max_param_change: float = MAX_PARAM_CHANGE) -> None:
        defaults = dict(lr=0.0, learning_rate_factor=1.0, l2_regularize=0.0, max_change=0.0,
                        name="", orthonormal_constraint=0.0)
        super().__init__(list(groups), defaults)
        if max_param_change < 0:
            raise ValueError(f"--max-param-change must be >= 0, got {max_param_change}")
        self.max_param_change = float(max_param_change)

    # -- what the optimizers define ---------------------------------------------------------
    def _begin_step(self) -> None:
        """Called before the directions of one update are computed."""

    def _direction(self, p: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """(direction D for parameter p with gradient g (a fresh tensor), state to keep if the
        update is applied)."""
        raise NotImplementedError

    def _commit(self, pending: list[tuple[torch.Tensor, Any]]) -> None:
        """Keep the states of an update that is applied."""

    # -- the update ---------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None, *, effective_lrate: float = 0.0, num_jobs: int = 1,  # type: ignore[override]
             num_sequences: int = 1, grad_scale: float = 1.0,
             max_param_change: float | None = None) -> MaxChangeStats:
        if closure is not None:
            raise ValueError(f"{type(self).__name__}.step does not take a closure")
        mpc = self.max_param_change if max_param_change is None else max_param_change
        self._begin_step()
        deltas: list[list[torch.Tensor]] = []
        pending: list[tuple[torch.Tensor, Any]] = []
        norms = []
        for group in self.param_groups:
            lr_job = num_jobs * effective_lrate * group["learning_rate_factor"]
            group["lr"] = effective_lrate * group["learning_rate_factor"]
            l2 = 2.0 * group["l2_regularize"] * num_sequences / num_jobs
            ds = []
            for p in group["params"]:
                g = (p.grad * grad_scale) if p.grad is not None else torch.zeros_like(p)
                d, st = self._direction(p, g)
                if l2 != 0.0:
                    d = d.add(p, alpha=l2)
                ds.append(d.mul_(-lr_job))
                pending.append((p, st))
            deltas.append(ds)
            norms.append(torch.sqrt(sum((d.double() ** 2).sum() for d in ds)))
        norm_t = torch.stack(norms).cpu()
        names = [g["name"] for g in self.param_groups]
        if not bool(torch.isfinite(norm_t).all()):
            logger.warning("%s: the update has a non-finite norm; not applying it", type(self).__name__)
            return MaxChangeStats(len(names), 0, 1.0, "", 1.0, False)
        self._commit(pending)
        mc = torch.tensor([g["max_change"] for g in self.param_groups], dtype=torch.float64)
        return apply_with_max_change(self.param_groups, deltas, norm_t, mc, mpc, num_jobs, names)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        d = super().state_dict()
        d["max_param_change"] = self.max_param_change
        return d

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        state_dict = dict(state_dict)
        self.max_param_change = float(state_dict.pop("max_param_change", self.max_param_change))
        super().load_state_dict(state_dict)


class KaldiSgd(KaldiOptimizer):
    """Plain SGD (momentum 0) in Kaldi's update: the direction is the gradient.  No state."""

    def _direction(self, p: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return g, None


class KaldiAdam(KaldiOptimizer):
    """Adam's bias-corrected direction in Kaldi's update (see the module docstring)."""

    def __init__(self, groups: Sequence[dict[str, Any]], max_param_change: float = MAX_PARAM_CHANGE,
                 betas: tuple[float, float] = ADAM_BETAS, eps: float = ADAM_EPSILON) -> None:
        super().__init__(groups, max_param_change)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0) or eps <= 0:
            raise ValueError(f"Adam needs 0 <= betas < 1 and eps > 0, got {betas}, {eps}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.num_updates = 0

    def _begin_step(self) -> None:
        b1, b2 = self.betas
        t = self.num_updates + 1
        self._bias_correction = (1.0 - b1 ** t, 1.0 - b2 ** t)

    def _direction(self, p: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, Any]:
        b1, b2 = self.betas
        bc1, bc2 = self._bias_correction
        st = self.state[p]
        m_old = st["exp_avg"] if "exp_avg" in st else torch.zeros_like(p)
        v_old = st["exp_avg_sq"] if "exp_avg_sq" in st else torch.zeros_like(p)
        m = m_old * b1 + g * (1.0 - b1)
        v = v_old * b2 + g * g * (1.0 - b2)
        return (m / bc1) / ((v / bc2).sqrt() + self.eps), (m, v)

    def _commit(self, pending: list[tuple[torch.Tensor, Any]]) -> None:
        self.num_updates += 1
        for p, (m, v) in pending:
            self.state[p]["exp_avg"] = m
            self.state[p]["exp_avg_sq"] = v

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        d = super().state_dict()
        d["num_updates"] = self.num_updates
        d["betas"] = list(self.betas)
        d["eps"] = self.eps
        return d

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        state_dict = dict(state_dict)
        self.num_updates = int(state_dict.pop("num_updates", 0))
        self.betas = tuple(float(b) for b in state_dict.pop("betas", self.betas))  # type: ignore[assignment]
        self.eps = float(state_dict.pop("eps", self.eps))
        super().load_state_dict(state_dict)


OPTIMIZERS = ("adam", "kaldi-sgd")


def make_optimizer(name: str, groups: Sequence[dict[str, Any]], max_param_change: float,
                   betas: tuple[float, float], eps: float) -> KaldiOptimizer:
    """``--optimizer adam`` (KaldiAdam) or ``kaldi-sgd`` (KaldiSgd)."""
    if name == "adam":
        return KaldiAdam(groups, max_param_change, betas, eps)
    if name == "kaldi-sgd":
        return KaldiSgd(groups, max_param_change)
    raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def adam_component_groups(groups: Sequence[dict[str, Any]], gradient_scales: dict[str, float],
                          max_change_scale: float = ADAM_MAX_CHANGE_SCALE) -> list[dict[str, Any]]:
    """Kaldi's component groups translated for Adam (module docstring): the learning-rate factor of
    a component whose name starts with a key of ``gradient_scales`` is multiplied by that key's
    value (the constant the loss scales its gradient by, which Adam cancels), and every max-change
    by ``max_change_scale``.  Returns new dicts; the inputs are not changed."""
    out = []
    for g in groups:
        g = dict(g)
        for prefix, scale in gradient_scales.items():
            if g["name"].startswith(prefix):
                g["learning_rate_factor"] = g["learning_rate_factor"] * scale
        g["max_change"] = g["max_change"] * max_change_scale
        out.append(g)
    return out
