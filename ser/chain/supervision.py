"""Flat-start (end-to-end) numerator graphs: transcript -> normalised pdf acceptor.

Mirrors what Kaldi's flat-start recipe does per utterance:
- compile-train-graphs (src/decoder/training-graph-compiler.cc) with
  ``--transition-scale=0 --self-loop-scale=0``: the word sequence through the
  lexicon FST of utils/prepare_lang.sh (make_lexicon_fst.py with --sil-prob: optional
  silence at the start and after every word, probability sil_prob; every
  pronunciation with its lexicon probability, 1.0 without lexiconp), the left-biphone
  context and the chain HMM (HMM weights vanish at scale 0);
- TrainingGraphToSupervisionE2e (src/chain/chain-supervision.cc): epsilons removed,
  labels -> pdf-id + 1, the whole utterance, no time constraints;
- AddWeightToSupervisionFstE2e: composition with the normalization FST (the den
  graph with a new start state whose epsilon arcs carry the den initial probs, every
  state final with weight 1), so each pdf sequence gets num weight x den weight and
  num <= den; if the composition is empty the utterance is rejected.
- the utterance must have at least as many output frames (ceil(T / frame-subsampling-
  factor)) as the shortest path of its graph, else it is skipped (counted, logged).

Pass-2 chunk supervision (:func:`make_chunk_supervision`, Kaldi's ``--constrained false``
egs: src/chain/chain-supervision.cc PhoneLatticeToProtoSupervision with
--left-tolerance/--right-tolerance 5, SupervisionSplitter, ConvertSupervisionToUnconstrained,
then AddWeightToSupervisionFst): from one aligned phone sequence (not a lattice), the phones
allowed in the chunk, boundary phones optional, mid-phone start allowed, any end state
final, determinized + minimized, composed with the normalization FST.  Optionally an aligned
optional-silence phone may be skipped (see :func:`chunk_pdf_fsa`).

Deviation: parallel arcs of the composed graph with the same label and destination
are summed (log-add) into one arc; the weighted language is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ser.chain.den_graph import DenGraph
from ser.chain.fsa import NEG_INF, Fsa, _group
from ser.chain.graph import ChainGraph
from ser.chain.lang import Lang
from ser.chain.topo import PdfMap, expand_to_pdfs


def _log(x: float) -> float:
    return math.log(x) if x > 0 else NEG_INF


def utterance_phone_fsa(words: list[str], lang: Lang) -> Fsa:
    """Phone acceptor L o (linear word acceptor), epsilon-free, log weights."""
    n = len(words)
    sil, nosil = _log(lang.sil_prob), _log(1.0 - lang.sil_prob)
    # states: 0 = start, 1 + 2k = loop before word k (k = 0..n), 2 + 2k = silence state before word k
    loop = lambda k: 1 + 2 * k
    silst = lambda k: 2 + 2 * k
    num_states = 2 * (n + 1) + 1
    src, dst, lab, lp = [], [], [], []

    def arc(s: int, d: int, label: int, w: float) -> None:
        if w > NEG_INF:
            src.append(s); dst.append(d); lab.append(label); lp.append(w)

    arc(0, loop(0), 0, nosil)
    arc(0, silst(0), 0, sil)
    for k in range(n + 1):
        arc(silst(k), loop(k), lang.sil_id, 0.0)
    for k, w in enumerate(words):
        for prob, pron in lang.prons(w):
            cur = loop(k)
            for i, ph in enumerate(pron[:-1]):
                nxt = num_states
                num_states += 1
                arc(cur, nxt, ph, _log(prob) if i == 0 else 0.0)
                cur = nxt
            first = len(pron) == 1
            base = _log(prob) if first else 0.0
            arc(cur, loop(k + 1), pron[-1], base + nosil)
            arc(cur, silst(k + 1), pron[-1], base + sil)
    final = np.full(num_states, NEG_INF)
    final[loop(n)] = 0.0
    return Fsa(num_states, 0, np.array(src, np.int64), np.array(dst, np.int64), np.array(lab, np.int64),
               np.array(lp, np.float64), final).rm_epsilon()


def numerator_pdf_fsa(words: list[str], lang: Lang, pdf_map: PdfMap) -> Fsa:
    """The training graph before normalisation (HMM weights at scale 0)."""
    return expand_to_pdfs(utterance_phone_fsa(words, lang), pdf_map, 0.0, 0.0).connect()


class Normalizer:
    """Composition with the den graph's normalization FST."""

    def __init__(self, den: DenGraph) -> None:
        f = den.fsa
        self.num_states = f.num_states
        with np.errstate(divide="ignore"):
            log_init = np.log(den.init)
        o = np.lexsort((f.dst, f.label, f.src))
        s, lab, d, w = f.src[o], f.label[o], f.dst[o], f.logp[o]
        key = s * (int(lab.max(initial=0)) + 1) + lab
        self._mult = int(lab.max(initial=0)) + 1
        uk, starts = np.unique(key, return_index=True)
        ends = np.append(starts[1:], len(key))
        self._ranges = dict(zip(uk.tolist(), zip(starts.tolist(), ends.tolist())))
        self._d, self._w = d, w
        # the new start state after RmEpsilon: every arc of every state i, weighted by init(i)
        ws = w + log_init[s]
        self._start: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for x, idx in _groups_by(lab):
            dd, ww = d[idx], ws[idx]
            ud, inv = np.unique(dd, return_inverse=True)
            m = np.full(len(ud), NEG_INF)
            np.logaddexp.at(m, inv.reshape(-1), ww)
            self._start[x] = (ud, m)

    def compose(self, num: Fsa) -> Fsa:
        """num o normalization, trimmed (empty Fsa if nothing survives)."""
        if num.num_states == 0:
            return Fsa.empty()
        out = _group(num.num_states, num.src)
        index: dict[tuple[int, int], int] = {(num.start, -1): 0}
        states = [(num.start, -1)]
        src, dst, lab, lp, final = [], [], [], [], []
        k = 0
        while k < len(states):
            n, d = states[k]
            final.append(num.final[n] if d >= 0 else NEG_INF)
            idx = out[n]
            for nn, x, w in zip(num.dst[idx].tolist(), num.label[idx].tolist(), num.logp[idx].tolist()):
                if d < 0:
                    cand = self._start.get(x)
                    if cand is None:
                        continue
                    dds, dws = cand[0].tolist(), cand[1].tolist()
                else:
                    r = self._ranges.get(d * self._mult + x)
                    if r is None:
                        continue
                    dds, dws = self._d[r[0]:r[1]].tolist(), self._w[r[0]:r[1]].tolist()
                for dd, dw in zip(dds, dws):
                    key = (nn, dd)
                    j = index.get(key)
                    if j is None:
                        j = index[key] = len(states)
                        states.append(key)
                    src.append(k); dst.append(j); lab.append(x); lp.append(w + dw)
            k += 1
        return Fsa(len(states), 0, np.array(src, np.int64), np.array(dst, np.int64), np.array(lab, np.int64),
                   np.array(lp, np.float64), np.array(final)).connect().merge_parallel_arcs()


def _groups_by(keys: np.ndarray):
    o = np.argsort(keys, kind="stable")
    u, st = np.unique(keys[o], return_index=True)
    en = np.append(st[1:], len(o))
    for x, a, b in zip(u.tolist(), st.tolist(), en.tolist()):
        yield x, o[a:b]


def fsa_to_chain_graph(fsa: Fsa) -> ChainGraph:
    init = torch.full((fsa.num_states,), float("-inf"))
    init[fsa.start] = 0.0
    return ChainGraph(fsa.num_states, torch.from_numpy(fsa.src.copy()), torch.from_numpy(fsa.dst.copy()),
                      torch.from_numpy(fsa.label - 1), torch.from_numpy(fsa.logp.astype(np.float32)), init,
                      torch.from_numpy(fsa.final.astype(np.float32)))


def _normalised(num: Fsa, normalizer: "Normalizer", T: int) -> "SupervisionResult":
    """Compose a numerator with the normalization FST; skip it (with the reason) when the den graph
    allows none of its paths or when ``T`` output frames are fewer than its shortest path."""
    comp = normalizer.compose(num)
    if comp.num_states == 0:
        return SupervisionResult(None, "numerator not allowed by the denominator graph", T, -1)
    m = comp.min_path_length()
    if T < m:
        return SupervisionResult(None, "too short", T, m)
    return SupervisionResult(fsa_to_chain_graph(comp), "", T, m)


def num_output_frames(num_frames: int, frame_subsampling_factor: int) -> int:
    return (num_frames + frame_subsampling_factor - 1) // frame_subsampling_factor


@dataclass
class SupervisionResult:
    graph: ChainGraph | None
    reason: str  # "" when ok, else why the utterance was skipped
    num_output_frames: int
    min_length: int


def make_supervision(words: list[str], num_frames: int, lang: Lang, pdf_map: PdfMap, normalizer: Normalizer,
                     frame_subsampling_factor: int = 3) -> SupervisionResult:
    T = num_output_frames(num_frames, frame_subsampling_factor)
    if not words:
        return SupervisionResult(None, "empty transcript", T, -1)
    return _normalised(numerator_pdf_fsa(words, lang, pdf_map), normalizer, T)


# ------------------------------------------------------------------------------------------
# chunk supervision from an alignment (pass 2, Kaldi's --constrained false egs)
# ------------------------------------------------------------------------------------------
TOLERANCE = 5  # Kaldi's chain SupervisionOptions --left-tolerance / --right-tolerance (input frames)


def phone_windows(starts: np.ndarray, ends: np.ndarray, num_input_frames: int, frame_subsampling_factor: int = 3,
                  left_tolerance: int = TOLERANCE, right_tolerance: int = TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Output frames [wb, we) on which each aligned phone is allowed.

    PhoneLatticeToProtoSupervision (src/chain/chain-supervision.cc): a phone spanning input
    frames [t0, t1) is allowed on [max(0, t0 - left_tol), min(T, t1 + right_tol)), mapped to
    output frames by t -> (t + fsf - 1) / fsf.  Here phones are aligned at the output rate,
    phone k covering output frames [starts[k], ends[k]) = input frames [fsf*starts, fsf*ends)."""
    f = frame_subsampling_factor
    t0 = np.asarray(starts, np.int64) * f
    t1 = np.minimum(np.asarray(ends, np.int64) * f, num_input_frames)
    a = np.maximum(0, t0 - left_tolerance)
    b = np.minimum(num_input_frames, t1 + right_tolerance)
    return (a + f - 1) // f, (b + f - 1) // f


def chunk_pdf_fsa(phones: np.ndarray, wb: np.ndarray, we: np.ndarray, begin: int, end: int, pdf_map: PdfMap,
                  optional_silence: int | None = None) -> Fsa:
    """Unnormalised, time-free pdf acceptor (labels pdf+1, weights log 1) of the output frames
    [begin, end) of an utterance whose aligned phones may occupy the windows [wb, we).

    What Kaldi's SupervisionSplitter + ConvertSupervisionToUnconstrained leave of the
    tolerance-constrained supervision of one path: the phones from one allowed at frame
    ``begin`` to one allowed at frame ``end - 1``, each with its real left context (biphone
    pdfs); the first phone either starts at ``begin`` (pdf-class 0 first) or is already
    running (its self-loop pdf-class 1 first, when its window starts before ``begin``); any
    state is final (the chunk may end inside the last phone).  With ``optional_silence`` (a
    phone id, normally SIL) each aligned occurrence of it between two phones may be skipped,
    the next phone then taking the phone before it as left context (Kaldi's phone lattices
    offer such alternatives; a single best path does not).  Determinized and minimized in
    the tropical semiring (weights are all zero, so every accepted pdf string counts once)."""
    phones = np.asarray(phones, np.int64)
    n = len(phones)
    if n == 0 or end <= begin:
        return Fsa.empty()
    first = [k for k in range(n) if wb[k] <= begin < we[k]]
    last = [k for k in range(n) if wb[k] <= end - 1 < we[k]]
    if not first or not last or min(first) > max(last):
        return Fsa.empty()
    k1 = max(last)
    last_set = set(last)
    table = pdf_map.table
    left_of = np.concatenate([[0], phones[:-1]])
    sil = optional_silence

    def successors(k: int) -> list[int]:
        out = [k + 1] if k + 1 <= k1 else []
        if (sil is not None and k + 2 <= k1 and phones[k + 1] == sil and phones[k] != sil
                and phones[k + 2] != sil):
            out.append(k + 2)  # skip the aligned silence after phone k
        return out

    # states: 0 = start, then one per (phone position, left context)
    index: dict[tuple[int, int], int] = {}
    todo: list[tuple[int, int]] = []

    def state(k: int, left: int) -> int:
        s = index.get((k, left))
        if s is None:
            s = index[(k, left)] = len(index) + 1
            todo.append((k, left))
        return s

    src, dst, lab = [], [], []
    for k in first:
        if k > k1:
            continue
        left, p = int(left_of[k]), int(phones[k])
        if k == 0 or wb[k - 1] <= begin - 1 < we[k - 1]:  # phone k can start at `begin`
            src.append(0); dst.append(state(k, left)); lab.append(int(table[left, p, 0]) + 1)
        if wb[k] < begin:  # phone k can already be running at `begin`
            src.append(0); dst.append(state(k, left)); lab.append(int(table[left, p, 1]) + 1)
    final_states = []
    while todo:
        k, left = todo.pop()
        s = index[(k, left)]
        p = int(phones[k])
        src.append(s); dst.append(s); lab.append(int(table[left, p, 1]) + 1)  # self-loop: pdf-class 1
        if k in last_set:
            final_states.append(s)
        for nk in successors(k):
            q = int(phones[nk])
            src.append(s); dst.append(state(nk, p)); lab.append(int(table[p, q, 0]) + 1)
    num_states = len(index) + 1
    final = np.full(num_states, NEG_INF)
    final[final_states] = 0.0
    fsa = Fsa(num_states, 0, np.array(src, np.int64), np.array(dst, np.int64), np.array(lab, np.int64),
              np.zeros(len(src)), final).connect()
    if fsa.num_states == 0:
        return fsa
    return _determinize_minimize(fsa)


def _determinize_minimize(fsa: Fsa) -> Fsa:
    import kaldifst

    f = kaldifst.determinize(fsa.to_kaldifst())
    kaldifst.minimize(f)
    out = Fsa.from_kaldifst(f)
    # the input had only zero weights: keep them exactly zero (no float noise)
    return Fsa(out.num_states, out.start, out.src, out.dst, out.label, np.zeros(out.num_arcs),
               np.where(out.final > NEG_INF, 0.0, NEG_INF))


def make_chunk_supervision(phones: np.ndarray, starts: np.ndarray, ends: np.ndarray, begin: int, end: int,
                           num_input_frames: int, pdf_map: PdfMap, normalizer: Normalizer,
                           frame_subsampling_factor: int = 3, left_tolerance: int = TOLERANCE,
                           right_tolerance: int = TOLERANCE, optional_silence: int | None = None) -> SupervisionResult:
    """Normalised unconstrained numerator of output frames [begin, end) of an aligned utterance
    (phone k on output frames [starts[k], ends[k])): :func:`phone_windows`,
    :func:`chunk_pdf_fsa`, then composition with the normalization FST."""
    T = end - begin
    wb, we = phone_windows(starts, ends, num_input_frames, frame_subsampling_factor, left_tolerance, right_tolerance)
    fsa = chunk_pdf_fsa(phones, wb, we, begin, end, pdf_map, optional_silence)
    if fsa.num_states == 0:
        return SupervisionResult(None, "no aligned phone in the chunk", T, -1)
    return _normalised(fsa, normalizer, T)
