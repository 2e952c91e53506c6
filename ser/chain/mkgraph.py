"""Word decoding graph HCLG for the chain model (Kaldi utils/mkgraph.sh --self-loop-scale 1.0).

Built with kaldilm (arpa2fst: ARPA -> G.fst, Kaldi's own code) and kaldifst (OpenFst's Compose /
DeterminizeStar / MinimizeEncoded / ArcSort, Kaldi's ComposeContext): the same library calls
mkgraph.sh makes through the Kaldi binaries, so no FST algorithm is re-implemented here.

1. G: ``arpa2fst --disambig-symbol=#0 --read-symbol-table=words.txt`` (n-grams with words outside
   words.txt are skipped, as arpa2fst does);
2. L_disambig: utils/lang/make_lexicon_fst.py with ``--sil-prob`` (optional silence after each word
   and at the start), disambiguation symbols #1.. on homophones and prefixes
   (utils/add_lex_disambig.pl) and the #0 self-loops of prepare_lang.sh (fstaddselfloops);
3. LG = MinimizeEncoded(DeterminizeStar_log(L_disambig o G));
4. CLG = ComposeContext(context width 2, central position 1): the left biphone of the chain tree;
5. H: each context window (left, phone) -> the pdf of its first frame (pdf-class 0), each
   disambiguation window -> a disambiguation input symbol; HCLGa = MinimizeEncoded(
   DeterminizeStar_log(H o CLG)) with the disambiguation symbols then removed (fstrmsymbols, as a
   composition with a one-state FST that maps them to epsilon);
6. self-loops (AddSelfLoops, reorder, self-loop-scale 1.0): states are split until all their
   incoming arcs carry the same input label (MakePrecedingInputSymbolsSame), then each state entered
   by the first frame of a phone gets a self-loop with that phone's pdf-class-1 pdf.

Input labels of HCLG are pdf-id + 1 (0 = epsilon), output labels word ids of words.txt.
Deviations from Kaldi: input labels are pdf-ids + 1, not transition-ids (the chain topology has
one pdf per transition and no phone alignments are read back from lattices); the transition
log-probs log 0.5 of the chain topology are charged on every forward arc and self-loop (Kaldi
charges the same per frame, so every path of T frames carries T log 0.5); no fstpushspecial
(kaldifst has none; it changes no path weight); the lexicon is position-independent (the lang's).
"""

from __future__ import annotations

import logging
import gzip
import math
import shutil
import struct
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.chain.lang import Lang
from ser.chain.topo import PdfMap

log = logging.getLogger(__name__)

__all__ = ["Fst", "lexicon_fst", "make_g", "make_hclg", "add_self_loops"]


@dataclass
class Fst:
    """A transducer as arrays (tropical costs), convertible to/from kaldifst."""

    num_states: int
    start: int
    src: np.ndarray
    dst: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    cost: np.ndarray
    final: np.ndarray  # cost, inf = not final

    def to_kaldifst(self):
        import kaldifst

        if self.num_states == 0:
            raise ValueError("Fst.to_kaldifst: no states")
        o = np.argsort(self.src != self.start, kind="stable")  # fstcompile: the first line's state starts
        lines = [f"{s} {d} {i} {l} {c!r}" for s, d, i, l, c in
                 zip(self.src[o].tolist(), self.dst[o].tolist(), self.ilabel[o].tolist(), self.olabel[o].tolist(),
                     self.cost[o].tolist())]
        fin = [s for s in np.flatnonzero(np.isfinite(self.final)).tolist()]
        if not len(o) or self.src[o[0]] != self.start:
            if self.start not in fin:
                raise ValueError("Fst.to_kaldifst: the start state has no arc and is not final")
            fin.remove(self.start)
            fin.insert(0, self.start)
        lines += [f"{s} {float(self.final[s])!r}" for s in fin]
        f = kaldifst.compile("\n".join(lines) + "\n", keep_state_numbering=True)
        return f

    @classmethod
    def from_kaldifst(cls, f) -> "Fst":
        if f.num_states == 0:
            raise ValueError("empty FST (no successful path)")
        S, start, final, src, dst, il, ol, w = read_vector_fst(f, 1)
        return cls(S, start, src, dst, il, ol, w[:, 0], final[:, 0])


def read_vector_fst(f, num_weights: int):
    """The arrays of a kaldifst VectorFst (StdArc: ``num_weights`` 1; Kaldi's LatticeArc: 2) via OpenFst's
    binary file: header, then per state its final weight (float32 x num_weights), arc count (int64) and
    arcs (ilabel int32, olabel int32, weight float32 x num_weights, nextstate int32).  Returns
    (num_states, start, final [S, W], src, dst, ilabel, olabel, weight [A, W]); float weights as float64."""
    with tempfile.TemporaryDirectory() as t:
        f.write(f"{t}/f.fst")
        buf = np.fromfile(f"{t}/f.fst", dtype=np.uint8)
    raw = buf.tobytes()
    pos = 4
    for _ in range(2):  # fst type, arc type
        n = struct.unpack_from("<i", raw, pos)[0]
        pos += 4 + n
    _, flags = struct.unpack_from("<ii", raw, pos)
    pos += 8 + 8  # version, flags, properties
    start, S, _ = struct.unpack_from("<qqq", raw, pos)
    pos += 24
    if flags & 3 or raw[4:14] != b"\x06\x00\x00\x00vector":
        raise ValueError("read_vector_fst: a vector FST without symbol tables expected")
    fw, rec_len = 4 * num_weights, 12 + 4 * num_weights
    final = np.empty((S, num_weights), dtype=np.float32)
    nar = np.empty(S, dtype=np.int64)
    first = np.empty(S, dtype=np.int64)
    unpack = struct.Struct(f"<{num_weights}fq").unpack_from
    for s in range(S):
        *final[s], nar[s] = unpack(raw, pos)
        first[s] = pos + fw + 8
        pos = int(first[s]) + rec_len * int(nar[s])
    A = int(nar.sum())
    offs = np.repeat(first, nar) + rec_len * (np.arange(A) - np.repeat(np.cumsum(nar) - nar, nar))
    rec = buf[offs[:, None] + np.arange(rec_len)].reshape(A, rec_len).copy()
    ints, flts = rec.view("<i4"), rec.view("<f4")
    src = np.repeat(np.arange(S, dtype=np.int64), nar)
    return (int(S), int(start), final.astype(np.float64), src, ints[:, -1].astype(np.int64),
            ints[:, 0].astype(np.int64), ints[:, 1].astype(np.int64), flts[:, 2:2 + num_weights].astype(np.float64))


# ------------------------------------------------------------------------------------------
# G and L


def read_symbols(path: str | Path) -> dict[str, int]:
    out = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        t = line.split()
        if len(t) != 2:
            raise ValueError(f"{path}:{n}: expected '<symbol> <id>', got {line!r}")
        out[t[0]] = int(t[1])
    return out


def make_g(arpa: str | Path, words_txt: str | Path):
    """G.fst of an ARPA file (kaldilm's arpa2fst, Kaldi's code), as a kaldifst StdVectorFst."""
    import kaldifst
    import kaldilm

    if not Path(arpa).is_file():
        raise ValueError(f"{arpa}: no such ARPA file")
    with tempfile.TemporaryDirectory() as t:
        plain = str(arpa)
        if plain.endswith(".gz"):  # kaldilm reads plain files only (Kaldi's arpa2fst: "gunzip -c |")
            plain = f"{t}/lm.arpa"
            with gzip.open(arpa, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
        text = kaldilm.arpa2fst(plain, "", disambig_symbol="#0", read_symbol_table=str(words_txt),
                                max_arpa_warnings=0)
    if not text.strip():
        raise ValueError(f"{arpa}: arpa2fst made an empty G (no n-gram of words in {words_txt}?)")
    return kaldifst.compile(text)


Entry = tuple[str, float, tuple[int, ...]]  # word, pronunciation probability, phone ids


def lexicon_disambig(lexicon: list[Entry]) -> tuple[list[tuple[str, float, tuple[int, ...], int]], int]:
    """utils/add_lex_disambig.pl: (word, prob, phones, k) with #k appended when k > 0 (a pronunciation
    shared by several words or a proper prefix of another); returns the entries and the largest k."""
    count = Counter(p for _, _, p in lexicon)
    prefixes = {p[:i] for _, _, p in lexicon for i in range(1, len(p))}
    used: Counter = Counter()
    out, kmax = [], 0
    for w, prob, p in lexicon:
        k = 0
        if p in prefixes or count[p] > 1:
            used[p] += 1
            k = used[p]
        kmax = max(kmax, k)
        out.append((w, prob, p, k))
    return out, kmax


def lexicon_fst(lang: Lang, word_id: dict[str, int], disambig_base: int) -> tuple[Fst, int]:
    """L_disambig (make_lexicon_fst.py --sil-prob): phone ids in, word ids out; disambiguation symbol
    #k is phone id ``disambig_base + k``.  Returns the FST and the number of #k symbols (with #0)."""
    lex = [(w, prob, pr) for w in sorted(lang.lexicon, key=lambda s: s.encode()) for prob, pr in lang.lexicon[w]
           if w in word_id]
    entries, kmax = lexicon_disambig(lex)
    p = lang.sil_prob
    sil = lang.sil_id
    src, dst, il, ol, cost = [], [], [], [], []

    def arc(s, d, i, o, c=0.0):
        src.append(s); dst.append(d); il.append(i); ol.append(o); cost.append(c)

    start, loop, sil_state = 0, 1, 2
    n = 3
    no_sil_cost, sil_cost = -math.log(1.0 - p), -math.log(p)
    arc(start, loop, 0, 0, no_sil_cost)
    arc(start, sil_state, 0, 0, sil_cost)
    arc(sil_state, loop, sil, 0)
    for w, prob, pron, k in entries:
        phones = list(pron) + ([disambig_base + k] if k else [])
        pron_cost = -math.log(prob) if prob > 0 else 0.0
        s = loop
        for j, ph in enumerate(phones[:-1]):
            arc(s, n, ph, word_id[w] if j == 0 else 0, pron_cost if j == 0 else 0.0)
            s = n
            n += 1
        last, o, c0 = phones[-1], (word_id[w] if len(phones) == 1 else 0), (pron_cost if len(phones) == 1 else 0.0)
        arc(s, loop, last, o, c0 + no_sil_cost)
        arc(s, sil_state, last, o, c0 + sil_cost)
    final = np.full(n, np.inf)
    final[loop] = 0.0
    L = Fst(n, start, *(np.array(x, dtype=np.int64) for x in (src, dst, il, ol)), np.array(cost), final)
    return L, kmax + 1


# ------------------------------------------------------------------------------------------
# H and self-loops


def h_transducer(ilabels: list[list[int]], pdf_map: PdfMap, disambig_in: dict[int, int]) -> Fst:
    """One-state H without self-loops: window index i -> pdf(left, phone, 0) + 1, cost -log 0.5
    (the forward transition); disambiguation windows [-d] -> ``disambig_in[d]``."""
    src, il, ol, cost = [], [], [], []
    for i, win in enumerate(ilabels):
        if not win:
            continue
        if len(win) == 1 and win[0] < 0:
            il.append(disambig_in[-win[0]]); ol.append(i); cost.append(0.0)
        elif len(win) == 2 and win[1] > 0:
            il.append(pdf_map.pdf(win[0], win[1], 0) + 1); ol.append(i); cost.append(-math.log(0.5))
        else:
            raise ValueError(f"H: unexpected context window {win} (left biphone expected)")
        src.append(0)
    z = np.zeros(len(src), dtype=np.int64)
    return Fst(1, 0, z, z, np.array(il, np.int64), np.array(ol, np.int64), np.array(cost), np.zeros(1))


def make_preceding_same(f: Fst) -> Fst:
    """fst::MakePrecedingInputSymbolsSame: split states so that all arcs entering one state carry
    the same input label (the start state counts as entered by epsilon)."""
    S = f.num_states
    first_label = np.full(S, -1, dtype=np.int64)
    entered, first = np.unique(f.dst, return_index=True)
    first_label[entered] = f.ilabel[first]  # the label of the first arc into each state
    first_label[f.start] = 0
    other = f.ilabel != first_label[f.dst]
    if not other.any():
        return f
    pairs, inv = np.unique(np.stack([f.dst[other], f.ilabel[other]], 1), axis=0, return_inverse=True)
    new_dst = f.dst.copy()
    new_dst[other] = S + inv.reshape(-1)  # one copy per (state, other label)
    orig = np.concatenate([np.arange(S), pairs[:, 0]])  # new state -> the state it copies
    # every copy gets the original's outgoing arcs and final cost
    order = np.argsort(f.src, kind="stable")
    starts = np.searchsorted(f.src[order], np.arange(S + 1))
    idx = [order[starts[o]:starts[o + 1]] for o in orig.tolist()]
    src = np.concatenate([np.full(len(ix), s, np.int64) for s, ix in enumerate(idx)])
    cat = np.concatenate(idx)
    return Fst(len(orig), f.start, src, new_dst[cat], f.ilabel[cat], f.olabel[cat], f.cost[cat], f.final[orig])


def add_self_loops(f: Fst, num_pdfs: int, self_loop_cost: float = -math.log(0.5)) -> Fst:
    """AddSelfLoops (reorder, self-loop-scale 1): a state entered by the first-frame pdf p
    (pdf-class 0; labels pdf + 1) gets a self-loop with the phone's pdf-class-1 pdf, p + 1 (the
    chain pdf maps number each phone's pdf pair consecutively)."""
    f = make_preceding_same(f)
    entering = np.zeros(f.num_states, dtype=np.int64)
    entering[f.dst] = f.ilabel
    states = np.flatnonzero(entering > 0)
    lab = entering[states] + 1  # (pdf0 + 1) + 1 = pdf1 + 1
    if (lab > num_pdfs).any():
        raise ValueError("add_self_loops: a first-frame pdf has no pdf-class-1 partner")
    n = len(states)
    return Fst(f.num_states, f.start, np.concatenate([f.src, states]), np.concatenate([f.dst, states]),
               np.concatenate([f.ilabel, lab]), np.concatenate([f.olabel, np.zeros(n, np.int64)]),
               np.concatenate([f.cost, np.full(n, self_loop_cost)]), f.final)


def check_pdf_pairs(pdf_map: PdfMap) -> None:
    """add_self_loops relies on pdf(l, p, 1) == pdf(l, p, 0) + 1 (ser.chain.topo numbering); the graph's
    input labels are pdfs, so two central phones sharing a pdf (gmm-init-biphone --tie backing rare
    phones off to one shared pdf) would make H o CLG non-functional (Kaldi's transition-ids keep the
    phones apart): refused in one line instead of OpenFst's "not determinizable"."""
    t = pdf_map.table[:, 1:, :]
    if not np.array_equal(t[..., 1], t[..., 0] + 1):
        raise ValueError("mkgraph: the pdf map does not pair each first-frame pdf with the next pdf id")
    owner: dict[int, int] = {}
    for p in range(t.shape[1]):
        for pdf in np.unique(t[:, p, 0]).tolist():
            if owner.setdefault(pdf, p) != p:
                raise ValueError(f"mkgraph: pdf {pdf} is shared by phones {owner[pdf] + 1} and {p + 1} (the pdf map "
                                 "tied rare phones together); a graph over pdf labels cannot tell their words apart: "
                                 "word decoding needs a pdf map that gives every phone its own pdfs (more data, "
                                 "or prepare_e2e.sh --type mono)")


# ------------------------------------------------------------------------------------------


def make_hclg(lang: Lang, words_txt: str | Path, g, pdf_map: PdfMap) -> tuple[object, dict]:
    """HCLG (kaldifst StdVectorFst, ilabels pdf + 1, olabels words) and sizes of the stages."""
    import kaldifst

    check_pdf_pairs(pdf_map)
    word_id = read_symbols(words_txt)
    if "#0" not in word_id:
        raise ValueError(f"{words_txt}: no #0 (not a lang's words.txt)")
    P = lang.num_phones
    L, ndis = lexicon_fst(lang, word_id, disambig_base=P + 1)
    Lk = L.to_kaldifst()
    kaldifst.add_self_loops(Lk, [P + 1], [word_id["#0"]])  # prepare_lang.sh's #0:#0 loops
    kaldifst.arcsort(Lk, sort_type="olabel")
    kaldifst.arcsort(g, sort_type="ilabel")
    LG = kaldifst.compose(Lk, g)
    kaldifst.determinize_star(LG, use_log=True)
    kaldifst.minimize_encoded(LG)
    sizes = {"L": Lk.num_states, "LG": LG.num_states}
    disambig = list(range(P + 1, P + 1 + ndis))
    CLG, ilabels = kaldifst.compose_context(disambig, 2, 1, LG)
    sizes["CLG"] = CLG.num_states
    base = pdf_map.num_pdfs + 1  # disambiguation input symbols of H: after every pdf label
    H = h_transducer(ilabels, pdf_map, {d: base + k for k, d in enumerate(disambig)}).to_kaldifst()
    kaldifst.arcsort(H, sort_type="olabel")
    kaldifst.arcsort(CLG, sort_type="ilabel")
    HCLGa = kaldifst.compose(H, CLG)
    kaldifst.determinize_star(HCLGa, use_log=True)
    # fstrmsymbols: R o HCLGa with R = p:p for each pdf label and <eps>:#k for each disambiguation symbol
    n_dis = len(disambig)
    labels = np.concatenate([np.arange(1, base), np.arange(base, base + n_dis)])
    z = np.zeros(len(labels), dtype=np.int64)
    R = Fst(1, 0, z, z, np.where(labels >= base, 0, labels), labels, np.zeros(len(labels)), np.zeros(1)).to_kaldifst()
    kaldifst.arcsort(R, sort_type="olabel")
    kaldifst.arcsort(HCLGa, sort_type="ilabel")
    g2 = kaldifst.compose(R, HCLGa)
    kaldifst.rmepsilon(g2)  # Kaldi's fstrmepslocal: the removed symbols' arcs
    kaldifst.minimize_encoded(g2)
    f = add_self_loops(Fst.from_kaldifst(g2), pdf_map.num_pdfs)
    hclg = f.to_kaldifst()
    kaldifst.arcsort(hclg, sort_type="ilabel")
    sizes["HCLG"] = hclg.num_states
    return hclg, sizes
