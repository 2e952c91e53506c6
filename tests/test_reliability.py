"""Issue 27: values that reached shell strings (S1), pipelines in ser-infer's inputs (S2), and the cases that
gave wrong or lost output with exit status 0 (silent 1-16).  Each test failed on the code before the fix."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
needs_venv = pytest.mark.skipif(not (ROOT / ".venv/bin/python").exists(), reason="needs the recipe's .venv")


# ---- S1: no config or data value reaches a shell string unquoted ------------------------------------------
INJECTED = "exp/chain/tdnn/$(touch${IFS}PWNED)final.pt"


@needs_venv
def test_stage7_model_path_is_not_run_as_a_shell_command(tmp_path):
    """ser.model naming a file whose name holds $(...): stage 7's job runner embedded it in a bash -c string."""
    from test_emotion_e2e import CONFIG, recipe_dir, run_stage7

    root = recipe_dir(tmp_path / "r", ["tdnn_l13"])
    (root / INJECTED).write_bytes(b"not a model")   # the training fails at once; the injection came before it
    cfg = root / "conf/tiny.yaml"
    cfg.write_text(cfg.read_text().replace("model: exp/chain/tdnn/final.pt", f"model: '{INJECTED}'"))
    r = run_stage7(root)
    assert not (root / "PWNED").exists(), "the model path ran as a shell command"
    assert r.returncode != 0 and "exp/ser/tdnn_l13/Ses02/log/train.log" in r.stderr


def test_slurm_job_script_does_not_run_an_argument(tmp_path, monkeypatch):
    """An argument holding a newline and the job script's here-document delimiter ran as a command."""
    from ser.slurm import job_script

    monkeypatch.chdir(tmp_path)  # the script cds to the submitting directory

    script = tmp_path / "t.sh"
    script.write_text(job_script("JOB", str(tmp_path / "t.JOB.log"), ["echo", "a\nSER_EOF\ntouch PWNED\nb"], 1))
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1"}
    r = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "PWNED").exists()
    log = (tmp_path / "t.1.log").read_text()
    assert "a\nSER_EOF\ntouch PWNED\nb\n" in log   # echoed by the job, as one argument


def test_no_job_command_is_a_shell_string_of_values():
    """The rule of the README's design notes, grep-able: no $train_cmd / $cuda_cmd / $cmd call passes one
    quoted command line holding a variable (the job runner runs such a line with bash -c)."""
    import re

    offenders = []
    for f in [ROOT / "run.sh", *sorted((ROOT / "local").rglob("*.sh")), *sorted((ROOT / "steps").rglob("*.sh")),
              *sorted((ROOT / "utils").rglob("*.sh"))]:
        text = f.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if re.search(r"\$\{?(train|decode|cuda)_cmd\b|\$cmd\b", line) and re.search(r'\.log"?\s+"[^"]*\s[^"]*\$', line):
                offenders.append(f"{f.relative_to(ROOT)}: {line.strip()}")
    assert not offenders, offenders


# ---- S2: ser-infer runs wav.scp pipelines only with --allow-pipes ------------------------------------------
def _pipe_dir(tmp: Path) -> Path:
    from infer_data import voice, write_wav

    write_wav(tmp / "ok.wav", voice(1.0, seed=0))
    d = tmp / "d"
    d.mkdir()
    (d / "wav.scp").write_text(f"p1 touch {tmp}/X; cat {tmp}/ok.wav |\n")
    return d


def test_ser_infer_refuses_wav_scp_pipelines(tmp_path):
    from ser.bin.ser_infer import build_parser
    from ser.infer.audio import list_recordings
    from ser.io.audio import AudioError

    d = _pipe_dir(tmp_path)
    a = build_parser().parse_args(["--model", "m", str(d)])
    assert a.allow_pipes is False
    (rec,) = list_recordings([str(d)], allow_pipes=a.allow_pipes)
    with pytest.raises(AudioError, match=r"recording p1: wav.scp entry .* is a pipeline; .*--allow-pipes true"):
        list(rec.blocks())
    assert not (tmp_path / "X").exists()
    # the recipe's own calls keep Kaldi's semantics
    (rec,) = list_recordings([str(d)], allow_pipes=build_parser().parse_args(
        ["--model", "m", "--allow-pipes", "true", str(d)]).allow_pipes)
    assert sum(b.size for b in rec.blocks()) == 16000 and (tmp_path / "X").exists()


# ---- silent 1-5: folds, their checks, scoring ---------------------------------------------------------------
@pytest.fixture
def tiny_folds(tmp_path):
    """A tiny emotion set (3 sessions) with its session folds written; returns (data dir, folds dir, i-vectors)."""
    from emotion_data import write_tiny_set
    from ser.emotion.folds import write_folds

    data, ivs, _ = write_tiny_set(tmp_path, sessions=3, utts_per_speaker=8)
    return data, write_folds(data, "session"), ivs


def _rewrite(path: Path, edit) -> None:
    path.write_text("".join(edit(line) + "\n" for line in path.read_text().splitlines()))


def test_label_only_change_makes_new_folds(tiny_folds):
    """Silent 1: folds were hashed on utt2spk only, so a label change kept them (and the trainings on them)."""
    from ser.emotion.folds import write_folds

    data, folds, _ = tiny_folds
    before = (folds / "folds.json").read_text()
    utt = (folds / "Ses01/train/utt2emo").read_text().split()[0]
    _rewrite(data / "utt2emo", lambda ln: f"{utt} sad" if ln.split()[0] == utt else ln)
    write_folds(data, "session")
    assert (folds / "folds.json").read_text() != before        # what the training stamps hash
    assert f"{utt} sad\n" in (folds / "Ses01/train/utt2emo").read_text()


def _train_ser_argv(fold: Path, ivs: Path, out: Path) -> list[str]:
    return ["--device", "cpu", "--labels", "ang hap neu sad", str(fold), str(ivs), str(out / "no-model.pt"), str(out)]


def test_fold_with_a_speaker_in_train_and_test_is_refused(tiny_folds, tmp_path, capsys):
    """Silent 2: train_ser, decoding and --folds DIR accepted a fold whose test speaker also trained."""
    from ser.bin import decode_ser, make_ser_folds, train_ser
    from ser.cli import run_program
    from ser.io.datadir import DataDir

    data, folds, ivs = tiny_folds
    fold = folds / "Ses01"
    train = DataDir.load(fold / "train")
    shared = train.utts[:2]
    DataDir.load(data).subset(DataDir.load(fold / "test").utts + shared).write(fold / "test", replace=True)
    spk = train.utt2spk[shared[0]]
    assert run_program(train_ser.main, _train_ser_argv(fold, ivs, tmp_path / "m")) == 1
    assert f"speaker '{spk}' is in both test and train" in capsys.readouterr().err
    assert run_program(make_ser_folds.main, ["--check", "ang hap neu sad", str(folds)]) == 1
    assert f"Ses01: speaker '{spk}' is in both test and train" in capsys.readouterr().err
    out = tmp_path / "model"
    out.mkdir()
    (out / "options.json").write_text(f'{{"fold_dir": "{fold}"}}')
    with pytest.raises(ValueError, match=f"speaker '{spk}' is in both test and train"):
        decode_ser._check_unseen(out, DataDir.load(fold / "test"))


@pytest.mark.parametrize("part", ["train", "valid"])
def test_fold_part_lacking_a_class_is_refused(tiny_folds, tmp_path, capsys, part):
    """Silent 3: a fold whose train (or validation) part lacks a class trained without a word."""
    from ser.bin import train_ser
    from ser.cli import run_program
    from ser.io.datadir import DataDir

    _, folds, ivs = tiny_folds
    d = DataDir.load(folds / "Ses01" / part)
    emo = d.extra("utt2emo")
    d.subset([u for u in d.utts if emo[u] != "hap"]).write(folds / "Ses01" / part, replace=True)
    assert run_program(train_ser.main, _train_ser_argv(folds / "Ses01", ivs, tmp_path / "m")) == 1
    assert f"Ses01/{part}/utt2emo: no utterance of class 'hap'" in capsys.readouterr().err


def test_scoring_a_fold_with_half_its_decisions_is_refused(tiny_folds, tmp_path):
    """Silent 5: a fold whose utt2pred/utt2post held half its test utterances was scored on that half."""
    from ser.eval.scoring import ScoringError, score_system

    data, folds, _ = tiny_folds
    system = tmp_path / "sys"
    (system / "Ses01").mkdir(parents=True)
    (system / "labels.txt").write_text("ang\nhap\nneu\nsad\n")
    (system / "Ses01/options.json").write_text(f'{{"fold_dir": "{folds / "Ses01"}"}}')
    emo = dict(ln.split() for ln in (folds / "Ses01/test/utt2emo").read_text().splitlines())
    half = sorted(emo)[: len(emo) // 2]
    (system / "Ses01/utt2pred").write_text("".join(f"{u} {emo[u]}\n" for u in half))
    (system / "Ses01/utt2post").write_text("".join(f"{u} 0.25 0.25 0.25 0.25\n" for u in half))
    with pytest.raises(ScoringError, match=rf"Ses01/utt2pred: {len(half)} decisions for the {len(emo)} test "
                                           rf"utterances of .*Ses01/test/utt2spk \(e\.g\. no "):
        score_system(system, data / "utt2emo")


@needs_venv
def test_unknown_system_stops_stage7(tmp_path):
    """Silent 4: --systems tdnn_bogus printed an error and then trained every fold as tdnn_l12."""
    from test_emotion_e2e import recipe_dir, run_stage7

    root = recipe_dir(tmp_path / "r", ["tdnn_l12"])
    r = run_stage7(root, None, "--systems", "tdnn_bogus")
    assert r.returncode != 0 and "unknown system tdnn_bogus (known: tdnn_l12 " in r.stderr
    assert not (root / "exp/ser/tdnn_bogus").exists() and not (root / "data/iemocap_tiny/folds").exists()


# ---- silent 6-14: ser-infer and the export ------------------------------------------------------------------
@pytest.fixture(scope="module")
def system(tmp_path_factory) -> dict[str, Path]:
    from infer_data import make_system

    return make_system(tmp_path_factory.mktemp("rel_infer"))


@pytest.fixture(scope="module")
def recognizer(system):
    from ser.infer.recognizer import EmotionRecognizer

    return EmotionRecognizer.from_dir(system["export"], device="cpu", vad=False)


def _copy_export(system, tmp: Path) -> Path:
    import shutil

    out = tmp / "export"
    shutil.copytree(system["export"], out)
    return out


def _reseal(export: Path, **edit) -> None:
    """model.json with its sha256 table recomputed (an export whose table is consistent) and ``edit`` applied."""
    import hashlib
    import json

    doc = json.loads((export / "model.json").read_text())
    doc["sha256"] = {f: hashlib.sha256((export / f).read_bytes()).hexdigest() for f in doc["sha256"]}
    doc.update(edit)
    (export / "model.json").write_text(json.dumps(doc))


def test_corrupted_model_pt_is_refused(system, tmp_path):
    """Silent 6: model.pt with 4000 bytes flipped was used (model.json's sha256 table was never checked)."""
    from ser.infer.recognizer import EmotionRecognizer

    export = _copy_export(system, tmp_path)
    import zipfile

    with zipfile.ZipFile(export / "model.pt") as z:   # the largest tensor's bytes: torch still loads the file
        big = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    b = bytearray((export / "model.pt").read_bytes())
    h = big.header_offset  # the local header's name and extra lengths (torch pads the extra to align)
    at = h + 30 + int.from_bytes(b[h + 26:h + 28], "little") + int.from_bytes(b[h + 28:h + 30], "little")
    n = min(4000, big.file_size)
    b[at:at + n] = bytes(x ^ 0x55 for x in b[at:at + n])
    (export / "model.pt").write_bytes(bytes(b))
    with pytest.raises(ValueError, match=r"export/model\.pt: sha256 differs from model\.json's"):
        EmotionRecognizer.from_dir(export, device="cpu")


def test_nan_weight_is_refused_at_load(system, tmp_path):
    """Silent 6: a NaN weight (in an export whose sha256 table agrees) killed the whole run with an IndexError."""
    import torch

    from ser.infer.recognizer import EmotionRecognizer
    from ser.io.torch_io import save_torch

    export = _copy_export(system, tmp_path)
    d = torch.load(export / "model.pt", weights_only=True)
    k = next(k for k, v in d["state"].items() if v.is_floating_point() and v.numel() > 1)
    d["state"][k].view(-1)[0] = float("nan")
    save_torch(d, export / "model.pt")
    _reseal(export)
    with pytest.raises(ValueError, match=rf"model\.pt: {re.escape(k)}: 1 non-finite values"):
        EmotionRecognizer.from_dir(export, device="cpu")


def test_export_ivector_period_other_than_trainings_is_refused(system, tmp_path):
    """Silent 7: export.sh --ivector-period 5 of a model trained at 10, or model.json's period edited (or 0),
    was accepted."""
    import json
    import shutil

    from ser.infer.export import ExportInfo, export_model
    from ser.infer.recognizer import EmotionRecognizer

    model = tmp_path / "final" / "final.pt"
    model.parent.mkdir()
    shutil.copyfile(system["final"], model)
    (tmp_path / "iv").mkdir()
    (tmp_path / "iv/ivector_period").write_text("10\n")
    (model.parent / "options.json").write_text(json.dumps({"ivector_dir": str(tmp_path / "iv")}))
    with pytest.raises(ValueError, match=r"--ivector-period 5: .*final\.pt was trained with i-vectors of period 10"):
        export_model(model, system["mfcc_conf"], system["extractor"], tmp_path / "x", ExportInfo("s", ivector_period=5))
    out = export_model(model, system["mfcc_conf"], system["extractor"], tmp_path / "ok", ExportInfo("s"))
    assert json.loads((out / "model.json").read_text())["ivector"]["period"] == 10
    _reseal(out, ivector={"mode": "utterance", "period": 5})
    with pytest.raises(ValueError, match=r"model\.json: ivector\.period 5 differs from the model's training period 10"):
        EmotionRecognizer.from_dir(out, device="cpu")
    _reseal(out, ivector={"mode": "utterance", "period": 0})
    with pytest.raises(ValueError, match=r"model\.json: ivector\.period: expected a positive integer"):
        EmotionRecognizer.from_dir(out, device="cpu")


def _truncate(path: Path) -> Path:
    b = path.read_bytes()
    path.write_bytes(b[: len(b) // 2])
    return path


@pytest.mark.parametrize("fmt", ["WAV", "MP3"])
def test_truncated_file_is_refused_as_its_wav_scp_entry_is(tmp_path, fmt):
    """Silent 8: a truncated WAV (or MP3) given as a file was classified on the half left."""
    import soundfile as sf

    from infer_data import voice
    from ser.infer.audio import list_recordings
    from ser.io.audio import AudioError

    p = tmp_path / f"t.{fmt.lower()}"
    sf.write(p, voice(2.0, seed=0), 16000, format=fmt, subtype="PCM_16" if fmt == "WAV" else "MPEG_LAYER_III")
    _truncate(p)
    (rec,) = list_recordings([str(p)])
    with pytest.raises(AudioError, match=rf"t\.{fmt.lower()}: audio file is truncated \(\d+ of 32000 samples\)"):
        list(rec.blocks())


def test_wav_claiming_1_hz_is_refused(tmp_path):
    """Silent 8: a WAV header claiming 1 Hz was resampled into 100 s of audio."""
    from infer_data import voice, write_wav
    from ser.infer.audio import list_recordings
    from ser.io.audio import AudioError, read_rxfile

    p = write_wav(tmp_path / "r.wav", voice(1.0, seed=0))
    b = bytearray(p.read_bytes())
    b[24:28], b[28:32] = (1).to_bytes(4, "little"), (2).to_bytes(4, "little")  # sample rate, byte rate
    p.write_bytes(bytes(b))
    (rec,) = list_recordings([str(p)])
    with pytest.raises(AudioError, match=r"r\.wav claims a sample rate of 1 Hz"):
        list(rec.blocks())
    with pytest.raises(AudioError, match=r"r\.wav claims a sample rate of 1 Hz"):
        read_rxfile(str(p))


@pytest.mark.parametrize("signal,msg", [
    ("loud", r"samples reach 100 times full scale"),
    ("tiny", r"no signal \(samples deviate .* silence or DC only\)"),
    ("dc", r"no signal \(samples deviate 0 int16 steps from their mean 9\.83e\+03"),
])
def test_far_out_of_range_or_silent_audio_is_refused(recognizer, signal, msg):
    """Silent 9: float audio far outside [-1, 1], near-digital silence (1e-40) and DC were classified."""
    import numpy as np

    from infer_data import voice
    from ser.io.audio import AudioError

    x = {"loud": voice(1.0, seed=0) / np.abs(voice(1.0, seed=0)).max() * 100,
         "tiny": np.full(16000, 1e-40, np.float32), "dc": np.full(16000, 0.3, np.float32)}[signal]
    with pytest.raises(AudioError, match=msg):
        recognizer.classify_signal(x.astype(np.float32), 16000, "sig")


def test_loud_float_file_is_refused(system, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from infer_data import voice
    from ser.bin import ser_infer
    from ser.cli import run_program

    x = voice(1.0, seed=0)
    sf.write(tmp_path / "loud.wav", x / np.abs(x).max() * 50, 16000, subtype="FLOAT")
    assert run_program(ser_infer.main, ["--model", str(system["export"]), str(tmp_path / "loud.wav")]) == 1
    assert "loud.wav: samples reach 50 times full scale" in capsys.readouterr().err


def test_classify_signal_scales_integer_types(recognizer):
    """Silent 10: int32 / uint8 / bool arrays were scaled as floats in [-1, 1]."""
    import numpy as np

    from infer_data import voice
    from ser.io.audio import AudioError

    x16 = np.round(voice(1.0, seed=3) * 32767).astype(np.int16)
    ref = recognizer.classify_signal(x16, 16000, "s").posteriors
    got = recognizer.classify_signal(x16.astype(np.int32) << 16, 16000, "s").posteriors
    assert got == pytest.approx(ref, abs=1e-9)
    u8 = (x16 // 256 + 128).astype(np.uint8)  # 8-bit: 256 int16 steps each
    assert recognizer.classify_signal(u8, 16000, "s").posteriors == pytest.approx(
        recognizer.classify_signal((x16 // 256 * 256).astype(np.int16), 16000, "s").posteriors, abs=1e-9)
    with pytest.raises(AudioError, match=r"s: samples of type bool"):
        recognizer.classify_signal(x16 > 0, 16000, "s")
    with pytest.raises(AudioError, match=r"looks like \(channels, samples\)"):
        recognizer.classify_signal(np.stack([x16, x16]), 16000, "s")


def _infer(system, *args: str) -> int:
    from ser.bin import ser_infer
    from ser.cli import run_program

    return run_program(ser_infer.main, ["--model", str(system["export"]), *args])


def test_tsv_refuses_ids_with_tab_or_newline(system, tmp_path, capsys):
    """Silent 11: a file name holding a tab or newline split its TSV row."""
    import shutil

    for name in ("a\tb.wav", "c\nd.wav"):
        p = tmp_path / name
        shutil.copyfile(system["wavs"][0], p)
        out = tmp_path / "o.tsv"
        assert _infer(system, "--output", str(out), str(p)) == 1
        assert "holds a tab or line break, which a TSV row cannot (use --format jsonl)" in capsys.readouterr().err
        assert not out.exists()
    assert _infer(system, "--format", "jsonl", "--output", str(out), str(tmp_path / "a\tb.wav")) == 0


def test_timeline_names_two_recordings_share_are_disambiguated(system, tmp_path, monkeypatch):
    """Silent 12: --timeline mapped a/b c.wav and a__b_c.wav to one file name; the second overwrote the first.
    (Refused until issue 28; now the later one gets -2.)"""
    import shutil

    (tmp_path / "a").mkdir()
    shutil.copyfile(system["wavs"][0], tmp_path / "a/b c.wav")
    shutil.copyfile(system["wavs"][1], tmp_path / "b c.wav")
    tl = tmp_path / "tl"
    monkeypatch.chdir(tmp_path)
    assert _infer(system, "--timeline", str(tl), "--output", str(tmp_path / "o.tsv"), "a/b c.wav", "b c.wav") == 0
    assert sorted(p.name for p in tl.iterdir()) == ["b_c-2.csv", "b_c-2.png", "b_c.csv", "b_c.png"]


def test_output_never_replaces_an_input(system, tmp_path, capsys):
    """Silent 13: --output victim.wav victim.wav replaced the input audio with the TSV."""
    import shutil

    v = tmp_path / "victim.wav"
    shutil.copyfile(system["wavs"][0], v)
    before = v.read_bytes()
    assert _infer(system, "--output", str(v), str(v)) == 1
    assert "would overwrite the input" in capsys.readouterr().err and v.read_bytes() == before
    data = system["data"]
    assert _infer(system, "--format", "kaldi", "--output", str(data), str(data)) == 1
    assert "is an input data dir" in capsys.readouterr().err


def test_kaldi_output_refuses_a_key_twice(system, tmp_path, capsys):
    """Silent 14: --format kaldi with the same file twice wrote a duplicate key (an invalid Kaldi table)."""
    w = str(system["wavs"][0])
    assert _infer(system, "--format", "kaldi", "--output", str(tmp_path / "k"), w, w) == 1
    assert f"id '{w}' is given twice; a Kaldi table holds each key once" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


def test_two_writers_of_one_output_use_their_own_temporary_files(tmp_path):
    """Silent 16: two ser-infer with one --output shared <file>.tmp (one wrote into the other's file)."""
    from ser.io.atomic import atomic_open

    out = tmp_path / "o.tsv"
    with atomic_open(out, unique=True) as a, atomic_open(out, unique=True) as b:
        a.write("first\n")
        b.write("second\n")
    assert out.read_text() == "first\n"  # the last rename wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tsv"]


# ---- silent 16 / point 4: one run.sh per recipe directory --------------------------------------------------
@needs_venv
def test_second_run_sh_names_the_lock_holder(tmp_path):
    """Silent 16: two ./run.sh in one directory: one exited 1 with no message, or both trained one fold."""
    import fcntl

    from test_bad_input import recipe_dir

    root = recipe_dir(tmp_path)
    (root / "exp").mkdir()
    argv = ["bash", "run.sh", "--stage", "5", "--stop-stage", "5"]
    with open(root / "exp/.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)   # as a running run.sh holds it
        f.write("4242\n")
        f.flush()
        r = subprocess.run(argv, cwd=root, capture_output=True, text=True)
    assert r.returncode == 1 and "==== stage" not in r.stdout
    assert f"another run.sh (PID 4242) holds exp/.lock in {root}" in r.stderr
    r = subprocess.run(argv, cwd=root, capture_output=True, text=True)   # released: it runs (and fails: no data)
    assert "==== stage 5" in r.stdout and "holds exp/.lock" not in r.stderr


# ---- loud but poor: one line naming the file and key, before any audio is read ---------------------------
@pytest.mark.parametrize("doc,msg", [
    ([1, 2], r"model\.json: expected a JSON object, got list"),
    ({"ivector": None}, r"model\.json: ivector: expected an object with the period, got None"),
    ({"ivector": {"period": "ten"}}, r"model\.json: ivector\.period: expected a positive integer \(frames\), got 'ten'"),
    ({"ivector": {"period": 0}}, r"model\.json: ivector\.period: expected a positive integer \(frames\), got 0"),
])
def test_bad_model_json_names_file_and_key(system, tmp_path, doc, msg):
    import json

    from ser.infer.recognizer import EmotionRecognizer

    export = _copy_export(system, tmp_path)
    if isinstance(doc, dict):
        _reseal(export, **doc)
    else:
        (export / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=msg):
        EmotionRecognizer.from_dir(export, device="cpu")


def test_mfcc_conf_of_other_dims_fails_at_load(system, tmp_path):
    from ser.infer.recognizer import EmotionRecognizer

    export = _copy_export(system, tmp_path)
    conf = export / "mfcc.conf"
    conf.write_text(conf.read_text() + "--num-ceps=12\n")
    _reseal(export)
    with pytest.raises(ValueError, match=r"export/mfcc\.conf: --num-ceps=12: the network \(model\.pt\) reads 13-dim"):
        EmotionRecognizer.from_dir(export, device="cpu")


def test_output_kind_and_window_fail_before_any_audio(system, tmp_path, capsys):
    w = str(system["wavs"][0])
    (tmp_path / "f").write_text("x")
    for args, msg in [(["--format", "kaldi", "--output", str(tmp_path / "f")], "a file; --format kaldi writes a directory"),
                      (["--output", str(tmp_path)], "a directory; --format tsv writes one file")]:
        # (--window nan is a usage error before the model is read: test_infer_vad.py)
        assert _infer(system, *args, w) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err


def test_missing_fifo_and_unlistable_inputs_name_what_they_are(system, tmp_path, recognizer, monkeypatch, caplog):
    from ser.infer.audio import list_recordings
    from ser.io.audio import AudioError

    with pytest.raises(AudioError, match=r"missing\.wav: no such file"):
        recognizer.classify_file(tmp_path / "missing.wav")
    os.mkfifo(tmp_path / "fifo.wav")
    with pytest.raises(AudioError, match=r"fifo\.wav: not a regular file or directory \(a FIFO or device\?\)"):
        list(list_recordings([str(tmp_path / "fifo.wav")]))
    import shutil

    (tmp_path / "d/locked").mkdir(parents=True)
    shutil.copyfile(system["wavs"][0], tmp_path / "d/a.wav")
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level("WARNING"):
        assert [r.id for r in list_recordings([str(tmp_path / "d")])] == [str(tmp_path / "d/a.wav")]
    assert "locked: cannot list directory (Permission denied); skipped" in caplog.text


def test_export_onto_a_file_fails_before_moving_it(system, tmp_path):
    from ser.infer.export import ExportInfo, export_model

    f = tmp_path / "export"
    f.write_text("mine\n")
    with pytest.raises(ValueError, match=r"export: exists and is not a directory"):
        export_model(system["final"], system["mfcc_conf"], system["extractor"], f, ExportInfo("s"))
    assert f.read_text() == "mine\n" and not (tmp_path / "export.old").exists()


def test_train_ser_duplicate_labels(tmp_path, capsys):
    from ser.bin import train_ser
    from ser.cli import run_program

    assert run_program(train_ser.main, ["--device", "cpu", "--labels", "ang hap ang", "f", "iv", "m", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "train_ser: --labels 'ang hap ang': 'ang' is given twice"


def test_kaldi_outputs_are_written_both_or_neither(tmp_path):
    """A full disk while writing utt2post left a new utt2emo without its utt2post."""
    from ser.bin.ser_infer import write_outputs
    from ser.infer.recognizer import Classification

    class Full(list):
        def __iter__(self):
            raise OSError(28, "No space left on device")

    r = Classification("u1", "ang", ["ang", "hap"], Full([0.9, 0.1]), 1.0)
    with pytest.raises(OSError, match="No space left"):
        write_outputs([r], "kaldi", str(tmp_path / "k"), ["ang", "hap"])
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == []
