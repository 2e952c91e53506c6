"""Phone n-gram LM for the chain denominator graph (chain-est-phone-lm).

Mirrors src/chain/language-model.{h,cc} (LanguageModelEstimator) and
src/chainbin/chain-est-phone-lm.cc:

- counts: for each sentence, history starts as [0] (BOS) and grows to ngram_order-1
  phones; count(history, phone) for every phone and (history, 0) for end of sentence;
- every history of length >= no_prune_ngram_order has a backoff state (history
  without its first phone), created on demand;
- un-smoothed, "hard backoff": states whose history is at least no_prune_ngram_order
  long may be removed, their counts added to the backoff state (so transitions into
  them go to the backoff state); states are removed greedily by smallest
  log-likelihood loss (priority queue with lazy re-evaluation, 4 progressively
  tighter targets) until num_basic_states + num_extra_lm_states remain, where
  num_basic_states counts the histories of length no_prune_ngram_order - 1;
- probabilities are relative counts of each remaining state; the end-of-sentence
  count becomes the final probability; arcs go to the longest existing history
  state with nonzero count.

The result is an :class:`~ser.chain.fsa.Fsa` with phone-id labels (state numbering and
tie-breaking as Kaldi's).
"""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from ser.chain.fsa import NEG_INF, Fsa

log = logging.getLogger(__name__)


def _approx_equal(a: float, b: float, rel: float = 0.001) -> bool:
    """kaldi::ApproxEqual on floats."""
    a, b = float(np.float32(a)), float(np.float32(b))
    if a == b:
        return True
    diff = abs(a - b)
    if math.isinf(diff) or diff != diff:
        return False
    return diff <= rel * (abs(a) + abs(b))


@dataclass
class _LmState:
    history: tuple[int, ...]
    counts: dict[int, int] = field(default_factory=dict)
    tot_count: int = 0
    tot_count_with_parents: int = 0
    backoff: int = -1
    backoff_allowed: bool = False
    fst_state: int = -1

    def add(self, phone: int, count: int) -> None:
        self.counts[phone] = self.counts.get(phone, 0) + count
        self.tot_count += count

    def log_like(self) -> float:
        t = self.tot_count
        return sum(c * math.log(c / t) for c in self.counts.values())


class PhoneLmEstimator:
    def __init__(self, ngram_order: int = 4, no_prune_ngram_order: int = 3, num_extra_lm_states: int = 1000) -> None:
        if ngram_order < 2:
            raise ValueError("--ngram-order must be >= 2")
        if not 1 <= no_prune_ngram_order <= ngram_order:
            raise ValueError("--no-prune-ngram-order must be in [1, --ngram-order]")
        self.ngram_order = ngram_order
        self.no_prune_ngram_order = no_prune_ngram_order
        self.num_extra_lm_states = num_extra_lm_states
        self.states: list[_LmState] = []
        self.hist_index: dict[tuple[int, ...], int] = {}
        self.num_active = 0
        self.num_basic = 0
        self._queue: list[tuple[float, int]] = []  # max-heap via negation: (-like, -index)
        self.perplexity = float("nan")

    # -- counting ---------------------------------------------------------------------
    def _find_or_create(self, hist: tuple[int, ...]) -> int:
        i = self.hist_index.get(hist)
        if i is not None:
            return i
        i = len(self.states)
        self.states.append(_LmState(hist))
        self.hist_index[hist] = i
        if len(hist) >= self.no_prune_ngram_order:
            self.states[i].backoff = self._find_or_create(hist[1:])
        return i

    def _increment(self, hist: tuple[int, ...], phone: int) -> None:
        st = self.states[self._find_or_create(hist)]
        if st.tot_count == 0:
            self.num_active += 1
        st.add(phone, 1)

    def add_counts(self, sentence) -> None:
        hist: tuple[int, ...] = (0,)
        for p in sentence:
            p = int(p)
            if p <= 0:
                raise ValueError(f"phone LM: phone ids must be positive, got {p}")
            self._increment(hist, p)
            hist = hist + (p,)
            if len(hist) >= self.ngram_order:
                hist = hist[1:]
        self._increment(hist, 0)

    # -- pruning ----------------------------------------------------------------------
    def _set_parent_counts(self) -> None:
        for st in self.states:
            c = st.tot_count
            j = self.hist_index[st.history]
            while j != -1:
                self.states[j].tot_count_with_parents += c
                j = self.states[j].backoff

    def _backoff_allowed(self, i: int) -> bool:
        st = self.states[i]
        if len(st.history) < self.no_prune_ngram_order:
            return False
        if st.tot_count != st.tot_count_with_parents or st.tot_count == 0:
            return False
        if len(st.history) == self.ngram_order - 1:
            return True
        for p in st.counts:
            if p != 0:
                j = self.hist_index.get(st.history + (p,))
                if j is not None and self.states[j].tot_count_with_parents != 0:
                    return False
        return True

    def _like_change(self, i: int) -> float:
        st = self.states[i]
        bo = self.states[st.backoff]
        if bo.tot_count == 0:
            return -1.0e-15 * st.tot_count
        merged = _LmState(bo.history, dict(bo.counts), bo.tot_count)
        for p, c in st.counts.items():
            merged.add(p, c)
        ch = merged.log_like() - st.log_like() - bo.log_like()
        if ch >= 0.1:
            raise RuntimeError("phone LM: positive log-likelihood change in backoff (bug)")
        return float(np.float32(min(ch, 0.0)))

    def _push(self, like: float, i: int) -> None:
        # std::priority_queue<pair<float,int>>: largest like first, ties -> largest index
        heapq.heappush(self._queue, (-like, -i))

    def _init_queue(self) -> None:
        self._queue = []
        for i, st in enumerate(self.states):
            st.backoff_allowed = self._backoff_allowed(i)
            if st.backoff_allowed:
                self._push(self._like_change(i), i)

    def _back_off_state(self, i: int) -> None:
        st = self.states[i]
        bi = st.backoff
        bo = self.states[bi]
        had_allowed = bo.backoff_allowed
        if bo.tot_count != 0:
            self.num_active -= 1
        for p, c in st.counts.items():
            bo.add(p, c)
        st.counts, st.tot_count, st.backoff_allowed = {}, 0, False
        st.tot_count_with_parents = 0  # LmState::Clear() zeroes it (as 'false')
        bo.backoff_allowed = self._backoff_allowed(bi)
        if not had_allowed and bo.backoff_allowed:
            self._push(self._like_change(bi), bi)

    def _do_backoff(self) -> None:
        initial = self.num_active
        target = self.num_basic + self.num_extra_lm_states
        targets = [initial + int((target - initial) * (t + 1) / 4) for t in range(4)]  # C++ truncation
        for this_target in targets:
            self._init_queue()
            while self.num_active > this_target and self._queue:
                neg_like, neg_i = heapq.heappop(self._queue)
                like, i = -neg_like, -neg_i
                new_like = self._like_change(i)
                if not _approx_equal(like, new_like):
                    self._push(new_like, i)
                else:
                    self._back_off_state(i)
        log.info("In LM [hard] backoff, target num states was %d + --num-extra-lm-states=%d = %d, "
                 "pruned from %d to %d", self.num_basic, self.num_extra_lm_states, target, initial, self.num_active)

    def _find_nonzero(self, hist: tuple[int, ...]) -> int:
        while True:
            i = self.hist_index.get(hist)
            if i is not None and self.states[i].tot_count != 0:
                return i
            if not hist:
                raise RuntimeError("phone LM: no state for history (bug)")
            hist = hist[1:]

    # -- estimation -------------------------------------------------------------------
    def estimate(self) -> Fsa:
        if not self.states:
            raise ValueError("phone LM: no data")
        log.info("Estimating language model with --no-prune-ngram-order=%d, --ngram-order=%d, "
                 "--num-extra-lm-states=%d", self.no_prune_ngram_order, self.ngram_order, self.num_extra_lm_states)
        self._set_parent_counts()
        self.num_basic = sum(len(s.history) == self.no_prune_ngram_order - 1 for s in self.states)
        self._do_backoff()
        n = 0
        for st in self.states:
            if st.tot_count:
                st.fst_state = n
                n += 1
        assert n == self.num_active
        src, dst, lab, lp = [], [], [], []
        final = np.full(n, NEG_INF)
        tot_c, tot_lp = 0, 0.0
        for st in self.states:
            if st.fst_state < 0:
                continue
            for p in sorted(st.counts):
                c = st.counts[p]
                lpv = math.log(c / st.tot_count)
                tot_c += c
                tot_lp += c * lpv
                if p == 0:
                    final[st.fst_state] = lpv
                else:
                    src.append(st.fst_state)
                    dst.append(self.states[self._find_nonzero(st.history + (p,))].fst_state)
                    lab.append(p)
                    lp.append(lpv)
        start = self.states[self._find_nonzero((0,))].fst_state
        fsa = Fsa(n, start, np.array(src), np.array(dst), np.array(lab), np.array(lp), final)
        if fsa.connect().num_states != n:
            raise RuntimeError("phone LM: Connect() removed states (bug)")
        self.perplexity = math.exp(-tot_lp / tot_c)
        log.info("Total number of phone instances seen was %d; perplexity on training data is %.3f", tot_c,
                 self.perplexity)
        log.info("Created phone language model with %d states and %d arcs.", n, fsa.num_arcs)
        return fsa


def estimate_phone_lm(sentences, ngram_order: int = 4, no_prune_ngram_order: int = 3,
                      num_extra_lm_states: int = 1000) -> Fsa:
    est = PhoneLmEstimator(ngram_order, no_prune_ngram_order, num_extra_lm_states)
    for s in sentences:
        est.add_counts(s)
    return est.estimate()
