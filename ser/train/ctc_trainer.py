"""CTC training of the DeepSpeech-style model (paper 2's acoustic model), DeepSpeech v0.9's recipe.

Mirrors ``training/deepspeech_training/train.py`` (``calculate_mean_edit_distance_and_loss``: the loss
of a minibatch is the mean over its utterances of ``tf.nn.ctc_loss``; ``create_optimizer``: Adam with
``--learning_rate`` 0.001, ``--beta1`` 0.9, ``--beta2`` 0.999, ``--epsilon`` 1e-8, constant rate, no
gradient clipping) with torch's ``ctc_loss`` (blank = the last output, TF's convention).

The loop (nanoGPT-like): minibatches of :class:`ser.train.ctc_data.CtcBatches`, one Adam step each; every
``valid_interval`` minibatches (and at the end) the held-out utterances are scored -- CTC loss per frame
and greedy CER / WER (``ser.ctc.decode``) -- a point is added to ``report/progress.tsv`` and
``report/training_curve.png``, and ``checkpoint.pt`` is written.  A checkpoint holds the model, Adam's
state, the trainer state and every RNG, and every pass visits the minibatches in the same order (shortest first),
so a resumed run continues exactly as an uninterrupted one would (tests/test_ctc.py checks it).  The
final model is the last one (``final.pt``; no model selection on dev or test).

Deviations from DeepSpeech: minibatches by frame budget, not by utterance count (see ser.train.ctc_data);
no early stopping or learning-rate reduction on plateau (both off by default in v0.9 too); a minibatch
whose loss or gradient is not finite for some utterance leaves those utterances out (logged, counted)
where DeepSpeech only reports them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ser.ctc.decode import error_rate, greedy_decode
from ser.ctc.text import decode_ids
from ser.io.atomic import atomic_open, atomic_write_text
from ser.jobs import open_log
from ser.io.torch_io import TorchFileError, load_torch, save_torch
from ser.nnet.deepspeech import DeepSpeechModel
from ser.nnet.model_io import save_deepspeech_model
from ser.train.checkpoint import rng_state, set_rng_state
from ser.train.ctc_data import CtcBatches, CtcData, CtcMinibatch

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "ser.ctc_trainer.v1"


@dataclass
class CtcTrainerConfig:
    """Options (DeepSpeech flag names in the comments; defaults = DeepSpeech v0.9)."""

    num_epochs: float = 75.0        # --epochs
    learning_rate: float = 1e-3     # --learning_rate
    adam_beta1: float = 0.9         # --beta1
    adam_beta2: float = 0.999       # --beta2
    adam_epsilon: float = 1e-8      # --epsilon
    max_frames: int = 20000         # padded frames per minibatch (DeepSpeech: --train_batch_size utterances)
    valid_interval: int = 0         # minibatches between held-out evaluations (0: once per pass)
    print_interval: int = 10
    seed: int = 0


@dataclass
class _State:
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    skipped_utts: int = 0           # utterances left out for a non-finite loss
    history: list[dict[str, float]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)  # training loss since the last point


def ctc_losses(model: DeepSpeechModel, mb: CtcMinibatch) -> torch.Tensor:
    """Per-utterance CTC loss (negative log-likelihood of the labels) [B]."""
    logits = model(mb.feats, lengths=mb.lengths)["output"]
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


class CtcTrainer:
    """``CtcTrainer(model, config, out_dir).train(train_data, held_out)``; see the module docstring."""

    def __init__(self, model: DeepSpeechModel, config: CtcTrainerConfig, out_dir: str | Path,
                 device: str | torch.device = "cpu") -> None:
        self.cfg = config
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                          betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)
        self.state = _State()
        self._log_file = None

    def _log(self, msg: str) -> None:
        logger.info(msg)
        if self._log_file is not None:
            self._log_file.write(msg + "\n")
            self._log_file.flush()

    # -- one update ----------------------------------------------------------------------------------

    def train_step(self, mb: CtcMinibatch) -> dict[str, float]:
        """One Adam step on the mean per-utterance CTC loss; returns the sums for the log."""
        self.model.train()
        mb = mb.to(self.device)
        losses = ctc_losses(self.model, mb)
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad = [k for k, ok in zip(mb.keys, finite.tolist()) if not ok]
            self.state.skipped_utts += len(bad)
            self._log(f"minibatch {self.state.step + 1}: non-finite CTC loss for {', '.join(bad)}; left out")
        n_ok = int(finite.sum())
        self.optimizer.zero_grad(set_to_none=True)
        if n_ok == 0:
            return {"loss": 0.0, "frames": 0.0, "utts": 0.0}
        loss = losses[finite].sum() / n_ok
        loss.backward()
        grads_ok = all(torch.isfinite(p.grad).all() for p in self.model.parameters() if p.grad is not None)
        if not grads_ok:
            self.state.skipped_utts += n_ok
            self._log(f"minibatch {self.state.step + 1}: non-finite gradient; update skipped")
            self.optimizer.zero_grad(set_to_none=True)
            return {"loss": 0.0, "frames": 0.0, "utts": 0.0}
        self.optimizer.step()
        frames = float(mb.lengths[finite].sum())
        return {"loss": float(losses[finite].sum().detach()), "frames": frames, "utts": float(n_ok)}

    # -- held-out scoring ----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, data: CtcData, max_frames: int | None = None) -> dict[str, Any]:
        """CTC loss per frame and per utterance, greedy CER and WER of ``data``; hypotheses by utterance."""
        self.model.eval()
        loss, frames, hyps = 0.0, 0, {}
        for mb in CtcBatches(data, max_frames or self.cfg.max_frames).iterate():
            mb = mb.to(self.device)
            logits = self.model(mb.feats, lengths=mb.lengths)["output"]
            lp = logits.float().log_softmax(-1)
            losses = F.ctc_loss(lp.transpose(0, 1), mb.targets, mb.lengths, mb.target_lengths,
                                blank=self.model.blank, reduction="none", zero_infinity=True)
            loss += float(losses.sum())
            frames += mb.num_frames
            for k, ids in zip(mb.keys, greedy_decode(lp, mb.lengths, self.model.blank)):
                hyps[k] = decode_ids(ids)
        cer, wer = error_rate(data.texts, hyps, "CER"), error_rate(data.texts, hyps, "WER")
        return {"loss_per_frame": loss / frames, "loss_per_utt": loss / len(data.keys), "cer": cer.rate,
                "wer": wer.rate, "cer_line": str(cer), "wer_line": str(wer), "hyps": hyps}

    # -- checkpoints ---------------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        d = {"format": CHECKPOINT_FORMAT, "model_config": self.model.config.to_dict(),
             "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
             "optimizer": self.optimizer.state_dict(), "trainer": asdict(self.state),
             "trainer_config": asdict(self.cfg), "rng": rng_state()}
        save_torch(d, self.out_dir / "checkpoint.pt")

    def load_checkpoint(self, path: str | Path) -> None:
        d = load_torch(path, what="CTC trainer checkpoint", expect_keys=(
            "format", "model_config", "model", "optimizer", "trainer", "trainer_config", "rng"))
        if d["format"] != CHECKPOINT_FORMAT:
            raise TorchFileError(f"{path}: not a CTC trainer checkpoint (format {d['format']!r})")
        if d["model_config"] != self.model.config.to_dict():
            raise ValueError(f"{path}: model configuration differs from this run's")
        if d["trainer_config"] != asdict(self.cfg):
            raise ValueError(f"{path}: trainer options differ from this run's "
                             f"({d['trainer_config']} vs {asdict(self.cfg)}); remove it to start again")
        self.model.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.state = _State(**d["trainer"])
        set_rng_state(d["rng"])

    # -- the loop ------------------------------------------------------------------------------------

    def _point(self, held_out: CtcData | None) -> None:
        """A point of the training curve: training loss since the last point, held-out scores."""
        s, st = self.state.sums, self.state
        entry: dict[str, float] = {"step": float(st.step), "epoch": st.step / max(1, st.total_steps)
                                   * self.cfg.num_epochs}
        if s.get("frames", 0) > 0:
            entry["train_loss_per_frame"] = s["loss"] / s["frames"]
            entry["train_loss_per_utt"] = s["loss"] / s["utts"]
        if held_out is not None:
            r = self.evaluate(held_out)
            entry.update({f"valid_{k}": r[k] for k in ("loss_per_frame", "loss_per_utt", "cer", "wer")})
            self._log(f"held-out after minibatch {st.step}: CTC loss {r['loss_per_frame']:.4f} per frame "
                      f"({r['loss_per_utt']:.2f} per utterance); greedy {r['cer_line']}; {r['wer_line']}")
        st.history.append(entry)
        st.sums = {}
        write_report(st.history, self.out_dir / "report")
        self.save_checkpoint()

    def train(self, data: CtcData, held_out: CtcData | None = None, resume: bool = True,
              max_steps: int | None = None) -> dict[str, float]:
        """Train to ``num_epochs`` (or ``max_steps`` more minibatches), resuming from ``checkpoint.pt``;
        writes ``final.pt`` at the end.  Returns the last point of the curve."""
        (self.out_dir / "log").mkdir(parents=True, exist_ok=True)
        self._log_file = open_log(self.out_dir / "log" / "train.log")
        try:
            return self._train(data, held_out, resume, max_steps)
        finally:
            self._log_file.close()
            self._log_file = None

    def _train(self, data: CtcData, held_out: CtcData | None, resume: bool, max_steps: int | None) -> dict:
        cfg, ckpt = self.cfg, self.out_dir / "checkpoint.pt"
        batches = CtcBatches(data, cfg.max_frames)
        if resume and ckpt.is_file():
            self.load_checkpoint(ckpt)
            self._log(f"resuming from {ckpt} at minibatch {self.state.step}/{self.state.total_steps}")
        else:
            torch.manual_seed(cfg.seed)
            self.state = _State(total_steps=max(1, round(cfg.num_epochs * len(batches))))
            self.model.set_input_normalization(*frame_mean_std(data))
        st = self.state
        interval = cfg.valid_interval or len(batches)
        self._log(f"{len(data.keys)} utterances, {data.num_frames} frames in {len(batches)} minibatches of <= "
                  f"{cfg.max_frames} padded frames; {cfg.num_epochs} passes = {st.total_steps} minibatches; "
                  f"Adam lr {cfg.learning_rate}; {self.model.num_params()} parameters; device {self.device}")
        done, t0 = 0, time.time()
        while st.step < st.total_steps and (max_steps is None or done < max_steps):
            for mb in batches.iterate(st.step_in_epoch):
                sums = self.train_step(mb)
                for k, v in sums.items():
                    st.sums[k] = st.sums.get(k, 0.0) + v
                st.step, st.step_in_epoch, done = st.step + 1, st.step_in_epoch + 1, done + 1
                if st.step % cfg.print_interval == 0 or st.step == 1:
                    self._log(f"minibatch {st.step}/{st.total_steps} (pass {st.epoch}): CTC loss "
                              f"{sums['loss'] / max(sums['frames'], 1):.4f} per frame over {int(sums['frames'])} "
                              f"frames, {len(mb.keys)} utterances ({time.time() - t0:.1f} s)")
                if st.step_in_epoch == len(batches):
                    st.epoch, st.step_in_epoch = st.epoch + 1, 0
                if st.step % interval == 0 or st.step == st.total_steps:
                    self._point(held_out)
                if st.step_in_epoch == 0 or st.step >= st.total_steps or (max_steps and done >= max_steps):
                    break
        if st.step >= st.total_steps:
            save_deepspeech_model(self.out_dir / "final.pt", self.model, {"history": st.history})
            self._log(f"training done: {st.step} minibatches, {st.skipped_utts} utterances left out for a "
                      f"non-finite loss; wrote {self.out_dir}/final.pt")
        else:
            self.save_checkpoint()
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
