"""Score an exported emotion model on another corpus (cross-corpus test) and regenerate exp/results.md.

    steps/ser/score_xcorpus.sh --train-corpus A --test-corpus B [--train-data <A's data-dir>] \\
           <export-dir> <infer-dir> <data-dir> <system-dir>
    e.g. steps/ser/score_xcorpus.sh --train-corpus IEMOCAP_full_release --test-corpus IEMOCAP_B \\
           --train-data data/iemocap_4cls_exc exp/ser/tdnn_l12_uttivec/export exp/ser/tdnn_l12_uttivec_xcorpus/IEMOCAP_B/infer \\
           data/xcorpus/iemocap_4cls_exc exp/ser/tdnn_l12_uttivec_xcorpus

``<infer-dir>`` holds ``ser-infer --format kaldi`` output (``utt2emo``, ``utt2post``) of the exported
model on ``<data-dir>``, which holds the reference ``utt2emo`` of the other corpus.  Every reference
utterance must have a decision (a recording ser-infer could not classify is an error here, not a smaller
test set).  Writes a one-fold system in the scorer's layout, fold = the test corpus::

    <system-dir>/labels.txt, meta.json          (protocol "trained on A, tested on B"; the description
                                                  gives the model's cross-validated UA on A to compare with)
    <system-dir>/<B>/utt2pred, utt2post
    <system-dir>/results.{json,md}, confusion.png (steps/ser/score.sh's scorer: UA, WA, macro-F1, bootstrap CI)

and, when ``<system-dir>`` is ``<exp>/ser/<name>``, regenerates ``<exp>/results.md``, where the row is
not paired with tdnn_l12 (meta.json's ``test_corpus``: another corpus's recordings).

With ``--train-data`` (the data dir the model was trained on) the overlap of the two sets is measured,
not assumed, and printed, and goes into meta.json (``overlap``) and the description: the test turns whose
transcript (lowercased, punctuation dropped) is also a training transcript, and the speaker NAMES both
data dirs use.  A shared name is not a shared voice when the test corpus reuses the training corpus's
naming (IEMOCAP_B does): whether voices are shared cannot be read from data dirs, which say so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ser.cli import run_main, setup_logging
from ser.eval.report import write_results_report
from ser.eval.scoring import ScoringError, fmt_pct, fmt_pm, read_labels, read_reference, score_system
from ser.io.atomic import atomic_write_text
from ser.io.datadir import DataDirError, read_kv

_KEEP = set("abcdefghijklmnopqrstuvwxyz0123456789' ")


def _sentence(text: str) -> str:
    """A transcript compared as a sentence: lowercase, only letters, digits and apostrophes, single spaces."""
    return " ".join("".join(c for c in text.lower() if c in _KEEP).split())


def _table(data: Path, name: str) -> dict[str, str]:
    try:
        return read_kv(data / name)
    except DataDirError as e:
        raise ScoringError(f"{e} (needed to measure the overlap of the training and test sets)") from None


def overlap(train_data: Path, test_data: Path) -> dict:
    """Sentences and speaker names the test set shares with the training set (their ``text``, ``utt2spk``;
    without a ``text`` on either side the sentences are not compared: ``no_text`` names the file)."""
    train_spk, test_spk = set(_table(train_data, "utt2spk").values()), set(_table(test_data, "utt2spk").values())
    out = {"train_data": str(train_data), "test_speakers": sorted(test_spk),
           "shared_speaker_names": sorted(train_spk & test_spk)}
    missing = [d / "text" for d in (train_data, test_data) if not (d / "text").is_file()]
    if missing:
        return {**out, "no_text": str(missing[0])}
    train_text = {_sentence(t) for t in _table(train_data, "text").values()} - {""}
    test_text = {u: _sentence(t) for u, t in _table(test_data, "text").items()}
    shared = sorted({s for s in test_text.values() if s in train_text})
    return {**out, "test_turns": len(test_text),
            "test_turns_with_a_training_sentence": sum(s in train_text for s in test_text.values()),
            "shared_sentences": len(shared), "shared_sentence_examples": shared[:3]}


def overlap_text(o: dict) -> str:
    """One sentence on what :func:`overlap` found."""
    if "no_text" in o:
        text = f"sentences not compared (no {o['no_text']}); "
    else:
        text = (f"{o['test_turns_with_a_training_sentence']} of its {o['test_turns']} turns read a sentence of "
                f"the training transcripts ({o['shared_sentences']} distinct"
                + (f", e.g. {o['shared_sentence_examples'][0]!r}" if o["shared_sentences"] else "") + "); ")
    names = o["shared_speaker_names"]
    text += (f"{len(names)} of its {len(o['test_speakers'])} speaker names are also training speaker names"
             + (f" ({', '.join(names)}: the data dirs cannot tell whether these are the same voices)" if names
                else "") + ".")
    return text


def _read_model_json(export_dir: Path) -> dict:
    path = export_dir / "model.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ScoringError(f"{path}: cannot read the exported model's provenance ({e})") from None


def _decisions(infer_dir: Path, reference: dict[str, str], ref_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """ser-infer's utt2emo and utt2post, checked to cover exactly the reference utterances."""
    try:
        pred, post = read_kv(infer_dir / "utt2emo"), read_kv(infer_dir / "utt2post")
    except DataDirError as e:
        raise ScoringError(f"{e} (ser-infer --format kaldi output)") from None
    missing = sorted(reference.keys() - pred.keys())
    if missing:
        raise ScoringError(f"{infer_dir / 'utt2emo'}: utterance {missing[0]} of {ref_name} has no decision "
                           f"({len(missing)} missing; did ser-infer fail on it?)")
    extra = sorted(pred.keys() - reference.keys())
    if extra:
        raise ScoringError(f"{infer_dir / 'utt2emo'}: utterance {extra[0]} is not in {ref_name}")
    return pred, post


def description(model: dict, export_dir: Path, train: str, test: str, found: dict | None = None) -> str:
    """What was trained on what and tested on what (and what the two share, when ``found`` gives
    :func:`overlap`), with the cross-validated figures to compare with."""
    cv = model.get("cross_validation") or {}
    text = (f"{model.get('system', '?')} exported to {export_dir} ({model.get('description', '')}), trained on "
            f"every session of {model.get('set', '?')} of {train}; tested on {test}: "
            + (overlap_text(found) if found else "its overlap with the training set was not measured (no --train-data)."))
    if cv.get("mean") and cv.get("pooled"):
        m, s, p = cv["mean"], cv["std"], cv["pooled"]
        text += (f" Within {train} ({model.get('protocol', '?')} cross-validation, {len(cv.get('folds', []))} "
                 f"folds) the same system has UA {fmt_pm(m['ua'], s['ua'])}, pooled "
                 f"{fmt_pct(p['ua'])} [{fmt_pct(p['ua_ci95'][0])}, {fmt_pct(p['ua_ci95'][1])}].")
    return text


def score_xcorpus(export_dir: Path, infer_dir: Path, data: Path, system_dir: Path, train: str, test: str,
                  train_data: Path | None = None) -> dict:
    """Write the one-fold system (see module docstring) and score it; returns the results."""
    model, labels = _read_model_json(export_dir), read_labels(export_dir / "labels.txt")
    found = overlap(train_data, data) if train_data is not None else None
    if found:
        print(f"{system_dir.name}: {test} against the training set {train_data}: {overlap_text(found)}")
    reference, ref_name = read_reference(data)
    pred, post = _decisions(infer_dir, reference, ref_name)
    fold = system_dir / test
    fold.mkdir(parents=True, exist_ok=True)
    atomic_write_text(fold / "utt2pred", "".join(f"{u} {pred[u]}\n" for u in sorted(pred)))
    atomic_write_text(fold / "utt2post", "".join(f"{u} {post[u]}\n" for u in sorted(post)))
    atomic_write_text(system_dir / "labels.txt", "".join(f"{x}\n" for x in labels))
    meta = {"system": system_dir.name, "set": model.get("set") or data.name,
            "protocol": f"trained on {train}, tested on {test}",
            "description": description(model, export_dir, train, test, found), "test_corpus": test,
            "folds": [test], "overlap": found}
    atomic_write_text(system_dir / "meta.json", json.dumps(meta, indent=1) + "\n")
    return score_system(system_dir, data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-corpus", required=True, help="name of the corpus the model was trained on")
    p.add_argument("--test-corpus", required=True, help="name of the corpus of <data-dir> (also the fold name)")
    p.add_argument("--train-data", default=None,
                   help="data dir the model was trained on (text, utt2spk): measure the sentences and speaker "
                        "names the test set shares with it")
    p.add_argument("export_dir", help="exported model (steps/ser/export.sh)")
    p.add_argument("infer_dir", help="ser-infer --format kaldi output on <data-dir>")
    p.add_argument("data", help="data dir of the test corpus, holding utt2emo")
    p.add_argument("system_dir", help="exp/ser/<system>_xcorpus")
    a = p.parse_args(argv)
    setup_logging()
    if "/" in a.test_corpus or not a.test_corpus.strip():
        raise ValueError(f"--test-corpus {a.test_corpus!r}: a name, used as the fold directory")
    system_dir = Path(a.system_dir)
    res = score_xcorpus(Path(a.export_dir), Path(a.infer_dir), Path(a.data), system_dir, a.train_corpus,
                        a.test_corpus, Path(a.train_data) if a.train_data else None)
    report = None
    if system_dir.resolve().parent.name == "ser":
        report = write_results_report(system_dir.resolve().parent.parent)
    pooled = res["pooled"]
    print(f"{res['system']}: trained on {a.train_corpus}, tested on {a.test_corpus} ({pooled['n']} utterances): "
          f"UA {fmt_pct(pooled['ua'])} [{fmt_pct(pooled['ua_ci95'][0])}, {fmt_pct(pooled['ua_ci95'][1])}], "
          f"WA {fmt_pct(pooled['wa'])}, macro-F1 {fmt_pct(pooled['macro_f1'])} -> {system_dir / 'results.md'}"
          + (f", {report}" if report else ""))
    return 0


if __name__ == "__main__":
    run_main(main)
