"""Every GPU code path gives the CPU's numbers (runs only where CUDA exists; CI has none).

The LF-MMI objective and its gradients, one chain training step of the network, online i-vectors and
the i-vector training passes, one emotion training step and its validation, the DeepSpeech CTC loss and
ser-infer's posteriors: each computed on the CPU and on the GPU from the same inputs.  TF32 is turned off
(cuDNN allows it by default for convolutions), so float32 on both sides differs only in the order of
sums; the tolerances are those of float32 sums of this size.  The bf16 autocast policy has its own test
(test_tdnnf.py) and MFCC its own (test_mfcc.py).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import TinyChain

DEVICE = "cuda"
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def close(gpu: torch.Tensor, cpu: torch.Tensor, what: str, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    assert gpu.device.type == torch.device(DEVICE).type, what
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=rtol, atol=atol, msg=what)


# ------------------------------------------------------------------------------------ LF-MMI
@pytest.mark.parametrize("mode", ["dst", "src"])
@pytest.mark.parametrize("slots", [True, False])
def test_lfmmi_objective_and_gradients(monkeypatch, mode: str, slots: bool) -> None:
    import ser.chain.denominator as denmod
    from ser.chain.denominator import DenominatorGraph
    from ser.chain.numerator import NumeratorGraphBatch
    from ser.chain.objective import LFMMILoss
    from test_lfmmi import random_graph

    monkeypatch.setattr(denmod, "_SLOT_PADDING", 100.0 if slots else 0.0)
    g = random_graph(60, 400, 12, seed=7)
    nums = NumeratorGraphBatch.from_graphs([random_graph(10, 30, 12, seed=70 + b, den=False) for b in range(4)])
    loss_fn = LFMMILoss(g, xent_regularize=0.1, l2_regularize=0.01, out_of_range_regularize=0.0)
    loss_fn.den = DenominatorGraph(g, mode=mode)
    torch.manual_seed(7)
    y0 = torch.randn(4, 30, 12) * 4.0
    x0 = torch.log_softmax(torch.randn(4, 30, 12), -1)
    lengths = torch.tensor([30, 21, 30, 9])
    got = {}
    for dev in ("cpu", DEVICE):
        y, x = y0.to(dev).requires_grad_(True), x0.to(dev).requires_grad_(True)
        loss, info = loss_fn(y, nums.to(dev), x, lengths=lengths.to(dev))
        loss.backward()
        assert info.ok
        got[dev] = loss.detach(), y.grad, x.grad, info.objf
    (l_c, gy_c, gx_c, o_c), (l_g, gy_g, gx_g, o_g) = got["cpu"], got[DEVICE]
    close(l_g, l_c, "loss")
    close(gy_g, gy_c, "d loss / d output")
    close(gx_g, gx_c, "d loss / d xent output")
    assert o_g == pytest.approx(o_c, rel=1e-5)


# ------------------------------------------------------------------------------------ chain training
@pytest.mark.parametrize("optimizer", ["kaldi-sgd", "adam"])
def test_chain_train_step(tiny_chain: TinyChain, tmp_path, optimizer: str) -> None:
    from ser.nnet import TdnnfModel
    from ser.train.chain_trainer import ChainTrainer, ChainTrainerConfig
    from test_chain_trainer import TinySetup

    tiny = TinySetup(tiny_chain)
    model = TdnnfModel(tiny.model_config(), generator=torch.Generator().manual_seed(0))
    mb = tiny.minibatch(11, 4, 10, model)
    cfg = ChainTrainerConfig(iter0_special=False, dropout_schedule=None, initial_effective_lrate=0.01,
                             final_effective_lrate=0.001, optimizer=optimizer, num_epochs=1, frames_per_iter=1000,
                             bf16=False)
    states, stats = {}, {}
    for dev in ("cpu", DEVICE):
        m = copy.deepcopy(model)
        trainer = ChainTrainer(m, tiny.den_graph, cfg, tmp_path / dev, torch.device(dev))
        trainer.schedule = trainer.make_schedule(frames_per_epoch=1000)
        stats[dev] = [trainer.train_step(mb.to(torch.device(dev)), fraction=0.25, iteration=i) for i in (1, 2)]
        states[dev] = m.state_dict()
    for name, a in states["cpu"].items():
        close(states[DEVICE][name], a, name, rtol=1e-3, atol=1e-5)
    for s_cpu, s_gpu in zip(stats["cpu"], stats[DEVICE]):
        for k, v in s_cpu.items():
            if isinstance(v, float):
                assert s_gpu[k] == pytest.approx(v, rel=1e-3, abs=1e-5), k


# ------------------------------------------------------------------------------------ i-vectors
def test_online_ivectors() -> None:
    from ser.ivector.online import OnlineIvectorExtractor
    from test_ivector import _batch, online_inputs

    ie, ubm, ff, opts, utts, spks = online_inputs()
    cpu = OnlineIvectorExtractor(ie, ubm, ff, opts, "cpu").extract(_batch(utts, spks))
    gpu = OnlineIvectorExtractor(ie, ubm, ff, opts, DEVICE).extract(_batch(utts, spks))
    for u, (g, c) in enumerate(zip(gpu, cpu)):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-4, err_msg=f"utterance {u}")


def test_ivector_training(tmp_path) -> None:
    from synthetic_ivector import make_synthetic_datadir
    from test_ivector import RAW, train_small

    d = make_synthetic_datadir(tmp_path / "data", num_spk=5, utts_per_spk=4, dim=RAW, seed=3)
    (u_c, ie_c, h_c), (u_g, ie_g, h_g) = (train_small(d.path, tmp_path / dev, dev) for dev in ("cpu", DEVICE))
    assert u_g["passes"] == pytest.approx(u_c["passes"], rel=1e-4) and h_g == pytest.approx(h_c, rel=1e-4, abs=1e-4)
    torch.testing.assert_close(ie_g.M.cpu(), ie_c.M.cpu(), rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------------ emotion training
def test_emotion_train_steps_and_validation(tmp_path) -> None:
    from ser.emotion.graft import make_grafted_model
    from ser.emotion.trainer import SerTrainConfig, SerTrainer
    from ser.io.batching import FeatureSet, MatrixTable
    from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel

    cfg = TdnnfConfig.mini(num_pdfs=50, tdnn_dim=32, tdnnf_dim=32, bottleneck_dim=8, prefinal_l_dim=16,
                           prefinal_big_dim=32, prefinal_small_dim=16)
    g = torch.Generator().manual_seed(0)
    keys = [f"utt{i:02d}" for i in range(8)]
    feats = MatrixTable.from_arrays(keys, [torch.randn(90 + 7 * i, cfg.feat_dim, generator=g) for i in range(8)])
    ivecs = MatrixTable.from_arrays(keys, [torch.randn(10 + i, cfg.ivector_dim, generator=g) for i in range(8)])
    fs = FeatureSet(feats, ivecs, 10)
    body = TdnnfModel(cfg, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # stored BatchNorm statistics, as a pretrained body has
        body(torch.randn(2, 200, cfg.feat_dim, generator=g), torch.randn(2, cfg.ivector_dim, generator=g), outputs=())
    body.eval()
    labels = {u: i % 4 for i, u in enumerate(keys)}
    tcfg = SerTrainConfig(chunk_width=30, minibatch_size=4, num_epochs=1)
    got = {}
    for dev in ("cpu", DEVICE):
        model = make_grafted_model(copy.deepcopy(body), "tdnnf12", 16, 4, 0.25, False)
        tr = SerTrainer(model, tcfg, fs, keys[:6], keys[6:], labels, tmp_path / dev, dev)
        steps = [tr.train_step(mb) for mb in tr.egs.minibatches(0)]
        got[dev] = steps, model.state_dict(), tr.validate()
    (s_c, w_c, v_c), (s_g, w_g, v_g) = got["cpu"], got[DEVICE]
    for (l_c, c_c, n_c), (l_g, c_g, n_g) in zip(s_c, s_g):
        assert l_g == pytest.approx(l_c, rel=1e-4) and n_g == n_c
    for name, a in w_c.items():
        close(w_g[name], a, name, rtol=1e-3, atol=1e-5)
    assert v_g.ua == pytest.approx(v_c.ua) and v_g.loss == pytest.approx(v_c.loss, rel=1e-4)


# ------------------------------------------------------------------------------------ DeepSpeech CTC
def test_deepspeech_ctc_loss_and_gradients() -> None:
    from ser.nnet.deepspeech import DeepSpeechConfig, DeepSpeechModel
    from ser.train.ctc_data import CtcMinibatch
    from ser.train.ctc_trainer import ctc_losses

    torch.manual_seed(0)
    model = DeepSpeechModel(DeepSpeechConfig.mini(hidden_dim=64, cell_dim=32, context=3)).eval()  # no dropout
    lengths, target_lengths = torch.tensor([50, 41, 33]), torch.tensor([12, 9, 5])
    feats = torch.randn(3, 50, 26) * (torch.arange(50)[None, :, None] < lengths[:, None, None])
    mb = CtcMinibatch(["a", "b", "c"], feats, lengths, torch.randint(0, model.blank, (26,)), target_lengths)
    got = {}
    for dev in ("cpu", DEVICE):
        m = copy.deepcopy(model).to(dev)
        losses = ctc_losses(m, mb.to(dev))
        losses.mean().backward()
        got[dev] = losses.detach(), {n: p.grad for n, p in m.named_parameters()}
    close(got[DEVICE][0], got["cpu"][0], "CTC losses")
    for name, grad in got["cpu"][1].items():
        close(got[DEVICE][1][name], grad, f"d loss / d {name}", rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------------------------ inference
def test_ser_infer_posteriors(tmp_path) -> None:
    from infer_data import make_system
    from ser.infer.recognizer import EmotionRecognizer

    system = make_system(tmp_path / "sys")
    cpu = EmotionRecognizer.from_dir(system["export"], device="cpu", vad=False)
    gpu = EmotionRecognizer.from_dir(system["export"], device=DEVICE, vad=False)
    for wav in system["wavs"]:
        a, b = cpu.classify_file(wav), gpu.classify_file(wav)
        np.testing.assert_allclose(b.posteriors, a.posteriors, rtol=0, atol=1e-4)
        top2 = sorted(a.posteriors)[-2:]
        assert b.duration == a.duration and (b.label == a.label or top2[1] - top2[0] < 2e-4)
