"""Model files: the chain TDNN-F's and paper 2's DeepSpeech-style model's.

Chain model files: ``final.pt`` written at the end of training, read by alignment, decoding,
the next training pass (``--input-model``) and the emotion stages.

``final.pt`` = ``{"format": MODEL_FORMAT, "config": TdnnfConfig.to_dict(), "model": state_dict,
"num_pdfs", "left_context", "right_context", "frame_subsampling_factor", ...extra}`` (the trainer
adds ``history`` and ``schedule``).  A trainer checkpoint (``checkpoint.pt``, format
CHECKPOINT_FORMAT, config under ``model_config``) loads as a model too.  Both are plain tensors
and values, read through :func:`ser.io.torch_io.load_torch` (``weights_only=True``).

DeepSpeech-style model files (stage 8): ``{"format": DEEPSPEECH_FORMAT, "config":
DeepSpeechConfig.to_dict(), "model": state_dict, ...extra}``.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ser.io.torch_io import TorchFileError, load_torch, save_torch
from ser.nnet.deepspeech import DeepSpeechConfig, DeepSpeechModel
from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel

__all__ = ["MODEL_FORMAT", "CHECKPOINT_FORMAT", "DEEPSPEECH_FORMAT", "save_chain_model", "load_chain_model",
           "save_deepspeech_model", "load_deepspeech_model"]

MODEL_FORMAT = "ser.chain_model.v1"
CHECKPOINT_FORMAT = "ser.chain_trainer.v1"
DEEPSPEECH_FORMAT = "ser.deepspeech_model.v1"


def save_chain_model(path: str | os.PathLike, model: TdnnfModel, extra: dict[str, Any] | None = None) -> None:
    """Write ``final.pt`` atomically (see the module docstring)."""
    d = {"format": MODEL_FORMAT, "config": model.config.to_dict(), "model": model.state_dict(),
         "num_pdfs": model.config.num_pdfs, "left_context": model.left_context,
         "right_context": model.right_context,
         "frame_subsampling_factor": model.frame_subsampling_factor}
    d.update(extra or {})
    save_torch(d, path)


def load_chain_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> TdnnfModel:
    """A TdnnfModel from ``save_chain_model``'s file or a trainer checkpoint."""
    d = load_torch(path, what="chain model", expect_keys=("format", "model"), map_location=map_location)
    if d["format"] not in (MODEL_FORMAT, CHECKPOINT_FORMAT):
        raise TorchFileError(f"{path}: not a chain model (format {d['format']!r})")
    cfg = d["config"] if "config" in d else d.get("model_config")
    if cfg is None:
        raise TorchFileError(f"{path}: not a chain model: no key 'config'")
    model = TdnnfModel(TdnnfConfig.from_dict(cfg))
    try:
        model.load_state_dict(d["model"])
    except RuntimeError as e:  # parameter names/shapes differ from the stored configuration
        raise TorchFileError(f"{path}: chain model weights do not fit its configuration: "
                             f"{str(e).splitlines()[0]}") from e
    return model


def save_deepspeech_model(path: str | os.PathLike, model: DeepSpeechModel,
                          extra: dict[str, Any] | None = None) -> None:
    """Write a DeepSpeech-style model's ``final.pt`` atomically (see the module docstring)."""
    d = {"format": DEEPSPEECH_FORMAT, "config": model.config.to_dict(),
         "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **(extra or {})}
    save_torch(d, path)


def load_deepspeech_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> DeepSpeechModel:
    """The model of :func:`save_deepspeech_model`'s file; a missing or foreign file is a one-line error."""
    d = load_torch(path, what="DeepSpeech model", expect_keys=("format", "config", "model"),
                   map_location=map_location)
    if d["format"] != DEEPSPEECH_FORMAT:
        raise TorchFileError(f"{path}: not a DeepSpeech model (format {d['format']!r})")
    model = DeepSpeechModel(DeepSpeechConfig.from_dict(d["config"]))
    try:
        model.load_state_dict(d["model"])
    except RuntimeError as e:
        raise TorchFileError(f"{path}: DeepSpeech model weights do not fit its configuration: "
                             f"{str(e).splitlines()[0]}") from e
    return model
