"""Shared fixtures: tiny hand-written corpora in the real TED-LIUM / IEMOCAP layouts, and a tiny
chain setup (lang, phone LM, pdf map, den graph) for the egs, trainer and decoding tests.

The corpora are written here line by line (not by the project's synthesizer) so the
data-prep tests check the parsers against independently written files.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KALDI_ROOT", sys.prefix)


def tone(seconds: float, fs: int = 16000, f0: float = 220.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
    return (x * 32767).astype(np.int16)


def write_tedlium(root: Path) -> Path:
    """TEDLIUM_release2 with 2 train talks, 1 dev, 1 test; quirks of the real stm included."""
    c = root / "TEDLIUM_release2"
    talks = {
        "train": {
            "AlGore_2009": ("male", [(0.29, 2.5, "so it 's a good idea (AlGore_2009-1)"), (2.5, 4.35, "{NOISE} thank you"),
                                     (4.35, 8.2, "ignore_time_segment_in_scoring"), (8.2, 10.0, "we are here")]),
            "JaneDoe_2010": ("female", [(0.5, 3.0, "hello world(2) <sil> there"), (3.0, 6.0, "the end")]),
        },
        "dev": {"DevTalk_2011": ("male", [(1.0, 3.0, "a dev line"), (3.0, 5.0, "another one")])},
        "test": {"TestTalk_2012": ("female", [(1.0, 4.0, "a test line")])},
    }
    for split, tk in talks.items():
        (c / split / "sph").mkdir(parents=True)
        (c / split / "stm").mkdir(parents=True)
        for i, (talk, (sex, segs)) in enumerate(tk.items()):
            dur = max(e for _, e, _ in segs) + 0.5
            sf.write(c / split / "sph" / f"{talk}.sph", tone(dur, seed=i), 16000, format="NIST", subtype="PCM_16")
            lines = []
            for s, e, words in segs:
                if words == "ignore_time_segment_in_scoring":
                    lines.append(f"{talk} 1 inter_segment_gap {s:.2f} {e:.2f} <o,,unknown> {words}")
                else:
                    label = "<F0_M>" if split == "dev" else f"<o,f0,{sex}>"
                    lines.append(f"{talk} 1 {talk} {s:.2f} {e:.2f} {label} {words}")
            (c / split / "stm" / f"{talk}.stm").write_text("\n".join(lines) + "\n")
    (c / "TEDLIUM.152k.dic").write_text("a AH\na(2) EY\nhello HH AH L OW\n")
    return c


EMO_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def write_iemocap(root: Path) -> Path:
    """Two sessions, impro + script + an a/b dialog; votes that agree and that do not."""
    c = root / "IEMOCAP_full_release"
    # (dialog, turn, label, [C-E votes], self vote)
    spec = {
        1: [("Ses01F_impro01", "Ses01F_impro01_F000", "neu", ["Neutral;", "Neutral;", "Neutral;"], "Neutral;"),
            ("Ses01F_impro01", "Ses01F_impro01_M000", "ang", ["Anger;", "Anger; Frustration;", "Anger;"], "Anger;"),
            ("Ses01F_impro01", "Ses01F_impro01_M001", "xxx", ["Anger;", "Neutral;", "Sadness;"], "Other;"),
            ("Ses01M_script01_1", "Ses01M_script01_1_F000", "exc", ["Excited;", "Excited;", "Happiness;"], "Excited;"),
            ("Ses01M_script01_1", "Ses01M_script01_1_M000", "sad", ["Sadness;", "Sadness;", "Sadness;"], "Sadness;")],
        3: [("Ses03M_impro05a", "Ses03M_impro05a_F000", "hap", ["Happiness;", "Happiness;", "Happiness;"], "Happiness;"),
            ("Ses03M_impro05a", "Ses03M_impro05a_M000", "sad", ["Sadness;", "Sadness;", "Sadness;"], "Sadness;"),
            ("Ses03M_impro05b", "Ses03M_impro05b_F001", "fru", ["Frustration;", "Frustration;", "Anger;"], "Frustration;"),
            ("Ses03M_impro05b", "Ses03M_impro05b_M001", "exc", ["Excited;", "Excited;", "Excited;"], "Excited;")],
    }
    for sess, turns in spec.items():
        s = c / f"Session{sess}"
        ev, tr = s / "dialog" / "EmoEvaluation", s / "dialog" / "transcriptions"
        ev.mkdir(parents=True)
        tr.mkdir(parents=True)
        (ev / "Categorical").mkdir()  # real corpus has subfolders: must be ignored
        by_dialog: dict[str, list] = {}
        for t in turns:
            by_dialog.setdefault(t[0], []).append(t)
        for dialog, ts in by_dialog.items():
            wdir = s / "sentences" / "wav" / dialog
            wdir.mkdir(parents=True)
            blocks, trans = [EMO_HEADER], []
            for k, (_, turn, lab, votes, selfv) in enumerate(ts):
                t0, t1 = 1.0 + 3 * k, 3.5 + 3 * k
                sf.write(wdir / f"{turn}.wav", tone(t1 - t0, seed=k), 16000, subtype="PCM_16")
                b = f"[{t0:.4f} - {t1:.4f}]\t{turn}\t{lab}\t[2.5000, 3.0000, 3.5000]\n"
                for j, v in enumerate(votes):
                    b += f"C-E{j + 1}:\t{v}\t()\n"
                b += f"C-{turn.split('_')[-1][0]}1:\t{selfv}\t(comment)\n"
                b += "A-E1:\tval 3; act 2; dom  2;\t()\n\n"
                blocks.append(b)
                trans.append(f"{turn} [{t0:08.4f}-{t1:08.4f}]: Some words, for turn {k}.")
            trans.insert(1, "M: [BREATHING]")  # a non-turn line, as in the real files
            (ev / f"{dialog}.txt").write_text("".join(blocks))
            (tr / f"{dialog}.txt").write_text("\n".join(trans) + "\n")
    return c


@pytest.fixture
def tedlium(tmp_path: Path) -> Path:
    return write_tedlium(tmp_path / "corpus")


@pytest.fixture
def iemocap(tmp_path: Path) -> Path:
    return write_iemocap(tmp_path / "corpus")


# ------------------------------------------------------------------------------------------
# a tiny chain setup, built with the real ser.chain tools
# ------------------------------------------------------------------------------------------
TINY_DIC = """<s> SIL
</s> SIL
<unk> NSN
a AH0
a(2) EY1
the DH AH
cat K AE T
sat S AE T
dog D AO1 G
hen HH EH N
low L OW1
"""
TINY_TEXTS = [["the", "cat", "sat"], ["a", "dog", "sat"], ["the", "dog"], ["a", "cat"], ["dog", "sat", "the", "cat"],
              ["the", "hen", "sat", "low"], ["a", "low", "dog"], ["hen", "sat"], ["the", "hen"]]


class TinyChain:
    """Lang (``<root>/lang``), phone sequences of TINY_TEXTS x 20, a 4-gram phone LM, a tied biphone
    pdf map, the den graph (FST and training form) and the numerator normaliser."""

    def __init__(self, root: Path) -> None:
        from ser.chain.den_graph import DenGraph, create_den_fsa
        from ser.chain.lang import prepare_dict, prepare_lang, text_to_phones
        from ser.chain.phone_lm import estimate_phone_lm
        from ser.chain.supervision import Normalizer
        from ser.chain.topo import PdfMap, biphone_stats

        root.mkdir(parents=True, exist_ok=True)
        (root / "dic").write_text(TINY_DIC)
        (root / "text").write_text("".join(f"u{i} {' '.join(t)}\n" for i, t in enumerate(TINY_TEXTS)))
        prepare_dict(root / "dic", root / "dict", [root / "text"], use_cmudict=False)
        self.lang_dir = root / "lang"
        self.lang = prepare_lang(root / "dict", "<unk>", self.lang_dir)
        rng = random.Random(0)
        self.seqs = [text_to_phones(t, self.lang, rng, 0.8, 0.1) for t in TINY_TEXTS * 20]
        lm = estimate_phone_lm(self.seqs, 4, 3, 20)
        bi, mo = biphone_stats(self.seqs, self.lang.num_phones, self.lang.sets)
        self.pdf_map = PdfMap.biphone(self.lang.num_phones, self.lang.sets, [], bi, mo, 3, 2)
        self.num_pdfs = self.pdf_map.num_pdfs
        self.den = DenGraph(create_den_fsa(lm, self.pdf_map), self.num_pdfs)
        self.den_graph = self.den.chain_graph()
        self.norm = Normalizer(self.den)

    def write_chain_dir(self, out: Path) -> Path:
        """den.pt and pdf_map.pt as stage 5 writes them."""
        from ser.io.torch_io import save_torch

        self.den.save(out)
        save_torch(self.pdf_map.state_dict(), out / "pdf_map.pt")
        return out


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory) -> TinyChain:
    return TinyChain(tmp_path_factory.mktemp("tiny_chain"))
