"""Chain HMM topology and the tree-free pdf mapping of flat-start LF-MMI.

Mirrors:
- steps/nnet3/chain/gen_topo.py: one emitting state per phone with ForwardPdfClass 0
  (first frame) and SelfLoopPdfClass 1 (later frames), transitions 0.5 / 0.5;
- src/gmmbin/gmm-init-mono.cc (``--type mono``): 2 pdfs per phone set;
- src/gmmbin/gmm-init-biphone.cc (``--type biphone``, GetFullBiphoneStubMap): a full
  left-biphone "tree"; for each central phone set a pdf pair for "no left context"
  (utterance start, and context-independent left phones) and one pair per left phone
  set; with ``tie`` a biphone seen fewer than ``min_biphone_count`` times reverts to
  the central phone's monophone pair, and if the phone itself is seen at most
  ``min_monophone_count`` times, to one shared "zerophone" pair; pdf ids are
  numbered in the same order as Kaldi's;
- src/hmm/hmm-utils.cc (GetHTransducer + AddSelfLoops with reorder=true) for the
  expansion of a phone acceptor into a pdf acceptor (:func:`expand_to_pdfs`): the
  first frame of a phone carries pdf-class 0 and the phone's non-self-loop weight is
  charged on leaving its state, each further frame is a self-loop with pdf-class 1.

Deviation: ``steps/chain/e2e/compute_biphone_stats.py`` counts biphones on phone
sequences without any optional silence (so with ``--tie`` every SIL biphone falls to
the zerophone); we count on the same silence-sampled sequences as the phone LM.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ser.chain.fsa import NEG_INF, Fsa, _group

LOG_HALF = math.log(0.5)


def gen_topo(nonsilence_ids: list[int], silence_ids: list[int]) -> str:
    """Kaldi topology text, as gen_topo.py prints it."""
    all_ids = list(silence_ids) + list(nonsilence_ids)
    return ("<Topology>\n<TopologyEntry>\n<ForPhones>\n" + " ".join(map(str, all_ids)) + "\n</ForPhones>\n"
            "<State> 0 <ForwardPdfClass> 0 <SelfLoopPdfClass> 1 <Transition> 0 0.5 <Transition> 1 0.5 </State>\n"
            "<State> 1 </State>\n</TopologyEntry>\n</Topology>\n")


class PdfMap:
    """pdf = table[left_phone, phone, pdf_class] (left 0 = no left context)."""

    def __init__(self, kind: str, table: np.ndarray, num_pdfs: int) -> None:
        if kind not in ("mono", "biphone"):
            raise ValueError(f"PdfMap: kind must be mono or biphone, got {kind!r}")
        self.kind = kind
        self.table = np.asarray(table, dtype=np.int64)
        self.num_pdfs = int(num_pdfs)

    @property
    def num_phones(self) -> int:
        return self.table.shape[1] - 1

    def pdf(self, left: int, phone: int, pdf_class: int) -> int:
        return int(self.table[left, phone, pdf_class])

    # -- construction -----------------------------------------------------------------
    @classmethod
    def mono(cls, num_phones: int, phone_sets: list[list[int]]) -> "PdfMap":
        table = np.full((num_phones + 1, num_phones + 1, 2), -1, dtype=np.int64)
        for i, s in enumerate(phone_sets):
            for p in s:
                table[:, p, 0] = 2 * i
                table[:, p, 1] = 2 * i + 1
        _check_complete(table)
        return cls("mono", table, 2 * len(phone_sets))

    @classmethod
    def biphone(cls, num_phones: int, phone_sets: list[list[int]], ci_phones: list[int] = (),
                bi_counts: np.ndarray | None = None, mono_counts: np.ndarray | None = None,
                min_biphone_count: int = 100, min_monophone_count: int = 20) -> "PdfMap":
        """Full left-biphone map (tie when counts are given), numbered as gmm-init-biphone."""
        ci = sorted(set(ci_phones))
        sets = [sorted(p for p in s if p not in ci) for s in phone_sets]
        sets = [s for s in sets if s]
        table = np.full((num_phones + 1, num_phones + 1, 2), -1, dtype=np.int64)
        cur = 0
        for p in ci:  # context-independent phones: one pair each, any left context
            table[:, p, :] = (cur, cur + 1)
            cur += 2
        zero_pdf = -1
        for right in sets:
            no_ctx = (cur, cur + 1)
            cur += 2
            mono_pdf = -1
            pairs: dict[int, tuple[int, int]] = {0: no_ctx}
            for p in ci:
                pairs[p] = no_ctx
            for left in sets:
                if bi_counts is None or bi_counts[left[0], right[0]] >= min_biphone_count:
                    pair = (cur, cur + 1)
                    cur += 2
                elif mono_counts is None or mono_counts[right[0]] > min_monophone_count:
                    if mono_pdf == -1:
                        mono_pdf = cur
                        cur += 2
                    pair = (mono_pdf, mono_pdf + 1)
                else:
                    if zero_pdf == -1:
                        zero_pdf = cur
                        cur += 2
                    pair = (zero_pdf, zero_pdf + 1)
                for lp in left:
                    pairs[lp] = pair
            for rp in right:
                for lp, pair in pairs.items():
                    table[lp, rp, :] = pair
        _check_complete(table)
        return cls("biphone", table, cur)

    # -- I/O --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"kind": self.kind, "table": torch.from_numpy(self.table.copy()), "num_pdfs": self.num_pdfs}

    @classmethod
    def from_state_dict(cls, d: dict) -> "PdfMap":
        return cls(str(d["kind"]), d["table"].numpy(), int(d["num_pdfs"]))

    def to_text(self, phones: list[str]) -> str:
        """Human-readable "left phone class pdf" lines (left <none> = no context)."""
        lines = []
        P = self.num_phones
        for p in range(1, P + 1):
            for left in range(0, P + 1):
                for c in (0, 1):
                    lines.append(f"{phones[left] if left else '<none>'} {phones[p]} {c} {self.table[left, p, c]}")
        return "\n".join(lines) + "\n"


def _check_complete(table: np.ndarray) -> None:
    if (table[:, 1:, :] < 0).any():
        raise ValueError("PdfMap: some phone has no pdf (is it missing from the phone sets?)")


def biphone_stats(phone_seqs, num_phones: int, phone_sets: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(bi_counts[left, right], mono_counts[phone]) as compute_biphone_stats.py with
    --shared-phones true: counts of each set's representative, left 0 = utterance start."""
    rep = np.arange(num_phones + 1)
    for s in phone_sets:
        rep[s] = s[0]
    bi = np.zeros((num_phones + 1, num_phones + 1), dtype=np.int64)
    for seq in phone_seqs:
        if not len(seq):
            continue
        r = rep[np.asarray(seq, dtype=np.int64)]
        np.add.at(bi, (np.concatenate([[0], r[:-1]]), r), 1)
    mono = bi.sum(0)
    # every member of a set gets its representative's count
    return bi[rep][:, rep], mono[rep]


def expand_to_pdfs(phone_fsa: Fsa, pdf_map: PdfMap, self_loop_logp: float, leave_logp: float) -> Fsa:
    """Phone acceptor (epsilon-free, labels = phone ids) -> pdf acceptor (labels = pdf+1).

    States are (phone-FSA state, left phone, current phone).  Entering phone p after
    left context l emits pdf(l, p, 0); each further frame of p is a self-loop
    emitting pdf(l, p, 1) with ``self_loop_logp``; ``leave_logp`` is added to every
    arc and final weight leaving a state inside a phone.  Den graph: log 0.5 / log 0.5
    (transition-scale = self-loop-scale = 1); numerator: 0 / 0 (scales 0)."""
    if phone_fsa.num_states == 0:
        return Fsa.empty()
    if (phone_fsa.label <= 0).any():
        raise ValueError("expand_to_pdfs: the phone acceptor must be epsilon-free")
    out_arcs = _group(phone_fsa.num_states, phone_fsa.src)
    table = pdf_map.table
    index: dict[tuple[int, int, int], int] = {}
    states: list[tuple[int, int, int]] = []

    def sid(key: tuple[int, int, int]) -> int:
        i = index.get(key)
        if i is None:
            i = index[key] = len(states)
            states.append(key)
        return i

    sid((phone_fsa.start, 0, 0))
    src, dst, lab, lp = [], [], [], []
    final = []
    k = 0
    while k < len(states):
        q, left, p = states[k]
        leave = leave_logp if p else 0.0
        if p:
            src.append(k); dst.append(k); lab.append(int(table[left, p, 1]) + 1); lp.append(self_loop_logp)
        f = phone_fsa.final[q]
        final.append(f + leave if f > NEG_INF else NEG_INF)
        idx = out_arcs[q]
        for nq, ph, w in zip(phone_fsa.dst[idx].tolist(), phone_fsa.label[idx].tolist(), phone_fsa.logp[idx].tolist()):
            src.append(k); dst.append(sid((nq, p, ph))); lab.append(int(table[p, ph, 0]) + 1); lp.append(w + leave)
        k += 1
    return Fsa(len(states), 0, np.array(src), np.array(dst), np.array(lab), np.array(lp), np.array(final))
