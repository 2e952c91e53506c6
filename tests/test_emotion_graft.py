"""Grafting (ser.emotion.graft) and the learning-rate factor of the transferred layers."""

from __future__ import annotations

import copy

import pytest
import torch

from emotion_data import CLASSES, FEAT_DIM, IVEC_DIM, save_tiny_model, tiny_model, write_tiny_set
from ser.emotion.frames import load_parts
from ser.emotion.graft import GraftedModel, body_layers, make_grafted_model, without_ivector_input
from ser.emotion.trainer import SerTrainConfig, SerTrainer
from ser.io.datadir import DataDir
from ser.nnet.model_io import load_chain_model


@pytest.mark.parametrize("layer", ["tdnnf12", "tdnnf13", "prefinal-l", "prefinal-chain", "tdnn1"])
def test_body_output_equals_embed_of_loaded_model(tmp_path, layer):
    path = save_tiny_model(tmp_path / "final.pt")
    ref = load_chain_model(path).eval()
    g = make_grafted_model(load_chain_model(path), layer, 16, 4, 0.25, False)
    x = torch.randn(3, 150 + 56, FEAT_DIM)
    for iv in (torch.randn(3, IVEC_DIM), torch.randn(3, 150 + 56, IVEC_DIM)):
        g.train()  # a transferred body stays in eval mode
        assert not g.body.training and g.head.training
        assert torch.equal(g.embed(x, iv), ref.embed(x, iv, upto=layer))
    assert list(g.body.layers) == body_layers(ref, layer)
    assert (g.left_context, g.right_context) == (ref.left_context, ref.right_context) == (28, 28)


def test_scratch_body_is_random_and_in_train_mode():
    pre = tiny_model()
    g = make_grafted_model(copy.deepcopy(pre), "tdnnf12", 16, 4, 1.0, True, seed=5)
    g.train()
    assert g.body.training
    a = dict(g.body.named_parameters())
    assert not any(torch.equal(a[n], p) for n, p in pre.named_parameters() if n in a)
    assert all(float(bn.stats_count) == 0 for bn in g.body.batchnorms())
    lda, lda0 = g.body.layers["lda"], pre.layers["lda"]  # the fixed input transform is shared
    assert torch.equal(lda.weight, lda0.weight) and torch.equal(lda.bias, lda0.bias)


def test_param_groups_follow_primary_lr_factor():
    g = make_grafted_model(tiny_model(), "tdnnf12", 16, 4, 0.25, False)
    groups = g.param_groups(1e-3)
    assert [gr["name"] for gr in groups] == ["head", "body"]
    assert groups[1]["lr"] == pytest.approx(0.25e-3)
    assert sum(p.numel() for gr in groups for p in gr["params"]) == sum(p.numel() for p in g.parameters())
    frozen = make_grafted_model(tiny_model(), "tdnnf12", 16, 4, 0.0, False)
    assert [gr["name"] for gr in frozen.param_groups(1e-3)] == ["head"]
    assert not any(p.requires_grad for p in frozen.body.parameters())
    with pytest.raises(ValueError, match="unknown layer"):
        make_grafted_model(tiny_model(), "tdnnf99", 16, 4, 0.25, False)


def test_saved_graft_round_trip():
    g = make_grafted_model(tiny_model(), "tdnnf13", 16, 4, 0.25, False)
    h = GraftedModel.from_dict(g.to_dict())
    x, iv = torch.randn(2, 120, FEAT_DIM), torch.randn(2, IVEC_DIM)
    assert torch.equal(g.eval()(x, iv), h.eval()(x, iv))


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    root = tmp_path_factory.mktemp("graft")
    data, ivs, _ = write_tiny_set(root, sessions=2, utts_per_speaker=6)
    d = DataDir.load(data)
    train = [u for u in d.utts if not u.startswith("Ses02M")]
    valid = [u for u in d.utts if u.startswith("Ses02M")]
    labels = {u: CLASSES.index(d.extra("utt2emo")[u]) for u in d.utts}
    return load_parts([data], ivs), train, valid, labels


def _train(fold, tmp_path, factor, cache=True, scratch=False):
    fs, train, valid, labels = fold
    model = make_grafted_model(tiny_model(), "tdnnf12", 16, 4, factor, scratch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = SerTrainConfig(num_epochs=2, patience=0, chunk_width=60, minibatch_size=8,
                         cache_frozen_body=cache, initial_lrate=0.01, final_lrate=0.001)
    SerTrainer(model, cfg, fs, train, valid, labels, tmp_path, class_names=CLASSES).run()
    return before, model.state_dict()


@pytest.mark.parametrize("cache", [True, False])
def test_factor_zero_keeps_the_body_bit_identical(fold, tmp_path, cache):
    before, after = _train(fold, tmp_path, 0.0, cache)
    body = [k for k in before if k.startswith("body.")]
    assert body and all(torch.equal(before[k], after[k]) for k in body)  # weights and BN stats
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))


def test_positive_factor_changes_the_body_but_not_its_stats(fold, tmp_path):
    before, after = _train(fold, tmp_path, 0.25)
    weights = [k for k in before if k.startswith("body.") and "stats_" not in k and "lda" not in k]
    stats = [k for k in before if k.startswith("body.") and "stats_" in k]
    assert all(not torch.equal(before[k], after[k]) for k in weights)
    assert all(torch.equal(before[k], after[k]) for k in stats)  # eval mode: stored statistics kept


def test_frozen_body_cache_gives_the_uncached_training(fold, tmp_path):
    _, cached = _train(fold, tmp_path / "a", 0.0, cache=True)
    _, plain = _train(fold, tmp_path / "b", 0.0, cache=False)
    for k in cached:
        torch.testing.assert_close(cached[k], plain[k], rtol=1e-4, atol=1e-5)


def test_table2_prefinal_row_grafts_on_prefinal_chain_of_the_mini_network():
    """Issue 24.2: paper 1's "fully connected prefinal layer of 1024 dimension" is tdnn_1g's prefinal-chain
    (prefinal-layer big-dim 1024), the shipped configs graft Table 2's prefinal row there, and on the mini
    network of conf/mini.yaml the head reads its small-dim output (64, as prefinal-l: the same head cost)."""
    from ser.config import SerConfig, load
    from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel

    assert SerConfig().prefinal_layer == "prefinal-chain"
    for conf in ("conf/mini.yaml", "conf/paper.yaml"):
        assert load(conf).ser.prefinal_layer == "prefinal-chain"
    assert TdnnfConfig().prefinal_big_dim == 1024
    cfg = TdnnfConfig.mini(30, feat_dim=FEAT_DIM, ivector_dim=IVEC_DIM)
    net = TdnnfModel(cfg, generator=torch.Generator().manual_seed(0)).eval()
    assert net.layer_dim("prefinal-chain") == net.layer_dim("prefinal-l") == cfg.prefinal_small_dim == 64
    assert body_layers(net, "prefinal-chain")[-2:] == ["prefinal-l", "prefinal-chain"]
    g = make_grafted_model(net, "prefinal-chain", 16, 4, 0.25, False)
    assert "output" not in g.body.layers and "prefinal-xent" not in g.body.layers
    out = g.eval()(torch.randn(2, 100 + 56, FEAT_DIM), torch.randn(2, IVEC_DIM))
    assert out.shape == (2, 34, 4) and torch.isfinite(out).all()


def test_without_ivector_input_is_the_pretrained_network_fed_a_zero_ivector(tmp_path):
    """tdnn_l12_noivec's body: the lda's i-vector columns removed, everything else kept.  The reference
    is the pretrained network itself with a zero i-vector (what the online extractor outputs before it
    has seen a frame); the network reads MFCC only, and its grafted model saves and loads."""
    pre = tiny_model(seed=3)
    before = {k: v.clone() for k, v in pre.state_dict().items()}
    body = without_ivector_input(pre)
    assert {k: v for k, v in pre.state_dict().items()}.keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in pre.state_dict().items())  # the pretrained model is untouched
    assert body.config.ivector_dim == 0
    assert body.config.lda_dim == pre.layers["lda"].output_dim == 3 * FEAT_DIM + IVEC_DIM
    state = body.state_dict()
    for k, v in before.items():  # every weight and BatchNorm statistic, the lda's MFCC columns and offset
        want = v[:, :3 * FEAT_DIM] if k == "layers.lda.weight" else v
        assert torch.equal(state[k], want), k
    pre.eval(), body.eval()
    x = torch.randn(2, 90 + 56, FEAT_DIM)
    for layer in ("tdnn1", "tdnnf12", "prefinal-chain"):
        torch.testing.assert_close(body.embed(x, None, upto=layer),
                                   pre.embed(x, torch.zeros(2, IVEC_DIM), upto=layer), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="ivector_dim 0 but an i-vector was given"):
        body.embed(x, torch.zeros(2, IVEC_DIM))
    with pytest.raises(ValueError, match="no i-vector input"):
        without_ivector_input(body)
    g = make_grafted_model(tiny_model(seed=3), "tdnnf12", 16, 4, 0.25, False, ivectors=False)
    torch.testing.assert_close(g.eval().embed(x, None), pre.embed(x, torch.zeros(2, IVEC_DIM), upto="tdnnf12"),
                               rtol=1e-5, atol=1e-5)
    h = GraftedModel.from_dict(g.to_dict())
    assert torch.equal(g(x, None), h.eval()(x, None))


def test_train_and_decode_without_ivectors(tmp_path):
    """train_ser / decode_ser with <ivector-dir> none: trained and decoded on MFCC only; decoding such a
    network with i-vectors, or an i-vector network with none, is a one-line error naming the model."""
    from ser.bin import decode_ser, train_ser
    from ser.emotion.folds import write_folds

    data, ivs, _ = write_tiny_set(tmp_path, sessions=2, utts_per_speaker=6)
    folds = write_folds(data, "session", 1, 0)
    model = save_tiny_model(tmp_path / "final.pt")
    opts = ["--hidden-dim", "8", "--num-epochs", "1", "--chunk-width", "45", "--minibatch-size", "8"]
    out = tmp_path / "noivec"
    assert train_ser.main([*opts, str(folds / "Ses01"), "none", str(model), str(out)]) == 0
    assert torch.load(out / "final.pt", weights_only=True)["body_config"]["ivector_dim"] == 0
    test = str(folds / "Ses01" / "test")
    assert decode_ser.main([test, "none", str(out)]) == 0
    assert len((out / "utt2pred").read_text().splitlines()) == len(DataDir.load(test).utts)
    with pytest.raises(ValueError, match="trained without i-vectors: give none"):
        decode_ser.main([test, str(ivs), str(out)])
    with_iv = tmp_path / "iv"
    with_iv.mkdir()
    torch.save({**make_grafted_model(tiny_model(), "tdnnf12", 8, 4, 0.25, False).to_dict(), "labels": CLASSES},
               with_iv / "final.pt")
    with pytest.raises(ValueError, match="with 8-dim i-vectors: give their dir, not none"):
        decode_ser.main([test, "none", str(with_iv)])
