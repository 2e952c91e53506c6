"""Combining short segments (ser.prep.combine_segments, Kaldi's utils/data/combine_short_segments.sh).

References: the cases Kaldi's choose_utts_to_combine.py documents for CombineList, brute-force checks of
the grouping's properties on random durations, and a data dir whose combined features, text, frame counts,
speakers and utt2uniq are checked against numpy concatenation and the inputs by hand.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser.io.datadir import DataDir, Segment
from ser.io.tables import ArkScpWriter, read_matrix
from ser.prep.combine_segments import combine_list, combine_short_segments, utterance_groups

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("min_dur,durs,want", [
    (0.1, [5.0, 6.0, 7.0], [(0, 1), (1, 2), (2, 3)]),
    (0.5, [0.1, 6.0, 7.0], [(0, 2), (2, 3)]),
    (0.5, [6.0, 7.0, 0.1], [(0, 1), (1, 3)]),
    (0.5, [6.0, 0.1, 7.0], [(0, 2), (2, 3)]),      # both neighbours reach it: the shorter one
    (0.5, [7.0, 0.1, 6.0], [(0, 1), (1, 3)]),
    (1.0, [1.0, 0.5, 0.1, 6.0], [(0, 2), (2, 4)]),  # the one that reaches the minimum
    (1.0, [0.5, 0.6, 0.7], [(0, 3)]),
    (1.0, [0.5, 0.6, 1.7], [(0, 2), (2, 3)]),
    (2.0, [0.5, 0.6], [(0, 2)]),                    # all together, still short
])
def test_combine_list_documented_cases(min_dur, durs, want):
    assert combine_list(min_dur, durs) == want


def test_combine_list_properties_random():
    rng = random.Random(0)
    for _ in range(300):
        durs = [0.01 * rng.randint(1, 10) for _ in range(rng.randint(1, 15))]
        ranges = combine_list(0.05, durs)
        assert [s for s, _ in ranges] == [0] + [e for _, e in ranges[:-1]] and ranges[-1][1] == len(durs)
        if len(ranges) > 1:
            assert all(sum(durs[s:e]) >= 0.05 - 1e-5 for s, e in ranges)
        if sum(durs) >= 0.05 and all(d >= 0.05 for d in durs):
            assert len(ranges) == len(durs)   # nothing long enough is combined
        jitter = [d + 1e-7 * rng.randint(-5, 5) for d in durs]
        assert combine_list(0.05, jitter) == ranges


def test_groups_cross_speakers_only_when_a_speaker_is_short():
    spk2utt = {"a": ["a1", "a2", "a3"], "b": ["b1"], "c": ["c1", "c2"]}
    utt2dur = {"a1": 2.0, "a2": 0.5, "a3": 3.0, "b1": 0.4, "c1": 0.3, "c2": 1.0}
    groups = utterance_groups(1.55, spk2utt, utt2dur)
    # a2 joins the shorter neighbour a1; c1+c2 (1.3 s) and b1 (0.4 s) stay short within their speakers,
    # so the second pass joins them (b1's group is the left neighbour of c's)
    assert groups == [["a1", "a2"], ["a3"], ["b1", "c1", "c2"]]


def _make_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    lens = {"s1-u1": 300, "s1-u2": 40, "s1-u3": 200, "s2-u1": 50, "s3-u1": 120, "s3-u2": 90}
    feats = {u: rng.normal(size=(n, 4)).astype(np.float32) for u, n in lens.items()}
    d = tmp_path / "src"
    with ArkScpWriter(tmp_path / "raw.ark", tmp_path / "raw.scp") as w:
        for u in sorted(feats):
            w.write(u, feats[u])
    scp = dict(line.split(maxsplit=1) for line in (tmp_path / "raw.scp").read_text().splitlines())
    DataDir(utt2spk={u: u.split("-")[0] for u in lens},
            wav={"r": "/x.wav"},
            segments={u: Segment("r", 0.0, n / 100) for u, n in lens.items()},
            text={u: f"w_{u}" for u in lens}, feats=scp,
            extras={"utt2num_frames": {u: str(n) for u, n in lens.items()},
                    "utt2uniq": {u: "q" + u[-1] for u in lens}}).write(d)
    return d, feats


def test_combine_short_segments_data_dir(tmp_path):
    src, feats = _make_dir(tmp_path)
    info = combine_short_segments(src, 1.55, tmp_path / "comb", tmp_path / "mfcc" / "comb.ark")
    out = DataDir.load(tmp_path / "comb")
    # s1: u2 (0.4 s) joins u3 (2.0 s), the shorter of its neighbours; s2 (0.5 s) is short alone and joins
    # s3's group (2.1 s, shorter than s1's 2.4 s) in the second pass, which goes to s3 (most duration)
    assert out.utts == ["s1-u1", "s1-u2-comb2", "s2-u1-comb3"]
    assert out.utt2spk == {"s1-u1": "s1", "s1-u2-comb2": "s1", "s2-u1-comb3": "s3"}
    assert out.feats["s1-u1"] == DataDir.load(src).feats["s1-u1"]  # a singleton keeps its entry
    for name, members in (("s1-u1", ["s1-u1"]), ("s1-u2-comb2", ["s1-u2", "s1-u3"]),
                          ("s2-u1-comb3", ["s2-u1", "s3-u1", "s3-u2"])):
        np.testing.assert_array_equal(read_matrix(out.feats[name]), np.concatenate([feats[u] for u in members]))
        assert out.text[name] == " ".join(f"w_{u}" for u in members)
        assert int(out.extra("utt2num_frames")[name]) == sum(len(feats[u]) for u in members)
    # uniq values sharing a group are merged (q2 with q3, and q1 with q2 through s2-u1-comb3)
    assert set(out.extra("utt2uniq").values()) == {"q1"}
    assert out.segments is None and not out.wav
    assert (info.utts_in, info.utts_out, info.combined_groups, info.short_in, info.short_out) == (6, 3, 2, 4, 0)
    assert info.frames == sum(len(f) for f in feats.values())


def test_combine_short_segments_program(tmp_path):
    src, _ = _make_dir(tmp_path)
    r = subprocess.run(["bash", "utils/data/combine_short_segments.sh", "--ark-dir", str(tmp_path / "mfcc"),
                        str(src), "1.55", str(tmp_path / "comb")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{src} -> {tmp_path}/comb (min 1.55 s): 6 -> 3 segments (4 -> 0 under 1.55 s, 2 combined)" in r.stderr
    assert (tmp_path / "mfcc" / "raw_mfcc_comb.ark").is_file()
    r = subprocess.run([sys.executable, "-m", "ser.bin.combine_short_segments", str(src), "1.55", str(src)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().endswith("<src-dir> and <dir> must differ (" + str(src) + ")")
