"""Speaker verification with i-vectors: equal error rate of cosine scoring and a speaker LDA.

A check of the i-vector extractor (stage 4), not part of the emotion systems:
``local/ivector_eer.sh`` scores every same/different-speaker pair of utterances.

* :func:`equal_error_rate`: the operating point where the miss rate (targets rejected) and
  the false-alarm rate (non-targets accepted) are closest, over the thresholds at the
  distinct scores; their mean there.
* :func:`speaker_lda`: the linear discriminant projection of Kaldi's ``ivector-compute-lda``
  idea -- directions maximising between- over within-speaker scatter (a generalised
  symmetric eigenproblem).  Deviation: no ``--total-covariance-factor`` and no whitening
  of the within-class covariance after the projection; the within-class scatter gets a
  ridge of 1e-6 of its mean eigenvalue so that fewer utterances than dimensions still work.
* :func:`cosine_trials`: all pairs of utterances, scored by the cosine of their mean-centred
  (optionally LDA-projected) vectors.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["equal_error_rate", "speaker_lda", "cosine_trials", "cosine_eer"]


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER (a fraction) of trials with ``scores`` (higher = more likely the same speaker) and
    ``labels`` 1 (target) / 0 (non-target).  Tied scores are one threshold."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    lab = np.asarray(labels).reshape(-1).astype(bool)
    if scores.shape != lab.shape:
        raise ValueError(f"EER: {scores.size} scores for {lab.size} labels")
    ntar, nnon = int(lab.sum()), int((~lab).sum())
    if ntar == 0 or nnon == 0:
        raise ValueError("EER: need both same-speaker and different-speaker trials")
    order = np.argsort(-scores, kind="stable")
    s, lab = scores[order], lab[order]
    last = np.append(s[1:] != s[:-1], True)  # accept every trial up to here: one threshold per score
    miss = 1.0 - np.cumsum(lab)[last] / ntar
    fa = np.cumsum(~lab)[last] / nnon
    i = int(np.argmin(np.abs(miss - fa)))
    return float((miss[i] + fa[i]) / 2)


def speaker_lda(x: np.ndarray, labels: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], projection [D, d]) with d = min(dim, classes - 1, D) columns: the generalised
    eigenvectors ``B v = l W v`` of the largest eigenvalues (normalised ``v' W v = 1``), where B
    is the between-class and W the within-class scatter, both divided by the number of rows."""
    from scipy.linalg import eigh

    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    mean = x.mean(0)
    xc = x - mean
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("LDA needs at least 2 speakers")
    mus = np.stack([xc[labels == c].mean(0) for c in classes])
    counts = np.array([(labels == c).sum() for c in classes], dtype=np.float64)
    between = (mus * counts[:, None]).T @ mus / counts.sum()
    within = sum(((xc[labels == c] - m).T @ (xc[labels == c] - m)) for c, m in zip(classes, mus)) / len(x)
    within += 1e-6 * np.trace(within) / len(within) * np.eye(len(within))
    w, v = eigh(between, within)
    dim = min(dim, len(classes) - 1, x.shape[1])
    return mean, v[:, np.argsort(w)[::-1][:dim]]


def cosine_trials(vecs: Mapping[str, np.ndarray], utt2spk: Mapping[str, str],
                  lda: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cosine score, same-speaker flag) of every pair of the utterances with a vector and a
    speaker; vectors are projected (if ``lda``), mean-centred and length-normalised."""
    utts = sorted(u for u in vecs if u in utt2spk)
    if len(utts) < 2:
        raise ValueError("fewer than 2 utterances with both i-vectors and speakers")
    x = np.stack([vecs[u] for u in utts]).astype(np.float64)
    if lda is not None:
        x = (x - lda[0]) @ lda[1]
    x -= x.mean(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    sim = x @ x.T
    spk = np.array([utt2spk[u] for u in utts])
    iu = np.triu_indices(len(utts), 1)
    return sim[iu], (spk[:, None] == spk[None, :])[iu]


def cosine_eer(vecs: Mapping[str, np.ndarray], utt2spk: Mapping[str, str],
               lda: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, int, int]:
    """(EER of :func:`cosine_trials`, target trials, non-target trials)."""
    scores, same = cosine_trials(vecs, utt2spk, lda)
    return equal_error_rate(scores, same), int(same.sum()), int((~same).sum())
