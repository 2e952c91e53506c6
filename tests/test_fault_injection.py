"""Kill every stage 0-6 at named points: the re-run ends with the outputs of an uninterrupted run, no temp files.

Stages 1-6 run on the hand-written corpora of conftest (tones in the TED-LIUM and IEMOCAP layouts, with a
dictionary that covers their words) with TINY below: one job, one thread, tiny models, the same programs
and code paths as conf/mini.yaml.  Two recipe directories of links to this checkout: A runs every stage
once; B, beside A's run of the same stage, runs it killed at each of its points in turn (SER_KILL_AT,
ser/io/faults.py: the process SIGKILLs itself there, as a scheduler or a power cut would), then once more.
After each stage, every file B has must equal A's (tables, arks, stamps byte for byte with the recipe path
swapped; .pt files tensor for tensor; logs, plots and the trainer's checkpoint aside), and no temp file may
be left.  Stage 0 (the embedded corpora) is killed on its own, on a tiny TED-LIUM.
"""

from __future__ import annotations

import os
import shutil
import sys
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import write_iemocap, write_tedlium

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
nj: 1
device: cpu
corpora:
  synthesize: false
  root: corpus
  tedlium: {corpus}/TEDLIUM_release2
  iemocap: {corpus}/IEMOCAP_full_release
  iemocap_sessions: [1, 3]
  seed: 0
  tedlium_train_minutes: 1
  iemocap_turns: 20
features:
  mfcc_config: conf/mfcc_hires.conf
  speed_perturb: [0.9, 1.0, 1.1]
  volume_perturb: true
ivector:
  num_gauss: 4
  dim: 8
  num_iters: 2
  ubm_num_frames: 5000
chain:
  net: tiny
  e2e_num_epochs: 0.3
  num_epochs: 0.3
  optimizer: adam
  initial_effective_lrate: 0.005
  final_effective_lrate: 0.0005
  dropout_schedule: "0,0"
  e2e_minibatch_size: "150=32,16/300=16,8/600=8,4/1200=2"
  frames_per_iter: 20000
  num_valid_utts: 2
  num_chunk_per_minibatch: 4
  type: mono                      # one minute of audio: biphone tying would share pdfs across phones,
  num_extra_lm_states: 100        # which word decoding refuses (ser.chain.mkgraph.check_pdf_pairs)
"""

# every word of conftest's TED-LIUM texts (CMUdict pronunciations), so stage 2 needs no CMUdict
DIC = """'s Z
[NOISE] NSN
a AH0
a(2) EY1
another AH0 N AH1 DH ER0
are AA1 R
dev D EH1 V
end EH1 N D
good G UH1 D
hello HH AH0 L OW1
hello(2) HH EH0 L OW1
here HH IY1 R
idea AY0 D IY1 AH0
it IH1 T
line L AY1 N
one W AH1 N
so S OW1
test T EH1 S T
thank TH AE1 NG K
the DH AH0
the(2) DH IY0
there DH EH1 R
we W IY1
world W ER1 L D
you Y UW1
"""

# (stage, kill points in the order B meets them; each later point is reached after the earlier one's work).
# A few points per stage keep the test cheap; each stands for its kind: a file renamed into place, a new
# directory renamed into place, the swap of a directory changed in place, a checkpoint, a final model.
KILLS = [
    (1, ["rename:data/iemocap_4cls_hapexc"]),                 # TED-LIUM done, IEMOCAP half written
    (2, ["rename:lang_chain/topo"]),
    (3, ["swap:data/tedlium_train_sp", "rename:mfcc/raw_mfcc_iemocap_all.1.ark"]),
    (4, ["rename:ivectors_iemocap_all/ivector_online.scp"]),  # extractor and three sets done
    (5, ["rename:chain/info.txt"]),                           # den graph done
    (6, ["rename:egs_e2e/info.json", "rename:tdnn_e2e/final.pt", "rename:decode_test/per.txt"]),
]
SKIP_DIRS = {"log", "report"}           # logs and plots: times in them
SKIP_FILES = {"checkpoint.pt",          # the trainer's resumption state (final.pt is compared)
              ".lock"}                  # run.sh's lock: the PID of its holder
SKIP_SUFFIX = ".stamp"                  # stamps: digests of inputs that hold the recipe's absolute path
TEMP_SUFFIXES = (".tmp", ".old", ".unsorted", ".begun")


def env(kill_at: str | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "SER_KILL_AT"}
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # one thread: the runs are comparable, and cheap
    if kill_at:
        e["SER_KILL_AT"] = kill_at
    return e


def make_recipe(root: Path, corpus: Path) -> Path:
    root.mkdir(parents=True)
    for name in ("run.sh", "path.sh", "cmd.sh", "local", "steps", "utils", "ser", ".venv"):
        (root / name).symlink_to(ROOT / name)
    (root / "conf").mkdir()
    for f in (ROOT / "conf").glob("*.conf"):
        (root / "conf" / f.name).symlink_to(f)
    (root / "conf" / "tiny.yaml").write_text(TINY.format(corpus=corpus))
    return root


def start_stage(recipe: Path, stage: int, kill_at: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(["bash", "run.sh", "--config", "conf/tiny.yaml", "--stage", str(stage), "--stop-stage",
                             str(stage)], cwd=recipe, env=env(kill_at), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(p: subprocess.Popen) -> tuple[int, str]:
    """(exit status, stdout and stderr)"""
    out = p.communicate()[0]
    return p.returncode, out


def run_stage(recipe: Path, stage: int, kill_at: str | None = None) -> tuple[int, str]:
    return finish(start_stage(recipe, stage, kill_at))


def outputs(recipe: Path) -> dict[str, Path]:
    out = {}
    for top in ("data", "exp", "mfcc"):
        for p in sorted((recipe / top).rglob("*")) if (recipe / top).is_dir() else []:
            rel = p.relative_to(recipe)
            if p.is_file() and not SKIP_DIRS & set(rel.parts) and p.name not in SKIP_FILES \
                    and not p.name.endswith((".log", SKIP_SUFFIX)):
                out[str(rel)] = p
    return out


def same_pt(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_pt(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_pt(x, y) for x, y in zip(a, b))
    return a == b


def differing(a_root: Path, b_root: Path, files: list[str]) -> list[str]:
    bad = []
    for rel in files:
        a, b = a_root / rel, b_root / rel
        if a.suffix == ".pt":
            ok = same_pt(torch.load(a, weights_only=True), torch.load(b, weights_only=True))
        else:
            ab, bb = a.read_bytes(), b.read_bytes()
            ok = ab == bb or ab.replace(bytes(a_root), bytes(b_root)) == bb
        if not ok:
            bad.append(rel)
    return bad


def temp_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for top in ("data", "exp", "mfcc") if (root / top).is_dir()
                  for p in (root / top).rglob("*") if p.name.endswith(TEMP_SUFFIXES))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    c = tmp_path_factory.mktemp("corpus")
    write_tedlium(c)
    write_iemocap(c)
    (c / "TEDLIUM_release2" / "TEDLIUM.152k.dic").write_text(DIC)
    return c


def test_kill_each_stage_and_rerun(corpus, tmp_path):
    a = make_recipe(tmp_path / "A", corpus)
    b = make_recipe(tmp_path / "B", corpus)
    for stage, points in KILLS:
        uninterrupted = start_stage(a, stage)  # A's stage runs beside B's (one thread each)
        try:
            for point in points:
                rc, out = run_stage(b, stage, kill_at=point)
                assert rc != 0, f"stage {stage} was not killed at {point}: {out}"
            rc, out = run_stage(b, stage)
            assert rc == 0, f"stage {stage} re-run: {out}"
        finally:
            rc, out = finish(uninterrupted)
        assert rc == 0, f"stage {stage} (uninterrupted): {out}"
        want, got = outputs(a), outputs(b)
        assert sorted(got) == sorted(want), f"stage {stage}: files differ: {sorted(set(got) ^ set(want))}"
        assert differing(a, b, sorted(want)) == [], f"stage {stage}: contents differ"
        assert temp_files(b) == [], f"stage {stage}: temp files left"


def test_kill_stage0_and_rerun(tmp_path):
    """The embedded corpus is built under <name>.tmp, marked complete, and renamed: a build killed before its
    marker, or with its marker but before the rename, leaves no corpus, and the re-run builds it again, the
    same.  (The build inside <name>.tmp is all or nothing, so its marker stands for every point in it.)"""
    out = tmp_path / "corpora"
    opts = ["--out", str(out), "--corpora", "tedlium", "--tedlium-train-minutes", "0.1", "--tedlium-dev-minutes",
            "0.05", "--tedlium-test-minutes", "0.05", "--tedlium-talks", "1", "1", "1",
            "--tedlium-extra-lexicon-words", "0", "--nj", "1"]
    cmd = [sys.executable, "-m", "ser.bin.make_mini_corpora", *opts]
    r = subprocess.run(cmd, cwd=ROOT, env=env("rename:*/.ser_synthetic.json"), capture_output=True, text=True)
    assert r.returncode != 0 and not (out / "TEDLIUM_release2").exists()
    ref = tmp_path / "ref"  # the killed build, complete but for its marker: what an uninterrupted one makes
    shutil.copytree(out / "TEDLIUM_release2.tmp", ref, ignore=shutil.ignore_patterns("*.tmp"))
    r = subprocess.run(cmd, cwd=ROOT, env=env("rename:corpora/TEDLIUM_release2"), capture_output=True, text=True)
    assert r.returncode != 0 and not (out / "TEDLIUM_release2").exists()
    r = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = sorted(str(p.relative_to(out / "TEDLIUM_release2")) for p in (out / "TEDLIUM_release2").rglob("*") if p.is_file())
    want = sorted(str(p.relative_to(ref)) for p in ref.rglob("*") if p.is_file())
    assert [g for g in got if g != ".ser_synthetic.json"] == want
    assert differing(ref, out / "TEDLIUM_release2", want) == []
    assert sorted(p.name for p in out.iterdir()) == ["TEDLIUM_release2"]
