"""Phone decoding with the chain model: Viterbi through the denominator graph, phone error rate.

A stand-in for Kaldi's decoding (``steps/nnet3/decode.sh --acwt 1.0`` on HCLG, scored with
``compute-wer``/sclite): this recipe has no word-level HCLG, so the chain model is scored
at the phone level:

1. the nnet output (``output``, no log-softmax) of each utterance, computed on the whole
   utterance with its edges padded by repetition (Kaldi ExtractRowRangeWithPadding) and the
   online i-vector of every frame (row ``t // ivector_period``);
2. the best path (max-product Viterbi, acoustic scale 1.0 as in the chain recipe) through
   the **denominator graph** -- phone LM x left-biphone context x chain HMM -- taken as an
   FST: start at its start state, its final weights at the end (``den.pt``'s fst_start /
   fst_final), arc weight ``log p + y(t, pdf)``;
3. pdf sequence -> phones: a phone starts at every frame whose pdf is of pdf-class 0 (the
   chain topology's first frame; later frames use class 1), the phone being the pdf's
   central phone (``PdfMap``); silence phones (SIL, NSN) are dropped;
4. the reference phones: each word's first pronunciation in the lang's lexicon (OOVs: the
   OOV word's, i.e. NSN), silences dropped;
5. Levenshtein alignment; ``per.txt`` is written like Kaldi's compute-wer:
   ``%PER 23.45 [ 123 / 525, 10 ins, 20 del, 93 sub ]``.

Baselines without acoustics, written next to it: ``per_lm_only.txt`` = the same Viterbi
with an all-zero nnet output (the phone LM / HMM's most likely pdf sequence of that
length), and ``per_most_frequent.txt`` = the most frequent reference phone of the training
text repeated as many times as the reference has phones (an oracle length).

Deviations: phone level, not words; no lattice, beam or LM rescoring (exact Viterbi over
the whole graph); the i-vector of every frame instead of one per 51-frame chunk.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ser.chain.chain_dir import ChainDir
from ser.chain.lang import Lang
from ser.chain.topo import PdfMap
from ser.chain.viterbi import viterbi
from ser.eval.error_rate import ErrorCounts
from ser.io.atomic import atomic_write_text
from ser.io.batching import FeatureSet, load_features, model_inputs

log = logging.getLogger(__name__)

__all__ = ["pdf_phone_tables", "pdfs_to_phones", "reference_phones", "decode_data_dir"]


# ----------------------------------------------------------------------------------------
# pdfs -> phones, references, alignment


def pdf_phone_tables(pdf_map: PdfMap) -> tuple[np.ndarray, np.ndarray]:
    """(central phone of each pdf, pdf-class of each pdf).  A pdf shared by several central
    phones (a tied "zerophone" pair) gets the lowest phone id, with a warning."""
    phone = np.full(pdf_map.num_pdfs, -1, dtype=np.int64)
    cls = np.full(pdf_map.num_pdfs, -1, dtype=np.int64)
    shared = 0
    t = pdf_map.table
    for p in range(1, t.shape[1]):
        for c in (0, 1):
            for pdf in np.unique(t[:, p, c]):
                if pdf < 0:
                    continue
                if phone[pdf] == -1:
                    phone[pdf], cls[pdf] = p, c
                elif phone[pdf] != p:
                    shared += 1
    if shared:
        log.warning("%d pdfs are shared by several central phones; they decode as the lowest "
                    "phone id", shared)
    return phone, cls


def pdfs_to_phones(pdf_seq: Sequence[int], phone_of: np.ndarray, class_of: np.ndarray,
                   drop: set[int] = frozenset()) -> list[int]:
    """Phones of a frame-level pdf sequence: a phone starts at each pdf-class-0 frame (and at
    the first frame, or where a class-1 pdf belongs to another phone)."""
    out: list[int] = []
    cur = -1
    for i, p in enumerate(pdf_seq):
        ph, c = int(phone_of[p]), int(class_of[p])
        if c == 0 or i == 0 or ph != cur:
            out.append(ph)
        cur = ph
    return [p for p in out if p not in drop]


def reference_phones(words: Sequence[str], lang: Lang, drop: set[int] = frozenset()) -> list[int]:
    """First lexicon pronunciation of each word (OOV: the OOV word's), ``drop`` removed."""
    out: list[int] = []
    for w in words:
        out.extend(lang.prons(w)[0][1])
    return [p for p in out if p not in drop]


# ----------------------------------------------------------------------------------------
# decoding a data dir


def _most_frequent_phone(texts: dict[str, str], lang: Lang, drop: set[int]) -> int:
    """The most frequent reference phone of ``texts`` (silence when there is none)."""
    counts: Counter = Counter()
    for words in texts.values():
        counts.update(reference_phones(words.split(), lang, drop))
    return counts.most_common(1)[0][0] if counts else lang.sil_id


def _read_text(path: str | Path) -> dict[str, str]:
    return {l.split(" ", 1)[0]: (l.split(" ", 1) + [""])[1]
            for l in Path(path).read_text().splitlines() if l.strip()}


def _features(data_dir: str | Path, utts: list[str], ivector_dir: str | Path | None, model) -> FeatureSet:
    """Features (and, if the model takes them, online i-vectors) of every utterance to decode."""
    if model.config.ivector_dim and ivector_dir is None:
        raise ValueError("this model needs i-vectors: give --online-ivector-dir")
    fs = load_features(data_dir, ivector_dir if model.config.ivector_dim else None, utts, lazy=True)  # per utterance
    lost = [u for u in utts if u not in fs.feats]
    if lost:
        raise ValueError(f"{ivector_dir}: no usable i-vectors for utterance {lost[0]} ({len(lost)} utterances)")
    return fs


@torch.no_grad()
def decode_data_dir(model: torch.nn.Module, data_dir: str | Path, ivector_dir: str | Path | None,
                    chain_dir: str | Path, lang_dir: str | Path, out_dir: str | Path,
                    train_text: str | Path | None = None, device: str = "cpu") -> dict[str, ErrorCounts]:
    """Decode every utterance of ``data_dir`` with text and features (see the module
    docstring); writes hyp.txt, ref.txt, per.txt, per_lm_only.txt, per_most_frequent.txt."""
    from ser.io.datadir import DataDir

    dev = torch.device(device)
    model = model.to(dev).eval()
    lang = Lang.load(lang_dir)
    chain = ChainDir.load(chain_dir)
    graph = chain.decoding_graph.to(dev)
    phone_of, class_of = pdf_phone_tables(chain.pdf_map)
    drop = {lang.phone_id[p] for p in lang.silence}
    data = DataDir.load(data_dir)
    if not data.text or not data.feats:
        raise ValueError(f"{data_dir}: need text and feats.scp to decode")
    utts = [u for u in data.utts if u in data.text and u in data.feats]
    if not utts:
        raise ValueError(f"{data_dir}: no utterance with both text and features")
    fs = _features(data_dir, utts, ivector_dir, model)
    top = _most_frequent_phone(data.text if train_text is None else _read_text(train_text), lang, drop)
    stats = {name: ErrorCounts("PER") for name in ("model", "lm_only", "most_frequent")}
    hyp_lines, ref_lines = [], []
    for utt in utts:
        x, iv = model_inputs(fs, [utt], model)  # the whole utterance, i-vector of every frame
        y = model(x.to(dev), None if iv is None else iv.to(dev), outputs=("output",))["output"].float()
        ref = reference_phones(data.text[utt].split(), lang, drop)
        paths, _ = viterbi(y, graph)
        zero_paths, _ = viterbi(torch.zeros_like(y), graph)
        hyp = pdfs_to_phones(paths[0], phone_of, class_of, drop)
        stats["model"].add(ref, hyp)
        stats["lm_only"].add(ref, pdfs_to_phones(zero_paths[0], phone_of, class_of, drop))
        stats["most_frequent"].add(ref, [top] * len(ref))
        hyp_lines.append(f"{utt} {' '.join(lang.phones[p] for p in hyp)}")
        ref_lines.append(f"{utt} {' '.join(lang.phones[p] for p in ref)}")
    out = Path(out_dir)
    atomic_write_text(out / "hyp.txt", "\n".join(hyp_lines) + "\n")
    atomic_write_text(out / "ref.txt", "\n".join(ref_lines) + "\n")
    for name, file in (("model", "per.txt"), ("lm_only", "per_lm_only.txt"), ("most_frequent", "per_most_frequent.txt")):
        atomic_write_text(out / file, stats[name].line() + "\n")
    return stats
