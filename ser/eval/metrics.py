"""Classification metrics of speech emotion recognition, equal to scikit-learn's.

    unweighted_accuracy  UA: mean per-class recall       = sklearn balanced_accuracy_score
    weighted_accuracy    WA: accuracy                    = sklearn accuracy_score
    macro_f1             mean per-class F1               = sklearn f1_score(average="macro")
    confusion_matrix     counts, rows = reference        = sklearn confusion_matrix
    row_normalise        rows divided by their sums      = sklearn confusion_matrix(normalize="true")

``labels`` (when given) is the class order; by default it is the sorted union of
the labels in ``ref`` and ``hyp`` (sklearn's ``unique_labels``).

Decisions where sklearn warns, all equal to sklearn's value:
- UA averages the recall of the classes PRESENT in the reference only.  A class
  absent from a fold's reference has no recall and is left out of that fold's UA
  (sklearn warns "y_pred contains classes not in y_true" when it is predicted and
  does the same); predicting it still lowers the recall of the true classes.
- F1 of a class with no reference and no predicted sample is 0/0 and counts as 0
  (sklearn's zero_division default, with a warning).  The scorer therefore passes
  no ``labels`` to ``macro_f1``, so only classes present in the fold count.
- A row of a class absent from the reference normalises to zeros (sklearn's nan_to_num).

Deviation: a label outside an explicit ``labels`` list is an error here, where
sklearn silently drops those samples.  Empty input is an error (sklearn: nan/error).
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

Labels = Sequence[Hashable]


def encode(ref: Labels, hyp: Labels, labels: Labels | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """Integer class codes of ``ref`` and ``hyp`` in ``labels`` order (default: sorted union)."""
    ref, hyp = list(ref), list(hyp)
    if len(ref) != len(hyp):
        raise ValueError(f"reference has {len(ref)} labels, hypothesis {len(hyp)}")
    if not ref:
        raise ValueError("no samples to score")
    labels = sorted(set(ref) | set(hyp)) if labels is None else list(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError(f"repeated label in {labels}")
    unknown = (set(ref) | set(hyp)) - index.keys()
    if unknown:
        raise ValueError(f"label(s) {sorted(map(str, unknown))} not in labels {labels}")
    return np.array([index[x] for x in ref]), np.array([index[x] for x in hyp]), labels


def confusion_counts(ref_codes: np.ndarray, hyp_codes: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, K] int64 counts of (reference row, hypothesis column) from integer codes."""
    flat = np.asarray(ref_codes, dtype=np.int64) * num_classes + np.asarray(hyp_codes, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_matrix(ref: Labels, hyp: Labels, labels: Labels | None = None) -> np.ndarray:
    """Counts, rows = reference class, columns = hypothesis class, in ``labels`` order."""
    r, h, labels = encode(ref, hyp, labels)
    return confusion_counts(r, h, len(labels))


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum; an all-zero row (class absent from the reference) stays zero."""
    cm = np.asarray(cm, dtype=np.float64)
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)


def ua_from_confusion(cm: np.ndarray) -> float:
    """Mean recall over the rows (reference classes) that have samples."""
    cm = np.asarray(cm)
    sums = cm.sum(axis=1)
    present = sums > 0
    return float(np.mean(np.diag(cm)[present] / sums[present]))


def f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 = 2 tp / (2 tp + fp + fn); 0 where the class has no reference and no hypothesis."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # = 2 tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def unweighted_accuracy(ref: Labels, hyp: Labels, labels: Labels | None = None) -> float:
    """UA: mean per-class recall over the classes present in ``ref`` (see the module notes)."""
    return ua_from_confusion(confusion_matrix(ref, hyp, labels))


def weighted_accuracy(ref: Labels, hyp: Labels) -> float:
    """WA: the fraction of samples whose hypothesis equals the reference."""
    r, h, _ = encode(ref, hyp)
    return float(np.mean(r == h))


def macro_f1(ref: Labels, hyp: Labels, labels: Labels | None = None) -> float:
    """Unweighted mean of per-class F1 over ``labels`` (default: classes in ``ref`` or ``hyp``)."""
    return float(np.mean(f1_from_confusion(confusion_matrix(ref, hyp, labels))))
