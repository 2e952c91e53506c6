"""The one loader of tensor/model files (ser/io/torch_io.py) and its users: chain models
(ser/nnet/model_io.py) and the chain dir (ser/chain/chain_dir.py).  Every bad file must give
one line naming the file and what was expected."""

from __future__ import annotations

import pytest
import torch

from ser.chain.chain_dir import ChainDir
from ser.io.torch_io import TorchFileError, load_torch, save_torch
from ser.nnet.model_io import load_chain_model, save_chain_model
from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel


class NotATensor:
    """A pickled object of a class of its own: weights_only loading must refuse it."""


def _one_line_naming(err: pytest.ExceptionInfo, path, what: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg and what in msg


def test_roundtrip_and_atomic(tmp_path):
    obj = {"a": torch.arange(5), "b": 3, "c": {"x": torch.ones(2, 2)}}
    save_torch(obj, tmp_path / "sub" / "f.pt")
    got = load_torch(tmp_path / "sub" / "f.pt", what="test file", expect_keys=("a", "b"))
    assert torch.equal(got["a"], obj["a"]) and got["b"] == 3 and torch.equal(got["c"]["x"], obj["c"]["x"])
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.pt"]  # no temp file left behind


def test_missing_file(tmp_path):
    with pytest.raises(TorchFileError) as e:
        load_torch(tmp_path / "nope.pt", what="den graph")
    _one_line_naming(e, tmp_path / "nope.pt", "den graph")
    assert isinstance(e.value, ValueError)


def test_truncated_file(tmp_path):
    save_torch({"w": torch.randn(100, 100)}, tmp_path / "f.pt")
    data = (tmp_path / "f.pt").read_bytes()
    (tmp_path / "f.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(TorchFileError) as e:
        load_torch(tmp_path / "f.pt", what="chain model")
    _one_line_naming(e, tmp_path / "f.pt", "chain model")
    (tmp_path / "f.pt").write_bytes(b"")
    with pytest.raises(TorchFileError) as e:
        load_torch(tmp_path / "f.pt", what="chain model")
    _one_line_naming(e, tmp_path / "f.pt", "chain model")


def test_foreign_files(tmp_path):
    # a text file
    (tmp_path / "t.pt").write_text("this is not a torch file\n")
    with pytest.raises(TorchFileError) as e:
        load_torch(tmp_path / "t.pt", what="pdf map")
    _one_line_naming(e, tmp_path / "t.pt", "pdf map")
    # a torch file holding an arbitrary Python object: refused by weights_only, one line
    with open(tmp_path / "o.pt", "wb") as f:
        torch.save({"x": NotATensor()}, f)
    with pytest.raises(TorchFileError) as e:
        load_torch(tmp_path / "o.pt", what="alignment")
    _one_line_naming(e, tmp_path / "o.pt", "alignment")
    # a torch file of tensors that is not what the caller expected
    save_torch({"other": torch.zeros(1)}, tmp_path / "k.pt")
    with pytest.raises(TorchFileError, match="no key 'table'") as e:
        load_torch(tmp_path / "k.pt", what="pdf map", expect_keys=("table",))
    _one_line_naming(e, tmp_path / "k.pt", "pdf map")
    save_torch(torch.zeros(3), tmp_path / "n.pt")
    with pytest.raises(TorchFileError, match="expected a dict") as e:
        load_torch(tmp_path / "n.pt", what="pdf map", expect_keys=("table",))
    _one_line_naming(e, tmp_path / "n.pt", "pdf map")


def _tiny_model() -> TdnnfModel:
    cfg = TdnnfConfig.mini(7, feat_dim=5, ivector_dim=0, tdnn_dim=8, tdnnf_dim=8, bottleneck_dim=4,
                           prefinal_l_dim=4, prefinal_big_dim=8, prefinal_small_dim=4)
    return TdnnfModel(cfg, generator=torch.Generator().manual_seed(0))


def test_chain_model_roundtrip_and_errors(tmp_path):
    model = _tiny_model()
    save_chain_model(tmp_path / "final.pt", model, {"history": [{"iter": 0.0}]})
    back = load_chain_model(tmp_path / "final.pt")
    assert back.config.to_dict() == model.config.to_dict()
    for (k, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k
    d = load_torch(tmp_path / "final.pt", what="chain model")
    assert d["left_context"] == model.left_context and d["history"] == [{"iter": 0.0}]
    # another format / other weights
    save_torch({"format": "something.else", "model": {}}, tmp_path / "x.pt")
    with pytest.raises(TorchFileError) as e:
        load_chain_model(tmp_path / "x.pt")
    _one_line_naming(e, tmp_path / "x.pt", "chain model")
    d["model"] = {k: v for k, v in d["model"].items() if "output" not in k}
    save_torch(d, tmp_path / "y.pt")
    with pytest.raises(TorchFileError) as e:
        load_chain_model(tmp_path / "y.pt")
    _one_line_naming(e, tmp_path / "y.pt", "chain model")
    with pytest.raises(TorchFileError) as e:
        load_chain_model(tmp_path / "missing.pt")
    _one_line_naming(e, tmp_path / "missing.pt", "chain model")


def test_chain_dir_names_the_missing_or_bad_file(tmp_path):
    with pytest.raises(TorchFileError):
        ChainDir.load(tmp_path / "no_dir")
    chain = ChainDir.load(tmp_path)
    with pytest.raises(TorchFileError) as e:
        chain.den_graph
    _one_line_naming(e, tmp_path / "den.pt", "den graph")
    save_torch({"graphs": {}}, tmp_path / "num.pt")
    with pytest.raises(TorchFileError, match="no key 'num_output_frames'") as e:
        chain.num_graphs
    _one_line_naming(e, tmp_path / "num.pt", "numerator graphs")
    (tmp_path / "pdf_map.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(TorchFileError) as e:
        chain.pdf_map
    _one_line_naming(e, tmp_path / "pdf_map.pt", "pdf map")
