#!/usr/bin/env python3
"""Benchmark: inference with an exported model (ser-infer's path) against MFCC extraction alone.

For a mini-size and a tdnn_1g-size grafted network (head on tdnnf12; weights random, which does
not change the work, with BatchNorm statistics of a few random minibatches, as a trained model
has) with the recipe's i-vector extractor (``exp/nnet3/extractor`` when present, else a random
one of the same size: 128 Gaussians, 40-dim PCA features, 100-dim i-vectors) and
``conf/mfcc_hires.conf``, it writes speech-like recordings of the given lengths (and, with
``--dialog``, an IEMOCAP dialog assembled from its turns at their transcription times, stereo,
as the real ``dialog/wav`` files are) and measures, each in a fresh process:

* ``infer``: the whole path of ``ser-infer --timeline`` (reading, 16 kHz mono, MFCC, online
  i-vectors, network, frame posteriors; speech detection unless ``--vad false``) -> seconds, x real
  time, peak RSS (ru_maxrss);
* ``mfcc``: reading and MFCC alone on the same file (the reference measured in the same run).

Memory is flat in length when the peak RSS does not grow with the recording's length.  The
primary figure is CPU seconds of the measured process (``time.process_time``, all its threads),
which other jobs on the machine disturb less than the wall clock (printed in brackets).  With
``--threads 2`` the network runs on two torch threads and the next block's reading, MFCC and
i-vectors on a worker thread (ser.infer.recognizer): compare its wall clock on an idle machine.
Each figure is the best of ``--repeats`` processes (least CPU time; with ``--threads 2`` or
``--device cuda`` least wall clock, the figure to read there), as ``timeit`` reports.

    .venv/bin/python bench/infer.py                               # 60 s and 600 s recordings
    .venv/bin/python bench/infer.py --seconds 60 3600 --dialog    # + a 1-hour file, a dialog
    .venv/bin/python bench/infer.py --threads 2                   # both cores
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser.emotion.graft import make_grafted_model  # noqa: E402
from ser.infer.export import ExportInfo, export_model  # noqa: E402
from ser.io.torch_io import save_torch  # noqa: E402
from ser.ivector.diag_ubm import DiagGmm  # noqa: E402
from ser.ivector.extractor import IvectorExtractor  # noqa: E402
from ser.ivector.features import OnlineCmvnOptions, SpliceOptions  # noqa: E402
from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel  # noqa: E402

NETS = {"mini": (TdnnfConfig.mini, 256), "tdnn_1g": (TdnnfConfig.tdnn_1g, 1024)}


def write_speech(path: Path, seconds: float, seed: int, block: float = 60.0) -> Path:
    """Speech-like int16 audio (bench/mfcc.py's signal), written block by block."""
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:
        done = 0.0
        while done < seconds:
            n = int(min(block, seconds - done) * 16000)
            t = done + np.arange(n) / 16000
            f0 = 120.0 + 40.0 * np.sin(2 * np.pi * 0.3 * t + 0.7 * seed)
            phase = 2 * np.pi * np.cumsum(f0) / 16000
            x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.15
            x *= 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2.0 * t))
            f.write((x + rng.normal(0, 0.01, n)).astype(np.float32))
            done += block
    return path


def write_dialog(path: Path, corpus: Path) -> Path | None:
    """The longest dialog of the IEMOCAP-layout corpus, its turns placed at their transcription
    times in a stereo 16 kHz file (the embedded corpus has turn wavs only)."""
    best = None
    for tr in sorted(corpus.glob("Session*/dialog/transcriptions/*.txt")):
        turns = re.findall(r"^(\S+) \[(\d+\.\d+)-(\d+\.\d+)\]", tr.read_text(), re.M)
        if turns and (best is None or float(turns[-1][2]) > float(best[1][-1][2])):
            best = (tr, turns)
    if best is None:
        return None
    tr, turns = best
    wavdir = tr.parent.parent.parent / "sentences" / "wav" / tr.stem
    x = np.zeros(int((float(turns[-1][2]) + 1.0) * 16000), np.float32)
    for utt, start, _ in turns:
        y, fs = sf.read(wavdir / f"{utt}.wav", dtype="float32")
        s = int(float(start) * fs)
        x[s:s + y.size] += y[: x.size - s]
    sf.write(path, np.stack([x, x], 1), 16000, subtype="PCM_16")
    return path


def extractor_dir(tmp: Path, src: Path) -> Path:
    if (src / "final.ie.pt").is_file():
        return src
    g = torch.Generator().manual_seed(0)
    out = tmp / "extractor"
    out.mkdir()
    ubm = DiagGmm(torch.full((128,), 1 / 128, dtype=torch.float64), torch.randn(128, 40, generator=g).double(),
                  torch.ones(128, 40, dtype=torch.float64))
    ubm.save(out / "final.dubm.pt")
    IvectorExtractor.init_from_diag_ubm(ubm, 100).save(out / "final.ie.pt")
    save_torch({"mat": torch.randn(40, 281, generator=g) / 17}, out / "final.mat.pt")
    stats = torch.zeros(2, 41, dtype=torch.float64)
    stats[0, -1] = 1.0
    save_torch({"stats": stats}, out / "global_cmvn.stats.pt")
    (out / "splice_opts").write_text(SpliceOptions().to_conf())
    (out / "online_cmvn.conf").write_text(OnlineCmvnOptions().to_conf())
    return out


def make_export(tmp: Path, net: str, ext: Path, mfcc_conf: Path) -> Path:
    make_cfg, hidden = NETS[net]
    g = torch.Generator().manual_seed(0)
    body = TdnnfModel(make_cfg(num_pdfs=914 if net == "mini" else 3600, feat_dim=40, ivector_dim=100), generator=g)
    m = make_grafted_model(body, "tdnnf12", hidden, 4, 0.25, False)
    with torch.no_grad():  # BatchNorm statistics, as a trained model has (eval mode then uses them)
        body.train()
        h = body.embed(torch.randn(4, 300, 40, generator=g), torch.randn(4, 100, generator=g))
        m.head.train()
        m.head(h.reshape(-1, h.shape[-1]))
    m.eval()
    save_torch(dict(m.to_dict(), labels=["ang", "hap", "neu", "sad"]), tmp / f"{net}.pt")
    return export_model(tmp / f"{net}.pt", mfcc_conf, ext, tmp / f"export_{net}", ExportInfo(f"bench_{net}"))


def worker(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    torch.set_num_threads(args.threads)
    from ser.infer.audio import file_blocks
    from ser.infer.recognizer import EmotionRecognizer, mfcc_blocks
    from ser.features.mfcc import MfccOptions

    t0, c0 = time.perf_counter(), time.process_time()
    if args.worker == "mfcc":
        opts = MfccOptions.from_conf(Path(args.model) / "mfcc.conf")
        n = sum(b.shape[0] for b in mfcc_blocks(file_blocks(args.file), opts, torch.Generator().manual_seed(0)))
        load = 0.0
    else:
        rec = EmotionRecognizer.from_dir(args.model, device=args.device, vad=args.vad == "true")
        load = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        n = rec.frame_posteriors(file_blocks(args.file), "bench").posteriors.shape[0]
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"secs": secs, "cpu": cpu, "load": load, "frames": n,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(kind: str, model: Path, wav: Path, args: argparse.Namespace) -> dict:
    """The best of ``--repeats`` fresh processes (least CPU time; the wall clock of that run) and the
    largest peak RSS of them: the speed of a shared virtual machine's cores drifts by tens of percent
    from one minute to the next, so one run says little."""
    cmd = [sys.executable, __file__, "--worker", kind, "--model", str(model), "--file", str(wav),
           "--threads", str(args.threads), "--device", args.device, "--vad", args.vad]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    runs = []
    for _ in range(args.repeats):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"worker failed: {out.stderr.strip().splitlines()[-1]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    key = "secs" if args.threads > 1 or args.device != "cpu" else "cpu"  # two threads, a GPU: the wall clock
    return dict(min(runs, key=lambda r: r[key]), rss_mb=max(r["rss_mb"] for r in runs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[60.0, 600.0])
    p.add_argument("--dialog", action="store_true", help="also an IEMOCAP dialog assembled from corpora/")
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--extractor-dir", default=str(ROOT / "exp/nnet3/extractor"))
    p.add_argument("--mfcc-config", default=str(ROOT / "conf/mfcc_hires.conf"))
    p.add_argument("--corpus", default=str(ROOT / "corpora/IEMOCAP_full_release"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--vad", default="true", choices=("true", "false"), help="speech detection (ser-infer's --vad)")
    p.add_argument("--repeats", type=int, default=3, help="processes per measurement; the best is shown")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--file", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ext = extractor_dir(tmp, Path(args.extractor_dir))
        print(f"i-vector extractor: {ext if ext != tmp / 'extractor' else 'random, recipe size'}; "
              f"torch threads {args.threads}; device {args.device}; speech detection {args.vad}")
        wavs = [(f"{s:g} s speech-like", write_speech(tmp / f"speech_{s:g}.wav", s, seed=1)) for s in args.seconds]
        if args.dialog:
            dlg = write_dialog(tmp / "dialog.wav", Path(args.corpus))
            if dlg is not None:
                wavs.insert(0, (f"dialog {sf.info(dlg).duration:.0f} s stereo", dlg))
        exports = {net: make_export(tmp, net, ext, Path(args.mfcc_config)) for net in args.nets}
        print("x real time from CPU seconds of the measured process (wall clock in brackets: other jobs "
              "share the CPU); MFCC share = MFCC-alone CPU time / inference CPU time")
        print(f"{'recording':26s} {'net':8s} {'infer xRT':>17s} {'MFCC xRT':>17s} {'MFCC share':>10s} "
              f"{'peak RSS':>9s} {'MFCC RSS':>9s}")
        for name, wav in wavs:
            dur = sf.info(wav).duration
            ref = measure("mfcc", exports[args.nets[0]], wav, args)
            for net in args.nets:
                r = measure("infer", exports[net], wav, args)
                print(f"{name:26s} {net:8s} {dur / r['cpu']:7.0f}x ({dur / r['secs']:5.0f}x) "
                      f"{dur / ref['cpu']:7.0f}x ({dur / ref['secs']:5.0f}x) {ref['cpu'] / r['cpu']:9.1%} "
                      f"{r['rss_mb']:7.0f}MB {ref['rss_mb']:7.0f}MB", flush=True)


if __name__ == "__main__":
    main()
