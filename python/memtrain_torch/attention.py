"""The attention kinds of memtrain (model/*_attention.cpp) in PyTorch.

Each module has the parameter and buffer names of its LibTorch twin, so an
export's tensors load with ``load_state_dict(strict=True)``, and computes what
the twin computes for a whole sequence at once (memtrain's ``ForwardLm``,
``Encode`` and ``Decode``; incremental decoding states are not ported).

    attention(x, memory=None, key_padding=None, causal=False) -> [B, n, D]

x [B, n, D]; memory [B, s, D] is the key/value side of cross-attention;
key_padding [B, s] bool marks padded keys (True = padding).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .positions import rotary_positions

SUPPORTED_KINDS = ("softmax", "linformer", "performer", "memsizer")
# Kinds memtrain trains that this package refuses: their state (a kNN memory,
# the ∞-former's continuous memory) lives outside the weights.
UNSUPPORTED_KINDS = ("knn", "infinite")


class UnsupportedAttention(ValueError):
    """A layer of an attention kind this package does not build."""


def _split_heads(x, heads):  # [B, t, H*d] -> [B, H, t, d]
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def _merge_heads(x):  # [B, H, t, d] -> [B, t, H*d]
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


def _compute_type(dtype):  # attention math runs in float32 or wider (model/attention.h)
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _causal_flag_suffices(key_padding):
    # As memtrain's CausalFlagSuffices: no padding, or on the CPU padding only
    # at the end of each row; then SDPA's is_causal alone is exact for every
    # unpadded query.
    if key_padding is None:
        return True
    if key_padding.device.type != "cpu":
        return False
    return key_padding.size(1) < 2 or not bool((key_padding[:, :-1] & ~key_padding[:, 1:]).any())


def padded_attention(q, k, v, key_padding, causal, dropout):
    """Softmax attention of q [B, H, n, d] (already scaled) over k, v [B, H, s, d],
    as memtrain's PaddedAttention: padded keys hidden; causal key j visible to
    query i iff j <= i + (s - n); a query with no visible key outputs zeros."""
    batch, n, s = q.size(0), q.size(2), k.size(2)
    if causal and n == s and _causal_flag_suffices(key_padding):
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=1.0)
        if key_padding is None:
            return attended
        has_key = (~key_padding[:, 0]).view(-1, 1, 1, 1)
        return attended * has_key.to(attended.dtype)
    visible = torch.ones(batch, 1, n, s, dtype=torch.bool, device=q.device)
    if key_padding is not None:
        visible = visible & ~key_padding.view(batch, 1, 1, s)
    if causal:
        query_position = torch.arange(n, device=q.device).view(n, 1) + (s - n)
        key_position = torch.arange(s, device=q.device).view(1, s)
        visible = visible & key_position.le(query_position).view(1, 1, n, s)
    has_key = visible.any(-1, keepdim=True)
    first_key = torch.arange(s, device=q.device).eq(0).view(1, 1, 1, s)
    mask = visible | (~has_key & first_key)
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=1.0)
    return attended * has_key.to(attended.dtype)


class SoftmaxAttention(nn.Module):
    """`softmax` (model/softmax_attention.cpp), with rotary positions on
    self-attention when the model uses them."""

    def __init__(self, dim, heads, dropout, rotary):
        super().__init__()
        self.heads, self.dropout, self.rotary = heads, dropout, rotary
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.query, self.key, self.value, self.output = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x, memory=None, key_padding=None, causal=False):
        cross = memory is not None
        source = memory if cross else x
        compute = _compute_type(x.dtype)
        q = _split_heads(self.query(x), self.heads).to(compute)
        k = _split_heads(self.key(source), self.heads).to(compute)
        v = _split_heads(self.value(source), self.heads).to(compute)
        if self.rotary and not cross:
            # Positions count from the window's start; the queries are its last n.
            q = rotary_positions(q, k.size(2) - q.size(2))
            k = rotary_positions(k, 0)
        attended = padded_attention(q * self.scale, k, v, key_padding, causal and not cross,
                                    self.dropout if self.training else 0.0)
        return self.output(_merge_heads(attended.to(x.dtype)))


class LinformerAttention(nn.Module):
    """`linformer` (model/linformer_attention.cpp): keys and values projected
    along the sequence to a fixed length; no causal form. With sharing
    "layerwise" every layer uses the projection `linformer_projection` of the
    model in the one-element list `owner` (a list, so that the model is not
    registered as the layer's child)."""

    def __init__(self, dim, heads, dropout, options, owner=None):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.max_length = options["max_length"]
        self.sharing = options["sharing"]
        self.query, self.key, self.value, self.output = (nn.Linear(dim, dim) for _ in range(4))
        learn = not options["freeze_projection"]
        shape = (options["projected_length"], options["max_length"])
        self._owner = owner
        if self.sharing in ("none", "headwise"):
            copies = heads if self.sharing == "none" else 1
            self.project_key = nn.Parameter(torch.zeros(copies, *shape), requires_grad=learn)
            self.project_value = nn.Parameter(torch.zeros(copies, *shape), requires_grad=learn)
        elif self.sharing == "key_value":
            self.project_key = nn.Parameter(torch.zeros(1, *shape), requires_grad=learn)
        elif self.sharing != "layerwise":
            raise ValueError(f"unknown linformer sharing '{self.sharing}'")

    def _projections(self):
        if self.sharing == "layerwise":
            shared = self._owner[0].linformer_projection
            return shared, shared
        if self.sharing == "key_value":
            return self.project_key, self.project_key
        return self.project_key, self.project_value

    def forward(self, x, memory=None, key_padding=None, causal=False):
        if causal:
            raise ValueError("linformer has no causal form")
        source = memory if memory is not None else x
        s = source.size(1)
        if s > self.max_length:
            raise ValueError(f"{s} keys exceed linformer max_length = {self.max_length}")
        compute = _compute_type(x.dtype)
        q = _split_heads(self.query(x), self.heads).to(compute)
        # Padding cannot be masked after the projection mixes positions, so
        # padded rows are zeroed before it.
        keep = torch.ones(source.size(0), s, 1, dtype=source.dtype, device=source.device)
        if key_padding is not None:
            keep = (~key_padding).unsqueeze(-1).to(source.dtype)
        keys = _split_heads(self.key(source) * keep, self.heads).to(compute)
        values = _split_heads(self.value(source) * keep, self.heads).to(compute)
        project_key, project_value = self._projections()
        k = torch.matmul(project_key[:, :, :s].to(compute).unsqueeze(0), keys)  # [B, H, k, d]
        v = torch.matmul(project_value[:, :, :s].to(compute).unsqueeze(0), values)
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.output(_merge_heads(attended.to(x.dtype)))


def causal_linear_attention(q, k, v, log_scale, chunk):
    """memtrain's CausalLinearAttention (model/linear_attention.h) without a
    prefix: out_i = sum_{j<=i} (q_i . k_j) exp(m_j - m_i) v_j, chunked, so the
    cost is linear in the length. q, k [B, H, n, r], v [B, H, n, e],
    log_scale m [B, H, n] non-decreasing (None = zeros)."""
    batch, heads, n, r = q.shape
    e = v.size(3)
    if n == 0:
        return v.new_zeros(batch, heads, 0, e)
    chunks = (n + chunk - 1) // chunk
    padded = chunks * chunk

    def blocks(t):  # [B, H, n, x] -> [B, H, N, C, x]; zero keys add nothing
        if padded != n:
            t = torch.cat([t, t.new_zeros(batch, heads, padded - n, t.size(3))], 2)
        return t.reshape(batch, heads, chunks, chunk, t.size(3))

    qc, kc, vc = blocks(q), blocks(k), blocks(v)
    scaled = log_scale is not None
    if scaled:  # the padded scales repeat the last one, so they stay non-decreasing
        m = log_scale
        if padded != n:
            m = torch.cat([m, m[:, :, n - 1:n].expand(batch, heads, padded - n)], 2)
        mc = m.reshape(batch, heads, chunks, chunk)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    scores = torch.matmul(qc, kc.transpose(-2, -1))  # [B, H, N, C, C]
    if scaled:
        gap = mc.unsqueeze(-2) - mc.unsqueeze(-1)  # m_j - m_i
        scores = scores * torch.where(causal, gap, torch.full((), -math.inf, dtype=gap.dtype,
                                                              device=gap.device)).exp()
    scores = torch.where(causal, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
    out = torch.matmul(scores, vc)  # [B, H, N, C, e]

    kc_scaled = kc
    if scaled:  # each chunk's summary at its last (largest) scale
        last = mc[:, :, :, chunk - 1]
        kc_scaled = kc * (mc - last.unsqueeze(-1)).exp().unsqueeze(-1)
    summaries = torch.matmul(kc_scaled.transpose(-2, -1), vc)  # [B, H, N, r, e]
    if not scaled:  # the state before each chunk: an exclusive prefix sum
        inclusive = summaries.cumsum(2)
        before = torch.cat([torch.zeros_like(summaries[:, :, :1]), inclusive[:, :, :chunks - 1]], 2)
    else:  # a recurrence that rescales the running state to each chunk's maximum
        states, scales = [], []
        state = scale = None
        chunk_summaries, chunk_scales = summaries.unbind(2), last.unbind(2)
        for c in range(chunks):
            states.append(state if state is not None else summaries.new_zeros(batch, heads, r, e))
            scales.append(scale if scale is not None else mc[:, :, c, 0])
            if state is None:
                state = chunk_summaries[c]
            else:
                state = state * (scale - chunk_scales[c]).exp()[..., None, None] + chunk_summaries[c]
            scale = chunk_scales[c]
        before = torch.stack(states, 2)
        before_scale = torch.stack(scales, 2)
    carried = torch.matmul(qc, before)  # [B, H, N, C, e]
    if scaled:
        carried = carried * (before_scale.unsqueeze(-1) - mc).exp().unsqueeze(-1)
    return (out + carried).reshape(batch, heads, padded, e)[:, :, :n]


def projection_seed(seed, layer, redraw):
    """memtrain's ProjectionSeed: FNV-1a of (seed, layer name, redraw number),
    the same on every rank and platform."""
    mask = (1 << 64) - 1
    value = 1469598103934665603 ^ seed
    for byte in layer.encode():
        value = ((value ^ byte) * 1099511628211) & mask
    return ((value ^ redraw) * 1099511628211) & mask


def draw_performer_projection(features, dim, orthogonal, ortho_scaling, seed):
    """memtrain's DrawPerformerProjection: an [r, d] float64 FAVOR+ projection
    from `seed` (the same CPU generator, so the same numbers)."""
    generator = torch.Generator().manual_seed(seed)
    if not orthogonal:
        return torch.randn(features, dim, generator=generator, dtype=torch.float64)
    blocks = []
    for _ in range(0, features, dim):
        gaussian = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        blocks.append((q * r.diagonal().sign().unsqueeze(0)).t())  # Haar: diag(R) > 0
    stacked = torch.cat(blocks, 0)[:features]
    if ortho_scaling == 0:
        norms = torch.randn(features, dim, generator=generator, dtype=torch.float64).norm(2, 1, keepdim=True)
    else:
        norms = torch.full((features, 1), math.sqrt(dim), dtype=torch.float64)
    return stacked * norms


class PerformerAttention(nn.Module):
    """`performer` (model/performer_attention.cpp): FAVOR+ random features.
    The projection W_omega and the redraw counters are buffers (`projection`,
    `redraw_counters` = [redraws, training calls since]), loaded from the
    export, so evaluation uses the features memtrain trained with; training
    here redraws every `redraw_interval` calls exactly as memtrain would."""

    def __init__(self, dim, heads, options, layer):
        super().__init__()
        self.heads, self.options, self.layer = heads, options, layer
        self.query, self.key, self.value, self.output = (nn.Linear(dim, dim) for _ in range(4))
        self.register_buffer("projection", torch.zeros(options["features"], dim // heads))
        self.register_buffer("redraw_counters", torch.zeros(2))

    def redraw_projection(self):
        """Draws the next projection (redraw number redraws + 1), as memtrain does."""
        following = int(self.redraw_counters[0].item()) + 1
        drawn = self.draw_projection(following)
        with torch.no_grad():
            self.projection.copy_(drawn)
            self.redraw_counters[0] = following
            self.redraw_counters[1] = 0

    def draw_projection(self, redraw):
        """The projection of redraw number `redraw` (0: the initial one), float64."""
        o = self.options
        return draw_performer_projection(o["features"], self.projection.size(1), o["orthogonal"],
                                         o["ortho_scaling"], projection_seed(o["seed"], self.layer, redraw))

    def _query_features(self, q):
        o = self.options
        x = q * q.size(-1) ** -0.25
        projected = torch.matmul(x, self.projection.to(x.dtype).t())
        if o["kernel"] == "relu":
            return F.relu(projected) + o["relu_epsilon"]
        exponent = projected - x.square().sum(-1, keepdim=True) / 2
        shifted = exponent - exponent.amax(-1, keepdim=True)
        return shifted.exp() / math.sqrt(o["features"]) + o["stabilizer"]

    def _keys_and_values(self, source, padding, causal, compute):
        # Key features (with the running-maximum stabilizer of the softmax
        # kernel: true feature = features * exp(log_scale)) and the values
        # with an all-ones column, whose output is the normaliser.
        o = self.options
        batch = source.size(0)
        k = _split_heads(self.key(source), self.heads).to(compute)
        v = _split_heads(self.value(source), self.heads).to(compute)
        s = k.size(2)
        if padding is not None:
            visible = (~padding).view(batch, 1, s).expand(batch, self.heads, s)
        else:
            visible = torch.ones(batch, self.heads, s, dtype=torch.bool, device=k.device)
        x = k * k.size(-1) ** -0.25
        projected = torch.matmul(x, self.projection.to(compute).t())
        log_scale = None
        if o["kernel"] == "relu":
            features = (F.relu(projected) + o["relu_epsilon"]) * visible.unsqueeze(-1)
        else:
            exponent = projected - x.square().sum(-1, keepdim=True) / 2
            # The dtype's lowest finite value, not -inf: lowest - lowest is 0, not NaN.
            low = torch.full((), torch.finfo(exponent.dtype).min, dtype=exponent.dtype, device=exponent.device)
            row_max = torch.where(visible, exponent.amax(-1).detach(), low)
            if causal:
                log_scale = row_max.cummax(2).values
            else:
                log_scale = row_max.amax(-1, keepdim=True).expand_as(row_max)
            shifted = torch.where(visible.unsqueeze(-1), exponent - log_scale.unsqueeze(-1), low)
            features = shifted.exp() / math.sqrt(o["features"])
        return features, log_scale, torch.cat([v, torch.ones_like(v[..., :1])], -1)

    def forward(self, x, memory=None, key_padding=None, causal=False):
        o = self.options
        if self.training and o["redraw_interval"] > 0:
            if self.redraw_counters[1].item() >= o["redraw_interval"]:
                self.redraw_projection()
            with torch.no_grad():
                self.redraw_counters[1] += 1
        cross = memory is not None
        compute = _compute_type(x.dtype)
        query_features = self._query_features(_split_heads(self.query(x), self.heads).to(compute))
        if cross or not causal:
            features, _, values = self._keys_and_values(memory if cross else x, key_padding, False, compute)
            attended = torch.matmul(query_features, torch.matmul(features.transpose(-2, -1), values))
        else:
            features, log_scale, values = self._keys_and_values(x, key_padding, True, compute)
            attended = causal_linear_attention(query_features, features, values, log_scale, o["chunk"])
        numerator, denominator = attended[..., :-1], attended[..., -1:]
        # No visible key: numerator and denominator are both 0; the output is 0.
        safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
        return self.output(_merge_heads((numerator / safe).to(x.dtype)))


class MemSizerAttention(nn.Module):
    """`memsizer` (model/memsizer_attention.cpp): a fixed number of memory
    slots addressed per head, one value read; no output projection."""

    def __init__(self, dim, heads, dropout, options):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.slots, self.chunk = options["slots"], options["chunk"]
        self.keys = nn.Linear(dim, heads * self.slots)
        self.left = nn.Linear(dim, self.slots)
        self.right = nn.Linear(dim, dim)
        self.left_norm = nn.LayerNorm(self.slots)
        self.right_norm = nn.LayerNorm(dim)

    def forward(self, x, memory=None, key_padding=None, causal=False):
        cross = memory is not None
        compute = _compute_type(x.dtype)
        batch, n = x.shape[:2]
        address = self.keys(x).to(compute).view(batch, n, self.heads, self.slots).softmax(-1)
        if self.training and self.dropout > 0:
            address = F.dropout(address, self.dropout, True)
        p = address.mean(2)  # [B, n, k]

        def left_right(source, padding):  # pad rows of L zeroed after its norm
            if padding is not None:
                visible = (~padding).to(compute)
            else:
                visible = torch.ones(batch, source.size(1), dtype=compute, device=x.device)
            left = self.left_norm(self.left(source)).to(compute) * visible.unsqueeze(-1)
            return left, self.right_norm(self.right(source)).to(compute), visible

        if cross or not causal:
            left, right, visible = left_right(memory if cross else x, key_padding)
            # 1/sqrt of each row's true length; a row without keys reads zeros.
            length = visible.sum(1).clamp_min(1).view(batch, 1, 1)
            out = torch.matmul(p, torch.matmul(left.transpose(-2, -1), right) / length.sqrt())
        else:
            left, right, visible = left_right(x, key_padding)
            unscaled = causal_linear_attention(p.unsqueeze(1), left.unsqueeze(1), right.unsqueeze(1),
                                               None, self.chunk).squeeze(1)
            out = unscaled / visible.cumsum(1).clamp_min(1).sqrt().unsqueeze(-1)
        return out.to(x.dtype)


def make_attention(kind, layer, config, rotary, owner):
    """The attention module of `kind` for the layer named `layer` (e.g.
    "decoder.0.self") of the model in the one-element list `owner`;
    UnsupportedAttention naming both for a kind this package does not build."""
    dim, heads, dropout = config["model_dim"], config["heads"], config["attention_dropout"]
    variants = config["attention_options"]
    if kind == "softmax":
        return SoftmaxAttention(dim, heads, dropout, rotary)
    if kind == "linformer":
        return LinformerAttention(dim, heads, dropout, variants["linformer"], owner)
    if kind == "performer":
        return PerformerAttention(dim, heads, variants["performer"], layer)
    if kind == "memsizer":
        return MemSizerAttention(dim, heads, dropout, variants["memsizer"])
    what = "is not supported by memtrain_torch" if kind in UNSUPPORTED_KINDS else "is unknown"
    raise UnsupportedAttention(
        f"{layer}: attention kind '{kind}' {what} (supported: {', '.join(SUPPORTED_KINDS)}; "
        f"not supported: {', '.join(UNSUPPORTED_KINDS)}, whose memories are not weights)")
