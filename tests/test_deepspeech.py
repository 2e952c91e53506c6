"""The DeepSpeech-style model (ser.nnet.deepspeech) against numpy references and DeepSpeech's geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser.features.mfcc import MfccOptions
from ser.nnet.deepspeech import ALPHABET, DeepSpeechConfig, DeepSpeechModel, clipped_relu, context_window
from ser.nnet.model_io import load_deepspeech_model, save_deepspeech_model

TINY = DeepSpeechConfig(feat_dim=5, context=2, hidden_dim=7, cell_dim=6)


def _numpy_window(x: np.ndarray, c: int, length: int) -> np.ndarray:
    """Row t = frames t-c .. t+c of the utterance (first ``length`` frames), zeros outside."""
    t_all, f = x.shape
    out = np.zeros((t_all, (2 * c + 1) * f), dtype=x.dtype)
    for t in range(t_all):
        for j, s in enumerate(range(t - c, t + c + 1)):
            if 0 <= s < length:
                out[t, j * f:(j + 1) * f] = x[s]
    return out


def test_context_window_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 11, 4)).astype(np.float32)
    lengths = [11, 6, 1]
    got = context_window(torch.from_numpy(x), 3, torch.tensor(lengths)).numpy()
    for b in range(3):
        np.testing.assert_array_equal(got[b], _numpy_window(x[b], 3, lengths[b]))
    # without lengths every frame counts; DeepSpeech's geometry gives 26 + 2 * 26 * 9 = 494 inputs
    np.testing.assert_array_equal(context_window(torch.from_numpy(x), 1)[0].numpy(), _numpy_window(x[0], 1, 11))
    assert context_window(torch.zeros(1, 4, 26), 9).shape == (1, 4, 494)


def test_clipped_relu() -> None:
    x = torch.tensor([-3.0, -0.0, 0.5, 19.99, 20.0, 20.01, 1e6])
    np.testing.assert_array_equal(clipped_relu(x, 20.0).numpy(), np.minimum(np.maximum(x.numpy(), 0), 20))
    m = DeepSpeechModel(TINY, generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        m.layer_1.bias.fill_(100.0)  # every unit would exceed the clip
        m.layer_2.bias.fill_(-100.0)  # every unit negative
    out = m(torch.randn(2, 5, 5), return_layers=("layer_1", "layer_2"), outputs=())
    assert torch.all(out["layer_1"] == 20.0) and torch.all(out["layer_2"] == 0.0)


def test_parameter_count_paper_size() -> None:
    cfg = DeepSpeechConfig.paper()
    assert (cfg.feat_dim, cfg.context, cfg.hidden_dim, cfg.cell_dim, cfg.num_outputs) == (26, 9, 2048, 2048, 29)
    assert ALPHABET == " abcdefghijklmnopqrstuvwxyz'"
    window = 26 + 2 * 26 * 9                    # 494 inputs
    layer_1 = window * 2048 + 2048              # 1,013,760
    layer_2 = 2048 * 2048 + 2048                # 4,196,352
    layer_3 = 2048 * 2048 + 2048                # 4,196,352 (n_hidden_3 = n_cell_dim)
    lstm_tf = (2048 + 2048) * 4 * 2048 + 4 * 2048  # 33,562,624: TF's fused cell, one bias
    layer_5 = 2048 * 2048 + 2048                # 4,196,352
    layer_6 = 2048 * 29 + 29                    # 59,421
    deepspeech = layer_1 + layer_2 + layer_3 + lstm_tf + layer_5 + layer_6
    assert deepspeech == 47_224_861
    torch_second_lstm_bias = 4 * 2048           # PyTorch's b_hh (the function only sees b_ih + b_hh)
    assert DeepSpeechModel(cfg).num_params() == deepspeech + torch_second_lstm_bias == 47_233_053


def test_layer_interface_and_padding() -> None:
    m = DeepSpeechModel(TINY, generator=torch.Generator().manual_seed(1)).eval()
    assert m.layer_names == ("layer_1", "layer_2", "layer_3", "layer_4", "layer_5", "layer_6")
    assert [m.layer_dim(n) for n in m.layer_names] == [7, 7, 6, 6, 7, 29]
    assert (m.left_context, m.right_context, m.frame_subsampling_factor, m.window_context) == (0, 0, 1, 2)
    m.set_input_normalization(torch.arange(5.0), torch.full((5,), 2.0))
    a, b = torch.randn(1, 9, 5), torch.randn(1, 4, 5)
    batch = torch.zeros(2, 9, 5)
    batch[0], batch[1, :4] = a[0], b[0]
    batch[1, 4:] = 1e3  # padding content must not matter
    out = m(batch, return_layers=m.layer_names, lengths=torch.tensor([9, 4]))
    alone = m(b, return_layers=m.layer_names)
    for name in m.layer_names:
        torch.testing.assert_close(out[name][1, :4], alone[name][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["output"], out["layer_6"])
    torch.testing.assert_close(m.embed(a, upto="layer_3"), m(a, return_layers=("layer_3",))["layer_3"])
    # standardisation: the window sees (x - mean) / std
    np.testing.assert_allclose(m.input_scale.numpy(), 0.5)
    with pytest.raises(ValueError, match="unknown layer 'tdnnf12'"):
        m.embed(a, upto="tdnnf12")
    with pytest.raises(ValueError, match=r"input must be \[B, T, 5\]"):
        m(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="no i-vector"):
        m(a, torch.zeros(1, 100))


def test_dropout_only_in_training_and_where_deepspeech_has_it() -> None:
    m = DeepSpeechModel(DeepSpeechConfig(feat_dim=3, context=1, hidden_dim=64, cell_dim=32, dropout=0.5))
    x = torch.randn(1, 20, 3)
    m.train()
    out = m(x, return_layers=m.layer_names)
    for name in ("layer_1", "layer_2", "layer_3", "layer_5"):  # DeepSpeech's dropout[0..2] and dropout[5]
        assert (out[name] == 0).float().mean() > 0.3, name
    assert (out["layer_4"] == 0).float().mean() < 0.05  # the LSTM output is not dropped
    m.eval()
    torch.testing.assert_close(m(x)["output"], m(x)["output"])


def test_save_load_roundtrip(tmp_path) -> None:
    m = DeepSpeechModel(TINY, generator=torch.Generator().manual_seed(2)).eval()
    m.set_input_normalization(torch.ones(5), torch.full((5,), 3.0))
    save_deepspeech_model(tmp_path / "final.pt", m, {"history": [{"step": 1.0}]})
    m2 = load_deepspeech_model(tmp_path / "final.pt").eval()
    x = torch.randn(2, 6, 5)
    torch.testing.assert_close(m2(x)["output"], m(x)["output"])
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.pt: cannot read DeepSpeech model"):
        load_deepspeech_model(tmp_path / "bad.pt")


def test_mfcc_deepspeech_conf() -> None:
    o = MfccOptions.from_conf("conf/mfcc_deepspeech.conf")
    assert (o.window_size, o.window_shift, o.padded_window_size) == (512, 320, 512)  # 32 ms / 20 ms at 16 kHz
    assert (o.num_mel_bins, o.num_ceps, o.effective_high_freq, o.window_type) == (26, 26, 8000.0, "hamming")
    assert (o.preemphasis_coefficient, o.cepstral_lifter, o.dither, o.use_energy) == (0.97, 22.0, 0.0, False)
    assert o.num_frames(16000) == 1 + (16000 - 512) // 320  # TF audio_spectrogram's frame count


def test_make_bottleneck_features_script(tmp_path) -> None:
    """steps/ctc/make_bottleneck_features.sh writes each utterance's layer output, as embed() computes it."""
    import subprocess
    from pathlib import Path

    from ser.io.tables import ArkScpWriter, load_scp_matrices

    root = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(0)
    d = tmp_path / "in"
    d.mkdir()
    feats = {f"s{i}-u{j}": rng.normal(size=(5 + 7 * j + i, 26)).astype(np.float32) for i in range(2) for j in range(3)}
    with ArkScpWriter(d / "feats.ark", d / "feats.scp") as w:
        for k in sorted(feats):
            w.write(k, feats[k])
    (d / "utt2spk").write_text("".join(f"{k} {k.split('-')[0]}\n" for k in sorted(feats)))
    (d / "spk2utt").write_text("".join(f"s{i} " + " ".join(f"s{i}-u{j}" for j in range(3)) + "\n" for i in range(2)))
    m = DeepSpeechModel(DeepSpeechConfig.mini(hidden_dim=8, cell_dim=6), generator=torch.Generator().manual_seed(3))
    save_deepspeech_model(tmp_path / "final.pt", m)
    r = subprocess.run(["steps/ctc/make_bottleneck_features.sh", "--nj", "1", "layer_2", str(d), str(tmp_path / "out"),
                        str(tmp_path / "final.pt")], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    got = load_scp_matrices(tmp_path / "out" / "feats.scp")
    assert sorted(got) == sorted(feats)
    m.eval()
    for k, x in feats.items():
        ref = m.embed(torch.from_numpy(x)[None], upto="layer_2")[0].detach().numpy()
        np.testing.assert_allclose(got[k], ref, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "out" / "utt2num_frames").read_text().split()[1] == str(feats["s0-u0"].shape[0])


def test_feature_step_reruns_only_when_its_stamp_differs(tmp_path) -> None:
    """utils/make_feats.sh (bottleneck and openSMILE features): a second call does nothing; another model
    recomputes (it reaches the kill point after the new features); a run killed before its stamp leaves
    none, and the next call recomputes."""
    import os
    import subprocess
    from pathlib import Path

    from ser.io.tables import ArkScpWriter

    root = Path(__file__).resolve().parents[1]
    d, out, model = tmp_path / "in", tmp_path / "out", tmp_path / "final.pt"
    d.mkdir()
    with ArkScpWriter(d / "feats.ark", d / "feats.scp") as w:
        w.write("s0-u0", np.ones((9, 26), np.float32))
    (d / "utt2spk").write_text("s0-u0 s0\n")
    (d / "spk2utt").write_text("s0 s0-u0\n")

    def run(seed: int | None = None, kill: str | None = None) -> str:
        if seed is not None:
            m = DeepSpeechModel(DeepSpeechConfig.mini(hidden_dim=8, cell_dim=6), generator=torch.Generator().manual_seed(seed))
            save_deepspeech_model(model, m)
        env = {k: v for k, v in os.environ.items() if k != "SER_KILL_AT"} | ({"SER_KILL_AT": kill} if kill else {})
        r = subprocess.run(["steps/ctc/make_bottleneck_features.sh", "--nj", "1", "layer_1", str(d), str(out),
                            str(model)], cwd=root, capture_output=True, text=True, env=env)
        assert (r.returncode != 0) == bool(kill), r.stdout + r.stderr
        return r.stdout

    assert "succeeded" in run(seed=1)
    assert "up to date" in run()
    run(seed=2, kill="make_feats:before_stamp")            # another model: recomputed, killed before its stamp
    assert not (out / ".feats.stamp").exists()
    assert "succeeded" in run() and "up to date" in run()
