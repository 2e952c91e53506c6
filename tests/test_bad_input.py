"""The bad-input matrix: ONE table, one row per kind of bad input, each with its expected outcome.

Every row names the input and says what must happen:
  error=<regex>   a clear ONE-line error that names the file (and line or utterance)
  skip=<counter>  a counted, logged skip (the counter as it appears in the step's summary), the rest goes on
  ok=True         handled (a path with spaces, a resampled file): the step succeeds
Rows carry the issue-12 defect they check (``defect``); the others are the kinds the bad-input campaign
found handled well and that must stay so.  Interruptions (kills) are in test_resume.py and
test_fault_injection.py.

The emotion stages (7+: folds, labels, inference inputs) have their rows in EMOTION_CASES at the end.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from conftest import tone, write_iemocap, write_tedlium
from ser.io.audio import AudioStats, iter_utterance_audio
from ser.io.datadir import DataDir, Segment

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], Callable[[], Counter | None]]   # sets up the input, returns the step to run
    error: str | None = None      # regex on the one-line error
    skip: str | None = None       # counter of a counted, logged event (exactly one): a skip, a resampling ...
    log: str | None = None        # regex the logged warning must match
    ok: bool = False              # the step succeeds
    defect: int | None = None     # issue 12 item


# ---- helpers: each builder writes its input under tmp and returns the step as a call ---------------------
def _audio(write: Callable[[Path], str], segment: tuple[float, float] | None = None):
    """One utterance whose audio ``write(tmp)`` makes (returns its wav.scp value); the step reads it
    as compute_mfcc_feats does and returns the skip counters."""
    def build(tmp: Path):
        rx = write(tmp)
        d = DataDir(utt2spk={"s-u": "s"}, wav={"s-r" if segment else "s-u": rx},
                    segments={"s-u": Segment("s-r", *segment)} if segment else None)

        def step() -> Counter:
            stats = AudioStats()
            for _ in iter_utterance_audio(d, 16000, stats):
                pass
            return stats.counts
        return step
    return build


def _wav(name: str, x: np.ndarray, fs: int = 16000, **kw) -> Callable[[Path], str]:
    def write(tmp: Path) -> str:
        sf.write(tmp / name, x, fs, **kw)
        return str(tmp / name)
    return write


def _float_with(value: float) -> np.ndarray:
    x = tone(1.0).astype(np.float32) / 32768
    x[8000] = value
    return x


def _bytes(name: str, data: Callable[[Path], bytes]) -> Callable[[Path], str]:
    def write(tmp: Path) -> str:
        (tmp / name).write_bytes(data(tmp))
        return str(tmp / name)
    return write


def _truncated(tmp: Path) -> bytes:
    sf.write(tmp / "full.wav", tone(1.0), 16000, subtype="PCM_16")
    b = (tmp / "full.wav").read_bytes()
    return b[: len(b) // 2]


def _tedlium(edit: Callable[[Path], None], sets=("train",)):
    """The hand-written TED-LIUM copy with ``edit(corpus)`` applied; the step is stage 1's prep."""
    def build(tmp: Path):
        from ser.prep.tedlium import prepare_tedlium

        corpus = write_tedlium(tmp / "corpus")
        edit(corpus)
        return lambda: Counter(prepare_tedlium(corpus, tmp / "data", sets=sets)[sets[0]])
    return build


def _stm_add(line: bytes, talk: str = "JaneDoe_2010") -> Callable[[Path], None]:
    def edit(c: Path) -> None:
        f = c / "train" / "stm" / f"{talk}.stm"
        f.write_bytes(f.read_bytes() + line)
    return edit


def _iemocap(edit: Callable[[Path], None], sessions=(1, 3)):
    """The hand-written IEMOCAP copy (sessions 1 and 3) with ``edit(corpus)`` applied; stage 1's prep."""
    def build(tmp: Path):
        from ser.prep.iemocap import prepare_iemocap

        corpus = write_iemocap(tmp / "corpus")
        edit(corpus)
        return lambda: Counter(prepare_iemocap(corpus, tmp / "data", sessions)["iemocap_all"])
    return build


EV = "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"


def _replace(rel: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(c: Path) -> None:
        f = c / rel
        text = f.read_text()
        assert old in text, (rel, old)
        f.write_text(text.replace(old, new, 1))
    return edit


def _dictionary(dic: bytes, text: str = "u1 the cat\n"):
    """Stage 2: a TEDLIUM.152k.dic with these bytes and a training text."""
    def build(tmp: Path):
        from ser.chain.lang import prepare_dict

        (tmp / "dic").write_bytes(dic)
        (tmp / "text").write_text(text)
        return lambda: prepare_dict(tmp / "dic", tmp / "dict", [tmp / "text"], use_cmudict=False) and None
    return build


def _dict_dir(nonsil: str, lexicon: str):
    """Stage 2: data/local/dict with these phone lists, into a lang dir."""
    def build(tmp: Path):
        from ser.chain.lang import prepare_lang

        d = tmp / "dict"
        d.mkdir()
        for f, text in (("silence_phones.txt", "SIL\nNSN\n"), ("nonsilence_phones.txt", nonsil),
                        ("optional_silence.txt", "SIL\n"), ("lexicon.txt", lexicon)):
            (d / f).write_text(text)
        return lambda: prepare_lang(d, "<unk>", tmp / "lang") and None
    return build


def _datadir(files: dict[str, str | bytes]):
    """A data dir with these files, loaded and validated (utils/validate_data_dir.sh)."""
    def build(tmp: Path):
        d = tmp / "d"
        d.mkdir()
        for name, text in files.items():
            (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        return lambda: DataDir.load(d).validate(need_text="text" in files) and None
    return build


def _nan_features(tmp: Path):
    """Stage 4 input: one utterance's feature matrix holds a NaN; the step reads the features as the
    i-vector programs do (whole speakers per batch)."""
    from ser.io.tables import ArkScpWriter
    from ser.ivector.features import iter_speaker_batches, speaker_order

    utt2spk = {f"s{s}-u{u}": f"s{s}" for s in range(2) for u in range(2)}
    DataDir(utt2spk=utt2spk).write(tmp / "d")
    with ArkScpWriter(tmp / "d" / "feats.ark", tmp / "d" / "feats.scp") as w:
        for u in sorted(utt2spk):
            m = np.ones((20, 4), np.float32)
            if u == "s1-u0":
                m[3, 2] = np.nan
            w.write(u, m)
    d = DataDir.load(tmp / "d")
    return lambda: [b for b in iter_speaker_batches(d, speaker_order(d), 10**6, "cpu")] and None


def recipe_dir(tmp: Path) -> Path:
    """A recipe directory of links to this checkout (as Kaldi's egs link steps/ utils/): run.sh there writes
    its data/ exp/ corpora/ under ``tmp``, never into the checkout."""
    r = tmp / "recipe"
    r.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "steps", "utils", "ser", ".venv"):
        (r / name).symlink_to(ROOT / name)
    return r


def _run_sh(*args: str, config: str | None = None):
    """run.sh with these options (and a config file with this text); a failure raises its last stderr line.
    Stage 5 is asked for by default: with no data it fails at once if a bad input does not stop run.sh."""
    def build(tmp: Path):
        argv = list(args) if "--stage" in args else [*args, "--stage", "5", "--stop-stage", "5"]
        if config is not None:
            (tmp / "c.yaml").write_text(config)
            argv += ["--config", str(tmp / "c.yaml")]
        cwd = recipe_dir(tmp)

        def step() -> None:
            r = subprocess.run(["bash", "run.sh", *argv], cwd=cwd, capture_output=True, text=True)
            assert "==== stage" not in r.stdout, f"a stage ran despite the bad input: {r.stdout}"
            assert r.returncode != 0, "run.sh accepted the bad input"
            raise RuntimeError(r.stderr.strip().splitlines()[0])
        return step
    return build


MINI = (ROOT / "conf" / "mini.yaml").read_text()

CASES = [
    # ---- audio (stage 3: wav.scp entries, segments) -----------------------------------------------
    Case("audio missing file", _audio(lambda t: str(t / "gone.wav")), error=r"recording s-u: audio file not found: .*gone\.wav"),
    Case("audio unreadable bytes", _audio(_bytes("junk.wav", lambda t: b"RIFF....not audio at all")),
         error=r"recording s-u: cannot read audio .*junk\.wav"),
    Case("audio truncated", _audio(_bytes("t.wav", _truncated)), error=r"audio file .*t\.wav is truncated \(\d+ of 16000"),
    Case("audio empty", _audio(_wav("e.wav", np.zeros(0, np.int16), subtype="PCM_16")), skip="empty_audio_skipped"),
    Case("audio 8 kHz", _audio(_wav("r8k.wav", tone(1.0, fs=8000), fs=8000, subtype="PCM_16")), skip="resampled", ok=True),
    Case("audio stereo", _audio(_wav("st.wav", np.stack([tone(1.0), tone(1.0, f0=440)], 1), subtype="PCM_16")),
         skip="multichannel_used_channel0", ok=True),
    Case("segment 1 s past the end", _audio(_wav("l.wav", tone(2.0), subtype="PCM_16"), (1.0, 3.0)),
         skip="segment_past_end_skipped"),
    Case("segment shorter than 0.1 s", _audio(_wav("l.wav", tone(2.0), subtype="PCM_16"), (1.0, 1.05)),
         skip="segment_too_short_skipped"),
    Case("audio NaN sample (float wav)", _audio(_wav("nan.wav", _float_with(np.nan), subtype="FLOAT")),
         skip="non_finite_audio_skipped", log=r"utterance s-u: 1 non-finite \(NaN/Inf\) audio samples; skipped", defect=1),
    Case("audio Inf sample (float wav)", _audio(_wav("inf.wav", _float_with(np.inf), subtype="FLOAT")),
         skip="non_finite_audio_skipped", defect=1),
    Case("MP3 bytes in a .wav", _audio(_wav("m.wav", tone(1.0).astype(np.float32) / 32768, format="MP3",
                                            subtype="MPEG_LAYER_III")), skip="format_not_the_extensions", ok=True,
         log=r"recording s-u: .*m\.wav holds MP3 audio \(MPEG_LAYER_III\), not what its extension says", defect=12),
    Case("pipeline needs a missing program", _audio(lambda t: "no-such-prog -x foo |"),
         error="needs 'no-such-prog', which is not installed"),
    Case("sph path with a space", _audio(lambda t: (sf.write(t / "a b.sph", tone(1.0), 16000, format="NIST",
                                                             subtype="PCM_16"), f"sph2pipe -f wav -p '{t}/a b.sph' |")[1]),
         ok=True, defect=10),
    # ---- features (stage 4 input) ------------------------------------------------------------------
    Case("NaN in a feature matrix", _nan_features, error=r"utterance s1-u0: .*feats\.ark:\d+: 1 non-finite values", defect=1),
    # ---- TED-LIUM (stage 1) ------------------------------------------------------------------------
    Case("stm not UTF-8", _tedlium(_stm_add(b"JaneDoe_2010 1 JaneDoe_2010 7.00 8.00 <o,f0,female> caf\xe9\n")),
         error=r"JaneDoe_2010\.stm:3: not valid UTF-8"),
    Case("stm duplicate segment", _tedlium(_stm_add(b"JaneDoe_2010 1 JaneDoe_2010 3.00 6.00 <o,f0,female> the end\n")),
         error="duplicate utterance id JaneDoe_2010-0000300-0000600"),
    Case("stm empty transcript", _tedlium(_stm_add(b"JaneDoe_2010 1 JaneDoe_2010 7.00 8.00 <o,f0,female> <sil>\n")),
         skip="empty_transcript_skipped"),
    Case("stm too few fields", _tedlium(_stm_add(b"JaneDoe_2010 1 JaneDoe_2010 7.00\n")),
         error=r"JaneDoe_2010\.stm:3: expected '<file> <channel>"),
    Case("stm end before start", _tedlium(_stm_add(b"JaneDoe_2010 1 JaneDoe_2010 8.00 7.00 <o,f0,female> x\n")),
         error=r"JaneDoe_2010\.stm:3: end time 7\.0 not after start 8\.0"),
    Case("stm empty (talk dropped)", _tedlium(lambda c: (c / "train" / "stm" / "JaneDoe_2010.stm").write_text("")),
         skip="empty_stm_talks_dropped", log=r"JaneDoe_2010\.stm: no segments; talk JaneDoe_2010 dropped", defect=12),
    Case("sph missing", _tedlium(lambda c: (c / "train" / "sph" / "JaneDoe_2010.sph").unlink()),
         error=r"JaneDoe_2010\.sph: missing audio for talk JaneDoe_2010"),
    Case("not a TED-LIUM directory", _tedlium(lambda c: (c / "train" / "stm").rename(c / "train" / "x")),
         error=r"no train/\{stm,sph\} .*is this TEDLIUM_release2"),
    Case("TED-LIUM under a path with a space", lambda t: _tedlium(lambda c: None)(t / "a b"), ok=True, defect=10),
    # ---- IEMOCAP (stage 1) -------------------------------------------------------------------------
    Case("unknown consensus label", _iemocap(_replace(EV, "\tneu\t", "\tzzz\t")),
         error=r"Ses01F_impro01\.txt:3: unknown label 'zzz' for Ses01F_impro01_F000"),
    Case("unknown annotator category", _iemocap(_replace(EV, "C-E1:\tNeutral;", "C-E1:\tBoredom;")),
         error=r"Ses01F_impro01\.txt:4 \(Ses01F_impro01_F000\): unknown emotion category 'Boredom'"),
    Case("malformed turn line", _iemocap(_replace(EV, "[4.0000 - 6.5000]", "[4,0000 - 6.5000]")),
         error=r"Ses01F_impro01\.txt:10: malformed turn line", defect=2),
    Case("annotator line without its colon", _iemocap(_replace(EV, "C-E3:\tNeutral;", "C-E3\tNeutral;")),
         error=r"Ses01F_impro01\.txt:\d+: malformed annotator line .*'C-E3\\tNeutral;"),
    Case("annotator line before any turn", _iemocap(_replace(EV, "% [START", "C-E1:\tAnger;\t()\n% [START")),
         error=r"Ses01F_impro01\.txt:1: annotator line before any turn"),
    Case("duplicate turn id", _iemocap(lambda c: (c / "Session1/dialog/EmoEvaluation/Ses01F_impro99.txt").write_text(
        (c / EV).read_text())), error="duplicate turn id Ses01F_impro01_F000"),
    Case("transcription not UTF-8", _iemocap(lambda c: (c / "Session3/dialog/transcriptions/Ses03M_impro05a.txt").open(
        "ab").write(b"Ses03M_impro05a_F009 [001.0000-002.0000]: \xff\n")), error=r"Ses03M_impro05a\.txt:4: not valid UTF-8"),
    Case("transcription file missing", _iemocap(lambda c: (c / "Session1/dialog/transcriptions/Ses01F_impro01.txt").unlink()),
         skip="missing_transcription_files"),
    Case("turn wav missing", _iemocap(lambda c: (c / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav").unlink()),
         skip="no_audio_skipped"),
    Case("session missing", _iemocap(lambda c: None, sessions=None),
         error=r"Session2, Session4, Session5 missing \(found Session1, Session3\) \(to use fewer, name them", defect=5),
    Case("named session missing", _iemocap(lambda c: None, sessions=(1, 2)), error="Session2 missing", defect=5),
    Case("session without turns with audio", _iemocap(lambda c: [w.unlink() for w in (c / "Session3").rglob("*.wav")]),
         error=r"Session3: no turns with audio", defect=5),
    Case("sessions named: only those", _iemocap(lambda c: None, sessions=(3,)), ok=True, defect=5),
    Case("not an IEMOCAP directory", _iemocap(lambda c: [s.rename(c / f"x{s.name}") for s in c.glob("Session*")]),
         error=r"no Session1\.\.5 folders"),
    # ---- dictionary and lang (stage 2) -------------------------------------------------------------
    Case("dictionary empty", _dictionary(b""), error=r"dic: no pronunciations \(empty dictionary\)", defect=7),
    Case("dictionary of silence phones only", _dictionary(b"um NSN\nah SIL\n"), error=r"dic: 0 non-silence phones", defect=7),
    Case("dictionary not UTF-8", _dictionary(b"the DH AH\ncaf\xe9 K AE F\n"), error=r"dic:2: not valid UTF-8", defect=7),
    Case("dictionary word without pronunciation", _dictionary(b"the DH AH\ncat\n"), error=r"dic:2: word without pronunciation"),
    Case("no training word pronounceable", _dictionary(b"dog D AO G\n"),
         error=r"none of the 2 words of .*text has a pronunciation", defect=7),
    Case("lang without non-silence phones", _dict_dir("", "<unk> NSN\n"),
         error=r"dict/nonsilence_phones\.txt: no non-silence phones", defect=7),
    Case("lexicon of only <unk>", _dict_dir("AH\n", "<unk> NSN\n"), error="no words besides the OOV word", defect=7),
    # ---- data dirs (utils/validate_data_dir.sh) ----------------------------------------------------
    Case("utt2spk duplicate id", _datadir({"utt2spk": "a-1 a\na-1 a\n"}), error=r"d/utt2spk:2: duplicate key 'a-1'"),
    Case("speakers not utterance prefixes", _datadir({"utt2spk": "a-1 b\nb-1 a\n"}), error="make speaker-ids prefixes"),
    Case("text misses an utterance", _datadir({"utt2spk": "a-1 a\na-2 a\n", "text": "a-1 hello\n"}),
         error=r"text and utt2spk disagree \(1 missing, e\.g\. 'a-2'\)"),
    Case("segment end before start", _datadir({"utt2spk": "a-1 a\n", "wav.scp": "r x.wav\n", "segments": "a-1 r 2.0 1.0\n"}),
         error=r"segments: utterance 'a-1' has bad times 2\.0 1\.0"),
    Case("utt2spk not UTF-8", _datadir({"utt2spk": b"a-1 a\n\xff-2 a\n"}), error=r"d/utt2spk:2: not valid UTF-8"),
    # ---- configuration and run.sh options (defects 8, 12) -------------------------------------------
    Case("config file missing", _run_sh("--config", "/nonexistent/x.yaml"), error=r"x\.yaml", defect=8),
    Case("config invalid YAML", _run_sh(config="nj: [2\n"), error=r"c\.yaml: invalid YAML", defect=8),
    Case("config unknown key", _run_sh(config=MINI.replace("volume_perturb:", "volume_pertrub:")),
         error=r"c\.yaml: features\.volume_pertrub: unknown key", defect=8),
    Case("config wrong type", _run_sh(config=MINI.replace("nj: 2", "nj: two")), error=r"c\.yaml: nj: expected an integer", defect=8),
    Case("config key shadows a run.sh variable", _run_sh(config="stop_stage: 0\n" + MINI),
         error=r"c\.yaml: stop_stage: would overwrite run\.sh's variable", defect=8),
    # ---- issue 27: values out of range (ser.config, before any stage) ------------------------------------------
    Case("config nj: 0", _run_sh(config=MINI.replace("nj: 2", "nj: 0")), error=r"c\.yaml: nj: 0: must be > 0"),
    Case("config device: tpu", _run_sh(config=MINI.replace("device: auto", "device: tpu")),
         error=r"c\.yaml: device: 'tpu': expected auto, cpu, cuda or cuda:N"),
    Case("config hidden_dim: 0", _run_sh(config=MINI.replace("hidden_dim: 256", "hidden_dim: 0")),
         error=r"c\.yaml: ser\.hidden_dim: 0: must be > 0"),
    Case("config duplicate labels", _run_sh(config=MINI.replace("labels: [ang, hap, neu, sad]", "labels: [ang, hap, ang]")),
         error=r"c\.yaml: ser\.labels: 'ang' is listed twice"),
    Case("config num_valid_speakers: 9", _run_sh(config=MINI.replace("num_valid_speakers: 1", "num_valid_speakers: 9")),
         error=r"c\.yaml: ser\.num_valid_speakers: 9: must be 1\.\.7"),
    Case("config primary_lr_factor: -1", _run_sh(config=MINI.replace("primary_lr_factor: 0.25", "primary_lr_factor: -1")),
         error=r"c\.yaml: ser\.primary_lr_factor: -1: must be >= 0"),
    Case("config unknown system", _run_sh(config=MINI.replace("systems: [tdnn_l12,", "systems: [tdnn_bogus,")),
         error=r"c\.yaml: ser\.systems: 'tdnn_bogus': unknown system \(known: tdnn_l12"),
    Case("--stage after --stop-stage", _run_sh("--stage", "3", "--stop-stage", "1"),
         error=r"--stage 3 is after --stop-stage 1: no stage to run", defect=12),
    Case("--stage past the last stage", _run_sh("--stage", "99", "--stop-stage", "100"),
         error=r"--stage 99: the last stage is \d+", defect=12),
    Case("--stage not a number", _run_sh("--stage", "x"), error=r"--stage/--stop-stage must be integers", defect=12),
]

# ---- stages 7+ (emotion folds and labels, inference inputs) ---------------------------------------------
def _folds(files: dict[str, str], protocol: str = "session"):
    """An emotion set's data dir with these files; the step makes its folds (steps/ser/make_folds.sh)."""
    from ser.emotion.folds import write_folds

    def build(tmp: Path):
        _datadir(files)(tmp)
        return lambda: write_folds(tmp / "d", protocol) and None
    return build


def _labels(utt2emo: str):
    """The class indices of an emotion set's utterances (what stage 7's trainer reads)."""
    from ser.emotion.folds import utt2class

    def build(tmp: Path):
        _datadir({"utt2spk": "Ses01F-1 Ses01F\nSes01F-2 Ses01F\n", "utt2emo": utt2emo})(tmp)
        return lambda: utt2class(DataDir.load(tmp / "d"), ["ang", "hap", "neu", "sad"]) and None
    return build


def _infer_inputs(make: Callable[[Path], str]):
    """ser-infer's inputs (files, directories, data dirs) listed and read (ser.infer.audio)."""
    from ser.infer.audio import list_recordings

    def build(tmp: Path):
        inp = make(tmp)
        return lambda: [sum(len(b) for b in r.blocks()) for r in list_recordings([inp])] and None
    return build


def _infer_file(name: str, data: bytes) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        (tmp / name).write_bytes(data)
        return str(tmp / name)
    return make


_SPK = "".join(f"Ses0{s}{g}-{i} Ses0{s}{g}\n" for s in (1, 2, 3) for g in "FM" for i in (1, 2))
_SESS = "".join(f"Ses0{s}{g}-{i} Ses0{s}\n" for s in (1, 2, 3) for g in "FM" for i in (1, 2))
EMOTION_CASES: list[Case] = [
    Case("emotion set without utt2session", _folds({"utt2spk": _SPK}), error=r"d: no utt2session"),
    Case("emotion set: a speaker in two sessions",
         _folds({"utt2spk": _SPK, "utt2session": _SESS.replace("Ses01M-2 Ses01", "Ses01M-2 Ses02")}),
         error=r"speaker 'Ses01M' appears in sessions Ses01 and Ses02"),
    Case("emotion set: too few speakers to validate",
         _folds({"utt2spk": "Ses01F-1 Ses01F\nSes02F-1 Ses02F\n", "utt2session": "Ses01F-1 Ses01\nSes02F-1 Ses02\n"}),
         error=r"fold Ses01 has 1 speakers outside the test session\(s\); cannot hold out 1 for validation"),
    Case("emotion label outside the classes", _labels("Ses01F-1 ang\nSes01F-2 fru\n"),
         error=r"d/utt2emo: utterance 'Ses01F-2' has label 'fru', not one of ang hap neu sad"),
    Case("emotion label missing", _labels("Ses01F-1 ang\n"), error=r"utterance 'Ses01F-2' has label None"),
    Case("ser-infer input missing", _infer_inputs(lambda t: str(t / "gone.wav")), error=r"gone\.wav: no such file"),
    Case("ser-infer unreadable file", _infer_inputs(_infer_file("junk.wav", b"RIFF....not audio")),
         error=r"junk\.wav: cannot (read|decode) audio"),
    Case("ser-infer directory without audio", _infer_inputs(lambda t: (t / "empty").mkdir() or str(t / "empty")),
         error=r"empty: no audio files"),
]


@pytest.mark.parametrize("case", CASES + EMOTION_CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, tmp_path: Path, caplog) -> None:
    step = case.build(tmp_path)
    if case.error:
        with pytest.raises(Exception) as e:
            step()
        msg = str(e.value)
        assert len(msg.strip().splitlines()) == 1, f"not one line: {msg!r}"
        assert re.search(case.error, msg), msg
    else:
        with caplog.at_level("WARNING"):
            counts = step() or Counter()
        if case.skip:
            assert counts[case.skip] == 1, counts
            assert caplog.records, "a counted event must be logged"
        else:
            assert case.ok
        if case.log:
            assert re.search(case.log, caplog.text), caplog.text
    # a step that stopped on bad input left nothing half-written
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".old"))]


def test_usage_prints_the_defaults():
    """run.sh's usage text printed the bad value as the default."""
    r = subprocess.run(["bash", str(ROOT / "run.sh"), "--stage", "7x"], capture_output=True, text=True)
    assert r.returncode == 1
    assert "(default 0)" in r.stderr and "7x" not in r.stderr.split("Usage:")[1]
