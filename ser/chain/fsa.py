"""Weighted acceptors as numpy arc lists, with the few FST operations the chain graphs need.

Mirrors the pieces of OpenFst / Kaldi fstext that chain graph building uses:
``fst::Connect``, ``fst::RmEpsilon`` (here in the log semiring, for acceptors whose
epsilon arcs form no cycle), Kaldi's ``fst::PushSpecial`` (src/fstext/push-special.cc:
power method on P + 0.1 I, so that every state "sums to" the same value), and
conversion to/from ``kaldifst.StdVectorFst`` (which supplies Reverse and
MinimizeEncoded, src/fstext/fstext-utils-inl.h, through its OpenFst build).

Weights are kept as natural-log probabilities (``logp``); OpenFst/Kaldi text and
kaldifst objects use ``-logp`` in the tropical semiring, with labels as given
(label 0 = epsilon; chain graphs use pdf-id + 1).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

NEG_INF = float("-inf")


@dataclass
class Fsa:
    num_states: int
    start: int
    src: np.ndarray  # int64 [A]
    dst: np.ndarray  # int64 [A]
    label: np.ndarray  # int64 [A], 0 = epsilon
    logp: np.ndarray  # float64 [A]
    final: np.ndarray  # float64 [S], log final weight, -inf = not final

    def __post_init__(self) -> None:
        self.src = np.asarray(self.src, dtype=np.int64)
        self.dst = np.asarray(self.dst, dtype=np.int64)
        self.label = np.asarray(self.label, dtype=np.int64)
        self.logp = np.asarray(self.logp, dtype=np.float64)
        self.final = np.asarray(self.final, dtype=np.float64)
        if not (len(self.src) == len(self.dst) == len(self.label) == len(self.logp)):
            raise ValueError("Fsa: src/dst/label/logp lengths differ")
        if len(self.final) != self.num_states:
            raise ValueError("Fsa: final must have num_states entries")
        if self.num_states and not 0 <= self.start < self.num_states:
            raise ValueError("Fsa: bad start state")

    @property
    def num_arcs(self) -> int:
        return int(len(self.src))

    @classmethod
    def empty(cls) -> "Fsa":
        z = np.zeros(0, dtype=np.int64)
        return cls(0, 0, z, z, z, np.zeros(0), np.zeros(0))

    # ----------------------------------------------------------------------------------
    def arc_order(self) -> np.ndarray:
        """Permutation sorting arcs by (src, label, dst)."""
        return np.lexsort((self.dst, self.label, self.src))

    def sorted_arcs(self) -> "Fsa":
        o = self.arc_order()
        return Fsa(self.num_states, self.start, self.src[o], self.dst[o], self.label[o], self.logp[o], self.final)

    def renumber(self, keep: np.ndarray, order: np.ndarray | None = None) -> "Fsa":
        """Keep states where ``keep`` is True (and the arcs between them).  ``order``
        (optional) lists the kept old state ids in their new order."""
        keep = np.asarray(keep, dtype=bool)
        if order is None:
            order = np.flatnonzero(keep)
        new_id = np.full(self.num_states, -1, dtype=np.int64)
        new_id[order] = np.arange(len(order))
        if self.num_states == 0 or new_id[self.start] < 0:
            return Fsa.empty()
        a = keep[self.src] & keep[self.dst]
        return Fsa(len(order), int(new_id[self.start]), new_id[self.src[a]], new_id[self.dst[a]],
                   self.label[a], self.logp[a], self.final[order])

    def connect(self) -> "Fsa":
        """Trim to states that are accessible and co-accessible (fst::Connect)."""
        if self.num_states == 0:
            return self
        acc = _reach(self.num_states, self.src, self.dst, np.array([self.start]))
        coacc = _reach(self.num_states, self.dst, self.src, np.flatnonzero(self.final > NEG_INF))
        return self.renumber(acc & coacc)

    def merge_parallel_arcs(self) -> "Fsa":
        """Sum (log-add) arcs with the same (src, label, dst): same weighted language."""
        if self.num_arcs == 0:
            return self
        key = np.stack([self.src, self.label, self.dst], 1)
        uniq, inv = np.unique(key, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        if len(uniq) == self.num_arcs:
            return self
        m = np.full(len(uniq), NEG_INF)
        np.logaddexp.at(m, inv, self.logp)
        return Fsa(self.num_states, self.start, uniq[:, 0], uniq[:, 2], uniq[:, 1], m, self.final)

    def rm_epsilon(self) -> "Fsa":
        """Log-semiring epsilon removal for acceptors whose epsilon arcs are acyclic."""
        eps = self.label == 0
        if not eps.any():
            return self
        S = self.num_states
        eps_out: list[list[tuple[int, float]]] = [[] for _ in range(S)]
        for s, d, w in zip(self.src[eps].tolist(), self.dst[eps].tolist(), self.logp[eps].tolist()):
            eps_out[s].append((d, w))
        closure_cache: dict[int, dict[int, float]] = {}

        def closure(s: int, stack: tuple[int, ...] = ()) -> dict[int, float]:
            if s in closure_cache:
                return closure_cache[s]
            if s in stack:
                raise ValueError("Fsa.rm_epsilon: epsilon cycle")
            out: dict[int, float] = {s: 0.0}
            for d, w in eps_out[s]:
                for t, v in closure(d, stack + (s,)).items():
                    out[t] = float(np.logaddexp(out.get(t, NEG_INF), w + v))
            closure_cache[s] = out
            return out

        ne = ~eps
        by_src: list[np.ndarray] = _group(S, self.src[ne])
        ndst, nlab, nlp = self.dst[ne], self.label[ne], self.logp[ne]
        out_src, out_dst, out_lab, out_lp = [], [], [], []
        final = np.full(S, NEG_INF)
        for s in range(S):
            for t, w in closure(s).items():
                final[s] = np.logaddexp(final[s], w + self.final[t])
                idx = by_src[t]
                if len(idx):
                    out_src.append(np.full(len(idx), s))
                    out_dst.append(ndst[idx])
                    out_lab.append(nlab[idx])
                    out_lp.append(nlp[idx] + w)
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
        return Fsa(S, self.start, cat(out_src, np.int64), cat(out_dst, np.int64), cat(out_lab, np.int64),
                   cat(out_lp, np.float64), final).merge_parallel_arcs().connect()

    # ----------------------------------------------------------------------------------
    def min_path_length(self) -> int:
        """Fewest arcs on a successful path (BFS), or -1 if none (all arcs count as 1)."""
        if self.num_states == 0:
            return -1
        dist = np.full(self.num_states, -1, dtype=np.int64)
        dist[self.start] = 0
        out = _group(self.num_states, self.src)
        q = deque([self.start])
        while q:
            s = q.popleft()
            for d in self.dst[out[s]].tolist():
                if dist[d] < 0:
                    dist[d] = dist[s] + 1
                    q.append(d)
        fin = np.flatnonzero((self.final > NEG_INF) & (dist >= 0))
        return int(dist[fin].min()) if len(fin) else -1

    # ----------------------------------------------------------------------------------
    def to_openfst_text(self) -> str:
        """OpenFst text acceptor format (fstcompile --acceptor): start state's arcs first."""
        if self.num_states == 0:
            return ""
        o = self.arc_order()
        # OpenFst takes the source state of the first line as the start state.
        first = np.argsort(self.src[o] != self.start, kind="stable")
        o = o[first]
        lines = [f"{s}\t{d}\t{lab}\t{_fmt(-w)}" for s, d, lab, w in
                 zip(self.src[o].tolist(), self.dst[o].tolist(), self.label[o].tolist(), self.logp[o].tolist())]
        if not lines or int(self.src[o[0]]) != self.start:
            # start state without arcs: a final line for it must come first.
            if self.final[self.start] == NEG_INF:
                raise ValueError("Fsa.to_openfst_text: start state has no arcs and is not final")
            lines.insert(0, f"{self.start}\t{_fmt(-self.final[self.start])}")
            fin_states = [s for s in np.flatnonzero(self.final > NEG_INF).tolist() if s != self.start]
        else:
            fin_states = np.flatnonzero(self.final > NEG_INF).tolist()
        lines += [f"{s}\t{_fmt(-self.final[s])}" for s in fin_states]
        return "\n".join(lines) + "\n"

    def to_kaldifst(self):
        import kaldifst

        f = kaldifst.StdVectorFst()
        for _ in range(self.num_states):
            f.add_state()
        if self.num_states == 0:
            return f
        f.start = self.start
        for s, d, lab, w in zip(self.src.tolist(), self.dst.tolist(), self.label.tolist(), self.logp.tolist()):
            f.add_arc(s, kaldifst.StdArc(lab, lab, -w, d))
        for s in np.flatnonzero(self.final > NEG_INF).tolist():
            f.set_final(s, -float(self.final[s]))
        return f

    @classmethod
    def from_kaldifst(cls, f) -> "Fsa":
        import kaldifst

        S = f.num_states
        if S == 0:
            return cls.empty()
        src, dst, lab, w, final = [], [], [], [], np.full(S, NEG_INF)
        for s in range(S):
            for a in kaldifst.ArcIterator(f, s):
                if a.ilabel != a.olabel:
                    raise ValueError("Fsa.from_kaldifst: not an acceptor")
                src.append(s)
                dst.append(a.nextstate)
                lab.append(a.ilabel)
                w.append(-a.weight.value)
            fw = f.final(s).value
            if math.isfinite(fw):
                final[s] = -fw
        return cls(S, f.start, np.array(src, np.int64), np.array(dst, np.int64), np.array(lab, np.int64),
                   np.array(w, np.float64), final)


def _fmt(x: float) -> str:
    return "0" if x == 0 else repr(float(np.float32(x)))


def _group(n: int, keys: np.ndarray) -> list[np.ndarray]:
    """Indices of ``keys`` grouped by value 0..n-1."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(n)]


def _reach(n: int, frm: np.ndarray, to: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order

    seen = np.zeros(n, dtype=bool)
    if len(seeds) == 0:
        return seen
    # add a super node n linked to every seed
    g = sp.csr_matrix((np.ones(len(frm) + len(seeds)), (np.concatenate([frm, np.full(len(seeds), n)]),
                                                        np.concatenate([to, seeds]))), shape=(n + 1, n + 1))
    order = breadth_first_order(g, n, directed=True, return_predecessors=False)
    seen[order[order < n]] = True
    return seen


def push_special(fsa: Fsa, delta: float = 1.0 / 1024 * 0.01, max_iter: int = 200) -> Fsa:
    """Kaldi's PushSpecial: find v with (P + 0.1 I) v = lambda v (power method), then
    p'_ij = p_ij v_j / v_i, final'_i = final_i v_start / v_i, so that every state's
    arc-plus-final probability sums to the same value (src/fstext/push-special.cc)."""
    import scipy.sparse as sp
    import logging

    S = fsa.num_states
    if S == 0:
        return fsa
    fin = np.flatnonzero(fsa.final > NEG_INF)
    rows = np.concatenate([fsa.src, fin])
    cols = np.concatenate([fsa.dst, np.full(len(fin), fsa.start)])
    vals = np.exp(np.concatenate([fsa.logp, fsa.final[fin]]))
    P = sp.csr_matrix((vals, (rows, cols)), shape=(S, S))
    occ = np.full(S, 1.0 / math.sqrt(S))
    converged = False
    for it in range(max_iter):
        new = 0.1 * occ + P @ occ
        lam = math.sqrt(float(new @ new))
        occ = new / lam
        if it % 5 == 0 and it > 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                sums = (P @ occ) / occ
            if np.log(sums.max() / sums.min()) <= delta:
                converged = True
                break
    if not converged:
        logging.getLogger(__name__).warning(
            "push-special: finished %d iterations without converging; output will be inaccurate", max_iter)
    with np.errstate(divide="ignore"):
        lv = np.log(occ)
    if not np.all(np.isfinite(lv)):
        logging.getLogger(__name__).warning("push-special: zero potentials found (unreachable cycles?)")
    logp = fsa.logp + lv[fsa.dst] - lv[fsa.src]
    final = fsa.final + lv[fsa.start] - lv
    final[fsa.final == NEG_INF] = NEG_INF
    return Fsa(S, fsa.start, fsa.src, fsa.dst, fsa.label, logp, final)
