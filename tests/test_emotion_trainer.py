"""Early stopping and model selection of ser.emotion.trainer on scripted validation curves.

The recipe trains with ``patience`` 3 (stop after that many epochs without a better validation
figure); the other trainer tests use patience 0 (no early stopping).  Here the training steps are
stubbed and the validation figures scripted, so stopping one epoch early or late shows."""

from __future__ import annotations

import json

import pytest
import torch

from emotion_data import CLASSES, tiny_model, write_tiny_set
from ser.emotion.frames import load_parts
from ser.emotion.graft import make_grafted_model
from ser.emotion.trainer import EvalResult, SerTrainConfig, SerTrainer
from ser.io.datadir import DataDir


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    data, ivs, _ = write_tiny_set(tmp_path_factory.mktemp("early"), sessions=2, utts_per_speaker=4)
    d = DataDir.load(data)
    train = [u for u in d.utts if not u.startswith("Ses02M")]
    valid = [u for u in d.utts if u.startswith("Ses02M")]
    labels = {u: CLASSES.index(d.extra("utt2emo")[u]) for u in d.utts}
    return load_parts([data], ivs), train, valid, labels


def run_scripted(fold, out_dir, monkeypatch, patience: int, curve: list[tuple[float, float]],
                 num_epochs: int = 10) -> tuple[dict, list[int]]:
    """Train with validation figures ``curve[epoch]`` = (UA, frame accuracy); returns the selected
    figures and the epochs validated."""
    fs, train, valid, labels = fold
    seen: list[int] = []

    def validate(self):
        epoch = self.loop.state.epoch - 1  # the epoch just trained
        seen.append(epoch)
        ua, fa = curve[epoch]
        return EvalResult(ua, ua, fa, 1.0 - fa, torch.zeros(len(valid), len(CLASSES)), [0] * len(valid))

    monkeypatch.setattr(SerTrainer, "validate", validate)
    monkeypatch.setattr(SerTrainer, "train_step", lambda self, mb: (1.0, 1, 2))  # loss 0.5, frame acc 0.5
    monkeypatch.setattr("ser.emotion.trainer.plot_curve", lambda *a: None)  # drawing is the slow part
    model = make_grafted_model(tiny_model(), "tdnnf12", 16, 4, 0.25, False)
    cfg = SerTrainConfig(num_epochs=num_epochs, patience=patience, chunk_width=60, minibatch_size=8,
                         cache_frozen_body=False)
    figures = SerTrainer(model, cfg, fs, train, valid, labels, out_dir, class_names=CLASSES).run()
    return figures, seen


# (patience, curve, epochs trained, selected epoch): the best so far at epoch b, then `patience`
# epochs no better -> stop; the epoch after the stop would have been better (so stopping late shows)
CASES = [
    (1, [(0.3, 0.5), (0.5, 0.5), (0.4, 0.9), (0.9, 0.9), (0.95, 0.9)], 3, 1),
    (2, [(0.3, 0.5), (0.5, 0.5), (0.4, 0.6), (0.5, 0.4), (0.9, 0.9), (0.95, 0.9)], 4, 1),
    # equal UA with a higher frame accuracy is better (epoch 2); an exact tie is not (epoch 3)
    (2, [(0.3, 0.5), (0.5, 0.5), (0.5, 0.6), (0.5, 0.6), (0.2, 0.1), (0.9, 0.9), (0.95, 0.9)], 5, 2),
    (3, [(0.3, 0.5), (0.5, 0.5), (0.4, 0.6), (0.6, 0.4), (0.5, 0.6), (0.4, 0.5), (0.3, 0.5), (0.9, 0.9),
         (0.9, 0.9)], 7, 3),
]


@pytest.mark.parametrize("patience,curve,trained,best", CASES)
def test_early_stopping_after_patience_epochs_without_a_better_validation(fold, tmp_path, monkeypatch,
                                                                          patience, curve, trained, best):
    figures, seen = run_scripted(fold, tmp_path, monkeypatch, patience, curve)
    assert seen == list(range(trained))
    assert figures["epochs_trained"] == trained and figures["epoch"] == best
    assert (figures["ua"], figures["frame_acc"]) == curve[best]
    saved = json.loads((tmp_path / "valid.json").read_text())
    assert [h["valid_ua"] for h in saved["history"]] == [ua for ua, _ in curve[:trained]]


def test_patience_zero_trains_every_epoch(fold, tmp_path, monkeypatch):
    curve = [(0.5, 0.5), (0.4, 0.4), (0.3, 0.3), (0.2, 0.2)]
    figures, seen = run_scripted(fold, tmp_path, monkeypatch, 0, curve, num_epochs=4)
    assert seen == [0, 1, 2, 3] and figures["epoch"] == 0 and figures["epochs_trained"] == 4
