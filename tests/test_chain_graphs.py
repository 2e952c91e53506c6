"""Tests for the flat-start chain graphs: lexicon/lang, topology, phone LM, den graph, numerators."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from ser.chain.chain_dir import ChainDir
from ser.chain.den_graph import DenGraph, create_den_fsa, initial_probs
from ser.chain.fsa import NEG_INF, Fsa
from ser.chain.graph import ChainGraph
from ser.chain.lang import Lang, prepare_dict, prepare_lang, text_to_phones
from ser.chain.phone_lm import estimate_phone_lm
from ser.chain.supervision import Normalizer, make_supervision, numerator_pdf_fsa
from ser.chain.topo import PdfMap, biphone_stats, expand_to_pdfs
from ser.io.datadir import DataDir

DIC = """<s> SIL
</s> SIL
<unk> NSN
a AH0
a(2) EY1
the DH AH
the(2) DH IY
cat K AE T
sat S AE T
dog D AO1 G
hen HH EH N
low L OW1
"""


# ------------------------------------------------------------------------------------------
# brute force helpers (independent of the code under test)
# ------------------------------------------------------------------------------------------
def language(fsa: Fsa, max_len: int, use_final: bool = True, init: np.ndarray | None = None) -> dict:
    """{label tuple: total probability} over all paths of length <= max_len (plain DFS).
    With ``init``: start anywhere with prob init[s]; use_final=False: every state final w.p. 1."""
    out: dict[tuple, float] = defaultdict(float)
    arcs = defaultdict(list)
    for s, d, l, w in zip(fsa.src.tolist(), fsa.dst.tolist(), fsa.label.tolist(), fsa.logp.tolist()):
        arcs[s].append((d, l, math.exp(w)))
    starts = [(fsa.start, 1.0)] if init is None else [(s, float(p)) for s, p in enumerate(init) if p > 0]

    def walk(s, string, w):
        fw = math.exp(fsa.final[s]) if use_final else 1.0
        if fw > 0:
            out[string] += w * fw
        if len(string) < max_len:
            for d, l, p in arcs[s]:
                walk(d, string + (l,), w * p)

    for s, w in starts:
        walk(s, (), w)
    return dict(out)


def pdf_strings(phone_seqs_w, pdf_map: PdfMap, max_len: int, self_loop: float = 1.0, leave: float = 1.0) -> dict:
    """All pdf strings (labels pdf+1) of the given weighted phone sequences, every phone
    1+ frames: first frame class 0, later frames class 1."""
    out: dict[tuple, float] = defaultdict(float)
    for seq, w in phone_seqs_w:
        n = len(seq)
        if n > max_len:
            continue
        for durs in itertools.product(range(1, max_len + 1), repeat=n):
            if sum(durs) > max_len:
                continue
            s, weight, left = [], w, 0
            for p, d in zip(seq, durs):
                s.append(pdf_map.pdf(left, p, 0) + 1)
                s.extend([pdf_map.pdf(left, p, 1) + 1] * (d - 1))
                weight *= self_loop ** (d - 1) * leave
                left = p
            out[tuple(s)] += weight
    return dict(out)


@pytest.fixture(scope="module")
def lang(tmp_path_factory) -> Lang:
    d = tmp_path_factory.mktemp("lang")
    (d / "dic").write_text(DIC)
    (d / "text").write_text("u1 the cat sat\nu2 hello dog\nu3 a qqzzx cat\n")
    prepare_dict(d / "dic", d / "dict", [d / "text"])
    return prepare_lang(d / "dict", "<unk>", d / "lang")


# ------------------------------------------------------------------------------------------
def test_prepare_dict_and_lang(lang, tmp_path_factory):
    d = Path(tmp_path_factory.getbasetemp()) / "lang0"
    lex = (d / "dict" / "lexicon.txt").read_text().split("\n")
    # hello comes from CMUdict (stress stripped); qqzzx has no pron; variants kept, markers removed
    assert [l for l in lex if l] == ["<unk> NSN", "a AH", "a EY", "cat K AE T", "dog D AO G", "hello HH AH L OW",
                                     "hello HH EH L OW", "hen HH EH N", "low L OW", "sat S AE T",
                                     "the DH AH", "the DH IY"]
    assert (d / "dict" / "silence_phones.txt").read_text() == "SIL\nNSN\n"
    assert (d / "dict" / "optional_silence.txt").read_text() == "SIL\n"
    assert (d / "dict" / "nonsilence_phones.txt").read_text().split() == sorted(
        ["AH", "EY", "DH", "IY", "K", "AE", "T", "S", "D", "AO", "G", "HH", "EH", "N", "L", "OW"])
    assert lang.phones[:3] == ["<eps>", "SIL", "NSN"]
    ph = lambda *xs: tuple(lang.phone_id[x] for x in xs)
    assert sorted(p for _, p in lang.prons("the")) == sorted([ph("DH", "AH"), ph("DH", "IY")])
    assert lang.prons("qqzzx") == [(1.0, ph("NSN"))]
    assert lang.align_pron("the") == ph("DH", "IY")  # last line of the sorted align lexicon
    topo = (d / "lang" / "topo").read_text()
    assert "<ForwardPdfClass> 0 <SelfLoopPdfClass> 1 <Transition> 0 0.5 <Transition> 1 0.5" in topo
    assert topo.split("<ForPhones>\n")[1].split("\n")[0].split() == [str(i) for i in range(1, lang.num_phones + 1)]


def test_text_to_phones_silprobs(lang):
    rng = random.Random(3)
    seqs = [text_to_phones(["the", "cat", "sat"], lang, rng, 0.8, 0.1) for _ in range(4000)]
    sil = lang.sil_id
    start = np.mean([s[0] == sil for s in seqs])
    end = np.mean([s[-1] == sil for s in seqs])
    between = np.mean([sum(p == sil for p in s[1:-1]) / 2 for s in seqs])
    assert abs(start - 0.8) < 0.03 and abs(end - 0.8) < 0.03 and abs(between - 0.1) < 0.02


# ------------------------------------------------------------------------------------------
def test_pdf_maps():
    sets = [[1], [2], [3], [4]]
    mono = PdfMap.mono(4, sets)
    assert mono.num_pdfs == 8 and mono.pdf(3, 2, 1) == 3 and mono.pdf(0, 4, 0) == 6
    full = PdfMap.biphone(4, sets)
    assert full.num_pdfs == 4 * 5 * 2
    ids = {(l, p, c): full.pdf(l, p, c) for l in range(5) for p in range(1, 5) for c in (0, 1)}
    assert len(set(ids.values())) == 40  # all distinct
    # tying: phone 1 seen often, biphone (2,1) rare -> mono pair of phone 1; phone 4 rare -> zerophone
    bi = np.zeros((5, 5), int)
    mo = np.zeros(5, int)
    bi[1:, 1:4] = 200
    bi[2, 1] = 5
    mo[1:4] = 500
    mo[4] = 3
    tied = PdfMap.biphone(4, sets, [], bi, mo, 100, 20)
    assert tied.pdf(2, 1, 0) not in (tied.pdf(3, 1, 0), tied.pdf(0, 1, 0))
    assert tied.pdf(2, 1, 1) == tied.pdf(2, 1, 0) + 1
    assert all(tied.pdf(l, 4, c) == tied.pdf(1, 4, c) for l in (2, 3, 4) for c in (0, 1))  # zerophone
    assert tied.pdf(0, 4, 0) != tied.pdf(1, 4, 0)  # no-left-context pair never tied
    # counted stats
    b, m = biphone_stats([[1, 2, 2], [2]], 4, sets)
    assert b[0, 1] == 1 and b[1, 2] == 1 and b[2, 2] == 1 and b[0, 2] == 1 and m[2] == 3


@pytest.mark.parametrize("kind", ["mono", "biphone"])
def test_expand_phone_acceptor_brute_force(kind):
    # phone acceptor: 1 (2|3) with weights 0.3 / 0.7, final 1
    fsa = Fsa(3, 0, [0, 1, 1], [1, 2, 2], [1, 2, 3], np.log([1.0, 0.3, 0.7]), [NEG_INF, NEG_INF, 0.0])
    pm = PdfMap.mono(3, [[1], [2], [3]]) if kind == "mono" else PdfMap.biphone(3, [[1], [2], [3]])
    got = language(expand_to_pdfs(fsa, pm, math.log(0.5), math.log(0.5)), 6)
    want = pdf_strings([((1, 2), 0.3), ((1, 3), 0.7)], pm, 6, self_loop=0.5, leave=0.5)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-9)


# ------------------------------------------------------------------------------------------
CORPUS = [[1, 2, 3], [1, 2, 3, 1], [2, 3, 1, 2], [1, 2, 1, 3], [3, 1, 2, 3], [2, 1]]


def _walk(lm: Fsa, seq):
    """log probs of each phone (and end) along the unique path of seq."""
    s, out = lm.start, []
    for p in seq:
        a = np.flatnonzero((lm.src == s) & (lm.label == p))
        assert len(a) == 1
        out.append(lm.logp[a[0]])
        s = int(lm.dst[a[0]])
    out.append(lm.final[s])
    return out


def _relative_counts(corpus, order):
    """Independent n-gram relative counts with one BOS (0): history = last order-1 of [0]+seq."""
    num, den = Counter(), Counter()
    for seq in corpus:
        h = (0,)
        for p in list(seq) + [0]:
            num[(h, p)] += 1
            den[h] += 1
            h = (h + (p,))[-(order - 1):]
    return lambda seq: [
        math.log(num[(h, p)] / den[h]) for h, p in
        _hist_pairs(seq, order)]


def _hist_pairs(seq, order):
    h = (0,)
    for p in list(seq) + [0]:
        yield h, p
        h = (h + (p,))[-(order - 1):]


def _check_stochastic(lm: Fsa):
    tot = np.exp(lm.final) + np.bincount(lm.src, weights=np.exp(lm.logp), minlength=lm.num_states)
    np.testing.assert_allclose(tot, 1.0, rtol=1e-12)


def test_phone_lm_unpruned_is_relative_counts():
    lm = estimate_phone_lm(CORPUS, ngram_order=4, no_prune_ngram_order=3, num_extra_lm_states=1000)
    _check_stochastic(lm)
    want = _relative_counts(CORPUS, 4)
    for seq in CORPUS:
        np.testing.assert_allclose(_walk(lm, seq), want(seq), rtol=1e-12)


def test_phone_lm_full_hard_backoff_is_trigram():
    lm = estimate_phone_lm(CORPUS, ngram_order=4, no_prune_ngram_order=3, num_extra_lm_states=0)
    _check_stochastic(lm)
    want = _relative_counts(CORPUS, 3)
    for seq in CORPUS:
        np.testing.assert_allclose(_walk(lm, seq), want(seq), rtol=1e-12)


def test_phone_lm_hard_backoff_worked_example():
    """Hand-derived run of Kaldi's greedy hard backoff (numbers written out below).

    Histories with counts: (0)[1:5,2:1,3:3] (0,1)[2:5] (0,1,2)[3:5] (1,2,3)[4:5] (2,3,4)[0:5]
    (0,2)[2:1] (0,2,2)[2:1] (2,2,2)[2:1,0:1] (0,3)[1:3] (0,3,1)[2:3] (3,1,2)[4:3] (1,2,4)[0:3];
    12 active states; 9 length-2 histories (incl. the empty backoff states (1,2) (2,3) (3,4)
    (2,2) (3,1) (2,4)); --num-extra-lm-states=2 -> target 11, reached only in the 4th phase.
    Backing off into an empty state costs -1e-15*count and does not reduce the state count,
    so (0,2,2), (1,2,4), (3,1,2), (0,3,1), (2,3,4), (1,2,3) move into their empty backoff
    states; (0,1,2) would now cost 5log(5/8)+3log(3/8) = -5.29 and (2,2,2) costs
    2log(2/3)+log(1/3)-2log(1/2) = -0.52, so (2,2,2) merges into (2,2) = [2:2, 0:1]: 11 states.
    """
    corpus = [[1, 2, 3, 4]] * 5 + [[2, 2, 2, 2]] + [[3, 1, 2, 4]] * 3
    lm = estimate_phone_lm(corpus, 4, 3, 2)
    assert lm.num_states == 11
    _check_stochastic(lm)
    L = math.log
    want = {
        (1, 2, 3, 4): [L(5 / 9), 0.0, 0.0, 0.0, 0.0],
        (2, 2, 2, 2): [L(1 / 9), 0.0, L(2 / 3), L(2 / 3), L(1 / 3)],
        (3, 1, 2, 4): [L(3 / 9), 0.0, 0.0, 0.0, 0.0],
    }
    for seq, w in want.items():
        np.testing.assert_allclose(_walk(lm, seq), w, rtol=1e-12, atol=1e-12)
    # with one more extra state nothing is pruned: the plain 4-gram relative counts
    full = estimate_phone_lm(corpus, 4, 3, 3)
    assert full.num_states == 12
    rel = _relative_counts(corpus, 4)
    for seq in want:
        np.testing.assert_allclose(_walk(full, seq), rel(seq), rtol=1e-12)


# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def den_setup(lang):
    rng = random.Random(0)
    texts = [["the", "cat", "sat"], ["a", "dog", "sat"], ["the", "dog"], ["a", "cat"], ["dog", "sat", "the", "cat"]]
    seqs = [text_to_phones(t, lang, rng, 0.8, 0.1) for t in texts * 10]
    lm = estimate_phone_lm(seqs, 4, 3, 4)
    bi, mo = biphone_stats(seqs, lang.num_phones, lang.sets)
    pm = PdfMap.biphone(lang.num_phones, lang.sets, [], bi, mo, 3, 2)
    return lm, pm


def test_den_graph_minimization_preserves_language(den_setup):
    lm, pm = den_setup
    raw = create_den_fsa(lm, pm, minimize=False)
    mini = create_den_fsa(lm, pm, minimize=True)
    assert mini.num_states <= raw.num_states + 1
    # raw = LM x HMM exactly: compare to the LM's phone language expanded by brute force
    k = 5
    phone_lang = language(lm, k)
    want = pdf_strings(list(phone_lang.items()), pm, k, self_loop=0.5, leave=0.5)
    got_raw = language(raw, k)
    assert got_raw.keys() == {s for s in want if len(s) <= k}
    for s in got_raw:
        assert got_raw[s] == pytest.approx(want[s], rel=1e-9)
    # pushing keeps path x final weights; MinimizeEncoded quantizes weights to 10*kDelta
    got_min = language(mini, k)
    assert got_min.keys() == got_raw.keys()
    for s in got_raw:
        assert abs(math.log(got_min[s] / got_raw[s])) < 0.0049 * (len(s) + 1) + 1e-6


def test_den_initial_probs_and_files(den_setup, tmp_path):
    import kaldifst

    lm, pm = den_setup
    den = DenGraph(create_den_fsa(lm, pm), pm.num_pdfs)
    f = den.fsa
    assert den.init.min() >= 0 and den.init.sum() == pytest.approx(1.0, abs=1e-9)
    # independent dense computation of the 100-iteration average
    S = f.num_states
    P = np.zeros((S, S))
    np.add.at(P, (f.src, f.dst), np.exp(f.logp))
    P /= (P.sum(1) + np.exp(f.final))[:, None]
    cur = np.eye(S)[f.start]
    avg = np.zeros(S)
    for _ in range(100):
        avg += cur / 100
        cur = cur @ P
        cur /= cur.sum()
    np.testing.assert_allclose(den.init, avg, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(initial_probs(f), avg, rtol=1e-9, atol=1e-15)
    # states sorted by decreasing in+out arc count
    n = np.bincount(f.src, minlength=S) + np.bincount(f.dst, minlength=S)
    assert (np.diff(n) <= 0).all()
    den.save(tmp_path)
    d = torch.load(tmp_path / "den.pt", weights_only=True)
    g = ChainGraph.from_state_dict(d)
    assert g.num_states == S and g.num_arcs == f.num_arcs and int(d["num_pdfs"]) == pm.num_pdfs
    assert torch.equal(g.pdf, torch.from_numpy(f.label - 1)) and (g.final == 0).all()
    torch.testing.assert_close(g.initial.exp().double(), torch.from_numpy(avg), rtol=1e-5, atol=1e-12)
    # den.fst.txt compiles with kaldifst to the same FST
    k = kaldifst.compile((tmp_path / "den.fst.txt").read_text(), acceptor=True, keep_state_numbering=True)
    assert k.num_states == S and k.start == f.start
    back = Fsa.from_kaldifst(k).sorted_arcs()
    fs = f.sorted_arcs()
    assert back.num_arcs == f.num_arcs
    np.testing.assert_array_equal(back.src, fs.src)
    np.testing.assert_array_equal(back.dst, fs.dst)
    np.testing.assert_array_equal(back.label, fs.label)
    np.testing.assert_allclose(back.logp, fs.logp, atol=1e-6)
    np.testing.assert_allclose(back.final, f.final, atol=1e-6)
    again = ChainDir.load(tmp_path).den_fst
    np.testing.assert_allclose(again.init, den.init)


# ------------------------------------------------------------------------------------------
def test_numerator_alternative_prons_brute_force(lang):
    pm = PdfMap.biphone(lang.num_phones, lang.sets)
    ph = lambda *xs: tuple(lang.phone_id[x] for x in xs)
    num = numerator_pdf_fsa(["the", "a"], lang, pm)
    k = 7
    seqs = []
    for pron_the, pron_a in itertools.product([ph("DH", "AH"), ph("DH", "IY")], [ph("AH"), ph("EY")]):
        for s0, s1, s2 in itertools.product([(), ph("SIL")], repeat=3):
            seqs.append((s0 + pron_the + s1 + pron_a + s2, 0.125))
    want = pdf_strings(seqs, pm, k)
    got = language(num, k)
    assert got.keys() == want.keys()
    for s in want:
        assert got[s] == pytest.approx(want[s], rel=1e-9)
    assert num.min_path_length() == 3


def test_numerator_normalised_le_den(lang, den_setup):
    lm, pm = den_setup
    den = DenGraph(create_den_fsa(lm, pm), pm.num_pdfs)
    norm = Normalizer(den)
    words = ["the", "cat"]
    res = make_supervision(words, 30, lang, pm, norm)
    assert res.reason == "" and res.num_output_frames == 10 and res.min_length == 5
    g = res.graph
    comp = Fsa(g.num_states, 0, g.src.numpy(), g.dst.numpy(), g.pdf.numpy() + 1, g.logp.double().numpy(),
               g.final.double().numpy())
    k = 7
    num_raw = language(numerator_pdf_fsa(words, lang, pm), k)
    got = language(comp, k)
    den_lang = language(den.fsa, k, use_final=False, init=den.init)
    assert got and set(got) <= set(num_raw)
    for s, w in got.items():
        # composition = num weight x normalization weight, and <= the den weight
        assert w == pytest.approx(num_raw[s] * den_lang[s], rel=1e-4)
        assert w <= den_lang[s] * (1 + 1e-6)
    for s in set(num_raw) - set(got):
        assert s not in den_lang  # only den-impossible strings are dropped
    # too short: 12 frames -> 4 output frames < 5 phones
    short = make_supervision(words, 12, lang, pm, norm)
    assert short.graph is None and short.reason == "too short"
    assert make_supervision(words, 13, lang, pm, norm).graph is not None


def test_prepare_e2e_resumed_after_den_graph(lang, tmp_path, tmp_path_factory):
    """Killed after den.pt, before num.pt: the re-run reuses den.pt and must write the numerators of an
    uninterrupted run (they were normalised with the in-memory float64 den graph, the reused den.pt has
    float32 weights: 1 ulp apart)."""
    from ser.bin.prepare_e2e import main

    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "a", "dog", "hello"]
    utts = {f"s{i % 4}-u{i:02d}": " ".join(rng.choice(words, rng.integers(1, 6))) for i in range(60)}
    data = tmp_path / "data"
    DataDir(utt2spk={u: u.split("-")[0] for u in utts}, text=utts,
            extras={"utt2num_frames": {u: "120" for u in utts}}).write(data)
    out = tmp_path / "e2e"
    args = ["--num-extra-lm-states", "20", "--min-biphone-count", "2", "--min-monophone-count", "1",
            str(data), str(Path(tmp_path_factory.getbasetemp()) / "lang0" / "lang"), str(out)]
    assert main(args) == 0
    want = torch.load(out / "num.pt", weights_only=True)["graphs"]
    (out / "num.pt").unlink()
    assert main(args) == 0
    got = torch.load(out / "num.pt", weights_only=True)["graphs"]
    assert sorted(got) == sorted(want)
    for u, g in want.items():
        for k, v in g.items():
            assert torch.equal(v, got[u][k]) if isinstance(v, torch.Tensor) else v == got[u][k], (u, k)


def test_prepare_e2e_cli(lang, tmp_path, tmp_path_factory):
    from ser.bin.prepare_e2e import main

    lang_dir = Path(tmp_path_factory.getbasetemp()) / "lang0" / "lang"
    data = tmp_path / "data"
    data.mkdir()
    texts = {"u1": "the cat sat", "u2": "a dog sat", "u3": "the dog", "u4": "a cat", "u5": "dog sat the cat"}
    utts = {f"{u}-{i}": t for i in range(8) for u, t in texts.items()}
    (data / "text").write_text("".join(f"{u} {t}\n" for u, t in sorted(utts.items())))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)))
    (data / "spk2utt").write_text("".join(f"{s} " + " ".join(sorted(u for u in utts if u.startswith(s + "-"))) + "\n"
                                          for s in sorted(texts)))
    frames = {u: (9 if u == "u5-0" else 90) for u in utts}
    (data / "utt2num_frames").write_text("".join(f"{u} {n}\n" for u, n in sorted(frames.items())))
    out = tmp_path / "e2e"
    args = ["--type", "biphone", "--min-biphone-count", "3", "--min-monophone-count", "2",
            "--num-extra-lm-states", "5", str(data), str(lang_dir), str(out)]
    assert main(args) == 0
    num = torch.load(out / "num.pt", weights_only=True)
    assert set(num["graphs"]) == set(utts) - {"u5-0"}
    assert (out / "skipped.txt").read_text().startswith("u5-0 too short")
    g = ChainGraph.from_state_dict(num["graphs"]["u1-0"])
    assert num["num_output_frames"]["u1-0"] == 30 and g.num_arcs > 0
    den = torch.load(out / "den.pt", weights_only=True)
    assert int((out / "num_pdfs").read_text()) == int(den["num_pdfs"])
    assert int(den["pdf"].max()) < int(den["num_pdfs"]) and int(g.pdf.max()) < int(den["num_pdfs"])
    mtime = (out / "num.pt").stat().st_mtime_ns
    assert main(args) == 0  # cached
    assert (out / "num.pt").stat().st_mtime_ns == mtime
    # the objective on this real supervision is <= 0 for every sequence, whatever the network says
    from ser.chain.objective import LFMMILoss
    chain = ChainDir.load(out)
    den_graph, num_pdfs = chain.den_graph, chain.num_pdfs
    assert set(chain.num_graphs.graphs) == set(num["graphs"])
    loss = LFMMILoss(den_graph, xent_regularize=0.0)
    gen = torch.Generator().manual_seed(0)
    for u in ("u1-0", "u2-3", "u5-1"):
        graph = ChainGraph.from_state_dict(num["graphs"][u])
        for scale in (0.0, 1.0, 4.0):
            y = scale * torch.randn(1, num["num_output_frames"][u], num_pdfs, generator=gen)
            _, info = loss(y, [graph])
            assert info.ok and info.objf <= 1e-4, (u, scale, info.objf)
