"""The grafted emotion network, eval mode, as time-major matrix products (inference only).

:class:`ser.emotion.graft.GraftedModel` (via :class:`ser.nnet.tdnnf.TdnnfModel`) runs its TDNN
components as ``conv1d`` on ``[B, C, T]`` tensors, the layout training wants.  On one recording
at inference time the same computation is faster as Kaldi's nnet3 does it: frames as rows
(``[T, C]``), each time offset of a component one GEMM on a row slice of its input (a view, no
copy; a stride-3 component reads every third row), and element-wise work done in place.  This
module builds that from a loaded model, reading its frame plan (each component's offsets, input
period and output step; ``TdnnfModel.output_frames``), so it computes exactly the frames
the model's forward computes, at the same rates: the layers up to ``tdnnf3`` at the full frame
rate, ``tdnnf3.affine`` at stride 3 and every later layer on the 3x subsampled sequence.

Eval-mode BatchNorm (stored statistics) is an affine map ``y = a * x + b`` per channel with
``a = target_rms / sqrt(var + eps) > 0``.  After a ReLU it is folded into the affine component
before it (``a * relu(z) = relu(a * z)`` for ``a > 0``), leaving one in-place add of ``b``;
after a linear component (prefinal-layer's second BatchNorm) into that component; the head's
BatchNorm offset ``b`` goes into the output layer's bias.  Dropout is the identity in eval mode.
``lda`` (a fixed affine map of the spliced MFCC and the i-vector) and ``tdnn1``'s affine component,
both linear before tdnn1's ReLU, are composed into one map: one GEMM per block where there were two.

Activations live in three buffers kept across calls (the layers' outputs alternate between two,
bottlenecks use the third): allocating fresh ``[6200, 1024]`` activations for every 61 s block
fragmented glibc's heap, and the peak RSS of a 1-hour recording grew by ~5 MB a block.  Hence a
FrameNet is for one thread at a time.

Results equal ``GraftedModel.forward`` up to float32 rounding (a different summation order of
the same products; tests/test_infer.py compares the two).  Models it cannot run this way (a
BatchNorm without stored statistics, which normalises with the minibatch's) are rejected with
``ValueError``; the caller then uses the model itself.
"""

from __future__ import annotations

from typing import Callable

import torch

from ser.emotion.graft import EmotionHead, GraftedModel, body_layers
from ser.nnet.preconditioning import FixedAffineSplice
from ser.nnet.tdnnf import (KaldiBatchNorm, LinearLayer, PrefinalLayer, ReluBatchNormDropoutLayer,
                            TdnnComponent, TdnnfLayer)


Out = Callable[[int, int], torch.Tensor]  # (rows, cols) -> a contiguous output buffer


def _bn_affine(bn: KaldiBatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, offset) float64 of an eval-mode Kaldi BatchNorm: y = scale * x + offset."""
    if float(bn.stats_count) <= 0.0:
        raise ValueError(f"{bn.component_name}: no stored BatchNorm statistics")
    mean, var = bn.stored_mean_var()
    scale = bn.target_rms / torch.sqrt(var + bn.epsilon)
    return scale, -mean * scale


def _folded(weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor | None = None,
            shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight [out, in, K], bias [out] or None) float64 with the output channels scaled by ``scale``
    and ``shift`` added to the bias: a BatchNorm folded into the component before it."""
    w = weight.detach().double()
    b = bias.detach().double() if bias is not None else None
    if scale is not None:
        w = w * scale[:, None, None]
        b = b * scale if b is not None else None
    if shift is not None:
        b = shift if b is None else b + shift
    return w, b


class _Tdnn:
    """A TdnnComponent (or lda's MFCC part) on time-major input: ``y[j] = bias + sum_k
    x[j * step + k * dilation] @ taps[k]`` (conv1d's output frames), optionally with its output
    channels scaled by ``scale`` and ``shift`` added to the bias (a folded BatchNorm)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int, step: int,
                 scale: torch.Tensor | None = None, shift: torch.Tensor | None = None) -> None:
        w, b = _folded(weight, bias, scale, shift)                     # [out, in, K], [out]
        self.taps = [w[:, :, k].T.float().contiguous() for k in range(w.shape[2])]
        self.bias = b.float() if b is not None else None
        self.dilation, self.step, self.dim = dilation, step, w.shape[0]

    @classmethod
    def of(cls, c: TdnnComponent, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None) -> "_Tdnn":
        dil = c.spacing // c.input_period if len(c.time_offsets) > 1 else 1
        return cls(c.weight, c.bias, dil, c.out_step, scale, shift)

    def num_out(self, t: int) -> int:
        return (t - (len(self.taps) - 1) * self.dilation - 1) // self.step + 1

    def rows(self, x: torch.Tensor, k: int, n: int) -> torch.Tensor:
        s = k * self.dilation
        return x[s:s + self.step * (n - 1) + 1:self.step]

    def __call__(self, x: torch.Tensor, out: Out) -> torch.Tensor:
        n = self.num_out(x.shape[0])
        y = out(n, self.dim)
        if self.bias is None:
            torch.mm(self.rows(x, 0, n), self.taps[0], out=y)
        else:
            torch.addmm(self.bias, self.rows(x, 0, n), self.taps[0], out=y)
        for k in range(1, len(self.taps)):
            y.addmm_(self.rows(x, k, n), self.taps[k])
        return y


class _Lda:
    """lda: Append(the MFCC at its offsets, the i-vector) -- copied side by side into one reused
    buffer, as Kaldi's Append -- times a fixed matrix, one GEMM per block (``then``: composed with
    the affine map that reads it)."""

    def __init__(self, m: FixedAffineSplice) -> None:
        self.taps, self.feat_dim, self.ivec_dim = len(m.offsets), m.feat_dim, m.ivector_dim
        self.dilation, self.step = m.spacing // m.input_period, m.out_step
        self.left = -min(m.offsets) // m.input_period
        self.spliced = torch.empty(0)
        self._set(m.weight.detach().double().T, m.bias.detach().double())

    def _set(self, w: torch.Tensor, b: torch.Tensor) -> None:
        """The map as [in = K F + I, out] and [out] float64."""
        self.w64, self.b64 = w, b
        self.weight, self.bias = w.float().contiguous(), b.float()

    def then(self, w: torch.Tensor, c: torch.Tensor) -> None:
        """Compose with an affine map [in, out], [out] (float64) reading this layer's output (tdnn1's
        affine on lda in tdnn_1g, both linear before tdnn1's ReLU): ``(x L + b) W + c = x (L W) + (b W
        + c)``, one GEMM of the composed width where there were two."""
        self._set(self.w64 @ w, self.b64 @ w + c)

    def __call__(self, x: torch.Tensor, ivector: torch.Tensor | None, out: Out) -> torch.Tensor:
        K, F, s = self.taps, self.feat_dim, self.step
        n = (x.shape[0] - (K - 1) * self.dilation - 1) // s + 1
        cols = K * F + self.ivec_dim
        if self.spliced.numel() < n * cols:
            self.spliced = x.new_empty(n * cols)
        xs = self.spliced[:n * cols].view(n, cols)
        x = x.contiguous()  # row j of the spliced input: x[j s + k dilation] for each offset k, then the i-vector
        xs[:, :K * F].view(n, K, F).copy_(x.as_strided((n, K, F), (s * F, self.dilation * F, 1), x.storage_offset()))
        if self.ivec_dim:
            xs[:, K * F:] = ivector[self.left:self.left + s * (n - 1) + 1:s]
        return torch.addmm(self.bias, xs, self.weight, out=out(n, self.weight.shape[1]))


class _ReluBn:
    """affine (BatchNorm scale folded in) -> ReLU -> + BatchNorm offset (relu-batchnorm-layer)."""

    def __init__(self, affine: _Tdnn, offset: torch.Tensor) -> None:
        self.affine, self.offset = affine, offset.float()

    def __call__(self, x: torch.Tensor, out: Out, spare: Out) -> torch.Tensor:
        return self.affine(x, out).relu_().add_(self.offset)


class _Tdnnf:
    """tdnnf-layer: linear (bottleneck) -> affine (BatchNorm scale folded in) -> ReLU -> + offset
    + bypass_scale * input at the output frames."""

    def __init__(self, layer: TdnnfLayer) -> None:
        scale, offset = _bn_affine(layer.batchnorm)
        self.linear = _Tdnn.of(layer.linear)
        self.affine = _Tdnn.of(layer.affine, scale)
        self.offset = offset.float()
        self.bypass = layer.bypass_scale
        self.left, self.step = layer.time_stride // layer.input_period, layer.out_step

    def __call__(self, x: torch.Tensor, out: Out, spare: Out) -> torch.Tensor:
        y = self.affine(self.linear(x, spare), out).relu_().add_(self.offset)
        if self.bypass:
            n = y.shape[0]
            y.add_(x[self.left:self.left + self.step * (n - 1) + 1:self.step], alpha=self.bypass)
        return y


def _layer(layer: torch.nn.Module) -> Callable[[torch.Tensor, Out, Out], torch.Tensor]:
    """A body layer as ``(input, output buffer, spare buffer) -> output``."""
    if isinstance(layer, TdnnfLayer):
        return _Tdnnf(layer)
    if isinstance(layer, ReluBatchNormDropoutLayer):
        scale, offset = _bn_affine(layer.batchnorm)
        return _ReluBn(_Tdnn.of(layer.affine, scale), offset)
    if isinstance(layer, LinearLayer):
        linear = _Tdnn.of(layer.linear)
        return lambda x, out, spare: linear(x, out)
    if isinstance(layer, PrefinalLayer):
        s1, o1 = _bn_affine(layer.batchnorm1)
        s2, o2 = _bn_affine(layer.batchnorm2)
        first = _ReluBn(_Tdnn.of(layer.affine, s1), o1)
        second = _Tdnn.of(layer.linear, s2, o2)
        return lambda x, out, spare: second(first(x, spare, spare), out)
    raise ValueError(f"no time-major form for layer type {type(layer).__name__}")


class FrameNet:
    """``GraftedModel.forward`` for one sequence: ``(x [T_in, F], ivector [T_in, I] | None) ->
    logits [n, K]`` (float32, eval mode, no autograd)."""

    def __init__(self, model: GraftedModel) -> None:
        if model.training or model.body.training:
            raise ValueError("FrameNet runs models in eval mode only")
        body = model.body
        names = body_layers(body, model.layer)
        self.lda = _Lda(body.layers[names[0]])
        layers = [body.layers[n] for n in names[1:]]
        fold = (bool(layers) and isinstance(layers[0], ReluBatchNormDropoutLayer)
                and len(layers[0].affine.time_offsets) == 1 and layers[0].affine.out_step == 1)
        # tdnn1's affine folded into lda: what is left of tdnn1 is ReLU + offset
        self.layers = [self._fold_tdnn1(layer) if i == 0 and fold else _layer(layer) for i, layer in enumerate(layers)]
        self.first, self.every = body.output_frames(model.layer)
        self.fsf, self.left, self.right = body.frame_subsampling_factor, body.left_context, body.right_context
        head: EmotionHead = model.head
        scale, offset = _bn_affine(head.batchnorm)
        aff = head.affine
        self.head_hidden = _Tdnn(aff.weight[:, :, None], aff.bias, 1, 1, scale)
        out = head.output
        w = out.weight.detach().double()
        self.head_out = _Tdnn(w[:, :, None], out.bias.detach().double() + w @ offset, 1, 1)
        self.buffers: list[torch.Tensor] = [torch.empty(0, device=out.weight.device) for _ in range(3)]

    def _fold_tdnn1(self, tdnn1: ReluBatchNormDropoutLayer) -> Callable[[torch.Tensor, Out, Out], torch.Tensor]:
        """Compose tdnn1's affine (BatchNorm scale folded in) into lda; what is left of tdnn1."""
        scale, offset = _bn_affine(tdnn1.batchnorm)
        w, b = _folded(tdnn1.affine.weight, tdnn1.affine.bias, scale)
        self.lda.then(w[:, :, 0].T, b if b is not None else torch.zeros_like(scale))
        offset = offset.float()
        return lambda x, out, spare: torch.clamp(x, min=0.0, out=out(*x.shape)).add_(offset)

    def _out(self, i: int) -> Out:
        """Buffer ``i`` as a contiguous [rows, cols] tensor (grown when too small)."""
        def view(rows: int, cols: int) -> torch.Tensor:
            if self.buffers[i].numel() < rows * cols:
                self.buffers[i] = torch.empty(rows * cols, device=self.buffers[i].device)
            return self.buffers[i][:rows * cols].view(rows, cols)
        return view

    def num_output_frames(self, t_in: int) -> int:
        return -(-(t_in - self.left - self.right) // self.fsf)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, ivector: torch.Tensor | None) -> torch.Tensor:
        n = self.num_output_frames(x.shape[0])
        need = (n - 1) * self.fsf + 1 + self.left + self.right
        x = x[:need].float().contiguous()
        h = self.lda(x, ivector[:need].float().contiguous() if ivector is not None else None, self._out(0))
        slot = 0
        for layer in self.layers:
            slot = 1 - slot
            h = layer(h, self._out(slot), self._out(2))
        h = h[self.first:self.first + self.every * (n - 1) + 1:self.every]
        hidden = self.head_hidden(h, self._out(1 - slot)).relu_()
        return self.head_out(hidden, self._out(2)).clone()
