"""LF-MMI ("chain") training of the TDNN-F: Kaldi's per-minibatch update, schedule and logs.

Mirrors ``src/nnet3/nnet-chain-training.cc`` (NnetChainTrainer::TrainInternal: objective,
xent branch, ApplyL2Regularization, UpdateNnetWithMaxChange, ScaleBatchnormStats,
ConstrainOrthonormal), ``src/nnet3/nnet-chain-diagnostics.cc`` (nnet3-chain-compute-prob
lines), ``egs/wsj/s5/steps/nnet3/chain/train.py`` + ``steps/libs/nnet3/train/chain_objf/
acoustic_model.py`` (schedule, iteration 0, preconditioning matrix, logs) with the schedule
of ``ser.train.schedule``.  Recipe values are those of run_tdnn_1g.sh.  The pieces live in
their own modules: the update (``ser.train.optimizer``), checkpoints and RNG state
(``ser.train.checkpoint``), logs and the report (``ser.train.report``), minibatches
(``ser.train.minibatch``); this module is the training loop.

Kaldi gives each of its ``nj`` jobs the learning rate ``nj * eta`` and averages the ``nj``
job models after the iteration; to first order the averaged model moved by ``1/nj`` of each
job's updates, so a sequential run of the same minibatches that applies ``U / nj`` (``U`` =
a Kaldi job's delta, ser.train.optimizer) sees the same total step (``eta`` times the summed
gradient) -- this is why Kaldi calls ``eta`` the *effective* learning rate.  ``U`` is
exactly the delta a Kaldi job computes (its l2 term is ``-2 * l2 * lr * num_sequences *
l2_regularize_factor`` with factor ``1/nj``), so the max-change clipping acts on the same
quantity and with the same thresholds (0.75 hidden, 1.5 output layers, 2.0 global) as in
Kaldi.  With ``W`` DDP ranks the minibatch is the union of the ranks' minibatches: gradients
are averaged by DDP and multiplied by ``W`` here (so ``G`` is the sum), ``B`` is all-reduced;
one DDP step therefore equals one single-process step on the concatenated minibatch
(tests/test_ddp.py checks it).  ``--num-chunk-per-minibatch`` is the global minibatch (64
chunks in Kaldi).

Deviations from Kaldi (documented in the README):

* **Adam instead of natural gradient** (``--optimizer adam``, the default): Kaldi's NG-SGD
  preconditions each component's gradient with low-rank Fisher estimates (rank 20 in / 80
  out, scaled to keep the gradient's norm).  Plain SGD on the raw gradient (``--optimizer
  kaldi-sgd``) learns far too slowly without it: on the mini recipe (3 h of speech, flat
  start, 2 passes of e2e training) SGD reaches a log-prob of only -0.58 and a dev phone
  error rate of 99.9% (the best path is silence; the no-acoustics baseline is 96.4%), Adam
  -0.09 and 32-38%.  KaldiAdam uses Adam's direction (the usual PyTorch stand-in for NG-SGD,
  e.g. Espresso's LF-MMI recipes) and keeps everything else: the exponentially decaying
  learning rate of the schedule (``--initial/final-effective-lrate`` are then Adam step sizes
  per sequential update), the per-component learning-rate factors, the l2 as decoupled
  weight decay of exactly Kaldi's strength, the per-component max-change on the job delta
  and the global max-param-change.  Because Adam's step size does not scale with the
  gradient, its learning rates are not Kaldi's: the defaults (tdnn_1g) are 1e-3 -> 1e-4
  (Kaldi's job lr ``nj * 0.00025`` is 0.00075..0.003; the usual Adam lr for LF-MMI TDNNs is
  1e-3) rather than Kaldi's 0.00025 -> 0.000025; the mini recipe uses 0.005 -> 0.0005.
* **No model averaging / no final combination**: one model is trained sequentially (or
  synchronously with DDP); ``nnet3-chain-combine`` over the last models is not done, the
  final model is the last one (with recomputed BatchNorm statistics, see below).  On
  iteration 0 Kaldi keeps the best job model; here there is only one.
* The effective learning rate and the dropout proportion are evaluated before every
  minibatch at the data fraction (Kaldi: once per iteration); see ser.train.schedule.
* Iteration 0 (Kaldi: minibatch halved to 32, max-param-change / sqrt 2) is done by
  splitting each minibatch of iteration 0 into two halves, two updates.
* The LDA-like preconditioning takes its class labels from the argmax of the numerator
  posteriors computed with an all-zero network output (flat-start graphs have no
  alignment; Kaldi uses a random path through the supervision, ``alignment_pdfs``), on the
  frames of the output times (those ``nnet3-chain-acc-lda-stats`` sees).
* BatchNorm with DDP: each rank normalises with its own minibatch statistics (as each Kaldi
  job does); after every update the stored statistics are averaged over the ranks
  (all-reduce of count, sum and sum of squares, divided by ``W``), which is what
  ``nnet3-average`` does to the BatchNorm stats of the job models, then scaled by 0.8.
* bf16 autocast for the network on CUDA: the TDNN-F body in bfloat16, the output layers, the
  BatchNorm statistics and the objective in float32 (ser.nnet.tdnnf.full_precision).
* Under Adam the xent branch's learning-rate factors and the max-change thresholds are
  translated (ser.train.optimizer.adam_component_groups); each iteration logs how often
  max-change bound.
* The final model's BatchNorm statistics are recomputed over ``batchnorm_recompute_sequences``
  training sequences at every frame shift (``nnet3-chain-combine``'s RecomputeStats; there is no
  model combination otherwise); the last iteration's diagnostics are computed with them.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ser.chain.graph import ChainGraph
from ser.chain.numerator import numerator_forward_backward
from ser.chain.objective import LFMMILoss
from ser.config import ChainConfig
from ser.io.atomic import atomic_write_text
from ser.jobs import log_header, open_log
from ser.io.torch_io import save_torch
from ser.nnet.model_io import save_chain_model
from ser.nnet.orthonormal import apply_orthonormal_constraint
from ser.nnet.preconditioning import LdaStats, splice_input
from ser.nnet.tdnnf import TdnnfModel
from ser import ddp
from ser.train.checkpoint import CHECKPOINT_FORMAT, read_checkpoint, rng_state, set_rng_state
from ser.train.minibatch import ChainMinibatch, split_minibatch
from ser.train.optimizer import (ADAM_BETAS, ADAM_EPSILON, ADAM_MAX_CHANGE_SCALE, MAX_PARAM_CHANGE,
                                 adam_component_groups, make_optimizer)
from ser.train.report import compute_prob_text, objective_lines, write_report
from ser.train.schedule import KaldiSchedule

logger = logging.getLogger(__name__)

__all__ = ["EgsSource", "ChainTrainerConfig", "ChainTrainer"]


class EgsSource(Protocol):
    """What the trainer needs from an egs loader (ser.train.egs):

    ``__iter__`` yields the ChainMinibatches of one pass, starting where ``load_state_dict``
    left it; ``__len__`` = minibatches per pass; ``set_epoch(k)`` selects the shuffling (and
    frame shift) of pass k; ``state_dict``/``load_state_dict`` save/restore the position
    within the pass (for exact resumption).  Optional ``num_frames``: the frames of the training
    utterances (Kaldi's ``num_frames``, which sets ``num_archives``); without it the pass is
    estimated from its first minibatch.
    """

    def __iter__(self) -> Iterator[ChainMinibatch]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


_REC = ChainConfig()  # the recipe's defaults (ser.config): defined once


@dataclass
class ChainTrainerConfig:
    """Options (Kaldi names with ``--``/``-`` -> ``_``; defaults = run_tdnn_1g.sh, with the Adam
    step sizes of the module docstring; those the recipe sets come from ser.config.ChainConfig).  The
    schedule (ser.train.schedule) and the optimizers (ser.train.optimizer) are built from it."""

    num_epochs: float = float(_REC.num_epochs)
    initial_effective_lrate: float = _REC.initial_effective_lrate  # Adam step size (Kaldi's NG-SGD: 0.00025)
    final_effective_lrate: float = _REC.final_effective_lrate  # Adam step size (Kaldi's NG-SGD: 0.000025)
    num_jobs_initial: int = 3
    num_jobs_final: int = 12
    frames_per_iter: int = _REC.frames_per_iter
    xent_regularize: float = 0.1
    leaky_hmm_coefficient: float = 0.1
    out_of_range_regularize: float = 0.01
    chain_l2_regularize: float = 0.0
    dropout_schedule: str | None = _REC.dropout_schedule
    max_param_change: float = MAX_PARAM_CHANGE
    optimizer: str = _REC.optimizer  # adam (KaldiAdam) | kaldi-sgd (KaldiSgd); see the module docstring
    adam_beta1: float = ADAM_BETAS[0]
    adam_beta2: float = ADAM_BETAS[1]
    adam_epsilon: float = ADAM_EPSILON
    adam_max_change_scale: float = ADAM_MAX_CHANGE_SCALE  # Kaldi's max-change x this under Adam
    batchnorm_stats_scale: float = 0.8
    batchnorm_recompute_sequences: int = 300  # final model's BatchNorm stats (0: keep the decayed sums)
    iter0_special: bool = True  # iteration 0: halved minibatch, max-param-change / sqrt(2)
    lda_minibatches: int = 20  # minibatches of lda_egs for the preconditioning matrix
    checkpoint_interval: int = 0  # also checkpoint every N minibatches (0: iteration ends only)
    print_interval: int = 10  # minibatches between progress lines in train.N.log
    seed: int = 0
    bf16: bool = True  # autocast the network to bfloat16 on CUDA


@dataclass
class _State:
    step: int = 0  # minibatches done (all passes)
    epoch: int = 0  # current pass over the egs
    step_in_epoch: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 0
    frames_per_epoch: int = 0
    iteration: int = 0  # Kaldi iteration of the next minibatch
    preconditioned: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    iter_sums: dict[str, float] = field(default_factory=dict)  # objf sums of this iteration


class ChainTrainer:
    """Drives LF-MMI training of a TdnnfModel over an EgsSource; see the module docstring.

    Typical use (single process; under torchrun call ``torch.distributed.init_process_group``
    first, the trainer wraps the model in DDP)::

        trainer = ChainTrainer(model, den_graph, ChainTrainerConfig(), "exp/chain/tdnn")
        trainer.train(train_egs, valid_egs=valid, train_diag_egs=diag, lda_egs=diag,
                      resume=True)
    """

    def __init__(self, model: TdnnfModel, den_graph: ChainGraph, config: ChainTrainerConfig,
                 out_dir: str | Path, device: str | torch.device = "cpu") -> None:
        self.cfg = config
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.distributed = ddp.is_distributed()
        self.rank, self.world_size = ddp.rank(), ddp.world_size()
        self.model = model.to(self.device)
        self.ddp_model: nn.Module = self.model
        self.loss_fn = LFMMILoss(den_graph.to(self.device), config.leaky_hmm_coefficient,
                                 config.xent_regularize, config.out_of_range_regularize,
                                 config.chain_l2_regularize,
                                 generator=torch.Generator().manual_seed(config.seed + 7919 * self.rank))
        groups, self.max_param_change = model.component_groups(), config.max_param_change
        if config.optimizer == "adam":  # Kaldi's xent rates and max-change translated (ser.train.optimizer)
            xent = {f"{name}.": config.xent_regularize for name in model.branch_names["output-xent"]}
            groups = adam_component_groups(groups, xent, config.adam_max_change_scale)
            self.max_param_change *= config.adam_max_change_scale
        self.optimizer = make_optimizer(config.optimizer, groups, self.max_param_change,
                                        (config.adam_beta1, config.adam_beta2), config.adam_epsilon)
        # same seed on every rank: the orthonormal-constraint draws keep the ranks identical
        self.ortho_gen = torch.Generator().manual_seed(config.seed + 1)
        self.state = _State()
        self.schedule: KaldiSchedule | None = None
        self._log_file = None
        self._log_iter = -1
        self._t_print = time.time()

    # -- small helpers --------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _autocast(self):
        enabled = self.cfg.bf16 and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _log(self, msg: str) -> None:
        logger.info(msg)
        if self.is_main and self._log_file is not None:
            self._log_file.write(msg + "\n")
            self._log_file.flush()

    def _open_iter_log(self, it: int) -> None:
        if not self.is_main or it == self._log_iter:
            return
        self._close_log()
        (self.out_dir / "log").mkdir(parents=True, exist_ok=True)
        self._log_file = open_log(self.out_dir / "log" / f"train.{it}.log")
        self._log_iter = it

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            self._log_iter = -1

    def make_schedule(self, frames_per_epoch: int | None = None) -> KaldiSchedule:
        """The schedule of this configuration for passes of ``frames_per_epoch`` input frames
        (default: those measured on the training egs)."""
        c = self.cfg
        frames = self.state.frames_per_epoch if frames_per_epoch is None else frames_per_epoch
        return KaldiSchedule(c.num_epochs, frames, c.frames_per_iter, self.model.frame_subsampling_factor,
                             c.num_jobs_initial, c.num_jobs_final, c.initial_effective_lrate,
                             c.final_effective_lrate, c.dropout_schedule)

    # -- the model's forward and the objective ---------------------------------------------
    def _objective(self, model: nn.Module, mb: ChainMinibatch):
        mb = mb.to(self.device)
        with self._autocast():
            out = model(mb.feats, mb.ivector)
        lengths = mb.num_output_frames
        t = int(lengths.max())
        n = out["output"].shape[1]
        if n < t:
            raise ValueError(f"minibatch {mb.keys[0]}...: the network gives {n} output frames "
                             f"for {mb.feats.shape[1]} input frames but the supervision has {t}")
        y = out["output"][:, :t].float()
        xent = out["output-xent"][:, :t].float()
        if bool((lengths == t).all()):
            return self.loss_fn(y, mb.num_graphs, xent)
        return self.loss_fn(y, mb.num_graphs, xent, lengths=lengths)

    # -- one update -----------------------------------------------------------------------
    def train_step(self, mb: ChainMinibatch, fraction: float, iteration: int) -> dict[str, float]:
        """Forward, LF-MMI + xent, backward and Kaldi's update for one minibatch at data
        fraction ``fraction``; returns objective sums for logging."""
        sched = self.schedule
        assert sched is not None
        self.model.train()
        for pattern, proportion in sched.dropout(fraction):
            self.model.set_dropout(proportion, pattern)
        nj = sched.num_jobs(fraction)
        eta = sched.effective_lrate(fraction)
        mpc = self.max_param_change
        parts = [mb]
        if iteration == 0 and self.cfg.iter0_special:
            parts = split_minibatch(mb)
            mpc = mpc / math.sqrt(2.0)
        sums = {"objf": 0.0, "xent": 0.0, "frames": 0.0, "updates": 0.0, "mc_component": 0.0, "mc_global": 0.0}
        for part in parts:
            self.optimizer.zero_grad(set_to_none=True)
            loss, info = self._objective(self.ddp_model, part)
            loss.backward()
            nseq = ddp.all_reduce_(torch.tensor([float(part.batch_size)]))
            stats = self.optimizer.step(effective_lrate=eta, num_jobs=nj,
                                        num_sequences=int(nseq.item()),
                                        grad_scale=float(self.world_size), max_param_change=mpc)
            self._sync_batchnorm_stats()
            self.model.scale_batchnorm_stats(self.cfg.batchnorm_stats_scale)
            apply_orthonormal_constraint(self.model, self.ortho_gen)
            sums["objf"] += info.objf
            sums["xent"] += info.xent_objf or 0.0
            sums["frames"] += info.num_frames
            sums["updates"] += 1
            sums["mc_component"] += float(stats.num_limited > 0)
            sums["mc_global"] += float(stats.global_scale < 1.0)
            if stats.num_limited or stats.global_scale < 1.0 or not stats.applied:
                self._log(f"  step {self.state.step}: {stats}")
        return sums

    @torch.no_grad()
    def _sync_batchnorm_stats(self) -> None:
        """Average the stored BatchNorm stats over ranks (nnet3-average of the job models)."""
        if not self.distributed or self.world_size == 1:
            return
        bufs = []
        for bn in self.model.batchnorms():
            bufs += [bn.stats_count.reshape(1), bn.stats_sum, bn.stats_sumsq]
        flat = ddp.all_reduce_(torch.cat(bufs))
        flat /= self.world_size
        off = 0
        for bn in self.model.batchnorms():
            for buf in (bn.stats_count, bn.stats_sum, bn.stats_sumsq):
                k = buf.numel()
                buf.copy_(flat[off:off + k].view_as(buf))
                off += k

    def _recompute_inputs(self, egs: EgsSource) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """About ``batchnorm_recompute_sequences`` training sequences, an equal share from passes
        with each frame shift (shuffled minibatches of every chunk width)."""
        fsf = self.model.frame_subsampling_factor
        share = math.ceil(self.cfg.batchnorm_recompute_sequences / fsf)
        for k in range(fsf):
            egs.set_epoch(self.state.epoch + 1 + k)
            seen = 0
            for mb in egs:
                if seen >= share:
                    break
                mb = mb.to(self.device)
                seen += mb.batch_size
                yield mb.feats, mb.ivector

    def recompute_batchnorm_stats(self, egs: EgsSource) -> None:
        """The final model's BatchNorm statistics from a pass over training sequences, as
        ``nnet3-chain-combine`` (RecomputeStats) gives Kaldi's final.mdl, instead of the decayed
        sums of the last minibatches; averaged over the ranks under DDP."""
        if self.cfg.batchnorm_recompute_sequences <= 0 or not self.model.batchnorms():
            return
        with self._autocast():
            n = self.model.recompute_batchnorm_stats(self._recompute_inputs(egs))
        self._sync_batchnorm_stats()
        egs.set_epoch(self.state.epoch)
        self._log(f"batchnorm stats recomputed over {n} training sequences (RecomputeStats)")

    # -- diagnostics ----------------------------------------------------------------------
    @torch.no_grad()
    def compute_prob(self, egs: Iterable[ChainMinibatch]) -> dict[str, float]:
        """nnet3-chain-compute-prob: test-mode objective per frame over ``egs``."""
        self.model.eval()
        objf = xent = frames = 0.0
        for mb in egs:
            _, info = self._objective(self.model, mb)
            objf += info.objf
            xent += info.xent_objf or 0.0
            frames += info.num_frames
        self.model.train()
        if frames == 0:
            raise ValueError("compute_prob: no frames in the diagnostic egs")
        return {"output": objf / frames, "output-xent": xent / frames, "frames": frames}

    def _write_compute_prob(self, name: str, it: int, res: dict[str, float]) -> None:
        text = compute_prob_text(res)
        atomic_write_text(self.out_dir / "log" / f"compute_prob_{name}.{it}.log", log_header() + text)
        for line in text.splitlines():
            self._log(f"compute_prob_{name}.{it}: {line}")

    # -- preconditioning ------------------------------------------------------------------
    @torch.no_grad()
    def estimate_preconditioning(self, egs: Iterable[ChainMinibatch],
                                 max_minibatches: int | None = None) -> int:
        """Kaldi's lda.mat (nnet3-chain-acc-lda-stats + nnet-get-feature-transform) from up to
        ``max_minibatches`` minibatches; labels = argmax numerator posterior (zero output).
        Returns the number of frames used."""
        cfg = self.model.config
        offsets = cfg.splice_offsets
        left = self.model.left_context
        fsf = self.model.frame_subsampling_factor
        stats = LdaStats(len(offsets) * cfg.feat_dim + cfg.ivector_dim, cfg.num_pdfs)
        limit = self.cfg.lda_minibatches if max_minibatches is None else max_minibatches
        for k, mb in enumerate(egs):
            if k >= limit:
                break
            mb = mb.to(self.device)
            lengths = mb.num_output_frames
            t = int(lengths.max())
            zeros = torch.zeros(mb.batch_size, t, cfg.num_pdfs, device=self.device)
            if bool((lengths == t).all()):
                _, post, ok = numerator_forward_backward(zeros, mb.num_graphs, True)
            else:
                _, post, ok = numerator_forward_backward(zeros, mb.num_graphs, True, lengths=lengths)
            if not ok:
                logger.warning("preconditioning: numerator failed on minibatch %s...; skipped",
                               mb.keys[0])
                continue
            labels = post.argmax(-1)  # [B, t]
            spliced = splice_input(mb.feats, mb.ivector, offsets)  # row j = centre frame j - lo
            rows = left + fsf * torch.arange(t, device=self.device) + min(offsets)
            if int(rows.max()) >= spliced.shape[1]:
                raise ValueError(f"preconditioning: minibatch {mb.keys[0]}... has too few input "
                                 f"frames ({mb.feats.shape[1]}) for {t} output frames")
            x = spliced[:, rows]  # [B, t, D]
            valid = torch.arange(t, device=self.device)[None, :] < lengths[:, None]
            stats.accumulate(x[valid], labels[valid])
        if stats.count < 2:
            raise ValueError("preconditioning: no frames (empty lda egs?)")
        w, b = stats.estimate()
        self.model.set_preconditioning(w.float(), b.float())
        self.state.preconditioned = True
        logger.info("preconditioning matrix estimated from %d frames", int(stats.count))
        return int(stats.count)

    def _broadcast_preconditioning(self) -> None:
        if not self.distributed:
            return
        lda = self.model.layers["lda"]
        dist.broadcast(lda.weight, 0)
        dist.broadcast(lda.bias, 0)
        flag = torch.tensor([1.0 if self.state.preconditioned else 0.0])
        dist.broadcast(flag, 0)
        self.state.preconditioned = bool(flag.item())

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint_dict(self, egs: EgsSource | None) -> dict[str, Any] | None:
        """Collective under DDP; returns the dict on rank 0 (None elsewhere)."""
        rngs = ddp.all_gather({"global": rng_state(), "oor": self.loss_fn.generator.get_state()})
        egs_states = ddp.all_gather(egs.state_dict() if egs is not None else {})
        if not self.is_main:
            return None
        return {"format": CHECKPOINT_FORMAT, "model_config": self.model.config.to_dict(),
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "trainer": asdict(self.state),
                "trainer_config": asdict(self.cfg), "world_size": self.world_size,
                "rng": rngs, "ortho_gen": self.ortho_gen.get_state(), "egs": egs_states}

    def save_checkpoint(self, egs: EgsSource | None) -> None:
        d = self.checkpoint_dict(egs)
        if d is not None:
            save_torch(d, self.out_dir / "checkpoint.pt")
        ddp.barrier()

    def load_checkpoint(self, path: str | Path, egs: EgsSource | None) -> None:
        d = read_checkpoint(path, self.model.config.to_dict(), self.cfg.optimizer)
        self.model.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.state = _State(**dict(d["trainer"]))
        self.ortho_gen.set_state(d["ortho_gen"])
        if d["world_size"] == self.world_size:
            set_rng_state(d["rng"][self.rank]["global"])
            self.loss_fn.generator.set_state(d["rng"][self.rank]["oor"])
            egs_state = d["egs"][self.rank]
        else:
            logger.warning("%s: saved with %d ranks, resuming with %d: RNG and egs position of "
                           "rank 0 used, not an exact resumption", path, d["world_size"],
                           self.world_size)
            set_rng_state(d["rng"][0]["global"])
            egs_state = d["egs"][0]
        if egs is not None:
            egs.set_epoch(self.state.epoch)
            if egs_state:
                egs.load_state_dict(egs_state)

    # -- the loop -------------------------------------------------------------------------
    def train(self, egs: EgsSource, valid_egs: Iterable[ChainMinibatch] | None = None,
              train_diag_egs: Iterable[ChainMinibatch] | None = None,
              lda_egs: Iterable[ChainMinibatch] | None = None, resume: bool = True,
              max_steps: int | None = None) -> dict[str, Any]:
        """Train to the end of the schedule (or ``max_steps`` more minibatches); resumes from
        ``<out_dir>/checkpoint.pt`` when ``resume`` and it exists.  Writes ``final.pt`` at the
        end.  Returns the last history entry."""
        self._prepare(egs, lda_egs, resume)
        st = self.state
        if st.step >= st.total_steps and st.history:
            logger.info("%s: training already finished (%d minibatches)", self.out_dir, st.step)
            if self.is_main and not (self.out_dir / "final.pt").is_file():  # killed before it was written
                self._write_final_model()
            return st.history[-1]
        self._open_iter_log(st.iteration)
        self._t_print = time.time()
        done = 0
        while st.step < st.total_steps and (max_steps is None or done < max_steps):
            done += self._train_pass(egs, valid_egs, train_diag_egs,
                                     None if max_steps is None else max_steps - done)
        if st.step >= st.total_steps:
            self.recompute_batchnorm_stats(egs)
            self._end_iteration(st.iteration, egs, valid_egs, train_diag_egs)
            if self.is_main:
                self._write_final_model()
                self._log(f"training done: {st.step} minibatches; wrote {self.out_dir}/final.pt")
        else:
            self.save_checkpoint(egs)
        self._close_log()
        return st.history[-1] if st.history else {}

    def _write_final_model(self) -> None:
        save_chain_model(self.out_dir / "final.pt", self.model,
                         {"history": self.state.history, "schedule": self.schedule.describe()})

    def _prepare(self, egs: EgsSource, lda_egs: Iterable[ChainMinibatch] | None, resume: bool) -> None:
        """Resume from the checkpoint, or start: seeds, pass size, preconditioning matrix; then
        the schedule and (under torchrun) the DDP wrapper."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = self.out_dir / "checkpoint.pt"
        if resume and ckpt.is_file():
            self.load_checkpoint(ckpt, egs)
            self._log(f"resuming from {ckpt} at minibatch {self.state.step}/{self.state.total_steps}")
        else:
            torch.manual_seed(self.cfg.seed + self.rank)  # dropout masks differ per rank
            np.random.seed(self.cfg.seed + self.rank)
            random.seed(self.cfg.seed + self.rank)
            self._measure_egs(egs)
            if lda_egs is not None and not self.state.preconditioned:
                if self.is_main:
                    self.estimate_preconditioning(lda_egs)
                self._broadcast_preconditioning()
            egs.set_epoch(0)
        self.schedule = sched = self.make_schedule()
        if self.state.total_steps == 0:
            self.state.total_steps = max(1, round(sched.num_passes * self.state.steps_per_epoch))
            self.state.iteration = 0
        if self.is_main:
            logger.info("schedule: %s; %d minibatches/pass, %d minibatches in all, %d rank(s)",
                        sched.describe(), self.state.steps_per_epoch, self.state.total_steps,
                        self.world_size)
        if self.distributed and self.ddp_model is self.model:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)

    def _measure_egs(self, egs: EgsSource) -> None:
        """Minibatches and frames per pass (the smallest / the sum over the ranks)."""
        steps = torch.tensor([float(len(egs))])
        steps = ddp.all_reduce_(steps, dist.ReduceOp.MIN if self.distributed else None)
        self.state.steps_per_epoch = int(steps.item())
        if self.state.steps_per_epoch < 1:
            raise ValueError("the training egs are empty")
        frames = getattr(egs, "num_frames", None)
        if frames is None:
            first = next(iter(egs))
            frames = int(first.feats.shape[0] * first.feats.shape[1]) * len(egs)
            egs.set_epoch(0)  # rewind
        frames = ddp.all_reduce_(torch.tensor([float(frames)]))
        self.state.frames_per_epoch = int(frames.item())

    def _train_pass(self, egs: EgsSource, valid_egs, train_diag_egs, max_steps: int | None) -> int:
        """The rest of the current pass over the egs, stopping early at the end of training or
        after ``max_steps`` minibatches; returns the number of minibatches done."""
        st = self.state
        done = 0
        for mb in egs:
            it = st.iteration
            fraction = st.step / st.total_steps
            sums = self.train_step(mb, fraction, it)
            for k, v in sums.items():
                st.iter_sums[k] = st.iter_sums.get(k, 0.0) + v
            st.step += 1
            st.step_in_epoch += 1
            done += 1
            if st.step % self.cfg.print_interval == 0 or st.step == 1:
                self._log_progress(it, fraction, sums)
            last = st.step >= st.total_steps
            end_of_pass = st.step_in_epoch >= st.steps_per_epoch
            self._after_minibatch(egs, valid_egs, train_diag_egs, last, end_of_pass)
            if last or end_of_pass or (max_steps is not None and done >= max_steps):
                break
        if done == 0:
            raise RuntimeError(f"the training egs gave no minibatch in pass {st.epoch} "
                               f"(expected {st.steps_per_epoch})")
        if st.step_in_epoch and st.step < st.total_steps and (max_steps is None or done < max_steps):
            raise RuntimeError(f"the training egs ran out after {st.step_in_epoch} of "
                               f"{st.steps_per_epoch} minibatches in pass {st.epoch}")
        return done

    def _log_progress(self, it: int, fraction: float, sums: dict[str, float]) -> None:
        st, sched = self.state, self.schedule
        dt = time.time() - self._t_print
        self._t_print = time.time()
        self._log(f"minibatch {st.step}/{st.total_steps} (iter {it}, pass {st.epoch}) "
                  f"effective-lrate {sched.effective_lrate(fraction):.4g} nj "
                  f"{sched.num_jobs(fraction)} dropout "
                  f"{','.join(f'{p:.3f}' for _, p in sched.dropout(fraction)) or '-'}: "
                  f"log-prob {sums['objf'] / sums['frames']:.4f} xent "
                  f"{sums['xent'] / sums['frames']:.4f} over {int(sums['frames'])} "
                  f"frames ({dt:.1f} s)")

    def _after_minibatch(self, egs: EgsSource, valid_egs, train_diag_egs, last: bool, end_of_pass: bool) -> None:
        """Next pass, end of a Kaldi iteration (diagnostics, report, checkpoint), or an
        interval checkpoint."""
        st = self.state
        if end_of_pass and not last:
            st.epoch += 1
            st.step_in_epoch = 0
            egs.set_epoch(st.epoch)
        next_it = self.schedule.iteration(st.step / st.total_steps)
        if not last and next_it != st.iteration:
            self._end_iteration(st.iteration, egs, valid_egs, train_diag_egs)
            st.iteration = next_it
            self._open_iter_log(next_it)
        elif self.cfg.checkpoint_interval and st.step % self.cfg.checkpoint_interval == 0 and not last:
            self.save_checkpoint(egs)

    def _end_iteration(self, it: int, egs: EgsSource, valid_egs, train_diag_egs) -> None:
        for line in objective_lines(self.state.iter_sums):
            self._log(line)
        entry: dict[str, float] = {"iter": float(it), "step": float(self.state.step),
                                   "fraction": self.state.step / self.state.total_steps}
        entry.update({k: self.state.iter_sums.get(k, 0.0) for k in ("updates", "mc_component", "mc_global")})
        if self.is_main:
            for name, e in (("train", train_diag_egs), ("valid", valid_egs)):
                if e is not None:
                    res = self.compute_prob(e)
                    self._write_compute_prob(name, it, res)
                    entry[f"{name}_objf"] = res["output"]
                    entry[f"{name}_xent"] = res["output-xent"]
        self.state.history.append(entry)
        self.state.iter_sums = {}
        if self.is_main:
            write_report(self.state.history, self.out_dir / "report")
        self.save_checkpoint(egs)
