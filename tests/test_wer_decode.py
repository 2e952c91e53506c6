"""Word decoding (issue #25): the Kneser-Ney ARPA writer, HCLG construction, the lattice decoder and
LM-weight search against brute force, the WER scorer against kaldialign, stm references."""

from __future__ import annotations

import itertools
import math
import random
import tempfile
from pathlib import Path

import kaldi_decoder as kd
import kaldialign
import kaldifst
import numpy as np
import pytest

from ser.chain.decode_wer import Lattice, LmRescorer, best_paths, job_utts, read_stm_refs
from ser.chain.lang import Lang
from ser.chain.topo import PdfMap
from ser.chain.word_lm import BOS, EOS, UNK, arpa_prob, best_sentences, read_arpa, train_kneser_ney
from ser.eval.error_rate import ErrorCounts


# ------------------------------------------------------------------------------------------
# word LM


@pytest.mark.parametrize("order,min_counts", [(2, ()), (3, ()), (3, (1, 2)), (4, (2, 2, 3))])
def test_kneser_ney_arpa_is_normalised(tmp_path, order, min_counts):
    rng = random.Random(order)
    vocab = [f"w{i}" for i in range(9)]
    sents = [[rng.choice(vocab[:7]) for _ in range(rng.randint(0, 7))] for _ in range(60)] + [["oov", "w1"]]
    lm = train_kneser_ney(sents, order, vocab, min_counts)
    lm.write(tmp_path / "lm.arpa.gz")
    back = read_arpa(tmp_path / "lm.arpa.gz")
    assert back.order == order and set(back.vocab()) == set(vocab) | {BOS, EOS, UNK}
    predicted = vocab + [EOS, UNK]
    histories = [()] + [g for n in range(1, order) for g in back.ngrams[n]]
    for h in histories:  # every history, and unseen ones through backoff
        assert sum(10 ** arpa_prob(back, h, w) for w in predicted) == pytest.approx(1.0, abs=1e-4)
    assert sum(10 ** arpa_prob(back, ("w8", "w8"), w) for w in predicted) == pytest.approx(1.0, abs=1e-4)
    assert arpa_prob(back, (), BOS) == -99
    if min_counts:  # the cut-offs pruned something, yet every kept n-gram's history is there
        assert len(back.ngrams[order]) < len(train_kneser_ney(sents, order, vocab).ngrams[order])
        for n in range(2, order + 1):
            assert all(g[:-1] in back.ngrams[n - 1] for g in back.ngrams[n])


def test_lm_best_sentences_equal_brute_force():
    rng = random.Random(1)
    vocab = ["a", "b", "c", "d"]
    sents = [[rng.choice(vocab) for _ in range(rng.randint(1, 5))] for _ in range(30)]
    lm = train_kneser_ney(sents, 3, vocab)
    got = best_sentences(lm, [1, 2, 3, 4], beam=1000, top_unigrams=10)

    def logp(ws):
        h, tot = (BOS,), 0.0
        for w in ws + [EOS]:
            tot += arpa_prob(lm, h, w)
            h = (h + (w,))[-2:]
        return tot

    for n in (1, 2, 3, 4):
        best = max(logp(list(ws)) for ws in itertools.product(vocab, repeat=n))
        assert len(got[n]) == n and logp(got[n]) == pytest.approx(best)


def test_kneser_ney_bad_options():
    with pytest.raises(ValueError, match="cut-offs"):
        train_kneser_ney([["a"]], 3, ["a"], (1,))
    with pytest.raises(ValueError, match="no training sentences"):
        train_kneser_ney([], 2, ["a"])


# ------------------------------------------------------------------------------------------
# WER scorer


def test_wer_scorer_equals_kaldialign():
    rng = random.Random(0)
    words = "a b c d e f".split()
    tot, ref_len = 0, 0
    e = ErrorCounts("WER")
    for _ in range(300):
        ref = [rng.choice(words) for _ in range(rng.randint(0, 9))]
        hyp = [rng.choice(words) for _ in range(rng.randint(0, 9))]
        errs, _, _, _ = e.add(ref, hyp)
        assert errs == kaldialign.edit_distance(ref, hyp)["total"]
        tot += errs
        ref_len += len(ref)
    assert e.errors == tot and e.ref_len == ref_len
    assert e.ins + e.dels + e.subs == e.errors


# ------------------------------------------------------------------------------------------
# decoder and LM-weight search on a tiny graph, against brute force


def _tiny_graph():
    """States 0..3; ilabels 1..3 (pdf + 1), words 1..3, epsilon arcs; state 3 final."""
    arcs = [(0, 1, 1, 1, 0.3), (0, 2, 2, 2, 1.2), (1, 1, 3, 0, 0.7), (1, 2, 0, 3, 0.4), (2, 2, 2, 0, 0.2),
            (2, 3, 1, 0, 0.5), (2, 1, 3, 1, 0.9), (3, 3, 3, 0, 0.1), (1, 3, 2, 2, 1.5), (0, 3, 0, 3, 2.0)]
    final = {3: 0.25, 1: 1.0}
    text = "".join(f"{s} {d} {i} {o} {w}\n" for s, d, i, o, w in arcs) + "".join(f"{s} {w}\n" for s, w in final.items())
    return arcs, final, kaldifst.compile(text)


def _brute_force(arcs, final, loglik, lmwt=1.0, wip=0.0, lm_delta=None):
    """min over every path with exactly T emitting arcs of lmwt * (graph + wip * #words) + acoustic
    (+ lmwt * lm_delta(words) when given: a rescoring LM's change of the path's graph cost)."""
    T = loglik.shape[0]
    best = (math.inf, None)

    def walk(s, t, cost, words, depth):
        nonlocal best
        if depth > 3 * T + 3:
            return
        if t == T and s in final:
            c = cost + lmwt * final[s] + (lmwt * lm_delta(words) if lm_delta else 0.0)
            if c < best[0] - 1e-9:
                best = (c, tuple(words))
        for a, b, i, o, w in arcs:
            if a != s:
                continue
            if i and t == T:
                continue
            ac = -loglik[t, i - 1] if i else 0.0
            walk(b, t + (1 if i else 0), cost + lmwt * (w + (wip if o else 0.0)) + ac, words + ([o] if o else []),
                 depth + 1)

    walk(0, 0, 0.0, [], 0)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_lattice_decoder_best_path_equals_brute_force(seed):
    arcs, final, fst = _tiny_graph()
    rng = np.random.default_rng(seed)
    loglik = np.log(rng.dirichlet(np.ones(3), size=5)).astype(np.float32)
    dec = kd.LatticeSimpleDecoder(fst, kd.LatticeSimpleDecoderConfig(beam=50, lattice_beam=50))
    dec.decode(kd.DecodableCtc(loglik))
    ok, raw = dec.get_raw_lattice()
    assert ok
    lat = Lattice.from_kaldi(raw)
    lmwts, wips = [1.0, 2.0, 7.0], [0.0, 0.5, 1.0]
    paths = best_paths(lat, lmwts, wips)
    for i, lm in enumerate(lmwts):
        for j, wip in enumerate(wips):
            cost, words = _brute_force(arcs, final, loglik, lm, wip)
            assert tuple(paths[i][j]) == words, (lm, wip)
    # the decoder's own one-best agrees (lmwt 1, wip 0)
    ok, bp = dec.get_best_path()
    _, _, olabels, _ = kaldifst.get_linear_symbol_sequence(bp)
    assert tuple(olabels) == _brute_force(arcs, final, loglik)[1]
    # LM rescoring: the first-pass LM's word costs replaced by another's, against brute force
    syms = {1: "x", 2: "y", 3: "z"}
    sents_old = [["x", "y"], ["z"], ["x", "z", "y"], ["y", "y"]]
    sents_new = [["z", "z", "x"], ["y", "x"], ["z", "y", "z", "z"]]
    with tempfile.TemporaryDirectory() as t:
        train_kneser_ney(sents_old, 2, syms.values()).write(Path(t) / "old.arpa")
        train_kneser_ney(sents_new, 3, syms.values()).write(Path(t) / "new.arpa")
        r = LmRescorer(Path(t) / "old.arpa", Path(t) / "new.arpa", syms)

    def delta(words):
        ws, h, tot = [syms[w] for w in words] + [EOS], (BOS,), 0.0
        for w in ws:
            tot += r.delta(h, w)
            h = (h + (w,))[-2:]
        return tot

    resc = best_paths(r.rescore(lat), lmwts, wips)
    for i, lm in enumerate(lmwts):
        for j, wip in enumerate(wips):
            assert tuple(resc[i][j]) == _brute_force(arcs, final, loglik, lm, wip, delta)[1], (lm, wip)
    # and the lattice round-trips through its saved form
    again = best_paths(Lattice.from_state_dict(lat.state_dict()), lmwts, wips)
    assert again == paths


# ------------------------------------------------------------------------------------------
# HCLG of a tiny lang: decoding a sentence's own pdf sequence gives back the sentence


def _tiny_lang(tmp_path):
    phones = ["<eps>", "SIL", "NSN", "AA", "B", "K"]
    pid = {p: i for i, p in enumerate(phones)}
    lex = {"ab": [("AA", "B")], "ba": [("B", "AA")], "a": [("AA",)], "cab": [("K", "AA", "B")],
           "cob": [("K", "AA", "B")], UNK: [("NSN",)]}
    lexicon = {w: [(1.0, tuple(pid[p] for p in pr)) for pr in prs] for w, prs in lex.items()}
    lang = Lang(phones, ["SIL", "NSN"], ["AA", "B", "K"], "SIL", UNK, 0.5, lexicon)
    words = ["<eps>"] + sorted(lex, key=lambda s: s.encode()) + ["#0", BOS, EOS]
    (tmp_path / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(words)))
    return lang, {w: i for i, w in enumerate(words)}


def test_hclg_decodes_a_sentence_from_its_pdfs(tmp_path):
    from ser.chain.mkgraph import make_g, make_hclg

    lang, wid = _tiny_lang(tmp_path)
    sents = [["ab", "a"], ["ba", "cab"], ["cob", "a", "ab"], ["a"], ["cab", "ba", "a"]] * 3
    train_kneser_ney(sents, 2, [w for w in wid if w not in ("<eps>", "#0")]).write(tmp_path / "lm.arpa")
    pm = PdfMap.biphone(lang.num_phones, lang.sets, [lang.phone_id[p] for p in lang.silence])
    g = make_g(tmp_path / "lm.arpa", tmp_path / "words.txt")
    hclg, _ = make_hclg(lang, tmp_path / "words.txt", g, pm)
    hclg.write(str(tmp_path / "HCLG.fst"))
    hclg = kaldifst.StdVectorFst.read(str(tmp_path / "HCLG.fst"))
    for sent in (["cob", "a", "ab"], ["ba", "a"], ["a", "a"]):
        phones = [lang.sil_id] + [p for w in sent for p in lang.lexicon[w][0][1]]
        pdfs, left = [], 0
        for p in phones:  # three frames a phone: pdf-class 0, then two self-loops of class 1
            pdfs += [pm.pdf(left, p, 0), pm.pdf(left, p, 1), pm.pdf(left, p, 1)]
            left = p if p not in (lang.sil_id, lang.phone_id["NSN"]) else 0
        loglik = np.full((len(pdfs), pm.num_pdfs), -8.0, dtype=np.float32)
        loglik[np.arange(len(pdfs)), pdfs] = 0.0
        dec = kd.LatticeSimpleDecoder(hclg, kd.LatticeSimpleDecoderConfig(beam=30, lattice_beam=10))
        dec.decode(kd.DecodableCtc(loglik))
        ok, raw = dec.get_raw_lattice()
        assert ok
        (words,), = best_paths(Lattice.from_kaldi(raw), [1.0], [0.0])
        got = [w for w in (next(k for k, v in wid.items() if v == i) for i in words)]
        # "cab" and "cob" are homophones: either is a right answer acoustically
        assert [("cab" if w == "cob" else w) for w in got] == [("cab" if w == "cob" else w) for w in sent]


# ------------------------------------------------------------------------------------------
# references


def test_stm_references(tmp_path):
    stm = tmp_path / "stm"
    stm.write_text(';; LABEL "o" "Overall" "Overall results"\n'
                   "talk1 A talk1 0.29 1.50 <o,f0,male> hello <unk> world\n"
                   "talk1 A talk1 1.50 2.00 <o,f0,male> ignore_time_segment_in_scoring\n"
                   "talk1 A talk1 2.00 3.25 <o,f0,male> {NOISE} there\n")
    assert read_stm_refs(stm) == {"talk1-0000028-0000150": ["hello", "world"],
                                  "talk1-0000200-0000325": ["[NOISE]", "there"]}
    (tmp_path / "bad").write_text("talk1 A\n")
    with pytest.raises(ValueError, match="not an stm line"):
        read_stm_refs(tmp_path / "bad")


# ------------------------------------------------------------------------------------------
# self-loops: state splitting keeps the weighted language


def _strings(f, max_len):
    """{(input labels without epsilon, output labels): min cost} of every path with <= max_len arcs."""
    out: dict = {}

    def walk(s, il, ol, cost, n):
        if np.isfinite(f.final[s]):
            key = (tuple(il), tuple(ol))
            out[key] = min(out.get(key, math.inf), cost + f.final[s])
        if n == max_len:
            return
        for a in np.flatnonzero(f.src == s).tolist():
            walk(int(f.dst[a]), il + ([int(f.ilabel[a])] if f.ilabel[a] else []),
                 ol + ([int(f.olabel[a])] if f.olabel[a] else []), cost + f.cost[a], n + 1)

    walk(f.start, [], [], 0.0, 0)
    return out


def test_make_preceding_same_and_self_loops():
    from ser.chain.mkgraph import Fst, add_self_loops, make_preceding_same

    # state 1 is entered by labels 1, 3 and 0, the start state 0 by label 5 (and "epsilon" as the start)
    arcs = [(0, 1, 1, 7, 0.5), (0, 1, 3, 8, 0.25), (1, 2, 5, 0, 1.0), (2, 0, 5, 9, 0.1), (2, 1, 0, 0, 0.3)]
    a = np.array(arcs)
    f = Fst(3, 0, a[:, 0].astype(int), a[:, 1].astype(int), a[:, 2].astype(int), a[:, 3].astype(int), a[:, 4],
            np.array([np.inf, 0.5, 2.0]))
    g = make_preceding_same(f)
    assert g.num_states == 3 + 3  # copies of state 1 for labels 3 and 0, of state 0 for label 5
    for s in range(g.num_states):
        assert len(set(g.ilabel[g.dst == s].tolist()) | ({0} if s == g.start else set())) <= 1
    assert _strings(g, 7) == pytest.approx(_strings(f, 7))
    h = add_self_loops(f, num_pdfs=8)
    loops = h.src == h.dst
    # a loop (label + 1) on every state entered by a non-epsilon label, none elsewhere
    entered = {int(d): int(l) for d, l in zip(h.dst[~loops], h.ilabel[~loops])}
    assert sorted(zip(h.src[loops].tolist(), h.ilabel[loops].tolist())) == sorted(
        (s, l + 1) for s, l in entered.items() if l > 0)
    assert np.allclose(h.cost[loops], -math.log(0.5))


def test_job_utts_partition_balanced_by_frames():
    frames = {f"u{i}": n for i, n in enumerate([900, 100, 120, 80, 400, 390, 30])}
    parts = [job_utts(list(frames), frames, j, 3) for j in (1, 2, 3)]
    assert sorted(u for p in parts for u in p) == sorted(frames)  # each utterance in exactly one job
    loads = [sum(frames[u] for u in p) for p in parts]
    assert max(loads) == 900 and min(loads) >= 400
    with pytest.raises(ValueError, match="job 4 of 3"):
        job_utts(list(frames), frames, 4, 3)


def test_bad_inputs_name_the_file(tmp_path):
    from ser.chain.decode_wer import score_decode_dir
    from ser.chain.mkgraph import make_g

    (tmp_path / "words.txt").write_text("<eps> 0\na 1\n#0 2\n")
    with pytest.raises(ValueError, match="nope.arpa: no such ARPA file"):
        make_g(tmp_path / "nope.arpa", tmp_path / "words.txt")
    (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\n\\end\\\n")
    with pytest.raises(ValueError, match="bad.arpa:5: 1-gram line with 0 words"):
        read_arpa(tmp_path / "bad.arpa")
    (tmp_path / "stm").write_text("t A t 0.0 1.0 <o> a\n")
    with pytest.raises(ValueError, match="no lat.*pt"):
        score_decode_dir(tmp_path, tmp_path / "stm", tmp_path / "words.txt")


def test_mkgraph_refuses_pdfs_shared_across_phones():
    """A pdf map that ties phones to one pdf (gmm-init-biphone --tie on too little data) is refused in one
    line: a graph over pdf labels could not tell those phones' words apart (OpenFst: not determinizable)."""
    import numpy as np
    import pytest

    from ser.chain.mkgraph import check_pdf_pairs
    from ser.chain.topo import PdfMap

    pm = PdfMap.mono(3, [[1], [2], [3]])
    check_pdf_pairs(pm)
    table = pm.table.copy()
    table[:, 3, :] = table[:, 2, :]  # phone 3 backed off to phone 2's pdfs
    with pytest.raises(ValueError, match="pdf .* is shared by phones 2 and 3"):
        check_pdf_pairs(PdfMap(pm.kind, table, pm.num_pdfs))
