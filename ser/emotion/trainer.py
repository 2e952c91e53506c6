"""Training one fold of a grafted emotion network: the task of ser.train.loop (minibatches, step, validation).

The loop (ser.train.loop: checkpoints, exact resumption, model selection, early stopping, DDP) runs::

    for epoch in range(start, num_epochs):
        for minibatch in egs.minibatches(epoch):            # seeded by (seed, epoch)
            lr = schedule(step)                              # exponential decay, Kaldi-style
            logits = head(body(x)[frames inside the utterance])
            loss = cross_entropy(logits, utterance labels)   # paper 1, Sec. 3.4
            loss.backward(); adam.step(); kaldi housekeeping (BatchNorm stats, orthonormal)
        validate -> UA, WA, frame accuracy, loss            # validation speakers only
        keep the best state by validation (UA, then frame accuracy); checkpoint; early stop

Optimiser: Adam, head at ``lr``, body at ``lr * primary_lr_factor`` (see ser.emotion.graft);
the step size decays exponentially from ``initial_lrate`` to ``final_lrate`` over
``num_epochs`` (Kaldi's effective-learning-rate schedule).  Model selection and early stopping
(``patience`` epochs without a better validation figure) use only the validation speakers of
the training sessions; the test fold is decoded afterwards, once, by ``ser.bin.decode_ser``.

Frozen body (``primary_lr_factor`` 0): the body's outputs never change, so with
``cache_frozen_body`` they are computed once, at every input frame (three passes at frame
phases 0, 1, 2), and training reads minibatches from that table instead of running the body:
the head sees the same frames as without the cache.

Resumption (ser.train.loop): ``checkpoint.pt`` (atomic) after every epoch, and every
``checkpoint_interval`` minibatches within one, holds the model, the optimiser, the best state so
far, the history and the generator of the orthonormal constraint; the data order is a function of
``(seed, epoch)``.  A run killed at any point and restarted therefore ends with the same numbers as
an uninterrupted one.  ``SER_KILL_AT=<glob>`` kills the process (SIGKILL) at a matching kill point
``<dir>:epoch<k>`` / ``<dir>:epoch<k>:step<s>`` -- the test hook for that guarantee.

Data parallel (``NPROC=N steps/ser/train.sh``, ser.ddp): every rank makes the same global
minibatches (a function of ``(seed, epoch)``) and trains on every N-th chunk of each; one DDP
module (:class:`FrameClassifier`: body + head) all-reduces the gradients once per update.  The
loss of a rank is the sum of its frames' cross-entropies over the GLOBAL minibatch's frame count
(times N, as DDP averages the ranks' gradients), and every BatchNorm that trains (the head's; a
from-scratch body's) normalises with the statistics of all ranks' frames (``sync_ranks``), so N
ranks make the single-process update, up to float summation order.  The frozen body's cache and
validation are computed on a share of the utterances per rank and gathered, so every rank sees
the same figures and stops at the same epoch; rank 0 alone writes the checkpoint, the logs and
the final model.  A checkpoint resumes under any number of ranks (the ranks' models, optimiser
and data order are identical).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ser.config import SerConfig
from ser.emotion.frames import FrameEgs, FrameMinibatch, context_of, utterance_outputs
from ser.emotion.graft import GraftedModel
from ser.emotion.plots import plot_curve
from ser.emotion.voting import vote
from ser.eval.metrics import unweighted_accuracy, weighted_accuracy
from ser.io.atomic import atomic_write_text
from ser.io.batching import FeatureSet, MatrixTable, gather_frames
from ser.io.torch_io import save_torch
from ser.nnet.tdnnf import KaldiBatchNorm
from ser import ddp
from ser.train.loop import Loop, LoopOptions, Task, kill_point, my_share

__all__ = ["SerTrainConfig", "SerTrainer", "EvalResult", "score_frames", "frame_logits", "kill_point"]

log = logging.getLogger(__name__)
_REC = SerConfig()  # the recipe's defaults (ser.config): defined once


@dataclass
class SerTrainConfig:
    """Options of one training (the ``ser:`` section of the recipe config holds them)."""

    num_epochs: int = _REC.num_epochs            # at most; the selected epoch is chosen on validation
    patience: int = _REC.patience                # stop after this many epochs without a better validation
    initial_lrate: float = _REC.initial_lrate    # Adam step size of the head at the start ...
    final_lrate: float = _REC.final_lrate        # ... and at the end of num_epochs (exponential decay)
    chunk_width: int = _REC.chunk_width          # training chunk, input frames (multiple of 3)
    minibatch_size: int = _REC.minibatch_size    # chunks per minibatch
    eval_chunk_width: int = 300      # evaluation chunk, input frames (results do not depend on it)
    seed: int = _REC.seed
    cache_frozen_body: bool = _REC.cache_frozen_body  # primary_lr_factor 0 only


@dataclass
class EvalResult:
    """Figures of a set of utterances; ``posteriors`` [U, K], ``decisions`` class indices."""

    ua: float
    wa: float
    frame_acc: float
    loss: float
    posteriors: torch.Tensor
    decisions: list[int]

    def figures(self) -> dict[str, float]:
        return {"ua": self.ua, "wa": self.wa, "frame_acc": self.frame_acc, "loss": self.loss}


def score_frames(frame_logits: Sequence[torch.Tensor], targets: Sequence[int]) -> EvalResult:
    """Voting, utterance UA / WA, frame accuracy and mean frame cross-entropy."""
    post, dec = vote(frame_logits)
    correct = sum(int((f.argmax(-1) == t).sum()) for f, t in zip(frame_logits, targets))
    frames = sum(int(f.shape[0]) for f in frame_logits)
    loss = sum(float(F.cross_entropy(f, torch.full((f.shape[0],), t), reduction="sum"))
               for f, t in zip(frame_logits, targets))
    return EvalResult(unweighted_accuracy(targets, dec), weighted_accuracy(targets, dec),
                      correct / frames, loss / frames, post, dec)


@torch.no_grad()
def frame_logits(model: GraftedModel, fs: FeatureSet, utts: Sequence[str], chunk_width: int,
                 device: torch.device, cache: MatrixTable | None = None) -> list[torch.Tensor]:
    """Logits [ceil(T/3), K] of every utterance (eval mode; from the cache when given)."""
    model.eval()
    if cache is None:
        return utterance_outputs(model, fs, utts, context_of(model), chunk_width, device=device)
    fsf = model.frame_subsampling_factor
    return [model.head(cache[u][::fsf].to(device)).float().cpu() for u in utts]


@torch.no_grad()
def body_outputs(model: GraftedModel, fs: FeatureSet, utts: Sequence[str], chunk_width: int,
                 device: torch.device) -> list[torch.Tensor]:
    """The frozen body's output at EVERY input frame of ``utts`` (phases 0, 1, 2 interleaved)."""
    model.eval()
    ctx, fsf = context_of(model), model.frame_subsampling_factor
    phases = [utterance_outputs(model.embed, fs, utts, ctx, chunk_width, phase=s, device=device)
              for s in range(fsf)]
    mats = []
    for i, u in enumerate(utts):
        t = fs.feats.num_rows(u)
        m = torch.empty(t, phases[0][i].shape[1])
        for s in range(fsf):
            m[s::fsf] = phases[s][i][:len(range(s, t, fsf))]
        mats.append(m)
    return mats


class FrameClassifier(nn.Module):
    """Body + head as one module (the one DDP wraps): logits [N, K] of the frames ``inside``
    [B, n] of a minibatch, from its inputs ``(x, ivector)`` or from cached body outputs ``h``."""

    def __init__(self, model: GraftedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inside: torch.Tensor, x: torch.Tensor | None = None,
                ivector: torch.Tensor | None = None, h: torch.Tensor | None = None) -> torch.Tensor:
        if h is None:
            h = self.model.embed(x, ivector)
        return self.model.head(h[inside])


class SerTrainer(Task):
    """Trains ``model`` on ``train_utts`` of ``fs`` and selects the epoch on ``valid_utts``;
    writes ``checkpoint.pt``, ``final.pt``, ``valid.json`` and ``training_curve.png`` in
    ``out_dir``.  The task of a :class:`ser.train.loop.Loop`: minibatches, a step and a validation."""

    def __init__(self, model: GraftedModel, cfg: SerTrainConfig, fs: FeatureSet,
                 train_utts: Sequence[str], valid_utts: Sequence[str], labels: Mapping[str, int],
                 out_dir: str | Path, device: torch.device | str = "cpu",
                 class_names: Sequence[str] | None = None, opts: LoopOptions = LoopOptions()) -> None:
        self.model, self.cfg, self.fs = model, cfg, fs
        self.class_names = list(class_names) if class_names is not None else None
        self.device = torch.device(device)
        self.model.to(self.device)
        self.valid_utts, self.labels = list(valid_utts), dict(labels)
        self.out_dir = Path(out_dir)
        self.egs = FrameEgs(fs, train_utts, labels, context_of(model), cfg.chunk_width,
                            cfg.minibatch_size, cfg.seed)
        self.optimizer = torch.optim.Adam(model.param_groups(cfg.initial_lrate))
        self.ortho_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.total_steps = cfg.num_epochs * len(self.egs)
        self.cache: MatrixTable | None = None
        self.rank, self.world = ddp.rank(), ddp.world_size()
        self.net: nn.Module = FrameClassifier(model)  # DDP-wrapped by the loop under torchrun
        if self.world > 1:
            for bn in model.modules():
                if isinstance(bn, KaldiBatchNorm):
                    bn.sync_ranks = True
        self.loop = Loop(self, out_dir, self.total_steps, self.device, patience=cfg.patience, opts=opts,
                         what="emotion trainer", progress=True)

    # -- the task of the loop -----------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return asdict(self.cfg)

    def num_batches(self) -> int:
        return len(self.egs)

    def batches(self, epoch: int, start: int) -> Iterator[FrameMinibatch]:
        return itertools.islice(self.egs.minibatches(epoch), start, None)

    def start(self) -> None:
        torch.manual_seed(self.cfg.seed)

    def extra_state(self) -> dict[str, Any]:
        return {"ortho_gen": self.ortho_gen.get_state()}

    def load_extra_state(self, d: dict[str, Any]) -> None:
        self.ortho_gen.set_state(d["ortho_gen"])

    def step(self, mb: FrameMinibatch, loop: Loop) -> dict[str, float]:
        loss, correct, frames = self.train_step(mb)
        return {"loss": loss, "correct": correct, "frames": frames}

    def score(self, entry: dict[str, Any]) -> tuple[float, float]:
        """Model selection: validation UA, then frame accuracy (a tie keeps the earlier epoch)."""
        return entry["valid_ua"], entry["valid_frame_acc"]

    def point(self, sums: dict[str, float], loop: Loop) -> dict[str, Any]:
        """After an epoch: its training figures and the validation figures."""
        epoch = loop.state.epoch - 1
        rec: dict[str, Any] = {"epoch": epoch, "train_loss": sums["loss"] / sums["frames"],
                               "train_frame_acc": sums["correct"] / sums["frames"]}
        v = self.validate()
        rec.update({f"valid_{k}": x for k, x in v.figures().items()}, lrate=self.lrate())
        log.info("epoch %d: train loss %.4f frame acc %.3f | valid loss %.4f frame acc %.3f "
                 "UA %.3f WA %.3f%s", epoch, rec["train_loss"], rec["train_frame_acc"],
                 v.loss, v.frame_acc, v.ua, v.wa, " *" if loop.improves(rec) else "")
        return rec

    # -- one minibatch ----------------------------------------------------------------------
    def lrate(self) -> float:
        c = self.cfg
        frac = min(1.0, self.loop.state.step / max(1, self.total_steps))
        return c.initial_lrate * math.exp(frac * math.log(c.final_lrate / c.initial_lrate))

    def _inputs(self, mb) -> dict[str, torch.Tensor | None]:
        if self.cache is not None:
            fsf = self.model.frame_subsampling_factor
            # rows first + fsf * j (clamped) of the per-input-frame table
            h = gather_frames(self.cache, mb.utt_idx, mb.first_frame, fsf * mb.num_out)[:, ::fsf]
            return {"h": h.to(self.device)}
        x, iv = self.egs.inputs(mb)
        return {"x": x.to(self.device), "ivector": None if iv is None else iv.to(self.device)}

    def train_step(self, mb) -> tuple[float, int, int]:
        """One update on the global minibatch ``mb`` (this rank's share of it under DDP);
        returns (this rank's share of the summed frame loss, its correct frames, its frames)."""
        self.model.train()
        lr = self.lrate()
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g["lr_factor"]
        frames = mb.num_frames  # of the global minibatch: the loss is its mean
        if self.world > 1:
            mb = mb.select(my_share(mb.batch_size))
        target = mb.target.to(self.device)
        inside = target >= 0
        logits = self.net(inside, **self._inputs(mb))
        part = F.cross_entropy(logits, target[inside], reduction="sum") / frames
        self.optimizer.zero_grad(set_to_none=True)
        (part * self.world).backward()  # DDP averages the ranks' gradients: their sum is wanted
        self.optimizer.step()
        self.model.after_step(self.ortho_gen)
        return float(part.detach()) * frames, int((logits.argmax(-1) == target[inside]).sum()), int(inside.sum())

    # -- epochs -----------------------------------------------------------------------------
    def validate(self) -> EvalResult:
        """Figures of the validation utterances (under DDP each rank computes a share; all get all)."""
        logits = ddp.sharded_map(lambda utts: frame_logits(self.model, self.fs, utts, self.cfg.eval_chunk_width,
                                                           self.device, self.cache), self.valid_utts)
        return score_frames(logits, [self.labels[u] for u in self.valid_utts])

    def run(self) -> dict[str, Any]:
        """Train (resuming from ``checkpoint.pt``), select, write the outputs; returns the
        selected epoch's validation figures."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.loop.resume_or_start()
        if self.model.body_frozen and self.cfg.cache_frozen_body:
            self._build_cache()
        self.loop.run()
        return self._finish()

    def _build_cache(self) -> None:
        # same utterance order as the features, so a minibatch's utt_idx indexes both
        keys = list(self.fs.feats.keys)
        mats = ddp.sharded_map(lambda utts: body_outputs(self.model, self.fs, utts, self.cfg.eval_chunk_width,
                                                         self.device), keys)
        self.cache = MatrixTable.from_arrays(keys, mats)
        log.info("frozen body: cached %s outputs of %d frames", self.model.layer,
                 self.cache.data.shape[0])

    # -- files ------------------------------------------------------------------------------
    def _finish(self) -> dict[str, Any]:
        best = self.loop.selected()  # loads the selected epoch's model
        figures = {k[len("valid_"):]: best[k] for k in ("valid_ua", "valid_wa", "valid_frame_acc",
                                                        "valid_loss")}
        history = self.loop.state.history
        figures.update(epoch=best["epoch"], epochs_trained=self.loop.state.epoch,
                       num_valid_utts=len(self.valid_utts))
        if self.rank > 0:
            return figures
        save_torch(dict(self.model.to_dict(), valid=figures, labels=self.class_names),
                   self.out_dir / "final.pt")
        plot_curve(history, best["epoch"], self.out_dir / "training_curve.png",   # exp/ser/<system>/<fold>
                   f"{self.out_dir.parent.name}, fold {self.out_dir.name}", self.model.head.output.out_features)
        atomic_write_text(self.out_dir / "valid.json",
                          json.dumps(dict(figures, history=history), indent=1) + "\n")
        return figures

