"""Combine short segments of a data dir with features (Kaldi's utils/data/combine_short_segments.sh).

Chain training cuts chunks of at least the smallest chunk width (plus context) out of each
utterance and drops every utterance that is shorter; Kaldi's recipes therefore concatenate
consecutive short segments of the ASR training data at the feature level until each group
lasts at least ``min_seg_len`` (1.55 s in tedlium s5_r2 and most chain recipes).  Grouping
follows ``egs/wsj/s5/utils/data/internal/choose_utts_to_combine.py``:

* per speaker, in spk2utt order, each short group (popped from the end of a queue) joins its
  left or right neighbour group: the one that brings it to the minimum if only one does,
  otherwise the shorter neighbour (right if it alone stays short, left on ties of "both
  reach it" only when the left one is strictly shorter);
* then the per-speaker groups are combined the same way across speakers, for speakers whose
  whole data is shorter than the minimum; such a group goes to the speaker contributing the
  most duration;
* a group of several utterances is named ``<first-utt>-comb<N>``; its features are the
  concatenation of its members' (Kaldi writes ``concat-feats`` pipes into feats.scp, we write
  the concatenated matrices to an ark); its text is the members' texts joined; utt2dur and
  utt2num_frames are the sums; utt2uniq groups are merged as Kaldi's (so held-out validation
  data stays disjoint from training data); wav.scp, segments and other per-utterance tables
  are not carried (as in Kaldi, whose output is validated with ``--no-wav``).

Durations come from ``segments`` (end - start), else ``utt2dur``, else ``utt2num_frames``
times the 10 ms frame shift.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser.io.datadir import DataDir, DataDirError
from ser.io.tables import ArkScpWriter, read_matrix

log = logging.getLogger(__name__)

__all__ = ["combine_list", "utterance_groups", "CombineInfo", "combine_short_segments"]

FRAME_SHIFT = 0.01  # seconds (Kaldi's default --frame-shift)


def _less(x: float, y: float) -> bool:
    """x < y, impervious to round-off (Kaldi's LessThan)."""
    return x < y - 1.0e-5


def _merge_side(i: int, start: list[int], end: list[int], dur: list[float], min_dur: float) -> bool | None:
    """Whether group ``i`` joins its left neighbour (True), its right one (False), or neither
    (None: it is the only group)."""
    n = len(start)
    left = dur[start[i - 1]] if i > 0 else 0.0
    right = dur[end[i]] if end[i] < n else 0.0
    this = dur[i]
    if left == 0.0 and right == 0.0:
        return None
    if left == 0.0:
        return False
    if right == 0.0:
        return True
    if _less(left + this, min_dur):
        return False
    if _less(right + this, min_dur):
        return True
    return _less(left, right)


def combine_list(min_duration: float, durations: list[float]) -> list[tuple[int, int]]:
    """Kaldi's CombineList: consecutive index ranges [start, end) whose total durations reach
    ``min_duration`` (all in one range when their sum does not)."""
    if min_duration < 0 or not durations or min(durations) <= 0:
        raise ValueError("combine_list: needs min_duration >= 0 and positive durations")
    n = len(durations)
    start, end, dur = list(range(n)), [i + 1 for i in range(n)], list(durations)
    queue = [i for i in range(n) if _less(dur[i], min_duration)]
    while queue:
        i = queue.pop()
        if start[i] != i or not _less(dur[i], min_duration):
            continue
        side = _merge_side(i, start, end, dur, min_duration)
        if side is None:
            break
        if side:  # join the group on the left
            s = start[i - 1]
            end[s] = end[i]
            for j in range(i, end[i]):
                start[j] = s
                dur[s] += durations[j]
        else:  # absorb the group on the right
            old_end = end[i]
            end[i] = end[old_end]
            for j in range(old_end, end[i]):
                dur[i] += durations[j]
                start[j] = i
            if _less(dur[i], min_duration):
                queue.append(i)
    ranges, s = [], 0
    while s < n:
        ranges.append((s, end[s]))
        s = end[s]
    return ranges


def utterance_groups(min_duration: float, spk2utt: dict[str, list[str]],
                     utt2dur: dict[str, float]) -> list[list[str]]:
    """Groups of consecutive utterances: within each speaker first, then across speakers."""
    groups: list[list[str]] = []
    durs: list[float] = []
    for spk, utts in spk2utt.items():
        d = [utt2dur[u] for u in utts]
        for s, e in combine_list(min_duration, d):
            groups.append(list(utts[s:e]))
            durs.append(sum(d[s:e]))
    out = []
    for s, e in combine_list(min_duration, durs):
        out.append([u for g in groups[s:e] for u in g])
    return out


def _durations(d: DataDir) -> dict[str, float]:
    if d.segments is not None:
        return {u: s.end - s.start for u, s in d.segments.items()}
    if d.has("utt2dur"):
        return {u: float(v) for u, v in d.extra("utt2dur").items()}
    if d.has("utt2num_frames"):
        return {u: int(v) * FRAME_SHIFT for u, v in d.extra("utt2num_frames").items()}
    raise DataDirError(f"{d.path}: no segments, utt2dur or utt2num_frames for the durations")


def _group_speaker(group: list[str], utt2spk: dict[str, str], utt2dur: dict[str, float]) -> str:
    """The speaker contributing the most duration (the first such on ties)."""
    spk_dur: dict[str, float] = defaultdict(float)
    for u in group:
        spk_dur[utt2spk[u]] += utt2dur[u]
    return max(spk_dur, key=lambda s: spk_dur[s])


def _merged_uniq(groups: list[list[str]], utt2uniq: dict[str, str]) -> dict[str, str]:
    """Old uniq -> merged uniq: uniq values that share a group map to the smallest one."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for g in groups:
        roots = sorted({find(utt2uniq[u]) for u in g})
        for r in roots[1:]:
            parent[r] = roots[0]
    return {q: find(q) for q in parent}


@dataclass
class CombineInfo:
    """What a combination did (for the log)."""

    utts_in: int
    utts_out: int
    combined_groups: int
    short_in: int  # input utterances under the minimum
    short_out: int  # output utterances still under it (a speaker set shorter than the minimum)
    frames: int


def combine_short_segments(src: str | os.PathLike, min_seg_len: float, dst: str | os.PathLike,
                           ark: str | os.PathLike) -> CombineInfo:
    """Write data dir ``dst``: ``src`` with short segments combined; the concatenated features
    go to ``ark`` (singletons keep their feats.scp entry)."""
    if not 0.0 < min_seg_len < 100.0:
        raise ValueError(f"combine_short_segments: bad minimum segment length {min_seg_len}")
    d = DataDir.load(src)
    if not d.feats or set(d.feats) != set(d.utt2spk):
        raise DataDirError(f"{src}: every utterance needs features (feats.scp) to be combined")
    utt2dur = _durations(d)
    groups = utterance_groups(min_seg_len, d.spk2utt, utt2dur)
    names = [g[0] if len(g) == 1 else f"{g[0]}-comb{len(g)}" for g in groups]
    out = DataDir(utt2spk={n: _group_speaker(g, d.utt2spk, utt2dur) for n, g in zip(names, groups)})
    frames = {}
    with ArkScpWriter(ark, Path(ark).with_suffix(".scp")) as w:
        for n, g in zip(names, groups):
            if len(g) == 1:
                out.feats[n] = d.feats[g[0]]
                frames[n] = int(read_matrix(d.feats[g[0]]).shape[0]) if not d.has("utt2num_frames") \
                    else int(d.extra("utt2num_frames")[g[0]])
                continue
            mat = np.concatenate([read_matrix(d.feats[u]) for u in g], axis=0)
            w.write(n, mat)
            frames[n] = int(mat.shape[0])
    scp = {k: v for k, v in (line.split(maxsplit=1) for line in
                             Path(ark).with_suffix(".scp").read_text().splitlines())}
    out.feats.update(scp)
    if d.text:
        out.text = {n: " ".join(d.text[u] for u in g if d.text.get(u)) for n, g in zip(names, groups)}
    out.extras["utt2num_frames"] = {n: str(frames[n]) for n in names}
    out.extras["utt2dur"] = {n: f"{sum(utt2dur[u] for u in g):.3f}" for n, g in zip(names, groups)}
    if d.has("utt2uniq"):
        uniq = d.extra("utt2uniq")
        merged = _merged_uniq(groups, uniq)
        out.extras["utt2uniq"] = {n: merged[uniq[g[0]]] for n, g in zip(names, groups)}
    out.validate(need_feats=True)
    out.write(dst, replace=True)
    short_out = sum(1 for g in groups if _less(sum(utt2dur[u] for u in g), min_seg_len))
    return CombineInfo(len(d.utt2spk), len(groups), sum(1 for g in groups if len(g) > 1),
                       sum(1 for u in d.utt2spk if _less(utt2dur[u], min_seg_len)), short_out,
                       sum(frames.values()))
