"""steps/ctc/train.sh: CTC training of the DeepSpeech-style model (stage 8, paper 2's acoustic model).

    python -m ser.bin.train_ctc [opts] <train-data> <exp-dir>

``<train-data>``: a data dir with ``feats.scp`` (26 MFCC of conf/mfcc_deepspeech.conf) and ``text``;
``--num-valid-utts`` of its utterances (seeded) are held out for the training curve, as Kaldi's
get_egs.sh holds out ``num_utts_subset``.  Writes ``<exp-dir>/{final.pt, checkpoint.pt, log/train.log,
report/progress.tsv, report/training_curve.png}``; resumes from ``checkpoint.pt`` (``--resume true``).
Under torchrun (``NPROC=N steps/ctc/train.sh``; utils/torchrun.sh) the ranks share each minibatch's utterances
(ser.train.ctc_trainer); rank 0 writes the files.
Options keep DeepSpeech's flag names where it has one (``--epochs``, ``--learning-rate``, ``--beta1`` ...).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from ser import ddp
from ser.cli import add_device_argument, run_main, setup_logging, str2bool
from ser.config import CtcConfig
from ser.nnet.deepspeech import DeepSpeechConfig, DeepSpeechModel
from ser.train.ctc_data import load_ctc_data, split_held_out
from ser.train.ctc_trainer import CtcTrainer, CtcTrainerConfig
from ser.train.loop import LoopOptions

log = logging.getLogger("train_ctc")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Defaults: the recipe's (ser.config.CtcConfig; CtcTrainerConfig takes its from there) -- defined once."""
    d, rec = CtcTrainerConfig(), CtcConfig()
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", choices=["mini", "paper"], default=rec.net,
                   help="network size: paper = DeepSpeech's 2048 widths, mini = the same network narrower")
    p.add_argument("--hidden-dim", type=int, default=None, help="override n_hidden (layers 1, 2, 5)")
    p.add_argument("--cell-dim", type=int, default=None, help="override n_cell_dim (layer 3 and the LSTM)")
    p.add_argument("--epochs", type=float, default=d.num_epochs, help="passes over the training data")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam step size")
    p.add_argument("--beta1", type=float, default=d.adam_beta1)
    p.add_argument("--beta2", type=float, default=d.adam_beta2)
    p.add_argument("--epsilon", type=float, default=d.adam_epsilon)
    p.add_argument("--dropout-rate", type=float, default=rec.dropout_rate,
                   help="dropout after layers 1, 2, 3 and 5")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="padded frames per minibatch")
    p.add_argument("--num-valid-utts", type=int, default=rec.num_valid_utts,
                   help="training utterances held out for the curve")
    p.add_argument("--valid-interval", type=int, default=d.valid_interval,
                   help="minibatches between held-out evaluations (0: once per pass)")
    p.add_argument("--srand", type=int, default=d.seed, help="seed (initialisation, order, dropout)")
    p.add_argument("--resume", type=str2bool, default=True)
    p.add_argument("--checkpoint-interval", type=int, default=LoopOptions().checkpoint_interval,
                   help="minibatches between checkpoints besides the held-out evaluations (0: none)")
    p.add_argument("--num-threads", type=int, default=1,
                   help="torch CPU threads: the mini network's small matrices gain little from a second thread, "
                   "and on a shared CPU threads waiting for each other can slow a step tenfold")
    add_device_argument(p)
    p.add_argument("train_data")
    p.add_argument("exp_dir")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    ranks, a.device = ddp.start(a.device)
    setup_logging(verbose=1 if ranks.is_main else 0)
    torch.set_num_threads(a.num_threads)
    rc = run(a)
    ddp.stop()  # not after an error: the other ranks may wait in a collective (torchrun stops them)
    return rc


def run(a: argparse.Namespace) -> int:
    exp = Path(a.exp_dir)
    if (exp / "final.pt").is_file() and a.resume:
        if ddp.rank() == 0:
            print(f"train_ctc: {exp}/final.pt exists; not retraining (remove it or use --resume false)")
        return 0
    widths = {k: v for k, v in (("hidden_dim", a.hidden_dim), ("cell_dim", a.cell_dim)) if v is not None}
    model_cfg = DeepSpeechConfig.named(a.net, dropout=a.dropout_rate, **widths)
    cfg = CtcTrainerConfig(num_epochs=a.epochs, learning_rate=a.learning_rate, adam_beta1=a.beta1,
                           adam_beta2=a.beta2, adam_epsilon=a.epsilon, max_frames=a.max_frames,
                           valid_interval=a.valid_interval, seed=a.srand)
    data = load_ctc_data(a.train_data)
    train_keys, held_keys = split_held_out(data.keys, a.num_valid_utts, a.srand)
    model = DeepSpeechModel(model_cfg, generator=torch.Generator().manual_seed(a.srand))
    trainer = CtcTrainer(model, cfg, exp, a.device, LoopOptions(a.checkpoint_interval))
    last = trainer.train(data.subset(train_keys), data.subset(held_keys) if held_keys else None,
                         resume=a.resume)
    if ddp.rank() == 0:
            print(f"train_ctc: {exp}: {trainer.state.step} minibatches; held-out CTC loss "
              f"{last.get('valid_loss_per_frame', float('nan')):.4f} per frame, greedy CER "
              f"{last.get('valid_cer', float('nan')):.2f}% WER {last.get('valid_wer', float('nan')):.2f}%")
    return 0


if __name__ == "__main__":
    run_main(main)
