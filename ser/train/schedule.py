"""Kaldi's chain training schedule: archives, iterations, jobs, learning rate, dropout.

Mirrors ``egs/wsj/s5/steps/nnet3/chain/train.py`` and
``egs/wsj/s5/steps/libs/nnet3/train/common.py`` (get_learning_rate, the num_jobs ramp,
num_archives_to_process, num_iters) and ``steps/libs/nnet3/train/dropout_schedule.py``
(through ``ser.nnet.DropoutSchedule``).  Kaldi's numbers (run_tdnn_1g.sh)::

    num_archives           = frames_per_epoch // frames_per_iter + 1      (get_egs.sh)
    num_archives_to_process= int(num_epochs * num_archives * frame_subsampling_factor)
                             (each archive is used with frame shifts 0, 1, 2)
    num_iters              = int(2 * num_archives_to_process / (nj_initial + nj_final))
    num_jobs(iter i)       = int(0.5 + nj_initial + (nj_final - nj_initial) * i / num_iters)
    archives_processed(i)  = sum_{k < i} num_jobs(k)
    effective_lrate        = initial * exp(archives_processed / num_archives_to_process
                                           * ln(final / initial))   (last iter: final)
    job learning rate      = num_jobs(i) * effective_lrate   (then the nj job models are averaged)
    dropout                = piecewise-linear in data_fraction = archives_processed / to_process

How this maps onto one sequential SGD run (see ser.train.chain_trainer for the update):

* progress is the **data fraction** ``f`` = minibatches done / minibatches to do; one pass
  over the egs stands for ``num_archives`` archives, so training makes
  ``num_archives_to_process / num_archives = num_epochs * frame_subsampling_factor`` passes;
* the effective learning rate and the dropout proportion are evaluated at ``f`` before every
  minibatch (the continuous limit of Kaldi's per-iteration values; Kaldi holds them constant
  for an iteration);
* Kaldi's (integer) ``num_jobs`` of the iteration that contains ``f`` is kept: the trainer
  uses it in the l2 factor (``--l2-regularize-factor = 1/num_jobs``) and in the max-change
  semantics (a job's update is ``num_jobs`` times the averaged one);
* iterations still exist, for logs, diagnostics, checkpoints and the iteration-0 special
  case (halved minibatch, max-param-change / sqrt(2)).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from ser.nnet.dropout import DropoutSchedule

__all__ = ["KaldiSchedule"]


@dataclass
class KaldiSchedule:
    """The schedule of one training run; ``frames_per_epoch`` = frames of the training data
    (get_egs.sh's num_frames).  No defaults: a run's values come from
    ser.train.chain_trainer.ChainTrainerConfig (``ChainTrainer.make_schedule``)."""

    num_epochs: float
    frames_per_epoch: int
    frames_per_iter: int
    frame_subsampling_factor: int
    num_jobs_initial: int
    num_jobs_final: int
    initial_effective_lrate: float
    final_effective_lrate: float
    dropout_schedule: str | None
    _dropout: DropoutSchedule | None = field(init=False, repr=False, default=None)
    _archives_at_iter: list[int] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.num_epochs <= 0:
            raise ValueError(f"--num-epochs must be > 0, got {self.num_epochs}")
        if self.frames_per_epoch <= 0 or self.frames_per_iter <= 0:
            raise ValueError("frames per epoch / --frames-per-iter must be > 0")
        if not 1 <= self.num_jobs_initial <= self.num_jobs_final:
            raise ValueError(f"need 1 <= --num-jobs-initial ({self.num_jobs_initial}) <= "
                             f"--num-jobs-final ({self.num_jobs_final})")
        if not (self.initial_effective_lrate > 0 and self.final_effective_lrate > 0):
            raise ValueError("effective learning rates must be > 0")
        if self.dropout_schedule:
            self._dropout = DropoutSchedule.parse(self.dropout_schedule)
        archives = [0]
        for i in range(self.num_iters):
            archives.append(archives[-1] + self.num_jobs_at_iter(i))
        self._archives_at_iter = archives

    # -- Kaldi's integer quantities ----------------------------------------------------------
    @property
    def num_archives(self) -> int:
        return self.frames_per_epoch // self.frames_per_iter + 1

    @property
    def num_archives_to_process(self) -> int:
        return max(1, int(self.num_epochs * self.num_archives * self.frame_subsampling_factor))

    @property
    def num_iters(self) -> int:
        return max(1, int(self.num_archives_to_process * 2
                          / (self.num_jobs_initial + self.num_jobs_final)))

    @property
    def num_passes(self) -> float:
        """Passes over the egs: num_archives_to_process / num_archives."""
        return self.num_archives_to_process / self.num_archives

    def num_jobs_at_iter(self, it: int) -> int:
        return int(0.5 + self.num_jobs_initial
                   + (self.num_jobs_final - self.num_jobs_initial) * it / self.num_iters)

    def archives_processed_at_iter(self, it: int) -> int:
        return self._archives_at_iter[min(max(it, 0), self.num_iters)]

    def kaldi_effective_lrate_at_iter(self, it: int) -> float:
        """Kaldi's get_learning_rate / num_jobs (constant over iteration ``it``)."""
        if it + 1 >= self.num_iters:
            return self.final_effective_lrate
        return self.effective_lrate(self.archives_processed_at_iter(it)
                                    / self.num_archives_to_process)

    # -- as functions of the data fraction ---------------------------------------------------
    def iteration(self, fraction: float) -> int:
        """The Kaldi iteration whose archives contain data fraction ``fraction``."""
        a = min(max(fraction, 0.0), 1.0) * self.num_archives_to_process
        it = bisect.bisect_right(self._archives_at_iter, a + 1e-9) - 1
        return min(it, self.num_iters - 1)

    def num_jobs(self, fraction: float) -> int:
        return self.num_jobs_at_iter(self.iteration(fraction))

    def effective_lrate(self, fraction: float) -> float:
        f = min(max(fraction, 0.0), 1.0)
        return self.initial_effective_lrate * math.exp(
            f * math.log(self.final_effective_lrate / self.initial_effective_lrate))

    def dropout(self, fraction: float) -> list[tuple[str, float]]:
        """[(component-name pattern, proportion)] at this data fraction ([] without a
        schedule); apply in order (later patterns win)."""
        if self._dropout is None:
            return []
        return self._dropout.proportions(min(max(fraction, 0.0), 1.0))

    def describe(self) -> str:
        return (f"num-epochs={self.num_epochs:g} num-archives={self.num_archives} "
                f"archives-to-process={self.num_archives_to_process} num-iters={self.num_iters} "
                f"nj={self.num_jobs_initial}..{self.num_jobs_final} passes={self.num_passes:g} "
                f"effective-lrate={self.initial_effective_lrate:g}->{self.final_effective_lrate:g}")
