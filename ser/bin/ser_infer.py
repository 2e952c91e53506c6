"""Classify the emotion of recordings with an exported model (also the ``ser-infer`` command).

    ser-infer --model exp/ser/tdnn_l12_uttivec/export [options] <input> [<input> ...]
    python -m ser.bin.ser_infer --model DIR [options] <input> ...

Inputs: audio files (any format libsndfile reads, any rate and channel count; converted to
16 kHz mono), directories (every audio file below them), Kaldi data dirs or ``wav.scp`` files
(ids = utterance ids; their wav.scp pipelines run only with ``--allow-pipes true``).  One output line per recording:

    --format tsv     id, label, p_<label> per class, duration (s), speech (s), with a header (default)
    --format jsonl   {"id", "label", "posteriors": {label: p}, "duration", "speech"}
    --format kaldi   --output is a directory: utt2emo (<id> <label>) and utt2post
                     (<id> p_1 ... p_K in labels.txt order); ids must not contain whitespace

Speech detection (``--vad true``, the default; Silero VAD, ser.infer.vad): the decision is the mean
posterior over the frames of speech; ``speech`` is the seconds of speech found.  A recording without
speech (noise, a tone, silence) gets the label ``no_speech``, no posteriors (empty tsv fields, jsonl
null, no utt2post line) and counts as processed (exit status 0).  ``--vad false``: every frame counts, as
in stage 7's decoding of segmented turns.

``--timeline DIR`` also writes ``DIR/<name>.png`` (posteriors of sliding windows over time, the
decided class shaded, windows without speech unlabelled and shaded grey) and ``DIR/<name>.csv``
(segments) for each recording; ``<name>`` is the id's last path component without its audio extension,
with characters other than letters, digits and ``._+-`` replaced by ``_`` (never hidden: no leading dot);
a name taken by an earlier recording gets ``-2``, ``-3``, ... (logged).  A bad recording (unreadable,
empty, all zeros, NaN, shorter than the model context) is reported in one line naming it and skipped; the
others are processed and the exit status is 1 if any failed.  Argument errors are reported before any
model or audio is read (exit status 2).  Outputs are written atomically when all recordings are done.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from pathlib import Path

import torch

import ser
from ser.cli import add_device_argument, run_main, setup_logging, str2bool
from ser.infer.audio import AUDIO_EXTENSIONS, Recording, list_recordings
from ser.infer.recognizer import Classification, EmotionRecognizer
from ser.infer.timeline import NO_SPEECH, LevelMeter, Timeline
from ser.infer.vad import SpeechDetector, VadOptions
from ser.io.atomic import atomic_open
from ser.progress import progress, write as progress_write

PROG = "ser-infer"  # the console script's name, in usage and error lines (ser.cli.prog_name)
log = logging.getLogger("ser_infer")
FORMATS = ("tsv", "jsonl", "kaldi")


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default (as it is typed: true/false)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        h = action.help or ""
        if action.default is None or action.required or "default" in h or action.default is argparse.SUPPRESS:
            return action.help
        d = str(action.default).lower() if isinstance(action.default, bool) else "%(default)s"
        return f"{h} (default: {d})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)  # prog: ser.cli.run_main's PROG
    p.add_argument("--version", action="version", version=f"{PROG} (ser {ser.__version__})")
    p.add_argument("--model", required=True, help="exported model dir (steps/ser/export.sh)")
    p.add_argument("--format", choices=FORMATS, default="tsv", help="output format")
    p.add_argument("--output", default="-", help="output file, - for stdout (kaldi: a directory)")
    p.add_argument("--allow-pipes", type=str2bool, default=False,
                   help="run wav.scp pipelines (<cmd> ... |) of data-dir inputs; false: refuse them")
    p.add_argument("--vad", type=str2bool, default=True,
                   help="speech detection: decide on the frames of speech, no_speech without any")
    p.add_argument("--vad-threshold", type=float, default=VadOptions.threshold,
                   help="speech probability from which a 32 ms chunk is speech (Silero VAD)")
    p.add_argument("--timeline", default=None, help="write <name>.png and <name>.csv timelines here")
    p.add_argument("--window", type=float, default=2.0, help="timeline window (s)")
    p.add_argument("--shift", type=float, default=0.5, help="timeline window shift (s)")
    add_device_argument(p)
    p.add_argument("--num-threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--verbose", type=int, default=1, help="0: warnings only, 1: info")
    p.add_argument("inputs", nargs="+", help="audio files, directories, data dirs or wav.scp files")
    return p


def check_options(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """The options alone, before any model or audio is read: argparse's usage error (exit status 2)."""
    if a.format == "kaldi" and a.output == "-":
        p.error("--format kaldi writes utt2emo and utt2post into a directory: give --output DIR")
    for k in ("window", "shift"):
        v = getattr(a, k)
        if not (math.isfinite(v) and v > 0):
            p.error(f"--{k} {v:g}: must be a positive number of seconds")
    if not 0 < a.vad_threshold < 1:
        p.error(f"--vad-threshold {a.vad_threshold:g}: must lie between 0 and 1")
    if a.num_threads < 1:
        p.error(f"--num-threads {a.num_threads}: must be at least 1")


def _tsv_row(r: Classification, k: int) -> str:
    post = [""] * k if r.posteriors is None else [f"{p:.6f}" for p in r.posteriors]
    return "\t".join([r.id, r.label, *post, f"{r.duration:.3f}", "" if r.speech is None else f"{r.speech:.3f}"])


def format_lines(results: list[Classification], fmt: str, labels: list[str]) -> str:
    """The tsv or jsonl text of the results (tsv: posteriors and speech empty where there are none)."""
    if fmt == "jsonl":
        return "".join(json.dumps(r.as_dict()) + "\n" for r in results)
    head = "\t".join(["id", "label"] + [f"p_{x}" for x in labels] + ["duration", "speech"]) + "\n"
    return head + "".join(_tsv_row(r, len(labels)) + "\n" for r in results)


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
            post.writelines(r.id + " " + " ".join(f"{p:.6f}" for p in r.posteriors) + "\n" for r in rs
                            if r.posteriors is not None)  # no line for a recording without speech
        return
    text = format_lines(results, fmt, labels)
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with atomic_open(output, unique=True) as f:
            f.write(text)


def timeline_name(rec_id: str) -> str:
    """A file name stem for a recording's timeline: the id's last path component, its audio extension
    dropped, characters other than letters, digits and ``._+-`` replaced by ``_``, no leading dot or dash
    (never a hidden file or an option), at most 200 characters; ``recording`` when nothing is left."""
    last = re.split(r"[/\\]", rec_id.rstrip("/\\"))[-1]
    stem, dot, ext = last.rpartition(".")
    if dot and stem and f".{ext.lower()}" in AUDIO_EXTENSIONS:
        last = stem
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", last).lstrip(".-")[:200]
    return name or "recording"


def timeline_names(ids: list[str]) -> dict[str, str]:
    """id -> its timeline name (:func:`timeline_name`), a name an earlier id took getting ``-2``, ``-3``, ..."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for rid in dict.fromkeys(ids):
        base = name = timeline_name(rid)
        k = 1
        while name.lower() in taken:  # case-insensitive file systems too
            k += 1
            name = f"{base}-{k}"
        if k > 1:
            log.info("--timeline: %s is written as %s.png (%s.png is taken by another recording)", rid, name, base)
        taken.add(name.lower())
        out[rid] = name
    return out


def classify(rec: EmotionRecognizer, r, a: argparse.Namespace, names: dict[str, str]) -> Classification:
    """One recording: its decision (and its timeline files with --timeline)."""
    if a.timeline is None:
        return rec.classify_blocks(r.blocks(), r.id, r.where)
    meter = LevelMeter()   # the timeline's level strip
    fp = rec.frame_posteriors(meter(r.blocks()), r.id, r.where)
    tl = Timeline.from_frames(fp, rec.labels, a.window, a.shift)
    tl.level = meter.level_db()
    out = Path(a.timeline) / names[r.id]
    tl.write_png(out.with_name(out.name + ".png"), rec.shown_labels)
    tl.write_csv(out.with_name(out.name + ".csv"))
    return Classification.of(r.id, rec.labels, fp.mean(), fp.duration, fp.speech_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    check_options(parser, a)  # before the model and any audio are read
    setup_logging(a.verbose)
    torch.set_num_threads(a.num_threads)
    vad = SpeechDetector(VadOptions(threshold=a.vad_threshold)) if a.vad else False
    rec = EmotionRecognizer.from_dir(a.model, a.device, vad=vad)
    recordings = list(list_recordings(a.inputs, allow_pipes=a.allow_pipes))
    check_arguments(a, recordings)  # before any audio is read
    names = timeline_names([r.id for r in recordings]) if a.timeline is not None else {}
    if a.timeline is not None:
        Path(a.timeline).mkdir(parents=True, exist_ok=True)
    results, failed, seconds, t0 = [], 0, 0.0, time.perf_counter()
    for r in progress(recordings, desc="recordings", disable=len(recordings) < 20, mininterval=10, file=sys.stderr):
        try:
            res = classify(rec, r, a, names)
        except (ValueError, OSError, RuntimeError) as e:
            progress_write(f"{PROG}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
            failed += 1
            continue
        results.append(res)
        seconds += res.duration
    write_outputs(results, a.format, a.output, rec.labels)
    el = time.perf_counter() - t0
    silent = sum(r.label == NO_SPEECH for r in results)
    log.info("%d of %d recordings classified (%.1f s of audio in %.1f s, %.0fx real time; device %s)%s%s",
             len(results), len(recordings), seconds, el, seconds / max(el, 1e-9), rec.device,
             f"; {silent} without speech (label {NO_SPEECH})" if silent else "", f"; {failed} failed" if failed else "")
    if failed:
        print(f"{PROG}: {failed} of {len(recordings)} recordings failed (reported above)", file=sys.stderr)
    return 1 if failed else 0


def console_main() -> None:
    """The ``ser-infer`` console script (pyproject.toml)."""
    run_main(main)


if __name__ == "__main__":
    run_main(main)
