"""Leave-one-speaker-out (and leave-one-session-out) folds as Kaldi data dirs, INTERFACES.md §5:
``data/<set>/folds/<protocol>/<fold>/{train,valid,test}``, subsets of ``data/<set>``.

TODO(interfaces): stand-in for stage 7's ``ser.emotion.folds`` / ``steps/ser/make_folds.sh`` (branch
emotion, not on main yet); delete this module, ``ser/bin/make_speaker_folds.py`` and its wrapper when that
lands and call ``steps/ser/make_folds.sh`` in local/ctc/run_paper2.sh.  Same rule as stage 7's, so the folds
are the same: the test fold is one speaker (``speaker``) or one session (``session``); validation is one
whole speaker drawn, seeded by ``"<seed>:<protocol>:<fold>"``, from the sessions other than the test
fold's; in the speaker protocol the test speaker's session partner stays in training.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ser.io.atomic import atomic_dir
from ser.io.datadir import DataDir, DataDirError

PARTS = ("train", "valid", "test")


def make_folds(d: DataDir, protocol: str, seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """{fold: {part: sorted utterances}} of ``d`` (see the module docstring)."""
    if protocol not in ("session", "speaker"):
        raise ValueError(f"unknown protocol {protocol!r}; protocols are session, speaker")
    if not d.has("utt2session"):
        raise DataDirError(f"{d.path}: no utt2session (made by local/prepare_iemocap.sh)")
    sess = d.extra("utt2session")
    spk_sess = {d.utt2spk[u]: sess[u] for u in d.utts}
    key = (lambda u: sess[u]) if protocol == "session" else (lambda u: d.utt2spk[u])
    folds = {}
    for name in sorted({key(u) for u in d.utts}):
        test_sessions = {sess[u] for u in d.utts if key(u) == name}
        candidates = sorted(s for s, ss in spk_sess.items() if ss not in test_sessions)
        if len(candidates) < 2:
            raise ValueError(f"{d.path}: fold {name}: {len(candidates)} speakers outside its session(s)")
        valid_spk = set(random.Random(f"{seed}:{protocol}:{name}").sample(candidates, 1))
        test = [u for u in d.utts if key(u) == name]
        valid = [u for u in d.utts if d.utt2spk[u] in valid_spk]
        train = [u for u in d.utts if d.utt2spk[u] not in valid_spk and key(u) != name
                 and (protocol == "speaker" or sess[u] not in test_sessions)]
        folds[name] = {"train": sorted(train), "valid": sorted(valid), "test": sorted(test)}
    return folds


def write_folds(data_dir: str | Path, protocol: str, seed: int = 0) -> Path:
    """Write the folds and ``folds.json`` (options and counts) unless made from the same utterances and
    options already."""
    d = DataDir.load(data_dir)
    out = Path(data_dir) / "folds" / protocol
    opts = {"protocol": protocol, "num_valid_speakers": 1, "seed": seed, "utts": len(d.utts)}
    try:
        info = json.loads((out / "folds.json").read_text())
        if all(info.get(k) == v for k, v in opts.items()) and all(
                (out / f / p / "utt2spk").is_file() for f in info["folds"] for p in PARTS):
            return out
    except (OSError, ValueError, KeyError):
        pass
    folds = make_folds(d, protocol, seed)
    with atomic_dir(out) as tmp:
        for name, parts in folds.items():
            for p in PARTS:
                d.subset(parts[p]).write(tmp / name / p, replace=True)
        info = dict(opts, folds={f: {p: len(v[p]) for p in PARTS} for f, v in folds.items()})
        (tmp / "folds.json").write_text(json.dumps(info, indent=1) + "\n")
    return out
