"""Word decoding with the chain model: lattices on HCLG, best path over LM weight and word-insertion
penalty, WER against the stm.

Mirrors steps/nnet3/decode.sh (--acwt 1.0 --post-decode-acwt 10.0, as Kaldi's chain recipes call it) and
steps/score_kaldi.sh + utils/best_wer.sh as egs/tedlium/s5_r2/local/score.sh runs them:

1. the nnet output ``output`` of each utterance as log-likelihoods (acoustic scale 1.0; chain models
   need no prior division), computed as stage 6's phone decoding does (ser.chain.decode: the whole
   utterance, the online i-vector of every frame);
2. Kaldi's LatticeSimpleDecoder (kaldi-decoder's binding of src/decoder/lattice-simple-decoder.cc)
   on HCLG with ``beam`` and ``lattice_beam``; the raw state-level lattice is kept per utterance
   (graph and acoustic costs apart, as Kaldi's lattices), its acoustic costs scaled by
   ``post_decode_acwt`` (10: so that score_kaldi.sh's LM weights 7..17 mean acoustic scales 1.4..0.6,
   as for Kaldi's chain lattices); each of ``nj`` jobs (``$decode_cmd JOB=1:nj``) decodes a share
   of the utterances balanced by frames and writes ``lat.JOB.pt``;
3. the no-acoustics baselines: the same graph searched with all log-likelihoods 0 (Kaldi's
   FasterDecoder, ``beam`` and ``max_active``): the graph's best word sequence for the utterance's
   number of frames (with the chain topology, silence: no words); and the first-pass LM's most likely
   sentence with as many words as the reference (an oracle length), ``wer_lm_only``;
4. scoring (score_kaldi.sh): for LMWT in min_lmwt..max_lmwt and each word-insertion penalty, the best
   path of the lattice with acoustic costs scaled by 1/LMWT and the penalty added to each word arc
   (lattice-scale --inv-acoustic-scale, lattice-add-penalty, lattice-best-path), ``<unk>`` removed
   from hypothesis and reference; references are the stm's segments (ignore_time_segment_in_scoring
   dropped), matched by utterance id; ``wer_LMWT_WIP`` per setting, the best (best_wer.sh) in
   ``wer`` and its transcripts in ``scoring/best.txt``;
5. with a second ARPA (steps/lmrescore_const_arpa.sh): :class:`LmRescorer` replaces each path's
   first-pass LM costs by the second LM's before step 4, into ``<decode-dir>_rescore``.

Deviations: Kaldi's LatticeFasterDecoder applies max-active 7000 during lattice generation;
LatticeSimpleDecoder has no max-active (only the baseline's FasterDecoder uses it); lattices are not
determinised (lattice-determinize-pruned): scoring takes the best path of the raw lattice, which has
the same best path; scoring is Kaldi's compute-wer, not sclite.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ser.eval.error_rate import ErrorCounts
from ser.io.atomic import atomic_write_text
from ser.io.torch_io import load_torch, save_torch

log = logging.getLogger(__name__)

UNK = "<unk>"

__all__ = ["Lattice", "LmRescorer", "decode_job", "best_paths", "read_stm_refs", "score_decode_dir"]


# ------------------------------------------------------------------------------------------
# lattices


class Lattice:
    """A raw lattice as arrays: arcs (src, dst, word, graph cost, acoustic cost) and final costs."""

    def __init__(self, num_states: int, start: int, src, dst, word, graph, ac, final_graph, final_ac) -> None:
        self.num_states, self.start = int(num_states), int(start)
        self.src, self.dst, self.word = (np.asarray(x, np.int64) for x in (src, dst, word))
        self.graph, self.ac = np.asarray(graph, np.float64), np.asarray(ac, np.float64)
        self.final_graph, self.final_ac = np.asarray(final_graph, np.float64), np.asarray(final_ac, np.float64)

    @classmethod
    def from_kaldi(cls, lat) -> "Lattice":
        """From a kaldifst Lattice (graph and acoustic costs of each arc and final state)."""
        from ser.chain.mkgraph import read_vector_fst

        if lat.num_states == 0:
            return cls(0, 0, *([[]] * 7))
        S, start, final, src, dst, _, word, w = read_vector_fst(lat, 2)
        final_ac = np.where(np.isinf(final[:, 0]), 0.0, final[:, 1])
        return cls(S, start, src, dst, word, w[:, 0], w[:, 1], final[:, 0], final_ac)

    def state_dict(self) -> dict:
        return {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in
                ("src", "dst", "word", "graph", "ac", "final_graph", "final_ac")} | {
                "num_states": self.num_states, "start": self.start}

    @classmethod
    def from_state_dict(cls, d: dict) -> "Lattice":
        return cls(d["num_states"], d["start"], *(d[k].numpy() for k in
                   ("src", "dst", "word", "graph", "ac", "final_graph", "final_ac")))

    def levels(self) -> np.ndarray:
        """Level of each state: states of a level have incoming arcs from lower levels only (Kahn's
        algorithm a frontier at a time); a lattice is acyclic."""
        S = self.num_states
        indeg = np.bincount(self.dst, minlength=S)
        order = np.argsort(self.src, kind="stable")
        starts = np.searchsorted(self.src[order], np.arange(S + 1))
        level = np.full(S, -1, dtype=np.int64)
        frontier = np.flatnonzero(indeg == 0)
        n = 0
        while frontier.size:
            level[frontier] = n
            cnt = starts[frontier + 1] - starts[frontier]
            k = int(cnt.sum())
            outs = order[np.repeat(starts[frontier], cnt) + np.arange(k) - np.repeat(np.cumsum(cnt) - cnt, cnt)]
            d = self.dst[outs]
            np.subtract.at(indeg, d, 1)
            frontier = np.unique(d[indeg[d] == 0])
            n += 1
        if (level < 0).any():
            raise ValueError("lattice has a cycle")
        return level


def best_paths(lat: Lattice, lmwts: Sequence[float], wips: Sequence[float]) -> list[list[list[int]]]:
    """Word ids of the best path for every (lmwt, wip): cost lmwt * (graph + wip * #words) + acoustic
    (the ordering of Kaldi's graph + acoustic / lmwt + wip * #words).  Returns [lmwt][wip] lists."""
    lm = np.repeat(np.asarray(lmwts, np.float64), len(wips))
    wp = np.tile(np.asarray(wips, np.float64), len(lmwts))
    K = len(lm)
    S = lat.num_states
    if S == 0:
        return [[[] for _ in wips] for _ in lmwts]
    is_word = (lat.word != 0).astype(np.float64)
    W = lat.graph[:, None] * lm + lat.ac[:, None] + is_word[:, None] * (lm * wp)  # [A, K]
    cost = np.full((S, K), np.inf)
    cost[lat.start] = 0.0
    back = np.full((S, K), -1, dtype=np.int64)
    level = lat.levels()
    arcs = np.lexsort((lat.dst, level[lat.dst]))  # by the level of the arc's end, then by its end
    lv = level[lat.dst[arcs]]
    bounds = np.searchsorted(lv, np.arange(int(level.max()) + 2))
    for n in range(1, len(bounds) - 1):  # level 0: states without incoming arcs
        a = arcs[bounds[n]:bounds[n + 1]]
        if not a.size:
            continue
        cand = cost[lat.src[a]] + W[a]  # [arcs, K]
        d = lat.dst[a]
        g = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])  # first arc of each end state
        best = np.minimum.reduceat(cand, g, axis=0)
        counts = np.diff(np.r_[g, len(a)])
        pos = np.where(cand == np.repeat(best, counts, axis=0), np.arange(len(a))[:, None], len(a))
        first = np.minimum.reduceat(pos, g, axis=0)  # the first arc reaching the minimum
        cost[d[g]] = best
        back[d[g]] = a[first]
    total = cost + (lat.final_graph[:, None] * lm + lat.final_ac[:, None])
    out: list[list[int]] = []
    for k in range(K):
        s = int(np.argmin(total[:, k]))
        words: list[int] = []
        if np.isfinite(total[s, k]):
            while back[s, k] >= 0:
                a = int(back[s, k])
                if lat.word[a]:
                    words.append(int(lat.word[a]))
                s = int(lat.src[a])
        out.append(words[::-1])
    return [out[i * len(wips):(i + 1) * len(wips)] for i in range(len(lmwts))]


class LmRescorer:
    """steps/lmrescore.sh in spirit: on every path, each word's cost under the first-pass LM (and the
    end of sentence's) is replaced by the second LM's; lattice states are split by the word history
    the larger order needs (Kaldi composes the lattice with the negated old G and the new G, which
    splits the same way).  LM scores come from the ARPA files by the backoff rule (ser.chain.word_lm).
    """

    def __init__(self, old_arpa: str | Path, new_arpa: str | Path, symbols: dict[int, str]) -> None:
        from ser.chain.word_lm import read_arpa

        self.old, self.new = read_arpa(old_arpa), read_arpa(new_arpa)
        self.n = max(self.old.order, self.new.order) - 1
        self.sym = symbols
        self._cache: dict[tuple, float] = {}

    def delta(self, h: tuple[str, ...], w: str) -> float:
        """Cost change (natural log) of word ``w`` after history ``h``: ln p_old - ln p_new."""
        from ser.chain.word_lm import arpa_prob

        key = (h, w)
        d = self._cache.get(key)
        if d is None:
            d = self._cache[key] = math.log(10.0) * (arpa_prob(self.old, h, w) - arpa_prob(self.new, h, w))
        return d

    def rescore(self, lat: Lattice) -> Lattice:
        from ser.chain.word_lm import BOS, EOS

        if lat.num_states == 0:
            return lat
        order = np.argsort(lat.src, kind="stable")
        starts = np.searchsorted(lat.src[order], np.arange(lat.num_states + 1))
        ids: dict[tuple[int, tuple[str, ...]], int] = {(lat.start, (BOS,)): 0}
        hists: dict[int, list[tuple[str, ...]]] = {lat.start: [(BOS,)]}
        src, dst, word, graph, ac, fg, fa = [], [], [], [], [], [], []
        for s in np.argsort(lat.levels(), kind="stable").tolist():  # a topological order
            for h in hists.get(s, []):
                me = ids[(s, h)]
                while len(fg) <= me:
                    fg.append(np.inf); fa.append(0.0)
                if np.isfinite(lat.final_graph[s]):
                    fg[me] = lat.final_graph[s] + self.delta(h, EOS)
                    fa[me] = lat.final_ac[s]
                for a in order[starts[s]:starts[s + 1]].tolist():
                    w = int(lat.word[a])
                    g = float(lat.graph[a])
                    nh = h
                    if w:
                        ws = self.sym[w]
                        g += self.delta(h, ws)
                        nh = (h + (ws,))[-self.n:] if self.n else ()
                    d = int(lat.dst[a])
                    key = (d, nh)
                    if key not in ids:
                        ids[key] = len(ids)
                        hists.setdefault(d, []).append(nh)
                    src.append(me); dst.append(ids[key]); word.append(w); graph.append(g); ac.append(float(lat.ac[a]))
        S = len(ids)
        fg += [np.inf] * (S - len(fg)); fa += [0.0] * (S - len(fa))
        return Lattice(S, 0, src, dst, word, graph, ac, fg, fa)


# ------------------------------------------------------------------------------------------
# decoding one job


def _linear_words(fst) -> list[int]:
    import kaldifst

    ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(fst)
    if not ok:
        raise RuntimeError("decoder's best path is not linear")
    return [int(o) for o in olabels]


def job_utts(utts: Sequence[str], num_frames: dict[str, int], job: int, num_jobs: int) -> list[str]:
    """The utterances of job ``job`` (1-based) of ``num_jobs``: longest first onto the least-loaded job,
    so the jobs get about equal frames (utterances without a count weigh 1)."""
    if not 1 <= job <= num_jobs:
        raise ValueError(f"job {job} of {num_jobs}: need 1 <= job <= num_jobs")
    load = [0] * num_jobs
    mine = []
    for u in sorted(utts, key=lambda u: (-num_frames.get(u, 1), u)):
        j = min(range(num_jobs), key=lambda i: (load[i], i))
        load[j] += num_frames.get(u, 1)
        if j == job - 1:
            mine.append(u)
    return sorted(mine)


@torch.no_grad()
def decode_job(model: torch.nn.Module, data_dir: str | Path, ivector_dir: str | Path | None,
               graph_dir: str | Path, out_path: str | Path, beam: float = 15.0, lattice_beam: float = 8.0,
               max_active: int = 7000, device: str = "cpu", post_decode_acwt: float = 10.0, job: int = 1,
               num_jobs: int = 1) -> dict[str, int]:
    """Decode job ``job`` of ``num_jobs`` over the utterances of ``data_dir`` (balanced by frames,
    :func:`job_utts`) -> ``out_path`` (lattices, baseline words).  Deviation: Kaldi splits the data dir
    by speaker (split_data.sh); with precomputed online i-vectors the split changes no result, and a
    balanced one keeps a set with few speakers from leaving one job with most of the work."""
    import kaldi_decoder as kd
    import kaldifst

    from ser.chain.decode import _features
    from ser.io.batching import model_inputs
    from ser.io.datadir import DataDir

    dev = torch.device(device)
    model = model.to(dev).eval()
    hclg_path = Path(graph_dir) / "HCLG.fst"
    if not hclg_path.is_file():
        raise ValueError(f"{graph_dir}: no HCLG.fst (run utils/mkgraph.sh)")
    hclg = kaldifst.StdVectorFst.read(str(hclg_path))
    data = DataDir.load(data_dir)
    frames = data.utt2num_frames() if data.has("utt2num_frames") else {}
    utts = job_utts([u for u in data.utts if u in data.feats], frames, job, num_jobs)
    if not utts:
        raise ValueError(f"{data_dir}: no utterance with features for job {job} of {num_jobs}")
    fs = _features(data_dir, utts, ivector_dir, model)
    lat_dec = kd.LatticeSimpleDecoder(hclg, kd.LatticeSimpleDecoderConfig(beam=beam, lattice_beam=lattice_beam))
    one_best = kd.FasterDecoder(hclg, kd.FasterDecoderOptions(beam=beam, max_active=max_active))
    lats, base, stats = {}, {}, {"utts": 0, "failed": 0, "frames": 0, "lattice_arcs": 0}
    for utt in utts:
        x, iv = model_inputs(fs, [utt], model)
        y = model(x.to(dev), None if iv is None else iv.to(dev), outputs=("output",))["output"][0]
        loglik = y.float().cpu().numpy()  # acoustic scale 1.0
        lat_dec.decode(kd.DecodableCtc(loglik))
        ok, raw = lat_dec.get_raw_lattice()
        if not ok or raw.num_states == 0:
            log.warning("%s: no lattice (no final state reached within the beam)", utt)
            stats["failed"] += 1
            continue
        lat = Lattice.from_kaldi(raw)
        lat.ac *= post_decode_acwt
        lat.final_ac *= post_decode_acwt
        lats[utt] = lat.state_dict()
        one_best.decode(kd.DecodableCtc(np.zeros_like(loglik)))
        ok, bp = one_best.get_best_path()
        base[utt] = _linear_words(bp) if ok else []
        stats["utts"] += 1
        stats["frames"] += loglik.shape[0]
        stats["lattice_arcs"] += lat.src.size
    save_torch({"lattices": lats, "baseline": base}, out_path)
    return stats


# ------------------------------------------------------------------------------------------
# scoring


def read_stm_refs(stm: str | Path) -> dict[str, list[str]]:
    """Reference words per utterance id from a data dir's stm (ser.prep.tedlium's ids and word
    normalisation), ignore_time_segment_in_scoring segments dropped, ``<unk>`` removed."""
    from ser.prep.tedlium import IGNORE, stm_utt_words

    refs: dict[str, list[str]] = {}
    for n, line in enumerate(Path(stm).read_text().splitlines(), 1):
        if not line.strip() or line.startswith(";;"):
            continue
        r = line.split()
        if len(r) < 6:
            raise ValueError(f"{stm}:{n}: not an stm line: {line!r}")
        if IGNORE in r[6:]:
            continue
        utt, words = stm_utt_words(r)
        refs[utt] = [w for w in words if w != UNK]
    if not refs:
        raise ValueError(f"{stm}: no scoreable segments")
    return refs


def _lmwts(min_lmwt: int, max_lmwt: int) -> list[int]:
    if not 0 < min_lmwt <= max_lmwt:
        raise ValueError(f"scoring: bad LM-weight range {min_lmwt}..{max_lmwt}")
    return list(range(min_lmwt, max_lmwt + 1))


def _score(refs: dict[str, list[str]], hyps: dict[str, list[str]]) -> ErrorCounts:
    e = ErrorCounts("WER")
    for utt, ref in refs.items():
        e.add(ref, [w for w in hyps.get(utt, []) if w != UNK])
    return e


def score_decode_dir(decode_dir: str | Path, stm: str | Path, words_txt: str | Path, min_lmwt: int = 7,
                     max_lmwt: int = 17, wips: Sequence[float] = (0.0, 0.5, 1.0), out_dir: str | Path | None = None,
                     rescorer: LmRescorer | None = None, lm_arpa: str | Path | None = None) -> dict[str, str]:
    """Score ``decode_dir/lat.*.pt`` (rescored with ``rescorer`` when given) into ``out_dir`` (default
    ``decode_dir``): wer_LMWT_WIP, wer (best, best_wer.sh's line), scoring/best.txt, and two baselines
    without acoustics: wer_no_acoustics (the graph searched with log-likelihoods 0) and, given the
    first-pass ``lm_arpa``, wer_lm_only (the LM's most likely sentence of each reference's length,
    ser.chain.word_lm.best_sentences).  Returns the best line and the baselines'."""
    from ser.chain.mkgraph import read_symbols

    src_dir = Path(decode_dir)
    d = Path(out_dir) if out_dir is not None else src_dir
    files = sorted(src_dir.glob("lat.*.pt"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    if not files:
        raise ValueError(f"{src_dir}: no lat.*.pt (run the decoding first)")
    sym = {i: w for w, i in read_symbols(words_txt).items()}
    refs = read_stm_refs(stm)
    lmwts = _lmwts(min_lmwt, max_lmwt)
    hyps: dict[tuple[int, float], dict[str, list[str]]] = {(l, w): {} for l in lmwts for w in wips}
    base: dict[str, list[str]] = {}
    for f in files:
        job = load_torch(f, what="lattices", expect_keys=("lattices", "baseline"))
        for utt, sd in job["lattices"].items():
            lat = Lattice.from_state_dict(sd)
            paths = best_paths(lat if rescorer is None else rescorer.rescore(lat), lmwts, wips)
            for i, l in enumerate(lmwts):
                for j, w in enumerate(wips):
                    hyps[(l, w)][utt] = [sym[x] for x in paths[i][j]]
        base.update({u: [sym[x] for x in ws] for u, ws in job["baseline"].items()})
    missing = [u for u in refs if u not in hyps[(lmwts[0], wips[0])]]
    if missing:
        log.warning("%d of %d reference segments have no decoding (scored as deletions), e.g. %s",
                    len(missing), len(refs), missing[0])
    best = None
    for (l, w), h in hyps.items():
        e = _score(refs, h)
        name = f"wer_{l}_{w}"
        atomic_write_text(d / name, e.line() + "\n")
        if best is None or e.errors < best[0].errors:  # best_wer.sh: sort -n, the first lowest
            best = (e, name, h)
    e, name, h = best
    line = f"{e.line()} {d / name}"
    atomic_write_text(d / "wer", line + "\n")
    atomic_write_text(d / "scoring" / "best.txt", "".join(f"{u} {' '.join(h[u])}\n".replace(" \n", "\n")
                                                          for u in sorted(h)))
    eb = _score(refs, base)
    atomic_write_text(d / "wer_no_acoustics", eb.line() + "\n")
    out = {"best": line, "no_acoustics": eb.line()}
    if lm_arpa is not None:
        from ser.chain.word_lm import best_sentences, read_arpa

        guess = best_sentences(read_arpa(lm_arpa), [len(r) for r in refs.values()])
        el = _score(refs, {u: guess[len(r)] for u, r in refs.items()})
        atomic_write_text(d / "wer_lm_only", el.line() + "\n")
        out["lm_only"] = el.line()
    return out
