"""Train one fold of a grafted emotion network (stage 7; steps/ser/train.sh).

    python -m ser.bin.train_ser [options] <fold-dir> <ivector-dir> <pretrained-model> <dir>

``<fold-dir>`` holds the fold's ``train/`` and ``valid/`` data dirs (ser.emotion.folds; the test
part is not read), ``<ivector-dir>`` the online i-vectors of the set
(``ivector_online.scp``), or ``none``: the network reads MFCC only, the pretrained body's i-vector
input removed (ser.emotion.graft.without_ivector_input; as ``train_chain``'s ``none``),
``<pretrained-model>`` the chain model (``exp/chain/tdnn/final.pt``).
Writes ``<dir>/final.pt`` (the epoch selected on validation), ``valid.json``,
``training_curve.png``, ``options.json`` and, while training, ``checkpoint.pt`` (a re-run
resumes from it).  A finished ``<dir>`` made with the same options is left alone.

Under torchrun (``NPROC=N steps/ser/train.sh``, or ``srun steps/ser/train.sh`` in a Slurm job of
several tasks; utils/torchrun.sh) the ranks share each global minibatch (ser.emotion.trainer);
rank 0 decides whether the job is up to date, writes the files and logs at info level.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, fields
from pathlib import Path

import torch

from ser.cli import add_device_argument, run_main, setup_logging, str2bool
from ser.emotion.folds import load_fold, utt2class
from ser.emotion.frames import ivector_dir_arg, load_parts
from ser.emotion.graft import make_grafted_model
from ser.config import SerConfig
from ser.emotion.trainer import SerTrainConfig, SerTrainer
from ser.io.atomic import atomic_write_text
from ser.io.datadir import DataDir
from ser.nnet.model_io import load_chain_model
from ser.train.loop import LoopOptions
from ser import ddp

log = logging.getLogger("train_ser")


def build_parser() -> argparse.ArgumentParser:
    """Defaults: the recipe's (ser.config.SerConfig), the trainer's (SerTrainConfig, whose defaults are
    SerConfig's) and the loop's (LoopOptions) -- each defined once."""
    rec = SerConfig()
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", default=" ".join(rec.labels), help="class order (labels.txt)")
    p.add_argument("--layer", default=rec.layer, help="Kaldi name of the layer the head reads")
    p.add_argument("--hidden-dim", type=int, default=rec.hidden_dim, help="width of the head's dense layer")
    p.add_argument("--primary-lr-factor", type=float, default=rec.primary_lr_factor,
                   help="learning-rate factor of the transferred layers (0 = frozen)")
    p.add_argument("--from-scratch", type=str2bool, default=False,
                   help="random initialisation of the body instead of the pretrained weights")
    defaults = SerTrainConfig()
    for f in fields(SerTrainConfig):
        typ = str2bool if f.type in (bool, "bool") else type(getattr(defaults, f.name))
        p.add_argument("--" + f.name.replace("_", "-"), type=typ, default=getattr(defaults, f.name))
    p.add_argument("--checkpoint-interval", type=int, default=LoopOptions().checkpoint_interval,
                   help="minibatches between mid-epoch checkpoints (0: after each epoch only)")
    add_device_argument(p)
    p.add_argument("--num-threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("fold_dir")
    p.add_argument("ivector_dir", help="online i-vectors of the set, or none (MFCC only)")
    p.add_argument("model")
    p.add_argument("dir")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    ranks, a.device = ddp.start(a.device)
    setup_logging(verbose=1 if ranks.is_main else 0)
    torch.set_num_threads(a.num_threads)
    rc = run(a)
    ddp.stop()  # not after an error: the other ranks may wait in a collective (torchrun stops them)
    return rc


def run(a: argparse.Namespace) -> int:
    cfg = SerTrainConfig(**{f.name: getattr(a, f.name) for f in fields(SerTrainConfig)})
    classes = a.labels.split()
    dup = [c for i, c in enumerate(classes) if c in classes[:i]]
    if dup or not classes:
        raise ValueError(f"--labels {a.labels!r}: " + (f"{dup[0]!r} is given twice" if dup else "no labels"))
    out = Path(a.dir)
    options = {"labels": classes, "layer": a.layer, "hidden_dim": a.hidden_dim,
               "primary_lr_factor": a.primary_lr_factor, "from_scratch": a.from_scratch,
               "fold_dir": a.fold_dir, "ivector_dir": a.ivector_dir, "model": a.model,
               "train": asdict(cfg)}
    if ddp.broadcast(_up_to_date(out, options) if ddp.rank() == 0 else None):
        log.info("%s: up to date", out)
        return 0
    if ddp.rank() == 0:
        _check_options(out, options)
    ddp.barrier()  # the other ranks resume from the checkpoint rank 0 kept
    parts = load_fold(a.fold_dir, classes)  # no speaker in two parts, every class in train and valid
    train_d = parts.get("train") or DataDir.load(Path(a.fold_dir) / "train")  # (a missing part: its error)
    valid_d = parts.get("valid") or DataDir.load(Path(a.fold_dir) / "valid")
    labels = {**utt2class(train_d, classes), **utt2class(valid_d, classes)}
    ivector_dir = ivector_dir_arg(a.ivector_dir)
    fs = load_parts([train_d.path, valid_d.path], ivector_dir)
    device = a.device
    model = make_grafted_model(load_chain_model(a.model), a.layer, a.hidden_dim, len(classes),
                               a.primary_lr_factor, a.from_scratch, cfg.seed, ivectors=ivector_dir is not None)
    log.info("%s: %s up to %s (%d parameters; factor %g%s%s) + head %d -> %d; %d train / %d valid "
             "utterances", out, "random body" if a.from_scratch else a.model, a.layer,
             sum(p.numel() for p in model.parameters()), a.primary_lr_factor,
             ", body in train mode" if a.from_scratch else ", body in eval mode",
             "" if ivector_dir else ", no i-vector input (MFCC only)", a.hidden_dim,
             len(classes), len(train_d.utts), len(valid_d.utts))
    trainer = SerTrainer(model, cfg, fs, train_d.utts, valid_d.utts, labels, out, device,
                         class_names=classes, opts=LoopOptions(a.checkpoint_interval))
    figures = trainer.run()
    if ddp.rank() == 0:
        atomic_write_text(out / "options.json", json.dumps(options, indent=1) + "\n")
    log.info("%s: selected epoch %d: valid UA %.4f WA %.4f frame acc %.4f", out, figures["epoch"],
             figures["ua"], figures["wa"], figures["frame_acc"])
    return 0


def _up_to_date(out: Path, options: dict) -> bool:
    try:
        done = json.loads((out / "options.json").read_text())
    except (OSError, ValueError):
        return False
    return done == options and (out / "final.pt").is_file() and (out / "valid.json").is_file()


def _check_options(out: Path, options: dict) -> None:
    """A checkpoint left by a run with other options is not resumed: start afresh."""
    pending = out / "options.pending.json"
    if (out / "checkpoint.pt").is_file():
        try:
            same = json.loads(pending.read_text()) == options
        except (OSError, ValueError):
            same = False
        if not same:
            log.warning("%s: checkpoint made with other options; starting afresh", out)
            (out / "checkpoint.pt").unlink()
    (out / "options.json").unlink(missing_ok=True)
    atomic_write_text(pending, json.dumps(options, indent=1) + "\n")


if __name__ == "__main__":
    run_main(main)
