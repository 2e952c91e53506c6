"""A DeepSpeech-style CTC acoustic model (Mozilla DeepSpeech v0.2-v0.9), layers addressable by name.

Mirrors ``create_model`` / ``create_overlapping_windows`` / ``dense`` of DeepSpeech's
``training/deepspeech_training/train.py`` (v0.7-v0.9; ``DeepSpeech.py`` before) with the geometry of
``util/config.py`` and the defaults of ``util/flags.py``::

    input          26 MFCC per 20 ms frame (conf/mfcc_deepspeech.conf)
    window         frames t-9 .. t+9 concatenated, zero outside the utterance -> 494 (n_input + 2 n_input n_context)
    layer_1        dense 494 -> 2048, ReLU clipped at 20, dropout 0.05         (the "first-layer features")
    layer_2        dense 2048 -> 2048, clipped ReLU, dropout 0.05
    layer_3        dense 2048 -> 2048 (n_hidden_3 = n_cell_dim), clipped ReLU, dropout 0.05
    layer_4        unidirectional LSTM, 2048 cells (DeepSpeech's ``rnn_output``), no dropout
    layer_5        dense 2048 -> 2048, clipped ReLU, dropout 0.05
    layer_6        dense 2048 -> 29 logits (space, a-z, apostrophe, CTC blank last); the output

Every width is a :class:`DeepSpeechConfig` field; ``DeepSpeechConfig.mini`` shrinks them (same code).

Dropout: ``create_model`` applies ``dropout[0..2]`` (flags ``--dropout_rate``, ``--dropout_rate2/3``, which
default to ``--dropout_rate`` = 0.05) after layers 1-3 and ``dropout[5]`` (``--dropout_rate6``, also 0.05)
after layer 5; ``dropout[3]``/``dropout[4]`` (``--dropout_rate4/5``, default 0) are never used, layer 6 is
linear.  So in DeepSpeech's code dropout 0.05 follows layers 1, 2, 3 and 5 -- the flag named after layer 6
acts on layer 5's output -- and this module does the same.

Initialisation as DeepSpeech: dense weights Glorot-uniform (``VarianceScaling(1, fan_avg, uniform)``),
biases zero; the LSTM kernel Glorot-uniform over its stacked gates, biases zero, forget-gate bias 0
(``LSTMBlockFusedCell(forget_bias=0)``).

Time handling.  The model takes whole utterances x [B, T, 26] and returns T frames: like DeepSpeech's
``conv1d(padding='SAME')`` window, the 9 context frames outside an utterance are zeros, so the model
needs no extra input frames (``left_context = right_context = 0``; ``window_context`` = 9 is the splice).
For a padded batch give ``lengths``: frames at and after an utterance's length are zeroed before the
window, so every utterance gets exactly the numbers it would get alone (the LSTM is unidirectional, so
padding after the end never reaches earlier frames).  Layer outputs past an utterance's length are
meaningless.  ``frame_subsampling_factor`` is 1 (one output per 20 ms input frame).

Deviations from DeepSpeech:

* PyTorch's LSTM has two bias vectors (input and recurrent) where TF's fused cell has one: the model has
  4 x n_cell_dim more parameters (8,192 at paper size: 47,233,053 instead of DeepSpeech's 47,224,861),
  the function computed is the same (the biases only appear as their sum);
* PyTorch's gate order is (input, forget, cell, output), TF's (input, cell, forget, output): irrelevant
  when training from scratch, matters only to someone importing DeepSpeech's weights;
* no layer norm (``--layer_norm`` defaults to false in DeepSpeech as well);
* **input standardisation**: DeepSpeech feeds raw MFCCs; here each coefficient is standardised with the
  mean and standard deviation of the training frames (Kaldi's global CMVN, ``compute-cmvn-stats`` +
  ``apply-cmvn --norm-vars=true``) before the window.  The statistics are fixed buffers of the model
  (``input_mean``, ``input_scale``; identity until :meth:`DeepSpeechModel.set_input_normalization`), so
  features extracted later go through the same transform.  Raw Kaldi MFCCs reach ~100 in c0: with
  DeepSpeech's initialisation most first-layer units start clipped at 20 or dead, and a CTC model trained
  for minutes never leaves the all-blank output.  The zero padding of the window is therefore applied to
  standardised frames (the training mean frame, not a zero MFCC vector).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ser.ctc.text import ALPHABET

__all__ = ["ALPHABET", "DeepSpeechConfig", "DeepSpeechModel", "context_window", "clipped_relu"]

# ALPHABET (ser.ctc.text): DeepSpeech's data/alphabet.txt, space, a-z, apostrophe; the CTC blank is the last
# output (TF's ctc_loss convention, num_classes - 1).
LAYER_NAMES = ("layer_1", "layer_2", "layer_3", "layer_4", "layer_5", "layer_6")


@dataclass
class DeepSpeechConfig:
    """Geometry (DeepSpeech ``Config``/``FLAGS`` names in the comments); defaults = DeepSpeech v0.9."""

    feat_dim: int = 26            # n_input (MFCC coefficients)
    context: int = 9              # n_context (frames each side)
    hidden_dim: int = 2048        # n_hidden = n_hidden_1 = n_hidden_2 = n_hidden_5
    cell_dim: int = 2048          # n_cell_dim = n_hidden_3 (layer 3 feeds the LSTM)
    num_outputs: int = len(ALPHABET) + 1  # n_hidden_6 = alphabet size + 1 (CTC blank)
    relu_clip: float = 20.0       # --relu_clip
    dropout: float = 0.05         # --dropout_rate (layers 1, 2, 3 and 5, see the module docstring)

    def __post_init__(self) -> None:
        for f in ("feat_dim", "hidden_dim", "cell_dim", "num_outputs"):
            if getattr(self, f) < 1:
                raise ValueError(f"DeepSpeechConfig.{f} must be >= 1, got {getattr(self, f)}")
        if self.context < 0:
            raise ValueError(f"DeepSpeechConfig.context must be >= 0, got {self.context}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DeepSpeechConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.relu_clip <= 0:
            raise ValueError(f"DeepSpeechConfig.relu_clip must be > 0, got {self.relu_clip}")

    @classmethod
    def paper(cls, **overrides: Any) -> "DeepSpeechConfig":
        """DeepSpeech v0.9 (n_hidden 2048)."""
        return cls(**overrides)

    @classmethod
    def mini(cls, **overrides: Any) -> "DeepSpeechConfig":
        """The same network with smaller widths, for the CPU recipe."""
        return cls(**{"hidden_dim": 256, "cell_dim": 256, **overrides})

    @classmethod
    def named(cls, name: str, **overrides: Any) -> "DeepSpeechConfig":
        """``paper`` or ``mini`` (the ``ctc.net`` values of the recipe configs)."""
        if name not in ("paper", "mini"):
            raise ValueError(f"unknown DeepSpeech size {name!r} (expected paper or mini)")
        return getattr(cls, name)(**overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeepSpeechConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DeepSpeechConfig fields: {sorted(unknown)}")
        return cls(**d)


def clipped_relu(x: torch.Tensor, clip: float) -> torch.Tensor:
    """``min(relu(x), clip)`` (DeepSpeech's ``tf.minimum(tf.nn.relu(x), relu_clip)``)."""
    return torch.clamp(x, min=0.0, max=clip)


def context_window(x: torch.Tensor, context: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T, F] -> [B, T, (2 context + 1) F]: row t is frames t-context .. t+context concatenated in time
    order, zeros outside [0, length) (DeepSpeech's create_overlapping_windows, conv1d padding 'SAME')."""
    if x.dim() != 3:
        raise ValueError(f"context_window: input must be [B, T, F], got {tuple(x.shape)}")
    b, t, f = x.shape
    if lengths is not None:
        valid = torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None]
        x = x * valid[:, :, None].to(x.dtype)
    padded = F.pad(x, (0, 0, context, context))
    # unfold: [B, T, F, 2c+1] (window last) -> [B, T, 2c+1, F] -> [B, T, (2c+1) F]
    return padded.unfold(1, 2 * context + 1, 1).transpose(2, 3).reshape(b, t, (2 * context + 1) * f)


class DeepSpeechModel(nn.Module):
    """The DeepSpeech network (see the module docstring).

    ``forward(x, return_layers=(), outputs=("output",), lengths=None)``: x [B, T, feat_dim]; returns a
    dict with ``output`` = layer_6 logits [B, T, num_outputs] (raw, before softmax) when asked, and each
    layer in ``return_layers`` -> [B, T, layer_dim].  Only the layers needed are computed.
    """

    blank: int  # index of the CTC blank output (the last one)

    def __init__(self, config: DeepSpeechConfig | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else DeepSpeechConfig()
        self.config = cfg
        window_dim = (2 * cfg.context + 1) * cfg.feat_dim
        self.layer_1 = nn.Linear(window_dim, cfg.hidden_dim)
        self.layer_2 = nn.Linear(cfg.hidden_dim, cfg.hidden_dim)
        self.layer_3 = nn.Linear(cfg.hidden_dim, cfg.cell_dim)
        self.layer_4 = nn.LSTM(cfg.cell_dim, cfg.cell_dim, batch_first=True)
        self.layer_5 = nn.Linear(cfg.cell_dim, cfg.hidden_dim)
        self.layer_6 = nn.Linear(cfg.hidden_dim, cfg.num_outputs)
        self.dropout = nn.Dropout(cfg.dropout)
        self.register_buffer("input_mean", torch.zeros(cfg.feat_dim))
        self.register_buffer("input_scale", torch.ones(cfg.feat_dim))
        self.blank = cfg.num_outputs - 1
        self._dims = {"layer_1": cfg.hidden_dim, "layer_2": cfg.hidden_dim, "layer_3": cfg.cell_dim,
                      "layer_4": cfg.cell_dim, "layer_5": cfg.hidden_dim, "layer_6": cfg.num_outputs}
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """DeepSpeech's initialisation (Glorot-uniform weights, zero biases); ``generator`` seeds it."""
        with torch.no_grad():
            for lin in (self.layer_1, self.layer_2, self.layer_3, self.layer_5, self.layer_6):
                bound = math.sqrt(6.0 / (lin.in_features + lin.out_features))
                lin.weight.copy_(torch.rand(lin.weight.shape, generator=generator) * 2 * bound - bound)
                lin.bias.zero_()
            # TF's fused cell has one kernel [input + cell, 4 cell]: Glorot over that whole matrix
            n, h = self.config.cell_dim, self.config.cell_dim
            bound = math.sqrt(6.0 / ((n + h) + 4 * h))
            for w in (self.layer_4.weight_ih_l0, self.layer_4.weight_hh_l0):
                w.copy_(torch.rand(w.shape, generator=generator) * 2 * bound - bound)
            self.layer_4.bias_ih_l0.zero_()
            self.layer_4.bias_hh_l0.zero_()

    def set_input_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise inputs with these per-coefficient statistics of the training frames (std floored at
        1e-5 of its largest value)."""
        if mean.shape != (self.config.feat_dim,) or std.shape != (self.config.feat_dim,):
            raise ValueError(f"input statistics must be [{self.config.feat_dim}], got {tuple(mean.shape)}, "
                             f"{tuple(std.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise ValueError("input statistics are not finite")
        std = std.clamp(min=float(std.max()) * 1e-5 + 1e-20)
        with torch.no_grad():
            self.input_mean.copy_(mean)
            self.input_scale.copy_(1.0 / std)

    # -- the layer-addressing interface shared with TdnnfModel ---------------------------------------

    @property
    def layer_names(self) -> tuple[str, ...]:
        """DeepSpeech's layer names in network order (``layer_4`` is its LSTM, ``rnn_output``)."""
        return LAYER_NAMES

    def layer_dim(self, name: str) -> int:
        self._check_name(name)
        return self._dims[name]

    @property
    def left_context(self) -> int:
        """Extra input frames needed on the left: none (the window is zero-padded inside the model)."""
        return 0

    @property
    def right_context(self) -> int:
        return 0

    @property
    def window_context(self) -> int:
        """Frames each side that layer_1 sees (n_context)."""
        return self.config.context

    @property
    def frame_subsampling_factor(self) -> int:
        return 1

    @property
    def ivector_dim(self) -> int:
        return 0

    def num_output_frames(self, num_input_frames: int) -> int:
        if num_input_frames < 1:
            raise ValueError(f"input has {num_input_frames} frames; the model needs at least 1")
        return num_input_frames

    def _check_name(self, name: str) -> None:
        if name not in self._dims:
            raise ValueError(f"unknown layer {name!r}; layers are {', '.join(LAYER_NAMES)}")

    # -- forward -----------------------------------------------------------------------------------

    def _dense(self, layer: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        return self.dropout(clipped_relu(layer(h), self.config.relu_clip))

    def forward(self, x: torch.Tensor, ivector: torch.Tensor | None = None, return_layers: Iterable[str] = (),
                outputs: Sequence[str] = ("output",), lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        want = set(return_layers)
        for name in want:
            self._check_name(name)
        for name in outputs:
            if name != "output":
                raise ValueError(f"unknown output {name!r}; the output is 'output' (layer_6)")
        if ivector is not None:
            raise ValueError("the DeepSpeech model takes no i-vector")
        if x.dim() != 3 or x.shape[2] != self.config.feat_dim:
            raise ValueError(f"input must be [B, T, {self.config.feat_dim}], got {tuple(x.shape)}")
        if lengths is not None and lengths.shape != (x.shape[0],):
            raise ValueError(f"lengths must be [{x.shape[0]}], got {tuple(lengths.shape)}")
        last = 5 if outputs else max(LAYER_NAMES.index(w) for w in want) if want else -1
        result: dict[str, torch.Tensor] = {}
        h = context_window((x - self.input_mean) * self.input_scale, self.config.context, lengths)
        for name in LAYER_NAMES[:last + 1]:
            if name == "layer_4":
                h = self.layer_4(h)[0]
            elif name == "layer_6":
                h = self.layer_6(h)
            else:
                h = self._dense(getattr(self, name), h)
            if name in want:
                result[name] = h
        if outputs:
            result["output"] = h
        return result

    def embed(self, x: torch.Tensor, ivector: torch.Tensor | None = None, upto: str = "layer_1",
              lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Output of layer ``upto`` [B, T, dim], computing only the layers up to it (paper 2's features
        are ``layer_1``)."""
        return self.forward(x, ivector, return_layers=(upto,), outputs=(), lengths=lengths)[upto]

    layer_output = embed

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
