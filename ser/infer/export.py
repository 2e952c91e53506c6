"""A trained emotion system as a self-contained model directory (issue 14, item 1).

Layout of ``<export-dir>`` (nothing outside it is read at inference time)::

    model.pt                   the grafted network: weights + graft/head config + labels
                               (ser.emotion.graft's dict; tensors and plain values only, so
                               it loads with ``weights_only=True``)
    labels.txt                 class order, one label per line
    mfcc.conf                  the Kaldi MFCC options the network was trained on
    ivector_extractor/         online i-vector extractor: final.ie.pt, final.dubm.pt, the
                               splice + PCA transform final.mat.pt, global_cmvn.stats.pt,
                               online_cmvn.conf, splice_opts (ser.ivector's extractor dir)
    model.json                 provenance and inference settings (below)

``model.json``: ``format``, ``system``, ``corpus``, ``set``, ``protocol``, ``labels``, ``shown_labels``
and ``label_note`` (how a person reads them: paper 1's ``hap`` is ``hap(exc)``, ser.eval.classes), the graft config,
``cross_validation`` (mean / std / pooled UA, WA, macro-F1 of the system's folds from
``results.json``, when the system was scored), ``final_training`` (the validation figures of
the model exported), ``ivector`` (mode ``utterance``: each recording gets its own online
i-vectors, no speaker carry-over; ``period``), ``sample_rate``, ``toolkit`` (name, version,
git commit), ``created`` and the sha256 of every file.  The directory is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ser
from ser.emotion.graft import load_grafted
from ser.eval.classes import label_note, shown_labels
from ser.features.mfcc import MfccOptions
from ser.io.atomic import atomic_dir
from ser.io.torch_io import save_torch

EXPORT_FORMAT = "ser.export.v1"
EXTRACTOR_FILES = ("final.ie.pt", "final.dubm.pt", "final.mat.pt", "global_cmvn.stats.pt",
                   "online_cmvn.conf", "splice_opts")


def _git_commit() -> str | None:
    try:
        p = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                           cwd=Path(ser.__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    return p.stdout.strip() or None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cross_validation(system_dir: Path | None) -> tuple[dict, dict | None]:
    """(meta.json, the figures of results.json) of a scored system dir (empty / None if absent)."""
    if system_dir is None:
        return {}, None
    meta = json.loads((system_dir / "meta.json").read_text()) if (system_dir / "meta.json").is_file() else {}
    res_path = system_dir / "results.json"
    if not res_path.is_file():
        return meta, None
    res = json.loads(res_path.read_text())
    keep = {k: res[k] for k in ("mean", "std") if k in res}
    if "pooled" in res:
        keep["pooled"] = {k: res["pooled"][k] for k in ("n", "ua", "wa", "macro_f1", "ua_ci95", "ua_mean_ci95",
                                                           "bootstrap")
                          if k in res["pooled"]}
    keep["folds"] = [f.get("fold") for f in res.get("folds", [])]
    return meta, keep


# what model.json's ``corpus`` holds for a model of the embedded corpora (local/ser/export_tdnn.sh writes
# "IEMOCAP layout, embedded synthetic corpus (stage 0)"); inference warns about such a model
SYNTHETIC_CORPUS = "embedded synthetic corpus"


@dataclass
class ExportInfo:
    """Provenance the caller knows (the rest is read from the files)."""

    system: str
    corpus: str = "unknown"
    set: str = "unknown"
    protocol: str = "unknown"
    description: str = ""
    ivector_period: int | None = None  # None: the training's (training_ivector_period), else 10


def training_ivector_period(model_path: str | Path) -> tuple[int | None, str]:
    """The i-vector period a stage-7 model was trained with: ``<ivector_dir>/ivector_period`` of the
    training's ``options.json`` next to the model (ser.bin.train_ser); (None, "") when they are not there."""
    try:
        ivdir = Path(json.loads((Path(model_path).parent / "options.json").read_text())["ivector_dir"])
        src = ivdir / "ivector_period"
        return int(src.read_text().split()[0]), str(src)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None, ""


def _export_period(model_path: str | Path, given: int | None) -> int:
    """The period to record: the training's; a different ``given`` one (or one <= 0) is an error."""
    trained, src = training_ivector_period(model_path)
    period = given if given is not None else (trained if trained is not None else 10)
    if period <= 0:
        raise ValueError(f"--ivector-period {period}: must be a positive number of frames")
    if trained is not None and period != trained:
        raise ValueError(f"--ivector-period {period}: {model_path} was trained with i-vectors of period "
                         f"{trained} ({src})")
    return period


def export_model(model_path: str | Path, mfcc_config: str | Path, extractor_dir: str | Path,
                 out_dir: str | Path, info: ExportInfo, system_dir: str | Path | None = None) -> Path:
    """Write the export dir (see the module docstring); returns it."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():  # atomic_dir would move it to <out>.old and fail after the work
        raise ValueError(f"{out}: exists and is not a directory (an export is a directory); remove it or export elsewhere")
    model, labels, d = load_grafted(model_path)
    MfccOptions.from_conf(mfcc_config)  # a bad option file fails here, not at inference time
    ext = Path(extractor_dir)
    missing = [f for f in EXTRACTOR_FILES if not (ext / f).is_file()]
    if missing:
        raise ValueError(f"{ext}: not an i-vector extractor dir (no {missing[0]})")
    period = _export_period(model_path, info.ivector_period)
    meta, cv = _cross_validation(Path(system_dir) if system_dir else None)
    with atomic_dir(out) as tmp:
        save_torch(dict({k: d[k] for k in d if k != "valid"}, ivector_period=period), tmp / "model.pt")
        (tmp / "labels.txt").write_text("".join(x + "\n" for x in labels))
        shutil.copyfile(mfcc_config, tmp / "mfcc.conf")
        (tmp / "ivector_extractor").mkdir()
        for f in EXTRACTOR_FILES:
            shutil.copyfile(ext / f, tmp / "ivector_extractor" / f)
        doc: dict[str, Any] = {
            "format": EXPORT_FORMAT, "system": info.system,
            "description": info.description or meta.get("description", ""),
            "corpus": info.corpus, "set": meta.get("set", info.set),
            "protocol": meta.get("protocol", info.protocol), "labels": labels,
            # how a person should read each label (ser.eval.classes: paper 1's hap is IEMOCAP's excited)
            "shown_labels": shown_labels(meta.get("set", info.set), labels),
            "label_note": label_note(meta.get("set", info.set)),
            "graft": {k: d[k] for k in ("layer", "hidden_dim", "num_classes", "primary_lr_factor",
                                        "from_scratch", "body_config")},
            "context": {"left": model.left_context, "right": model.right_context,
                        "frame_subsampling_factor": model.frame_subsampling_factor},
            "cross_validation": cv, "final_training": d.get("valid"),
            "ivector": {"mode": "utterance", "period": period},
            "sample_rate": 16000,
            "toolkit": {"name": "ser", "version": ser.__version__, "git_commit": _git_commit()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": {"model": str(model_path), "mfcc_config": str(mfcc_config),
                       "extractor_dir": str(extractor_dir),
                       "system_dir": str(system_dir) if system_dir else None},
        }
        doc["sha256"] = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / "model.json").write_text(json.dumps(doc, indent=1) + "\n")
    return out


EXPORT_FILES = ("model.pt", "labels.txt", "mfcc.conf") + tuple(f"ivector_extractor/{x}" for x in EXTRACTOR_FILES)


def read_export(path: str | Path) -> tuple[dict, list[str]]:
    """``model.json`` and ``labels.txt`` of an export dir, checked: format, files and their sha256
    (the table in model.json: a corrupted or edited file is an error), labels, the i-vector period.
    Every error is one line naming the file and the key."""
    p = Path(path)
    mj = p / "model.json"
    if not p.exists():
        raise ValueError(f"{p}: no such directory (give the export dir of a system, e.g. "
                         "exp/ser/tdnn_l12_uttivec/export)")
    if not p.is_dir():
        raise ValueError(f"{p}: not a directory (the model is an export dir holding model.json)")
    if not mj.is_file():
        raise ValueError(f"{p}: not an exported emotion model (no model.json; made by steps/ser/export.sh)")
    try:
        doc = json.loads(mj.read_text())
    except (ValueError, OSError) as e:
        raise ValueError(f"{mj}: not JSON ({e})") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{mj}: expected a JSON object, got {type(doc).__name__}")
    if doc.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{mj}: format {doc.get('format')!r}, expected {EXPORT_FORMAT}")
    for f in EXPORT_FILES:
        if not (p / f).is_file():
            raise ValueError(f"{p}: incomplete export, no {f}")
    _check_sha256(p, doc.get("sha256"))
    labels = (p / "labels.txt").read_text().split()
    if labels != doc.get("labels"):
        raise ValueError(f"{p}/labels.txt: {labels} differ from model.json's {doc.get('labels')}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{p}/labels.txt: duplicate label in {labels}")
    iv = doc.get("ivector")
    if not isinstance(iv, dict):
        raise ValueError(f"{mj}: ivector: expected an object with the period, got {iv!r}")
    period = iv.get("period")
    if isinstance(period, bool) or not isinstance(period, int) or period <= 0:
        raise ValueError(f"{mj}: ivector.period: expected a positive integer (frames), got {period!r}")
    return doc, labels


def _check_sha256(p: Path, table) -> None:
    """Every file of the export is listed in model.json's sha256 table with its content's hash."""
    if not isinstance(table, dict):
        raise ValueError(f"{p / 'model.json'}: sha256: expected the table of the export's files, got {table!r}")
    for f in EXPORT_FILES:
        if f not in table:
            raise ValueError(f"{p / 'model.json'}: sha256: no entry for {f}")
        if _sha256(p / f) != table[f]:
            raise ValueError(f"{p / f}: sha256 differs from model.json's (corrupted or edited after export)")

