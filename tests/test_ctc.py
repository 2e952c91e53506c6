"""CTC pieces: alphabet normalisation, greedy decoding, error rates against a brute-force edit distance,
and the trainer (loss goes down; a resumed run equals an uninterrupted one)."""

from __future__ import annotations

import functools
import math
import random

import numpy as np
import pytest
import torch

from ser.ctc.decode import error_rate, greedy_decode
from ser.eval.error_rate import ErrorCounts
from ser.ctc.text import BLANK, TextStats, ctc_min_frames, decode_ids, encode, normalize_transcript
from ser.nnet.deepspeech import DeepSpeechConfig, DeepSpeechModel
from ser.nnet.model_io import load_deepspeech_model
from ser.train.ctc_data import CtcBatches, CtcData, split_held_out
from ser.train.ctc_trainer import CtcTrainer, CtcTrainerConfig, frame_mean_std
from ser.io.batching import MatrixTable


def test_normalize_transcript_counts_what_it_drops() -> None:
    st = TextStats()
    assert normalize_transcript("[BREATH] we'll GO <unk> to 42-b [NOISE] x", st) == "we'll go to b x"
    assert st.tokens_dropped == {"[BREATH]": 1, "<unk>": 1, "[NOISE]": 1}
    assert st.chars_dropped == {"4": 1, "2": 1, "-": 1}
    assert normalize_transcript("[COUGH] 1999", st) == ""
    assert decode_ids(encode("it's a b")) == "it's a b" and BLANK == 28
    assert encode("az' ") == [1, 26, 27, 0]
    with pytest.raises(ValueError, match="not in the alphabet"):
        encode("é")
    assert ctc_min_frames(encode("hello")) == 6  # "ll" needs a blank between


def test_greedy_decode_known_posteriors() -> None:
    # frames: h h - e - l l - l o -   (- = blank)  ->  "hello"
    seq = [8, 8, BLANK, 5, BLANK, 12, 12, BLANK, 12, 15, BLANK]
    post = torch.full((2, len(seq), 29), 0.01)
    for t, c in enumerate(seq):
        post[0, t, c] = 0.9
    post[1, :, BLANK] = 0.9  # all blank -> empty
    post[1, 3, 1] = 0.95  # ... except frame 3 ("a"), beyond length 3 for this sequence
    out = greedy_decode(post.log(), torch.tensor([len(seq), 3]), BLANK)
    assert decode_ids(out[0]) == "hello" and out[1] == []
    assert decode_ids(greedy_decode(post, None, BLANK)[1]) == "a"


@functools.lru_cache(maxsize=None)
def _brute(ref: tuple, hyp: tuple) -> int:
    """Edit distance by its recursive definition (independent of the row-wise DP)."""
    if not ref:
        return len(hyp)
    if not hyp:
        return len(ref)
    return min(_brute(ref[1:], hyp[1:]) + (ref[0] != hyp[0]), _brute(ref[1:], hyp) + 1, _brute(ref, hyp[1:]) + 1)


def test_edit_counts_against_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(300):
        ref = tuple(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        hyp = tuple(rng.choice("abcd") for _ in range(rng.randint(0, 7)))
        c = ErrorCounts()
        c.add(list(ref), list(hyp))
        assert c.errors == _brute(ref, hyp) == c.subs + c.ins + c.dels, (ref, hyp)
        assert c.ref_len == len(ref) and c.subs + c.dels <= len(ref) and len(ref) - c.dels + c.ins == len(hyp)
    c = ErrorCounts()
    c.add(list("kitten"), list("sitting"))
    assert (c.subs, c.ins, c.dels) == (2, 1, 0)


def test_error_rates_and_all_blank_baseline() -> None:
    refs = {"u1": "the cat sat", "u2": "a dog"}
    hyps = {"u1": "the bat sat down", "u2": "a dog"}
    wer = error_rate(refs, hyps, "WER")
    assert (wer.subs, wer.ins, wer.dels, wer.ref_len) == (1, 1, 0, 5)
    assert math.isclose(wer.rate, 40.0)
    cer = error_rate(refs, hyps, "CER")
    assert cer.ref_len == 16 and cer.errors == 1 + 5  # c->b, " down"
    assert str(wer).startswith("%WER 40.00 [ 2 / 5, 1 ins, 0 del, 1 sub ]")
    blank = error_rate(refs, {}, "CER")  # an all-blank output decodes to nothing: every character deleted
    assert blank.rate == 100.0 and blank.dels == 16


def _toy_data(n: int = 24, seed: int = 0) -> CtcData:
    """Utterances whose frames spell their label: each character is 3 noisy frames of its own mean."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(28, 6)).astype(np.float32) * 2
    keys, mats, labels, texts = [], [], [], {}
    for i in range(n):
        text = "".join(rng.choice(list("abcde ")) for _ in range(rng.integers(2, 6))).strip() or "a"
        lab = encode(text)
        frames = np.concatenate([np.repeat(means[c][None], 3, 0) for c in lab] + [np.zeros((2, 6), np.float32)])
        keys.append(f"utt{i:02d}")
        mats.append(frames + rng.normal(scale=0.3, size=frames.shape).astype(np.float32))
        labels.append(lab)
        texts[keys[-1]] = text
    return CtcData(keys, MatrixTable.from_arrays(keys, mats), labels, texts, {})


TOY = DeepSpeechConfig(feat_dim=6, context=1, hidden_dim=32, cell_dim=24, dropout=0.05)


def _trainer(tmp, steps_cfg: float = 4.0) -> CtcTrainer:
    torch.manual_seed(0)
    m = DeepSpeechModel(TOY, generator=torch.Generator().manual_seed(0))
    return CtcTrainer(m, CtcTrainerConfig(num_epochs=steps_cfg, learning_rate=0.01, max_frames=120,
                                          valid_interval=5, print_interval=1), tmp)


def test_tiny_training_loss_goes_down(tmp_path) -> None:
    data = _toy_data()
    tr, ho = split_held_out(data.keys, 4, 0)
    t = _trainer(tmp_path / "a", steps_cfg=6.0)
    t.train(data.subset(tr), data.subset(ho))
    h = t.state.history
    assert h[-1]["train_loss_per_frame"] < 0.5 * h[0]["train_loss_per_frame"]
    assert h[-1]["valid_loss_per_frame"] < h[0]["valid_loss_per_frame"]
    assert (tmp_path / "a" / "final.pt").is_file() and (tmp_path / "a" / "report" / "training_curve.png").is_file()
    assert "held-out after minibatch" in (tmp_path / "a" / "log" / "train.log").read_text()
    m = load_deepspeech_model(tmp_path / "a" / "final.pt")
    assert m.input_mean.abs().sum() > 0  # standardisation statistics were set from the training frames


def test_resume_is_exact(tmp_path) -> None:
    data = _toy_data(12)
    full = _trainer(tmp_path / "full", 3.0)
    full.train(data)
    part = _trainer(tmp_path / "part", 3.0)
    part.train(data, max_steps=4)  # stops mid-pass, writes checkpoint.pt
    assert not (tmp_path / "part" / "final.pt").exists()
    resumed = _trainer(tmp_path / "part", 3.0)
    resumed.train(data)
    assert resumed.state.step == full.state.step
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    bad = CtcTrainer(DeepSpeechModel(TOY), CtcTrainerConfig(num_epochs=9.0, max_frames=120), tmp_path / "part")
    with pytest.raises(ValueError, match="trainer options differ"):
        bad.load_checkpoint(tmp_path / "part" / "checkpoint.pt")


def test_batches_respect_frame_budget_shortest_first() -> None:
    data = _toy_data(30)
    b = CtcBatches(data, max_frames=60)
    assert sorted(i for batch in b.batches for i in batch) == list(range(30))
    longest = [max(data.feats.num_rows(data.keys[i]) for i in batch) for batch in b.batches]
    assert longest == sorted(longest)  # DeepSpeech's order: shortest to longest
    for batch, n in zip(b.batches, longest):
        assert len(batch) == 1 or n * len(batch) <= 60
    x = np.concatenate([data.feats[k].numpy() for k in data.keys]).astype(np.float64)
    mean, std = frame_mean_std(data)  # the model's input standardisation
    np.testing.assert_allclose(mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), x.std(0), rtol=1e-5)
    mb = next(b.iterate(2))
    assert mb.keys == [data.keys[i] for i in b.batches[2]]
    assert mb.feats.shape[0] == len(mb.keys) and int(mb.target_lengths.sum()) == mb.targets.numel()
