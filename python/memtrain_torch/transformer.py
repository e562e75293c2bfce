"""memtrain's Transformer (model/transformer.h) in PyTorch: encoder-decoder or
decoder-only, pre-LayerNorm blocks, the attention kind chosen per layer,
sinusoidal or rotary positions, tied or separate output embeddings.

Module and parameter names are LibTorch's (e.g.
``decoder.1.self_attention.query.weight``), so ``state_dict()`` is what
``memtrain-ckpt export`` writes and ``memtrain-ckpt import`` reads.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import make_attention
from .positions import sinusoidal_positions

# Decoder self-attention kinds that take rotary positions (model/attention_registry.cpp).
_ROTARY_KINDS = ("softmax", "knn")


def decoder_self_attention_kind(config, layer):
    """The self-attention kind of decoder layer `layer`: its layer_attention entry, else `attention`."""
    return config["layer_attention"].get(str(layer), config["attention"])


def resolve_positions(config):
    """`config` with positions "auto" resolved as memtrain resolves it: rotary
    for a decoder-only model whose decoder self-attention kinds all take it,
    else sinusoidal (model.json format 4 stores the result already)."""
    if config["positions"] == "auto":
        rotary = config["encoder_layers"] == 0 and all(
            decoder_self_attention_kind(config, i) in _ROTARY_KINDS for i in range(config["decoder_layers"]))
        config = dict(config, positions="rotary" if rotary else "sinusoidal")
    if config["positions"] not in ("sinusoidal", "rotary"):
        raise ValueError(f"unknown positions '{config['positions']}'")
    return config


class TransformerBlock(nn.Module):
    """One pre-LayerNorm block: self-attention, optional cross-attention,
    feed-forward, each as x + dropout(sublayer(norm(x)))."""

    def __init__(self, config, self_attention, cross_attention):
        super().__init__()
        width = config["model_dim"]
        self.dropout = config["dropout"]
        self.self_attention = self_attention
        self.self_norm = nn.LayerNorm(width)
        if cross_attention is not None:
            self.cross_attention = cross_attention
            self.cross_norm = nn.LayerNorm(width)
        else:
            self.cross_attention = None
        self.ffn_norm = nn.LayerNorm(width)
        self.ffn_in = nn.Linear(width, config["ffn_dim"])
        self.ffn_out = nn.Linear(config["ffn_dim"], width)

    def forward(self, x, padding, causal, memory=None, memory_padding=None):
        def dropout(t):
            return F.dropout(t, self.dropout, self.training)

        h = x + dropout(self.self_attention(self.self_norm(x), key_padding=padding, causal=causal))
        if self.cross_attention is not None:
            h = h + dropout(self.cross_attention(self.cross_norm(h), memory=memory, key_padding=memory_padding))
        return h + dropout(self.ffn_out(dropout(F.relu(self.ffn_in(self.ffn_norm(h))))))


class Transformer(nn.Module):
    """memtrain's Transformer built from its model config (the "model" object
    of model.json, or the `memtrain.model` metadata of an export). Raises
    UnsupportedAttention naming the layer for a knn or infinite layer.

    Decoder-only:    logits = model(tokens)                  # [B, n, vocab]
    Encoder-decoder: logits = model(target_input, source)    # teacher forced
    Tokens equal to config["pad_id"] are padding, as in memtrain.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config = resolve_positions(config)
        width, vocab = config["model_dim"], config["vocab_size"]
        self.encoder_decoder = config["encoder_layers"] > 0
        self.rotary = config["positions"] == "rotary"
        self.embedding = nn.Embedding(vocab, width)
        self.output = None if config["tie_embeddings"] else nn.Linear(width, vocab)
        # Layerwise Linformer sharing: one projection for the whole model.
        linformer = config["attention_options"]["linformer"]
        kinds = {config["attention"], *config["layer_attention"].values()}
        if self.encoder_decoder:
            kinds.add(config["cross_attention"])
        if linformer["sharing"] == "layerwise" and "linformer" in kinds:
            self.linformer_projection = nn.Parameter(
                torch.zeros(1, linformer["projected_length"], linformer["max_length"]),
                requires_grad=not linformer["freeze_projection"])

        def attention(kind, name, cross):
            return make_attention(kind, name, config, self.rotary and not cross, [self])

        self.encoder = nn.ModuleList(
            TransformerBlock(config, attention(config["attention"], f"encoder.{i}.self", False), None)
            for i in range(config["encoder_layers"]))
        self.decoder = nn.ModuleList(
            TransformerBlock(
                config, attention(decoder_self_attention_kind(config, i), f"decoder.{i}.self", False),
                attention(config["cross_attention"], f"decoder.{i}.cross", True) if self.encoder_decoder else None)
            for i in range(config["decoder_layers"]))
        self.encoder_norm = nn.LayerNorm(width) if self.encoder_decoder else None
        self.decoder_norm = nn.LayerNorm(width)

    def embed(self, tokens, position_offset=0):
        x = self.embedding(tokens) * math.sqrt(self.config["model_dim"])
        if not self.rotary:
            x = x + sinusoidal_positions(position_offset, tokens.size(1), self.config["model_dim"], x.dtype,
                                         x.device).unsqueeze(0)
        return F.dropout(x, self.config["dropout"], self.training)

    def encode(self, source):
        """Encoder output [B, s, D] for source [B, s]."""
        if not self.encoder_decoder:
            raise ValueError("encode: this is a decoder-only model")
        x = self.embed(source)
        padding = source.eq(self.config["pad_id"])
        for block in self.encoder:
            x = block(x, padding, causal=False)
        return self.encoder_norm(x)

    def decode(self, tokens, memory=None, source=None, position_offset=0):
        """Next-token logits [B, n, vocab] for decoder input tokens [B, n];
        an encoder-decoder model also takes the encoder output and the source."""
        if self.encoder_decoder and (memory is None or source is None):
            raise ValueError("an encoder-decoder model decodes with the encoder output and the source")
        x = self.embed(tokens, position_offset)
        padding = tokens.eq(self.config["pad_id"])
        memory_padding = source.eq(self.config["pad_id"]) if self.encoder_decoder else None
        for block in self.decoder:
            x = block(x, padding, causal=True, memory=memory, memory_padding=memory_padding)
        normed = self.decoder_norm(x)
        return torch.matmul(normed, self.embedding.weight.t()) if self.output is None else self.output(normed)

    def forward(self, tokens, source=None, position_offset=0):
        """Logits [B, n, vocab]: of a decoder-only model for tokens [B, n]
        (sinusoidal positions start at `position_offset`, as memtrain's
        ForwardLm), or of an encoder-decoder model for the decoder input
        `tokens` given `source` [B, s] (memtrain's Encode + Decode)."""
        if not self.encoder_decoder:
            if source is not None:
                raise ValueError("a decoder-only model takes no source")
            return self.decode(tokens, position_offset=position_offset)
        if source is None:
            raise ValueError("an encoder-decoder model needs the source")
        return self.decode(tokens, self.encode(source), source, position_offset)
