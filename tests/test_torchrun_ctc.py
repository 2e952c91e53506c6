"""Stage 8's CTC trainer under torchrun: ``NPROC=2 steps/ctc/train.sh`` (gloo on CPU, 2 ranks) ends with the
parameters and curve of the single-process run over the same global minibatches (as tests/test_torchrun.py
checks the chain trainer and tests/test_torchrun_ser.py the emotion trainer).

Each rank computes the CTC loss of every other utterance of a minibatch, scaled by the world size over the
GLOBAL count of utterances (DDP averages the gradients); the longest utterance here is a minibatch of its own, so
rank 1 also takes the path where its share is empty (one utterance at weight 0).  Dropout is off: the ranks
would draw other masks than the one process.  The comparison is test_torchrun's: each trained tensor within 5%
of its change (float rounding differs with the summation order over the ranks, and Adam's first steps amplify
it), and nine in ten of them move by more than 10 tolerances."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ser.bin.train_ctc import main as train_ctc
from ser.cli import run_program
from ser.ctc.text import encode
from ser.io.tables import ArkScpWriter
from ser.nnet.deepspeech import DeepSpeechConfig, DeepSpeechModel
from ser.io.torch_io import load_torch
from test_torchrun import UPDATE_REL, assert_same_updates

ROOT = Path(__file__).resolve().parents[1]
OPTS = ["--net", "mini", "--hidden-dim", "16", "--cell-dim", "12", "--epochs", "2", "--learning-rate", "0.003",
        "--max-frames", "120", "--num-valid-utts", "4", "--dropout-rate", "0", "--srand", "1", "--device", "cpu"]


def write_data(d: Path, n: int = 20) -> None:
    """Utterances whose frames spell their text (3 noisy frames per character), one of 70 frames."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(28, 26)).astype(np.float32) * 2
    d.mkdir(parents=True)
    texts, mats = {}, {}
    for i in range(n):
        text = "".join(rng.choice(list("abcde")) for _ in range(23 if i == 0 else rng.integers(2, 8)))
        frames = np.concatenate([np.repeat(means[c][None], 3, 0) for c in encode(text)] + [np.zeros((1, 26))])
        key = f"spk{i % 2}-u{i:02d}"
        texts[key], mats[key] = text, frames + rng.normal(scale=0.3, size=frames.shape)
    keys = sorted(texts)
    with ArkScpWriter(d / "feats.ark", d / "feats.scp") as w:
        for k in keys:
            w.write(k, mats[k].astype(np.float32))
    (d / "text").write_text("".join(f"{k} {texts[k]}\n" for k in keys))
    (d / "utt2spk").write_text("".join(f"{k} {k.split('-')[0]}\n" for k in keys))
    (d / "spk2utt").write_text("".join(f"spk{s} " + " ".join(k for k in keys if k.startswith(f"spk{s}")) + "\n"
                                       for s in range(2)))


def test_nproc_2_torchrun_equals_single_process(tmp_path):
    data = tmp_path / "data"
    write_data(data)
    torch.set_num_threads(1)
    assert run_program(train_ctc, [*OPTS, str(data), str(tmp_path / "single")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NPROC": "2"}
    r = subprocess.run(["steps/ctc/train.sh", *OPTS, str(data), str(tmp_path / "nproc2")], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 ranks" in (tmp_path / "nproc2/log/train.log").read_text()
    want = load_torch(tmp_path / "single/final.pt", what="model")
    got = load_torch(tmp_path / "nproc2/final.pt", what="model")
    init = DeepSpeechModel(DeepSpeechConfig.named("mini", hidden_dim=16, cell_dim=12, dropout=0.0),
                           generator=torch.Generator().manual_seed(1))
    names = [n for n, _ in init.named_parameters()]
    assert_same_updates(got["model"], want["model"], init.state_dict(), names, UPDATE_REL)
    for n in want["model"]:  # the input standardisation: the same statistics of the same frames
        if n not in names:
            torch.testing.assert_close(got["model"][n], want["model"][n], rtol=1e-6, atol=1e-6)
    assert len(got["history"]) == len(want["history"]) == 2
    for a, b in zip(want["history"], got["history"]):
        assert a.keys() == b.keys() and a["step"] == b["step"]
        for k in ("train_loss_per_frame", "valid_loss_per_frame"):
            assert b[k] == pytest.approx(a[k], rel=1e-3), k
