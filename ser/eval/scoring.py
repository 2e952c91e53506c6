"""Score one emotion system directory: validate its outputs, compute per-fold and pooled metrics.

Input layout (INTERFACES.md §5), written by every system's trainer::

    <system>/labels.txt            class order, one label per line
    <system>/<fold>/utt2pred       <utt> <label>
    <system>/<fold>/utt2post       <utt> p1 ... pK      (labels.txt order, rows sum to 1)
    <system>/meta.json             optional: system, set, protocol, description, folds, valid

A fold is a sub-directory holding ``utt2pred``; when ``meta.json`` lists ``folds``
the two sets must agree (an unfinished run is an error, not a silently smaller score).
Every violation of the layout is a ``ScoringError`` of one line naming the file and
the utterance.

Outputs, each written atomically, ``results.json`` last (so its presence means the
other two are complete): ``confusion.png``, ``results.md``, ``results.json``.

results.json schema (``"schema": 2``; fractions in [0, 1], not percent)::

    system, set, protocol, description   strings (set/protocol/description may be null)
    test_corpus                          meta.json's test_corpus: the corpus of a cross-corpus test
                                         (ser/bin/score_xcorpus.py), null for tests within the corpus
    labels                               [K class names], labels.txt order
    reference                            the utt2emo file scored against
    n_reference                          utterances in the reference
    folds: [ {fold, n, n_per_class {label: n}, ua, wa, macro_f1,
              recall {label: recall | null when absent}, absent [labels],
              confusion [[K x K counts, rows = reference]]} ]      sorted by fold name
    mean, std                            {ua, wa, macro_f1} over folds; std is the SAMPLE
                                         standard deviation (ddof 1), null for one fold
    pooled                               {n, ua, wa, macro_f1, confusion [[counts]],
                                          ua_ci95 [lo, hi]            pooled UA, speakers resampled,
                                          ua_mean_ci95 [lo, hi]       mean of fold UAs, speakers resampled,
                                          ua_ci95_utterance [lo, hi]  pooled UA, utterances resampled,
                                          bootstrap {draws, seed, strata, clusters}}
                                         (ser.eval.significance; clusters "speaker" from the reference's
                                         utt2spk, "utterance" when there is none)
    confusion_mean                       [[K x K]] row-normalised confusion averaged over
                                         folds; each row over the folds where its class occurs
    valid                                meta.json's validation figures per fold, or null
    utterances                           {utt: [fold, reference label, decided label, speaker]}
                                         (lets the results report run paired tests)

UA follows ser.eval.metrics: a class absent from a fold's reference is left out of
that fold's UA (listed under ``absent``).  Macro-F1 of a fold averages the classes
present in its reference or decisions (sklearn's default labels).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser.eval import significance
from ser.eval.classes import label_note, shown_labels
from ser.eval.metrics import confusion_counts, f1_from_confusion, row_normalise, ua_from_confusion
from ser.io.atomic import atomic_open, atomic_write_text
from ser.io.datadir import DataDirError, read_kv

log = logging.getLogger(__name__)

POST_TOLERANCE = 1e-4
SCHEMA = 2  # 2: speaker-level bootstrap intervals, the speaker of each utterance


class ScoringError(ValueError):
    pass


@dataclass
class SystemOutputs:
    """Validated decisions of one system; codes index ``labels``."""
    labels: list[str]
    folds: list[str]
    utts: list[str] = field(default_factory=list)
    fold_of: list[str] = field(default_factory=list)
    ref: list[int] = field(default_factory=list)
    hyp: list[int] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    spk: list[str] = field(default_factory=list)   # cluster of each utterance (speaker, else the utterance)


def _read_table(path: Path) -> dict[str, str]:
    try:
        return read_kv(path)
    except DataDirError as e:
        raise ScoringError(str(e)) from None


def read_labels(path: Path) -> list[str]:
    if not path.is_file():
        raise ScoringError(f"{path}: missing (one class label per line)")
    labels = path.read_text(encoding="utf-8").split()
    if not labels:
        raise ScoringError(f"{path}: no labels")
    if len(set(labels)) != len(labels):
        raise ScoringError(f"{path}: repeated label in {labels}")
    return labels


def read_reference(ref: str | os.PathLike | dict[str, str]) -> tuple[dict[str, str], str]:
    """utt2emo as a dict, from a dict, an utt2emo file, or a data dir holding one."""
    if isinstance(ref, dict):
        return dict(ref), "<dict>"
    path = Path(ref)
    if path.is_dir():
        path = path / "utt2emo"
    if not path.is_file():
        raise ScoringError(f"{path}: reference utt2emo missing")
    return _read_table(path), str(path)


def read_speakers(ref: str | os.PathLike | dict[str, str]) -> dict[str, str] | None:
    """utt2spk beside the reference utt2emo (the data dir's), or None (a dict reference, no file)."""
    if isinstance(ref, dict):
        return None
    path = Path(ref)
    path = (path if path.is_dir() else path.parent) / "utt2spk"
    return _read_table(path) if path.is_file() else None


def _check_posteriors(path: Path, utt: str, value: str, num_classes: int) -> None:
    try:
        post = np.array([float(x) for x in value.split()])
    except ValueError:
        raise ScoringError(f"{path}: utterance {utt}: non-numeric posterior {value!r}") from None
    if post.size != num_classes:
        raise ScoringError(f"{path}: utterance {utt}: {post.size} posteriors, labels.txt has {num_classes}")
    if not np.all(np.isfinite(post)):
        raise ScoringError(f"{path}: utterance {utt}: non-finite posterior {value!r}")
    if np.any(post < 0):
        raise ScoringError(f"{path}: utterance {utt}: negative posterior {value!r}")
    if abs(post.sum() - 1.0) > POST_TOLERANCE:
        raise ScoringError(f"{path}: utterance {utt}: posteriors sum to {post.sum():.6f}, not 1")


def read_fold(fold_dir: Path, labels: list[str]) -> dict[str, str]:
    """Validated utt2pred of one fold (utt2post checked against it)."""
    pred_path, post_path = fold_dir / "utt2pred", fold_dir / "utt2post"
    for p in (pred_path, post_path):
        if not p.is_file():
            raise ScoringError(f"{p}: missing")
    pred, post = _read_table(pred_path), _read_table(post_path)
    known = set(labels)
    for utt, lab in pred.items():
        if lab not in known:
            raise ScoringError(f"{pred_path}: utterance {utt}: label {lab!r} not in labels.txt {labels}")
    for utt, value in post.items():
        if utt not in pred:
            raise ScoringError(f"{post_path}: utterance {utt} has no decision in {pred_path}")
        _check_posteriors(post_path, utt, value, len(labels))
    for utt in pred:
        if utt not in post:
            raise ScoringError(f"{pred_path}: utterance {utt} has no posteriors in {post_path}")
    if not pred:
        raise ScoringError(f"{pred_path}: no utterances")
    return pred


def _expected_utts(fold_dir: Path) -> tuple[set[str] | None, int | None, str]:
    """The test utterances a fold decoded, as far as its files tell: the test part of the fold its
    ``options.json`` names (ser.bin.train_ser), and the count in ``test.json`` (ser.bin.decode_ser)."""
    utts, n, where = None, None, ""
    try:
        test = Path(json.loads((fold_dir / "options.json").read_text())["fold_dir"]) / "test" / "utt2spk"
        utts, where = set(read_kv(test)), str(test)
    except (OSError, ValueError, KeyError, TypeError, DataDirError):
        pass
    try:
        n = int(json.loads((fold_dir / "test.json").read_text())["num_utts"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return utts, n, where


def _check_complete(fold_dir: Path, decided: dict[str, str]) -> None:
    """A fold's decisions cover its whole test part: UA on a part of it is an error, not a smaller score."""
    utts, n, where = _expected_utts(fold_dir)
    if utts is not None and set(decided) != utts:
        gone = sorted(utts - set(decided))
        if gone:
            raise ScoringError(f"{fold_dir / 'utt2pred'}: {len(decided)} decisions for the {len(utts)} test "
                               f"utterances of {where} (e.g. no {gone[0]})")
    if n is not None and len(decided) != n:
        raise ScoringError(f"{fold_dir / 'utt2pred'}: {len(decided)} decisions, {fold_dir / 'test.json'} "
                           f"counts {n} decoded utterances")


def read_meta(system_dir: Path) -> dict:
    path = system_dir / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ScoringError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise ScoringError(f"{path}: expected a JSON object")
    folds = meta.get("folds", [])
    if not isinstance(folds, list) or not all(isinstance(f, str) for f in folds):
        raise ScoringError(f"{path}: 'folds' must be a list of fold names")
    for fold, figures in (meta.get("valid") or {}).items():
        if not isinstance(figures, dict) or not all(isinstance(v, (int, float)) for v in figures.values()):
            raise ScoringError(f"{path}: valid.{fold} must map names to numbers, got {figures!r}")
    return meta


def find_folds(system_dir: Path, meta: dict) -> list[str]:
    folds = sorted(p.name for p in system_dir.iterdir() if (p / "utt2pred").is_file() or (p / "utt2post").is_file())
    if "folds" in meta:
        listed = sorted(meta["folds"])
        missing = sorted(set(listed) - set(folds))
        if missing:
            raise ScoringError(f"{system_dir / 'meta.json'}: fold {missing[0]} has no {system_dir / missing[0]}/utt2pred")
        extra = sorted(set(folds) - set(listed))
        if extra:
            raise ScoringError(f"{system_dir / extra[0]}: fold not listed in {system_dir / 'meta.json'}")
    if not folds:
        raise ScoringError(f"{system_dir}: no fold directories with utt2pred")
    return folds


def load_system(system_dir: str | os.PathLike, reference: dict[str, str], ref_name: str = "utt2emo",
                speakers: dict[str, str] | None = None) -> SystemOutputs:
    """Read and validate every fold of ``system_dir`` against the reference labels; ``speakers``
    (utt2spk) gives the bootstrap's clusters, each utterance its own when None."""
    system_dir = Path(system_dir)
    if not system_dir.is_dir():
        raise ScoringError(f"{system_dir}: no such system directory")
    labels = read_labels(system_dir / "labels.txt")
    meta = read_meta(system_dir)
    out = SystemOutputs(labels, find_folds(system_dir, meta), meta=meta)
    index = {lab: i for i, lab in enumerate(labels)}
    seen: dict[str, str] = {}
    for fold in out.folds:
        pred_path = system_dir / fold / "utt2pred"
        decided = read_fold(system_dir / fold, labels)
        _check_complete(system_dir / fold, decided)
        for utt, lab in decided.items():
            if utt in seen:
                raise ScoringError(f"{pred_path}: utterance {utt} is also tested in fold {seen[utt]}")
            seen[utt] = fold
            if utt not in reference:
                raise ScoringError(f"{pred_path}: utterance {utt} is not in the reference {ref_name}")
            if reference[utt] not in index:
                raise ScoringError(f"{ref_name}: utterance {utt}: reference label {reference[utt]!r} "
                                   f"not in {system_dir / 'labels.txt'} {labels}")
            out.utts.append(utt)
            out.fold_of.append(fold)
            out.ref.append(index[reference[utt]])
            out.hyp.append(index[lab])
            if speakers is not None and utt not in speakers:
                raise ScoringError(f"{pred_path}: utterance {utt} has no speaker in the reference's utt2spk")
            out.spk.append(speakers[utt] if speakers is not None else utt)
    return out


def metrics_of(ref: np.ndarray, hyp: np.ndarray, labels: list[str]) -> dict:
    """n, per-class counts and recall, UA, WA, macro-F1 and confusion counts of one set of decisions."""
    cm = confusion_counts(ref, hyp, len(labels))
    totals = cm.sum(axis=1)
    used = (totals + cm.sum(axis=0)) > 0          # sklearn's default labels: in ref or hyp
    recall = [float(cm[k, k] / totals[k]) if totals[k] else None for k in range(len(labels))]
    return {"n": int(ref.size),
            "n_per_class": {lab: int(t) for lab, t in zip(labels, totals)},
            "ua": ua_from_confusion(cm),
            "wa": float(np.mean(ref == hyp)),
            "macro_f1": float(np.mean(f1_from_confusion(cm[np.ix_(used, used)]))),
            "recall": dict(zip(labels, recall)),
            "absent": [lab for lab, t in zip(labels, totals) if t == 0],
            "confusion": cm.tolist()}


def mean_confusion(confusions: list[np.ndarray]) -> np.ndarray:
    """Row-normalised confusions averaged over folds, each row over the folds where its class occurs."""
    rows = np.stack([row_normalise(c) for c in confusions])       # [F, K, K]
    present = np.stack([np.asarray(c).sum(axis=1) > 0 for c in confusions])  # [F, K]
    n = present.sum(axis=0)[:, None]
    return np.divide((rows * present[..., None]).sum(axis=0), n, out=np.zeros(rows.shape[1:]), where=n > 0)


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def summarise(out: SystemOutputs) -> dict:
    """The metric part of results.json (folds, mean, std, pooled with bootstrap CI, confusion_mean)."""
    ref, hyp, fold_of = np.array(out.ref), np.array(out.hyp), np.array(out.fold_of)
    folds = [{"fold": f, **metrics_of(ref[fold_of == f], hyp[fold_of == f], out.labels)} for f in out.folds]
    res: dict = {"folds": folds, "mean": {}, "std": {}}
    for key in ("ua", "wa", "macro_f1"):
        res["mean"][key], res["std"][key] = _mean_std([f[key] for f in folds])
    pooled = metrics_of(ref, hyp, out.labels)
    spk = out.spk or out.utts  # no speakers given: each utterance its own cluster
    ci = significance.cluster_bootstrap_ua(ref, hyp, fold_of, np.array(spk), len(out.labels))
    res["pooled"] = {k: pooled[k] for k in ("n", "ua", "wa", "macro_f1", "confusion")}
    res["pooled"]["ua_ci95"] = list(ci.pooled)
    res["pooled"]["ua_mean_ci95"] = list(ci.mean_of_strata)
    res["pooled"]["ua_ci95_utterance"] = list(significance.bootstrap_ua_ci(ref, hyp, fold_of, len(out.labels)))
    res["pooled"]["bootstrap"] = {"draws": significance.DRAWS, "seed": significance.SEED, "strata": "fold",
                                  "clusters": "speaker" if spk != out.utts else "utterance"}
    res["confusion_mean"] = mean_confusion([np.array(f["confusion"]) for f in folds]).tolist()
    return res


PROTOCOL_NAMES = {"session": "leave one session out", "speaker": "leave one speaker out"}


def confusion_title(res: dict) -> str:
    """``confusion.png``'s title: system, set, protocol (folds), and what the cells hold."""
    protocol = res.get("protocol")
    how = PROTOCOL_NAMES.get(protocol, protocol or "no protocol")
    folds = len(res["folds"])
    if protocol in PROTOCOL_NAMES:
        how += f", {folds} fold{'s' if folds != 1 else ''}"
    pooled = f" of the {folds} folds" if folds > 1 else ""
    return f"{res['system']}: {res['set']}, {how}\nrow % of the {res['pooled']['n']} test utterances{pooled} (count)"


def write_confusion_png(path: Path, counts: np.ndarray, labels: list[str], title: str) -> None:
    """Confusion matrix of ``counts`` [true, predicted]: each cell its row percentage and its count, the
    colour the row percentage (colorbar in %), ``title`` above (paper 1's Fig. 1 layout).  A row
    without utterances is shown as n/a."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(counts, dtype=np.int64)
    rows = counts.sum(1, keepdims=True)
    pct = np.divide(100.0 * counts, rows, out=np.full(counts.shape, np.nan), where=rows > 0)
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.3 * k + 3, 1.2 * k + 1.8))
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("% of the true class")
    for i in range(k):
        for j in range(k):
            text = "n/a" if np.isnan(pct[i, j]) else f"{pct[i, j]:.1f}%\n({counts[i, j]})"
            ax.text(j, i, text, ha="center", va="center", fontsize=10,
                    color="white" if pct[i, j] > 50 else "black")
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), [f"{lab} ({n})" for lab, n in zip(labels, rows[:, 0])])
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label (utterances)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def fmt_pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal; None (undefined) as n/a."""
    return "n/a" if x is None else f"{100 * x:.1f}"


def fmt_pm(mean: float, std: float | None) -> str:
    return f"{fmt_pct(mean)} ± {fmt_pct(std)}"


def _fold_table(res: dict) -> list[str]:
    valid = res.get("valid") or {}
    vkeys = [k for k in ("ua", "wa", "frame_acc") if any(k in (v or {}) for v in valid.values())]
    head = ["fold", "n", "UA %", "WA %", "macro-F1 %"] + [f"valid {k.replace('_', ' ')} %" for k in vkeys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in res["folds"]:
        v = valid.get(f["fold"]) or {}
        cells = [f["fold"], str(f["n"]), fmt_pct(f["ua"]), fmt_pct(f["wa"]), fmt_pct(f["macro_f1"])]
        lines.append("| " + " | ".join(cells + [fmt_pct(v.get(k)) for k in vkeys]) + " |")
    m, s, p = res["mean"], res["std"], res["pooled"]
    lines.append("| mean ± std | | " + " | ".join(fmt_pm(m[k], s[k]) for k in ("ua", "wa", "macro_f1"))
                 + " |" + " |" * len(vkeys))
    lines.append(f"| pooled | {p['n']} | {fmt_pct(p['ua'])} | {fmt_pct(p['wa'])} | {fmt_pct(p['macro_f1'])} |"
                 + " |" * len(vkeys))
    return lines


def results_markdown(res: dict) -> str:
    """results.md of one system: per-fold table, mean ± std, pooled, CI, mean confusion."""
    p, labels = res["pooled"], shown_labels(res["set"], res["labels"])
    out = [f"# {res['system']}: set {res['set'] or 'n/a'}, protocol {res['protocol'] or 'n/a'}", ""]
    if label_note(res["set"]):
        out += [label_note(res["set"]), ""]
    if res.get("description"):
        out += [res["description"], ""]
    out += [f"Scored against `{res['reference']}`: {p['n']} of its {res['n_reference']} utterances tested, "
            f"in {len(res['folds'])} fold(s). UA = mean per-class recall, WA = accuracy, macro-F1 over the "
            "classes present; std = sample standard deviation over folds (ddof 1). The paper's figure is the "
            "mean of the fold UAs.", ""]
    out += _fold_table(res) + [""]
    b = p["bootstrap"]
    ci = lambda key: f"[{fmt_pct(p[key][0])}, {fmt_pct(p[key][1])}]"  # noqa: E731
    out += [f"95% confidence intervals (percentile bootstrap, {b['draws']} draws, seed {b['seed']}), resampling "
            f"whole test {b['clusters']}s within folds: mean of the fold UAs {ci('ua_mean_ci95')}, pooled UA "
            f"{ci('ua_ci95')}. Resampling single test utterances (which treats the turns of a speaker as "
            f"independent, too narrow) gives {ci('ua_ci95_utterance')} for the pooled UA. All condition on the "
            "fold partition and the trained models: they are the uncertainty of testing, not of training.", ""]
    absent = [f"{f['fold']}: {', '.join(f['absent'])}" for f in res["folds"] if f["absent"]]
    if absent:
        out += ["Classes absent from a fold's reference (left out of that fold's UA): " + "; ".join(absent) + ".", ""]
    out += ["Mean row-normalised confusion (%), rows = reference, columns = decision; each row averaged over "
            "the folds where its class occurs:", "",
            "| ref \\ decided | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for lab, row in zip(labels, res["confusion_mean"]):
        out.append(f"| {lab} | " + " | ".join(fmt_pct(x) for x in row) + " |")
    out += ["", "The figure pools the test utterances of all folds (row % and count per cell):", "",
            "![confusion matrix](confusion.png)", ""]
    return "\n".join(out)


def _pick(name: str, given: str | None, meta: dict, system_dir: Path) -> str | None:
    if given is not None and meta.get(name) not in (None, given):
        raise ScoringError(f"{system_dir / 'meta.json'}: {name} {meta[name]!r} differs from --{name} {given!r}")
    return given if given is not None else meta.get(name)


def score_system(system_dir: str | os.PathLike, ref_utt2emo: str | os.PathLike | dict[str, str], *,
                 set_name: str | None = None, protocol: str | None = None) -> dict:
    """Validate ``system_dir``, write confusion.png, results.md and results.json there; return the results."""
    system_dir = Path(system_dir)
    reference, ref_name = read_reference(ref_utt2emo)
    out = load_system(system_dir, reference, ref_name, read_speakers(ref_utt2emo))
    meta = out.meta
    if set_name is None and not isinstance(ref_utt2emo, dict) and "set" not in meta:
        set_name = Path(ref_name).parent.name
    res = {"schema": SCHEMA, "system": meta.get("system", system_dir.name),
           "set": _pick("set", set_name, meta, system_dir), "protocol": _pick("protocol", protocol, meta, system_dir),
           "description": meta.get("description"), "test_corpus": meta.get("test_corpus"), "labels": out.labels,
           "reference": ref_name, "n_reference": len(reference)}
    res.update(summarise(out))
    res["valid"] = meta.get("valid")
    res["utterances"] = {u: [f, out.labels[r], out.labels[h], sp]
                         for u, f, r, h, sp in sorted(zip(out.utts, out.fold_of, out.ref, out.hyp, out.spk))}
    write_confusion_png(system_dir / "confusion.png", np.array(res["pooled"]["confusion"]),
                        shown_labels(res["set"], out.labels), confusion_title(res))
    atomic_write_text(system_dir / "results.md", results_markdown(res))
    atomic_write_text(system_dir / "results.json", json.dumps(res, indent=1) + "\n")
    log.info("%s: UA %s (pooled %s) over %d fold(s)", res["system"],
             fmt_pm(res["mean"]["ua"], res["std"]["ua"]), fmt_pct(res["pooled"]["ua"]), len(out.folds))
    return res
