"""The fixed LDA-like input preconditioning (the ``lda`` fixed-affine layer of run_tdnn_1g).

Mirrors Kaldi's ``src/nnet2/get-feature-transform.{h,cc}`` (FeatureTransformEstimate,
used by ``nnet-get-feature-transform``), the statistics of ``src/transform/lda-estimate.cc``
(LdaEstimate::Accumulate / GetStats / AddMeanOffset), the ``fixed-affine-layer`` of
``steps/libs/nnet3/xconfig/basic_layers.py`` (FixedAffineComponent on
``Append(-1, 0, 1, ReplaceIndex(ivector, t, 0))``) and ``compute_preconditioning_matrix``
in ``steps/libs/nnet3/train/chain_objf/acoustic_model.py``.

Estimation (defaults of nnet-get-feature-transform at Kaldi HEAD: remove-offset=true,
dim=-1 i.e. no reduction, within-class-factor=0.001, max-singular-value=5), from frames x
(the spliced 220-dim network input) with class labels (pdf ids of the frames):

1. total mean mu, total covariance T, between-class covariance
   ``B = sum_c (n_c/N) mu_c mu_c^T - mu mu^T`` (classes with zero count skipped),
   within-class ``W = T - B``;
2. Cholesky ``W = L L^T`` (on failure 1e-3 * tr(W)/dim is added to the diagonal);
   SVD of ``L^-1 B L^-T = U diag(d) U^T`` (d sorted decreasing); ``A = U^T L^-1``, so
   ``A W A^T = I`` and ``A B A^T = diag(d)``;
3. keep the first ``dim`` rows, scale row i by ``sqrt((within_class_factor + d_i)/(1 + d_i))``:
   the total variance of output dim i becomes ``within_class_factor + d_i``;
4. SVD ``A = U S V^T``, ceiling S at max_singular_value, ``A = U min(S, 5) V^T``
   (the Kaldi help text says "floored" but the code applies a ceiling);
5. remove_offset: ``b = -A mu`` (Kaldi appends it as an extra column).

Fallback without labels (our choice, not a Kaldi program): ``estimate_preconditioning(x,
None)`` whitens the total covariance -- the same recipe with B = 0 and no within-class
shrinking (``A = L^-1`` with ``T = L L^T``), then the same singular-value ceiling and mean
removal.  With a single class Kaldi's recipe would instead scale every dimension by
sqrt(0.001), which would starve the first layer.

The estimate is done in float64 with torch (CPU or CUDA); LdaStats accumulates in batches
(Kaldi's ``nnet3-chain-acc-lda-stats`` with hard labels; its --rand-prune only matters for
soft posteriors and is not used).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)


class LdaStats:
    """Kaldi LdaEstimate statistics: per-class counts and sums, total sum of outer products."""

    def __init__(self, dim: int, num_classes: int, device: torch.device | str = "cpu") -> None:
        if dim <= 0 or num_classes <= 0:
            raise ValueError(f"LdaStats: bad dim {dim} or num_classes {num_classes}")
        self.dim = dim
        self.num_classes = num_classes
        self.zero_acc = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.first_acc = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)
        self.total_second_acc = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def accumulate(self, features: torch.Tensor, labels: torch.Tensor,
                   weights: torch.Tensor | None = None) -> None:
        """Add frames ``features`` [N, dim] with integer class ``labels`` [N]."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"LdaStats.accumulate: features must be [N, {self.dim}], got "
                             f"{tuple(features.shape)}")
        if labels.shape != (features.shape[0],):
            raise ValueError(f"LdaStats.accumulate: labels must be [{features.shape[0]}], got "
                             f"{tuple(labels.shape)}")
        dev = self.zero_acc.device
        x = features.to(device=dev, dtype=torch.float64)
        lab = labels.to(device=dev, dtype=torch.long)
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= self.num_classes):
            raise ValueError(f"LdaStats.accumulate: labels must lie in [0, {self.num_classes}), "
                             f"got range [{int(lab.min())}, {int(lab.max())}]")
        w = (torch.ones(x.shape[0], dtype=torch.float64, device=dev) if weights is None
             else weights.to(device=dev, dtype=torch.float64))
        self.zero_acc.index_add_(0, lab, w)
        self.first_acc.index_add_(0, lab, x * w[:, None])
        self.total_second_acc += (x * w[:, None]).T @ x

    def add(self, other: "LdaStats") -> None:
        """Sum another accumulator into this one (Kaldi sum-lda-accs)."""
        if (other.dim, other.num_classes) != (self.dim, self.num_classes):
            raise ValueError("LdaStats.add: dimension or class-count mismatch")
        self.zero_acc += other.zero_acc.to(self.zero_acc.device)
        self.first_acc += other.first_acc.to(self.zero_acc.device)
        self.total_second_acc += other.total_second_acc.to(self.zero_acc.device)

    @property
    def count(self) -> float:
        return float(self.zero_acc.sum())

    def get_stats(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total_covar, between_covar, total_mean), as Kaldi LdaEstimate::GetStats."""
        total = self.zero_acc.sum()
        if float(total) <= 0.0:
            raise ValueError("LdaStats: no data accumulated")
        mean = self.first_acc.sum(0) / total
        total_covar = self.total_second_acc / total - torch.outer(mean, mean)
        used = self.zero_acc != 0
        class_means = self.first_acc[used] / self.zero_acc[used, None]
        between = (class_means * (self.zero_acc[used, None] / total)).T @ class_means
        between = between - torch.outer(mean, mean)
        return total_covar, between, mean

    def estimate(self, within_class_factor: float = 0.001, max_singular_value: float = 5.0,
                 remove_offset: bool = True, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """Kaldi FeatureTransformEstimate::Estimate -> (W [dim, in_dim], b [dim]) float64."""
        total_covar, between, mean = self.get_stats()
        return _estimate_internal(total_covar, between, mean, within_class_factor,
                                  max_singular_value, remove_offset, dim)


def _cholesky_with_smoothing(w: torch.Tensor) -> torch.Tensor:
    chol, info = torch.linalg.cholesky_ex(w)
    if int(info) != 0:
        smooth = 1.0e-3 * float(torch.diagonal(w).sum()) / w.shape[0]
        logger.info("Cholesky failed (possibly not +ve definite), so adding %g to diagonal "
                    "and trying again.", smooth)
        w = w + smooth * torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
        chol, info = torch.linalg.cholesky_ex(w)
        if int(info) != 0:
            raise RuntimeError("preconditioning: within-class covariance is not positive "
                               "definite even after smoothing (constant or too few frames?)")
    return chol


def _ceiling_and_offset(m: torch.Tensor, mean: torch.Tensor, max_singular_value: float,
                        remove_offset: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if max_singular_value > 0.0:
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        n = int((s > max_singular_value).sum())
        if n > 0:
            logger.info("Applied ceiling to %d out of %d singular values of transform using "
                        "ceiling %g, max is %g", n, s.numel(), max_singular_value, float(s.max()))
            m = (u * s.clamp(max=max_singular_value)) @ vh
    bias = -(m @ mean) if remove_offset else torch.zeros(m.shape[0], dtype=m.dtype,
                                                        device=m.device)
    return m, bias


def _estimate_internal(total_covar: torch.Tensor, between: torch.Tensor, mean: torch.Tensor,
                       within_class_factor: float, max_singular_value: float,
                       remove_offset: bool, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    full_dim = total_covar.shape[0]
    target_dim = full_dim if dim <= 0 else dim
    if target_dim > full_dim:
        raise ValueError(f"preconditioning: dim {dim} > input dim {full_dim}")
    within = total_covar - between
    chol = _cholesky_with_smoothing(within)
    eye = torch.eye(full_dim, dtype=chol.dtype, device=chol.device)
    chol_inv = torch.linalg.solve_triangular(chol, eye, upper=False)
    tmp = chol_inv @ between @ chol_inv.T
    tmp = 0.5 * (tmp + tmp.T)
    u, d, _ = torch.linalg.svd(tmp)  # singular values sorted decreasing (Kaldi SortSvd)
    logger.info("LDA singular values: %d, from %.4g to %.4g", d.numel(), float(d.max()), float(d.min()))
    m = (u.T @ chol_inv)[:target_dim]
    if within_class_factor != 1.0:
        scale = torch.sqrt((within_class_factor + d) / (1.0 + d))[:target_dim]
        m = m * scale[:, None]
    return _ceiling_and_offset(m, mean, max_singular_value, remove_offset)


def estimate_preconditioning(features: torch.Tensor, labels: torch.Tensor | None,
                             within_class_factor: float = 0.001,
                             max_singular_value: float = 5.0, remove_offset: bool = True,
                             dim: int = -1, num_classes: int | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The preconditioning transform from frames ``features`` [N, D] and pdf ``labels`` [N].

    Returns ``(W, b)`` (float64, W [dim, D], b [dim]) such that the layer computes
    ``W x + b``.  ``labels=None`` selects the documented whitening fallback.
    """
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"estimate_preconditioning: features must be [N >= 2, D], got "
                         f"{tuple(features.shape)}")
    if labels is None:
        x = features.to(torch.float64)
        mean = x.mean(0)
        xc = x - mean
        total_covar = xc.T @ xc / x.shape[0]
        chol = _cholesky_with_smoothing(total_covar)
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        m = torch.linalg.solve_triangular(chol, eye, upper=False)
        if dim > 0:
            m = m[:dim]
        return _ceiling_and_offset(m, mean, max_singular_value, remove_offset)
    n_cls = int(labels.max()) + 1 if num_classes is None else num_classes
    stats = LdaStats(features.shape[1], n_cls, device=features.device)
    stats.accumulate(features, labels)
    return stats.estimate(within_class_factor, max_singular_value, remove_offset, dim)


def check_splice_offsets(offsets: Sequence[int]) -> tuple[int, int]:
    """(first offset, spacing) of an increasing arithmetic progression of time offsets."""
    offs = list(offsets)
    if not offs:
        raise ValueError("time offsets must not be empty")
    if len(offs) == 1:
        return offs[0], 1
    step = offs[1] - offs[0]
    if step <= 0 or any(b - a != step for a, b in zip(offs, offs[1:])):
        raise ValueError(f"time offsets {offs} must be an increasing arithmetic progression")
    return offs[0], step


def splice_input(x: torch.Tensor, ivector: torch.Tensor | None,
                 offsets: Sequence[int] = (-1, 0, 1)) -> torch.Tensor:
    """Kaldi ``Append(x[t+o] for o in offsets, ivector)`` for every t with full context.

    x [B, T, F]; ivector [B, I] (one per chunk, ReplaceIndex(ivector, t, 0)), [B, T, I]
    (per frame) or None.  Returns [B, T - (max-min offset), len(offsets)*F + I]: row j is
    time ``j - min(offsets)``.  This is the input of the ``lda`` layer (use it to collect
    LdaStats).
    """
    if x.dim() != 3:
        raise ValueError(f"splice_input: x must be [B, T, F], got {tuple(x.shape)}")
    lo, hi = min(offsets), max(offsets)
    t_out = x.shape[1] - (hi - lo)
    if t_out <= 0:
        raise ValueError(f"splice_input: {x.shape[1]} frames are fewer than the splice "
                         f"width {hi - lo + 1}")
    pieces = [x[:, o - lo:o - lo + t_out] for o in offsets]
    if ivector is not None:
        if ivector.dim() == 2:
            pieces.append(ivector[:, None, :].expand(-1, t_out, -1))
        else:
            pieces.append(ivector[:, -lo:-lo + t_out])
    return torch.cat(pieces, dim=-1)


class FixedAffineSplice(nn.Module):
    """The ``lda`` layer: FixedAffineComponent on Append(offsets of the MFCC, the i-vector).

    The transform (buffers ``weight`` [out, in], ``bias`` [out]; not trained, not counted as
    parameters) starts as the identity and is set with :meth:`set_transform` or
    :meth:`set_kaldi_matrix`.  It is computed as a conv1d over the MFCC part plus a
    per-sequence (or per-frame) bias from the i-vector part, so the 220-dim spliced input is
    never materialised.  Input [B, F, T] -> output [B, out, ceil((T - ctx)/out_step)].
    """

    def __init__(self, feat_dim: int, ivector_dim: int, offsets: Sequence[int] = (-1, 0, 1),
                 output_dim: int | None = None) -> None:
        super().__init__()
        _, spacing = check_splice_offsets(offsets)
        self.feat_dim = feat_dim
        self.ivector_dim = ivector_dim
        self.offsets = tuple(offsets)
        self.spacing = spacing
        self.input_dim = feat_dim * len(self.offsets) + ivector_dim
        self.output_dim = self.input_dim if output_dim is None else output_dim
        eye = torch.eye(self.output_dim, self.input_dim)
        self.register_buffer("weight", eye)
        self.register_buffer("bias", torch.zeros(self.output_dim))
        self.input_period = 1
        self.out_step = 1

    @property
    def context(self) -> tuple[int, int]:
        return -min(self.offsets), max(self.offsets)

    def all_time_offsets(self) -> tuple[int, ...]:
        return self.offsets

    def configure(self, input_period: int, out_step: int) -> None:
        """Frame plan (set by the model): input frame period and output step."""
        if self.spacing % input_period:
            raise ValueError(f"splice spacing {self.spacing} is not a multiple of the input "
                             f"period {input_period}")
        self.input_period = input_period
        self.out_step = out_step

    @torch.no_grad()
    def set_transform(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        if tuple(weight.shape) != (self.output_dim, self.input_dim) or \
                tuple(bias.shape) != (self.output_dim,):
            raise ValueError(f"lda transform must be [{self.output_dim}, {self.input_dim}] + "
                             f"[{self.output_dim}], got {tuple(weight.shape)} + "
                             f"{tuple(bias.shape)}")
        self.weight.copy_(weight.to(self.weight.dtype))
        self.bias.copy_(bias.to(self.bias.dtype))

    def set_kaldi_matrix(self, matrix: torch.Tensor) -> None:
        """A Kaldi lda.mat: [out, in + 1] (last column = offset) or [out, in]."""
        if matrix.dim() == 2 and matrix.shape[1] == self.input_dim + 1:
            self.set_transform(matrix[:, :-1], matrix[:, -1])
        else:
            self.set_transform(matrix, torch.zeros(matrix.shape[0], dtype=matrix.dtype))

    def forward(self, x: torch.Tensor, ivector: torch.Tensor | None) -> torch.Tensor:
        k = len(self.offsets)
        f = self.feat_dim
        dil = self.spacing // self.input_period
        w_x = self.weight[:, :f * k].reshape(self.output_dim, k, f).transpose(1, 2)
        y = F.conv1d(x, w_x.to(x.dtype), None, stride=self.out_step, dilation=dil)
        bias = self.bias.to(x.dtype)
        if self.ivector_dim == 0:
            return y + bias[None, :, None]
        if ivector is None:
            raise ValueError("lda layer: this model needs an i-vector input")
        w_i = self.weight[:, f * k:].to(x.dtype)
        if ivector.dim() == 2:
            return y + (F.linear(ivector, w_i, bias))[:, :, None]
        left = -min(self.offsets) // self.input_period
        iv = ivector[:, left:left + self.out_step * (y.shape[2] - 1) + 1:self.out_step]
        return y + F.linear(iv, w_i, bias).transpose(1, 2)
