"""The recipe config (ser/config.py): every failure kind is one line naming the file and the key, and
run.sh stops on it before any stage; the shipped configs set every key of the schema."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from ser.config import SHELL_RESERVED, ConfigError, RecipeConfig, check_corpora, flatten, load

ROOT = Path(__file__).resolve().parents[1]

# (name, YAML text, expected message after "<file>: ")
BAD = [
    ("unknown top-level key", "nj: 2\nnum_jobs: 3\n", "num_jobs: unknown key"),
    ("unknown section key", "chain:\n  num_epoch: 1\n", "chain.num_epoch: unknown key"),
    ("unknown section", "sre:\n  x: 1\n", "sre: unknown key"),
    ("int given a word", "nj: two\n", "nj: expected an integer, got 'two'"),
    ("int given a bool", "nj: true\n", "nj: expected an integer, got True"),
    ("int given a float", "ivector:\n  dim: 100.5\n", "ivector.dim: expected an integer, got 100.5"),
    ("number given a word", "chain:\n  num_epochs: two\n", "chain.num_epochs: expected a number, got 'two'"),
    ("number given nan", "chain:\n  num_epochs: .nan\n", "chain.num_epochs: expected a number, got nan"),
    ("bool given a word", "features:\n  volume_perturb: maybe\n",
     "features.volume_perturb: expected true or false, got 'maybe'"),
    ("string given a list", "device: [cpu]\n", "device: expected a string, got ['cpu']"),
    ("list given a scalar", "features:\n  speed_perturb: 0.9\n",
     "features.speed_perturb: expected a list, each item a number, got 0.9"),
    ("list item of the wrong type", "features:\n  speed_perturb: [0.9, fast]\n",
     "features.speed_perturb: expected a number, got 'fast'"),
    ("choice not allowed", "chain:\n  net: tdnn1g\n", "chain.net: expected one of tiny|mini|tdnn_1g, got 'tdnn1g'"),
    ("section given a scalar", "chain: 3\n", "chain: expected a mapping of options, got 3"),
    ("top level not a mapping", "- nj\n- 2\n", "top level: expected a mapping of options"),
    ("shadows a run.sh variable", "stop_stage: 3\n", "stop_stage: would overwrite run.sh's variable"),
    ("invalid YAML", "nj: [2\n", "invalid YAML"),
    ("a session as a speaker fold", "ser:\n  protocol: speaker\n",
     "ser.layer_selection_folds: 'Ses05' is not a speaker fold of IEMOCAP (protocol speaker: names like Ses05F)"),
    ("a speaker as a session fold", "ser:\n  layer_selection_folds: [Ses05M]\n",
     "ser.layer_selection_folds: 'Ses05M' is not a session fold"),
    ("stage 7 reading another config's exp/", "exp_dir: exp_b\n",
     "ser.model: exp/chain/tdnn/final.pt is under exp/, another config's outputs (this config's exp_dir is exp_b): "
     "write exp_b/chain/tdnn/final.pt"),
    ("two roots in one directory", "data_dir: out\nexp_dir: out/\n", "exp_dir: 'out/' is also data_dir"),
    ("the recipe directory as a root", "mfcc_dir: .\n", "mfcc_dir: must name a directory other than the recipe"),
    ("a root with a blank", "data_dir: my data\n", "data_dir: 'my data': no blanks"),
]


@pytest.mark.parametrize("name,text,message", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_one_error_naming_file_and_key(tmp_path, name, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: {message}"), str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path}/none.yaml: no such config file$"):
        load(tmp_path / "none.yaml")


def test_defaults_and_accepted_forms(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("nj: 3\nchain:\n  num_epochs: 4\n  initial_effective_lrate: 1e-3\n")
    cfg = load(path)
    assert cfg.nj == 3 and cfg.chain.num_epochs == 4 and cfg.chain.initial_effective_lrate == 0.001
    assert cfg.ivector == RecipeConfig().ivector  # an omitted section is all defaults
    flat = flatten(cfg)
    assert flat["chain_num_epochs"] == "4"  # as written, not 4.0
    assert flat["features_speed_perturb"] == "0.9 1.0 1.1" and flat["features_volume_perturb"] == "true"
    path.write_text("")
    assert load(path) == RecipeConfig()


def _schema_keys(cls, prefix=""):
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            yield from _schema_keys(tp, f"{prefix}{name}.")
        else:
            yield prefix + name


def _yaml_keys(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _yaml_keys(v, f"{prefix}{k}.")
        else:
            yield prefix + k


@pytest.mark.parametrize("conf", ["conf/mini.yaml", "conf/paper.yaml"])
def test_shipped_configs_set_every_key(conf):
    load(ROOT / conf)
    raw = yaml.safe_load((ROOT / conf).read_text())
    assert sorted(_yaml_keys(raw)) == sorted(_schema_keys(RecipeConfig))


def test_shell_output_and_no_shadowing():
    r = subprocess.run([sys.executable, "-m", "ser.config", "conf/mini.yaml"], cwd=ROOT, capture_output=True,
                       text=True, check=True)
    names = [line.split("=", 1)[0] for line in r.stdout.splitlines()]
    assert names == list(flatten(load(ROOT / "conf/mini.yaml")))
    assert "chain_net=mini" in r.stdout.splitlines() and "features_speed_perturb='0.9 1.0 1.1'" in r.stdout
    # no config name is a variable that run.sh or what it sources before the config assigns itself
    assigned = set()
    for script in [ROOT / "run.sh", ROOT / "path.sh", ROOT / "cmd.sh"]:
        assigned |= set(re.findall(r"^\s*(?:export\s+|local\s+)?([A-Za-z_]\w*)=", script.read_text(), re.M))
    assert SHELL_RESERVED <= assigned and "train_cmd" in assigned
    assert not set(names) & assigned


@pytest.mark.skipif(not (ROOT / ".venv/bin/python").exists(), reason="run.sh needs the recipe's .venv")
def test_run_sh_stops_on_a_bad_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nj: 2\nchain:\n  num_epochs: two\n")
    # the config is read before any stage runs: stage 0 (its banner) must not start
    r = subprocess.run(["bash", str(ROOT / "run.sh"), "--config", str(bad), "--stage", "0", "--stop-stage", "0"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "==== stage" not in r.stdout and "done" not in r.stdout
    assert r.stderr.strip().splitlines() == [f"ser.config: {bad}: chain.num_epochs: expected a number, got 'two'"]


def test_configs_have_their_own_output_roots():
    """conf/mini.yaml keeps data/, exp/, mfcc/; conf/paper.yaml writes none of them (issue 28, point 4)."""
    mini, paper = load(ROOT / "conf/mini.yaml"), load(ROOT / "conf/paper.yaml")
    assert (mini.data_dir, mini.exp_dir, mini.mfcc_dir) == ("data", "exp", "mfcc")
    for a in ("data_dir", "exp_dir", "mfcc_dir"):
        assert getattr(paper, a) not in {getattr(mini, b) for b in ("data_dir", "exp_dir", "mfcc_dir")}
    assert all(p.startswith(paper.exp_dir + "/") for p in (paper.ser.model, paper.ser.ivector_dir))


# a root written out where a driver should use $data_dir, $exp_dir or $mfcc_dir (comments are not code)
HARD_ROOT = re.compile(r"((?<![\w/.$'-])|\$PWD/)(data|exp|mfcc)(/|\s*$)")


def test_drivers_hard_code_no_output_root():
    scripts = [ROOT / "run.sh", *sorted((ROOT / "local").rglob("*.sh"))]
    bad = [f"{s.relative_to(ROOT)}:{i}: {line.strip()}" for s in scripts
           for i, line in enumerate(s.read_text().splitlines(), 1)
           if not line.lstrip().startswith("#") and HARD_ROOT.search(line.split(" # ")[0])]
    assert not bad, "\n".join(bad)


def test_placeholder_corpora_named_before_any_stage(tmp_path):
    paper = ROOT / "conf/paper.yaml"
    with pytest.raises(ConfigError, match=r"corpora.tedlium: '/path/to/TEDLIUM_release2' is a placeholder: "
                                          r"edit corpora.tedlium to point at your copy of TED-LIUM"):
        check_corpora(load(paper), paper)
    # a real directory for tedlium: the next key is named
    conf = tmp_path / "p.yaml"
    conf.write_text(paper.read_text().replace("/path/to/TEDLIUM_release2", str(tmp_path)))
    with pytest.raises(ConfigError, match=r"corpora.iemocap: '/path/to/IEMOCAP_full_release' is a placeholder"):
        check_corpora(load(conf), conf)
    check_corpora(load(ROOT / "conf/mini.yaml"), "mini.yaml")   # synthesized: made by stage 0


@pytest.mark.skipif(not (ROOT / ".venv/bin/python").exists(), reason="run.sh needs the recipe's .venv")
def test_run_sh_stops_on_placeholder_corpora(tmp_path):
    conf = tmp_path / "paper.yaml"   # paper.yaml's roots moved under tmp_path: nothing may be written there
    conf.write_text((ROOT / "conf/paper.yaml").read_text().replace("paper/", f"{tmp_path}/out/"))
    r = subprocess.run(["bash", str(ROOT / "run.sh"), "--config", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and "==== stage" not in r.stdout
    assert r.stderr.strip().splitlines() == [
        f"ser.config: {conf}: corpora.tedlium: '/path/to/TEDLIUM_release2' is a placeholder: edit corpora.tedlium "
        "to point at your copy of TED-LIUM (release 2, or 3)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (ROOT / ".venv/bin/python").exists(), reason="run.sh needs the recipe's .venv")
def test_run_sh_writes_under_the_configs_roots(tmp_path, tedlium, iemocap):
    """Stages 0-1 with roots of their own: data dirs, logs, stamps and the lock under them; no data/ or exp/
    appears in the recipe directory (where another config's outputs live)."""
    text = (ROOT / "conf/mini.yaml").read_text()
    for old, new in [("synthesize: true", "synthesize: false"), ("corpora/TEDLIUM_release2", str(tedlium)),
                     ("corpora/IEMOCAP_full_release", str(iemocap)), ("corpora/IEMOCAP_B", '""'),
                     ("iemocap_sessions: [1, 2, 3, 4, 5]", "iemocap_sessions: [1, 3]"),
                     ("data_dir: data", "data_dir: out/d"), ("exp_dir: exp", "exp_dir: out/e"),
                     ("mfcc_dir: mfcc", "mfcc_dir: out/m"), ("model: exp/", "model: out/e/"),
                     ("ivector_dir: exp/", "ivector_dir: out/e/")]:
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "own.yaml").write_text(text)
    recipe = tmp_path / "recipe"   # links to this checkout, as tests/test_bad_input.py's recipe_dir
    recipe.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "steps", "utils", "ser", ".venv"):
        (recipe / name).symlink_to(ROOT / name)
    r = subprocess.run(["bash", "run.sh", "--config", str(tmp_path / "own.yaml"), "--stop-stage", "1"], cwd=recipe,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (recipe / "out/d/tedlium_train/wav.scp").is_file() and (recipe / "out/d/iemocap_all/utt2emo").is_file()
    assert (recipe / "out/e/log/prepare_tedlium.log").is_file() and (recipe / "out/e/log/stage1.stamp").is_file()
    assert (recipe / "out/e/.lock").is_file()
    assert not any((recipe / d).exists() for d in ("data", "exp", "mfcc"))
    assert re.search(r"^==== stage 1: done in \d+ s ====$", r.stdout, re.M)   # each stage's time on the console
