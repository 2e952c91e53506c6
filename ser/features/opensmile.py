"""openSMILE functionals through audEERING's ``opensmile`` package (paper 2's baseline features).

Paper 2 (§4.1) trains its RandomForest baseline on "features extracted using openSMILE" without naming
the set.  The default here is **eGeMAPSv02** functionals (88 numbers per utterance), the compact set the
openSMILE authors recommend for affect; **IS09_emotion** (the Interspeech 2009 emotion challenge set,
384 functionals, the classic IEMOCAP baseline; ``FeatureSet.IS09``) and the package's other sets are
selectable by name (``FEATURE_SETS``).

The audio of an utterance comes from its data dir like every feature of the toolkit (``wav.scp`` entries
and pipelines, ``segments`` cut with extract-segments semantics: ``ser.io.audio``), scaled from int16
units to [-1, 1] (what ``opensmile.Smile.process_file`` reads from a 16-bit wav) and passed to
``Smile.process_signal``; so for a plain wav file the numbers equal ``process_file``'s
(tests/test_opensmile.py checks it).  Non-finite functionals are an error naming the utterance.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEATURE_SETS", "OpenSmileExtractor"]

# name (as the recipe writes it) -> opensmile.FeatureSet member name
FEATURE_SETS = {"eGeMAPSv02": "eGeMAPSv02", "IS09_emotion": "IS09", "ComParE_2016": "ComParE_2016",
                "emobase": "emobase", "GeMAPSv01b": "GeMAPSv01b", "IS10_paraling": "IS10"}
INT16_SCALE = 32768.0


class OpenSmileExtractor:
    """Functionals of one feature set, one row per utterance."""

    def __init__(self, feature_set: str = "eGeMAPSv02", sample_rate: int = 16000) -> None:
        import opensmile

        if feature_set not in FEATURE_SETS:
            raise ValueError(f"unknown openSMILE feature set {feature_set!r}; choose one of "
                             f"{', '.join(FEATURE_SETS)}")
        self.name = feature_set
        self.sample_rate = sample_rate
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[FEATURE_SETS[feature_set]],
                                     feature_level=opensmile.FeatureLevel.Functionals)

    @property
    def feature_names(self) -> list[str]:
        return list(self.smile.feature_names)

    @property
    def dim(self) -> int:
        return len(self.smile.feature_names)

    def __call__(self, wave_int16_units: np.ndarray, who: str = "") -> np.ndarray:
        """[1, dim] float32 functionals of a waveform in int16 units (as ``ser.io.audio`` returns it)."""
        x = np.asarray(wave_int16_units, dtype=np.float32) / np.float32(INT16_SCALE)
        df = self.smile.process_signal(x, self.sample_rate)
        out = df.to_numpy(dtype=np.float32)
        if out.shape != (1, self.dim):
            raise ValueError(f"{who}: openSMILE returned {out.shape} functionals, expected (1, {self.dim})")
        if not np.isfinite(out).all():
            bad = [n for n, v in zip(self.feature_names, out[0]) if not np.isfinite(v)]
            raise ValueError(f"{who}: non-finite openSMILE {self.name} functionals ({', '.join(bad[:3])})")
        return out
