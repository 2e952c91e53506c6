"""TED-LIUM (release 2, or release 3's ``legacy/`` split) → Kaldi data dirs.

Mirrors egs/tedlium/s5_r2/local/prepare_data.sh and its helpers:

* stm lines of each set are merged and sorted (``sort -k1,1 -k2,2 -k4,4n``),
  ``<F0_M>``/``<F0_F>`` become ``<o,f0,male>``/``<o,f0,female>``, ``(2)``-style
  variant marks, ``<sil>`` and trailing ``(uttname)`` are removed, the channel
  becomes ``A`` and ``x 's`` is joined to ``x's`` (local/join_suffix.py, which
  joins unconditionally); the result is the data dir's ``stm`` for scoring.
* ``text``: lines other than ``ignore_time_segment_in_scoring``; utterance id
  ``<talk>-<start*100 %07d>-<end*100 %07d>`` with awk's truncation (so 0.29 s
  becomes 28), ``{NOISE}`` → ``[NOISE]``; segment times come back from the id.
* train only: utils/data/extend_segment_times.py ``--start-padding 0.15
  --end-padding 0.1`` (start floored at 0, end capped at the recording's last
  end + 0.1, overlaps meet at their midpoint).
* wav.scp: ``<talk> sph2pipe -f wav -p <abs path> |`` (read by ser.io.audio
  without needing sph2pipe); reco2file_and_channel; a dummy glm.
* run.sh's ``utils/data/modify_speaker_info.sh --seconds-per-spk-max 180``:
  pseudo-speakers ``<talk>-<k>`` of consecutive utterances totalling ≤ 180 s.

A set whose data dir carries a stamp of the same corpus files (stm contents, sph names, sizes and
times) and options is not prepared again (ser.io.stamp).

Deviation: utterances whose transcript is empty after normalisation are skipped
(counted and logged); they carry nothing for LF-MMI training or scoring.  A talk whose
stm has no segments is dropped, counted and logged.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections import Counter
from pathlib import Path

from ser.io.datadir import STAMP, DataDir, DataDirError, Segment, modify_speaker_info, up_to_date
from ser.io.stamp import Stamp, listing
from ser.io.text import read_lines

log = logging.getLogger(__name__)

STM_HEADER = (
    ';; LABEL "o" "Overall" "Overall results"\n'
    ';; LABEL "f0" "f0" "Wideband channel"\n'
    ';; LABEL "f2" "f2" "Telephone channel"\n'
    ';; LABEL "male" "Male" "Male Talkers"\n'
    ';; LABEL "female" "Female" "Female Talkers"\n'
)
IGNORE = "ignore_time_segment_in_scoring"


def set_dir(corpus: Path, name: str) -> Path:
    """Release 2: ``<corpus>/<set>``; release 3: ``<corpus>/legacy/<set>`` (the r2 split)."""
    for d in (corpus / name, corpus / "legacy" / name):
        if (d / "stm").is_dir() and (d / "sph").is_dir():
            return d
    raise DataDirError(f"{corpus}: no {name}/{{stm,sph}} (nor legacy/{name}) — is this TEDLIUM_release2 or TEDLIUM_release-3?")


def _join_suffix(words: list[str]) -> list[str]:
    out: list[str] = []
    for w in words:
        if out and w.startswith("'"):
            out[-1] += w
        else:
            out.append(w)
    return out


def read_stm(sdir: Path, stats: Counter) -> list[list[str]]:
    """Normalised stm records [file, 'A', spk, start, end, label, *words], sorted as Kaldi sorts them."""
    recs: list[tuple[tuple, list[str]]] = []
    files = sorted(sdir.glob("*.stm"))
    if not files:
        raise DataDirError(f"{sdir}: no .stm files")
    for f in files:
        n_before = len(recs)
        for n, line in enumerate(read_lines(f, DataDirError), 1):
            if not line.strip() or line.startswith(";;"):
                continue
            line = line.replace("<F0_M>", "<o,f0,male>").replace("<F0_F>", "<o,f0,female>")
            line = re.sub(r"\([0-9]\)", "", line).replace("<sil>", "")
            line = re.sub(r"\([^ ]*\)$", "", line.rstrip())
            fields = line.split()
            if len(fields) < 6:
                raise DataDirError(f"{f}:{n}: expected '<file> <channel> <speaker> <start> <end> <label> words', got {line!r}")
            try:
                t0, t1 = float(fields[3]), float(fields[4])
            except ValueError as e:
                raise DataDirError(f"{f}:{n}: bad times {fields[3]!r} {fields[4]!r}") from e
            if not t1 > t0:
                raise DataDirError(f"{f}:{n}: end time {t1} not after start {t0}")
            fields[1] = "A"
            rec = fields[:6] + _join_suffix(fields[6:])
            recs.append(((fields[0], fields[1], t0), rec))
        if len(recs) == n_before:
            log.warning("%s: no segments; talk %s dropped", f, f.stem)
            stats["empty_stm_talks_dropped"] += 1
    recs.sort(key=lambda r: r[0])
    return [r for _, r in recs]


def _centi(t: str) -> int:
    return int(float(t) * 100)  # awk printf %d truncates the float product, quirks included


def stm_utt_words(r: list[str]) -> tuple[str, list[str]]:
    """(utterance id, words) of an stm record as the data dir has them (``{NOISE}`` -> ``[NOISE]``);
    the word scorer (ser.chain.decode_wer) matches its references to decoded utterances with it."""
    words = " ".join(r[6:]).translate(str.maketrans("{}", "[]")).split()
    return f"{r[0]}-{_centi(r[3]):07d}-{_centi(r[4]):07d}", words


def stm_to_datadir(recs: list[list[str]], sph_dir: Path, stats: Counter) -> DataDir:
    utt2spk, text, segs, wav = {}, {}, {}, {}
    for r in recs:
        if IGNORE in r[6:]:
            stats["ignore_time_segment_in_scoring"] += 1
            continue
        utt, words = stm_utt_words(r)
        a, b = _centi(r[3]), _centi(r[4])
        if not words:
            log.warning("stm %s %s %s: empty transcript; skipped", r[0], r[3], r[4])
            stats["empty_transcript_skipped"] += 1
            continue
        if utt in text:
            raise DataDirError(f"duplicate utterance id {utt} (two stm lines of {r[0]} with the same times)")
        sph = sph_dir / f"{r[0]}.sph"
        if not sph.is_file():
            raise DataDirError(f"{sph}: missing audio for talk {r[0]} (utterance {utt})")
        wav[r[0]] = f"sph2pipe -f wav -p {shlex.quote(str(sph.resolve()))} |"  # quoted: paths may hold spaces
        text[utt] = " ".join(words)
        segs[utt] = Segment(r[0], a / 100, b / 100)
        utt2spk[utt] = r[0]
    if not text:
        raise DataDirError(f"{sph_dir.parent}: no usable stm segments")
    return DataDir(utt2spk=utt2spk, wav=wav, segments=segs, text=text)


def extend_segment_times(segs: dict[str, Segment], start_padding: float, end_padding: float,
                         last_segment_end_padding: float = 0.1) -> int:
    """utils/data/extend_segment_times.py, in place; returns the number of overlaps fixed."""
    by_reco: dict[str, list[Segment]] = {}
    for s in segs.values():
        by_reco.setdefault(s.reco, []).append(s)
    fixed = 0
    for ss in by_reco.values():
        ss.sort(key=lambda s: 0.5 * (s.start + s.end))
        max_time = max(s.end for s in ss) + last_segment_end_padding
        for s in ss:
            s.start = max(0.0, s.start - start_padding)
            s.end = min(max_time, s.end + end_padding)
        for a, b in zip(ss, ss[1:]):
            if a.end > b.start:
                a.end = b.start = 0.5 * (a.end + b.start)
                fixed += 1
    return fixed


def prepare_tedlium(corpus: str | Path, data_root: str | Path, sets=("train", "dev", "test"),
                    seconds_per_spk_max: float = 180.0) -> dict[str, Counter]:
    corpus, data_root = Path(corpus), Path(data_root)
    if not corpus.is_dir():
        raise DataDirError(f"TED-LIUM directory not found: {corpus}")
    out = {}
    for name in sets:
        stats: Counter = Counter()
        sdir = set_dir(corpus, name)
        dst = data_root / f"tedlium_{name}"
        stamp = Stamp(dst / STAMP, {"prepare": "tedlium", "corpus": str(sdir.resolve()),
                                    "seconds_per_spk_max": seconds_per_spk_max, "sph": listing(sdir / "sph", "*.sph")},
                      sorted((sdir / "stm").glob("*.stm")))
        if up_to_date(stamp):
            d = DataDir.load(dst)
            out[name] = Counter(up_to_date=1, utterances=len(d.utts), speakers=len(d.spk2utt), recordings=len(d.wav))
            log.info("%s is up to date (same corpus files and options); not preparing it again", dst)
            continue
        recs = read_stm(sdir / "stm", stats)
        d = stm_to_datadir(recs, sdir / "sph", stats)
        if name == "train":
            stats["overlaps_fixed"] = extend_segment_times(d.segments, 0.15, 0.1)
        if d.segments is None:
            raise DataDirError("modify_speaker_info: needs segments for durations")
        d.utt2spk = modify_speaker_info(d.utt2spk, seconds_per_spk_max=seconds_per_spk_max,
                                        utt2dur={u: seg.end - seg.start for u, seg in d.segments.items()})
        d.extras["reco2file_and_channel"] = {r: f"{r} A" for r in d.wav}
        d.validate(need_text=True)
        d.write(dst, replace=True, files={
            "stm": STM_HEADER + "".join(" ".join(r) + "\n" for r in recs),
            "glm": ";; empty.glm\n  [FAKE]     =>  %HESITATION     / [ ] __ [ ] ;; hesitation token\n",
            STAMP: stamp.text()})
        stamp.committed()
        stats["utterances"] = len(d.utts)
        stats["speakers"] = len(d.spk2utt)
        stats["recordings"] = len(d.wav)
        out[name] = stats
        log.info("tedlium_%s: %s", name, dict(stats))
    return out
