"""Tests of the chain egs loaders (ser/train/egs.py), alignment (ser/train/align.py) and the
chunk supervision (ser.chain.supervision.make_chunk_supervision).

References are written here independently: brute-force path enumeration for the Viterbi,
a brute-force search over chunk-size multisets for the UtteranceSplitter costs, explicit
per-frame index loops for the input extraction, and enumeration of every
tolerance-constrained frame assignment of an utterance for the chunk numerators.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from ser.chain.graph import ChainGraph
from ser.chain.numerator import NumeratorGraphBatch, numerator_forward_backward
from ser.chain.supervision import chunk_pdf_fsa, make_chunk_supervision, make_supervision, phone_windows
from ser.chain.topo import PdfMap
from ser.chain.viterbi import viterbi_batch
from ser.train.align import Alignment, align_data, pdf_classes, pdfs_to_phones
from ser.io.batching import FeatureSet, MatrixTable

from conftest import TINY_TEXTS
from ser.train.egs import (E2eEgs, ChunkEgs, UtteranceSplitter, input_offset, kaldi_frame_shift,
                           parse_minibatch_size, round_chunk_widths, split_valid)

TEXTS = TINY_TEXTS


@pytest.fixture(scope="module")
def setup(tiny_chain):
    t = tiny_chain
    return t.lang, t.pdf_map, t.den, t.norm, t.seqs


def synth_alignment(phone_seq: list[int], pm: PdfMap, rng: random.Random, max_dur: int = 4):
    """(pdf per output frame, phone per frame, phone-start flags) of random durations."""
    pdfs, phones, starts = [], [], []
    left = 0
    for p in phone_seq:
        d = rng.randint(1, max_dur)
        pdfs += [pm.pdf(left, p, 0)] + [pm.pdf(left, p, 1)] * (d - 1)
        phones += [p] * d
        starts += [True] + [False] * (d - 1)
        left = p
    return np.array(pdfs), np.array(phones), np.array(starts)


def one_hot_output(pdfs: np.ndarray, num_pdfs: int) -> torch.Tensor:
    y = torch.full((1, len(pdfs), num_pdfs), -1e4, dtype=torch.float64)
    y[0, torch.arange(len(pdfs)), torch.from_numpy(pdfs)] = 0.0
    return y


# ------------------------------------------------------------------------------------------
# storage, held-out subsets, options
# ------------------------------------------------------------------------------------------
def test_split_valid_keeps_perturbed_copies_together():
    base = [f"spk{i % 7}-utt{i:03d}" for i in range(60)]
    utts = base + [f"sp0.9-{u}" for u in base] + [f"sp1.1-{u}" for u in base]
    h = split_valid(utts, num_utts=10, seed=3)
    strip = lambda u: u.split("-", 1)[1] if u.startswith(("sp0.9-", "sp1.1-")) else u
    assert set(h.train) | set(h.valid) == set(utts) and not set(h.train) & set(h.valid)
    vbase = {strip(u) for u in h.valid}
    assert 1 <= len(vbase) <= 10 and len(h.valid) == 3 * len(vbase)
    assert not {strip(u) for u in h.train} & vbase
    assert len(h.train_diagnostic) == 10 and set(h.train_diagnostic) <= set(h.train)
    assert split_valid(utts, 10, seed=3) == h and split_valid(utts, 10, seed=4).valid != h.valid
    # an explicit utt2uniq wins over the prefix rule
    u2u = {u: "x" if u.endswith("utt000") else u for u in utts}
    h2 = split_valid(utts, num_utts=len(utts), seed=0, utt2uniq=u2u)
    assert not h2.train


def test_options():
    assert round_chunk_widths("150,110,100") == [150, 111, 102]
    assert parse_minibatch_size("150=128,64/300=64,32") == [(150, [128, 64]), (300, [64, 32])]
    assert parse_minibatch_size(64) == [(0, [64])]
    with pytest.raises(ValueError):
        parse_minibatch_size("150=128/64")
    # nnet3-chain-copy-egs --frame-shift s: inputs move by s, supervision by s rounded to a
    # multiple of 3 (Kaldi's floor(0.5 + s/3)*3), so the output sees the input moved by:
    assert [input_offset(s) for s in (0, 1, 2)] == [0, -1, 1]
    assert [kaldi_frame_shift(e) for e in range(5)] == [0, 1, 2, 0, 1]


# ------------------------------------------------------------------------------------------
# UtteranceSplitter
# ------------------------------------------------------------------------------------------
def _best_cost(u: int, widths: list[int]) -> float:
    """Brute force: min over splits (0-2 alternatives, any number of principal chunks)."""
    primary, alts = widths[0], widths[1:]
    best = math.inf
    for n_alt in range(3):
        for alt in itertools.combinations_with_replacement(alts, n_alt):
            for n in range(0, u // primary + 3):
                s = list(alt) + [primary] * n
                if not s or max(s) > u:
                    continue
                d = sum(s)
                best = min(best, d - u if d > u else 2 * (u - d))
    return best


def test_utterance_splitter_against_brute_force():
    widths = [150, 111, 102]
    sp = UtteranceSplitter(widths, 3)
    rng = random.Random(0)
    for u in list(range(95, 520, 7)) + [1000, 1999]:
        for _ in range(3):
            chunks = sp.chunks("x", u, rng)
            if u < 102:
                assert chunks == []
                continue
            sizes = [c.num_frames for c in chunks]
            alts = [s for s in sizes if s != 150]
            assert len(alts) <= 2 and set(sizes) <= set(widths)
            d = sum(sizes)
            cost = d - u if d > u else 2 * (u - d)
            assert cost < _best_cost(u, widths) + 2.0
            starts = [c.first_frame for c in chunks]
            assert all(s % 3 == 0 for s in starts) and starts[0] >= 0 and starts == sorted(starts)
            assert chunks[-1].first_frame + chunks[-1].num_frames - u < 3  # at most rounding past the end
            for a, b in zip(chunks, chunks[1:]):
                gap = b.first_frame - (a.first_frame + a.num_frames)
                assert gap >= 0 or d > u  # overlaps only when the chunks exceed the utterance
    # exact fits are covered exactly
    for u in (150, 411, 450, 252):
        ch = sp.chunks("x", u, rng)
        assert sum(c.num_frames for c in ch) == u and ch[0].first_frame == 0


# ------------------------------------------------------------------------------------------
# Viterbi
# ------------------------------------------------------------------------------------------
def _random_graph(S: int, A: int, P: int, seed: int) -> ChainGraph:
    rng = random.Random(seed)
    arcs = [(s, (s + 1) % S, rng.randrange(P)) for s in range(S)]
    while len(arcs) < A:
        arcs.append((rng.randrange(S), rng.randrange(S), rng.randrange(P)))
    init = torch.full((S,), -math.inf, dtype=torch.float64)
    init[0] = 0.0
    final = torch.tensor([math.log(rng.uniform(0.2, 1)) if rng.random() < 0.5 else -math.inf for _ in range(S)],
                         dtype=torch.float64)
    final[S - 1] = -0.3
    return ChainGraph(S, torch.tensor([a[0] for a in arcs]), torch.tensor([a[1] for a in arcs]),
                      torch.tensor([a[2] for a in arcs]),
                      torch.tensor([math.log(rng.uniform(0.1, 1)) for _ in arcs], dtype=torch.float64), init, final)


def _brute_best(g: ChainGraph, y: torch.Tensor) -> tuple[float, dict[tuple, float]]:
    """Best score overall, and the best score of each pdf string."""
    arcs = list(zip(g.src.tolist(), g.dst.tolist(), g.pdf.tolist(), g.logp.tolist()))
    T = y.shape[0]
    best: dict[tuple, float] = {}
    for path in itertools.product(range(len(arcs)), repeat=T):
        s = 0
        score = float(g.initial[0])
        ok = True
        for t, a in enumerate(path):
            src, dst, p, lp = arcs[a]
            if src != s:
                ok = False
                break
            score += lp + float(y[t, p])
            s = dst
        if not ok or g.final[s] == -math.inf:
            continue
        score += float(g.final[s])
        key = tuple(arcs[a][2] for a in path)
        best[key] = max(best.get(key, -math.inf), score)
    return max(best.values(), default=-math.inf), best


def test_viterbi_matches_brute_force():
    graphs = [_random_graph(3, 6, 3, seed=s) for s in range(3)]
    lengths = [4, 2, 3]
    torch.manual_seed(0)
    y = torch.randn(3, 4, 3, dtype=torch.float64) * 2
    best, paths = viterbi_batch(y, NumeratorGraphBatch.from_graphs(graphs), torch.tensor(lengths))
    for b, (g, L) in enumerate(zip(graphs, lengths)):
        ref, per_string = _brute_best(g, y[b, :L])
        assert abs(float(best[b]) - ref) < 1e-9
        assert len(paths[b]) == L and abs(per_string[tuple(paths[b].tolist())] - ref) < 1e-9
    # no path (a graph needing exactly 2 frames, used with 3): -inf and an empty path
    chain = ChainGraph(3, torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([0, 1]),
                       torch.zeros(2, dtype=torch.float64), torch.tensor([0.0, -math.inf, -math.inf]),
                       torch.tensor([-math.inf, -math.inf, 0.0]))
    best, paths = viterbi_batch(y[:2, :3], NumeratorGraphBatch.from_graphs([graphs[0], chain]))
    assert best[1] == -math.inf and paths[1].numel() == 0 and paths[0].numel() == 3


# ------------------------------------------------------------------------------------------
# pdfs -> phones
# ------------------------------------------------------------------------------------------
def test_pdfs_to_phones(setup):
    lang, pm, den, norm, seqs = setup
    rng = random.Random(1)
    full = PdfMap.biphone(lang.num_phones, lang.sets)  # untied: phones are unique
    cls = pdf_classes(pm)
    assert set(np.unique(cls[cls >= 0]).tolist()) == {0, 1}
    for seq in seqs[:20]:
        pdfs, phones, starts = synth_alignment(seq, full, rng)
        ph, st = pdfs_to_phones(pdfs, full)
        np.testing.assert_array_equal(ph, phones)
        np.testing.assert_array_equal(st, starts)
        # tied map: the recovered phones reproduce the pdfs exactly
        pdfs, phones, starts = synth_alignment(seq, pm, rng)
        ph, st = pdfs_to_phones(pdfs, pm)
        np.testing.assert_array_equal(st, starts)
        left = 0
        for t in range(len(pdfs)):
            if st[t] and t > 0:
                left = ph[t - 1]
            assert pm.pdf(left, int(ph[t]), 0 if st[t] else 1) == pdfs[t]
    with pytest.raises(ValueError):
        pdfs_to_phones(np.array([full.pdf(0, seqs[0][0], 1)]), full)


# ------------------------------------------------------------------------------------------
# chunk numerators
# ------------------------------------------------------------------------------------------
def _constrained_chunk_strings(phones, pm, wb, we, T, b, e) -> set[tuple]:
    """Every pdf string on output frames [b, e) of a full-utterance frame assignment in which
    each phone has >= 1 frame, all of them inside its tolerance window."""
    n = len(phones)
    out = set()
    for cuts in itertools.combinations(range(1, T), n - 1):
        bounds = (0,) + cuts + (T,)
        if any(bounds[k] < wb[k] or bounds[k + 1] > we[k] for k in range(n)):
            continue
        s = []
        left = 0
        for k in range(n):
            s += [pm.pdf(left, phones[k], 0)] + [pm.pdf(left, phones[k], 1)] * (bounds[k + 1] - bounds[k] - 1)
            left = phones[k]
        out.add(tuple(s[b:e]))
    return out


def _accepts(fsa, string: tuple) -> bool:
    states = {fsa.start}
    for p in string:
        states = {int(d) for s, d, l in zip(fsa.src, fsa.dst, fsa.label) if s in states and l == p + 1}
    return any(fsa.final[s] > -math.inf for s in states)


def test_chunk_fsa_contains_constrained_paths(setup):
    lang, pm, den, norm, seqs = setup
    rng = random.Random(2)
    seq = [p for p in seqs[5] if p != lang.sil_id][:6]
    pdfs, phones, starts = synth_alignment(seq, pm, rng, max_dur=3)
    T = len(pdfs)
    st = np.flatnonzero(starts)
    en = np.append(st[1:], T)
    wb, we = phone_windows(st, en, 3 * T, 3, 5, 5)
    # independent window formula: input frames [3s - 5, 3e + 5) clipped, ceil-divided by 3
    for k in range(len(seq)):
        assert wb[k] == max(0, math.ceil((3 * st[k] - 5) / 3)) and we[k] == min(T, math.ceil((3 * en[k] + 5) / 3))
    for b, e in [(0, T), (1, T - 2), (2, 5), (T - 4, T)]:
        fsa = chunk_pdf_fsa(np.array(seq), wb, we, b, e, pm)
        want = _constrained_chunk_strings(seq, pm, wb, we, T, b, e)
        assert tuple(pdfs[b:e].tolist()) in want
        for s in want:
            assert _accepts(fsa, s), (b, e, s)
        # deterministic (each accepted string has exactly one path)
        keys = list(zip(fsa.src.tolist(), fsa.label.tolist()))
        assert len(keys) == len(set(keys))
        # only the pdfs of phones whose window meets the chunk, in their aligned context
        left_of = [0] + seq[:-1]
        allowed = {pm.pdf(left_of[k], seq[k], c) + 1 for k in range(len(seq)) if wb[k] < e and we[k] > b
                   for c in (0, 1)}
        assert set(fsa.label.tolist()) <= allowed


def test_chunk_supervision_accepts_alignment_rejects_wrong_phones(setup):
    lang, pm, den, norm, seqs = setup
    rng = random.Random(3)
    for seq in seqs[:12]:
        pdfs, phones, starts = synth_alignment(seq, pm, rng)
        T = len(pdfs)
        st = np.flatnonzero(starts)
        en = np.append(st[1:], T)
        seg_phones = phones[st]
        for _ in range(3):
            b = rng.randrange(0, max(1, T - 4))
            e = rng.randrange(b + 2, T + 1)
            r = make_chunk_supervision(seg_phones, st, en, b, e, 3 * T, pm, norm, 3, 5, 5, lang.sil_id)
            assert r.graph is not None, r.reason
            y = one_hot_output(pdfs[b:e], pm.num_pdfs)
            lp, _, ok = numerator_forward_backward(y, NumeratorGraphBatch.from_graphs([r.graph]), compute_deriv=False)
            assert ok and lp.item() > -1e3  # the aligned path is in the numerator (weights: den only)
            # wrong phones: every phone replaced by another one -> the aligned path is not accepted
            others = [p for p in range(1, lang.num_phones + 1)]
            wrong = np.array([others[(others.index(p) + 3) % len(others)] for p in seg_phones])
            r2 = make_chunk_supervision(wrong, st, en, b, e, 3 * T, pm, norm, 3, 5, 5, lang.sil_id)
            if r2.graph is not None:
                lp2, _, _ = numerator_forward_backward(y, NumeratorGraphBatch.from_graphs([r2.graph]),
                                                       compute_deriv=False)
                assert lp2.item() < -1e3


# ------------------------------------------------------------------------------------------
# loaders
# ------------------------------------------------------------------------------------------
def _egs_data(lengths: dict[str, int], dim: int = 5, ivec: bool = True, seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    keys = sorted(lengths)
    feats = MatrixTable.from_arrays(keys, [rng.standard_normal((lengths[k], dim)).astype(np.float32) for k in keys])
    iv = None
    if ivec:
        iv = MatrixTable.from_arrays(keys, [rng.standard_normal(((lengths[k] + 9) // 10, 3)).astype(np.float32)
                                            for k in keys])
    return FeatureSet(feats, iv, 10)


def _check_inputs(data: FeatureSet, mb, first_frames: list[int], lc: int, rc: int, offset: int) -> None:
    for b, key in enumerate(mb.keys):
        utt = key if key in data.feats else key.rsplit("-", 1)[0]
        m = data.feats[utt]
        T = m.shape[0]
        for i in range(mb.feats.shape[1]):
            t = min(max(first_frames[b] + offset - lc + i, 0), T - 1)
            assert torch.equal(mb.feats[b, i], m[t])
        if mb.ivector is not None:
            assert any(torch.equal(mb.ivector[b], r) for r in data.ivectors[utt])


def test_e2e_egs(setup):
    lang, pm, den, norm, seqs = setup
    rng = random.Random(4)
    lengths = {f"utt{i:02d}": rng.randint(20, 70) for i in range(23)}
    data = _egs_data(lengths)
    graphs, nof = {}, {}
    for i, u in enumerate(sorted(lengths)):
        r = make_supervision(TEXTS[i % len(TEXTS)], lengths[u], lang, pm, norm)
        if r.graph is not None:
            graphs[u], nof[u] = r.graph, r.num_output_frames
    lc, rc = 4, 5
    egs = E2eEgs(data, graphs, nof, lc, rc, minibatch_size="30=8,4/60=4,2/90=3", seed=7)
    assert set(egs.utts) == set(graphs)
    assert egs.num_frames == sum(lengths[u] for u in graphs)  # Kaldi's num_frames (sets num_archives)
    seen = Counter()
    for epoch in range(3):
        assert egs.epoch == epoch
        mbs = list(egs)
        assert len(mbs) == egs.num_minibatches(epoch)
        for mb in mbs:
            seen[epoch] += mb.batch_size
            n = mb.num_output_frames
            assert n.tolist() == [(lengths[k] + 2) // 3 for k in mb.keys]
            assert mb.feats.shape[1] == 3 * int(n.max()) + lc + rc
            # minibatch size rule: by the longest example of the batch (its input frames)
            eg = 3 * int(n.max()) + lc + rc
            size = {30: 8, 60: 4, 90: 3}[min((30, 60, 90), key=lambda s: abs(s - eg))]
            assert mb.batch_size <= size
            # ... and every example of the minibatch has that rule (Kaldi merges equal-sized egs)
            assert {min((30, 60, 90), key=lambda s: abs(s - 3 * int(k) - lc - rc)) for k in n} == \
                {min((30, 60, 90), key=lambda s: abs(s - eg))}
            _check_inputs(data, mb, [0] * mb.batch_size, lc, rc, input_offset(epoch % 3))
            assert mb.num_graphs.num_sequences == mb.batch_size
    assert set(seen.values()) == {len(graphs)}


def test_e2e_egs_resume_is_exact(setup):
    lang, pm, den, norm, seqs = setup
    lengths = {f"u{i}": 30 + 3 * i for i in range(12)}
    data = _egs_data(lengths, ivec=False)
    graphs, nof = {}, {}
    for i, u in enumerate(sorted(lengths)):
        r = make_supervision(TEXTS[i % 4], lengths[u], lang, pm, norm)
        graphs[u], nof[u] = r.graph, r.num_output_frames
    assert all(g is not None for g in graphs.values())
    make = lambda: E2eEgs(data, graphs, nof, 2, 2, minibatch_size=3, seed=1)
    a = make()
    ref = [mb.keys for _ in range(2) for mb in a]
    b = make()
    it = iter(b)
    got = [next(it).keys for _ in range(2)]
    state = b.state_dict()
    c = make()
    c.load_state_dict(state)
    got += [mb.keys for mb in c] + [mb.keys for mb in c]
    assert got == ref
    # minibatches are made ahead on a prefetch thread; a position moved while iterating (a state loaded)
    # goes on from there, and an iterator without prefetch gives the same minibatches
    d = make()
    it = iter(d)
    first = next(it).keys
    d.load_state_dict({**state, "position": 3})
    assert [first] + [mb.keys for mb in it] == ref[:1] + ref[3:4]
    d.prefetch_depth = 0
    assert [mb.keys for mb in d] == ref[4:8] and d.position == 0 and d.epoch == 2
    assert ref[:4] != ref[4:8]  # epochs are shuffled differently
    with pytest.raises(ValueError, match="seed"):
        E2eEgs(data, graphs, nof, 2, 2, minibatch_size=3, seed=2).load_state_dict(state)
    bad = dict(nof)
    bad["u3"] += 1
    with pytest.raises(ValueError, match="u3"):
        E2eEgs(data, graphs, bad, 2, 2)


def test_chunk_egs_and_alignment_roundtrip(setup, tmp_path):
    lang, pm, den, norm, seqs = setup
    rng = random.Random(5)
    phones, starts, pdfs, lengths = {}, {}, {}, {}
    for i, seq in enumerate(seqs[:10]):
        u = f"utt{i}"
        p, ph, st = synth_alignment(seq, pm, rng, max_dur=5)
        lengths[u] = 3 * len(p) - rng.randrange(3)
        phones[u], starts[u], pdfs[u] = torch.from_numpy(ph.astype(np.int32)), torch.from_numpy(st), p
    ali = Alignment(phones, starts, frame_subsampling_factor=3)
    ali.save(tmp_path / "ali.pt")
    ali = Alignment.load(tmp_path / "ali.pt")
    data = _egs_data(lengths)
    lc = rc = 3
    egs = ChunkEgs(data, ali, pm, norm, lc, rc, chunk_width="30,24", num_chunk_per_minibatch=4,
                   optional_silence=lang.sil_id, seed=3)
    assert not egs.skipped
    assert egs.num_frames == sum(lengths.values())
    assert egs.summary().startswith(f"{len(lengths)} utterances ({sum(lengths.values())} frames), "
                                    f"{len(egs.chunks)} chunks covering {sum(c.num_frames for c in egs.chunks)} frames")
    counts = Counter(c.num_frames for c in egs.chunks)
    assert set(counts) <= {30, 24}
    graph_of = dict(zip(egs.keys, egs.graphs))
    for epoch in range(3):
        mbs = list(egs)
        assert len(mbs) == sum(n // 4 for n in counts.values())  # partial minibatches dropped
        for mb in mbs:
            firsts = [int(k.rsplit("-", 1)[1]) for k in mb.keys]
            w = 3 * int(mb.num_output_frames[0])
            assert mb.batch_size == 4 and mb.feats.shape[1] == w + lc + rc
            _check_inputs(data, mb, firsts, lc, rc, input_offset(epoch % 3))
            # every chunk numerator accepts that chunk's aligned pdfs
            for b, (k, f) in enumerate(zip(mb.keys, firsts)):
                u = k.rsplit("-", 1)[0]
                y = one_hot_output(pdfs[u][f // 3: f // 3 + w // 3], pm.num_pdfs)
                g = NumeratorGraphBatch.from_graphs([graph_of[k]])
                lp, _, ok = numerator_forward_backward(y, g, compute_deriv=False)
                assert ok and lp.item() > -1e3
    # i-vector row rule: a random frame of [first - egs_left_context, ... + T - 1], /10, clamped
    for c, frame in zip(egs.chunks, egs.ivector_frame.tolist()):
        lo, hi = c.first_frame - (lc + 1), c.first_frame - (lc + 1) + lengths[c.utt] - 1
        assert lo <= frame <= hi
        row = min(max(int(frame / 10), 0), data.ivectors.num_rows(c.utt) - 1)  # C++ division truncates
        mb = egs._make_minibatch(np.array([egs.chunks.index(c)]), 0)
        assert torch.equal(mb.ivector[0], data.ivectors[c.utt][row])


def test_align_data_with_model(setup, tmp_path):
    from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel

    lang, pm, den, norm, seqs = setup
    cfg = TdnnfConfig.mini(pm.num_pdfs, feat_dim=5, ivector_dim=3, tdnn_dim=16, tdnnf_dim=16, bottleneck_dim=4,
                           prefinal_l_dim=8, prefinal_big_dim=16, prefinal_small_dim=8)
    model = TdnnfModel(cfg, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # a non-zero output layer so that the alignment depends on the input
        model.layers["output"].affine.weight.normal_(0.0, 1.0)
    rng = random.Random(6)
    lengths = {f"u{i}": rng.randint(30, 60) for i in range(6)}
    data = _egs_data(lengths)
    graphs = {}
    for i, u in enumerate(sorted(lengths)):
        graphs[u] = make_supervision(TEXTS[i], lengths[u], lang, pm, norm).graph
    ali = align_data(model, data, graphs, pm, tmp_path / "ali.pt", max_batch_frames=300)
    assert (tmp_path / "ali.pt").is_file() and len(Alignment.load(tmp_path / "ali.pt")) == 6
    for u in sorted(lengths):
        n = (lengths[u] + 2) // 3
        path = ali.pdfs[u].numpy().astype(np.int64)
        assert len(path) == n and ali.phones[u].numel() == n
        # the path is a path of the utterance's graph
        y = one_hot_output(path, pm.num_pdfs)
        lp, _, ok = numerator_forward_backward(y, NumeratorGraphBatch.from_graphs([graphs[u]]), compute_deriv=False)
        assert ok and lp.item() > -1e3
        seg = ali.segments(u)
        assert seg.starts[0] == 0 and seg.ends[-1] == n and len(seg.phones) == len(seg.starts)


def _chunk_setup(setup, tmp_path, n_utts: int = 10):
    lang, pm, den, norm, seqs = setup
    rng = random.Random(5)
    phones, starts, lengths = {}, {}, {}
    for i, seq in enumerate(seqs[:n_utts]):
        u = f"utt{i}"
        p, ph, st = synth_alignment(seq, pm, rng, max_dur=5)
        lengths[u] = 3 * len(p) - rng.randrange(3)
        phones[u], starts[u] = torch.from_numpy(ph.astype(np.int32)), torch.from_numpy(st)
    return Alignment(phones, starts, frame_subsampling_factor=3), _egs_data(lengths), lang, pm, norm


def _same_minibatches(a, b, epochs: int = 3) -> None:
    for epoch in range(epochs):
        a.set_epoch(epoch), b.set_epoch(epoch)
        for x, y in zip(a, b, strict=True):
            assert x.keys == y.keys
            assert torch.equal(x.feats, y.feats) and torch.equal(x.ivector, y.ivector)
            assert torch.equal(x.num_output_frames, y.num_output_frames)
            for k in ("src", "dst", "pdf", "logp", "initial", "final"):
                assert torch.equal(getattr(x.num_graphs.graph, k), getattr(y.num_graphs.graph, k)), k


def test_chunk_egs_shards_roundtrip(setup, tmp_path):
    """One job's shard, saved and read back memory-mapped, gives the minibatches of the in-memory egs
    exactly (features, i-vectors, numerators); two jobs' shards hold every chunk once, each job drawing
    its own chunks; a resume from a mid-epoch state of the sharded egs equals the uninterrupted run."""
    from ser.train.egs import make_chunk_examples
    from ser.train.egs_shards import EgsShard

    ali, data, lang, pm, norm = _chunk_setup(setup, tmp_path)
    opts = dict(chunk_width="30,24", optional_silence=lang.sil_id, seed=3)
    ref = ChunkEgs(data, ali, pm, norm, 3, 3, num_chunk_per_minibatch=4, **opts)
    make_chunk_examples(data, ali, pm, norm, 3, **opts).save(tmp_path / "egs.1.pt")
    one = EgsShard.load(tmp_path / "egs.1.pt")
    assert any(line.rstrip().endswith(str(tmp_path / "egs.1.pt")) for line in open("/proc/self/maps")), \
        "the shard is memory-mapped"
    for u in one.fs.feats.keys:
        assert torch.equal(one.fs.feats[u], data.feats[u]) and torch.equal(one.fs.ivectors[u], data.ivectors[u])
    sharded = ChunkEgs.from_shards([one], 3, 3, num_chunk_per_minibatch=4, seed=3)
    assert sharded.keys == ref.keys and sharded.summary() == ref.summary()
    _same_minibatches(ref, sharded)

    utts = sorted(data.utts)
    for job, part in enumerate((utts[::2], utts[1::2])):
        make_chunk_examples(data, ali, pm, norm, 3, utts=part, job=job, **opts).save(tmp_path / f"egs2.{job}.pt")
    two = [EgsShard.load(tmp_path / f"egs2.{job}.pt") for job in range(2)]
    egs = ChunkEgs.from_shards(two, 3, 3, num_chunk_per_minibatch=4, seed=3)
    assert sorted({k.rsplit("-", 1)[0] for k in egs.keys}) == utts
    assert len(set(egs.keys)) == len(egs.keys) and egs.num_frames == ref.num_frames
    seen = [k for mb in egs for k in mb.keys]
    assert len(seen) == len(set(seen)) and set(seen) <= set(egs.keys)

    egs.set_epoch(0)
    it = iter(egs)
    first = [next(it).keys for _ in range(2)]
    state = egs.state_dict()
    again = ChunkEgs.from_shards([EgsShard.load(tmp_path / f"egs2.{j}.pt") for j in range(2)], 3, 3,
                                 num_chunk_per_minibatch=4, seed=3)
    again.load_state_dict(state)
    assert first + [mb.keys for mb in again] == [mb.keys for mb in (egs.set_epoch(0) or egs)]
    with pytest.raises(ValueError, match="left context"):
        ChunkEgs.from_shards(two, 4, 3, num_chunk_per_minibatch=4, seed=3)

    # a DDP rank's share (set_share) is the slice ser.ddp.shard takes of the whole minibatch
    from ser.ddp import shard
    from ser.train.minibatch import subset_minibatch

    ranks = [ChunkEgs.from_shards(two, 3, 3, num_chunk_per_minibatch=4, seed=3) for _ in range(2)]
    for r, e in enumerate(ranks):
        e.set_share(r, 2)
    egs.set_epoch(1)
    for whole, *parts in zip((ranks[0].set_epoch(1) or ranks[1].set_epoch(1) or egs), *ranks, strict=True):
        for r, part in enumerate(parts):
            want = subset_minibatch(whole, shard(whole.batch_size, r, 2))
            assert part.keys == want.keys and torch.equal(part.feats, want.feats)
            assert torch.equal(part.ivector, want.ivector)
            for k in ("src", "dst", "pdf", "logp", "initial", "final"):
                assert torch.equal(getattr(part.num_graphs.graph, k), getattr(want.num_graphs.graph, k)), k
