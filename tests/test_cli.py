"""The program convention: ser/cli.py's pieces, ser/bin/ programs and their steps/ local/ utils/ wrappers,
and the job runner's failure report."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ser.cli import add_device_argument, str2bool
from ser.device import resolve_device

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = sorted(p.stem for p in (ROOT / "ser" / "bin").glob("*.py") if not p.stem.startswith("_"))
SOURCED = ("parse_options.sh", "recipe_config.sh")  # sourced by scripts, not run
# stand-ins for Kaldi's tools, named as wav.scp pipelines call them (no .sh)
TOOLS = [ROOT / "utils" / "sph2pipe", ROOT / "utils" / "sox"]
SCRIPTS = sorted(p for d in ("steps", "local", "utils") for p in (ROOT / d).rglob("*.sh") if p.name not in SOURCED) + TOOLS


@pytest.mark.parametrize("text,value", [("true", True), ("false", False), ("True", True), ("FALSE", False),
                                        ("1", True), ("0", False), ("yes", True), ("no", False)])
def test_str2bool(text, value):
    assert str2bool(text) is value


@pytest.mark.parametrize("text", ["", "t", "2", "maybe"])
def test_str2bool_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected true or false"):
        str2bool(text)


def test_device_argument(capsys):
    p = argparse.ArgumentParser(prog="prog")
    add_device_argument(p)
    assert p.parse_args([]).device == resolve_device("auto")
    assert p.parse_args(["--device", "cpu"]).device == torch.device("cpu")
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--device", "gpu"])
    assert e.value.code == 2
    assert "prog: error: argument --device: --device must be auto, cpu or cuda[:N], got 'gpu'" in capsys.readouterr().err
    if not torch.cuda.is_available():  # a machine problem, not a usage error: run_main's one line
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            p.parse_args(["--device", "cuda"])


def test_program_error_is_one_line(tmp_path):
    r = subprocess.run(["bash", "utils/validate_data_dir.sh", str(tmp_path / "none")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"validate_data_dir: {tmp_path}/none: not a data dir (no utt2spk)"]
    r = subprocess.run([sys.executable, "-m", "ser.bin.split_data"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("usage: split_data ")  # argparse's usage error


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_shape(name):
    """main(argv=None) -> int, run by ser.cli.run_main; no argparse prog of its own."""
    tree = ast.parse((ROOT / "ser" / "bin" / f"{name}.py").read_text())
    mains = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "main"]
    assert mains and [a.arg for a in mains[0].args.args] == ["argv"]
    guard = tree.body[-1]
    assert isinstance(guard, ast.If) and ast.unparse(guard.test) == "__name__ == '__main__'"
    assert ast.unparse(guard.body[0]) == "run_main(main)"
    assert "prog=" not in ast.unparse(tree)


def test_every_script_has_the_wrapper_shape_and_every_program_a_wrapper():
    called = set()
    for script in SCRIPTS:
        text = script.read_text()
        rel = script.relative_to(ROOT)
        assert text.startswith("#!/usr/bin/env bash\n"), rel
        assert re.search(r'^\. "\$\(dirname "\$0"\)/(\.\./)+path\.sh"$', text, re.M) or \
            (re.search(r'^cd "\$\(dirname "\$0"\)(/\.\.)+"$', text, re.M)
             and re.search(r"^\. (\./path\.sh|utils/recipe_config\.sh)$", text, re.M)), rel
        assert not re.search(r"\bpython3\b", text), rel
        for module in re.findall(r"\bpython -m ([\w.]+)", text) + re.findall(r"torchrun .* -m ([\w.]+)", text):
            assert module in ("ser.config", "ser.jobs") or module.removeprefix("ser.bin.") in PROGRAMS, (rel, module)
            called.add(module.removeprefix("ser.bin."))
    assert set(PROGRAMS) <= called, set(PROGRAMS) - called


def test_failed_step_names_its_log_and_tail(tmp_path):
    log = tmp_path / "log" / "step.log"
    script = "printf '10%%\\r100%%\\n'; echo 'step: the real reason' >&2; exit 3"
    r = subprocess.run([sys.executable, "-m", "ser.jobs", str(log), "bash", "-c", script], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"ser.jobs: 1 / 1 failed, log is in {log}", "  100%", "  step: the real reason"]
    assert "# Ended (code 3)" in log.read_text()
