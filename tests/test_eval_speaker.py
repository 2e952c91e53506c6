"""Speaker-verification scoring (ser/eval/speaker.py) against independent references:
scikit-learn's roc_curve and a brute-force count over thresholds for the EER, scikit-learn's
LinearDiscriminantAnalysis and Fisher's two-class closed form for the speaker LDA."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import roc_curve

from ser.eval.speaker import cosine_eer, cosine_trials, equal_error_rate, speaker_lda


def _brute_force_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Accept a trial when its score >= thr, for every distinct score as thr."""
    tar, non = scores[labels == 1], scores[labels == 0]
    best = None
    for thr in np.unique(scores)[::-1]:
        miss, fa = float(np.mean(tar < thr)), float(np.mean(non >= thr))
        if best is None or abs(miss - fa) < best[0]:
            best = (abs(miss - fa), (miss + fa) / 2)
    return best[1]


@pytest.mark.parametrize("ties", [False, True])
def test_eer_against_roc_curve_and_brute_force(ties):
    rng = np.random.default_rng(3 + ties)
    labels = (rng.random(400) < 0.3).astype(int)
    scores = rng.normal(0.0, 1.0, 400) + 1.2 * labels
    if ties:
        scores = np.round(scores, 1)  # many tied scores: each distinct score is one threshold
    got = equal_error_rate(scores, labels)
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    i = 1 + int(np.argmin(np.abs(fnr[1:] - fpr[1:])))  # point 0 (threshold +inf) accepts nothing
    assert got == pytest.approx((fnr[i] + fpr[i]) / 2, abs=1e-12)
    assert got == pytest.approx(_brute_force_eer(scores, labels), abs=1e-12)
    assert 0.1 < got < 0.4


def test_eer_extremes_and_errors():
    assert equal_error_rate(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 0])) == 0.0
    assert equal_error_rate(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1, 1, 0, 0])) == 1.0  # inverted scores
    with pytest.raises(ValueError, match="both"):
        equal_error_rate(np.array([1.0, 2.0]), np.array([1, 1]))


def test_speaker_lda_against_sklearn():
    rng = np.random.default_rng(0)
    D, C = 6, 5
    centres = rng.normal(0, 2.0, (C, D))
    mix = rng.normal(size=(D, D))
    labels = np.repeat(np.arange(C), 40)
    x = centres[labels] + rng.normal(size=(len(labels), D)) @ mix
    mean, v = speaker_lda(x, labels, dim=3)
    assert v.shape == (D, 3)
    np.testing.assert_allclose(mean, x.mean(0))
    ref = LinearDiscriminantAnalysis(solver="eigen").fit(x, labels).scalings_[:, :3]
    for j in range(3):  # eigenvectors are defined up to sign
        s = np.sign(v[:, j] @ ref[:, j])
        np.testing.assert_allclose(s * v[:, j], ref[:, j], rtol=1e-4, atol=1e-6 * np.abs(ref[:, j]).max())
    # at most classes - 1 directions
    assert speaker_lda(x, labels, dim=10)[1].shape == (D, C - 1)
    with pytest.raises(ValueError, match="2 speakers"):
        speaker_lda(x[:10], labels[:10], 2)


def test_speaker_lda_two_classes_is_fisher():
    rng = np.random.default_rng(1)
    cov = np.array([[2.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
    a = rng.multivariate_normal([0, 0, 0], cov, 300)
    b = rng.multivariate_normal([1.0, -0.5, 0.7], cov, 200)
    x, labels = np.vstack([a, b]), np.array([0] * 300 + [1] * 200)
    _, v = speaker_lda(x, labels, dim=5)
    within = ((a - a.mean(0)).T @ (a - a.mean(0)) + (b - b.mean(0)).T @ (b - b.mean(0))) / len(x)
    fisher = np.linalg.solve(within, b.mean(0) - a.mean(0))  # W^-1 (mu_b - mu_a)
    cos = abs(v[:, 0] @ fisher) / np.linalg.norm(v[:, 0]) / np.linalg.norm(fisher)
    assert v.shape == (3, 1) and cos == pytest.approx(1.0, abs=1e-6)


def test_cosine_trials_brute_force():
    rng = np.random.default_rng(2)
    vecs = {f"s{k % 3}-u{k}": rng.normal(size=4) for k in range(7)}
    u2s = {u: u.split("-")[0] for u in vecs}
    u2s.pop("s0-u3")  # no speaker: left out
    scores, same = cosine_trials(vecs, u2s)
    utts = sorted(u2s)
    x = np.stack([vecs[u] for u in utts])
    x = x - x.mean(0)
    k = 0
    for i in range(len(utts)):
        for j in range(i + 1, len(utts)):
            want = x[i] @ x[j] / np.linalg.norm(x[i]) / np.linalg.norm(x[j])
            assert scores[k] == pytest.approx(want, abs=1e-9) and same[k] == (u2s[utts[i]] == u2s[utts[j]])
            k += 1
    assert k == len(scores)
    eer, nt, nn = cosine_eer(vecs, u2s)
    assert nt == int(same.sum()) and nn == len(same) - nt and eer == equal_error_rate(scores, same)
