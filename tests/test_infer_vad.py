"""Speech detection in inference, the provenance warning and ser-infer's command-line faults (issue 28,
items 1, 2 and 7): Silero VAD's network against the wheel's TorchScript model, no_speech for white noise,
a tone and silence, speech with long pauses (espeak-ng via ser.corpora.espeak), all-speech recordings
unchanged, the timeline's unlabelled windows, and the CLI's usage errors before any audio is read."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from infer_data import make_system, write_wav
from ser.bin import ser_infer
from ser.cli import run_program
from ser.infer import recognizer as recognizer_module
from ser.infer.recognizer import EmotionRecognizer
from ser.infer.timeline import NO_SPEECH, window_posteriors
from ser.infer.vad import CHUNK, SileroVad, VadStream, _wheel_data, speech_mask

ROOT = Path(__file__).resolve().parents[1]
FS = 16000


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> dict[str, Path]:
    return make_system(tmp_path_factory.mktemp("vad"), num_wavs=2)


@pytest.fixture(scope="module")
def rec(system) -> EmotionRecognizer:
    return EmotionRecognizer.from_dir(system["export"], device="cpu")


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, np.ndarray]:
    """Two espeak-ng utterances (float in [-1, 1], digital silence trimmed)."""
    from ser.corpora.espeak import synth_16k

    return (synth_16k("I cannot believe you did that to me again.", "en"),
            synth_16k("Well, maybe we can talk about it tomorrow.", "en+f3"))


def noise_floor(n: int, seed: int = 0) -> np.ndarray:
    return (1e-3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# ------------------------------------------------------------------------------------------------- network
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")  # the reference
def test_silero_network_equals_the_wheels_torchscript_model(speech):
    """The batched network over uneven blocks gives the probabilities of the wheel's model called one 512-sample
    chunk at a time (silero_vad.jit, as get_speech_timestamps calls it; the last chunk zero padded)."""
    x = np.concatenate([noise_floor(5000), speech[0], noise_floor(7000, 1)])
    jit = torch.jit.load(str(_wheel_data() / "silero_vad.jit"), map_location="cpu").eval()
    jit.reset_states()
    n = -(-x.size // CHUNK)
    padded = torch.nn.functional.pad(torch.from_numpy(x), (0, n * CHUNK - x.size))
    with torch.no_grad():
        ref = np.array([jit(padded[i * CHUNK:(i + 1) * CHUNK][None], FS).item() for i in range(n)])
    s = VadStream(SileroVad.from_wheel())
    for piece in np.array_split(x * 32768, [700, 701, 9000, 30000]):
        s.feed(piece)
    got = s.finish()
    assert got.shape == ref.shape and (ref > 0.5).any() and (ref < 0.1).any()
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_speech_mask_uses_frame_centres():
    m = speech_mask([(1000, 2000), (5000, 5100)], 12, 480, 200.0)  # centres 200, 680, 1160, ...
    assert np.flatnonzero(m).tolist() == [2, 3, 10]


# ------------------------------------------------------------------------------- decisions and outputs
@pytest.mark.parametrize("kind", ["white noise", "tone", "silence"])
def test_no_speech_is_reported_as_such(rec, kind):
    t = np.arange(3 * FS) / FS
    x = {"white noise": 0.3 * np.random.default_rng(1).standard_normal(t.size),
         "tone": 0.5 * np.sin(2 * np.pi * 440 * t), "silence": noise_floor(t.size)}[kind].astype(np.float32)
    c = rec.classify_signal(x, FS, kind)
    print(kind, c)
    assert c.label == NO_SPEECH and c.posteriors is None and c.speech == 0.0 and c.duration == 3.0
    assert rec.timeline(x, FS, name=kind).segments()[0].label == NO_SPEECH


def test_cli_no_speech_rows_and_exit_status(system, tmp_path, capsys):
    t = np.arange(2 * FS) / FS
    d = tmp_path / "in"
    write_wav(d / "noise.wav", 0.3 * np.random.default_rng(2).standard_normal(t.size).astype(np.float32))
    write_wav(d / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    base = ["--model", str(system["export"])]
    assert run_program(ser_infer.main, base + [str(d)]) == 0  # no speech is an answer, not a failure
    rows = [ln.split("\t") for ln in capsys.readouterr().out.splitlines()]
    assert rows[0][-2:] == ["duration", "speech"]
    assert [r[1:] for r in rows[1:]] == [["no_speech", "", "", "", "", "2.000", "0.000"]] * 2
    assert run_program(ser_infer.main, base + ["--format", "jsonl", str(d / "tone.wav")]) == 0
    assert json.loads(capsys.readouterr().out) == {"id": str(d / "tone.wav"), "label": "no_speech",
                                                   "posteriors": None, "duration": 2.0, "speech": 0.0}
    assert run_program(ser_infer.main, base + ["--format", "kaldi", "--output", str(tmp_path / "k"), str(d)]) == 0
    assert (tmp_path / "k/utt2emo").read_text().split() == [str(d / "noise.wav"), "no_speech",
                                                          str(d / "tone.wav"), "no_speech"]
    assert (tmp_path / "k/utt2post").read_text() == ""


def test_speech_with_long_pauses(rec, speech, tmp_path):
    """Pauses of 3 s between utterances: the decision averages the frames of speech only, the timeline leaves
    the pauses unlabelled (CSV rows no_speech with empty posteriors)."""
    a, b = speech
    gap = noise_floor(3 * FS, 3)
    x = np.concatenate([gap, a, gap, b, gap])
    spans = [(3.0, 3.0 + a.size / FS), (6.0 + a.size / FS, 6.0 + (a.size + b.size) / FS)]
    fp = rec.frame_posteriors(iter([x * 32768]), "pauses")
    c = rec.classify_signal(x, FS, "pauses")
    print(c)
    t = np.arange(fp.posteriors.shape[0]) * 0.03 + 0.0125  # output frame centres
    inside = np.zeros(t.size, bool)
    for s, e in spans:
        inside |= (t >= s) & (t < e)
    assert c.label != NO_SPEECH and abs(c.speech - (a.size + b.size) / FS) < 0.4
    assert not (fp.speech & ~inside & np.all([np.abs(t - s) > 0.3 for s in np.ravel(spans)], 0)).any()
    assert (fp.speech & inside).sum() >= 0.9 * inside.sum()  # the speech is found, the pauses are not speech
    ref = fp.posteriors.double().numpy()[fp.speech].mean(0)  # mean over the speech frames alone
    np.testing.assert_allclose(c.posteriors, ref, atol=1e-6)
    assert not np.allclose(c.posteriors, fp.posteriors.double().numpy().mean(0), atol=1e-4)
    tl = rec.timeline(x, FS, name="pauses")
    segs = tl.segments()
    labels = [s.label for s in segs]
    assert labels[0] == labels[-1] == NO_SPEECH and labels.count(NO_SPEECH) == 3, labels
    mid = next(s for s in segs[1:] if s.label == NO_SPEECH)  # the pause between the utterances
    assert spans[0][1] - 0.3 < mid.start and mid.end < spans[1][0] + 0.3 and mid.end - mid.start > 1.5
    tl.write_csv(tmp_path / "t.csv")
    tl.write_png(tmp_path / "t.png")
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows[1].startswith("0.000,") and rows[1].endswith(",no_speech,,,,")


def test_all_speech_recording_keeps_its_posteriors(system, speech, tmp_path):
    """A recording that is speech throughout (its VAD mask all true) gets the posteriors of the pipeline
    without speech detection, which test_infer.py compares with stage 7's decoding."""
    wav = write_wav(tmp_path / "speech.wav", speech[1])
    on = EmotionRecognizer.from_dir(system["export"], device="cpu")
    off = EmotionRecognizer.from_dir(system["export"], device="cpu", vad=False)
    fp = on.frame_posteriors(iter([speech[1] * 32768]), "s")
    assert fp.speech.all()
    a, b = on.classify_file(wav), off.classify_file(wav)
    assert a.posteriors == b.posteriors and a.label == b.label and a.speech == a.duration and b.speech is None


def test_window_posteriors_with_speech_against_brute_force():
    g = torch.Generator().manual_seed(0)
    post = torch.softmax(torch.randn(500, 4, generator=g), -1)
    speech = np.zeros(500, bool)
    speech[40:200] = speech[260:265] = speech[330:] = True
    starts, wp = window_posteriors(post, 0.03, 2.0, 0.5, 15.0, speech)
    t = 0.03 * np.arange(500)
    for s, row in zip(starts, wp):
        inside = (t >= s - 1e-9) & (t < s + 2.0 - 1e-9)
        if speech[inside].sum() < 0.5 * inside.sum():
            assert np.isnan(row).all()
        else:
            np.testing.assert_allclose(row, post.double().numpy()[inside & speech].mean(0), atol=1e-12)
    assert np.isnan(wp).any() and not np.isnan(wp).all()


# -------------------------------------------------------------------------------- provenance warning
def test_one_warning_for_a_model_of_the_synthetic_corpus(system, tmp_path, monkeypatch, caplog):
    import shutil

    exp = shutil.copytree(system["export"], tmp_path / "export")
    doc = json.loads((exp / "model.json").read_text())
    doc["corpus"] = "IEMOCAP layout, embedded synthetic corpus (stage 0)"  # as local/ser/export_tdnn.sh writes
    (exp / "model.json").write_text(json.dumps(doc))
    monkeypatch.setattr(recognizer_module, "_warned_synthetic", False)
    with caplog.at_level(logging.WARNING):
        EmotionRecognizer.from_dir(system["export"], device="cpu", vad=False)  # corpus "tiny": no warning
        assert not caplog.records
        for _ in range(2):
            EmotionRecognizer.from_dir(exp, device="cpu", vad=False)
    warned = [r.getMessage() for r in caplog.records if "synthetic" in r.getMessage()]
    assert len(warned) == 1 and "not an emotion recogniser for real recordings" in warned[0]


# --------------------------------------------------------------------------------------- CLI faults
def test_run_sh_help_lists_the_stages():
    p = subprocess.run([str(ROOT / "run.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("Usage: ")
    for n in range(10):
        assert f"\n  {n}  " in p.stdout, n


def console(monkeypatch, *args: str) -> int:
    """The ``ser-infer`` console script's exit status for ``args`` (ser.cli.run_main names the program)."""
    monkeypatch.setattr(sys, "argv", ["anything", *args])
    with pytest.raises(SystemExit) as e:
        ser_infer.console_main()
    return e.value.code


def test_version_and_help(capsys, monkeypatch):
    assert console(monkeypatch, "--version") == 0 and console(monkeypatch, "--help") == 0
    out = capsys.readouterr().out
    assert out.startswith("ser-infer (ser ") and "usage: ser-infer [-h]" in out
    assert "(default: tsv)" in out and "(default: 0.5)" in out and "(default: true)" in out


@pytest.mark.parametrize("args,msg", [
    (["--format", "kaldi"], "--format kaldi writes utt2emo and utt2post into a directory: give --output DIR"),
    (["--shift", "0"], "--shift 0: must be a positive number of seconds"),
    (["--window", "nan"], "--window nan: must be a positive number of seconds"),
    (["--vad-threshold", "1"], "--vad-threshold 1: must lie between 0 and 1"),
])
def test_argument_errors_come_before_the_model_and_the_audio(tmp_path, capsys, monkeypatch, args, msg):
    def never(*a, **k):
        raise AssertionError("read the model")
    monkeypatch.setattr(EmotionRecognizer, "from_dir", never)
    assert console(monkeypatch, "--model", str(tmp_path / "m"), *args, str(tmp_path / "x.wav")) == 2
    assert f"ser-infer: error: {msg}" in capsys.readouterr().err


def test_missing_model_directory(tmp_path, capsys):
    assert run_program(ser_infer.main, ["--model", str(tmp_path / "nope"), str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(f"ser-infer: {tmp_path / 'nope'}: no such directory")
    (tmp_path / "f").write_text("")
    assert run_program(ser_infer.main, ["--model", str(tmp_path / "f"), str(tmp_path)]) == 1
    assert "f: not a directory" in capsys.readouterr().err


def test_timeline_names_are_safe_and_distinct():
    assert ser_infer.timeline_name("../x.wav") == "x"
    assert ser_infer.timeline_name("/a/b/.hidden.flac") == "hidden"
    assert ser_infer.timeline_name("..") == "recording" and ser_infer.timeline_name("-rf") == "rf"
    assert ser_infer.timeline_name("sp0.9-Ses01F_impro01_F000") == "sp0.9-Ses01F_impro01_F000"
    assert ser_infer.timeline_name("a/b c:d?.mp3") == "b_c_d_"
    names = ser_infer.timeline_names(["../x.wav", "y/x.wav", "x-2.flac", "X.ogg", "../x.wav"])
    assert names == {"../x.wav": "x", "y/x.wav": "x-2", "x-2.flac": "x-2-2", "X.ogg": "X-3"}


def test_cli_timeline_for_a_parent_dir_file(system, tmp_path, monkeypatch):
    (tmp_path / "w").mkdir()
    write_wav(tmp_path / "x.wav", np.zeros(FS, np.float32) + noise_floor(FS))
    monkeypatch.chdir(tmp_path / "w")
    assert run_program(ser_infer.main, ["--model", str(system["export"]), "--timeline", "tl",
                                        "--output", "o.tsv", "../x.wav"]) == 0
    assert sorted(p.name for p in (tmp_path / "w/tl").iterdir()) == ["x.csv", "x.png"]
