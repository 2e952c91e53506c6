"""steps/make_mfcc.sh end to end: segments → features equal kaldi-native-fbank; skips are fixed away;
--compress true (the default) stores the same features as Kaldi's compressed matrices."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kaldi_native_fbank as knf
import kaldiio
import numpy as np
import soundfile as sf

from ser.io.compressed import compress
from ser.io.datadir import DataDir
from ser.prep.tedlium import prepare_tedlium

ROOT = Path(__file__).resolve().parents[1]


def knf_mfcc(x: np.ndarray) -> np.ndarray:
    o = knf.MfccOptions()
    o.frame_opts.dither = 0
    o.mel_opts.num_bins = 40
    o.num_ceps = 40
    o.mel_opts.low_freq = 20
    o.mel_opts.high_freq = -400
    o.use_energy = False
    m = knf.OnlineMfcc(o)
    m.accept_waveform(16000, x.astype(np.float32).tolist())
    m.input_finished()
    return np.stack([m.get_frame(i) for i in range(m.num_frames_ready)])


def test_make_mfcc_matches_reference(tedlium, tmp_path):
    data = tmp_path / "data"
    prepare_tedlium(tedlium, data, sets=["train"])
    d = data / "tedlium_train"
    conf = tmp_path / "mfcc.conf"
    conf.write_text((ROOT / "conf" / "mfcc_hires.conf").read_text() + "--dither=0\n")
    # one segment runs 2 s past the end of its recording: Kaldi's extract-segments skips it
    segs = (d / "segments").read_text().replace("JaneDoe_2010 2.975 6.1", "JaneDoe_2010 2.975 8.6")
    (d / "segments").write_text(segs)
    r = subprocess.run(["bash", "steps/make_mfcc.sh", "--nj", "2", "--mfcc-config", str(conf), "--compress", "false",
                        str(d), str(tmp_path / "log"), str(tmp_path / "mfcc")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 of 5 utterances got no features" in r.stdout
    logs = "".join(p.read_text() for p in (tmp_path / "log").glob("make_mfcc_tedlium_train.*.log"))
    assert "segment_past_end_skipped=1" in logs
    dd = DataDir.load(d)
    assert "JaneDoe_2010-0000300-0000600" not in dd.utt2spk and len(dd.utts) == 4
    feats = {k: np.array(v) for k, v in kaldiio.load_scp(str(d / "feats.scp")).items()}
    nf = {k: int(v) for k, v in (line.split() for line in (d / "utt2num_frames").read_text().splitlines())}
    for utt, s in dd.segments.items():
        x, fs = sf.read(tedlium / "train" / "sph" / f"{s.reco}.sph", dtype="int16")
        seg = x[int(s.start * fs + 0.5): int(s.end * fs + 0.5)]
        ref = knf_mfcc(seg)
        assert feats[utt].shape == ref.shape and nf[utt] == ref.shape[0]
        assert np.abs(feats[utt] - ref).max() < 1e-2
    # a second run reuses the features
    r2 = subprocess.run(["bash", "steps/make_mfcc.sh", "--mfcc-config", str(conf), "--compress", "false", str(d)],
                        cwd=ROOT, capture_output=True, text=True)
    assert r2.returncode == 0 and "up to date" in r2.stdout
    # the default --compress true is another option (the stamp records it): the arks hold the bytes of
    # Kaldi's CompressedMatrix (kAutomaticMethod) of the same float features
    r3 = subprocess.run(["bash", "steps/make_mfcc.sh", "--nj", "1", "--mfcc-config", str(conf), str(d)], cwd=ROOT,
                        capture_output=True, text=True)
    assert r3.returncode == 0 and "up to date" not in r3.stdout, r3.stdout + r3.stderr
    for utt, rx in (line.split() for line in (d / "feats.scp").read_text().splitlines()):
        ark, off = rx.rsplit(":", 1)
        body = compress(feats[utt])
        with open(ark, "rb") as f:
            f.seek(int(off))
            assert f.read(2 + len(body)) == b"\0B" + body, utt


def test_make_mfcc_usage_and_failure(tmp_path):
    r = subprocess.run(["bash", "steps/make_mfcc.sh"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "Usage: steps/make_mfcc.sh" in r.stderr
    r = subprocess.run(["bash", "steps/make_mfcc.sh", "--bogus", "1", "x"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "invalid option --bogus" in r.stderr
    d = tmp_path / "d"
    DataDir(utt2spk={"a-1": "a"}, wav={"a-1": str(tmp_path / "gone.wav")}).write(d)
    r = subprocess.run(["bash", "steps/make_mfcc.sh", "--nj", "1", "--mfcc-config", "conf/mfcc_hires.conf", str(d),
                        str(tmp_path / "log")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and f"logs in {tmp_path}/log" in r.stderr
    log = (tmp_path / "log" / "make_mfcc_d.1.log").read_text()
    assert "recording a-1: audio file not found" in log
    assert not (d / "feats.scp").exists()


def test_paths_with_spaces(tmp_path):
    """A TED-LIUM copy, data dir, logs and arks under paths with spaces: prep, speed + volume perturbation, MFCC."""
    from conftest import write_tedlium

    corpus = write_tedlium(tmp_path / "my corpus")
    data = tmp_path / "data dir"
    prepare_tedlium(corpus, data, sets=["dev"])
    sp = data / "tedlium_dev_sp"
    for cmd in (["utils/perturb_data_dir_speed_3way.sh", str(data / "tedlium_dev"), str(sp)],
                ["utils/perturb_data_dir_volume.sh", str(sp)],
                ["steps/make_mfcc.sh", "--nj", "1", "--mfcc-config", "conf/mfcc_hires.conf", str(sp),
                 str(tmp_path / "log dir"), str(tmp_path / "mfcc dir")]):
        r = subprocess.run(["bash", *cmd], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    assert "6 of 6 utterances" in r.stdout
    feats = kaldiio.load_scp(str(sp / "feats.scp"))
    assert len(feats) == 6 and all(m.shape[1] == 40 for m in feats.values())
