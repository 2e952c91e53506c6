"""Stage 5 graph preparation for flat-start LF-MMI (steps/chain/prepare_e2e.sh).

Mirrors the graph part of egs/wsj/s5/local/chain/e2e/run_tdnn_flatstart.sh and
steps/nnet3/chain/e2e/prepare_e2e.sh:
  text -> text_to_phones (--between-silprob 0.1) -> chain-est-phone-lm
  (--num-extra-lm-states 2000) -> phone_lm; tree-free pdf map (gmm-init-mono /
  gmm-init-biphone [--tie]); chain-make-den-fst -> den.fst + initial probs;
  compile-train-graphs + normalization -> one numerator graph per utterance.

Outputs in <out dir> (all written atomically; a re-run with the same inputs and options
reuses them):
  phone_lm.fst.txt   phone LM, OpenFst text (labels = phone ids of <lang>/phones.txt)
  phone_stats.txt    biphone/monophone counts ("left right count" / "phone count"; biphone)
  pdf_map.pt         {"kind", "table"[left, phone, class] -> pdf, "num_pdfs"}; pdf_map.txt readable
  num_pdfs           the number of pdfs
  den.pt             ChainGraph.state_dict() + num_pdfs, fst_start, fst_final, init_probs
  den.fst.txt        den FST, OpenFst text acceptor, labels pdf-id+1, weights -log p
  num.pt             {"frame_subsampling_factor": int, "num_output_frames": {utt: int},
                      "graphs": {utt: ChainGraph.state_dict()}}   (ser.chain.chain_dir reads them)
  skipped.txt        "<utt> <reason>" for utterances without a numerator graph
  info.txt           sizes
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path

import numpy as np

from ser.chain.chain_dir import ChainDir
from ser.chain.den_graph import DenGraph, create_den_fsa
from ser.chain.graph import ChainGraph
from ser.chain.lang import Lang, text_to_phones
from ser.chain.phone_lm import PhoneLmEstimator
from ser.chain.supervision import Normalizer, make_supervision
from ser.chain.topo import PdfMap, biphone_stats
from ser.io.atomic import atomic_write_text
from ser.io.stamp import digest, file_digest
from ser.io.torch_io import save_torch
from ser.progress import progress

log = logging.getLogger(__name__)


def _load_data(data_dir: str | Path) -> tuple[dict[str, str], dict[str, int]]:
    from ser.io.datadir import DataDir

    d = DataDir.load(data_dir, validate=False)
    if not d.text:
        raise ValueError(f"{data_dir}: no text file")
    if d.has("utt2num_frames"):
        frames = d.utt2num_frames()
    elif d.feats:
        from ser.io.tables import read_matrix

        frames = {u: int(read_matrix(r).shape[0]) for u, r in progress(d.feats.items(), desc="frames", leave=False)}
    else:
        raise ValueError(f"{data_dir}: need utt2num_frames or feats.scp for the numerator graphs")
    return d.text, frames


def prepare_e2e(data_dir: str | Path, lang_dir: str | Path, out_dir: str | Path, type: str = "biphone",
                tie: bool = True, min_biphone_count: int = 100, min_monophone_count: int = 20,
                ngram_order: int = 4, no_prune_ngram_order: int = 3, num_extra_lm_states: int = 2000,
                edge_silprob: float = 0.8, between_silprob: float = 0.1, frame_subsampling_factor: int = 3,
                seed: int = 0, num_graphs: bool = True) -> dict:
    """Phone LM, pdf map and den graph, then (``num_graphs``) the numerator graphs, into ``out_dir``
    (see the module docstring); each part is reused when its inputs and options are unchanged.
    Without ``num_graphs`` no num.pt is made (and an old one is removed): the recipe's egs jobs
    (steps/chain/get_egs.sh --lang) compile each utterance's numerator themselves."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lang = Lang.load(lang_dir)
    text, frames = _load_data(data_dir)
    utts = sorted(text)
    words = {u: text[u].split() for u in utts}
    lang_hash = file_digest(Path(lang_dir) / "lexiconp.txt") + file_digest(Path(lang_dir) / "phones.txt")
    den_stamp = digest("den", lang_hash, sorted(words.items()), type, tie, min_biphone_count, min_monophone_count,
                        ngram_order, no_prune_ngram_order, num_extra_lm_states, edge_silprob, between_silprob, seed,
                        lang.sil_prob)
    num_stamp = digest("num", den_stamp, sorted(frames.items()), frame_subsampling_factor)
    stamp_file = out / "den.stamp"
    if stamp_file.is_file() and stamp_file.read_text().strip() == den_stamp and (out / "den.pt").is_file() \
            and (out / "pdf_map.pt").is_file():
        log.info("reusing %s/den.pt and pdf_map.pt", out)
        chain = ChainDir.load(out)
        den, pdf_map, info = chain.den_fst, chain.pdf_map, {}
        if (out / "info.json").is_file():
            info.update(json.loads((out / "info.json").read_text()).get("den", {}))
    else:
        rng = random.Random(seed)
        seqs = [text_to_phones(words[u], lang, rng, edge_silprob, between_silprob) for u in utts]
        pdf_map = _make_pdf_map(seqs, lang, out, type, tie, min_biphone_count, min_monophone_count)
        _, info = _make_den_graph(seqs, pdf_map, lang, out, ngram_order, no_prune_ngram_order,
                                  num_extra_lm_states)
        # the numerators are normalised with den.pt as written (float32 weights), as when it is reused:
        # a run resumed after den.pt gives the numerators of an uninterrupted run
        den = ChainDir.load(out).den_fst
        atomic_write_text(stamp_file, den_stamp + "\n")
    log.info("phone LM %s states / %s arcs (train perplexity %s); %d pdfs (%s); den graph %d states, %d arcs",
             info.get("phone_lm_states"), info.get("phone_lm_arcs"), info.get("phone_lm_perplexity"),
             pdf_map.num_pdfs, pdf_map.kind, den.num_states, den.num_arcs)
    if not num_graphs:
        for f in ("num.pt", "num.stamp", "skipped.txt"):
            (out / f).unlink(missing_ok=True)
        atomic_write_text(out / "info.txt", json.dumps({"den": info}, indent=1) + "\n")
        return {"den": info}
    graphs, skipped = _numerator_graphs(utts, words, frames, lang, pdf_map, den, out, num_stamp,
                                        frame_subsampling_factor)
    info_all = {"den": info, "num": _num_info(utts, graphs, skipped, out)}
    atomic_write_text(out / "info.txt", json.dumps(info_all, indent=1) + "\n")
    return info_all


def _make_pdf_map(seqs: list[list[int]], lang: Lang, out: Path, type: str, tie: bool, min_biphone_count: int,
                  min_monophone_count: int) -> PdfMap:
    """gmm-init-mono / gmm-init-biphone [--tie]: pdf_map.pt, pdf_map.txt, num_pdfs (and phone_stats.txt)."""
    if type == "mono":
        pdf_map = PdfMap.mono(lang.num_phones, lang.sets)
    elif type == "biphone":
        bi = mono = None
        if tie:
            bi, mono = biphone_stats(seqs, lang.num_phones, lang.sets)
            lines = [f"{a} {b} {bi[a, b]}" for a in range(lang.num_phones + 1)
                     for b in range(1, lang.num_phones + 1) if bi[a, b]]
            lines += [f"{p} {mono[p]}" for p in range(1, lang.num_phones + 1) if mono[p]]
            atomic_write_text(out / "phone_stats.txt", "\n".join(lines) + "\n")
        pdf_map = PdfMap.biphone(lang.num_phones, lang.sets, [], bi, mono, min_biphone_count,
                                 min_monophone_count)
    else:
        raise ValueError(f"--type must be mono or biphone, got {type!r}")
    save_torch(pdf_map.state_dict(), out / "pdf_map.pt")
    atomic_write_text(out / "pdf_map.txt", pdf_map.to_text(lang.phones))
    atomic_write_text(out / "num_pdfs", f"{pdf_map.num_pdfs}\n")
    return pdf_map


def _make_den_graph(seqs: list[list[int]], pdf_map: PdfMap, lang: Lang, out: Path, ngram_order: int,
                    no_prune_ngram_order: int, num_extra_lm_states: int) -> tuple[DenGraph, dict]:
    """chain-est-phone-lm + chain-make-den-fst: phone_lm.fst.txt, den.pt, den.fst.txt, info.json."""
    est = PhoneLmEstimator(ngram_order, no_prune_ngram_order, num_extra_lm_states)
    for s in seqs:
        est.add_counts(s)
    lm = est.estimate()
    atomic_write_text(out / "phone_lm.fst.txt", lm.to_openfst_text())
    den = DenGraph(create_den_fsa(lm, pdf_map), pdf_map.num_pdfs)
    den.save(out)
    info = {"phone_lm_states": lm.num_states, "phone_lm_arcs": lm.num_arcs,
            "phone_lm_perplexity": round(est.perplexity, 4), "num_pdfs": pdf_map.num_pdfs,
            "pdfs_in_den": int(len(np.unique(den.fsa.label))), "den_states": den.num_states,
            "den_arcs": den.num_arcs}
    atomic_write_text(out / "info.json", json.dumps({"den": info}, indent=1) + "\n")
    return den, info


def _numerator_graphs(utts: list[str], words: dict[str, list[str]], frames: dict[str, int], lang: Lang,
                      pdf_map: PdfMap, den: DenGraph, out: Path, num_stamp: str,
                      frame_subsampling_factor: int) -> tuple[dict[str, ChainGraph], dict[str, str]]:
    """compile-train-graphs + normalization: num.pt and skipped.txt (reused when up to date)."""
    nstamp_file = out / "num.stamp"
    if nstamp_file.is_file() and nstamp_file.read_text().strip() == num_stamp and (out / "num.pt").is_file():
        log.info("reusing %s/num.pt", out)
        skipped = {}
        if (out / "skipped.txt").is_file():
            for line in (out / "skipped.txt").read_text().split("\n"):
                if line.strip():
                    u, r = line.split(" ", 1)
                    skipped[u] = r
        return ChainDir.load(out).num_graphs.graphs, skipped
    norm = Normalizer(den)
    graphs, nof, skipped = {}, {}, {}
    for u in progress(utts, desc="numerator graphs", disable=len(utts) < 200):
        if u not in frames:
            skipped[u] = "no frame count"
            continue
        r = make_supervision(words[u], frames[u], lang, pdf_map, norm, frame_subsampling_factor)
        if r.graph is None:
            skipped[u] = r.reason + (f" ({r.num_output_frames} output frames < {r.min_length})"
                                     if r.reason == "too short" else "")
            continue
        graphs[u] = r.graph
        nof[u] = r.num_output_frames
    save_torch({"frame_subsampling_factor": frame_subsampling_factor, "num_output_frames": nof,
                "graphs": {u: g.state_dict() for u, g in graphs.items()}}, out / "num.pt")
    atomic_write_text(out / "skipped.txt", "".join(f"{u} {r}\n" for u, r in sorted(skipped.items())))
    atomic_write_text(nstamp_file, num_stamp + "\n")
    return graphs, skipped


def _num_info(utts: list[str], graphs: dict[str, ChainGraph], skipped: dict[str, str], out: Path) -> dict:
    reasons = Counter(r.split(" (")[0] for r in skipped.values())
    ns = [g.num_states for g in graphs.values()]
    na = [g.num_arcs for g in graphs.values()]
    num_info = {"utterances": len(utts), "graphs": len(graphs), "skipped": dict(reasons),
                "num_states_mean": round(float(np.mean(ns)), 1) if ns else 0,
                "num_arcs_mean": round(float(np.mean(na)), 1) if na else 0}
    for reason, c in reasons.items():
        log.warning("skipped %d utterances: %s (see %s/skipped.txt)", c, reason, out)
    log.info("numerator graphs: %d of %d utterances; mean %.1f states, %.1f arcs", len(graphs), len(utts),
             num_info["num_states_mean"], num_info["num_arcs_mean"])
    return num_info

