"""ser.eval.metrics against scikit-learn (the independent reference)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from ser.eval.metrics import (confusion_matrix, macro_f1, row_normalise, unweighted_accuracy,
                              weighted_accuracy)

LABELS = ["ang", "hap", "neu", "sad"]


def random_labels(seed: int, n: int, p_hyp=None) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    ref = list(rng.choice(LABELS, size=n, p=[0.2, 0.3, 0.35, 0.15]))
    hyp = [r if rng.random() < 0.5 else str(rng.choice(LABELS, p=p_hyp)) for r in ref]
    return ref, hyp


def sk(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [7, 50, 400])
def test_equal_to_sklearn_on_random_labels(seed, n):
    ref, hyp = random_labels(seed, n)
    assert unweighted_accuracy(ref, hyp) == pytest.approx(sk(skm.balanced_accuracy_score, ref, hyp), abs=1e-12)
    assert weighted_accuracy(ref, hyp) == pytest.approx(skm.accuracy_score(ref, hyp), abs=1e-12)
    assert macro_f1(ref, hyp) == pytest.approx(sk(skm.f1_score, ref, hyp, average="macro"), abs=1e-12)
    assert macro_f1(ref, hyp, LABELS) == pytest.approx(
        sk(skm.f1_score, ref, hyp, average="macro", labels=LABELS), abs=1e-12)
    np.testing.assert_array_equal(confusion_matrix(ref, hyp, LABELS), skm.confusion_matrix(ref, hyp, labels=LABELS))
    np.testing.assert_array_equal(confusion_matrix(ref, hyp), skm.confusion_matrix(ref, hyp))
    np.testing.assert_allclose(row_normalise(confusion_matrix(ref, hyp, LABELS)),
                               skm.confusion_matrix(ref, hyp, labels=LABELS, normalize="true"), atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_class_never_predicted(seed):
    ref, hyp = random_labels(seed, 60, p_hyp=[0.5, 0.0, 0.25, 0.25])
    hyp = ["neu" if h == "hap" else h for h in hyp]           # 'hap' is never decided
    assert "hap" in ref and "hap" not in hyp
    assert unweighted_accuracy(ref, hyp) == pytest.approx(sk(skm.balanced_accuracy_score, ref, hyp), abs=1e-12)
    assert macro_f1(ref, hyp, LABELS) == pytest.approx(
        sk(skm.f1_score, ref, hyp, average="macro", labels=LABELS), abs=1e-12)
    cm = confusion_matrix(ref, hyp, LABELS)
    assert cm[:, 1].sum() == 0


@pytest.mark.parametrize("seed", range(4))
def test_class_absent_from_the_fold_reference(seed):
    """A fold without 'sad' in its reference: UA averages the classes present (sklearn's value),
    a decided 'sad' still counts as an error; explicit labels keep the K x K layout."""
    ref, hyp = random_labels(seed, 80)
    ref = ["neu" if r == "sad" else r for r in ref]
    assert "sad" not in ref and "sad" in hyp
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        expected = skm.balanced_accuracy_score(ref, hyp)
    assert any("not in y_true" in str(x.message) for x in w)   # sklearn warns, we decide: same value
    ua = unweighted_accuracy(ref, hyp, LABELS)
    assert ua == pytest.approx(expected, abs=1e-12)
    cm = confusion_matrix(ref, hyp, LABELS)
    present = cm.sum(1) > 0
    assert ua == pytest.approx(np.mean(np.diag(cm)[present] / cm.sum(1)[present]))
    np.testing.assert_array_equal(cm, skm.confusion_matrix(ref, hyp, labels=LABELS))
    assert macro_f1(ref, hyp, LABELS) == pytest.approx(
        sk(skm.f1_score, ref, hyp, average="macro", labels=LABELS), abs=1e-12)
    np.testing.assert_allclose(row_normalise(cm), skm.confusion_matrix(ref, hyp, labels=LABELS, normalize="true"))
    assert row_normalise(cm)[3].sum() == 0


def test_class_absent_from_reference_and_decisions_counts_zero_in_explicit_f1():
    ref, hyp = ["ang", "ang", "neu", "neu"], ["ang", "neu", "neu", "neu"]
    f1_two = macro_f1(ref, hyp)
    f1_four = macro_f1(ref, hyp, LABELS)
    assert f1_four == pytest.approx(f1_two / 2)   # 'hap' and 'sad' are 0/0 -> 0, as sklearn
    assert f1_four == pytest.approx(sk(skm.f1_score, ref, hyp, average="macro", labels=LABELS))


def test_hand_computed_values():
    ref = ["a", "a", "a", "a", "b", "b"]
    hyp = ["a", "a", "a", "b", "b", "a"]
    assert unweighted_accuracy(ref, hyp) == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert weighted_accuracy(ref, hyp) == pytest.approx(4 / 6)
    # F1(a) = 2*3 / (2*3 + 1 + 1) = 0.75 ; F1(b) = 2*1 / (2*1 + 1 + 1) = 0.5
    assert macro_f1(ref, hyp) == pytest.approx(0.625)
    np.testing.assert_array_equal(confusion_matrix(ref, hyp), [[3, 1], [1, 1]])


def test_bad_input():
    with pytest.raises(ValueError, match="not in labels"):
        confusion_matrix(["ang", "fru"], ["ang", "ang"], LABELS)
    with pytest.raises(ValueError, match="no samples"):
        weighted_accuracy([], [])
    with pytest.raises(ValueError, match="reference has 2 labels, hypothesis 1"):
        unweighted_accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="repeated label"):
        macro_f1(["a"], ["a"], ["a", "a"])
