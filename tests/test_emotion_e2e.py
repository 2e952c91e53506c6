"""Stage 7 end to end: local/ser/run_tdnn.sh on a tiny set, killed and re-run, every output checked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from emotion_data import CLASSES, FEAT_DIM, IVEC_DIM, save_tiny_model, write_tiny_set
from infer_data import MFCC_CONF, voice, write_extractor, write_wav
from ser.features.mfcc import MfccOptions

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ["tdnn_l12", "tdnn_l13", "tdnn_prefinal", "tdnn_scratch", "tdnn_l12_uttivec", "tdnn_l12_noivec"]
CONFIG = """nj: 2
device: cpu
corpora:
  xcorpus: corpora/XC
ser:
  set: iemocap_tiny
  labels: [ang, hap, neu, sad]
  protocol: session
  num_valid_speakers: 1
  model: exp/chain/tdnn/final.pt
  ivector_dir: exp/nnet3/iv_spk
  utt_ivector_dir: exp/nnet3/iv_utt
  systems: [tdnn_l12, tdnn_l13, tdnn_prefinal, tdnn_scratch, tdnn_l12_uttivec, tdnn_l12_noivec]
  layer: tdnnf12
  prefinal_layer: prefinal-l
  layer_selection_folds: [Ses02]
  hidden_dim: 16
  primary_lr_factor: 0.25
  num_epochs: 2
  patience: 0
  initial_lrate: 0.01
  final_lrate: 0.001
  chunk_width: 45
  minibatch_size: 8
  cache_frozen_body: true
  seed: 0
"""


def recipe_dir(root: Path, systems: list[str] = SYSTEMS) -> Path:
    """A recipe directory with the repository's scripts and package linked in, and tiny data."""
    root.mkdir()
    for name in ("path.sh", "cmd.sh", "steps", "local", "utils", "ser", ".venv"):
        (root / name).symlink_to(ROOT / name)
    (root / "conf").mkdir()
    (root / "conf/tiny.yaml").write_text(CONFIG.replace(", ".join(SYSTEMS), ", ".join(systems)))
    write_tiny_set(root, sessions=2, utts_per_speaker=6)
    (root / "exp/chain/tdnn").mkdir(parents=True)
    save_tiny_model(root / "exp/chain/tdnn/final.pt")
    (root / "conf/mfcc_hires.conf").write_text(MFCC_CONF)  # what the export step copies (13 dims here)
    write_extractor(root / "exp/nnet3/extractor", [voice(2.0, seed=0)], MfccOptions.from_conf(root / "conf/mfcc_hires.conf"))
    write_xcorpus_set(root / "data/xcorpus/iemocap_tiny")
    return root


def write_xcorpus_set(data: Path, n: int = 8) -> None:
    """The other corpus's set as stage 1 prepares it (wav.scp, utt2spk, utt2emo), with IEMOCAP's ids."""
    utts = {f"Ses01{g}-Ses01F_impro01_{g}{k:03d}": CLASSES[(k + (g == "M")) % len(CLASSES)]
            for k in range(n // 2) for g in "FM"}
    wavs = {u: write_wav(data / "wav" / f"{u}.wav", voice(1.0 + 0.1 * i, seed=50 + i)) for i, u in enumerate(utts)}
    (data / "wav.scp").write_text("".join(f"{u} {wavs[u]}\n" for u in sorted(utts)))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)))
    (data / "utt2emo").write_text("".join(f"{u} {utts[u]}\n" for u in sorted(utts)))


def run_stage7(root: Path, kill: str | None = None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SER_KILL_AT", "PYTHONPATH")}
    if kill:
        env["SER_KILL_AT"] = kill
    return subprocess.run(["bash", str(root / "local/ser/run_tdnn.sh"), "--config", "conf/tiny.yaml", *args],
                          cwd=root, env=env, capture_output=True, text=True)


def fold_uas(root: Path, systems: list[str]) -> dict:
    return {s: [(f["fold"], f["ua"], f["wa"]) for f in
                json.loads((root / f"exp/ser/{s}/results.json").read_text())["folds"]] for s in systems}


@pytest.mark.skipif(not (ROOT / ".venv/bin/python").exists(), reason="needs the recipe's .venv")
def test_stage7_end_to_end_killed_and_rerun(tmp_path):
    ref = recipe_dir(tmp_path / "ref")
    r = run_stage7(ref)
    assert r.returncode == 0, r.stdout + r.stderr
    ser = ref / "exp/ser"
    for s in SYSTEMS:
        d = ser / s
        folds = ["Ses02"] if s in ("tdnn_l13", "tdnn_prefinal") else ["Ses01", "Ses02"]
        assert (d / "labels.txt").read_text().split() == CLASSES
        for name in ("results.json", "results.md", "confusion.png", "meta.json"):
            assert (d / name).stat().st_size > 0, d / name
        meta = json.loads((d / "meta.json").read_text())
        assert meta["folds"] == folds and set(meta["valid"]) == set(folds)
        assert all(0 <= meta["valid"][f]["ua"] <= 1 for f in folds)
        for f in folds:
            fd = d / f
            for name in ("final.pt", "valid.json", "test.json", "training_curve.png",
                         "log/train.log", "log/decode.log", "utt2pred", "utt2post"):
                assert (fd / name).stat().st_size > 0, fd / name
            test = (ref / f"data/iemocap_tiny/folds/session/{f}/test/utt2spk").read_text().split("\n")
            pred = dict(line.split() for line in (fd / "utt2pred").read_text().splitlines())
            assert sorted(pred) == sorted(line.split()[0] for line in test if line)
            assert set(pred.values()) <= set(CLASSES)
            for line in (fd / "utt2post").read_text().splitlines():
                p = [float(x) for x in line.split()[1:]]
                assert len(p) == 4 and abs(sum(p) - 1) < 1e-4
                assert CLASSES[p.index(max(p))] == pred[line.split()[0]]
    for t in ("table2.md", "table3.md"):
        assert "not run" not in (ser / t).read_text()
    info = json.loads((ser / "tdnn_l12_uttivec/export/model.json").read_text())  # the deployed model
    cv = json.loads((ser / "tdnn_l12_uttivec/results.json").read_text())["mean"]
    assert info["cross_validation"]["mean"]["ua"] == cv["ua"] and info["set"] == "iemocap_tiny"
    assert (ser / "tdnn_l12_uttivec/final/final.pt").is_file()
    assert "Transfer minus scratch" in (ser / "table3.md").read_text()
    assert "| i-vectors minus none (tdnn_l12 - tdnn_l12_noivec) |" in (ser / "table3.md").read_text()
    assert "| Ses01 |" in (ser / "table1.md").read_text()
    # without i-vectors: MFCC only (the body has no i-vector input), paired with tdnn_l12 on the same turns
    noivec = torch.load(ser / "tdnn_l12_noivec/Ses01/final.pt", weights_only=True)
    assert noivec["body_config"]["ivector_dim"] == 0 and noivec["body_config"]["lda_dim"] == 3 * FEAT_DIM + IVEC_DIM
    assert json.loads((ser / "tdnn_l12_noivec/Ses01/options.json").read_text())["ivector_dir"] == "none"
    cells = next(ln for ln in (ref / "exp/results.md").read_text().splitlines()
                 if ln.startswith("| tdnn_l12_noivec |")).split(" | ")
    assert cells[12][0] in "+-" and "vs" not in cells[12] and cells[13][0].isdigit(), cells   # ΔUA, its p
    assert "| 13th TDNN | tdnnf13 |" in (ser / "table2.md").read_text()
    # the cross-corpus test of the export (corpora.xcorpus): ser-infer on data/xcorpus/<set>, scored, a row
    xc = json.loads((ser / "tdnn_l12_uttivec_xcorpus/results.json").read_text())
    assert [f["fold"] for f in xc["folds"]] == ["XC"] and xc["pooled"]["n"] == 8
    assert xc["reference"] == "data/xcorpus/iemocap_tiny/utt2emo"
    assert (ser / "tdnn_l12_uttivec_xcorpus/confusion.png").is_file()
    row = next(ln for ln in (ref / "exp/results.md").read_text().splitlines()
               if ln.startswith("| tdnn_l12_uttivec_xcorpus |"))
    assert "| iemocap_tiny | trained on IEMOCAP_full_release, tested on XC | 1 |" in row
    assert "tdnn_l12_uttivec_xcorpus: trained on IEMOCAP_full_release, tested on XC (8 utterances)" in r.stdout

    # a re-run has nothing to do
    r = run_stage7(ref)
    assert r.returncode == 0 and "0 of the (system, fold) trainings to run" in r.stdout
    assert "exp/ser/tdnn_l12_uttivec_xcorpus: up to date" in r.stdout

    # the same driver on another protocol's folds, as stage 9 runs tdnn_l12 under paper 2's protocol
    subprocess.run(["bash", "steps/ser/make_folds.sh", "--protocol", "speaker", "data/iemocap_tiny"], cwd=ref,
                   check=True, capture_output=True)
    speakers = sorted(p.name for p in (ref / "data/iemocap_tiny/folds/speaker").iterdir() if p.is_dir())
    table3 = (ser / "table3.md").stat().st_mtime_ns
    r = run_stage7(ref, None, "--folds", "data/iemocap_tiny/folds/speaker", "--systems", "tdnn_l12",
                   "--suffix", "_tiny_speaker")
    assert r.returncode == 0, r.stdout + r.stderr
    meta = json.loads((ser / "tdnn_l12_tiny_speaker/meta.json").read_text())
    assert meta["protocol"] == "speaker" and meta["set"] == "iemocap_tiny" and meta["folds"] == speakers
    assert (ser / "table3.md").stat().st_mtime_ns == table3       # paper 1's tables are not its business
    row = next(x for x in (ref / "exp/results.md").read_text().splitlines() if x.startswith("| tdnn_l12_tiny_"))
    assert "| speaker | 4 |" in row and "(reference)" in row

    # killed inside a training and inside a decoding, then re-run: the same numbers
    killed = ["tdnn_scratch"]
    run = recipe_dir(tmp_path / "run", killed)
    r = run_stage7(run, kill="*tdnn_scratch/Ses02:epoch0:step1")
    assert r.returncode != 0
    assert "exp/ser/tdnn_scratch/Ses02/log/train.log" in r.stderr  # the failure names its log
    r = run_stage7(run, kill="*tdnn_scratch/Ses02:decoded")
    assert r.returncode != 0 and "exp/ser/tdnn_scratch/Ses02/log/decode.log" in r.stderr
    r = run_stage7(run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert fold_uas(run, killed) == fold_uas(ref, killed)
