"""The slurm job backend (ser.slurm) against a real Slurm cluster, and its pieces that need none.

Tests marked ``slurm`` need a cluster that answers (``tools/start_slurm.sh`` starts a one-node one; .ci/run
does); where none answers they are skipped with the reason (pytest -rs prints it).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from conftest import tone, write_iemocap, write_tedlium
from ser.io.datadir import DataDir
from ser.jobs import parse_args
from ser.slurm import ClusterConfig, SlurmError, job_script

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _cluster_problem() -> str | None:
    """Why the slurm tests cannot run here, or None when a node is up (asked once per session)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm is not installed (tools/start_slurm.sh installs it and starts a one-node cluster; needs root)"
    try:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s (start a cluster with tools/start_slurm.sh)"
    if r.returncode != 0:
        return f"no Slurm controller answers ({r.stderr.strip()}); start one with tools/start_slurm.sh"
    up = [line for line in r.stdout.splitlines() if line.split()[1].rstrip("*") in ("idle", "mixed", "allocated")]
    return None if up else f"Slurm answers but no node is up (sinfo: {r.stdout.strip() or 'no nodes'})"


def srun_two_tasks(cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
    """``srun cmd`` in an allocation of 2 one-CPU tasks (the README's ``sbatch --ntasks 2`` + srun, on one
    node); salloc returns when the step ends, where ``sbatch --wait`` notices it at its next poll (2, 8, then
    every 32 s).  Returns (exit status, the tasks' output)."""
    r = subprocess.run(["salloc", "--ntasks", "2", "--cpus-per-task", "1", "--mem-per-cpu", "2G", "srun", *cmd],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


@pytest.fixture(scope="module")
def cluster():
    why = _cluster_problem()
    if why:
        pytest.skip(f"slurm: {why}")


def jobs(*args: str, cwd: Path = ROOT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ser.jobs", *args], cwd=cwd, capture_output=True, text=True, **kw)


# ---- without a cluster ------------------------------------------------------------------------------------


def test_cluster_config_maps_options(tmp_path):
    cfg = ClusterConfig.load(ROOT / "conf" / "slurm.conf")
    assert cfg.command[0] == "sbatch"
    assert cfg.sbatch_options({}) == []  # default gpu=0 adds nothing
    assert sorted(cfg.sbatch_options({"mem": "4G", "num_threads": "3", "gpu": "2"})) == [
        "--cpus-per-task=3", "--gres=gpu:2", "--mem-per-cpu=4G"]
    assert cfg.sbatch_options({"num_threads": "1", "mem": "0"}) == ["--cpus-per-task=1"]
    with pytest.raises(SlurmError, match=r"option --max-rss 2G is not described in .*slurm.conf"):
        cfg.sbatch_options({"max_rss": "2G"})
    bad = tmp_path / "bad.conf"
    bad.write_text("command sbatch\n# fine\noptions mem=* --mem $0\n")
    with pytest.raises(SlurmError, match=rf"{bad}:3: cannot parse line"):
        ClusterConfig.load(bad)
    bad.write_text("option mem=* --mem $0\n")
    with pytest.raises(SlurmError, match="no 'command sbatch"):
        ClusterConfig.load(bad)


@pytest.mark.parametrize("gpus,gres", [(None, ["--gres=gpu:1"]), ("0", []), ("2", ["--gres=gpu:2"])])
def test_cmd_sh_options_map_onto_sbatch(gpus, gres):
    """cmd.sh's $train_cmd / $decode_cmd / $cuda_cmd, as conf/slurm.conf turns them into sbatch options."""
    env = {k: v for k, v in os.environ.items() if k != "SER_GPUS"} | {"SER_BACKEND": "slurm"}
    if gpus is not None:
        env["SER_GPUS"] = gpus
    r = subprocess.run(["bash", "-c", ". ./cmd.sh; printf '%s\\n' \"$train_cmd\" \"$decode_cmd\" \"$cuda_cmd\""],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    cfg = ClusterConfig.load(ROOT / "conf" / "slurm.conf")
    got = []
    for line in r.stdout.splitlines():
        argv = line.split()
        assert argv[:4] == ["python", "-m", "ser.jobs", "--backend"] and argv[4] == "slurm", line
        opts, raw, *_ = parse_args(argv[5:] + ["log", "true"])
        assert raw == []
        max_jobs = opts.pop("max_jobs_run", None)
        got.append((sorted(cfg.sbatch_options(opts)), max_jobs))
    assert got == [(["--mem-per-cpu=2G"], None), (["--mem-per-cpu=4G"], None), (gres, "1")]


def step_cmd(step: str, cmd: str = "train_cmd", conf: str = "conf/mini.yaml", backend: str = "slurm",
             gpus: str | None = None) -> str:
    """``$<cmd> $(job_opts <step>)`` as a recipe driver writes it: cmd.sh and the config's jobs.<step>."""
    env = {k: v for k, v in os.environ.items() if k != "SER_GPUS"} | {"SER_BACKEND": backend}
    if gpus is not None:
        env["SER_GPUS"] = gpus
    r = subprocess.run(["bash", "-c", f'. ./cmd.sh; eval "$({sys.executable} -m ser.config {conf})"; '
                        f'echo ${cmd} $(job_opts {step})'], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    return r.stdout.strip()


def sbatch_of(command: str) -> tuple[list[str], str | None]:
    """The sorted sbatch options (conf/slurm.conf) and --max-jobs-run of a ``python -m ser.jobs ...`` string."""
    opts, raw, *_ = parse_args(command.split()[5:] + ["log", "true"])
    max_jobs = opts.pop("max_jobs_run", None)
    return sorted(ClusterConfig.load(ROOT / "conf" / "slurm.conf").sbatch_options(opts)) + raw, max_jobs


@pytest.mark.parametrize("conf", ["conf/mini.yaml", "conf/paper.yaml"])
def test_step_resources_come_from_the_config(conf):
    """Every step's --mem/--num-threads/--gpu are the config's jobs.<step>, after cmd.sh's own options."""
    from ser.config import load
    jobs = load(ROOT / conf).jobs
    for step, cmd in (("ubm", "train_cmd"), ("extractor", "train_cmd"), ("ser_train", "cuda_cmd"),
                      ("chain_train", "cuda_cmd"), ("paper2", "train_cmd"), ("ivector_extract", "train_cmd")):
        res = getattr(jobs, step)
        got, _ = sbatch_of(step_cmd(step, cmd, conf))
        want = [f"--cpus-per-task={res.num_threads}", f"--mem-per-cpu={res.mem}"]
        assert got == sorted(want + ([f"--gres=gpu:{res.gpu}"] if res.gpu else [])), (step, got)
    assert sbatch_of(step_cmd("ser_train", "cuda_cmd", conf, gpus="0"))[0] == sorted(
        [f"--cpus-per-task={jobs.ser_train.num_threads}", f"--mem-per-cpu={jobs.ser_train.mem}"])
    assert sbatch_of(step_cmd("ubm", "train_cmd", conf, gpus="2"))[0] == sorted(  # SER_GPUS: GPU steps only
        [f"--cpus-per-task={jobs.ubm.num_threads}", f"--mem-per-cpu={jobs.ubm.mem}"])
    r = subprocess.run(["bash", "-c", f'. ./cmd.sh; eval "$({sys.executable} -m ser.config {conf})"; job_opts nope'],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "no jobs.nope in the recipe config" in r.stderr


def test_local_backend_threads_and_distinct_gpus(tmp_path):
    """--num-threads N: the jobs' OpenMP/MKL threads; --gpu 1: no two running jobs share a GPU (a job
    that found its GPU taken would fail); the Accounting line records the peak RSS."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "4,7"}
    r = jobs("--num-threads", "3", "--gpu", "1", "--max-jobs-run", "4", "JOB=1:6", str(tmp_path / "g.JOB.log"),
             f"echo omp=$OMP_NUM_THREADS mkl=$MKL_NUM_THREADS gpu=$CUDA_VISIBLE_DEVICES; "
             f"mkdir {tmp_path}/busy$CUDA_VISIBLE_DEVICES || exit 9; sleep 0.3; rmdir {tmp_path}/busy$CUDA_VISIBLE_DEVICES",
             env=env)
    assert r.returncode == 0, r.stderr
    used = set()
    for i in range(1, 7):
        text = (tmp_path / f"g.{i}.log").read_text()
        assert "omp=3 mkl=3 gpu=" in text and re.search(r"maxrss=\d+KB", text), text
        used.add(re.search(r"^omp=3 mkl=3 gpu=(\S+)$", text, re.M).group(1))
    assert used == {"4", "7"}
    r = jobs("--gpu", "3", "JOB=1:1", str(tmp_path / "x.JOB.log"), "true", env=env)
    assert r.returncode == 1 and "--gpu 3: only 2 GPUs visible (4,7)" in r.stderr
    # without --num-threads the environment is left alone; without GPUs, GPU jobs run (on the CPU)
    env = {**os.environ, "OMP_NUM_THREADS": "5", "CUDA_VISIBLE_DEVICES": ""}
    r = jobs("--gpu", "1", "JOB=1:1", str(tmp_path / "y.JOB.log"), "echo omp=$OMP_NUM_THREADS", env=env)
    assert r.returncode == 0 and "omp=5" in (tmp_path / "y.1.log").read_text()


def test_job_script_runs_one_task(tmp_path):
    """The array task script, run by bash as Slurm would run task 3: substitution, quoting, log, exit code."""
    log = str(tmp_path / "log" / "t.JOB.log")
    (tmp_path / "log").mkdir()
    script = tmp_path / "t.sh"
    script.write_text(job_script("JOB", log, ["bash", "-c", "echo 'it''s' job JOB > $0; exit 3", f"{tmp_path}/o.JOB"], 1))
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_JOB_ID": "77"}
    assert subprocess.run(["bash", str(script)], env=env).returncode == 3
    assert (tmp_path / "o.3").read_text() == "its job 3\n"
    text = (tmp_path / "log" / "t.3.log").read_text()
    assert text.startswith("# bash -c ") and "o.3" in text.splitlines()[0]
    assert "export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1" in script.read_text()
    assert "as Slurm job 77_3" in text and "# Ended (code 3)" in text


def test_jobs_usage_errors(tmp_path):
    r = jobs("JOB=1:2", str(tmp_path / "one.log"), "true")
    assert r.returncode == 1 and "2 jobs would write to one log file" in r.stderr
    r = jobs("JOB=0:2", str(tmp_path / "x.JOB.log"), "true")
    assert r.returncode == 1 and "invalid job range JOB=0:2" in r.stderr
    r = jobs("--backend", "pbs", "JOB=1:2", str(tmp_path / "x.JOB.log"), "true")
    assert r.returncode == 1 and "unknown --backend pbs" in r.stderr
    # run.pl ignores resource options; so does the local backend
    r = jobs("--mem", "2G", "--gpu", "1", "JOB=1:2", str(tmp_path / "x.JOB.log"), "true")
    assert r.returncode == 0, r.stderr


# ---- against the cluster ----------------------------------------------------------------------------------


@pytest.mark.slurm
def test_array_writes_one_log_per_task(cluster, tmp_path):
    r = jobs("--backend", "slurm", "JOB=1:4", str(tmp_path / "log" / "a.JOB.log"), "echo task JOB of $SLURM_ARRAY_JOB_ID")
    assert r.returncode == 0, r.stderr
    logs = sorted((tmp_path / "log").glob("a.*.log"))
    assert [p.name for p in logs] == [f"a.{i}.log" for i in (1, 2, 3, 4)]
    for i, p in enumerate(logs, 1):
        text = p.read_text()
        assert f"\ntask {i} of " in text and f"_{i}\n" in text and "# Ended (code 0)" in text
    assert (tmp_path / "q" / "a.sh").exists()


@pytest.mark.slurm
def test_failing_task_names_its_log(cluster, tmp_path):
    r = jobs("--backend", "slurm", "JOB=1:3", str(tmp_path / "log" / "f.JOB.log"), "test", "JOB", "-ne", "2")
    assert r.returncode == 1
    assert f"1 / 3 failed, log is in {tmp_path}/log/f.2.log" in r.stderr
    assert "# Ended (code 1)" in (tmp_path / "log" / "f.2.log").read_text()


@pytest.mark.slurm
def test_cluster_options_reach_sbatch(cluster, tmp_path):
    """--num-threads / --mem through conf/slurm.conf, --max-jobs-run as the array's %N; an option the config
    does not describe is refused."""
    r = jobs("--backend", "slurm", "--num-threads", "2", "--mem", "100M", "JOB=1:1", str(tmp_path / "o.JOB.log"),
             "echo cpus=$SLURM_CPUS_PER_TASK mem=$SLURM_MEM_PER_CPU")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "o.1.log").read_text()
    assert "cpus=2 mem=100" in text and "threads=2" in text
    # --max-jobs-run 1: the tasks run one after the other (the cluster could run 2 at once)
    r = jobs("--backend", "slurm", "--max-jobs-run", "1", "JOB=1:3", str(tmp_path / "m.JOB.log"),
             f"echo start JOB >> {tmp_path}/order; sleep 1; echo end JOB >> {tmp_path}/order")
    assert r.returncode == 0, r.stderr
    assert "--array=1-3%1" in (tmp_path / "q" / "m.sh").read_text()
    order = (tmp_path / "order").read_text().split("\n")
    assert [ln.split()[0] for ln in order if ln] == ["start", "end"] * 3
    r = jobs("--backend", "slurm", "--max-rss", "1G", "JOB=1:1", str(tmp_path / "o.JOB.log"), "true")
    assert r.returncode == 1 and "option --max-rss 1G is not described in conf/slurm.conf" in r.stderr


@pytest.mark.slurm
def test_stage4_and_emotion_jobs_ask_for_their_resources(cluster, tmp_path):
    """A UBM pass and the extractor's jobs of a small training as Slurm arrays with the options of
    conf/mini.yaml's jobs.ubm / jobs.extractor, and an emotion training job (jobs.ser_train; SER_GPUS=0:
    the test cluster has no GPU): each got the CPUs and memory it asked for and as many threads."""
    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic_ivector import make_synthetic_datadir
    from ser.config import load
    from ser.ivector.diag_ubm import train_diag_ubm
    from ser.ivector.extractor import train_ivector_extractor
    from ser.ivector.parallel import Runner
    from ser.ivector.pca import get_pca_transform
    jobs_cfg = load(ROOT / "conf" / "mini.yaml").jobs
    d = make_synthetic_datadir(tmp_path / "data", num_spk=4, utts_per_spk=5, dim=8, seed=0).path
    get_pca_transform(d, tmp_path / "pca", dim=10, device="cpu")
    ubm_cmd, ie_cmd = step_cmd("ubm"), step_cmd("extractor")
    train_diag_ubm(d, 8, tmp_path / "pca", tmp_path / "ubm", num_frames=5000, num_iters_init=2, num_iters=1,
                   device="cpu", nj=2, runner=Runner(ubm_cmd, jobs_cfg.ubm.num_threads), init_runner=Runner())
    train_ivector_extractor(d, tmp_path / "ubm", tmp_path / "ie", ivector_dim=4, num_iters=1, gaussian_min_count=1,
                            device="cpu", nj=2, runner=Runner(ie_cmd, jobs_cfg.extractor.num_threads))
    for q, res in ((tmp_path / "ubm" / "q" / "acc.0.sh", jobs_cfg.ubm), (tmp_path / "ie" / "q" / "acc.0.sh", jobs_cfg.extractor)):
        submitted = q.read_text().split("## submitted with:")[1]
        assert f"--cpus-per-task={res.num_threads}" in submitted and f"--mem-per-cpu={res.mem}" in submitted
        assert "--array=1-2" in submitted
        for job in (1, 2):
            text = (q.parent.parent / "log" / f"acc.0.{job}.log").read_text()
            assert "as Slurm job" in text and "# Ended (code 0)" in text and f"threads={res.num_threads}" in text
    ser_cmd = step_cmd("ser_train", "cuda_cmd", gpus="0")
    r = subprocess.run([*ser_cmd.split()[:3], *ser_cmd.split()[3:], "JOB=1:1", str(tmp_path / "ser" / "log" / "t.JOB.log"),
                        f"echo cpus=$SLURM_CPUS_PER_TASK mem=$SLURM_MEM_PER_CPU omp=$OMP_NUM_THREADS"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    mem_mb = int(jobs_cfg.ser_train.mem[:-1]) * 1024
    n = jobs_cfg.ser_train.num_threads
    assert f"cpus={n} mem={mem_mb} omp={n}" in (tmp_path / "ser" / "log" / "t.1.log").read_text()


def _sleeping_array(tmp_path: Path, name: str) -> subprocess.Popen:
    """The runner of a 2-task array of `sleep 300`, once its first task runs (its log exists)."""
    p = subprocess.Popen([sys.executable, "-m", "ser.jobs", "--backend", "slurm", "JOB=1:2",
                          str(tmp_path / "log" / f"{name}.JOB.log"), "sleep", "300"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(120):
        if (tmp_path / "log" / f"{name}.1.log").exists() or p.poll() is not None:
            break
        time.sleep(0.5)
    return p


@pytest.mark.slurm
def test_scancel_is_reported_as_cancelled(cluster, tmp_path):
    name = f"ser_test_{os.getpid()}_{time.monotonic_ns()}"
    p = _sleeping_array(tmp_path, name)
    try:
        subprocess.run(["scancel", f"--name={name}"], check=True)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        subprocess.run(["scancel", f"--name={name}"])
    assert p.returncode == 1
    assert "was cancelled: 2 / 2 cancelled, log is in" in err and "failed" not in err, err
    assert "# Killed by SIGTERM" in (tmp_path / "log" / f"{name}.1.log").read_text()


@pytest.mark.slurm
def test_killed_runner_cancels_its_array(cluster, tmp_path):
    name = f"ser_test_{os.getpid()}_{time.monotonic_ns()}"
    p = _sleeping_array(tmp_path, name)
    try:
        p.terminate()
        p.communicate(timeout=60)
        left = subprocess.run(["squeue", "-h", f"--name={name}", "-o", "%T"], capture_output=True, text=True)
    finally:
        subprocess.run(["scancel", f"--name={name}"])
    assert p.returncode == 143
    assert set(left.stdout.split()) <= {"CANCELLED", "COMPLETING"}, left.stdout


def _small_data_dir(d: Path) -> None:
    """4 utterances of 2 speakers, plain wav files."""
    wav = {}
    for k, (spk, sec) in enumerate([("spkA", 1.3), ("spkA", 0.7), ("spkB", 2.1), ("spkB", 1.0)]):
        p = d / "wav" / f"{spk}-u{k}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, tone(sec, f0=150 + 40 * k, seed=k), 16000, subtype="PCM_16")
        wav[f"{spk}-u{k}"] = str(p)
    DataDir(utt2spk={u: u.split("-")[0] for u in wav}, wav=wav).write(d / "data")


@pytest.mark.slurm
def test_make_mfcc_slurm_equals_local(cluster, tmp_path):
    _small_data_dir(tmp_path)
    feats = {}
    for backend in ("local", "slurm"):
        d = tmp_path / backend
        shutil.copytree(tmp_path / "data", d)
        r = subprocess.run(["bash", "steps/make_mfcc.sh", "--nj", "2", "--cmd", f"python -m ser.jobs --backend {backend}",
                            "--mfcc-config", "conf/mfcc_hires.conf", str(d), str(tmp_path / f"log_{backend}"),
                            str(tmp_path / f"mfcc_{backend}")], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        feats[backend] = dict(kaldiio.load_scp(str(d / "feats.scp")))
    assert "as Slurm job" in (tmp_path / "log_slurm" / "make_mfcc_slurm.2.log").read_text()
    assert sorted(feats["slurm"]) == sorted(feats["local"]) and len(feats["local"]) == 4
    for utt, x in feats["local"].items():
        np.testing.assert_array_equal(feats["slurm"][utt], x)


@pytest.mark.slurm
def test_recipe_stage_3_on_slurm(cluster, tmp_path):
    """run.sh stage 3 with SER_BACKEND=slurm on the hand-written corpora: its MFCC jobs are job arrays."""
    rec = tmp_path / "recipe"
    rec.mkdir()
    for f in ("run.sh", "path.sh", "cmd.sh", "conf", "steps", "utils", "local", "ser", ".venv"):
        (rec / f).symlink_to(ROOT / f)
    ted, iem = write_tedlium(tmp_path / "corpus"), write_iemocap(tmp_path / "corpus")
    yaml = (ROOT / "conf" / "mini.yaml").read_text()
    yaml = yaml.replace("synthesize: true", "synthesize: false")
    yaml = yaml.replace("tedlium: corpora/TEDLIUM_release2", f"tedlium: {ted}")
    yaml = yaml.replace("iemocap: corpora/IEMOCAP_full_release", f"iemocap: {iem}")
    yaml = yaml.replace("iemocap_sessions: [1, 2, 3, 4, 5]", "iemocap_sessions: [1, 3]")  # the sessions it has
    yaml = yaml.replace("xcorpus: corpora/IEMOCAP_B", 'xcorpus: ""')  # no cross-corpus set here
    (rec / "tiny.yaml").write_text(yaml)
    for stage in ("1", "3"):  # stage 3 reads stage 1's data dirs only
        r = subprocess.run(["./run.sh", "--config", "tiny.yaml", "--stage", stage, "--stop-stage", stage], cwd=rec,
                           env={**os.environ, "SER_BACKEND": "slurm"}, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    for x in ("tedlium_train_sp", "tedlium_dev", "tedlium_test", "iemocap_all", "iemocap_4cls_exc"):
        dd = DataDir.load(rec / "data" / x)
        assert len(dd.feats) == len(dd.utts) > 0
    for x in ("tedlium_train_sp", "tedlium_dev", "tedlium_test", "iemocap_all"):
        logs = list((rec / "exp" / "make_mfcc" / x).glob(f"make_mfcc_{x}.*.log"))
        assert logs and all("as Slurm job" in p.read_text() for p in logs)
