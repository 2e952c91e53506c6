"""The TED-LIUM ``tdnn_1g`` chain network (TDNN-F) in PyTorch, layers addressable by Kaldi name.

Mirrors the xconfig of ``egs/tedlium/s5_r2/local/chain/tuning/run_tdnn_1g.sh`` as expanded by
``steps/libs/nnet3/xconfig/{basic_layers,composite_layers,trivial_layers}.py``, with the
components of ``src/nnet3/nnet-tdnn-component.cc`` (TdnnComponent),
``src/nnet3/nnet-simple-component.cc`` (NaturalGradientAffineComponent, LinearComponent,
RectifiedLinearComponent, LogSoftmaxComponent), ``src/nnet3/nnet-normalize-component.cc``
(BatchNormComponent), ``src/nnet3/nnet-general-component.h`` (GeneralDropoutComponent, see
``ser.nnet.dropout``) and ``src/nnet3/nnet-utils.cc`` (ScaleBatchnormStats).

Network (paper config; every width is a TdnnfConfig field, ``TdnnfConfig.mini`` shrinks them)::

    lda            FixedAffine(Append(x[t-1], x[t], x[t+1], ivector)) 220 -> 220 (ser.nnet.preconditioning)
    tdnn1          affine 220->1024, ReLU, BatchNorm, GeneralDropout(continuous)
    tdnnf2..13     linear 1024->128 (no bias, offsets -s,0, orthonormal-constraint -1)
                   -> affine 128->1024 (offsets 0,+s) -> ReLU -> BatchNorm -> dropout;
                   output = 0.66 * input + that; s = 1,1,1,0,3,3,3,3,3,3,3,3
    prefinal-l     linear 1024->256, no bias, orthonormal-constraint -1
    prefinal-chain affine 256->1024, ReLU, BatchNorm(1024), linear 1024->256 (orth. -1), BatchNorm(256)
    output         affine 256->num_pdfs, zero init, no log-softmax
    prefinal-xent  as prefinal-chain
    output-xent    affine 256->num_pdfs, zero init, log-softmax, learning-rate-factor 5

Parameter names follow Kaldi component names: ``layers.tdnnf7.linear.weight`` is Kaldi's
``tdnnf7.linear``; ``layers.prefinal-l.weight`` is ``prefinal-l``.  With num_pdfs = 3600 the
model has 9,431,072 trainable parameters (Kaldi's "num-params"; lda and BatchNorm hold none).

Initialisation (Kaldi): TdnnComponent / LinearComponent / NaturalGradientAffineComponent
weights ~ N(0, 1/(input_dim * num_offsets)), biases ~ N(0, 1); output layers all zero.

Time handling.  Tensors are [B, T, D] at the interface and [B, C, T] (contiguous, conv1d)
inside; there is no padding anywhere: like Kaldi, only the frames an output needs are
computed.  The model context is derived from the layer offsets (28/28 here).  An input chunk
of T_in frames whose frame i is time ``i - left_context`` yields
``n = ceil((T_in - left_context - right_context) / frame_subsampling_factor)`` output frames,
output k being time ``k * frame_subsampling_factor`` (Kaldi's chain output indexes
t = 0, 3, 6, ...).  Input frames beyond time ``(n-1)*fsf + right_context`` are not used (for
T_in = T + 56 with T a multiple of 3 these are the last 2 frames).  Within the network:

* layers before the last layer with an offset that is not a multiple of fsf run at the full
  frame rate, on exactly the frames Kaldi computes (e.g. tdnn1 on times -27..T+24);
* that layer (tdnnf4) computes its affine part with conv stride fsf, i.e. only at times
  t = 0 mod 3 (its linear part and bypass are full rate), and every later layer runs on the
  3x-subsampled sequence, a stride-3 TDNN-F becoming a dilation-1 conv there.

So every BatchNorm sees, in training, exactly the frames Kaldi's computation would give it
(tdnnf4..13 see the t = 0 mod 3 frames only).  Layer outputs requested by name are returned
at the n output frames (times 0, fsf, ...), [B, n, dim].

BatchNorm (Kaldi BatchNormComponent): no learnable scale/offset, epsilon 1e-3, target-rms 1;
training mode normalises with the minibatch mean and (biased) variance over all B x T frames
and adds count / sum / sum of squares to float64 stats buffers; :meth:`TdnnfModel.scale_batchnorm_stats`
(Kaldi ScaleBatchnormStats with --batchnorm-stats-scale 0.8) is to be called by the trainer
after every minibatch, so the stored stats are a 0.8-decayed sum; eval mode (Kaldi test mode)
normalises with ``mean = sum/count``, ``var = sumsq/count - mean^2``.  With ``sync_ranks`` set
(the emotion trainer under DDP) training mode uses the statistics of the frames of ALL ranks
(count, sum, sum of squares all-reduced, with the gradient through the all-reduce, as
``torch.nn.SyncBatchNorm``), so N ranks normalise and store as one process does on the union
of their minibatches; the chain trainer leaves it off (each Kaldi job normalises alone).

Deviations from Kaldi (the trainer handles the rest):
* natural-gradient updates, max-change, l2-regularize and learning-rate factors are not done
  here; each trainable component carries its Kaldi values (``component_groups()``) for the
  optimizer;
* ReLU self-repair (self-repair-scale 1e-5) is not implemented;
* a BatchNorm in eval mode with no stored stats normalises with the minibatch statistics (and
  logs a warning once) where Kaldi would invent random stats;
* i-vectors may also be given per frame ([B, T_in, I]); Kaldi uses one per chunk.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ser.ddp import all_reduce_with_grad
from ser.nnet.dropout import GeneralDropout
from ser.nnet.preconditioning import FixedAffineSplice, check_splice_offsets

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------
# mixed precision


def full_precision(x: torch.Tensor) -> torch.autocast:
    """Autocast switched off on ``x``'s device: the precision policy of the network under bf16
    autocast (the trainer's on CUDA) keeps the output layers (chain and xent, whose values reach
    +-30 and feed the objectives) and the BatchNorm statistics and normalisation in float32; the
    TDNN-F body's affine and linear components run in bfloat16."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 unless it is float32 or float64 already."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


# ----------------------------------------------------------------------------------------
# configuration


@dataclass
class TdnnfConfig:
    """Sizes and options of the tdnn_1g network (Kaldi xconfig names in comments)."""

    feat_dim: int = 40                      # input dim=40 name=input
    ivector_dim: int = 100                  # input dim=100 name=ivector (0: no i-vector)
    splice_offsets: tuple[int, ...] = (-1, 0, 1)   # Append(-1,0,1,ReplaceIndex(ivector,t,0))
    lda_dim: int = 0                        # output dim of the fixed lda layer; 0: its input dim (Kaldi's
                                            # square lda.mat); a body whose i-vector input was removed
                                            # keeps its pretrained 220 (ser.emotion.graft.without_ivector_input)
    tdnn_dim: int = 1024                    # tdnn1 dim
    tdnnf_dim: int = 1024                   # tdnnf-layer dim
    bottleneck_dim: int = 128               # tdnnf-layer bottleneck-dim
    time_strides: tuple[int, ...] = (1, 1, 1, 0, 3, 3, 3, 3, 3, 3, 3, 3)  # tdnnf2..13
    bypass_scale: float = 0.66              # tdnnf bypass-scale
    prefinal_l_dim: int = 256               # linear-component name=prefinal-l dim
    prefinal_big_dim: int = 1024            # prefinal-layer big-dim
    prefinal_small_dim: int = 256           # prefinal-layer small-dim
    num_pdfs: int = 3600                    # output-layer dim=$num_targets
    frame_subsampling_factor: int = 3
    xent_learning_rate_factor: float = 5.0  # 0.5 / xent_regularize
    hidden_l2_regularize: float = 0.008     # affine/tdnnf/linear/prefinal opts
    output_l2_regularize: float = 0.002     # output_opts
    hidden_max_change: float = 0.75
    output_max_change: float = 1.5
    orthonormal_constraint: float = -1.0    # linear_opts orthonormal-constraint
    batchnorm_epsilon: float = 1.0e-3
    batchnorm_target_rms: float = 1.0
    dropout_per_dim_continuous: bool = True

    def __post_init__(self) -> None:
        self.splice_offsets = tuple(int(o) for o in self.splice_offsets)
        self.time_strides = tuple(int(s) for s in self.time_strides)
        if self.frame_subsampling_factor < 1:
            raise ValueError("frame_subsampling_factor must be >= 1")
        if any(s < 0 for s in self.time_strides):
            raise ValueError(f"time strides must be >= 0, got {self.time_strides}")
        if self.lda_dim < 0:
            raise ValueError(f"lda_dim must be >= 0 (0: the spliced input's dim), got {self.lda_dim}")
        check_splice_offsets(self.splice_offsets)

    @classmethod
    def tdnn_1g(cls, num_pdfs: int = 3600, **overrides: Any) -> "TdnnfConfig":
        """The run_tdnn_1g.sh network (the dataclass defaults)."""
        return cls(num_pdfs=num_pdfs, **overrides)

    @classmethod
    def mini(cls, num_pdfs: int, **overrides: Any) -> "TdnnfConfig":
        """Same 13-layer architecture, widths 256 / bottleneck 32 / prefinal 256->64."""
        base = dict(tdnn_dim=256, tdnnf_dim=256, bottleneck_dim=32, prefinal_l_dim=64,
                    prefinal_big_dim=256, prefinal_small_dim=64)
        base.update(overrides)
        return cls(num_pdfs=num_pdfs, **base)

    @classmethod
    def tiny(cls, num_pdfs: int, **overrides: Any) -> "TdnnfConfig":
        """Same 13-layer architecture, widths 32 / bottleneck 8 / prefinal 32->16: for the interruption
        tests of the whole recipe (it learns little; the code paths are the paper network's)."""
        return cls.mini(num_pdfs, **{**dict(tdnn_dim=32, tdnnf_dim=32, bottleneck_dim=8, prefinal_l_dim=16,
                                          prefinal_big_dim=32, prefinal_small_dim=16), **overrides})

    @classmethod
    def preset(cls, name: str, num_pdfs: int, **overrides: Any) -> "TdnnfConfig":
        """``tiny`` | ``mini`` | ``tdnn_1g`` (the ``--net`` / ``chain.net`` values)."""
        if name not in NET_PRESETS:
            raise ValueError(f"unknown network {name!r} (known: {', '.join(NET_PRESETS)})")
        return getattr(cls, name)(num_pdfs, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["splice_offsets"] = list(self.splice_offsets)
        d["time_strides"] = list(self.time_strides)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TdnnfConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TdnnfConfig option(s): {sorted(unknown)}")
        return cls(**d)


NET_PRESETS = ("tiny", "mini", "tdnn_1g")


# ----------------------------------------------------------------------------------------
# components


class TdnnComponent(nn.Module):
    """Kaldi TdnnComponent / LinearComponent / (NaturalGradient)AffineComponent on [B, C, T].

    ``time_offsets`` is an increasing arithmetic progression (``(0,)`` = no splicing).  The
    weight is [out, in, num_offsets] (conv1d layout; Kaldi's linear_params_ is
    [out, num_offsets*in] with offset-major columns).  ``input_period`` (the frame period of
    the input sequence, 1 or fsf) and ``out_step`` (compute every out_step-th output) are set
    by the model's frame plan.  Output index j uses input indices
    ``j*out_step + (o - min(offsets))/input_period`` for each offset o.
    """

    def __init__(self, input_dim: int, output_dim: int, time_offsets: Sequence[int] = (0,),
                 use_bias: bool = True, orthonormal_constraint: float = 0.0,
                 l2_regularize: float = 0.0, max_change: float = 0.75,
                 learning_rate_factor: float = 1.0, param_stddev: float | None = None,
                 bias_stddev: float = 1.0, component_name: str = "",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _, spacing = check_splice_offsets(time_offsets)
        self.time_offsets = tuple(int(o) for o in time_offsets)
        self.spacing = spacing
        self.input_dim = input_dim
        self.output_dim = output_dim
        k = len(self.time_offsets)
        if param_stddev is None:
            param_stddev = 1.0 / math.sqrt(input_dim * k)
        self.weight = nn.Parameter(torch.empty(output_dim, input_dim, k))
        self.bias = nn.Parameter(torch.empty(output_dim)) if use_bias else None
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0, generator=generator).mul_(param_stddev)
            if self.bias is not None:
                self.bias.normal_(0.0, 1.0, generator=generator).mul_(bias_stddev)
        self.orthonormal_constraint = float(orthonormal_constraint)
        self.l2_regularize = float(l2_regularize)
        self.max_change = float(max_change)
        self.learning_rate_factor = float(learning_rate_factor)
        self.component_name = component_name
        self.input_period = 1
        self.out_step = 1

    @property
    def context(self) -> tuple[int, int]:
        return -min(self.time_offsets), max(self.time_offsets)

    def constrained_matrix(self) -> torch.Tensor:
        """[out, in*num_offsets] view of the weight, for the orthonormal constraint."""
        return self.weight.view(self.output_dim, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.time_offsets) == 1:
            dilation = 1
        else:
            if self.spacing % self.input_period:
                raise RuntimeError(f"{self.component_name}: offset spacing {self.spacing} is not "
                                   f"a multiple of the input period {self.input_period}")
            dilation = self.spacing // self.input_period
        return F.conv1d(x, self.weight, self.bias, stride=self.out_step, dilation=dilation)

    def extra_repr(self) -> str:
        return (f"{self.input_dim} -> {self.output_dim}, time_offsets={self.time_offsets}, "
                f"bias={self.bias is not None}, orthonormal_constraint="
                f"{self.orthonormal_constraint}")


class KaldiBatchNorm(nn.Module):
    """Kaldi BatchNormComponent on [B, C, T] (no learnable parameters); see module docstring."""

    def __init__(self, dim: int, epsilon: float = 1.0e-3, target_rms: float = 1.0,
                 component_name: str = "") -> None:
        super().__init__()
        self.dim = dim
        self.epsilon = float(epsilon)
        self.target_rms = float(target_rms)
        self.component_name = component_name
        self.register_buffer("stats_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("stats_sum", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("stats_sumsq", torch.zeros(dim, dtype=torch.float64))
        self._warned = False
        self.sync_ranks = False  # training statistics over all DDP ranks (module docstring)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        """Keep the stats in float64 through ``.half()`` / ``.float()`` / ``.to(dtype)`` (a
        0.8-decayed frame count reaches ~1e5, beyond float16); device moves still apply."""
        super()._apply(fn, recurse)
        for name in ("stats_count", "stats_sum", "stats_sumsq"):
            buf = getattr(self, name)
            if buf.dtype != torch.float64:
                setattr(self, name, buf.to(torch.float64))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.dim:
            raise ValueError(f"{self.component_name}: expected [B, {self.dim}, T], got "
                             f"{tuple(x.shape)}")
        with full_precision(x):  # statistics and normalisation in float32 under bf16 autocast
            return self._forward(_fp32(x))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and float(self.stats_count) <= 0.0:
            if not self._warned:
                logger.warning("%s: eval mode but no stored batchnorm stats; using minibatch "
                               "statistics", self.component_name)
                self._warned = True
            return self._train_forward(x, store=False)
        if self.training:
            return self._synced_train_forward(x) if self.sync_ranks else self._train_forward(x, store=True)
        mean, var = self.stored_mean_var()
        y = F.batch_norm(x, mean.to(x.dtype), var.to(x.dtype), None, None, False, 0.0,
                         self.epsilon)
        return y * self.target_rms if self.target_rms != 1.0 else y

    def _train_forward(self, x: torch.Tensor, store: bool) -> torch.Tensor:
        c = self.dim
        run_mean = torch.zeros(c, dtype=x.dtype, device=x.device)
        run_var = torch.zeros(c, dtype=x.dtype, device=x.device)
        # momentum 1: run_mean <- batch mean, run_var <- unbiased batch variance.
        y = F.batch_norm(x, run_mean, run_var, None, None, True, 1.0, self.epsilon)
        if store:
            with torch.no_grad():
                n = x.numel() // c
                sd = self.stats_sum.dtype
                mean = run_mean.to(sd)
                var = run_var.to(sd) * ((n - 1) / n)
                self.stats_count += n
                self.stats_sum += n * mean
                self.stats_sumsq += n * (var + mean * mean)
        return y * self.target_rms if self.target_rms != 1.0 else y

    def _synced_train_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training mode with the count / sum / sum of squares of every rank's frames (float64;
        a rank may have none); one all-reduce, differentiable (its backward all-reduces the
        gradient of the sums)."""
        c = self.dim
        xd = x.to(torch.float64)
        local = torch.cat([xd.sum(dim=(0, 2)), (xd * xd).sum(dim=(0, 2)),
                           xd.new_full((1,), float(x.numel() // c))])
        tot = all_reduce_with_grad(local)
        n = tot[2 * c]
        mean = tot[:c] / n
        var = (tot[c:2 * c] / n - mean * mean).clamp(min=0.0)
        scale = torch.rsqrt(var + self.epsilon) * self.target_rms
        y = (xd - mean[None, :, None]) * scale[None, :, None]
        with torch.no_grad():
            self.stats_count += n.detach()
            self.stats_sum += tot[:c].detach()
            self.stats_sumsq += tot[c:2 * c].detach()
        return y.to(x.dtype)

    def stored_mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, variance) from the stored stats (Kaldi ComputeDerived)."""
        count = self.stats_count
        mean = self.stats_sum / count
        var = (self.stats_sumsq / count - mean * mean).clamp(min=0.0)
        return mean, var

    @torch.no_grad()
    def scale_stats(self, scale: float) -> None:
        """Kaldi BatchNormComponent::Scale (0 zeroes the stats)."""
        if scale == 0.0:
            self.stats_count.zero_()
            self.stats_sum.zero_()
            self.stats_sumsq.zero_()
        else:
            self.stats_count.mul_(scale)
            self.stats_sum.mul_(scale)
            self.stats_sumsq.mul_(scale)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, epsilon={self.epsilon}, target_rms={self.target_rms}"


# ----------------------------------------------------------------------------------------
# layers (one per xconfig line); each maps [B, C, T] -> [B, C', T']


class _Layer(nn.Module):
    """Common interface: ``context`` (left, right), ``time_offsets`` (all offsets used, to
    plan subsampling) and ``configure(input_period, out_step)``."""

    context: tuple[int, int] = (0, 0)

    def all_time_offsets(self) -> tuple[int, ...]:
        return (0,)

    def configure(self, input_period: int, out_step: int) -> None:
        self.input_period = input_period
        self.out_step = out_step


class ReluBatchNormDropoutLayer(_Layer):
    """xconfig relu-batchnorm-dropout-layer (tdnn1): affine, ReLU, BatchNorm, dropout."""

    def __init__(self, name: str, input_dim: int, dim: int, cfg: TdnnfConfig,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.affine = TdnnComponent(input_dim, dim, (0,), True, 0.0, cfg.hidden_l2_regularize,
                                    cfg.hidden_max_change, component_name=f"{name}.affine",
                                    generator=generator)
        self.batchnorm = KaldiBatchNorm(dim, cfg.batchnorm_epsilon, cfg.batchnorm_target_rms,
                                        f"{name}.batchnorm")
        self.dropout = GeneralDropout(dim, 0.0, cfg.dropout_per_dim_continuous,
                                      f"{name}.dropout")
        self.output_dim = dim

    def configure(self, input_period: int, out_step: int) -> None:
        super().configure(input_period, out_step)
        self.affine.input_period, self.affine.out_step = input_period, out_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.batchnorm(F.relu(self.affine(x))))


class TdnnfLayer(_Layer):
    """xconfig tdnnf-layer: factored TDNN with bypass (see module docstring)."""

    def __init__(self, name: str, input_dim: int, dim: int, bottleneck_dim: int,
                 time_stride: int, cfg: TdnnfConfig,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        s = time_stride
        offs1, offs2 = ((-s, 0), (0, s)) if s != 0 else ((0,), (0,))
        l2, mc = cfg.hidden_l2_regularize, cfg.hidden_max_change
        self.linear = TdnnComponent(input_dim, bottleneck_dim, offs1, False,
                                    cfg.orthonormal_constraint, l2, mc,
                                    component_name=f"{name}.linear", generator=generator)
        self.affine = TdnnComponent(bottleneck_dim, dim, offs2, True, 0.0, l2, mc,
                                    component_name=f"{name}.affine", generator=generator)
        self.batchnorm = KaldiBatchNorm(dim, cfg.batchnorm_epsilon, cfg.batchnorm_target_rms,
                                        f"{name}.batchnorm")
        self.dropout = GeneralDropout(dim, 0.0, cfg.dropout_per_dim_continuous,
                                      f"{name}.dropout")
        self.time_stride = s
        self.bypass_scale = cfg.bypass_scale if input_dim == dim else 0.0
        self.context = (s, s)
        self.output_dim = dim
        self.input_period = 1
        self.out_step = 1

    def all_time_offsets(self) -> tuple[int, ...]:
        return (-self.time_stride, 0, self.time_stride)

    def configure(self, input_period: int, out_step: int) -> None:
        if self.time_stride % input_period:
            raise ValueError(f"time stride {self.time_stride} is not a multiple of the input "
                             f"period {input_period}")
        super().configure(input_period, out_step)
        self.linear.input_period, self.linear.out_step = input_period, 1
        self.affine.input_period, self.affine.out_step = input_period, out_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.batchnorm(F.relu(self.affine(self.linear(x)))))
        if self.bypass_scale == 0.0:
            return y
        left = self.time_stride // self.input_period
        step = self.out_step
        skip = x[:, :, left:left + step * (y.shape[2] - 1) + 1:step]
        return y + self.bypass_scale * skip


class LinearLayer(_Layer):
    """xconfig linear-component (prefinal-l): LinearComponent, no bias."""

    def __init__(self, name: str, input_dim: int, dim: int, cfg: TdnnfConfig,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.linear = TdnnComponent(input_dim, dim, (0,), False, cfg.orthonormal_constraint,
                                    cfg.hidden_l2_regularize, cfg.hidden_max_change,
                                    component_name=name, generator=generator)
        self.output_dim = dim

    def configure(self, input_period: int, out_step: int) -> None:
        super().configure(input_period, out_step)
        self.linear.input_period, self.linear.out_step = input_period, out_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class PrefinalLayer(_Layer):
    """xconfig prefinal-layer: affine, ReLU, batchnorm1, linear (orthonormal), batchnorm2."""

    def __init__(self, name: str, input_dim: int, big_dim: int, small_dim: int,
                 cfg: TdnnfConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        l2, mc = cfg.hidden_l2_regularize, cfg.hidden_max_change
        eps, rms = cfg.batchnorm_epsilon, cfg.batchnorm_target_rms
        self.affine = TdnnComponent(input_dim, big_dim, (0,), True, 0.0, l2, mc,
                                    component_name=f"{name}.affine", generator=generator)
        self.batchnorm1 = KaldiBatchNorm(big_dim, eps, rms, f"{name}.batchnorm1")
        self.linear = TdnnComponent(big_dim, small_dim, (0,), False, cfg.orthonormal_constraint,
                                    l2, mc, component_name=f"{name}.linear", generator=generator)
        self.batchnorm2 = KaldiBatchNorm(small_dim, eps, rms, f"{name}.batchnorm2")
        self.output_dim = small_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.batchnorm2(self.linear(self.batchnorm1(F.relu(self.affine(x)))))


class OutputLayer(_Layer):
    """xconfig output-layer: affine with zero init (param-stddev=0 bias-stddev=0), optional
    log-softmax.  Returns [B, T, num_pdfs] (contiguous)."""

    def __init__(self, name: str, input_dim: int, dim: int, include_log_softmax: bool,
                 learning_rate_factor: float, cfg: TdnnfConfig) -> None:
        super().__init__()
        self.affine = TdnnComponent(input_dim, dim, (0,), True, 0.0, cfg.output_l2_regularize,
                                    cfg.output_max_change, learning_rate_factor,
                                    param_stddev=0.0, bias_stddev=0.0,
                                    component_name=f"{name}.affine")
        self.include_log_softmax = include_log_softmax
        self.learning_rate_factor = float(learning_rate_factor)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x):  # outputs reach +-30: float32 under bf16 autocast
            w = self.affine.weight[:, :, 0]
            y = F.linear(_fp32(x.transpose(1, 2)), _fp32(w), _fp32(self.affine.bias))
            return F.log_softmax(y, dim=-1) if self.include_log_softmax else y


# ----------------------------------------------------------------------------------------
# the model

OUTPUT_NAMES = ("output", "output-xent")


class TdnnfModel(nn.Module):
    """The tdnn_1g TDNN-F acoustic model.

    ``forward(x, ivector, return_layers=(), outputs=("output", "output-xent"))``:
    x [B, T_in, feat_dim] MFCC with ``left_context``/``right_context`` frames of context,
    ivector [B, ivector_dim] (one per chunk), [B, T_in, ivector_dim] or None (ivector_dim 0).
    Returns a dict: ``output`` [B, n, num_pdfs] (raw), ``output-xent`` [B, n, num_pdfs]
    (log-softmax), plus each name in ``return_layers`` -> [B, n, layer dim], all at output
    times 0, fsf, ..., (n-1)*fsf (see module docstring).
    """

    def __init__(self, config: TdnnfConfig | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else TdnnfConfig()
        self.config = cfg
        g = generator
        layers: dict[str, _Layer | FixedAffineSplice] = {}
        layers["lda"] = FixedAffineSplice(cfg.feat_dim, cfg.ivector_dim, cfg.splice_offsets, cfg.lda_dim or None)
        layers["tdnn1"] = ReluBatchNormDropoutLayer("tdnn1", layers["lda"].output_dim,
                                                    cfg.tdnn_dim, cfg, g)
        prev = cfg.tdnn_dim
        for i, s in enumerate(cfg.time_strides):
            name = f"tdnnf{i + 2}"
            layers[name] = TdnnfLayer(name, prev, cfg.tdnnf_dim, cfg.bottleneck_dim, s, cfg, g)
            prev = cfg.tdnnf_dim
        layers["prefinal-l"] = LinearLayer("prefinal-l", prev, cfg.prefinal_l_dim, cfg, g)
        for out_name, pre_name, log_softmax, lrf in (
                ("output", "prefinal-chain", False, 1.0),
                ("output-xent", "prefinal-xent", True, cfg.xent_learning_rate_factor)):
            layers[pre_name] = PrefinalLayer(pre_name, cfg.prefinal_l_dim, cfg.prefinal_big_dim,
                                             cfg.prefinal_small_dim, cfg, g)
            layers[out_name] = OutputLayer(out_name, cfg.prefinal_small_dim, cfg.num_pdfs,
                                           log_softmax, lrf, cfg)
        self.layers = nn.ModuleDict(layers)
        self.trunk_names: tuple[str, ...] = (
            ("lda", "tdnn1") + tuple(f"tdnnf{i + 2}" for i in range(len(cfg.time_strides)))
            + ("prefinal-l",))
        self.branch_names: dict[str, tuple[str, ...]] = {
            "output": ("prefinal-chain", "output"),
            "output-xent": ("prefinal-xent", "output-xent")}
        self._plan_frames()

    # -- context and frame plan -----------------------------------------------------------

    def _plan_frames(self) -> None:
        fsf = self.config.frame_subsampling_factor
        trunk = [self.layers[n] for n in self.trunk_names]
        divisible = [all(o % fsf == 0 for o in layer.all_time_offsets()) for layer in trunk]
        # first layer after which every layer's offsets are multiples of fsf
        first_sub = len(trunk) - 1
        while first_sub > 0 and divisible[first_sub]:
            first_sub -= 1
        self.subsample_layer = self.trunk_names[first_sub] if fsf > 1 else None
        lefts = [layer.context[0] for layer in trunk]
        rights = [layer.context[1] for layer in trunk]
        self._left = sum(lefts)
        self._right = sum(rights)
        self._period: dict[str, int] = {}
        self._remaining_left: dict[str, int] = {}
        for i, (name, layer) in enumerate(zip(self.trunk_names, trunk)):
            if fsf == 1 or i < first_sub:
                period, step = 1, 1
            elif i == first_sub:
                period, step = 1, fsf
            else:
                period, step = fsf, 1
            layer.configure(period, step)
            self._period[name] = period * step
            self._remaining_left[name] = sum(lefts[i + 1:])
        last = self.trunk_names[-1]
        for branch in self.branch_names.values():
            for name in branch:
                layer = self.layers[name]
                if layer.context != (0, 0):
                    raise ValueError(f"layer {name} after prefinal-l must not splice frames")
                layer.configure(self._period[last], 1)
                self._period[name] = self._period[last]
                self._remaining_left[name] = 0

    @property
    def left_context(self) -> int:
        """Model left context in frames (Kaldi model_left_context), from the layer offsets."""
        return self._left

    @property
    def right_context(self) -> int:
        return self._right

    @property
    def frame_subsampling_factor(self) -> int:
        return self.config.frame_subsampling_factor

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Kaldi layer names in network order."""
        return tuple(self.layers.keys())

    def layer_dim(self, name: str) -> int:
        self._check_name(name)
        return int(self.layers[name].output_dim)

    def layer_context(self, name: str) -> tuple[int, int]:
        """(left, right) input context that the output of layer ``name`` depends on."""
        self._check_name(name)
        idx = (self.trunk_names.index(name) if name in self.trunk_names
               else len(self.trunk_names) - 1)
        names = self.trunk_names[:idx + 1]
        return (sum(self.layers[n].context[0] for n in names),
                sum(self.layers[n].context[1] for n in names))

    def num_output_frames(self, num_input_frames: int) -> int:
        """n = ceil((T_in - left - right) / fsf); raises if the chunk is too short."""
        t = num_input_frames - self._left - self._right
        if t < 1:
            raise ValueError(f"input has {num_input_frames} frames; the model needs at least "
                             f"{self._left + self._right + 1} (context {self._left}/"
                             f"{self._right})")
        fsf = self.frame_subsampling_factor
        return (t + fsf - 1) // fsf

    def _branch_of(self) -> dict[str, str]:
        return {n: out for out, names in self.branch_names.items() for n in names}

    def _check_name(self, name: str) -> None:
        if name not in self.layers:
            raise ValueError(f"unknown layer {name!r}; layers are {', '.join(self.layers)}")

    # -- forward --------------------------------------------------------------------------

    def _check_inputs(self, x: torch.Tensor, ivector: torch.Tensor | None) -> None:
        cfg = self.config
        if x.dim() != 3 or x.shape[2] != cfg.feat_dim:
            raise ValueError(f"input must be [B, T, {cfg.feat_dim}], got {tuple(x.shape)}")
        if cfg.ivector_dim == 0:
            if ivector is not None:
                raise ValueError("this model has ivector_dim 0 but an i-vector was given")
            return
        if ivector is None:
            raise ValueError(f"this model needs an i-vector input of dim {cfg.ivector_dim}")
        ok = ((ivector.dim() == 2 and ivector.shape == (x.shape[0], cfg.ivector_dim))
              or (ivector.dim() == 3 and ivector.shape == (x.shape[0], x.shape[1],
                                                             cfg.ivector_dim)))
        if not ok:
            raise ValueError(f"i-vector must be [B, {cfg.ivector_dim}] or [B, T, "
                             f"{cfg.ivector_dim}] with B={x.shape[0]}, T={x.shape[1]}; got "
                             f"{tuple(ivector.shape)}")

    def output_frames(self, name: str) -> tuple[int, int]:
        """(start, step): layer ``name``'s output frames at the model's output times 0, fsf, 2 fsf, ...
        are its output indices start, start + step, ... (the frame plan of ``_plan_frames``)."""
        period = self._period[name]
        return self._remaining_left[name] // period, self.frame_subsampling_factor // period

    def _select(self, h: torch.Tensor, name: str, n: int) -> torch.Tensor:
        """Layer output [B, C, T'] -> [B, n, C] at output times 0, fsf, ..."""
        start, step = self.output_frames(name)
        out = h[:, :, start:start + step * (n - 1) + 1:step]
        return out.transpose(1, 2).contiguous()

    def forward(self, x: torch.Tensor, ivector: torch.Tensor | None = None,
                return_layers: Iterable[str] = (),
                outputs: Sequence[str] = OUTPUT_NAMES) -> dict[str, torch.Tensor]:
        want = set(return_layers)
        for name in want:
            self._check_name(name)
        for name in outputs:
            if name not in self.branch_names:
                raise ValueError(f"unknown output {name!r}; outputs are {OUTPUT_NAMES}")
        self._check_inputs(x, ivector)
        n = self.num_output_frames(x.shape[1])
        fsf = self.frame_subsampling_factor
        need = (n - 1) * fsf + 1 + self._left + self._right
        x = x[:, :need]
        if ivector is not None and ivector.dim() == 3:
            ivector = ivector[:, :need]
        branch_of = self._branch_of()
        stop_trunk = len(self.trunk_names) - 1
        branches = list(outputs) + [branch_of[w] for w in want if w in branch_of]
        if not branches:
            trunk_wanted = [self.trunk_names.index(w) for w in want]
            stop_trunk = max(trunk_wanted) if trunk_wanted else stop_trunk
        result: dict[str, torch.Tensor] = {}
        h = x.transpose(1, 2)
        for name in self.trunk_names[:stop_trunk + 1]:
            layer = self.layers[name]
            h = layer(h, ivector) if name == "lda" else layer(h)
            if name in want:
                result[name] = self._select(h, name, n)
        trunk_out = h
        for out_name in dict.fromkeys(branches):
            names = self.branch_names[out_name]
            if out_name not in outputs:  # only up to the deepest requested layer
                names = names[:max(names.index(w) for w in want if w in names) + 1]
            h = trunk_out
            for name in names:
                h = self.layers[name](h)
                if name in OUTPUT_NAMES:
                    if name in want or name in outputs:
                        result[name] = h
                elif name in want:
                    result[name] = self._select(h, name, n)
        return result

    def embed(self, x: torch.Tensor, ivector: torch.Tensor | None = None,
              upto: str = "tdnnf12") -> torch.Tensor:
        """Output of layer ``upto`` at the n output frames, [B, n, dim]; computes only the
        layers needed for it (e.g. to graft an emotion head on tdnnf12, tdnnf13, prefinal-l
        or prefinal-chain)."""
        return self.forward(x, ivector, return_layers=(upto,), outputs=())[upto]

    layer_output = embed

    # -- training helpers -----------------------------------------------------------------

    def components(self) -> list[tuple[str, TdnnComponent]]:
        """(Kaldi component name, component) of every trainable component, network order."""
        return [(m.component_name, m) for m in self.modules() if isinstance(m, TdnnComponent)]

    def component_groups(self) -> list[dict[str, Any]]:
        """One optimizer param group per Kaldi component: keys params, name,
        learning_rate_factor, l2_regularize, max_change, orthonormal_constraint."""
        groups = []
        for name, comp in self.components():
            groups.append(dict(params=[p for p in comp.parameters()], name=name,
                               learning_rate_factor=comp.learning_rate_factor,
                               l2_regularize=comp.l2_regularize, max_change=comp.max_change,
                               orthonormal_constraint=comp.orthonormal_constraint))
        return groups

    def batchnorms(self) -> list[KaldiBatchNorm]:
        return [m for m in self.modules() if isinstance(m, KaldiBatchNorm)]

    def scale_batchnorm_stats(self, scale: float = 0.8) -> None:
        """Kaldi ScaleBatchnormStats (--batchnorm-stats-scale, 0.8): call after each minibatch."""
        if not 0.0 <= scale <= 1.0:
            raise ValueError(f"batchnorm stats scale {scale} outside [0, 1]")
        if scale == 1.0:
            return
        for bn in self.batchnorms():
            bn.scale_stats(scale)

    @torch.no_grad()
    def recompute_batchnorm_stats(self, inputs: Iterable[tuple[torch.Tensor, torch.Tensor | None]]) -> int:
        """Kaldi's RecomputeStats (``nnet3-chain-combine``, src/nnet3/nnet-chain-diagnostics.cc):
        zero every BatchNorm's stored stats, accumulate them afresh (no 0.8 decay) over the
        ``(x, ivector)`` batches in training mode with dropout off, and leave the model in eval
        mode.  Returns the number of sequences seen."""
        saved = [(d, d.dropout_proportion) for d in self.dropouts()]
        for bn in self.batchnorms():
            bn.scale_stats(0.0)
        self.train()
        self.set_dropout(0.0)
        n = 0
        try:
            for x, ivector in inputs:
                self.forward(x, ivector)
                n += x.shape[0]
        finally:
            for d, p in saved:
                d.dropout_proportion = p
            self.eval()
        if n == 0:
            raise ValueError("recompute_batchnorm_stats: no input")
        return n

    def dropouts(self) -> list[GeneralDropout]:
        return [m for m in self.modules() if isinstance(m, GeneralDropout)]

    def set_dropout(self, proportion: float, pattern: str = "*") -> int:
        """Set the dropout proportion of every GeneralDropout whose Kaldi component name
        (e.g. ``tdnnf7.dropout``) matches ``pattern``; returns how many were set."""
        if not 0.0 <= proportion <= 1.0:
            raise ValueError(f"dropout proportion {proportion} outside [0, 1]")
        count = 0
        for d in self.dropouts():
            if fnmatch.fnmatchcase(d.component_name, pattern):
                d.dropout_proportion = float(proportion)
                count += 1
        return count

    def set_preconditioning(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Install the fixed ``lda`` transform (see ser.nnet.preconditioning)."""
        self.layers["lda"].set_transform(weight, bias)

