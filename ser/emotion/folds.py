"""Cross-validation folds of an IEMOCAP set, written as Kaldi data dirs.

``data/<set>/folds/<protocol>/<fold>/{train,valid,test}`` are subsets of ``data/<set>``
(``utils/subset_data_dir.sh``), so every later step reads a fold like any data dir.

Protocols:

* ``session`` -- leave one session out, folds ``Ses01`` ... ``Ses05`` (paper 1, Sec. 4.4; SUPERB,
  EmoBox): the test fold is exactly one session;
* ``speaker`` -- leave one speaker out, folds ``Ses01F``, ``Ses01M``, ... (10 folds; paper 2,
  SpeechBrain's ``different_speakers``): the test fold is exactly one speaker.

Validation: ``num_valid_speakers`` whole speakers drawn, seeded, from the speakers of the
sessions other than the test fold's session, so the validation set never shares a speaker
(or, in the session protocol, a session) with the test fold and model selection never looks
at the test fold.  They are drawn among the speakers holding every class of the set (a
validation UA needs every class; in paper 2's all-agree set a rare class such as ``hap`` may
miss some speakers), or among all of them when too few do (the trainers' fold check then names
the missing class); on a set where every speaker holds every class the draw is the same.  One
speaker is 1/8 of the training speakers (12.5% of the utterances on the real corpus, inside the
10-20% the SUPERB / emotion2vec recipes hold out).  In the speaker protocol the test speaker's
session partner stays in training; SpeechBrain instead uses the partner as the validation speaker --
here the partner's session is the test fold's session, which the validation rule excludes.

The ``final`` split (:func:`write_final_fold`) is the training data of a deployed model: every
session, ``num_valid_speakers`` seeded validation speakers, no test part (issue 14).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ser.io.atomic import atomic_dir
from ser.io.datadir import DataDir, DataDirError

PROTOCOLS = ("session", "speaker")
PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class Fold:
    """One fold: sorted utterance lists of its three parts."""

    name: str
    train: list[str]
    valid: list[str]
    test: list[str]

    def part(self, name: str) -> list[str]:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]


def _sessions(d: DataDir) -> dict[str, str]:
    """utt -> session; every utterance must have one (``utt2session`` of stage 1)."""
    if not d.has("utt2session"):
        raise DataDirError(f"{d.path}: no utt2session (made by local/prepare_iemocap.py)")
    u2s = d.extra("utt2session")
    missing = [u for u in d.utts if u not in u2s]
    if missing:
        raise DataDirError(f"{d.path}/utt2session: no session for utterance {missing[0]!r}")
    return u2s


def make_folds(d: DataDir, protocol: str = "session", num_valid_speakers: int = 1,
               seed: int = 0) -> list[Fold]:
    """The folds of ``protocol`` over the utterances of ``d`` (see the module docstring)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; protocols are {', '.join(PROTOCOLS)}")
    u2sess = _sessions(d)
    spk_sess: dict[str, str] = {}
    for u, s in d.utt2spk.items():
        if spk_sess.setdefault(s, u2sess[u]) != u2sess[u]:
            raise DataDirError(f"{d.path}: speaker {s!r} appears in sessions {spk_sess[s]} and "
                               f"{u2sess[u]} (utterance {u!r})")
    key = (lambda u: u2sess[u]) if protocol == "session" else (lambda u: d.utt2spk[u])
    complete = complete_speakers(d)
    folds = []
    for name in sorted({key(u) for u in d.utts}):
        test_sessions = {u2sess[u] for u in d.utts if key(u) == name}
        candidates = sorted(s for s, sess in spk_sess.items() if sess not in test_sessions)
        if len(candidates) <= num_valid_speakers:
            raise ValueError(f"{d.path}: fold {name} has {len(candidates)} speakers outside the "
                             f"test session(s); cannot hold out {num_valid_speakers} for validation")
        rng = random.Random(f"{seed}:{protocol}:{name}")
        valid_spk = set(rng.sample(_eligible(candidates, complete, num_valid_speakers), num_valid_speakers))
        test = [u for u in d.utts if key(u) == name]
        valid = [u for u in d.utts if d.utt2spk[u] in valid_spk]
        train = [u for u in d.utts if d.utt2spk[u] in set(candidates) - valid_spk]
        if protocol == "speaker":  # the test speaker's partner trains (see docstring)
            train = sorted(set(train) | {u for u in d.utts if u2sess[u] in test_sessions
                                         and key(u) != name})
        folds.append(Fold(name, train, valid, test))
    return folds


def complete_speakers(d: DataDir) -> set[str]:
    """The speakers of ``d`` with an utterance of every class of its ``utt2emo`` (all, without one)."""
    if not d.has("utt2emo"):
        return set(d.utt2spk.values())
    emo = d.extra("utt2emo")
    classes = set(emo.values())
    have: dict[str, set] = {}
    for u, s in d.utt2spk.items():
        have.setdefault(s, set()).add(emo.get(u))
    return {s for s, c in have.items() if classes <= c}


def _eligible(candidates: list[str], complete: set[str], num_valid_speakers: int) -> list[str]:
    """The validation candidates holding every class, or all of them when fewer than
    ``num_valid_speakers`` do (module docstring)."""
    full = [s for s in candidates if s in complete]
    return full if len(full) >= num_valid_speakers else candidates


def data_digest(d: DataDir) -> str:
    """sha256 (16 hex digits) of every table a fold copies from ``d`` (utt2spk, utt2emo, utt2session,
    wav.scp, feats.scp, ...): a label-only change to utt2emo makes other folds, hence other trainings."""
    segs = None if d.segments is None else {u: f"{s.reco} {s.start!r} {s.end!r}" for u, s in d.segments.items()}
    tables = {"utt2spk": d.utt2spk, "wav.scp": d.wav, "segments": segs, "text": d.text, "feats.scp": d.feats,
              **d.extras}
    h = hashlib.sha256()
    for name in sorted(tables):
        h.update(f"== {name}\n".encode())
        h.update("".join(f"{k} {v}\n" for k, v in sorted((tables[name] or {}).items())).encode())
    return h.hexdigest()[:16]


def _options(d: DataDir, protocol: str, num_valid_speakers: int, seed: int) -> dict:
    """What a written split depends on (kept in its folds.json): the options and all the data's tables."""
    return {"protocol": protocol, "num_valid_speakers": num_valid_speakers, "seed": seed,
            "valid_speakers_from": "speakers with every class", "data_sha256": data_digest(d)}


def write_folds(data_dir: str | Path, protocol: str = "session", num_valid_speakers: int = 1,
                seed: int = 0) -> Path:
    """Write ``<data_dir>/folds/<protocol>/<fold>/{train,valid,test}`` and ``folds.json``
    (options, counts); an existing copy made from the same data and options is kept."""
    d = DataDir.load(data_dir)
    out = Path(data_dir) / "folds" / protocol
    opts = _options(d, protocol, num_valid_speakers, seed)
    if folds_up_to_date(out, opts):
        return out
    folds = make_folds(d, protocol, num_valid_speakers, seed)
    with atomic_dir(out) as tmp:
        for f in folds:
            for part in PARTS:
                d.subset(f.part(part)).write(tmp / f.name / part, replace=True)
        info = dict(opts, folds={f.name: {p: len(f.part(p)) for p in PARTS} for f in folds})
        (tmp / "folds.json").write_text(json.dumps(info, indent=1) + "\n")
    return out


def folds_up_to_date(out: Path, opts: dict, parts: tuple[str, ...] = PARTS) -> bool:
    """Complete (every part of every listed fold present) and made with ``opts``."""
    try:
        info = json.loads((out / "folds.json").read_text())
    except (OSError, ValueError):
        return False
    if any(info.get(k) != v for k, v in opts.items()):
        return False
    return all((out / f / p / "utt2spk").is_file() for f in info.get("folds", {}) for p in parts)


def write_final_fold(data_dir: str | Path, num_valid_speakers: int = 1, seed: int = 0) -> Path:
    """Write ``<data_dir>/folds/final/all/{train,valid}`` and ``folds.json`` (with the validation
    speakers): every utterance, ``num_valid_speakers`` whole speakers drawn seeded for validation;
    an existing copy made from the same data and options is kept."""
    d = DataDir.load(data_dir)
    out = Path(data_dir) / "folds" / "final"
    opts = _options(d, "final", num_valid_speakers, seed)
    speakers = sorted(set(d.utt2spk.values()))
    if len(speakers) <= num_valid_speakers:
        raise ValueError(f"{data_dir}: {len(speakers)} speakers; cannot hold out {num_valid_speakers} for validation")
    if folds_up_to_date(out, opts, ("train", "valid")):
        return out
    valid_spk = set(random.Random(f"{seed}:final").sample(
        _eligible(speakers, complete_speakers(d), num_valid_speakers), num_valid_speakers))
    parts = {"train": [u for u in d.utts if d.utt2spk[u] not in valid_spk],
             "valid": [u for u in d.utts if d.utt2spk[u] in valid_spk]}
    with atomic_dir(out) as tmp:
        for name, utts in parts.items():
            d.subset(utts).write(tmp / "all" / name, replace=True)
        info = dict(opts, folds={"all": {k: len(v) for k, v in parts.items()}},
                    valid_speakers=sorted(valid_spk))
        (tmp / "folds.json").write_text(json.dumps(info, indent=1) + "\n")
    return out


def read_fold_names(folds_dir: str | Path) -> list[str]:
    """Fold names of a written protocol dir, in order."""
    p = Path(folds_dir) / "folds.json"
    try:
        return list(json.loads(p.read_text())["folds"])
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{p}: cannot read the fold list ({e})") from e


def check_fold(parts: dict[str, DataDir], classes: list[str] | None = None, where: str | None = None) -> None:
    """A fold's parts (``train``, ``valid``, ``test``; any present) share no speaker, and, given
    ``classes``, its train and valid parts hold every class: otherwise a one-line error naming the fold."""
    names = sorted(parts)
    spk = {n: set(parts[n].utt2spk.values()) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(spk[a] & spk[b])
            if both:
                raise DataDirError(f"{where or parts[a].path}: speaker {both[0]!r} is in both {a} and {b} "
                                   f"({len(both)} shared speaker(s)); a fold's parts must not share speakers")
    for n in ("train", "valid"):
        if classes is None or n not in parts or not parts[n].has("utt2emo"):
            continue
        emo = parts[n].extra("utt2emo")
        have = {emo.get(u) for u in parts[n].utts}
        lacking = [c for c in classes if c not in have]
        if lacking:
            raise DataDirError(f"{parts[n].path}/utt2emo: no utterance of class {lacking[0]!r} "
                               f"({', '.join(lacking)} missing from the {n} part)")


def load_fold(fold_dir: str | Path, classes: list[str] | None = None) -> dict[str, DataDir]:
    """The parts of a written fold, checked (:func:`check_fold`)."""
    fd = Path(fold_dir)
    parts = {n: DataDir.load(fd / n) for n in PARTS if (fd / n / "utt2spk").is_file()}
    check_fold(parts, classes, str(fd))
    return parts


def utt2class(d: DataDir, classes: list[str]) -> dict[str, int]:
    """utt -> index in ``classes`` of its ``utt2emo`` label; a label outside ``classes`` is an error."""
    emo = d.extra("utt2emo")
    out = {}
    for u in d.utts:
        if u not in emo or emo[u] not in classes:
            raise ValueError(f"{d.path}/utt2emo: utterance {u!r} has label {emo.get(u)!r}, not one "
                             f"of {' '.join(classes)}")
        out[u] = classes.index(emo[u])
    return out
