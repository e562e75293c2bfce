"""memtrain's trained models in plain PyTorch.

    import memtrain_torch
    model = memtrain_torch.load("w.safetensors")      # memtrain-ckpt export; or a model directory
    logits = model(tokens)                            # decoder-only: [B, n, vocab]
    logits = model(target_input, source)              # encoder-decoder, teacher forced
    memtrain_torch.save(model, "tuned.safetensors")   # memtrain-ckpt import reads it back

The model is an ordinary torch.nn.Module (eval mode after load; call
.train() to fine-tune). It computes the logits memtrain computes for a whole
sequence (ForwardLm, Encode + Decode), for the attention kinds softmax,
linformer, performer (with the stored random features and redraw counters)
and memsizer. knn and infinite layers are refused (UnsupportedAttention names
the layer): their memories are not weights. docs/CHECKPOINTS.md has more.
"""

import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .attention import SUPPORTED_KINDS, UNSUPPORTED_KINDS, UnsupportedAttention
from .transformer import Transformer

__all__ = ["load", "save", "Transformer", "UnsupportedAttention", "SUPPORTED_KINDS", "UNSUPPORTED_KINDS"]

# The model.json format this package reads (checkpoints/model_file.h).
MODEL_FORMAT_VERSION = 5  # 5 added dropout_sampler: how training draws dropout masks, unused here
_MODEL_KEY = "memtrain.model"


def _read_export(path):
    tensors, metadata = {}, {}
    with safe_open(path, framework="pt") as file:
        metadata = file.metadata() or {}
        for name in file.keys():
            tensors[name] = file.get_tensor(name)
    if _MODEL_KEY not in metadata:
        raise ValueError(f"{path} has no '{_MODEL_KEY}' metadata (not written by memtrain-ckpt export)")
    info = {"task": metadata.get("memtrain.task", ""),
            "tokenizer_sha256": metadata.get("memtrain.tokenizer_sha256", ""),
            "step": int(metadata.get("memtrain.step") or 0)}
    return json.loads(metadata[_MODEL_KEY]), info, tensors


def _read_model_dir(path):
    config_path = os.path.join(path, "model.json")
    with open(config_path) as file:
        saved = json.load(file)
    version = saved.get("format_version", 1)
    if version > MODEL_FORMAT_VERSION:
        raise ValueError(f"{config_path} has format version {version}; memtrain_torch reads versions 1 to "
                         f"{MODEL_FORMAT_VERSION}")
    config = saved["model"]
    if version < 4:  # positions came with version 4; older models were all sinusoidal
        config["positions"] = "sinusoidal"
    # model.pt is LibTorch's archive, which TorchScript reads.
    archive = torch.jit.load(os.path.join(path, "model.pt"), map_location="cpu")
    tensors = {name: t.detach() for name, t in [*archive.named_parameters(), *archive.named_buffers()]}
    info = {key: saved[key] for key in ("task", "tokenizer_sha256", "step")}
    return config, info, tensors


def load(path, device="cpu"):
    """The model of a `memtrain-ckpt export` file (*.safetensors) or of a model
    directory (model.json + model.pt: memtrain-train --save_dir, or a
    checkpoint), in eval mode on `device`. `model.info` holds the task, the
    tokenizer's sha256 and the step. Raises UnsupportedAttention for a knn or
    infinite layer, and RuntimeError naming the tensors when the weights do
    not fit the config."""
    if os.path.isdir(path):
        config, info, tensors = _read_model_dir(path)
    else:
        config, info, tensors = _read_export(path)
    model = Transformer(config)
    model.load_state_dict(tensors, strict=True)
    model.info = info
    return model.to(device).eval()


def save(model, path):
    """Writes `model` as `memtrain-ckpt export` does (every parameter and buffer
    under its LibTorch name, the config and `model.info` as metadata), so that
    `memtrain-ckpt import --output=MODEL_DIR path` makes a memtrain model of it."""
    info = getattr(model, "info", {})
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, path, metadata={
        _MODEL_KEY: json.dumps(model.config),
        "memtrain.task": info.get("task", ""),
        "memtrain.tokenizer_sha256": info.get("tokenizer_sha256", ""),
        "memtrain.step": str(info.get("step", 0)),
    })
