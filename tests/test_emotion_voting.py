"""Utterance decision = argmax of the summed frame softmaxes, against a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser.emotion.voting import decide, utterance_posterior, vote


def numpy_vote(logits: np.ndarray) -> tuple[np.ndarray, int]:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = (e / e.sum(axis=1, keepdims=True)).sum(axis=0)
    p = p / p.sum()
    best = [k for k in range(len(p)) if p[k] == p.max()]
    return p, best[0]


def test_vote_matches_numpy_reference():
    rng = np.random.default_rng(0)
    frames = [rng.normal(0, 3, (int(rng.integers(1, 40)), 4)) for _ in range(50)]
    post, dec = vote([torch.from_numpy(f) for f in frames])
    for f, p, d in zip(frames, post.numpy(), dec):
        ref_p, ref_d = numpy_vote(f)
        np.testing.assert_allclose(p, ref_p, rtol=1e-12, atol=1e-14)
        assert d == ref_d
        assert abs(p.sum() - 1) < 1e-12


def test_vote_is_sum_of_softmaxes_not_of_logits():
    # frame 1 strongly class 0, frames 2-3 mildly class 1: summed logits pick 0, summed softmaxes pick 1
    f = torch.tensor([[10.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 2.0, 0, 0], [0, 2.0, 0, 0]])
    assert int(f.sum(0).argmax()) == 0
    assert decide(utterance_posterior(f)) == 1


@pytest.mark.parametrize("tied", [(0, 1), (1, 3), (2, 3)])
def test_ties_go_to_the_first_label(tied):
    a, b = tied
    f = torch.zeros(5, 4)
    f[:, a] = f[:, b] = 2.0  # identical logits -> exactly equal posteriors
    p = utterance_posterior(f)
    assert p[a] == p[b]
    assert decide(p) == a == numpy_vote(f.numpy())[1]
    assert decide(torch.full((4,), 0.25)) == 0


def test_vote_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        utterance_posterior(torch.tensor([[0.0, float("nan"), 0, 0]]))
    with pytest.raises(ValueError, match="n >= 1"):
        utterance_posterior(torch.zeros(0, 4))
