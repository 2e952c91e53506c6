"""Confidence intervals and paired significance tests for utterance-level emotion decisions.

- ``bootstrap_ua_ci``: percentile bootstrap interval of the pooled UA.  Test
  utterances are resampled with replacement WITHIN each stratum (fold), so every
  draw keeps each fold's size, as a re-run of the same cross-validation would.
- ``paired_bootstrap_ua``: the same resampling applied to two systems at once (the
  same utterances drawn for both); two-sided p-value of the pooled-UA difference.
- ``mcnemar_exact``: McNemar's exact test on per-utterance correctness (binomial
  test of the discordant pairs, Dietterich 1998 recommends it for comparing
  classifiers on one test set).  It tests ACCURACY (WA), not UA, and treats the
  utterances as independent.
- ``cluster_bootstrap_ua`` / ``paired_cluster_bootstrap_ua``: the same, resampling whole
  CLUSTERS (speakers) with replacement within each stratum.  Turns of one speaker share
  a voice, a dialog and a recording: they are not independent, and the utterance
  bootstrap then under-covers (tests/test_eval_significance.py simulates speaker-level
  accuracy s.d. 0.08: the utterance interval misses the population UA far more often
  than 5%).  Gives intervals of both the pooled UA and the mean of the strata's (folds')
  UAs, the figure the papers report.  With few clusters per stratum (IEMOCAP's
  leave-one-session-out has 2 test speakers a fold) the interval is itself rough: it
  conditions on the fold partition and the trained models, and treats a fold's test
  speakers as drawn from a population of speakers.
- ``holm``: Holm's step-down adjustment of a family of p-values (Holm 1979).

Implementation: only (stratum, reference class, correct?) of an utterance enters
UA, so resampling the n_s utterances of a stratum with replacement is exactly a
multinomial draw of n_s over that stratum's cells with probabilities equal to the
cell frequencies.  We draw the cell counts directly (``numpy.random.Generator.
multinomial``) instead of index vectors; the test suite checks the distribution
against explicit index resampling.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DRAWS = 2000
SEED = 0


class PairedResult(NamedTuple):
    diff: float          # UA(a) - UA(b) on all utterances
    p_bootstrap: float   # two-sided paired bootstrap p of the UA difference (clusters resampled)
    n_a_only: int        # utterances a decides right and b wrong (McNemar's b)
    n_b_only: int        # utterances b decides right and a wrong (McNemar's c)
    p_mcnemar: float     # exact McNemar p: a test of accuracy, utterances independent


def _check(ref: np.ndarray, strata: np.ndarray, *hyps: np.ndarray) -> None:
    if ref.ndim != 1 or ref.size == 0:
        raise ValueError("bootstrap needs a non-empty 1-d reference")
    for a in (strata, *hyps):
        if a.shape != ref.shape:
            raise ValueError(f"length mismatch: {a.shape[0]} vs {ref.shape[0]} reference labels")


def _resample_cells(cells: np.ndarray, strata: np.ndarray, num_cells: int, draws: int, seed: int) -> np.ndarray:
    """[draws, num_cells] counts of ``cells`` after resampling within each stratum (sorted order, seeded)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((draws, num_cells), dtype=np.int64)
    for s in np.unique(strata):
        counts = np.bincount(cells[strata == s], minlength=num_cells)
        n = int(counts.sum())
        out += rng.multinomial(n, counts / n, size=draws)
    return out


def ua_of_counts(hits: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """UA per row of [..., K] hit and total counts: mean recall over classes with totals > 0."""
    present = totals > 0
    recall = np.divide(hits, totals, out=np.zeros(hits.shape), where=present)
    return recall.sum(-1) / present.sum(-1)


def bootstrap_ua_ci(ref: np.ndarray, hyp: np.ndarray, strata: np.ndarray, num_classes: int, *,
                    draws: int = DRAWS, seed: int = SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval (lo, hi) of the pooled UA; inputs are integer class codes."""
    ref, hyp, strata = np.asarray(ref), np.asarray(hyp), np.asarray(strata)
    _check(ref, strata, hyp)
    cells = ref * 2 + (ref == hyp)                      # (class, correct)
    c = _resample_cells(cells, strata, 2 * num_classes, draws, seed).reshape(draws, num_classes, 2)
    ua = ua_of_counts(c[..., 1], c.sum(-1))
    lo, hi = np.quantile(ua, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_bootstrap_ua(ref: np.ndarray, hyp_a: np.ndarray, hyp_b: np.ndarray, strata: np.ndarray,
                        num_classes: int, *, draws: int = DRAWS, seed: int = SEED) -> tuple[float, float]:
    """(UA(a) - UA(b), two-sided p) by the paired bootstrap, resampling within strata.

    p = (1 + #{|d* - d| >= |d|}) / (draws + 1): the bootstrap differences d*, centred on
    the observed d, stand for the null distribution (the shift method; Berg-Kirkpatrick et
    al. 2012 use its one-sided form); the +1 keeps p > 0 (Davison & Hinkley 1997).
    Identical systems give d* = d = 0 and p = 1.
    """
    ref, hyp_a, hyp_b, strata = map(np.asarray, (ref, hyp_a, hyp_b, strata))
    _check(ref, strata, hyp_a, hyp_b)
    cells = ref * 4 + (ref == hyp_a) * 2 + (ref == hyp_b)  # (class, a correct, b correct)
    c = _resample_cells(cells, strata, 4 * num_classes, draws, seed).reshape(draws, num_classes, 2, 2)
    return _shift_p(c, cells, num_classes, draws)


def _cluster_counts(cells: np.ndarray, strata: np.ndarray, clusters: np.ndarray, num_cells: int,
                    draws: int, seed: int) -> np.ndarray:
    """[draws, S, num_cells] cell counts per stratum (sorted order) after resampling the stratum's
    clusters with replacement (as many as it has; a cluster drawn twice counts twice), seeded."""
    rng = np.random.default_rng(seed)
    strata_ids = np.unique(strata)
    out = np.zeros((draws, strata_ids.size, num_cells), dtype=np.int64)
    for i, s in enumerate(strata_ids):
        in_s = strata == s
        ids, cl = np.unique(clusters[in_s], return_inverse=True)
        per_cluster = np.zeros((ids.size, num_cells), dtype=np.int64)       # [m, cells]
        np.add.at(per_cluster, (cl, cells[in_s]), 1)
        weights = rng.multinomial(ids.size, np.full(ids.size, 1.0 / ids.size), size=draws)  # [draws, m]
        out[:, i] = weights @ per_cluster
    return out


class ClusterCI(NamedTuple):
    pooled: tuple[float, float]        # interval of the pooled UA
    mean_of_strata: tuple[float, float]  # interval of the mean of the strata's UAs (mean of fold UAs)


def _interval(x: np.ndarray, level: float) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    lo, hi = np.quantile(x, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _ua_nan(hits: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """ua_of_counts, NaN where no class is present (a draw that left a stratum empty cannot happen:
    every cluster has >= 1 utterance; kept for safety)."""
    present = (totals > 0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present > 0, ua_of_counts(hits, totals), np.nan)


def cluster_bootstrap_ua(ref: np.ndarray, hyp: np.ndarray, strata: np.ndarray, clusters: np.ndarray,
                         num_classes: int, *, draws: int = DRAWS, seed: int = SEED,
                         level: float = 0.95) -> ClusterCI:
    """Percentile intervals of the pooled UA and of the mean of the strata's UAs, resampling clusters
    (speakers) within strata (folds).  ``clusters`` labels each utterance's cluster; ids need only
    be unique within a stratum.  With one utterance per cluster this is the utterance bootstrap."""
    ref, hyp, strata, clusters = map(np.asarray, (ref, hyp, strata, clusters))
    _check(ref, strata, hyp, clusters)
    cells = ref * 2 + (ref == hyp)
    if _one_cluster_per_stratum(strata, clusters):
        # leave-one-speaker-out: a fold's only speaker cannot be resampled within it (a zero-width
        # interval); the folds are the clusters: they are resampled, the mean is over the drawn folds
        c = _cluster_counts(cells, np.zeros_like(strata), strata, 2 * num_classes, draws, seed)
        c = c.reshape(draws, num_classes, 2)
        fold_ids, fold = np.unique(strata, return_inverse=True)
        per_fold = np.zeros((fold_ids.size, 2 * num_classes), dtype=np.int64)
        np.add.at(per_fold, (fold, cells), 1)
        per_fold = per_fold.reshape(-1, num_classes, 2)
        ua_fold = _ua_nan(per_fold[..., 1], per_fold.sum(-1))    # [F]
        w = np.random.default_rng(seed + 1).multinomial(fold_ids.size, np.full(fold_ids.size, 1 / fold_ids.size),
                                                        size=draws)
        return ClusterCI(_interval(ua_of_counts(c[..., 1], c.sum(-1)), level),
                         _interval(w @ ua_fold / fold_ids.size, level))
    c = _cluster_counts(cells, strata, clusters, 2 * num_classes, draws, seed)
    c = c.reshape(draws, -1, num_classes, 2)                       # [draws, S, K, 2]
    pooled = ua_of_counts(c[..., 1].sum(1), c.sum(-1).sum(1))
    per_stratum = _ua_nan(c[..., 1], c.sum(-1))                    # [draws, S]
    return ClusterCI(_interval(pooled, level), _interval(per_stratum.mean(1), level))


def _one_cluster_per_stratum(strata: np.ndarray, clusters: np.ndarray) -> bool:
    """Every stratum (fold) holds a single cluster (speaker), and there are several strata."""
    pairs = np.unique(np.stack([np.unique(strata, return_inverse=True)[1],
                                np.unique(clusters, return_inverse=True)[1]]), axis=1)
    return np.unique(strata).size > 1 and pairs.shape[1] == np.unique(strata).size


def paired_cluster_bootstrap_ua(ref: np.ndarray, hyp_a: np.ndarray, hyp_b: np.ndarray, strata: np.ndarray,
                                clusters: np.ndarray, num_classes: int, *, draws: int = DRAWS,
                                seed: int = SEED) -> tuple[float, float]:
    """As :func:`paired_bootstrap_ua`, resampling clusters (speakers) within strata: the same
    clusters are drawn for both systems; same shift-method p."""
    ref, hyp_a, hyp_b, strata, clusters = map(np.asarray, (ref, hyp_a, hyp_b, strata, clusters))
    _check(ref, strata, hyp_a, hyp_b, clusters)
    cells = ref * 4 + (ref == hyp_a) * 2 + (ref == hyp_b)
    if _one_cluster_per_stratum(strata, clusters):  # leave-one-speaker-out: the folds are the clusters
        strata, clusters = np.zeros_like(strata), strata
    c = _cluster_counts(cells, strata, clusters, 4 * num_classes, draws, seed).sum(1)
    return _shift_p(c.reshape(draws, num_classes, 2, 2), cells, num_classes, draws)


def _shift_p(c: np.ndarray, cells: np.ndarray, num_classes: int, draws: int) -> tuple[float, float]:
    """(observed UA(a) - UA(b), two-sided shift-method p) from [draws, K, 2, 2] resampled counts."""
    totals = c.sum((-1, -2))
    d_star = ua_of_counts(c[..., 1, :].sum(-1), totals) - ua_of_counts(c[..., :, 1].sum(-1), totals)
    base = np.bincount(cells, minlength=4 * num_classes).reshape(num_classes, 2, 2)
    base_tot = base.sum((-1, -2))
    d = float(ua_of_counts(base[:, 1, :].sum(-1), base_tot) - ua_of_counts(base[:, :, 1].sum(-1), base_tot))
    # a tiny tolerance so that float noise in equal differences does not decide the count
    extreme = np.abs(d_star - d) >= abs(d) - 1e-12
    return d, float((1 + extreme.sum()) / (draws + 1))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order: the i-th smallest of m
    is multiplied by m - i + 1 (i from 1), made monotone and capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    m = p.size
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adj
    return out.tolist()



def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p: 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    term, tail = 1, 1                     # C(n, 0); exact integer arithmetic
    for i in range(k):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2**n)      # int / int is correctly rounded for big ints


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """(b, c, p): b = a right and b wrong, c = a wrong and b right, p the exact two-sided McNemar p."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(f"length mismatch: {correct_a.shape[0]} vs {correct_b.shape[0]}")
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    return b, c, mcnemar_exact_p(b, c)


def paired_test(ref: np.ndarray, hyp_a: np.ndarray, hyp_b: np.ndarray, strata: np.ndarray, num_classes: int, *,
                clusters: np.ndarray | None = None, draws: int = DRAWS, seed: int = SEED) -> PairedResult:
    """Paired bootstrap of the UA difference (whole ``clusters`` resampled within strata; each
    utterance its own cluster when None) and the exact McNemar test of accuracy, on the same utterances."""
    if clusters is None:
        d, p_boot = paired_bootstrap_ua(ref, hyp_a, hyp_b, strata, num_classes, draws=draws, seed=seed)
    else:
        d, p_boot = paired_cluster_bootstrap_ua(ref, hyp_a, hyp_b, strata, clusters, num_classes,
                                                draws=draws, seed=seed)
    b, c, p_mc = mcnemar_exact(np.asarray(ref) == hyp_a, np.asarray(ref) == hyp_b)
    return PairedResult(d, p_boot, b, c, p_mc)
