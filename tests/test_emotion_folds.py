"""Cross-validation folds (ser.emotion.folds): disjoint speakers, exact test folds, complete coverage."""

from __future__ import annotations

import os
import random
from collections import Counter

import pytest

from emotion_data import write_tiny_set
from ser.emotion.folds import make_folds, read_fold_names, write_final_fold, write_folds
from ser.io.datadir import DataDir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data, _, _ = write_tiny_set(tmp_path_factory.mktemp("folds"), sessions=5, utts_per_speaker=6)
    return data


@pytest.mark.parametrize("protocol", ["session", "speaker"])
def test_folds_disjoint_exact_and_complete(tiny, protocol):
    d = DataDir.load(tiny)
    sess, spk = d.extra("utt2session"), d.utt2spk
    folds = make_folds(d, protocol, num_valid_speakers=1, seed=3)
    assert len(folds) == (5 if protocol == "session" else 10)
    tested = Counter()
    for f in folds:
        speakers = {p: {spk[u] for u in f.part(p)} for p in ("train", "valid", "test")}
        assert not speakers["train"] & speakers["valid"]
        assert not speakers["train"] & speakers["test"]
        assert not speakers["valid"] & speakers["test"]
        key = sess if protocol == "session" else spk
        assert f.test == sorted(u for u in d.utts if key[u] == f.name)  # exactly its session / speaker
        test_sessions = {sess[u] for u in f.test}
        assert not {sess[u] for u in f.valid} & test_sessions       # validation from other sessions
        assert len(speakers["valid"]) == 1
        assert sorted(f.train + f.valid + f.test) == d.utts           # every utterance used once
        tested.update(f.test)
    assert tested == Counter(d.utts)  # each utterance tested exactly once per protocol


def test_folds_seeded_and_written(tiny):
    d = DataDir.load(tiny)
    assert make_folds(d, "session", 1, 0) == make_folds(d, "session", 1, 0)
    assert any(a.valid != b.valid for a, b in zip(make_folds(d, "session", 1, 0),
                                                  make_folds(d, "session", 1, 1)))
    out = write_folds(tiny, "session", 1, 0)
    assert read_fold_names(out) == ["Ses01", "Ses02", "Ses03", "Ses04", "Ses05"]
    for f in make_folds(d, "session", 1, 0):
        for part in ("train", "valid", "test"):
            sub = DataDir.load(out / f.name / part)
            assert sub.utts == f.part(part)
            assert sub.feats == {u: d.feats[u] for u in f.part(part)}
            assert sub.extra("utt2emo") == {u: d.extra("utt2emo")[u] for u in f.part(part)}
    stamp = (out / "folds.json").stat().st_mtime_ns
    write_folds(tiny, "session", 1, 0)            # same options: kept
    assert (out / "folds.json").stat().st_mtime_ns == stamp
    write_folds(tiny, "session", 1, 1)            # other seed: rewritten
    assert (out / "folds.json").stat().st_mtime_ns != stamp


def test_a_written_split_is_redone_when_num_valid_speakers_changes(tmp_path):
    """folds.json records num_valid_speakers: a split made for 1 validation speaker is not reused
    for 2 (a stale split after a config change), neither per fold nor for the final model."""
    data, _, _ = write_tiny_set(tmp_path, sessions=3, utts_per_speaker=2)

    def valid_speakers(out, fold):
        return len(set(DataDir.load(out / fold / "valid").utt2spk.values()))

    for n in (1, 2):
        out = write_folds(data, "session", n, 0)
        assert [valid_speakers(out, f) for f in read_fold_names(out)] == [n, n, n]
        final = write_final_fold(data, n, 0)
        assert valid_speakers(final, "all") == n


def test_validation_speakers_hold_every_class(tiny):
    """A speaker without a class of the set (paper 2's all-agree set: a rare hap) is never the validation
    speaker while enough others hold every class; when too few do, the draw falls back to all of them
    (the trainers' fold check then names the class).  Where every speaker holds every class, the draws
    are those made without the rule."""
    d = DataDir.load(tiny)
    for f in make_folds(d, "speaker", 1, 0):  # every speaker holds every class: the plain seeded draw
        others = sorted({s for s in d.utt2spk.values() if s[:5] != f.name[:5]})
        assert {d.utt2spk[u] for u in f.valid} == set(random.Random(f"0:speaker:{f.name}").sample(others, 1))
    emo = d.extra("utt2emo")
    lacking = ["Ses01F", "Ses02M", "Ses03F", "Ses04M"]  # relabel their hap turns: no hap left
    for u, s in d.utt2spk.items():
        if s in lacking and emo[u] == "hap":
            emo[u] = "neu"
    for seed in range(5):
        for f in make_folds(d, "speaker", 1, seed):
            assert not {d.utt2spk[u] for u in f.valid} & set(lacking), (seed, f.name)
            assert "hap" in {emo[u] for u in f.valid}
    for u, s in d.utt2spk.items():  # only Ses05F keeps hap: the folds of session 5 draw from everyone
        if s != "Ses05F" and emo[u] == "hap":
            emo[u] = "neu"
    folds = {f.name: f for f in make_folds(d, "speaker", 1, 0)}
    assert {d.utt2spk[u] for u in folds["Ses01F"].valid} == {"Ses05F"}
    assert len({d.utt2spk[u] for u in folds["Ses05M"].valid}) == 1


def test_folds_need_sessions(tmp_path, tiny):
    d = DataDir.load(tiny)
    del d.extras["utt2session"]
    with pytest.raises(ValueError, match="utt2session"):
        make_folds(d)
    with pytest.raises(ValueError, match="unknown protocol"):
        make_folds(DataDir.load(tiny), "dialog")


REAL_IEMOCAP = os.environ.get("SER_IEMOCAP")


@pytest.mark.skipif(not REAL_IEMOCAP, reason="set SER_IEMOCAP=/path/to/IEMOCAP_full_release")
def test_real_iemocap_session_folds_have_table1_counts(tmp_path):
    from ser.prep.iemocap import prepare_iemocap

    prepare_iemocap(REAL_IEMOCAP, tmp_path)
    d = DataDir.load(tmp_path / "iemocap_4cls_exc")
    emo = d.extra("utt2emo")
    table1 = {"Ses01": (229, 143, 384, 194), "Ses02": (137, 210, 362, 197), "Ses03": (240, 151, 320, 305),
              "Ses04": (327, 238, 258, 143), "Ses05": (170, 299, 384, 245)}  # ang exc neu sad
    folds = make_folds(d, "session")
    assert [f.name for f in folds] == list(table1)
    for f in folds:
        c = Counter(emo[u] for u in f.test)
        assert (c["ang"], c["hap"], c["neu"], c["sad"]) == table1[f.name]
        assert len(f.train) + len(f.valid) == 4936 - sum(table1[f.name])
