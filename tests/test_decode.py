"""Phone decoding (ser/chain/decode.py, ser/chain/viterbi.py): Viterbi through one graph against
brute-force path enumeration, pdf -> phone read-out, Levenshtein counts worked by hand, and a
whole data dir decoded end to end against inputs built here by hand (edges padded by
repetition, the online i-vector row t // 10 of every frame)."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch

from ser.chain.chain_dir import ChainDir
from ser.chain.decode import decode_data_dir, pdf_phone_tables, pdfs_to_phones, reference_phones
from ser.chain.graph import ChainGraph
from ser.chain.viterbi import viterbi
from ser.eval.error_rate import ErrorCounts, align_counts
from ser.io.datadir import DataDir
from ser.io.tables import ArkScpWriter
from ser.nnet.model_io import load_chain_model, save_chain_model
from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel

from conftest import TINY_TEXTS


# ------------------------------------------------------------------------------------------
# Viterbi through one graph, pdfs -> phones, PER
# ------------------------------------------------------------------------------------------
def small_graph(seed: int, states: int = 4, arcs: int = 9, pdfs: int = 3):
    r = random.Random(seed)
    a = [(s, s, r.randrange(pdfs)) for s in range(states)]
    while len(a) < arcs:
        a.append((r.randrange(states), r.randrange(states), r.randrange(pdfs)))
    logp = torch.tensor([math.log(r.uniform(0.05, 1.0)) for _ in a])
    init = torch.full((states,), -math.inf)
    init[0] = 0.0
    init[1] = math.log(0.3)
    final = torch.tensor([math.log(r.uniform(0.1, 1.0)) if r.random() < 0.6 else -math.inf
                          for _ in range(states)])
    final[states - 1] = 0.0
    return ChainGraph(states, torch.tensor([x[0] for x in a]), torch.tensor([x[1] for x in a]),
                      torch.tensor([x[2] for x in a]), logp, init, final)


def brute_force_best(g, y):
    """max over all state paths of init + sum(log p + y) + final, by enumeration."""
    arcs = list(zip(g.src.tolist(), g.dst.tolist(), g.pdf.tolist(), g.logp.tolist()))
    best, best_pdfs = -math.inf, None
    for path in itertools.product(range(len(arcs)), repeat=len(y)):
        if any(arcs[path[i]][1] != arcs[path[i + 1]][0] for i in range(len(path) - 1)):
            continue
        sc = float(g.initial[arcs[path[0]][0]]) + float(g.final[arcs[path[-1]][1]])
        sc += sum(arcs[a][3] + y[t][arcs[a][2]] for t, a in enumerate(path))
        if sc > best:
            best, best_pdfs = sc, [arcs[a][2] for a in path]
    return best, best_pdfs


def test_viterbi_equals_brute_force():
    for seed in range(4):
        g = small_graph(seed)
        y = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(seed))
        lengths = torch.tensor([5, 3])
        paths, scores = viterbi(y, g, lengths)
        for b in range(2):
            T = int(lengths[b])
            want, _ = brute_force_best(g, y[b, :T].tolist())
            assert float(scores[b]) == pytest.approx(want, abs=1e-4)
            assert len(paths[b]) == T
            # the returned pdf sequence reaches the best score (some path with these pdfs)
            arcs = list(zip(g.src.tolist(), g.dst.tolist(), g.pdf.tolist(), g.logp.tolist()))
            got = -math.inf
            for path in itertools.product(range(len(arcs)), repeat=T):
                if [arcs[a][2] for a in path] != paths[b]:
                    continue
                if any(arcs[path[i]][1] != arcs[path[i + 1]][0] for i in range(T - 1)):
                    continue
                sc = float(g.initial[arcs[path[0]][0]]) + float(g.final[arcs[path[-1]][1]])
                got = max(got, sc + sum(arcs[a][3] + float(y[b, t, arcs[a][2]]) for t, a in enumerate(path)))
            assert got == pytest.approx(want, abs=1e-4)


def test_pdfs_to_phones_and_reference(tiny_chain):
    lang, pm = tiny_chain.lang, tiny_chain.pdf_map
    pid = lang.phone_id
    phone_of, class_of = pdf_phone_tables(pm)
    sil = pid["SIL"]
    # "SIL DH AH AH K" with durations 2,1,3,1,2 (AH twice in a row: two class-0 starts)
    seq = []
    left = 0
    for ph, dur in (("SIL", 2), ("DH", 1), ("AH", 3), ("AH", 1), ("K", 2)):
        p = pid[ph]
        seq += [pm.pdf(left, p, 0)] + [pm.pdf(left, p, 1)] * (dur - 1)
        left = p
    drop = {pid["SIL"], pid["NSN"]}
    assert pdfs_to_phones(seq, phone_of, class_of, drop) == [pid[x] for x in ("DH", "AH", "AH", "K")]
    assert pdfs_to_phones(seq, phone_of, class_of)[0] == sil
    # first pronunciation; OOV -> <unk> -> NSN -> dropped
    assert reference_phones(["a", "the", "zzz"], lang, drop) == [pid["AH"], pid["DH"], pid["AH"]]


def test_per_counts_hand_examples():
    assert align_counts(list("abcd"), list("axcde")) == (2, 1, 0, 1)
    assert align_counts(list("abcd"), list("bd")) == (2, 0, 2, 0)
    assert align_counts([], [1, 2]) == (2, 2, 0, 0)
    assert align_counts([1, 2], []) == (2, 0, 2, 0)
    assert align_counts(list("kitten"), list("sitting")) == (3, 1, 0, 2)
    st = ErrorCounts("PER")
    st.add(list("abcd"), list("axcde"))
    st.add(list("abcd"), list("bd"))
    assert st.line() == "%PER 50.00 [ 4 / 8, 1 ins, 2 del, 1 sub ]"


# ------------------------------------------------------------------------------------------
# a data dir, end to end
# ------------------------------------------------------------------------------------------
def _write_decode_inputs(root, num_pdfs: int):
    rng = np.random.default_rng(0)
    utts = {f"spk{i % 2}-u{i}": (" ".join(TINY_TEXTS[i]), int(rng.integers(25, 60))) for i in range(5)}
    DataDir(utt2spk={u: u.split("-")[0] for u in utts}, text={u: t for u, (t, _) in utts.items()}).write(root / "data")
    feats = {u: rng.standard_normal((n, 5)).astype(np.float32) for u, (_, n) in utts.items()}
    ivecs = {u: rng.standard_normal(((n + 9) // 10, 3)).astype(np.float32) for u, (_, n) in utts.items()}
    (root / "iv").mkdir()
    (root / "iv" / "ivector_period").write_text("10\n")
    for path, mats in ((root / "data" / "feats", feats), (root / "iv" / "ivector_online", ivecs)):
        with ArkScpWriter(f"{path}.ark", f"{path}.scp") as w:
            for u in sorted(mats):
                w.write(u, mats[u])
    cfg = TdnnfConfig.mini(num_pdfs, feat_dim=5, ivector_dim=3, tdnn_dim=16, tdnnf_dim=16, bottleneck_dim=4,
                           prefinal_l_dim=8, prefinal_big_dim=16, prefinal_small_dim=8)
    model = TdnnfModel(cfg, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # a non-zero output layer so that the decoding depends on the input
        model.layers["output"].affine.weight.normal_(0.0, 1.0)
    save_chain_model(root / "final.pt", model)
    return utts, feats, ivecs, model.eval()


def _pad(m: np.ndarray, left: int, right: int) -> np.ndarray:
    return np.concatenate([np.repeat(m[:1], left, 0), m, np.repeat(m[-1:], right, 0)])


@torch.no_grad()
def test_decode_data_dir_end_to_end(tiny_chain, tmp_path):
    lang, pm = tiny_chain.lang, tiny_chain.pdf_map
    chain_dir = tiny_chain.write_chain_dir(tmp_path / "chain")
    utts, feats, ivecs, model = _write_decode_inputs(tmp_path, pm.num_pdfs)
    stats = decode_data_dir(load_chain_model(tmp_path / "final.pt"), tmp_path / "data", tmp_path / "iv", chain_dir,
                            tiny_chain.lang_dir, tmp_path / "decode")
    graph = ChainDir.load(chain_dir).decoding_graph
    phone_of, class_of = pdf_phone_tables(pm)
    drop = {lang.phone_id["SIL"], lang.phone_id["NSN"]}
    want, hyp_lines = ErrorCounts("PER"), []
    lc, rc = model.left_context, model.right_context
    for u in sorted(utts):
        T = feats[u].shape[0]
        rows = ivecs[u][np.minimum(np.arange(T) // 10, ivecs[u].shape[0] - 1)]
        x = torch.from_numpy(_pad(feats[u], lc, rc))[None]
        iv = torch.from_numpy(_pad(rows, lc, rc))[None]
        paths, _ = viterbi(model(x, iv, outputs=("output",))["output"].float(), graph)
        hyp = pdfs_to_phones(paths[0], phone_of, class_of, drop)
        want.add(reference_phones(utts[u][0].split(), lang, drop), hyp)
        hyp_lines.append(f"{u} {' '.join(lang.phones[p] for p in hyp)}")
    out = tmp_path / "decode"
    assert (out / "per.txt").read_text() == want.line() + "\n"
    assert (out / "hyp.txt").read_text().splitlines() == hyp_lines
    assert stats["model"].num_utts == 5 and stats["lm_only"].num_utts == 5
    assert (out / "per_lm_only.txt").read_text().startswith("%PER ")
    assert (out / "per_most_frequent.txt").read_text() == stats["most_frequent"].line() + "\n"
    # this model takes i-vectors: none given, or none for an utterance, is a one-line error
    with pytest.raises(ValueError, match="needs i-vectors"):
        decode_data_dir(load_chain_model(tmp_path / "final.pt"), tmp_path / "data", None, chain_dir,
                        tiny_chain.lang_dir, out)
    scp = tmp_path / "iv" / "ivector_online.scp"
    scp.write_text("".join(scp.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(ValueError, match="no usable i-vectors for utterance spk0-u0"):
        decode_data_dir(load_chain_model(tmp_path / "final.pt"), tmp_path / "data", tmp_path / "iv", chain_dir,
                        tiny_chain.lang_dir, out)
