"""Every kind of wav.scp pipeline the recipe writes runs in a plain shell once path.sh is sourced (issue 28,
item 9): utils/sph2pipe and utils/sox give the samples the toolkit's own reader (ser.io.audio with
ser.features.perturb's effects) gives, up to the 16-bit rounding of each stage."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.features.perturb import sox_effects
from ser.io.audio import read_rxfile
from ser.prep.perturb import _pipe

ROOT = Path(__file__).resolve().parents[1]


def test_every_kind_of_pipeline_runs_in_a_plain_shell(tmp_path):
    d = tmp_path / "a dir"  # paths with spaces: the writers quote them
    d.mkdir()
    rng = np.random.default_rng(0)
    mono = np.round(rng.standard_normal(12000) * 3000).astype(np.int16)
    stereo = np.round(rng.standard_normal((9000, 2)) * 3000).astype(np.int16)
    sf.write(d / "talk.sph", mono, 16000, format="NIST", subtype="PCM_16")
    sf.write(d / "two.sph", stereo, 16000, format="NIST", subtype="PCM_16")
    sf.write(d / "turn.wav", mono[:8000], 16000, subtype="PCM_16")
    sph = f"sph2pipe -f wav -p {shlex.quote(str(d / 'talk.sph'))} |"  # as ser.prep.tedlium writes it
    wav = str(d / "turn.wav")
    # entry -> how far the shell's 16-bit stages may round away from the reader's float samples
    entries = {
        sph: 0.0,
        f"sph2pipe -f wav -p -c 2 {shlex.quote(str(d / 'two.sph'))} |": 0.0,
        _pipe(sph, "--vol 1.7"): 0.5,
        _pipe(_pipe(sph, "speed 0.9"), "--vol 1.6"): 0.5 * 1.6 + 0.5,
        _pipe(wav, "speed 1.1"): 0.5,
        _pipe(wav, "--vol 0.5"): 0.5,
        _pipe(_pipe(wav, "speed 0.9"), "--vol 1.3"): 0.5 * 1.3 + 0.5,
    }
    outs = [tmp_path / f"{i}.wav" for i in range(len(entries))]
    script = ". ./path.sh\nset -o pipefail\n" + "".join(
        f"{rx[:-1]} > {shlex.quote(str(o))}\n" for rx, o in zip(entries, outs))
    # a plain shell: no venv, no utils on the PATH until path.sh
    p = subprocess.run(["bash", "-ec", script], cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for (rx, tol), o in zip(entries.items(), outs):
        ref, fs = read_rxfile(rx, effects=sox_effects)
        got, fs2 = sf.read(o, dtype="int16", always_2d=True)
        assert sf.info(o).subtype == "PCM_16" and fs2 == fs == 16000, rx
        assert got.shape == ref.shape, rx
        assert np.abs(got - ref).max() <= tol + 1e-3, (rx, np.abs(got - ref).max())


def test_sph2pipe_options_and_errors(tmp_path):
    x = np.arange(-8000, 8000, dtype=np.int16)
    sf.write(tmp_path / "a.sph", np.stack([x, -x], 1), 16000, format="NIST", subtype="PCM_16")
    run = lambda *a: subprocess.run(["utils/sph2pipe", *a], cwd=ROOT, capture_output=True, timeout=60)  # noqa: E731
    p = run("-f", "wav", "-p", "-c", "2", "-t", "0.25:0.5", str(tmp_path / "a.sph"), str(tmp_path / "o.wav"))
    assert p.returncode == 0 and p.stdout == b""
    np.testing.assert_array_equal(sf.read(tmp_path / "o.wav", dtype="int16")[0], -x[4000:8000])
    p = run("-f", "wav", "-p", str(tmp_path / "missing.sph"))
    assert p.returncode == 1 and b"audio file not found" in p.stderr


@pytest.mark.parametrize("args", [["-t", "wav", "in.wav", "-t", "wav", "-", "reverb"], ["--norm", "in.wav", "out.wav"]])
def test_sox_refuses_what_it_does_not_run(args, tmp_path, monkeypatch):
    from ser.bin import sox

    monkeypatch.setattr(sox, "_system_sox", lambda: None)
    with pytest.raises(Exception, match=r"utils/sox runs only"):
        sox.main(args)
