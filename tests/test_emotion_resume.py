"""A training killed at any point (also within an epoch) and re-run ends with the numbers of an uninterrupted run.

The kill is ser.train.loop's test hook (SER_KILL_AT); in-process here, its SIGKILL becomes an
exception raised at the same point, so the files on disk are those a killed process leaves
(the driver-level test, tests/test_emotion_e2e.py, kills real processes)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from emotion_data import save_tiny_model, write_tiny_set
from ser.bin.train_ser import main as train_ser
from ser.cli import run_program
from ser.train import loop as loop_mod
from ser.emotion.folds import write_folds

OPTS = ["--num-epochs", "3", "--patience", "0", "--chunk-width", "45", "--minibatch-size", "8",
        "--hidden-dim", "16", "--initial-lrate", "0.01", "--device", "cpu"]


class Killed(BaseException):
    pass


def _kill(pid, sig):
    raise Killed


def train(monkeypatch, fold, ivs, model, out, kill=None, extra=()):
    monkeypatch.delenv("SER_KILL_AT", raising=False)
    if kill:
        monkeypatch.setenv("SER_KILL_AT", kill)
    monkeypatch.setattr(loop_mod.os, "kill", _kill)
    return run_program(train_ser, [*OPTS, *extra, str(fold), str(ivs), str(model), str(out)])


def test_kill_and_rerun_gives_the_uninterrupted_result(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    data, ivs, _ = write_tiny_set(tmp_path, sessions=2, utts_per_speaker=5)
    fold = write_folds(data, "session") / "Ses02"
    model = save_tiny_model(tmp_path / "final.pt")
    assert train(monkeypatch, fold, ivs, model, tmp_path / "ref") == 0
    out = tmp_path / "killed"
    # mid-epoch after a mid-epoch checkpoint (--checkpoint-interval 1), then after an epoch's checkpoint
    for point, extra in ((f"{out}:epoch0:step0", ["--checkpoint-interval", "1"]), (f"{out}:epoch1", [])):
        caplog.clear()
        with pytest.raises(Killed):
            train(monkeypatch, fold, ivs, model, out, kill=point, extra=extra)
        assert not (out / "final.pt").exists()
    assert "(epoch 0, minibatch 1 of it)" in caplog.text  # the second run resumed mid-epoch
    caplog.clear()
    assert train(monkeypatch, fold, ivs, model, out) == 0
    assert "resuming from" in caplog.text
    a = torch.load(tmp_path / "ref/final.pt", weights_only=True)
    b = torch.load(out / "final.pt", weights_only=True)
    assert a["state"].keys() == b["state"].keys()
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    assert json.loads((tmp_path / "ref/valid.json").read_text()) == json.loads((out / "valid.json").read_text())
    # finished with the same options: nothing to do; other options: trained afresh
    caplog.clear()
    assert train(monkeypatch, fold, ivs, model, out) == 0 and "up to date" in caplog.text
    caplog.clear()
    assert train(monkeypatch, fold, ivs, model, out, extra=["--seed", "1"]) == 0
    assert "resuming" not in caplog.text
    c = torch.load(out / "final.pt", weights_only=True)
    assert not all(torch.equal(a["state"][k], c["state"][k]) for k in a["state"])


def test_bad_inputs_are_one_line_errors(tmp_path, monkeypatch, capsys):
    data, ivs, _ = write_tiny_set(tmp_path, sessions=2, utts_per_speaker=4)
    fold = write_folds(data, "session") / "Ses02"
    model = tmp_path / "final.pt"
    model.write_bytes(b"not a model")
    assert train(monkeypatch, fold, ivs, model, tmp_path / "x") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"train_ser: {model}")
    save_tiny_model(model)
    assert train(monkeypatch, fold, ivs, model, tmp_path / "y", extra=["--labels", "ang hap neu"]) == 1
    assert "not one of ang hap neu" in capsys.readouterr().err.strip().splitlines()[-1]
