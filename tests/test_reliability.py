"""Issue 27: values that reached shell strings (S1), pipelines in ser-infer's inputs (S2), and the cases that
gave wrong or lost output with exit status 0 (silent 1-16).  Each test failed on the code before the fix."""

from __future__ import annotations

import os
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
