"""Frame-level emotion examples (ser.emotion.frames): targets, coverage, padding, chunked evaluation."""

from __future__ import annotations

import math

import pytest
import torch

from emotion_data import CLASSES, tiny_model, write_tiny_set
from ser.emotion.frames import FrameEgs, context_of, load_parts, utterance_outputs
from ser.emotion.graft import make_grafted_model
from ser.io.batching import ModelContext, model_inputs, pad_edges
from ser.io.datadir import DataDir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data, ivs, _ = write_tiny_set(tmp_path_factory.mktemp("frames"), sessions=1, utts_per_speaker=6)
    d = DataDir.load(data)
    labels = {u: CLASSES.index(e) for u, e in d.extra("utt2emo").items()}
    return load_parts([data], ivs), d.utts, labels


def test_epoch_covers_every_output_frame_once_with_its_label(tiny):
    fs, utts, labels = tiny
    ctx = ModelContext(28, 28, 3)
    egs = FrameEgs(fs, utts, labels, ctx, chunk_width=45, minibatch_size=4, seed=1)
    for epoch in (0, 1):
        seen: dict[str, list[int]] = {u: [] for u in utts}
        phases: dict[str, set] = {u: set() for u in utts}
        mbs = list(egs.minibatches(epoch))
        assert len(mbs) == len(egs)
        for mb in mbs:
            t = mb.first_frame[:, None] + 3 * torch.arange(mb.num_out)[None, :]
            for b in range(len(mb.utt_idx)):
                u = fs.feats.keys[int(mb.utt_idx[b])]
                inside = (t[b] >= 0) & (t[b] < fs.feats.num_rows(u))
                assert torch.equal(mb.target[b] >= 0, inside)
                assert set(mb.target[b][inside].tolist()) <= {labels[u]}
                seen[u] += t[b][inside].tolist()
                phases[u].add(int(mb.first_frame[b]) % 3)
        for u in utts:
            n = fs.feats.num_rows(u)
            assert len(phases[u]) == 1                   # one frame phase per utterance and epoch
            ph = phases[u].pop()
            assert sorted(seen[u]) == list(range(ph, n, 3))  # each output frame exactly once
    a = [m.first_frame for m in egs.minibatches(0)]
    b = [m.first_frame for m in egs.minibatches(0)]
    c = [m.first_frame for m in egs.minibatches(1)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # a function of (seed, epoch)
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_inputs_carry_the_full_model_context(tiny):
    fs, utts, _ = tiny
    ctx = ModelContext(28, 28, 3)
    x, iv = model_inputs(fs, torch.tensor([2]), ctx, torch.tensor([0]), 10)
    assert x.shape[1] == iv.shape[1] == 30 + 56
    m = fs.feats[utts[2]]
    assert torch.equal(x[0, :28], m[:1].expand(28, -1))    # left edge: first frame repeated
    assert torch.equal(x[0, 28:28 + 30], m[:30])


@pytest.mark.parametrize("width", [6, 30, 300])
def test_chunked_evaluation_equals_whole_utterance_forward(tiny, width):
    fs, utts, _ = tiny
    model = make_grafted_model(tiny_model(), "tdnnf12", 16, 4, 0.25, False)
    model.train()
    model(*model_inputs(fs, torch.arange(4), model, torch.zeros(4, dtype=torch.int64), 20))
    model.eval()  # the head's BatchNorm now has stored statistics, as after training
    ctx = context_of(model)
    for phase in (0, 2):
        outs = utterance_outputs(model, fs, utts, ctx, chunk_width=width, batch_size=3, phase=phase)
        for u, o in zip(utts, outs):
            t = fs.feats.num_rows(u)
            iv = fs.ivectors[u][torch.arange(t) // 10]
            # the whole utterance padded by repeating its edge frames; output j at frame phase + 3 j
            xp = pad_edges(fs.feats[u][None], 28, 28 + 2)[:, phase:]
            ivp = pad_edges(iv[None], 28, 28 + 2)[:, phase:]
            with torch.no_grad():
                ref = model(xp, ivp)[0]
            n = math.ceil((t - phase) / 3)
            assert o.shape[0] == n
            torch.testing.assert_close(o, ref[:n], rtol=1e-4, atol=1e-4)
