"""Classify the emotion of recordings with an exported model (also the ``ser-infer`` command).

    ser-infer --model exp/ser/tdnn_l12_uttivec/export [options] <input> [<input> ...]
    python -m ser.bin.ser_infer --model DIR [options] <input> ...

Inputs: audio files (any format libsndfile reads, any rate and channel count; converted to
16 kHz mono), directories (every audio file below them), Kaldi data dirs or ``wav.scp`` files
(ids = utterance ids; their wav.scp pipelines run only with ``--allow-pipes true``).  One output line per recording:

    --format tsv     id, label, p_<label> per class, duration (s), with a header (default)
    --format jsonl   {"id", "label", "posteriors": {label: p}, "duration"}
    --format kaldi   --output is a directory: utt2emo (<id> <label>) and utt2post
                     (<id> p_1 ... p_K in labels.txt order); ids must not contain whitespace

``--timeline DIR`` also writes ``DIR/<id>.png`` (posteriors of sliding windows over time, the
decided class shaded) and ``DIR/<id>.csv`` (segments) for each recording (``/`` in ids
becomes ``__``).  A bad recording (unreadable, empty, all zeros, NaN, shorter than the model
context) is reported in one line naming it and skipped; the others are processed and the exit
status is 1 if any failed.  Outputs are written atomically when all recordings are done.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch

from ser.cli import add_device_argument, run_main, setup_logging, str2bool
from ser.infer.audio import Recording, list_recordings
from ser.infer.recognizer import Classification, EmotionRecognizer
from ser.infer.timeline import LevelMeter, Timeline
from ser.io.atomic import atomic_open
from ser.progress import progress, write as progress_write

log = logging.getLogger("ser_infer")
FORMATS = ("tsv", "jsonl", "kaldi")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="exported model dir (steps/ser/export.sh)")
    p.add_argument("--format", choices=FORMATS, default="tsv")
    p.add_argument("--output", default="-", help="output file, - for stdout (kaldi: a directory)")
    p.add_argument("--allow-pipes", type=str2bool, default=False,
                   help="run wav.scp pipelines (<cmd> ... |) of data-dir inputs (default false: refused)")
    p.add_argument("--timeline", default=None, help="write <id>.png and <id>.csv timelines here")
    p.add_argument("--window", type=float, default=2.0, help="timeline window (s)")
    p.add_argument("--shift", type=float, default=0.5, help="timeline window shift (s)")
    add_device_argument(p)
    p.add_argument("--num-threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--verbose", type=int, default=1, help="0: warnings only, 1: info")
    p.add_argument("inputs", nargs="+", help="audio files, directories, data dirs or wav.scp files")
    return p


def format_lines(results: list[Classification], fmt: str, labels: list[str]) -> str:
    """The tsv or jsonl text of the results."""
    if fmt == "jsonl":
        return "".join(json.dumps(r.as_dict()) + "\n" for r in results)
    head = "\t".join(["id", "label"] + [f"p_{x}" for x in labels] + ["duration"]) + "\n"
    return head + "".join("\t".join([r.id, r.label] + [f"{p:.6f}" for p in r.posteriors]
                                    + [f"{r.duration:.3f}"]) + "\n" for r in results)


def _targets(fmt: str, output: str) -> list[Path]:
    """The files the outputs go to."""
    if output == "-":
        return []
    return [Path(output) / "utt2emo", Path(output) / "utt2post"] if fmt == "kaldi" else [Path(output)]


def check_arguments(a: argparse.Namespace, recordings: list[Recording]) -> None:
    """What would fail or lose output after the work, checked before any audio is read: the output's
    kind, ids the format cannot hold, ids given twice in a Kaldi table, timeline names two recordings
    share, an output that would replace an input, timeline windows.  A ValueError of one line."""
    out = Path(a.output)
    if a.format == "kaldi":
        if a.output == "-":
            raise ValueError("--format kaldi writes utt2emo and utt2post into a directory: give --output DIR")
        if out.exists() and not out.is_dir():
            raise ValueError(f"--output {a.output}: a file; --format kaldi writes a directory (utt2emo, utt2post)")
    elif a.output != "-" and out.is_dir():
        raise ValueError(f"--output {a.output}: a directory; --format {a.format} writes one file")
    seen: dict[str, int] = {}
    for r in recordings:
        if a.format == "kaldi" and len(r.id.split()) != 1:
            raise ValueError(f"id {r.id!r} has whitespace; Kaldi tables need ids without it (use tsv/jsonl)")
        if a.format == "tsv" and any(c in r.id for c in "\t\n\r"):
            raise ValueError(f"id {r.id!r} holds a tab or line break, which a TSV row cannot (use --format jsonl)")
        seen[r.id] = seen.get(r.id, 0) + 1
        if a.format == "kaldi" and seen[r.id] == 2:
            raise ValueError(f"id {r.id!r} is given twice; a Kaldi table holds each key once")
    inputs = {Path(r.file).resolve() for r in recordings if r.file}
    inputs |= {Path(i).resolve() for i in a.inputs if Path(i).is_file()}
    for t in _targets(a.format, a.output):
        if t.resolve() in inputs:
            raise ValueError(f"--output {a.output}: would overwrite the input {t}")
    if a.format == "kaldi" and any((Path(i) / "wav.scp").is_file() and Path(i).resolve() == out.resolve()
                                   for i in a.inputs):
        raise ValueError(f"--output {a.output}: is an input data dir (its utt2emo would be replaced)")
    if a.timeline is not None:
        if not (math.isfinite(a.window) and a.window > 0 and math.isfinite(a.shift) and a.shift > 0):
            raise ValueError(f"--window {a.window} --shift {a.shift}: must be positive numbers of seconds")
        names: dict[str, str] = {}
        for rid in seen:
            other = names.setdefault(timeline_name(rid), rid)
            if other != rid:
                raise ValueError(f"--timeline: recordings {other!r} and {rid!r} would both write "
                                 f"{Path(a.timeline) / timeline_name(rid)}.png")


def write_outputs(results: list[Classification], fmt: str, output: str, labels: list[str]) -> None:
    """The outputs, each written through a temporary name of this process (two runs onto one output
    never write into one temporary file)."""
    if fmt == "kaldi":
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        rs = sorted(results, key=lambda r: r.id)
        # both written before either is renamed: a failed write (a full disk) leaves neither new table
        with atomic_open(out / "utt2emo", unique=True) as emo, atomic_open(out / "utt2post", unique=True) as post:
            emo.writelines(f"{r.id} {r.label}\n" for r in rs)
            post.writelines(r.id + " " + " ".join(f"{p:.6f}" for p in r.posteriors) + "\n" for r in rs)
        return
    text = format_lines(results, fmt, labels)
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with atomic_open(output, unique=True) as f:
            f.write(text)


def timeline_name(rec_id: str) -> str:
    return rec_id.strip("/").replace("/", "__").replace(" ", "_")


def classify(rec: EmotionRecognizer, r, a: argparse.Namespace) -> Classification:
    """One recording: its decision (and its timeline files with --timeline)."""
    if a.timeline is None:
        return rec.classify_blocks(r.blocks(), r.id, r.where)
    meter = LevelMeter()   # the timeline's level strip
    fp = rec.frame_posteriors(meter(r.blocks()), r.id, r.where)
    tl = Timeline.from_frames(fp, rec.labels, a.window, a.shift)
    tl.level = meter.level_db()
    out = Path(a.timeline) / timeline_name(r.id)
    tl.write_png(out.with_name(out.name + ".png"), rec.shown_labels)
    tl.write_csv(out.with_name(out.name + ".csv"))
    return Classification.of(r.id, rec.labels, fp.posteriors.double().mean(0), fp.duration)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    setup_logging(a.verbose)
    torch.set_num_threads(a.num_threads)
    rec = EmotionRecognizer.from_dir(a.model, a.device)
    recordings = list(list_recordings(a.inputs, allow_pipes=a.allow_pipes))
    check_arguments(a, recordings)  # before any audio is read
    if a.timeline is not None:
        Path(a.timeline).mkdir(parents=True, exist_ok=True)
    results, failed, seconds, t0 = [], 0, 0.0, time.perf_counter()
    for r in progress(recordings, desc="recordings", disable=len(recordings) < 20, mininterval=10, file=sys.stderr):
        try:
            res = classify(rec, r, a)
        except (ValueError, OSError, RuntimeError) as e:
            progress_write(f"ser_infer: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
            failed += 1
            continue
        results.append(res)
        seconds += res.duration
    write_outputs(results, a.format, a.output, rec.labels)
    el = time.perf_counter() - t0
    log.info("%d of %d recordings classified (%.1f s of audio in %.1f s, %.0fx real time; device %s)%s",
             len(results), len(recordings), seconds, el, seconds / max(el, 1e-9), rec.device,
             f"; {failed} failed" if failed else "")
    if failed:
        print(f"ser_infer: {failed} of {len(recordings)} recordings failed (reported above)", file=sys.stderr)
    return 1 if failed else 0


def console_main() -> None:
    """The ``ser-infer`` console script (pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    run_main(main)
