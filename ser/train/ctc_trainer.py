"""CTC training of the DeepSpeech-style model (paper 2's acoustic model), DeepSpeech v0.9's recipe.

Mirrors ``training/deepspeech_training/train.py`` (``calculate_mean_edit_distance_and_loss``: the loss
of a minibatch is the mean over its utterances of ``tf.nn.ctc_loss``; ``create_optimizer``: Adam with
``--learning_rate`` 0.001, ``--beta1`` 0.9, ``--beta2`` 0.999, ``--epsilon`` 1e-8, constant rate, no
gradient clipping) with torch's ``ctc_loss`` (blank = the last output, TF's convention).

The loop is ser.train.loop's (this trainer is its task): minibatches of :class:`ser.train.ctc_data.CtcBatches`,
one Adam step each; every ``valid_interval`` minibatches (and at the end) the held-out utterances are scored --
CTC loss per frame and greedy CER / WER (``ser.ctc.decode``) -- a point is added to ``report/progress.tsv`` and
``report/training_curve.png``, and ``checkpoint.pt`` is written (also every ``--checkpoint-interval``
minibatches).  A checkpoint holds the model, Adam's state, the loop's position and every RNG, and every pass
visits the minibatches in the same order (shortest first), so a resumed run continues exactly as an
uninterrupted one would (tests/test_ctc.py checks it).  The final model is the last one (``final.pt``; no model
selection on dev or test).

Data parallel (``NPROC=N steps/ctc/train.sh``, utils/torchrun.sh): every rank makes the same minibatches and
computes the loss of every N-th utterance of each (ser.train.loop.my_share; a rank left without one runs the
first at weight 0, as DDP needs every rank's backward); the loss of a rank is the sum of its utterances' losses
over the GLOBAL count of finite ones, times N (DDP averages the gradients), so N ranks make the one-process
update up to float rounding (tests/test_torchrun_ctc.py).  Held-out minibatches are scored by the ranks in turn
and gathered.  Dropout masks are drawn per rank, so with dropout the N-rank run is another draw, not the same
numbers.  The per-minibatch log lines are rank 0's share.

Deviations from DeepSpeech: minibatches by frame budget, not by utterance count (see ser.train.ctc_data);
no early stopping or learning-rate reduction on plateau (both off by default in v0.9 too); a minibatch
whose loss or gradient is not finite for some utterance leaves those utterances out (logged, counted)
where DeepSpeech only reports them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from ser.ctc.decode import error_rate, greedy_decode
from ser.ctc.text import decode_ids
from ser import ddp
from ser.config import CtcConfig
from ser.io.atomic import atomic_open, atomic_write_text
from ser.jobs import open_log
from ser.nnet.deepspeech import DeepSpeechModel
from ser.nnet.model_io import save_deepspeech_model
from ser.train.ctc_data import CtcBatches, CtcData, CtcMinibatch
from ser.train.loop import Loop, LoopOptions, LoopState, Task, my_share

logger = logging.getLogger(__name__)

_REC = CtcConfig()  # the recipe's defaults (ser.config): defined once


@dataclass
class CtcTrainerConfig:
    """Options (DeepSpeech flag names in the comments; defaults = DeepSpeech v0.9, from ser.config.CtcConfig)."""

    num_epochs: float = float(_REC.epochs)  # --epochs
    learning_rate: float = _REC.learning_rate  # --learning_rate
    adam_beta1: float = 0.9         # --beta1
    adam_beta2: float = 0.999       # --beta2
    adam_epsilon: float = 1e-8      # --epsilon
    max_frames: int = _REC.max_frames  # padded frames per minibatch (DeepSpeech: --train_batch_size utterances)
    valid_interval: int = _REC.valid_interval  # minibatches between held-out evaluations (0: once per pass)
    print_interval: int = 10
    seed: int = 0


def ctc_losses(model: DeepSpeechModel, mb: CtcMinibatch, net: torch.nn.Module | None = None) -> torch.Tensor:
    """Per-utterance CTC loss (negative log-likelihood of the labels) [B]; ``net``: ``model`` wrapped (DDP)."""
    logits = (net or model)(mb.feats, lengths=mb.lengths)["output"]
    log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # [T, B, C]
    return F.ctc_loss(log_probs, mb.targets, mb.lengths, mb.target_lengths, blank=model.blank,
                      reduction="none", zero_infinity=False)


def frame_mean_std(data: CtcData) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coefficient mean and standard deviation of every frame of ``data`` (float64 sums, one utterance at
    a time: Kaldi's global ``compute-cmvn-stats``)."""
    dim = data.feats.dim
    total, total_sq, n = torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dtype=torch.float64), 0
    for k in data.keys:
        m = data.feats[k].double()
        total += m.sum(0)
        total_sq += (m * m).sum(0)
        n += m.shape[0]
    mean = total / n
    return mean.float(), (total_sq / n - mean * mean).clamp(min=0).sqrt().float()


def share_of(mb: CtcMinibatch, rows: Sequence[int]) -> CtcMinibatch:
    """The utterances ``rows`` of ``mb`` (a rank's share; the padded width is kept)."""
    rows = list(rows)
    ends = mb.target_lengths.cumsum(0)
    targets = [mb.targets[int(ends[i]) - int(mb.target_lengths[i]):int(ends[i])] for i in rows]
    return CtcMinibatch([mb.keys[i] for i in rows], mb.feats[rows], mb.lengths[rows], torch.cat(targets),
                        mb.target_lengths[rows])


class CtcTrainer(Task):
    """``CtcTrainer(model, config, out_dir).train(train_data, held_out)``; see the module docstring.  The task
    of a :class:`ser.train.loop.Loop`: minibatches, a step (CTC loss) and a held-out evaluation; no model
    selection (the last model is the final one, as DeepSpeech's)."""

    def __init__(self, model: DeepSpeechModel, config: CtcTrainerConfig, out_dir: str | Path,
                 device: str | torch.device = "cpu", opts: LoopOptions = LoopOptions()) -> None:
        self.cfg = config
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.model = self.net = model.to(self.device)  # net: DDP-wrapped by the loop under torchrun
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                          betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)
        self.rank, self.world = ddp.rank(), ddp.world_size()
        self.skipped_utts = 0           # utterances left out for a non-finite loss
        self.data: CtcData | None = None
        self.held_out: CtcData | None = None
        self.egs: CtcBatches | None = None
        self.loop = Loop(self, out_dir, 0, self.device, valid_interval=config.valid_interval, opts=opts,
                         what="CTC trainer")
        self._log_file = None
        self._t0 = time.time()

    @property
    def state(self) -> LoopState:
        """The loop's position and history (``step``, ``epoch``, ``history``)."""
        return self.loop.state

    def _log(self, msg: str, level: int = logging.INFO) -> None:
        """To the logger and (rank 0) to log/train.log."""
        logger.log(level, msg)
        if self._log_file is not None:
            self._log_file.write(msg + "\n")
            self._log_file.flush()

    # -- the task of the loop ------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {"model_config": self.model.config.to_dict(), "trainer_config": asdict(self.cfg)}

    def num_batches(self) -> int:
        return len(self.egs)

    def batches(self, epoch: int, start: int) -> Iterator[CtcMinibatch]:
        return self.egs.iterate(start)  # every pass in the same order (shortest first)

    def start(self) -> None:
        torch.manual_seed(self.cfg.seed)
        self.model.set_input_normalization(*frame_mean_std(self.data))

    def extra_state(self) -> dict[str, Any]:
        return {"skipped_utts": self.skipped_utts}

    def load_extra_state(self, d: dict[str, Any]) -> None:
        self.skipped_utts = int(d["skipped_utts"])

    def step(self, mb: CtcMinibatch, loop: Loop) -> dict[str, float]:
        sums = self.train_step(mb)
        st = loop.state
        step = st.step + 1
        if step % self.cfg.print_interval == 0 or step == 1:
            self._log(f"minibatch {step}/{loop.total_steps} (pass {st.epoch}): CTC loss "
                      f"{sums['loss'] / max(sums['frames'], 1):.4f} per frame over {int(sums['frames'])} "
                      f"frames, {len(mb.keys)} utterances ({time.time() - self._t0:.1f} s)")
        return sums

    def point(self, sums: dict[str, float], loop: Loop) -> dict[str, Any]:
        """A point of the training curve: training loss since the last point, held-out scores."""
        self.skipped_utts += int(sums.pop("skipped", 0))
        step = loop.state.step
        entry: dict[str, float] = {"step": float(step), "epoch": step / max(1, loop.total_steps)
                                   * self.cfg.num_epochs}
        if sums.get("frames", 0) > 0:
            entry["train_loss_per_frame"] = sums["loss"] / sums["frames"]
            entry["train_loss_per_utt"] = sums["loss"] / sums["utts"]
        if self.held_out is not None:
            r = self.evaluate(self.held_out)
            entry.update({f"valid_{k}": r[k] for k in ("loss_per_frame", "loss_per_utt", "cer", "wer")})
            self._log(f"held-out after minibatch {step}: CTC loss {r['loss_per_frame']:.4f} per frame "
                      f"({r['loss_per_utt']:.2f} per utterance); greedy {r['cer_line']}; {r['wer_line']}")
        if self.rank == 0:
            write_report(loop.state.history + [entry], self.out_dir / "report")
        return entry

    # -- one update ----------------------------------------------------------------------------------

    def train_step(self, mb: CtcMinibatch) -> dict[str, float]:
        """One Adam step on the mean per-utterance CTC loss of the GLOBAL minibatch ``mb`` (this rank computes
        its share under DDP); returns this rank's sums for the log."""
        self.model.train()
        weight = 1.0
        if self.world > 1:
            rows = my_share(len(mb.keys))
            if len(rows) == 0:  # fewer utterances than ranks: run one with weight 0 (DDP needs every backward)
                rows, weight = range(1), 0.0
            mb = share_of(mb, rows)
        mb = mb.to(self.device)
        losses = ctc_losses(self.model, mb, self.net)
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad = [k for k, ok in zip(mb.keys, finite.tolist()) if not ok]
            self._log(f"minibatch {self.loop.state.step + 1}: non-finite CTC loss for {', '.join(bad)}; left out",
                      logging.WARNING)
        n_ok = int(finite.sum()) if weight else 0
        n_total = int(ddp.all_reduce_(torch.tensor([n_ok]))) if self.world > 1 else n_ok
        skipped = float(len(mb.keys) - n_ok) if weight else 0.0
        self.optimizer.zero_grad(set_to_none=True)
        if n_total == 0:  # the same decision on every rank
            return {"loss": 0.0, "frames": 0.0, "utts": 0.0, "skipped": skipped}
        if self.world > 1:
            loss = losses[finite].sum() * (weight * self.world / n_total)  # DDP averages: the sum is wanted
        else:
            loss = losses[finite].sum() / n_ok
        loss.backward()
        grads_ok = all(torch.isfinite(p.grad).all() for p in self.model.parameters() if p.grad is not None)
        if not grads_ok:  # all-reduced gradients: the same decision on every rank
            self._log(f"minibatch {self.loop.state.step + 1}: non-finite gradient; update skipped", logging.WARNING)
            self.optimizer.zero_grad(set_to_none=True)
            return {"loss": 0.0, "frames": 0.0, "utts": 0.0, "skipped": skipped + n_ok}
        self.optimizer.step()
        frames = float(mb.lengths[finite].sum()) if weight else 0.0
        return {"loss": float(losses[finite].sum().detach()) * weight, "frames": frames, "utts": float(n_ok),
                "skipped": skipped}

    # -- held-out scoring ----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, data: CtcData, max_frames: int | None = None) -> dict[str, Any]:
        """CTC loss per frame and per utterance, greedy CER and WER of ``data``; hypotheses by utterance.
        Under DDP each rank scores every ``world``-th minibatch; all get all figures."""
        self.model.eval()
        mine = []
        for i, mb in enumerate(CtcBatches(data, max_frames or self.cfg.max_frames).iterate()):
            if i % self.world == self.rank:
                mine.append((i, *self._score_batch(mb)))
        loss, frames, hyps = 0.0, 0, {}
        for _, batch_loss, batch_frames, batch_hyps in sorted(r for part in ddp.all_gather(mine) for r in part):
            loss += batch_loss
            frames += batch_frames
            hyps.update(batch_hyps)
        cer, wer = error_rate(data.texts, hyps, "CER"), error_rate(data.texts, hyps, "WER")
        return {"loss_per_frame": loss / frames, "loss_per_utt": loss / len(data.keys), "cer": cer.rate,
                "wer": wer.rate, "cer_line": str(cer), "wer_line": str(wer), "hyps": hyps}

    def _score_batch(self, mb: CtcMinibatch) -> tuple[float, int, dict[str, str]]:
        mb = mb.to(self.device)
        logits = self.model(mb.feats, lengths=mb.lengths)["output"]
        lp = logits.float().log_softmax(-1)
        losses = F.ctc_loss(lp.transpose(0, 1), mb.targets, mb.lengths, mb.target_lengths,
                            blank=self.model.blank, reduction="none", zero_infinity=True)
        hyps = {k: decode_ids(ids) for k, ids in zip(mb.keys, greedy_decode(lp, mb.lengths, self.model.blank))}
        return float(losses.sum()), mb.num_frames, hyps

    # -- the run -------------------------------------------------------------------------------------

    def load_checkpoint(self, path: str | Path) -> None:
        self.loop.load(path)

    def train(self, data: CtcData, held_out: CtcData | None = None, resume: bool = True,
              max_steps: int | None = None) -> dict[str, float]:
        """Train to ``num_epochs`` (or ``max_steps`` more minibatches), resuming from ``checkpoint.pt``;
        writes ``final.pt`` at the end.  Returns the last point of the curve."""
        (self.out_dir / "log").mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            self._log_file = open_log(self.out_dir / "log" / "train.log")
        try:
            return self._train(data, held_out, resume, max_steps)
        finally:
            if self._log_file is not None:
                self._log_file.close()
            self._log_file = None

    def _train(self, data: CtcData, held_out: CtcData | None, resume: bool, max_steps: int | None) -> dict:
        cfg = self.cfg
        self.data, self.held_out, self.egs = data, held_out, CtcBatches(data, cfg.max_frames)
        self.loop.total_steps = max(1, round(cfg.num_epochs * len(self.egs)))
        self.loop.resume_or_start(resume)
        st = self.loop.state
        self._log(f"{len(data.keys)} utterances, {data.num_frames} frames in {len(self.egs)} minibatches of <= "
                  f"{cfg.max_frames} padded frames; {cfg.num_epochs} passes = {self.loop.total_steps} minibatches; "
                  f"Adam lr {cfg.learning_rate}; {self.model.num_params()} parameters; device {self.device}"
                  f"{f'; {self.world} ranks' if self.world > 1 else ''}")
        self._t0 = time.time()
        self.loop.run(max_steps)
        if st.step >= self.loop.total_steps:
            if self.rank == 0:
                save_deepspeech_model(self.out_dir / "final.pt", self.model, {"history": st.history})
            self._log(f"training done: {st.step} minibatches, {self.skipped_utts} utterances left out for a "
                      f"non-finite loss; wrote {self.out_dir}/final.pt")
        return st.history[-1] if st.history else {}


def write_report(history: Sequence[dict[str, float]], report_dir: str | Path) -> None:
    """``progress.tsv`` and ``training_curve.png`` (CTC loss per frame; held-out greedy CER / WER)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report_dir = Path(report_dir)
    keys = ["step", "epoch", "train_loss_per_frame", "train_loss_per_utt", "valid_loss_per_frame",
            "valid_loss_per_utt", "valid_cer", "valid_wer"]
    lines = ["\t".join(keys)] + ["\t".join(f"{h[k]:.6g}" if k in h else "nan" for k in keys) for h in history]
    atomic_write_text(report_dir / "progress.tsv", "\n".join(lines) + "\n")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, style in (("train_loss_per_frame", "train", "-o"), ("valid_loss_per_frame", "held-out", "-s")):
        pts = [(h["epoch"], h[key]) for h in history if key in h and math.isfinite(h[key])]
        if pts:
            a1.plot(*zip(*pts), style, label=label, markersize=3)
    a1.set(xlabel="epoch", ylabel="CTC loss per frame", title="CTC loss")
    for key, label, style in (("valid_cer", "CER", "-o"), ("valid_wer", "WER", "-s")):
        pts = [(h["epoch"], h[key]) for h in history if key in h]
        if pts:
            a2.plot(*zip(*pts), style, label=label, markersize=3)
    a2.axhline(100.0, color="grey", linestyle=":", label="all blank (100%)")
    a2.set(xlabel="epoch", ylabel="%", title="held-out greedy error rates")
    for ax in (a1, a2):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    report_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(report_dir / "training_curve.png", "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
