"""Recipe configuration: one YAML file per recipe variant (``conf/mini.yaml``, ``conf/paper.yaml``).

The schema is :class:`RecipeConfig`: top-level options (nj, device, the output roots data_dir, exp_dir,
mfcc_dir) and one dataclass per YAML section, each holding the section's defaults (Kaldi's / paper 1's
values; ``conf/mini.yaml`` shrinks them).  Loading
checks every key and value: an unknown key, a wrong type (``nj: two``), a file that is missing or not
YAML is a :class:`ConfigError` naming the file and the key, e.g.
``conf/x.yaml: chain.num_epochs: expected a number, got 'two'``.

``python -m ser.config conf/mini.yaml`` prints the flattened options as shell assignments
(``chain_num_epochs=0.67``; nested keys joined with ``_``, lists space-separated, bools
true/false), which run.sh ``eval``s, so a stage reads ``$chain_num_epochs``; Python code reads
the same file with :func:`load`.  On a bad file it prints one line and exits 1, and run.sh stops.
``python -m ser.config --check-corpora conf/paper.yaml`` checks that the corpus directories exist (a
placeholder such as ``/path/to/IEMOCAP_full_release`` is one line naming the key to edit); run.sh calls it
before any of the stages 0-2, which read the corpora.

To add a section (``ser``, ``ctc``, ``paper2``, ...): write its dataclass below (field types
``int``, ``float``, ``str``, ``bool``, ``list[...]`` or ``Literal[...]``, each with its default and
a comment), add a field of that type to :class:`RecipeConfig`, and give its keys in BOTH
conf/mini.yaml and conf/paper.yaml (tests/test_config.py checks both files set every key).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

# run.sh's options: a top-level key of that name would overwrite them when run.sh evals the config
# (tests/test_config.py checks that no schema name is a variable run.sh, path.sh or cmd.sh assigns)
SHELL_RESERVED = frozenset({"stage", "stop_stage", "config"})


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class CorporaConfig:
    """Stage 0-1: where the corpora are, and the embedded ones' size (local/make_mini_corpora.sh)."""
    synthesize: bool = True                        # stage 0 makes the embedded corpora under root
    root: str = "corpora"
    tedlium: str = "corpora/TEDLIUM_release2"      # or TEDLIUM_release-3 (its legacy/ split is used)
    iemocap: str = "corpora/IEMOCAP_full_release"
    iemocap_sessions: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])  # each must be there
    seed: int = 0
    tedlium_train_minutes: float = 60.0
    iemocap_turns: int = 1000
    # cross-corpus test (stage 7, after the export): a second emotion corpus in the IEMOCAP layout, prepared by the
    # same script into data/xcorpus/ and scored with the exported model; "" = none
    xcorpus: str = ""
    xcorpus_sessions: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    xcorpus_turns: int = 0                         # stage 0: turns of the embedded IEMOCAP_B (0: not made)


@dataclass(frozen=True)
class FeaturesConfig:
    """Stage 3: hires MFCC and perturbation of the ASR training data (run_ivector_common.sh stages 1-3)."""
    mfcc_config: str = "conf/mfcc_hires.conf"
    speed_perturb: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    volume_perturb: bool = True
    min_seg_len: float = 1.55  # combine_short_segments.sh on the ASR training data (seconds)
    compress: bool = True      # feature and i-vector arks in Kaldi's compressed format (copy-feats --compress)


@dataclass(frozen=True)
class IvectorConfig:
    """Stage 4: online i-vectors (local/nnet3/run_ivector_common.sh; tedlium s5_r2 values)."""
    num_gauss: int = 512
    dim: int = 100
    num_iters: int = 10
    ubm_num_frames: int = 700000


@dataclass(frozen=True)
class ChainConfig:
    """Stages 5-6: flat-start graphs and the two LF-MMI passes (local/chain/run_tdnn.sh; tdnn_1g values)."""
    net: Literal["tiny", "mini", "tdnn_1g"] = "tdnn_1g"
    e2e_num_epochs: float = 2                      # pass 1: flat start on whole utterances
    num_epochs: float = 6                          # pass 2: tdnn_1g chunk egs
    optimizer: Literal["adam", "kaldi-sgd"] = "adam"
    initial_effective_lrate: float = 0.001         # Adam step sizes (see README, Optimiser)
    final_effective_lrate: float = 0.0001
    dropout_schedule: str = "0,0@0.20,0.5@0.50,0"
    e2e_minibatch_size: str = "150=128,64/300=64,32/600=32,16/1200=8"
    frames_per_iter: int = 5000000
    num_valid_utts: int = 300                      # Kaldi get_egs.sh num_utts_subset
    num_chunk_per_minibatch: int = 64
    type: Literal["biphone", "mono"] = "biphone"
    num_extra_lm_states: int = 2000


@dataclass(frozen=True)
class DecodeConfig:
    """Stage 6: word decoding of tedlium_dev/test with the chain model (local/chain/run_tdnn.sh: Kaldi's
    local/ted_train_lm.sh, utils/mkgraph.sh, steps/nnet3/decode.sh, local/score.sh; docs/wer.md)."""
    lm_order: int = 4                              # ted_train_lm.sh: a 4-gram
    lm_min_counts: list[int] = field(default_factory=list)  # count cut-offs of orders 2..lm_order ([]: none)
    lm_arpa: str = ""                              # a first-pass ARPA of yours (4gram_small.arpa.gz); "": trained
    rescore_arpa: str = ""                         # a second ARPA to rescore lattices with (4gram_big.arpa.gz); "": none
    beam: float = 15.0                             # Kaldi's decode.sh defaults
    lattice_beam: float = 8.0
    max_active: int = 7000                         # of the no-acoustics one-best search (docs/wer.md)
    min_lmwt: int = 7                              # score_kaldi.sh's LM weights and insertion penalties
    max_lmwt: int = 17
    word_ins_penalty: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])

    def __post_init__(self) -> None:
        if self.lm_order < 1:
            raise ValueError(f"lm_order: must be >= 1, got {self.lm_order}")
        if self.lm_min_counts and len(self.lm_min_counts) != self.lm_order - 1:
            raise ValueError(f"lm_min_counts: {len(self.lm_min_counts)} cut-offs for lm_order {self.lm_order} "
                             f"(need {self.lm_order - 1}, orders 2..{self.lm_order}, or [])")
        if not 0 < self.min_lmwt <= self.max_lmwt:
            raise ValueError(f"min_lmwt/max_lmwt: need 0 < {self.min_lmwt} <= {self.max_lmwt}")
        if not self.word_ins_penalty:
            raise ValueError("word_ins_penalty: give at least one penalty")


FOLD_NAME = {"session": r"Ses\d\d", "speaker": r"Ses\d\d[FM]"}   # ser.emotion.folds' fold names
FOLD_EXAMPLE = {"session": "Ses05", "speaker": "Ses05F"}


@dataclass(frozen=True)
class SerConfig:
    """Stage 7, paper 1: emotion recognition by transfer from the TDNN-F (local/ser/run_tdnn.sh)."""
    set: str = "iemocap_4cls_exc"                  # ang, exc->hap, neu, sad: 4936 turns (paper 1, Table 1)
    labels: list[str] = field(default_factory=lambda: ["ang", "hap", "neu", "sad"])  # labels.txt order
    protocol: Literal["session", "speaker"] = "session"   # leave one session (paper 1) / speaker out
    num_valid_speakers: int = 1                    # whole speakers of the training sessions, model selection
    model: str = "exp/chain/tdnn/final.pt"         # the LF-MMI-pretrained TDNN-F of stage 6
    ivector_dir: str = "exp/nnet3/ivectors_iemocap_all"          # per-speaker online i-vectors
    utt_ivector_dir: str = "exp/nnet3/ivectors_iemocap_all_utt"  # per-utterance (tdnn_l12_uttivec)
    systems: list[str] = field(default_factory=lambda: ["tdnn_l12", "tdnn_l13", "tdnn_prefinal",
                                                        "tdnn_scratch", "tdnn_l12_uttivec", "tdnn_l12_noivec"])
    layer: str = "tdnnf12"                         # paper 1's 12th TDNN layer (Kaldi's name)
    prefinal_layer: str = "prefinal-chain"         # Table 2: paper 1's 1024-dim prefinal layer (README)
    layer_selection_folds: list[str] = field(default_factory=lambda: ["Ses05"])  # Table 2: test on session 5
    hidden_dim: int = 1024                         # the head's dense layer (paper: not given; layer width)
    primary_lr_factor: float = 0.25                # transferred layers' rate factor (Kaldi; 0 = frozen)
    num_epochs: int = 8                            # at most; the epoch is selected on validation
    patience: int = 3                              # early stop: epochs without a better validation UA
    initial_lrate: float = 0.001                   # Adam step size of the head, decayed exponentially ...
    final_lrate: float = 0.0001                    # ... to this at the last epoch
    chunk_width: int = 150                         # training chunk, input frames (tdnn_1g's)
    minibatch_size: int = 64                       # chunks per minibatch
    cache_frozen_body: bool = True                 # factor 0: compute the body's outputs once per fold
    seed: int = 0

    def __post_init__(self) -> None:
        """Table 2's folds must be folds of the protocol (Ses05 is a session, not a speaker)."""
        pattern = FOLD_NAME[self.protocol]
        bad = [f for f in self.layer_selection_folds if not re.fullmatch(pattern, f)]
        if bad:
            raise ValueError(f"layer_selection_folds: {bad[0]!r} is not a {self.protocol} fold of IEMOCAP "
                             f"(protocol {self.protocol}: names like {FOLD_EXAMPLE[self.protocol]})")


@dataclass(frozen=True)
class CtcConfig:
    """Stage 8: paper 2's DeepSpeech-style acoustic model, CTC on TED-LIUM (local/ctc/run_deepspeech.sh;
    DeepSpeech v0.9 values)."""
    net: Literal["mini", "paper"] = "paper"        # paper: DeepSpeech's 2048 widths (same DeepSpeechModel)
    mfcc_config: str = "conf/mfcc_deepspeech.conf"  # 26 MFCC, 32 ms window, 20 ms step
    train_set: str = "tedlium_train"               # not _sp: DeepSpeech trains without speed perturbation
    epochs: int = 75                               # DeepSpeech v0.9 --epochs
    learning_rate: float = 0.001                   # Adam, DeepSpeech v0.9 --learning_rate
    max_frames: int = 20000                        # padded frames per minibatch
    num_valid_utts: int = 300                      # training utterances held out for the training curve
    valid_interval: int = 0                        # minibatches between held-out evaluations (0: once a pass)
    dropout_rate: float = 0.05                     # DeepSpeech --dropout_rate
    layer: str = "layer_1"                         # features for the emotion sets (paper 2: the first layer)


@dataclass(frozen=True)
class Paper2Config:
    """Stage 9: paper 2's features, heads and baselines (local/ctc/run_paper2.sh; paper 2 §4)."""
    opensmile_feature_set: Literal["eGeMAPSv02", "IS09_emotion"] = "eGeMAPSv02"  # paper 2 names no set
    set: str = "iemocap_agree"                     # paper 2's Table 1: every turn all evaluators agree on
    protocol: Literal["session", "speaker"] = "speaker"   # paper 2: leave one speaker out
    head_epochs: int = 30                          # passes over the training part (best on validation kept)
    head_learning_rate: float = 0.001              # Adam
    segment_frames: int = 20                       # two-half heads: frames averaged per segment (paper 2)
    fig3_segment_frames: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 40, 80])
    rf_trees: int = 1000                           # paper 2 §4.1
    rf_max_depth: int = 10
    seed: int = 0


@dataclass(frozen=True)
class JobResources:
    """What one job of a step asks the job runner for (cmd.sh's options; conf/slurm.conf maps them onto
    sbatch): ``mem`` per CPU as Kaldi's --mem (slurm: --mem-per-cpu), CPUs (the threads the job may use),
    GPUs (local backend: that many distinct GPUs per running job; slurm: --gres=gpu:N)."""
    mem: str = "2G"
    num_threads: int = 1
    gpu: int = 0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"\d+[KMGT]?", self.mem):
            raise ValueError(f"mem: expected a size such as 2G or 500M, got {self.mem!r}")
        if self.num_threads < 1 or self.gpu < 0:
            raise ValueError(f"num_threads must be >= 1 and gpu >= 0, got {self.num_threads} and {self.gpu}")


def _res(mem: str, num_threads: int = 1, gpu: int = 0):
    return field(default_factory=lambda: JobResources(mem, num_threads, gpu))


@dataclass(frozen=True)
class JobsConfig:
    """Resources of each step's jobs (conf/README.jobs.md: the measured peaks behind the values)."""
    default: JobResources = _res("2G")               # $train_cmd: data prep, features, graphs, scoring
    decode: JobResources = _res("4G")                # $decode_cmd
    ubm: JobResources = _res("2G")                   # stage 4: diag UBM init and accumulation jobs
    extractor: JobResources = _res("2G")             # stage 4: extractor statistics and accumulation jobs
    ivector_extract: JobResources = _res("1G", 4)    # stage 4: online extraction (--nj worker threads)
    chain_prep: JobResources = _res("4G")            # stage 5: phone LM, den graph, numerator supervision
    chain_train: JobResources = _res("8G", 4, 1)     # stage 6 / 8: LF-MMI and CTC training ($cuda_cmd)
    ser_train: JobResources = _res("4G", 1, 1)       # stage 7: one (system, fold) training + decoding
    paper2: JobResources = _res("4G", 2)             # stage 9: one system's folds


@dataclass(frozen=True)
class RecipeConfig:
    """The whole YAML file: top-level options, then one field per section."""
    nj: int = 4                                    # parallel jobs (Kaldi's --nj), split by speaker
    device: str = "auto"                           # auto | cpu | cuda[:N]
    # the output roots of every stage ($data_dir, $exp_dir, $mfcc_dir in run.sh and local/*.sh; Kaldi's
    # recipes hard-code data/ and exp/ and name mfccdir=mfcc): a config with its own roots never rewrites
    # another config's outputs, stamps or lock ($exp_dir/.lock, $exp_dir/log/stage<N>.stamp)
    data_dir: str = "data"
    exp_dir: str = "exp"
    mfcc_dir: str = "mfcc"                         # feature archives (.ark); the data dirs' feats.scp point here
    corpora: CorporaConfig = field(default_factory=CorporaConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    ivector: IvectorConfig = field(default_factory=IvectorConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    ser: SerConfig = field(default_factory=SerConfig)
    ctc: CtcConfig = field(default_factory=CtcConfig)
    paper2: Paper2Config = field(default_factory=Paper2Config)
    jobs: JobsConfig = field(default_factory=JobsConfig)

    def __post_init__(self) -> None:
        """Distinct roots; stage 7's inputs from stages 4 and 6 under this config's exp_dir, not another's."""
        roots = {"data_dir": self.data_dir, "exp_dir": self.exp_dir, "mfcc_dir": self.mfcc_dir}
        for k, v in roots.items():
            if not v.strip() or os.path.normpath(v) == ".":
                raise ValueError(f"{k}: must name a directory other than the recipe directory, got {v!r}")
            if re.search(r"[\s$`\\\"']", v):   # the scripts use the roots unquoted, as Kaldi's data/ and exp/
                raise ValueError(f"{k}: {v!r}: no blanks, quotes, $ or ` in a root")
            dup = [k2 for k2, v2 in roots.items() if k2 < k and Path(v2) == Path(v)]
            if dup:
                raise ValueError(f"{k}: {v!r} is also {dup[0]}")
        for key in ("model", "ivector_dir", "utt_ivector_dir"):
            v = getattr(self.ser, key)
            if _under(v, "exp") and not _under(v, self.exp_dir):
                raise ValueError(f"ser.{key}: {v} is under exp/, another config's outputs (this config's exp_dir "
                                 f"is {self.exp_dir}): write {Path(self.exp_dir, Path(v).relative_to('exp'))}")


def _under(path: str, root: str) -> bool:
    """Whether ``path`` lies under the directory ``root`` (both relative to the recipe directory)."""
    return Path(os.path.normpath(root)) in Path(os.path.normpath(path)).parents


# corpora keys that name a corpus directory: a placeholder (conf/paper.yaml's /path/to/...) is caught before
# any stage runs (python -m ser.config --check-corpora, called by run.sh when a stage from 0 to 2 runs)
CORPUS_KEYS = {"tedlium": "TED-LIUM (release 2, or 3)", "iemocap": "IEMOCAP (IEMOCAP_full_release)",
               "xcorpus": "the cross-corpus test set (IEMOCAP layout; \"\" for none)"}


def check_corpora(cfg: RecipeConfig, path: str | Path) -> None:
    """Raises ConfigError naming the key to edit when a corpus directory of a config that does not synthesize
    its corpora (corpora.synthesize: false) does not exist, e.g. the placeholder ``/path/to/...``."""
    if cfg.corpora.synthesize:
        return
    for key, what in CORPUS_KEYS.items():
        v = getattr(cfg.corpora, key)
        if key == "xcorpus" and not v:
            continue
        if not Path(v).is_dir():
            why = "a placeholder" if v.startswith("/path/to") else "no such directory"
            raise ConfigError(f"{path}: corpora.{key}: {v!r} is {why}: edit corpora.{key} to point at your copy "
                              f"of {what}")


# stage 7's systems (local/ser/run_tdnn.sh's known_systems)
SER_SYSTEMS = ("tdnn_l12", "tdnn_l13", "tdnn_prefinal", "tdnn_scratch", "tdnn_l12_uttivec", "tdnn_l12_noivec")
_POS = (lambda v: v > 0, "must be > 0")
_NONNEG = (lambda v: v >= 0, "must be >= 0")
# range checks by key (for a list: of each item), after the type check; a violation names file and key
RANGES: dict[str, tuple[Any, str]] = {
    "nj": _POS,
    "device": (lambda v: re.fullmatch(r"auto|cpu|cuda(:\d+)?", v), "expected auto, cpu, cuda or cuda:N"),
    "corpora.iemocap_sessions": (lambda v: 1 <= v <= 5, "sessions are 1..5"),
    "corpora.xcorpus_sessions": (lambda v: 1 <= v <= 5, "sessions are 1..5"),
    "corpora.tedlium_train_minutes": _NONNEG, "corpora.iemocap_turns": _NONNEG, "corpora.xcorpus_turns": _NONNEG,
    "features.speed_perturb": _POS, "features.min_seg_len": _NONNEG,
    "ivector.num_gauss": _POS, "ivector.dim": _POS, "ivector.num_iters": _POS, "ivector.ubm_num_frames": _POS,
    "chain.e2e_num_epochs": _POS, "chain.num_epochs": _POS, "chain.initial_effective_lrate": _POS,
    "chain.final_effective_lrate": _POS, "chain.frames_per_iter": _POS, "chain.num_valid_utts": _NONNEG,
    "chain.num_chunk_per_minibatch": _POS, "chain.num_extra_lm_states": _NONNEG,
    "ser.systems": (lambda v: v in SER_SYSTEMS, f"unknown system (known: {', '.join(SER_SYSTEMS)})"),
    # IEMOCAP has 2 speakers per session: the 4 sessions outside a test session hold 8
    "ser.num_valid_speakers": (lambda v: 1 <= v <= 7, "must be 1..7 (8 speakers outside the test session)"),
    "ser.hidden_dim": _POS, "ser.primary_lr_factor": _NONNEG, "ser.num_epochs": _POS, "ser.patience": _NONNEG,
    "ser.initial_lrate": _POS, "ser.final_lrate": _POS, "ser.chunk_width": _POS, "ser.minibatch_size": _POS,
    "ctc.epochs": _POS, "ctc.learning_rate": _POS, "ctc.max_frames": _POS, "ctc.num_valid_utts": _NONNEG,
    "ctc.valid_interval": _NONNEG, "ctc.dropout_rate": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "paper2.head_epochs": _POS, "paper2.head_learning_rate": _POS, "paper2.segment_frames": _POS,
    "paper2.fig3_segment_frames": _POS, "paper2.rf_trees": _POS, "paper2.rf_max_depth": _POS,
}
NONEMPTY_UNIQUE = ("corpora.iemocap_sessions", "corpora.xcorpus_sessions", "ser.labels", "ser.systems",
                   "features.speed_perturb", "ser.layer_selection_folds", "paper2.fig3_segment_frames")


def _check_range(name: str, v: Any) -> None:
    """Raises ValueError when ``v`` (the value of key ``name``) is out of its range (RANGES, NONEMPTY_UNIQUE)."""
    if name in NONEMPTY_UNIQUE:
        if not v:
            raise ValueError("must not be empty")
        dup = [x for i, x in enumerate(v) if x in v[:i]]
        if dup:
            raise ValueError(f"{dup[0]!r} is listed twice")
    if name in RANGES:
        ok, why = RANGES[name]
        for x in v if isinstance(v, list) else [v]:
            if not ok(x):
                raise ValueError(f"{x!r}: {why}")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + "|".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) is list:
        return f"a list, each item {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[tp]


def _check_value(tp: Any, v: Any) -> Any:
    """``v`` if it has type ``tp``, else raises TypeError.  An int is a number (YAML ``6`` for 6.0) and is
    kept as written; a string that parses as a number is one too (PyYAML reads ``1e-3`` as a string)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if v in typing.get_args(tp):
            return v
    elif origin is list:
        if isinstance(v, list):
            return [_check_value(typing.get_args(tp)[0], x) for x in v]
    elif tp is float:
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return v
    elif isinstance(v, tp) and not (tp is int and isinstance(v, bool)):
        return v
    raise TypeError(f"expected {_type_name(tp)}, got {v!r}")


def _build(cls: type, values: Any, where: str, path: Path) -> Any:
    """An instance of the dataclass ``cls`` from the mapping ``values`` (missing keys: defaults)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: {where or 'top level'}: expected a mapping of options, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, v in values.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in names:
            why = "would overwrite run.sh's variable" if key in SHELL_RESERVED else "unknown key"
            raise ConfigError(f"{path}: {name}: {why} (known: {', '.join(sorted(names))})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, v, name, path)
            continue
        try:
            kwargs[key] = _check_value(tp, v)
            _check_range(name, kwargs[key])
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}: {name}: {e}") from None
    try:
        return cls(**kwargs)
    except ValueError as e:  # a rule between options (__post_init__)
        raise ConfigError(f"{path}: {where + '.' if where else ''}{e}") from None


def load(path: str | Path) -> RecipeConfig:
    """Read and validate a recipe YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {' '.join(str(e).split())}") from e
    return _build(RecipeConfig, {} if raw is None else raw, "", p)


def _shell_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return " ".join(_shell_value(x) for x in v)
    return str(v)


def flatten(cfg: Any, prefix: str = "") -> dict[str, str]:
    """``{"chain_num_epochs": "0.67", ...}``: the shell names and values of a config (dataclass)."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        name = prefix + f.name
        if dataclasses.is_dataclass(v):
            items = flatten(v, name + "_").items()
        else:
            items = [(name, _shell_value(v))]
        for k, s in items:
            if k in out or k in SHELL_RESERVED:
                raise ConfigError(f"config name {k} {'repeats' if k in out else 'would overwrite run.sh variable'}")
            out[k] = s
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = argv[:1] == ["--check-corpora"]
    argv = argv[1:] if check else argv
    if len(argv) != 1:
        print("usage: python -m ser.config [--check-corpora] <conf.yaml>", file=sys.stderr)
        return 1
    try:
        cfg = load(argv[0])
        if check:  # the corpus directories exist (nothing printed)
            check_corpora(cfg, argv[0])
            return 0
        flat = flatten(cfg)
    except ConfigError as e:
        print(f"ser.config: {e}", file=sys.stderr)
        return 1
    for k, v in flat.items():
        print(f"{k}={shlex.quote(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
