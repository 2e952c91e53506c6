"""Synthetic IEMOCAP (``IEMOCAP_full_release``) in the real on-disk layout (stage 0 of the recipe).

Stands in for the licensed IEMOCAP release so that the SER data preparation runs unchanged on it.  Layout::

    IEMOCAP_full_release/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt
    IEMOCAP_full_release/Session{1..5}/dialog/transcriptions/<dialog>.txt
    IEMOCAP_full_release/Session{1..5}/sentences/wav/<dialog>/<utt>.wav        16 kHz mono PCM_16

Ten speakers (one F and one M per session); both speak in every dialog.  Each has a distinct espeak-ng
voice (``IEMOCAP_VOICES``) whose formant frequencies are scaled by a per-speaker factor, evenly spread over
±12% within each sex (the adult range of vocal-tract length, the main speaker cue in MFCCs), through a
private voice-variant file (:func:`ser.corpora.espeak.scaled_variant`).
Dialogs ``Ses0<s><F|M>_impro<NN>`` and ``Ses0<s><F|M>_script<NN>_<K>``, including the real odd names
``Ses03M_impro05a``/``Ses03M_impro05b`` (and ``impro08a/b`` when a session has room) and
``Ses05M_script01_1b``.  Turn ids ``<dialog>_<F|M><NNN>``, numbered per speaker; the turn's speaker is the
first letter of the last ``_`` token (fixed-index parsing breaks on the a/b dialogs, as in the real corpus).

EmoEvaluation files: header ``% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]``, then one
blank-line-separated block per turn::

    [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
    C-E2:<TAB>Neutral;<TAB>()
    C-E3:<TAB>Neutral; Frustration;<TAB>()
    C-E5:<TAB>Neutral;<TAB>()
    C-F1:<TAB>Neutral;<TAB>(curious)
    A-E2:<TAB>val 3; act 2; dom  2;<TAB>()
    A-E5:<TAB>val 2; act 3; dom  3;<TAB>()
    A-F1:<TAB>val 3; act 2; dom  1;<TAB>()

Three categorical evaluators per dialog (names among E1..E6); each lists one or (rarely) two categories.
**Consensus rule**: the category listed by at least 2 of the 3 ``C-E*`` evaluators, if exactly one such
category has the highest count; otherwise ``xxx``.  The actor's own ``C-F1``/``C-M1`` line (F1 on F turns,
M1 on M turns) does not vote.  The ``[V, A, D]`` summary is the mean of the ``A-E*`` lines (not ``A-F1``).
Transcriptions: ``<utt> [<start:08.4f>-<end:08.4f>]: <Text>`` in time order, with rare non-utterance
lines (``M: [BREATHING]``, ``<dialog>_MXX0 : [LAUGHTER]``) that a strict regex must skip.

A :class:`Cast` (the speakers' voices, the text, the random streams) is all that a second corpus made by
this generator changes: ``IEMOCAP_B`` (:mod:`ser.corpora.xcorpus`, the cross-corpus test set).

Emotion is carried by prosody only: each turn has a latent emotion that shifts the speaker's baseline
espeak rate, pitch, pitch range, volume and word gap (never the vocal tract); every turn adds random jitter
(classes overlap), a random recording gain and room noise whose level (20-35 dB SNR, ±2 dB per turn) and
colour are fixed per session (one recording set-up per session, a studio as in the real corpus); speech
and room noise then pass through the fixed colour of the speaker's own microphone, as each actor's
microphone picks up both.  Text never depends on emotion; scripted dialogs reuse
the same lines across sessions and speakers like the real corpus.  Evaluator votes are noisy functions of
the latent emotion, so consensus labels (what a recipe trains on) are noisy too.

Annotator agreement is bimodal, as in the real corpus where a turn is either prototypical (every evaluator
names the same single category) or ambiguous (split votes, ``xxx``): 55% of the turns are clear (each
evaluator names the latent emotion with probability 0.95-1.0 and adds a second category 3% of the time),
the rest ambiguous (0.3-0.7, a second category half of the time).  Agreement then depends on the class,
as in the real corpus (all-agree share of the consensus turns: ang 500/1103 45%, sad 467/1084 43%, neu
392/1708 23%, hap 94/595 16%; paper 2's Table 1 against the counts of ../shared/reference): a turn on which
every evaluator names its consensus category alone gets, with probability ``_DISSENT[label]``, a second
category on one evaluator's line (``Neutral; Frustration;``), which keeps the consensus (3 votes against 1)
and takes the turn out of the all-agree set (:class:`Dissent`, spread evenly over each speaker's turns).
These draws come from streams of their own, so the audio, the consensus labels (paper 1's set) and every
other line are those the generator made without them (generator version 2).  The proportions this gives at
the default 1000 turns, in expectation over seeds (tests/test_corpora.py), are near the real ones:
improvised turns ~52% (real: 4784 of 10,039, 48%, as usually reported), ang/hap/neu/sad consensus on ~55%
of the turns (real: 4490 of 10,039, 45%), and the all-agree set over every turn (``iemocap_agree``; paper
2's Table 1: 500 / 94 / 467 / 392 ang / hap / sad / neu, 1453 of 10,039 turns, 14.5%) ~14.5% of the turns
with the Table's class ratios (34.4 / 6.5 / 32.1 / 27.0%).  Seed 0 (conf/mini.yaml) draws fewer
prototypical happy turns than the average (39 unanimous against ~58), so its set holds 55 / 6 / 46 / 41 =
148 turns (37.2 / 4.1 / 31.1 / 27.7%): within the sampling spread of 148 turns, and only 6 speakers have a
``hap`` turn in it (ser.emotion.folds draws validation speakers among those holding every class).
``xxx`` is rarer (~12%) than in the real corpus (25%): three evaluators choosing among a few confusable
categories more often form a wrong majority than none.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from ser.corpora import text as textgen
from ser.corpora.espeak import Prosody, add_noise, get_engine, map_fresh_processes, scaled_variant, synth_16k, to_pcm16
from ser.corpora import build_once
from ser.corpora.tedlium import IEMOCAP_VOICES

__all__ = ["IemocapConfig", "Cast", "IEMOCAP_CAST", "make_iemocap", "consensus", "annotate", "Dissent",
           "prior_arrays", "NAME", "CATEGORY", "CODE", "EMOTION_PROSODY", "speaker_voice", "speaker_formant_scale",
           "speaker_microphone"]

log = logging.getLogger(__name__)

NAME = "IEMOCAP_full_release"
SR = 16000

CATEGORY = {"ang": "Anger", "hap": "Happiness", "exc": "Excited", "sad": "Sadness", "neu": "Neutral",
            "fru": "Frustration", "sur": "Surprise", "fea": "Fear", "oth": "Other", "dis": "Disgust"}
CODE = {v: k for k, v in CATEGORY.items()}

# Latent emotion prior (before annotation noise produces xxx), roughly IEMOCAP's label shares.
_PRIOR = {"neu": 0.23, "fru": 0.22, "ang": 0.14, "sad": 0.14, "exc": 0.14, "hap": 0.11, "sur": 0.012,
          "fea": 0.005, "dis": 0.002, "oth": 0.003}
# Category an evaluator picks when not the latent one.
_CONFUSE = {"neu": ["fru", "sad", "hap", "exc"], "fru": ["ang", "neu", "sad"], "ang": ["fru", "dis", "neu"],
            "sad": ["neu", "fru", "fea"], "exc": ["hap", "neu", "sur"], "hap": ["exc", "neu", "sur"],
            "sur": ["exc", "hap", "fea"], "fea": ["sad", "sur", "fru"], "dis": ["ang", "fru"], "oth": ["neu", "fru"]}
# Prosody shift per latent emotion relative to the speaker baseline: rate (wpm), pitch, range, volume, wordgap.
EMOTION_PROSODY: dict[str, tuple[float, float, float, float, float]] = {
    "neu": (0, 0, 0, 0, 0),
    "fru": (10, 5, 12, 25, 0),
    "ang": (25, 18, 35, 70, 0),
    "sad": (-50, -18, -30, -40, 4),
    "exc": (40, 32, 40, 30, 0),
    "hap": (15, 24, 25, 10, 0),
    "sur": (10, 30, 45, 20, 0),
    "fea": (30, 25, -15, -15, 1),
    "dis": (-25, -8, 15, 15, 2),
    "oth": (0, 5, 5, 0, 0),
}
# Speakers' formant-frequency scales (vocal-tract lengths) span 1 ± this within each sex: adult vocal tracts
# of one sex range over about ±12% around the mean (roughly 15-19 cm for men, 13-16 cm for women).
_VTL_SPREAD = 0.12
_JITTER = (14.0, 5.0, 10.0, 15.0, 1.0)  # per-utterance standard deviations of the same five parameters
# Mean (valence, activation, dominance) per latent emotion on the 1..5 scale.
_VAD = {"neu": (3, 2.5, 3), "fru": (2, 3, 3), "ang": (1.8, 4, 4), "sad": (1.8, 2, 2), "exc": (4, 4, 3.5),
        "hap": (4, 3, 3), "sur": (3.5, 4, 3), "fea": (2, 3.5, 2), "dis": (2, 3, 3.5), "oth": (3, 3, 3)}
# Main latent emotion of each improvisation topic (the rest of its turns follow _PRIOR): a share _THEME_WEIGHT
# of its turns.  Topic 7 is happy (not excited) so that improvised hap turns are common enough for every
# speaker to have some (real improvised turns: 284 hap, 663 exc); the theme weight (0.35 before) is lowered so
# that classes spread over more dialogs and hence speakers.
_IMPRO_THEME = {1: "fru", 2: "sad", 3: "exc", 4: "fru", 5: "ang", 6: "sad", 7: "hap", 8: "neu"}
_THEME_WEIGHT = 0.25
# Annotation of a turn: (probability, (clarity range), probability of a second category) of the clear and the
# ambiguous kind of turn.  Clarity = probability that an evaluator names the latent emotion first.
_AGREEMENT = ((0.55, (0.95, 1.0), 0.03), (0.45, (0.3, 0.7), 0.5))
# Probability that a unanimous turn of this consensus label gets one evaluator's second category (module
# docstring): the all-agree set's class ratios become paper 2's Table 1 ratios (500 / 94 / 467 / 392 of
# ang / hap / sad / neu) and its size ~14.5% of the turns (1453 of 10,039).  Set from the expected
# unanimous counts per 1000 turns without it (ang 73, hap 58, sad 72, neu 107; tests/test_corpora.py).
_DISSENT = {"ang": 0.32, "hap": 0.84, "sad": 0.36, "neu": 0.63}
# Version of the generator, kept in the corpus marker: a corpus made by an older generator is not reused.
GENERATOR_VERSION = 3  # 3: class-dependent agreement (_DISSENT)
_SCRIPTS = ["01_1", "01_2", "01_3", "02_1", "02_2", "03_1", "03_2"]
_COMMENTS = ["curious", "annoyed", "bored", "tired", "sarcastic", "worried", "calm", "confused", "amused"]


@dataclass(frozen=True)
class IemocapConfig:
    seed: int = 0
    turns: int = 1000            # labelled turns in all (the real corpus has 10,039)
    turns_per_dialog: int = 25   # sets how many dialogs each session gets (real: ~66)
    script_lines: int = 80       # lines per script text (shared across sessions)


@dataclass(frozen=True)
class Cast:
    """Who speaks and what they say in one IEMOCAP-layout corpus: all that a second corpus made by this
    generator changes (:mod:`ser.corpora.xcorpus`); the dialog plan, the emotions' prosody, the annotation
    and the recording set-up are the same code.  The default is the IEMOCAP stand-in's."""

    name: str = NAME                  # the corpus folder
    sessions: int = 5                 # Session1..<sessions>, one F and one M speaker each
    voices: dict[str, tuple[str, ...]] | None = None          # espeak voice per sex, by session; None: IEMOCAP_VOICES
    formant_scales: dict[str, tuple[float, ...]] | None = None  # per sex, by session; None: seeded, ±_VTL_SPREAD
    variant_prefix: str = "ser_"      # the speakers' espeak variants are <prefix>ses0<session><f|m>
    sentences: tuple[str, ...] = ()   # every turn reads one of these (lowercase tokens); empty: the grammar
    stream: int = 0                   # 0: random streams from the seed as given; else from (seed, stream)


IEMOCAP_CAST = Cast()


def corpus_seed(seed: int, cast: Cast) -> int:
    """The seed every random stream of ``cast``'s corpus starts from: ``seed`` itself for the IEMOCAP
    stand-in, else a 64-bit seed drawn from ``(seed, cast.stream)``, so that no stream repeats another
    corpus's (another noise, microphone, prosodic baseline or annotation draw)."""
    if cast.stream == 0:
        return seed
    return int(np.random.SeedSequence([seed, cast.stream]).generate_state(1, np.uint64)[0])


@dataclass(frozen=True)
class _SessionJob:
    out_dir: str
    session: int
    dialogs: tuple[tuple[str, int], ...]  # (dialog name, number of turns)
    seed: int                             # corpus_seed() of the corpus
    script_lines: int
    cast: Cast = IEMOCAP_CAST


def speaker_microphone(seed: int, session: int, sex: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed colour of a speaker's own microphone (IEMOCAP recorded each actor with a dedicated
    directional microphone): three peaking-EQ sections (±6..12 dB in low/mid/high bands) and a tilt,
    as one IIR filter (b, a)."""
    rng = np.random.default_rng([seed, 14, session, 0 if sex == "F" else 1])
    b, a = np.array([1.0]), np.array([1.0])
    for f_lo, f_hi in ((150.0, 600.0), (600.0, 2000.0), (2000.0, 6000.0)):
        f0 = float(rng.uniform(f_lo, f_hi))
        gain_db = float(rng.choice([-1, 1]) * rng.uniform(6.0, 12.0))
        q = float(rng.uniform(0.7, 2.0))
        # RBJ audio-EQ-cookbook peaking filter
        amp, w0 = 10 ** (gain_db / 40), 2 * np.pi * f0 / SR
        alpha = np.sin(w0) / (2 * q)
        bb = np.array([1 + alpha * amp, -2 * np.cos(w0), 1 - alpha * amp])
        aa = np.array([1 + alpha / amp, -2 * np.cos(w0), 1 - alpha / amp])
        b, a = np.convolve(b, bb / aa[0]), np.convolve(a, aa / aa[0])
    tilt = float(rng.uniform(-0.5, 0.5))  # first-order pre-/de-emphasis
    return np.convolve(b, [1.0, -tilt]) if tilt > 0 else b, np.convolve(a, [1.0, tilt]) if tilt < 0 else a


def speaker_formant_scale(seed: int, session: int, sex: str) -> float:
    """Formant-frequency scale of speaker ``Ses0<session><sex>`` (1 / relative vocal-tract length): the five
    speakers of each sex get the values evenly spaced over ``1 ± _VTL_SPREAD`` in a seeded order."""
    rank = int(np.random.default_rng([seed, 15, 0 if sex == "F" else 1]).permutation(5)[session - 1])
    return 1.0 + _VTL_SPREAD * (rank / 2.0 - 1.0)


def speaker_voice(seed: int, session: int, sex: str, cast: Cast = IEMOCAP_CAST) -> tuple[str, str, str]:
    """espeak voice of speaker ``Ses0<session><sex>``: (voice name, variant name, variant file text).  The
    variant is the speaker's base voice (``cast.voices``, default ``IEMOCAP_VOICES``) with its formants
    scaled by ``cast.formant_scales`` (default :func:`speaker_formant_scale`); define it with
    ``get_engine().define_variant`` before synthesising."""
    lang, base = (cast.voices or IEMOCAP_VOICES)[sex][session - 1].split("+")
    name = f"{cast.variant_prefix}ses0{session}{sex.lower()}"
    scale = (speaker_formant_scale(seed, session, sex) if cast.formant_scales is None
             else cast.formant_scales[sex][session - 1])
    return f"{lang}+{name}", name, scaled_variant(base, scale)


def consensus(votes: list[list[str]]) -> str:
    """Consensus code from the categorical evaluators' lists of category codes (see module docstring)."""
    counts: dict[str, int] = {}
    for v in votes:
        for c in set(v):
            counts[c] = counts.get(c, 0) + 1
    if not counts:
        return "xxx"
    best = max(counts.values())
    winners = [c for c, n in counts.items() if n == best]
    return winners[0] if best * 2 > len(votes) and len(winners) == 1 else "xxx"


def _session_dialogs(session: int) -> list[str]:
    names = []
    for sex in "FM":
        pre = f"Ses0{session}{sex}"
        for i in range(1, 9):
            if session == 3 and sex == "M" and i in (5, 8):
                names += [f"{pre}_impro0{i}a", f"{pre}_impro0{i}b"]
            else:
                names.append(f"{pre}_impro0{i}")
        for s in _SCRIPTS:
            names.append(f"{pre}_script{s}")
            if session == 5 and sex == "M" and s == "01_1":
                names.append(f"{pre}_script01_1b")
    return names


_REQUIRED = {"Ses03M_impro05a", "Ses03M_impro05b", "Ses05M_script01_1b"}


def _plan(cfg: IemocapConfig, out_dir: Path, cast: Cast = IEMOCAP_CAST) -> list[_SessionJob]:
    if cfg.turns < 20:
        raise ValueError(f"IEMOCAP needs at least 20 turns (asked {cfg.turns})")
    seed, n_ses = corpus_seed(cfg.seed, cast), cast.sessions
    rng = np.random.default_rng([seed, 10])
    per_session = [cfg.turns // n_ses + (1 if s < cfg.turns % n_ses else 0) for s in range(n_ses)]
    jobs = []
    for s in range(1, n_ses + 1):
        allnames = _session_dialogs(s)
        required = [d for d in allnames if d in _REQUIRED]
        n_dlg = int(np.clip(round(per_session[s - 1] / cfg.turns_per_dialog), 2 + len(required), len(allnames)))
        n_dlg = min(n_dlg, per_session[s - 1] // 2)  # at least 2 turns per dialog
        n_dlg = max(n_dlg, len(required) + 1)
        others = [d for d in allnames if d not in _REQUIRED]
        impro = [d for d in others if "impro" in d]
        script = [d for d in others if "script" in d]
        n_free = n_dlg - len(required)
        n_script = n_free // 2
        chosen = set(required)
        chosen |= {impro[i] for i in rng.choice(len(impro), n_free - n_script, replace=False)}
        chosen |= {script[i] for i in rng.choice(len(script), n_script, replace=False)}
        names = [d for d in allnames if d in chosen]
        counts = [per_session[s - 1] // len(names) + (1 if i < per_session[s - 1] % len(names) else 0)
                  for i in range(len(names))]
        jobs.append(_SessionJob(str(out_dir), s, tuple(zip(names, counts)), seed, cfg.script_lines, cast))
    return jobs


def _script_text(seed: int, script: str, n_lines: int, cast: Cast = IEMOCAP_CAST) -> list[list[str]]:
    """The lines of script ``NN_K`` (same in every session; ``01_1b`` is a retake of ``01_1``): ``n_lines``
    from the grammar, or the cast's fixed sentences in a seeded order."""
    rng = np.random.default_rng([seed, 11, *map(int, script.rstrip("b").split("_"))])
    if cast.sentences:
        return [cast.sentences[i].split() for i in rng.permutation(len(cast.sentences))]
    gen = textgen.SentenceGenerator(rng)
    return [gen.short() if rng.random() < 0.2 else gen.sentence() for _ in range(n_lines)]


def _impro_words(rng: np.random.Generator, gen: textgen.SentenceGenerator, cast: Cast) -> list[str]:
    """What an improvised turn says: a grammar sentence or short turn (sometimes two sentences), or one of
    the cast's fixed sentences."""
    if cast.sentences:
        return cast.sentences[int(rng.integers(len(cast.sentences)))].split()
    words = gen.short() if rng.random() < 0.25 else gen.sentence()
    if rng.random() < 0.15:
        words = words + gen.sentence()
    return words


def _annotation_kind(rng: np.random.Generator) -> tuple[float, float]:
    """(clarity, probability of a second category) of one turn, drawn from ``_AGREEMENT``."""
    (p_clear, clear, second_clear), (_, ambiguous, second_ambiguous) = _AGREEMENT
    if rng.random() < p_clear:
        return float(rng.uniform(*clear)), second_clear
    return float(rng.uniform(*ambiguous)), second_ambiguous


def _votes(rng: np.random.Generator, emo: str, clarity: float, p_second: float = 0.12) -> list[str]:
    """One evaluator's categories: the latent emotion with probability ``clarity`` (else a confusable one),
    plus a second category with probability ``p_second``."""
    first = emo if rng.random() < clarity else str(rng.choice(_CONFUSE[emo]))
    if rng.random() < p_second:
        second = str(rng.choice(_CONFUSE[first])) if rng.random() < 0.7 else emo
        if second != first:
            return [first, second]
    return [first]


def _vad_line(rng: np.random.Generator, emo: str) -> tuple[int, int, int]:
    return tuple(int(np.clip(np.rint(m + rng.normal(0, 0.7)), 1, 5)) for m in _VAD[emo])  # type: ignore[return-value]


def _fmt_votes(codes: list[str]) -> str:
    return " ".join(f"{CATEGORY[c]};" for c in codes)


@dataclass
class _SessionSetup:
    """One session's recording set-up: its room noise and the two speakers' microphones, voices
    and prosodic baselines."""

    noise_tilt: float
    snr: float
    mics: dict[str, tuple[np.ndarray, np.ndarray]]
    voices: dict[str, str]
    baseline: dict[str, Prosody]

    @classmethod
    def make(cls, seed: int, session: int, cast: Cast = IEMOCAP_CAST) -> "_SessionSetup":
        spk_rng = np.random.default_rng([seed, 12, session])
        # each session is one recording set-up (room + microphone): its noise colour is fixed
        tilt = float(spk_rng.uniform(0.0, 0.9))
        snr = float(spk_rng.uniform(20.0, 35.0))
        mics = {sex: speaker_microphone(seed, session, sex) for sex in "FM"}
        voices = {}
        for sex in "FM":
            voices[sex], variant, text = speaker_voice(seed, session, sex, cast)
            get_engine().define_variant(variant, text)
        baseline = {sex: Prosody(rate=int(spk_rng.integers(150, 185)), pitch=int(spk_rng.integers(30, 70)),
                                 range=int(spk_rng.integers(40, 60)), volume=int(spk_rng.integers(85, 115)),
                                 wordgap=0)
                    for sex in "FM"}
        return cls(tilt, snr, mics, voices, baseline)


def _synth_session(job: _SessionJob) -> list[tuple[str, str, str, float]]:
    """Synthesise one session; returns (utt, consensus label, latent emotion, seconds) per turn."""
    root = Path(job.out_dir) / f"Session{job.session}"
    for sub in ("EmoEvaluation", "transcriptions"):
        (root / "dialog" / sub).mkdir(parents=True, exist_ok=True)
    setup = _SessionSetup.make(job.seed, job.session, job.cast)
    dissent = Dissent(job.seed, job.session)  # one per session: it follows each speaker's turns in order
    out: list[tuple[str, str, str, float]] = []
    for d_idx, (dialog, n_turns) in enumerate(job.dialogs):
        out += _synth_dialog(job, setup, dissent, root, d_idx, dialog, n_turns)
    return out


def _synth_dialog(job: _SessionJob, setup: _SessionSetup, dissent: Dissent, root: Path, d_idx: int,
                  dialog: str, n_turns: int) -> list[tuple[str, str, str, float]]:
    """One dialog: its turns' wavs, its EmoEvaluation and transcription files."""
    import soundfile as sf

    names, prior = prior_arrays()
    rng = np.random.default_rng([job.seed, 13, job.session, d_idx])
    gen = textgen.SentenceGenerator(rng)
    evaluators = sorted(int(e) for e in rng.choice(np.arange(1, 7), 3, replace=False))
    dim_evals = sorted(int(e) for e in rng.choice(evaluators, 2, replace=False))
    is_script = "_script" in dialog
    script = _script_text(job.seed, dialog.split("_script")[1], job.script_lines, job.cast) if is_script else []
    theme = None if is_script else _IMPRO_THEME[int(dialog.split("_impro")[1][:2])]
    wav_dir = root / "sentences" / "wav" / dialog
    wav_dir.mkdir(parents=True, exist_ok=True)
    counters = {"F": 0, "M": 0}
    sex = "F" if rng.random() < 0.5 else "M"
    t = float(rng.uniform(2.0, 8.0))
    eva_blocks, tr_lines, out = [], [], []
    for k in range(n_turns):
        if k and rng.random() < 0.8:
            sex = "M" if sex == "F" else "F"
        utt = f"{dialog}_{sex}{counters[sex]:03d}"
        counters[sex] += 1
        if is_script:
            words = script[k % len(script)]
        else:
            words = _impro_words(rng, gen, job.cast)
        emo = _turn_emotion(rng, theme, names, prior)
        x = _turn_audio(rng, setup, sex, words, emo)
        sf.write(str(wav_dir / f"{utt}.wav"), to_pcm16(x), SR, format="WAV", subtype="PCM_16")
        dur = len(x) / SR
        start, end = t, t + dur
        t = end + float(rng.uniform(0.2, 2.0))
        block, label = _evaluation_block(rng, dissent, utt, sex, emo, start, end, evaluators, dim_evals)
        eva_blocks.append(block)
        tr_lines.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {textgen.iemocap_text(words)}")
        if rng.random() < 0.03:
            tr_lines.append(f"{'MF'[int(rng.integers(2))]}: [{['BREATHING', 'LAUGHTER', 'GARBAGE'][int(rng.integers(3))]}]")
        if rng.random() < 0.02:
            tr_lines.append(f"{dialog}_MXX{int(rng.integers(3))} : [LAUGHTER]")
        out.append((utt, label, emo, dur))
    header = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
    (root / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text(
        header + "".join(b + "\n\n" for b in eva_blocks), encoding="utf-8")
    (root / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(
        "".join(ln + "\n" for ln in tr_lines), encoding="utf-8")
    return out


def _turn_audio(rng: np.random.Generator, setup: _SessionSetup, sex: str, words: list[str], emo: str) -> np.ndarray:
    """One turn's audio: prosody = speaker baseline + emotion shift + jitter, leading/trailing
    silence, gain, the room noise, all through the speaker's microphone."""
    b = setup.baseline[sex]
    shift = EMOTION_PROSODY[emo]
    jit = [rng.normal(0, s) for s in _JITTER]
    p = Prosody(rate=int(round(b.rate + shift[0] + jit[0])), pitch=int(round(b.pitch + shift[1] + jit[1])),
                range=int(round(b.range + shift[2] + jit[2])), volume=int(round(b.volume + shift[3] + jit[3])),
                wordgap=int(round(max(0.0, shift[4] + jit[4]))))
    x = synth_16k(" ".join(words), setup.voices[sex], p)
    lead, tail = rng.uniform(0.05, 0.3, size=2)
    x = np.concatenate([np.zeros(int(lead * SR), np.float32), x, np.zeros(int(tail * SR), np.float32)])
    x = x * np.float32(10 ** (rng.uniform(-3, 3) / 20))
    # the room noise reaches the speaker's own microphone with the speech: the microphone colours both
    x = add_noise(x, setup.snr + float(rng.uniform(-2.0, 2.0)), rng, tilt=setup.noise_tilt)
    return lfilter(*setup.mics[sex], x).astype(np.float32)


def prior_arrays() -> tuple[list[str], np.ndarray]:
    """The latent emotions and their prior probabilities (``_PRIOR``, normalised)."""
    names = list(_PRIOR)
    prior = np.array([_PRIOR[n] for n in names])
    return names, prior / prior.sum()


def _turn_emotion(rng: np.random.Generator, theme: str | None, names: list[str], prior: np.ndarray) -> str:
    """A turn's latent emotion: an improvised dialog's theme with probability ``_THEME_WEIGHT``, else
    drawn from the prior ``prior`` over ``names``."""
    return theme if theme is not None and rng.random() < _THEME_WEIGHT else str(rng.choice(names, p=prior))


class Dissent:
    """The class-dependent dissent of one session's turns (module docstring).  A turn on which every
    evaluator names its consensus ``label`` alone loses that agreement with probability ``_DISSENT[label]``:
    one evaluator (drawn) adds a confusable second category, and the consensus stays ``label`` (3 votes
    against 1).  The decisions are spread evenly over each speaker's turns of a label (systematic sampling
    with a seeded phase u: the i-th such turn keeps its agreement iff floor(u + (i+1) k) > floor(u + i k),
    k = 1 - _DISSENT[label]), so every speaker keeps the share k of its unanimous turns of each label up
    to one turn, not only in expectation.  Draws come from streams of their own (seed, 16, session,
    speaker, label): the generator's other output is unchanged."""

    def __init__(self, seed: int, session: int) -> None:
        self.seed, self.session = seed, session
        self.streams: dict[tuple[str, str], tuple[np.random.Generator, float]] = {}
        self.seen: dict[tuple[str, str], int] = {}

    def __call__(self, votes: list[list[str]], label: str, sex: str) -> list[list[str]]:
        """``votes`` of a turn of speaker ``sex`` with consensus ``label``, dissent applied."""
        if label not in _DISSENT or not votes or any(v != [label] for v in votes):
            return votes
        key = (sex, label)
        if key not in self.streams:
            rng = np.random.default_rng([self.seed, 16, self.session, "FM".index(sex),
                                         list(_DISSENT).index(label)])
            self.streams[key] = (rng, float(rng.random()))
        rng, u = self.streams[key]
        i, k = self.seen.get(key, 0), 1.0 - _DISSENT[label]
        self.seen[key] = i + 1
        if np.floor(u + (i + 1) * k) > np.floor(u + i * k):
            return votes
        who, second = int(rng.integers(len(votes))), str(rng.choice(_CONFUSE[label]))
        return [[label, second] if j == who else v for j, v in enumerate(votes)]


def annotate(rng: np.random.Generator, emo: str, num_evaluators: int = 3) -> tuple[list[list[str]], str]:
    """The categorical evaluators' votes on a turn of latent emotion ``emo`` and their consensus label
    (module docstring), before the class-dependent :class:`Dissent`."""
    clarity, p_second = _annotation_kind(rng)
    votes = [_votes(rng, emo, clarity, p_second) for _ in range(num_evaluators)]
    return votes, consensus(votes)


def _evaluation_block(rng: np.random.Generator, dissent: Dissent, utt: str, sex: str, emo: str, start: float,
                      end: float, evaluators: list[int], dim_evals: list[int]) -> tuple[str, str]:
    """The turn's EmoEvaluation block (categorical votes of the evaluators and the actor,
    dimensional ratings) and its consensus label."""
    votes, label = annotate(rng, emo, len(evaluators))
    votes = dissent(votes, label, sex)
    dims = [_vad_line(rng, emo) for _ in dim_evals]
    vad = np.mean(np.array(dims, dtype=np.float64), axis=0)
    self_tag = f"{sex}1"
    self_vote = _votes(rng, emo, 0.8)
    comment = f"({_COMMENTS[int(rng.integers(len(_COMMENTS)))]})" if rng.random() < 0.15 else "()"
    block = [f"[{start:.4f} - {end:.4f}]\t{utt}\t{label}\t[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]"]
    block += [f"C-E{e}:\t{_fmt_votes(v)}\t()" for e, v in zip(evaluators, votes)]
    block.append(f"C-{self_tag}:\t{_fmt_votes(self_vote)}\t{comment}")
    for e, (va, ac, do) in zip(dim_evals, dims):
        block.append(f"A-E{e}:\tval {va}; act {ac}; dom  {do};\t()")
    va, ac, do = _vad_line(rng, emo)
    block.append(f"A-{self_tag}:\tval {va}; act {ac}; dom  {do};\t()")
    return "\n".join(block), label


def make_iemocap(out: str | Path, cfg: IemocapConfig = IemocapConfig(), nj: int = 2,
                 cast: Cast = IEMOCAP_CAST) -> dict:
    """Create ``<out>/<cast.name>`` (default ``IEMOCAP_full_release``; built under ``<name>.tmp``, renamed
    at the end) with ``cast``'s speakers and text.

    Skips the work if a complete corpus made with the same config is there; raises if one made with
    another config is there.  Returns a summary dict (label counts, hours).
    """
    def build(tmp: Path) -> dict:
        jobs = _plan(cfg, tmp, cast)
        log.info("synthesising %d %s sessions (%d dialogs) with %d jobs", len(jobs), cast.name,
                 sum(len(j.dialogs) for j in jobs), nj)
        results = [r for rs in map_fresh_processes(_synth_session, jobs, nj) for r in rs]
        labels: dict[str, int] = {}
        for _, lab, _, _ in results:
            labels[lab] = labels.get(lab, 0) + 1
        return {"corpus": cast.name, "turns": len(results), "dialogs": sum(len(j.dialogs) for j in jobs),
                "hours": round(sum(r[3] for r in results) / 3600, 3), "labels": dict(sorted(labels.items()))}

    conf = asdict(cfg) | {"generator": GENERATOR_VERSION} | ({} if cast == IEMOCAP_CAST else {"cast": cast.name})
    return build_once(Path(out) / cast.name, conf, build)
