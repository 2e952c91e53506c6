"""ser.io.atomic: outputs appear whole, get the user's umask, and a killed writer's temp files are cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser.io.atomic import atomic_dir, atomic_open
from ser.io.datadir import DataDir
from ser.io.tables import ArkScpWriter, read_scp

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_outputs_get_the_umask(tmp_path, umask_022):
    """Defect 11: files renamed into place from mkstemp were 0600."""
    with atomic_open(tmp_path / "a.txt") as f:
        f.write("x\n")
    with ArkScpWriter(tmp_path / "f.ark", tmp_path / "f.scp") as w:
        w.write("u1", np.zeros((2, 3), np.float32))
    DataDir(utt2spk={"s-1": "s"}, text={"s-1": "w"}).write(tmp_path / "d")
    for p in (tmp_path / "a.txt", tmp_path / "f.ark", tmp_path / "f.scp", tmp_path / "d" / "utt2spk",
              tmp_path / "d" / "text"):
        assert p.stat().st_mode & 0o777 == 0o644, p
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


_KILLED_WRITER = """
import os, signal, sys
import numpy as np
from ser.io.tables import ArkScpWriter
with ArkScpWriter(sys.argv[1] + "/raw.1.ark", sys.argv[1] + "/raw.1.scp") as w:
    w.write("u1", np.ones((50, 40), np.float32))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_writer_leaves_nothing_after_rerun(tmp_path):
    """Defect 9: temp files of a SIGKILLed writer (random mkstemp names) survived every re-run."""
    for _ in range(3):  # repeated kills do not pile up temp files
        r = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], cwd=ROOT)
        assert r.returncode == -signal.SIGKILL
    assert not (tmp_path / "raw.1.scp").exists() and not (tmp_path / "raw.1.ark").exists()
    assert len(list(tmp_path.glob("*.tmp"))) <= 2  # at most one per output
    with ArkScpWriter(tmp_path / "raw.1.ark", tmp_path / "raw.1.scp") as w:  # the re-run
        w.write("u1", np.ones((50, 40), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.1.ark", "raw.1.scp"]
    assert list(read_scp(tmp_path / "raw.1.scp")) == ["u1"]


def test_atomic_dir_leftovers_of_a_kill_are_removed(tmp_path):
    """A kill between atomic_dir's two renames leaves <dir>.old; a kill while building leaves <dir>.tmp."""
    (tmp_path / "d.old").mkdir()
    (tmp_path / "d.tmp").mkdir()
    (tmp_path / "d.tmp" / "half").write_text("x")
    with atomic_dir(tmp_path / "d") as t:
        (t / "f").write_text("new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "d") as t:
            (t / "f").write_text("newer\n")
            raise KeyboardInterrupt
    assert (tmp_path / "d" / "f").read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.fixture
def sync_log(monkeypatch):
    """Records ("fsync", path) and ("replace", src, dst), in order, of os.fsync and os.replace."""
    events: list[tuple] = []
    paths: dict[int, str] = {}
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    def open_(path, flags, *a, **k):
        fd = real_open(path, flags, *a, **k)
        paths[fd] = os.path.abspath(path)
        return fd

    def fsync(fd):
        events.append(("fsync", paths.get(fd if isinstance(fd, int) else fd.fileno())))
        real_fsync(fd)

    def replace(src, dst, *a, **k):
        events.append(("replace", os.path.abspath(src), os.path.abspath(dst)))
        real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_atomic_open_fsyncs_the_file_before_and_the_directory_after_the_rename(tmp_path, sync_log):
    """Durable rename: without the first fsync a crash can leave the new name with no data; without
    the second, the old name."""
    path = tmp_path / "a.txt"
    with atomic_open(path) as f:
        f.write("x\n")
    tmp, p, d = str(tmp_path / "a.txt.tmp"), str(path), str(tmp_path)
    assert sync_log == [("fsync", tmp), ("replace", tmp, p), ("fsync", d)]


@pytest.mark.parametrize("exists", [False, True])
def test_atomic_dir_fsyncs_its_tree_before_and_the_parent_after_the_rename(tmp_path, sync_log, exists):
    out = tmp_path / "d"
    if exists:
        out.mkdir()
        (out / "old").write_text("old\n")
    sync_log.clear()
    with atomic_dir(out) as t:
        (t / "sub").mkdir()
        (t / "sub" / "f").write_text("new\n")     # written without fsync by the caller
        (t / "g").write_text("new\n")
    tmp, d = str(tmp_path / "d.tmp"), str(out)
    renames = [i for i, e in enumerate(sync_log) if e[0] == "replace"]
    first, last = renames[0], renames[-1]
    synced = {e[1] for e in sync_log[:first] if e[0] == "fsync"}
    assert synced == {f"{tmp}/sub/f", f"{tmp}/g", f"{tmp}/sub", tmp}            # all of it, before
    assert sync_log[first:last + 1] == ([("replace", d, d + ".old")] if exists else []) + [("replace", tmp, d)]
    assert sync_log[last + 1:] == [("fsync", str(tmp_path))]                   # the parent, after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and (out / "g").read_text() == "new\n"
