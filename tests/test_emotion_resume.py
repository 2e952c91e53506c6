"""A training killed at any point and re-run ends with the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from emotion_data import save_tiny_model, write_tiny_set
from ser.emotion.folds import write_folds

ROOT = Path(__file__).resolve().parents[1]
OPTS = ["--num-epochs", "3", "--patience", "0", "--chunk-width", "45", "--minibatch-size", "8",
        "--hidden-dim", "16", "--initial-lrate", "0.01", "--device", "cpu"]


def train(fold: Path, ivs: Path, model: Path, out: Path, kill: str | None = None,
          extra: list[str] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SER_KILL_AT", None)
    if kill:
        env["SER_KILL_AT"] = kill
    return subprocess.run([sys.executable, "-m", "ser.bin.train_ser", *OPTS, *extra, str(fold),
                           str(ivs), str(model), str(out)], env=env, capture_output=True, text=True)


def test_kill_and_rerun_gives_the_uninterrupted_result(tmp_path):
    data, ivs, _ = write_tiny_set(tmp_path, sessions=2, utts_per_speaker=5)
    fold = write_folds(data, "session") / "Ses02"
    model = save_tiny_model(tmp_path / "final.pt")
    ref = train(fold, ivs, model, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    for point in (f"{out}:epoch0:step1", f"{out}:epoch1"):  # mid-epoch, then after a checkpoint
        r = train(fold, ivs, model, out, kill=point)
        assert r.returncode == -9, r.stderr
        assert not (out / "final.pt").exists()
    r = train(fold, ivs, model, out)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stderr
    a = torch.load(tmp_path / "ref/final.pt", weights_only=True)
    b = torch.load(out / "final.pt", weights_only=True)
    assert a["state"].keys() == b["state"].keys()
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    assert json.loads((tmp_path / "ref/valid.json").read_text()) == json.loads((out / "valid.json").read_text())
    # finished with the same options: nothing to do; other options: trained afresh
    r = train(fold, ivs, model, out)
    assert r.returncode == 0 and "up to date" in r.stderr
    r = train(fold, ivs, model, out, extra=["--seed", "1"])
    assert r.returncode == 0 and "resuming" not in r.stderr
    c = torch.load(out / "final.pt", weights_only=True)
    assert not all(torch.equal(a["state"][k], c["state"][k]) for k in a["state"])


def test_bad_inputs_are_one_line_errors(tmp_path):
    data, ivs, _ = write_tiny_set(tmp_path, sessions=2, utts_per_speaker=4)
    fold = write_folds(data, "session") / "Ses02"
    model = tmp_path / "final.pt"
    model.write_bytes(b"not a model")
    r = train(fold, ivs, model, tmp_path / "x")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"train_ser: {model}")
    save_tiny_model(model)
    r = train(fold, ivs, model, tmp_path / "y", extra=["--labels", "ang hap neu"])
    assert r.returncode == 1 and "not one of ang hap neu" in r.stderr.strip().splitlines()[-1]
