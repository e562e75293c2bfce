"""memtrain's position encodings (model/positions.h): sinusoidal positions
added to the scaled embeddings, or rotary positions inside self-attention."""

import math

import torch


def _angles(first, n, width, dtype, device):  # [n, width / 2]
    position = torch.arange(first, first + n, dtype=dtype, device=device).unsqueeze(1)
    even = torch.arange(0, width, 2, dtype=dtype, device=device)
    return position * torch.exp(even * (-math.log(10000.0) / width))


def sinusoidal_positions(first, n, width, dtype, device):
    """[n, width] for absolute positions first .. first + n - 1."""
    angle = _angles(first, n, width, dtype, device)
    table = torch.zeros(n, width, dtype=dtype, device=device)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, :width // 2])
    return table


def rotary_positions(x, first):
    """x [B, H, t, d] rotated at positions first .. first + t - 1, the halves
    (x1, x2) of each head vector becoming (x1 cos - x2 sin, x2 cos + x1 sin)
    (GPT-NeoX layout); angles in float64, as memtrain computes them."""
    t, d = x.size(2), x.size(3)
    angle = _angles(first, t, d, torch.float64, x.device).to(x.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    x1, x2 = x[..., :d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], 3)
