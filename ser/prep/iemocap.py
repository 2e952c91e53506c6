"""IEMOCAP_full_release → Kaldi data dirs for emotion recognition.

Reads ``Session{1..5}/dialog/EmoEvaluation/<dialog>.txt`` (consensus and
per-annotator labels), ``dialog/transcriptions/<dialog>.txt`` (text) and
``sentences/wav/<dialog>/<turn>.wav`` (audio), as s3prl / SpeechBrain / EmoBox do,
and writes

``iemocap_all``        every turn with audio: ``utt2emo`` (raw consensus code,
                       incl. xxx/fru/...), ``utt2session`` (Ses01..Ses05),
                       ``utt2type`` (impro|script), ``utt2votes`` (categorical
                       annotator votes, e.g. ``C-E2=neu C-E3=neu+fru C-F1=neu``),
                       ``text``, ``spk2gender``;
``iemocap_4cls_exc``   ang, exc→hap, neu, sad; ``hap`` dropped (paper 1: 4936 turns);
``iemocap_4cls_hapexc`` ang, hap+exc→hap, neu, sad (the common 5531 set);
``iemocap_agree``      every turn (scripted and improvised) whose consensus is
                       ang/hap/neu/sad and where **every external evaluator line
                       (``C-E*``)** names exactly that one category (paper 2's "all
                       annotators agree"; the actors' self-assessments
                       ``C-F1``/``C-M1`` are not annotators and do not count): the
                       set paper 2's Table 1 counts (500 / 94 / 467 / 392 ang / hap /
                       sad / neu; 500 ang cannot come from the 289 improvised ang turns);
``iemocap_impro_agree`` its improvised turns (paper 2's Section 5 and abstract say
                       improvised only); the README's "Fidelity" notes.

Speaker = session + the first letter of the last ``_`` token of the turn id
(``Ses03M_impro05a_F012`` → ``Ses03F``): positional parsing breaks on the
``impro05a/b`` and ``script01_1b`` dialogs.  Kaldi requires speaker ids to be
prefixes of utterance ids, so utterance ids are ``<speaker>-<turn id>``
(``Ses01F-Ses01M_impro01_F000``); the turn id is everything after the first ``-``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ser.io.datadir import STAMP, DataDir, DataDirError, up_to_date
from ser.io.stamp import Stamp, listing
from ser.io.text import read_lines

log = logging.getLogger(__name__)

LABELS = {"ang", "hap", "exc", "sad", "neu", "fru", "fea", "sur", "dis", "oth", "xxx"}
CATEGORY = {  # annotator category names → consensus codes
    "neutral": "neu", "happiness": "hap", "excited": "exc", "sadness": "sad", "anger": "ang",
    "frustration": "fru", "surprise": "sur", "fear": "fea", "other": "oth", "disgust": "dis",
}
FOUR = ("ang", "hap", "neu", "sad")

_SUMMARY = re.compile(r"^\[(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]\s*$")
_CAT = re.compile(r"^(C-[A-Za-z]+\d*):\s*(.*?)\s*(?:\(.*\))?\s*$")
_TRANS = re.compile(r"^(\S+) \[(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\]:\s?(.*)$")


@dataclass
class Turn:
    turn: str
    dialog: str
    session: str
    speaker: str
    emo: str
    start: float
    end: float
    votes: dict[str, list[str]] = field(default_factory=dict)
    text: str = ""
    wav: Path | None = None

    @property
    def utt(self) -> str:
        return f"{self.speaker}-{self.turn}"

    @property
    def type(self) -> str:
        return "impro" if "_impro" in self.turn else "script"

    @property
    def evaluators_agree(self) -> bool:
        ev = [v for k, v in self.votes.items() if k.startswith("C-E")]
        return bool(ev) and all(v == [self.emo] for v in ev)


def speaker_of(turn: str) -> str:
    """Session + first letter of the last ``_`` token: Ses03M_impro05a_F012 → Ses03F."""
    m = re.match(r"^(Ses\d\d)[FM]_.*_([FM])[^_]*$", turn)
    if not m:
        raise DataDirError(f"cannot parse speaker from turn id {turn!r}")
    return m.group(1) + m.group(2)


def _lines(path: Path) -> list[str]:
    return read_lines(path, DataDirError)


def _category(name: str, where: str) -> str:
    key = name.strip().lower().split()[0] if name.strip() else ""
    if key not in CATEGORY:
        raise DataDirError(f"{where}: unknown emotion category {name!r}")
    return CATEGORY[key]


def parse_emo_evaluation(path: Path) -> list[Turn]:
    turns: list[Turn] = []
    for n, line in enumerate(_lines(path), 1):
        where = f"{path}:{n}"
        if not line.strip() or line.startswith("%"):
            continue
        m = _SUMMARY.match(line)
        if m:
            t0, t1, turn, emo = float(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
            if emo not in LABELS:
                raise DataDirError(f"{where}: unknown label {emo!r} for {turn}")
            turns.append(Turn(turn, path.stem, turn[:5], speaker_of(turn), emo, t0, t1))
            continue
        if line.startswith("["):  # dropping it would give its annotator lines to the previous turn
            raise DataDirError(f"{where}: malformed turn line (expected '[start - end] turn label [v, a, d]'): "
                               f"{line.strip()!r}")
        m = _CAT.match(line)
        if m:
            if not turns:
                raise DataDirError(f"{where}: annotator line before any turn")
            cats = [c for c in m.group(2).split(";") if c.strip()]
            turns[-1].votes[m.group(1)] = sorted({_category(c, f"{where} ({turns[-1].turn})") for c in cats})
        elif line.startswith("C-"):  # dropping it would drop a vote (and change who agrees)
            raise DataDirError(f"{where}: malformed annotator line (expected 'C-<who>:<tab><category>; ...'): "
                               f"{line.strip()!r}")
    return turns


def parse_transcriptions(path: Path, stats: Counter) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _lines(path):
        m = _TRANS.match(line.strip())
        if not m:
            stats["transcription_lines_not_turns"] += 1
            continue
        out[m.group(1)] = " ".join(m.group(4).split())
    return out


SESSIONS = (1, 2, 3, 4, 5)


def session_dirs(corpus: Path, sessions: Sequence[int] | None = None) -> list[Path]:
    """``Session<n>`` folders of ``sessions`` (default all five).  A missing one is an error: silently
    preparing four sessions would make leave-one-session-out run four folds."""
    present = sorted(p.name for p in corpus.glob("Session[1-5]") if p.is_dir())
    if not present:
        raise DataDirError(f"{corpus}: no Session1..5 folders — is this IEMOCAP_full_release?")
    want = SESSIONS if sessions is None else tuple(sessions)
    if not want or len(set(want)) != len(want) or not set(want) <= set(SESSIONS):
        raise DataDirError(f"IEMOCAP sessions must be distinct numbers 1..5, got {list(want)}")
    missing = [f"Session{n}" for n in want if f"Session{n}" not in present]
    if missing:
        hint = "" if sessions is not None else " (to use fewer, name them: corpora.iemocap_sessions / --sessions)"
        raise DataDirError(f"{corpus}: {', '.join(missing)} missing (found {', '.join(present)}){hint}")
    return [corpus / f"Session{n}" for n in sorted(want)]


def read_corpus(corpus: Path, stats: Counter, sessions: Sequence[int] | None = None) -> list[Turn]:
    seen: dict[str, Path] = {}
    turns: list[Turn] = []
    for s in session_dirs(corpus, sessions):
        n_before = len(turns)
        evdir = s / "dialog" / "EmoEvaluation"
        files = sorted(f for f in evdir.glob("*.txt") if f.is_file() and not f.name.startswith("."))
        if not files:
            raise DataDirError(f"{evdir}: no EmoEvaluation .txt files")
        for f in files:
            trans_file = s / "dialog" / "transcriptions" / f.name
            trans = parse_transcriptions(trans_file, stats) if trans_file.is_file() else {}
            if not trans_file.is_file():
                log.warning("%s: missing; turns of %s get empty text", trans_file, f.stem)
                stats["missing_transcription_files"] += 1
            for t in parse_emo_evaluation(f):
                if t.turn in seen:
                    raise DataDirError(f"{f}: duplicate turn id {t.turn} (also in {seen[t.turn]})")
                seen[t.turn] = f
                wav = s / "sentences" / "wav" / t.dialog / f"{t.turn}.wav"
                if not wav.is_file():
                    log.warning("%s: no audio %s; turn skipped", t.turn, wav)
                    stats["no_audio_skipped"] += 1
                    continue
                t.wav = wav.resolve()
                t.text = trans.get(t.turn, "")
                if not t.text:
                    stats["empty_text"] += 1
                turns.append(t)
        if len(turns) == n_before:
            raise DataDirError(f"{s}: no turns with audio")
    return turns


def _datadir(turns: list[Turn], label=lambda t: t.emo) -> DataDir:
    d = DataDir(
        utt2spk={t.utt: t.speaker for t in turns},
        wav={t.utt: str(t.wav) for t in turns},
        text={t.utt: t.text for t in turns},
    )
    d.extras["utt2emo"] = {t.utt: label(t) for t in turns}
    d.extras["utt2session"] = {t.utt: t.session for t in turns}
    d.extras["utt2type"] = {t.utt: t.type for t in turns}
    d.extras["utt2votes"] = {
        t.utt: " ".join(f"{k}={'+'.join(v)}" for k, v in sorted(t.votes.items())) or "-" for t in turns
    }
    d.extras["spk2gender"] = {t.speaker: t.speaker[-1].lower() for t in turns}
    return d


SUBSETS = {
    "iemocap_4cls_exc": (lambda t: t.emo in ("ang", "exc", "neu", "sad"), lambda t: "hap" if t.emo == "exc" else t.emo),
    "iemocap_4cls_hapexc": (lambda t: t.emo in ("ang", "hap", "exc", "neu", "sad"), lambda t: "hap" if t.emo == "exc" else t.emo),
    "iemocap_agree": (lambda t: t.emo in FOUR and t.evaluators_agree, lambda t: t.emo),
    "iemocap_impro_agree": (lambda t: t.type == "impro" and t.emo in FOUR and t.evaluators_agree, lambda t: t.emo),
}


def prepare_iemocap(corpus: str | Path, data_root: str | Path, sessions: Sequence[int] | None = None) -> dict[str, Counter]:
    """Write the five data dirs from ``sessions`` (default: all five, each must be there).

    All five are built before any is written; dirs stamped with the same corpus files (EmoEvaluation
    and transcription contents, wav names, sizes and times) and sessions are not prepared again."""
    corpus, data_root = Path(corpus), Path(data_root)
    if not corpus.is_dir():
        raise DataDirError(f"IEMOCAP directory not found: {corpus}")
    sdirs = session_dirs(corpus, sessions)
    texts = [f for s in sdirs for sub in ("EmoEvaluation", "transcriptions") for f in sorted((s / "dialog" / sub).glob("*.txt"))]
    stamp_of = lambda name: Stamp(data_root / name / STAMP, {
        "prepare": "iemocap", "corpus": str(corpus.resolve()), "sessions": [s.name for s in sdirs],
        "wav": [listing(s / "sentences" / "wav", "*/*.wav") for s in sdirs]}, texts)
    names = ["iemocap_all", *SUBSETS]
    if all(up_to_date(stamp_of(n)) for n in names):
        log.info("%s: up to date (same corpus files and sessions); not preparing again", ", ".join(names))
        return {n: Counter(DataDir.load(data_root / n).extra("utt2emo").values()) + Counter(up_to_date=1)
                for n in names}
    stats: Counter = Counter()
    turns = read_corpus(corpus, stats, sessions)
    dirs = {"iemocap_all": _datadir(turns)}
    for name, (keep, label) in SUBSETS.items():
        sel = [t for t in turns if keep(t)]
        if not sel:
            raise DataDirError(f"{corpus}: {name} would be empty")
        dirs[name] = _datadir(sel, label)
    out = {}
    for name, d in dirs.items():
        d.validate()
        stamp = stamp_of(name)
        d.write(data_root / name, replace=True, files={STAMP: stamp.text()})
        stamp.committed()
        out[name] = Counter(d.extras["utt2emo"].values()) + (stats if name == "iemocap_all" else Counter())
    for k, v in out.items():
        log.info("%s: %d utterances %s", k, sum(c for l, c in v.items() if l in LABELS), dict(v))
    return out
