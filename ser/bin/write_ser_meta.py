"""``meta.json`` and ``labels.txt`` of an emotion system from its folds (steps/ser/score.sh).

    python -m ser.bin.write_ser_meta --set S --protocol P --folds "F1 F2 ..." \
        [--description TEXT] <system-dir>

Reads each ``<system-dir>/<fold>/{options.json,valid.json,test.json}`` (ser.bin.train_ser,
ser.bin.decode_ser) and writes ``<system-dir>/labels.txt`` (class order of the folds, which must
agree) and ``<system-dir>/meta.json``: ``system, set, protocol, description, folds, valid``
(per fold: UA, WA, frame accuracy, loss, selected epoch on the validation speakers),
``test_frame_acc`` (per fold) and ``options`` (the training options of the first fold, minus
paths that differ per fold).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ser.cli import run_main
from ser.io.atomic import atomic_write_text


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read ({e}); is the fold finished?") from e


def make_meta(system_dir: Path, set_name: str, protocol: str, folds: list[str],
              description: str) -> tuple[dict, list[str]]:
    if not folds:
        raise ValueError(f"{system_dir}: no folds given")
    opts = {f: _read(system_dir / f / "options.json") for f in folds}
    labels = opts[folds[0]]["labels"]
    for f in folds:
        if opts[f]["labels"] != labels:
            raise ValueError(f"{system_dir}/{f}/options.json: labels {opts[f]['labels']} differ "
                             f"from {labels} of fold {folds[0]}")
    valid = {}
    for f in folds:
        v = _read(system_dir / f / "valid.json")
        valid[f] = {k: v[k] for k in ("ua", "wa", "frame_acc", "loss", "epoch", "epochs_trained",
                                      "num_valid_utts")}
    test = {f: _read(system_dir / f / "test.json").get("frame_acc") for f in folds}
    common = {k: v for k, v in opts[folds[0]].items() if k != "fold_dir"}
    meta = {"system": system_dir.name, "set": set_name, "protocol": protocol,
            "description": description, "folds": folds, "valid": valid,
            "test_frame_acc": test, "options": common}
    return meta, labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", required=True, help="name of the data set, e.g. iemocap_4cls_exc")
    p.add_argument("--protocol", required=True, help="session | speaker")
    p.add_argument("--folds", required=True, help="space-separated fold names")
    p.add_argument("--description", default="")
    p.add_argument("system_dir")
    a = p.parse_args(argv)
    d = Path(a.system_dir)
    meta, labels = make_meta(d, a.set, a.protocol, a.folds.split(), a.description)
    atomic_write_text(d / "labels.txt", "".join(f"{x}\n" for x in labels))
    atomic_write_text(d / "meta.json", json.dumps(meta, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)
