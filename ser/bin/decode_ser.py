"""Decode a fold's test utterances with a trained emotion network (steps/ser/decode.sh).

    python -m ser.bin.decode_ser [options] <test-dir> <ivector-dir> <dir>

Reads ``<dir>/final.pt`` (ser.bin.train_ser) and writes, atomically, ``<dir>/utt2post``
(``<utt> p_1 ... p_K``: the normalised sum of the frame softmaxes, in the class order stored
with the model = ``labels.txt``), ``<dir>/utt2pred`` (``<utt> <label>``) and ``<dir>/test.json``
(frame accuracy and counts, when ``<test-dir>/utt2emo`` has the labels).  Every utterance of
``<test-dir>`` is decoded; one without features or i-vectors is an error.  ``<ivector-dir>`` is
``none`` for a network trained without i-vectors (train_ser's ``none``) and only then.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from ser.cli import add_device_argument, run_main, setup_logging
from ser.emotion.folds import check_fold, utt2class
from ser.emotion.frames import ivector_dir_arg, load_parts
from ser.emotion.graft import load_grafted
from ser.emotion.trainer import frame_logits, kill_point, score_frames
from ser.emotion.voting import vote
from ser.io.atomic import atomic_open, atomic_write_text
from ser.io.datadir import DataDir

log = logging.getLogger("decode_ser")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunk-width", type=int, default=300, help="input frames per evaluation chunk")
    add_device_argument(p)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("test_dir")
    p.add_argument("ivector_dir", help="online i-vectors of the set, or none (a network trained without)")
    p.add_argument("dir")
    a = p.parse_args(argv)
    setup_logging()
    torch.set_num_threads(a.num_threads)
    decode(a)
    return 0


def decode(a: argparse.Namespace) -> None:
    out = Path(a.dir)
    model, classes, _ = load_grafted(out / "final.pt")
    device = a.device
    model.to(device)
    test = DataDir.load(a.test_dir)
    _check_unseen(out, test)
    ivector_dir = ivector_dir_arg(a.ivector_dir)
    if (ivector_dir is None) != (model.body.config.ivector_dim == 0):
        raise ValueError(f"{out / 'final.pt'}: the network was trained "
                         + ("without i-vectors: give none as the i-vector dir" if ivector_dir else
                            f"with {model.body.config.ivector_dim}-dim i-vectors: give their dir, not none"))
    fs = load_parts([test.path], ivector_dir)
    logits = frame_logits(model, fs, test.utts, a.chunk_width, device)
    info: dict = {"num_utts": len(test.utts), "num_frames": sum(int(x.shape[0]) for x in logits)}
    if test.has("utt2emo"):  # frame accuracy and loss for the report; UA / WA are the scorer's
        res = score_frames(logits, list(utt2class(test, classes).values()))
        post, dec = res.posteriors, res.decisions
        info.update(frame_acc=res.frame_acc, frame_loss=res.loss)
    else:
        post, dec = vote(logits)
    kill_point(f"{out}:decoded")
    with atomic_open(out / "utt2post") as f:
        for u, row in zip(test.utts, post.tolist()):
            f.write(u + " " + " ".join(f"{x:.6f}" for x in row) + "\n")
    with atomic_open(out / "utt2pred") as f:
        for u, k in zip(test.utts, dec):
            f.write(f"{u} {classes[k]}\n")
    atomic_write_text(out / "test.json", json.dumps(info, indent=1) + "\n")
    log.info("%s: decoded %d utterances (%d frames)%s", out, info["num_utts"], info["num_frames"],
             f", frame accuracy {info['frame_acc']:.4f}" if "frame_acc" in info else "")


def _check_unseen(out: Path, test: DataDir) -> None:
    """The test speakers are none of the model's training or validation speakers (the fold its
    options.json names, when it has one)."""
    try:
        fold_dir = Path(json.loads((out / "options.json").read_text())["fold_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    parts = {n: DataDir.load(fold_dir / n, validate=False) for n in ("train", "valid")
             if (fold_dir / n / "utt2spk").is_file()}
    check_fold({**parts, "test": test}, where=f"{test.path} (model {out}, trained on {fold_dir})")


if __name__ == "__main__":
    run_main(main)
