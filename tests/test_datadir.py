"""Data-dir library (incl. modify_speaker_info), Kaldi tables, job runner and run.sh option handling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from ser.io.datadir import DataDir, DataDirError, Segment, modify_speaker_info
from ser.io.tables import ArkScpWriter, TableError, read_matrix, read_scp
from ser.prep.perturb import speed_perturb_3way, volume_perturb_dir

ROOT = Path(__file__).resolve().parents[1]


def small_dir(n_spk=4, per=3) -> DataDir:
    utt2spk = {f"spk{s}-utt{u}": f"spk{s}" for s in range(n_spk) for u in range(per + s)}
    return DataDir(
        utt2spk=utt2spk,
        wav={f"spk{s}-reco": f"/x/{s}.wav" for s in range(n_spk)},
        segments={u: Segment(u.split("-")[0] + "-reco", 1.0 * int(u[-1]), 1.0 * int(u[-1]) + 0.9) for u in utt2spk},
        text={u: "w" for u in utt2spk},
        extras={"utt2emo": {u: "neu" for u in utt2spk}},
    )


def test_roundtrip_subset_split(tmp_path):
    d = small_dir()
    d.write(tmp_path / "d")
    e = DataDir.load(tmp_path / "d")
    assert e.utt2spk == d.utt2spk and e.text == d.text and e.extra("utt2emo") == d.extra("utt2emo")
    assert (tmp_path / "d" / "spk2utt").read_text().splitlines()[0] == "spk0 spk0-utt0 spk0-utt1 spk0-utt2"
    sub = e.subset(["spk1-utt0", "spk2-utt1"])
    assert sub.wav == {"spk1-reco": "/x/1.wav", "spk2-reco": "/x/2.wav"} and set(sub.extra("utt2emo")) == set(sub.utts)
    with pytest.raises(DataDirError, match="unknown utterances"):
        e.subset(["nope"])
    parts = e.split(3)
    loaded = [DataDir.load(p) for p in parts]
    spk_sets = [set(x.spk2utt) for x in loaded]
    assert all(spk_sets) and set.union(*spk_sets) == set(e.spk2utt)
    assert sum(len(x.utts) for x in loaded) == len(e.utts)
    assert all(a.isdisjoint(b) for i, a in enumerate(spk_sets) for b in spk_sets[i + 1:])
    with pytest.raises(DataDirError, match="cannot split 4 speakers into 5"):
        e.split(5)


def test_fix_drops_utterances_missing_from_a_file():
    fixed = small_dir()
    fixed.text.pop("spk0-utt0")
    assert "spk0-utt0" not in fixed.fix().utt2spk


def test_ark_scp_readable_by_kaldiio(tmp_path):
    rng = np.random.default_rng(0)
    mats = {f"u{i}": rng.standard_normal((5 + i, 3)).astype(np.float32) for i in range(4)}
    with ArkScpWriter(tmp_path / "a.ark", tmp_path / "a.scp") as w:
        for k, m in mats.items():
            w.write(k, m)
    ref = kaldiio.load_scp(str(tmp_path / "a.scp"))  # independent reader
    for k, m in mats.items():
        np.testing.assert_array_equal(ref[k], m)
        np.testing.assert_array_equal(read_matrix(read_scp(tmp_path / "a.scp")[k]), m)
    with pytest.raises(TableError, match="duplicate key"):
        with ArkScpWriter(tmp_path / "b.ark", tmp_path / "b.scp") as w:
            w.write("x", mats["u0"])
            w.write("x", mats["u0"])
    assert not (tmp_path / "b.scp").exists() and not (tmp_path / "b.ark").exists()


def test_speed_and_volume_perturbation_dirs():
    d = small_dir(n_spk=1)
    d.wav = {"spk0-reco": "sph2pipe -f wav -p /x/0.sph |"}
    sp = speed_perturb_3way(d)
    assert len(sp.utts) == 3 * len(d.utts)
    assert sp.utt2spk["sp0.9-spk0-utt1"] == "sp0.9-spk0"
    assert sp.wav["sp1.1-spk0-reco"] == "sph2pipe -f wav -p /x/0.sph | sox -t wav - -t wav - speed 1.1 |"
    assert sp.segments["sp0.9-spk0-utt1"].start == pytest.approx(round(1.0 / 0.9, 2))
    assert sp.segments["spk0-utt1"].start == 1.0
    assert sp.extra("utt2uniq")["sp0.9-spk0-utt1"] == sp.extra("utt2uniq")["spk0-utt1"] == "spk0-utt1"
    assert set(sp.extra("utt2uniq")) == set(sp.utts)
    sp.validate()
    v = volume_perturb_dir(sp)
    import random

    r = random.Random(0)
    expect = {k: r.uniform(0.125, 2) for k in sorted(sp.wav)}
    for k, x in v.wav.items():
        assert x.endswith(f"sox --vol {expect[k]:.6f} -t wav - -t wav - |")
    assert volume_perturb_dir(v).wav == v.wav  # reco2vol present: not perturbed twice


def test_jobs_local(tmp_path):
    log = tmp_path / "log" / "j.JOB.log"
    cmd = f"echo job JOB > {tmp_path}/out.JOB"
    r = subprocess.run([sys.executable, "-m", "ser.jobs", "JOB=1:3", str(log), cmd], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [(tmp_path / f"out.{i}").read_text().strip() for i in (1, 2, 3)] == ["job 1", "job 2", "job 3"]
    assert "# Ended (code 0)" in (tmp_path / "log" / "j.2.log").read_text()
    r = subprocess.run([sys.executable, "-m", "ser.jobs", "JOB=1:3", str(log), "test JOB -ne 2"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 1 and f"1 / 3 failed, log is in {tmp_path}/log/j.2.log" in r.stderr


def test_run_sh_usage():
    r = subprocess.run(["bash", str(ROOT / "run.sh"), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 1 and "unknown option --bogus" in r.stderr and "Usage:" in r.stderr
    r = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage"], capture_output=True, text=True)
    assert r.returncode == 1 and "Usage:" in r.stderr


def test_modify_speaker_info():
    """utils/data/modify_speaker_info.sh: by utterance count, by duration, both; worked by hand."""
    u2s = {f"s1-u{i}": "s1" for i in range(5)} | {"s2-u0": "s2"}
    got = modify_speaker_info(u2s, 2)
    assert got == {"s1-u0": "s1-1", "s1-u1": "s1-1", "s1-u2": "s1-2", "s1-u3": "s1-2", "s1-u4": "s1-3", "s2-u0": "s2-1"}
    dur = {"s1-u0": 100.0, "s1-u1": 70.0, "s1-u2": 20.0, "s1-u3": 200.0, "s1-u4": 1.0, "s2-u0": 500.0}
    # 180 s: [100 + 70], [20] (+ 200 would exceed), [200], [1] (200 + 1 > 180)
    got = modify_speaker_info(u2s, seconds_per_spk_max=180, utt2dur=dur)
    assert got == {"s1-u0": "s1-1", "s1-u1": "s1-1", "s1-u2": "s1-2", "s1-u3": "s1-3", "s1-u4": "s1-4", "s2-u0": "s2-1"}
    # both limits: at most 1 utterance per group wins here
    assert modify_speaker_info(u2s, 1, 180, dur)["s1-u1"] == "s1-2"
    # the width of j is that of the speaker's number of groups
    many = {f"a-u{i:02d}": "a" for i in range(11)}
    got = modify_speaker_info(many, 1)
    assert got["a-u00"] == "a-01" and got["a-u10"] == "a-11"
    assert modify_speaker_info(u2s) == u2s  # no limit: speakers kept
    with pytest.raises(DataDirError, match="no duration for utterance"):
        modify_speaker_info(u2s, seconds_per_spk_max=10, utt2dur={})
