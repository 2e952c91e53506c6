"""Killed and re-run steps end where an uninterrupted run ends; "up to date" means the same options and inputs.

Kills are injected at named points (SER_KILL_AT, ser/io/faults.py): the step SIGKILLs itself there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from ser.io.datadir import DataDir
from ser.prep.tedlium import prepare_tedlium

ROOT = Path(__file__).resolve().parents[1]


def sh(*cmd: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SER_KILL_AT"}
    if kill_at:
        env["SER_KILL_AT"] = kill_at
    return subprocess.run(["bash", *cmd], cwd=ROOT, env=env, capture_output=True, text=True)


def ok(*cmd: str) -> str:
    r = sh(*cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith((".tmp", ".old")))


@pytest.fixture
def train(tedlium, tmp_path) -> Path:
    prepare_tedlium(tedlium, tmp_path / "data", sets=["train"])
    return tmp_path / "data" / "tedlium_train"


def tables(d: Path) -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted(d.iterdir()) if f.is_file() and not f.name.startswith(".stamp")}


@pytest.mark.parametrize("kill_at", ["rename:*/reco2vol", "rename:*/wav.scp", "swap:*/tedlium_train_sp"])
def test_volume_perturbation_killed_midway(train, kill_at):
    """A kill between writing wav.scp and reco2vol made the re-run append a second sox --vol to every line."""
    sp = train.parent / "tedlium_train_sp"
    ok("utils/perturb_data_dir_speed_3way.sh", str(train), str(sp))
    ref = train.parent / "ref_sp"
    ok("utils/perturb_data_dir_speed_3way.sh", str(train), str(ref))
    ok("utils/perturb_data_dir_volume.sh", str(ref))
    assert sh("utils/perturb_data_dir_volume.sh", str(sp), kill_at=kill_at).returncode == -9
    ok("utils/perturb_data_dir_volume.sh", str(sp))
    wav = (sp / "wav.scp").read_text().splitlines()
    assert all(line.count("--vol") == 1 for line in wav)
    assert tables(sp) == tables(ref)
    assert leftovers(train.parent) == []


def test_make_mfcc_killed_before_fix(train, tmp_path):
    """A kill after feats.scp is moved into place but before fix_data_dir: the re-run said "up to date" on a
    data dir that then failed validation."""
    segs = (train / "segments").read_text().replace("JaneDoe_2010 2.975 6.1", "JaneDoe_2010 2.975 8.6")
    (train / "segments").write_text(segs)   # 2 s past the end: skipped, so the dir needs the fix
    ref = tmp_path / "ref"
    DataDir.load(train).write(ref)
    mfcc = ["steps/make_mfcc.sh", "--nj", "2", "--mfcc-config", "conf/mfcc_hires.conf"]
    ok(*mfcc, str(ref), str(tmp_path / "log_ref"), str(tmp_path / "mfcc_ref"))
    r = sh(*mfcc, str(train), str(tmp_path / "log"), str(tmp_path / "mfcc"), kill_at="make_mfcc:before_fix")
    assert r.returncode == -9 and (train / "feats.scp").exists()
    out = ok(*mfcc, str(train), str(tmp_path / "log"), str(tmp_path / "mfcc"))
    assert "up to date" not in out and "1 of 5 utterances got no features" in out
    d = DataDir.load(train)
    d.validate(need_feats=True)
    want, got = kaldiio.load_scp(str(ref / "feats.scp")), kaldiio.load_scp(str(train / "feats.scp"))
    assert sorted(got) == sorted(want) == sorted(d.utts)
    for u in want:
        np.testing.assert_array_equal(got[u], want[u])
    assert (train / "utt2num_frames").read_text() == (ref / "utt2num_frames").read_text()
    assert "up to date" in ok(*mfcc, str(train), str(tmp_path / "log"), str(tmp_path / "mfcc"))
    assert leftovers(tmp_path) == []


def test_up_to_date_means_same_options_and_inputs(tedlium, train, tmp_path):
    """Other speed factors rebuild the perturbed dir (they were ignored: "up to date"); other MFCC options
    or audio lists recompute the features; re-running data prep on the same corpus keeps everything."""
    sp = train.parent / "tedlium_train_sp"
    ok("utils/perturb_data_dir_speed_3way.sh", str(train), str(sp))
    assert "up to date" in ok("utils/perturb_data_dir_speed_3way.sh", str(train), str(sp))
    ok("utils/perturb_data_dir_speed_3way.sh", "--factors", "0.8 1.0 1.2", str(train), str(sp))
    spk = set(DataDir.load(sp).spk2utt)
    assert any(s.startswith("sp0.8-") for s in spk) and not any(s.startswith("sp0.9-") for s in spk)

    dev = prepare_tedlium(tedlium, train.parent, sets=["dev"])
    assert not dev["dev"]["up_to_date"]
    d = train.parent / "tedlium_dev"
    mfcc = ["steps/make_mfcc.sh", "--nj", "1", str(d), str(tmp_path / "log"), str(tmp_path / "mfcc")]
    conf = tmp_path / "mfcc.conf"
    conf.write_text((ROOT / "conf" / "mfcc_hires.conf").read_text())
    ok("steps/make_mfcc.sh", "--mfcc-config", str(conf), *mfcc[1:])
    assert "up to date" in ok("steps/make_mfcc.sh", "--mfcc-config", str(conf), *mfcc[1:])
    assert prepare_tedlium(tedlium, train.parent, sets=["dev"])["dev"]["up_to_date"]  # features survive
    assert "up to date" in ok("steps/make_mfcc.sh", "--mfcc-config", str(conf), *mfcc[1:])
    conf.write_text(conf.read_text() + "--dither=0\n")
    assert "up to date" not in ok("steps/make_mfcc.sh", "--mfcc-config", str(conf), *mfcc[1:])
    stm = tedlium / "dev" / "stm" / "DevTalk_2011.stm"
    stm.write_text(stm.read_text().replace("a dev line", "a changed line"))
    assert not prepare_tedlium(tedlium, train.parent, sets=["dev"])["dev"]["up_to_date"]
    assert not (d / "feats.scp").exists()
    assert "up to date" not in ok("steps/make_mfcc.sh", "--mfcc-config", str(conf), *mfcc[1:])


def test_stamp_records_options_and_input_contents(tmp_path):
    """ser.io.stamp: current only for the same options and input contents (not times); shell steps use the CLI."""
    from ser.io.stamp import Stamp

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1\n")
    b.write_text("2\n")
    st = tmp_path / "out" / ".stamp"
    Stamp(st, {"dim": 10}, [a, b]).write()
    assert Stamp(st, {"dim": 10}, [a, b]).current()
    assert not Stamp(st, {"dim": 12}, [a, b]).current()
    a.write_text("1\n")                                 # rewritten, same content: still current
    assert Stamp(st, {"dim": 10}, [a, b]).current()
    b.write_text("3\n")
    assert not Stamp(st, {"dim": 10}, [a, b]).current()
    assert not Stamp(st, {"dim": 10}, [a, tmp_path / "gone"]).current()
    cli = ["python", "-m", "ser.bin.stamp"]
    args = [str(st), "--opt", "dim=10", str(a), str(b)]
    run = lambda *x: subprocess.run([*cli, *x], cwd=ROOT, capture_output=True, text=True).returncode
    assert run("check", *args) == 1
    assert run("write", *args) == 0 and run("check", *args) == 0
    assert run("check", str(st), "--opt", "dim=12", str(a), str(b)) == 1
    assert run("clear", *args) == 0 and not st.exists()


def test_stamp_run_resumes_only_the_same_step(tmp_path):
    """``ser.bin.stamp run``: a step up to date is not run again; a step killed with the same options keeps
    its checkpoint (resumes), one killed with other options loses it (other options ignored a trainer's
    old checkpoint: "already finished")."""
    st, ckpt, out = tmp_path / "exp" / ".stamp", tmp_path / "exp" / "checkpoint.pt", tmp_path / "exp" / "out"
    step = f"echo run >> {out}; test -f {tmp_path}/fail && exit 1; true"
    run = lambda opt: subprocess.run(["python", "-m", "ser.bin.stamp", "run", str(st), "--opt", f"epochs={opt}",
                                      "--stale", str(ckpt), "--", "bash", "-c", step], cwd=ROOT).returncode
    assert run(1) == 0 and run(1) == 0 and out.read_text() == "run\n"   # the second: up to date
    (tmp_path / "fail").touch()                                        # a run that dies half-way ...
    ckpt.parent.mkdir(exist_ok=True)
    assert run(2) == 1 and not st.exists()
    ckpt.write_text("epochs=2 state")                                 # ... after its checkpoint
    assert run(2) == 1 and ckpt.exists()                              # same options: the checkpoint stays
    assert run(3) == 1 and not ckpt.exists()                          # other options: it goes
    (tmp_path / "fail").unlink()
    assert run(3) == 0 and st.exists() and not st.with_name(".stamp.begun").exists()


def test_stage_stamp_covers_steps_inputs_code_and_earlier_stages(tmp_path, monkeypatch):
    """run.sh's stage stamps: current only while the step stamps the stage used, every input they record,
    the earlier stages' stamps, the recipe's code and the config are unchanged (in-process: no Python starts)."""
    from ser.bin.stamp import main
    from ser.io.stamp import LOG_ENV, Stamp

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ser").mkdir()
    code, inp, up, log = tmp_path / "ser" / "m.py", tmp_path / "in.txt", tmp_path / "stage0.stamp", tmp_path / "steps"
    code.write_text("x = 1\n")
    inp.write_text("a\n")
    up.write_text("u\n")
    log.write_text("")
    monkeypatch.setenv(LOG_ENV, str(log))
    Stamp("step/.stamp", {"k": 1}, ["in.txt"]).write()            # a step of the stage ran ...
    assert Stamp("step/.stamp", {"k": 1}, ["in.txt"]).current()   # ... or was found up to date: both listed
    monkeypatch.delenv(LOG_ENV)
    assert log.read_text().split() == ["step/.stamp", "step/.stamp"]
    args = ["exp/stage1.stamp", "--code", "--opt", "config=c.yaml", "stage0.stamp"]
    check = lambda: main(["check", "--recorded", *args])  # noqa: E731
    assert check() == 1
    assert main(["write", "--steps", str(log), *args]) == 0 and check() == 0
    assert "input in.txt " in Path("exp/stage1.stamp").read_text()
    for f, new in ((inp, "b\n"), (up, "v\n"), (code, "x = 2\n")):   # a step's input, an earlier stage, the code
        old = f.read_text()
        f.write_text(new)
        assert check() == 1, f
        f.write_text(old)
        assert check() == 0, f
    assert main(["check", "--recorded", *args[:3], "config=other.yaml", "stage0.stamp"]) == 1
    Path("step/.stamp").unlink()                                  # a step cleared (re-running or killed)
    assert check() == 1
