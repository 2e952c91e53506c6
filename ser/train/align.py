"""Alignment of training utterances with a chain model: Viterbi through the numerator graphs.

Mirrors what Kaldi's ``steps/nnet3/align.sh`` does for a chain model
(``nnet3-align-compiled`` with ``--use-gpu``, acoustic scale 1.0 for chain models, the
training graphs of ``compile-train-graphs``): the best path through each utterance's
numerator graph given the network output, read out as one pdf per output frame (the
subsampled frame rate) and turned into a phone segmentation, written as ``ali.pt``.

* the best path: ``ser.chain.viterbi.viterbi_batch`` over the batch's numerator graphs
  appended into one (sequences of different lengths);
* Phones: the chain topology emits pdf-class 0 on a phone's first frame and pdf-class 1
  after (ser.chain.topo), so class-0 frames start phones.  The phone of each segment is the
  one whose biphone pdfs ``table[left, phone, class]`` reproduce the segment's pdfs given the
  previous segment's phone (a small consistency DP; with tied pdfs, e.g. the shared
  "zerophone" of ``--tie``, several phones can fit and the lowest id is taken: any choice
  reproduces exactly the aligned pdfs).

Deviations from Kaldi: the graphs are the normalised numerator graphs of stage 5 (den-graph
weights included, i.e. a phone-LM prior on the path; Kaldi's training graphs carry the
lexicon/silence probabilities at transition-scale 0), no beam (exact Viterbi), alignment at
the output frame rate (Kaldi's chain alignments are also at the subsampled rate), and the
i-vectors are given per frame (row t // ivector_period, online) rather than per 50-frame
decoding chunk.

ali.pt: ``{"frame_subsampling_factor": int, "num_pdfs": int, "phones": {utt: int32 [T_out]},
"pdfs": {utt: int32 [T_out]}, "phone_start": {utt: bool [T_out]}, "logprob": {utt: float}}``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ser.chain.graph import ChainGraph
from ser.chain.numerator import NumeratorGraphBatch
from ser.chain.topo import PdfMap
from ser.chain.viterbi import viterbi_batch
from ser.io.batching import load_features, model_inputs
from ser.io.torch_io import load_torch, save_torch
from ser.progress import progress

log = logging.getLogger(__name__)

__all__ = ["pdf_classes", "pdfs_to_phones", "Segments", "Alignment", "align_data"]


def pdf_classes(pdf_map: PdfMap) -> np.ndarray:
    """pdf-class (0 = first frame of a phone, 1 = self-loop) of every pdf of the map."""
    cls = np.full(pdf_map.num_pdfs, -1, dtype=np.int64)
    for c in (0, 1):
        ids = np.unique(pdf_map.table[:, 1:, c])
        ids = ids[ids >= 0]
        if (cls[ids] == 1 - c).any():
            raise ValueError("pdf_classes: a pdf is used with both pdf-classes; phone starts are ambiguous")
        cls[ids] = c
    return cls


def pdfs_to_phones(pdfs: np.ndarray, pdf_map: PdfMap, classes: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(phone id per frame int32 [T], phone-start flag bool [T]) of an aligned pdf sequence."""
    pdfs = np.asarray(pdfs, dtype=np.int64)
    T = len(pdfs)
    if T == 0:
        return np.zeros(0, np.int32), np.zeros(0, bool)
    classes = pdf_classes(pdf_map) if classes is None else classes
    starts = classes[pdfs] == 0
    if not starts[0]:
        raise ValueError("pdfs_to_phones: the first frame is not a phone start (pdf-class 0)")
    seg_start = np.flatnonzero(starts)
    seg_end = np.append(seg_start[1:], T)
    table = pdf_map.table
    n_ph = table.shape[0]
    reach = np.zeros(n_ph, bool)
    reach[0] = True  # "left context" of the first phone: utterance start
    back = []
    for a, b in zip(seg_start.tolist(), seg_end.tolist()):
        m = table[:, :, 0] == pdfs[a]
        if b - a > 1:
            loop = pdfs[a + 1:b]
            if (loop != loop[0]).any():
                raise ValueError(f"pdfs_to_phones: frames {a}..{b - 1} mix self-loop pdfs of different phones")
            m &= table[:, :, 1] == loop[0]
        m[:, 0] = False
        m &= reach[:, None]
        new = m.any(0)
        if not new.any():
            raise ValueError(f"pdfs_to_phones: no phone sequence reproduces pdfs at frames {a}..{b - 1}")
        back.append(np.argmax(m, axis=0))  # a consistent left phone for each reachable phone
        reach = new
    seg_phone = np.zeros(len(seg_start), np.int64)
    p = int(np.argmax(reach))
    for k in range(len(seg_start) - 1, -1, -1):
        seg_phone[k] = p
        p = int(back[k][p])
    phones = np.repeat(seg_phone, seg_end - seg_start).astype(np.int32)
    return phones, starts


@dataclass
class Segments:
    phones: np.ndarray  # int64 [N] phone id of each aligned phone
    starts: np.ndarray  # int64 [N] first output frame
    ends: np.ndarray  # int64 [N] one past the last output frame
    num_frames: int


class Alignment:
    """Per-utterance phone alignment at the output frame rate (ali.pt)."""

    def __init__(self, phones: Mapping[str, torch.Tensor], phone_start: Mapping[str, torch.Tensor],
                 pdfs: Mapping[str, torch.Tensor] | None = None, logprob: Mapping[str, float] | None = None,
                 frame_subsampling_factor: int = 3, num_pdfs: int = 0) -> None:
        self.phones = dict(phones)
        self.phone_start = dict(phone_start)
        self.pdfs = dict(pdfs or {})
        self.logprob = dict(logprob or {})
        self.frame_subsampling_factor = int(frame_subsampling_factor)
        self.num_pdfs = int(num_pdfs)
        for u, p in self.phones.items():
            s = self.phone_start.get(u)
            if s is None or s.numel() != p.numel() or (p.numel() and not bool(s[0])):
                raise ValueError(f"alignment of {u!r}: phone_start missing, of the wrong length or not starting a phone")

    def __len__(self) -> int:
        return len(self.phones)

    def segments(self, utt: str) -> Segments:
        p = self.phones[utt].numpy().astype(np.int64)
        st = np.flatnonzero(self.phone_start[utt].numpy())
        en = np.append(st[1:], len(p))
        return Segments(p[st], st.astype(np.int64), en.astype(np.int64), len(p))

    def state_dict(self) -> dict:
        return {"frame_subsampling_factor": self.frame_subsampling_factor, "num_pdfs": self.num_pdfs,
                "phones": self.phones, "phone_start": self.phone_start, "pdfs": self.pdfs,
                "logprob": {u: float(v) for u, v in self.logprob.items()}}

    def save(self, path: str | Path) -> None:
        save_torch(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> "Alignment":
        d = load_torch(path, what="alignment (ali.pt of steps/chain/align.sh)",
                       expect_keys=("phones", "phone_start", "frame_subsampling_factor"))
        return cls(d["phones"], d["phone_start"], d.get("pdfs"), d.get("logprob"), d["frame_subsampling_factor"],
                   d.get("num_pdfs", 0))


@torch.no_grad()
def align_data(model: torch.nn.Module, data, graphs: Mapping[str, ChainGraph], pdf_map: PdfMap,
               out_path: str | Path | None = None, utts: Sequence[str] | None = None,
               max_batch_frames: int = 20000, device: str | torch.device = "cpu") -> Alignment:
    """Align the utterances of ``data`` (ser.io.batching.FeatureSet) that have a numerator graph with
    ``model`` (a TdnnfModel: ``left_context``, ``right_context``, ``frame_subsampling_factor``,
    output "output"); batches of length-sorted utterances of at most ``max_batch_frames``
    input frames; writes ``out_path`` (ali.pt) atomically if given.  Utterances without a
    path are logged and left out."""
    fsf = int(model.frame_subsampling_factor)
    lc, rc = int(model.left_context), int(model.right_context)
    cand = sorted(data.utts) if utts is None else list(utts)
    todo = [u for u in cand if u in graphs]
    if len(todo) < len(cand):
        log.warning("align: %d utterances have no numerator graph; skipped", len(cand) - len(todo))
    classes = pdf_classes(pdf_map)
    todo.sort(key=lambda u: data.num_frames(u))
    batches, cur, cur_max = [], [], 0
    for u in todo:
        t_in = data.num_frames(u) + 2 + lc + rc
        if cur and max(cur_max, t_in) * (len(cur) + 1) > max_batch_frames:
            batches.append(cur)
            cur, cur_max = [], 0
        cur.append(u)
        cur_max = max(cur_max, t_in)
    if cur:
        batches.append(cur)
    was_training = model.training
    model.eval()
    phones, starts, pdf_out, scores = {}, {}, {}, {}
    failed = []
    tot_frames, tot_score = 0, 0.0
    try:
        for batch in progress(batches, desc="align", disable=len(batches) < 5, leave=False):
            n_out = (data.feats.lengths[data.utt_index(batch)] + fsf - 1) // fsf
            x, iv = model_inputs(data, batch, model)  # per-frame online i-vectors
            y = model(x.to(device), None if iv is None else iv.to(device), outputs=("output",))["output"]
            num = NumeratorGraphBatch.from_graphs([graphs[u] for u in batch]).to(device)
            best, paths = viterbi_batch(y.float(), num, n_out)
            for u, s, path in zip(batch, best.tolist(), paths):
                if path.numel() == 0:
                    failed.append(u)
                    continue
                ph, st = pdfs_to_phones(path.numpy(), pdf_map, classes)
                phones[u] = torch.from_numpy(ph)
                starts[u] = torch.from_numpy(st)
                pdf_out[u] = path.to(torch.int32)
                scores[u] = s
                tot_frames += path.numel()
                tot_score += s
    finally:
        model.train(was_training)
    if failed:
        log.warning("align: no path for %d utterances (e.g. %s)", len(failed), failed[0])
    log.info("aligned %d utterances, %d output frames, average best-path log-score %.3f per frame",
             len(phones), tot_frames, tot_score / max(tot_frames, 1))
    ali = Alignment(phones, starts, pdf_out, scores, fsf, pdf_map.num_pdfs)
    if out_path is not None:
        ali.save(out_path)
    return ali

