"""How the training-side programs grow with the corpus: a finished mini run's data replicated N times.

The replicas are a new data dir whose utterances and speakers are renamed ``rep<k>-...`` and whose
feats.scp / ivector_online.scp lines point at the run's own arks (no feature is copied); the alignment is
replicated likewise.  For each N each program runs as the recipe runs it, under /usr/bin/time:

* ``get_egs_e2e``  steps/chain/get_egs.sh --lang (whole utterances), ``--nj 1`` and ``--nj 2``;
* ``get_egs_chunk`` steps/chain/get_egs.sh --ali-dir (chunks), ``--nj 1`` and ``--nj 2``;
* ``train_e2e`` / ``train_chunk``  steps/train_chain.sh from those egs (``--egs-dir``), ``NPROC=1`` and ``2``,
  ``--max-steps`` minibatches, started fresh and again resumed from the checkpoint of a killed run;
* ``train_e2e_inmem``  the same training with its egs made in the process (no ``--egs-dir``): the reference,
  the features and every numerator in memory;
* ``align``  steps/chain/align.sh --egs-dir;
* ``train_ctc``  stage 8's CTC trainer (``python -m ser.bin.train_ctc``, the run's ``ctc`` options of
  conf/mini.yaml) on ``data/tedlium_train_mfcc26`` replicated, ``--epochs`` chosen so that a run is about
  ``--max-steps`` minibatches (the trainer has no step limit of its own); it reads every frame once before
  the first minibatch (the input standardisation statistics);
* ``paper2_ds_dense``  stage 9's frame head (``python -m ser.bin.train_paper2 --system ds_dense --epochs 1``)
  on one leave-one-speaker-out fold of ``data/iemocap_4cls_exc`` replicated, with the run's ``layer_1``
  features.  A replica keeps its turns' speakers (the folds of the protocol are the 10 speakers, each fold
  N times larger), utterance ids are unique.

* ``train_ser``  stage 7's emotion trainer (``python -m ser.bin.train_ser --num-epochs 1``, the run's
  exp/chain/tdnn model up to tdnnf12) on the first session fold of ``data/iemocap_4cls_exc`` replicated
  (utterances renamed, speakers kept), with the set's features and online i-vectors.

``--programs`` picks the groups (chain, ctc, paper2, ser); ``--code DIR`` runs the programs of another checkout of
ser (e.g. ``git archive <commit> | tar -x -C DIR``: the code before streaming) on the same replicas, to compare.

Per program and N it prints frames, peak RSS of the largest process (MB), seconds from the start to the
first minibatch, seconds per minibatch, wall seconds and the disk its outputs take, and writes them to
``--out`` (JSON: a list of objects with keys program, replicas, frames, peak_rss_mb, peak_anon_mb, start_s,
step_s, wall_s, disk_mb, nj, nproc).  peak_rss_mb (GNU time) counts the pages of the memory-mapped egs a
trainer has touched, which the kernel may drop at any time; peak_anon_mb (sampled every 0.2 s) is the
memory a process holds of its own, the figure that must not grow with N.  Times depend on the machine's load: compare rows of one run.

    .venv/bin/python bench/scale.py [--recipe .] [--replicas 1 8] [--max-steps 20] [--programs chain ctc paper2]
        [--code DIR] [--out exp/bench/scale.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = "data/tedlium_train_sp_comb"
IVECTORS = "exp/nnet3/ivectors_tedlium_train_sp_comb"
CTC_DATA = "data/tedlium_train_mfcc26"
EMO_SET = "data/iemocap_4cls_exc"
EMO_FEATS = "data/iemocap_all_ds_mini_layer_1"
EMO_IVECTORS = "exp/nnet3/ivectors_iemocap_all"
CODE = ROOT  # the checkout whose programs run (--code)


def replicate(recipe: Path, n: int, out: Path) -> int:
    """``n`` renamed copies of the mini run's chain training data (and i-vectors, alignment) under ``out``;
    returns the number of feature frames."""
    import torch

    from ser.io.datadir import DataDir
    from ser.train.align import Alignment

    d = DataDir.load(recipe / DATA, validate=False)
    iv = dict(line.split(None, 1) for line in (recipe / IVECTORS / "ivector_online.scp").read_text().splitlines())
    frames = d.utt2num_frames()
    ren = [(f"rep{k}-", u) for k in range(n) for u in sorted(d.utt2spk)]
    data, ivd = out / "data", out / "ivectors"
    for sub in (data, ivd):
        sub.mkdir(parents=True, exist_ok=True)
    DataDir(utt2spk={p + u: p + d.utt2spk[u] for p, u in ren}, text={p + u: d.text[u] for p, u in ren},
            feats={p + u: d.feats[u] for p, u in ren},
            extras={"utt2num_frames": {p + u: str(frames[u]) for p, u in ren}}).write(data)
    (ivd / "ivector_online.scp").write_text("".join(f"{p + u} {iv[u]}\n" for p, u in ren))
    shutil.copy(recipe / IVECTORS / "ivector_period", ivd / "ivector_period")
    ali = Alignment.load(recipe / "exp/chain/ali_e2e/ali.pt")
    rep = {f: {p + u: getattr(ali, f)[u] for p, u in ren if u in getattr(ali, f)} for f in ("phones", "phone_start",
                                                                                           "pdfs", "logprob")}
    (out / "ali").mkdir(exist_ok=True)
    Alignment(rep["phones"], rep["phone_start"], rep["pdfs"], rep["logprob"], ali.frame_subsampling_factor,
              ali.num_pdfs).save(out / "ali" / "ali.pt")
    chain = out / "chain"  # the run's den graph and pdf map; its num.pt (if any) replicated
    chain.mkdir(exist_ok=True)
    for f in ("den.pt", "pdf_map.pt", "den.stamp"):
        if (recipe / "exp/chain" / f).is_file():
            (chain / f).symlink_to(recipe / "exp/chain" / f)
    if (recipe / "exp/chain/num.pt").is_file():
        num = torch.load(recipe / "exp/chain/num.pt", weights_only=True)
        torch.save({"frame_subsampling_factor": num["frame_subsampling_factor"],
                    "num_output_frames": {p + u: num["num_output_frames"][u] for p, u in ren
                                          if u in num["num_output_frames"]},
                    "graphs": {p + u: num["graphs"][u] for p, u in ren if u in num["graphs"]}}, chain / "num.pt")
    return sum(frames[u] for _, u in ren)


def _renamed(d, n: int) -> tuple[list[tuple[str, str]], dict]:
    """(prefix, utterance) of ``n`` replicas of data dir ``d`` and their utt2spk (speakers renamed)."""
    ren = [(f"rep{k}-", u) for k in range(n) for u in sorted(d.utt2spk)]
    return ren, {p + u: p + d.utt2spk[u] for p, u in ren}


def replicate_ctc(recipe: Path, n: int, out: Path) -> int:
    """``n`` renamed copies of stage 8's training data dir (feats.scp lines point at the run's arks);
    returns the number of feature frames."""
    from ser.io.datadir import DataDir

    d = DataDir.load(recipe / CTC_DATA, validate=False)
    frames = d.utt2num_frames()
    ren, spk = _renamed(d, n)
    DataDir(utt2spk=spk, text={p + u: d.text[u] for p, u in ren}, feats={p + u: d.feats[u] for p, u in ren},
            extras={"utt2num_frames": {p + u: str(frames[u]) for p, u in ren}}).write(out)
    return sum(frames[u] for _, u in ren)


def ctc_epochs(data: Path, steps: int, max_frames: int, num_valid: int) -> float:
    """Passes that make about ``steps`` minibatches of the CTC trainer on ``data`` (its held-out split and
    length buckets; an utterance it would skip for its transcript makes the figure approximate)."""
    from ser.io.datadir import DataDir
    from ser.train.ctc_data import length_buckets, split_held_out

    d = DataDir.load(data, validate=False)
    frames = d.utt2num_frames()
    train, _ = split_held_out(d.utts, num_valid, 0)
    return steps / len(length_buckets([int(frames[u]) for u in train], max_frames))


def _emotion_set(recipe: Path, n: int, out: Path, feats_from: str, protocol: str) -> tuple[dict, Path]:
    """``n`` copies of paper 1's 4-class set under ``out/set`` (utterances renamed, speakers kept: the
    speaker stays the utterance-id's prefix, Kaldi's sorting rule, ``<spk>-rep<k>-<utt>``) with the feature
    lines of data dir ``feats_from``, and the first fold of ``protocol``; returns ({(k, utt): new name},
    the folds dir)."""
    from ser.emotion.folds import write_folds
    from ser.io.datadir import DataDir

    d = DataDir.load(recipe / EMO_SET, validate=False)
    f = DataDir.load(recipe / feats_from, validate=False)
    frames = f.utt2num_frames()
    name = {(k, u): f"{d.utt2spk[u]}-rep{k}-{u}" for k in range(n) for u in d.utt2spk}
    spk = {v: d.utt2spk[u] for (_, u), v in name.items()}
    extras = {x: {v: d.extra(x)[u] for (_, u), v in name.items()} for x in ("utt2emo", "utt2session")}
    extras["utt2num_frames"] = {v: str(frames[u]) for (_, u), v in name.items()}
    DataDir(utt2spk=spk, feats={v: f.feats[u] for (_, u), v in name.items()}, extras=extras).write(out / "set")
    folds = write_folds(out / "set", protocol)
    info = json.loads((folds / "folds.json").read_text())
    info["folds"] = dict(list(info["folds"].items())[:1])  # one fold: a fixed amount of work per replica
    (folds / "folds.json").write_text(json.dumps(info, indent=1) + "\n")
    return name, folds


def replicate_paper2(recipe: Path, n: int, out: Path) -> int:
    """Stage 9's inputs: the replicated set with its layer_1 features (also as the feature dir ``out/feats``)
    and one leave-one-speaker-out fold; returns the set's feature frames."""
    _emotion_set(recipe, n, out, EMO_FEATS, "speaker")
    shutil.copytree(out / "set", out / "feats", ignore=shutil.ignore_patterns("folds"))
    frames = {u: int(v) for u, v in (ln.split() for ln in (out / "set/utt2num_frames").read_text().splitlines())}
    return sum(frames.values())


def replicate_ser(recipe: Path, n: int, out: Path) -> int:
    """Stage 7's inputs: the replicated set with its MFCC, online i-vectors (scp lines) and one session
    fold; returns the set's feature frames."""
    name, _ = _emotion_set(recipe, n, out, EMO_SET, "session")
    iv = dict(line.split(None, 1) for line in (recipe / EMO_IVECTORS / "ivector_online.scp").read_text().splitlines())
    (out / "ivectors").mkdir()
    (out / "ivectors/ivector_online.scp").write_text("".join(f"{v} {iv[u]}\n" for (_, u), v in sorted(
        name.items(), key=lambda x: x[1])))
    shutil.copy(recipe / EMO_IVECTORS / "ivector_period", out / "ivectors/ivector_period")
    frames = {u: int(v) for u, v in (ln.split() for ln in (out / "set/utt2num_frames").read_text().splitlines())}
    return sum(frames.values())


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (from /proc/*/stat)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    return out


def _rss(pid: int) -> tuple[float, float]:
    """(RssAnon, RssFile) of ``pid`` in MB; (0, 0) once it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    except OSError:
        return 0.0, 0.0
    return tuple(int(fields.get(k, "0 kB").split()[0]) / 1024 for k in ("RssAnon", "RssFile"))  # type: ignore


def timed(cmd: list[str], env: dict, log: Path) -> tuple[float, float, float, float]:
    """Runs ``cmd`` under /usr/bin/time -v, sampling its processes every 0.2 s; (wall s, peak RSS MB of its
    largest process (time -v: anonymous and file-backed pages, the memory-mapped egs included), the peak
    anonymous RSS MB of any of its processes (what it holds in memory of its own), start epoch s)."""
    t0 = time.time()
    peak_anon = 0.0
    with open(log, "w") as f:
        p = subprocess.Popen(["/usr/bin/time", "-v", *cmd], cwd=CODE, env=env, stdout=f, stderr=subprocess.STDOUT)
        while p.poll() is None:
            peak_anon = max([peak_anon] + [_rss(q)[0] for q in _tree(p.pid)])
            time.sleep(0.2)
    text = log.read_text()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}); see {log}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    return time.time() - t0, rss, peak_anon, t0


def minibatch_times(train_log: Path) -> list[tuple[int, float]]:
    """(minibatch, epoch seconds) of the trainer's progress lines ("minibatch K/N ...")."""
    out = []
    for line in re.split(r"[\r\n]", train_log.read_text()):
        m = re.match(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .* minibatch (\d+)/\d+ ", line)
        if m:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((int(m.group(2)), t))
    return out


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2 ** 20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=".", help="a finished mini run (stages 0-6)")
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-steps", type=int, default=20)
    p.add_argument("--work", default="exp/bench/scale", help="replicas, egs and trainings (removed per N)")
    p.add_argument("--out", default="exp/bench/scale.json")
    p.add_argument("--programs", nargs="+", choices=["chain", "ctc", "paper2", "ser"],
                   default=["chain", "ctc", "paper2", "ser"])
    p.add_argument("--code", default=str(ROOT), help="the ser checkout whose programs run (default: this one)")
    p.add_argument("--tag", default="", help="appended to every program name (e.g. _old with --code)")
    a = p.parse_args()
    global CODE
    CODE = Path(a.code).resolve()
    recipe = Path(a.recipe).resolve()
    env = {**os.environ, "PYTHONPATH": str(CODE), "OMP_NUM_THREADS": "1"}
    rows: list[dict] = []

    def add(program, n, frames, wall, rss, anon, nj=1, nproc=1, start=None, step=None, disk=None):
        program += a.tag
        rows.append({"program": program, "replicas": n, "frames": frames, "peak_rss_mb": round(rss, 1),
                     "peak_anon_mb": round(anon, 1),
                     "start_s": None if start is None else round(start, 2),
                     "step_s": None if step is None else round(step, 3), "wall_s": round(wall, 2),
                     "disk_mb": None if disk is None else round(disk, 1), "nj": nj, "nproc": nproc})
        print(f"{program:18s} N={n:<3d} nj={nj} nproc={nproc} frames={frames:>10d} peak={rss:8.1f} MB "
              f"anon={anon:8.1f} MB "
              f"start={'-' if start is None else f'{start:6.1f}'} s step={'-' if step is None else f'{step:.3f}'} s "
              f"wall={wall:6.1f} s disk={'-' if disk is None else f'{disk:.1f}'} MB", flush=True)

    def train(program, n, frames, egs_args, exp, nproc, resume_from=None):
        cmd = ["steps/train_chain.sh", "--net", "mini", "--device", "cpu", "--max-steps", str(a.max_steps),
               "--num-valid-utts", "50", *egs_args, str(w / "data"), str(w / "ivectors"), str(w / "chain"), str(exp)]
        wall, rss, anon, t0 = timed(cmd, {**env, "NPROC": str(nproc)}, w / f"{exp.name}.time.log")
        mb = [(k, t) for k, t in minibatch_times(exp / "log" / "train.log") if t >= t0]
        first = min(mb)[1] - t0 if mb else None
        step = (mb[-1][1] - mb[0][1]) / (mb[-1][0] - mb[0][0]) if len(mb) > 1 and mb[-1][0] > mb[0][0] else None
        add(program + ("_resume" if resume_from else ""), n, frames, wall, rss, anon, nproc=nproc, start=first,
            step=step)

    def progress(log: Path, t0: float) -> tuple[float | None, float | None]:
        """(seconds from t0 to the first minibatch, seconds per minibatch) of a log's progress lines."""
        mb = [(k, t) for k, t in minibatch_times(log) if t >= t0]
        first = min(mb)[1] - t0 if mb else None
        step = (mb[-1][1] - mb[0][1]) / (mb[-1][0] - mb[0][0]) if len(mb) > 1 and mb[-1][0] > mb[0][0] else None
        return first, step

    for n in a.replicas:
        w = (ROOT / a.work).resolve() / f"x{n}"
        shutil.rmtree(w, ignore_errors=True)
        w.mkdir(parents=True)
        if "ctc" in a.programs:
            frames = replicate_ctc(recipe, n, w / "ctc_data")
            epochs = ctc_epochs(w / "ctc_data", a.max_steps, 2000, 50)
            log = w / "train_ctc.time.log"
            wall, rss, anon, t0 = timed([sys.executable, "-m", "ser.bin.train_ctc", "--net", "mini", "--device", "cpu",
                                         "--epochs", f"{epochs:.6g}", "--max-frames", "2000", "--num-valid-utts", "50",
                                         "--valid-interval", "0", str(w / "ctc_data"), str(w / "train_ctc")], env, log)
            add("train_ctc", n, frames, wall, rss, anon, start=progress(log, t0)[0], step=progress(log, t0)[1],
                disk=disk_mb(w / "train_ctc"))
        if "paper2" in a.programs:
            frames = replicate_paper2(recipe, n, w / "paper2")
            log = w / "paper2_ds_dense.time.log"
            wall, rss, anon, t0 = timed([sys.executable, "-m", "ser.bin.train_paper2", "--system", "ds_dense",
                                         "--epochs", "1", str(w / "paper2/feats"), str(w / "paper2/set/folds/speaker"),
                                         str(w / "paper2/ds_dense")], env, log)
            add("paper2_ds_dense", n, frames, wall, rss, anon, disk=disk_mb(w / "paper2/ds_dense"))
        if "ser" in a.programs:
            frames = replicate_ser(recipe, n, w / "ser")
            fold = next(p for p in sorted((w / "ser/set/folds/session").iterdir()) if p.is_dir())
            log = w / "train_ser.time.log"
            wall, rss, anon, t0 = timed([sys.executable, "-m", "ser.bin.train_ser", "--num-epochs", "1", "--device",
                                         "cpu", str(fold), str(w / "ser/ivectors"),
                                         str(recipe / "exp/chain/tdnn/final.pt"), str(w / "ser/train")], env, log)
            add("train_ser", n, frames, wall, rss, anon, disk=disk_mb(w / "ser/train"))
        if "chain" not in a.programs:
            continue
        frames = replicate(recipe, n, w)
        chain = str(w / "chain")
        common = ["--num-utts-subset", "50", str(w / "data"), str(w / "ivectors"), chain]
        for kind, how in (("e2e", ["--lang", str(recipe / "data/lang_chain"), "--net", "mini"]),
                          ("chunk", ["--ali-dir", str(w / "ali"), "--model",
                                     str(recipe / "exp/chain/tdnn_e2e/final.pt")])):
            for nj in (1, 2):
                egs = w / f"egs_{kind}_nj{nj}"
                wall, rss, anon, _ = timed(["steps/chain/get_egs.sh", "--nj", str(nj), *how, *common, str(egs)], env,
                                           w / f"get_egs_{kind}_nj{nj}.time.log")
                add(f"get_egs_{kind}", n, frames, wall, rss, anon, nj=nj, disk=disk_mb(egs))
            egs_args = ["--egs-type", kind, "--egs-dir", str(w / f"egs_{kind}_nj2")]
            if kind == "chunk":
                egs_args += ["--input-model", str(recipe / "exp/chain/tdnn_e2e/final.pt")]
            for nproc in (1, 2):
                train(f"train_{kind}", n, frames, egs_args, w / f"train_{kind}_np{nproc}", nproc)
            # a resume: the checkpoint of the run above, the schedule continued for --max-steps more
            train(f"train_{kind}", n, frames, egs_args, w / f"train_{kind}_np1", 1, resume_from=True)
        if (w / "chain/num.pt").is_file():  # the in-memory reference needs num.pt
            train("train_e2e_inmem", n, frames, ["--egs-type", "e2e"], w / "train_e2e_inmem", 1)
        wall, rss, anon, _ = timed(["steps/chain/align.sh", "--device", "cpu", "--egs-dir", str(w / "egs_e2e_nj2"),
                                    str(w / "data"), chain, str(recipe / "exp/chain/tdnn_e2e/final.pt"),
                                    str(w / "ali_out")], env, w / "align.time.log")
        add("align", n, frames, wall, rss, anon)
    out = ROOT / a.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
