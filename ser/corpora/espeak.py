"""espeak-ng speech synthesis through ``ctypes`` (the ``espeakng-loader`` wheel), for the embedded corpora.

Mirrors no Kaldi file: it is the sound source of stage 0 (``local/make_mini_corpora.sh``), which stands in
for ``egs/tedlium/s5_r2/local/download_data.sh`` and an IEMOCAP download.  It drives the C API of
``speak_lib.h`` directly (``espeak_Initialize`` in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode, a synth callback that
collects int16 samples, ``espeak_SetVoiceByName``, ``espeak_SetParameter``), so neither an ``espeak-ng``
binary nor apt is needed.  espeak-ng synthesises at 22050 Hz; :func:`synth_16k` resamples to 16 kHz with
``soxr`` (deterministic, high quality).

espeak-ng keeps global state, so one process has one engine: :func:`get_engine` initialises it once and
every call sets voice and all prosody parameters before synthesising, so results never depend on the
order of earlier calls.

Speaker-specific voices: espeak-ng reads a voice variant (``<lang>+<variant>``) from the file
``voices/!v/<variant>`` of its data directory.  The engine therefore runs on a private copy of the wheel's
``espeak-ng-data`` (a temporary directory of symbolic links, removed at exit) whose ``voices/!v`` can take
extra variant files (:meth:`EspeakEngine.define_variant`); :func:`scaled_variant` writes one that scales an
installed variant's formant frequencies, i.e. changes the vocal-tract length.
"""

from __future__ import annotations

import atexit
import ctypes
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

__all__ = ["Prosody", "EspeakEngine", "get_engine", "synth_16k", "scaled_variant", "map_fresh_processes", "colored_noise", "add_noise", "to_pcm16", "ESPEAK_RATE_HZ"]

T = TypeVar("T")
R = TypeVar("R")

ESPEAK_RATE_HZ = 22050

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_espeakINITIALIZE_DONT_EXIT = 0x8000
_espeakCHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_PARAM_WORDGAP = 7
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Prosody:
    """espeak-ng prosody parameters (``espeak_SetParameter`` units).

    rate: words per minute (80..450); pitch: base pitch 0..100; range: pitch range 0..100 (0 = monotone);
    volume: amplitude 0..200 (100 = default); wordgap: extra pause between words in units of 10 ms.
    """

    rate: int = 175
    pitch: int = 50
    range: int = 50
    volume: int = 100
    wordgap: int = 0

    def clipped(self) -> "Prosody":
        return Prosody(
            rate=int(np.clip(self.rate, 80, 450)),
            pitch=int(np.clip(self.pitch, 0, 100)),
            range=int(np.clip(self.range, 0, 100)),
            volume=int(np.clip(self.volume, 0, 200)),
            wordgap=int(np.clip(self.wordgap, 0, 50)),
        )


class EspeakEngine:
    """One initialised espeak-ng library (per process)."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int

        self._data = _private_data_dir(Path(espeakng_loader.get_data_path()))
        self._variants: dict[str, str] = {}
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self._data).encode(), _espeakINITIALIZE_DONT_EXIT)
        if rate != ESPEAK_RATE_HZ:
            raise RuntimeError(f"espeak_Initialize failed or returned sample rate {rate} (expected {ESPEAK_RATE_HZ})")
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._on_samples)  # keep a reference: ctypes must not free it
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()
        self._voice: str | None = None

    def define_variant(self, name: str, text: str) -> None:
        """Add voice variant ``name`` (the text of an espeak-ng variant file), usable as ``<lang>+<name>``.

        A name can be defined once per engine (defining it again with the same text is a no-op), so a
        voice name always means the same voice."""
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise ValueError(f"espeak-ng variant name {name!r}: use lower-case letters, digits and _")
        with self._lock:
            if name in self._variants:
                if self._variants[name] != text:
                    raise ValueError(f"espeak-ng variant {name!r} is already defined differently")
                return
            path = self._data / "voices" / "!v" / name
            if path.exists():
                raise ValueError(f"espeak-ng variant {name!r} would shadow an installed variant")
            path.write_text(text, encoding="utf-8")
            self._variants[name] = text

    def _on_samples(self, wav, numsamples: int, events) -> int:  # noqa: ANN001 (ctypes types)
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = continue synthesis

    def synth(self, text: str, voice: str, prosody: Prosody = Prosody()) -> np.ndarray:
        """Synthesise ``text`` with ``voice`` (e.g. ``en-us+m3``); int16 samples at 22050 Hz."""
        p = prosody.clipped()
        with self._lock:
            if voice != self._voice:
                if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                    raise ValueError(f"espeak-ng: unknown voice {voice!r}")
                self._voice = voice
            for pid, val in ((_PARAM_RATE, p.rate), (_PARAM_VOLUME, p.volume), (_PARAM_PITCH, p.pitch),
                             (_PARAM_RANGE, p.range), (_PARAM_WORDGAP, p.wordgap)):
                self._lib.espeak_SetParameter(pid, val, 0)
            self._chunks = []
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            err = self._lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _espeakCHARS_UTF8, None, None)
            if err != _EE_OK:
                raise RuntimeError(f"espeak_Synth failed (error {err}) for text {text!r}")
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)


_ENGINE: EspeakEngine | None = None


def get_engine() -> EspeakEngine:
    """The process-wide engine, initialised on first use."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = EspeakEngine()
    return _ENGINE


def _private_data_dir(src: Path) -> Path:
    """A temporary copy of espeak-ng's data directory ``src`` made of symbolic links, with a real
    ``voices/!v`` directory that can take new variant files; removed when the process exits."""
    if not (src / "voices" / "!v").is_dir():
        raise RuntimeError(f"espeak-ng data directory {src} has no voices/!v")
    tmp = Path(tempfile.mkdtemp(prefix="ser-espeak-data-"))
    atexit.register(shutil.rmtree, tmp, True)  # removes the links, never their targets
    for sub, skip in (("", "voices"), ("voices", "!v"), ("voices/!v", None)):
        (tmp / sub).mkdir(exist_ok=True)
        for e in sorted((src / sub).iterdir()):
            if e.name != skip:
                (tmp / sub / e.name).symlink_to(e)
    return tmp


_FORMANT = re.compile(r"^(\s*formant\s+)(\d+)(\s+)(\d+)(.*)$")


def scaled_variant(variant: str, formant_scale: float) -> str:
    """Text of a voice variant: the installed espeak-ng variant ``variant`` (``voices/!v/<variant>``) with
    every formant frequency (``formant N <freq%> ...``, N = 0..8, 100 where the file has no line)
    multiplied by ``formant_scale``, as a vocal tract ``1/formant_scale`` times as long would.  (espeak-ng
    widens formant 0 by 5% on every ``formant 0`` line, so a variant without one, e.g. ``david``, comes out
    with that peak 5% wider even at scale 1.)"""
    import espeakng_loader

    path = Path(espeakng_loader.get_data_path()) / "voices" / "!v" / variant
    if not path.is_file():
        raise ValueError(f"espeak-ng: no installed voice variant {variant!r}")
    if not 0.5 <= formant_scale <= 2.0:
        raise ValueError(f"formant scale {formant_scale} outside 0.5..2")
    lines, seen = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _FORMANT.match(line)
        if m:
            seen.add(int(m.group(2)))
            line = f"{m.group(1)}{m.group(2)}{m.group(3)}{int(round(int(m.group(4)) * formant_scale))}{m.group(5)}"
        lines.append(line)
    # a formant the file leaves alone keeps its default height and width (-1 = unchanged)
    lines += [f"formant {n} {int(round(100 * formant_scale))} -1 -1" for n in range(9) if n not in seen]
    return "\n".join(lines) + "\n"


def synth_16k(text: str, voice: str, prosody: Prosody = Prosody(), trim: bool = True) -> np.ndarray:
    """Synthesise and resample to 16 kHz; float32 in [-1, 1).

    ``trim`` removes espeak's leading/trailing digital silence (exact zeros) so callers control pauses.
    """
    import soxr

    x = get_engine().synth(text, voice, prosody)
    if trim and x.size:
        nz = np.flatnonzero(x)
        x = x[nz[0]: nz[-1] + 1] if nz.size else x[:0]
    y = soxr.resample(x.astype(np.float32) / 32768.0, ESPEAK_RATE_HZ, 16000, quality="HQ")
    return np.asarray(y, dtype=np.float32)


def map_fresh_processes(fn: Callable[[T], R], jobs: Sequence[T], nj: int = 1) -> list[R]:
    """``[fn(j) for j in jobs]``, each call in a new Python interpreter (results in job order).

    espeak-ng keeps static state between synthesis calls (e.g. the pitch-flutter index of its wave
    generator), so the same text gives slightly different samples depending on what was synthesised
    before in the process.  Running every job in a new process makes each job's output a function of its
    arguments only, hence byte-identical across runs and independent of ``nj`` and of which jobs were
    skipped.  Workers are plain ``python -c`` subprocesses fed a pickle on stdin (not ``multiprocessing``
    spawn, which would re-import the caller's ``__main__``).  ``fn`` must be a module-level function.
    """
    import os
    import pickle
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    code = "from ser.corpora.espeak import _worker_main; _worker_main()"

    def run(job: T) -> R:
        proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((fn, job)), capture_output=True,
                              env=env, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"synthesis job {job!r} failed:\n{proc.stderr.decode(errors='replace')[-3000:]}")
        return pickle.loads(proc.stdout)

    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(nj, len(jobs)))) as pool:
        return list(pool.map(run, jobs))


def _worker_main() -> None:
    """Entry point of a :func:`map_fresh_processes` worker: pickled ``(fn, job)`` on stdin, result on stdout."""
    import pickle
    import sys

    fn, job = pickle.loads(sys.stdin.buffer.read())
    out = pickle.dumps(fn(job))
    sys.stdout.flush()
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()


def colored_noise(n: int, rng: np.random.Generator, tilt: float = 0.0) -> np.ndarray:
    """Unit-RMS Gaussian noise of ``n`` samples; ``tilt`` in [0, 1] moves it from white towards brown
    (one-pole low-pass ``y[t] = tilt * y[t-1] + x[t]``, applied with scipy.signal.lfilter)."""
    from scipy.signal import lfilter

    x = rng.standard_normal(n)
    if tilt > 0:
        x = lfilter([1.0], [1.0, -tilt], x)
    rms = float(np.sqrt(np.mean(x * x))) if n else 1.0
    return (x / max(rms, 1e-12)).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, tilt: float = 0.0) -> np.ndarray:
    """``x`` plus noise whose power is ``snr_db`` below the power of ``x``'s non-silent part."""
    active = x[np.abs(x) > 1e-3 * max(float(np.abs(x).max(initial=0.0)), 1e-12)]
    p = float(np.mean(active.astype(np.float64) ** 2)) if active.size else 1e-8
    return (x + colored_noise(len(x), rng, tilt) * np.float32(np.sqrt(p / 10 ** (snr_db / 10)))).astype(np.float32)


def to_pcm16(x: np.ndarray, peak: float = 0.97) -> np.ndarray:
    """float [-1, 1) -> int16; scales the whole signal down only if it would clip."""
    m = float(np.abs(x).max(initial=0.0))
    if m > peak:
        x = x * (peak / m)
    return np.round(x * 32767.0).astype(np.int16)
