"""Paper 2's systems fold by fold (stage 9): the four heads of :mod:`ser.emotion.ds_heads` on frame
features and the baselines of :mod:`ser.emotion.baselines` on utterance features, written in the layout
of every emotion system (INTERFACES.md §5): ``<system>/labels.txt``, ``<system>/meta.json``,
``<system>/<fold>/{utt2post,utt2pred,valid.json}``.

Each fold reads its ``{train,valid,test}`` data dirs (utterance lists, ``utt2emo``, ``utt2spk``) and takes
the features from a separate data dir (``feats.scp`` of all the set's utterances: layer_1 features or
openSMILE functionals), read from disk when a head uses them (:class:`ser.io.batching.LazyMatrixTable`; no
copy of the set is held: the heads' own standardised copies of a fold's training frames are what stays in
memory).  The test part is predicted once, by the model chosen on ``valid``.  The baselines
(random forest, majority) choose nothing on validation, so they train on ``train`` and ``valid`` together:
every training speaker (their ``valid.json`` has no validation figures).  A fold whose ``valid.json``
records the same options is kept (re-running is a no-op).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ser.emotion import baselines
from ser.emotion.ds_heads import HEADS, HeadOptions, Utterances, train_head
from ser.emotion.folds import read_fold_names
from ser.eval.metrics import unweighted_accuracy, weighted_accuracy
from ser.io.atomic import atomic_write_text
from ser.io.batching import LazyMatrixTable, Table, TableRows
from ser.io.datadir import DataDir

log = logging.getLogger(__name__)

BASELINES = ("rf", "majority")
SYSTEMS = HEADS + BASELINES


def set_labels(folds_dir: Path) -> list[str]:
    """Class order of a set: its ``utt2emo`` labels, sorted (``data/<set>/folds/<protocol>`` -> data/<set>)."""
    return sorted(set(DataDir.load(folds_dir.parents[1]).extra("utt2emo").values()))


def _part(fold_dir: Path, part: str, feats: Table, labels: list[str]) -> tuple[list[str], Utterances, list[str]]:
    d = DataDir.load(fold_dir / part)
    emo = d.extra("utt2emo")
    missing = [u for u in d.utts if u not in feats]
    if missing:
        raise ValueError(f"{fold_dir / part}: utterance {missing[0]} has no features in the feature dir")
    bad = [u for u in d.utts if emo.get(u) not in labels]
    if bad:
        raise ValueError(f"{fold_dir / part}/utt2emo: utterance {bad[0]} has label {emo.get(bad[0])!r}, "
                         f"not one of {' '.join(labels)}")
    y = torch.tensor([labels.index(emo[u]) for u in d.utts])
    return d.utts, Utterances(TableRows(feats, d.utts), y), [d.utt2spk[u] for u in d.utts]  # type: ignore[arg-type]


def _predict(system: str, train: Utterances, spk: list[str], valid: Utterances, test: Utterances,
             labels: list[str], opts: dict) -> tuple[np.ndarray | None, np.ndarray]:
    """(validation posteriors, test posteriors) of one system trained on ``train``; a baseline, which
    selects nothing, trains on ``train`` + ``valid`` and has no validation posteriors (None)."""
    if system in HEADS:
        head = train_head(system, train, spk, valid, len(labels), HeadOptions(**opts["heads"]))
        return head.predict(valid.x).numpy(), head.predict(test.x).numpy()
    every = Utterances(list(train.x) + list(valid.x), torch.cat([train.y, valid.y]))
    names = [labels[int(c)] for c in every.y]
    if system == "majority":
        return None, baselines.majority(names, len(test.y), labels).post
    rows = lambda u: torch.cat([x[:1] for x in u.x]).double().numpy()  # noqa: E731 - one row per utterance
    return None, baselines.random_forest(rows(every), names, rows(test), labels, **opts["rf"]).post


def run_fold(system: str, fold_dir: Path, feats: Table, labels: list[str], out: Path, opts: dict) -> dict:
    """Train ``system`` on one fold, write ``out/{utt2post,utt2pred,valid.json}``; returns valid.json."""
    done = out / "valid.json"
    if done.is_file():
        prev = json.loads(done.read_text())
        if prev.get("options") == opts and (out / "utt2post").is_file() and (out / "utt2pred").is_file():
            log.info("%s: up to date", out)
            return prev
    _, train, spk = _part(fold_dir, "train", feats, labels)
    _, valid, _ = _part(fold_dir, "valid", feats, labels)
    test_utts, test, _ = _part(fold_dir, "test", feats, labels)
    v_post, t_post = _predict(system, train, spk, valid, test, labels, opts)
    t_post = t_post / t_post.sum(axis=1, keepdims=True)
    if not np.isfinite(t_post).all():
        raise RuntimeError(f"{out}: non-finite test posteriors")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "utt2post", "".join(
        f"{u} {' '.join(f'{p:.6f}' for p in row)}\n" for u, row in zip(test_utts, t_post)))
    atomic_write_text(out / "utt2pred", "".join(
        f"{u} {labels[int(row.argmax())]}\n" for u, row in zip(test_utts, t_post)))
    if v_post is None:   # a baseline: the validation speaker trained
        info = {"num_valid_utts": 0, "num_train_utts": len(train.y) + len(valid.y), "options": opts}
    else:
        v_hyp = v_post.argmax(axis=1)
        info = {"ua": unweighted_accuracy(valid.y.numpy(), v_hyp), "wa": weighted_accuracy(valid.y.numpy(), v_hyp),
                "num_valid_utts": len(valid.y), "num_train_utts": len(train.y), "options": opts}
    atomic_write_text(done, json.dumps(info, indent=1) + "\n")
    return info


def system_options(system: str, heads: HeadOptions, rf_trees: int, rf_max_depth: int, seed: int) -> dict:
    """The options a system's results depend on (kept in each fold's valid.json)."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; systems are {', '.join(SYSTEMS)}")
    if system in HEADS:
        return {"system": system, "heads": asdict(heads)}
    # the baselines train on the validation speaker too (the key also re-runs a fold made before)
    if system == "rf":
        return {"system": system, "rf": {"seed": seed, "n_estimators": rf_trees, "max_depth": rf_max_depth},
                "train_parts": ["train", "valid"]}
    return {"system": system, "train_parts": ["train", "valid"]}


def run_system(system: str, feats_dir: Path, folds_dir: Path, system_dir: Path, opts: dict,
               set_name: str, description: str) -> dict:
    """Every fold of ``folds_dir``, then ``labels.txt`` and ``meta.json``."""
    labels = set_labels(folds_dir)
    folds = read_fold_names(folds_dir)
    feats = LazyMatrixTable.from_scp(feats_dir / "feats.scp", keys=DataDir.load(folds_dir.parents[1]).utts)
    valid = {}
    for f in folds:
        info = run_fold(system, folds_dir / f, feats, labels, system_dir / f, opts)
        valid[f] = {k: info[k] for k in ("ua", "wa", "num_valid_utts") if k in info}
        if "ua" in info:
            log.info("%s %s: validation UA %.3f WA %.3f", system_dir.name, f, info["ua"], info["wa"])
        else:
            log.info("%s %s: trained on %d turns (validation speaker included)", system_dir.name, f,
                     info["num_train_utts"])
    atomic_write_text(system_dir / "labels.txt", "".join(f"{x}\n" for x in labels))
    meta = {"system": system_dir.name, "set": set_name, "protocol": folds_dir.name, "description": description,
            "folds": folds, "valid": valid, "options": opts, "features": str(feats_dir)}
    atomic_write_text(system_dir / "meta.json", json.dumps(meta, indent=1) + "\n")
    return meta
