"""A grafted emotion network: the pretrained TDNN-F up to a Kaldi-named layer plus a new head.

Paper 1 (Sec. 3.4, 4.3): the output of the 12th TDNN layer (``tdnnf12``; also ``tdnnf13`` and
the prefinal layer) feeds "a new fully connected dense layer" and a 4-way softmax, trained with
frame-level cross-entropy.  The head is Kaldi's ``relu-batchnorm-layer`` + ``output-layer``
(affine -> ReLU -> BatchNorm -> affine -> (log-)softmax); its width is ``hidden_dim``.

Learning rates follow Kaldi's transfer recipes
(``egs/rm/s5/local/chain/tuning/run_tdnn_wsj_rm_1a.sh``): the copied components get
``learning-rate-factor=$primary_lr_factor`` (0.25 there; 0 = fixed) and the new layers 1.0.

Body mode.  A transferred body runs in eval mode (stored BatchNorm statistics, no dropout): in
train mode its statistics would be replaced by those of small, emotion-biased minibatches.
A body trained from random initialisation (``from_scratch``) has no statistics to keep and
runs in train mode, accumulating Kaldi's 0.8-decayed statistics as in pretraining; it keeps the
pretrained network's fixed ``lda`` input transform (see :func:`make_grafted_model`).

Without i-vectors (``tdnn_l12_noivec``, :func:`without_ivector_input`): the pretrained body's input is
40 MFCC x 3 frames + a 100-dim online i-vector through the fixed ``lda`` affine layer (220 -> 220).
Removing the i-vector input deletes the lda's 100 i-vector columns and keeps everything else (its MFCC
columns and offset, its 220 outputs, every later layer's pretrained weights), so the network reads MFCC
only.  Because the lda is affine, this is exactly the pretrained network fed a zero i-vector; and zero
is what the online extractor outputs before it has seen a frame (the prior mean, whose offset
ser.ivector.online subtracts), i.e. the i-vector of "no speaker information", not an out-of-range
value.  The other readings: a constant mean i-vector of the emotion data (it would carry the training
speakers' statistics into the test fold's input) or a body pretrained without i-vectors (a second stage 6;
README, Fidelity).

Deviation: Kaldi applies the semi-orthogonal constraint to every constrained component, also
those at learning-rate factor 0; here it is applied to the components that train, so a frozen
body stays bit-identical.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from ser.io.torch_io import load_torch
from ser.nnet.orthonormal import apply_orthonormal_constraint
from ser.nnet.tdnnf import KaldiBatchNorm, TdnnfConfig, TdnnfModel

GRAFT_FORMAT = "ser.emotion.graft.v1"


def body_layers(model: TdnnfModel, layer: str) -> list[str]:
    """Names of the layers the output of ``layer`` depends on, in network order."""
    if layer not in model.layer_names:
        raise ValueError(f"unknown layer {layer!r}; layers are {', '.join(model.layer_names)}")
    trunk = list(model.trunk_names)
    if layer in trunk:
        return trunk[:trunk.index(layer) + 1]
    for branch in model.branch_names.values():
        if layer in branch:
            return trunk + list(branch[:branch.index(layer) + 1])
    raise ValueError(f"layer {layer!r} is in no branch")  # unreachable for TdnnfModel


def prune_body(model: TdnnfModel, layer: str) -> TdnnfModel:
    """Delete (in place) every layer that ``layer`` does not need; the model context keeps
    the full model's value (inputs are padded with it, see ser.emotion.frames)."""
    keep = set(body_layers(model, layer))
    for name in list(model.layers):
        if name not in keep:
            del model.layers[name]
    return model


class EmotionHead(nn.Module):
    """affine(in -> hidden) -> ReLU -> BatchNorm (Kaldi's, no scale/offset) -> affine(-> K).

    Works on frames [N, in] (frames past an utterance's end are never given to it, so the
    BatchNorm statistics are those of real frames only).  Returns logits [N, K]."""

    def __init__(self, input_dim: int, hidden_dim: int, num_classes: int) -> None:
        super().__init__()
        self.affine = nn.Linear(input_dim, hidden_dim)
        self.batchnorm = KaldiBatchNorm(hidden_dim, component_name="head.batchnorm")
        self.output = nn.Linear(hidden_dim, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.affine(h))
        z = self.batchnorm(z.T.unsqueeze(0)).squeeze(0).T
        return self.output(z)


class GraftedModel(nn.Module):
    """Body (a pruned :class:`TdnnfModel`) up to ``layer`` + :class:`EmotionHead`.

    ``embed(x, ivector)`` -> body output [B, n, D]; ``head(frames)`` -> logits; ``forward``
    -> logits [B, n, K] of every output frame.  Inputs as in pretraining: MFCC [B, T_in, F]
    with ``left_context``/``right_context`` frames of context, i-vectors [B, I] or [B, T_in, I].
    """

    def __init__(self, body: TdnnfModel, layer: str, hidden_dim: int, num_classes: int,
                 primary_lr_factor: float = 0.25, from_scratch: bool = False) -> None:
        super().__init__()
        if primary_lr_factor < 0:
            raise ValueError(f"primary_lr_factor must be >= 0, got {primary_lr_factor}")
        self.left_context = body.left_context
        self.right_context = body.right_context
        self.frame_subsampling_factor = body.frame_subsampling_factor
        self.body = prune_body(body, layer)
        self.layer = layer
        self.head = EmotionHead(body.layer_dim(layer), hidden_dim, num_classes)
        self.primary_lr_factor = float(primary_lr_factor)
        self.from_scratch = bool(from_scratch)
        self.body.requires_grad_(self.primary_lr_factor > 0)

    @property
    def body_frozen(self) -> bool:
        return self.primary_lr_factor == 0.0

    def train(self, mode: bool = True) -> "GraftedModel":
        """As nn.Module.train, but a transferred body always stays in eval mode."""
        super().train(mode)
        if not self.from_scratch:
            self.body.eval()
        return self

    def embed(self, x: torch.Tensor, ivector: torch.Tensor | None) -> torch.Tensor:
        return self.body.embed(x, ivector, upto=self.layer)

    def forward(self, x: torch.Tensor, ivector: torch.Tensor | None) -> torch.Tensor:
        h = self.embed(x, ivector)
        b, n, d = h.shape
        return self.head(h.reshape(b * n, d)).reshape(b, n, -1)

    def param_groups(self, lr: float) -> list[dict]:
        """Adam param groups: the head at ``lr``, the body at ``lr * primary_lr_factor``
        (omitted when the factor is 0)."""
        groups = [{"params": list(self.head.parameters()), "lr": lr, "lr_factor": 1.0,
                   "name": "head"}]
        if not self.body_frozen:
            groups.append({"params": [p for p in self.body.parameters()],
                           "lr": lr * self.primary_lr_factor,
                           "lr_factor": self.primary_lr_factor, "name": "body"})
        return groups

    def after_step(self, generator: torch.Generator | None = None) -> None:
        """Kaldi's per-minibatch housekeeping: BatchNorm statistics decay (0.8) for the
        BatchNorms in train mode, the orthonormal constraint on a body that trains."""
        self.head.batchnorm.scale_stats(0.8)
        if self.from_scratch:
            self.body.scale_batchnorm_stats(0.8)
        if not self.body_frozen:
            apply_orthonormal_constraint(self.body, generator)

    # -- files ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": GRAFT_FORMAT, "body_config": self.body.config.to_dict(),
                "layer": self.layer, "hidden_dim": self.head.affine.out_features,
                "num_classes": self.head.output.out_features,
                "primary_lr_factor": self.primary_lr_factor, "from_scratch": self.from_scratch,
                "state": self.state_dict()}

    @classmethod
    def from_dict(cls, d: dict, where: str = "<graft>") -> "GraftedModel":
        if d.get("format") != GRAFT_FORMAT:
            raise ValueError(f"{where}: not a grafted emotion model (format {d.get('format')!r})")
        body = TdnnfModel(TdnnfConfig.from_dict(d["body_config"]))
        m = cls(body, d["layer"], int(d["hidden_dim"]), int(d["num_classes"]),
                float(d["primary_lr_factor"]), bool(d["from_scratch"]))
        m.load_state_dict(d["state"])
        return m


MODEL_KEYS = ("format", "body_config", "layer", "hidden_dim", "num_classes", "state", "labels")


def load_grafted(path: str | Path) -> tuple[GraftedModel, list[str], dict]:
    """The network (eval mode), its class order and the file's dict from a stage-7 ``final.pt`` (or
    an export's ``model.pt``), loaded with ``weights_only=True``."""
    d = load_torch(path, what="grafted emotion model", expect_keys=MODEL_KEYS)
    if not d.get("labels") or len(d["labels"]) != int(d["num_classes"]):
        raise ValueError(f"{path}: the class labels stored with the model do not match its "
                         f"{d['num_classes']} outputs")
    model = GraftedModel.from_dict(d, str(path))
    model.eval()
    return model, [str(x) for x in d["labels"]], d


def without_ivector_input(model: TdnnfModel) -> TdnnfModel:
    """A copy of ``model`` without its i-vector input (module docstring): the lda layer's i-vector
    columns deleted, its MFCC columns, offset and output dim kept (``lda_dim``), every other weight and
    BatchNorm statistic as in ``model``.  It computes what ``model`` computes with a zero i-vector."""
    cfg = model.config
    if cfg.ivector_dim == 0:
        raise ValueError("the model has no i-vector input to remove")
    lda = model.layers["lda"]
    out = TdnnfModel(TdnnfConfig.from_dict({**cfg.to_dict(), "ivector_dim": 0, "lda_dim": lda.output_dim}))
    state = model.state_dict()
    state["layers.lda.weight"] = lda.weight[:, :lda.input_dim - lda.ivector_dim].clone()
    out.load_state_dict(state)
    return out


def make_grafted_model(pretrained: TdnnfModel, layer: str, hidden_dim: int, num_classes: int,
                       primary_lr_factor: float, from_scratch: bool,
                       seed: int = 0, ivectors: bool = True) -> GraftedModel:
    """The network of one system.  ``from_scratch``: same architecture as ``pretrained`` with
    Kaldi's random initialisation (seeded) of every trained weight; the fixed ``lda`` input
    transform (no trained weights, a preconditioner) is the pretrained one, so the two systems
    differ in the trained weights only.  Re-estimating it on the fold's training frames was
    measured to break the scratch network: 8 training speakers leave i-vector directions with
    almost no variance, whitening scales them up to its ceiling (5x), and an unseen speaker's
    i-vector then drives eval-mode activations ~40x past those of training.  ``ivectors`` False: the
    body without its i-vector input (:func:`without_ivector_input`), MFCC only."""
    if not ivectors:
        pretrained = without_ivector_input(pretrained)
    g = torch.Generator().manual_seed(seed)
    if from_scratch:
        body = TdnnfModel(TdnnfConfig.from_dict(pretrained.config.to_dict()), generator=g)
        body.layers["lda"].load_state_dict(pretrained.layers["lda"].state_dict())
    else:
        body = pretrained
    torch.manual_seed(seed)  # the head's nn.Linear initialisation
    return GraftedModel(body, layer, hidden_dim, num_classes, primary_lr_factor, from_scratch)
