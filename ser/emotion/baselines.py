"""Paper 2's two baselines: a RandomForest on utterance features (openSMILE functionals) and the majority
classifier.  Library functions on arrays; the fold loop and the output files are the caller's.

* :func:`random_forest`: scikit-learn's RandomForestClassifier with paper 2's 1000 trees and maximal depth
  10 (§4.1), seeded, on features standardised with the mean and standard deviation of the training fold
  (the usual SER practice the issue asks for; trees are invariant to per-feature affine maps, so this
  changes nothing but keeps the input contract of every classifier here the same).  Other options are
  scikit-learn's defaults (Gini, sqrt(n_features) features per split, bootstrap).
* :func:`majority`: every test utterance gets the training fold's most frequent class (ties: the first in
  ``labels`` order); its posterior is one-hot.

Both return a :class:`Prediction` whose posteriors follow ``labels`` (the system's labels.txt order), as
``exp/ser/<system>/<fold>/utt2post`` needs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Prediction", "standardise", "random_forest", "majority"]


@dataclass
class Prediction:
    labels: list[str]        # class order of ``post``
    post: np.ndarray         # [N, K] posteriors (rows sum to 1)
    pred: list[str]          # decided class per test item


def _decide(labels: Sequence[str], post: np.ndarray) -> Prediction:
    return Prediction(list(labels), post, [labels[i] for i in post.argmax(axis=1)])  # argmax: first on ties


def standardise(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Arrays standardised with the mean and standard deviation of ``x_train`` (constant features: std 1)."""
    if x_train.ndim != 2 or x_train.shape[0] == 0:
        raise ValueError(f"training features must be a non-empty [N, D] array, got {x_train.shape}")
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(a - mean) / std for a in (x_train, *others)]


def _check(x_train: np.ndarray, y_train: Sequence[str], labels: Sequence[str]) -> None:
    if len(y_train) != x_train.shape[0]:
        raise ValueError(f"{x_train.shape[0]} training rows but {len(y_train)} labels")
    unknown = set(y_train) - set(labels)
    if unknown:
        raise ValueError(f"training labels {sorted(unknown)} are not in the class list {list(labels)}")
    if not np.isfinite(x_train).all():
        raise ValueError("training features are not finite")


def random_forest(x_train: np.ndarray, y_train: Sequence[str], x_test: np.ndarray, labels: Sequence[str],
                  seed: int = 0, n_estimators: int = 1000, max_depth: int = 10, n_jobs: int = 1) -> Prediction:
    """Paper 2's RandomForest baseline (see the module docstring); the same seed gives the same result."""
    from sklearn.ensemble import RandomForestClassifier

    _check(x_train, y_train, labels)
    if not np.isfinite(x_test).all():
        raise ValueError("test features are not finite")
    xs_train, xs_test = standardise(x_train, x_test)
    rf = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=n_jobs)
    rf.fit(xs_train, list(y_train))
    proba = rf.predict_proba(xs_test)  # columns in rf.classes_ order (sorted; only classes seen in training)
    post = np.zeros((x_test.shape[0], len(labels)))
    for j, c in enumerate(rf.classes_):
        post[:, list(labels).index(c)] = proba[:, j]
    return _decide(labels, post)


def majority(y_train: Sequence[str], num_test: int, labels: Sequence[str]) -> Prediction:
    """The training fold's most frequent class for every one of ``num_test`` items."""
    if not y_train:
        raise ValueError("majority: no training labels")
    counts = Counter(y_train)
    unknown = set(counts) - set(labels)
    if unknown:
        raise ValueError(f"training labels {sorted(unknown)} are not in the class list {list(labels)}")
    best = max(labels, key=lambda c: (counts.get(c, 0), -list(labels).index(c)))
    post = np.zeros((num_test, len(labels)))
    post[:, list(labels).index(best)] = 1.0
    return _decide(labels, post)
